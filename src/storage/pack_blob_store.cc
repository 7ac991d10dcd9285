#include "storage/pack_blob_store.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>

#include "common/group_commit.h"
#include "storage/atomic_file.h"

namespace bastion::storage {
namespace {

// Direct writes go from a writer's buffer: its alignment is the records'.
static_assert(PageAlignedAllocator<uint8_t>::kAlign % pack::kDirectAlign == 0);

Status pwriteAll(int fd, const uint8_t* data, size_t size, uint64_t at) {
  return writeAllAt(fd, ByteView(data, size), at, "write pack");
}

StatusOr<size_t> preadSome(int fd, uint64_t at, std::span<uint8_t> out) { return readAt(fd, at, out, "read pack"); }

// The record header just before `content_at`; nullopt if none decodes there.
StatusOr<std::optional<pack::Header>> headerBefore(int fd, uint64_t content_at) {
  std::array<uint8_t, pack::kHeaderSize> buf{};
  ASSIGN_OR_RETURN(size_t got, preadSome(fd, content_at - pack::kHeaderSize, buf));
  if (got < buf.size()) return std::optional<pack::Header>();
  return pack::decode(buf);
}

// The kind of the record at `loc`, which must still be blob `raw` (`id`):
// kDataLoss if its header is damaged or names another blob.
StatusOr<pack::Kind> recordKind(int fd, uint64_t content_at, uint64_t length, const pack::RawId& raw,
                                const std::string& id) {
  ASSIGN_OR_RETURN(std::optional<pack::Header> h, headerBefore(fd, content_at));
  if (!h || h->id != raw || h->length != length) return dataLoss("the pack header of blob " + id + " is damaged");
  return h->kind;
}

// Removes the record whose header is at `at`: its header says removed (the
// same length), its content becomes a hole (zeros where the filesystem has
// no holes). Not synced.
Status removeRecord(int fd, uint64_t at, const pack::Header& h) {
  const auto header = pack::encode(pack::Header{pack::Kind::kRemoved, h.length, h.id});
  Status s = pwriteAll(fd, header.data(), header.size(), at);
  const uint64_t content = at + pack::kHeaderSize;
  if (s.ok() && h.length > 0 &&
      ::fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, static_cast<off_t>(content),
                  static_cast<off_t>(h.length)) != 0) {
    const Bytes zeros(static_cast<size_t>(std::min<uint64_t>(h.length, 1 << 20)), 0);
    for (uint64_t done = 0; s.ok() && done < h.length; done += zeros.size())
      s = pwriteAll(fd, zeros.data(), static_cast<size_t>(std::min<uint64_t>(zeros.size(), h.length - done)),
                    content + done);
  }
  return s;
}

// Removes the note of blob `raw` whose content is at `content_at`, if a live
// note of that blob (of `length` bytes, if given) is there. True if it wrote.
// Not synced.
StatusOr<bool> removeNoteAt(int fd, uint64_t content_at, const pack::RawId& raw,
                            std::optional<uint64_t> length = std::nullopt) {
  ASSIGN_OR_RETURN(std::optional<pack::Header> h, headerBefore(fd, content_at));
  if (!h || h->kind != pack::Kind::kNote || h->id != raw || (length && h->length != *length)) return false;
  RETURN_IF_ERROR(removeRecord(fd, content_at - pack::kHeaderSize, *h));
  return true;
}

// "<8 hex digits>.pack" -> its number.
std::optional<uint32_t> packNumber(const std::string& name) {
  if (name.size() != 13 || name.compare(8, 5, ".pack") != 0) return std::nullopt;
  uint32_t n = 0;
  for (size_t i = 0; i < 8; ++i) {
    const char c = name[i];
    const int v = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
    if (v < 0) return std::nullopt;
    n = n << 4 | static_cast<uint32_t>(v);
  }
  return n;
}

StatusOr<std::vector<uint32_t>> listPacks(const std::string& dir) {
  DIR* d = ::opendir(dir.c_str());
  if (!d) return errnoStatus("list " + dir);
  std::vector<uint32_t> out;
  while (true) {
    errno = 0;
    const dirent* e = ::readdir(d);
    if (!e) break;
    if (auto n = packNumber(e->d_name)) out.push_back(*n);
  }
  const int err = errno;
  ::closedir(d);
  if (err != 0) {
    errno = err;
    return errnoStatus("list " + dir);
  }
  std::sort(out.begin(), out.end());
  return out;
}

class PackReader final : public BlobReader {
 public:
  PackReader(int fd, uint64_t base, uint64_t size) : fd_(fd), base_(base), size_(size) {}
  ~PackReader() override { ::close(fd_); }
  uint64_t size() const override { return size_; }
  StatusOr<size_t> read(uint64_t offset, std::span<uint8_t> out) override {
    if (offset >= size_ || out.empty()) return size_t{0};
    out = out.first(static_cast<size_t>(std::min<uint64_t>(out.size(), size_ - offset)));
    return preadSome(fd_, base_ + offset, out);
  }

