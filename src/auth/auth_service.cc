// SqliteAuthService: AuthService on the archive's SQLite database (tables in
// migrations/0002_identity.sql), on its own connection.
#include "bastion/auth/auth_service.h"

#include <arpa/inet.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <mutex>

#include "auth/blocklist.h"
#include "auth/jwt.h"
#include "auth/password.h"
#include "auth/totp.h"
#include "crypto/aead.h"
#include "bastion/service/archive.h"
#include "guard/failure_throttle.h"
#include "index/phi_codec.h"
#include "index/sqlite/sqlite_db.h"

namespace bastion {
namespace {

using index::Db;
using index::Stmt;
using Seconds = std::chrono::seconds;

constexpr const char* kInvalid = "invalid credentials";
constexpr int kRecoveryCodes = 10;

std::vector<std::string> splitList(const std::string& s) {
  std::vector<std::string> out;
  size_t start = 0;
  while (start < s.size()) {
    size_t comma = s.find(',', start);
    if (comma == std::string::npos) comma = s.size();
    if (comma > start) out.push_back(s.substr(start, comma - start));
    start = comma + 1;
  }
  return out;
}

std::string joinList(const std::vector<std::string>& v) {
  std::string s;
  for (const auto& x : v) s += (s.empty() ? "" : ",") + x;
  return s;
}

Bytes hashBytes(std::string_view secret) {
  auto d = crypto::sha256(asBytes(secret));
  return Bytes(d.begin(), d.end());
}

bool allDigits(std::string_view s) {
  for (char c : s)
    if (c < '0' || c > '9') return false;
  return !s.empty();
}

// Per-username lock-out state, kept for known and unknown names alike so
// that both answer the same way.
struct LockState {
  int consecutive = 0;
  int rounds = 0;
  int64_t locked_until = 0;
  int64_t last_failure = 0;
};

struct UserRow {
  int64_t pk = 0;
  std::string username, password_hash, roles, site, physician_name, groups;
  Bytes mfa_secret, mfa_pending;
  int64_t mfa_last_step = 0;
  bool must_enrol = false, disabled = false;
  int failed_logins = 0;
  int64_t created = 0;
};

class SqliteAuthService final : public AuthService {
 public:
  SqliteAuthService(std::unique_ptr<Db> db, const Keyring& keyring, Random& random, const Clock& clock,
                    AuditLog& audit, AuthConfig cfg, std::unordered_set<std::string> blocklist)
      : db_(std::move(db)),
        random_(random),
        clock_(clock),
        audit_(audit),
        cfg_(std::move(cfg)),
        passwords_(auth::PasswordRules{cfg_.min_password_with_mfa, cfg_.min_password_without_mfa, cfg_.max_password,
                                       cfg_.argon2_ops, cfg_.argon2_mem_kib * 1024},
                   std::move(blocklist)),
        totp_key_(keyring.derive("auth-totp-v1")),
        phi_(keyring, random),
        sources_({cfg_.source_failures, cfg_.source_window, cfg_.source_block}) {}

  Status init() {
    if (cfg_.jwks_path.empty()) return okStatus();
    ASSIGN_OR_RETURN(auto keys, auth::JwksKeySet::load(cfg_.jwks_path));
    jwt_ = std::make_unique<auth::JwtVerifier>(
        std::move(keys), auth::JwtConfig{cfg_.jwt_issuer, cfg_.jwt_audiences, cfg_.jwt_leeway}, clock_);
    return okStatus();
  }

  // ---- accounts ---------------------------------------------------------
  StatusOr<std::string> addUser(const NewUser& u, const std::string& by) override {
    ASSIGN_OR_RETURN(std::string name, normalizeUsername(u.username));
    for (const auto& r : u.roles) RETURN_IF_ERROR(roleExists(r));
    const std::string otp = oneTimePassword();
    ASSIGN_OR_RETURN(std::string hash, passwords_.hash(otp));
    const int64_t now = nowUnix();
    std::lock_guard lock(mu_);
    ASSIGN_OR_RETURN(Stmt st, db_->prepare("INSERT INTO user(username, password_hash, roles, site, physician_name, "
                                           "groups, must_enrol, created, password_changed) "
                                           "VALUES (?, ?, ?, ?, ?, ?, 1, ?, ?)"));
    Status s = st.bind(1, name).bind(2, hash).bind(3, joinList(u.roles)).bind(4, u.site)
                   .bind(5, u.physician_name).bind(6, joinList(u.groups)).bind(7, now).bind(8, now).run();
    if (s.code() == StatusCode::kAlreadyExists) s = alreadyExists("user " + name + " already exists");
    auditAdmin("user-add", name, by, s, "roles=" + joinList(u.roles) + " site=" + u.site);
    RETURN_IF_ERROR(s);
    return otp;
  }

  StatusOr<std::vector<UserInfo>> listUsers() override {
    std::lock_guard lock(mu_);
    ASSIGN_OR_RETURN(Stmt st, db_->prepare("SELECT username FROM user ORDER BY username"));
    std::vector<std::string> names;
    while (true) {
      ASSIGN_OR_RETURN(bool row, st.step());
      if (!row) break;
      names.push_back(st.text(0));
    }
    st.reset();
    std::vector<UserInfo> out;
    for (const auto& n : names) {
      ASSIGN_OR_RETURN(auto r, loadUser(n));
      if (r) out.push_back(info(*r));
    }
    return out;
  }

  StatusOr<UserInfo> showUser(const std::string& username) override {
    std::lock_guard lock(mu_);
    ASSIGN_OR_RETURN(auto r, loadUserNormalized(username));
    if (!r) return notFound("no user " + username);
    return info(*r);
  }

