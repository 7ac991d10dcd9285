#include "dicom/parse/dicom_scanner.h"

#include <zlib.h>

#include <algorithm>
#include <cstring>

namespace bastion::dicom {
namespace {

constexpr uint32_t kItem = 0xFFFEE000, kItemDelim = 0xFFFEE00D, kSeqDelim = 0xFFFEE0DD;
constexpr uint32_t kUndefined = 0xFFFFFFFF;

// VRs whose explicit encoding has 2 reserved bytes and a 32-bit length.
bool hasLongLength(char a, char b) {
  static const char* kLong[] = {"OB", "OD", "OF", "OL", "OV", "OW", "SQ", "UC", "UN", "UR", "UT", "SV", "UV"};
  for (const char* v : kLong)
    if (v[0] == a && v[1] == b) return true;
  return false;
}

bool isKnownVr(char a, char b) {
  static const char* kVrs[] = {"AE", "AS", "AT", "CS", "DA", "DS", "DT", "FL", "FD", "IS", "LO", "LT", "OB", "OD",
                               "OF", "OL", "OV", "OW", "PN", "SH", "SL", "SQ", "SS", "ST", "SV", "TM", "UC", "UI",
                               "UL", "UN", "UR", "US", "UT", "UV"};
  for (const char* v : kVrs)
    if (v[0] == a && v[1] == b) return true;
  return false;
}

bool isIndexed(uint32_t t) {
  switch (t) {
    case tag::kSpecificCharacterSet: case tag::kSopClassUid: case tag::kSopInstanceUid: case tag::kStudyDate:
    case tag::kStudyTime: case tag::kAccessionNumber: case tag::kModality: case tag::kReferringPhysicianName:
    case tag::kStudyDescription: case tag::kSeriesDescription: case tag::kPatientName: case tag::kPatientId:
    case tag::kIssuerOfPatientId: case tag::kPatientBirthDate: case tag::kPatientSex: case tag::kOtherPatientIds:
    case tag::kStudyInstanceUid: case tag::kSeriesInstanceUid: case tag::kStudyId: case tag::kSeriesNumber:
    case tag::kInstanceNumber: case tag::kSamplesPerPixel: case tag::kNumberOfFrames: case tag::kRows:
    case tag::kColumns: case tag::kBitsAllocated: case tag::kBitsStored: case tag::kHighBit:
    case tag::kRequestingPhysician: case tag::kPhotometricInterpretation:
      return true;
    default:
      return false;
  }
}

bool isUsTag(uint32_t t) {
  return t == tag::kSamplesPerPixel || t == tag::kRows || t == tag::kColumns || t == tag::kBitsAllocated ||
         t == tag::kBitsStored || t == tag::kHighBit;
}

std::string trimValue(ByteView v) {
  std::string s(reinterpret_cast<const char*>(v.data()), v.size());
  while (!s.empty() && (s.back() == ' ' || s.back() == '\0')) s.pop_back();
  size_t start = 0;
  while (start < s.size() && s[start] == ' ') ++start;
  return s.substr(start);
}

class Scanner {
 public:
  Scanner(ByteView data, Encoding enc, const ScanLimits& limits, ScanResult& out)
      : d_(data), big_(enc == Encoding::kExplicitBig), explicit_(enc != Encoding::kImplicitLittle),
        limits_(limits), out_(out) {}

  Status run() { return dataset(0, d_.size(), 0, /*top=*/true); }

 private:
  uint16_t u16(size_t p) const {
    return big_ ? static_cast<uint16_t>(d_[p] << 8 | d_[p + 1]) : static_cast<uint16_t>(d_[p + 1] << 8 | d_[p]);
  }
  uint32_t u32(size_t p) const {
    return big_ ? (uint32_t{d_[p]} << 24 | uint32_t{d_[p + 1]} << 16 | uint32_t{d_[p + 2]} << 8 | d_[p + 3])
                : (uint32_t{d_[p + 3]} << 24 | uint32_t{d_[p + 2]} << 16 | uint32_t{d_[p + 1]} << 8 | d_[p]);
  }
  uint32_t tagAt(size_t p) const { return uint32_t{u16(p)} << 16 | u16(p + 2); }
  // Item and delimiter tags are always little endian in LE syntaxes and big
  // endian in the BE syntax; u16 handles both.

