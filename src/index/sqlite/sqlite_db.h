// A small RAII layer over one SQLite connection: prepared statements with
// bound parameters only (never SQL built from values), versioned migrations.
// A Db is used by one thread at a time (callers hold a mutex).
#pragma once

#include <sqlite3.h>

#include <functional>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "bastion/common/bytes.h"
#include "bastion/common/status.h"

namespace bastion::index {

class Stmt {
 public:
  Stmt(sqlite3* db, sqlite3_stmt* s) : db_(db), s_(s) {}
  Stmt& bind(int i, std::string_view v);
  Stmt& bind(int i, ByteView v);
  Stmt& bind(int i, int64_t v);
  // SQLITE_ROW -> true, SQLITE_DONE -> false, errors -> Status.
  StatusOr<bool> step();
  Status run();  // step() expecting DONE
  // Steps through every row, calling `row` with the statement on it, then
  // resets the statement (also on error).
  Status forEachRow(const std::function<void()>& row);
  std::string text(int col) const;
  Bytes blob(int col) const;
  int64_t i64(int col) const { return sqlite3_column_int64(s_, col); }
  void reset();

 private:
  sqlite3* db_;
  sqlite3_stmt* s_;
};

class Db {
 public:
  // Opens (creating) the database in WAL mode with synchronous=FULL and
  // applies pending migrations. `readonly` opens for queries only.
  static StatusOr<std::unique_ptr<Db>> open(const std::string& path, bool readonly = false);
  // Same, with another database's migrations (e.g. the audit store's).
  struct Migration {
    int version;
    const char* sql;
  };
  static StatusOr<std::unique_ptr<Db>> open(const std::string& path, bool readonly,
                                            std::span<const Migration> migrations);
  ~Db();
  // A cached prepared statement for `sql` (reset, bindings cleared).
  StatusOr<Stmt> prepare(const std::string& sql);
  Status exec(const std::string& sql);
  // PRAGMA synchronous for the next commits: NORMAL (`lazy`: no sync at
  // commit in WAL mode) or FULL, the default. Changed only when it differs.
  Status setLazySync(bool lazy);
  bool lazySync() const { return lazy_sync_; }
  // Syncs what this connection wrote (its WAL, and the database, which a
  // checkpoint writes) through SQLite's own file handles: a descriptor
  // opened and closed elsewhere would drop this process's POSIX locks.
  Status syncFiles();
  sqlite3* raw() { return db_; }
  int64_t lastInsertId() { return sqlite3_last_insert_rowid(db_); }

 private:
  explicit Db(sqlite3* db) : db_(db) {}
  Status migrate(std::span<const Migration> migrations);
  sqlite3* db_;
  bool lazy_sync_ = false;  // PRAGMA synchronous=NORMAL in force
  std::map<std::string, sqlite3_stmt*> cache_;
};

Status sqliteError(sqlite3* db, const std::string& what);

}  // namespace bastion::index
