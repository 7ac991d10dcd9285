// Audit notes: the audit record of a store is committed without a sync of
// its own; its durable copy is a note (AuditLog::noteFor) written and synced
// with the stored object in its pack (PackBlobStore). This file keeps the
// trail and the notes in step (docs/audit.md, "Store records and notes"):
//
//  - recoverAuditNotes(), at start-up: every note after its pack's mark whose
//    object is still stored and indexed gets its record appended, durably and
//    marked as recovered, unless the trail has it; then the packs read are
//    marked up to where their records end.
//  - NoteSettler, while the archive runs: every `interval` (and once more when
//    destroyed) it takes where this process's committed records end, waits
//    for the stores begun before that to finish, and records those positions
//    as marks. The marks are committed without a sync: they follow the
//    records they cover in the audit WAL, so a crash keeps the records with
//    them or loses the marks too (and the notes are read again).
#pragma once

#include <chrono>
#include <condition_variable>
#include <map>
#include <mutex>
#include <thread>

#include "audit/audit_store.h"
#include "bastion/index/index.h"
#include "bastion/service/archive.h"
#include "storage/pack_blob_store.h"

namespace bastion::server {

// The number of records appended. A note that does not open (damage) is
// reported on stderr and skipped; other errors stop the recovery.
StatusOr<size_t> recoverAuditNotes(storage::PackBlobStore& files, Index& index, audit::AuditStore& audit);

class NoteSettler {
 public:
  NoteSettler(storage::PackBlobStore& files, audit::AuditStore& audit, StoreService& store,
              std::chrono::milliseconds interval = std::chrono::milliseconds(1000));
  ~NoteSettler();
  NoteSettler(const NoteSettler&) = delete;
  NoteSettler& operator=(const NoteSettler&) = delete;

  // One round now (tests; the thread runs them on its own).
  Status settle();

 private:
  void run();

  storage::PackBlobStore& files_;
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
