// Fused rotate + paged KV-cache append (kv_cache.hpp) against the unfused pair engines run today:
// rotate_out on K into a temporary, then a copy of K and V into the pages (for an int8
// cache: rotate, then a separate quantize pass over K and V). Every iteration times, one after
// the other, a batch of fused calls, a batch of unfused calls and a batch of in-place streaming
// passes over the new K and V bytes, so the ratios below are immune to machine-wide drift.
// Each timed batch holds 64 decode calls (4 prefill calls), so clock reads do not count (the Time
// column is that of a batch; fused_us and unfused_us are per call). The
// `misaligned16` rows put the new K and V 16 bytes past a cache line (an engine's buffers need
// not be aligned).
//
// The `kv_append_plan` rows append through a KVAppendPlan made once (decode, head-major pages).
//
//   fused_us      time of one fused call
//   unfused_us    time of one rotate-then-copy (or rotate-then-quantize) call
//   fused/unfused ratio of the two (below 1: the fused pass is faster)
//   vs_stream     streaming pass time / fused time (1.0: the fused call runs at the bandwidth of
//                 reading and writing the new K and V bytes once, in place)
//   vs_copy       copy time / fused time, float and 16-bit pages: the copy floor copies each new
//                 K and V row into its page row (the same bytes and order as the fused call,
//                 written to other lines than it reads, as the fused call must)
#include <benchmark/benchmark.h>

#include <Eigen/Core>
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <new>
#include <random>
#include <string>
#include <type_traits>
#include <vector>

#include "bench_memory.hpp"
#include "ropescale/kv_cache.hpp"

