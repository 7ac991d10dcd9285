// Audit notes end to end: stores whose audit records were committed without
// a sync, a trail that lost them (as after a power cut), and the recovery
// that brings each back once from the note kept next to its object.
#include "server/audit_notes.h"

#include <gtest/gtest.h>

#include "audit/audit_store.h"
#include "bastion/service/archive.h"
#include "crypto/encrypting_blob_store.h"
#include "index/sqlite/sqlite_index.h"
#include "storage/pack_blob_store.h"
#include "test_util.h"

namespace bastion {
namespace {

constexpr const char* kTs = "1.2.840.10008.1.2.1";

// The archive's own components over one directory; the trail's file is chosen
// per opening, so that a test can present the trail a crash would have left.
class AuditNotesTest : public ::testing::Test {
 protected:
  void open(const std::string& trail) {
    close();
    auto files = storage::PackBlobStore::open(dir_.path() + "/blobs", random_);
    ASSERT_TRUE(files.ok()) << files.status().toString();
    files_ = std::move(files).value();
    blobs_ = std::make_unique<crypto::EncryptingBlobStore>(*files_, *keyring_, random_);
    auto idx = index::SqliteIndex::open(dir_.path() + "/index.sqlite", *keyring_, random_);
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

TEST_F(AuditNotesTest, RecordsLostWithTheOperatingSystemComeBackFromTheirNotesOnce) {
  open("trail.sqlite");
  for (int i = 1; i <= 3; ++i) storeInstance(i, 7);  // one study, one node, one (fixed) time
  ASSERT_EQ(records().size(), 3u);
  // A store that stopped after its object but before its index commit: never
  // acknowledged, so its note must not become a record.
  {
    auto w = blobs_->create();
    ASSERT_TRUE(w.ok());
    ASSERT_TRUE((*w)->attachNote(*audit_->noteFor(systemEvent(clock_.now(), "MOD", "store", "success"), (*w)->id())));
    ASSERT_TRUE((*w)->append(Bytes(100, 1)).ok());
    ASSERT_TRUE((*w)->commit().ok());
  }

  // The trail a power cut leaves when the three records had not reached the disk.
  open("after-crash.sqlite");
  auto recovered = server::recoverAuditNotes(*files_, *index_, *audit_);
  ASSERT_TRUE(recovered.ok()) << recovered.status().toString();
  EXPECT_EQ(*recovered, 3u);
  auto got = records();
  ASSERT_EQ(got.size(), 3u);
  for (const auto& r : got) {
    EXPECT_EQ(r.event.action, "store");
    EXPECT_EQ(r.event.outcome, "success");
    EXPECT_EQ(r.event.actor_ae, "MOD");
    EXPECT_NE(r.event.detail.find("recovered"), std::string::npos);
    EXPECT_EQ(r.event.study_uid, "1.2.7");
    EXPECT_EQ(r.event.patient_id, "P7");
  }
  // The packs read are marked: a second start reads no note again.
  recovered = server::recoverAuditNotes(*files_, *index_, *audit_);
  ASSERT_TRUE(recovered.ok());
  EXPECT_EQ(*recovered, 0u);
  EXPECT_EQ(records().size(), 3u);

  // The trail that kept its records gets none twice, marks or not.
  open("trail.sqlite");
  recovered = server::recoverAuditNotes(*files_, *index_, *audit_);
  ASSERT_TRUE(recovered.ok());
  EXPECT_EQ(*recovered, 0u);
  EXPECT_EQ(records().size(), 3u);
}

TEST_F(AuditNotesTest, TheSettlerMarksWhatThisProcessCommitted) {
  open("trail.sqlite");
  for (int i = 1; i <= 2; ++i) storeInstance(i);
  const auto ends = files_->committedEnds();
  ASSERT_FALSE(ends.empty());
  {
    server::NoteSettler settler(*files_, *audit_, *store_, std::chrono::hours(1));
    ASSERT_TRUE(settler.settle().ok());
  }
  auto marks = audit_->noteMarks();
  ASSERT_TRUE(marks.ok());
  for (const auto& [pack, end] : ends) {
    ASSERT_TRUE(marks->count(pack));
    EXPECT_EQ(static_cast<uint64_t>(marks->at(pack).offset), end);
    EXPECT_EQ(marks->at(pack).seq, 2);
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
  auto recovered = server::recoverAuditNotes(*files_, *index_, *audit_);
  ASSERT_TRUE(recovered.ok());
  EXPECT_EQ(*recovered, 2u);
}

}  // namespace
}  // namespace bastion