  Status setDisabled(const std::string& username, bool disabled, const std::string& by) override {
    std::lock_guard lock(mu_);
    ASSIGN_OR_RETURN(auto r, loadUserNormalized(username));
    if (!r) return notFound("no user " + username);
    ASSIGN_OR_RETURN(Stmt st, db_->prepare("UPDATE user SET disabled = ?, failed_logins = 0, locked_until = 0 "
                                           "WHERE pk = ?"));
    Status s = st.bind(1, int64_t{disabled}).bind(2, r->pk).run();
    if (s.ok()) s = revokeAll(r->pk, /*tokens=*/disabled);
    if (s.ok() && !disabled) {
      locks_.erase(r->username);
      for (auto it = hard_.begin(); it != hard_.end();)
        it = it->first.rfind(r->username + "|", 0) == 0 ? hard_.erase(it) : std::next(it);
    }
    auditAdmin(disabled ? "user-disable" : "user-enable", r->username, by, s, "");
    return s;
  }

  StatusOr<std::string> resetPassword(const std::string& username, const std::string& by) override {
    const std::string otp = oneTimePassword();
    ASSIGN_OR_RETURN(std::string hash, passwords_.hash(otp));
    std::lock_guard lock(mu_);
    ASSIGN_OR_RETURN(auto r, loadUserNormalized(username));
    if (!r) return notFound("no user " + username);
    ASSIGN_OR_RETURN(Stmt st, db_->prepare("UPDATE user SET password_hash = ?, must_enrol = 1, password_changed = ? "
                                           "WHERE pk = ?"));
    Status s = st.bind(1, hash).bind(2, nowUnix()).bind(3, r->pk).run();
    if (s.ok()) s = revokeAll(r->pk, true);
    auditAdmin("user-reset-password", r->username, by, s, "");
    RETURN_IF_ERROR(s);
    return otp;
  }

  StatusOr<std::string> resetMfa(const std::string& username, const std::string& by) override {
    // Whoever knows the password must not enrol a new factor alone: a new
    // one-time password goes to the owner through the administrator.
    const std::string otp = oneTimePassword();
    ASSIGN_OR_RETURN(std::string hash, passwords_.hash(otp));
    std::lock_guard lock(mu_);
    ASSIGN_OR_RETURN(auto r, loadUserNormalized(username));
    if (!r) return notFound("no user " + username);
    ASSIGN_OR_RETURN(Stmt st, db_->prepare("UPDATE user SET mfa_secret = NULL, mfa_pending = NULL, mfa_last_step = 0, "
                                           "password_hash = ?, must_enrol = 1, password_changed = ? WHERE pk = ?"));
    Status s = st.bind(1, hash).bind(2, nowUnix()).bind(3, r->pk).run();
    if (s.ok()) s = deleteRecoveryCodes(r->pk);
    if (s.ok()) s = revokeAll(r->pk, true);
    auditAdmin("user-reset-mfa", r->username, by, s, "");
    RETURN_IF_ERROR(s);
    return otp;
  }

  Status setRoles(const std::string& username, const std::vector<std::string>& roles, const std::string& by) override {
    for (const auto& role : roles) RETURN_IF_ERROR(roleExists(role));
    std::lock_guard lock(mu_);
    ASSIGN_OR_RETURN(auto r, loadUserNormalized(username));
    if (!r) return notFound("no user " + username);
    ASSIGN_OR_RETURN(Stmt st, db_->prepare("UPDATE user SET roles = ? WHERE pk = ?"));
    Status s = st.bind(1, joinList(roles)).bind(2, r->pk).run();
    if (s.ok()) s = revokeAll(r->pk, false);  // sessions carry the old roles' rights
    auditAdmin("user-roles", r->username, by, s, "roles=" + joinList(roles));
    return s;
  }

  // ---- enrolment ----------------------------------------------------------
  StatusOr<std::optional<Enrolment>> beginEnrolment(const std::string& username, const std::string& password,
                                                    const std::string& new_password, const Origin& from) override {
    ASSIGN_OR_RETURN(UserRow r, checkPassword(username, password, from, "enrol"));
    std::lock_guard lock(mu_);
    if (r.must_enrol) {
      if (new_password.empty()) return invalidArgument("a new password is required (the current one was one-time)");
      RETURN_IF_ERROR(passwords_.check(new_password, true, {r.username, "bastion"}));
      if (new_password == password) return invalidArgument("the new password must differ from the one-time password");
      ASSIGN_OR_RETURN(std::string hash, passwords_.hash(new_password));
      ASSIGN_OR_RETURN(Stmt st, db_->prepare("UPDATE user SET password_hash = ?, password_changed = ? WHERE pk = ?"));
      RETURN_IF_ERROR(st.bind(1, hash).bind(2, nowUnix()).bind(3, r.pk).run());
    }
    if (!r.mfa_secret.empty()) {
      ASSIGN_OR_RETURN(Stmt st, db_->prepare("UPDATE user SET must_enrol = 0 WHERE pk = ?"));
      RETURN_IF_ERROR(st.bind(1, r.pk).run());
      audit("enrol", r.username, from, okStatus(), "password set; second factor kept");
      return std::optional<Enrolment>();
    }
    const Bytes secret = auth::newTotpSecret(random_);
    ASSIGN_OR_RETURN(Stmt st, db_->prepare("UPDATE user SET mfa_pending = ? WHERE pk = ?"));
    RETURN_IF_ERROR(st.bind(1, ByteView(sealSecret(r.pk, secret))).bind(2, r.pk).run());
    Enrolment e;
    e.secret_base32 = auth::base32(secret);
    e.otpauth_uri = auth::otpauthUri(cfg_.totp_issuer, r.username, secret);
    ASSIGN_OR_RETURN(e.qr, auth::terminalQr(e.otpauth_uri));
    audit("mfa-enrol-begin", r.username, from, okStatus(), "");
    return std::optional<Enrolment>(std::move(e));
  }

