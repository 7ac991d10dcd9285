// The audit store: PHI sealed, search, hash chain and signed checkpoints,
// and verification that finds every kind of tampering at its position.
#include <sqlite3.h>

#include <fstream>
#include <thread>

#include "audit/audit_store.h"
#include "audit/dicom_message.h"
#include "audit/syslog_forwarder.h"
#include "test_util.h"

namespace bastion::audit {
namespace {

using bastion::testing::FakeRandom;
using bastion::testing::ManualClock;
using bastion::testing::TempDir;

class AuditStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    Key256 kek{};
    kek[0] = 9;
    keyring_ = makeKeyring(kek, random_);
    open({10, std::chrono::seconds(3600)});
  }
  void open(AuditStoreOptions o) {
    store_.reset();
    auto s = AuditStore::open(path(), *keyring_, random_, clock_, o);
    ASSERT_TRUE(s.ok()) << s.status().toString();
    store_ = std::move(s).value();
  }
  std::string path() const { return dir_.path() + "/audit.sqlite"; }
  AuditEvent event(int i, const std::string& patient = "") {
    AuditEvent e = systemEvent(clock_.now(), "MOD" + std::to_string(i % 3), i % 2 ? "store" : "find", "success");
    e.user = i % 4 ? "alice" : "bob";
    e.source_address = "127.0.0.1";
    e.study_uid = "1.2.3." + std::to_string(i);
    e.patient_id = patient;
    e.patient_name = patient.empty() ? "" : "NAME^" + patient;
    return e;
  }
  void fill(int n) {
    for (int i = 1; i <= n; ++i) ASSERT_TRUE(store_->append(event(i, i % 5 ? "PID" + std::to_string(i % 5) : "")).ok());
  }
  // Closes the store (final checkpoint) and runs SQL on the file, as an attacker with the disk would.
  void tamper(const std::string& sql) {
    store_.reset();
    sqlite3* db = nullptr;
    ASSERT_EQ(sqlite3_open(path().c_str(), &db), SQLITE_OK);
    char* err = nullptr;
    ASSERT_EQ(sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &err), SQLITE_OK) << (err ? err : "");
    sqlite3_close(db);
  }
  // As an auditor with the public key only, or (with_mac) as the archive.
  VerifyReport verify(const std::optional<Checkpoint>& exported = std::nullopt, bool with_mac = false) {
    const AuditKeys keys = AuditKeys::derive(*keyring_);
    auto r = verifyAuditStore(path(), keys.sign_public, exported, 10, with_mac ? &keys : nullptr);
    EXPECT_TRUE(r.ok()) << r.status().toString();
    return r.ok() ? *r : VerifyReport{};
  }

  TempDir dir_;
  FakeRandom random_;
  ManualClock clock_;
  std::unique_ptr<Keyring> keyring_;
  std::unique_ptr<AuditStore> store_;
};

TEST_F(AuditStoreTest, AppendedEventsComeBackWithTheirPhiAndTheFileHoldsNoneOfIt) {
  AuditEvent e = event(1, "CANARY-PID-4411");
  e.patient_name = "CANARY^ZEBRA";
  e.query = R"({"00100010":"CANARY^Z*"})";
  ASSERT_TRUE(store_->append(e).ok());
  std::vector<AuditEntry> got;
  ASSERT_TRUE(store_->search({}, [&](const AuditEntry& x) { return got.push_back(x), true; }).ok());
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].seq, 1);
  EXPECT_EQ(got[0].event.patient_id, "CANARY-PID-4411");
  EXPECT_EQ(got[0].event.patient_name, "CANARY^ZEBRA");
  EXPECT_EQ(got[0].event.query, e.query);
  EXPECT_EQ(got[0].event.actor_ae, e.actor_ae);
  EXPECT_EQ(got[0].event.time, std::chrono::time_point_cast<std::chrono::microseconds>(e.time));
  store_.reset();
  for (const char* f : {"/audit.sqlite", "/audit.sqlite-wal"}) {
    std::ifstream in(dir_.path() + f, std::ios::binary);
    const std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    EXPECT_EQ(bytes.find("CANARY"), std::string::npos) << f;
  }
}

