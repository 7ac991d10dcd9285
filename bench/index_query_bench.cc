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
                r.sha256_hex = "x";
                (void)ix.putInstance(r).ok();
              }
        });
      for (auto& t : writers) t.join();
    }
    return std::move(opened).value();
  }();
  return *idx;
}

Query studyQuery(uint32_t key, const std::string& value) {
  Query q;
  q.level = QueryLevel::kStudy;
  q.keys = {{key, value}, {tg::kStudyInstanceUid, ""}, {tg::kPatientName, ""}, {tg::kPatientId, ""},
            {0x00080061, ""}, {0x00201206, ""}, {0x00201208, ""}};
  return q;
}

void runQuery(benchmark::State& state, uint32_t key, const std::function<std::string(int)>& value) {
  auto& ix = sharedIndex();
  int i = 0;
  size_t rows = 0;
  for (auto _ : state) {
    Query q = studyQuery(key, value(i++));
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
BENCHMARK(BM_FindStudyByPatientId)->Unit(benchmark::kMicrosecond)->Repetitions(5)->ReportAggregatesOnly(true);
BENCHMARK(BM_FindStudyByPatientNameWildcard)
    ->Unit(benchmark::kMicrosecond)
    ->Repetitions(5)
    ->ReportAggregatesOnly(true);

}  // namespace

BENCHMARK_MAIN();
