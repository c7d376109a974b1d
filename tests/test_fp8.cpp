// fp8 e4m3 pages (kv_cache.hpp, detail/kernels/fp8.hpp): the conversions on all 256 codes against a
// scalar reference written from the OCP FP8 E4M3 definition, rounding to nearest even and
// saturation against a brute-force nearest-code search, the quantization of every kernel path's
// table entries with its round-trip bound, and the fused append into fp8 pages against
// rotate_out followed by the same quantization.
#include <gtest/gtest.h>

#include <Eigen/Core>
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include "ropescale/kv_cache.hpp"

namespace {

using ropescale::Fp8E4M3;
using ropescale::HeadsView;
using ropescale::KernelPath;
using ropescale::PagedKVCache;
using ropescale::PageLayout;
using ropescale::PairLayout;
using ropescale::detail::float_to_fp8_e4m3;
using ropescale::detail::fp8_e4m3_to_float;

// The value of a code from the definition: sign, 4 exponent bits (bias 7), 3 mantissa bits.
long double ref_value(int code) {
  const int s = code >> 7, e = (code >> 3) & 15, m = code & 7;
  const long double sign = s ? -1.0L : 1.0L;
  if (e == 15 && m == 7) return std::numeric_limits<long double>::quiet_NaN();
  if (e == 0) return sign * std::ldexp(static_cast<long double>(m) / 8.0L, -6);
  return sign * std::ldexp(1.0L + static_cast<long double>(m) / 8.0L, e - 7);
}

// The nearest finite code by search (ties: the even code, i.e. mantissa bit 0 clear); past 448
// saturates; NaN maps to 0x7f with the sign.
int ref_encode(float x) {
  if (std::isnan(x)) return (std::signbit(x) ? 0x80 : 0) | 0x7f;
  const int sign = std::signbit(x) ? 0x80 : 0;
  const long double a = std::fabs(static_cast<long double>(x));
  int best = 0;
  long double best_d = std::numeric_limits<long double>::infinity();
  for (int c = 0; c <= 0x7e; ++c) {
    const long double d = std::fabs(ref_value(c) - a);
    if (d < best_d || (d == best_d && (c & 1) == 0)) {
      best = c;
      best_d = d;
    }
  }
  return sign | best;
}

TEST(Fp8E4M3, EveryCodeDecodesToItsValue) {
  int nans = 0;
  for (int c = 0; c < 256; ++c) {
    const float got = fp8_e4m3_to_float(static_cast<std::uint8_t>(c));
    const long double want = ref_value(c);
    if (std::isnan(want)) {
      EXPECT_TRUE(std::isnan(got)) << c;
      ++nans;
      continue;
    }
    EXPECT_EQ(static_cast<long double>(got), want) << "code " << c;
    EXPECT_EQ(std::signbit(got), (c & 0x80) != 0) << "code " << c;  // -0 keeps its sign
  }
  EXPECT_EQ(nans, 2);
  EXPECT_EQ(fp8_e4m3_to_float(0x7e), 448.0f);
  EXPECT_EQ(fp8_e4m3_to_float(0x01), std::ldexp(1.0f, -9));
}

TEST(Fp8E4M3, EveryFiniteCodeRoundTrips) {
  for (int c = 0; c < 256; ++c) {
    if ((c & 0x7f) == 0x7f) continue;
    EXPECT_EQ(float_to_fp8_e4m3(fp8_e4m3_to_float(static_cast<std::uint8_t>(c))), c) << c;
  }
}

TEST(Fp8E4M3, RoundsToNearestEvenAndSaturates) {
  // Between every two neighbouring finite codes: the midpoint (a tie), and a float either side.
  for (int c = 0; c < 0x7e; ++c)
    for (int sign : {0, 0x80}) {
      const float lo = static_cast<float>(ref_value(c)), hi = static_cast<float>(ref_value(c + 1));
      const float mid = 0.5f * (lo + hi);  // exact: both have few mantissa bits
      const float s = sign ? -1.0f : 1.0f;
      for (float x : {mid, std::nextafter(mid, lo), std::nextafter(mid, hi)}) {
        const int got = float_to_fp8_e4m3(s * x), want = ref_encode(s * x);
        ASSERT_EQ(got, want) << "x " << s * x << " between codes " << c << " and " << c + 1;
      }
      ASSERT_EQ(float_to_fp8_e4m3(s * mid), sign | ((c & 1) ? c + 1 : c)) << c;  // the even one
    }
  const float inf = std::numeric_limits<float>::infinity();
  for (float x : {448.0f, 455.99f, 464.0f, 480.0f, 1e6f, 3.4e38f, inf}) {
    EXPECT_EQ(float_to_fp8_e4m3(x), 0x7e) << x;
    EXPECT_EQ(float_to_fp8_e4m3(-x), 0xfe) << x;
  }
  EXPECT_EQ(float_to_fp8_e4m3(std::numeric_limits<float>::quiet_NaN()), 0x7f);
  EXPECT_EQ(float_to_fp8_e4m3(-std::numeric_limits<float>::quiet_NaN()), 0xff);
  EXPECT_EQ(float_to_fp8_e4m3(std::ldexp(1.0f, -11)), 0x00);  // below half the least subnormal
  EXPECT_EQ(float_to_fp8_e4m3(std::numeric_limits<float>::denorm_min()), 0x00);
  // Random floats over the whole range against the search.
  std::mt19937 rng(9);
  std::uniform_real_distribution<float> ex(-14.0f, 10.0f);
  for (int i = 0; i < 20000; ++i) {
    const float x = (i & 1 ? -1.0f : 1.0f) * std::exp2(ex(rng));
    ASSERT_EQ(float_to_fp8_e4m3(x), ref_encode(x)) << x;
  }
}

std::vector<KernelPath> supported_paths() {
  std::vector<KernelPath> out;
  for (KernelPath p : ropescale::kAllKernelPaths)
    if (ropescale::kernel_path_supported(p)) out.push_back(p);
  return out;
}

// Every path's fp8 row kernels (each row-length variant): scale = absmax / 448 as a float, codes
// equal to the reference encoding of x * 448 / absmax, and the dequantized row within 2^-4 of each
// value (3 mantissa bits) or half a subnormal step of the scale; non-finite rows are the sentinel.
template <typename T>
void check_fp8_rows(KernelPath path) {
  using ropescale::detail::kNumRowVariants;
  using ropescale::detail::kRowVariants;
  const auto& table = ropescale::detail::kernel_table<T>(path);
  std::mt19937 rng(4);
  std::normal_distribution<float> nd(0.0f, 3.0f);
  // Each fixed-length variant, then the any-length one on rows that end in a scalar tail, a
  // single packet or a block and a tail.
  const std::int64_t any_lengths[] = {37, 7, 8, 33};
  for (int k = 0; k < kNumRowVariants + 3; ++k) {
    const int v = std::min(k, kNumRowVariants - 1);
    const std::int64_t n = kRowVariants[v] != 0 ? kRowVariants[v] : any_lengths[k - v];
    SCOPED_TRACE(std::string(ropescale::to_string(path)) + " row " + std::to_string(n));
    ASSERT_EQ(table.quantize_fp8_kernel(n), table.quantize_fp8[v]);
    std::vector<T> x(static_cast<std::size_t>(n));
    std::vector<std::uint8_t> q(x.size());
    for (int round = 0; round < 4; ++round) {
      for (T& e : x) e = static_cast<T>(nd(rng) * (round == 2 ? 1e-3f : 1.0f));
      if (round == 3) x[static_cast<std::size_t>(n / 2)] = static_cast<T>(NAN);
      const float scale = table.quantize_fp8[v](x.data(), n, q.data());
      if (round == 3) {
        EXPECT_TRUE(std::isnan(scale));
        for (std::uint8_t c : q) ASSERT_EQ(c, 0);
        continue;
      }
      float amax = 0;
      for (const T& e : x) amax = std::max(amax, std::abs(static_cast<float>(e)));
      ASSERT_EQ(scale, amax / 448.0f);
      const float inv = 448.0f / amax;
      for (std::size_t j = 0; j < x.size(); ++j) {
        const float xj = static_cast<float>(x[j]);
        ASSERT_EQ(q[j], ref_encode(xj * inv)) << "j " << j;
        const double back = static_cast<double>(fp8_e4m3_to_float(q[j])) * scale;
        const double err = std::abs(back - static_cast<double>(xj));
        ASSERT_LE(err, std::max(std::abs(static_cast<double>(xj)) * 0.0625,
                                std::ldexp(static_cast<double>(scale), -10)) *
                           (1 + 1e-6))
            << "j " << j;
      }
    }
  }
}

TEST(Fp8E4M3, EveryPathsRowKernelsMatchTheReference) {
  for (KernelPath p : supported_paths()) {
    check_fp8_rows<float>(p);
    check_fp8_rows<Eigen::half>(p);
    check_fp8_rows<Eigen::bfloat16>(p);
  }
}

// The fused append into fp8 pages: each written row equals rotate_out's K (and V as given)
// quantized by the same kernel, both page layouts; a non-finite V row is the sentinel.
template <typename T>
void check_fused_fp8(PageLayout pl) {
  SCOPED_TRACE(ropescale::to_string(pl));
  const ropescale::RopeSpec spec{64, 64, 10000.0, 4096};
  const ropescale::RotaryCache cache(spec, ropescale::FactorTable::identity(32), 256);
  constexpr std::int64_t tokens = 6, heads = 2, d = 64, blocks = 4, bs = 4;
  std::vector<T> k(static_cast<std::size_t>(tokens * heads * d)), v(k.size());
  std::mt19937 rng(6);
  std::normal_distribution<float> nd;
  for (T& x : k) x = static_cast<T>(nd(rng));
  for (T& x : v) x = static_cast<T>(nd(rng));
  v[static_cast<std::size_t>((4 * heads + 1) * d + 3)] = static_cast<T>(INFINITY);
  const auto kv = HeadsView<const T>::tokens_heads_dim(k.data(), tokens, heads, d);
  const auto vv = HeadsView<const T>::tokens_heads_dim(v.data(), tokens, heads, d);
  const std::vector<std::int64_t> pos = {0, 1, 2, 3, 200, 9};
  const std::vector<std::int64_t> slots = {2, 3, 4, 5, 11, 0};
  const std::size_t rows = static_cast<std::size_t>(blocks * bs * heads);
  std::vector<Fp8E4M3> kp(rows * d, Fp8E4M3{0x55}), vp = kp;
  std::vector<float> ks(rows, -1.0f), vs = ks;
  PagedKVCache<Fp8E4M3> c;
  c.k_pages = kp.data();
  c.v_pages = vp.data();
  c.k_scales = ks.data();
  c.v_scales = vs.data();
  c.num_blocks = blocks;
  c.block_size = bs;
  c.num_kv_heads = heads;
  c.head_dim = d;
  c.page_layout = pl;
  ASSERT_TRUE(ropescale::rotate_and_append_kv(cache, pos.data(), kv, vv, slots.data(), c,
                                              PairLayout::kInterleaved)
                  .ok());
  std::vector<T> ref(k.size());
  ASSERT_TRUE(ropescale::rotate_out(cache, pos.data(), kv,
                                    HeadsView<T>::tokens_heads_dim(ref.data(), tokens, heads, d),
                                    PairLayout::kInterleaved)
                  .ok());
  const auto quantize =
      ropescale::detail::kernel_table<T>(ropescale::active_kernel_path()).quantize_fp8_kernel(d);
  std::vector<bool> written(rows, false);
  for (std::int64_t t = 0; t < tokens; ++t)
    for (std::int64_t h = 0; h < heads; ++h) {
      const std::int64_t r = c.row(slots[static_cast<std::size_t>(t)], h);
      written[static_cast<std::size_t>(r)] = true;
      std::uint8_t q[d];
      const float kscale = quantize(ref.data() + (t * heads + h) * d, d, q);
      ASSERT_EQ(std::memcmp(q, kp.data() + r * d, d), 0) << "k t " << t << " h " << h;
      ASSERT_EQ(std::memcmp(&kscale, &ks[static_cast<std::size_t>(r)], 4), 0);
      const float vscale = quantize(v.data() + (t * heads + h) * d, d, q);
      ASSERT_EQ(std::memcmp(q, vp.data() + r * d, d), 0) << "v t " << t << " h " << h;
      ASSERT_EQ(std::memcmp(&vscale, &vs[static_cast<std::size_t>(r)], 4), 0);
      if (t == 4 && h == 1) {
        EXPECT_TRUE(std::isnan(vs[static_cast<std::size_t>(r)]));
      }
    }
  for (std::size_t r = 0; r < rows; ++r)
    if (!written[r]) {
      ASSERT_EQ(ks[r], -1.0f) << r;
      for (std::int64_t j = 0; j < d; ++j) ASSERT_EQ(kp[r * d + j].bits, 0x55) << r;
    }
}

TEST(Fp8E4M3, FusedAppendMatchesRotateThenQuantize) {
  for (PageLayout pl : {PageLayout::kHeadMajor, PageLayout::kTokenMajor}) {
    check_fused_fp8<float>(pl);
    check_fused_fp8<Eigen::bfloat16>(pl);
    check_fused_fp8<Eigen::half>(pl);
  }
}

TEST(Fp8E4M3, FusedAppendRefusesMissingScales) {
  const ropescale::RopeSpec spec{64, 64, 10000.0, 4096};
  const ropescale::RotaryCache cache(spec, ropescale::FactorTable::identity(32), 16);
  std::vector<float> k(64, 1.0f), v = k;
  std::vector<Fp8E4M3> kp(4 * 64), vp = kp;
  std::vector<float> ks(4);
  PagedKVCache<Fp8E4M3> c;
  c.k_pages = kp.data();
  c.v_pages = vp.data();
  c.k_scales = ks.data();
  c.num_blocks = 1;
  c.block_size = 4;
  c.num_kv_heads = 1;
  c.head_dim = 64;
  const std::int64_t pos = 0, slot = 0;
  const auto view = HeadsView<const float>::tokens_heads_dim(k.data(), 1, 1, 64);
  const ropescale::Status s = ropescale::rotate_and_append_kv(
      cache, &pos, view, HeadsView<const float>::tokens_heads_dim(v.data(), 1, 1, 64), &slot, c,
      PairLayout::kHalfSplit);
  EXPECT_EQ(s.argument(), "cache.v_scales");
  EXPECT_NE(s.message().find("fp8 cache"), std::string::npos) << s.message();
  for (const Fp8E4M3& x : kp) ASSERT_EQ(x.bits, 0);
}

}  // namespace
