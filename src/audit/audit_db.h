// The audit store's SQLite layout and the statements shared by the store
// (audit_store.cc) and its verifier (audit_verify.cc). Internal to audit/.
#pragma once

#include <functional>
#include <optional>
#include <span>
#include <utility>

#include "audit/record.h"
#include "index/sqlite/sqlite_db.h"

namespace bastion::audit {

std::span<const index::Db::Migration> auditMigrations();

// Refuses a database with triggers or views: either could drop, alter or
// hide records while every statement still reports success.
Status refuseTriggers(index::Db& db);

// Inserts one record; kDataLoss unless exactly one row was written.
Status insertRecord(index::Db& db, const StoredRecord& r);
// Records after `after` in order (at most `max`), passed to `fn`; stops when fn returns false.
Status forEachRecord(index::Db& db, int64_t after, int64_t max, const std::function<bool(const StoredRecord&)>& fn);
// The SELECT column list of a record and its decoding from a row.
extern const char* const kRecordColumns;
StoredRecord rowToRecord(const index::Stmt& s);

// The chain's head (position, hash); (0, 32 zero bytes) when empty.
StatusOr<std::pair<int64_t, Bytes>> chainHead(index::Db& db);
StatusOr<std::optional<Checkpoint>> lastCheckpoint(index::Db& db);
Status insertCheckpoint(index::Db& db, const Checkpoint& cp);
// Every checkpoint in position order.
Status forEachCheckpoint(index::Db& db, const std::function<Status(const Checkpoint&)>& fn);

}  // namespace bastion::audit
