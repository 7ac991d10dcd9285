#include "crypto/encrypting_blob_store.h"

#include <openssl/crypto.h>

#include <algorithm>
#include <cstring>

#include "crypto/aead.h"

namespace bastion::crypto {
namespace {

constexpr char kMagic[8] = {'B', 'S', 'T', 'N', 'E', 'N', 'C', '1'};
constexpr uint32_t kVersion = 1;
constexpr size_t kWrapped = kGcmNonce + 32 + kGcmTag;
constexpr size_t kHeader = 8 + 4 + 4 + kWrapped;
constexpr uint32_t kMaxSegment = 16 * 1024 * 1024;

void putU32(Bytes& b, uint32_t v) {
  for (int i = 3; i >= 0; --i) b.push_back(static_cast<uint8_t>(v >> (8 * i)));
}
uint32_t getU32(const uint8_t* p) {
  return uint32_t{p[0]} << 24 | uint32_t{p[1]} << 16 | uint32_t{p[2]} << 8 | p[3];
}

// Context the data key is wrapped under: id + header fields.
Bytes wrapContext(const std::string& id, uint32_t segment) {
  Bytes ctx(kMagic, kMagic + 8);
  putU32(ctx, kVersion);
  putU32(ctx, segment);
  ctx.insert(ctx.end(), id.begin(), id.end());
  return ctx;
}

struct SegmentCrypto {
  Key256 key;
  std::string id;
  void nonceAndAd(uint64_t index, bool last, uint8_t nonce[kGcmNonce], Bytes& ad) const {
    std::memset(nonce, 0, kGcmNonce);
    for (int i = 0; i < 8; ++i) nonce[4 + i] = static_cast<uint8_t>(index >> (8 * (7 - i)));
    ad.assign(id.begin(), id.end());
    ad.insert(ad.end(), nonce + 4, nonce + 12);
    ad.push_back(last ? 1 : 0);
  }
  ~SegmentCrypto() { OPENSSL_cleanse(key.data(), key.size()); }
};

class EncryptingWriter final : public BlobWriter {
 public:
  EncryptingWriter(std::unique_ptr<BlobWriter> inner, const Keyring& keyring, Random& random, uint32_t segment)
      : inner_(std::move(inner)), segment_(segment) {
    sc_.id = inner_->id();
    random.fill(sc_.key);
    Bytes header(kMagic, kMagic + 8);
    putU32(header, kVersion);
    putU32(header, segment_);
    Bytes wrapped = keyring.wrap(sc_.key, wrapContext(sc_.id, segment_));
    header.insert(header.end(), wrapped.begin(), wrapped.end());
    header_status_ = inner_->append(header);
    plain_.reserve(segment_);
  }
  ~EncryptingWriter() override { OPENSSL_cleanse(plain_.data(), plain_.size()); }

  const std::string& id() const override { return inner_->id(); }

  void expect(uint64_t bytes) override {
    const uint64_t segments = bytes / segment_ + 1;
    inner_->expect(bytes + segments * kGcmTag);
  }
  bool attachNote(Bytes note) override { return inner_->attachNote(std::move(note)); }

  Status append(ByteView data) override {
    RETURN_IF_ERROR(header_status_);
    while (!data.empty()) {
      // A full segment is sealed only when more data follows, so the last
      // segment (possibly full) is always the one flagged as last.
      if (plain_.size() == segment_) RETURN_IF_ERROR(sealSegment(false));
      if (plain_.empty() && data.size() > segment_) {  // a whole segment, more to come: no copy
        RETURN_IF_ERROR(seal(data.first(segment_), false));
        data = data.subspan(segment_);
        continue;
      }
      size_t take = std::min<size_t>(segment_ - plain_.size(), data.size());
      plain_.insert(plain_.end(), data.begin(), data.begin() + static_cast<long>(take));
      data = data.subspan(take);
    }
    return okStatus();
  }

  Status commit() override {
    RETURN_IF_ERROR(header_status_);
    RETURN_IF_ERROR(sealSegment(true));
    return inner_->commit();
  }

 private:
  Status sealSegment(bool last) {
    Status s = seal(plain_, last);
    OPENSSL_cleanse(plain_.data(), plain_.size());
    plain_.clear();
    return s;
  }

  Status seal(ByteView plain, bool last) {
    uint8_t nonce[kGcmNonce];
    sc_.nonceAndAd(index_++, last, nonce, ad_);
    sealed_.clear();
    gcmSeal(sc_.key, nonce, ad_, plain, sealed_);
    return inner_->append(sealed_);
  }