namespace {

using ropescale::FactorTable;
using ropescale::HeadsView;
using ropescale::PagedKVCache;
using ropescale::PageLayout;
using ropescale::PairLayout;
using ropescale::RopeSpec;
using Clock = std::chrono::steady_clock;

constexpr std::int64_t kHeads = 8, kDim = 128, kBlockSize = 16, kNumBlocks = 256;

template <typename T>
using Buffer = bench::AlignedVector<T>;
using bench::stream_pass;

struct Phase {
  const char* name;
  std::int64_t tokens;  // decode: one token for each of `tokens` sequences
  bool decode;
};

// One angle table for every benchmark (positions up to 100000 + the largest phase): built once
// per process, not once per run of a benchmark function.
const ropescale::RotaryCache& shared_angles() {
  static const ropescale::RotaryCache angles = [] {
    const RopeSpec spec{kDim, kDim, 500000.0, 8192};
    const FactorTable table(Eigen::ArrayXd::LinSpaced(kDim / 2, 1.0, 16.0), 1.14, "bench");
    return ropescale::RotaryCache(spec, table, 100000 + 512);
  }();
  return angles;
}

// T: the new K/V type; S: the cache storage (T, int8_t or Fp8E4M3).
template <typename T, typename S>
void BM_KvAppend(benchmark::State& state, Phase phase, PageLayout page_layout, int misalign_bytes,
                 bool planned) {
  constexpr bool kFp8 = std::is_same<S, ropescale::Fp8E4M3>::value;
  constexpr bool kQuantized = std::is_same<S, std::int8_t>::value || kFp8;
  const std::int64_t NT = phase.tokens;
  const ropescale::RotaryCache& angles = shared_angles();

  // Decode: sequence s at length 100000 + s, each owning 8 scattered blocks; its new token goes
  // to its last block. Prefill: one sequence at positions 0..NT-1 over scattered blocks.
  std::mt19937 rng(1);
  std::vector<std::int64_t> blocks(static_cast<std::size_t>(kNumBlocks));
  for (std::int64_t b = 0; b < kNumBlocks; ++b) blocks[static_cast<std::size_t>(b)] = b;
  std::shuffle(blocks.begin(), blocks.end(), rng);
  std::vector<std::int64_t> pos(static_cast<std::size_t>(NT)), slots(pos.size());
  for (std::int64_t t = 0; t < NT; ++t) {
    const std::size_t i = static_cast<std::size_t>(t);
    pos[i] = phase.decode ? 100000 + t : t;
    slots[i] = phase.decode ? blocks[i * 8 + 7] * kBlockSize + pos[i] % kBlockSize
                            : blocks[i / kBlockSize] * kBlockSize + t % kBlockSize;
  }

  const std::size_t n_in = static_cast<std::size_t>(NT * kHeads * kDim);
  // misalign_bytes > 0: the new K and V start that many bytes past a cache line.
  const std::size_t skip = static_cast<std::size_t>(misalign_bytes) / sizeof(T);
  Buffer<T> k_store(n_in + 64), v_store(n_in + 64), tmp(n_in);
  T* k = k_store.data() + skip;
  T* v = v_store.data() + skip;
  std::normal_distribution<float> dist;
  for (std::size_t i = 0; i < n_in; ++i) k[i] = static_cast<T>(dist(rng));
  for (std::size_t i = 0; i < n_in; ++i) v[i] = static_cast<T>(dist(rng));
  const std::size_t rows = static_cast<std::size_t>(kNumBlocks * kBlockSize * kHeads);
  Buffer<S> k_pages(rows * kDim), v_pages(rows * kDim);
  Buffer<float> k_scales(kQuantized ? rows : 0), v_scales(kQuantized ? rows : 0);
  PagedKVCache<S> cache;
  cache.k_pages = k_pages.data();
  cache.v_pages = v_pages.data();
  cache.k_scales = kQuantized ? k_scales.data() : nullptr;
  cache.v_scales = kQuantized ? v_scales.data() : nullptr;
  cache.num_blocks = kNumBlocks;
  cache.block_size = kBlockSize;
  cache.num_kv_heads = kHeads;
  cache.head_dim = kDim;
  cache.page_layout = page_layout;

  const auto kview = HeadsView<const T>::tokens_heads_dim(k, NT, kHeads, kDim);
  const auto vview = HeadsView<const T>::tokens_heads_dim(v, NT, kHeads, kDim);
  // The unfused pass quantizes with the same kernel the fused call uses.
  const auto& kernels = ropescale::detail::kernel_table<T>(ropescale::active_kernel_path());
  const auto quantize = [&](const T* x, S* codes) {
    if constexpr (kFp8)
      return kernels.quantize_fp8_kernel(kDim)(x, kDim, reinterpret_cast<std::uint8_t*>(codes));
    else if constexpr (kQuantized)
      return kernels.quantize_int8_kernel(kDim)(x, kDim, codes);
    else
      return 0.0f * static_cast<float>(sizeof(*x) + sizeof(*codes));
  };
  const auto tview = HeadsView<T>::tokens_heads_dim(tmp.data(), NT, kHeads, kDim);
  const PairLayout layout = PairLayout::kHalfSplit;

  // planned: the shapes checked once (KVAppendPlan), then one append per call.
  const auto plan = ropescale::KVAppendPlan<T, S, ropescale::RotaryCache>::make(
                        angles, kview, vview, cache, layout)
                        .value();
  auto fused = [&] {
    if (planned)
      ropescale::throw_if_error(plan.append(k, v, NT, pos.data(), slots.data()));
    else
      ropescale::throw_if_error(ropescale::rotate_and_append_kv(angles, pos.data(), kview, vview,
                                                                slots.data(), cache, layout));
  };
  auto unfused = [&] {
    ropescale::throw_if_error(ropescale::rotate_out(angles, pos.data(), kview, tview, layout));
    for (std::int64_t t = 0; t < NT; ++t)
      for (std::int64_t h = 0; h < kHeads; ++h) {
        const std::int64_t r = cache.row(slots[static_cast<std::size_t>(t)], h);
        const std::int64_t src = (t * kHeads + h) * kDim;
        if constexpr (kQuantized) {
          k_scales[static_cast<std::size_t>(r)] =
              quantize(tmp.data() + src, &k_pages[0] + r * kDim);
          v_scales[static_cast<std::size_t>(r)] = quantize(v + src, &v_pages[0] + r * kDim);
        } else {
          std::memcpy(static_cast<void*>(&k_pages[0] + r * kDim),
                      static_cast<const void*>(tmp.data() + src), sizeof(T) * kDim);
          std::memcpy(static_cast<void*>(&v_pages[0] + r * kDim), static_cast<const void*>(v + src),
                      sizeof(T) * kDim);
        }
      }
  };

  // The copy floor (float and 16-bit pages): each new K and V row copied as it is into its page
  // row, the bytes the fused call must read and write, in its order; unlike the in-place stream,
  // the page lines are written without having been read (write-allocate).
  auto copy = [&] {
    for (std::int64_t t = 0; t < NT; ++t)
      for (std::int64_t h = 0; h < kHeads; ++h) {
        const std::int64_t r = cache.row(slots[static_cast<std::size_t>(t)], h);
        const std::int64_t src = (t * kHeads + h) * kDim;
        std::memcpy(static_cast<void*>(&k_pages[0] + r * kDim), static_cast<const void*>(k + src),
                    sizeof(S) * kDim);
        std::memcpy(static_cast<void*>(&v_pages[0] + r * kDim), static_cast<const void*>(v + src),
                    sizeof(S) * kDim);
      }
  };

  const int batch = phase.decode ? 64 : 4;
  std::uint64_t mask = 0;
  benchmark::DoNotOptimize(mask);
  double fused_s = 0, unfused_s = 0, stream_s = 0, copy_s = 0;
  for (auto _ : state) {
    const auto t0 = Clock::now();
    for (int i = 0; i < batch; ++i) fused();
    benchmark::ClobberMemory();
    const auto t1 = Clock::now();
    for (int i = 0; i < batch; ++i) unfused();
    benchmark::ClobberMemory();
    const auto t2 = Clock::now();
    for (int i = 0; i < batch; ++i) {
      stream_pass(k, n_in * sizeof(T), mask);
      stream_pass(v, n_in * sizeof(T), mask);
    }
    benchmark::ClobberMemory();
    const auto t3 = Clock::now();
    if constexpr (!kQuantized)
      for (int i = 0; i < batch; ++i) copy();
    benchmark::ClobberMemory();
    copy_s += std::chrono::duration<double>(Clock::now() - t3).count();
    const double fs = std::chrono::duration<double>(t1 - t0).count();
    fused_s += fs;
    unfused_s += std::chrono::duration<double>(t2 - t1).count();
    stream_s += std::chrono::duration<double>(t3 - t2).count();
    state.SetIterationTime(fs);  // the batch: the Time column is per batch, fused_us per call
  }
  const double calls = static_cast<double>(state.iterations()) * batch;
  state.counters["fused_us"] = fused_s / calls * 1e6;
  state.counters["unfused_us"] = unfused_s / calls * 1e6;
  state.counters["fused/unfused"] = fused_s / unfused_s;
  state.counters["vs_stream"] = stream_s / fused_s;
  if (!kQuantized) state.counters["vs_copy"] = copy_s / fused_s;
}

template <typename T, typename S>
void register_case(const char* type) {
  const Phase phases[] = {
      {"decode_1seq", 1, true}, {"decode_32seq", 32, true}, {"prefill_512", 512, false}};
  for (const Phase& p : phases)
    for (PageLayout pl : {PageLayout::kHeadMajor, PageLayout::kTokenMajor})
      for (int misalign : {0, 16}) {
        const std::string name = std::string("kv_append/") + type + "/" + p.name + "/" +
                                 ropescale::to_string(pl) +
                                 (misalign ? "/misaligned" + std::to_string(misalign) : "");
        benchmark::RegisterBenchmark(name.c_str(), BM_KvAppend<T, S>, p, pl, misalign, false)
            ->UseManualTime()
            ->Unit(benchmark::kMicrosecond);
      }
  // Decode through a KVAppendPlan (the fixed checks run once), head-major pages.
  for (const Phase& p : phases) {
    if (!p.decode) continue;
    const std::string name = std::string("kv_append_plan/") + type + "/" + p.name + "/" +
                             ropescale::to_string(PageLayout::kHeadMajor);
    benchmark::RegisterBenchmark(name.c_str(), BM_KvAppend<T, S>, p, PageLayout::kHeadMajor, 0,
                                 true)
        ->UseManualTime()
        ->Unit(benchmark::kMicrosecond);
  }
}

const bool registered = [] {
  register_case<float, float>("f32");
  register_case<Eigen::bfloat16, Eigen::bfloat16>("bf16");
  register_case<Eigen::bfloat16, std::int8_t>("int8_from_bf16");
  register_case<Eigen::bfloat16, ropescale::Fp8E4M3>("fp8_from_bf16");
  return true;
}();

}  // namespace

BENCHMARK_MAIN();
