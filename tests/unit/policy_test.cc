// Policy decisions, and the scope filter applied inside the index query:
// out-of-scope studies leave no trace (rows, counts) at any level.
#include "bastion/auth/policy.h"

#include <gtest/gtest.h>

#include <algorithm>

#include "bastion/auth/auth_service.h"
#include "dicom/parse/dicom_scanner.h"
#include "index/sqlite/sqlite_index.h"
#include "test_util.h"

namespace bastion {
namespace {

namespace tg = dicom::tag;
using namespace std::chrono_literals;

Principal user(const std::string& name, uint32_t perms, uint32_t scope, const std::string& site = "north",
               const std::string& physician = "") {
  Principal p;
  p.kind = Principal::Kind::kUser;
  p.name = name;
  p.permissions = perms;
  p.scope_rules = scope;
  p.site = site;
  p.physician_name = physician;
  return p;
}

const auto kNow = std::chrono::system_clock::time_point(std::chrono::seconds(1800000000));

TEST(PolicyTest, PermissionsDecideAndRulesAreNamed) {
  Policy policy;
  EXPECT_FALSE(policy.decide(Principal{}, Action::kFind, {}, kNow).allowed);
  EXPECT_EQ(policy.decide(Principal{}, Action::kFind, {}, kNow).rule, "deny:unauthenticated");
  const Principal admin = user("root", kPermManageUsers | kPermManageNodes | kPermEcho, 0);
  auto d = policy.decide(admin, Action::kFind, {}, kNow);
  EXPECT_FALSE(d.allowed);  // separation of duties: admins see no images
  EXPECT_EQ(d.rule, "deny:no-permission:find");
  EXPECT_TRUE(policy.decide(admin, Action::kManageUsers, {}, kNow).allowed);
  const Principal researcher = user("r", kPermFind | kPermGet | kPermDeidentified, kScopeSite);
  EXPECT_EQ(policy.decide(researcher, Action::kFind, {}, kNow).rule, "deny:deidentified-only");
  const Principal rad = user("rad", kPermFind | kPermGet, kScopeSite);
  d = policy.decide(rad, Action::kGet, {}, kNow);
  EXPECT_TRUE(d.allowed);
  EXPECT_FALSE(d.scope.all);
  EXPECT_EQ(d.scope.sites, std::vector<std::string>{"north"});
  EXPECT_EQ(d.rule, "allow:scope:get:grants+site");
  EXPECT_FALSE(policy.decide(rad, Action::kMove, {}, kNow).allowed);
  const Principal doc = user("doc", kPermFind, kScopeReferring, "north", "House^Gregory^^");
  d = policy.decide(doc, Action::kFind, {}, kNow);
  EXPECT_TRUE(d.scope.sites.empty());
  EXPECT_EQ(d.scope.physician_names, std::vector<std::string>{"HOUSE^GREGORY"});
  EXPECT_TRUE(policy.decide(user("all", kPermFind, kScopeAll), Action::kFind, {}, kNow).scope.all);
  // Deletion: the permission decides, on any study; without it, never.
  d = policy.decide(user("boss", kPermDelete, 0), Action::kDelete, {"1.2"}, kNow);
  EXPECT_TRUE(d.allowed && d.scope.all);
  EXPECT_FALSE(policy.decide(rad, Action::kDelete, {"1.2"}, kNow).allowed);
}

InstanceRecord rec(const std::string& pid, const std::string& study, const std::string& sop, const std::string& site,
                   const std::string& referring, const std::string& requesting = "") {
  InstanceRecord r;
  r.patient_id = pid;
  r.patient_name = "NAME^" + pid;
  r.study_uid = study;
  r.study_date = "20260101";
  r.referring_physician = referring;
  r.requesting_physician = requesting;
  r.site = site;
  r.series_uid = study + ".1";
  r.modality = "CT";
  r.sop_uid = sop;
  r.sop_class_uid = "1.2.840.10008.5.1.4.1.1.2";
  r.transfer_syntax = "1.2.840.10008.1.2.1";
  r.blob_id = "blob-" + sop;
  r.sha256_hex = "sha-" + sop;
  return r;
}

class ScopeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    Key256 kek{};
    keyring_ = makeKeyring(kek, random_);
    const std::string db = dir_.path() + "/i.sqlite";
    auto idx = index::SqliteIndex::open(db, *keyring_, random_);
    ASSERT_TRUE(idx.ok());
    index_ = std::move(idx).value();
    AuthConfig cfg;
    cfg.argon2_ops = 1;
    cfg.argon2_mem_kib = 1024;
    auto a = AuthService::open(db, *keyring_, random_, clock_, audit_, cfg);
    ASSERT_TRUE(a.ok());
    auth_ = std::move(a).value();
    // P1 has a study in each site; P2 only in the south.
    for (const auto& r : {rec("P1", "1.1", "1.1.1.1", "north", "House^Gregory"),
                          rec("P1", "1.2", "1.2.1.1", "south", "Other^Doc", "house^gregory^^"),
                          rec("P1", "1.3", "1.3.1.1", "south", "Other^Doc"),
                          rec("P2", "2.1", "2.1.1.1", "south", "Other^Doc")})
      ASSERT_TRUE(index_->putInstance(r).ok());
  }

