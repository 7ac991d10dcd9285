// The note a store keeps with its object (BlobWriter::attachNote): the
// index's sealed row of the instance (Index::noteFor) and the audit trail's
// sealed record of the store (AuditLog::noteFor), each opaque here. After a
// crash that took unsynced commits, both come back from it
// (server/store_notes.h). Layout: "BSN1", then each part as a 4-byte
// little-endian length and its bytes, index first.
#pragma once

#include <cstdint>
#include <optional>

#include "bastion/common/bytes.h"

namespace bastion {

struct StoreNote {
  Bytes index, audit;  // empty: that store keeps no note
};

inline Bytes encodeStoreNote(const StoreNote& n) {
  Bytes out{'B', 'S', 'N', '1'};
  for (const Bytes* part : {&n.index, &n.audit}) {
    const auto size = static_cast<uint32_t>(part->size());
    for (int i = 0; i < 4; ++i) out.push_back(static_cast<uint8_t>(size >> (8 * i)));
    out.insert(out.end(), part->begin(), part->end());
  }
  return out;
}

// nullopt unless `bytes` is exactly one encoded note.
inline std::optional<StoreNote> decodeStoreNote(ByteView bytes) {
  if (bytes.size() < 4 || asChars(bytes.first(4)) != "BSN1") return std::nullopt;
  StoreNote n;
  size_t at = 4;
  for (Bytes* part : {&n.index, &n.audit}) {
    if (bytes.size() - at < 4) return std::nullopt;
    uint32_t size = 0;
    for (int i = 0; i < 4; ++i) size |= static_cast<uint32_t>(bytes[at + i]) << (8 * i);
    at += 4;
    if (bytes.size() - at < size) return std::nullopt;
    part->assign(bytes.begin() + static_cast<std::ptrdiff_t>(at),
                 bytes.begin() + static_cast<std::ptrdiff_t>(at + size));
    at += size;
  }
  if (at != bytes.size()) return std::nullopt;
  return n;
}

}  // namespace bastion
