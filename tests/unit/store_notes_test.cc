// Store notes end to end: stores whose index rows and audit records were
// committed without a sync, an index and a trail that lost them (as after a
// power cut), and the recovery that brings each back once from the note kept
// next to its object; deletions that must not come back.
#include "server/store_notes.h"

#include <gtest/gtest.h>

#include <filesystem>

#include "audit/audit_store.h"
#include "bastion/service/archive.h"
#include "crypto/encrypting_blob_store.h"
#include "index/sqlite/sqlite_index.h"
#include "service/store_note.h"
#include "storage/pack_blob_store.h"
#include "test_util.h"

namespace bastion {
namespace {

constexpr const char* kTs = "1.2.840.10008.1.2.1";

// The archive's own components over one directory; the index's and the
// trail's files are chosen per opening, so that a test can present what a
// crash would have left.
class StoreNotesTest : public ::testing::Test {
 protected:
  void open(const std::string& trail, const std::string& index_file = "index.sqlite") {
    close();
    auto files = storage::PackBlobStore::open(dir_.path() + "/blobs", random_);
    ASSERT_TRUE(files.ok()) << files.status().toString();
    files_ = std::move(files).value();
    blobs_ = std::make_unique<crypto::EncryptingBlobStore>(*files_, *keyring_, random_);
    auto idx = index::SqliteIndex::open(dir_.path() + "/" + index_file, *keyring_, random_);
    ASSERT_TRUE(idx.ok()) << idx.status().toString();
    index_ = std::move(idx).value();
    auto audit = audit::AuditStore::open(dir_.path() + "/" + trail, *keyring_, random_, clock_);
    ASSERT_TRUE(audit.ok()) << audit.status().toString();
    audit_ = std::move(audit).value();
    store_ = std::make_unique<StoreService>(
        ArchiveDeps{*blobs_, *index_, *audit_, clock_, policy_, ArchiveLimits{}, "1.2.3.4", "TEST"});
  }
  void close() {
    store_.reset();
    audit_.reset();
    index_.reset();
    blobs_.reset();
    files_.reset();  // releases the packs' locks, as the end of a process does
  }
  // Instances i of one study per patient `p` (same node, same clock: their
  // records differ only by the object they name).
  void storeInstance(int i, int p = 0) {
    const std::string n = std::to_string(i), s = std::to_string(p ? p : i);
    auto r = store_->store(
        testing::nodeContext("MOD", kPermStore),
        {kTs, "", "", testing::makeInstance("P" + s, "DOE^" + s, "1.2." + s, "1.2." + s + ".1", "1.2." + s + ".1." + n),
         ""});
    ASSERT_TRUE(r.ok()) << r.status().toString();
  }
  std::vector<audit::AuditEntry> records() {
    std::vector<audit::AuditEntry> got;
    EXPECT_TRUE(audit_->search({}, [&](const audit::AuditEntry& e) { return got.push_back(e), true; }).ok());
    return got;
  }