  std::vector<QueryRow> find(const Principal& p, QueryLevel level, std::map<uint32_t, std::string> keys = {}) {
    const Decision d = policy_.decide(p, Action::kFind, {}, clock_.now());
    EXPECT_TRUE(d.allowed);
    Query q{level, std::move(keys), 0, d.scope};
    std::vector<QueryRow> rows;
    EXPECT_TRUE(index_->query(q, [&](const QueryRow& r) {
      rows.push_back(r);
      return true;
    }).ok());
    return rows;
  }
  std::vector<std::string> studies(const Principal& p) {
    std::vector<std::string> out;
    for (auto& r : find(p, QueryLevel::kStudy)) out.push_back(r.at(tg::kStudyInstanceUid));
    std::sort(out.begin(), out.end());
    return out;
  }
  size_t retrievable(const Principal& p, const std::string& study) {
    const Decision d = policy_.decide(p, Action::kGet, {}, clock_.now());
    Query q{QueryLevel::kStudy, {{tg::kStudyInstanceUid, study}}, 0, d.scope};
    return index_->instancesFor(q)->size();
  }

  Policy policy_;
  testing::TempDir dir_;
  testing::FakeRandom random_;
  testing::ManualClock clock_;
  testing::NullAudit audit_;
  std::unique_ptr<Keyring> keyring_;
  std::unique_ptr<index::SqliteIndex> index_;
  std::unique_ptr<AuthService> auth_;
};

TEST_F(ScopeTest, SiteScopeHidesOtherSitesEverywhere) {
  const Principal north = user("n", kPermFind | kPermGet, kScopeSite, "north");
  EXPECT_EQ(studies(north), std::vector<std::string>{"1.1"});
  // PATIENT level: P2 is invisible, and P1's counts include only what is in scope.
  auto patients = find(north, QueryLevel::kPatient, {{tg::kPatientId, ""}});
  ASSERT_EQ(patients.size(), 1u);
  EXPECT_EQ(patients[0].at(tg::kPatientId), "P1");
  EXPECT_EQ(patients[0].at(0x00201200), "1");  // NumberOfPatientRelatedStudies
  EXPECT_EQ(patients[0].at(0x00201204), "1");  // NumberOfPatientRelatedInstances
  EXPECT_EQ(find(north, QueryLevel::kSeries).size(), 1u);
  EXPECT_EQ(find(north, QueryLevel::kImage).size(), 1u);
  EXPECT_TRUE(find(north, QueryLevel::kStudy, {{tg::kStudyInstanceUid, "1.2"}}).empty());
  EXPECT_EQ(retrievable(north, "1.1"), 1u);
  EXPECT_EQ(retrievable(north, "1.2"), 0u);
  const Principal south = user("s", kPermFind | kPermGet, kScopeSite, "south");
  EXPECT_EQ(studies(south), (std::vector<std::string>{"1.2", "1.3", "2.1"}));
}

