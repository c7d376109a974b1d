// Mixed-window helpers: KV cache key re-rotation against a plain streaming read+write pass over
// the same bytes (the memory-bound floor of any in-place pass), and the cost of packing.
//
//   ./build/benchmarks/bench_training --benchmark_min_time=0.2
//
// BM_RerotateKeys reports `vs_stream`: its time per pass divided by the best streaming pass over
// the same buffer measured in the same process, so the ratio does not depend on the machine.
#include <benchmark/benchmark.h>

#include <Eigen/Core>
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <random>
#include <vector>

#include "ropescale/training.hpp"

namespace {

// Phi-4-mini's shape: head_dim 128, rotary_dim 96, 8 key/value heads, theta 10000, original 4096;
// a LongRoPE-like long table (factors 1 .. 48 growing, attention factor sqrt(17/12)).
constexpr std::int64_t kHeads = 8;

ropescale::RopeSpec phi4_spec() {
  ropescale::RopeSpec s;
  s.head_dim = 128;
  s.rotary_dim = 96;
  s.rope_theta = 10000.0;
  s.original_max_position = 4096;
  return s;
}

ropescale::FactorTable long_table(const ropescale::RopeSpec& spec) {
  Eigen::ArrayXd f(spec.pairs());
  for (Eigen::Index i = 0; i < f.size(); ++i) {
    const double x = static_cast<double>(i) / static_cast<double>(f.size() - 1);
    f[i] = 1.0 + 47.0 * x * x;
  }
  return ropescale::FactorTable(f, std::sqrt(17.0 / 12.0), "longrope");
}

template <typename T>
std::vector<T> make_keys(std::int64_t tokens) {
  std::vector<T> k(static_cast<std::size_t>(tokens * kHeads * 128));
  std::mt19937 rng(1);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  for (auto& v : k) v = static_cast<T>(u(rng));
  return k;
}

// One streaming pass over the bytes of x: every byte read, flipped and written back (two passes
// restore the data). Byte-wise, so it vectorizes to full width whatever T is.
template <typename T>
void stream_pass(std::vector<T>& x) {
  unsigned char* p = reinterpret_cast<unsigned char*>(x.data());
  const std::size_t n = x.size() * sizeof(T);
  for (std::size_t i = 0; i < n; ++i) p[i] = static_cast<unsigned char>(p[i] ^ 0x80u);
  benchmark::DoNotOptimize(p);
  benchmark::ClobberMemory();
}

template <typename T>
double best_stream_seconds(std::vector<T>& x) {
  double best = 1e30;
  for (int r = 0; r < 8; ++r) {  // even: leaves the data as it was
    const auto t0 = std::chrono::steady_clock::now();
    stream_pass(x);
    const auto t1 = std::chrono::steady_clock::now();
    best = std::min(best, std::chrono::duration<double>(t1 - t0).count());
  }
  return best;
}

template <typename T>
void BM_StreamReadWrite(benchmark::State& state) {
  const std::int64_t tokens = state.range(0);
  auto x = make_keys<T>(tokens);
  for (auto _ : state) stream_pass(x);
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations()) * 2 *
                          static_cast<std::int64_t>(x.size() * sizeof(T)));
}

template <typename T>
void BM_RerotateKeys(benchmark::State& state) {
  const std::int64_t tokens = state.range(0);
  const ropescale::RopeSpec spec = phi4_spec();
  // Short and long tables share the attention factor (as Phi-4-mini's do), so repeated passes
  // keep the keys' scale.
  const ropescale::FactorTable short_table(Eigen::ArrayXd::Ones(spec.pairs()),
                                           std::sqrt(17.0 / 12.0), "longrope");
  const ropescale::KeyRerotation to_long(spec, short_table, long_table(spec));
  auto keys = make_keys<T>(tokens);
  std::vector<std::int64_t> pos(static_cast<std::size_t>(tokens));
  for (std::int64_t t = 0; t < tokens; ++t) pos[static_cast<std::size_t>(t)] = t;
  const auto view = ropescale::HeadsView<T>::tokens_heads_dim(keys.data(), tokens, kHeads, 128);
  const double stream = best_stream_seconds(keys);
  double total = 0;
  for (auto _ : state) {
    const auto t0 = std::chrono::steady_clock::now();
    ropescale::throw_if_error(to_long.apply(pos.data(), view, ropescale::PairLayout::kHalfSplit));
    benchmark::ClobberMemory();
    const auto t1 = std::chrono::steady_clock::now();
    total += std::chrono::duration<double>(t1 - t0).count();
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations()) * 2 *
                          static_cast<std::int64_t>(keys.size() * sizeof(T)));
  state.counters["vs_stream"] = total / static_cast<double>(state.iterations()) / stream;
  state.counters["tokens/s"] =
      benchmark::Counter(static_cast<double>(tokens) * static_cast<double>(state.iterations()),
                         benchmark::Counter::kIsRate);
}

// Packing a corpus at LongRoPE2 scale: segments of 131072, original 4096, two thirds short
// documents (64 .. 4096 tokens) and one third long ones (8k .. 200k).
void BM_PackDocuments(benchmark::State& state) {
  const std::int64_t n = state.range(0);
  std::mt19937_64 rng(7);
  std::vector<std::int64_t> lengths(static_cast<std::size_t>(n));
  for (std::int64_t i = 0; i < n; ++i)
    lengths[static_cast<std::size_t>(i)] = i % 3 == 0
                                               ? 8192 + static_cast<std::int64_t>(rng() % 192000)
                                               : 64 + static_cast<std::int64_t>(rng() % 4033);
  ropescale::PackOptions opt;
  opt.segment_length = 131072;
  opt.original_max_position = 4096;
  std::size_t segments = 0;
  for (auto _ : state) {
    const ropescale::PackingPlan plan = ropescale::pack_documents(lengths, opt).value();
    segments = plan.segments.size();
    benchmark::DoNotOptimize(plan.segments.data());
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()) * n);
  state.counters["segments"] = static_cast<double>(segments);
}

// Materializing one long segment's position ids and cu_seqlens-based dense mask for a small one.
void BM_SegmentPositionIds(benchmark::State& state) {
  ropescale::PackOptions opt;
  opt.segment_length = 131072;
  opt.original_max_position = 4096;
  std::vector<std::int64_t> lengths(64, 4000);
  const ropescale::PackingPlan plan = ropescale::pack_documents(lengths, opt).value();
  for (auto _ : state) {
    auto pos = plan.segments[0].position_ids().value();
    benchmark::DoNotOptimize(pos.data());
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()) * plan.segments[0].length);
}

}  // namespace

BENCHMARK(BM_StreamReadWrite<float>)->Arg(4096)->Arg(16384);
BENCHMARK(BM_RerotateKeys<float>)->Arg(4096)->Arg(16384);
BENCHMARK(BM_StreamReadWrite<Eigen::bfloat16>)->Arg(16384);
BENCHMARK(BM_RerotateKeys<Eigen::bfloat16>)->Arg(16384);
BENCHMARK(BM_RerotateKeys<Eigen::half>)->Arg(16384);
BENCHMARK(BM_RerotateKeys<double>)->Arg(4096);
BENCHMARK(BM_PackDocuments)->Arg(1000)->Arg(100000);
BENCHMARK(BM_SegmentPositionIds);

BENCHMARK_MAIN();
