// The instruction-set paths of the rotary kernels (kernel_path.hpp): every path this CPU runs
// against the portable one, the 16-bit conversions on every bit pattern, the host's pin and the
// environment's, and the threaded entry points (RotaryPlan, rotate(..., parallel_for)) bit for bit
// against one call. test_rotary's whole suite also runs once per path (tests/CMakeLists.txt).
#include <gtest/gtest.h>

#include <Eigen/Core>
#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "ropescale/rotary.hpp"

namespace {

using ropescale::FactorTable;
using ropescale::HeadsView;
using ropescale::KernelPath;
using ropescale::PairLayout;
using ropescale::RopeSpec;
using ropescale::RotaryDirection;

// Pins a path for one scope and releases it after.
struct PinPath {
  explicit PinPath(KernelPath p) { ropescale::throw_if_error(ropescale::force_kernel_path(p)); }
  ~PinPath() { (void)ropescale::force_kernel_path(KernelPath::kAuto); }
};

std::vector<KernelPath> supported_paths() {
  std::vector<KernelPath> out;
  for (KernelPath p : ropescale::kAllKernelPaths)
    if (ropescale::kernel_path_supported(p)) out.push_back(p);
  return out;
}

template <typename T>
double eps_of() {
  if (std::is_same<T, Eigen::half>::value) return 1.0 / 1024;
  if (std::is_same<T, Eigen::bfloat16>::value) return 1.0 / 128;
  return static_cast<double>(std::numeric_limits<T>::epsilon());
}

struct Case {
  std::int64_t head_dim, rotary_dim, tokens, heads;
  PairLayout layout;
  RotaryDirection direction;
  bool on_the_fly;
  std::int64_t first_position;
};

// One rotation of random data on `path`.
template <typename T>
std::vector<T> rotate_on(KernelPath path, const Case& c, const std::vector<T>& x) {
  const RopeSpec spec{c.head_dim, c.rotary_dim, 1e4, 4096};
  const FactorTable table(Eigen::ArrayXd::LinSpaced(c.rotary_dim / 2, 1.0, 16.0), 1.1, "test");
  std::vector<std::int64_t> pos(static_cast<std::size_t>(c.tokens));
  for (std::int64_t t = 0; t < c.tokens; ++t)
    pos[static_cast<std::size_t>(t)] = c.first_position + 37 * t;
  std::vector<T> y = x;
  const auto view = HeadsView<T>::tokens_heads_dim(y.data(), c.tokens, c.heads, c.head_dim);
  PinPath pin(path);
  if (c.on_the_fly) {
    const ropescale::RotaryFrequencies fly(spec, table);
    ropescale::throw_if_error(ropescale::rotate(fly, pos.data(), view, c.layout, c.direction));
  } else {
    const ropescale::RotaryCache cache(spec, table, c.first_position + 37 * c.tokens);
    ropescale::throw_if_error(ropescale::rotate(cache, pos.data(), view, c.layout, c.direction));
  }
  return y;
}

template <typename T>
void check_paths_agree() {
  const Case cases[] = {
      {128, 128, 5, 3, PairLayout::kHalfSplit, RotaryDirection::kForward, false, 0},
      {128, 128, 5, 3, PairLayout::kInterleaved, RotaryDirection::kForward, false, 0},
      {128, 128, 1, 4, PairLayout::kHalfSplit, RotaryDirection::kForward, true, 100000},
      {128, 128, 1, 4, PairLayout::kInterleaved, RotaryDirection::kInverse, true, 100000},
      {96, 96, 4, 2, PairLayout::kHalfSplit, RotaryDirection::kBackward, false, 3},
      {96, 96, 4, 2, PairLayout::kInterleaved, RotaryDirection::kForward, true, 3},
      {136, 136, 3, 2, PairLayout::kHalfSplit, RotaryDirection::kForward, true, 9},   // 68 pairs
      {40, 40, 3, 2, PairLayout::kInterleaved, RotaryDirection::kForward, false, 1},  // 20 pairs
      {128, 96, 3, 2, PairLayout::kHalfSplit, RotaryDirection::kForward, false, 5},   // partial
      {128, 96, 3, 2, PairLayout::kInterleaved, RotaryDirection::kInverse, true, 5},
      {6, 6, 3, 5, PairLayout::kHalfSplit, RotaryDirection::kForward, false, 2},  // tail only
      // Interleaved rows with c and s permuted per block, not once per token: one head, and
      // 520 pairs (past the per-token buffer).
      {128, 128, 3, 1, PairLayout::kInterleaved, RotaryDirection::kForward, false, 7},
      {1040, 1040, 2, 3, PairLayout::kInterleaved, RotaryDirection::kForward, false, 4},
  };
  std::mt19937 rng(7);
  std::normal_distribution<float> nd(0.0f, 3.0f);
  for (const Case& c : cases) {
    std::vector<T> x(static_cast<std::size_t>(c.tokens * c.heads * c.head_dim));
    double max_abs = 0;
    for (T& v : x) {
      v = static_cast<T>(nd(rng));
      max_abs = std::max(max_abs, std::abs(static_cast<double>(v)));
    }
    const std::vector<T> ref = rotate_on(KernelPath::kPortable, c, x);
    // Paths differ only where one fuses a multiply-add (the last bit of a float, or one 16-bit
    // rounding step); m = 1.1 and |cos| + |sin| <= sqrt(2) bound the values.
    const double m = c.direction == RotaryDirection::kInverse ? 1.0 / 1.1 : 1.1;
    const double tol = 4.0 * eps_of<T>() * max_abs * m * 1.5;
    for (KernelPath p : supported_paths()) {
      const std::vector<T> got = rotate_on(p, c, x);
      for (std::size_t i = 0; i < x.size(); ++i) {
        const double g = static_cast<double>(got[i]), r = static_cast<double>(ref[i]);
        ASSERT_TRUE(std::isfinite(g)) << ropescale::to_string(p) << " element " << i;
        ASSERT_LE(std::abs(g - r), tol)
            << ropescale::to_string(p) << " head_dim " << c.head_dim << " rotary_dim "
            << c.rotary_dim << " " << ropescale::to_string(c.layout) << " element " << i;
      }
      // Pass-through channels are the input's bits on every path.
      for (std::int64_t row = 0; row < c.tokens * c.heads; ++row)
        for (std::int64_t j = c.rotary_dim; j < c.head_dim; ++j) {
          const std::size_t i = static_cast<std::size_t>(row * c.head_dim + j);
          ASSERT_EQ(std::memcmp(&got[i], &x[i], sizeof(T)), 0) << ropescale::to_string(p);
        }
    }
  }
}

TEST(KernelPaths, EveryPathAgreesWithThePortableOneFloat) { check_paths_agree<float>(); }
TEST(KernelPaths, EveryPathAgreesWithThePortableOneDouble) { check_paths_agree<double>(); }
TEST(KernelPaths, EveryPathAgreesWithThePortableOneHalf) { check_paths_agree<Eigen::half>(); }
TEST(KernelPaths, EveryPathAgreesWithThePortableOneBfloat16) {
  check_paths_agree<Eigen::bfloat16>();
}

// At position 0 with attention factor 1 the rotation is x' = x*1 - y*0, y' = y*1 + x*0: every
// 16-bit pattern in x goes through the path's load and store unchanged. Compared bit for bit with
// the portable path (NaN: NaN on both), on all 65,536 patterns, both layouts.
template <typename H>
void check_conversions_exhaustive(bool flushes_subnormals_on_bf16_path) {
  const std::int64_t patterns = 65536, pairs = 64, heads = patterns / pairs, dim = 2 * pairs;
  const RopeSpec spec{dim, dim, 1e4, 16};
  const FactorTable table(Eigen::ArrayXd::Ones(pairs), 1.0, "identity");
  const ropescale::RotaryCache cache(spec, table, 1);
  const std::int64_t zero = 0;
  for (PairLayout layout : {PairLayout::kHalfSplit, PairLayout::kInterleaved}) {
    std::vector<H> x(static_cast<std::size_t>(2 * patterns));
    for (std::int64_t b = 0; b < patterns; ++b) {  // patterns in x, +0 in the partner y
      const std::uint16_t bits = static_cast<std::uint16_t>(b);
      const std::int64_t i = b % pairs;
      const std::int64_t j = b / pairs * dim + (layout == PairLayout::kHalfSplit ? i : 2 * i);
      std::memcpy(static_cast<void*>(&x[static_cast<std::size_t>(j)]), &bits, 2);
    }
    std::vector<H> ref = x;
    {
      PinPath pin(KernelPath::kPortable);
      ropescale::throw_if_error(ropescale::rotate(
          cache, &zero, HeadsView<H>::tokens_heads_dim(ref.data(), 1, heads, dim), layout));
    }
    for (KernelPath p : supported_paths()) {
      std::vector<H> got = x;
      {
        PinPath pin(p);
        ropescale::throw_if_error(ropescale::rotate(
            cache, &zero, HeadsView<H>::tokens_heads_dim(got.data(), 1, heads, dim), layout));
      }
      const bool flush = flushes_subnormals_on_bf16_path && p == KernelPath::kAvx512Bf16;
      for (std::size_t i = 0; i < got.size(); ++i) {
        const float g = static_cast<float>(got[i]), r = static_cast<float>(ref[i]);
        if (std::isnan(r)) {
          ASSERT_TRUE(std::isnan(g)) << ropescale::to_string(p) << " element " << i;
          continue;
        }
        if (flush && r != 0.0f && std::abs(r) < std::numeric_limits<float>::min()) {
          // vcvtneps2bf16 is documented to flush subnormals to zero; either result is accepted.
          ASSERT_TRUE(g == 0.0f || std::memcmp(&got[i], &ref[i], 2) == 0)
              << ropescale::to_string(p) << " element " << i;
          continue;
        }
        ASSERT_EQ(std::memcmp(&got[i], &ref[i], 2), 0)
            << ropescale::to_string(p) << " " << ropescale::to_string(layout) << " element " << i
            << ": " << g << " vs " << r;
      }
    }
  }
}

TEST(KernelPaths, HalfConversionsOnEveryBitPattern) {
  check_conversions_exhaustive<Eigen::half>(false);
}
TEST(KernelPaths, Bfloat16ConversionsOnEveryBitPattern) {
  check_conversions_exhaustive<Eigen::bfloat16>(true);
}

// Every angle row the kernels read starts on a cache line: the cache's rows (any pair count,
// padded to whole lines), the per-call row buffers (stack and heap), their cos / sin slices, and
// the rows a call's angle source is asked to fill.
template <typename C>
struct RecordingRows {
  std::vector<const void*>* seen;
  std::int64_t pairs;
  bool operator()(std::int64_t, C* cbuf, C* sbuf, double, bool, const C** c, const C** s) const {
    seen->push_back(cbuf);
    seen->push_back(sbuf);
    std::fill(cbuf, cbuf + pairs, C(1));
    std::fill(sbuf, sbuf + pairs, C(0));
    *c = cbuf;
    *s = sbuf;
    return false;
  }
};

template <typename C>
void check_row_alignment(std::int64_t pairs) {
  SCOPED_TRACE("pairs " + std::to_string(pairs));
  using ropescale::detail::is_row_aligned;
  const RopeSpec spec{2 * pairs, 2 * pairs, 10000.0, 4096};
  const ropescale::BasicRotaryCache<C> cache(spec, FactorTable::identity(pairs), 7);
  for (std::int64_t p = 0; p < 7; ++p) {
    EXPECT_TRUE(is_row_aligned(cache.cos_row(p))) << p;
    EXPECT_TRUE(is_row_aligned(cache.sin_row(p))) << p;
  }
  ropescale::detail::RowBuffer<C> buf(pairs);  // stack up to 256 pairs, heap past
  const auto slices = ropescale::detail::row_slices(buf.data(), pairs);
  for (const C* q : {slices.c, slices.s}) EXPECT_TRUE(is_row_aligned(q));
  EXPECT_LE(slices.s + pairs, buf.data() + ropescale::detail::row_buffer_size<C>(pairs));
  // A call's rows as run_rotary_rows hands them out, for both layouts.
  std::vector<const void*> seen;
  std::vector<C> x(static_cast<std::size_t>(2 * pairs), C(1));
  const ropescale::detail::Operand<C> op{x.data(), x.data(), 1, 2 * pairs, 0, 0, 0, 0};
  for (PairLayout layout : {PairLayout::kHalfSplit, PairLayout::kInterleaved})
    ropescale::detail::run_rotary_rows<C>(cache, RecordingRows<C>{&seen, pairs}, 0, 2, &op, 1,
                                          layout, RotaryDirection::kInverse,
                                          ropescale::active_kernel_path(), buf.data());
  ASSERT_EQ(seen.size(), 8u);
  for (const void* q : seen) EXPECT_TRUE(is_row_aligned(q));
}

TEST(KernelPaths, AngleRowsAreCacheLineAligned) {
  for (std::int64_t pairs : {1, 3, 8, 16, 20, 40, 64, 100, 256, 257, 300}) {
    check_row_alignment<float>(pairs);
    check_row_alignment<double>(pairs);
  }
}

// The angle rows of every path against a long-double reference: m*cos and m*sin of p * f_i,
// within the double series' accuracy (float rows: one rounding to float).
template <typename C>
void check_sincos_rows(KernelPath path) {
  SCOPED_TRACE(ropescale::to_string(path));
  const std::int64_t n = 67;  // vector body and a tail
  std::vector<double> f(static_cast<std::size_t>(n));
  for (std::int64_t i = 0; i < n; ++i)
    f[static_cast<std::size_t>(i)] = std::pow(10000.0, -static_cast<double>(i) / n) * 1.3;
  const double m = 1.1;
  std::vector<C> c(static_cast<std::size_t>(n)), s(c.size());
  const auto kernel = ropescale::detail::kernel_table<C>(path).sincos_row;
  const double tol = std::is_same<C, float>::value ? 1.2e-7 : 2e-15;
  for (double p : {0.0, 1.0, 37.0, 4095.0, 100000.0, 3e6}) {
    if (p * f[0] >= ropescale::detail::kFastAngleLimit) continue;
    kernel(p, f.data(), n, m, c.data(), s.data());
    for (std::int64_t i = 0; i < n; ++i) {
      // The kernels take the angle as the double product p * f_i (the rows' documented input).
      const long double x = static_cast<long double>(p * f[static_cast<std::size_t>(i)]);
      const double want_c = static_cast<double>(m * std::cos(x));
      const double want_s = static_cast<double>(m * std::sin(x));
      ASSERT_NEAR(static_cast<double>(c[static_cast<std::size_t>(i)]), want_c, tol)
          << "p " << p << " i " << i;
      ASSERT_NEAR(static_cast<double>(s[static_cast<std::size_t>(i)]), want_s, tol)
          << "p " << p << " i " << i;
    }
  }
}

TEST(KernelPaths, AngleRowsOfEveryPathMatchTheReference) {
  for (KernelPath p : supported_paths()) {
    check_sincos_rows<float>(p);
    check_sincos_rows<double>(p);
  }
}

// The int8 quantization of every path against the scalar rule (quantize_int8_row): the same
// scale and the same codes bit for bit (every path rounds the float product x * inv, never a
// fused multiply-add), and each code within half a step of x (plus the rounding of inv = 127 /
// absmax). Row lengths cover the vector kernels' blocks of four packets, single packets and
// scalar tails.
template <typename T>
void check_quantize_paths(std::int64_t n) {
  SCOPED_TRACE("row " + std::to_string(n));
  std::mt19937 rng(static_cast<std::uint32_t>(n));
  std::normal_distribution<float> nd(0.0f, 2.0f);
  std::vector<T> x(static_cast<std::size_t>(n));
  std::vector<std::int8_t> want(x.size()), got(x.size());
  for (int round = 0; round < 20; ++round) {
    for (T& v : x) v = static_cast<T>(nd(rng) * (round == 3 ? 1e-37f : 1.0f));
    if (round == 5) x[static_cast<std::size_t>(n / 2)] = static_cast<T>(INFINITY);
    const float ref_scale = ropescale::detail::quantize_int8_row(x.data(), n, want.data());
    for (KernelPath p : supported_paths()) {
      const float scale =
          ropescale::detail::kernel_table<T>(p).quantize_int8_kernel(n)(x.data(), n, got.data());
      ASSERT_EQ(std::memcmp(&scale, &ref_scale, sizeof scale), 0) << ropescale::to_string(p);
      for (std::size_t j = 0; j < x.size(); ++j) {
        ASSERT_EQ(got[j], want[j]) << ropescale::to_string(p) << " j " << j;
        if (std::isfinite(scale))
          ASSERT_LE(std::abs(got[j] * static_cast<double>(scale) - static_cast<double>(x[j])),
                    scale * (0.5 + 2e-4))  // inv = 127 / absmax is rounded: 127 * 2^-23
              << ropescale::to_string(p) << " j " << j;
        else
          ASSERT_EQ(got[j], 0);
      }
    }
  }
}

TEST(KernelPaths, Int8QuantizationOfEveryPath) {
  for (std::int64_t n : {40, 64, 128, 256, 7, 8, 33, 41, 96, 200}) {
    check_quantize_paths<float>(n);
    check_quantize_paths<double>(n);
    check_quantize_paths<Eigen::half>(n);
    check_quantize_paths<Eigen::bfloat16>(n);
  }
}

// Ties round to even on every path: with absmax 127 the scale is 1 and inv exactly 1, so each
// x = k + 1/2 is a tie (values exact in float, half and bfloat16).
template <typename T>
void check_int8_ties() {
  const float x[16] = {127.0f, 2.5f,    3.5f, -2.5f, -0.5f, 0.5f,  126.5f, 1.5f,
                       -1.5f,  -126.5f, 4.5f, 5.5f,  -4.5f, -5.5f, 0.25f,  -0.75f};
  const std::int8_t want[16] = {127, 2, 4, -2, 0, 0, 126, 2, -2, -126, 4, 6, -4, -6, 0, -1};
  for (std::int64_t n : {16, 8, 11}) {  // a two-packet row, one packet, a packet and a tail
    std::vector<T> row(static_cast<std::size_t>(n));
    for (std::size_t j = 0; j < row.size(); ++j) row[j] = static_cast<T>(x[j]);
    for (KernelPath p : supported_paths()) {
      std::vector<std::int8_t> q(row.size());
      const float scale =
          ropescale::detail::kernel_table<T>(p).quantize_int8_kernel(n)(row.data(), n, q.data());
      ASSERT_EQ(scale, 1.0f) << ropescale::to_string(p);
      for (std::size_t j = 0; j < q.size(); ++j)
        ASSERT_EQ(q[j], want[j]) << ropescale::to_string(p) << " n " << n << " j " << j;
    }
  }
}

TEST(KernelPaths, Int8TiesRoundToEvenOnEveryPath) {
  check_int8_ties<float>();
  check_int8_ties<double>();
  check_int8_ties<Eigen::half>();
  check_int8_ties<Eigen::bfloat16>();
}

// The dispatch table of every path, entry by entry, against the scalar long-double reference:
// each rotation variant (both layouts, every compiled pair count, in place and out of place), the
// angle rows (check_sincos_rows above) and each int8 row-length variant.
template <typename T>
void check_rotation_entries(KernelPath path) {
  using C = ropescale::detail::compute_t<T>;
  using ropescale::detail::kHalfVariants;
  using ropescale::detail::kNumHalfVariants;
  const auto& table = ropescale::detail::kernel_table<T>(path);
  ASSERT_EQ(table.path, path);
  std::mt19937 rng(11);
  std::normal_distribution<float> nd(0.0f, 2.0f);
  for (int interleaved = 0; interleaved < 2; ++interleaved)
    for (int v = 0; v < kNumHalfVariants; ++v)
      for (std::int64_t half : {std::int64_t{kHalfVariants[v]}, std::int64_t{21}}) {
        if (kHalfVariants[v] != 0 && half != kHalfVariants[v]) continue;
        if (kHalfVariants[v] == 0 && half != 21) continue;
        SCOPED_TRACE(std::string(ropescale::to_string(path)) + " interleaved " +
                     std::to_string(interleaved) + " half " + std::to_string(half));
        ASSERT_EQ(table.rotate_kernel(interleaved != 0, half), table.rotate[interleaved][v]);
        const std::int64_t heads = 3, head_dim = 2 * half + 5, offset = half;
        std::vector<C> c(static_cast<std::size_t>(half)), s(c.size());
        for (std::int64_t i = 0; i < half; ++i) {
          const long double a = 0.37L * static_cast<long double>(i + 1);
          c[static_cast<std::size_t>(i)] = static_cast<C>(1.1L * std::cos(a));
          s[static_cast<std::size_t>(i)] = static_cast<C>(1.1L * std::sin(a));
        }
        std::vector<T> x(static_cast<std::size_t>(heads * head_dim));
        for (T& e : x) e = static_cast<T>(nd(rng));
        std::vector<T> in_place = x, out(x.size(), static_cast<T>(-99.0f));
        table.rotate[interleaved][v](in_place.data(), in_place.data(), heads, head_dim, head_dim,
                                     half, offset, head_dim, c.data(), s.data());
        table.rotate[interleaved][v](x.data(), out.data(), heads, head_dim, head_dim, half, offset,
                                     head_dim, c.data(), s.data());
        for (std::int64_t h = 0; h < heads; ++h)
          for (std::int64_t i = 0; i < half; ++i) {
            const std::int64_t a = h * head_dim + (interleaved ? 2 * i : i);
            const std::int64_t b = h * head_dim + (interleaved ? 2 * i + 1 : i + offset);
            const long double xa = static_cast<long double>(static_cast<double>(x[a]));
            const long double xb = static_cast<long double>(static_cast<double>(x[b]));
            const long double ci = c[static_cast<std::size_t>(i)];
            const long double si = s[static_cast<std::size_t>(i)];
            const long double want_a = xa * ci - xb * si, want_b = xb * ci + xa * si;
            // One rounding of the storage type plus the float products (|c| + |s| <= 1.6).
            const double tol =
                (eps_of<T>() + 4.0 * eps_of<C>()) * 1.6 *
                (std::abs(static_cast<double>(xa)) + std::abs(static_cast<double>(xb)));
            for (const std::vector<T>* got : {&in_place, &out}) {
              ASSERT_NEAR(static_cast<double>((*got)[a]), static_cast<double>(want_a), tol);
              ASSERT_NEAR(static_cast<double>((*got)[b]), static_cast<double>(want_b), tol);
            }
          }
        // Channels the layout does not rotate: the input's bits, in place and out of place.
        for (std::int64_t h = 0; h < heads; ++h)
          for (std::int64_t j = 0; j < head_dim; ++j) {
            const bool rotated =
                interleaved ? j < 2 * half : (j < half || (j >= offset && j < offset + half));
            if (rotated) continue;
            const std::size_t e = static_cast<std::size_t>(h * head_dim + j);
            ASSERT_EQ(std::memcmp(&out[e], &x[e], sizeof(T)), 0) << "channel " << j;
            ASSERT_EQ(std::memcmp(&in_place[e], &x[e], sizeof(T)), 0) << "channel " << j;
          }
      }
}

template <typename T>
void check_quantize_entries(KernelPath path) {
  using ropescale::detail::kNumRowVariants;
  using ropescale::detail::kRowVariants;
  const auto& table = ropescale::detail::kernel_table<T>(path);
  std::mt19937 rng(5);
  std::normal_distribution<float> nd(0.0f, 3.0f);
  for (int v = 0; v < kNumRowVariants; ++v) {
    const std::int64_t n = kRowVariants[v] != 0 ? kRowVariants[v] : 41;
    SCOPED_TRACE(std::string(ropescale::to_string(path)) + " row " + std::to_string(n));
    ASSERT_EQ(table.quantize_int8_kernel(n), table.quantize_int8[v]);
    std::vector<T> x(static_cast<std::size_t>(n));
    std::vector<std::int8_t> q(x.size());
    for (T& e : x) e = static_cast<T>(nd(rng));
    const float scale = table.quantize_int8[v](x.data(), n, q.data());
    long double amax = 0;
    for (const T& e : x)
      amax = std::max(amax, std::abs(static_cast<long double>(static_cast<double>(e))));
    ASSERT_NEAR(static_cast<double>(scale), static_cast<double>(amax / 127.0L),
                static_cast<double>(amax / 127.0L) * 1e-7);
    for (std::size_t j = 0; j < x.size(); ++j) {
      const long double want =
          static_cast<long double>(static_cast<double>(x[j])) / (amax / 127.0L);
      ASSERT_LE(std::abs(static_cast<long double>(q[j]) - want), 0.5L + 2e-4L) << "j " << j;
    }
  }
}

TEST(KernelPaths, EveryTableEntryOfEveryPathMatchesTheReference) {
  for (KernelPath p : supported_paths()) {
    check_rotation_entries<float>(p);
    check_rotation_entries<double>(p);
    check_rotation_entries<Eigen::half>(p);
    check_rotation_entries<Eigen::bfloat16>(p);
    check_quantize_entries<float>(p);
    check_quantize_entries<double>(p);
    check_quantize_entries<Eigen::half>(p);
    check_quantize_entries<Eigen::bfloat16>(p);
  }
  // A path the build or CPU lacks resolves to the portable table, never to an empty entry.
  EXPECT_EQ(ropescale::detail::kernel_table<float>(KernelPath::kAuto).path, KernelPath::kPortable);
}

TEST(KernelPaths, PinAndRelease) {
  const KernelPath best = ropescale::best_kernel_path();
  EXPECT_TRUE(ropescale::kernel_path_supported(best));
  EXPECT_TRUE(ropescale::kernel_path_supported(KernelPath::kPortable));
  for (KernelPath p : supported_paths()) {
    ASSERT_TRUE(ropescale::force_kernel_path(p).ok());
    EXPECT_EQ(ropescale::active_kernel_path(), p);
  }
  ASSERT_TRUE(ropescale::force_kernel_path(KernelPath::kAuto).ok());
  const char* env = std::getenv("ROPESCALE_KERNEL_PATH");
  KernelPath from_env = KernelPath::kAuto;
  if (env != nullptr && ropescale::parse_kernel_path(env).ok())
    from_env = ropescale::parse_kernel_path(env).value();
  if (env != nullptr && ropescale::parse_kernel_path(env).ok() && from_env != KernelPath::kAuto &&
      ropescale::kernel_path_supported(from_env))
    EXPECT_EQ(ropescale::active_kernel_path(), from_env);  // the environment's pin
  else
    EXPECT_EQ(ropescale::active_kernel_path(), best);
  // A path this CPU (or build) lacks is refused by name and leaves the pin alone.
  for (KernelPath p : ropescale::kAllKernelPaths) {
    if (ropescale::kernel_path_supported(p)) continue;
    const ropescale::Status s = ropescale::force_kernel_path(p);
    ASSERT_FALSE(s.ok());
    EXPECT_NE(s.message().find("path"), std::string::npos) << s.message();
    EXPECT_NE(s.message().find(ropescale::to_string(p)), std::string::npos) << s.message();
  }
  EXPECT_FALSE(ropescale::force_kernel_path(static_cast<KernelPath>(42)).ok());
  EXPECT_EQ(ropescale::force_kernel_path(static_cast<KernelPath>(-3)).argument(), "path");
}

TEST(KernelPaths, NamesRoundTrip) {
  for (KernelPath p : ropescale::kAllKernelPaths) {
    const ropescale::Result<KernelPath> back =
        ropescale::parse_kernel_path(ropescale::to_string(p));
    ASSERT_TRUE(back.ok());
    EXPECT_EQ(*back, p);
  }
  EXPECT_EQ(ropescale::parse_kernel_path("auto").value(), KernelPath::kAuto);
  const ropescale::Status s = ropescale::parse_kernel_path("sse9").status();
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("sse9"), std::string::npos) << s.message();
  for (KernelPath p : ropescale::kAllKernelPaths)  // the message lists every name it accepts
    EXPECT_NE(s.message().find(std::string(" ") + ropescale::to_string(p)), std::string::npos)
        << s.message();
}

