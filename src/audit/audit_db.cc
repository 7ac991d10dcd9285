#include "audit/audit_db.h"

namespace bastion::audit {

using index::Db;
using index::Stmt;

namespace {
const Db::Migration kAuditMigrations[] = {
    {1, R"sql(
CREATE TABLE record (
  seq INTEGER PRIMARY KEY,
  time_us INTEGER NOT NULL,
  action TEXT NOT NULL, outcome TEXT NOT NULL, severity TEXT NOT NULL,
  actor TEXT NOT NULL, user TEXT NOT NULL, source TEXT NOT NULL, cert TEXT NOT NULL,
  study TEXT NOT NULL, rule TEXT NOT NULL, detail TEXT NOT NULL, count INTEGER NOT NULL,
  patient_token BLOB, phi BLOB,  -- NULL when the event names no patient / has no PHI
  prev BLOB NOT NULL, hash BLOB NOT NULL, mac BLOB NOT NULL
);
CREATE INDEX record_time ON record(time_us);
CREATE INDEX record_patient ON record(patient_token, time_us) WHERE patient_token IS NOT NULL;
CREATE INDEX record_user ON record(user, time_us);
CREATE INDEX record_actor ON record(actor, time_us);
CREATE INDEX record_study ON record(study, time_us);
CREATE TABLE checkpoint (
  seq INTEGER PRIMARY KEY, hash BLOB NOT NULL, time_us INTEGER NOT NULL,
  prev_seq INTEGER NOT NULL, every INTEGER NOT NULL, signature BLOB NOT NULL
);
CREATE TABLE cursor (destination TEXT PRIMARY KEY, seq INTEGER NOT NULL);
)sql"},
    // Notes (AuditLog::noteFor): per pack file, the position before which
    // every note's record is in the trail, and the chain head when that was
    // recorded (a recovery looks for a note's record only after it).
    {2, R"sql(
CREATE TABLE note_mark (pack INTEGER PRIMARY KEY, offset INTEGER NOT NULL, seq INTEGER NOT NULL);
)sql"},
};
}  // namespace

std::span<const Db::Migration> auditMigrations() { return kAuditMigrations; }

const char* const kRecordColumns =
    "seq, time_us, action, outcome, severity, actor, user, source, cert, study, rule, detail, count, "
    "patient_token, phi, prev, hash, mac";

Status refuseTriggers(Db& db) {
  ASSIGN_OR_RETURN(Stmt s, db.prepare("SELECT count(*) FROM sqlite_master WHERE type IN ('trigger', 'view')"));
  ASSIGN_OR_RETURN(bool row, s.step());
  const int64_t n = row ? s.i64(0) : 0;
  s.reset();
  if (n != 0) return dataLoss("the audit store holds triggers or views that Bastion never creates: refusing it");
  return okStatus();
}

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
  r.mac = s.blob(17);
  return r;
}

Status insertRecord(Db& db, const StoredRecord& r) {
  ASSIGN_OR_RETURN(Stmt ins, db.prepare(std::string("INSERT INTO record(") + kRecordColumns +
                                        ") VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)"));
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
                      .bind(18, ByteView(r.mac))
                      .run());
  if (sqlite3_changes(db.raw()) != 1) return dataLoss("audit record " + std::to_string(r.seq) + " was not written");
  return okStatus();
}

Status forEachRecord(Db& db, int64_t after, int64_t max, const std::function<bool(const StoredRecord&)>& fn) {
  ASSIGN_OR_RETURN(Stmt s, db.prepare(std::string("SELECT ") + kRecordColumns +
                                      " FROM record WHERE seq > ? ORDER BY seq LIMIT ?"));
  s.bind(1, after).bind(2, max);
  for (;;) {
    auto row = s.step();
    if (!row.ok() || !*row) {
      s.reset();
      return row.ok() ? okStatus() : row.status();
    }
    if (!fn(rowToRecord(s))) break;
  }
  s.reset();
  return okStatus();
}

StatusOr<std::pair<int64_t, Bytes>> chainHead(Db& db) {
  ASSIGN_OR_RETURN(Stmt s, db.prepare("SELECT seq, hash FROM record ORDER BY seq DESC LIMIT 1"));
  ASSIGN_OR_RETURN(bool row, s.step());
  std::pair<int64_t, Bytes> h{0, Bytes(32, 0)};
  if (row) h = {s.i64(0), s.blob(1)};
  s.reset();
  return h;
}

namespace {
constexpr const char* kCheckpointColumns = "seq, hash, time_us, prev_seq, every, signature";
Checkpoint rowToCheckpoint(const Stmt& s) { return {s.i64(0), s.blob(1), s.i64(2), s.i64(3), s.i64(4), s.blob(5)}; }
}  // namespace

StatusOr<std::optional<Checkpoint>> lastCheckpoint(Db& db) {
  ASSIGN_OR_RETURN(Stmt s, db.prepare(std::string("SELECT ") + kCheckpointColumns +
                                      " FROM checkpoint ORDER BY seq DESC LIMIT 1"));
  ASSIGN_OR_RETURN(bool row, s.step());
  std::optional<Checkpoint> cp;
  if (row) cp = rowToCheckpoint(s);
  s.reset();
  return cp;
}

Status insertCheckpoint(Db& db, const Checkpoint& cp) {
  ASSIGN_OR_RETURN(Stmt ins, db.prepare(std::string("INSERT INTO checkpoint(") + kCheckpointColumns +
                                        ") VALUES (?,?,?,?,?,?)"));
  RETURN_IF_ERROR(ins.bind(1, cp.seq)
                      .bind(2, ByteView(cp.hash))
                      .bind(3, cp.time_us)
                      .bind(4, cp.prev_seq)
                      .bind(5, cp.every)
                      .bind(6, ByteView(cp.signature))
                      .run());
  if (sqlite3_changes(db.raw()) != 1) return dataLoss("audit checkpoint was not written");
  return okStatus();
}

Status forEachCheckpoint(Db& db, const std::function<Status(const Checkpoint&)>& fn) {
  ASSIGN_OR_RETURN(Stmt s, db.prepare(std::string("SELECT ") + kCheckpointColumns + " FROM checkpoint ORDER BY seq"));
  for (;;) {
    auto row = s.step();
    if (!row.ok() || !*row) {
      s.reset();
      return row.ok() ? okStatus() : row.status();
    }
    Status st = fn(rowToCheckpoint(s));
    if (!st.ok()) {
      s.reset();
      return st;
    }
  }
}

}  // namespace bastion::audit
