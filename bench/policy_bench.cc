// Policy::decide() and the scoped index query it feeds, for the principals
// the archive sees: a node, a site-scoped radiologist, a referring physician
// with groups. Run: build/release/bench/policy_bench
#include <benchmark/benchmark.h>

#include "bastion/auth/policy.h"

namespace bastion {
namespace {

const auto kNow = std::chrono::system_clock::time_point(std::chrono::seconds(1800000000));

Principal make(Principal::Kind kind, uint32_t perms, uint32_t scope, std::vector<std::string> groups = {}) {
  Principal p;
  p.kind = kind;
  p.name = "someone";
  p.permissions = perms;
  p.scope_rules = scope;
  p.site = "site-17";
  p.physician_name = "House^Gregory^^";
  p.groups = std::move(groups);
  return p;
}

void decide(benchmark::State& state, const Principal& p, Action a) {
  Policy policy;
  for (auto _ : state) {
    Decision d = policy.decide(p, a, {}, kNow);
    benchmark::DoNotOptimize(d);
  }
}

void BM_DecideNodeStore(benchmark::State& s) {
  decide(s, make(Principal::Kind::kNode, kPermStore | kPermEcho, kScopeSite), Action::kStore);
}
void BM_DecideRadiologistFind(benchmark::State& s) {
  decide(s, make(Principal::Kind::kUser, kPermFind | kPermGet, kScopeSite), Action::kFind);
}
void BM_DecidePhysicianWithGroupsGet(benchmark::State& s) {
  decide(s, make(Principal::Kind::kUser, kPermFind | kPermGet, kScopeReferring, {"cardio", "tumour-board", "icu"}),
         Action::kGet);
}
void BM_DecideDenied(benchmark::State& s) {
  decide(s, make(Principal::Kind::kUser, kPermManageUsers, 0), Action::kFind);
}
BENCHMARK(BM_DecideNodeStore);
BENCHMARK(BM_DecideRadiologistFind);
BENCHMARK(BM_DecidePhysicianWithGroupsGet);
BENCHMARK(BM_DecideDenied);

}  // namespace
}  // namespace bastion

BENCHMARK_MAIN();
