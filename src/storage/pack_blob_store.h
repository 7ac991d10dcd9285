// PackBlobStore: blobs appended to pack files (<root>/packs/<number>.pack, the
// layout in pack_format.h) instead of one file each, so that storing a blob
// costs one write and a share of one fdatasync, not a new inode, a rename and
// two syncs.
//
//  - create() buffers a blob in memory. A blob that grows beyond
//    `inline_max` moves to a file of its own (FilesystemBlobStore under
//    <root>/objects, same id) and streams there.
//  - commit() reserves the record's place at the end of one of this
//    process's packs, writes header and content in one pwrite and returns
//    once an fdatasync has completed that began after every earlier record of
//    that pack was written (group commit: concurrent commits share syncs).
//    The durable part of a pack is therefore always a prefix: after a crash,
//    a scan from the start finds every acknowledged blob before the first
//    header that does not decode.
//  - Two packs are written at a time: records up to `small_record` bytes go to
//    one whose space ahead a background thread fills with zeros and syncs
//    (their fdatasync then writes data only, no allocation to journal);
//    larger records are appended to the other (zero-filling ahead of them
//    would double the bytes written), with direct I/O where the filesystem
//    has it: each such record starts and ends on a 4 KiB boundary (a filler
//    record takes up the rest), goes from the writer's buffer to the disk
//    without a copy into the page cache, and leaves its sync only the
//    device's cache and the file's size to flush.
//  - A process never appends to a pack it did not create: each start opens
//    new packs, so the tail of a pack interrupted by a crash is never written
//    over, and other processes (the CLI's import) write packs of their own.
//  - remove() marks the record removed and punches a hole over its content
//    (zeros where the filesystem has no holes), does the same to its note,
//    then syncs.
//  - Where each blob lies is kept in memory: the packs' headers are read on
//    the first read, and the packs of other processes again when an id is
//    not known.
// Thread-safe, like every BlobStore.
#pragma once

#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>
#include <unordered_map>
#include <vector>

#include "bastion/common/clock.h"
#include "bastion/storage/blob_store.h"
#include "storage/filesystem_blob_store.h"
#include "storage/pack_format.h"
#include "storage/page_aligned.h"

namespace bastion::storage {

struct PackOptions {
  uint64_t pack_size = uint64_t{1} << 30;      // a pack takes no record that would carry it past this
  uint64_t inline_max = uint64_t{8} << 20;     // larger blobs get a file of their own
  uint64_t small_record = uint64_t{128} << 10;  // records up to this go to the zero-filled pack
  uint64_t prepare_ahead = uint64_t{16} << 20;  // zero-filled bytes kept ahead of it (0: none)
  uint64_t prepare_chunk = uint64_t{4} << 20;   // written and synced at a time
  // Once durable, whole pages of records leave the page cache
  // (POSIX_FADV_DONTNEED): write-once ciphertext would otherwise push the
  // index and recently read objects out, and every store would take fresh pages.
  bool drop_behind = true;
  // Records of the large lane are written with O_DIRECT (where the
  // filesystem refuses it, buffered; the alignment stays).
  bool direct_large = true;
};

class PackBlobStore final : public BlobStore {
 public:
  // `root` must exist or be creatable. `random` must outlive the store.
  static StatusOr<std::unique_ptr<PackBlobStore>> open(const std::string& root, Random& random,
                                                       PackOptions options = {});
  ~PackBlobStore() override;

  StatusOr<std::unique_ptr<BlobWriter>> create() override;
  // kDataLoss if the record's header no longer decodes (damage).
  StatusOr<std::unique_ptr<BlobReader>> open(const std::string& id) override;
  Status remove(const std::string& id) override;
  Status forEach(const std::function<void(const std::string& id)>& fn) override;

  struct Location {
    uint32_t pack = 0;
    uint64_t offset = 0;  // of the content in the pack file
    uint64_t length = 0;
  };
  // Where a blob's content lies in a pack; nullopt for a blob in a file of its
  // own or an unknown id. For tests and tools.
  std::optional<Location> locate(const std::string& id);
  std::string packPath(uint32_t pack) const;

  // Notes (BlobWriter::attachNote) are records of their own behind their
  // blob, written by the same pwrite and made durable by the same sync.
  struct Note {
    uint32_t pack = 0;
    std::string id;  // of the blob it came with (which may since have been removed)
    Bytes body;
  };
  // Removes the temporary files of blobs in files of their own whose writes
  // never committed. Only while no other process writes this store (theirs
  // may be in progress).
  Status removeUnfinishedFiles();
  // Where this process's committed records end in each of its packs now.
  std::map<uint32_t, uint64_t> committedEnds();
  // Calls `fn` with every note of the packs of other processes, each pack
  // from its position in `from` (a record boundary; 0 for a pack not in
  // it), and sets `ends[pack]` to where its records stop. Packs created by
  // a store still open (in any process: it holds their lock until it closes)
  // are skipped. Stops at the first error of `fn`.
  Status forEachNote(const std::map<uint32_t, uint64_t>& from, std::map<uint32_t, uint64_t>& ends,
                     const std::function<Status(const Note&)>& fn);

 private:
  class Pack;
  class Writer;
  struct RawIdHash {
    size_t operator()(const pack::RawId& id) const;
  };
  struct Known {
    uint64_t scanned_end = 0;
    bool own = false;
    uint64_t committed_end = 0;  // own packs: the end of the last committed record
  };

  PackBlobStore(std::string root, Random& random, PackOptions options, std::unique_ptr<FilesystemBlobStore> files);
  // `record` is the blob's header room and content (if `blob`), then, if
  // `note_length` > 0, a note's header room and its `note_length` bytes. A
  // record for the large lane may grow by a filler record.
  Status commitRecord(const std::string& id, PageAlignedBytes& record, bool blob, uint64_t note_length);
  StatusOr<std::shared_ptr<Pack>> activePack(int lane);
  void retire(int lane, const std::shared_ptr<Pack>& pack);
  // Reads the headers of packs this process does not write, from where the
  // last scan stopped (all of them the first time).
  Status refresh();
  std::optional<Location> find(const pack::RawId& raw);
  void forget(const pack::RawId& raw);
  // Removes the note of a blob that had a file of its own, if there is one.
  Status removeLooseNote(const pack::RawId& raw);
  // The location of `id`, scanning other processes' packs once if unknown.
  StatusOr<std::optional<Location>> lookup(const std::string& id, pack::RawId& raw);
  void preparerLoop();

  const std::string root_, packs_dir_;
  Random& random_;
  const PackOptions options_;
  std::unique_ptr<FilesystemBlobStore> files_;

  std::mutex lanes_mu_;
  std::shared_ptr<Pack> lanes_[2];  // guarded by lanes_mu_; [0] small records, [1] the others
  std::vector<int> lock_fds_;       // guarded by lanes_mu_; keep this process's packs locked

  std::mutex refresh_mu_;  // one scan at a time
  std::mutex map_mu_;
  std::unordered_map<pack::RawId, Location, RawIdHash> locations_;  // guarded by map_mu_
  // Notes not right behind their blob (those of blobs in files of their own).
  std::unordered_map<pack::RawId, Location, RawIdHash> loose_notes_;  // guarded by map_mu_
  std::map<uint32_t, Known> packs_;                                 // guarded by map_mu_
  bool scanned_ = false;                                            // guarded by map_mu_

  std::mutex prep_mu_;
  std::condition_variable prep_cv_;
  bool stopping_ = false;  // guarded by prep_mu_
  std::thread preparer_;
};

}  // namespace bastion::storage
