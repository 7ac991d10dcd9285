#include "server/composition.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <iostream>
#include <set>

#include "storage/atomic_file.h"

namespace bastion::server {

WritersLock::~WritersLock() {
  if (fd_ >= 0) ::close(fd_);
}

Status WritersLock::open(const std::string& path) {
  fd_ = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (fd_ < 0) return storage::errnoStatus("open " + path);
  if (::flock(fd_, LOCK_SH) != 0) return storage::errnoStatus("lock " + path);
  return okStatus();
}

StatusOr<bool> WritersLock::whileAlone(const std::function<Status()>& fn) {
  // flock converts by dropping the shared lock first; either way it is
  // taken again, shared, before returning.
  const bool alone = ::flock(fd_, LOCK_EX | LOCK_NB) == 0;
  const int err = errno;
  Status s = alone ? fn() : okStatus();
  if (::flock(fd_, LOCK_SH) != 0) return storage::errnoStatus("lock the archive's writers lock");
  if (!alone && err != EWOULDBLOCK) {
    errno = err;
    return storage::errnoStatus("lock the archive's writers lock");
  }
  RETURN_IF_ERROR(s);
  return alone;
}

StatusOr<std::unique_ptr<Archive>> openArchive(const Config& config) {
  auto a = std::make_unique<Archive>();
  a->config = config;
  Random& random = Random::system();
  RETURN_IF_ERROR(storage::ensureDirectory(config.data_dir));
  RETURN_IF_ERROR(a->writers.open(config.data_dir + "/writers.lock"));
  ASSIGN_OR_RETURN(a->keyring, loadFileKeyring(config.key_file, random));
  ASSIGN_OR_RETURN(a->files, storage::PackBlobStore::open(config.blobRoot(), random));
  a->blobs = std::make_unique<crypto::EncryptingBlobStore>(*a->files, *a->keyring, random);
  ASSIGN_OR_RETURN(a->index, index::SqliteIndex::open(config.indexPath(), *a->keyring, random));
  ASSIGN_OR_RETURN(a->audit, audit::AuditStore::open(config.auditPath(), *a->keyring, random, Clock::system(),
                                                     config.audit_options));
  // A trail that vanished (deleted, replaced by an empty one) is not started
  // anew: the index remembers that this archive has one.
  ASSIGN_OR_RETURN(int64_t audit_head, a->audit->lastSeq());
  ASSIGN_OR_RETURN(auto trail_known, a->index->meta("audit_trail"));
  if (trail_known && audit_head == 0)
    return dataLoss("the audit trail " + config.auditPath() + " is missing or empty although this archive has had one (" +
                    *trail_known + "): restore it; Bastion does not start a new trail over it");
  if (!trail_known) RETURN_IF_ERROR(a->index->setMeta("audit_trail", "since " + formatUtc(Clock::system().now())));
  ASSIGN_OR_RETURN(a->auth,
                   AuthService::open(config.indexPath(), *a->keyring, random, Clock::system(), *a->audit, config.auth));
  ArchiveDeps deps{*a->blobs,       *a->index,          *a->audit, Clock::system(), a->auth->policy(),
                   config.limits,   kImplementationUid, kImplementationVersion};
  a->store = std::make_unique<StoreService>(deps);
  a->query = std::make_unique<QueryService>(deps);
  a->retrieve = std::make_unique<RetrieveService>(deps);
  a->remove = std::make_unique<DeleteService>(deps, config.retention_days);
  // Index rows and audit records of stores that an operating-system crash or
  // a power cut took before they were synced come back from their notes.
  ASSIGN_OR_RETURN(NoteRecovery recovered, recoverFromNotes(*a->files, *a->index, *a->audit));
  if (recovered.instances > 0 || recovered.records > 0)
    std::cerr << "store notes: indexed " << recovered.instances << " instance(s) again and appended "
              << recovered.records << " audit record(s) from the notes kept with their objects\n";
  a->notes = std::make_unique<NoteSettler>(*a->files, *a->index, *a->audit, *a->store);
  a->remove->beforeDelete([notes = a->notes.get()] { return notes->settle(); });
  return a;
}

StatusOr<std::unique_ptr<Archive>> openArchive(const std::string& config_path) {
  ASSIGN_OR_RETURN(Config config, loadConfig(config_path));
  return openArchive(config);
}

StatusOr<std::optional<uint64_t>> removeUnacknowledgedBlobs(Archive& a) {
  // Another process with the archive open (a `bastion import`, say) may have
  // committed objects whose index rows are not written yet: not leftovers.
  uint64_t removed = 0;
  ASSIGN_OR_RETURN(bool alone, a.writers.whileAlone([&]() -> Status {
    RETURN_IF_ERROR(a.files->removeUnfinishedFiles());
    std::set<std::string> referenced;
    RETURN_IF_ERROR(a.index->forEachInstance([&](const InstanceLocation& l) { referenced.insert(l.blob_id); }));
    std::vector<std::string> orphans;
    RETURN_IF_ERROR(a.files->forEach([&](const std::string& id) {
      if (!referenced.count(id)) orphans.push_back(id);
    }));
    for (const auto& id : orphans) RETURN_IF_ERROR(a.files->remove(id));
    removed = orphans.size();
    return okStatus();
  }));
  if (!alone) return std::optional<uint64_t>();
  return std::optional<uint64_t>(removed);
}

}  // namespace bastion::server