  StatusOr<std::vector<std::string>> confirmEnrolment(const std::string& username, const std::string& code,
                                                      const Origin& from) override {
    std::lock_guard lock(mu_);
    ASSIGN_OR_RETURN(auto r, loadUserNormalized(username));
    if (!r || r->mfa_pending.empty()) return unauthenticated(kInvalid);
    if (auto it = locks_.find(r->username); it != locks_.end() && it->second.locked_until > nowUnix())
      return resourceExhausted("too many failed attempts; try again later");
    ASSIGN_OR_RETURN(Bytes secret, openSecret(r->pk, r->mfa_pending));
    auto step = auth::verifyTotp(secret, code, clock_.now(), 0);
    if (!step.ok()) {
      recordFailure(r->username, &*r, from, "enrolment code");
      return unauthenticated(kInvalid);
    }
    audit("mfa-enrol-confirm", r->username, from, okStatus(), "");
    ASSIGN_OR_RETURN(Stmt st, db_->prepare("UPDATE user SET mfa_secret = mfa_pending, mfa_pending = NULL, "
                                           "mfa_last_step = ?, must_enrol = 0 WHERE pk = ?"));
    RETURN_IF_ERROR(st.bind(1, static_cast<int64_t>(*step)).bind(2, r->pk).run());
    RETURN_IF_ERROR(deleteRecoveryCodes(r->pk));
    std::vector<std::string> codes;
    ASSIGN_OR_RETURN(Stmt ins, db_->prepare("INSERT INTO recovery_code(user_pk, code_hash) VALUES (?, ?)"));
    for (int i = 0; i < kRecoveryCodes; ++i) {
      Bytes raw(10);  // 80 bits
      random_.fill(raw);
      std::string c = auth::base32(raw);  // 16 characters
      codes.push_back(c.substr(0, 4) + "-" + c.substr(4, 4) + "-" + c.substr(8, 4) + "-" + c.substr(12, 4));
      RETURN_IF_ERROR(ins.bind(1, r->pk).bind(2, ByteView(hashBytes(c))).run());
    }
    return codes;
  }

  Status changePassword(const std::string& username, const std::string& old_password, const std::string& second_factor,
                        const std::string& new_password, const Origin& from) override {
    ASSIGN_OR_RETURN(Principal p, authenticate(username, old_password, second_factor, from));
    RETURN_IF_ERROR(passwords_.check(new_password, true, {p.name, "bastion"}));
    ASSIGN_OR_RETURN(std::string hash, passwords_.hash(new_password));
    std::lock_guard lock(mu_);
    ASSIGN_OR_RETURN(auto r, loadUser(p.name));
    if (!r) return unauthenticated(kInvalid);
    ASSIGN_OR_RETURN(Stmt st, db_->prepare("UPDATE user SET password_hash = ?, password_changed = ? WHERE pk = ?"));
    Status s = st.bind(1, hash).bind(2, nowUnix()).bind(3, r->pk).run();
    if (s.ok()) s = revokeAll(r->pk, true);
    audit("password-change", p.name, from, s, "");
    return s;
  }

  // ---- authentication -----------------------------------------------------
  StatusOr<Principal> authenticate(const std::string& username, const std::string& password,
                                   const std::string& second_factor, const Origin& from) override {
    ASSIGN_OR_RETURN(UserRow r, checkPassword(username, password, from, "login"));
    std::lock_guard lock(mu_);
    if (r.must_enrol) {
      audit("login", r.username, from, permissionDenied("enrolment required"), "");
      return permissionDenied("enrolment required: set a password and a second factor first");
    }
    Status second = checkSecondFactor(r, second_factor);
    if (!second.ok()) {
      recordFailure(r.username, &r, from, "second factor");
      return unauthenticated(kInvalid);
    }
    recordSuccess(r, from);
    audit("login", r.username, from, okStatus(), "password+" + std::string(second.message()));
    return principalOf(r, "password+" + second.message());
  }

  StatusOr<std::string> login(const std::string& username, const std::string& password,
                              const std::string& second_factor, const Origin& from) override {
    ASSIGN_OR_RETURN(Principal p, authenticate(username, password, second_factor, from));
    Bytes raw(32);
    random_.fill(raw);
    const std::string token = "bss_" + toHex(raw);
    const int64_t now = nowUnix();
    std::lock_guard lock(mu_);
    ASSIGN_OR_RETURN(auto r, loadUser(p.name));
    if (!r) return unauthenticated(kInvalid);
    ASSIGN_OR_RETURN(Stmt st, db_->prepare("INSERT INTO session(token_hash, user_pk, created, last_seen, expires) "
                                           "VALUES (?, ?, ?, ?, ?)"));
    RETURN_IF_ERROR(st.bind(1, ByteView(hashBytes(token))).bind(2, r->pk).bind(3, now).bind(4, now)
                        .bind(5, now + cfg_.session_absolute.count()).run());
    audit("session-issue", p.name, from, okStatus(), "");
    return token;
  }

  StatusOr<Principal> session(const std::string& token) override {
    const int64_t now = nowUnix();
    std::lock_guard lock(mu_);
    ASSIGN_OR_RETURN(Stmt st, db_->prepare("SELECT s.user_pk, s.last_seen, s.expires, u.username FROM session s "
                                           "JOIN user u ON u.pk = s.user_pk WHERE s.token_hash = ?"));
    const Bytes h = hashBytes(token);
    st.bind(1, ByteView(h));
    ASSIGN_OR_RETURN(bool row, st.step());
    if (!row) return unauthenticated("invalid session");
    const int64_t last = st.i64(1), expires = st.i64(2);
    const std::string name = st.text(3);
    st.reset();
    ASSIGN_OR_RETURN(auto r, loadUser(name));
    // Administrators' sessions idle out sooner (15 min).
    const bool admin = r && (principalOf(*r, "").permissions & (kPermManageUsers | kPermManageNodes | kPermManageConfig));
    const int64_t idle = admin ? std::min<int64_t>(cfg_.session_idle.count(), 900) : cfg_.session_idle.count();
    if (now >= expires || now - last > idle) {
      ASSIGN_OR_RETURN(Stmt del, db_->prepare("DELETE FROM session WHERE token_hash = ?"));
      RETURN_IF_ERROR(del.bind(1, ByteView(h)).run());
      return unauthenticated("session expired");
    }
    if (!r || r->disabled) return unauthenticated("invalid session");
    ASSIGN_OR_RETURN(Stmt up, db_->prepare("UPDATE session SET last_seen = ? WHERE token_hash = ?"));
    RETURN_IF_ERROR(up.bind(1, now).bind(2, ByteView(h)).run());
    return principalOf(*r, "session");
  }

