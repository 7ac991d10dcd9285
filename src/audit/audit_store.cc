#include "audit/audit_store.h"

#include <sys/stat.h>

namespace bastion::audit {
namespace {

using index::Db;
using index::Stmt;

const Db::Migration kAuditMigrations[] = {
    {1, R"sql(
CREATE TABLE record (
  seq INTEGER PRIMARY KEY,
  time_us INTEGER NOT NULL,
  action TEXT NOT NULL, outcome TEXT NOT NULL, severity TEXT NOT NULL,
  actor TEXT NOT NULL, user TEXT NOT NULL, source TEXT NOT NULL, cert TEXT NOT NULL,
  study TEXT NOT NULL, rule TEXT NOT NULL, detail TEXT NOT NULL, count INTEGER NOT NULL,
  patient_token BLOB, phi BLOB,  -- NULL when the event names no patient / has no PHI
  prev BLOB NOT NULL, hash BLOB NOT NULL
);
CREATE INDEX record_time ON record(time_us);
CREATE INDEX record_patient ON record(patient_token, time_us) WHERE patient_token IS NOT NULL;
CREATE INDEX record_user ON record(user, time_us);
CREATE INDEX record_actor ON record(actor, time_us);
CREATE INDEX record_study ON record(study, time_us);
CREATE TABLE checkpoint (seq INTEGER PRIMARY KEY, hash BLOB NOT NULL, time_us INTEGER NOT NULL, signature BLOB NOT NULL);
CREATE TABLE cursor (destination TEXT PRIMARY KEY, seq INTEGER NOT NULL);
)sql"},
};

constexpr const char* kColumns =
    "seq, time_us, action, outcome, severity, actor, user, source, cert, study, rule, detail, count, "
    "patient_token, phi, prev, hash";

StoredRecord rowToRecord(const Stmt& s) {
  StoredRecord r;
  r.seq = s.i64(0);
  r.time_us = s.i64(1);
  r.action = s.text(2);
  r.outcome = s.text(3);
  r.severity = s.text(4);
  r.actor = s.text(5);
  r.user = s.text(6);
  r.source = s.text(7);
  r.cert = s.text(8);
  r.study = s.text(9);
  r.rule = s.text(10);
  r.detail = s.text(11);
  r.count = s.i64(12);
  r.patient_token = s.blob(13);
  r.phi = s.blob(14);
  r.prev = s.blob(15);
  r.hash = s.blob(16);
  return r;
}

int64_t micros(std::chrono::system_clock::time_point t) {
  return std::chrono::duration_cast<std::chrono::microseconds>(t.time_since_epoch()).count();
}

// The chain's head (position, hash) as the database holds it now.
StatusOr<std::pair<int64_t, Bytes>> head(Db& db) {
  ASSIGN_OR_RETURN(Stmt s, db.prepare("SELECT seq, hash FROM record ORDER BY seq DESC LIMIT 1"));
  ASSIGN_OR_RETURN(bool row, s.step());
  std::pair<int64_t, Bytes> h{0, Bytes(32, 0)};
  if (row) h = {s.i64(0), s.blob(1)};
  s.reset();
  return h;
}

StatusOr<std::optional<Checkpoint>> lastCheckpoint(Db& db) {
  ASSIGN_OR_RETURN(Stmt s, db.prepare("SELECT seq, hash, time_us, signature FROM checkpoint ORDER BY seq DESC LIMIT 1"));
  ASSIGN_OR_RETURN(bool row, s.step());
  std::optional<Checkpoint> cp;
  if (row) cp = Checkpoint{s.i64(0), s.blob(1), s.i64(2), s.blob(3)};
  s.reset();
  return cp;
}

// Signs a checkpoint at the head if it is due; inside the caller's transaction.
// Without a checkpoint yet, the interval counts from `opened_us`.
Status checkpointIfDue(Db& db, const AuditKeys& keys, int64_t now_us, int64_t every, int64_t interval_us,
                       bool force, int64_t opened_us) {
  ASSIGN_OR_RETURN(auto h, head(db));
  if (h.first == 0) return okStatus();
  ASSIGN_OR_RETURN(auto last, lastCheckpoint(db));
  const int64_t last_seq = last ? last->seq : 0;
  if (h.first == last_seq) return okStatus();
  const int64_t since = last ? last->time_us : opened_us;
  const bool due = force || h.first - last_seq >= every || now_us - since >= interval_us;
  if (!due) return okStatus();
  const Checkpoint cp = signCheckpoint(h.first, h.second, now_us, keys);
  ASSIGN_OR_RETURN(Stmt ins, db.prepare("INSERT INTO checkpoint(seq, hash, time_us, signature) VALUES (?,?,?,?)"));
  return ins.bind(1, cp.seq).bind(2, cp.hash).bind(3, cp.time_us).bind(4, cp.signature).run();
}

}  // namespace

StatusOr<std::unique_ptr<AuditStore>> AuditStore::open(const std::string& path, const Keyring& keyring,
                                                       Random& random, const Clock& clock,
                                                       AuditStoreOptions options) {
  const mode_t old = ::umask(077);  // the database and its WAL: owner only
  auto writer = Db::open(path, false, kAuditMigrations);
  auto reader = writer.ok() ? Db::open(path, false, kAuditMigrations) : writer.status();
  ::umask(old);
  if (!writer.ok()) return writer.status();
  if (!reader.ok()) return reader.status();
  return std::unique_ptr<AuditStore>(
      new AuditStore(std::move(writer).value(), std::move(reader).value(), keyring, random, clock, options));
}

AuditStore::AuditStore(std::unique_ptr<Db> writer, std::unique_ptr<Db> reader, const Keyring& keyring,
                       Random& random, const Clock& clock, AuditStoreOptions options)
    : writer_db_(std::move(writer)),
      reader_db_(std::move(reader)),
      keys_(AuditKeys::derive(keyring)),
      random_(random),
      clock_(clock),
      options_(options),
      opened_us_(micros(clock.now())) {
  writer_ = std::thread([this] { writerLoop(); });
}

AuditStore::~AuditStore() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  work_cv_.notify_all();
  writer_.join();
}

