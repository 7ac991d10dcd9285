// Thin, checked wrappers over OpenSSL for the primitives Bastion uses:
// AES-256-GCM, SHA-256, HMAC-SHA256, HKDF-SHA256.
#pragma once

#include <array>
#include <memory>

#include "bastion/common/bytes.h"
#include "bastion/common/status.h"
#include "bastion/crypto/keyring.h"

namespace bastion::crypto {

constexpr size_t kGcmNonce = 12;
constexpr size_t kGcmTag = 16;
using Digest = std::array<uint8_t, 32>;

// Encrypts `plain` and appends ciphertext || tag to `out`.
void gcmSeal(const Key256& key, const uint8_t nonce[kGcmNonce], ByteView ad, ByteView plain, Bytes& out);
// Decrypts `sealed` (ciphertext || tag) into `out` (resized). kDataLoss on a bad tag.
Status gcmOpen(const Key256& key, const uint8_t nonce[kGcmNonce], ByteView ad, ByteView sealed, Bytes& out);

Digest sha256(ByteView data);
Digest hmacSha256(const Key256& key, ByteView data);
Key256 hkdfSha256(ByteView ikm, std::string_view label);

// Incremental SHA-256.
class Sha256 {
 public:
  Sha256();
  ~Sha256();
  Sha256(const Sha256&) = delete;
  Sha256& operator=(const Sha256&) = delete;
  void update(ByteView data);
  Digest finish();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// Constant-time comparison.
bool equalConstantTime(ByteView a, ByteView b);

}  // namespace bastion::crypto