  Status logout(const std::string& token) override {
    std::lock_guard lock(mu_);
    ASSIGN_OR_RETURN(Stmt del, db_->prepare("DELETE FROM session WHERE token_hash = ?"));
    return del.bind(1, ByteView(hashBytes(token))).run();
  }

  StatusOr<std::string> createApiToken(const std::string& username, const std::string& name, uint32_t permissions,
                                       Seconds lifetime, const std::string& by) override {
    if (lifetime.count() <= 0 || lifetime > cfg_.max_token_lifetime)
      return invalidArgument("token lifetime must be between 1 s and the configured maximum");
    std::lock_guard lock(mu_);
    ASSIGN_OR_RETURN(auto r, loadUserNormalized(username));
    if (!r) return notFound("no user " + username);
    const Principal p = principalOf(*r, "");
    if (permissions & ~p.permissions) return permissionDenied("a token cannot hold permissions the user lacks");
    Bytes id(6), secret(32);
    random_.fill(id);
    random_.fill(secret);
    const std::string token = "bat_" + toHex(id) + "_" + toHex(secret);
    const int64_t now = nowUnix();
    ASSIGN_OR_RETURN(Stmt st, db_->prepare("INSERT INTO api_token(id, secret_hash, user_pk, name, permissions, "
                                           "created, expires) VALUES (?, ?, ?, ?, ?, ?, ?)"));
    Status s = st.bind(1, toHex(id)).bind(2, ByteView(hashBytes(token))).bind(3, r->pk).bind(4, name)
                   .bind(5, formatPermissions(permissions)).bind(6, now).bind(7, now + lifetime.count()).run();
    auditAdmin("token-issue", r->username, by, s, "id=" + toHex(id) + " permissions=" + formatPermissions(permissions));
    RETURN_IF_ERROR(s);
    return token;
  }

  StatusOr<std::vector<ApiTokenInfo>> listApiTokens(const std::string& username) override {
    std::lock_guard lock(mu_);
    ASSIGN_OR_RETURN(Stmt st, db_->prepare("SELECT t.id, u.username, t.name, t.permissions, t.created, t.expires, "
                                           "t.revoked FROM api_token t JOIN user u ON u.pk = t.user_pk "
                                           "WHERE ? = '' OR u.username = ? ORDER BY t.created"));
    st.bind(1, username).bind(2, username);
    std::vector<ApiTokenInfo> out;
    while (true) {
      ASSIGN_OR_RETURN(bool row, st.step());
      if (!row) break;
      out.push_back({st.text(0), st.text(1), st.text(2), st.text(3), st.i64(4), st.i64(5), st.i64(6) != 0});
    }
    st.reset();
    return out;
  }

  Status revokeApiToken(const std::string& id, const std::string& by) override {
    std::lock_guard lock(mu_);
    ASSIGN_OR_RETURN(Stmt st, db_->prepare("UPDATE api_token SET revoked = 1 WHERE id = ?"));
    Status s = st.bind(1, id).run();
    if (s.ok() && sqlite3_changes(db_->raw()) == 0) s = notFound("no token " + id);
    auditAdmin("token-revoke", "", by, s, "id=" + id);
    return s;
  }

  StatusOr<Principal> apiToken(const std::string& token, const Origin& from) override {
    if (!sources_.allowed(from.address, steadyNow())) return resourceExhausted("too many failed attempts");
    std::lock_guard lock(mu_);
    ASSIGN_OR_RETURN(Stmt st, db_->prepare("SELECT u.username, t.permissions, t.expires, t.revoked FROM api_token t "
                                           "JOIN user u ON u.pk = t.user_pk WHERE t.secret_hash = ?"));
    st.bind(1, ByteView(hashBytes(token)));
    ASSIGN_OR_RETURN(bool row, st.step());
    std::string name, perms;
    int64_t expires = 0;
    bool revoked = true;
    if (row) name = st.text(0), perms = st.text(1), expires = st.i64(2), revoked = st.i64(3) != 0;
    st.reset();
    std::optional<UserRow> r;
    if (row) {
      ASSIGN_OR_RETURN(r, loadUser(name));
    }
    if (!r || revoked || nowUnix() >= expires || r->disabled) {
      sources_.recordFailure(from.address, steadyNow());
      audit("token-auth", r ? r->username : "", from, unauthenticated("invalid, expired or revoked token"), "");
      return unauthenticated(kInvalid);
    }
    Principal p = principalOf(*r, "api-token");
    auto bits = parsePermissions(perms);
    // A token narrows what the user may do; restrictions (de-identified only) always stay.
    p.permissions &= (bits.ok() ? *bits : 0) | kPermDeidentified;
    audit("token-auth", r->username, from, okStatus(), "");
    return p;
  }

