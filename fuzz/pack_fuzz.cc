// Fuzz target for the pack file reader (storage/pack_format): the input is a
// pack file as a disk fault or a hostile local user could leave it. The scan
// must report records in file order without overlap, never content beyond
// the file, and every record it reports must decode again, also those it
// finds by searching past a damaged header. A note's content (the store note
// container, service/store_note.h) decodes only if it re-encodes to the same
// bytes.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <span>

#include "service/store_note.h"
#include "storage/pack_format.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace bastion::storage;
  auto read = [&](uint64_t at, std::span<uint8_t> out) -> bastion::StatusOr<size_t> {
    if (at >= size) return size_t{0};
    const size_t n = std::min<size_t>(out.size(), size - static_cast<size_t>(at));
    std::memcpy(out.data(), data + at, n);
    return n;
  };
  uint64_t previous_end = 0;
  auto end = pack::scan(read, 0, size, [&](const pack::Record& r) {
    if (r.offset < previous_end + pack::kHeaderSize || r.offset + r.header.length > size) std::abort();
    if (!pack::decode(std::span<const uint8_t>(data + r.offset - pack::kHeaderSize, pack::kHeaderSize))) std::abort();
    if (pack::rawId(pack::idString(r.header.id)) != r.header.id) std::abort();
    previous_end = r.offset + r.header.length;
    if (r.header.kind == pack::Kind::kNote) {
      const std::span<const uint8_t> content(data + r.offset, static_cast<size_t>(r.header.length));
      if (auto note = bastion::decodeStoreNote(content); note && bastion::encodeStoreNote(*note) !=
                                                                    bastion::Bytes(content.begin(), content.end()))
        std::abort();
    }
  });
  if (auto note = bastion::decodeStoreNote(std::span<const uint8_t>(data, size));
      note && bastion::encodeStoreNote(*note) != bastion::Bytes(data, data + size))
    std::abort();
  if (!end.ok() || end->end > size || (end->beyond == 0 && end->end < previous_end)) std::abort();
  (void)pack::decode(std::span<const uint8_t>(data, size));
  return 0;
}
