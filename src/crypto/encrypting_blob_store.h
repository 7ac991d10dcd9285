// EncryptingBlobStore: a BlobStore decorator that encrypts every blob with its
// own 256-bit data key (AES-256-GCM), in fixed-size segments so that large
// objects stream and frames can be read at random offsets.
//
// Layout of the stored bytes:
//   header  = "BSTNENC1" | u32 version=1 | u32 segment_size | wrapped data key (60 bytes)
//   segment = AES-256-GCM(data key, nonce = u32 0 | u64 index (big endian),
//                         ad = object id | u64 index | u8 is_last) -> ciphertext | tag
// The wrapped key is bound to the object id and the header fields, so moving
// a blob to another id, swapping, reordering or dropping segments, or cutting
// the tail all fail authentication (kDataLoss), never yield altered bytes.
#pragma once

#include "bastion/crypto/keyring.h"
#include "bastion/storage/blob_store.h"

namespace bastion::crypto {

class EncryptingBlobStore final : public BlobStore {
 public:
  static constexpr uint32_t kDefaultSegment = 64 * 1024;
  // `inner` and `keyring` must outlive this store.
  EncryptingBlobStore(BlobStore& inner, const Keyring& keyring, Random& random,
                      uint32_t segment_size = kDefaultSegment)
      : inner_(inner), keyring_(keyring), random_(random), segment_(segment_size) {}

  StatusOr<std::unique_ptr<BlobWriter>> create() override;
  StatusOr<std::unique_ptr<BlobReader>> open(const std::string& id) override;
  Status remove(const std::string& id) override { return inner_.remove(id); }
  Status forEach(const std::function<void(const std::string& id)>& fn) override { return inner_.forEach(fn); }

 private:
  BlobStore& inner_;
  const Keyring& keyring_;
  Random& random_;
  uint32_t segment_;
};

}  // namespace bastion::crypto
