// AuthService: accounts, second factors, sessions, API tokens, external
// (OIDC/JWT) identities, grants and break-glass. Every front-end turns the
// credentials it received into a Principal here; Policy decides what the
// Principal may do. Secrets are kept only as hashes (or sealed under a
// keyring key: TOTP secrets). Every success and failure is audited, and no
// response or log tells an unknown user from a wrong password.
// Thread-safe.
#pragma once

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "bastion/audit/audit_log.h"
#include "bastion/auth/policy.h"
#include "bastion/auth/principal.h"
#include "bastion/common/clock.h"
#include "bastion/crypto/keyring.h"
#include "bastion/service/node_registry.h"

namespace bastion {

struct AuthConfig {
  // Password rules and Argon2id cost (see auth/password.h).
  size_t min_password_with_mfa = 8, min_password_without_mfa = 15, max_password = 256;
  unsigned long long argon2_ops = 3;
  size_t argon2_mem_kib = 65536;
  std::string blocklist_path;  // one password per line; "" = built-in list only
  std::chrono::seconds session_idle{30 * 60};
  std::chrono::seconds session_absolute{12 * 3600};
  std::chrono::seconds break_glass{4 * 3600};
  std::chrono::seconds max_token_lifetime{365 * 24 * 3600};
  // Account throttling: after `lock_after` consecutive failures the account
  // is locked for `lock_first`, doubling per further round up to `lock_max`;
  // after `hard_limit` consecutive failures it stays locked until an admin
  // enables it (NIST SP 800-63B: at most 100). Per source address:
  // `source_failures` within `source_window` block that address for `source_block`.
  int lock_after = 10;
  std::chrono::seconds lock_first{60};
  std::chrono::seconds lock_max{3600};
  int hard_limit = 100;
  int source_failures = 30;
  std::chrono::seconds source_window{600};
  std::chrono::seconds source_block{900};
  // External identity provider (OIDC access tokens as JWT).
  std::string jwks_path;  // "" = JWT identities refused
  std::string jwt_issuer;
  std::vector<std::string> jwt_audiences;
  std::chrono::seconds jwt_leeway{60};
  std::string jwt_username_claim = "preferred_username";
  std::string jwt_roles_claim = "roles";  // array of role names; unknown names are ignored
  std::string jwt_site_claim = "site";
  std::string totp_issuer = "Bastion";
};

struct NewUser {
  std::string username;
  std::vector<std::string> roles;
  std::string site = "main";
  std::string physician_name;  // DICOM PN as a referring physician, if the user is one
  std::vector<std::string> groups;
};

struct UserInfo {
  std::string username;
  std::vector<std::string> roles, groups;
  std::string site, physician_name;
  bool disabled = false, mfa_enrolled = false, must_enrol = false;
  int failed_logins = 0;
  int64_t created = 0;
};

struct Enrolment {
  std::string secret_base32;  // shown once, with the URI and QR code
  std::string otpauth_uri;
  std::string qr;
};

struct ApiTokenInfo {
  std::string id, username, name, permissions;
  int64_t created = 0, expires = 0;
  bool revoked = false;
};

struct GrantInfo {
  int64_t id = 0;
  std::string grantee, study_uid, kind, reason, granted_by;
  bool patient = false;  // a patient grant (the patient id is not stored, only its key)
  int64_t created = 0, expires = 0;
};

// Where a request came from, for throttling and audit.
struct Origin {
  std::string address;
  std::string node_ae;
  std::string cert_sha256;
};

class AuthService {
 public:
  static StatusOr<std::unique_ptr<AuthService>> open(const std::string& db_path, const Keyring& keyring,
                                                     Random& random, const Clock& clock, AuditLog& audit,
                                                     AuthConfig config);
  virtual ~AuthService() = default;

  // ---- accounts (admin) -------------------------------------------------
  // Creates the account; returns its one-time password (shown once). The user
  // must then enrol: choose a password and a second factor.
  virtual StatusOr<std::string> addUser(const NewUser& user, const std::string& by) = 0;
  virtual StatusOr<std::vector<UserInfo>> listUsers() = 0;
  virtual StatusOr<UserInfo> showUser(const std::string& username) = 0;
  // Disabling revokes every session and API token of the user.
  virtual Status setDisabled(const std::string& username, bool disabled, const std::string& by) = 0;
  // New one-time password; sessions revoked; the user re-enrols (keeps MFA).
  virtual StatusOr<std::string> resetPassword(const std::string& username, const std::string& by) = 0;
  // Removes the second factor and recovery codes, revokes sessions and
  // tokens, and issues a one-time password: the owner enrols again.
  virtual StatusOr<std::string> resetMfa(const std::string& username, const std::string& by) = 0;
  virtual Status setRoles(const std::string& username, const std::vector<std::string>& roles,
                          const std::string& by) = 0;

