// The archive's services: store, query, retrieve. Every front-end (DIMSE
// today, DICOMweb later) calls these; permission checks and audit events
// happen here, never in a front-end. Thread-safe.
#pragma once

#include <condition_variable>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <vector>

#include "bastion/audit/audit_log.h"
#include "bastion/auth/policy.h"
#include "bastion/common/bytes.h"
#include "bastion/common/clock.h"
#include "bastion/index/index.h"
#include "bastion/service/node_registry.h"
#include "bastion/storage/blob_store.h"

namespace bastion {
namespace crypto {
class Sha256;
}

// Who is calling, established by the front-end's authentication.
struct CallContext {
  std::string calling_ae;
  std::string peer_address;
  std::string cert_sha256;
  Principal principal;  // the node, or the user (restricted to what the node may do)
};

// An audit event for `action` by the caller of `ctx` (actor, address, user).
AuditEvent auditEventFor(const CallContext& ctx, const Clock& clock, const std::string& action);

struct ArchiveLimits {
  uint64_t max_object_size = 1ull << 30;       // bytes of one data set as received
  uint64_t max_pixel_bytes = 4ull << 30;       // declared rows*cols*spp*bytes*frames
  int max_sequence_depth = 32;
  uint64_t max_items_per_sequence = 100000;
  size_t max_query_results = 100000;
};

struct ArchiveDeps {
  BlobStore& blobs;  // normally an EncryptingBlobStore
  Index& index;
  AuditLog& audit;
  const Clock& clock;
  const Policy& policy;
  ArchiveLimits limits;
  std::string implementation_uid;      // written to (0002,0012)
  std::string implementation_version;  // written to (0002,0013)
};

struct StoreRequest {
  std::string transfer_syntax;
  std::string sop_class_uid;     // from the command (C-STORE) or the file meta
  std::string sop_instance_uid;  // idem
  ByteView dataset;              // the data set as received, in transfer_syntax
  std::string required_study_uid;  // if set, the instance must belong to this study (STOW-RS /studies/{uid})
};

class StoreService {
 public:
  explicit StoreService(ArchiveDeps deps) : d_(std::move(deps)) {}
  // Validates, encrypts, stores durably, indexes and audits one instance.
  // kPermissionDenied, kInvalidArgument (malformed/hostile), kResourceExhausted
  // (a limit), kAlreadyExists (same UID, different content). Success with
  // kAlreadyStored when the identical instance is already present.
  StatusOr<PutResult> store(const CallContext& ctx, const StoreRequest& req);
  // Same for a Part-10 file (import): its preamble is replaced by zeros.
  // `stored`, if given, receives the instance's study/series/SOP UIDs.
  struct StoredUids {
    std::string study, series, sop, sop_class;
  };
  StatusOr<PutResult> storeFile(const CallContext& ctx, ByteView file, const std::string& required_study_uid = "",
                                StoredUids* stored = nullptr);
  // A store whose data set arrives in pieces (DIMSE P-DATA): the digest and
  // the encryption run while the pieces arrive, overlapping the transfer, so
  // that little is left to do after the last one. Nothing is committed
  // before finishStore() (a data set beyond the blob store's inline limit is
  // spilled to a temporary file meanwhile); an Ingest dropped unfinished
  // leaves nothing behind.
  class Ingest {
   public:
    ~Ingest();
    Ingest(const Ingest&) = delete;
    Ingest& operator=(const Ingest&) = delete;
    // The next piece of the data set, in order. After a failure (kept for
    // finishStore, which then does the work itself) pieces are ignored.
    void append(ByteView piece);

   private:
    friend class StoreService;
    Ingest();
    Bytes meta_;  // the Part-10 header built from the request's UIDs
    std::unique_ptr<crypto::Sha256> sha_;
    std::unique_ptr<BlobWriter> writer_;
    uint64_t bytes_ = 0;
    Status status_;
  };
  // `head` carries the request's transfer syntax and UIDs (its data set is
  // ignored); `size_hint` is a guess of the data set's size. Null when the
  // caller may not store or the UIDs are unusable: then use store().
  std::unique_ptr<Ingest> beginStore(const CallContext& ctx, const StoreRequest& head, uint64_t size_hint);
  // store() for a data set whose pieces went through `ingest` (which may be
  // null): `req.dataset` must be those very bytes. The whole data set is
  // validated exactly as by store(); the work done while it arrived is used
  // only if it matches (same Part-10 header, same length, no failure).
  StatusOr<PutResult> finishStore(const CallContext& ctx, const StoreRequest& req, std::unique_ptr<Ingest> ingest);
  // Returns once every store begun before the call has finished (its audit
  // record appended, or failed): what the audit notes' settler waits for
  // before it marks notes as settled (server/store_notes.h).
  void awaitEarlierStores();

