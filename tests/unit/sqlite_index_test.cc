#include "index/sqlite/sqlite_index.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <fstream>
#include <sstream>
#include <thread>

#include "dicom/parse/dicom_scanner.h"
#include "test_util.h"

namespace bastion::index {
namespace {
namespace tg = dicom::tag;

InstanceRecord rec(const std::string& pid, const std::string& name, const std::string& study,
                   const std::string& series, const std::string& sop, const std::string& date = "20260101",
                   const std::string& modality = "CT") {
  InstanceRecord r;
  r.patient_id = pid;
  r.patient_name = name;
  r.patient_birth_date = "19800101";
  r.study_uid = study;
  r.study_date = date;
  r.study_time = "101010";
  r.accession_number = "ACC-" + study;
  r.referring_physician = "WHO^DOCTOR";
  r.study_description = "CHEST";
  r.series_uid = series;
  r.modality = modality;
  r.series_number = "1";
  r.sop_uid = sop;
  r.sop_class_uid = "1.2.840.10008.5.1.4.1.1.2";
  r.instance_number = "1";
  r.transfer_syntax = "1.2.840.10008.1.2.1";
  r.blob_id = "blob-" + sop;
  r.sha256_hex = "sha-" + sop;
  r.size = 10;
  return r;
}

class SqliteIndexTest : public ::testing::Test {
 protected:
  void SetUp() override {
    keyring_ = makeKeyring(Key256{}, random_);
    auto idx = SqliteIndex::open(dir_.path() + "/index.sqlite", *keyring_, random_);
    ASSERT_TRUE(idx.ok()) << idx.status().toString();
    index_ = std::move(idx).value();
    // Two patients, three studies, mixed modalities.
    for (const auto& r : {rec("PID1", "SMITH^JOHN", "1.1", "1.1.1", "1.1.1.1", "20200105", "CT"),
                          rec("PID1", "SMITH^JOHN", "1.1", "1.1.1", "1.1.1.2", "20200105", "CT"),
                          rec("PID1", "SMITH^JOHN", "1.1", "1.1.2", "1.1.2.1", "20200105", "MR"),
                          rec("PID1", "SMITH^JOHN", "1.2", "1.2.1", "1.2.1.1", "20210301", "CT"),
                          rec("PID2", "Jones^Ann", "1.3", "1.3.1", "1.3.1.1", "20220707", "US")})
      ASSERT_TRUE(index_->putInstance(r).ok()) << index_->putInstance(r).status().toString();
  }
  std::vector<QueryRow> run(QueryLevel level, std::map<uint32_t, std::string> keys) {
    std::vector<QueryRow> rows;
    Status s = index_->query({level, std::move(keys), 0, StudyScope::everything()}, [&](const QueryRow& r) {
      rows.push_back(r);
      return true;
    });
    EXPECT_TRUE(s.ok()) << s.toString();
    return rows;
  }
  std::vector<std::string> studies(std::map<uint32_t, std::string> keys) {
    std::vector<std::string> out;
    for (auto& r : run(QueryLevel::kStudy, std::move(keys))) out.push_back(r.at(tg::kStudyInstanceUid));
    std::sort(out.begin(), out.end());
    return out;
  }

