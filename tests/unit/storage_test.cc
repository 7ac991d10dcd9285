#include <gtest/gtest.h>

#include <filesystem>

#include "storage/filesystem_blob_store.h"
#include "test_util.h"

namespace bastion {
namespace {

TEST(FilesystemBlobStore, CommitMakesBlobVisibleAndDurable) {
  testing::TempDir dir;
  testing::FakeRandom random;
  auto store = storage::FilesystemBlobStore::open(dir.path(), random);
  ASSERT_TRUE(store.ok());
  auto w = (*store)->create();
  ASSERT_TRUE(w.ok());
  const std::string id = (*w)->id();
  ASSERT_TRUE((*w)->append(asBytes("hello ")).ok());
  ASSERT_TRUE((*w)->append(asBytes("world")).ok());
  EXPECT_EQ((*store)->open(id).status().code(), StatusCode::kNotFound);  // invisible before commit
  ASSERT_TRUE((*w)->commit().ok());
  auto r = (*store)->open(id);
  ASSERT_TRUE(r.ok());
  auto data = readAll(**r, 100);
  ASSERT_TRUE(data.ok());
  EXPECT_EQ(std::string(asChars(*data)), "hello world");
  EXPECT_TRUE(std::filesystem::exists((*store)->pathFor(id)));
}

TEST(FilesystemBlobStore, AbandonedWriterLeavesNothing) {
  testing::TempDir dir;
  testing::FakeRandom random;
  auto store = storage::FilesystemBlobStore::open(dir.path(), random);
  ASSERT_TRUE(store.ok());
  {
    auto w = (*store)->create();
    ASSERT_TRUE((*w)->append(asBytes("partial")).ok());
  }
  int count = 0;
  ASSERT_TRUE((*store)->forEach([&](const std::string&) { ++count; }).ok());
  EXPECT_EQ(count, 0);
  for (const auto& e : std::filesystem::recursive_directory_iterator(dir.path()))
    EXPECT_FALSE(e.is_regular_file()) << e.path();
}

// Opening a store never touches another process's write in progress (a
// large C-STORE streams into its temporary file for the whole transfer);
// leftovers go only when removeTempFiles() is called, by the one process
// that has the archive to itself (the start-up sweep).
TEST(FilesystemBlobStore, TemporaryFilesGoOnlyWhenAskedNotWhenAnotherStoreOpens) {
  testing::TempDir dir;
  testing::FakeRandom random;
  auto store = storage::FilesystemBlobStore::open(dir.path(), random);
  ASSERT_TRUE(store.ok());
  auto w = (*store)->create();
  ASSERT_TRUE(w.ok());
  ASSERT_TRUE((*w)->append(asBytes("in progress")).ok());
  auto tmp = [&] {
    int n = 0;
    for (const auto& e : std::filesystem::recursive_directory_iterator(dir.path() + "/objects"))
      n += e.is_regular_file() && e.path().extension() == ".tmp";
    return n;
  };
  EXPECT_EQ(tmp(), 1);
  auto other = storage::FilesystemBlobStore::open(dir.path(), random);  // e.g. `bastion verify`
  ASSERT_TRUE(other.ok());
  EXPECT_EQ(tmp(), 1);
  ASSERT_TRUE((*w)->commit().ok());  // the write in progress was not disturbed
  auto r = (*other)->open((*w)->id());
  ASSERT_TRUE(r.ok());
  auto left = (*store)->create();
  ASSERT_TRUE((*left)->append(asBytes("a write that never commits")).ok());
  EXPECT_EQ(tmp(), 1);
  ASSERT_TRUE((*other)->removeTempFiles().ok());
  EXPECT_EQ(tmp(), 0);
  int count = 0;
  ASSERT_TRUE((*other)->forEach([&](const std::string&) { ++count; }).ok());
  EXPECT_EQ(count, 1);  // the committed blob stays
}

TEST(FilesystemBlobStore, RejectsIdsThatAreNotUuids) {
  testing::TempDir dir;
  testing::FakeRandom random;
  auto store = storage::FilesystemBlobStore::open(dir.path(), random);
  ASSERT_TRUE(store.ok());
  for (const char* bad : {"../../etc/passwd", "", "1.2.3", "ABCDEFAB-1234-4123-8123-123456789012",
                          "00000000-0000-0000-0000-00000000000/"}) {
    EXPECT_EQ((*store)->open(bad).status().code(), StatusCode::kInvalidArgument) << bad;
    EXPECT_EQ((*store)->remove(bad).code(), StatusCode::kInvalidArgument) << bad;
  }
}

TEST(Uuid, GeneratedIdsAreCanonicalAndDistinct) {
  testing::FakeRandom random;
  std::string a = newUuid(random), b = newUuid(random);
  EXPECT_TRUE(isCanonicalUuid(a));
  EXPECT_NE(a, b);
  EXPECT_EQ(a[14], '4');
}

}  // namespace
}  // namespace bastion
