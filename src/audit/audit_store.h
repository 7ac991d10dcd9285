// AuditStore: the archive's tamper-evident audit trail, an SQLite database
// of its own (audit.db, WAL) next to the index.
//
//  - append() returns once the record is committed durably (group commit:
//    concurrent callers share one transaction and one fsync, run by one of
//    them);
//  - records are hash-chained (record.h); a signed checkpoint is written
//    every `checkpoint_every` records or `checkpoint_interval` of time, and
//    when the store closes;
//  - PHI is sealed; patient IDs are searchable by keyed token;
//  - several processes may append (the server and the CLI): each batch reads
//    the chain's head inside its write transaction.
// Nothing here deletes or updates a record: the SQL has no such statement.
#pragma once

#include <atomic>
#include <condition_variable>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <thread>

#include "audit/record.h"
#include "bastion/audit/audit_log.h"
#include "bastion/common/clock.h"
#include "common/group_commit.h"
#include "index/sqlite/sqlite_db.h"

namespace bastion::audit {

struct AuditStoreOptions {
  int64_t checkpoint_every = 1000;
  std::chrono::seconds checkpoint_interval{60};
};

// What a search selects; empty fields match everything.
struct AuditFilter {
  std::string patient_id, user, actor, study, action, outcome, source;
  std::optional<std::chrono::system_clock::time_point> since, until;  // [since, until)
  int64_t after_seq = 0;  // only records with a larger position
  size_t limit = 1000;
};

struct AuditEntry {
  int64_t seq = 0;
  AuditEvent event;
};

class AuditStore final : public AuditLog {
 public:
  static StatusOr<std::unique_ptr<AuditStore>> open(const std::string& path, const Keyring& keyring, Random& random,
                                                    const Clock& clock, AuditStoreOptions options = {});
  // Writes a final checkpoint (if records follow the last one) and stops.
  ~AuditStore() override;
  Status append(const AuditEvent& event) override;
  // Notes (AuditLog): appendNoted() commits without a sync of its own; the
  // record is durable with the next synced commit (any other append, a
  // checkpoint, the store's close) or lost with the operating system, and
  // then appended again from its note (server/store_notes.h).
  std::optional<Bytes> noteFor(const AuditEvent& event, const std::string& object_id) override;
  Status appendNoted(const AuditEvent& event) override;
  // Per pack file: the position before which every note's record is here,
  // and the chain head when that was recorded.
  struct NoteMark {
    int64_t offset = 0, seq = 0;
  };
  StatusOr<std::map<uint32_t, NoteMark>> noteMarks();
  // Records `ends` as marks naming position `seq` (a head read before the
  // ends were taken); a mark's seq changes only when its offset advances.
  // Committed without a sync: it follows, in the WAL, every record committed
  // before it, so after a crash either both or only the records remain.
  Status setNoteMarks(const std::map<uint32_t, uint64_t>& ends, int64_t seq);
  // Appends durably the event of `note` (kept with `object_id`), its detail
  // saying it was recovered, unless the trail has its record after position
  // `after_seq` (same time, action, study, actor, source and detail). True
  // if appended; kDataLoss if the note does not open.
  StatusOr<bool> appendFromNote(ByteView note, const std::string& object_id, int64_t after_seq);
  // Syncs the trail's files: every record committed so far is durable.
  Status sync() override;
  // The last position known durable (synced commits, sync()): what may leave
  // the archive (export). Records after it may still be lost to a crash.
  int64_t durableSeq() const { return durable_seq_.load(); }

  // Records matching `filter` in position order, PHI decrypted. `emit`
  // returns false to stop. kDataLoss if a record's PHI does not open.
  Status search(const AuditFilter& filter, const std::function<bool(const AuditEntry&)>& emit);
  // Records after `seq` in order (forwarders, export), at most `max`.
  Status readAfter(int64_t seq, size_t max, const std::function<void(const AuditEntry&)>& emit);
  StatusOr<int64_t> lastSeq();
  // Signs a checkpoint at the current head now (if the head has none) and
  // returns the latest checkpoint. kNotFound if the store is empty.
  StatusOr<Checkpoint> checkpoint();
  // Delivery cursors of export destinations, kept with the records.
  StatusOr<int64_t> cursor(const std::string& destination);
  Status setCursor(const std::string& destination, int64_t seq);
  // Called (on the thread that committed, before the batch's callers return)
  // after each commit with the new head: keep it short, and do not append
  // or call onCommit() from it.
  // Once onCommit() returns, the previous function is not running and will
  // not be called again.
  void onCommit(std::function<void(int64_t)> fn);