  testing::TempDir dir_;
  testing::FakeRandom random_;
  std::unique_ptr<Keyring> keyring_;
  std::unique_ptr<SqliteIndex> index_;
};

using V = std::vector<std::string>;

TEST_F(SqliteIndexTest, MatchesPatientIdExactlyAndByPrefix) {
  EXPECT_EQ(studies({{tg::kPatientId, "PID1"}}), (V{"1.1", "1.2"}));
  EXPECT_EQ(studies({{tg::kPatientId, "PID*"}}), (V{"1.1", "1.2", "1.3"}));
  EXPECT_EQ(studies({{tg::kPatientId, "PID"}}), V{});
  EXPECT_EQ(studies({{tg::kPatientId, "*2"}}), V{"1.3"});
}

TEST_F(SqliteIndexTest, MatchesPersonNamesCaseInsensitively) {
  EXPECT_EQ(studies({{tg::kPatientName, "smith*"}}), (V{"1.1", "1.2"}));
  EXPECT_EQ(studies({{tg::kPatientName, "JONES^ANN"}}), V{"1.3"});
  EXPECT_EQ(studies({{tg::kPatientName, "J?NES*"}}), V{"1.3"});
  EXPECT_EQ(studies({{tg::kPatientName, "*"}}), (V{"1.1", "1.2", "1.3"}));
}

TEST_F(SqliteIndexTest, MatchesDatesUidListsAndModalities) {
  EXPECT_EQ(studies({{tg::kStudyDate, "20200101-20211231"}}), (V{"1.1", "1.2"}));
  EXPECT_EQ(studies({{tg::kStudyDate, "20220101-"}}), V{"1.3"});
  EXPECT_EQ(studies({{tg::kStudyDate, "20200105"}}), V{"1.1"});
  EXPECT_EQ(studies({{tg::kStudyTime, "100000-110000"}}), (V{"1.1", "1.2", "1.3"}));
  EXPECT_EQ(studies({{tg::kStudyTime, "1010-1010"}}), (V{"1.1", "1.2", "1.3"}));  // upper bound at its precision
  EXPECT_EQ(studies({{tg::kStudyTime, "1011-1012"}}), V{});
  EXPECT_EQ(studies({{tg::kStudyTime, "110000-"}}), V{});
  EXPECT_EQ(studies({{tg::kStudyInstanceUid, "1.1\\1.3"}}), (V{"1.1", "1.3"}));
  EXPECT_EQ(studies({{0x00080061, "MR"}}), V{"1.1"});
  EXPECT_EQ(studies({{0x00080061, "US\\MR"}}), (V{"1.1", "1.3"}));
  EXPECT_EQ(studies({{tg::kAccessionNumber, "ACC-1.2"}}), V{"1.2"});
  EXPECT_EQ(studies({{tg::kPatientBirthDate, "19800101"}}), (V{"1.1", "1.2", "1.3"}));
}

TEST_F(SqliteIndexTest, ReturnsCountsAndModalitiesInStudy) {
  auto rows = run(QueryLevel::kStudy, {{tg::kStudyInstanceUid, "1.1"}});
  ASSERT_EQ(rows.size(), 1u);
  EXPECT_EQ(rows[0].at(0x00201206), "2");  // series
  EXPECT_EQ(rows[0].at(0x00201208), "3");  // instances
  EXPECT_EQ(rows[0].at(0x00080061), "CT\\MR");
  EXPECT_EQ(rows[0].at(tg::kPatientName), "SMITH^JOHN");
  auto patients = run(QueryLevel::kPatient, {{tg::kPatientId, "PID1"}});
  ASSERT_EQ(patients.size(), 1u);
  EXPECT_EQ(patients[0].at(0x00201200), "2");
  EXPECT_EQ(patients[0].at(0x00201204), "4");
  auto series = run(QueryLevel::kSeries, {{tg::kStudyInstanceUid, "1.1"}, {tg::kModality, "CT"}});
  ASSERT_EQ(series.size(), 1u);
  EXPECT_EQ(series[0].at(0x00201209), "2");
  auto images = run(QueryLevel::kImage, {{tg::kSeriesInstanceUid, "1.1.1"}});
  EXPECT_EQ(images.size(), 2u);
}

TEST_F(SqliteIndexTest, DuplicateSopIsIdempotentOrRefused) {
  auto same = index_->putInstance(rec("PID1", "SMITH^JOHN", "1.1", "1.1.1", "1.1.1.1"));
  ASSERT_TRUE(same.ok());
  EXPECT_EQ(*same, PutResult::kAlreadyStored);
  InstanceRecord changed = rec("PID1", "SMITH^JOHN", "1.1", "1.1.1", "1.1.1.1");
  changed.sha256_hex = "different";
  EXPECT_EQ(index_->putInstance(changed).status().code(), StatusCode::kAlreadyExists);
  EXPECT_EQ(*index_->instanceCount(), 5u);
}

TEST_F(SqliteIndexTest, RetrieveSelectionByLevel) {
  Query q;
  q.level = QueryLevel::kStudy;
  q.scope = StudyScope::everything();
  q.keys[tg::kStudyInstanceUid] = "1.1";
  auto locs = index_->instancesFor(q);
  ASSERT_TRUE(locs.ok());
  EXPECT_EQ(locs->size(), 3u);
  q.keys = {{tg::kPatientId, "PID2"}};
  EXPECT_EQ(index_->instancesFor(q)->size(), 1u);
}

TEST_F(SqliteIndexTest, HostileQueryValuesAreData) {
  EXPECT_EQ(studies({{tg::kPatientName, "x' OR '1'='1"}}), V{});
  EXPECT_EQ(studies({{tg::kStudyDescription, "%"}}), V{});
  EXPECT_EQ(studies({{tg::kStudyDate, "20200101-20251231' OR '1'='1"}}).size(), 3u);
}

TEST_F(SqliteIndexTest, ConcurrentWritersAreGroupCommitted) {
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&, t] {
      for (int i = 0; i < 50; ++i) {
        std::string n = std::to_string(t) + "." + std::to_string(i);
        ASSERT_TRUE(index_->putInstance(rec("P" + std::to_string(t), "X", "9." + n, "9." + n + ".1", "9." + n + ".1.1"))
                        .ok());
      }
    });
  for (auto& th : threads) th.join();
  EXPECT_EQ(*index_->instanceCount(), 205u);
}

