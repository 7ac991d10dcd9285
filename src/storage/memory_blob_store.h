// MemoryBlobStore: an in-memory BlobStore for tests, with fault injection
// (like LevelDB's memenv + ErrorEnv): fail the next N commits, or corrupt a
// stored byte to simulate tampering.
#pragma once

#include <map>
#include <mutex>

#include "bastion/common/clock.h"
#include "bastion/storage/blob_store.h"

namespace bastion::storage {

class MemoryBlobStore final : public BlobStore {
 public:
  explicit MemoryBlobStore(Random& random) : random_(random) {}

  StatusOr<std::unique_ptr<BlobWriter>> create() override;
  StatusOr<std::unique_ptr<BlobReader>> open(const std::string& id) override;
  Status remove(const std::string& id) override;
  Status forEach(const std::function<void(const std::string& id)>& fn) override;

  void failNextCommits(int n);
  // Direct access to stored bytes, for tampering tests. Empty if absent.
  Bytes* raw(const std::string& id);
  size_t count();

 private:
  friend class MemoryWriter;
  Status commitBlob(const std::string& id, Bytes data);
  Random& random_;
  std::mutex mu_;
  std::map<std::string, std::shared_ptr<Bytes>> blobs_;
  int fail_commits_ = 0;
};

}  // namespace bastion::storage