// ---- threads ----------------------------------------------------------------------------------

// A parallel-for over n tokens on `threads` std::threads, contiguous ranges.
ropescale::ParallelFor thread_split(int threads) {
  return [threads](std::int64_t n, const std::function<void(std::int64_t, std::int64_t)>& body) {
    std::vector<std::thread> pool;
    for (int i = 0; i < threads; ++i) {
      const std::int64_t b = n * i / threads, e = n * (i + 1) / threads;
      pool.emplace_back([&body, b, e] { body(b, e); });
    }
    for (std::thread& t : pool) t.join();
  };
}

template <typename T>
void check_threads_bit_identical() {
  const RopeSpec spec{128, 128, 5e5, 8192};
  const FactorTable table(Eigen::ArrayXd::LinSpaced(64, 1.0, 8.0), 1.2, "test");
  const ropescale::RotaryFrequencies fly(spec, table);
  const std::int64_t tokens = 61, hq = 4, hk = 2;
  std::vector<std::int64_t> pos(tokens);
  for (std::int64_t t = 0; t < tokens; ++t) pos[static_cast<std::size_t>(t)] = 1000 + 13 * t;
  std::mt19937 rng(3);
  std::normal_distribution<float> nd;
  std::vector<T> q0(static_cast<std::size_t>(tokens * hq * 128)),
      k0(static_cast<std::size_t>(tokens * hk * 128));
  for (T& v : q0) v = static_cast<T>(nd(rng));
  for (T& v : k0) v = static_cast<T>(nd(rng));
  for (PairLayout layout : {PairLayout::kHalfSplit, PairLayout::kInterleaved}) {
    std::vector<T> q1 = q0, k1 = k0;
    ropescale::throw_if_error(ropescale::rotate(
        fly, pos.data(), HeadsView<T>::tokens_heads_dim(q1.data(), tokens, hq, 128),
        HeadsView<T>::tokens_heads_dim(k1.data(), tokens, hk, 128), layout));
    for (int threads : {1, 2, 3, 7}) {
      std::vector<T> q2 = q0, k2 = k0;
      const auto kv = HeadsView<T>::tokens_heads_dim(k2.data(), tokens, hk, 128);
      ASSERT_TRUE(ropescale::rotate(fly, pos.data(),
                                    HeadsView<T>::tokens_heads_dim(q2.data(), tokens, hq, 128), &kv,
                                    layout, thread_split(threads))
                      .ok());
      EXPECT_EQ(std::memcmp(q1.data(), q2.data(), q1.size() * sizeof(T)), 0) << threads;
      EXPECT_EQ(std::memcmp(k1.data(), k2.data(), k1.size() * sizeof(T)), 0) << threads;
    }
    // The plan itself, ranges run in reverse order on one thread.
    std::vector<T> q3 = q0;
    using Plan = ropescale::RotaryPlan<T, ropescale::RotaryFrequencies>;
    const ropescale::Result<Plan> made =
        Plan::make(fly, pos.data(), HeadsView<T>::tokens_heads_dim(q3.data(), tokens, hq, 128),
                   nullptr, layout, RotaryDirection::kForward);
    ASSERT_TRUE(made.ok()) << made.status().message();
    const Plan& plan = *made;
    EXPECT_EQ(plan.tokens(), tokens);
    EXPECT_EQ(plan.path(), ropescale::active_kernel_path());
    for (std::int64_t e = tokens; e > 0; e -= 10)
      ASSERT_TRUE(plan.run(std::max<std::int64_t>(0, e - 10), e).ok());
    std::vector<T> q4 = q0;
    ropescale::throw_if_error(ropescale::rotate(
        fly, pos.data(), HeadsView<T>::tokens_heads_dim(q4.data(), tokens, hq, 128), layout));
    EXPECT_EQ(std::memcmp(q3.data(), q4.data(), q3.size() * sizeof(T)), 0);
  }
}