 private:
  int fd_;
  uint64_t base_, size_;
};

}  // namespace

// One pack this process appends to: where the next record goes, which bytes
// are written and which are durable, and the zero-filled space ahead.
class PackBlobStore::Pack {
 public:
  // `direct_fd`: the same file opened with O_DIRECT, or -1.
  Pack(uint32_t number, int fd, int direct_fd, uint64_t limit, bool drop_behind)
      : number_(number), fd_(fd), direct_fd_(direct_fd), limit_(limit), drop_behind_(drop_behind) {}
  // Drops zero-filled space nobody will write (not synced: after a crash
  // the zeros come back, which a scan reads as the end).
  ~Pack() {
    if (status_.ok() && !zeroing_ && written_end_ == reserved_end_ && prepared_end_ > reserved_end_)
      (void)::ftruncate(fd_, static_cast<off_t>(reserved_end_));
    if (direct_fd_ >= 0) ::close(direct_fd_);
    ::close(fd_);
  }
  uint32_t number() const { return number_; }

  // The offset for a record of `total` bytes; nullopt if the pack is full or failed.
  std::optional<uint64_t> reserve(uint64_t total) {
    std::lock_guard l(mu_);
    if (!status_.ok() || (reserved_end_ > 0 && reserved_end_ + total > limit_)) return std::nullopt;
    const uint64_t at = reserved_end_;
    reserved_end_ += total;
    return at;
  }

  // Writes a reserved record, with direct I/O if the pack has it and the
  // record, its place and its buffer are aligned. Waits while its range is
  // being zero-filled.
  Status write(uint64_t at, ByteView record) {
    const uint64_t end = at + record.size();
    {
      std::unique_lock l(mu_);
      cv_.wait(l, [&] { return !zeroing_ || end <= zero_from_ || at >= zero_to_; });
    }
    const bool direct = direct_fd_ >= 0 && direct_ok_.load(std::memory_order_relaxed) && at % pack::kDirectAlign == 0 &&
                        record.size() % pack::kDirectAlign == 0 &&
                        reinterpret_cast<uintptr_t>(record.data()) % pack::kDirectAlign == 0;
    // A direct write that fails or falls short (a device wanting more
    // alignment, say) is done again buffered, whole, and so are the pack's
    // later records.
    const bool written = direct && ::pwrite(direct_fd_, record.data(), record.size(), static_cast<off_t>(at)) ==
                                       static_cast<ssize_t>(record.size());
    if (direct && !written) direct_ok_.store(false, std::memory_order_relaxed);
    Status s = written ? okStatus() : pwriteAll(fd_, record.data(), record.size(), at);
    std::lock_guard l(mu_);
    if (!s.ok()) {
      fail(s);
      return s;
    }
    if (at == written_end_) {
      written_end_ = end;
      for (auto it = done_.begin(); it != done_.end() && it->first == written_end_; it = done_.erase(it))
        written_end_ = it->second;
    } else {
      done_[at] = end;
    }
    if (sync_waiting_) cv_.notify_all();  // a sync leader waits for the records before its own
    return okStatus();
  }

  // Returns once every byte before `end` is written and an fdatasync begun
  // after that has completed. Concurrent callers share syncs (GroupCommit):
  // the leader waits for the records before the batch's last one, then syncs.
  Status durable(uint64_t end) {
    {
      std::lock_guard l(mu_);
      if (synced_end_ >= end) return okStatus();
      if (!status_.ok()) return status_;
    }
    SyncRequest me{end};
    syncs_.submit(me, [this](std::vector<SyncRequest*>& batch) {
      uint64_t want = 0;
      for (const SyncRequest* r : batch) want = std::max(want, r->end);
      std::unique_lock l(mu_);
      sync_waiting_ = true;
      cv_.wait(l, [&] { return written_end_ >= want || !status_.ok(); });
      sync_waiting_ = false;
      if (status_.ok() && synced_end_ < want) {
        const uint64_t target = written_end_;
        l.unlock();
        const int rc = ::fdatasync(fd_);
        const Status s = rc == 0 ? okStatus() : errnoStatus("fdatasync pack");
        l.lock();
        // A failed fdatasync may have dropped dirty pages: nothing after the
        // last good sync is trusted again in this pack.
        if (!s.ok()) fail(s);
        else synced_end_ = std::max(synced_end_, target);
      }
      for (SyncRequest* r : batch) r->status = synced_end_ >= r->end ? okStatus() : status_;
    });
    dropBehind();  // after the batch's callers were released
    return me.status;
  }

