#include <gtest/gtest.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <thread>

#include "storage/atomic_file.h"
#include "storage/pack_blob_store.h"
#include "storage/pack_format.h"
#include "test_util.h"

namespace bastion {
namespace {

using storage::PackBlobStore;
using storage::PackOptions;

std::unique_ptr<PackBlobStore> openStore(const std::string& root, Random& random, PackOptions o = {}) {
  auto s = PackBlobStore::open(root, random, o);
  EXPECT_TRUE(s.ok()) << s.status().toString();
  return s.ok() ? std::move(*s) : nullptr;
}

Bytes pattern(size_t n, uint8_t seed) {
  Bytes b(n);
  for (size_t i = 0; i < n; ++i) b[i] = static_cast<uint8_t>(seed + i * 31 + (i >> 8));
  return b;
}

StatusOr<std::string> put(BlobStore& store, const Bytes& data) { return writeBlob(store, data); }

Bytes get(BlobStore& store, const std::string& id) {
  auto r = store.open(id);
  EXPECT_TRUE(r.ok()) << id << ": " << r.status().toString();
  if (!r.ok()) return {};
  auto data = readAll(**r, uint64_t{1} << 32);
  EXPECT_TRUE(data.ok()) << data.status().toString();
  return data.ok() ? *data : Bytes{};
}

std::set<std::string> listAll(BlobStore& store) {
  std::set<std::string> ids;
  EXPECT_TRUE(store.forEach([&](const std::string& id) { ids.insert(id); }).ok());
  return ids;
}

void flipByte(const std::string& path, uint64_t at) {
  std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
  f.seekg(static_cast<std::streamoff>(at));
  char c = 0;
  f.read(&c, 1);
  c = static_cast<char>(c ^ 0x5a);
  f.seekp(static_cast<std::streamoff>(at));
  f.write(&c, 1);
}

// `live` (a blob's or a note's header) and its removed form, each with the
// other's kind byte: a removal torn either way round decodes as removed.
void expectTornRemovalsDecodeAsRemoved(const std::array<uint8_t, storage::pack::kHeaderSize>& live) {
  auto h = storage::pack::decode(live);
  ASSERT_TRUE(h);
  auto removed = storage::pack::encode({storage::pack::Kind::kRemoved, h->length, h->id});
  auto new_kind_old_crc = live, old_kind_new_crc = removed;
  new_kind_old_crc[4] = removed[4];
  old_kind_new_crc[4] = live[4];
  for (const auto& torn : {new_kind_old_crc, old_kind_new_crc}) {
    auto t = storage::pack::decode(torn);
    ASSERT_TRUE(t);
    EXPECT_EQ(t->kind, storage::pack::Kind::kRemoved);
    EXPECT_EQ(t->length, h->length);
    EXPECT_EQ(t->id, h->id);
  }
}

TEST(PackFormat, HeaderRoundTripsAndRejectsDamage) {
  storage::pack::Header h{storage::pack::Kind::kBlob, 123456, *storage::pack::rawId("0123abcd-4567-89ef-0123-456789abcdef")};
  auto b = storage::pack::encode(h);
  auto back = storage::pack::decode(b);
  ASSERT_TRUE(back);
  EXPECT_EQ(back->length, 123456u);
  EXPECT_EQ(storage::pack::idString(back->id), "0123abcd-4567-89ef-0123-456789abcdef");
  for (size_t i = 0; i < b.size(); ++i) {  // any single flipped byte is caught
    auto d = b;
    d[i] ^= 0x01;
    EXPECT_FALSE(storage::pack::decode(d)) << "byte " << i;
  }
  std::array<uint8_t, storage::pack::kHeaderSize> zeros{};
  EXPECT_FALSE(storage::pack::decode(zeros));
  // A removal torn between its kind byte and its CRC decodes as removed, either way round.
  expectTornRemovalsDecodeAsRemoved(b);
  // A note header decodes as one; damaged, as nothing, except a kind turned
  // into "removed" with the note's CRC: a note's removal, torn.
  auto note = storage::pack::encode({storage::pack::Kind::kNote, 300, h.id});
  auto n = storage::pack::decode(note);
  ASSERT_TRUE(n);
  EXPECT_EQ(n->kind, storage::pack::Kind::kNote);
  for (size_t i = 0; i < note.size(); ++i) {
    auto d = note;
    d[i] ^= 0x01;
    if (i == 4) continue;  // 3 ^ 1 == 2: below
    EXPECT_FALSE(storage::pack::decode(d)) << "byte " << i;
  }
  expectTornRemovalsDecodeAsRemoved(note);
  // A filler decodes as one and is never taken for a torn removal.
  auto filler = storage::pack::encode({storage::pack::Kind::kFiller, 4000, {}});
  ASSERT_TRUE(storage::pack::decode(filler));
  EXPECT_EQ(storage::pack::decode(filler)->kind, storage::pack::Kind::kFiller);
  for (size_t i = 0; i < filler.size(); ++i) {
    auto d = filler;
    d[i] ^= 0x01;
    EXPECT_FALSE(storage::pack::decode(d)) << "byte " << i;
  }
  // Nor is a filler's kind with a removal's CRC, or the reverse.
  auto removed_crc = storage::pack::encode({storage::pack::Kind::kRemoved, 4000, {}});
  removed_crc[4] = static_cast<uint8_t>(storage::pack::Kind::kFiller);
  EXPECT_FALSE(storage::pack::decode(removed_crc));
  auto filler_crc = filler;
  filler_crc[4] = static_cast<uint8_t>(storage::pack::Kind::kRemoved);
  EXPECT_FALSE(storage::pack::decode(filler_crc));
  EXPECT_EQ(storage::pack::fillerAfter(4096 * 3), 0u);
  EXPECT_EQ(storage::pack::fillerAfter(4096 * 3 - 48), 48u);
  EXPECT_EQ(storage::pack::fillerAfter(4096 * 3 - 47), 4096u + 47);
  EXPECT_EQ(storage::pack::fillerAfter(4096 * 3 + 1), 4095u);
  // A kind byte damaged into another live kind is not a removal: nothing.
  auto blob_as_note = b;
  blob_as_note[4] = note[4];
  EXPECT_FALSE(storage::pack::decode(blob_as_note));
  EXPECT_FALSE(storage::pack::rawId("0123abcd-4567-89ef-0123-456789abcdeg"));
  EXPECT_FALSE(storage::pack::rawId("../../etc/passwd"));
}

TEST(PackBlobStore, CommittedBlobsAreReadBackAndFoundAfterReopening) {
  testing::TempDir dir;
  testing::FakeRandom random;
  std::vector<std::pair<std::string, Bytes>> blobs;
  {
    auto store = openStore(dir.path(), random);
    auto w = store->create();
    ASSERT_TRUE(w.ok());
    ASSERT_TRUE((*w)->append(asBytes("hello ")).ok());
    ASSERT_TRUE((*w)->append(asBytes("world")).ok());
    EXPECT_EQ(store->open((*w)->id()).status().code(), StatusCode::kNotFound);  // invisible before commit
    ASSERT_TRUE((*w)->commit().ok());
    blobs.emplace_back((*w)->id(), Bytes{'h', 'e', 'l', 'l', 'o', ' ', 'w', 'o', 'r', 'l', 'd'});
    for (size_t size : {size_t{0}, size_t{1}, size_t{9500}, size_t{200000}, size_t{526000}}) {
      Bytes data = pattern(size, static_cast<uint8_t>(size));
      auto id = put(*store, data);
      ASSERT_TRUE(id.ok());
      blobs.emplace_back(*id, data);
    }
    {
      auto abandoned = store->create();
      ASSERT_TRUE((*abandoned)->append(asBytes("never committed")).ok());
    }
    for (const auto& [id, data] : blobs) EXPECT_EQ(get(*store, id), data);
    auto loc = store->locate(blobs[3].first);
    ASSERT_TRUE(loc);
    EXPECT_EQ(loc->length, 9500u);
  }
  // Small and large records went to two packs; nothing is a file of its own.
  EXPECT_EQ(std::distance(std::filesystem::directory_iterator(dir.path() + "/packs"), {}), 2);
  auto store = openStore(dir.path(), random);
  std::set<std::string> expected;
  for (const auto& [id, data] : blobs) {
    EXPECT_EQ(get(*store, id), data);
    expected.insert(id);
  }
  EXPECT_EQ(listAll(*store), expected);
  EXPECT_EQ(store->open("00000000-0000-4000-8000-000000000000").status().code(), StatusCode::kNotFound);
  EXPECT_EQ(store->open("../packs/00000001.pack").status().code(), StatusCode::kInvalidArgument);
}

TEST(PackBlobStore, BlobsBeyondTheInlineLimitGetAFileOfTheirOwn) {
  testing::TempDir dir;
  testing::FakeRandom random;
  PackOptions o;
  o.inline_max = 64 * 1024;
  auto store = openStore(dir.path(), random, o);
  const Bytes big = pattern(300000, 7);
  auto w = store->create();
  for (size_t at = 0; at < big.size(); at += 10000)
    ASSERT_TRUE((*w)->append(ByteView(big).subspan(at, std::min<size_t>(10000, big.size() - at))).ok());
  ASSERT_TRUE((*w)->commit().ok());
  const std::string id = (*w)->id();
  EXPECT_FALSE(store->locate(id));
  EXPECT_TRUE(std::filesystem::exists(dir.path() + "/objects/" + id.substr(0, 2) + "/" + id.substr(2, 2) + "/" + id));
  EXPECT_EQ(get(*store, id), big);
  EXPECT_EQ(listAll(*store), std::set<std::string>{id});
  ASSERT_TRUE(store->remove(id).ok());
  EXPECT_EQ(store->open(id).status().code(), StatusCode::kNotFound);
}

TEST(PackBlobStore, RemovedBlobsAreGoneTheirBytesZeroedAndTheRestIntact) {
  testing::TempDir dir;
  testing::FakeRandom random;
  std::string keep, gone;
  const Bytes a = pattern(20000, 1), b = pattern(20000, 2);
  {
    auto store = openStore(dir.path(), random);
    gone = *put(*store, a);
    keep = *put(*store, b);
    auto loc = store->locate(gone);
    ASSERT_TRUE(loc);
    ASSERT_TRUE(store->remove(gone).ok());
    EXPECT_EQ(store->open(gone).status().code(), StatusCode::kNotFound);
    EXPECT_EQ(store->remove(gone).code(), StatusCode::kNotFound);
    EXPECT_EQ(get(*store, keep), b);
    // The removed content is zeros on disk (a hole or written zeros).
    std::ifstream f(store->packPath(loc->pack), std::ios::binary);
    f.seekg(static_cast<std::streamoff>(loc->offset));
    Bytes on_disk(loc->length);
    f.read(reinterpret_cast<char*>(on_disk.data()), static_cast<std::streamsize>(on_disk.size()));
    EXPECT_EQ(on_disk, Bytes(loc->length, 0));
  }
  auto store = openStore(dir.path(), random);
  EXPECT_EQ(store->open(gone).status().code(), StatusCode::kNotFound);
  EXPECT_EQ(listAll(*store), std::set<std::string>{keep});
  EXPECT_EQ(get(*store, keep), b);
}

TEST(PackBlobStore, ATornTailIsTheEndAndIsNeverWrittenOver) {
  testing::TempDir dir;
  testing::FakeRandom random;
  std::vector<std::pair<std::string, Bytes>> blobs;
  std::string pack;
  {
    auto store = openStore(dir.path(), random);
    for (int i = 0; i < 5; ++i) {
      Bytes data = pattern(3000 + static_cast<size_t>(i), static_cast<uint8_t>(i));
      blobs.emplace_back(*put(*store, data), data);
    }
    pack = store->packPath(store->locate(blobs[0].first)->pack);
  }
  // What a crash can leave after the last acknowledged record: a header whose
  // content never arrived, then half a header.
  const uint64_t good_size = std::filesystem::file_size(pack);
  {
    std::ofstream f(pack, std::ios::binary | std::ios::app);
    auto h = storage::pack::encode({storage::pack::Kind::kBlob, 1 << 20, *storage::pack::rawId(blobs[0].first)});
    f.write(reinterpret_cast<const char*>(h.data()), h.size());  // a header whose content never came
    f.write(reinterpret_cast<const char*>(h.data()), 20);         // then 20 bytes of another
  }
  auto store = openStore(dir.path(), random);
  for (const auto& [id, data] : blobs) EXPECT_EQ(get(*store, id), data);
  EXPECT_EQ(listAll(*store).size(), blobs.size());
  auto more = put(*store, pattern(100, 9));
  ASSERT_TRUE(more.ok());
  EXPECT_NE(store->packPath(store->locate(*more)->pack), pack);  // a new pack, the old one untouched
  EXPECT_EQ(std::filesystem::file_size(pack), good_size + storage::pack::kHeaderSize + 20);
}

TEST(PackBlobStore, ADamagedHeaderIsDataLossAndHidesNoOtherBlob) {
  testing::TempDir dir;
  testing::FakeRandom random;
  auto store = openStore(dir.path(), random);
  const std::string first = *put(*store, pattern(5000, 1));
  const std::string second = *put(*store, pattern(5000, 2));
  const std::string third = *put(*store, pattern(5000, 3));
  auto loc = store->locate(second);
  flipByte(store->packPath(loc->pack), loc->offset - storage::pack::kHeaderSize + 20);  // in the id
  EXPECT_EQ(store->open(second).status().code(), StatusCode::kDataLoss);
  EXPECT_EQ(get(*store, first), pattern(5000, 1));
  // Reopened, the scan steps over the damaged header to the next one: that blob
  // is missing (not misread), the one after it is found.
  auto again = openStore(dir.path(), random);
  EXPECT_EQ(again->open(second).status().code(), StatusCode::kNotFound);
  EXPECT_EQ(get(*again, third), pattern(5000, 3));
  EXPECT_EQ(listAll(*again), (std::set<std::string>{first, third}));
}

TEST(PackBlobStore, ConcurrentWritersShareSyncsAndRollPacks) {
  testing::TempDir dir;
  PackOptions o;
  o.pack_size = 256 * 1024;  // many packs
  o.inline_max = 64 * 1024;
  o.small_record = 8 * 1024;
  o.prepare_ahead = 64 * 1024;
  o.prepare_chunk = 16 * 1024;
  std::vector<std::vector<std::pair<std::string, Bytes>>> per_thread(6);
  {
    auto store = openStore(dir.path(), Random::system(), o);
    std::vector<std::thread> threads;
    for (size_t t = 0; t < per_thread.size(); ++t)
      threads.emplace_back([&, t] {
        for (int i = 0; i < 60; ++i) {
          Bytes data = pattern(static_cast<size_t>((i * 7919 + static_cast<int>(t) * 104729) % 20000), static_cast<uint8_t>(t * 60 + static_cast<size_t>(i)));
          auto id = put(*store, data);
          ASSERT_TRUE(id.ok()) << id.status().toString();
          per_thread[t].emplace_back(*id, data);
        }
      });
    for (auto& th : threads) th.join();
    for (const auto& blobs : per_thread)
      for (const auto& [id, data] : blobs) EXPECT_EQ(get(*store, id), data);
  }
  EXPECT_GT(std::distance(std::filesystem::directory_iterator(dir.path() + "/packs"), {}), 4);
  auto store = openStore(dir.path(), Random::system(), o);
  size_t n = 0;
  for (const auto& blobs : per_thread)
    for (const auto& [id, data] : blobs) {
      EXPECT_EQ(get(*store, id), data);
      ++n;
    }
  EXPECT_EQ(listAll(*store).size(), n);
}

// How many of the whole pages of [from, to) of a file are in the page cache.
size_t residentPages(const std::string& path, uint64_t from, uint64_t to) {
  const long page = ::sysconf(_SC_PAGESIZE);
  const uint64_t first = (from + page - 1) / page, last = to / page;
  if (last <= first) return 0;
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  EXPECT_GE(fd, 0);
  const size_t len = static_cast<size_t>(last * page);
  void* map = ::mmap(nullptr, len, PROT_READ, MAP_SHARED, fd, 0);
  ::close(fd);
  EXPECT_NE(map, MAP_FAILED);
  if (map == MAP_FAILED) return 0;
  std::vector<unsigned char> in(last);
  EXPECT_EQ(::mincore(map, len, in.data()), 0);
  ::munmap(map, len);
  size_t n = 0;
  for (uint64_t i = first; i < last; ++i) n += in[i] & 1;
  return n;
}

bool onTmpfs(const std::string& path) {
  struct statfs fs {};
  EXPECT_EQ(::statfs(path.c_str(), &fs), 0);
  return fs.f_type == 0x01021994;
}

TEST(PackBlobStore, DurableRecordsLeaveThePageCache) {
  testing::TempDir dir;
  if (onTmpfs(dir.path())) GTEST_SKIP() << "tmpfs: its pages are the storage";
  testing::FakeRandom random;
  for (bool drop : {true, false}) {
    PackOptions o;
    o.drop_behind = drop;
    o.direct_large = false;  // buffered: its pages go through the cache
    auto store = openStore(dir.path() + (drop ? "/drop" : "/keep"), random, o);
    const Bytes data = pattern(1 << 20, 7);  // the large lane: appended, not zero-filled ahead
    auto id = put(*store, data);
    ASSERT_TRUE(id.ok());
    auto loc = store->locate(*id);
    ASSERT_TRUE(loc);
    const size_t resident = residentPages(store->packPath(loc->pack), loc->offset, loc->offset + loc->length);
    if (drop) EXPECT_EQ(resident, 0u);
    else EXPECT_GT(resident, 200u);  // of 255 whole pages: written pages stay cached by default
    EXPECT_EQ(get(*store, *id), data);
  }
}

TEST(PackBlobStore, LargeRecordsAreAlignedAndBypassThePageCache) {
  testing::TempDir dir;
  if (onTmpfs(dir.path())) GTEST_SKIP() << "tmpfs: its pages are the storage";
  testing::FakeRandom random;
  PackOptions o;
  o.drop_behind = false;  // what stays out of the cache here is direct I/O's doing
  std::vector<std::pair<std::string, Bytes>> blobs;
  std::string pack;
  {
    auto store = openStore(dir.path(), random, o);
    // Records (header, content, note) that end aligned, 20 bytes short of it
    // (less than a filler's header: a filler of 4 KiB more) and otherwise.
    for (size_t size : {(size_t{200} << 10) - 48, (size_t{300} << 10) - 816, (size_t{256} << 10) + 1, size_t{531000}}) {
      auto w = store->create();
      ASSERT_TRUE(w.ok());
      const Bytes data = pattern(size, static_cast<uint8_t>(size));
      ASSERT_TRUE((*w)->append(data).ok());
      if (blobs.size() % 2 == 1) {
        ASSERT_TRUE((*w)->attachNote(pattern(700, 3)));
      }
      ASSERT_TRUE((*w)->commit().ok());
      blobs.emplace_back((*w)->id(), data);
      auto loc = store->locate((*w)->id());
      ASSERT_TRUE(loc);
      EXPECT_EQ((loc->offset - storage::pack::kHeaderSize) % storage::pack::kDirectAlign, 0u) << size;
      pack = store->packPath(loc->pack);
      EXPECT_EQ(residentPages(pack, loc->offset, loc->offset + loc->length), 0u) << size;
    }
    for (const auto& [id, data] : blobs) EXPECT_EQ(get(*store, id), data);
  }
  // The pack is whole records, each starting aligned: blob, note, filler.
  const uint64_t size = std::filesystem::file_size(pack);
  EXPECT_EQ(size % storage::pack::kDirectAlign, 0u);
  const int fd = ::open(pack.c_str(), O_RDONLY | O_CLOEXEC);
  ASSERT_GE(fd, 0);
  std::vector<storage::pack::Kind> kinds;
  std::vector<uint64_t> starts;
  auto end = storage::pack::scan(
      [fd](uint64_t at, std::span<uint8_t> out) { return storage::readAt(fd, at, out, "read pack"); }, 0, size,
      [&](const storage::pack::Record& r) {
        kinds.push_back(r.header.kind);
        starts.push_back(r.offset - storage::pack::kHeaderSize);
      });
  ::close(fd);
  ASSERT_TRUE(end.ok());
  EXPECT_EQ(end->end, size);
  EXPECT_TRUE(end->clean);
  using K = storage::pack::Kind;
  EXPECT_EQ(kinds, (std::vector<K>{K::kBlob, K::kBlob, K::kNote, K::kFiller, K::kBlob, K::kFiller, K::kBlob,
                                   K::kNote, K::kFiller}));
  for (size_t i = 0; i < kinds.size(); ++i)
    if (kinds[i] == K::kBlob) {
      EXPECT_EQ(starts[i] % storage::pack::kDirectAlign, 0u) << i;
    }
  // Reopened, every blob and both notes are found; removing a blob removes
  // its note; fillers are neither.
  auto store = openStore(dir.path(), random, o);
  EXPECT_EQ(listAll(*store), (std::set<std::string>{blobs[0].first, blobs[1].first, blobs[2].first, blobs[3].first}));
  const auto notesOf = [&] {
    std::map<uint32_t, uint64_t> ends;
    std::vector<std::string> ids;
    EXPECT_TRUE(store->forEachNote({}, ends, [&](const PackBlobStore::Note& n) {
                    EXPECT_EQ(n.body, pattern(700, 3));
                    ids.push_back(n.id);
                    return okStatus();
                  }).ok());
    EXPECT_EQ(ends.size(), 1u);
    if (!ends.empty()) {
      EXPECT_EQ(ends.begin()->second, size);  // the scan ends clean at the last filler
    }
    return ids;
  };
  EXPECT_EQ(notesOf(), (std::vector<std::string>{blobs[1].first, blobs[3].first}));
  ASSERT_TRUE(store->remove(blobs[3].first).ok());
  EXPECT_EQ(store->open(blobs[3].first).status().code(), StatusCode::kNotFound);
  EXPECT_EQ(notesOf(), std::vector<std::string>{blobs[1].first});
  for (size_t i = 0; i < 3; ++i) EXPECT_EQ(get(*store, blobs[i].first), blobs[i].second);
  auto more = put(*store, pattern(400 << 10, 1));
  ASSERT_TRUE(more.ok());
  EXPECT_EQ(get(*store, *more), pattern(400 << 10, 1));
}

TEST(PackBlobStore, ZeroFilledSpaceIsDroppedWhenThePackCloses) {
  testing::TempDir dir;
  testing::FakeRandom random;
  PackOptions o;
  o.prepare_ahead = 1 << 20;
  o.prepare_chunk = 256 * 1024;
  std::string pack;
  uint64_t records = 0;
  {
    auto store = openStore(dir.path(), random, o);
    for (int i = 0; i < 20; ++i) {
      auto id = put(*store, pattern(1000, static_cast<uint8_t>(i)));
      records += 1000 + storage::pack::kHeaderSize;
      pack = store->packPath(store->locate(*id)->pack);
    }
    // The preparer runs ahead of the records (give it a moment).
    for (int i = 0; i < 100 && std::filesystem::file_size(pack) <= records; ++i) usleep(10000);
    EXPECT_GT(std::filesystem::file_size(pack), records);
  }
  EXPECT_EQ(std::filesystem::file_size(pack), records);
}

TEST(PackBlobStore, TwoProcessesSeeEachOthersBlobsAndRemovals) {
  testing::TempDir dir;
  testing::FakeRandom ra(1), rb(2);
  auto a = openStore(dir.path(), ra);
  auto b = openStore(dir.path(), rb);
  const std::string from_b_before = *put(*b, pattern(700, 1));
  EXPECT_EQ(get(*a, from_b_before), pattern(700, 1));  // first read: scan
  const std::string from_b = *put(*b, pattern(800, 2));
  const std::string from_a = *put(*a, pattern(900, 3));
  EXPECT_EQ(get(*a, from_b), pattern(800, 2));  // unknown id: the other packs again
  EXPECT_EQ(get(*b, from_a), pattern(900, 3));
  EXPECT_NE(a->locate(from_a)->pack, b->locate(from_b)->pack);  // each writes its own packs
  ASSERT_TRUE(b->remove(from_b).ok());
  EXPECT_EQ(a->open(from_b).status().code(), StatusCode::kNotFound);  // the header says removed
  EXPECT_EQ(listAll(*a), (std::set<std::string>{from_b_before, from_a}));
}

// The note of a store holds its index row and audit record (sealed): it
// goes with its blob, inline or in a file of its own, in this process's
// packs or another's, and never comes back from a later scan.
TEST(PackBlobStore, RemovingABlobRemovesItsNote) {
  testing::TempDir dir;
  testing::FakeRandom random;
  PackOptions o;
  o.inline_max = 64 << 10;
  const Bytes secret(400, 0xC5);  // stands for a sealed note: a pattern to look for on disk
  auto noted = [&](PackBlobStore& store, size_t size, uint8_t seed) {
    auto w = store.create();
    EXPECT_TRUE(w.ok());
    EXPECT_TRUE((*w)->attachNote(secret));
    EXPECT_TRUE((*w)->append(pattern(size, seed)).ok());
    EXPECT_TRUE((*w)->commit().ok());
    return (*w)->id();
  };
  auto notesOnDisk = [&](PackBlobStore& reader) {
    std::map<uint32_t, uint64_t> ends;
    std::set<std::string> ids;
    EXPECT_TRUE(reader.forEachNote({}, ends, [&](const PackBlobStore::Note& n) {
      ids.insert(n.id);
      return okStatus();
    }).ok());
    return ids;
  };
  auto secretBytesOnDisk = [&] {
    size_t hits = 0;
    for (const auto& e : std::filesystem::recursive_directory_iterator(dir.path())) {
      if (!e.is_regular_file()) continue;
      std::ifstream f(e.path(), std::ios::binary);
      const std::string all((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
      for (size_t at = all.find(std::string(secret.begin(), secret.end())); at != std::string::npos;
           at = all.find(std::string(secret.begin(), secret.end()), at + 1))
        ++hits;
    }
    return hits;
  };
  std::string small_keep, small_gone, large_gone, other_small, other_large;
  {
    auto store = openStore(dir.path(), random, o);
    small_keep = noted(*store, 1000, 1);
    small_gone = noted(*store, 1000, 2);
    large_gone = noted(*store, 100 << 10, 3);  // a file; its note a record of its own
    {
      auto other = openStore(dir.path(), random, o);  // another process's packs
      other_small = noted(*other, 2000, 4);
      other_large = noted(*other, 90 << 10, 5);
    }
    EXPECT_EQ(secretBytesOnDisk(), 5u);
    for (const auto& id : {small_gone, large_gone, other_small, other_large}) ASSERT_TRUE(store->remove(id).ok()) << id;
    EXPECT_EQ(secretBytesOnDisk(), 1u);  // only the kept blob's note
    EXPECT_EQ(get(*store, small_keep), pattern(1000, 1));
    EXPECT_EQ(store->remove(small_gone).code(), StatusCode::kNotFound);
  }
  auto later = openStore(dir.path(), random, o);
  EXPECT_EQ(notesOnDisk(*later), std::set<std::string>{small_keep});
  EXPECT_EQ(listAll(*later), std::set<std::string>{small_keep});
  EXPECT_EQ(get(*later, small_keep), pattern(1000, 1));
  // A removal interrupted after the blob's header (a crash, an I/O error):
  // removing again says not found, and takes the note that was left.
  auto loc = later->locate(small_keep);
  ASSERT_TRUE(loc);
  {
    const auto removed = storage::pack::encode(
        {storage::pack::Kind::kRemoved, loc->length, *storage::pack::rawId(small_keep)});
    std::fstream f(later->packPath(loc->pack), std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(static_cast<std::streamoff>(loc->offset - storage::pack::kHeaderSize));
    f.write(reinterpret_cast<const char*>(removed.data()), static_cast<std::streamsize>(removed.size()));
  }
  EXPECT_EQ(later->remove(small_keep).code(), StatusCode::kNotFound);
  EXPECT_EQ(secretBytesOnDisk(), 0u);
  EXPECT_TRUE(notesOnDisk(*openStore(dir.path(), random, o)).empty());
}

}  // namespace
}  // namespace bastion

namespace bastion {
namespace {

TEST(PackBlobStore, NotesAreDurableWithTheirBlobAndReadOnlyOnceTheirWriterIsGone) {
  testing::TempDir dir;
  testing::FakeRandom random;
  PackOptions o;
  o.inline_max = 64 << 10;  // the large blob gets a file of its own; its note still goes to a pack
  std::string small_id, large_id;
  {
    auto store = openStore(dir.path(), random, o);
    auto w = store->create();
    ASSERT_TRUE(w.ok());
    EXPECT_TRUE((*w)->attachNote(pattern(300, 1)));
    ASSERT_TRUE((*w)->append(pattern(1000, 2)).ok());
    ASSERT_TRUE((*w)->commit().ok());
    small_id = (*w)->id();
    auto w2 = store->create();
    ASSERT_TRUE(w2.ok());
    EXPECT_TRUE((*w2)->attachNote(pattern(200, 3)));
    ASSERT_TRUE((*w2)->append(pattern(100 << 10, 4)).ok());
    ASSERT_TRUE((*w2)->commit().ok());
    large_id = (*w2)->id();
    ASSERT_TRUE(put(*store, pattern(500, 5)).ok());  // no note
    EXPECT_FALSE(store->committedEnds().empty());

    // Another process leaves alone the packs this one still writes (their lock).
    auto other = openStore(dir.path(), random, o);
    std::map<uint32_t, uint64_t> ends;
    int seen = 0;
    ASSERT_TRUE(other->forEachNote({}, ends, [&](const PackBlobStore::Note&) { return ++seen, okStatus(); }).ok());
    EXPECT_EQ(seen, 0);
    EXPECT_TRUE(ends.empty());
    EXPECT_TRUE(other->committedEnds().empty());
  }
  auto later = openStore(dir.path(), random, o);
  std::map<uint32_t, uint64_t> ends;
  std::map<std::string, Bytes> notes;
  ASSERT_TRUE(later
                  ->forEachNote({}, ends,
                                [&](const PackBlobStore::Note& n) {
                                  notes[n.id] = n.body;
                                  return okStatus();
                                })
                  .ok());
  ASSERT_EQ(notes.size(), 2u);
  EXPECT_EQ(notes[small_id], pattern(300, 1));
  EXPECT_EQ(notes[large_id], pattern(200, 3));
  EXPECT_FALSE(ends.empty());
  // Notes are not blobs, nor do they disturb the blob they came with.
  EXPECT_EQ(listAll(*later).size(), 3u);
  EXPECT_EQ(get(*later, small_id), pattern(1000, 2));
  EXPECT_EQ(get(*later, large_id), pattern(100 << 10, 4));
  // From where the scan ended, there is nothing more.
  std::map<uint32_t, uint64_t> again;
  int seen = 0;
  ASSERT_TRUE(later->forEachNote(ends, again, [&](const PackBlobStore::Note&) { return ++seen, okStatus(); }).ok());
  EXPECT_EQ(seen, 0);
}

}  // namespace
}  // namespace bastion
