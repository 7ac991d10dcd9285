// Index: the patient/study/series/instance catalogue behind C-FIND and
// QIDO-RS, and the map from SOP Instance UID to the blob that holds it.
//
// Implementations keep identifying attributes (names, IDs, birth date,
// accession number, referring physician) encrypted at rest and match them
// through keyed blind-index tokens; see docs/index-encryption.md.
// All methods are thread-safe.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "bastion/common/bytes.h"
#include "bastion/common/status.h"

namespace bastion {

// Everything the index records about one stored instance.
struct InstanceRecord {
  // Patient (PHI: encrypted at rest).
  std::string patient_id, patient_name, issuer_of_patient_id, patient_birth_date, patient_sex, other_patient_ids;
  // Study. accession_number, referring_physician and study_id are PHI.
  std::string study_uid, study_date, study_time, accession_number, referring_physician, study_description,
      study_id;
  std::string requesting_physician;  // (0032,1032); like the referring physician, it gives scope
  std::string site;                  // organisation/site of the node or user that stored the study first
  int64_t received = 0;              // unix seconds when stored (the study keeps its first)
  // Series.
  std::string series_uid, modality, series_number, series_description;
  // Instance.
  std::string sop_uid, sop_class_uid, instance_number, transfer_syntax, specific_character_set;
  // Storage.
  std::string blob_id;
  uint64_t size = 0;
  std::string sha256_hex;  // of the stored object bytes
};

// Where an instance lives and how to check it.
struct InstanceLocation {
  std::string study_uid, series_uid, sop_uid, sop_class_uid, transfer_syntax, blob_id, sha256_hex;
  uint64_t size = 0;
};

// Which studies a query or retrieval may touch: the Policy's scope filter,
// applied by the index inside the query (never after the fact). A study is
// visible if any clause admits it. The default admits nothing.
struct StudyScope {
  bool all = false;                          // no restriction
  std::vector<std::string> sites;            // studies stored by these sites
  std::vector<std::string> physician_names;  // normalised PN of the referring/requesting physician
  std::vector<std::string> grantees;         // access_grant subjects ("user:x", "group:y", "node:AE")
  int64_t now_unix = 0;                      // grants must be unexpired at this time
  // If not empty, a study must also belong to one of these sites, whatever
  // admitted it (a user acting through a node restricted to its site).
  std::vector<std::string> restrict_sites;
  static StudyScope everything() {
    StudyScope s;
    s.all = true;
    return s;
  }
};

enum class QueryLevel { kPatient, kStudy, kSeries, kImage };

// A C-FIND / QIDO-RS query as a value. `keys` holds matching keys by tag
// (group << 16 | element): an empty value is universal matching (return
// key only). Values use DICOM matching: '*' and '?' wildcards, ranges
// "A-B" for DA/TM, '\'-separated UID lists. PN matching ignores case.
struct Query {
  QueryLevel level = QueryLevel::kStudy;
  std::map<uint32_t, std::string> keys;
  size_t limit = 0;  // 0: no limit
  StudyScope scope;  // set from the Policy decision; default: nothing visible
};

// The StudyInstanceUID key of a query or retrieve identifier, or "" (audit records name the study).
inline std::string studyUidOf(const Query& q) {
  auto it = q.keys.find(0x0020000D);
  return it == q.keys.end() ? std::string() : it->second;
}

// One match: attribute values by tag, including computed attributes
// (NumberOf*Related*, ModalitiesInStudy) when the level has them.
using QueryRow = std::map<uint32_t, std::string>;

enum class PutResult { kInserted, kAlreadyStored };

class Index {
 public:
  virtual ~Index() = default;
  // Records an instance; returns only after the record is durable.
  // Same SOP Instance UID with the same sha256: kAlreadyStored (nothing
  // changes). With a different sha256: kAlreadyExists error (no overwrite).
  virtual StatusOr<PutResult> putInstance(const InstanceRecord& record) = 0;
  // Notes (BlobWriter::attachNote): noteFor() seals `record` (PHI included)
  // into a note that the caller makes durable with the instance's object;
  // putInstanceNoted() then commits without a sync of its own, because
  // after a crash the row is inserted again from the note. Without notes
  // (the defaults) noteFor() gives nullopt and putInstanceNoted() is putInstance().
  virtual std::optional<Bytes> noteFor(const InstanceRecord& record) {
    (void)record;
    return std::nullopt;
  }
  virtual StatusOr<PutResult> putInstanceNoted(const InstanceRecord& record) { return putInstance(record); }
  virtual StatusOr<std::optional<InstanceLocation>> findInstance(const std::string& sop_uid) = 0;
  // Streams the matches of `query` to `emit`, which returns false to stop.
  virtual Status query(const Query& query, const std::function<bool(const QueryRow&)>& emit) = 0;
  // Instances selected by a retrieve identifier at `level` (UIDs and
  // PatientID as in `query.keys`). Unknown keys are ignored.
  virtual StatusOr<std::vector<InstanceLocation>> instancesFor(const Query& query) = 0;
  virtual Status forEachInstance(const std::function<void(const InstanceLocation&)>& fn) = 0;
  virtual StatusOr<uint64_t> instanceCount() = 0;
  // When the study was first received (unix seconds); kNotFound if absent.
  virtual StatusOr<int64_t> studyReceived(const std::string& study_uid) = 0;
  // The patient (ID, name) of a study, decrypted: what its audit records
  // name. kNotFound if there is no such study.
  struct PatientRef {
    std::string id, name;
  };
  virtual StatusOr<PatientRef> patientOfStudy(const std::string& study_uid) = 0;
  // Removes a study's instances, series and study rows (and its patient's
  // if it has no other study) in one transaction; returns what was removed,
  // so that the caller can remove the blobs.
  virtual StatusOr<std::vector<InstanceLocation>> deleteStudy(const std::string& study_uid) = 0;

  // A cache of each instance's DICOM JSON (WADO-RS metadata), sealed like
  // PHI. An entry is keyed by SOP Instance UID and bound to `context` (what
  // else the JSON depends on, e.g. its bulk data URI prefix): asked for with
  // another context, it is a miss. Derived data: misses are not errors.
  struct CachedMetadata {
    std::string sop_uid, context, json;
  };
  // For each (sop_uid, context) of `wanted`, in order: the JSON, or nullopt.
  virtual StatusOr<std::vector<std::optional<std::string>>> cachedMetadata(
      const std::vector<std::pair<std::string, std::string>>& wanted) = 0;
  // Stores entries (replacing older ones) in one transaction; entries for
  // instances no longer in the index are dropped.
  virtual Status putCachedMetadata(const std::vector<CachedMetadata>& entries) = 0;
};

}  // namespace bastion