  const AuditKeys& keys() const { return keys_; }

 private:
  struct Pending {
    const AuditEvent* event = nullptr;
    bool lazy = false;                 // may commit without a sync (a note keeps it)
    std::optional<int64_t> unless_after;  // skipped if its record follows this position
    bool skipped = false;
    bool recovered = false;  // appended from a note: the detail says so
    Status status = unavailable("audit record not committed");
  };
  Status submit(Pending& p);
  // True if a record like `e` (time, action, study, actor, source, detail as a prefix) follows `after_seq`.
  StatusOr<bool> hasRecordLike(index::Db& db, const AuditEvent& e, int64_t after_seq);
  AuditStore(std::string path, std::unique_ptr<index::Db> writer, std::unique_ptr<index::Db> reader,
             const Keyring& keyring, Random& random, const Clock& clock, AuditStoreOptions options);
  // Signs a checkpoint when records have waited past the interval, until the store closes.
  void checkpointLoop();
  Status commitBatch(const std::vector<Pending*>& batch, int64_t& head);
  // A checkpoint at the head in its own transaction, if due (or `force`). Inside group_.
  Status checkpointNow(bool force);
  // Inside the caller's transaction: a checkpoint at the head if one is due
  // (forced, or checkpoint_interval passed since the last).
  Status checkpointIfDue(index::Db& db, bool force);
  // Signs (seq, hash) after checking that the records since `last` are
  // intact; if they are not, appends an alert record instead, once.
  Status signHead(index::Db& db, const std::optional<Checkpoint>& last, int64_t seq, ByteView hash, int64_t now_us);
  bool tail_alerted_ = false;  // writer connection only

  const std::string path_;
  std::atomic<int64_t> durable_seq_{0};  // only grows: advanceDurableSeq()
  void advanceDurableSeq(int64_t seq);
  std::unique_ptr<index::Db> writer_db_;  // inside group_ only
  std::unique_ptr<index::Db> reader_db_;  // guarded by read_mu_
  AuditKeys keys_;
  Random& random_;
  const Clock& clock_;
  AuditStoreOptions options_;

  GroupCommit<Pending> group_;  // appends, and the checkpoint thread's use of writer_db_
  std::mutex mu_;
  std::condition_variable stop_cv_;
  bool stopping_ = false;  // guarded by mu_
  int appending_ = 0;      // append() calls inside group_; guarded by mu_
  std::mutex callback_mu_;  // guards on_commit_ and is held while it runs
  std::function<void(int64_t)> on_commit_;
  int64_t opened_us_;  // when this store was opened (checkpoint interval before the first)
  std::mutex read_mu_;
  std::thread checkpointer_;
};

struct VerifyReport {
  bool ok = true;
  int64_t records = 0;
  int64_t checkpoints = 0;
  int64_t unsigned_tail = 0;  // records after the last checkpoint
  int64_t bad_seq = 0;        // first bad position
  std::string problem;
};

// Proves the chain, every checkpoint signature and the chain of checkpoints
// of the store at `path` with `key`: a checkpoint at least every `every`
// records (the cadence each checkpoint states; `tail_every` for the records
// after the last one). If `exported` is given (a checkpoint kept elsewhere),
// the store must still hold that record with that hash (truncation, rewrite).
// Opens the file read-only and never creates it; an empty trail fails.
// With `mac_key` (derived from the KEK) every record's MAC is checked too,
// which also covers the records after the last checkpoint.
StatusOr<VerifyReport> verifyAuditStore(const std::string& path, const PublicKey& key,
                                        const std::optional<Checkpoint>& exported, int64_t tail_every,
                                        const AuditKeys* mac_key = nullptr);

}  // namespace bastion::audit
