// FilesystemBlobStore: one file per blob under <root>/objects/<aa>/<bb>/<uuid>.
// Writes go to <uuid>.tmp in the same directory and become visible by
// rename + fdatasync + directory fsync; commit() returns only after both.
#pragma once

#include <string>

#include "bastion/common/clock.h"
#include "bastion/storage/blob_store.h"

namespace bastion::storage {

class FilesystemBlobStore final : public BlobStore {
 public:
  // `root` must exist or be creatable. `random` must outlive the store.
  static StatusOr<std::unique_ptr<FilesystemBlobStore>> open(const std::string& root, Random& random);
  // Removes the temporary files (<id>.tmp beside the blobs) of writes that
  // never committed. Only while no other process writes here: theirs may be
  // in progress (a large C-STORE streams into one for its whole transfer).
  Status removeTempFiles();

  StatusOr<std::unique_ptr<BlobWriter>> create() override;
  // create() under an id the caller generated (a canonical UUID no blob has):
  // for stores that keep some blobs here under their own ids (PackBlobStore).
  StatusOr<std::unique_ptr<BlobWriter>> createWithId(const std::string& id);
  StatusOr<std::unique_ptr<BlobReader>> open(const std::string& id) override;
  Status remove(const std::string& id) override;
  Status forEach(const std::function<void(const std::string& id)>& fn) override;

  // Path of a blob's file (id must be a canonical UUID). For tests and tools.
  std::string pathFor(const std::string& id) const;

 private:
  FilesystemBlobStore(std::string root, Random& random) : root_(std::move(root)), random_(random) {}
  std::string root_;
  Random& random_;
};

}  // namespace bastion::storage
