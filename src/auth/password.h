// Passwords after NIST SP 800-63B: Unicode NFKC normalisation, length
// rules only (no composition rules, no truncation), a blocklist of common
// and breached passwords, Argon2id hashes whose parameters are recorded in
// the hash string so that they can be raised later.
#pragma once

#include <string>
#include <unordered_set>
#include <vector>

#include "bastion/common/status.h"

namespace bastion::auth {

struct PasswordRules {
  size_t min_length_with_mfa = 8;      // code points
  size_t min_length_without_mfa = 15;
  size_t max_length = 256;             // well above the 64 NIST requires; longer is refused, never cut
  // Argon2id cost. Tests lower it; production keeps the defaults (64 MiB, 3 passes).
  unsigned long long ops_limit = 3;
  size_t mem_limit = 64u << 20;
};

// NFKC normalisation of UTF-8 input; kInvalidArgument on invalid UTF-8.
StatusOr<std::string> normalizePassword(std::string_view utf8);

class PasswordPolicy {
 public:
  // `blocklist`: one password per line (compared after normalisation, case-insensitively).
  PasswordPolicy(PasswordRules rules, std::unordered_set<std::string> blocklist);
  // Adds the passwords of the file at `path` to `out`.
  static Status loadBlocklist(const std::string& path, std::unordered_set<std::string>& out);
  // One password per line; '#' starts a comment line. Adds to `out`.
  static void parseBlocklist(std::string_view text, std::unordered_set<std::string>& out);

  // kInvalidArgument with a reason a user can act on, or OK. `context`:
  // words the password must not be (user name, product name).
  Status check(std::string_view password, bool with_mfa, const std::vector<std::string>& context) const;
  // Argon2id hash (a "$argon2id$v=19$m=...,t=...,p=1$..." string) of the normalised password.
  StatusOr<std::string> hash(std::string_view password) const;
  // Constant-work verification. False on mismatch or any malformed input.
  bool verify(std::string_view password, const std::string& hash) const;
  // True if `hash` was made with weaker parameters than the current ones.
  bool needsRehash(const std::string& hash) const;
  // Does the work of verify() against a fixed hash: used for unknown users, so
  // that they cannot be told from wrong passwords by timing.
  void dummyVerify(std::string_view password) const;
  const PasswordRules& rules() const { return rules_; }

 private:
  PasswordRules rules_;
  std::unordered_set<std::string> blocklist_;
  std::string dummy_hash_;
};

}  // namespace bastion::auth
