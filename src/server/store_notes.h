// Store notes: a store's index row and audit record are committed without a
// sync of their own; their durable copy is the note (service/store_note.h)
// written and synced with the stored object in its pack (PackBlobStore).
// This file keeps the index, the trail and the notes in step (docs/audit.md,
// "Store records and notes"):
//
//  - recoverFromNotes(), at start-up: for every note after its pack's mark
//    whose object is still stored, the instance is indexed again if the
//    index lost it, and its audit record appended (marked as recovered)
//    unless the trail has it; then the packs read are marked up to where
//    their records end.
//  - NoteSettler, while the archive runs: every `interval`, before every
//    deletion and when destroyed, it reads the trail's head, takes where this
//    process's committed records end, waits for the stores begun before that
//    to finish, syncs the index, records those positions as marks (naming
//    that head) and syncs the trail.
#pragma once

#include <chrono>
#include <condition_variable>
#include <map>
#include <mutex>
#include <thread>

#include "audit/audit_store.h"
#include "bastion/service/archive.h"
#include "index/sqlite/sqlite_index.h"
#include "storage/pack_blob_store.h"

namespace bastion::server {

struct NoteRecovery {
  size_t instances = 0;  // index rows inserted again
  size_t records = 0;    // audit records appended
};

// A note that does not open (damage) is reported on stderr and skipped;
// other errors stop the recovery.
StatusOr<NoteRecovery> recoverFromNotes(storage::PackBlobStore& files, index::SqliteIndex& index,
                                        audit::AuditStore& audit);

class NoteSettler {
 public:
  NoteSettler(storage::PackBlobStore& files, index::SqliteIndex& index, audit::AuditStore& audit, StoreService& store,
              std::chrono::milliseconds interval = std::chrono::milliseconds(1000));
  ~NoteSettler();
  NoteSettler(const NoteSettler&) = delete;
  NoteSettler& operator=(const NoteSettler&) = delete;

  // One round now: before a deletion (the notes of the objects it removes
  // must never be read again), and in tests.
  Status settle();

 private:
  void run();

  storage::PackBlobStore& files_;
  index::SqliteIndex& index_;
  audit::AuditStore& audit_;
  StoreService& store_;
  const std::chrono::milliseconds interval_;
  std::mutex round_mu_;                  // one round at a time
  std::map<uint32_t, uint64_t> marked_;  // guarded by round_mu_
  std::mutex mu_;
  std::condition_variable cv_;
  bool stopping_ = false;  // guarded by mu_
  std::thread thread_;
};

}  // namespace bastion::server