TEST(RotaryThreads, SplitsGiveTheBitsOfOneCallFloat) { check_threads_bit_identical<float>(); }
TEST(RotaryThreads, SplitsGiveTheBitsOfOneCallBfloat16) {
  check_threads_bit_identical<Eigen::bfloat16>();
}

TEST(RotaryThreads, BadInputIsRefused) {
  const RopeSpec spec{8, 8, 1e4, 16};
  const FactorTable table(Eigen::ArrayXd::Ones(4), 1.0, "default");
  const ropescale::RotaryCache cache(spec, table, 16);
  std::vector<float> x(4 * 8, 1.0f);
  std::vector<std::int64_t> pos = {0, 1, 2, 3};
  const auto view = HeadsView<float>::tokens_heads_dim(x.data(), 4, 1, 8);
  using Plan = ropescale::RotaryPlan<float, ropescale::RotaryCache>;
  // The checks of the one-call front door, with its messages.
  const std::int64_t bad_pos[4] = {0, 1, 99, 3};
  ropescale::Status s =
      Plan::make(cache, bad_pos, view, nullptr, PairLayout::kHalfSplit, RotaryDirection::kForward)
          .status();
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("positions[2]"), std::string::npos) << s.message();
  auto narrow = HeadsView<float>::tokens_heads_dim(x.data(), 4, 1, 6);
  s = Plan::make(cache, pos.data(), narrow, nullptr, PairLayout::kHalfSplit,
                 RotaryDirection::kForward)
          .status();
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("x.head_dim"), std::string::npos) << s.message();
  // A plan never made, and ranges outside [0, tokens).
  EXPECT_FALSE(Plan().run(0, 0).ok() && Plan().tokens() != 0);
  const ropescale::Result<Plan> made =
      Plan::make(cache, pos.data(), view, nullptr, PairLayout::kHalfSplit);
  ASSERT_TRUE(made.ok()) << made.status().message();
  const Plan& plan = *made;
  for (auto r : {std::make_pair(-1, 2), std::make_pair(3, 2), std::make_pair(0, 5)}) {
    s = plan.run(r.first, r.second);
    ASSERT_FALSE(s.ok());
    EXPECT_NE(s.message().find("range"), std::string::npos) << s.message();
  }
  EXPECT_EQ(x, std::vector<float>(4 * 8, 1.0f));  // nothing written
  // A parallel-for that skips tokens, one that steps outside, and none at all.
  const ropescale::ParallelFor skips = [](std::int64_t n, const auto& body) { body(0, n - 1); };
  s = ropescale::rotate(cache, pos.data(), view, nullptr, PairLayout::kHalfSplit, skips);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("parallel_for"), std::string::npos) << s.message();
  EXPECT_NE(s.message().find("3 of 4"), std::string::npos) << s.message();
  const ropescale::ParallelFor outside = [](std::int64_t n, const auto& body) { body(0, n + 1); };
  EXPECT_FALSE(
      ropescale::rotate(cache, pos.data(), view, nullptr, PairLayout::kHalfSplit, outside).ok());
  EXPECT_THROW(
      ropescale::throw_if_error(ropescale::rotate(
          cache, pos.data(), view, nullptr, PairLayout::kHalfSplit, ropescale::ParallelFor())),
      ropescale::Error);
}

