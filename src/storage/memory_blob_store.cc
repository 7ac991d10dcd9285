#include "storage/memory_blob_store.h"

#include <algorithm>
#include <cstring>

namespace bastion::storage {

class MemoryWriter final : public BlobWriter {
 public:
  MemoryWriter(MemoryBlobStore& store, std::string id) : store_(store), id_(std::move(id)) {}
  const std::string& id() const override { return id_; }
  Status append(ByteView data) override {
    data_.insert(data_.end(), data.begin(), data.end());
    return okStatus();
  }
  Status commit() override { return store_.commitBlob(id_, std::move(data_)); }

 private:
  MemoryBlobStore& store_;
  std::string id_;
  Bytes data_;
};

namespace {
class MemoryReader final : public BlobReader {
 public:
  explicit MemoryReader(std::shared_ptr<Bytes> data) : data_(std::move(data)) {}
  uint64_t size() const override { return data_->size(); }
  StatusOr<size_t> read(uint64_t offset, std::span<uint8_t> out) override {
    if (offset >= data_->size()) return size_t{0};
    size_t n = std::min<size_t>(out.size(), data_->size() - offset);
    std::memcpy(out.data(), data_->data() + offset, n);
    return n;
  }

 private:
  std::shared_ptr<Bytes> data_;
};
}  // namespace

StatusOr<std::unique_ptr<BlobWriter>> MemoryBlobStore::create() {
  return std::unique_ptr<BlobWriter>(new MemoryWriter(*this, newUuid(random_)));
}

Status MemoryBlobStore::commitBlob(const std::string& id, Bytes data) {
  std::lock_guard lock(mu_);
  if (fail_commits_ > 0) {
    --fail_commits_;
    return unavailable("injected commit failure");
  }
  blobs_[id] = std::make_shared<Bytes>(std::move(data));
  return okStatus();
}

StatusOr<std::unique_ptr<BlobReader>> MemoryBlobStore::open(const std::string& id) {
  if (!isCanonicalUuid(id)) return invalidArgument("not a blob id");
  std::lock_guard lock(mu_);
  auto it = blobs_.find(id);
  if (it == blobs_.end()) return notFound("blob not found");
  return std::unique_ptr<BlobReader>(new MemoryReader(it->second));
}

Status MemoryBlobStore::remove(const std::string& id) {
  std::lock_guard lock(mu_);
  return blobs_.erase(id) ? okStatus() : notFound("blob not found");
}

Status MemoryBlobStore::forEach(const std::function<void(const std::string& id)>& fn) {
  std::vector<std::string> ids;
  {
    std::lock_guard lock(mu_);
    for (const auto& [id, _] : blobs_) ids.push_back(id);
  }
  for (const auto& id : ids) fn(id);
  return okStatus();
}

void MemoryBlobStore::failNextCommits(int n) {
  std::lock_guard lock(mu_);
  fail_commits_ = n;
}

Bytes* MemoryBlobStore::raw(const std::string& id) {
  std::lock_guard lock(mu_);
  auto it = blobs_.find(id);
  return it == blobs_.end() ? nullptr : it->second.get();
}

size_t MemoryBlobStore::count() {
  std::lock_guard lock(mu_);
  return blobs_.size();
}

}  // namespace bastion::storage