TEST_F(AuditStoreTest, SearchFiltersByPatientUserNodeActionAndTime) {
  fill(40);
  auto count = [&](AuditFilter f) {
    size_t n = 0;
    EXPECT_TRUE(store_->search(f, [&](const AuditEntry&) { return ++n, true; }).ok());
    return n;
  };
  AuditFilter by_patient;
  by_patient.patient_id = "PID3";
  EXPECT_EQ(count(by_patient), 8u);  // i % 5 == 3 among 1..40
  AuditFilter by_user;
  by_user.user = "bob";
  EXPECT_EQ(count(by_user), 10u);
  AuditFilter by_node;
  by_node.actor = "MOD0";
  by_node.action = "store";
  EXPECT_EQ(count(by_node), 7u);  // odd multiples of 3 up to 39
  AuditFilter later;
  later.since = clock_.now() + std::chrono::seconds(1);
  EXPECT_EQ(count(later), 0u);
  clock_.advance(std::chrono::seconds(10));
  ASSERT_TRUE(store_->append(event(41)).ok());
  EXPECT_EQ(count(later), 1u);
  AuditFilter limited;
  limited.limit = 5;
  EXPECT_EQ(count(limited), 5u);
  // Paging with a filter: each page continues after the last position seen.
  AuditFilter page;
  page.user = "alice";
  page.limit = 4;
  std::vector<int64_t> seen;
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(store_->search(page, [&](const AuditEntry& e) {
      EXPECT_EQ(e.event.user, "alice");
      seen.push_back(e.seq);
      page.after_seq = e.seq;
      return true;
    }).ok());
  }
  EXPECT_EQ(seen, (std::vector<int64_t>{1, 2, 3, 5, 6, 7, 9, 10, 11, 13, 14, 15}));
}

TEST_F(AuditStoreTest, ConcurrentAppendsFormOneUnbrokenChain) {
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t)
    threads.emplace_back([&, t] {
      for (int i = 0; i < 50; ++i) EXPECT_TRUE(store_->append(event(t * 100 + i, std::string("P").append(std::to_string(t)))).ok());
    });
  for (auto& t : threads) t.join();
  EXPECT_EQ(*store_->lastSeq(), 400);
  store_.reset();
  const VerifyReport r = verify();
  EXPECT_TRUE(r.ok) << r.problem;
  EXPECT_EQ(r.records, 400);
  EXPECT_GE(r.checkpoints, 1);
  EXPECT_EQ(r.unsigned_tail, 0);  // closing signs the head
}

TEST_F(AuditStoreTest, CheckpointsFollowTheCadence) {
  fill(35);  // every 10 records
  auto cp = store_->checkpoint();
  ASSERT_TRUE(cp.ok());
  EXPECT_EQ(cp->seq, 35);
  EXPECT_TRUE(checkpointValid(*cp, store_->keys().sign_public));
  store_.reset();
  const VerifyReport r = verify();
  EXPECT_TRUE(r.ok);
  EXPECT_EQ(r.checkpoints, 4);  // 10, 20, 30 and the one asked for at 35
}

TEST_F(AuditStoreTest, CheckpointLinesRoundTripAndForgeriesFail) {
  fill(3);
  auto cp = store_->checkpoint();
  ASSERT_TRUE(cp.ok());
  auto back = Checkpoint::parse(cp->toLine());
  ASSERT_TRUE(back.ok());
  EXPECT_TRUE(checkpointValid(*back, store_->keys().sign_public));
  Checkpoint forged = *back;
  forged.seq = 2;
  EXPECT_FALSE(checkpointValid(forged, store_->keys().sign_public));
  EXPECT_FALSE(Checkpoint::parse("bastion-audit-checkpoint-v2 1 zz 3 0 10 44").ok());
  EXPECT_FALSE(Checkpoint::parse(cp->toLine() + " 1").ok());
}

TEST_F(AuditStoreTest, AnUntouchedStoreVerifies) {
  fill(25);
  store_.reset();
  const VerifyReport r = verify();
  EXPECT_TRUE(r.ok) << r.problem;
  EXPECT_EQ(r.records, 25);
}

TEST_F(AuditStoreTest, AnEditedRecordFailsAtItsPosition) {
  fill(25);
  tamper("UPDATE record SET outcome = 'denied' WHERE seq = 12");
  const VerifyReport r = verify();
  EXPECT_FALSE(r.ok);
  EXPECT_EQ(r.bad_seq, 12);
}

TEST_F(AuditStoreTest, AnEditedRecordWithItsHashRecomputedStillFailsOnTheNextLink) {
  fill(25);
  // Editing PHI ciphertext or any field changes the hash; an attacker who
  // also rewrites the stored hash breaks the next record's link.
  tamper("UPDATE record SET user = 'mallory', hash = randomblob(32) WHERE seq = 7");
  const VerifyReport r = verify();
  EXPECT_FALSE(r.ok);
  EXPECT_EQ(r.bad_seq, 7);
}

