#include <gtest/gtest.h>

#include "bastion/crypto/keyring.h"
#include "crypto/aead.h"
#include "crypto/encrypting_blob_store.h"
#include "storage/memory_blob_store.h"
#include "test_util.h"

namespace bastion {
namespace {

using testing::FakeRandom;

Key256 testKek() {
  Key256 k{};
  for (size_t i = 0; i < k.size(); ++i) k[i] = static_cast<uint8_t>(i);
  return k;
}

class EncryptingBlobStoreTest : public ::testing::Test {
 protected:
  FakeRandom random_;
  storage::MemoryBlobStore inner_{random_};
  std::unique_ptr<Keyring> keyring_ = makeKeyring(testKek(), random_);
  crypto::EncryptingBlobStore store_{inner_, *keyring_, random_, /*segment_size=*/64};

  Bytes sample(size_t n) {
    Bytes b(n);
    for (size_t i = 0; i < n; ++i) b[i] = static_cast<uint8_t>(i * 7 + 3);
    return b;
  }
  StatusOr<Bytes> readBack(const std::string& id) {
    ASSIGN_OR_RETURN(auto r, store_.open(id));
    return readAll(*r, 1 << 20);
  }
};

TEST_F(EncryptingBlobStoreTest, RoundTripsAtSegmentBoundaries) {
  for (size_t n : {0, 1, 63, 64, 65, 128, 1000}) {
    Bytes data = sample(n);
    auto id = writeBlob(store_, data);
    ASSERT_TRUE(id.ok());
    auto back = readBack(*id);
    ASSERT_TRUE(back.ok()) << n << ": " << back.status().toString();
    EXPECT_EQ(*back, data) << n;
  }
}

TEST_F(EncryptingBlobStoreTest, StoresNoPlaintext) {
  std::string canary = "CANARY^PATIENT^SECRET-12345";
  auto id = writeBlob(store_, asBytes(canary));
  ASSERT_TRUE(id.ok());
  std::string raw(asChars(*inner_.raw(*id)));
  EXPECT_EQ(raw.find("CANARY"), std::string::npos);
}

TEST_F(EncryptingBlobStoreTest, RandomAccessReadsMiddleOfObject) {
  Bytes data = sample(500);
  auto id = writeBlob(store_, data);
  ASSERT_TRUE(id.ok());
  auto r = store_.open(*id);
  ASSERT_TRUE(r.ok());
  uint8_t buf[10];
  auto n = (*r)->read(130, buf);
  ASSERT_TRUE(n.ok());
  ASSERT_EQ(*n, 10u);
  EXPECT_EQ(0, std::memcmp(buf, data.data() + 130, 10));
}

TEST_F(EncryptingBlobStoreTest, RejectsFlippedByte) {
  Bytes data = sample(300);
  auto id = writeBlob(store_, data);
  ASSERT_TRUE(id.ok());
  Bytes* raw = inner_.raw(*id);
  (*raw)[raw->size() / 2] ^= 0x01;
  auto back = readBack(*id);
  ASSERT_FALSE(back.ok());
  EXPECT_EQ(back.status().code(), StatusCode::kDataLoss);
}

TEST_F(EncryptingBlobStoreTest, RejectsTruncatedTail) {
  auto id = writeBlob(store_, sample(300));  // 5 segments of 64 bytes
  ASSERT_TRUE(id.ok());
  Bytes* raw = inner_.raw(*id);
  raw->resize(raw->size() - (44 + 16));  // drop the last (short) segment entirely
  auto r = store_.open(*id);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kDataLoss);
}

TEST_F(EncryptingBlobStoreTest, RejectsReorderedSegments) {
  auto id = writeBlob(store_, sample(300));
  ASSERT_TRUE(id.ok());
  Bytes* raw = inner_.raw(*id);
  const size_t header = 76, stride = 64 + 16;
  std::swap_ranges(raw->begin() + header, raw->begin() + header + stride, raw->begin() + header + stride);
  auto back = readBack(*id);
  ASSERT_FALSE(back.ok());
  EXPECT_EQ(back.status().code(), StatusCode::kDataLoss);
}

TEST_F(EncryptingBlobStoreTest, RejectsCiphertextMovedToAnotherId) {
  auto a = writeBlob(store_, sample(100));
  auto b = writeBlob(store_, sample(200));
  ASSERT_TRUE(a.ok() && b.ok());
  *inner_.raw(*b) = *inner_.raw(*a);
  auto r = store_.open(*b);
  EXPECT_FALSE(r.ok());
}

TEST_F(EncryptingBlobStoreTest, WrongKeyCannotRead) {
  auto id = writeBlob(store_, sample(100));
  ASSERT_TRUE(id.ok());
  Key256 other = testKek();
  other[0] ^= 1;
  auto ring = makeKeyring(other, random_);
  crypto::EncryptingBlobStore wrong(inner_, *ring, random_, 64);
  EXPECT_FALSE(wrong.open(*id).ok());
}

TEST(Keyring, KeyFileIsCreatedOnceWithMode0600) {
  testing::TempDir dir;
  FakeRandom random;
  const std::string path = dir.path() + "/kek.key";
  ASSERT_TRUE(createKeyFile(path, random).ok());
  EXPECT_EQ(createKeyFile(path, random).code(), StatusCode::kAlreadyExists);
  struct stat st {};
  ASSERT_EQ(::stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  auto ring = loadFileKeyring(path, random);
  ASSERT_TRUE(ring.ok());
  ::chmod(path.c_str(), 0644);
  EXPECT_EQ(loadFileKeyring(path, random).status().code(), StatusCode::kPermissionDenied);
}

TEST(Keyring, WrapIsBoundToContext) {
  FakeRandom random;
  auto ring = makeKeyring(testKek(), random);
  Key256 dk{};
  dk[5] = 42;
  Bytes w = ring->wrap(dk, asBytes("object-a"));
  auto ok = ring->unwrap(w, asBytes("object-a"));
  ASSERT_TRUE(ok.ok());
  EXPECT_EQ(*ok, dk);
  EXPECT_FALSE(ring->unwrap(w, asBytes("object-b")).ok());
}

TEST(Sha256, MatchesKnownVector) {
  EXPECT_EQ(toHex(crypto::sha256(asBytes("abc"))),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

}  // namespace
}  // namespace bastion
