// Benchmarks for critical.hpp: the per-pair analysis, the side-by-side of every closed-form
// method, and LongRoPE2 critical-pair detection (quadratic in the number of pairs).
//   ./build/benchmarks/bench_critical --benchmark_min_time=0.2
#include <benchmark/benchmark.h>

#include <cstdint>

#include "ropescale/critical.hpp"
#include "ropescale/scaling.hpp"

namespace {

ropescale::RopeSpec llama3_spec(std::int64_t rotary_dim) {
  ropescale::RopeSpec s;
  s.head_dim = rotary_dim;
  s.rotary_dim = rotary_dim;
  s.rope_theta = 500000.0;
  s.original_max_position = 8192;
  return s;
}

void BM_AnalyzeCritical(benchmark::State& state) {
  const auto spec = llama3_spec(state.range(0));
  for (auto _ : state) {
    auto a = ropescale::analyze_critical(spec, 131072).value();
    benchmark::DoNotOptimize(a.period.data());
  }
}
BENCHMARK(BM_AnalyzeCritical)->Arg(128)->Arg(256);

void BM_CompareMethods(benchmark::State& state) {
  const auto spec = llama3_spec(state.range(0));
  for (auto _ : state) {
    auto c = ropescale::compare_methods(spec, 131072).value();
    benchmark::DoNotOptimize(c.methods.data());
  }
}
BENCHMARK(BM_CompareMethods)->Arg(128)->Arg(256);

void BM_DetectCriticalPair(benchmark::State& state) {
  // A LongRoPE2-shaped table anchored at pair c = pairs/2 (the search loop starts at the top).
  const auto spec = llama3_spec(state.range(0));
  const std::int64_t c = spec.pairs() / 2;
  Eigen::ArrayXd searched = Eigen::ArrayXd::LinSpaced(spec.pairs() - c, 20.0, 26.0);
  searched[1] = 19.0;
  const auto table = ropescale::longrope2_factors(spec, c, searched).value();
  for (auto _ : state) {
    auto found = ropescale::detect_longrope2(table.factors()).value();
    benchmark::DoNotOptimize(found);
  }
}
BENCHMARK(BM_DetectCriticalPair)->Arg(128)->Arg(256);

}  // namespace

BENCHMARK_MAIN();
