// Overhead of the factor search, excluding the fitness: generating, deduplicating and building
// the candidate tables of one iteration at rotary_dim 128 (LLaMA3-8B, 8k -> 128k). Every real
// fitness is a model evaluation (seconds); this must stay far below a millisecond.
// Also: the checkpoint write after an iteration, and scoring the answer tokens of one needle
// document from a Llama-3-sized vocabulary.
#include <benchmark/benchmark.h>

#include <Eigen/Core>
#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include "ropescale/io/search_checkpoint.hpp"
#include "ropescale/needle.hpp"
#include "ropescale/search.hpp"

namespace {

ropescale::SearchSpace bench_space(int variant) {
  const ropescale::RopeSpec spec{128, 128, 500000.0, 8192};
  if (variant == 2) return ropescale::SearchSpace::longrope(spec, 131072).value();
  ropescale::SearchSpace sp = ropescale::SearchSpace::longrope2(spec, 131072).value();
  if (variant == 1) sp.monotonicity = ropescale::Monotonicity::kStrictlyIncreasing;
  return sp;
}

// A negligible fitness with a real landscape, so that selection has something to do.
double cheap_fitness(const ropescale::FactorTable& t) {
  const Eigen::ArrayXd& f = t.factors();
  double s = 0.0;
  for (Eigen::Index i = 0; i < f.size(); ++i) s += std::abs(f[i] - (20.0 + 0.1 * i));
  return s;
}

// Whole searches of 40 iterations; the counter reports the time per iteration (P0 counted as
// one more iteration of 64 candidates).
void BM_SearchIterationOverhead(benchmark::State& state) {
  const ropescale::SearchSpace sp = bench_space(static_cast<int>(state.range(0)));
  ropescale::SearchParams p;
  std::uint64_t seed = 0;
  std::int64_t iterations = 0;
  for (auto _ : state) {
    p.seed = ++seed;
    ropescale::EvolutionSearch search(sp, p);
    const ropescale::SearchResult r = search.run(cheap_fitness).value();
    benchmark::DoNotOptimize(r.best_loss);
    iterations += r.iterations + 1;
  }
  state.counters["time_per_iteration"] = benchmark::Counter(
      static_cast<double>(iterations), benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
  state.SetLabel(state.range(0) == 0   ? "longrope2 non-decreasing"
                 : state.range(0) == 1 ? "longrope2 strict"
                                       : "longrope v1 (64 genes)");
}
BENCHMARK(BM_SearchIterationOverhead)->Arg(0)->Arg(1)->Arg(2)->Unit(benchmark::kMillisecond);

// Writing the checkpoint of a finished 40-iteration search (1344 evaluations), fsync included.
void BM_CheckpointWrite(benchmark::State& state) {
  ropescale::EvolutionSearch search(bench_space(0), ropescale::SearchParams{});
  const ropescale::SearchResult r = search.run(cheap_fitness).value();
  const std::string path = "bench_search_checkpoint.json";
  for (auto _ : state) ropescale::throw_if_error(ropescale::save_search_checkpoint(path, r.state));
  state.counters["evaluations"] = static_cast<double>(r.evaluations);
  std::remove(path.c_str());
}
BENCHMARK(BM_CheckpointWrite)->Unit(benchmark::kMillisecond);

// Answer NLL of one needle document: 8 answer rows over a 128256-token vocabulary (Llama 3).
void BM_AnswerNll(benchmark::State& state) {
  const Eigen::Index vocab = 128256;
  std::vector<ropescale::TokenId> tokens(64, 5);
  std::vector<std::uint8_t> mask(64, 0);
  for (int p = 56; p < 64; ++p) mask[static_cast<std::size_t>(p)] = 1;
  using RowMajorF = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
  const RowMajorF logits = RowMajorF::Random(8, vocab) * 10.0f;
  for (auto _ : state)
    benchmark::DoNotOptimize(ropescale::mean_nll(logits, tokens, mask, /*first_row=*/55).value());
  state.SetItemsProcessed(state.iterations() * 8 * vocab);
}
BENCHMARK(BM_AnswerNll)->Unit(benchmark::kMicrosecond);

}  // namespace

BENCHMARK_MAIN();