  StatusOr<Principal> jwt(const std::string& token, const Origin& from) override {
    if (!jwt_) {
      audit("jwt-auth", "", from, unauthenticated("no identity provider configured"), "");
      return unauthenticated(kInvalid);
    }
    if (!sources_.allowed(from.address, steadyNow())) return resourceExhausted("too many failed attempts");
    auto claims = jwt_->verify(token);
    if (!claims.ok()) {
      sources_.recordFailure(from.address, steadyNow());
      audit("jwt-auth", "", from, claims.status(), "");
      return unauthenticated(kInvalid);
    }
    const nlohmann::json& c = *claims;
    auto str = [&](const std::string& k) {
      auto it = c.find(k);
      return it != c.end() && it->is_string() ? it->get<std::string>() : std::string();
    };
    // The identity is the provider's stable subject ("sub", unique per issuer
    // by OIDC Core), never a display name that users can choose or change:
    // principal "oidc:<sub>". It is not merged with a local account of a
    // similar name; roles, site and groups come from the token's claims.
    const std::string sub = str("sub");
    bool printable = !sub.empty() && sub.size() <= 255;
    for (unsigned char ch : sub) printable = printable && ch > 0x20 && ch < 0x7f && ch != ',';
    if (!printable) {
      audit("jwt-auth", "", from, unauthenticated("token without a usable subject"), "");
      return unauthenticated(kInvalid);
    }
    std::lock_guard lock(mu_);
    UserRow r;
    r.username = "oidc:" + sub;
    r.site = str(cfg_.jwt_site_claim);
    std::vector<std::string> roles, groups;
    if (auto it = c.find(cfg_.jwt_roles_claim); it != c.end() && it->is_array())
      for (const auto& v : *it)
        if (v.is_string() && roleExistsLocked(v.get<std::string>())) roles.push_back(v.get<std::string>());
    if (auto it = c.find("groups"); it != c.end() && it->is_array())
      for (const auto& v : *it)
        if (v.is_string() && v.get<std::string>().find(',') == std::string::npos) groups.push_back(v.get<std::string>());
    r.roles = joinList(roles);
    r.groups = joinList(groups);
    const std::string shown = str(cfg_.jwt_username_claim);
    audit("jwt-auth", r.username, from, okStatus(),
          "roles=" + r.roles + (shown.empty() ? "" : " name=" + shown.substr(0, 64)));
    return principalOf(r, "jwt");
  }
  StatusOr<Principal> dicomIdentity(int type, const std::string& primary, const std::string& secondary,
                                    const Origin& from) override {
    if (type == 5) return jwt(primary, from);
    if (type != 2) {
      audit("dicom-identity", "", from, unauthenticated("identity type " + std::to_string(type) + " not accepted"), "");
      return unauthenticated("user identity type not accepted");
    }
    if (secondary.rfind("bat_", 0) == 0) {
      ASSIGN_OR_RETURN(Principal p, apiToken(secondary, from));
      auto n = normalizeUsername(primary);
      if (!n.ok() || *n != p.name) {
        audit("dicom-identity", "", from, unauthenticated("token of another user"), "");
        return unauthenticated(kInvalid);
      }
      return p;
    }
    // Password followed by the current 6-digit TOTP code.
    if (secondary.size() <= 6 || !allDigits(std::string_view(secondary).substr(secondary.size() - 6))) {
      auto r = checkPassword(primary, "", from, "login");  // counts as a failure, same timing
      (void)r;
      return unauthenticated(kInvalid);
    }
    return authenticate(primary, secondary.substr(0, secondary.size() - 6), secondary.substr(secondary.size() - 6),
                        from);
  }

  Principal nodePrincipal(const DicomNode& n) override {
    Principal p;
    p.kind = Principal::Kind::kNode;
    p.name = n.ae_title;
    p.auth_method = n.cert_sha256.empty() ? "address" : "certificate";
    p.permissions = n.permissions;
    p.scope_rules = n.scope_rules;
    p.site = n.site;
    p.via_node = n.ae_title;
    return p;
  }

  StatusOr<Principal> principalFor(const std::string& username) override {
    std::lock_guard lock(mu_);
    ASSIGN_OR_RETURN(auto r, loadUserNormalized(username));
    if (!r) return notFound("no user " + username);
    return principalOf(*r, "local");
  }

  // ---- grants -------------------------------------------------------------
  StatusOr<int64_t> addGrant(const std::string& grantee, const std::string& study_uid, const std::string& patient_id,
                             const std::string& issuer, Seconds lifetime, const std::string& reason,
                             const std::string& by) override {
    return insertGrant(grantee, study_uid, patient_id, issuer, lifetime, "grant", reason, by);
  }

  Status removeGrant(int64_t id, const std::string& by) override {
    std::lock_guard lock(mu_);
    ASSIGN_OR_RETURN(Stmt st, db_->prepare("DELETE FROM access_grant WHERE pk = ?"));
    Status s = st.bind(1, id).run();
    if (s.ok() && sqlite3_changes(db_->raw()) == 0) s = notFound("no grant " + std::to_string(id));
    auditAdmin("grant-remove", "", by, s, "id=" + std::to_string(id));
    return s;
  }

  StatusOr<std::vector<GrantInfo>> listGrants(bool emergency_only) override {
    std::lock_guard lock(mu_);
    ASSIGN_OR_RETURN(Stmt st, db_->prepare("SELECT pk, grantee, COALESCE(study_uid, ''), kind, reason, granted_by, "
                                           "patient_key IS NOT NULL, created, expires FROM access_grant "
                                           "WHERE ? = 0 OR kind = 'emergency' ORDER BY pk"));
    st.bind(1, int64_t{emergency_only});
    std::vector<GrantInfo> out;
    while (true) {
      ASSIGN_OR_RETURN(bool row, st.step());
      if (!row) break;
      out.push_back({st.i64(0), st.text(1), st.text(2), st.text(3), st.text(4), st.text(5), st.i64(6) != 0,
                     st.i64(7), st.i64(8)});
    }
    st.reset();
    return out;
  }

  StatusOr<GrantInfo> breakGlass(const Principal& who, const std::string& study_uid, const std::string& reason,
                                 const Origin& from) override {
    const Decision d = policy_.decide(who, Action::kEmergencyAccess, {study_uid}, clock_.now());
    Status s = d.allowed ? okStatus() : permissionDenied("emergency access not permitted");
    if (s.ok() && reason.size() < 10) s = invalidArgument("state the reason for emergency access (10 characters or more)");
    if (s.ok() && study_uid.empty()) s = invalidArgument("name the study");
    AuditEvent e = event("break-glass", who.name, from, s, "reason: " + reason);
    e.study_uid = study_uid;
    e.rule = d.rule;
    e.severity = "high";
    Status audited = audit_.append(e);
    RETURN_IF_ERROR(s);
    if (!audited.ok()) return unavailable("emergency access needs its audit record: " + audited.message());
    ASSIGN_OR_RETURN(int64_t id, insertGrant("user:" + who.name, study_uid, "", "", cfg_.break_glass, "emergency",
                                             reason, who.name));
    ASSIGN_OR_RETURN(auto all, listGrants(true));
    for (auto& g : all)
      if (g.id == id) return g;
    return internalError("emergency grant vanished");
  }

  // ---- roles --------------------------------------------------------------
  StatusOr<std::vector<Role>> listRoles() override {
    std::lock_guard lock(mu_);
    ASSIGN_OR_RETURN(Stmt st, db_->prepare("SELECT name, permissions, scope, description FROM role ORDER BY name"));
    std::vector<Role> out;
    while (true) {
      ASSIGN_OR_RETURN(bool row, st.step());
      if (!row) break;
      out.push_back({st.text(0), st.text(1), st.text(2), st.text(3)});
    }
    st.reset();
    return out;
  }

