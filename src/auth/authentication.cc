// SqliteAuthService: passwords, second factors, sessions, API tokens, OIDC/JWT,
// DICOM identities and throttling.
#include <arpa/inet.h>

#include <algorithm>
#include <cmath>

#include "auth/sqlite_auth_service.h"
#include "auth/totp.h"

namespace bastion::auth {

// ---- authentication -----------------------------------------------------
StatusOr<Principal> SqliteAuthService::authenticate(const std::string& username, const std::string& password,
                                                    const std::string& second_factor, const Origin& from) {
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

StatusOr<std::string> SqliteAuthService::login(const std::string& username, const std::string& password,
                                               const std::string& second_factor, const Origin& from) {
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
  RETURN_IF_ERROR(st.bind(1, ByteView(hashBytes(token)))
                      .bind(2, r->pk)
                      .bind(3, now)
                      .bind(4, now)
                      .bind(5, now + cfg_.session_absolute.count())
                      .run());
  audit("session-issue", p.name, from, okStatus(), "");
  return token;
}

StatusOr<Principal> SqliteAuthService::session(const std::string& token) {
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

Status SqliteAuthService::logout(const std::string& token) {
  std::lock_guard lock(mu_);
  ASSIGN_OR_RETURN(Stmt del, db_->prepare("DELETE FROM session WHERE token_hash = ?"));
  return del.bind(1, ByteView(hashBytes(token))).run();
}

StatusOr<std::string> SqliteAuthService::createApiToken(const std::string& username, const std::string& name,
                                                        uint32_t permissions, Seconds lifetime, const std::string& by) {
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
  Status s = st.bind(1, toHex(id))
                 .bind(2, ByteView(hashBytes(token)))
                 .bind(3, r->pk)
                 .bind(4, name)
                 .bind(5, formatPermissions(permissions))
                 .bind(6, now)
                 .bind(7, now + lifetime.count())
                 .run();
  auditAdmin("token-issue", r->username, by, s, "id=" + toHex(id) + " permissions=" + formatPermissions(permissions));
  RETURN_IF_ERROR(s);
  return token;
}

StatusOr<std::vector<ApiTokenInfo>> SqliteAuthService::listApiTokens(const std::string& username) {
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

Status SqliteAuthService::revokeApiToken(const std::string& id, const std::string& by) {
  std::lock_guard lock(mu_);
  ASSIGN_OR_RETURN(Stmt st, db_->prepare("UPDATE api_token SET revoked = 1 WHERE id = ?"));
  Status s = st.bind(1, id).run();
  if (s.ok() && sqlite3_changes(db_->raw()) == 0) s = notFound("no token " + id);
  auditAdmin("token-revoke", "", by, s, "id=" + id);
  return s;
}

StatusOr<Principal> SqliteAuthService::apiToken(const std::string& token, const Origin& from) {
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

StatusOr<Principal> SqliteAuthService::jwt(const std::string& token, const Origin& from) {
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

StatusOr<Principal> SqliteAuthService::dicomIdentity(int type, const std::string& primary, const std::string& secondary,
                                                     const Origin& from) {
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
  return authenticate(primary, secondary.substr(0, secondary.size() - 6), secondary.substr(secondary.size() - 6), from);
}

Principal SqliteAuthService::nodePrincipal(const DicomNode& n) {
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

StatusOr<Principal> SqliteAuthService::principalFor(const std::string& username) {
  std::lock_guard lock(mu_);
  ASSIGN_OR_RETURN(auto r, loadUserNormalized(username));
  if (!r) return notFound("no user " + username);
  return principalOf(*r, "local");
}

// Checks the password under the throttles; returns the user row, or the
// one error every failure shares. Argon2id runs outside the lock, so slow
// hashing never stalls sessions, tokens or other logins.
StatusOr<UserRow> SqliteAuthService::checkPassword(const std::string& username, const std::string& password,
                                                   const Origin& from, const char* action) {
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
                  !r            ? "unknown user"
                  : !ok         ? "password"
                  : r->disabled ? "account disabled"
                                : "hard limit reached");
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
std::string SqliteAuthService::hardKey(const std::string& name, const std::string& address) {
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
Status SqliteAuthService::checkSecondFactor(const UserRow& r, const std::string& factor) {
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

void SqliteAuthService::recordFailure(const std::string& name, const UserRow* r, const Origin& from,
                                      const std::string& what) {
  sources_.recordFailure(from.address, steadyNow());
  const int64_t now = nowUnix();
  LockState& ls = locks_[name];
  ++ls.consecutive;
  ls.last_failure = now;
  std::string severity, note;
  if (ls.consecutive % cfg_.lock_after == 0) {
    const double factor = std::pow(2.0, std::min(ls.rounds, 20));
    const int64_t secs =
        std::min<int64_t>(static_cast<int64_t>(cfg_.lock_first.count() * factor), cfg_.lock_max.count());
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
void SqliteAuthService::recordSuccess(const UserRow& r, const Origin& from) {
  locks_.erase(r.username);
  hard_.erase(hardKey(r.username, from.address));
  auto st = db_->prepare("UPDATE user SET failed_logins = 0 WHERE pk = ?");
  if (st.ok()) (void)st->bind(1, r.pk).run();
}

// Forgets names that are neither locked nor recently failing, so that made-up
// names cannot grow the map without bound nor wash out a target's state.
void SqliteAuthService::pruneLocks(int64_t now) {
  if (locks_.size() < 10000) return;
  const int64_t quiet = now - cfg_.lock_max.count();
  for (auto it = locks_.begin(); it != locks_.end();)
    it = it->second.locked_until < now && it->second.last_failure < quiet ? locks_.erase(it) : std::next(it);
  if (hard_.size() > 100000)  // keep only the networks that reached the hard limit
    for (auto it = hard_.begin(); it != hard_.end();)
      it = it->second < cfg_.hard_limit ? hard_.erase(it) : std::next(it);
}

}  // namespace bastion::auth