  // Best effort after a failed commit: the record's header says removed, so
  // that nothing reads a blob whose commit failed.
  void markRemoved(uint64_t at, const std::array<uint8_t, pack::kHeaderSize>& removed) {
    (void)pwriteAll(fd_, removed.data(), removed.size(), at);
  }

  // True if the zero-filled space ahead of the records is a whole `chunk`
  // short of `ahead` and nobody is filling it: worth waking the preparer.
  bool shortOfZeros(uint64_t ahead, uint64_t chunk) {
    std::lock_guard l(mu_);
    if (!status_.ok() || zeroing_ || prepare_failed_) return false;
    const uint64_t have = prepared_end_ > reserved_end_ ? prepared_end_ - reserved_end_ : 0;
    return have < (ahead > chunk ? ahead - chunk : ahead) && reserved_end_ < limit_;
  }

  // Claims the next range to zero-fill, if the prepared space ahead of the
  // records is short of `ahead`.
  std::optional<std::pair<uint64_t, uint64_t>> claimZeroRange(uint64_t ahead, uint64_t chunk) {
    std::lock_guard l(mu_);
    if (!status_.ok() || zeroing_ || prepare_failed_) return std::nullopt;
    const uint64_t from = std::max(prepared_end_, reserved_end_);
    if (from >= reserved_end_ + ahead || from >= limit_) return std::nullopt;
    zeroing_ = true;
    zero_from_ = from;
    zero_to_ = std::min(from + chunk, limit_);
    return std::pair{zero_from_, zero_to_};
  }

  void zeroFill(uint64_t from, uint64_t to, const Bytes& zeros) {
    Status s = okStatus();
    for (uint64_t at = from; s.ok() && at < to; at += zeros.size())
      s = pwriteAll(fd_, zeros.data(), static_cast<size_t>(std::min<uint64_t>(zeros.size(), to - at)), at);
    const bool synced = s.ok() && ::fdatasync(fd_) == 0;
    std::lock_guard l(mu_);
    zeroing_ = false;
    if (synced) {
      prepared_end_ = to;
    } else if (s.ok()) {
      // The failed fdatasync may have been the one that reported (and
      // cleared) a writeback error of records: none of them is trusted.
      fail(errnoStatus("fdatasync pack"));
    } else {
      prepare_failed_ = true;  // zeros not written: records are still appended, only slower
    }
    cv_.notify_all();
  }

 private:
  void fail(const Status& s) {
    if (status_.ok()) status_ = s;
    cv_.notify_all();
  }

  // Durable whole pages are clean: the kernel drops them (the partial last
  // page stays, the next record is written into it). Advice only: nothing is
  // lost if ignored. One thread at a time; the others go on.
  void dropBehind() {
    static const uint64_t kPage = static_cast<uint64_t>(::sysconf(_SC_PAGESIZE));
    // Pages are dropped a megabyte at a time, not after every sync: under
    // small stores the call per sync cost 2.4 % of the server's CPU.
    constexpr uint64_t kAtLeast = uint64_t{1} << 20;
    if (!drop_behind_) return;
    uint64_t from = 0, to = 0;
    {
      std::lock_guard l(mu_);
      to = synced_end_ / kPage * kPage;
      if (dropping_ || to < dropped_end_ + kAtLeast) return;
      dropping_ = true;
      from = dropped_end_;
    }
    (void)::posix_fadvise(fd_, static_cast<off_t>(from), static_cast<off_t>(to - from), POSIX_FADV_DONTNEED);
    std::lock_guard l(mu_);
    dropped_end_ = to;
    dropping_ = false;
  }

