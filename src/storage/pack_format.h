// Pack files: the on-disk layout of PackBlobStore (docs/storage.md).
//
// A pack is a file of records laid end to end from offset 0. After the last
// record the file ends, or holds zeros (space written in advance so that a
// later record's fdatasync has no allocation to journal). A record is a
// 48-byte header followed by `length` bytes of blob content:
//
//   offset  size  field
//        0     4  magic "BPK1"
//        4     1  kind: 1 = blob, 2 = removed (content zeroed or a hole),
//                 3 = note (BlobWriter::attachNote: opaque bytes of the layer
//                 above, made durable with the blob of the same id, which
//                 comes first), 4 = filler (zeros that make the next
//                 record start on a kDirectAlign boundary; zero id)
//        5     3  zero
//        8     8  length of the content, little endian
//       16    16  blob id (the UUID's 16 bytes)
//       32    12  zero
//       44     4  CRC-32 (zlib) of bytes 0..43, little endian
//
// The header's CRC tells a record from zeros, a torn write or damage; the
// content is authenticated by the layer above (EncryptingBlobStore), not here.
// Removal rewrites the kind and the CRC in place: a header torn between the
// two (one of them new) still decodes, as removed. A blob's removal removes
// its note too.
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "bastion/common/bytes.h"
#include "bastion/common/status.h"

namespace bastion::storage::pack {

constexpr size_t kHeaderSize = 48;
// No record is longer than this (PackBlobStore keeps larger blobs in files of
// their own); a header claiming more is damage.
constexpr uint64_t kMaxContent = uint64_t{1} << 32;
// No note is longer than this; a note header claiming more is damage.
constexpr uint64_t kMaxNote = uint64_t{64} << 10;

// Records written with direct I/O (PackBlobStore's large lane) start and end
// on multiples of this; a filler record takes up the rest.
constexpr uint64_t kDirectAlign = 4096;

enum class Kind : uint8_t { kBlob = 1, kRemoved = 2, kNote = 3, kFiller = 4 };
using RawId = std::array<uint8_t, 16>;

struct Header {
  Kind kind = Kind::kBlob;
  uint64_t length = 0;
  RawId id{};
};

std::array<uint8_t, kHeaderSize> encode(const Header& h);
// The header in `bytes` (at least kHeaderSize of them), or nullopt if they
// are not one: zeros, a torn or damaged header, an unknown kind. A header
// whose CRC matches only with the kind before or after a removal is a torn
// removal: kRemoved. A filler is never removed: damaged, it is nothing.
std::optional<Header> decode(ByteView bytes);

// The bytes a record of `size` bytes at an aligned offset needs after it so
// that the next one starts aligned: 0, or at least kHeaderSize (the filler's
// header, then zeros).
uint64_t fillerAfter(uint64_t size);

// Canonical UUID text <-> its 16 bytes. nullopt if `id` is not canonical.
std::optional<RawId> rawId(std::string_view id);
std::string idString(const RawId& raw);

// Reads up to out.size() bytes at an offset; returns the count (0 at the end).
using ReadAt = std::function<StatusOr<size_t>(uint64_t offset, std::span<uint8_t> out)>;

struct Record {
  Header header;
  uint64_t offset = 0;  // of the content (the header starts kHeaderSize before)
};

struct ScanEnd {
  uint64_t end = 0;      // where the records stop being contiguous (a later scan resumes here)
  bool clean = true;     // false if they stop at bytes that are neither zeros nor the file's end
  uint64_t beyond = 0;   // records found after `end` by searching forward
};

// Walks the records of a pack of `size` bytes from `from` (a record
// boundary), calling `visit` for each in file order. Where a header does not
// decode (damage, or an interrupted write) or a record's content would reach
// past `size`, it searches forward for the next header that decodes and
// goes on from there, so one damaged header hides no later record. A read
// error is returned as such.
StatusOr<ScanEnd> scan(const ReadAt& read, uint64_t from, uint64_t size, const std::function<void(const Record&)>& visit);

}  // namespace bastion::storage::pack