Status AuditStore::append(const AuditEvent& event) {
  Pending p{&event, false, okStatus()};
  std::unique_lock lock(mu_);
  if (stopping_) return unavailable("audit store is closing");
  queue_.push_back(&p);
  work_cv_.notify_one();
  done_cv_.wait(lock, [&] { return p.done; });
  return p.status;
}

void AuditStore::onCommit(std::function<void(int64_t)> fn) {
  std::lock_guard callback(callback_mu_);  // waits for a running callback
  on_commit_ = std::move(fn);
}

void AuditStore::writerLoop() {
  const auto interval_us = std::chrono::duration_cast<std::chrono::microseconds>(options_.checkpoint_interval).count();
  for (;;) {
    std::vector<Pending*> batch;
    bool stop = false;
    {
      std::unique_lock lock(mu_);
      work_cv_.wait_for(lock, options_.checkpoint_interval, [&] { return !queue_.empty() || stopping_; });
      while (!queue_.empty() && batch.size() < 2048) {
        batch.push_back(queue_.front());
        queue_.pop_front();
      }
      stop = stopping_ && queue_.empty();
    }
    int64_t new_head = 0;
    if (!batch.empty()) {
      const Status s = commitBatch(batch, new_head);
      {
        std::lock_guard lock(mu_);
        for (Pending* p : batch) {
          p->status = s;
          p->done = true;
        }
      }
      done_cv_.notify_all();
      if (s.ok()) {
        std::lock_guard callback(callback_mu_);
        if (on_commit_) on_commit_(new_head);
      }
    } else {
      // Quiet: a checkpoint if records are waiting for one past the interval.
      checkpointQuietly(false, interval_us);
    }
    if (stop) break;
  }
  checkpointQuietly(true, interval_us);  // the store closes on a signed head
}

void AuditStore::checkpointQuietly(bool force, int64_t interval_us) {
  Db& db = *writer_db_;
  if (!db.exec("BEGIN IMMEDIATE").ok()) return;
  const Status s =
      checkpointIfDue(db, keys_, micros(clock_.now()), options_.checkpoint_every, interval_us, force, opened_us_);
  (void)db.exec(s.ok() ? "COMMIT" : "ROLLBACK");
}

