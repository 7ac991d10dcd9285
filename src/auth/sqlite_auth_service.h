// SqliteAuthService: AuthService on the archive's SQLite database (tables in
// src/index/migrations/0002_identity.sql), on its own connection. Its
// methods live in accounts.cc (accounts, enrolment, roles, row helpers),
// authentication.cc (passwords, second factors, sessions, tokens, JWT,
// throttling) and grants.cc (grants and break-glass). Internal to src/auth.
#pragma once

#include <map>
#include <mutex>
#include <optional>

#include "auth/jwt.h"
#include "auth/password.h"
#include "bastion/auth/auth_service.h"
#include "crypto/aead.h"
#include "guard/failure_throttle.h"
#include "index/phi_codec.h"
#include "index/sqlite/sqlite_db.h"

namespace bastion::auth {

using index::Db;
using index::Stmt;
using Seconds = std::chrono::seconds;

inline constexpr const char* kInvalid = "invalid credentials";
inline constexpr int kRecoveryCodes = 10;

inline std::vector<std::string> splitList(const std::string& s) {
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

inline std::string joinList(const std::vector<std::string>& v) {
  std::string s;
  for (const auto& x : v) s += (s.empty() ? "" : ",") + x;
  return s;
}

inline Bytes hashBytes(std::string_view secret) {
  auto d = crypto::sha256(asBytes(secret));
  return Bytes(d.begin(), d.end());
}

inline bool allDigits(std::string_view s) {
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
  SqliteAuthService(std::unique_ptr<Db> db, const Keyring& keyring, Random& random, const Clock& clock, AuditLog& audit,
                    AuthConfig cfg, std::unordered_set<std::string> blocklist)
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

  Status init();
  // ---- accounts ---------------------------------------------------------
  StatusOr<std::string> addUser(const NewUser& u, const std::string& by) override;
  StatusOr<std::vector<UserInfo>> listUsers() override;
  StatusOr<UserInfo> showUser(const std::string& username) override;
  Status setDisabled(const std::string& username, bool disabled, const std::string& by) override;
  StatusOr<std::string> resetPassword(const std::string& username, const std::string& by) override;
  StatusOr<std::string> resetMfa(const std::string& username, const std::string& by) override;
  Status setRoles(const std::string& username, const std::vector<std::string>& roles, const std::string& by) override;
  // ---- enrolment ----------------------------------------------------------
  StatusOr<std::optional<Enrolment>> beginEnrolment(const std::string& username, const std::string& password,
                                                    const std::string& new_password, const Origin& from) override;
  StatusOr<std::vector<std::string>> confirmEnrolment(const std::string& username, const std::string& code,
                                                      const Origin& from) override;
  Status changePassword(const std::string& username, const std::string& old_password, const std::string& second_factor,
                        const std::string& new_password, const Origin& from) override;
  // ---- authentication -----------------------------------------------------
  StatusOr<Principal> authenticate(const std::string& username, const std::string& password,
                                   const std::string& second_factor, const Origin& from) override;
  StatusOr<std::string> login(const std::string& username, const std::string& password,
                              const std::string& second_factor, const Origin& from) override;
  StatusOr<Principal> session(const std::string& token) override;
  Status logout(const std::string& token) override;
  StatusOr<std::string> createApiToken(const std::string& username, const std::string& name, uint32_t permissions,
                                       Seconds lifetime, const std::string& by) override;
  StatusOr<std::vector<ApiTokenInfo>> listApiTokens(const std::string& username) override;
  Status revokeApiToken(const std::string& id, const std::string& by) override;
  StatusOr<Principal> apiToken(const std::string& token, const Origin& from) override;
  StatusOr<Principal> jwt(const std::string& token, const Origin& from) override;
  StatusOr<Principal> dicomIdentity(int type, const std::string& primary, const std::string& secondary,
                                    const Origin& from) override;
  Principal nodePrincipal(const DicomNode& n) override;
  StatusOr<Principal> principalFor(const std::string& username) override;
  // ---- grants -------------------------------------------------------------
  StatusOr<int64_t> addGrant(const std::string& grantee, const std::string& study_uid, const std::string& patient_id,
                             const std::string& issuer, Seconds lifetime, const std::string& reason,
                             const std::string& by) override;
  Status removeGrant(int64_t id, const std::string& by) override;
  StatusOr<std::vector<GrantInfo>> listGrants(bool emergency_only) override;
  StatusOr<GrantInfo> breakGlass(const Principal& who, const std::string& study_uid, const std::string& reason,
                                 const Origin& from) override;
  // ---- roles --------------------------------------------------------------
  StatusOr<std::vector<Role>> listRoles() override;
  Status setRole(const Role& role, const std::string& by) override;
  const Policy& policy() const override { return policy_; }

 private:
  int64_t nowUnix() const { return std::chrono::duration_cast<Seconds>(clock_.now().time_since_epoch()).count(); }
  guard::FailureThrottle::Clock::time_point steadyNow() const {
    return guard::FailureThrottle::Clock::time_point(clock_.now().time_since_epoch());
  }
  std::string oneTimePassword();
  static StatusOr<std::string> normalizeUsername(const std::string& name);
  Bytes sealSecret(int64_t pk, ByteView secret);
  StatusOr<Bytes> openSecret(int64_t pk, ByteView sealed);
  Status roleExists(const std::string& role);
  bool roleExistsLocked(const std::string& role);
  StatusOr<std::optional<UserRow>> loadUserNormalized(const std::string& username);
  StatusOr<std::optional<UserRow>> loadUser(const std::string& name);
  UserInfo info(const UserRow& r);
  Principal principalOf(const UserRow& r, const std::string& method);
  // Checks the password under the throttles; returns the user row, or the
  // one error every failure shares. Argon2id runs outside the lock, so slow
  // hashing never stalls sessions, tokens or other logins.
  StatusOr<UserRow> checkPassword(const std::string& username, const std::string& password, const Origin& from,
                                  const char* action);
  // The consecutive-failure hard limit counts per account and source
  // network (/24, /64): an attacker who reaches it locks out only his own
  // networks, never the account's owner elsewhere.
  static std::string hardKey(const std::string& name, const std::string& address);
  // "totp" or "recovery-code" as the message of an OK status, or an error.
  Status checkSecondFactor(const UserRow& r, const std::string& factor);
  void recordFailure(const std::string& name, const UserRow* r, const Origin& from, const std::string& what);
  // A success clears the account's counters, not the source's: one good login
  // must not launder an address that sprays guesses at other accounts.
  void recordSuccess(const UserRow& r, const Origin& from);
  // Forgets names that are neither locked nor recently failing, so that made-up
  // names cannot grow the map without bound nor wash out a target's state.
  void pruneLocks(int64_t now);
  Status revokeAll(int64_t user_pk, bool tokens);
  Status deleteRecoveryCodes(int64_t user_pk);
  StatusOr<int64_t> insertGrant(const std::string& grantee, const std::string& study_uid, const std::string& patient_id,
                                const std::string& issuer, Seconds lifetime, const std::string& kind,
                                const std::string& reason, const std::string& by);
  AuditEvent event(const std::string& action, const std::string& user, const Origin& from, const Status& s,
                   const std::string& detail);
  void audit(const std::string& action, const std::string& user, const Origin& from, const Status& s,
             const std::string& detail);
  void auditAdmin(const std::string& action, const std::string& subject, const std::string& by, const Status& s,
                  const std::string& detail);
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

}  // namespace bastion::auth
