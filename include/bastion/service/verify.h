// Integrity verification: every indexed instance is re-read (each segment
// authenticated) and its SHA-256 compared; every stored blob must be
// referenced by the index.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "bastion/index/index.h"
#include "bastion/storage/blob_store.h"

namespace bastion {

struct VerifyProblem {
  std::string kind;  // "missing", "altered", "orphaned"
  std::string blob_id;
  std::string sop_uid;  // empty for orphaned blobs
  std::string detail;
};

struct VerifyReport {
  uint64_t checked = 0;
  std::vector<VerifyProblem> problems;
  bool clean() const { return problems.empty(); }
};

// `progress(done, total)` is called after each instance (may be empty).
StatusOr<VerifyReport> verifyArchive(Index& index, BlobStore& blobs, uint64_t max_object_size,
                                     const std::function<void(uint64_t, uint64_t)>& progress);

}  // namespace bastion
