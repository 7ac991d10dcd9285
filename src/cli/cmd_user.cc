// bastion user add|list|show|disable|enable|reset-password|reset-mfa|set-roles|enrol
// and bastion token create|list|revoke, bastion role list|set.
// Run on the server by its operator (who holds the key file): these are the
// administrator's tools; every change is audited with the acting OS user.
#include <pwd.h>
#include <termios.h>
#include <unistd.h>

#include <cstdlib>
#include <iostream>

#include "cli/commands.h"
#include "server/composition.h"

namespace bastion::cli {
namespace {

struct UserOptions {
  std::string config = "/var/lib/bastion/bastion.toml";
  std::string name, site = "main", physician, token_name, perms, id, role_perms, role_scope, description;
  std::vector<std::string> roles, groups;
  int64_t days = 90;
};

int fail(const char* what, const Status& s) {
  std::cerr << what << ": " << s.toString() << "\n";
  return 1;
}

}  // namespace

std::string operatorName() {
  const passwd* pw = ::getpwuid(::getuid());
  return std::string("os:") + (pw && pw->pw_name ? pw->pw_name : std::to_string(::getuid()));
}

namespace {

template <typename Fn>
int withAuth(const UserOptions& o, const char* what, Fn fn) {
  auto archive = server::openArchive(o.config);
  if (!archive.ok()) return fail(what, archive.status());
  return fn(*(*archive)->auth);
}

std::string join(const std::vector<std::string>& v) {
  std::string s;
  for (const auto& x : v) s += (s.empty() ? "" : ",") + x;
  return s;
}

void printOneTime(const std::string& user, const std::string& otp) {
  std::cout << "user: " << user << "\n"
            << "one-time password: " << otp << "\n"
            << "(shown once; the user runs `bastion user enrol " << user
            << "` to choose a password and enrol a second factor)\n";
}

}  // namespace

// Reads one line from stdin; without echo when stdin is a terminal.
std::string readSecret(const std::string& prompt) {
  const bool tty = ::isatty(STDIN_FILENO);
  if (tty) std::cerr << prompt << std::flush;
  termios old{};
  if (tty && ::tcgetattr(STDIN_FILENO, &old) == 0) {
    termios quiet = old;
    quiet.c_lflag &= ~static_cast<tcflag_t>(ECHO);
    ::tcsetattr(STDIN_FILENO, TCSANOW, &quiet);
  }
  std::string line;
  std::getline(std::cin, line);
  if (tty) {
    ::tcsetattr(STDIN_FILENO, TCSANOW, &old);
    std::cerr << "\n";
  }
  if (!line.empty() && line.back() == '\r') line.pop_back();
  return line;
}

namespace {

int enrol(const UserOptions& o) {
  return withAuth(o, "enrol", [&](AuthService& auth) {
    const Origin console{"local-console", "", ""};
    const std::string current = readSecret("current (or one-time) password: ");
    auto info = auth.showUser(o.name);
    std::string fresh;
    if (info.ok() && info->must_enrol) {
      fresh = readSecret("new password (8 or more characters): ");
      if (readSecret("repeat the new password: ") != fresh) {
        std::cerr << "enrol: the passwords differ\n";
        return 1;
      }
    }
    auto e = auth.beginEnrolment(o.name, current, fresh, console);
    if (!e.ok()) return fail("enrol", e.status());
    if (!e->has_value()) {
      std::cout << "password set; the second factor already enrolled stays\n";
      return 0;
    }
    std::cout << "Scan this code with an authenticator app (or enter the secret by hand):\n"
              << (*e)->qr << "secret: " << (*e)->secret_base32 << "\n"
              << "uri: " << (*e)->otpauth_uri << "\n"
              << std::flush;
    const std::string code = readSecret("6-digit code from the app: ");
    auto codes = auth.confirmEnrolment(o.name, code, console);
    if (!codes.ok()) return fail("enrol", codes.status());
    std::cout << "second factor enrolled. Recovery codes (each works once; store them offline):\n";
    for (const auto& c : *codes) std::cout << "recovery: " << c << "\n";
    return 0;
  });
}

int userCommand(const std::string& sub, const UserOptions& o) {
  if (sub == "enrol") return enrol(o);
  return withAuth(o, "user", [&](AuthService& auth) -> int {
    const std::string by = operatorName();
    if (sub == "add") {
      auto otp = auth.addUser({o.name, o.roles, o.site, o.physician, o.groups}, by);
      if (!otp.ok()) return fail("user add", otp.status());
      printOneTime(o.name, *otp);
      return 0;
    }
    if (sub == "list" || sub == "show") {
      std::vector<UserInfo> users;
      if (sub == "show") {
        auto u = auth.showUser(o.name);
        if (!u.ok()) return fail("user show", u.status());
        users.push_back(*u);
      } else {
        auto all = auth.listUsers();
        if (!all.ok()) return fail("user list", all.status());
        users = *all;
      }
      for (const auto& u : users)
        std::cout << u.username << "\troles=" << join(u.roles) << "\tsite=" << u.site
                  << "\tgroups=" << join(u.groups) << "\tphysician=" << u.physician_name
                  << "\tmfa=" << (u.mfa_enrolled ? "yes" : "no") << "\tstate="
                  << (u.disabled ? "disabled" : u.must_enrol ? "must-enrol" : "active")
                  << "\tfailed_logins=" << u.failed_logins << "\n";
      return 0;
    }
    Status s;
    if (sub == "disable" || sub == "enable") {
      s = auth.setDisabled(o.name, sub == "disable", by);
    } else if (sub == "reset-password") {
      auto otp = auth.resetPassword(o.name, by);
      if (!otp.ok()) return fail("user reset-password", otp.status());
      printOneTime(o.name, *otp);
      return 0;
    } else if (sub == "reset-mfa") {
      auto otp = auth.resetMfa(o.name, by);
      if (!otp.ok()) return fail("user reset-mfa", otp.status());
      printOneTime(o.name, *otp);
      return 0;
    } else if (sub == "set-roles") {
      s = auth.setRoles(o.name, o.roles, by);
    }
    if (!s.ok()) return fail(("user " + sub).c_str(), s);
    std::cout << sub << ": " << o.name << " done\n";
    return 0;
  });
}

int tokenCommand(const std::string& sub, const UserOptions& o) {
  return withAuth(o, "token", [&](AuthService& auth) -> int {
    if (sub == "create") {
      auto bits = parsePermissions(o.perms);
      if (!bits.ok()) return fail("token create", bits.status());
      auto t = auth.createApiToken(o.name, o.token_name, *bits, std::chrono::hours(24 * o.days), operatorName());
      if (!t.ok()) return fail("token create", t.status());
      std::cout << "token: " << *t << "\n(shown once; it expires in " << o.days << " days)\n";
      return 0;
    }
    if (sub == "list") {
      auto all = auth.listApiTokens(o.name);
      if (!all.ok()) return fail("token list", all.status());
      for (const auto& t : *all)
        std::cout << t.id << "\tuser=" << t.username << "\tname=" << t.name << "\tpermissions=" << t.permissions
                  << "\texpires=" << formatUtc(std::chrono::system_clock::time_point(std::chrono::seconds(t.expires)))
                  << (t.revoked ? "\trevoked" : "") << "\n";
      return 0;
    }
    Status s = auth.revokeApiToken(o.id, operatorName());
    if (!s.ok()) return fail("token revoke", s);
    std::cout << "revoked " << o.id << "\n";
    return 0;
  });
}

int roleCommand(const std::string& sub, const UserOptions& o) {
  return withAuth(o, "role", [&](AuthService& auth) -> int {
    if (sub == "set") {
      Status s = auth.setRole({o.name, o.role_perms, o.role_scope, o.description}, operatorName());
      if (!s.ok()) return fail("role set", s);
      std::cout << "role " << o.name << " set\n";
      return 0;
    }
    auto all = auth.listRoles();
    if (!all.ok()) return fail("role list", all.status());
    for (const auto& r : *all)
      std::cout << r.name << "\tpermissions=" << r.permissions << "\tscope=" << (r.scope.empty() ? "grants" : r.scope)
                << "\t" << r.description << "\n";
    return 0;
  });
}

}  // namespace

void addUser(CLI::App& app, Action& action) {
  auto o = std::make_shared<UserOptions>();
  auto* user = app.add_subcommand("user", "Manage user accounts");
  user->require_subcommand(1);
  auto sub = [&](const char* name, const char* help, bool needs_name = true) {
    auto* c = user->add_subcommand(name, help);
    c->add_option("--config", o->config, "Path to bastion.toml");
    if (needs_name) c->add_option("name", o->name, "User name")->required();
    c->callback([&action, o, n = std::string(name)] { action = [o, n] { return userCommand(n, *o); }; });
    return c;
  };
  auto* add = sub("add", "Create an account (prints a one-time password)");
  add->add_option("--role", o->roles, "Role (repeatable): radiologist, physician, technologist, auditor, ...")
      ->required();
  add->add_option("--site", o->site, "Organisation/site the user belongs to");
  add->add_option("--physician-name", o->physician, "DICOM PN as referring physician, e.g. Smith^John");
  add->add_option("--group", o->groups, "Group (repeatable), for group grants");
  sub("list", "List accounts", false);
  sub("show", "Show one account");
  sub("disable", "Disable an account (revokes its sessions and tokens)");
  sub("enable", "Enable an account (also clears a lock-out)");
  sub("reset-password", "Issue a new one-time password");
  sub("reset-mfa", "Remove the second factor and recovery codes (prints a one-time password)");
  sub("set-roles", "Replace the roles of an account")->add_option("--role", o->roles, "Role (repeatable)")->required();
  sub("enrol", "Set a password and enrol a second factor (reads from stdin)");

  auto* token = app.add_subcommand("token", "Personal API tokens (for scripts and DICOM user identity)");
  token->require_subcommand(1);
  auto tsub = [&](const char* name, const char* help) {
    auto* c = token->add_subcommand(name, help);
    c->add_option("--config", o->config, "Path to bastion.toml");
    c->callback([&action, o, n = std::string(name)] { action = [o, n] { return tokenCommand(n, *o); }; });
    return c;
  };
  auto* create = tsub("create", "Create a token for a user (shown once)");
  create->add_option("name", o->name, "User name")->required();
  create->add_option("--name", o->token_name, "What the token is for")->required();
  create->add_option("--perm", o->perms, "Permissions (subset of the user's): find,get,...")->required();
  create->add_option("--days", o->days, "Lifetime in days")->check(CLI::Range(1, 365));
  tsub("list", "List tokens")->add_option("name", o->name, "User name (all if omitted)");
  tsub("revoke", "Revoke a token")->add_option("id", o->id, "Token id")->required();

  auto* role = app.add_subcommand("role", "Roles: named permission sets with a scope (data, not code)");
  role->require_subcommand(1);
  auto rsub = [&](const char* name, const char* help) {
    auto* c = role->add_subcommand(name, help);
    c->add_option("--config", o->config, "Path to bastion.toml");
    c->callback([&action, o, n = std::string(name)] { action = [o, n] { return roleCommand(n, *o); }; });
    return c;
  };
  rsub("list", "List roles");
  auto* set = rsub("set", "Create or change a role");
  set->add_option("name", o->name, "Role name")->required();
  set->add_option("--perm", o->role_perms, "Permissions, comma-separated")->required();
  set->add_option("--scope", o->role_scope, "all | site | referring (comma-separated); empty: grants only");
  set->add_option("--description", o->description, "What the role is for");
}

}  // namespace bastion::cli
