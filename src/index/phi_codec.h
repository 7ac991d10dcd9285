// PhiCodec: encryption of identifying index fields and their blind-index
// tokens. Fields are sealed together with AES-256-GCM under a key derived
// from the KEK ("index-phi-v1"), bound to the row's identity as associated
// data. Tokens are HMAC-SHA256 (key "index-token-v1") of a domain label and
// the normalised value, truncated to 16 bytes.
#pragma once

#include <string>
#include <vector>

#include "bastion/common/clock.h"
#include "bastion/crypto/keyring.h"

namespace bastion::index {

class PhiCodec {
 public:
  // Longest prefix that gets its own token; longer prefixes match through
  // this one plus a check on the decrypted value.
  static constexpr size_t kMaxPrefix = 16;

  PhiCodec(const Keyring& keyring, Random& random);
  Bytes seal(std::string_view row_identity, const std::vector<std::string>& fields) const;
  StatusOr<std::vector<std::string>> open(std::string_view row_identity, ByteView sealed) const;
  Bytes token(std::string_view domain, std::string_view value) const;

 private:
  Key256 enc_key_, token_key_;
  Random& random_;
};

}  // namespace bastion::index