  testing::TempDir dir_;
  testing::FakeRandom random_;
  testing::FixedClock clock_;
  Policy policy_;
  std::unique_ptr<Keyring> keyring_ = makeKeyring(Key256{}, random_);
  std::unique_ptr<storage::PackBlobStore> files_;
  std::unique_ptr<crypto::EncryptingBlobStore> blobs_;
  std::unique_ptr<index::SqliteIndex> index_;
  std::unique_ptr<audit::AuditStore> audit_;
  std::unique_ptr<StoreService> store_;
};

TEST_F(StoreNotesTest, RowsAndRecordsLostWithTheOperatingSystemComeBackFromTheirNotesOnce) {
  open("trail.sqlite");
  for (int i = 1; i <= 3; ++i) storeInstance(i, 7);  // one study, one node, one (fixed) time
  ASSERT_EQ(records().size(), 3u);
  // A leftover: an object with a note for an instance another object holds.
  {
    auto w = blobs_->create();
    ASSERT_TRUE(w.ok());
    InstanceRecord r;
    r.sop_uid = "1.2.7.1.1";
    r.study_uid = "1.2.7";
    r.blob_id = (*w)->id();
    ASSERT_TRUE((*w)->attachNote(encodeStoreNote({*index_->noteFor(r), {}})));
    ASSERT_TRUE((*w)->append(Bytes(100, 1)).ok());
    ASSERT_TRUE((*w)->commit().ok());
  }

  // What a power cut leaves when neither the rows nor the records had reached the disk.
  open("after-crash.sqlite", "after-crash-index.sqlite");
  auto recovered = server::recoverFromNotes(*files_, *index_, *audit_);
  ASSERT_TRUE(recovered.ok()) << recovered.status().toString();
  EXPECT_EQ(recovered->instances, 3u);
  EXPECT_EQ(recovered->records, 3u);
  for (int i = 1; i <= 3; ++i) {
    auto loc = index_->findInstance("1.2.7.1." + std::to_string(i));
    ASSERT_TRUE(loc.ok() && loc->has_value());
    auto bytes =
        RetrieveService(ArchiveDeps{*blobs_, *index_, *audit_, clock_, policy_, ArchiveLimits{}, "1.2.3.4", "TEST"})
            .read(**loc);
    EXPECT_TRUE(bytes.ok()) << bytes.status().toString();  // the object, checked against its recorded SHA-256
  }
  auto patient = index_->patientOfStudy("1.2.7");
  ASSERT_TRUE(patient.ok());
  EXPECT_EQ(patient->name, "DOE^7");  // PHI came back sealed in the note
  auto got = records();
  ASSERT_EQ(got.size(), 3u);
  for (const auto& r : got) {
    EXPECT_EQ(r.event.action, "store");
    EXPECT_EQ(r.event.outcome, "success");
    EXPECT_EQ(r.event.study_uid, "1.2.7");
    EXPECT_EQ(r.event.patient_id, "P7");
    EXPECT_NE(r.event.detail.find("recovered"), std::string::npos);
  }
  // The packs read are marked: a second start reads no note again.
  recovered = server::recoverFromNotes(*files_, *index_, *audit_);
  ASSERT_TRUE(recovered.ok());
  EXPECT_EQ(recovered->instances + recovered->records, 0u);

  // The index and trail that kept everything get nothing twice, marks or not.
  open("trail.sqlite");
  recovered = server::recoverFromNotes(*files_, *index_, *audit_);
  ASSERT_TRUE(recovered.ok());
  EXPECT_EQ(recovered->instances + recovered->records, 0u);
  EXPECT_EQ(records().size(), 3u);
}

TEST_F(StoreNotesTest, TheSettlerMarksWhatThisProcessCommitted) {
  open("trail.sqlite");
  for (int i = 1; i <= 2; ++i) storeInstance(i);
  const auto ends = files_->committedEnds();
  ASSERT_FALSE(ends.empty());
  {
    server::NoteSettler settler(*files_, *index_, *audit_, *store_, std::chrono::hours(1));
    ASSERT_TRUE(settler.settle().ok());
  }
  auto marks = audit_->noteMarks();
  ASSERT_TRUE(marks.ok());
  for (const auto& [pack, end] : ends) {
    ASSERT_TRUE(marks->count(pack));
    EXPECT_EQ(static_cast<uint64_t>(marks->at(pack).offset), end);
  }
  // Once this process is gone, nothing before those marks is read again.
  open("trail.sqlite");
  std::map<uint32_t, uint64_t> from, scanned;
  auto kept = audit_->noteMarks();
  ASSERT_TRUE(kept.ok());
  for (const auto& [pack, mark] : *kept) from[pack] = static_cast<uint64_t>(mark.offset);
  int seen = 0;
  ASSERT_TRUE(
      files_->forEachNote(from, scanned, [&](const storage::PackBlobStore::Note&) { return ++seen, okStatus(); }).ok());
  EXPECT_EQ(seen, 0);
  // A trail without marks (here, another file) has every note read.
  open("another.sqlite");
  auto recovered = server::recoverFromNotes(*files_, *index_, *audit_);
  ASSERT_TRUE(recovered.ok());
  EXPECT_EQ(recovered->records, 2u);
  EXPECT_EQ(recovered->instances, 0u);  // the index kept its rows
}

// A deletion whose objects were not yet removed when the archive stopped
// (they go at start-up): their notes must not bring the study back.
TEST_F(StoreNotesTest, ADeletedStudyDoesNotComeBackFromItsNotes) {
  for (const bool settle_first : {false, true}) {
    SCOPED_TRACE(settle_first ? "settled before the delete" : "not settled");
    close();
    std::filesystem::remove_all(dir_.path() + "/blobs");
    for (const char* f : {"/index.sqlite", "/index.sqlite-wal", "/index.sqlite-shm", "/trail.sqlite",
                          "/trail.sqlite-wal", "/trail.sqlite-shm"})
      std::filesystem::remove(dir_.path() + f);
    open("trail.sqlite");
    storeInstance(1, 9);
    storeInstance(2, 9);
    if (settle_first) {
      server::NoteSettler settler(*files_, *index_, *audit_, *store_, std::chrono::hours(1));
      ASSERT_TRUE(settler.settle().ok());  // what DeleteService runs first in the archive
    }
    auto removed = index_->deleteStudy("1.2.9");
    ASSERT_TRUE(removed.ok());
    ASSERT_EQ(removed->size(), 2u);
    open("trail.sqlite");  // the objects are still there
    auto recovered = server::recoverFromNotes(*files_, *index_, *audit_);
    ASSERT_TRUE(recovered.ok());
    auto count = index_->instanceCount();
    ASSERT_TRUE(count.ok());
    // Unsettled, the notes would restore the study: the hazard the settle before a delete removes.
    EXPECT_EQ(*count, settle_first ? 0u : 2u);
  }
}

}  // namespace
}  // namespace bastion