TEST_F(AuditStoreTest, ADeletedRecordFailsAtItsPosition) {
  fill(25);
  tamper("DELETE FROM record WHERE seq = 9");
  const VerifyReport r = verify();
  EXPECT_FALSE(r.ok);
  EXPECT_EQ(r.bad_seq, 9);
}

TEST_F(AuditStoreTest, AnInsertedRecordFailsAtItsPosition) {
  fill(25);
  // Make room after 14 and copy record 3 into position 15.
  tamper(
      "UPDATE record SET seq = -seq WHERE seq > 14; UPDATE record SET seq = -seq + 1 WHERE seq < 0;"
      "INSERT INTO record SELECT 15, time_us, action, outcome, severity, actor, user, source, cert, study, rule, "
      "detail, count, patient_token, phi, prev, hash, mac FROM record WHERE seq = 3;");
  const VerifyReport r = verify();
  EXPECT_FALSE(r.ok);
  EXPECT_EQ(r.bad_seq, 15);
}

TEST_F(AuditStoreTest, ReorderedRecordsFailAtTheFirstMovedPosition) {
  fill(25);
  tamper(
      "UPDATE record SET seq = 1000 WHERE seq = 5; UPDATE record SET seq = 5 WHERE seq = 6;"
      "UPDATE record SET seq = 6 WHERE seq = 1000;");
  const VerifyReport r = verify();
  EXPECT_FALSE(r.ok);
  EXPECT_EQ(r.bad_seq, 5);
}

TEST_F(AuditStoreTest, ATruncatedTailFailsAgainstTheStoresOwnOrAnExportedCheckpoint) {
  fill(25);
  auto exported = store_->checkpoint();  // kept elsewhere by the auditor
  ASSERT_TRUE(exported.ok());
  tamper("DELETE FROM record WHERE seq > 20");
  VerifyReport r = verify();
  EXPECT_FALSE(r.ok);
  EXPECT_EQ(r.bad_seq, 21);
  // A careful attacker also drops the checkpoints past the cut: only the
  // exported checkpoint tells.
  tamper("DELETE FROM checkpoint WHERE seq > 20");
  EXPECT_TRUE(verify().ok);
  r = verify(*exported);
  EXPECT_FALSE(r.ok);
  EXPECT_EQ(r.bad_seq, 21);
}

TEST_F(AuditStoreTest, AForgedCheckpointFails) {
  fill(25);
  tamper("UPDATE checkpoint SET hash = randomblob(32) WHERE seq = 20");
  const VerifyReport r = verify();
  EXPECT_FALSE(r.ok);
  EXPECT_EQ(r.bad_seq, 20);
}

TEST_F(AuditStoreTest, AChainRewrittenWithoutTheSigningKeyFailsAtTheCheckpoint) {
  fill(25);
  store_.reset();
  // An attacker rebuilds the whole chain with a forged record 4 but cannot sign.
  Key256 other{};
  other[0] = 1;
  auto attacker_ring = makeKeyring(other, random_);
  const AuditKeys attacker = AuditKeys::derive(*attacker_ring);
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(path().c_str(), &db), SQLITE_OK);
  Bytes prev(32, 0);
  for (int seq = 1; seq <= 25; ++seq) {
    AuditEvent e = event(seq);
    if (seq == 4) e.outcome = "denied";
    const StoredRecord r = sealRecord(e, seq, prev, attacker, random_);
    sqlite3_stmt* st = nullptr;
    sqlite3_prepare_v2(db, "UPDATE record SET outcome = ?, prev = ?, hash = ?, phi = NULL, patient_token = NULL, "
                           "time_us = ?, actor = ?, user = ?, study = ?, action = ? WHERE seq = ?",
                       -1, &st, nullptr);
    sqlite3_bind_text(st, 1, r.outcome.c_str(), -1, SQLITE_TRANSIENT);
    sqlite3_bind_blob(st, 2, r.prev.data(), 32, SQLITE_TRANSIENT);
    sqlite3_bind_blob(st, 3, r.hash.data(), 32, SQLITE_TRANSIENT);
    sqlite3_bind_int64(st, 4, r.time_us);
    sqlite3_bind_text(st, 5, r.actor.c_str(), -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 6, r.user.c_str(), -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 7, r.study.c_str(), -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 8, r.action.c_str(), -1, SQLITE_TRANSIENT);
    sqlite3_bind_int(st, 9, seq);
    ASSERT_EQ(sqlite3_step(st), SQLITE_DONE);
    sqlite3_finalize(st);
    prev = r.hash;
  }
  sqlite3_close(db);
  VerifyReport r = verify();
  EXPECT_FALSE(r.ok);
  EXPECT_EQ(r.bad_seq, 10);  // with the public key: the first signed checkpoint no longer matches
  r = verify(std::nullopt, /*with_mac=*/true);
  EXPECT_FALSE(r.ok);
  EXPECT_EQ(r.bad_seq, 1);  // with the archive's key: no record carries a valid MAC
}