  const uint32_t number_;
  const int fd_, direct_fd_;
  const uint64_t limit_;
  const bool drop_behind_;             // (also for a direct pack: its fallback and removals go through the cache)
  std::atomic<bool> direct_ok_{true};  // no direct write has failed
  uint64_t dropped_end_ = 0;  // pages before this were dropped; guarded by mu_
  bool dropping_ = false;     // a thread is dropping pages; guarded by mu_
  std::mutex mu_;
  std::condition_variable cv_;
  Status status_ = okStatus();       // the first write or sync failure, for good
  uint64_t reserved_end_ = 0;        // the next record starts here
  uint64_t written_end_ = 0;         // every byte before this is written
  std::map<uint64_t, uint64_t> done_;  // records written beyond written_end_: start -> end
  uint64_t synced_end_ = 0;          // every byte before this is durable
  bool sync_waiting_ = false;        // a sync leader waits for written_end_
  struct SyncRequest {
    uint64_t end;
    Status status = unavailable("pack not synced");  // until the batch's sync says otherwise
  };
  GroupCommit<SyncRequest> syncs_;
  uint64_t prepared_end_ = 0;        // zero-filled and synced up to here
  bool zeroing_ = false, prepare_failed_ = false;
  uint64_t zero_from_ = 0, zero_to_ = 0;
};

class PackBlobStore::Writer final : public BlobWriter {
  // Room kept for a note attached after expect(): store notes are ~1 KB.
  static constexpr size_t kNoteRoom = 4096;

 public:
  Writer(PackBlobStore& store, std::string id)
      : store_(store), id_(std::move(id)), record_(pack::kHeaderSize) {}  // header room, written by commitRecord
  const std::string& id() const override { return id_; }

  void expect(uint64_t bytes) override {
    if (!file_ && record_.size() - pack::kHeaderSize + bytes <= store_.options_.inline_max)
      record_.reserve(record_.size() + bytes + pack::kHeaderSize + (note_.empty() ? kNoteRoom : note_.size()) +
                      pack::kHeaderSize + pack::kDirectAlign);  // a filler's room
  }

  Status append(ByteView data) override {
    if (done_) return internalError("writer already committed");
    if (file_) return file_->append(data);
    if (record_.size() - pack::kHeaderSize + data.size() > store_.options_.inline_max) {
      ASSIGN_OR_RETURN(file_, store_.files_->createWithId(id_));
      RETURN_IF_ERROR(file_->append(ByteView(record_).subspan(pack::kHeaderSize)));
      PageAlignedBytes().swap(record_);
      return file_->append(data);
    }
    appendBytes(record_, data);
    return okStatus();
  }

  bool attachNote(Bytes note) override {
    if (done_ || note.empty() || note.size() > pack::kMaxNote) return false;
    note_ = std::move(note);
    return true;
  }

  Status commit() override {
    if (done_) return internalError("writer already committed");
    done_ = true;
    if (file_) {
      RETURN_IF_ERROR(file_->commit());
      if (note_.empty()) return okStatus();
      PageAlignedBytes record(pack::kHeaderSize);  // the note alone, after its blob's file
      appendBytes(record, note_);
      Status s = store_.commitRecord(id_, record, false, note_.size());
      if (!s.ok()) (void)store_.files_->remove(id_);  // on error nothing is visible under id()
      return s;
    }
    if (!note_.empty()) {
      record_.resize(record_.size() + pack::kHeaderSize);  // the note's header, written by commitRecord
      appendBytes(record_, note_);
    }
    return store_.commitRecord(id_, record_, true, note_.size());
  }

 private:
  PackBlobStore& store_;
  const std::string id_;
  PageAlignedBytes record_;  // header space, then the content
  Bytes note_;
  std::unique_ptr<BlobWriter> file_;
  bool done_ = false;
};

size_t PackBlobStore::RawIdHash::operator()(const pack::RawId& id) const {
  size_t h = 0;
  std::memcpy(&h, id.data(), sizeof h);  // the ids are random
  return h;
}

PackBlobStore::PackBlobStore(std::string root, Random& random, PackOptions options,
                             std::unique_ptr<FilesystemBlobStore> files)
    : root_(std::move(root)), packs_dir_(root_ + "/packs"), random_(random), options_(options),
      files_(std::move(files)) {
  if (options_.prepare_ahead > 0) preparer_ = std::thread([this] { preparerLoop(); });
}

PackBlobStore::~PackBlobStore() {
  {
    std::lock_guard l(prep_mu_);
    stopping_ = true;
  }
  prep_cv_.notify_all();
  if (preparer_.joinable()) preparer_.join();
  for (int fd : lock_fds_) ::close(fd);
}

