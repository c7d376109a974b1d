// Rotary kernel throughput, per instruction-set path this CPU runs (kernel_path.hpp). Every
// benchmark interleaves, iteration by iteration, the kernel with an in-place streaming read+write
// pass over the same bytes, so the reported ratio `vs_stream` (kernel bandwidth / streaming
// bandwidth) is immune to machine-wide drift. Buffers are 64-byte aligned (and, for the best
// path, once more 16 bytes past a line: the `misaligned16` rows); a decode step (one
// token, ~100 ns) is timed as a batch of kDecodeBatch calls per clock read, and so is its stream
// pass (the Time column is then that of the batch; us_per_call is one call). It also reports
// `vs_scalar`, the speed-up over the plain scalar loop most engines start from (float32 angle = pos
// * inv_freq, cosf/sinf per element). The `threads2` rows split each call over two threads
// (rotate(..., parallel_for) on a spinning two-thread pool) and report `vs_stream` against the
// one-thread stream pass.
//
//   bytes/s    q (and k) bytes read + written per second by the kernel
//   vs_stream  1.0 means the kernel runs at the streaming pass's bandwidth
//   vs_scalar  time of the plain scalar loop / time of the kernel
#include <benchmark/benchmark.h>

#include <Eigen/Core>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "bench_memory.hpp"
#include "ropescale/rotary.hpp"
#include "ropescale/rotary_plan.hpp"

namespace {

using ropescale::FactorTable;
using ropescale::HeadsView;
using ropescale::PairLayout;
using ropescale::RopeSpec;
using Clock = std::chrono::steady_clock;

constexpr int kDecodeBatch = 256;  // decode calls per clock read

// A two-thread pool for the threads2 rows: the calling thread takes the first half of the
// tokens, a spinning worker the second. Spinning keeps the hand-off in the tens of nanoseconds.
class TwoThreadPool {
 public:
  TwoThreadPool() : worker_([this] { loop(); }) {}
  ~TwoThreadPool() {
    stop_.store(true);
    worker_.join();
  }
  ropescale::ParallelFor parallel_for() {
    return [this](std::int64_t n, const std::function<void(std::int64_t, std::int64_t)>& body) {
      const std::int64_t mid = n / 2;
      body_ = &body;
      begin_ = mid;
      end_ = n;
      done_.store(false, std::memory_order_relaxed);
      go_.store(true, std::memory_order_release);
      body(0, mid);
      while (!done_.load(std::memory_order_acquire)) {
      }
    };
  }

