#include "bastion/service/verify.h"

#include <set>

#include "bastion/service/archive.h"
#include "crypto/aead.h"

namespace bastion {

StatusOr<VerifyReport> verifyArchive(Index& index, BlobStore& blobs, uint64_t max_object_size,
                                     const std::function<void(uint64_t, uint64_t)>& progress) {
  std::vector<InstanceLocation> all;
  RETURN_IF_ERROR(index.forEachInstance([&](const InstanceLocation& l) { all.push_back(l); }));
  VerifyReport report;
  std::set<std::string> referenced;
  Bytes buf(1 << 20);
  for (const auto& loc : all) {
    referenced.insert(loc.blob_id);
    ++report.checked;
    auto reader = blobs.open(loc.blob_id);
    if (!reader.ok()) {
      const bool missing = reader.status().code() == StatusCode::kNotFound;
      report.problems.push_back({missing ? "missing" : "altered", loc.blob_id, loc.sop_uid,
                                 reader.status().toString()});
    } else {
      crypto::Sha256 sha;
      uint64_t off = 0;
      Status s;
      while (off < (*reader)->size() && off <= max_object_size) {
        auto n = (*reader)->read(off, buf);
        if (!n.ok()) {
          s = n.status();
          break;
        }
        if (*n == 0) {
          s = dataLoss("short read");
          break;
        }
        if (off == 0) s = checkObjectIdentity(ByteView(buf.data(), *n), loc);
        if (!s.ok()) break;
        sha.update(ByteView(buf.data(), *n));
        off += *n;
      }
      if (s.ok() && toHex(sha.finish()) != loc.sha256_hex) s = dataLoss("SHA-256 differs from the recorded digest");
      if (s.ok() && off != loc.size) s = dataLoss("size differs from the recorded size");
      if (!s.ok()) report.problems.push_back({"altered", loc.blob_id, loc.sop_uid, s.toString()});
    }
    if (progress) progress(report.checked, all.size());
  }
  RETURN_IF_ERROR(blobs.forEach([&](const std::string& id) {
    if (!referenced.count(id)) report.problems.push_back({"orphaned", id, "", "blob not referenced by the index"});
  }));
  return report;
}

}  // namespace bastion