TEST_F(ScopeTest, ReferringAndRequestingPhysicianSeeTheirStudies) {
  const Principal doc = user("house", kPermFind | kPermGet, kScopeReferring, "elsewhere", "HOUSE^GREGORY");
  EXPECT_EQ(studies(doc), (std::vector<std::string>{"1.1", "1.2"}));
  EXPECT_EQ(retrievable(doc, "1.3"), 0u);
  const Principal nobody = user("x", kPermFind, kScopeReferring, "elsewhere", "");
  EXPECT_TRUE(studies(nobody).empty());
}

TEST_F(ScopeTest, GrantsOfStudiesAndPatientsAndTheirExpiry) {
  Principal g = user("gina", kPermFind | kPermGet, 0, "elsewhere");
  g.groups = {"tumour-board"};
  EXPECT_TRUE(studies(g).empty());
  ASSERT_TRUE(auth_->addGrant("user:gina", "1.3", "", "", 1h, "second opinion", "admin").ok());
  EXPECT_EQ(studies(g), std::vector<std::string>{"1.3"});
  ASSERT_TRUE(auth_->addGrant("group:tumour-board", "", "P2", "", 0s, "board review", "admin").ok());
  EXPECT_EQ(studies(g), (std::vector<std::string>{"1.3", "2.1"}));
  EXPECT_EQ(retrievable(g, "2.1"), 1u);
  clock_.advance(2h);  // the study grant expired; the patient grant has no end
  EXPECT_EQ(studies(g), std::vector<std::string>{"2.1"});
  EXPECT_FALSE(auth_->addGrant("alice", "1.3", "", "", 1h, "r", "admin").ok());  // grantee needs a kind
  EXPECT_FALSE(auth_->addGrant("user:x", "not a uid", "", "", 1h, "r", "admin").ok());
}

TEST_F(ScopeTest, NodeRestrictionIntersectsTheUsersScope) {
  Principal u = user("u", kPermFind | kPermGet, kScopeAll);
  u.restrict_site = "south";  // came through a south workstation with site scope
  EXPECT_EQ(studies(u), (std::vector<std::string>{"1.2", "1.3", "2.1"}));
  Principal doc = user("house", kPermFind, kScopeReferring, "elsewhere", "HOUSE^GREGORY");
  doc.restrict_site = "north";
  EXPECT_EQ(studies(doc), std::vector<std::string>{"1.1"});  // 1.2 is his too, but at the south
}

TEST_F(ScopeTest, SamePatientAtTwoSitesKeepsTwoRecords) {
  // A store at another site never reuses (or reveals) this site's patient record.
  InstanceRecord r = rec("P2", "3.1", "3.1.1.1", "north", "X^Y");
  r.patient_name = "IMPOSTOR^NAME";
  ASSERT_TRUE(index_->putInstance(r).ok());
  auto north = find(user("n", kPermFind, kScopeSite, "north"), QueryLevel::kStudy,
                    {{tg::kPatientId, "P2"}, {tg::kPatientName, ""}});
  ASSERT_EQ(north.size(), 1u);
  EXPECT_EQ(north[0].at(tg::kPatientName), "IMPOSTOR^NAME");
  auto south = find(user("s", kPermFind, kScopeSite, "south"), QueryLevel::kStudy,
                    {{tg::kPatientId, "P2"}, {tg::kPatientName, ""}});
  ASSERT_EQ(south.size(), 1u);
  EXPECT_EQ(south[0].at(tg::kPatientName), "NAME^P2");
}

TEST_F(ScopeTest, EverythingScopeSeesAll) {
  EXPECT_EQ(studies(user("a", kPermFind, kScopeAll)).size(), 4u);
}

}  // namespace
}  // namespace bastion