TEST_F(AuditStoreTest, DeletingOneCheckpointBreaksTheirChain) {
  fill(25);
  tamper("DELETE FROM checkpoint WHERE seq = 10");
  const VerifyReport r = verify();
  EXPECT_FALSE(r.ok);
  EXPECT_EQ(r.bad_seq, 1);
}

TEST_F(AuditStoreTest, DeletingEveryCheckpointFailsTheCadence) {
  fill(25);
  tamper("DELETE FROM checkpoint");
  const VerifyReport r = verify();
  EXPECT_FALSE(r.ok);
  EXPECT_EQ(r.bad_seq, 1);
}

TEST_F(AuditStoreTest, ATailRewrittenWithoutTheKeyIsNeverSigned) {
  fill(14);  // checkpoint at 10; 11-14 unsigned while the store is open
  // An attacker rewrites 11-14 into a consistent SHA-256 chain of their own.
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(path().c_str(), &db), SQLITE_OK);
  Key256 other{};
  other[0] = 1;
  auto attacker_ring = makeKeyring(other, random_);
  const AuditKeys attacker = AuditKeys::derive(*attacker_ring);
  sqlite3_stmt* st = nullptr;
  sqlite3_prepare_v2(db, "SELECT hash FROM record WHERE seq = 10", -1, &st, nullptr);
  ASSERT_EQ(sqlite3_step(st), SQLITE_ROW);
  Bytes prev(static_cast<const uint8_t*>(sqlite3_column_blob(st, 0)),
             static_cast<const uint8_t*>(sqlite3_column_blob(st, 0)) + 32);
  sqlite3_finalize(st);
  for (int seq = 11; seq <= 14; ++seq) {
    AuditEvent e = event(seq);
    e.outcome = "denied";
    const StoredRecord r = sealRecord(e, seq, prev, attacker, random_);
    sqlite3_prepare_v2(db, "UPDATE record SET outcome = ?, prev = ?, hash = ?, mac = ?, phi = NULL, "
                           "patient_token = NULL, time_us = ?, detail = '' WHERE seq = ?", -1, &st, nullptr);
    sqlite3_bind_text(st, 1, r.outcome.c_str(), -1, SQLITE_TRANSIENT);
    sqlite3_bind_blob(st, 2, r.prev.data(), 32, SQLITE_TRANSIENT);
    sqlite3_bind_blob(st, 3, r.hash.data(), 32, SQLITE_TRANSIENT);
    sqlite3_bind_blob(st, 4, r.mac.data(), 32, SQLITE_TRANSIENT);
    sqlite3_bind_int64(st, 5, r.time_us);
    sqlite3_bind_int(st, 6, seq);
    ASSERT_EQ(sqlite3_step(st), SQLITE_DONE);
    sqlite3_finalize(st);
    prev = r.hash;
  }
  sqlite3_close(db);
  // The archive refuses to sign it and records why; appends go on, unsigned.
  auto cp = store_->checkpoint();
  ASSERT_TRUE(cp.ok());
  EXPECT_EQ(cp->seq, 10);
  AuditFilter alerts;
  alerts.action = "audit-integrity";
  size_t n = 0;
  ASSERT_TRUE(store_->search(alerts, [&](const AuditEntry& x) { return ++n, x.event.severity == "high"; }).ok());
  EXPECT_EQ(n, 1u);
  ASSERT_TRUE(store_->append(event(99)).ok());
  store_.reset();
  const VerifyReport r = verify(std::nullopt, /*with_mac=*/true);
  EXPECT_FALSE(r.ok);
  EXPECT_EQ(r.bad_seq, 11);
}