  Status setRole(const Role& role, const std::string& by) override {
    RETURN_IF_ERROR(parsePermissions(role.permissions).status());
    RETURN_IF_ERROR(parseScopeRules(role.scope).status());
    if (role.name.empty() || role.name.find(',') != std::string::npos) return invalidArgument("bad role name");
    std::lock_guard lock(mu_);
    ASSIGN_OR_RETURN(Stmt st, db_->prepare("INSERT INTO role(name, permissions, scope, description) VALUES (?, ?, ?, ?) "
                                           "ON CONFLICT(name) DO UPDATE SET permissions = excluded.permissions, "
                                           "scope = excluded.scope, description = excluded.description"));
    Status s = st.bind(1, role.name).bind(2, role.permissions).bind(3, role.scope).bind(4, role.description).run();
    auditAdmin("role-set", "", by, s, role.name + " permissions=" + role.permissions + " scope=" + role.scope);
    return s;
  }

  const Policy& policy() const override { return policy_; }

 private:
  int64_t nowUnix() const {
    return std::chrono::duration_cast<Seconds>(clock_.now().time_since_epoch()).count();
  }
  guard::FailureThrottle::Clock::time_point steadyNow() const {
    return guard::FailureThrottle::Clock::time_point(clock_.now().time_since_epoch());
  }

  std::string oneTimePassword() {
    Bytes raw(15);  // 120 bits -> 24 base32 characters
    random_.fill(raw);
    return auth::base32(raw);
  }

  static StatusOr<std::string> normalizeUsername(const std::string& name) {
    ASSIGN_OR_RETURN(std::string n, auth::normalizePassword(name));
    if (n.empty() || n.size() > 64) return invalidArgument("user names have 1 to 64 characters");
    for (char& c : n) {
      if (static_cast<unsigned char>(c) < 0x20 || c == ':' || c == ',' || c == ' ')
        return invalidArgument("user names contain no spaces, commas, colons or control characters");
      if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
    }
    return n;
  }

  Bytes sealSecret(int64_t pk, ByteView secret) {
    uint8_t nonce[crypto::kGcmNonce];
    random_.fill(nonce);
    Bytes out(nonce, nonce + crypto::kGcmNonce);
    crypto::gcmSeal(totp_key_, nonce, asBytes("totp:" + std::to_string(pk)), secret, out);
    return out;
  }

  StatusOr<Bytes> openSecret(int64_t pk, ByteView sealed) {
    if (sealed.size() < crypto::kGcmNonce) return dataLoss("sealed TOTP secret too short");
    Bytes out;
    RETURN_IF_ERROR(crypto::gcmOpen(totp_key_, sealed.data(), asBytes("totp:" + std::to_string(pk)),
                                    sealed.subspan(crypto::kGcmNonce), out));
    return out;
  }

  Status roleExists(const std::string& role) {
    std::lock_guard lock(mu_);
    return roleExistsLocked(role) ? okStatus() : invalidArgument("unknown role '" + role + "'");
  }
  bool roleExistsLocked(const std::string& role) {
    auto st = db_->prepare("SELECT 1 FROM role WHERE name = ?");
    if (!st.ok()) return false;
    st->bind(1, role);
    auto row = st->step();
    st->reset();
    return row.ok() && *row;
  }

  StatusOr<std::optional<UserRow>> loadUserNormalized(const std::string& username) {
    auto n = normalizeUsername(username);
    if (!n.ok()) return std::optional<UserRow>();
    return loadUser(*n);
  }

  StatusOr<std::optional<UserRow>> loadUser(const std::string& name) {
    ASSIGN_OR_RETURN(Stmt st, db_->prepare("SELECT pk, username, password_hash, roles, site, physician_name, groups, "
                                           "mfa_secret, mfa_pending, mfa_last_step, must_enrol, disabled, "
                                           "failed_logins, created FROM user WHERE username = ?"));
    st.bind(1, name);
    ASSIGN_OR_RETURN(bool row, st.step());
    if (!row) return std::optional<UserRow>();
    UserRow r{st.i64(0), st.text(1), st.text(2), st.text(3), st.text(4), st.text(5), st.text(6), st.blob(7),
              st.blob(8), st.i64(9), st.i64(10) != 0, st.i64(11) != 0, static_cast<int>(st.i64(12)), st.i64(13)};
    st.reset();
    return std::optional<UserRow>(std::move(r));
  }

  UserInfo info(const UserRow& r) {
    return {r.username, splitList(r.roles), splitList(r.groups), r.site, r.physician_name, r.disabled,
            !r.mfa_secret.empty(), r.must_enrol, r.failed_logins, r.created};
  }

  Principal principalOf(const UserRow& r, const std::string& method) {
    Principal p;
    p.kind = Principal::Kind::kUser;
    p.name = r.username;
    p.auth_method = method;
    p.roles = splitList(r.roles);
    p.site = r.site;
    p.physician_name = r.physician_name;
    p.groups = splitList(r.groups);
    for (const auto& role : p.roles) {
      auto st = db_->prepare("SELECT permissions, scope FROM role WHERE name = ?");
      if (!st.ok()) continue;
      st->bind(1, role);
      auto row = st->step();
      if (row.ok() && *row) {
        auto perms = parsePermissions(st->text(0));
        auto scope = parseScopeRules(st->text(1));
        p.permissions |= perms.ok() ? *perms : 0;
        p.scope_rules |= scope.ok() ? *scope : 0;
      }
      st->reset();
    }
    return p;
  }