Status AuditStore::commitBatch(const std::vector<Pending*>& batch, int64_t& new_head) {
  Db& db = *writer_db_;
  RETURN_IF_ERROR(db.exec("BEGIN IMMEDIATE"));
  auto work = [&]() -> Status {
    ASSIGN_OR_RETURN(auto h, head(db));
    int64_t seq = h.first;
    Bytes prev = std::move(h.second);
    std::string sql = std::string("INSERT INTO record(") + kColumns + ") VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)";
    for (Pending* p : batch) {
      const StoredRecord r = sealRecord(*p->event, ++seq, prev, keys_, random_);
      ASSIGN_OR_RETURN(Stmt ins, db.prepare(sql));
      RETURN_IF_ERROR(ins.bind(1, r.seq)
                          .bind(2, r.time_us)
                          .bind(3, std::string_view(r.action))
                          .bind(4, std::string_view(r.outcome))
                          .bind(5, std::string_view(r.severity))
                          .bind(6, std::string_view(r.actor))
                          .bind(7, std::string_view(r.user))
                          .bind(8, std::string_view(r.source))
                          .bind(9, std::string_view(r.cert))
                          .bind(10, std::string_view(r.study))
                          .bind(11, std::string_view(r.rule))
                          .bind(12, std::string_view(r.detail))
                          .bind(13, r.count)
                          .bind(14, ByteView(r.patient_token))
                          .bind(15, ByteView(r.phi))
                          .bind(16, ByteView(r.prev))
                          .bind(17, ByteView(r.hash))
                          .run());
      prev = r.hash;
    }
    new_head = seq;
    const auto interval_us =
        std::chrono::duration_cast<std::chrono::microseconds>(options_.checkpoint_interval).count();
    return checkpointIfDue(db, keys_, micros(clock_.now()), options_.checkpoint_every, interval_us, false, opened_us_);
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
  std::string sql = std::string("SELECT ") + kColumns + " FROM record WHERE " +
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
    if (f.since) s.bind(i++, micros(*f.since));
    if (f.until) s.bind(i++, micros(*f.until));
    s.bind(i++, static_cast<int64_t>(f.limit));
    for (;;) {
      auto row = s.step();
      if (!row.ok()) {
        s.reset();
        return row.status();
      }
      if (!*row) break;
      found.push_back({s.i64(0), {}});
      auto e = openRecord(rowToRecord(s), keys_);
      if (!e.ok()) {
        s.reset();
        return dataLoss("audit record " + std::to_string(found.back().seq) + ": " + e.status().message());
      }
      found.back().event = std::move(e).value();
    }
    s.reset();
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
  ASSIGN_OR_RETURN(auto h, head(*reader_db_));
  return h.first;
}

StatusOr<Checkpoint> AuditStore::checkpoint() {
  std::lock_guard lock(read_mu_);
  Db& db = *reader_db_;
  RETURN_IF_ERROR(db.exec("BEGIN IMMEDIATE"));
  Status s = checkpointIfDue(db, keys_, micros(clock_.now()), 1, 0, true, opened_us_);
  if (s.ok()) s = db.exec("COMMIT");
  if (!s.ok()) {
    (void)db.exec("ROLLBACK");
    return s;
  }
  ASSIGN_OR_RETURN(auto cp, lastCheckpoint(db));
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

StatusOr<VerifyReport> verifyAuditStore(const std::string& path, const PublicKey& key,
                                        const std::optional<Checkpoint>& exported) {
  ASSIGN_OR_RETURN(auto db, Db::open(path, true, kAuditMigrations));
  VerifyReport rep;
  auto fail = [&](int64_t seq, std::string why) {
    rep.ok = false;
    rep.bad_seq = seq;
    rep.problem = std::move(why);
    return rep;
  };
  std::map<int64_t, Checkpoint> cps;
  {
    ASSIGN_OR_RETURN(Stmt s, db->prepare("SELECT seq, hash, time_us, signature FROM checkpoint ORDER BY seq"));
    for (;;) {
      ASSIGN_OR_RETURN(bool row, s.step());
      if (!row) break;
      Checkpoint cp{s.i64(0), s.blob(1), s.i64(2), s.blob(3)};
      if (!checkpointValid(cp, key)) return fail(cp.seq, "checkpoint signature does not verify");
      cps.emplace(cp.seq, std::move(cp));
    }
    rep.checkpoints = static_cast<int64_t>(cps.size());
  }
  if (exported) {
    if (!checkpointValid(*exported, key)) return fail(exported->seq, "the exported checkpoint's signature does not verify");
    auto [it, fresh] = cps.emplace(exported->seq, *exported);
    if (!fresh && it->second.hash != exported->hash)
      return fail(exported->seq, "the store's checkpoint differs from the exported one");
  }
  ASSIGN_OR_RETURN(Stmt s, db->prepare(std::string("SELECT ") + kColumns + " FROM record ORDER BY seq"));
  Bytes prev(32, 0);
  int64_t expected = 1;
  int64_t last_signed = 0;
  for (;;) {
    ASSIGN_OR_RETURN(bool row, s.step());
    if (!row) break;
    const StoredRecord r = rowToRecord(s);
    if (r.seq != expected) return fail(expected, "record missing (deleted, inserted or renumbered)");
    if (r.prev != prev) return fail(r.seq, "record does not follow its predecessor (inserted, deleted or reordered)");
    if (recordHash(r) != r.hash) return fail(r.seq, "record content altered");
    if (auto it = cps.find(r.seq); it != cps.end()) {
      if (it->second.hash != r.hash) return fail(r.seq, "record differs from its signed checkpoint");
      last_signed = r.seq;
    }
    prev = r.hash;
    ++expected;
    ++rep.records;
  }
  if (!cps.empty() && cps.rbegin()->first > rep.records)
    return fail(rep.records + 1, "trail truncated: a signed checkpoint names record " +
                                     std::to_string(cps.rbegin()->first));
  rep.unsigned_tail = rep.records - last_signed;
  return rep;
}

}  // namespace bastion::audit
