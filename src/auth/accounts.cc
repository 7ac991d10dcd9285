// SqliteAuthService: accounts, enrolment, roles, and the row and audit helpers.
#include "auth/blocklist.h"
#include "auth/sqlite_auth_service.h"
#include "auth/totp.h"
#include "bastion/service/archive.h"

namespace bastion::auth {

Status SqliteAuthService::init() {
  if (cfg_.jwks_path.empty()) return okStatus();
  ASSIGN_OR_RETURN(auto keys, auth::JwksKeySet::load(cfg_.jwks_path));
  jwt_ = std::make_unique<auth::JwtVerifier>(
      std::move(keys), auth::JwtConfig{cfg_.jwt_issuer, cfg_.jwt_audiences, cfg_.jwt_leeway}, clock_);
  return okStatus();
}

// ---- accounts ---------------------------------------------------------
StatusOr<std::string> SqliteAuthService::addUser(const NewUser& u, const std::string& by) {
  ASSIGN_OR_RETURN(std::string name, normalizeUsername(u.username));
  for (const auto& r : u.roles) RETURN_IF_ERROR(roleExists(r));
  const std::string otp = oneTimePassword();
  ASSIGN_OR_RETURN(std::string hash, passwords_.hash(otp));
  const int64_t now = nowUnix();
  std::lock_guard lock(mu_);
  ASSIGN_OR_RETURN(Stmt st, db_->prepare("INSERT INTO user(username, password_hash, roles, site, physician_name, "
                                         "groups, must_enrol, created, password_changed) "
                                         "VALUES (?, ?, ?, ?, ?, ?, 1, ?, ?)"));
  Status s = st.bind(1, name)
                 .bind(2, hash)
                 .bind(3, joinList(u.roles))
                 .bind(4, u.site)
                 .bind(5, u.physician_name)
                 .bind(6, joinList(u.groups))
                 .bind(7, now)
                 .bind(8, now)
                 .run();
  if (s.code() == StatusCode::kAlreadyExists) s = alreadyExists("user " + name + " already exists");
  auditAdmin("user-add", name, by, s, "roles=" + joinList(u.roles) + " site=" + u.site);
  RETURN_IF_ERROR(s);
  return otp;
}

StatusOr<std::vector<UserInfo>> SqliteAuthService::listUsers() {
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

StatusOr<UserInfo> SqliteAuthService::showUser(const std::string& username) {
  std::lock_guard lock(mu_);
  ASSIGN_OR_RETURN(auto r, loadUserNormalized(username));
  if (!r) return notFound("no user " + username);
  return info(*r);
}

Status SqliteAuthService::setDisabled(const std::string& username, bool disabled, const std::string& by) {
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

StatusOr<std::string> SqliteAuthService::resetPassword(const std::string& username, const std::string& by) {
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

StatusOr<std::string> SqliteAuthService::resetMfa(const std::string& username, const std::string& by) {
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

Status SqliteAuthService::setRoles(const std::string& username, const std::vector<std::string>& roles,
                                   const std::string& by) {
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
StatusOr<std::optional<Enrolment>> SqliteAuthService::beginEnrolment(const std::string& username,
                                                                     const std::string& password,
                                                                     const std::string& new_password,
                                                                     const Origin& from) {
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

StatusOr<std::vector<std::string>> SqliteAuthService::confirmEnrolment(const std::string& username,
                                                                       const std::string& code, const Origin& from) {
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

Status SqliteAuthService::changePassword(const std::string& username, const std::string& old_password,
                                         const std::string& second_factor, const std::string& new_password,
                                         const Origin& from) {
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

// ---- roles --------------------------------------------------------------
StatusOr<std::vector<AuthService::Role>> SqliteAuthService::listRoles() {
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

Status SqliteAuthService::setRole(const Role& role, const std::string& by) {
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

std::string SqliteAuthService::oneTimePassword() {
  Bytes raw(15);  // 120 bits -> 24 base32 characters
  random_.fill(raw);
  return auth::base32(raw);
}

StatusOr<std::string> SqliteAuthService::normalizeUsername(const std::string& name) {
  ASSIGN_OR_RETURN(std::string n, auth::normalizePassword(name));
  if (n.empty() || n.size() > 64) return invalidArgument("user names have 1 to 64 characters");
  for (char& c : n) {
    if (static_cast<unsigned char>(c) < 0x20 || c == ':' || c == ',' || c == ' ')
      return invalidArgument("user names contain no spaces, commas, colons or control characters");
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  return n;
}

Bytes SqliteAuthService::sealSecret(int64_t pk, ByteView secret) {
  uint8_t nonce[crypto::kGcmNonce];
  random_.fill(nonce);
  Bytes out(nonce, nonce + crypto::kGcmNonce);
  crypto::gcmSeal(totp_key_, nonce, asBytes("totp:" + std::to_string(pk)), secret, out);
  return out;
}

StatusOr<Bytes> SqliteAuthService::openSecret(int64_t pk, ByteView sealed) {
  if (sealed.size() < crypto::kGcmNonce) return dataLoss("sealed TOTP secret too short");
  Bytes out;
  RETURN_IF_ERROR(crypto::gcmOpen(totp_key_, sealed.data(), asBytes("totp:" + std::to_string(pk)),
                                  sealed.subspan(crypto::kGcmNonce), out));
  return out;
}

Status SqliteAuthService::roleExists(const std::string& role) {
  std::lock_guard lock(mu_);
  return roleExistsLocked(role) ? okStatus() : invalidArgument("unknown role '" + role + "'");
}

bool SqliteAuthService::roleExistsLocked(const std::string& role) {
  auto st = db_->prepare("SELECT 1 FROM role WHERE name = ?");
  if (!st.ok()) return false;
  st->bind(1, role);
  auto row = st->step();
  st->reset();
  return row.ok() && *row;
}

StatusOr<std::optional<UserRow>> SqliteAuthService::loadUserNormalized(const std::string& username) {
  auto n = normalizeUsername(username);
  if (!n.ok()) return std::optional<UserRow>();
  return loadUser(*n);
}

StatusOr<std::optional<UserRow>> SqliteAuthService::loadUser(const std::string& name) {
  ASSIGN_OR_RETURN(Stmt st, db_->prepare("SELECT pk, username, password_hash, roles, site, physician_name, groups, "
                                         "mfa_secret, mfa_pending, mfa_last_step, must_enrol, disabled, "
                                         "failed_logins, created FROM user WHERE username = ?"));
  st.bind(1, name);
  ASSIGN_OR_RETURN(bool row, st.step());
  if (!row) return std::optional<UserRow>();
  UserRow r{st.i64(0),
            st.text(1),
            st.text(2),
            st.text(3),
            st.text(4),
            st.text(5),
            st.text(6),
            st.blob(7),
            st.blob(8),
            st.i64(9),
            st.i64(10) != 0,
            st.i64(11) != 0,
            static_cast<int>(st.i64(12)),
            st.i64(13)};
  st.reset();
  return std::optional<UserRow>(std::move(r));
}

UserInfo SqliteAuthService::info(const UserRow& r) {
  return {r.username, splitList(r.roles),    splitList(r.groups), r.site,          r.physician_name,
          r.disabled, !r.mfa_secret.empty(), r.must_enrol,        r.failed_logins, r.created};
}

Principal SqliteAuthService::principalOf(const UserRow& r, const std::string& method) {
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

Status SqliteAuthService::revokeAll(int64_t user_pk, bool tokens) {
  ASSIGN_OR_RETURN(Stmt st, db_->prepare("DELETE FROM session WHERE user_pk = ?"));
  RETURN_IF_ERROR(st.bind(1, user_pk).run());
  if (!tokens) return okStatus();
  ASSIGN_OR_RETURN(Stmt t, db_->prepare("UPDATE api_token SET revoked = 1 WHERE user_pk = ?"));
  return t.bind(1, user_pk).run();
}

Status SqliteAuthService::deleteRecoveryCodes(int64_t user_pk) {
  ASSIGN_OR_RETURN(Stmt st, db_->prepare("DELETE FROM recovery_code WHERE user_pk = ?"));
  return st.bind(1, user_pk).run();
}

AuditEvent SqliteAuthService::event(const std::string& action, const std::string& user, const Origin& from,
                                    const Status& s, const std::string& detail) {
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

void SqliteAuthService::audit(const std::string& action, const std::string& user, const Origin& from, const Status& s,
                              const std::string& detail) {
  (void)audit_.append(event(action, user, from, s, detail));
}

void SqliteAuthService::auditAdmin(const std::string& action, const std::string& subject, const std::string& by,
                                   const Status& s, const std::string& detail) {
  (void)audit_.append(
      event(action, by, {"local", "", ""}, s, "user=" + subject + (detail.empty() ? "" : " " + detail)));
}

}  // namespace bastion::auth

namespace bastion {

Principal AuthService::throughNode(Principal user, const DicomNode& node) {
  user.permissions &= node.permissions | kPermDeidentified;  // restrictions stay
  user.via_node = node.ae_title;
  if (!(node.scope_rules & kScopeAll)) user.restrict_site = node.site;
  return user;
}

StatusOr<std::unique_ptr<AuthService>> AuthService::open(const std::string& db_path, const Keyring& keyring,
                                                         Random& random, const Clock& clock, AuditLog& audit,
                                                         AuthConfig config) {
  ASSIGN_OR_RETURN(auto db, index::Db::open(db_path));
  std::unordered_set<std::string> blocklist;
  if (!config.blocklist_path.empty())
    RETURN_IF_ERROR(auth::PasswordPolicy::loadBlocklist(config.blocklist_path, blocklist));
  auth::PasswordPolicy::parseBlocklist(auth::kBuiltinBlocklist, blocklist);
  auto s = std::make_unique<auth::SqliteAuthService>(std::move(db), keyring, random, clock, audit, std::move(config),
                                                     std::move(blocklist));
  RETURN_IF_ERROR(s->init());
  return std::unique_ptr<AuthService>(std::move(s));
}

}  // namespace bastion