TEST_F(SqliteIndexTest, MetadataCacheIsBoundToItsContextAndGoesWithTheStudy) {
  const std::string json = R"({"00100010":{"vr":"PN","Value":[{"Alphabetic":"SMITH^JOHN"}]}})";
  ASSERT_TRUE(index_->putCachedMetadata({{"1.1.1.1", "/prefix-a", json}, {"9.9.9", "/prefix-a", json}}).ok());
  auto got = index_->cachedMetadata({{"1.1.1.1", "/prefix-a"}, {"1.1.1.1", "/prefix-b"}, {"1.1.1.2", "/prefix-a"},
                                     {"9.9.9", "/prefix-a"}});
  ASSERT_TRUE(got.ok()) << got.status().toString();
  ASSERT_EQ(got->size(), 4u);
  EXPECT_EQ((*got)[0], json);
  EXPECT_FALSE((*got)[1]);  // another bulk data prefix: a miss, not the old JSON
  EXPECT_FALSE((*got)[2]);  // never cached
  EXPECT_FALSE((*got)[3]);  // no such instance: nothing was kept for it
  // Replaced for the new context.
  ASSERT_TRUE(index_->putCachedMetadata({{"1.1.1.1", "/prefix-b", "{}"}}).ok());
  EXPECT_EQ((*index_->cachedMetadata({{"1.1.1.1", "/prefix-b"}}))[0], "{}");
  EXPECT_FALSE((*index_->cachedMetadata({{"1.1.1.1", "/prefix-a"}}))[0]);
  // Deleting the study deletes its cached JSON; storing the instance again starts empty.
  ASSERT_TRUE(index_->deleteStudy("1.1").ok());
  ASSERT_TRUE(index_->putInstance(rec("PID1", "SMITH^JOHN", "1.1", "1.1.1", "1.1.1.1", "20200105", "CT")).ok());
  EXPECT_FALSE((*index_->cachedMetadata({{"1.1.1.1", "/prefix-b"}}))[0]);
}

TEST_F(SqliteIndexTest, DatabaseFileHoldsNoPhiInPlaintext) {
  ASSERT_TRUE(index_->putCachedMetadata({{"1.2.1.1", "/p", R"({"00100010":"SMITH^JOHN PID1 ACC-1.2"})"}}).ok());
  index_.reset();  // checkpoint-free close; the WAL may hold data too
  std::string all;
  for (const char* suffix : {"", "-wal"}) {
    std::ifstream f(dir_.path() + "/index.sqlite" + suffix, std::ios::binary);
    std::stringstream ss;
    ss << f.rdbuf();
    all += ss.str();
  }
  ASSERT_GT(all.size(), 1000u);
  for (const char* phi : {"SMITH", "Jones", "PID1", "19800101", "ACC-1.2", "DOCTOR"})
    EXPECT_EQ(all.find(phi), std::string::npos) << phi;
  EXPECT_NE(all.find("1.1.1.1"), std::string::npos);  // UIDs stay queryable in the clear
}

}  // namespace
}  // namespace bastion::index