// A broken parallel-for: no token is rotated twice, the ranges that overlap an earlier one do not
// run, and the call reports what went wrong. Every token ends either untouched or rotated once.
class RotaryThreadsBrokenHook : public ::testing::Test {
 protected:
  static constexpr std::int64_t kTokens = 130;  // three claim words, the last one partial
  const RopeSpec spec{8, 8, 1e4, 512};
  const ropescale::RotaryCache cache{spec, FactorTable(Eigen::ArrayXd::Ones(4), 1.0, "default"),
                                     512};
  std::vector<std::int64_t> pos;
  std::vector<float> x0, once;
  RotaryThreadsBrokenHook() {
    for (std::int64_t t = 0; t < kTokens; ++t) pos.push_back(3 + 2 * t);
    std::mt19937 rng(11);
    std::normal_distribution<float> nd;
    for (std::int64_t i = 0; i < kTokens * 8; ++i) x0.push_back(nd(rng));
    once = x0;
    ropescale::throw_if_error(ropescale::rotate(
        cache, pos.data(), HeadsView<float>::tokens_heads_dim(once.data(), kTokens, 1, 8),
        PairLayout::kHalfSplit));
  }
  // Runs the hook on a copy of x0; returns the status and, per token, 0 untouched, 1 rotated once
  // (anything else fails the test).
  std::pair<ropescale::Status, std::vector<int>> run(const ropescale::ParallelFor& hook) {
    std::vector<float> x = x0;
    const ropescale::Status s = ropescale::rotate(
        cache, pos.data(), HeadsView<float>::tokens_heads_dim(x.data(), kTokens, 1, 8), nullptr,
        PairLayout::kHalfSplit, hook);
    std::vector<int> state(kTokens, -1);
    for (std::int64_t t = 0; t < kTokens; ++t) {
      const auto at = static_cast<std::size_t>(t * 8);
      if (std::equal(x.begin() + at, x.begin() + at + 8, x0.begin() + at))
        state[static_cast<std::size_t>(t)] = 0;
      else if (std::equal(x.begin() + at, x.begin() + at + 8, once.begin() + at))
        state[static_cast<std::size_t>(t)] = 1;
      EXPECT_NE(state[static_cast<std::size_t>(t)], -1) << "token " << t << " rotated twice";
    }
    return {s, state};
  }
};