StatusOr<std::unique_ptr<PackBlobStore>> PackBlobStore::open(const std::string& root, Random& random,
                                                            PackOptions options) {
  if (options.inline_max > options.pack_size || options.inline_max > pack::kMaxContent)
    return invalidArgument("inline_max must not exceed the pack size");
  if (options.prepare_ahead > 0 && options.prepare_chunk == 0)
    return invalidArgument("prepare_chunk must be positive when space is prepared ahead");
  ASSIGN_OR_RETURN(auto files, FilesystemBlobStore::open(root, random));
  RETURN_IF_ERROR(ensureDirectory(root + "/packs"));
  return std::unique_ptr<PackBlobStore>(new PackBlobStore(root, random, options, std::move(files)));
}

std::string PackBlobStore::packPath(uint32_t pack) const {
  char name[16];
  std::snprintf(name, sizeof name, "%08x.pack", pack);
  return packs_dir_ + "/" + name;
}

StatusOr<std::unique_ptr<BlobWriter>> PackBlobStore::create() {
  return std::unique_ptr<BlobWriter>(new Writer(*this, newUuid(random_)));
}

StatusOr<std::shared_ptr<PackBlobStore::Pack>> PackBlobStore::activePack(int lane) {
  std::lock_guard l(lanes_mu_);
  if (lanes_[lane]) return lanes_[lane];
  // A new pack: the number after every pack there is (other processes
  // create theirs in the same directory; O_EXCL settles a race).
  ASSIGN_OR_RETURN(std::vector<uint32_t> existing, listPacks(packs_dir_));
  uint32_t number = existing.empty() ? 1 : existing.back() + 1;
  for (int attempt = 0; attempt < 100; ++attempt, ++number) {
    const std::string path = packPath(number);
    const int fd = ::open(path.c_str(), O_CREAT | O_EXCL | O_RDWR | O_CLOEXEC, 0600);
    if (fd < 0 && errno == EEXIST) continue;
    if (fd < 0) return errnoStatus("create " + path);
    // Held until this store closes (a duplicate descriptor keeps it past the
    // pack's retirement): forEachNote() in another process leaves alone every
    // pack whose stores may still be finishing here. Blocking: a reader holds
    // its shared lock only while it scans.
    const int lock_fd = ::flock(fd, LOCK_EX) == 0 ? ::dup(fd) : -1;
    if (lock_fd < 0) {
      const Status s = errnoStatus("lock " + path);
      ::close(fd);
      ::unlink(path.c_str());
      return s;
    }
    lock_fds_.push_back(lock_fd);
    {
      std::lock_guard m(map_mu_);  // before any record: refresh() never reads this pack
      packs_[number] = Known{0, true};
    }
    Status s = syncDirectory(packs_dir_);
    if (!s.ok()) {
      ::close(fd);
      ::unlink(path.c_str());
      return s;
    }
    // The large lane's records bypass the page cache where the filesystem
    // allows it (where it refuses O_DIRECT, buffered writes).
    const int direct_fd =
        lane == 1 && options_.direct_large ? ::open(path.c_str(), O_WRONLY | O_DIRECT | O_CLOEXEC) : -1;
    lanes_[lane] = std::make_shared<Pack>(number, fd, direct_fd, options_.pack_size, options_.drop_behind);
    return lanes_[lane];
  }
  return internalError("cannot create a pack in " + packs_dir_);
}

void PackBlobStore::retire(int lane, const std::shared_ptr<Pack>& pack) {
  std::lock_guard l(lanes_mu_);
  if (lanes_[lane] == pack) lanes_[lane].reset();
}

