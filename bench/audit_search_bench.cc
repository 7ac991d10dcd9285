// bastion audit search at scale: one patient's records among AUDIT_EVENTS
// (default 10,000,000) events, as `bastion audit search --patient-id X
// --last-days 90` runs it (AuditStore::search: keyed token lookup, PHI of the
// hits decrypted). Also times a user's day and verification of the whole
// chain. The trail is built once in AUDIT_BENCH_DIR (default
// /tmp/bastion-audit-bench): records sealed and chained exactly as the store
// does (sealRecord), written in large transactions; a checkpoint every 1,000.
#include <benchmark/benchmark.h>
#include <sqlite3.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <vector>

#include "audit/audit_store.h"
#include "audit/syslog_forwarder.h"

namespace {

using namespace bastion;
using namespace bastion::audit;

const int64_t kEvents = std::getenv("AUDIT_EVENTS") ? std::atoll(std::getenv("AUDIT_EVENTS")) : 10000000;
const int64_t kPatients = 100000, kUsers = 500;
const auto kStart = std::chrono::system_clock::time_point(std::chrono::seconds(1764000000));  // 2025-11-24
const auto kSpan = std::chrono::hours(24 * 365);

std::string dir() {
  const char* d = std::getenv("AUDIT_BENCH_DIR");
  return d ? d : "/tmp/bastion-audit-bench";
}

Key256 kek() {
  Key256 k{};
  k[0] = 42;
  return k;
}

const char* kActions[] = {"find", "store", "get", "wado", "wado-metadata", "move", "login"};

void build(const std::string& path, Keyring& ring) {
  { auto s = AuditStore::open(path, ring, Random::system(), Clock::system()); }  // schema
  sqlite3* db = nullptr;
  sqlite3_open(path.c_str(), &db);
  // Bulk load: the store's own indexes are dropped, the rows inserted, and
  // the same indexes (their SQL read back from the schema) built at the end.
  std::vector<std::string> indexes;
  sqlite3_exec(
      db, "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND tbl_name = 'record' AND sql IS NOT NULL",
      [](void* out, int, char** v, char**) {
        static_cast<std::vector<std::string>*>(out)->push_back(std::string("DROP INDEX ") + v[0] + "\x1f" + v[1]);
        return 0;
      },
      &indexes, nullptr);
  for (const auto& i : indexes) sqlite3_exec(db, i.substr(0, i.find('\x1f')).c_str(), nullptr, nullptr, nullptr);
  sqlite3_exec(db,
               "PRAGMA journal_mode=OFF; PRAGMA synchronous=OFF; PRAGMA cache_size=-2000000;"
               "DELETE FROM record; DELETE FROM checkpoint;",
               nullptr, nullptr, nullptr);
  const AuditKeys keys = AuditKeys::derive(ring);
  sqlite3_stmt* ins = nullptr;
  sqlite3_prepare_v2(db,
                     "INSERT INTO record(seq, time_us, action, outcome, severity, actor, user, source, cert, study, "
                     "rule, detail, count, patient_token, phi, prev, hash, mac) "
                     "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                     -1, &ins, nullptr);
  sqlite3_stmt* cp = nullptr;
  sqlite3_prepare_v2(db, "INSERT INTO checkpoint(seq, hash, time_us, prev_seq, every, signature) VALUES (?,?,?,?,?,?)",
                     -1, &cp, nullptr);
  int64_t last_cp = 0;
  Bytes prev(32, 0);
  uint64_t x = 88172645463325252ull;
  auto rnd = [&] {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return x;
  };
  auto text = [](sqlite3_stmt* s, int i, const std::string& v) { sqlite3_bind_text(s, i, v.c_str(), -1, SQLITE_TRANSIENT); };
  auto blob = [](sqlite3_stmt* s, int i, const Bytes& v) {
    if (v.empty()) sqlite3_bind_null(s, i);
    else sqlite3_bind_blob(s, i, v.data(), static_cast<int>(v.size()), SQLITE_TRANSIENT);
  };
  sqlite3_exec(db, "BEGIN", nullptr, nullptr, nullptr);
  for (int64_t seq = 1; seq <= kEvents; ++seq) {
    AuditEvent e;
    // Spread evenly over the year (in microseconds: no overflow at 10M events).
    e.time = kStart + std::chrono::microseconds(
                          std::chrono::duration_cast<std::chrono::microseconds>(kSpan).count() / kEvents * seq);
    e.action = kActions[rnd() % 7];
    e.outcome = rnd() % 50 ? "success" : "denied";
    e.actor_ae = "WS" + std::to_string(rnd() % 50);
    e.user = "user" + std::to_string(rnd() % kUsers);
    e.source_address = "10.1." + std::to_string(rnd() % 256) + "." + std::to_string(rnd() % 256);
    const uint64_t patient = rnd() % kPatients;
    e.patient_id = "PID" + std::to_string(patient);
    e.patient_name = "PATIENT^" + std::to_string(patient);
    e.study_uid = "2.25." + std::to_string(patient) + "." + std::to_string(rnd() % 5);
    e.instance_count = static_cast<uint32_t>(rnd() % 300);
    e.rule = "allow:site";
    if (e.action == "find") e.query = R"({"00100020":")" + e.patient_id + "\"}";
    const StoredRecord r = sealRecord(e, seq, prev, keys, Random::system());
    sqlite3_bind_int64(ins, 1, r.seq);
    sqlite3_bind_int64(ins, 2, r.time_us);
    int i = 3;
    for (const std::string* s : {&r.action, &r.outcome, &r.severity, &r.actor, &r.user, &r.source, &r.cert, &r.study,
                                 &r.rule, &r.detail})
      text(ins, i++, *s);
    sqlite3_bind_int64(ins, 13, r.count);
    blob(ins, 14, r.patient_token);
    blob(ins, 15, r.phi);
    blob(ins, 16, r.prev);
    blob(ins, 17, r.hash);
    blob(ins, 18, r.mac);
    sqlite3_step(ins);
    sqlite3_reset(ins);
    prev = r.hash;
    if (seq % 1000 == 0 || seq == kEvents) {
      const Checkpoint c = signCheckpoint(seq, prev, r.time_us, last_cp, 1000, keys);
      last_cp = seq;
      sqlite3_bind_int64(cp, 1, c.seq);
      blob(cp, 2, c.hash);
      sqlite3_bind_int64(cp, 3, c.time_us);
      sqlite3_bind_int64(cp, 4, c.prev_seq);
      sqlite3_bind_int64(cp, 5, c.every);
      blob(cp, 6, c.signature);
      sqlite3_step(cp);
      sqlite3_reset(cp);
    }
    if (seq % 200000 == 0) {
      sqlite3_exec(db, "COMMIT; BEGIN", nullptr, nullptr, nullptr);
      std::cerr << "\rbuilt " << seq << "/" << kEvents << std::flush;
    }
  }
  sqlite3_exec(db, "COMMIT", nullptr, nullptr, nullptr);
  sqlite3_finalize(ins);
  sqlite3_finalize(cp);
  std::cerr << "\nbuilding indexes\n";
  for (const auto& i : indexes) sqlite3_exec(db, i.substr(i.find('\x1f') + 1).c_str(), nullptr, nullptr, nullptr);
  sqlite3_exec(db, "PRAGMA journal_mode=WAL", nullptr, nullptr, nullptr);
  sqlite3_close(db);
  std::cerr << "\n";
}

struct Fixture {
  std::unique_ptr<Keyring> ring = makeKeyring(kek(), Random::system());
  std::unique_ptr<AuditStore> store;
  std::string path = dir() + "/audit-" + std::to_string(kEvents) + ".sqlite";
  Fixture() {
    std::filesystem::create_directories(dir());
    if (!std::filesystem::exists(path + ".done")) {
      build(path, *ring);
      std::ofstream(path + ".done") << "ok\n";
    }
    store = std::move(AuditStore::open(path, *ring, Random::system(), Clock::system())).value();
  }
};

Fixture& fixture() {
  static Fixture f;
  return f;
}

// Times store->search() with the filter `make(i)` gives for iteration i;
// reports the last iteration's number of hits.
void runSearches(benchmark::State& state, const std::function<AuditFilter(uint64_t)>& make) {
  auto& f = fixture();
  uint64_t i = 0;
  size_t hits = 0;
  for (auto _ : state) {
    AuditFilter q = make(i++);
    q.limit = 100000;
    hits = 0;
    (void)f.store->search(q, [&](const AuditEntry&) { return ++hits, true; });
  }
  state.counters["hits"] = static_cast<double>(hits);
  state.counters["events"] = static_cast<double>(kEvents);
}

void BM_SearchOnePatientLast90Days(benchmark::State& state) {
  runSearches(state, [](uint64_t i) {
    AuditFilter q;
    q.patient_id = "PID" + std::to_string((i * 7919) % kPatients);
    q.since = kStart + kSpan - std::chrono::hours(24 * 90);
    return q;
  });
}
BENCHMARK(BM_SearchOnePatientLast90Days)->Unit(benchmark::kMillisecond);

void BM_SearchOnePatientAllTime(benchmark::State& state) {
  runSearches(state, [](uint64_t i) {
    AuditFilter q;
    q.patient_id = "PID" + std::to_string((i * 104729) % kPatients);
    return q;
  });
}
BENCHMARK(BM_SearchOnePatientAllTime)->Unit(benchmark::kMillisecond);

void BM_SearchOneUserOneDay(benchmark::State& state) {
  runSearches(state, [](uint64_t) {
    AuditFilter q;
    q.user = "user17";
    q.since = kStart + kSpan - std::chrono::hours(24);
    return q;
  });
}
BENCHMARK(BM_SearchOneUserOneDay)->Unit(benchmark::kMillisecond);

// What the syslog forwarder does per record: read it back (PHI opened),
// render the DICOM audit message and its RFC 5424 line.
void BM_ReadAndRenderForSyslog(benchmark::State& state) {
  auto& f = fixture();
  const AuditSource source{"BASTION", "Bench Hospital", "bench-host"};
  int64_t after = 0;
  size_t bytes = 0;
  for (auto _ : state) {
    (void)f.store->readAfter(after, 500, [&](const AuditEntry& e) {
      bytes += syslogMessage(e, source).size();
      after = e.seq;
    });
  }
  state.SetItemsProcessed(state.iterations() * 500);
  state.counters["bytes_per_record"] = static_cast<double>(bytes) / static_cast<double>(state.iterations() * 500);
}
BENCHMARK(BM_ReadAndRenderForSyslog)->Unit(benchmark::kMillisecond);

void BM_VerifyWholeChain(benchmark::State& state) {
  auto& f = fixture();
  for (auto _ : state) {
    auto r = verifyAuditStore(f.path, f.store->keys().sign_public, std::nullopt, 1000, &f.store->keys());
    if (!r.ok() || !r->ok) state.SkipWithError("verification failed");
  }
}
BENCHMARK(BM_VerifyWholeChain)->Unit(benchmark::kSecond)->Iterations(1);

}  // namespace

BENCHMARK_MAIN();