  std::unique_ptr<BlobWriter> inner_;
  uint32_t segment_;
  SegmentCrypto sc_;
  Status header_status_;
  uint64_t index_ = 0;
  Bytes plain_, sealed_, ad_;
};

class DecryptingReader final : public BlobReader {
 public:
  DecryptingReader(std::unique_ptr<BlobReader> inner, SegmentCrypto sc, uint32_t segment, uint64_t plain_size,
                   uint64_t segments)
      : inner_(std::move(inner)), sc_(std::move(sc)), segment_(segment), size_(plain_size), segments_(segments) {}

  uint64_t size() const override { return size_; }
  // Authenticates the last segment (with its is_last flag).
  Status checkLast() { return loadSegment(segments_ - 1); }

  StatusOr<size_t> read(uint64_t offset, std::span<uint8_t> out) override {
    size_t done = 0;
    while (done < out.size() && offset + done < size_) {
      const uint64_t pos = offset + done;
      const uint64_t index = pos / segment_;
      RETURN_IF_ERROR(loadSegment(index));
      const size_t within = static_cast<size_t>(pos - index * segment_);
      const size_t n = std::min(out.size() - done, plain_.size() - within);
      if (n == 0) return dataLoss("segment shorter than expected");
      std::memcpy(out.data() + done, plain_.data() + within, n);
      done += n;
    }
    return done;
  }

 private:
  Status loadSegment(uint64_t index) {
    if (loaded_ == index) return okStatus();
    const uint64_t stride = uint64_t{segment_} + kGcmTag;
    const uint64_t start = kHeader + index * stride;
    const bool last = index + 1 == segments_;
    const uint64_t len = last ? inner_->size() - start : stride;
    sealed_.resize(static_cast<size_t>(len));
    size_t got = 0;
    while (got < len) {
      ASSIGN_OR_RETURN(size_t n, inner_->read(start + got, std::span<uint8_t>(sealed_).subspan(got)));
      if (n == 0) return dataLoss("encrypted blob truncated");
      got += n;
    }
    uint8_t nonce[kGcmNonce];
    sc_.nonceAndAd(index, last, nonce, ad_);
    loaded_ = UINT64_MAX;
    Status s = gcmOpen(sc_.key, nonce, ad_, sealed_, plain_);
    if (!s.ok()) return dataLoss("blob " + sc_.id + " segment " + std::to_string(index) + " failed authentication");
    loaded_ = index;
    return okStatus();
  }

  std::unique_ptr<BlobReader> inner_;
  SegmentCrypto sc_;
  uint32_t segment_;
  uint64_t size_, segments_;
  uint64_t loaded_ = UINT64_MAX;
  Bytes sealed_, plain_, ad_;
};

}  // namespace

StatusOr<std::unique_ptr<BlobWriter>> EncryptingBlobStore::create() {
  ASSIGN_OR_RETURN(auto inner, inner_.create());
  return std::unique_ptr<BlobWriter>(new EncryptingWriter(std::move(inner), keyring_, random_, segment_));
}

StatusOr<std::unique_ptr<BlobReader>> EncryptingBlobStore::open(const std::string& id) {
  ASSIGN_OR_RETURN(auto inner, inner_.open(id));
  uint8_t header[kHeader];
  size_t got = 0;
  while (got < kHeader) {
    ASSIGN_OR_RETURN(size_t n, inner->read(got, std::span<uint8_t>(header + got, kHeader - got)));
    if (n == 0) return dataLoss("blob " + id + " has a truncated header");
    got += n;
  }
  if (std::memcmp(header, kMagic, 8) != 0 || getU32(header + 8) != kVersion)
    return dataLoss("blob " + id + " is not an encrypted blob");
  const uint32_t segment = getU32(header + 12);
  if (segment == 0 || segment > kMaxSegment) return dataLoss("blob " + id + " has a bad segment size");
  SegmentCrypto sc;
  sc.id = id;
  ASSIGN_OR_RETURN(sc.key, keyring_.unwrap(ByteView(header + 16, kWrapped), wrapContext(id, segment)));
  const uint64_t body = inner->size() - kHeader;
  const uint64_t stride = uint64_t{segment} + kGcmTag;
  const uint64_t segments = body == 0 ? 0 : (body + stride - 1) / stride;
  const uint64_t tail = body - (segments ? (segments - 1) * stride : 0);
  if (segments == 0 || tail < kGcmTag) return dataLoss("blob " + id + " is truncated");
  const uint64_t plain_size = (segments - 1) * segment + (tail - kGcmTag);
  auto reader = std::make_unique<DecryptingReader>(std::move(inner), std::move(sc), segment, plain_size, segments);
  // Authenticate the last segment up front: a cut tail is found on open,
  // even by readers that only look at the beginning.
  RETURN_IF_ERROR(reader->checkLast());
  return std::unique_ptr<BlobReader>(std::move(reader));
}

}  // namespace bastion::crypto