 private:
  void loop() {
    while (!stop_.load(std::memory_order_relaxed)) {
      if (!go_.load(std::memory_order_acquire)) continue;
      go_.store(false, std::memory_order_relaxed);
      (*body_)(begin_, end_);
      done_.store(true, std::memory_order_release);
    }
  }
  const std::function<void(std::int64_t, std::int64_t)>* body_ = nullptr;
  std::int64_t begin_ = 0, end_ = 0;
  std::atomic<bool> go_{false}, done_{true}, stop_{false};
  std::thread worker_;
};

struct Shape {
  const char* name;
  std::int64_t tokens, q_heads, k_heads, head_dim;
};

using bench::stream_pass;

// The plain scalar loop: float32 angle, cosf/sinf per element, half-split or interleaved.
template <typename T>
void scalar_rope(T* x, std::int64_t tokens, std::int64_t heads, std::int64_t head_dim,
                 const std::int64_t* pos, const std::vector<float>& inv_freq, float m,
                 bool interleaved) {
  const std::int64_t half = static_cast<std::int64_t>(inv_freq.size());
  for (std::int64_t t = 0; t < tokens; ++t)
    for (std::int64_t h = 0; h < heads; ++h) {
      T* v = x + (t * heads + h) * head_dim;
      for (std::int64_t i = 0; i < half; ++i) {
        const float a = static_cast<float>(pos[t]) * inv_freq[static_cast<std::size_t>(i)];
        const float c = std::cos(a) * m, s = std::sin(a) * m;
        const std::int64_t j0 = interleaved ? 2 * i : i, j1 = interleaved ? 2 * i + 1 : i + half;
        const float x0 = static_cast<float>(v[j0]), x1 = static_cast<float>(v[j1]);
        v[j0] = static_cast<T>(x0 * c - x1 * s);
        v[j1] = static_cast<T>(x1 * c + x0 * s);
      }
    }
}

template <typename S>
void BM_Rotary(benchmark::State& state, Shape shape, PairLayout layout, bool cached,
               ropescale::KernelPath path, int threads, int misalign_bytes, bool planned) {
  if (!ropescale::force_kernel_path(path).ok()) {
    state.SkipWithError("kernel path not supported");
    return;
  }
  RopeSpec spec{shape.head_dim, shape.head_dim, 500000.0, 8192};
  const FactorTable table(Eigen::ArrayXd::LinSpaced(shape.head_dim / 2, 1.0, 16.0), 1.14, "bench");
  const std::int64_t NT = shape.tokens;  // tokens
  // Decode runs at a KV-cache offset; prefill at positions 0..NT-1.
  std::vector<std::int64_t> pos(static_cast<std::size_t>(NT));
  for (std::int64_t t = 0; t < NT; ++t) pos[static_cast<std::size_t>(t)] = NT == 1 ? 100000 : t;
  const std::int64_t max_pos = NT == 1 ? 100001 : NT;
  const ropescale::RotaryCache cache(spec, table, max_pos);
  const ropescale::RotaryFrequencies fly(spec, table);

  const std::size_t nq = static_cast<std::size_t>(NT * shape.q_heads * shape.head_dim);
  const std::size_t nk = static_cast<std::size_t>(NT * shape.k_heads * shape.head_dim);
  // misalign_bytes > 0: q and k start that many bytes past a cache line (an engine's buffers
  // need not be aligned); the stream pass runs over the same bytes.
  const std::size_t skip = static_cast<std::size_t>(misalign_bytes) / sizeof(S);
  bench::AlignedVector<S> q_store(nq + 64), k_store(nk + 64);
  S* q = q_store.data() + skip;
  S* k = k_store.data() + skip;
  std::mt19937 rng(1);
  std::normal_distribution<float> dist;
  for (std::size_t i = 0; i < nq; ++i) q[i] = static_cast<S>(dist(rng));
  for (std::size_t i = 0; i < nk; ++i) k[i] = static_cast<S>(dist(rng));
  auto qv = HeadsView<S>::tokens_heads_dim(q, NT, shape.q_heads, shape.head_dim);
  auto kv = HeadsView<S>::tokens_heads_dim(k, NT, shape.k_heads, shape.head_dim);
  const std::size_t bytes = (nq + nk) * sizeof(S);
  const int batch = NT == 1 ? kDecodeBatch : 1;
  TwoThreadPool* pool = nullptr;
  std::unique_ptr<TwoThreadPool> pool_owner;
  if (threads == 2) {
    pool_owner = std::make_unique<TwoThreadPool>();
    pool = pool_owner.get();
  }
  const ropescale::ParallelFor pf = pool ? pool->parallel_for() : ropescale::ParallelFor();

  // planned: one RotaryShapePlan made here, reused by every call (the decode loop of an engine).
  const HeadsView<S>* k_shape = shape.k_heads > 0 ? &kv : nullptr;
  using CachePlan = ropescale::RotaryShapePlan<S, ropescale::RotaryCache>;
  using FlyPlan = ropescale::RotaryShapePlan<S, ropescale::RotaryFrequencies>;
  const CachePlan cache_plan =
      planned ? CachePlan::make(cache, qv, k_shape, layout).value() : CachePlan();
  const FlyPlan fly_plan = planned ? FlyPlan::make(fly, qv, k_shape, layout).value() : FlyPlan();
  S* k_data = shape.k_heads > 0 ? k : nullptr;

  auto run_kernel = [&] {
    if (planned) {
      const ropescale::Status st = cached ? cache_plan.rotate(q, k_data, NT, pos.data())
                                          : fly_plan.rotate(q, k_data, NT, pos.data());
      benchmark::DoNotOptimize(st);
    } else if (pool) {
      const HeadsView<S>* kp = shape.k_heads > 0 ? &kv : nullptr;
      if (cached)
        ropescale::throw_if_error(ropescale::rotate(cache, pos.data(), qv, kp, layout, pf));
      else
        ropescale::throw_if_error(ropescale::rotate(fly, pos.data(), qv, kp, layout, pf));
    } else if (shape.k_heads > 0) {
      if (cached)
        ropescale::throw_if_error(ropescale::rotate(cache, pos.data(), qv, kv, layout));
      else
        ropescale::throw_if_error(ropescale::rotate(fly, pos.data(), qv, kv, layout));
    } else {
      if (cached)
        ropescale::throw_if_error(ropescale::rotate(cache, pos.data(), qv, layout));
      else
        ropescale::throw_if_error(ropescale::rotate(fly, pos.data(), qv, layout));
    }
  };

  // The plain scalar loop, timed a few times up front (it is slow for big shapes).
  std::vector<float> inv_f(static_cast<std::size_t>(spec.pairs()));
  const Eigen::ArrayXd inv = table.inv_freq(spec).value();
  for (std::int64_t i = 0; i < spec.pairs(); ++i)
    inv_f[static_cast<std::size_t>(i)] = static_cast<float>(inv[i]);
  double scalar_s = 1e30;
  for (int rep = 0; rep < (NT == 1 ? 3 : 1); ++rep) {
    const auto t0 = Clock::now();
    scalar_rope(q, NT, shape.q_heads, shape.head_dim, pos.data(), inv_f, 1.14f,
                layout == PairLayout::kInterleaved);
    if (shape.k_heads > 0)
      scalar_rope(k, NT, shape.k_heads, shape.head_dim, pos.data(), inv_f, 1.14f,
                  layout == PairLayout::kInterleaved);
    scalar_s = std::min(scalar_s, std::chrono::duration<double>(Clock::now() - t0).count());
    benchmark::ClobberMemory();
  }

  std::uint64_t mask = 0;
  benchmark::DoNotOptimize(mask);
  double kernel_s = 0, stream_s = 0;
  for (auto _ : state) {
    const auto t0 = Clock::now();
    for (int b = 0; b < batch; ++b) {
      run_kernel();
      benchmark::ClobberMemory();
    }
    const auto t1 = Clock::now();
    for (int b = 0; b < batch; ++b) {
      stream_pass(q, nq * sizeof(S), mask);
      if (nk) stream_pass(k, nk * sizeof(S), mask);
      benchmark::ClobberMemory();
    }
    const auto t2 = Clock::now();
    const double ks = std::chrono::duration<double>(t1 - t0).count() / batch;
    kernel_s += ks;
    stream_s += std::chrono::duration<double>(t2 - t1).count() / batch;
    state.SetIterationTime(ks * batch);  // an iteration is the whole batch
  }
  const double iters = static_cast<double>(state.iterations());
  state.SetBytesProcessed(static_cast<std::int64_t>(2 * bytes) * batch * state.iterations());
  state.counters["us_per_call"] = kernel_s / iters * 1e6;
  state.counters["vs_stream"] = stream_s / kernel_s;
  state.counters["vs_scalar"] = scalar_s / (kernel_s / iters);
  state.counters["stream_GBps"] = 2.0 * static_cast<double>(bytes) * iters / stream_s / 1e9;
  ropescale::throw_if_error(ropescale::force_kernel_path(ropescale::KernelPath::kAuto));
}

template <typename T>
const char* type_name();
template <>
const char* type_name<float>() {
  return "f32";
}
template <>
const char* type_name<Eigen::bfloat16>() {
  return "bf16";
}
template <>
const char* type_name<Eigen::half>() {
  return "f16";
}

template <typename T>
void register_type(ropescale::KernelPath path, int misalign_bytes) {
  const Shape shapes[] = {
      {"decode_1x32x128", 1, 32, 0, 128},        {"prefill_512x32x128", 512, 32, 0, 128},
      {"prefill_4096x32x128", 4096, 32, 0, 128}, {"prefill_4096_q32_k8_gqa", 4096, 32, 8, 128},
      {"prefill_4096x32x96", 4096, 32, 0, 96},   {"prefill_4096x32x64", 4096, 32, 0, 64},
  };
  for (const Shape& s : shapes)
    for (PairLayout layout : {PairLayout::kHalfSplit, PairLayout::kInterleaved})
      for (bool cached : {true, false}) {
        const std::string name =
            std::string("rotary/") + ropescale::to_string(path) + "/" + type_name<T>() + "/" +
            s.name + "/" + ropescale::to_string(layout) + "/" + (cached ? "cache" : "on_the_fly") +
            (misalign_bytes ? "/misaligned" + std::to_string(misalign_bytes) : "");
        benchmark::RegisterBenchmark(name.c_str(), BM_Rotary<T>, s, layout, cached, path, 1,
                                     misalign_bytes, false)
            ->UseManualTime()
            ->Unit(benchmark::kMicrosecond);
      }
}

// Two threads on the best path: the shapes with enough tokens to split.
template <typename T>
void register_threads2() {
  const ropescale::KernelPath path = ropescale::best_kernel_path();
  const Shape shapes[] = {{"prefill_512x32x128", 512, 32, 0, 128},
                          {"prefill_4096x32x128", 4096, 32, 0, 128},
                          {"prefill_4096_q32_k8_gqa", 4096, 32, 8, 128}};
  for (const Shape& s : shapes)
    for (bool cached : {true, false}) {
      const std::string name = std::string("rotary_threads2/") + ropescale::to_string(path) + "/" +
                               type_name<T>() + "/" + s.name + "/half_split/" +
                               (cached ? "cache" : "on_the_fly");
      benchmark::RegisterBenchmark(name.c_str(), BM_Rotary<T>, s, PairLayout::kHalfSplit, cached,
                                   path, 2, 0, false)
          ->UseManualTime()
          ->Unit(benchmark::kMicrosecond);
    }
}

// A decode step through a RotaryShapePlan against the plain call, same shapes and run (q only,
// and q with GQA keys), on the best path.
template <typename T>
void register_plan() {
  const ropescale::KernelPath path = ropescale::best_kernel_path();
  const Shape shapes[] = {{"decode_1x32x128", 1, 32, 0, 128}, {"decode_1_q32_k8", 1, 32, 8, 128}};
  for (const Shape& s : shapes)
    for (bool planned : {false, true})
      for (bool cached : {true, false}) {
        const std::string name = std::string("rotary_") + (planned ? "plan" : "call") + "/" +
                                 ropescale::to_string(path) + "/" + type_name<T>() + "/" + s.name +
                                 "/half_split/" + (cached ? "cache" : "on_the_fly");
        benchmark::RegisterBenchmark(name.c_str(), BM_Rotary<T>, s, PairLayout::kHalfSplit, cached,
                                     path, 1, 0, planned)
            ->UseManualTime()
            ->Unit(benchmark::kMicrosecond);
      }
}

const bool registered = [] {
  for (ropescale::KernelPath path : ropescale::kAllKernelPaths) {
    if (!ropescale::kernel_path_supported(path)) continue;
    register_type<float>(path, 0);
    register_type<Eigen::bfloat16>(path, 0);
    register_type<Eigen::half>(path, 0);
  }
  // The best path once more on buffers 16 bytes past a cache line.
  register_type<float>(ropescale::best_kernel_path(), 16);
  register_type<Eigen::bfloat16>(ropescale::best_kernel_path(), 16);
  register_type<Eigen::half>(ropescale::best_kernel_path(), 16);
  register_threads2<float>();
  register_threads2<Eigen::bfloat16>();
  register_plan<float>();
  register_plan<Eigen::bfloat16>();
  return true;
}();

}  // namespace

BENCHMARK_MAIN();
