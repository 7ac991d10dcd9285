#include "storage/pack_format.h"

#include <zlib.h>

#include <algorithm>
#include <cstring>
#include <vector>

namespace bastion::storage::pack {
namespace {

constexpr uint8_t kMagic[4] = {'B', 'P', 'K', '1'};
constexpr size_t kCrcAt = 44;

void putLe(uint8_t* p, uint64_t v, int n) {
  for (int i = 0; i < n; ++i) p[i] = static_cast<uint8_t>(v >> (8 * i));
}
uint64_t getLe(const uint8_t* p, int n) {
  uint64_t v = 0;
  for (int i = n - 1; i >= 0; --i) v = v << 8 | p[i];
  return v;
}
uint32_t crcOf(const uint8_t* p, size_t n) {
  return static_cast<uint32_t>(::crc32(::crc32(0L, Z_NULL, 0), p, static_cast<uInt>(n)));
}
int hexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;
}

}  // namespace

std::array<uint8_t, kHeaderSize> encode(const Header& h) {
  std::array<uint8_t, kHeaderSize> b{};
  std::copy(std::begin(kMagic), std::end(kMagic), b.begin());
  b[4] = static_cast<uint8_t>(h.kind);
  putLe(&b[8], h.length, 8);
  std::copy(h.id.begin(), h.id.end(), b.begin() + 16);
  putLe(&b[kCrcAt], crcOf(b.data(), kCrcAt), 4);
  return b;
}

std::optional<Header> decode(ByteView bytes) {
  if (bytes.size() < kHeaderSize) return std::nullopt;
  const uint8_t* b = bytes.data();
  if (!std::equal(std::begin(kMagic), std::end(kMagic), b)) return std::nullopt;
  if (b[4] < static_cast<uint8_t>(Kind::kBlob) || b[4] > static_cast<uint8_t>(Kind::kFiller)) return std::nullopt;
  if (b[5] || b[6] || b[7] || std::any_of(b + 32, b + kCrcAt, [](uint8_t x) { return x != 0; })) return std::nullopt;
  Header h;
  h.kind = static_cast<Kind>(b[4]);
  if (getLe(&b[kCrcAt], 4) != crcOf(b, kCrcAt)) {
    if (h.kind == Kind::kFiller) return std::nullopt;
    // A removal (of a blob or a note) torn between its two changes: the CRC
    // is that of the kind before or after it.
    uint8_t other[kCrcAt];
    std::copy(b, b + kCrcAt, other);
    const auto tornFrom = [&](Kind k) {
      other[4] = static_cast<uint8_t>(k);
      return getLe(&b[kCrcAt], 4) == crcOf(other, kCrcAt);
    };
    const bool torn = h.kind == Kind::kRemoved ? tornFrom(Kind::kBlob) || tornFrom(Kind::kNote) : tornFrom(Kind::kRemoved);
    if (!torn) return std::nullopt;
    h.kind = Kind::kRemoved;
  }
  h.length = getLe(&b[8], 8);
  if (h.length > kMaxContent) return std::nullopt;
  std::copy(b + 16, b + 32, h.id.begin());
  return h;
}

uint64_t fillerAfter(uint64_t size) {
  const uint64_t rest = size % kDirectAlign;
  if (rest == 0) return 0;
  const uint64_t pad = kDirectAlign - rest;
  return pad < kHeaderSize ? pad + kDirectAlign : pad;
}

std::optional<RawId> rawId(std::string_view id) {
  if (id.size() != 36) return std::nullopt;
  RawId raw{};
  size_t n = 0;
  for (size_t i = 0; i < id.size(); ++i) {
    if (i == 8 || i == 13 || i == 18 || i == 23) {
      if (id[i] != '-') return std::nullopt;
      continue;
    }
    const int v = hexValue(id[i]);
    if (v < 0) return std::nullopt;
    raw[n / 2] = static_cast<uint8_t>(n % 2 == 0 ? v << 4 : raw[n / 2] | v);
    ++n;
  }
  return raw;
}

std::string idString(const RawId& raw) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string s;
  s.reserve(36);
  for (size_t i = 0; i < raw.size(); ++i) {
    if (i == 4 || i == 6 || i == 8 || i == 10) s.push_back('-');
    s.push_back(kHex[raw[i] >> 4]);
    s.push_back(kHex[raw[i] & 15]);
  }
  return s;
}

namespace {

// Reads exactly out.size() bytes at `at` unless the file ends first; the count.
StatusOr<size_t> readFull(const ReadAt& read, uint64_t at, std::span<uint8_t> out) {
  size_t got = 0;
  while (got < out.size()) {
    ASSIGN_OR_RETURN(size_t n, read(at + got, out.subspan(got)));
    if (n == 0) break;
    got += n;
  }
  return got;
}

// The record header at `at`, if one decodes there and its content fits in `size`.
StatusOr<std::optional<Header>> headerAt(const ReadAt& read, uint64_t at, uint64_t size, bool* zeros) {
  std::array<uint8_t, kHeaderSize> buf{};
  ASSIGN_OR_RETURN(size_t got, readFull(read, at, buf));
  if (zeros) *zeros = std::all_of(buf.begin(), buf.begin() + static_cast<long>(got), [](uint8_t x) { return x == 0; });
  if (got < buf.size()) return std::optional<Header>();
  auto h = decode(buf);
  if (!h || h->length > size - at - kHeaderSize) return std::optional<Header>();
  return h;
}

// The offset of the next decodable header after `from`, or `size` if none.
StatusOr<uint64_t> nextHeader(const ReadAt& read, uint64_t from, uint64_t size) {
  constexpr size_t kChunk = 1 << 20;
  std::vector<uint8_t> buf(static_cast<size_t>(std::min<uint64_t>(kChunk, size - from)) + kHeaderSize);
  for (uint64_t at = from + 1; at + kHeaderSize <= size; at += kChunk) {
    ASSIGN_OR_RETURN(size_t got, readFull(read, at, buf));
    for (size_t i = 0; i + 4 <= got && i < kChunk; ++i) {
      const uint8_t* p = static_cast<const uint8_t*>(std::memchr(buf.data() + i, kMagic[0], std::min(got, kChunk) - i));
      if (!p) break;
      i = static_cast<size_t>(p - buf.data());
      if (i + 4 > got || !std::equal(std::begin(kMagic), std::end(kMagic), p)) continue;
      ASSIGN_OR_RETURN(auto h, headerAt(read, at + i, size, nullptr));
      if (h) return at + i;
    }
    if (got < buf.size()) break;
  }
  return size;
}

}  // namespace

StatusOr<ScanEnd> scan(const ReadAt& read, uint64_t from, uint64_t size, const std::function<void(const Record&)>& visit) {
  ScanEnd result;
  bool stopped = false;
  uint64_t at = from;
  while (at < size && size - at >= kHeaderSize) {
    bool zeros = false;
    ASSIGN_OR_RETURN(auto h, headerAt(read, at, size, &zeros));
    if (!h) {
      if (!stopped) {
        stopped = true;
        result.end = at;
        result.clean = zeros;
      }
      ASSIGN_OR_RETURN(at, nextHeader(read, at, size));
      continue;
    }
    visit(Record{*h, at + kHeaderSize});
    if (stopped) ++result.beyond;
    at += kHeaderSize + h->length;
  }
  if (!stopped) result.end = at;
  return result;
}

}  // namespace bastion::storage::pack