  static Status bad(const std::string& what, size_t pos) {
    return invalidArgument("malformed DICOM data set: " + what + " at offset " + std::to_string(pos));
  }

  // Walks elements in [pos, end). If `until_item_delim`, stops after an item
  // delimitation item (undefined-length item) and stores its end in *stop.
  Status dataset(size_t pos, size_t end, int depth, bool top, bool until_item_delim = false,
                 size_t* stop = nullptr) {
    uint32_t last_tag = 0;
    bool first = true;
    while (pos < end) {
      if (end - pos < 8) return bad("truncated element header", pos);
      const uint32_t t = tagAt(pos);
      if (t == kItemDelim) {
        if (!until_item_delim) return bad("item delimiter outside an item", pos);
        if (u32(pos + 4) != 0) return bad("item delimiter with a length", pos);
        *stop = pos + 8;
        return okStatus();
      }
      if ((t >> 16) == 0xFFFE) return bad("unexpected item tag", pos);
      if (++out_.element_count > limits_.max_elements) return resourceExhausted("too many elements in data set");
      if (!first && t <= last_tag) return bad(t == last_tag ? "duplicate tag" : "tags out of order", pos);
      if (top && (t >> 16) == 0x0002) return bad("file meta element inside the data set", pos);
      first = false;
      last_tag = t;

      char vr[2] = {0, 0};
      uint32_t len;
      size_t value;
      if (explicit_) {
        vr[0] = static_cast<char>(d_[pos + 4]);
        vr[1] = static_cast<char>(d_[pos + 5]);
        if (!isKnownVr(vr[0], vr[1])) return bad("unknown VR", pos);
        if (hasLongLength(vr[0], vr[1])) {
          if (end - pos < 12) return bad("truncated element header", pos);
          len = u32(pos + 8);
          value = pos + 12;
        } else {
          len = u16(pos + 6);
          value = pos + 8;
        }
      } else {
        len = u32(pos + 4);
        value = pos + 8;
      }
      const bool is_sq = explicit_ ? (vr[0] == 'S' && vr[1] == 'Q') : false;
      const bool is_un = explicit_ && vr[0] == 'U' && vr[1] == 'N';

      if (t == tag::kPixelData && len == kUndefined) {
        if (depth != 0) return bad("encapsulated pixel data inside a sequence", pos);
        out_.pixel = {true, true, 0};
        ASSIGN_OR_RETURN(pos, fragments(value, end));
        continue;
      }
      if (len == kUndefined) {
        if (!is_sq && !is_un && explicit_) return bad("undefined length on a non-sequence element", pos);
        if (is_un) {
          // PS3.5 6.2.2: an undefined-length UN is a sequence in implicit VR LE.
          const bool saved = explicit_;
          explicit_ = false;
          auto r = sequence(value, end, depth + 1, true);
          explicit_ = saved;
          if (!r.ok()) return r.status();
          pos = r.value();
        } else {
          ASSIGN_OR_RETURN(pos, sequence(value, end, depth + 1, true));
        }
        continue;
      }
      if (len > end - value) return bad("value length beyond the end of its container", pos);
      if (len % 2 != 0) return bad("odd value length", pos);
      const size_t vend = value + len;
      // In implicit VR a defined-length sequence is recognised by its first item.
      const bool looks_sq = !explicit_ && len >= 8 && tagAt(value) == kItem;
      if (is_sq || looks_sq) {
        ASSIGN_OR_RETURN(size_t after, sequence(value, vend, depth + 1, false));
        if (after != vend) return bad("sequence length mismatch", pos);
      } else if (top) {
        if (t == tag::kPixelData) out_.pixel = {true, false, len};
        if (isIndexed(t)) record(t, ByteView(d_.data() + value, len));
      }
      pos = vend;
    }
    if (until_item_delim) return bad("missing item delimiter", pos);
    return okStatus();
  }

