// Composition root: turns a Config into concrete implementations and wires
// them. The only place that names PackBlobStore, SqliteIndex, etc.
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "audit/audit_store.h"
#include "bastion/crypto/keyring.h"
#include "bastion/service/archive.h"
#include "crypto/encrypting_blob_store.h"
#include "index/sqlite/sqlite_index.h"
#include "server/store_notes.h"
#include "server/config.h"
#include "storage/pack_blob_store.h"

namespace bastion::server {

// A shared flock on <data>/writers.lock, held by every process that has the
// archive open (serve, import, verify...) for as long as it does: the
// start-up sweep (removeUnacknowledgedBlobs) runs only where it can take it
// exclusively, i.e. while no other process may be storing.
class WritersLock {
 public:
  WritersLock() = default;
  ~WritersLock();
  WritersLock(const WritersLock&) = delete;
  WritersLock& operator=(const WritersLock&) = delete;
  Status open(const std::string& path);  // waits while a sweep holds it
  // Runs `fn` holding the lock alone; false (fn not run) if another process holds it.
  StatusOr<bool> whileAlone(const std::function<Status()>& fn);

 private:
  int fd_ = -1;
};

struct Archive {
  WritersLock writers;  // first: released after everything else has closed
  Config config;
  std::unique_ptr<Keyring> keyring;
  std::unique_ptr<storage::PackBlobStore> files;
  std::unique_ptr<crypto::EncryptingBlobStore> blobs;
  std::unique_ptr<index::SqliteIndex> index;
  std::unique_ptr<audit::AuditStore> audit;
  std::unique_ptr<AuthService> auth;
  std::unique_ptr<StoreService> store;
  std::unique_ptr<QueryService> query;
  std::unique_ptr<RetrieveService> retrieve;
  std::unique_ptr<DeleteService> remove;
  // Last: its final round runs before the stores it marks close.
  std::unique_ptr<NoteSettler> notes;
};

StatusOr<std::unique_ptr<Archive>> openArchive(const Config& config);
// loadConfig(config_path), then openArchive().
StatusOr<std::unique_ptr<Archive>> openArchive(const std::string& config_path);
// Removes blobs no index row refers to, and temporary files of writes that
// never committed: leftovers of stores interrupted before they were
// acknowledged. Only safe while nothing is storing: run
// before serving, and only if no other process has the archive open
// (nullopt then: nothing was removed, the leftovers wait for a later start).
StatusOr<std::optional<uint64_t>> removeUnacknowledgedBlobs(Archive& archive);

}  // namespace bastion::server
