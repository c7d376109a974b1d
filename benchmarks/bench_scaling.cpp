// Cost of building factor tables (host-side, once per model or per sequence-length change) and of
// reading a config.json. Expect microseconds: none of this is on the per-token path.
#include <benchmark/benchmark.h>

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "ropescale/io/hf_config.hpp"
#include "ropescale/scaling.hpp"

namespace {

ropescale::RopeSpec llama3_spec() {
  ropescale::RopeSpec s;
  s.head_dim = 128;
  s.rotary_dim = 128;
  s.rope_theta = 500000.0;
  s.original_max_position = 8192;
  return s;
}

void BM_Ntk(benchmark::State& state) {
  const auto spec = llama3_spec();
  for (auto _ : state) benchmark::DoNotOptimize(ropescale::ntk_factors(spec, 16.0).value());
}
BENCHMARK(BM_Ntk);

void BM_Yarn(benchmark::State& state) {
  const auto spec = llama3_spec();
  ropescale::YarnParams p;
  p.factor = 16;
  for (auto _ : state) benchmark::DoNotOptimize(ropescale::yarn_factors(spec, p).value());
}
BENCHMARK(BM_Yarn);

void BM_Llama3(benchmark::State& state) {
  const auto spec = llama3_spec();
  for (auto _ : state) benchmark::DoNotOptimize(ropescale::llama3_factors(spec, {}).value());
}
BENCHMARK(BM_Llama3);

void BM_LongRope2Build(benchmark::State& state) {
  const auto spec = llama3_spec();
  const Eigen::ArrayXd searched = Eigen::ArrayXd::LinSpaced(31, 21.81, 26.05);
  for (auto _ : state)
    benchmark::DoNotOptimize(ropescale::longrope2_factors(spec, 33, searched).value());
}
BENCHMARK(BM_LongRope2Build);

void BM_LongRope2Detect(benchmark::State& state) {
  const auto spec = llama3_spec();
  const Eigen::ArrayXd searched = Eigen::ArrayXd::LinSpaced(31, 21.81, 26.05);
  const auto table = ropescale::longrope2_factors(spec, 33, searched).value();
  for (auto _ : state)
    benchmark::DoNotOptimize(ropescale::detect_longrope2(table.factors()).value());
}
BENCHMARK(BM_LongRope2Detect);

// A Phi-3-style longrope config (48 + 48 factors) from text to table.
void BM_ParseLongRopeConfig(benchmark::State& state) {
  nlohmann::json j = {{"hidden_size", 3072},
                      {"num_attention_heads", 32},
                      {"rope_theta", 10000.0},
                      {"max_position_embeddings", 131072},
                      {"original_max_position_embeddings", 4096}};
  const Eigen::ArrayXd f = Eigen::ArrayXd::LinSpaced(48, 1.0, 64.0);
  std::vector<double> list(f.data(), f.data() + f.size());
  j["rope_scaling"] = {{"type", "longrope"}, {"short_factor", list}, {"long_factor", list}};
  const std::string text = j.dump();
  for (auto _ : state) {
    const auto cfg = ropescale::parse_hf_config(text).value();
    benchmark::DoNotOptimize(cfg.table_for(5000).value());
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations()) *
                          static_cast<std::int64_t>(text.size()));
}
BENCHMARK(BM_ParseLongRopeConfig);

}  // namespace

BENCHMARK_MAIN();
