// Forward-pass throughput of the bundled stories260K model (examples/llama2c/llama2c.hpp) and
// the share of its time spent in ropescale's rotary step.
//
//   ./bench_model --benchmark_min_time=1
//
// BM_Forward/<tokens>/<source>: one whole-sequence forward pass (5 layers, causal attention,
// classifier) over <tokens> tokens; source 0 = RotaryCache (cos/sin table built once, as an
// engine would), 1 = RotaryFrequencies (cos/sin computed per token on the fly). Counters:
// items_per_second = tokens/s, rotary_share = time inside apply_rotary_qk / forward time,
// attention_share = scores + softmax + weighted sum (rotary excluded) / forward time.
// BM_RotaryStep/<tokens>: the rotary step alone on [tokens, 8 heads, 8] queries and
// [tokens, 4 heads, 8] keys, the shapes of one layer.
#include <benchmark/benchmark.h>

#include <string>
#include <vector>

#include "llama2c.hpp"
#include "ropescale/scaling.hpp"

namespace {

const llama2c::Model& model() {
  static const llama2c::Model m =
      llama2c::Model::load(std::string(ROPESCALE_EXAMPLES_DATA_DIR) + "/stories260K.bin");
  return m;
}

std::vector<int> some_tokens(std::int64_t n) {
  std::vector<int> t(static_cast<std::size_t>(n));
  t[0] = llama2c::kBos;
  for (std::int64_t i = 1; i < n; ++i) t[static_cast<std::size_t>(i)] = 259 + (i * 37) % 253;
  return t;
}

template <typename Angles>
void run_forward(benchmark::State& state, const Angles& angles, const std::vector<int>& tokens) {
  llama2c::Model::Timing timing;
  for (auto _ : state) {
    Eigen::MatrixXf logits = model().forward(tokens, angles, &timing);
    benchmark::DoNotOptimize(logits.data());
  }
  state.SetItemsProcessed(state.iterations() * static_cast<std::int64_t>(tokens.size()));
  state.counters["rotary_share"] = timing.rotary / timing.total;
  state.counters["attention_share"] = timing.attention / timing.total;
}

void BM_Forward(benchmark::State& state) {
  const std::int64_t n = state.range(0);
  const std::vector<int> tokens = some_tokens(n);
  // YaRN for s = 8: a realistic non-identity table (the kernel cost does not depend on it).
  ropescale::YarnParams yarn;
  yarn.factor = 8.0;
  const ropescale::FactorTable table = ropescale::yarn_factors(model().rope_spec(), yarn).value();
  if (state.range(1) == 0) {
    const ropescale::RotaryCache cache(model().rope_spec(), table, n);
    run_forward(state, cache, tokens);
  } else {
    const ropescale::RotaryFrequencies freqs(model().rope_spec(), table);
    run_forward(state, freqs, tokens);
  }
}
BENCHMARK(BM_Forward)
    ->ArgNames({"tokens", "on_the_fly"})
    ->Args({512, 0})
    ->Args({2048, 0})
    ->Args({4096, 0})
    ->Args({4096, 1})
    ->Unit(benchmark::kMillisecond);

void BM_RotaryStep(benchmark::State& state) {
  const std::int64_t n = state.range(0);
  const ropescale::RopeSpec spec = model().rope_spec();
  const ropescale::RotaryCache cache(spec, ropescale::FactorTable::identity(spec), n);
  std::vector<float> q(static_cast<std::size_t>(n * 64), 0.5f),
      k(static_cast<std::size_t>(n * 32), 0.25f);
  std::vector<std::int64_t> pos(static_cast<std::size_t>(n));
  for (std::int64_t i = 0; i < n; ++i) pos[static_cast<std::size_t>(i)] = i;
  for (auto _ : state) {
    ropescale::throw_if_error(ropescale::rotate(
        cache, pos.data(), ropescale::HeadsView<float>::tokens_heads_dim(q.data(), n, 8, 8),
        ropescale::HeadsView<float>::tokens_heads_dim(k.data(), n, 4, 8),
        ropescale::PairLayout::kInterleaved));
    benchmark::DoNotOptimize(q.data());
    benchmark::DoNotOptimize(k.data());
  }
  state.SetItemsProcessed(state.iterations() * n);
}
BENCHMARK(BM_RotaryStep)->Arg(512)->Arg(4096)->Unit(benchmark::kMicrosecond);

}  // namespace

BENCHMARK_MAIN();
