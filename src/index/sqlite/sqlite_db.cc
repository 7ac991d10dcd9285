#include "index/sqlite/sqlite_db.h"

#include <algorithm>
#include <array>
#include <string_view>

#include "index/migrations.h"  // generated: kMigrations

namespace bastion::index {

Status sqliteError(sqlite3* db, const std::string& what) {
  const int code = sqlite3_extended_errcode(db);
  std::string msg = what + ": " + sqlite3_errmsg(db);
  if ((code & 0xff) == SQLITE_CONSTRAINT) return alreadyExists(msg);
  if ((code & 0xff) == SQLITE_BUSY || (code & 0xff) == SQLITE_LOCKED) return unavailable(msg);
  if ((code & 0xff) == SQLITE_FULL) return resourceExhausted(msg);
  return internalError(msg);
}

Stmt& Stmt::bind(int i, std::string_view v) {
  sqlite3_bind_text(s_, i, v.data(), static_cast<int>(v.size()), SQLITE_TRANSIENT);
  return *this;
}
Stmt& Stmt::bind(int i, ByteView v) {
  sqlite3_bind_blob(s_, i, v.data(), static_cast<int>(v.size()), SQLITE_TRANSIENT);
  return *this;
}
Stmt& Stmt::bind(int i, int64_t v) {
  sqlite3_bind_int64(s_, i, v);
  return *this;
}

StatusOr<bool> Stmt::step() {
  int rc = sqlite3_step(s_);
  if (rc == SQLITE_ROW) return true;
  if (rc == SQLITE_DONE) return false;
  Status s = sqliteError(db_, "sqlite step");
  sqlite3_reset(s_);
  return s;
}

Status Stmt::run() {
  ASSIGN_OR_RETURN(bool row, step());
  (void)row;
  reset();
  return okStatus();
}

std::string Stmt::text(int col) const {
  const unsigned char* t = sqlite3_column_text(s_, col);
  return t ? std::string(reinterpret_cast<const char*>(t), static_cast<size_t>(sqlite3_column_bytes(s_, col)))
           : std::string();
}

Bytes Stmt::blob(int col) const {
  const auto* b = static_cast<const uint8_t*>(sqlite3_column_blob(s_, col));
  return b ? Bytes(b, b + sqlite3_column_bytes(s_, col)) : Bytes();
}

Status Stmt::forEachRow(const std::function<void()>& row) {
  for (;;) {
    auto more = step();
    if (!more.ok() || !*more) {
      reset();
      return more.status();
    }
    row();
  }
}

void Stmt::reset() {
  sqlite3_reset(s_);
  sqlite3_clear_bindings(s_);
}

namespace {
std::vector<Db::Migration> indexMigrations() {
  std::vector<Db::Migration> out;
  for (const auto& m : kMigrations) out.push_back({m.version, m.sql});
  return out;
}
}  // namespace

StatusOr<std::unique_ptr<Db>> Db::open(const std::string& path, bool readonly) {
  static const std::vector<Migration> index = indexMigrations();
  return open(path, readonly, index);
}

StatusOr<std::unique_ptr<Db>> Db::open(const std::string& path, bool readonly, std::span<const Migration> migrations) {
  // Before SQLite initialises (the first open): no global memory statistics,
  // which take a process-wide mutex on every allocation of every connection.
  static const bool configured = sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0) == SQLITE_OK;
  (void)configured;
  sqlite3* raw = nullptr;
  const int flags = (readonly ? SQLITE_OPEN_READONLY : SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE) |
                    SQLITE_OPEN_NOMUTEX;
  if (sqlite3_open_v2(path.c_str(), &raw, flags, nullptr) != SQLITE_OK) {
    Status s = internalError("cannot open index " + path + ": " + (raw ? sqlite3_errmsg(raw) : "out of memory"));
    sqlite3_close(raw);
    return s;
  }
  std::unique_ptr<Db> db(new Db(raw));
  sqlite3_busy_timeout(raw, 10000);
  RETURN_IF_ERROR(db->exec("PRAGMA foreign_keys=ON"));
  if (!readonly) {
    RETURN_IF_ERROR(db->exec("PRAGMA journal_mode=WAL"));
    RETURN_IF_ERROR(db->exec("PRAGMA synchronous=FULL"));
    RETURN_IF_ERROR(db->migrate(migrations));
  }
  return db;
}

