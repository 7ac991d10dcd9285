// SqliteIndex: the embedded Index (and NodeRegistry) on SQLite in WAL mode.
// Writes are group-committed: concurrent putInstance() calls share one
// transaction and one fsync; each caller returns once its record is durable.
#pragma once

#include <memory>
#include <mutex>

#include "bastion/index/index.h"
#include "bastion/service/node_registry.h"
#include "common/group_commit.h"
#include "index/phi_codec.h"
#include "index/sqlite/sqlite_db.h"

namespace bastion::index {

class SqliteIndex final : public Index, public NodeRegistry {
 public:
  static StatusOr<std::unique_ptr<SqliteIndex>> open(const std::string& path, const Keyring& keyring,
                                                     Random& random);

  StatusOr<PutResult> putInstance(const InstanceRecord& record) override;
  std::optional<Bytes> noteFor(const InstanceRecord& record) override;
  StatusOr<PutResult> putInstanceNoted(const InstanceRecord& record) override;
  // The record a note of the object `blob_id` holds; kDataLoss if it does not open.
  StatusOr<InstanceRecord> openNote(ByteView note, const std::string& blob_id) const;
  // Syncs the index's files: every row committed so far is durable.
  Status sync();
  StatusOr<std::optional<InstanceLocation>> findInstance(const std::string& sop_uid) override;
  Status query(const Query& query, const std::function<bool(const QueryRow&)>& emit) override;
  StatusOr<std::vector<InstanceLocation>> instancesFor(const Query& query) override;
  Status forEachInstance(const std::function<void(const InstanceLocation&)>& fn) override;
  StatusOr<uint64_t> instanceCount() override;
  StatusOr<int64_t> studyReceived(const std::string& study_uid) override;
  // Facts about the archive (table archive_meta): a value, or nullopt.
  StatusOr<std::optional<std::string>> meta(const std::string& name);
  Status setMeta(const std::string& name, const std::string& value);
  StatusOr<PatientRef> patientOfStudy(const std::string& study_uid) override;
  StatusOr<std::vector<InstanceLocation>> deleteStudy(const std::string& study_uid) override;
  StatusOr<std::vector<std::optional<std::string>>> cachedMetadata(
      const std::vector<std::pair<std::string, std::string>>& wanted) override;
  Status putCachedMetadata(const std::vector<CachedMetadata>& entries) override;

  Status add(const DicomNode& node) override;
  Status remove(const std::string& ae_title) override;
  StatusOr<std::vector<DicomNode>> list() override;
  StatusOr<std::optional<DicomNode>> find(const std::string& ae_title) override;

 private:
  struct Pending {
    const InstanceRecord* record;
    bool lazy = false;  // may commit without a sync (a note keeps it)
    StatusOr<PutResult> result = internalError("not committed");
  };
  SqliteIndex(std::unique_ptr<Db> writer, std::unique_ptr<Db> reader, const Keyring& keyring, Random& random)
      : writer_(std::move(writer)), reader_(std::move(reader)), phi_(keyring, random) {}
  void commitBatch(std::vector<Pending*>& batch);
  StatusOr<PutResult> submit(Pending& p);
  StatusOr<PutResult> insertOne(const InstanceRecord& r);
  StatusOr<int64_t> upsertPatient(const InstanceRecord& r);
  // pk of the row `sql` finds for `uid` (0 if none); kInvalidArgument with
  // `conflict` if that row hangs under another parent than `parent`.
  StatusOr<int64_t> findChild(const std::string& sql, const std::string& uid, int64_t parent, const char* conflict);
  StatusOr<int64_t> upsertStudy(const InstanceRecord& r, int64_t patient_pk);
  StatusOr<int64_t> upsertSeries(const InstanceRecord& r, int64_t study_pk);
  // Runs `fn` with exclusive use of writer_ (outside any batch).
  Status withWriter(const std::function<Status()>& fn);
  Status addTokens(const char* table, int64_t pk, const std::vector<Bytes>& tokens);

  GroupCommit<Pending> writes_;  // serialises every use of writer_
  std::unique_ptr<Db> writer_;
  std::mutex read_mu_;  // guards reader_
  std::unique_ptr<Db> reader_;
  PhiCodec phi_;
};

}  // namespace bastion::index
