// The index's own C-FIND time on a 100,000-instance index (10,000 patients x
// 2 studies x 1 series x 5 instances, 200 surnames): STUDY level by PatientID
// and by PatientName trailing wildcard (~100 studies per query), with the
// usual return keys (counts, ModalitiesInStudy). Target: < 2 ms median each.
// The index is built once under $BENCH_DIR (default /tmp/bastion-bench-index).
#include <benchmark/benchmark.h>

#include <cstdlib>
#include <filesystem>
#include <thread>

#include "dicom/parse/dicom_scanner.h"
#include "index/sqlite/sqlite_index.h"

namespace {
using namespace bastion;
namespace tg = dicom::tag;

constexpr int kPatients = 10000, kStudies = 2, kInstances = 5, kSurnames = 200;

std::string surname(int i) { return "SURNAME" + std::to_string(i % kSurnames) + "X"; }

index::SqliteIndex& sharedIndex() {
  static std::unique_ptr<Keyring> ring = makeKeyring(Key256{1, 2, 3}, Random::system());
  static std::unique_ptr<index::SqliteIndex> idx = [] {
    const char* env = std::getenv("BENCH_DIR");
    std::string dir = env ? env : "/tmp/bastion-bench-index";
    std::filesystem::create_directories(dir);
    auto opened = index::SqliteIndex::open(dir + "/index.sqlite", *ring, Random::system());
    if (!opened.ok()) std::abort();
    auto& ix = *opened.value();
    if (*ix.instanceCount() < uint64_t{kPatients} * kStudies * kInstances) {
      // Eight writers so group commit batches the fsyncs.
      std::vector<std::thread> writers;
      for (int w = 0; w < 8; ++w)
        writers.emplace_back([&ix, w] {
          for (int p = w; p < kPatients; p += 8)
            for (int s = 0; s < kStudies; ++s)
              for (int i = 0; i < kInstances; ++i) {
                InstanceRecord r;
                r.patient_id = "PB" + std::to_string(p);
                r.patient_name = surname(p) + "^GIVEN" + std::to_string(p);
                r.patient_birth_date = "19700101";
                r.study_uid = "2.25." + std::to_string(p) + "." + std::to_string(s);
                r.study_date = "2024010" + std::to_string(1 + s);
                r.series_uid = r.study_uid + ".1";
                r.modality = "CT";
                r.sop_uid = r.series_uid + "." + std::to_string(i);
                r.sop_class_uid = "1.2.840.10008.5.1.4.1.1.2";
                r.transfer_syntax = "1.2.840.10008.1.2.1";
                r.blob_id = r.sop_uid;
                r.sha256_hex = std::string(64, 'a');  // (GCC 12 -Wrestrict false positive on = "x")
                (void)ix.putInstance(r).ok();
              }
        });
      for (auto& t : writers) t.join();
    }
    // BENCH_POPULATION=hospital: 1,000 users over 50 sites and 10,000 grants, so that
    // scoped queries are measured against a realistic access_grant table.
    const char* pop = std::getenv("BENCH_POPULATION");
    if (pop && std::string(pop) == "hospital") {
      auto db = index::Db::open(dir + "/index.sqlite");
      if (!db.ok()) std::abort();
      (void)(*db)->exec(
          "INSERT OR IGNORE INTO user(username, password_hash, roles, site, physician_name, groups, created, "
          "password_changed) WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 1000) "
          "SELECT 'user' || x, 'x', 'radiologist', 'site' || (x % 50), '', 'group' || (x % 20), 0, 0 FROM c");
      // 10,000 grants of existing studies to users (x % 100000 < kPatients for the sizes used here).
      (void)(*db)->exec(
          "INSERT INTO access_grant(grantee, study_uid, kind, reason, granted_by, created, expires) "
          "SELECT * FROM (WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 10000) "
          "SELECT 'user:user' || (x % 1000), '2.25.' || (x * 7 % 10000) || '.0', 'grant', 'bench', 'bench', 0, 0 "
          "FROM c) WHERE (SELECT COUNT(*) FROM access_grant) < 10000");
    }
    return std::move(opened).value();
  }();
  return *idx;
}

Query studyQuery(uint32_t key, const std::string& value) {
  Query q;
  q.level = QueryLevel::kStudy;
  q.scope = StudyScope::everything();
  q.keys = {{key, value}, {tg::kStudyInstanceUid, ""}, {tg::kPatientName, ""}, {tg::kPatientId, ""},
            {0x00080061, ""}, {0x00201206, ""}, {0x00201208, ""}};
  return q;
}

// The scope a site-scoped radiologist in one of 50 sites with two groups gets from the Policy.
StudyScope radiologistScope() {
  StudyScope s;
  s.sites = {"main"};
  s.grantees = {"user:user17", "group:group3", "group:group9"};
  s.now_unix = 1800000000;
  return s;
}

void runQuery(benchmark::State& state, uint32_t key, const std::function<std::string(int)>& value,
              bool scoped = false) {
  auto& ix = sharedIndex();
  int i = 0;
  size_t rows = 0;
  for (auto _ : state) {
    Query q = studyQuery(key, value(i++));
    if (scoped) q.scope = radiologistScope();
    rows = 0;
    Status s = ix.query(q, [&](const QueryRow&) {
      ++rows;
      return true;
    });
    if (!s.ok()) state.SkipWithError(s.toString().c_str());
  }
  state.counters["rows"] = static_cast<double>(rows);
}

void BM_FindStudyByPatientId(benchmark::State& state) {
  runQuery(state, tg::kPatientId, [](int i) { return "PB" + std::to_string((i * 7919) % kPatients); });
}
void BM_FindStudyByPatientNameWildcard(benchmark::State& state) {
  runQuery(state, tg::kPatientName, [](int i) { return surname((i * 31) % kSurnames) + "*"; });
}
void BM_ScopedFindStudyByPatientId(benchmark::State& state) {
  runQuery(state, tg::kPatientId, [](int i) { return "PB" + std::to_string((i * 7919) % kPatients); }, true);
}
void BM_ScopedFindStudyByPatientNameWildcard(benchmark::State& state) {
  runQuery(state, tg::kPatientName, [](int i) { return surname((i * 31) % kSurnames) + "*"; }, true);
}
BENCHMARK(BM_ScopedFindStudyByPatientId)->Unit(benchmark::kMicrosecond)->Repetitions(5)->ReportAggregatesOnly(true);
BENCHMARK(BM_ScopedFindStudyByPatientNameWildcard)
    ->Unit(benchmark::kMicrosecond)
    ->Repetitions(5)
    ->ReportAggregatesOnly(true);
BENCHMARK(BM_FindStudyByPatientId)->Unit(benchmark::kMicrosecond)->Repetitions(5)->ReportAggregatesOnly(true);
BENCHMARK(BM_FindStudyByPatientNameWildcard)
    ->Unit(benchmark::kMicrosecond)
    ->Repetitions(5)
    ->ReportAggregatesOnly(true);

}  // namespace

BENCHMARK_MAIN();