  // Checks the password under the throttles; returns the user row, or the
  // one error every failure shares. Argon2id runs outside the lock, so slow
  // hashing never stalls sessions, tokens or other logins.
  StatusOr<UserRow> checkPassword(const std::string& username, const std::string& password, const Origin& from,
                                  const char* action) {
    auto norm = normalizeUsername(username);
    const std::string name = norm.ok() ? *norm : std::string("?");
    std::optional<UserRow> r;
    bool locked = false;
    {
      std::lock_guard lock(mu_);
      if (!sources_.allowed(from.address, steadyNow())) {
        audit(action, "", from, resourceExhausted("source address blocked after repeated failures"), "");
        return resourceExhausted("too many failed attempts; try again later");
      }
      auto it = locks_.find(name);
      locked = it != locks_.end() && it->second.locked_until > nowUnix();
      ASSIGN_OR_RETURN(r, loadUser(name));
    }
    if (locked) {
      passwords_.dummyVerify(password);
      std::lock_guard lock(mu_);
      sources_.recordFailure(from.address, steadyNow());
      audit(action, "", from, resourceExhausted("account locked after repeated failures"), "");
      return resourceExhausted("too many failed attempts; try again later");
    }
    const bool ok = r ? passwords_.verify(password, r->password_hash) : (passwords_.dummyVerify(password), false);
    std::optional<std::string> rehash;
    if (ok && passwords_.needsRehash(r->password_hash)) {
      auto h = passwords_.hash(password);
      if (h.ok()) rehash = *h;
    }
    std::lock_guard lock(mu_);
    const bool hard_locked = hard_[hardKey(name, from.address)] >= cfg_.hard_limit;
    if (!ok || r->disabled || hard_locked) {
      recordFailure(name, r ? &*r : nullptr, from,
                    !r ? "unknown user" : !ok ? "password" : r->disabled ? "account disabled" : "hard limit reached");
      return unauthenticated(kInvalid);
    }
    if (rehash) {
      auto st = db_->prepare("UPDATE user SET password_hash = ? WHERE pk = ?");
      if (st.ok()) (void)st->bind(1, *rehash).bind(2, r->pk).run();
    }
    return *r;
  }

  // The consecutive-failure hard limit counts per account and source
  // network (/24, /64): an attacker who reaches it locks out only his own
  // networks, never the account's owner elsewhere.
  static std::string hardKey(const std::string& name, const std::string& address) {
    unsigned char buf[16] = {};
    char out[INET6_ADDRSTRLEN] = {};
    if (inet_pton(AF_INET, address.c_str(), buf) == 1) {
      buf[3] = 0;
      inet_ntop(AF_INET, buf, out, sizeof out);
    } else if (inet_pton(AF_INET6, address.c_str(), buf) == 1) {
      std::fill(buf + 8, buf + 16, 0);
      inet_ntop(AF_INET6, buf, out, sizeof out);
    } else {
      return name + "|" + address;
    }
    return name + "|" + out;
  }

  // "totp" or "recovery-code" as the message of an OK status, or an error.
  Status checkSecondFactor(const UserRow& r, const std::string& factor) {
    if (r.mfa_secret.empty()) return unauthenticated("no second factor enrolled");
    if (factor.size() == 6 && allDigits(factor)) {
      ASSIGN_OR_RETURN(Bytes secret, openSecret(r.pk, r.mfa_secret));
      ASSIGN_OR_RETURN(uint64_t step, auth::verifyTotp(secret, factor, clock_.now(), r.mfa_last_step));
      // Compare-and-set: of two concurrent uses of one code, one wins.
      ASSIGN_OR_RETURN(Stmt st, db_->prepare("UPDATE user SET mfa_last_step = ? WHERE pk = ? AND mfa_last_step < ?"));
      RETURN_IF_ERROR(st.bind(1, static_cast<int64_t>(step)).bind(2, r.pk).bind(3, static_cast<int64_t>(step)).run());
      if (sqlite3_changes(db_->raw()) != 1) return unauthenticated("second factor already used");
      return Status(StatusCode::kOk, "totp");
    }
    std::string code;
    for (char c : factor)
      if (c != '-' && c != ' ') code += static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    if (code.size() != 16) return unauthenticated("invalid second factor");
    ASSIGN_OR_RETURN(Stmt st, db_->prepare("DELETE FROM recovery_code WHERE user_pk = ? AND code_hash = ?"));
    RETURN_IF_ERROR(st.bind(1, r.pk).bind(2, ByteView(hashBytes(code))).run());
    if (sqlite3_changes(db_->raw()) != 1) return unauthenticated("invalid second factor");
    return Status(StatusCode::kOk, "recovery-code");
  }

  void recordFailure(const std::string& name, const UserRow* r, const Origin& from, const std::string& what) {
    sources_.recordFailure(from.address, steadyNow());
    const int64_t now = nowUnix();
    LockState& ls = locks_[name];
    ++ls.consecutive;
    ls.last_failure = now;
    std::string severity, note;
    if (ls.consecutive % cfg_.lock_after == 0) {
      const double factor = std::pow(2.0, std::min(ls.rounds, 20));
      const int64_t secs = std::min<int64_t>(static_cast<int64_t>(cfg_.lock_first.count() * factor),
                                             cfg_.lock_max.count());
      ls.locked_until = now + secs;
      ++ls.rounds;
      severity = "high";
      note = "; account locked for " + std::to_string(secs) + " s";
    }
    if (++hard_[hardKey(name, from.address)] == cfg_.hard_limit) {
      severity = "high";
      note += "; hard limit reached from this network";
    }
    if (r) {
      auto st = db_->prepare("UPDATE user SET failed_logins = failed_logins + 1 WHERE pk = ?");
      if (st.ok()) (void)st->bind(1, r->pk).run();
    }
    AuditEvent e = event("login", r ? r->username : "", from, unauthenticated(what), "");
    e.severity = severity;
    e.detail += note;
    (void)audit_.append(e);
    pruneLocks(now);
  }

  // A success clears the account's counters, not the source's: one good login
  // must not launder an address that sprays guesses at other accounts.
  void recordSuccess(const UserRow& r, const Origin& from) {
    locks_.erase(r.username);
    hard_.erase(hardKey(r.username, from.address));
    auto st = db_->prepare("UPDATE user SET failed_logins = 0 WHERE pk = ?");
    if (st.ok()) (void)st->bind(1, r.pk).run();
  }

