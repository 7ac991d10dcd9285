// bastion grant add|list|remove: explicit grants of a study or a patient to a
// user, group or node. bastion break-glass open|list: emergency access by a
// user stating a reason (time-limited, high-severity audit), and its review.
#include <iostream>

#include "cli/commands.h"
#include "server/composition.h"

namespace bastion::cli {

std::string readSecret(const std::string& prompt);  // cmd_user.cc

namespace {

struct AccessOptions {
  std::string config = "/var/lib/bastion/bastion.toml";
  std::string grantee, study, patient_id, issuer, reason, user;
  int64_t hours = 0, id = 0;
};

int fail(const char* what, const Status& s) {
  std::cerr << what << ": " << s.toString() << "\n";
  return 1;
}

std::string when(int64_t unix_s) {
  return unix_s ? formatUtc(std::chrono::system_clock::time_point(std::chrono::seconds(unix_s))) : "never";
}

int run(const std::string& cmd, const AccessOptions& o) {
  auto archive = server::openArchive(o.config);
  if (!archive.ok()) return fail(cmd.c_str(), archive.status());
  AuthService& auth = *(*archive)->auth;
  const std::string by = operatorName();
  if (cmd == "grant add") {
    auto id = auth.addGrant(o.grantee, o.study, o.patient_id, o.issuer, std::chrono::hours(o.hours), o.reason, by);
    if (!id.ok()) return fail("grant add", id.status());
    std::cout << "grant " << *id << " added\n";
    return 0;
  }
  if (cmd == "grant remove") {
    Status s = auth.removeGrant(o.id, by);
    if (!s.ok()) return fail("grant remove", s);
    std::cout << "grant " << o.id << " removed\n";
    return 0;
  }
  if (cmd == "break-glass open") {
    // The user authenticates here (password + second factor from stdin).
    const std::string password = readSecret("password: ");
    const std::string code = readSecret("second factor (TOTP or recovery code): ");
    auto who = auth.authenticate(o.user, password, code, {"local-console", "", ""});
    if (!who.ok()) return fail("break-glass", who.status());
    auto g = auth.breakGlass(*who, o.study, o.reason, {"local-console", "", ""});
    if (!g.ok()) return fail("break-glass", g.status());
    std::cout << "emergency access " << g->id << " to study " << g->study_uid << " for " << who->name << " until "
              << when(g->expires) << " (audited)\n";
    return 0;
  }
  auto all = auth.listGrants(cmd == "break-glass list");
  if (!all.ok()) return fail(cmd.c_str(), all.status());
  for (const auto& g : *all)
    std::cout << g.id << "\t" << g.kind << "\t" << g.grantee << "\t"
              << (g.patient ? std::string("patient") : "study " + g.study_uid) << "\tby=" << g.granted_by
              << "\tcreated=" << when(g.created) << "\texpires=" << when(g.expires) << "\treason=" << g.reason << "\n";
  return 0;
}

}  // namespace

void addAccess(CLI::App& app, Action& action) {
  auto o = std::make_shared<AccessOptions>();
  auto sub = [&](CLI::App* parent, const char* name, const char* help) {
    auto* c = parent->add_subcommand(name, help);
    c->add_option("--config", o->config, "Path to bastion.toml");
    c->callback([&action, o, n = parent->get_name() + " " + name] { action = [o, n] { return run(n, *o); }; });
    return c;
  };
  auto* grant = app.add_subcommand("grant", "Grant a study or patient to a user, group or node");
  grant->require_subcommand(1);
  auto* add = sub(grant, "add", "Add a grant");
  add->add_option("grantee", o->grantee, "user:NAME, group:NAME or node:AE")->required();
  auto* study = add->add_option("--study", o->study, "Study Instance UID");
  auto* patient = add->add_option("--patient-id", o->patient_id, "Patient ID");
  study->excludes(patient);
  add->add_option("--issuer", o->issuer, "Issuer of Patient ID");
  add->add_option("--hours", o->hours, "Lifetime in hours (0: until removed)")->check(CLI::Range(0, 24 * 3650));
  add->add_option("--reason", o->reason, "Why (kept with the grant)")->required();
  sub(grant, "list", "List grants");
  sub(grant, "remove", "Remove a grant")->add_option("id", o->id, "Grant id")->required();

  auto* bg = app.add_subcommand("break-glass", "Emergency access outside one's scope (audited, time-limited)");
  bg->require_subcommand(1);
  auto* open = sub(bg, "open", "Open a study in an emergency (reads password and second factor from stdin)");
  open->add_option("--user", o->user, "Your user name")->required();
  open->add_option("--study", o->study, "Study Instance UID")->required();
  open->add_option("--reason", o->reason, "The clinical reason (kept in the audit trail)")->required();
  sub(bg, "list", "List emergency accesses for review");
}

}  // namespace bastion::cli