  void record(uint32_t t, ByteView v) {
    if (isUsTag(t)) {
      if (v.size() >= 2) out_.values[t] = std::to_string(u16(static_cast<size_t>(v.data() - d_.data())));
      return;
    }
    out_.values[t] = trimValue(v);
  }

  // Items of a sequence starting at `pos`. Defined-length: exactly [pos,end).
  // Undefined-length: until a sequence delimiter; returns the position after it.
  StatusOr<size_t> sequence(size_t pos, size_t end, int depth, bool undefined) {
    if (depth > limits_.max_depth) return resourceExhausted("sequence nesting deeper than " +
                                                            std::to_string(limits_.max_depth));
    out_.max_depth_seen = std::max(out_.max_depth_seen, depth);
    uint64_t items = 0;
    while (true) {
      if (!undefined && pos == end) return pos;
      if (end - pos < 8) return bad(undefined ? "missing sequence delimiter" : "truncated item", pos);
      const uint32_t t = tagAt(pos);
      const uint32_t len = u32(pos + 4);
      if (t == kSeqDelim) {
        if (!undefined) return bad("sequence delimiter in a defined-length sequence", pos);
        if (len != 0) return bad("sequence delimiter with a length", pos);
        return pos + 8;
      }
      if (t != kItem) return bad("expected an item", pos);
      if (++items > limits_.max_items) return resourceExhausted("too many items in a sequence");
      const size_t body = pos + 8;
      if (len == kUndefined) {
        size_t stop = 0;
        RETURN_IF_ERROR(dataset(body, end, depth, false, true, &stop));
        pos = stop;
      } else {
        if (len > end - body) return bad("item length beyond its sequence", pos);
        RETURN_IF_ERROR(dataset(body, body + len, depth, false));
        pos = body + len;
      }
    }
  }

  // Encapsulated pixel data: an offset table item, fragment items, a delimiter.
  StatusOr<size_t> fragments(size_t pos, size_t end) {
    uint64_t items = 0;
    while (true) {
      if (end - pos < 8) return bad("missing pixel data sequence delimiter", pos);
      const uint32_t t = tagAt(pos);
      const uint32_t len = u32(pos + 4);
      if (t == kSeqDelim) return pos + 8;
      if (t != kItem) return bad("expected a pixel data fragment", pos);
      if (len == kUndefined || len > end - pos - 8) return bad("fragment length beyond the data", pos);
      if (++items > limits_.max_items) return resourceExhausted("too many pixel data fragments");
      pos += 8 + len;
    }
  }

