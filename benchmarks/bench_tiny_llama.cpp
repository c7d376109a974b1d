// Training and evaluation throughput of the tiny Llama (examples/tiny_llama), the model the
// LongRoPE2 study trains and extends.
//
//   ./bench_tiny_llama --benchmark_min_time=2
//
// BM_TrainStep/<threads>: forward + backward of a batch of 16 rows x 256 tokens (the training
// window) and one AdamW update; items_per_second = trained tokens/s.
// BM_Forward/<tokens>: one forward pass (log-probabilities of every position), the unit of the
// study's evaluations; items_per_second = tokens/s.
#include <benchmark/benchmark.h>

#include <random>
#include <vector>

#include "ropescale/factors.hpp"
#include "tiny_llama.hpp"

namespace {

tiny_llama::Sequence random_row(std::mt19937_64& rng, std::int64_t n) {
  tiny_llama::Sequence s;
  for (std::int64_t t = 0; t < n; ++t) {
    s.tokens.push_back(static_cast<int>(rng() % 256));
    s.targets.push_back(static_cast<int>(rng() % 256));
    s.loss_weight.push_back(1.0f);
  }
  return s;
}

void BM_TrainStep(benchmark::State& state) {
  const tiny_llama::Config c;
  tiny_llama::Weights w = tiny_llama::Weights::initialized(c, 1);
  const ropescale::RotaryCache cache(c.rope_spec(), ropescale::FactorTable::identity(c.rope_spec()),
                                     c.max_position_embeddings);
  std::mt19937_64 rng(2);
  std::vector<tiny_llama::Sequence> batch;
  for (int i = 0; i < 16; ++i) batch.push_back(random_row(rng, c.max_position_embeddings));
  tiny_llama::AdamW opt(w, {});
  tiny_llama::Weights grad(c);
  for (auto _ : state) {
    tiny_llama::batch_gradient(w, {&cache}, batch, static_cast<int>(state.range(0)), grad);
    opt.step(w, grad, 1e-4);
  }
  state.SetItemsProcessed(state.iterations() * 16 * c.max_position_embeddings);
}
BENCHMARK(BM_TrainStep)->Arg(1)->Arg(2)->Unit(benchmark::kMillisecond)->UseRealTime();

void BM_Forward(benchmark::State& state) {
  const tiny_llama::Config c;
  const tiny_llama::Weights w = tiny_llama::Weights::initialized(c, 1);
  const std::int64_t n = state.range(0);
  const ropescale::RotaryCache cache(c.rope_spec(), ropescale::FactorTable::identity(c.rope_spec()),
                                     n);
  std::mt19937_64 rng(3);
  const tiny_llama::Sequence row = random_row(rng, n);
  for (auto _ : state) benchmark::DoNotOptimize(tiny_llama::forward(w, {&cache}, row));
  state.SetItemsProcessed(state.iterations() * n);
}
BENCHMARK(BM_Forward)->Arg(256)->Arg(1024)->Arg(2048)->Unit(benchmark::kMillisecond);

}  // namespace

BENCHMARK_MAIN();