TEST_F(AuditStoreTest, ATriggerThatCouldHideRecordsIsRefused) {
  fill(3);
  tamper("CREATE TRIGGER hide BEFORE INSERT ON record WHEN NEW.source = '10.6.6.6' BEGIN SELECT RAISE(IGNORE); END");
  auto again = AuditStore::open(path(), *keyring_, random_, clock_, {10, std::chrono::seconds(3600)});
  EXPECT_FALSE(again.ok());
  const VerifyReport r = verify();
  EXPECT_FALSE(r.ok);
}

TEST_F(AuditStoreTest, AnEmptyOrMissingTrailDoesNotVerify) {
  store_.reset();
  EXPECT_FALSE(verify().ok);
  EXPECT_FALSE(verifyAuditStore(dir_.path() + "/none.sqlite", AuditKeys::derive(*keyring_).sign_public,
                                std::nullopt, 10).ok());
}

TEST_F(AuditStoreTest, ARecordWhosePhiNoLongerOpensIsReportedMarkedNotHidden) {
  fill(6);
  tamper("UPDATE record SET phi = zeroblob(60) WHERE seq = 2");
  open({10, std::chrono::seconds(3600)});
  std::vector<AuditEntry> got;
  ASSERT_TRUE(store_->search({}, [&](const AuditEntry& x) { return got.push_back(x), true; }).ok());
  ASSERT_EQ(got.size(), 6u);
  EXPECT_EQ(got[1].event.severity, "high");
  EXPECT_NE(got[1].event.detail.find("failed authentication"), std::string::npos);
  EXPECT_EQ(got[2].event.patient_id, "PID3");
}

TEST_F(AuditStoreTest, ANotedRecordComesBackFromItsNoteOnceAndOnlyForItsObject) {
  AuditEvent e = event(1, "PID7");
  e.detail = "object obj-1";
  auto note = store_->noteFor(e, "obj-1");
  ASSERT_TRUE(note);
  EXPECT_EQ(asChars(*note).find("PID7"), std::string::npos);  // sealed
  EXPECT_EQ(store_->appendFromNote(*note, "obj-2", 0).status().code(), StatusCode::kDataLoss);
  ASSERT_TRUE(store_->appendNoted(e).ok());
  auto again = store_->appendFromNote(*note, "obj-1", 0);
  ASSERT_TRUE(again.ok()) << again.status().toString();
  EXPECT_FALSE(*again);  // its record is here
  ASSERT_EQ(*store_->lastSeq(), 1);

  // A trail that lost the record (another file here) gets it back, once.
  auto other = AuditStore::open(dir_.path() + "/other.sqlite", *keyring_, random_, clock_, {});
  ASSERT_TRUE(other.ok());
  auto r = (*other)->appendFromNote(*note, "obj-1", 0);
  ASSERT_TRUE(r.ok() && *r);
  r = (*other)->appendFromNote(*note, "obj-1", 0);
  ASSERT_TRUE(r.ok());
  EXPECT_FALSE(*r);
  std::vector<AuditEntry> got;
  ASSERT_TRUE((*other)->search({}, [&](const AuditEntry& x) { return got.push_back(x), true; }).ok());
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].event.patient_id, "PID7");
  EXPECT_EQ(got[0].event.patient_name, "NAME^PID7");
  EXPECT_EQ(got[0].event.actor_ae, e.actor_ae);
  EXPECT_EQ(got[0].event.study_uid, e.study_uid);
  EXPECT_EQ(toMicros(got[0].event.time), toMicros(e.time));
  EXPECT_EQ(got[0].event.detail.rfind("object obj-1 [recovered", 0), 0u);
  // Another store of the same study, node and microsecond is another record.
  AuditEvent twin = e;
  twin.detail = "object obj-2";
  auto twin_note = store_->noteFor(twin, "obj-2");
  r = (*other)->appendFromNote(*twin_note, "obj-2", 0);
  ASSERT_TRUE(r.ok());
  EXPECT_TRUE(*r);
  got.clear();
  ASSERT_TRUE((*other)->search({}, [&](const AuditEntry& x) { return got.push_back(x), true; }).ok());
  ASSERT_EQ(got.size(), 2u);
  // Looked for only after the position given: from there on it is missing.
  r = (*other)->appendFromNote(*note, "obj-1", got[0].seq);
  ASSERT_TRUE(r.ok());
  EXPECT_TRUE(*r);
}