Status PackBlobStore::commitRecord(const std::string& id, PageAlignedBytes& record, bool blob, uint64_t note_length) {
  auto raw = pack::rawId(id);
  if (!raw) return internalError("blob id is not a UUID");
  const uint64_t notes = note_length > 0 ? pack::kHeaderSize + note_length : 0;
  const uint64_t length = record.size() - notes - (blob ? pack::kHeaderSize : 0);
  const auto putHeader = [&record](uint64_t at, const pack::Header& h) {
    const auto header = pack::encode(h);
    std::copy(header.begin(), header.end(), record.begin() + static_cast<std::ptrdiff_t>(at));
  };
  const uint64_t unpadded = record.size();
  if (blob) putHeader(0, pack::Header{pack::Kind::kBlob, length, *raw});
  if (notes > 0) putHeader(unpadded - notes, pack::Header{pack::Kind::kNote, note_length, *raw});
  const int lane = unpadded <= options_.small_record ? 0 : 1;
  if (lane == 1 && options_.direct_large) {
    if (const uint64_t filler = pack::fillerAfter(unpadded); filler > 0) {
      record.resize(static_cast<size_t>(unpadded + filler));
      std::memset(record.data() + unpadded, 0, static_cast<size_t>(filler));
      putHeader(unpadded, pack::Header{pack::Kind::kFiller, filler - pack::kHeaderSize, {}});
    }
  }
  // A new pack takes any first record; others may fill it first, hence a few rounds.
  for (int attempt = 0; attempt < 100; ++attempt) {
    ASSIGN_OR_RETURN(std::shared_ptr<Pack> p, activePack(lane));
    const auto at = p->reserve(record.size());
    if (!at) {  // full (or failed): the next pack
      retire(lane, p);
      continue;
    }
    if (lane == 0 && options_.prepare_ahead > 0 && p->shortOfZeros(options_.prepare_ahead, options_.prepare_chunk))
      prep_cv_.notify_one();
    Status s = p->write(*at, record);
    if (s.ok()) {
      s = p->durable(*at + record.size());
      if (!s.ok() && blob) p->markRemoved(*at, pack::encode(pack::Header{pack::Kind::kRemoved, length, *raw}));
    }
    if (!s.ok()) {
      retire(lane, p);
      return s;
    }
    std::lock_guard l(map_mu_);
    if (blob) locations_[*raw] = Location{p->number(), *at + pack::kHeaderSize, length};
    else if (notes > 0)
      loose_notes_[*raw] = Location{p->number(), *at + unpadded - note_length, note_length};
    Known& k = packs_[p->number()];
    k.committed_end = std::max(k.committed_end, *at + record.size());
    return okStatus();
  }
  return internalError("no pack takes a record of " + std::to_string(record.size()) + " bytes");
}

Status PackBlobStore::refresh() {
  std::lock_guard r(refresh_mu_);
  ASSIGN_OR_RETURN(std::vector<uint32_t> numbers, listPacks(packs_dir_));
  for (uint32_t number : numbers) {
    uint64_t from = 0;
    {
      std::lock_guard l(map_mu_);
      const Known& k = packs_[number];
      if (k.own) continue;
      from = k.scanned_end;
    }
    const std::string path = packPath(number);
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return errnoStatus("open " + path);
    struct stat st {};
    if (::fstat(fd, &st) != 0) {
      ::close(fd);
      return errnoStatus("stat " + path);
    }
    std::vector<pack::Record> found;
    auto end = pack::scan([fd](uint64_t at, std::span<uint8_t> out) { return preadSome(fd, at, out); }, from,
                          static_cast<uint64_t>(st.st_size), [&](const pack::Record& rec) { found.push_back(rec); });
    ::close(fd);
    if (!end.ok()) return end.status();
    std::lock_guard l(map_mu_);
    if (packs_[number].own) continue;  // became ours while it was read (created by this process)
    for (size_t i = 0; i < found.size(); ++i) {
      const pack::Record& rec = found[i];
      if (rec.header.kind == pack::Kind::kBlob) {
        locations_[rec.header.id] = Location{number, rec.offset, rec.header.length};
      } else if (rec.header.kind == pack::Kind::kRemoved) {
        locations_.erase(rec.header.id);
        loose_notes_.erase(rec.header.id);
      } else if (rec.header.kind == pack::Kind::kNote) {
        const pack::Record* before = i > 0 ? &found[i - 1] : nullptr;
        const bool behind_its_blob = before && before->header.kind == pack::Kind::kBlob &&
                                     before->header.id == rec.header.id &&
                                     before->offset + before->header.length + pack::kHeaderSize == rec.offset;
        if (!behind_its_blob) loose_notes_[rec.header.id] = Location{number, rec.offset, rec.header.length};
      }
    }
    packs_[number].scanned_end = end->end;
  }
  std::lock_guard l(map_mu_);
  scanned_ = true;
  return okStatus();
}

std::optional<PackBlobStore::Location> PackBlobStore::find(const pack::RawId& raw) {
  std::lock_guard l(map_mu_);
  auto it = locations_.find(raw);
  if (it == locations_.end()) return std::nullopt;
  return it->second;
}

void PackBlobStore::forget(const pack::RawId& raw) {
  std::lock_guard l(map_mu_);
  locations_.erase(raw);
}

StatusOr<std::optional<PackBlobStore::Location>> PackBlobStore::lookup(const std::string& id, pack::RawId& raw) {
  auto r = pack::rawId(id);
  if (!r) return invalidArgument("not a blob id");
  raw = *r;
  bool scanned;
  {
    std::lock_guard l(map_mu_);
    scanned = scanned_;
  }
  if (!scanned) RETURN_IF_ERROR(refresh());
  if (auto loc = find(raw)) return loc;
  return std::optional<Location>();
}