TEST_F(RotaryThreadsBrokenHook, ARangeRunTwiceAndOneSkippedIsRefused) {
  // The ranges add up to the tokens: [0, 65) twice, [65, 130) never.
  const auto [s, state] = run([](std::int64_t, const auto& body) {
    body(0, 65);
    body(0, 65);
  });
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("parallel_for"), std::string::npos) << s.message();
  EXPECT_NE(s.message().find("65 of 130 tokens rotated"), std::string::npos) << s.message();
  EXPECT_NE(s.message().find("token 0 handed out twice"), std::string::npos) << s.message();
  EXPECT_NE(s.message().find("token 65 never handed out"), std::string::npos) << s.message();
  for (std::int64_t t = 0; t < kTokens; ++t) EXPECT_EQ(state[t], t < 65 ? 1 : 0) << t;
}

TEST_F(RotaryThreadsBrokenHook, ASkippedRangeIsNamed) {
  const auto [s, state] = run([](std::int64_t n, const auto& body) {
    body(0, 64);
    body(100, n);
  });
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("94 of 130"), std::string::npos) << s.message();
  EXPECT_NE(s.message().find("token 64 never handed out"), std::string::npos) << s.message();
  EXPECT_EQ(s.message().find("twice"), std::string::npos) << s.message();
  for (std::int64_t t = 0; t < kTokens; ++t) EXPECT_EQ(state[t], t < 64 || t >= 100 ? 1 : 0) << t;
}