TEST_F(AuditStoreTest, NoteMarksOnlyMoveForwardAndKeepTheirHeadUntilTheyDo) {
  fill(3);
  ASSERT_TRUE(store_->setNoteMarks({{4, 1000}, {5, 48}}, 2).ok());
  fill(2);
  ASSERT_TRUE(store_->setNoteMarks({{4, 500}, {5, 96}}, 5).ok());  // pack 4 does not move back, nor its head
  auto marks = store_->noteMarks();
  ASSERT_TRUE(marks.ok());
  ASSERT_EQ(marks->size(), 2u);
  EXPECT_EQ(marks->at(4).offset, 1000);
  EXPECT_EQ(marks->at(4).seq, 2);
  EXPECT_EQ(marks->at(5).offset, 96);
  EXPECT_EQ(marks->at(5).seq, 5);
  open({10, std::chrono::seconds(3600)});  // kept across a restart
  EXPECT_EQ(store_->noteMarks()->at(4).offset, 1000);
}

TEST_F(AuditStoreTest, OnlySyncedRecordsCountAsDurable) {
  fill(2);  // synced appends
  EXPECT_EQ(store_->durableSeq(), 2);
  ASSERT_TRUE(store_->appendNoted(event(3)).ok());
  EXPECT_EQ(*store_->lastSeq(), 3);
  EXPECT_EQ(store_->durableSeq(), 2);  // committed without a sync: not exported yet
  ASSERT_TRUE(store_->sync().ok());
  EXPECT_EQ(store_->durableSeq(), 3);
}

TEST(AuditMessage, HostileValuesStayInsideOneWellFormedRecord) {
  AuditEntry entry;
  entry.seq = 7;
  entry.event = systemEvent(std::chrono::system_clock::now(), "MOD1", "store", "success");
  entry.event.patient_id = "ID\r\n<86>1 - - - forged";
  entry.event.patient_name = std::string("X]]></ParticipantObjectName></AuditMessage><AuditMessage>\x01\xff\xfe") +
                             std::string(1 << 20, 'A');
  entry.event.study_uid = "1.2.3";
  const std::string xml = dicomAuditXml(entry, AuditSource{});
  EXPECT_EQ(xml.find('\n'), std::string::npos);
  EXPECT_EQ(xml.find('\r'), std::string::npos);
  EXPECT_EQ(xml.find("</AuditMessage>"), xml.size() - std::string("</AuditMessage>").size());
  EXPECT_EQ(xml.find("<AuditMessage>", 1), std::string::npos);
  EXPECT_EQ(xml.find("]]>"), std::string::npos);
  EXPECT_NE(xml.find("&#13;&#10;&lt;86&gt;"), std::string::npos);
  EXPECT_NE(xml.find("\xef\xbf\xbd"), std::string::npos);  // U+FFFD for the control and invalid bytes
  const std::string line = syslogMessage(entry, AuditSource{"BASTION", "", "host"});
  EXPECT_EQ(line.rfind("<85>1 ", 0), 0u);
  EXPECT_NE(line.find(" bastion "), std::string::npos);
  EXPECT_NE(line.find(" IHE+RFC-3881 [meta sequenceId=\"7\"] \xEF\xBB\xBF<AuditMessage>"), std::string::npos);
  entry.seq = 2147483647;  // sequenceId is 1..2^31-1 (RFC 5424 7.3.1): never 0
  EXPECT_NE(syslogMessage(entry, AuditSource{}).find("sequenceId=\"2147483647\""), std::string::npos);
  entry.seq = 2147483648;
  EXPECT_NE(syslogMessage(entry, AuditSource{}).find("sequenceId=\"1\""), std::string::npos);
}

TEST(AuditMessage, EventsMapToTheirDicomEventIds) {
  auto id = [](const std::string& action) {
    AuditEvent e;
    e.action = action;
    return classify(e).event_id.code;
  };
  EXPECT_EQ(id("start"), "110100");
  EXPECT_EQ(id("audit-read"), "110101");
  EXPECT_EQ(id("wado-rendered"), "110103");
  EXPECT_EQ(id("store"), "110104");
  EXPECT_EQ(id("move"), "110104");
  EXPECT_EQ(id("delete"), "110105");
  EXPECT_EQ(id("find"), "110112");
  EXPECT_EQ(id("break-glass"), "110113");
  EXPECT_EQ(id("login"), "110114");
  AuditEvent denied;
  denied.action = "get";
  denied.outcome = "denied";
  EXPECT_EQ(outcomeIndicator(denied.outcome), 4);
  EXPECT_EQ(classify(denied).action, 'R');
}

}  // namespace
}  // namespace bastion::audit