  ByteView d_;
  bool big_;
  bool explicit_;
  const ScanLimits& limits_;
  ScanResult& out_;
};

StatusOr<Bytes> inflateRaw(ByteView in, uint64_t max_out) {
  z_stream zs{};
  if (inflateInit2(&zs, -15) != Z_OK) return internalError("inflateInit2 failed");
  Bytes out;
  zs.next_in = const_cast<Bytef*>(in.data());
  zs.avail_in = static_cast<uInt>(in.size());
  uint8_t buf[65536];
  int rc = Z_OK;
  while (rc != Z_STREAM_END) {
    zs.next_out = buf;
    zs.avail_out = sizeof buf;
    rc = inflate(&zs, Z_NO_FLUSH);
    if (rc != Z_OK && rc != Z_STREAM_END) {
      inflateEnd(&zs);
      return invalidArgument("deflated data set is corrupt");
    }
    const size_t n = sizeof buf - zs.avail_out;
    if (out.size() + n > max_out) {
      inflateEnd(&zs);
      return resourceExhausted("deflated data set inflates beyond the limit");
    }
    out.insert(out.end(), buf, buf + n);
    if (rc != Z_STREAM_END && n == 0 && zs.avail_in == 0) {
      inflateEnd(&zs);
      return invalidArgument("deflated data set is truncated");
    }
  }
  inflateEnd(&zs);
  return out;
}

}  // namespace

StatusOr<Encoding> encodingOf(std::string_view ts) {
  if (ts == "1.2.840.10008.1.2") return Encoding::kImplicitLittle;
  if (ts == "1.2.840.10008.1.2.1") return Encoding::kExplicitLittle;
  if (ts == "1.2.840.10008.1.2.2") return Encoding::kExplicitBig;
  if (ts == "1.2.840.10008.1.2.1.99") return Encoding::kDeflatedExplicitLittle;
  if (isEncapsulatedSyntax(ts)) return Encoding::kExplicitLittle;
  return invalidArgument("unsupported transfer syntax");
}

bool isEncapsulatedSyntax(std::string_view ts) {
  // JPEG family (1.2.840.10008.1.2.4.x: baseline, extended, lossless, JPEG-LS,
  // JPEG 2000, MPEG, HEVC, HTJ2K) and RLE (1.2.840.10008.1.2.5).
  constexpr std::string_view kJpeg = "1.2.840.10008.1.2.4.";
  if (ts.size() > kJpeg.size() && ts.substr(0, kJpeg.size()) == kJpeg) {
    for (char c : ts.substr(kJpeg.size()))
      if (c < '0' || c > '9') return false;
    return true;
  }
  return ts == "1.2.840.10008.1.2.5";
}

StatusOr<ScanResult> scanDataset(ByteView data, Encoding encoding, const ScanLimits& limits) {
  ScanResult result;
  if (encoding == Encoding::kDeflatedExplicitLittle) {
    ASSIGN_OR_RETURN(Bytes inflated, inflateRaw(data, limits.max_inflated));
    Scanner s(inflated, Encoding::kExplicitLittle, limits, result);
    RETURN_IF_ERROR(s.run());
    return result;
  }
  Scanner s(data, encoding, limits, result);
  RETURN_IF_ERROR(s.run());
  return result;
}

StatusOr<Part10> parsePart10(ByteView f) {
  if (f.size() < 132 || std::memcmp(f.data() + 128, "DICM", 4) != 0)
    return invalidArgument("not a DICOM Part-10 file (no DICM prefix)");
  Part10 p;
  p.preamble_zero = std::all_of(f.begin(), f.begin() + 128, [](uint8_t b) { return b == 0; });
  size_t pos = 132;
  auto u16 = [&](size_t q) { return static_cast<uint16_t>(f[q] | f[q + 1] << 8); };
  auto u32 = [&](size_t q) {
    return uint32_t{f[q]} | uint32_t{f[q + 1]} << 8 | uint32_t{f[q + 2]} << 16 | uint32_t{f[q + 3]} << 24;
  };
  while (pos + 8 <= f.size() && u16(pos) == 0x0002) {
    const uint16_t elem = u16(pos + 2);
    const char a = static_cast<char>(f[pos + 4]), b = static_cast<char>(f[pos + 5]);
    if (!isKnownVr(a, b)) return invalidArgument("file meta information has a bad VR");
    uint32_t len;
    size_t value;
    if (hasLongLength(a, b)) {
      if (pos + 12 > f.size()) return invalidArgument("file meta information truncated");
      len = u32(pos + 8);
      value = pos + 12;
    } else {
      len = u16(pos + 6);
      value = pos + 8;
    }
    if (len == 0xFFFFFFFF || len > f.size() - value) return invalidArgument("file meta element length too large");
    std::string v = trimValue(f.subspan(value, len));
    if (elem == 0x0010) p.transfer_syntax = v;
    if (elem == 0x0002) p.media_sop_class = v;
    if (elem == 0x0003) p.media_sop_instance = v;
    pos = value + len;
  }
  if (p.transfer_syntax.empty()) return invalidArgument("file meta information lacks a transfer syntax");
  p.dataset_offset = pos;
  return p;
}

}  // namespace bastion::dicom