std::optional<PackBlobStore::Location> PackBlobStore::locate(const std::string& id) {
  pack::RawId raw;
  auto loc = lookup(id, raw);
  if (!loc.ok()) return std::nullopt;
  return *loc;
}

StatusOr<std::unique_ptr<BlobReader>> PackBlobStore::open(const std::string& id) {
  pack::RawId raw;
  ASSIGN_OR_RETURN(std::optional<Location> loc, lookup(id, raw));
  if (!loc) {
    // A file of its own, or written by another process since the last scan.
    auto file = files_->open(id);
    if (file.ok() || file.status().code() != StatusCode::kNotFound) return file;
    RETURN_IF_ERROR(refresh());
    loc = find(raw);
    if (!loc) return notFound("blob " + id + " not found");
  }
  const std::string path = packPath(loc->pack);
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOENT) return dataLoss("pack " + path + " of blob " + id + " is missing");
    return errnoStatus("open " + path);
  }
  // The header must still name this blob: another process may have removed
  // it, and damage shows here before any content is read.
  auto kind = recordKind(fd, loc->offset, loc->length, raw, id);
  if (!kind.ok() || *kind == pack::Kind::kRemoved) {
    ::close(fd);
    if (!kind.ok()) return kind.status();
    forget(raw);
    return notFound("blob " + id + " not found");
  }
  return std::unique_ptr<BlobReader>(new PackReader(fd, loc->offset, loc->length));
}

Status PackBlobStore::remove(const std::string& id) {
  pack::RawId raw;
  ASSIGN_OR_RETURN(std::optional<Location> loc, lookup(id, raw));
  if (!loc) {
    // A file of its own, maybe: its note (a record alone in some pack) goes
    // first. After a failure or a crash in between, the object without its
    // note is a leftover the start-up sweep removes; the other way round, a
    // note could outlive its object for good.
    RETURN_IF_ERROR(removeLooseNote(raw));  // scans other processes' packs again
    Status s = files_->remove(id);
    if (s.code() != StatusCode::kNotFound) return s;
    loc = find(raw);
    if (!loc) return s;
  }
  // Under refresh_mu_: a scan running now cannot put the blob back after forget().
  std::lock_guard r(refresh_mu_);
  const std::string path = packPath(loc->pack);
  const int fd = ::open(path.c_str(), O_RDWR | O_CLOEXEC);
  if (fd < 0) return errnoStatus("open " + path);
  auto kind = recordKind(fd, loc->offset, loc->length, raw, id);
  if (!kind.ok()) {  // damaged
    ::close(fd);
    return kind.status();
  }
  bool wrote = false;
  Status s = okStatus();
  if (*kind == pack::Kind::kBlob) {
    s = removeRecord(fd, loc->offset - pack::kHeaderSize, pack::Header{pack::Kind::kBlob, loc->length, raw});
    wrote = true;
  }
  // Its note, written right behind it, goes with it: it holds the store's
  // index row and audit record (sealed), which must not outlive the object.
  // Also when the blob was removed already (a retry after a failure here).
  if (s.ok()) {
    auto note = removeNoteAt(fd, loc->offset + loc->length + pack::kHeaderSize, raw);
    if (!note.ok()) s = note.status();
    else wrote = wrote || *note;
  }
  if (s.ok() && wrote && ::fdatasync(fd) != 0) s = errnoStatus("fdatasync " + path);
  ::close(fd);
  if (!s.ok()) return s;
  forget(raw);
  if (*kind == pack::Kind::kRemoved) return notFound("blob " + id + " not found");  // removed before, or elsewhere
  return okStatus();
}

Status PackBlobStore::removeUnfinishedFiles() { return files_->removeTempFiles(); }

Status PackBlobStore::removeLooseNote(const pack::RawId& raw) {
  RETURN_IF_ERROR(refresh());  // another process's pack may hold it
  std::lock_guard r(refresh_mu_);
  std::optional<Location> loc;
  {
    std::lock_guard l(map_mu_);
    auto it = loose_notes_.find(raw);
    if (it == loose_notes_.end()) return okStatus();
    loc = it->second;
  }
  const std::string path = packPath(loc->pack);
  const int fd = ::open(path.c_str(), O_RDWR | O_CLOEXEC);
  if (fd < 0) return errnoStatus("open " + path);
  // Synced even if the note was found removed: by an attempt whose sync failed, maybe.
  Status s = removeNoteAt(fd, loc->offset, raw, loc->length).status();
  if (s.ok() && ::fdatasync(fd) != 0) s = errnoStatus("fdatasync " + path);
  ::close(fd);
  if (s.ok()) {
    std::lock_guard l(map_mu_);
    loose_notes_.erase(raw);
  }
  return s;
}

