// Keyring: holds the key-encryption key (KEK) and derives every other key
// from it. The KEK lives in a file with mode 0600 outside the data directory
// (an HSM-backed Keyring can replace this one later).
//
//   KEK --wrap--> per-object data keys (EncryptingBlobStore)
//   KEK --HKDF(label)--> index field key, blind-index key, audit key
#pragma once

#include <array>
#include <memory>
#include <string>

#include "bastion/common/bytes.h"
#include "bastion/common/clock.h"
#include "bastion/common/status.h"

namespace bastion {

using Key256 = std::array<uint8_t, 32>;

class Keyring {
 public:
  virtual ~Keyring() = default;
  // Encrypts a 32-byte data key under the KEK, bound to `context` (e.g. the
  // object id). Output: 12-byte nonce || 32-byte ciphertext || 16-byte tag.
  virtual Bytes wrap(const Key256& data_key, ByteView context) const = 0;
  // Reverses wrap(). kDataLoss if the wrapped key or context was altered.
  virtual StatusOr<Key256> unwrap(ByteView wrapped, ByteView context) const = 0;
  // A key for one purpose, derived with HKDF-SHA256 from the KEK and `label`.
  virtual Key256 derive(std::string_view label) const = 0;
};

// Loads a key file written by createKeyFile(). Refuses a file whose mode
// lets anyone but the owner read it (kPermissionDenied).
StatusOr<std::unique_ptr<Keyring>> loadFileKeyring(const std::string& path, Random& random);
// Creates a new random 256-bit KEK file with mode 0600; kAlreadyExists if the
// file exists (init never overwrites a key).
Status createKeyFile(const std::string& path, Random& random);
// A keyring over an in-memory KEK (tests, tools).
std::unique_ptr<Keyring> makeKeyring(const Key256& kek, Random& random);

}  // namespace bastion