 private:
  // Fills the study and patient of `audit` as soon as they are known. Sets
  // `noted` if the instance was inserted with `audit` (as its success record)
  // kept as a durable note with the object (AuditLog::noteFor).
  // `pre`, if given, is the work of an Ingest over `req.dataset`.
  StatusOr<PutResult> storeChecked(const CallContext& ctx, const StoreRequest& req, AuditEvent& audit,
                                   StoredUids* stored, bool& noted, Ingest* pre);
  StatusOr<PutResult> storeAudited(const CallContext& ctx, const StoreRequest& req, StoredUids* stored,
                                   Ingest* pre = nullptr);
  ArchiveDeps d_;
  // Stores in progress by epoch (awaitEarlierStores() starts a new one).
  std::mutex flight_mu_;
  std::condition_variable flight_cv_;
  uint64_t epoch_ = 0;
  std::map<uint64_t, int> in_flight_;
};

// Deletes studies: the Policy's kDelete permission, a retention period
// (studies younger than it are refused), audit record kept.
class DeleteService {
 public:
  explicit DeleteService(ArchiveDeps deps, int retention_days = 0) : d_(std::move(deps)), retention_days_(retention_days) {}
  // Number of instances removed. kPermissionDenied (Policy), kNotFound (no
  // such study), kUnavailable (under retention). Blobs are removed after the
  // index rows, so a crash in between leaves orphans for the start-up sweep,
  // never rows without objects.
  StatusOr<uint32_t> deleteStudy(const CallContext& ctx, const std::string& study_uid);
  // Runs before the index rows go (the archive settles the notes of earlier
  // stores, so that a crash never brings the removed instances back from
  // them). By default the audit trail is synced.
  void beforeDelete(std::function<Status()> fn) { before_delete_ = std::move(fn); }

 private:
  ArchiveDeps d_;
  int retention_days_;
  std::function<Status()> before_delete_;
};

class QueryService {
 public:
  explicit QueryService(ArchiveDeps deps) : d_(std::move(deps)) {}
  // Streams matches; audited as one "find" event.
  Status find(const CallContext& ctx, const Query& query, const std::function<bool(const QueryRow&)>& emit);

 private:
  ArchiveDeps d_;
};

class RetrieveService {
 public:
  explicit RetrieveService(ArchiveDeps deps) : d_(std::move(deps)) {}
  // Instances a C-GET/C-MOVE identifier selects, within the caller's scope.
  // `action` is "get" or "move". kPermissionDenied if the Policy refuses or
  // if nothing the caller may see matches (one answer for both).
  struct Selection {
    std::vector<InstanceLocation> instances;
    std::string rule;  // the Policy rule that allowed it, for the transfer's audit record
  };
  StatusOr<Selection> select(const CallContext& ctx, const std::string& action, const Query& query);
  // Decrypts and verifies one stored object (Part-10 bytes). kDataLoss if a
  // segment does not authenticate or the object is not the instance `loc`
  // names (checkObjectIdentity): never altered or another patient's bytes.
  // The recorded SHA-256 is checked by `bastion verify`, not here.
  StatusOr<Bytes> read(const InstanceLocation& loc);
  // The same object as a stream, for objects too large to hold whole: each
  // segment is decrypted and authenticated as it is read (kDataLoss on a
  // failed tag, at that point). Its identity is checked when it is opened
  // (kDataLoss then). A kDataLoss from read() (a later segment's tag, a cut
  // tail) means a caller that has sent bytes already must abort.
  class ObjectStream {
   public:
    virtual ~ObjectStream() = default;
    virtual uint64_t size() const = 0;
    // Reads the next bytes (up to out.size()); 0 at the verified end.
    virtual StatusOr<size_t> read(std::span<uint8_t> out) = 0;
  };
  StatusOr<std::unique_ptr<ObjectStream>> openStream(const InstanceLocation& loc);
  // The index's cache of instances' DICOM JSON (Index::cachedMetadata):
  // only for instances select() returned to the same caller.
  StatusOr<std::vector<std::optional<std::string>>> cachedMetadata(
      const std::vector<std::pair<std::string, std::string>>& wanted) {
    return d_.index.cachedMetadata(wanted);
  }
  Status cacheMetadata(const std::vector<Index::CachedMetadata>& entries) {
    return d_.index.putCachedMetadata(entries);
  }
  // Records the outcome of a retrieval.
  void audit(const CallContext& ctx, const std::string& action, const std::string& study_uid, uint32_t count,
             const std::string& outcome, const std::string& detail, const std::string& rule = "");

 private:
  ArchiveDeps d_;
};

// Syntax rules for UIDs (PS3.5 9.1): 1-64 characters, digits and dots,
// components without leading zeros, no empty component.
bool isValidUid(std::string_view uid);

// Bastion's Implementation Class UID and Version Name (0002,0012/0013),
// written into every Part-10 file it produces.
inline constexpr const char* kImplementationUid = "1.2.826.0.1.3680043.10.1429.1";
inline constexpr const char* kImplementationVersion = "BASTION_0_1";

// Builds a Part-10 file: 128 zero bytes, "DICM", group 0002, then `dataset`.
Bytes buildPart10(const std::string& sop_class, const std::string& sop_instance, const std::string& ts,
                  const std::string& impl_uid, const std::string& impl_version, ByteView dataset);

// Checks that a stored object is the instance its index row names: `head`,
// the object's first bytes (at least its file meta information), must carry
// the row's SOP Instance UID in (0002,0003), which the store path writes into
// every object it keeps. AES-GCM proves an object is one Bastion wrote under
// that blob id; this binds it to the row, so a row edited to point at another
// patient's object fails (kDataLoss) even when its digest column was edited
// too. Cheap: it reads a few hundred bytes, where a digest reads them all.
Status checkObjectIdentity(ByteView head, const InstanceLocation& loc);

}  // namespace bastion