  // ---- enrolment (the user) -----------------------------------------------
  // Checks `password` (one-time or current); if the account holds a one-time
  // password, `new_password` is required and set. Returns a new TOTP secret to
  // confirm with confirmEnrolment() (if the user has none yet).
  virtual StatusOr<std::optional<Enrolment>> beginEnrolment(const std::string& username, const std::string& password,
                                                            const std::string& new_password, const Origin& from) = 0;
  // Activates the pending secret with its first code; returns 10 single-use recovery codes (shown once).
  virtual StatusOr<std::vector<std::string>> confirmEnrolment(const std::string& username, const std::string& code,
                                                              const Origin& from) = 0;
  virtual Status changePassword(const std::string& username, const std::string& old_password,
                                const std::string& second_factor, const std::string& new_password,
                                const Origin& from) = 0;

  // ---- authentication ---------------------------------------------------
  // Password + second factor (TOTP code or recovery code). One error for every
  // failure (kUnauthenticated "invalid credentials"), or kResourceExhausted
  // while throttled.
  virtual StatusOr<Principal> authenticate(const std::string& username, const std::string& password,
                                           const std::string& second_factor, const Origin& from) = 0;
  // authenticate() then a session: returns the session token (>= 256 bits).
  virtual StatusOr<std::string> login(const std::string& username, const std::string& password,
                                      const std::string& second_factor, const Origin& from) = 0;
  virtual StatusOr<Principal> session(const std::string& token) = 0;
  virtual Status logout(const std::string& token) = 0;
  // Personal API tokens: shown once; `permissions` is a subset of the user's.
  virtual StatusOr<std::string> createApiToken(const std::string& username, const std::string& name,
                                               uint32_t permissions, std::chrono::seconds lifetime,
                                               const std::string& by) = 0;
  virtual StatusOr<std::vector<ApiTokenInfo>> listApiTokens(const std::string& username) = 0;
  virtual Status revokeApiToken(const std::string& id, const std::string& by) = 0;
  virtual StatusOr<Principal> apiToken(const std::string& token, const Origin& from) = 0;
  // An access token of the configured identity provider.
  virtual StatusOr<Principal> jwt(const std::string& token, const Origin& from) = 0;
  // DICOM User Identity Negotiation (PS3.7 D.3.3.7): type 2 (user name +
  // passcode, the passcode being an API token of that user or the password
  // followed by the current TOTP code) and type 5 (JWT). Other types refused.
  virtual StatusOr<Principal> dicomIdentity(int type, const std::string& primary, const std::string& secondary,
                                            const Origin& from) = 0;
  // A registered node acting on its own: its permissions, its site's studies.
  virtual Principal nodePrincipal(const DicomNode& node) = 0;
  // The user principal restricted to what the node it came through may do.
  static Principal throughNode(Principal user, const DicomNode& node);
  virtual StatusOr<Principal> principalFor(const std::string& username) = 0;

  // ---- grants and break-glass -------------------------------------------
  // Grants `grantee` ("user:x", "group:y", "node:AE") a study or a patient (by
  // PatientID + issuer). `lifetime` 0: until revoked.
  virtual StatusOr<int64_t> addGrant(const std::string& grantee, const std::string& study_uid,
                                     const std::string& patient_id, const std::string& issuer,
                                     std::chrono::seconds lifetime, const std::string& reason,
                                     const std::string& by) = 0;
  virtual Status removeGrant(int64_t id, const std::string& by) = 0;
  virtual StatusOr<std::vector<GrantInfo>> listGrants(bool emergency_only) = 0;
  // Break-glass: a principal with emergency_access opens `study_uid` for the
  // configured time, stating a reason. High-severity audit event.
  virtual StatusOr<GrantInfo> breakGlass(const Principal& who, const std::string& study_uid,
                                         const std::string& reason, const Origin& from) = 0;

  // ---- roles (data) -----------------------------------------------------
  struct Role {
    std::string name, permissions, scope, description;
  };
  virtual StatusOr<std::vector<Role>> listRoles() = 0;
  virtual Status setRole(const Role& role, const std::string& by) = 0;

  virtual const Policy& policy() const = 0;
};

}  // namespace bastion
