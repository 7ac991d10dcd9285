// Encrypting blob store throughput (AES-256-GCM segments + SHA-256-free path)
// for a 9.5 kB and a 526 kB object, in memory: the crypto cost per instance
// that C-STORE pays before fsync.
#include <benchmark/benchmark.h>

#include "crypto/encrypting_blob_store.h"
#include "storage/memory_blob_store.h"

namespace {
using namespace bastion;

void BM_EncryptAndStore(benchmark::State& state) {
  auto ring = makeKeyring(Key256{9}, Random::system());
  storage::MemoryBlobStore inner(Random::system());
  crypto::EncryptingBlobStore store(inner, *ring, Random::system());
  Bytes data(static_cast<size_t>(state.range(0)), 0x5a);
  for (auto _ : state) {
    auto id = writeBlob(store, data);
    if (!id.ok()) state.SkipWithError("write failed");
    (void)inner.remove(*id);
  }
  state.SetBytesProcessed(state.iterations() * state.range(0));
}
void BM_ReadAndDecrypt(benchmark::State& state) {
  auto ring = makeKeyring(Key256{9}, Random::system());
  storage::MemoryBlobStore inner(Random::system());
  crypto::EncryptingBlobStore store(inner, *ring, Random::system());
  Bytes data(static_cast<size_t>(state.range(0)), 0x5a);
  auto id = writeBlob(store, data);
  for (auto _ : state) {
    auto r = store.open(*id);
    auto back = readAll(**r, 1 << 30);
    benchmark::DoNotOptimize(back);
  }
  state.SetBytesProcessed(state.iterations() * state.range(0));
}
BENCHMARK(BM_EncryptAndStore)->Arg(9500)->Arg(526000);
BENCHMARK(BM_ReadAndDecrypt)->Arg(9500)->Arg(526000);

}  // namespace

BENCHMARK_MAIN();