TEST_F(RotaryThreadsBrokenHook, OverlappingRangesOnTwoThreadsRunOneOfThem) {
  // Two threads started together on [0, 100) and [30, 130), many times: whichever claims the
  // shared tokens first, no token is rotated twice and the call is refused.
  for (int trial = 0; trial < 20; ++trial) {
    const auto [s, state] = run([](std::int64_t n, const auto& body) {
      std::atomic<int> ready{0};
      auto go = [&](std::int64_t b, std::int64_t e) {
        ready.fetch_add(1);
        while (ready.load() < 2) std::this_thread::yield();
        body(b, e);
      };
      std::thread a(go, 0, 100), b(go, 30, n);
      a.join();
      b.join();
    });
    ASSERT_FALSE(s.ok());
    EXPECT_NE(s.message().find("handed out twice"), std::string::npos) << s.message();
    // At most one of the two ranges ran; the tokens only the refused one held are untouched.
    const bool first = state[0] == 1, second = state[kTokens - 1] == 1;
    EXPECT_FALSE(first && second);
    for (std::int64_t t = 0; t < kTokens; ++t)
      EXPECT_EQ(state[t], (first && t < 100) || (second && t >= 30) ? 1 : 0) << t;
  }
}

TEST_F(RotaryThreadsBrokenHook, AValidSplitStillRotatesEveryTokenOnce) {
  const auto [s, state] = run([](std::int64_t n, const auto& body) {
    for (std::int64_t b = n; b > 0; b -= 7) body(std::max<std::int64_t>(0, b - 7), b);
    body(n, n);  // an empty range claims nothing
  });
  ASSERT_TRUE(s.ok()) << s.message();
  for (std::int64_t t = 0; t < kTokens; ++t) EXPECT_EQ(state[t], 1) << t;
}

}  // namespace