Status PackBlobStore::forEach(const std::function<void(const std::string& id)>& fn) {
  RETURN_IF_ERROR(refresh());
  std::map<uint32_t, std::vector<std::pair<pack::RawId, Location>>> by_pack;
  {
    std::lock_guard l(map_mu_);
    for (const auto& [raw, loc] : locations_) by_pack[loc.pack].emplace_back(raw, loc);
  }
  // Each header is read again: another process may have removed the blob
  // behind the point its pack was scanned to.
  for (const auto& [number, entries] : by_pack) {
    const std::string path = packPath(number);
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return errnoStatus("open " + path);
    for (const auto& [raw, loc] : entries) {
      auto h = headerBefore(fd, loc.offset);
      if (!h.ok()) {
        ::close(fd);
        return h.status();
      }
      if (*h && ((*h)->kind == pack::Kind::kRemoved || (*h)->id != raw)) {
        forget(raw);
        continue;
      }
      fn(pack::idString(raw));  // damaged headers too: opening the blob says so
    }
    ::close(fd);
  }
  return files_->forEach(fn);
}

std::map<uint32_t, uint64_t> PackBlobStore::committedEnds() {
  std::lock_guard l(map_mu_);
  std::map<uint32_t, uint64_t> ends;
  for (const auto& [number, k] : packs_)
    if (k.own && k.committed_end > 0) ends[number] = k.committed_end;
  return ends;
}

Status PackBlobStore::forEachNote(const std::map<uint32_t, uint64_t>& from, std::map<uint32_t, uint64_t>& ends,
                                  const std::function<Status(const Note&)>& fn) {
  ASSIGN_OR_RETURN(std::vector<uint32_t> numbers, listPacks(packs_dir_));
  for (uint32_t number : numbers) {
    {
      std::lock_guard l(map_mu_);
      auto k = packs_.find(number);
      if (k != packs_.end() && k->second.own) continue;
    }
    const auto start = from.find(number);
    const uint64_t begin = start == from.end() ? 0 : start->second;
    const std::string path = packPath(number);
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return errnoStatus("open " + path);
    if (::flock(fd, LOCK_SH | LOCK_NB) != 0) {  // another process still writes it
      ::close(fd);
      continue;
    }
    struct stat st {};
    if (::fstat(fd, &st) != 0) {
      const Status s = errnoStatus("stat " + path);
      ::close(fd);
      return s;
    }
    std::vector<pack::Record> notes;
    auto end = pack::scan([fd](uint64_t at, std::span<uint8_t> out) { return preadSome(fd, at, out); }, begin,
                          static_cast<uint64_t>(st.st_size), [&](const pack::Record& rec) {
                            if (rec.header.kind == pack::Kind::kNote) notes.push_back(rec);
                          });
    Status s = end.status();
    for (size_t i = 0; s.ok() && i < notes.size(); ++i) {
      const pack::Record& rec = notes[i];
      if (rec.header.length > pack::kMaxNote) continue;  // damage
      Note note{number, pack::idString(rec.header.id), Bytes(static_cast<size_t>(rec.header.length))};
      auto got = readAt(fd, rec.offset, note.body, "read note");
      if (!got.ok()) s = got.status();
      else if (*got == note.body.size()) s = fn(note);  // (a short note is a torn tail: no blob was acknowledged)
    }
    ::close(fd);
    RETURN_IF_ERROR(s);
    if (end->end > begin) ends[number] = end->end;
  }
  return okStatus();
}

void PackBlobStore::preparerLoop() {
  const Bytes zeros(static_cast<size_t>(std::min<uint64_t>(options_.prepare_chunk, 1 << 20)), 0);
  std::unique_lock l(prep_mu_);
  while (!stopping_) {
    std::shared_ptr<Pack> p;
    {
      std::lock_guard g(lanes_mu_);
      p = lanes_[0];
    }
    if (p) {
      if (auto range = p->claimZeroRange(options_.prepare_ahead, options_.prepare_chunk)) {
        l.unlock();
        p->zeroFill(range->first, range->second, zeros);
        l.lock();
        continue;
      }
    }
    prep_cv_.wait_for(l, std::chrono::milliseconds(200));
  }
}

}  // namespace bastion::storage
