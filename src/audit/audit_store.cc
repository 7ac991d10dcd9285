#include "audit/audit_store.h"

#include <sqlite3.h>
#include <sys/stat.h>

#include <iostream>

#include "audit/audit_db.h"

namespace bastion::audit {
namespace {

using index::Db;
using index::Stmt;

// True if records (from.seq, to_seq] follow `from` (or the chain's start)
// unaltered, each with the archive's MAC, and end at (to_seq, to_hash): what
// a checkpoint is about to sign.
StatusOr<bool> tailIntact(Db& db, const AuditKeys& keys, const std::optional<Checkpoint>& from, int64_t to_seq,
                          ByteView to_hash) {
  int64_t expected = from ? from->seq + 1 : 1;
  Bytes prev = from ? from->hash : Bytes(32, 0);
  bool ok = true;
  RETURN_IF_ERROR(forEachRecord(db, expected - 1, to_seq - expected + 1, [&](const StoredRecord& r) {
    ok = r.seq == expected && r.prev == prev && recordHash(r) == r.hash && recordMac(r, keys) == r.mac;
    prev = r.hash;
    ++expected;
    return ok;
  }));
  return ok && expected == to_seq + 1 && prev == Bytes(to_hash.begin(), to_hash.end());
}

}  // namespace

StatusOr<std::unique_ptr<AuditStore>> AuditStore::open(const std::string& path, const Keyring& keyring,
                                                       Random& random, const Clock& clock,
                                                       AuditStoreOptions options) {
  const mode_t old = ::umask(077);  // the database and its WAL: owner only
  auto writer = Db::open(path, false, auditMigrations());
  auto reader = writer.ok() ? Db::open(path, false, auditMigrations()) : writer.status();
  ::umask(old);
  if (!writer.ok()) return writer.status();
  if (!reader.ok()) return reader.status();
  RETURN_IF_ERROR(refuseTriggers(**writer));
  return std::unique_ptr<AuditStore>(
      new AuditStore(path, std::move(writer).value(), std::move(reader).value(), keyring, random, clock, options));
}

AuditStore::AuditStore(std::string path, std::unique_ptr<Db> writer, std::unique_ptr<Db> reader,
                       const Keyring& keyring, Random& random, const Clock& clock, AuditStoreOptions options)
    : path_(std::move(path)),
      writer_db_(std::move(writer)),
      reader_db_(std::move(reader)),
      keys_(AuditKeys::derive(keyring)),
      random_(random),
      clock_(clock),
      options_(options),
      opened_us_(toMicros(clock.now())) {
  // What a crashed process left in the WAL may not be on the disk yet.
  (void)sync();
  checkpointer_ = std::thread([this] { checkpointLoop(); });
}

AuditStore::~AuditStore() {
  {
    std::unique_lock lock(mu_);
    stopping_ = true;
    stop_cv_.wait(lock, [&] { return appending_ == 0; });  // the last records, then the closing checkpoint
  }
  stop_cv_.notify_all();
  checkpointer_.join();
}

Status AuditStore::append(const AuditEvent& event) {
  Pending p;
  p.event = &event;
  return submit(p);
}

std::optional<Bytes> AuditStore::noteFor(const AuditEvent& event, const std::string& object_id) {
  return sealNote(event, object_id, keys_, random_);
}

Status AuditStore::appendNoted(const AuditEvent& event) {
  Pending p;
  p.event = &event;
  p.lazy = true;
  return submit(p);
}

StatusOr<bool> AuditStore::appendFromNote(ByteView note, const std::string& object_id, int64_t after_seq) {
  ASSIGN_OR_RETURN(AuditEvent e, openNote(note, object_id, keys_));
  Pending p;
  p.event = &e;
  p.unless_after = after_seq;
  p.recovered = true;
  RETURN_IF_ERROR(submit(p));
  return !p.skipped;
}

StatusOr<bool> AuditStore::hasRecordLike(Db& db, const AuditEvent& e, int64_t after_seq) {
  ASSIGN_OR_RETURN(Stmt s, db.prepare("SELECT 1 FROM record WHERE time_us = ? AND seq > ? AND action = ? AND "
                                      "study = ? AND actor = ? AND source = ? AND substr(detail, 1, ?) = ? LIMIT 1"));
  s.bind(1, toMicros(e.time))
      .bind(2, after_seq)
      .bind(3, std::string_view(e.action))
      .bind(4, std::string_view(e.study_uid))
      .bind(5, std::string_view(e.actor_ae))
      .bind(6, std::string_view(e.source_address))
      .bind(7, static_cast<int64_t>(e.detail.size()))
      .bind(8, std::string_view(e.detail));
  ASSIGN_OR_RETURN(bool row, s.step());
  s.reset();
  return row;
}

StatusOr<std::map<uint32_t, AuditStore::NoteMark>> AuditStore::noteMarks() {
  std::lock_guard lock(read_mu_);
  ASSIGN_OR_RETURN(Stmt s, reader_db_->prepare("SELECT pack, offset, seq FROM note_mark"));
  std::map<uint32_t, NoteMark> marks;
  RETURN_IF_ERROR(s.forEachRow([&] { marks[static_cast<uint32_t>(s.i64(0))] = NoteMark{s.i64(1), s.i64(2)}; }));
  return marks;
}

Status AuditStore::setNoteMarks(const std::map<uint32_t, uint64_t>& ends, int64_t seq) {
  if (ends.empty()) return okStatus();
  return group_.exclusive([&]() -> Status {
    Db& db = *writer_db_;
    RETURN_IF_ERROR(db.setLazySync(true));
    RETURN_IF_ERROR(db.exec("BEGIN IMMEDIATE"));
    Status s = [&]() -> Status {
      ASSIGN_OR_RETURN(Stmt up, db.prepare("INSERT INTO note_mark(pack, offset, seq) VALUES (?, ?, ?) "
                                           "ON CONFLICT(pack) DO UPDATE SET "
                                           "seq = CASE WHEN excluded.offset > offset THEN excluded.seq ELSE seq END, "
                                           "offset = max(offset, excluded.offset)"));
      for (const auto& [pack, end] : ends)
        RETURN_IF_ERROR(up.bind(1, static_cast<int64_t>(pack)).bind(2, static_cast<int64_t>(end)).bind(3, seq).run());
      return okStatus();
    }();
    if (s.ok()) s = db.exec("COMMIT");
    if (!s.ok()) (void)db.exec("ROLLBACK");
    return s;
  });
}

void AuditStore::advanceDurableSeq(int64_t seq) {
  int64_t seen = durable_seq_.load();
  while (seen < seq && !durable_seq_.compare_exchange_weak(seen, seq)) {
  }
}

Status AuditStore::sync() {
  ASSIGN_OR_RETURN(int64_t head, lastSeq());  // committed before the syncs below begin
  // Through SQLite's own handles of the WAL and the database (which SQLite
  // syncs after a checkpoint): a descriptor opened and closed here would drop
  // every POSIX lock this process holds on the file.
  RETURN_IF_ERROR(group_.exclusive([&] { return writer_db_->syncFiles(); }));
  advanceDurableSeq(head);
  std::lock_guard callback(callback_mu_);
  if (on_commit_) on_commit_(head);
  return okStatus();
}

Status AuditStore::submit(Pending& p) {
  {
    std::lock_guard lock(mu_);
    if (stopping_) return unavailable("audit store is closing");
    ++appending_;
  }
  group_.submit(p, [this](std::vector<Pending*>& batch) {
    int64_t new_head = 0;
    Status s = okStatus();
    try {
      s = commitBatch(batch, new_head);
    } catch (...) {
      (void)writer_db_->exec("ROLLBACK");  // the next batch must not find a transaction open
      throw;
    }
    for (Pending* b : batch) b->status = s;
    if (s.ok() && !writer_db_->lazySync()) {  // synced: every record up to the new head is durable
      advanceDurableSeq(new_head);
      std::lock_guard callback(callback_mu_);
      if (on_commit_) on_commit_(new_head);
    }
  });
  std::lock_guard lock(mu_);
  if (--appending_ == 0 && stopping_) stop_cv_.notify_all();
  return p.status;
}

void AuditStore::onCommit(std::function<void(int64_t)> fn) {
  std::lock_guard callback(callback_mu_);  // waits for a running callback
  on_commit_ = std::move(fn);
}

void AuditStore::checkpointLoop() {
  // Looks four times per interval, so records wait at most 1.25 intervals
  // for their checkpoint (checkpointIfDue measures from the last one).
  const auto tick = std::max<std::chrono::milliseconds>(
      std::chrono::milliseconds(10), std::chrono::duration_cast<std::chrono::milliseconds>(options_.checkpoint_interval) / 4);
  std::unique_lock lock(mu_);
  while (!stop_cv_.wait_for(lock, tick, [&] { return stopping_; })) {
    lock.unlock();
    group_.exclusive([&] { (void)checkpointNow(false); });  // retried at the next look
    lock.lock();
  }
  lock.unlock();
  group_.exclusive([&] { (void)checkpointNow(true); });  // the store closes on a signed head
}

Status AuditStore::checkpointNow(bool force) {
  Db& db = *writer_db_;
  RETURN_IF_ERROR(writer_db_->setLazySync(false));  // the closing checkpoint makes every record durable
  RETURN_IF_ERROR(db.exec("BEGIN IMMEDIATE"));
  Status s = checkpointIfDue(db, force);
  if (s.ok()) s = db.exec("COMMIT");
  if (!s.ok()) (void)db.exec("ROLLBACK");
  return s;
}

Status AuditStore::checkpointIfDue(Db& db, bool force) {
  ASSIGN_OR_RETURN(auto h, chainHead(db));
  if (h.first == 0) return okStatus();
  ASSIGN_OR_RETURN(auto last, lastCheckpoint(db));
  if (last && h.first == last->seq) return okStatus();
  const int64_t now = toMicros(clock_.now());
  const int64_t since = last ? last->time_us : opened_us_;
  if (!force && now - since < std::chrono::microseconds(options_.checkpoint_interval).count()) return okStatus();
  return signHead(db, last, h.first, h.second, now);
}

Status AuditStore::signHead(Db& db, const std::optional<Checkpoint>& last, int64_t seq, ByteView hash, int64_t now) {
  if (tail_alerted_) return okStatus();  // already found broken: stays unsigned
  ASSIGN_OR_RETURN(bool intact, tailIntact(db, keys_, last, seq, hash));
  if (!intact) {
    // Someone changed records since the last checkpoint: signing now would
    // bless the change. Leave them unsigned (verify fails there) and say so.
    tail_alerted_ = true;
    AuditEvent e = systemEvent(clock_.now(), "bastion", "audit-integrity", "failure",
                               "records after checkpoint " + std::to_string(last ? last->seq : 0) +
                                   " fail verification; the trail is no longer signed");
    e.severity = "high";
    std::cerr << "audit: " << e.detail << "\n";
    return insertRecord(db, sealRecord(e, seq + 1, hash, keys_, random_));
  }
  return insertCheckpoint(db, signCheckpoint(seq, hash, now, last ? last->seq : 0, options_.checkpoint_every, keys_));
}

Status AuditStore::commitBatch(const std::vector<Pending*>& batch, int64_t& new_head) {
  Db& db = *writer_db_;
  bool lazy = true;
  for (const Pending* p : batch) lazy = lazy && p->lazy;
  RETURN_IF_ERROR(writer_db_->setLazySync(lazy));
  RETURN_IF_ERROR(db.exec("BEGIN IMMEDIATE"));
  auto work = [&]() -> Status {
    ASSIGN_OR_RETURN(auto h, chainHead(db));
    ASSIGN_OR_RETURN(auto last, lastCheckpoint(db));
    int64_t seq = h.first;
    Bytes prev = std::move(h.second);
    for (Pending* p : batch) {
      if (p->unless_after) {
        ASSIGN_OR_RETURN(p->skipped, hasRecordLike(db, *p->event, *p->unless_after));
        if (p->skipped) continue;
      }
      AuditEvent recovered;
      if (p->recovered) {
        recovered = *p->event;
        recovered.detail += std::string(recovered.detail.empty() ? "" : " ") +
                            "[recovered from the note kept with the object: the archive stopped before this "
                            "record was durable]";
      }
      const StoredRecord r = sealRecord(p->recovered ? recovered : *p->event, ++seq, prev, keys_, random_);
      RETURN_IF_ERROR(insertRecord(db, r));
      prev = r.hash;
      // A checkpoint exactly every `checkpoint_every` records.
      if (seq - (last ? last->seq : 0) >= options_.checkpoint_every) {
        RETURN_IF_ERROR(signHead(db, last, seq, prev, toMicros(clock_.now())));
        ASSIGN_OR_RETURN(last, lastCheckpoint(db));
        ASSIGN_OR_RETURN(auto now_head, chainHead(db));  // signHead may have added an alert record
        seq = now_head.first;
        prev = now_head.second;
      }
    }
    new_head = seq;
    return checkpointIfDue(db, false);
  };
  Status s = work();
  if (s.ok()) s = db.exec("COMMIT");
  if (!s.ok()) (void)db.exec("ROLLBACK");
  return s;
}

Status AuditStore::search(const AuditFilter& f, const std::function<bool(const AuditEntry&)>& emit) {
  const bool filtered = !f.user.empty() || !f.actor.empty() || !f.study.empty() || !f.action.empty() ||
                        !f.outcome.empty() || !f.source.empty() || !f.patient_id.empty() || f.since || f.until;
  // With a filter, the position must not steer the plan ("+seq" keeps the
  // planner on the filter's index instead of a walk in rowid order).
  std::string sql = std::string("SELECT ") + kRecordColumns + " FROM record WHERE " +
                    (f.after_seq <= 0 ? "1" : filtered ? "+seq > ?" : "seq > ?");
  std::vector<std::pair<std::string, std::string>> text;  // column, value
  if (!f.user.empty()) text.emplace_back("user", f.user);
  if (!f.actor.empty()) text.emplace_back("actor", f.actor);
  if (!f.study.empty()) text.emplace_back("study", f.study);
  if (!f.action.empty()) text.emplace_back("action", f.action);
  if (!f.outcome.empty()) text.emplace_back("outcome", f.outcome);
  if (!f.source.empty()) text.emplace_back("source", f.source);
  for (const auto& [col, _] : text) sql += " AND " + col + " = ?";
  if (!f.patient_id.empty()) sql += " AND patient_token = ?";
  if (f.since) sql += " AND time_us >= ?";
  if (f.until) sql += " AND time_us < ?";
  sql += " ORDER BY seq LIMIT ?";
  std::vector<AuditEntry> found;
  {
    std::lock_guard lock(read_mu_);
    ASSIGN_OR_RETURN(Stmt s, reader_db_->prepare(sql));
    int i = 1;
    if (f.after_seq > 0) s.bind(i++, f.after_seq);
    for (const auto& [_, v] : text) s.bind(i++, std::string_view(v));
    const Bytes token = patientToken(keys_, f.patient_id);
    if (!f.patient_id.empty()) s.bind(i++, ByteView(token));
    if (f.since) s.bind(i++, toMicros(*f.since));
    if (f.until) s.bind(i++, toMicros(*f.until));
    s.bind(i++, static_cast<int64_t>(f.limit));
    RETURN_IF_ERROR(s.forEachRow([&] {
      const StoredRecord r = rowToRecord(s);
      auto e = openRecord(r, keys_);
      if (!e.ok()) {
        // Still reported (its clear fields), marked: one damaged record must
        // not hide the rest of the trail or stop its export.
        const std::string why = e.status().message();
        StoredRecord clear = r;
        clear.phi.clear();
        e = openRecord(clear, keys_);
        e->severity = "high";
        e->detail += " [sealed patient data failed authentication: " + why + "]";
      }
      found.push_back({r.seq, std::move(e).value()});
    }));
  }
  for (const auto& entry : found)
    if (!emit(entry)) break;
  return okStatus();
}

Status AuditStore::readAfter(int64_t seq, size_t max, const std::function<void(const AuditEntry&)>& emit) {
  AuditFilter f;
  f.after_seq = seq;
  f.limit = max;
  return search(f, [&](const AuditEntry& e) {
    emit(e);
    return true;
  });
}

StatusOr<int64_t> AuditStore::lastSeq() {
  std::lock_guard lock(read_mu_);
  ASSIGN_OR_RETURN(auto h, chainHead(*reader_db_));
  return h.first;
}

StatusOr<Checkpoint> AuditStore::checkpoint() {
  // On the writer connection, in turn with the appends (checkpoint state such
  // as tail_alerted_ belongs to it).
  RETURN_IF_ERROR(group_.exclusive([&] { return checkpointNow(true); }));
  std::lock_guard lock(read_mu_);
  ASSIGN_OR_RETURN(auto cp, lastCheckpoint(*reader_db_));
  if (!cp) return notFound("the audit trail is empty");
  return *cp;
}

StatusOr<int64_t> AuditStore::cursor(const std::string& destination) {
  std::lock_guard lock(read_mu_);
  ASSIGN_OR_RETURN(Stmt s, reader_db_->prepare("SELECT seq FROM cursor WHERE destination = ?"));
  s.bind(1, std::string_view(destination));
  ASSIGN_OR_RETURN(bool row, s.step());
  const int64_t seq = row ? s.i64(0) : 0;
  s.reset();
  return seq;
}

Status AuditStore::setCursor(const std::string& destination, int64_t seq) {
  std::lock_guard lock(read_mu_);
  ASSIGN_OR_RETURN(Stmt s, reader_db_->prepare(
                               "INSERT INTO cursor(destination, seq) VALUES (?, ?) "
                               "ON CONFLICT(destination) DO UPDATE SET seq = excluded.seq"));
  return s.bind(1, std::string_view(destination)).bind(2, seq).run();
}

}  // namespace bastion::audit