Db::~Db() {
  for (auto& [_, s] : cache_) sqlite3_finalize(s);
  sqlite3_close(db_);
}

Status Db::setLazySync(bool lazy) {
  if (lazy == lazy_sync_) return okStatus();
  RETURN_IF_ERROR(exec(lazy ? "PRAGMA synchronous=NORMAL" : "PRAGMA synchronous=FULL"));
  lazy_sync_ = lazy;
  return okStatus();
}

Status Db::syncFiles() {
  for (const int op : {SQLITE_FCNTL_JOURNAL_POINTER, SQLITE_FCNTL_FILE_POINTER}) {
    sqlite3_file* file = nullptr;
    if (sqlite3_file_control(db_, "main", op, &file) != SQLITE_OK || !file || !file->pMethods)
      continue;  // no WAL open: nothing was written through it
    if (file->pMethods->xSync(file, SQLITE_SYNC_NORMAL) != SQLITE_OK) return sqliteError(db_, "sqlite sync");
  }
  return okStatus();
}

Status Db::exec(const std::string& sql) {
  // The statements every write transaction runs are prepared once (cached
  // like any other), not parsed again by sqlite3_exec each time.
  static const std::array<std::string_view, 5> kCached = {"BEGIN IMMEDIATE", "COMMIT", "ROLLBACK", "SAVEPOINT one",
                                                          "RELEASE one"};
  if (std::find(kCached.begin(), kCached.end(), sql) != kCached.end()) {
    ASSIGN_OR_RETURN(Stmt st, prepare(sql));
    return st.run();
  }
  char* err = nullptr;
  if (sqlite3_exec(db_, sql.c_str(), nullptr, nullptr, &err) != SQLITE_OK) {
    std::string msg = err ? err : "unknown error";
    sqlite3_free(err);
    return internalError("sqlite: " + msg);
  }
  return okStatus();
}

StatusOr<Stmt> Db::prepare(const std::string& sql) {
  auto it = cache_.find(sql);
  if (it == cache_.end()) {
    sqlite3_stmt* s = nullptr;
    if (sqlite3_prepare_v3(db_, sql.c_str(), -1, SQLITE_PREPARE_PERSISTENT, &s, nullptr) != SQLITE_OK)
      return sqliteError(db_, "prepare");
    it = cache_.emplace(sql, s).first;
  }
  Stmt st(db_, it->second);
  st.reset();
  return st;
}

Status Db::migrate(std::span<const Migration> migrations) {
  RETURN_IF_ERROR(exec("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)"));
  int64_t current = 0;
  {
    ASSIGN_OR_RETURN(Stmt s, prepare("SELECT COALESCE(MAX(version), 0) FROM schema_version"));
    ASSIGN_OR_RETURN(bool row, s.step());
    if (row) current = s.i64(0);
    s.reset();
  }
  for (const auto& m : migrations) {
    if (m.version <= current) continue;
    RETURN_IF_ERROR(exec("BEGIN IMMEDIATE"));
    Status s = exec(m.sql);
    if (s.ok()) s = exec("INSERT INTO schema_version(version) VALUES (" + std::to_string(m.version) + ")");
    if (!s.ok()) {
      (void)exec("ROLLBACK");
      return internalError("migration " + std::to_string(m.version) + " failed: " + s.message());
    }
    RETURN_IF_ERROR(exec("COMMIT"));
  }
  return okStatus();
}

}  // namespace bastion::index