  // Forgets names that are neither locked nor recently failing, so that made-up
  // names cannot grow the map without bound nor wash out a target's state.
  void pruneLocks(int64_t now) {
    if (locks_.size() < 10000) return;
    const int64_t quiet = now - cfg_.lock_max.count();
    for (auto it = locks_.begin(); it != locks_.end();)
      it = it->second.locked_until < now && it->second.last_failure < quiet ? locks_.erase(it) : std::next(it);
    if (hard_.size() > 100000)  // keep only the networks that reached the hard limit
      for (auto it = hard_.begin(); it != hard_.end();)
        it = it->second < cfg_.hard_limit ? hard_.erase(it) : std::next(it);
  }

  Status revokeAll(int64_t user_pk, bool tokens) {
    ASSIGN_OR_RETURN(Stmt st, db_->prepare("DELETE FROM session WHERE user_pk = ?"));
    RETURN_IF_ERROR(st.bind(1, user_pk).run());
    if (!tokens) return okStatus();
    ASSIGN_OR_RETURN(Stmt t, db_->prepare("UPDATE api_token SET revoked = 1 WHERE user_pk = ?"));
    return t.bind(1, user_pk).run();
  }

  Status deleteRecoveryCodes(int64_t user_pk) {
    ASSIGN_OR_RETURN(Stmt st, db_->prepare("DELETE FROM recovery_code WHERE user_pk = ?"));
    return st.bind(1, user_pk).run();
  }

  StatusOr<int64_t> insertGrant(const std::string& grantee, const std::string& study_uid, const std::string& patient_id,
                                const std::string& issuer, Seconds lifetime, const std::string& kind,
                                const std::string& reason, const std::string& by) {
    const auto colon = grantee.find(':');
    const std::string type = colon == std::string::npos ? "" : grantee.substr(0, colon);
    if ((type != "user" && type != "group" && type != "node") || colon + 1 >= grantee.size())
      return invalidArgument("grantee must be user:NAME, group:NAME or node:AE");
    std::string subject = grantee;
    if (type == "user" && grantee.rfind("user:oidc:", 0) != 0) {  // local user names are case-insensitive
      ASSIGN_OR_RETURN(std::string n, normalizeUsername(grantee.substr(colon + 1)));
      subject = "user:" + n;
    }
    if (study_uid.empty() == patient_id.empty()) return invalidArgument("grant either a study or a patient");
    if (!study_uid.empty() && !isValidUid(study_uid)) return invalidArgument("invalid Study Instance UID");
    const int64_t now = nowUnix();
    std::lock_guard lock(mu_);
    ASSIGN_OR_RETURN(Stmt st, db_->prepare("INSERT INTO access_grant(grantee, study_uid, patient_key, kind, reason, "
                                           "granted_by, created, expires) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"));
    st.bind(1, subject);
    if (!study_uid.empty()) st.bind(2, study_uid);
    if (!patient_id.empty()) st.bind(3, ByteView(phi_.token("pkey", patient_id + '\\' + issuer)));
    Status s = st.bind(4, kind).bind(5, reason).bind(6, by).bind(7, now)
                   .bind(8, lifetime.count() ? now + lifetime.count() : 0).run();
    const int64_t id = db_->lastInsertId();
    AuditEvent e = event(kind == "emergency" ? "break-glass-grant" : "grant-add", by, {}, s,
                         grantee + (patient_id.empty() ? " study" : " patient") + " id=" + std::to_string(id));
    e.study_uid = study_uid;
    (void)audit_.append(e);
    RETURN_IF_ERROR(s);
    return id;
  }

  AuditEvent event(const std::string& action, const std::string& user, const Origin& from, const Status& s,
                   const std::string& detail) {
    AuditEvent e;
    e.time = clock_.now();
    e.actor_ae = from.node_ae;
    e.source_address = from.address;
    e.cert_sha256 = from.cert_sha256;
    e.action = action;
    e.user = user;
    e.outcome = s.ok() ? "success" : s.code() == StatusCode::kPermissionDenied ? "denied" : "failure";
    e.detail = s.ok() ? detail : s.message() + (detail.empty() ? "" : "; " + detail);
    return e;
  }
  void audit(const std::string& action, const std::string& user, const Origin& from, const Status& s,
             const std::string& detail) {
    (void)audit_.append(event(action, user, from, s, detail));
  }
  void auditAdmin(const std::string& action, const std::string& subject, const std::string& by, const Status& s,
                  const std::string& detail) {
    (void)audit_.append(event(action, by, {"local", "", ""}, s, "user=" + subject + (detail.empty() ? "" : " " + detail)));
  }

  std::recursive_mutex mu_;  // guards db_ and locks_
  std::unique_ptr<Db> db_;
  Random& random_;
  const Clock& clock_;
  AuditLog& audit_;
  AuthConfig cfg_;
  auth::PasswordPolicy passwords_;
  Key256 totp_key_;
  index::PhiCodec phi_;
  guard::FailureThrottle sources_;
  std::map<std::string, LockState> locks_;
  std::map<std::string, int> hard_;  // consecutive failures per "name|network"
  std::unique_ptr<auth::JwtVerifier> jwt_;
  Policy policy_;
};

}  // namespace

Principal AuthService::throughNode(Principal user, const DicomNode& node) {
  user.permissions &= node.permissions | kPermDeidentified;  // restrictions stay
  user.via_node = node.ae_title;
  if (!(node.scope_rules & kScopeAll)) user.restrict_site = node.site;
  return user;
}

StatusOr<std::unique_ptr<AuthService>> AuthService::open(const std::string& db_path, const Keyring& keyring,
                                                         Random& random, const Clock& clock, AuditLog& audit,
                                                         AuthConfig config) {
  ASSIGN_OR_RETURN(auto db, Db::open(db_path));
  std::unordered_set<std::string> blocklist;
  if (!config.blocklist_path.empty()) RETURN_IF_ERROR(auth::PasswordPolicy::loadBlocklist(config.blocklist_path, blocklist));
  auth::PasswordPolicy::parseBlocklist(auth::kBuiltinBlocklist, blocklist);
  auto s = std::make_unique<SqliteAuthService>(std::move(db), keyring, random, clock, audit, std::move(config),
                                               std::move(blocklist));
  RETURN_IF_ERROR(s->init());
  return std::unique_ptr<AuthService>(std::move(s));
}

}  // namespace bastion
