// Fused rotate + paged KV-cache append: for every storage type, pair layout, page layout and angle
// source the pages equal rotate_out followed by a plain copy (bit for bit), int8 pages
// dequantize within half a step, untouched slots keep their sentinel, and bad input is refused by
// name with nothing written.
#include <gtest/gtest.h>

#include <Eigen/Core>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <type_traits>
#include <vector>

#include "ropescale/kv_cache.hpp"
#include "test_data.hpp"

using ropescale::ErrorCode;
using ropescale::FactorTable;
using ropescale::HeadsView;
using ropescale::kPaddingSlot;
using ropescale::PagedKVCache;
using ropescale::PageLayout;
using ropescale::PairLayout;
using ropescale::RopeSpec;
using ropescale::RotaryCache;
using ropescale::RotaryCacheD;
using ropescale::RotaryFrequencies;
using ropescale::Status;

namespace {

constexpr std::int64_t kTokens = 5, kHeads = 3, kBlocks = 4, kBlockSize = 4;
constexpr std::int64_t kFar = 100000;  // a decode step far into the context

struct Angles {
  RopeSpec spec;
  FactorTable table;
  RotaryFrequencies freqs;
  RotaryCache cache;
  RotaryCacheD cache_d;
  Angles(std::int64_t head_dim, std::int64_t rotary_dim)
      : spec{head_dim, rotary_dim, 500000.0, 8192},
        table(Eigen::ArrayXd::LinSpaced(rotary_dim / 2, 1.0, 8.0), 1.1, "test"),
        freqs(spec, table),
        cache(freqs, kFar + 1),
        cache_d(freqs, kFar + 1) {}
};

const Angles& angles_40() {  // head_dim 40, rotary_dim 32: 8 pass-through channels
  static const Angles a(40, 32);
  return a;
}
const Angles& angles_128() {  // Llama-like, the compile-time pair count path
  static const Angles a(128, 128);
  return a;
}

template <typename T>
T sentinel() {
  return static_cast<T>(-7.5f);
}
template <>
std::int8_t sentinel<std::int8_t>() {
  return 99;
}
template <>
ropescale::Fp8E4M3 sentinel<ropescale::Fp8E4M3>() {
  return ropescale::Fp8E4M3{0x5a};
}
constexpr float kScaleSentinel = -3.25f;

template <typename T>
struct Inputs {
  std::int64_t head_dim;
  std::vector<T> k, v;
  HeadsView<const T> kv, vv;
  Inputs(std::int64_t d, std::uint32_t seed) : head_dim(d) {
    const std::size_t n = static_cast<std::size_t>(kTokens * kHeads * d);
    k.resize(n);
    v.resize(n);
    std::mt19937 rng(seed);
    std::normal_distribution<float> dist;
    for (auto& x : k) x = static_cast<T>(dist(rng));
    for (auto& x : v) x = static_cast<T>(dist(rng));
    // k is [heads, tokens, dim] (strided per token), v [tokens, heads, dim].
    kv = HeadsView<const T>::heads_tokens_dim(k.data(), kTokens, kHeads, d);
    vv = HeadsView<const T>::tokens_heads_dim(v.data(), kTokens, kHeads, d);
  }
};

template <typename S>
struct Pages {
  std::vector<S> k, v;
  std::vector<float> ks, vs;
  PagedKVCache<S> cache;
  Pages(std::int64_t head_dim, PageLayout layout) {
    const std::size_t rows = static_cast<std::size_t>(kBlocks * kBlockSize * kHeads);
    k.assign(rows * static_cast<std::size_t>(head_dim), sentinel<S>());
    v = k;
    ks.assign(rows, kScaleSentinel);
    vs = ks;
    cache.k_pages = k.data();
    cache.v_pages = v.data();
    if (std::is_same<S, std::int8_t>::value) {
      cache.k_scales = ks.data();
      cache.v_scales = vs.data();
    }
    cache.num_blocks = kBlocks;
    cache.block_size = kBlockSize;
    cache.num_kv_heads = kHeads;
    cache.head_dim = head_dim;
    cache.page_layout = layout;
  }
};

template <typename S>
bool same_bits(const S& a, const S& b) {
  return std::memcmp(&a, &b, sizeof(S)) == 0;
}

// Row (slot, head) of the cache, by the layout drawing (not through PagedKVCache::row).
std::int64_t drawn_row(PageLayout layout, std::int64_t slot, std::int64_t h) {
  const std::int64_t block = slot / kBlockSize, off = slot % kBlockSize;
  return layout == PageLayout::kHeadMajor ? (block * kHeads + h) * kBlockSize + off
                                          : (block * kBlockSize + off) * kHeads + h;
}

const std::int64_t kPositions[kTokens] = {0, 5, 17, kFar, 3};
const std::int64_t kSlots[kTokens] = {13, 2, 7, 8, 0};

// Reference: rotate_out on K into [tokens, heads, dim].
template <typename T, typename A>
std::vector<T> rotated_k(const A& angles, const Inputs<T>& in, PairLayout layout) {
  std::vector<T> out(in.k.size());
  ropescale::throw_if_error(ropescale::rotate_out(
      angles, kPositions, in.kv,
      HeadsView<T>::tokens_heads_dim(out.data(), kTokens, kHeads, in.head_dim), layout));
  return out;
}

template <typename T, typename A>
void check_plain(const A& angles, std::int64_t head_dim, PairLayout layout, PageLayout pl) {
  SCOPED_TRACE(std::string(to_string(layout)) + " " + to_string(pl) + " head_dim " +
               std::to_string(head_dim));
  const Inputs<T> in(head_dim, 7);
  Pages<T> pages(head_dim, pl);
  ropescale::throw_if_error(ropescale::rotate_and_append_kv(angles, kPositions, in.kv, in.vv,
                                                            kSlots, pages.cache, layout));
  const std::vector<T> ref = rotated_k(angles, in, layout);
  std::vector<bool> written(static_cast<std::size_t>(kBlocks * kBlockSize * kHeads), false);
  for (std::int64_t t = 0; t < kTokens; ++t)
    for (std::int64_t h = 0; h < kHeads; ++h) {
      const std::int64_t r = drawn_row(pl, kSlots[t], h);
      EXPECT_EQ(r, pages.cache.row(kSlots[t], h));
      written[static_cast<std::size_t>(r)] = true;
      for (std::int64_t j = 0; j < head_dim; ++j) {
        const std::size_t p = static_cast<std::size_t>(r * head_dim + j);
        const std::size_t kr = static_cast<std::size_t>((t * kHeads + h) * head_dim + j);
        const std::size_t vi = static_cast<std::size_t>((t * kHeads + h) * head_dim + j);
        ASSERT_TRUE(same_bits(pages.k[p], ref[kr])) << "t " << t << " h " << h << " j " << j;
        ASSERT_TRUE(same_bits(pages.v[p], in.v[vi])) << "t " << t << " h " << h << " j " << j;
      }
    }
  for (std::size_t r = 0; r < written.size(); ++r) {
    if (written[r]) continue;
    for (std::int64_t j = 0; j < head_dim; ++j) {
      const std::size_t p = r * static_cast<std::size_t>(head_dim) + static_cast<std::size_t>(j);
      ASSERT_TRUE(same_bits(pages.k[p], sentinel<T>())) << "row " << r;
      ASSERT_TRUE(same_bits(pages.v[p], sentinel<T>())) << "row " << r;
    }
  }
}

// dequantize(cache) vs the rotated rows, and bit-equality with the unfused quantize pass of the
// same kernel path.
template <typename T>
void check_int8_row(const T* x, const std::int8_t* q, float scale, std::int64_t n) {
  // The scale in the row's compute type (double for double rows), rounded to float once.
  using C = std::conditional_t<std::is_same<T, double>::value, double, float>;
  C amax = 0;
  for (std::int64_t j = 0; j < n; ++j) amax = std::max(amax, std::abs(static_cast<C>(x[j])));
  ASSERT_EQ(scale, static_cast<float>(amax / C(127)));
  std::vector<std::int8_t> q2(static_cast<std::size_t>(n));
  // The same kernel the call ran (the active path's, for this row length).
  const auto kernel =
      ropescale::detail::kernel_table<T>(ropescale::active_kernel_path()).quantize_int8_kernel(n);
  ASSERT_EQ(kernel(x, n, q2.data()), scale);
  for (std::int64_t j = 0; j < n; ++j) {
    ASSERT_EQ(q[j], q2[static_cast<std::size_t>(j)]) << "j " << j;
    ASSERT_GE(q[j], -127);
    const float err = std::abs(static_cast<float>(q[j]) * scale - static_cast<float>(x[j]));
    ASSERT_LE(err, scale / 2 + 1e-6f * amax) << "j " << j;
  }
}

template <typename T, typename A>
void check_int8(const A& angles, std::int64_t head_dim, PairLayout layout, PageLayout pl) {
  SCOPED_TRACE(std::string(to_string(layout)) + " " + to_string(pl) + " head_dim " +
               std::to_string(head_dim));
  const Inputs<T> in(head_dim, 11);
  const std::vector<T> v_before = in.v;
  Pages<std::int8_t> pages(head_dim, pl);
  ropescale::throw_if_error(ropescale::rotate_and_append_kv(angles, kPositions, in.kv, in.vv,
                                                            kSlots, pages.cache, layout));
  EXPECT_EQ(in.v, v_before);
  const std::vector<T> ref = rotated_k(angles, in, layout);
  std::vector<bool> written(static_cast<std::size_t>(kBlocks * kBlockSize * kHeads), false);
  for (std::int64_t t = 0; t < kTokens; ++t)
    for (std::int64_t h = 0; h < kHeads; ++h) {
      SCOPED_TRACE("t " + std::to_string(t) + " h " + std::to_string(h));
      const std::int64_t r = drawn_row(pl, kSlots[t], h);
      written[static_cast<std::size_t>(r)] = true;
      const std::size_t p = static_cast<std::size_t>(r * head_dim);
      const std::size_t x = static_cast<std::size_t>((t * kHeads + h) * head_dim);
      check_int8_row(ref.data() + x, pages.k.data() + p, pages.ks[static_cast<std::size_t>(r)],
                     head_dim);
      check_int8_row(in.v.data() + x, pages.v.data() + p, pages.vs[static_cast<std::size_t>(r)],
                     head_dim);
    }
  for (std::size_t r = 0; r < written.size(); ++r) {
    if (written[r]) continue;
    ASSERT_EQ(pages.ks[r], kScaleSentinel);
    ASSERT_EQ(pages.vs[r], kScaleSentinel);
    for (std::int64_t j = 0; j < head_dim; ++j) {
      const std::size_t p = r * static_cast<std::size_t>(head_dim) + static_cast<std::size_t>(j);
      ASSERT_EQ(pages.k[p], sentinel<std::int8_t>());
      ASSERT_EQ(pages.v[p], sentinel<std::int8_t>());
    }
  }
}

template <typename T>
class KvCacheTyped : public ::testing::Test {};
using StorageTypes = ::testing::Types<float, double, Eigen::half, Eigen::bfloat16>;
TYPED_TEST_SUITE(KvCacheTyped, StorageTypes, ropescale_test::StorageName);

constexpr PairLayout kPairLayouts[] = {PairLayout::kHalfSplit, PairLayout::kInterleaved};
constexpr PageLayout kPageLayouts[] = {PageLayout::kHeadMajor, PageLayout::kTokenMajor};

TYPED_TEST(KvCacheTyped, FusedEqualsRotateThenCopyBitForBit) {
  using T = TypeParam;
  for (PairLayout layout : kPairLayouts)
    for (PageLayout pl : kPageLayouts) {
      check_plain<T>(angles_40().freqs, 40, layout, pl);
      check_plain<T>(angles_128().freqs, 128, layout, pl);
      if (std::is_same<T, double>::value) {
        check_plain<T>(angles_40().cache_d, 40, layout, pl);
      } else {
        check_plain<T>(angles_40().cache, 40, layout, pl);
        check_plain<T>(angles_128().cache, 128, layout, pl);
      }
    }
}

TYPED_TEST(KvCacheTyped, Int8DequantizesWithinHalfAStep) {
  using T = TypeParam;
  for (PairLayout layout : kPairLayouts)
    for (PageLayout pl : kPageLayouts) {
      check_int8<T>(angles_40().freqs, 40, layout, pl);
      check_int8<T>(angles_128().freqs, 128, layout, pl);
      if (!std::is_same<T, double>::value) check_int8<T>(angles_128().cache, 128, layout, pl);
    }
}

TEST(KvCache, Int8ZeroHeadHasScaleZeroAndNoNan) {
  const Angles& a = angles_40();
  Inputs<float> in(40, 3);
  for (std::int64_t j = 0; j < 40; ++j) {  // token 1, head 2 of k and of v: all zeros
    in.k[static_cast<std::size_t>((2 * kTokens + 1) * 40 + j)] = 0.0f;
    in.v[static_cast<std::size_t>((1 * kHeads + 2) * 40 + j)] = 0.0f;
  }
  Pages<std::int8_t> pages(40, PageLayout::kTokenMajor);
  ropescale::throw_if_error(ropescale::rotate_and_append_kv(
      a.freqs, kPositions, in.kv, in.vv, kSlots, pages.cache, PairLayout::kHalfSplit));
  const std::int64_t r = pages.cache.row(kSlots[1], 2);
  EXPECT_EQ(pages.ks[static_cast<std::size_t>(r)], 0.0f);
  EXPECT_EQ(pages.vs[static_cast<std::size_t>(r)], 0.0f);
  for (std::int64_t j = 0; j < 40; ++j) {
    EXPECT_EQ(pages.k[static_cast<std::size_t>(r * 40 + j)], 0);
    EXPECT_EQ(pages.v[static_cast<std::size_t>(r * 40 + j)], 0);
  }
  for (float s : pages.ks) EXPECT_FALSE(std::isnan(s));
}

TEST(KvCache, Int8ExtremesStayInRange) {
  const float row[4] = {-1.0f, 1.0f, 0.5f, -0.25f};
  std::int8_t q[4];
  const float scale = ropescale::detail::quantize_int8_row(row, 4, q);
  EXPECT_EQ(scale, 1.0f / 127.0f);
  EXPECT_EQ(q[0], -127);
  EXPECT_EQ(q[1], 127);
  const float ties[4] = {0.5f, 1.5f, -2.5f, 127.0f};  // scale 1: exact ties, rounded to even
  EXPECT_EQ(ropescale::detail::quantize_int8_row(ties, 4, q), 1.0f);
  EXPECT_EQ(q[0], 0);
  EXPECT_EQ(q[1], 2);
  EXPECT_EQ(q[2], -2);
  EXPECT_EQ(q[3], 127);
  const float bad[3] = {std::nanf(""), 1.0f, -2.0f};  // defined: values stay in range
  ropescale::detail::quantize_int8_row(bad, 3, q);
  for (int j = 0; j < 3; ++j) EXPECT_TRUE(q[j] >= -127 && q[j] <= 127) << j;
}

// A row whose absmax is below 127 * 2^-126: 127 / absmax used to overflow to infinity and every
// value came back as +-127 (0 as -absmax). The scale is floored at 2^-126 instead.
TEST(KvCache, Int8TinyRowKeepsHalfAStep) {
  const Angles& a = angles_40();
  Inputs<float> in(40, 5);
  const float tiny[4] = {3.0e-37f, -1.0e-38f, 0.0f, 2.5e-40f};  // normal, normal, zero, subnormal
  for (std::int64_t t = 0; t < kTokens; ++t)
    for (std::int64_t h = 0; h < kHeads; ++h)
      for (std::int64_t j = 0; j < 40; ++j)
        in.v[static_cast<std::size_t>((t * kHeads + h) * 40 + j)] = tiny[j % 4] * (1 + h);
  Pages<std::int8_t> pages(40, PageLayout::kHeadMajor);
  ropescale::throw_if_error(ropescale::rotate_and_append_kv(
      a.cache, kPositions, in.kv, in.vv, kSlots, pages.cache, PairLayout::kHalfSplit));
  for (std::int64_t t = 0; t < kTokens; ++t)
    for (std::int64_t h = 0; h < kHeads; ++h) {
      const std::int64_t r = pages.cache.row(kSlots[t], h);
      const float scale = pages.vs[static_cast<std::size_t>(r)];
      ASSERT_TRUE(std::isfinite(scale)) << "t " << t << " h " << h;
      for (std::int64_t j = 0; j < 40; ++j) {
        const double x = in.v[static_cast<std::size_t>((t * kHeads + h) * 40 + j)];
        const double back = pages.v[static_cast<std::size_t>(r * 40 + j)] * double{scale};
        ASSERT_LE(std::abs(back - x), scale / 2.0) << "t " << t << " h " << h << " j " << j;
      }
      ASSERT_EQ(scale, std::numeric_limits<float>::min());  // the floor, 2^-126
    }
}

// Finite doubles beyond float's range: the scale (absmax / 127) fits in float up to
// 127 * FLT_MAX, so such rows are quantized in double (they used to be narrowed to infinity and
// +1e39 came back as -127); past that the call is refused by name, nothing written.
TEST(KvCache, Int8DoubleRowsBeyondFloatRange) {
  const Angles& a = angles_40();
  Inputs<double> in(40, 9);
  for (std::size_t i = 0; i < in.v.size(); ++i) in.v[i] *= 1e39;
  in.v[7] = 1e40;  // the row's absmax: stored as 127
  Pages<std::int8_t> pages(40, PageLayout::kTokenMajor);
  ropescale::throw_if_error(ropescale::rotate_and_append_kv(
      a.cache_d, kPositions, in.kv, in.vv, kSlots, pages.cache, PairLayout::kInterleaved));
  for (std::int64_t t = 0; t < kTokens; ++t)
    for (std::int64_t h = 0; h < kHeads; ++h) {
      const std::int64_t r = pages.cache.row(kSlots[t], h);
      const float scale = pages.vs[static_cast<std::size_t>(r)];
      ASSERT_TRUE(std::isfinite(scale)) << "t " << t << " h " << h;
      for (std::int64_t j = 0; j < 40; ++j) {
        const double x = in.v[static_cast<std::size_t>((t * kHeads + h) * 40 + j)];
        const double back = pages.v[static_cast<std::size_t>(r * 40 + j)] * double{scale};
        ASSERT_LE(std::abs(back - x), scale / 2.0 * (1 + 1e-6)) << "t " << t << " h " << h;
      }
    }
  EXPECT_EQ(pages.v[static_cast<std::size_t>(pages.cache.row(kSlots[0], 0) * 40 + 7)], 127);

  for (const char* which : {"v", "k"}) {
    Inputs<double> big(40, 9);
    std::vector<double>& x = std::string(which) == "v" ? big.v : big.k;
    // k is [heads, tokens, dim]: token 3 head 1 is (1 * kTokens + 3); v is [tokens, heads, dim].
    const std::size_t at =
        std::string(which) == "v" ? (3 * kHeads + 1) * 40 + 5 : (1 * kTokens + 3) * 40 + 5;
    x[at] = -1e41;  // absmax / 127 > FLT_MAX
    Pages<std::int8_t> p(40, PageLayout::kTokenMajor);
    const Status s = ropescale::rotate_and_append_kv(a.cache_d, kPositions, big.kv, big.vv, kSlots,
                                                     p.cache, PairLayout::kHalfSplit);
    ASSERT_FALSE(s.ok()) << which;
    EXPECT_EQ(s.code(), ErrorCode::kOutOfRange);
    EXPECT_NE(s.message().find(std::string(which) + "[token 3, head 1] = "), std::string::npos)
        << s.message();
    EXPECT_NE(s.message().find("must fit in float"), std::string::npos) << s.message();
    for (std::int8_t q : p.k) ASSERT_EQ(q, sentinel<std::int8_t>());
    for (std::int8_t q : p.v) ASSERT_EQ(q, sentinel<std::int8_t>());
    for (float f : p.ks) ASSERT_EQ(f, kScaleSentinel);
    for (float f : p.vs) ASSERT_EQ(f, kScaleSentinel);
  }
}

// The contract for a row with a NaN or an infinity: scale NaN and every q 0 (so the whole row
// dequantizes to NaN, never to a finite value); the other rows are untouched by it.
TEST(KvCache, Int8NonFiniteRowIsNanScaleAndZeros) {
  const Angles& a = angles_40();
  Inputs<float> in(40, 13);
  in.v[static_cast<std::size_t>((1 * kHeads + 0) * 40 + 3)] =
      std::numeric_limits<float>::infinity();
  in.v[static_cast<std::size_t>((2 * kHeads + 2) * 40 + 9)] =
      -std::numeric_limits<float>::infinity();
  in.v[static_cast<std::size_t>((4 * kHeads + 1) * 40 + 0)] = std::nanf("");
  in.k[static_cast<std::size_t>((1 * kTokens + 3) * 40 + 33)] = std::nanf("");  // pass-through
  Pages<std::int8_t> pages(40, PageLayout::kHeadMajor);
  ropescale::throw_if_error(ropescale::rotate_and_append_kv(
      a.cache, kPositions, in.kv, in.vv, kSlots, pages.cache, PairLayout::kHalfSplit));
  const auto bad = [](std::int64_t t, std::int64_t h, bool k) {
    return k ? (t == 3 && h == 1)
             : ((t == 1 && h == 0) || (t == 2 && h == 2) || (t == 4 && h == 1));
  };
  for (int k = 0; k < 2; ++k)
    for (std::int64_t t = 0; t < kTokens; ++t)
      for (std::int64_t h = 0; h < kHeads; ++h) {
        const std::int64_t r = pages.cache.row(kSlots[t], h);
        const float scale = (k ? pages.ks : pages.vs)[static_cast<std::size_t>(r)];
        const std::vector<std::int8_t>& q = k ? pages.k : pages.v;
        if (bad(t, h, k)) {
          EXPECT_TRUE(std::isnan(scale)) << "k " << k << " t " << t << " h " << h;
          for (std::int64_t j = 0; j < 40; ++j)
            ASSERT_EQ(q[static_cast<std::size_t>(r * 40 + j)], 0) << "t " << t << " j " << j;
        } else {
          EXPECT_TRUE(std::isfinite(scale) && scale > 0) << "k " << k << " t " << t << " h " << h;
        }
      }
}

// Appends token t of `in` alone (one decode step): position kPositions[t], slot slots[t].
template <typename Slot>
void append_token(const RotaryCache& angles, const Inputs<float>& in, std::int64_t t,
                  const Slot* slots, const PagedKVCache<float>& cache) {
  const auto one = [t](const HeadsView<const float>& x) {
    return HeadsView<const float>{
        x.data + t * x.token_stride, 1, x.heads, x.head_dim, x.token_stride, x.head_stride};
  };
  ropescale::throw_if_error(ropescale::rotate_and_append_kv(
      angles, kPositions + t, one(in.kv), one(in.vv), slots + t, cache, PairLayout::kHalfSplit));
}

TEST(KvCache, DecodeBatchInt32SlotsAndMatchesTwoCalls) {
  // Two calls of one token each == one call of two tokens (decode appends are independent).
  const Angles& a = angles_128();
  const Inputs<float> in(128, 5);
  Pages<float> one(128, PageLayout::kHeadMajor), two(128, PageLayout::kHeadMajor);
  const std::int32_t slots32[kTokens] = {13, 2, 7, 8, 0};
  ropescale::throw_if_error(ropescale::rotate_and_append_kv(
      a.cache, kPositions, in.kv, in.vv, slots32, one.cache, PairLayout::kHalfSplit));
  for (std::int64_t t = 0; t < kTokens; ++t) append_token(a.cache, in, t, kSlots, two.cache);
  EXPECT_EQ(0, std::memcmp(one.k.data(), two.k.data(), one.k.size() * sizeof(float)));
  EXPECT_EQ(0, std::memcmp(one.v.data(), two.v.data(), one.v.size() * sizeof(float)));
}

// A prefill chunk written as blocks of consecutive slots inside one page (the fused pass copies
// V in runs and rotates K block by block): every row against rotate_out (int8: against the
// dispatched quantization of those rows), for both page layouts and both V layouts, with blocks
// cut by page boundaries and by a padding token; rows no token owns keep their sentinel.
template <typename T, typename S>
void check_prefill_blocks(PageLayout pl, bool v_heads_first) {
  SCOPED_TRACE(std::string(to_string(pl)) + (v_heads_first ? " v [H,T,D]" : " v [T,H,D]"));
  const Angles& a = angles_40();
  constexpr std::int64_t tokens = 11, heads = 2, d = 40, blocks = 5, bs = 4;
  std::vector<T> k(static_cast<std::size_t>(tokens * heads * d)), v(k.size());
  std::mt19937 rng(3);
  std::normal_distribution<float> nd;
  for (T& x : k) x = static_cast<T>(nd(rng));
  for (T& x : v) x = static_cast<T>(nd(rng));
  const auto kv = HeadsView<const T>::tokens_heads_dim(k.data(), tokens, heads, d);
  const auto vv = v_heads_first ? HeadsView<const T>::heads_tokens_dim(v.data(), tokens, heads, d)
                                : HeadsView<const T>::tokens_heads_dim(v.data(), tokens, heads, d);
  std::vector<std::int64_t> pos(tokens), slots(tokens);
  for (std::int64_t t = 0; t < tokens; ++t) {
    pos[static_cast<std::size_t>(t)] = 3 + t;
    slots[static_cast<std::size_t>(t)] = 2 + t;  // blocks [2, 3], [4, 8), [8, 12), [12]
  }
  slots[6] = kPaddingSlot;  // cuts the block [4, 8) in two
  const std::size_t rows = static_cast<std::size_t>(blocks * bs * heads);
  std::vector<S> kp(rows * d, sentinel<S>()), vp = kp;
  std::vector<float> ks(rows, kScaleSentinel), vs = ks;
  PagedKVCache<S> cache;
  cache.k_pages = kp.data();
  cache.v_pages = vp.data();
  if (std::is_same<S, std::int8_t>::value) {
    cache.k_scales = ks.data();
    cache.v_scales = vs.data();
  }
  cache.num_blocks = blocks;
  cache.block_size = bs;
  cache.num_kv_heads = heads;
  cache.head_dim = d;
  cache.page_layout = pl;
  ASSERT_TRUE(ropescale::rotate_and_append_kv(a.cache, pos.data(), kv, vv, slots.data(), cache,
                                              PairLayout::kHalfSplit)
                  .ok());
  std::vector<T> ref(k.size());
  ASSERT_TRUE(ropescale::rotate_out(a.cache, pos.data(), kv,
                                    HeadsView<T>::tokens_heads_dim(ref.data(), tokens, heads, d),
                                    PairLayout::kHalfSplit)
                  .ok());
  const auto quantize =
      ropescale::detail::kernel_table<T>(ropescale::active_kernel_path()).quantize_int8_kernel(d);
  std::vector<bool> written(rows, false);
  for (std::int64_t t = 0; t < tokens; ++t) {
    const std::int64_t slot = slots[static_cast<std::size_t>(t)];
    if (slot == kPaddingSlot) continue;
    for (std::int64_t h = 0; h < heads; ++h) {
      const std::int64_t r = cache.row(slot, h);
      written[static_cast<std::size_t>(r)] = true;
      const T* kr = ref.data() + (t * heads + h) * d;
      const T* vr = vv.data + t * vv.token_stride + h * vv.head_stride;
      if constexpr (std::is_same<S, std::int8_t>::value) {
        std::int8_t q[d];
        const float kscale = quantize(kr, d, q);
        ASSERT_EQ(std::memcmp(q, kp.data() + r * d, d), 0) << "k t " << t << " h " << h;
        ASSERT_TRUE(same_bits(ks[static_cast<std::size_t>(r)], kscale));
        const float vscale = quantize(vr, d, q);
        ASSERT_EQ(std::memcmp(q, vp.data() + r * d, d), 0) << "v t " << t << " h " << h;
        ASSERT_TRUE(same_bits(vs[static_cast<std::size_t>(r)], vscale));
      } else {
        ASSERT_EQ(std::memcmp(kr, kp.data() + r * d, sizeof(T) * d), 0) << "t " << t << " h " << h;
        ASSERT_EQ(std::memcmp(vr, vp.data() + r * d, sizeof(T) * d), 0) << "t " << t << " h " << h;
      }
    }
  }
  for (std::size_t r = 0; r < rows; ++r) {
    if (written[r]) continue;
    for (std::int64_t j = 0; j < d; ++j) {
      ASSERT_TRUE(same_bits(kp[r * d + static_cast<std::size_t>(j)], sentinel<S>())) << r;
      ASSERT_TRUE(same_bits(vp[r * d + static_cast<std::size_t>(j)], sentinel<S>())) << r;
    }
  }
}

TEST(KvCache, PrefillBlocksAcrossPagesMatchTheOracle) {
  for (PageLayout pl : {PageLayout::kHeadMajor, PageLayout::kTokenMajor})
    for (bool v_heads_first : {false, true}) {
      check_prefill_blocks<float, float>(pl, v_heads_first);
      check_prefill_blocks<Eigen::bfloat16, Eigen::bfloat16>(pl, v_heads_first);
      check_prefill_blocks<Eigen::half, std::int8_t>(pl, v_heads_first);
    }
}

TEST(KvCache, PaddingSlotsAreSkipped) {
  // A batch with two padding tokens (vLLM's slot -1) writes exactly what the batch of the other
  // three writes, and nothing else; padding tokens may share the padding slot.
  const Angles& a = angles_128();
  const Inputs<float> in(128, 5);
  Pages<float> padded(128, PageLayout::kTokenMajor), plain(128, PageLayout::kTokenMajor);
  const std::int64_t with_padding[kTokens] = {13, ropescale::kPaddingSlot, 7,
                                              ropescale::kPaddingSlot, 0};
  ropescale::throw_if_error(ropescale::rotate_and_append_kv(
      a.cache, kPositions, in.kv, in.vv, with_padding, padded.cache, PairLayout::kHalfSplit));
  for (std::int64_t t : {0, 2, 4}) append_token(a.cache, in, t, with_padding, plain.cache);
  EXPECT_EQ(0, std::memcmp(padded.k.data(), plain.k.data(), padded.k.size() * sizeof(float)));
  EXPECT_EQ(0, std::memcmp(padded.v.data(), plain.v.data(), padded.v.size() * sizeof(float)));
  std::int64_t untouched = 0;  // 3 tokens x kHeads rows written, every other value a sentinel
  for (float x : padded.k) untouched += x == sentinel<float>() ? 1 : 0;
  EXPECT_EQ(untouched, static_cast<std::int64_t>(padded.k.size()) - 3 * kHeads * 128);
}

TEST(KvCache, ZeroTokensWritesNothing) {
  const Angles& a = angles_40();
  Pages<float> pages(40, PageLayout::kHeadMajor);
  const HeadsView<const float> empty{nullptr, 0, kHeads, 40, kHeads * 40, 40};
  EXPECT_TRUE(ropescale::rotate_and_append_kv(
                  a.freqs, static_cast<const std::int64_t*>(nullptr), empty, empty,
                  static_cast<const std::int64_t*>(nullptr), pages.cache, PairLayout::kHalfSplit)
                  .ok());
  for (float x : pages.k) ASSERT_EQ(x, sentinel<float>());
}

// The README's snippet, with its buffers.
TEST(KvCache, ReadmeSnippet) {
  const std::int64_t num_blocks = 128;
  std::vector<std::int8_t> kp(static_cast<std::size_t>(num_blocks * 16 * 8 * 128)), vp(kp.size());
  std::vector<float> kscale(static_cast<std::size_t>(num_blocks * 16 * 8)), vscale(kscale.size());
  std::vector<Eigen::bfloat16> kn(32 * 8 * 128, Eigen::bfloat16(0.5f)), vn(kn.size());
  std::int8_t* k_pages = kp.data();
  std::int8_t* v_pages = vp.data();
  float* k_scales = kscale.data();
  float* v_scales = vscale.data();
  const Eigen::bfloat16* k_new = kn.data();
  const Eigen::bfloat16* v_new = vn.data();
  std::int64_t positions[32];
  std::int32_t slot_mapping[32];
  for (int s = 0; s < 32; ++s) {  // sequence s owns blocks 4s .. 4s + 3 and is 20 + s long
    positions[s] = 20 + s;
    slot_mapping[s] = static_cast<std::int32_t>((4 * s + (20 + s) / 16) * 16 + (20 + s) % 16);
  }
  const RotaryCache& rotary_cache = angles_128().cache;

  ropescale::PagedKVCache<std::int8_t> cache;
  cache.k_pages = k_pages;
  cache.v_pages = v_pages;
  cache.k_scales = k_scales;
  cache.v_scales = v_scales;
  cache.num_blocks = num_blocks;
  cache.block_size = 16;
  cache.num_kv_heads = 8;
  cache.head_dim = 128;
  cache.page_layout = ropescale::PageLayout::kTokenMajor;
  auto k = ropescale::HeadsView<const Eigen::bfloat16>::tokens_heads_dim(k_new, 32, 8, 128);
  auto v = ropescale::HeadsView<const Eigen::bfloat16>::tokens_heads_dim(v_new, 32, 8, 128);
  ropescale::throw_if_error(ropescale::rotate_and_append_kv(
      rotary_cache, positions, k, v, slot_mapping, cache, ropescale::PairLayout::kHalfSplit));

  for (int s = 0; s < 32; ++s)
    for (int h = 0; h < 8; ++h) {
      const std::size_t r = static_cast<std::size_t>(cache.row(slot_mapping[s], h));
      EXPECT_GT(kscale[r], 0.0f);
      EXPECT_EQ(vscale[r], 0.0f);  // v_new is zero
    }
}

// ---------------------------------------------------------------------------------------------
// Hostile input: one case per rule, the message names the argument; nothing is written.
// ---------------------------------------------------------------------------------------------

struct Call {
  std::vector<std::int64_t> positions{kPositions, kPositions + kTokens};
  std::vector<std::int64_t> slots{kSlots, kSlots + kTokens};
  Inputs<float> in{40, 1};
  HeadsView<const float> k = in.kv, v = in.vv;
  Pages<std::int8_t> pages{40, PageLayout::kHeadMajor};
  PagedKVCache<std::int8_t> cache = pages.cache;
  PairLayout layout = PairLayout::kHalfSplit;
  const std::int64_t* pos_ptr() const { return positions.empty() ? nullptr : positions.data(); }
  const std::int64_t* slot_ptr() const { return slots.empty() ? nullptr : slots.data(); }
  Status run(const RotaryCache& angles) const {
    return ropescale::rotate_and_append_kv(angles, pos_ptr(), k, v, slot_ptr(), cache, layout);
  }
};

void expect_refused(const Call& c, ErrorCode code, const std::string& want) {
  const Status s = c.run(angles_40().cache);
  ASSERT_FALSE(s.ok()) << want;
  EXPECT_EQ(s.code(), code) << s.message();
  EXPECT_NE(s.message().find(want), std::string::npos)
      << "got: " << s.message() << "\nwant: " << want;
  for (std::int8_t x : c.pages.k) ASSERT_EQ(x, sentinel<std::int8_t>()) << want;
  for (std::int8_t x : c.pages.v) ASSERT_EQ(x, sentinel<std::int8_t>()) << want;
  for (float x : c.pages.ks) ASSERT_EQ(x, kScaleSentinel) << want;
}

TEST(KvCacheHostile, BlockSizeNotPositive) {
  Call c;
  c.cache.block_size = 0;
  expect_refused(c, ErrorCode::kInvalidArgument, "cache.block_size = 0: must be > 0");
}
TEST(KvCacheHostile, NumBlocksNegative) {
  Call c;
  c.cache.num_blocks = -1;
  expect_refused(c, ErrorCode::kInvalidArgument, "cache.num_blocks = -1");
}
TEST(KvCacheHostile, CacheSizeOverflows) {
  Call c;
  c.cache.num_blocks = std::int64_t{1} << 40;
  c.cache.block_size = std::int64_t{1} << 20;
  expect_refused(c, ErrorCode::kInvalidArgument, "overflows int64");
}
TEST(KvCacheHostile, NumKvHeadsNotPositive) {
  Call c;
  c.cache.num_kv_heads = 0;
  expect_refused(c, ErrorCode::kInvalidArgument, "cache.num_kv_heads = 0");
}
TEST(KvCacheHostile, PageLayoutUnknown) {
  Call c;
  c.cache.page_layout = static_cast<PageLayout>(7);
  expect_refused(c, ErrorCode::kInvalidArgument, "cache.page_layout = 7");
}
TEST(KvCacheHostile, PairLayoutUnknown) {
  Call c;
  c.layout = static_cast<PairLayout>(5);
  expect_refused(c, ErrorCode::kInvalidArgument, "layout = 5");
}
TEST(KvCacheHostile, HeadCountMismatch) {
  Call c;
  c.cache.num_kv_heads = 2;
  expect_refused(c, ErrorCode::kInvalidArgument, "k.heads = 3: must equal cache.num_kv_heads (2)");
}
TEST(KvCacheHostile, HeadDimMismatch) {
  Call c;
  c.cache.head_dim = 36;
  expect_refused(c, ErrorCode::kInvalidArgument, "k.head_dim = 40: must equal cache.head_dim (36)");
}
TEST(KvCacheHostile, VHeadsMismatch) {
  Call c;
  c.v.heads = 2;
  expect_refused(c, ErrorCode::kInvalidArgument, "v.heads = 2");
}
TEST(KvCacheHostile, HeadDimBelowRotaryDim) {
  Call c;
  c.k.head_dim = 30;
  expect_refused(c, ErrorCode::kInvalidArgument, "k.head_dim = 30: must be >= rotary_dim (32)");
}
TEST(KvCacheHostile, TokenCountMismatch) {
  Call c;
  c.v.tokens = 4;
  expect_refused(c, ErrorCode::kInvalidArgument, "v.tokens = 4: must equal k.tokens (5)");
}
TEST(KvCacheHostile, NullKeyData) {
  Call c;
  c.k.data = nullptr;
  expect_refused(c, ErrorCode::kInvalidArgument, "k.data = null");
}
TEST(KvCacheHostile, NullPages) {
  Call c;
  c.cache.k_pages = nullptr;
  expect_refused(c, ErrorCode::kInvalidArgument, "cache.k_pages = null");
  Call d;
  d.cache.v_pages = nullptr;
  expect_refused(d, ErrorCode::kInvalidArgument, "cache.v_pages = null");
}
TEST(KvCacheHostile, Int8WithoutScales) {
  Call c;
  c.cache.k_scales = nullptr;
  expect_refused(c, ErrorCode::kInvalidArgument,
                 "cache.k_scales = null: must not be null for an int8");
  Call d;
  d.cache.v_scales = nullptr;
  expect_refused(d, ErrorCode::kInvalidArgument, "cache.v_scales = null");
}
TEST(KvCacheHostile, NullPositions) {
  Call c;
  c.positions.clear();
  expect_refused(c, ErrorCode::kInvalidArgument, "positions = null");
}
TEST(KvCacheHostile, PositionOutsideTheAngleSource) {
  Call c;
  c.positions[2] = kFar + 1;
  expect_refused(c, ErrorCode::kOutOfRange, "positions[2] = 100001: outside the cache");
  Call d;
  d.positions[0] = -4;
  expect_refused(d, ErrorCode::kInvalidArgument, "positions[0] = -4: must be >= 0");
}
TEST(KvCacheHostile, NullSlotMapping) {
  Call c;
  c.slots.clear();
  expect_refused(c, ErrorCode::kInvalidArgument, "slot_mapping = null");
}
TEST(KvCacheHostile, NegativeSlot) {
  Call c;
  c.slots[3] = -3;
  expect_refused(c, ErrorCode::kInvalidArgument,
                 "slot_mapping[3] = -3: must be >= 0, or kPaddingSlot (-1) for a padding token");
}
TEST(KvCacheHostile, SlotBeyondThePages) {
  Call c;
  c.slots[4] = kBlocks * kBlockSize;
  expect_refused(c, ErrorCode::kOutOfRange,
                 "slot_mapping[4] = 16: beyond the pages: must be < num_blocks * block_size (16)");
}
TEST(KvCacheHostile, DuplicateSlot) {
  Call c;
  c.slots[4] = c.slots[1];
  expect_refused(c, ErrorCode::kInvalidArgument, "slot_mapping[4] = 2: duplicates slot_mapping[1]");
}
// Every way the duplicate check runs: slots in increasing order (no copy), a small batch (pairs
// compared), a large one out of order (a sorted copy); each names the first two tokens.
TEST(KvCacheHostile, DuplicateSlotInEveryBatchShape) {
  const RotaryCache& angles = angles_40().cache;
  for (const std::int64_t tokens : {5, 40, 100, 300}) {
    for (const bool reversed : {false, true}) {
      SCOPED_TRACE(std::to_string(tokens) + (reversed ? " reversed" : " increasing"));
      std::vector<std::int64_t> pos(static_cast<std::size_t>(tokens), 1), slots(pos.size());
      for (std::int64_t t = 0; t < tokens; ++t)
        slots[static_cast<std::size_t>(t)] = 2 * (reversed ? tokens - 1 - t : t);
      slots[1] = kPaddingSlot;
      std::vector<float> k(static_cast<std::size_t>(tokens * 40), 0.5f), v = k;
      std::vector<float> kp(static_cast<std::size_t>(2 * tokens * 40), 9.0f), vp = kp;
      PagedKVCache<float> cache;
      cache.k_pages = kp.data();
      cache.v_pages = vp.data();
      cache.num_blocks = 2 * tokens;
      cache.block_size = 1;
      cache.num_kv_heads = 1;
      cache.head_dim = 40;
      const auto kv = HeadsView<const float>::tokens_heads_dim(k.data(), tokens, 1, 40);
      const auto vv = HeadsView<const float>::tokens_heads_dim(v.data(), tokens, 1, 40);
      EXPECT_TRUE(ropescale::rotate_and_append_kv(angles, pos.data(), kv, vv, slots.data(), cache,
                                                  PairLayout::kHalfSplit)
                      .ok());
      std::fill(kp.begin(), kp.end(), 9.0f);
      std::fill(vp.begin(), vp.end(), 9.0f);
      const std::int64_t a = tokens / 3 + 1, b = tokens - 1;
      slots[static_cast<std::size_t>(b)] = slots[static_cast<std::size_t>(a)];
      const Status s = ropescale::rotate_and_append_kv(angles, pos.data(), kv, vv, slots.data(),
                                                       cache, PairLayout::kHalfSplit);
      ASSERT_FALSE(s.ok());
      const std::string want = "slot_mapping[" + std::to_string(b) +
                               "] = " + std::to_string(slots[static_cast<std::size_t>(a)]) +
                               ": duplicates slot_mapping[" + std::to_string(a) + "]";
      EXPECT_NE(s.message().find(want), std::string::npos) << s.message() << "\nwant: " << want;
      for (float x : kp) ASSERT_EQ(x, 9.0f);
      for (float x : vp) ASSERT_EQ(x, 9.0f);
    }
  }
}

// A batch of several sequences' chunks (increasing runs, out of order between them, more tokens
// than the pairwise check takes): accepted without a duplicate, and a slot shared by two runs is
// named with both tokens.
TEST(KvCacheHostile, DuplicateSlotAcrossSequenceRuns) {
  const RotaryCache& angles = angles_40().cache;
  constexpr std::int64_t runs = 3, per_run = 30, tokens = runs * per_run;
  std::vector<std::int64_t> pos(tokens, 1), slots(tokens);
  for (std::int64_t r = 0; r < runs; ++r)  // run 0 at slots 200.., run 1 at 0.., run 2 at 100..
    for (std::int64_t i = 0; i < per_run; ++i)
      slots[static_cast<std::size_t>(r * per_run + i)] = (r == 0 ? 200 : r == 1 ? 0 : 100) + i;
  std::vector<float> k(static_cast<std::size_t>(tokens * 40), 0.5f), v = k;
  std::vector<float> kp(static_cast<std::size_t>(300 * 40), 9.0f), vp = kp;
  PagedKVCache<float> cache;
  cache.k_pages = kp.data();
  cache.v_pages = vp.data();
  cache.num_blocks = 300 / 16;
  cache.block_size = 16;
  cache.num_kv_heads = 1;
  cache.head_dim = 40;
  const auto kv = HeadsView<const float>::tokens_heads_dim(k.data(), tokens, 1, 40);
  const auto vv = HeadsView<const float>::tokens_heads_dim(v.data(), tokens, 1, 40);
  EXPECT_TRUE(ropescale::rotate_and_append_kv(angles, pos.data(), kv, vv, slots.data(), cache,
                                              PairLayout::kHalfSplit)
                  .ok());
  std::fill(kp.begin(), kp.end(), 9.0f);
  slots[2 * per_run + 5] = 207;  // run 2 takes a slot of run 0 (token 7)
  slots[2 * per_run + 6] = 208;  // still increasing within run 2
  const Status s = ropescale::rotate_and_append_kv(angles, pos.data(), kv, vv, slots.data(), cache,
                                                   PairLayout::kHalfSplit);
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.argument(), "slot_mapping[" + std::to_string(2 * per_run + 5) + "]") << s.message();
  EXPECT_NE(s.message().find("duplicates slot_mapping[7]"), std::string::npos) << s.message();
  for (float x : kp) ASSERT_EQ(x, 9.0f);
}

TEST(KvCacheHostile, InputOverlapsPages) {
  Call c;
  // v read from the key pages themselves.
  c.v = HeadsView<const float>::tokens_heads_dim(reinterpret_cast<const float*>(c.pages.k.data()),
                                                 1, kHeads, 40);
  c.k.tokens = 1;
  c.positions.resize(1);
  c.slots.resize(1);
  expect_refused(c, ErrorCode::kInvalidArgument,
                 "v = \"overlapping buffer\": must not overlap cache.k_pages");
}
TEST(KvCacheHostile, KeyAndValuePagesShareMemory) {
  Call c;
  c.cache.v_pages = c.cache.k_pages + 40;
  expect_refused(c, ErrorCode::kInvalidArgument,
                 "cache.v_pages = \"overlapping buffer\": must not overlap cache.k_pages");
}
TEST(KvCacheHostile, ThrowingTwinThrowsTheSameError) {
  Call c;
  c.slots[0] = -2;
  try {
    ropescale::throw_if_error(ropescale::rotate_and_append_kv(
        angles_40().cache, c.pos_ptr(), c.k, c.v, c.slot_ptr(), c.cache, c.layout));
    FAIL() << "no throw";
  } catch (const ropescale::Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kInvalidArgument);
    EXPECT_NE(std::string(e.what()).find("slot_mapping[0] = -2"), std::string::npos) << e.what();
  }
}

// KVAppendPlan: the shapes checked once, then appends in pieces write what one
// rotate_and_append_kv writes, bit for bit (pages and scales), for every page type, both page
// layouts and both pair layouts, with pass-through channels and the compile-time pair count.
template <typename T, typename S>
void check_plan_matches_call(const Angles& a, PageLayout page_layout, PairLayout layout) {
  SCOPED_TRACE(std::string(ropescale::to_string(page_layout)) + " " + ropescale::to_string(layout) +
               " head_dim " + std::to_string(a.spec.head_dim));
  constexpr bool kScaled = !std::is_same<S, T>::value;
  const Inputs<T> in(a.spec.head_dim, 21);
  Pages<S> want(a.spec.head_dim, page_layout), got(a.spec.head_dim, page_layout);
  for (Pages<S>* p : {&want, &got})
    if (kScaled) {
      p->cache.k_scales = p->ks.data();
      p->cache.v_scales = p->vs.data();
    }
  ropescale::throw_if_error(ropescale::rotate_and_append_kv(a.cache, kPositions, in.kv, in.vv,
                                                            kSlots, want.cache, layout));
  const auto plan =
      ropescale::KVAppendPlan<T, S, RotaryCache>::make(a.cache, in.kv, in.vv, got.cache, layout)
          .value();
  EXPECT_EQ(plan.max_tokens(), kTokens);
  EXPECT_EQ(plan.path(), ropescale::active_kernel_path());
  // Tokens [0, 2) then [2, 5): k is [heads, tokens, dim], so a later token starts one row on.
  for (std::int64_t t0 : {std::int64_t{0}, std::int64_t{2}}) {
    const std::int64_t n = t0 == 0 ? 2 : kTokens - 2;
    ropescale::throw_if_error(plan.append(in.k.data() + t0 * in.kv.token_stride,
                                          in.v.data() + t0 * in.vv.token_stride, n, kPositions + t0,
                                          kSlots + t0));
  }
  ASSERT_EQ(want.k.size(), got.k.size());
  for (std::size_t i = 0; i < want.k.size(); ++i) {
    ASSERT_TRUE(same_bits(want.k[i], got.k[i])) << "k " << i;
    ASSERT_TRUE(same_bits(want.v[i], got.v[i])) << "v " << i;
  }
  for (std::size_t i = 0; i < want.ks.size(); ++i) {
    ASSERT_TRUE(same_bits(want.ks[i], got.ks[i])) << "k scale " << i;
    ASSERT_TRUE(same_bits(want.vs[i], got.vs[i])) << "v scale " << i;
  }
}

TEST(KvAppendPlan, AppendsWhatTheCallAppends) {
  for (const Angles* a : {&angles_128(), &angles_40()})
    for (PageLayout pl : {PageLayout::kHeadMajor, PageLayout::kTokenMajor})
      for (PairLayout layout : {PairLayout::kHalfSplit, PairLayout::kInterleaved}) {
        check_plan_matches_call<float, float>(*a, pl, layout);
        check_plan_matches_call<Eigen::bfloat16, Eigen::bfloat16>(*a, pl, layout);
        check_plan_matches_call<Eigen::bfloat16, std::int8_t>(*a, pl, layout);
        check_plan_matches_call<Eigen::bfloat16, ropescale::Fp8E4M3>(*a, pl, layout);
        check_plan_matches_call<double, std::int8_t>(*a, pl, layout);
      }
}

TEST(KvAppendPlan, RefusesByNameAndWritesNothing) {
  const Angles& a = angles_40();
  const Inputs<float> in(40, 3);
  Pages<float> pages(40, PageLayout::kHeadMajor);
  const std::vector<float> before = pages.k;
  using Plan = ropescale::KVAppendPlan<float, float, RotaryCache>;
  // make(): the shapes, the layout and the cache, as rotate_and_append_kv names them.
  HeadsView<const float> narrow = in.kv;
  narrow.head_dim = 36;  // the rows fit the strides; the cache holds 40
  EXPECT_EQ(
      Plan::make(a.cache, narrow, in.vv, pages.cache, PairLayout::kHalfSplit).status().argument(),
      "k.head_dim");
  EXPECT_EQ(Plan::make(a.cache, in.kv, in.vv, pages.cache, static_cast<PairLayout>(7))
                .status()
                .argument(),
            "layout");
  PagedKVCache<float> no_pages = pages.cache;
  no_pages.v_pages = nullptr;
  EXPECT_EQ(Plan::make(a.cache, in.kv, in.vv, no_pages, PairLayout::kHalfSplit).status().argument(),
            "cache.v_pages");
  // A shape-only view (data null) is a valid plan shape.
  HeadsView<const float> shape_k = in.kv, shape_v = in.vv;
  shape_k.data = nullptr;
  shape_v.data = nullptr;
  const Plan plan =
      Plan::make(a.cache, shape_k, shape_v, pages.cache, PairLayout::kHalfSplit).value();
  // append(): what a call changes.
  const float* k = in.k.data();
  const float* v = in.v.data();
  EXPECT_EQ(Plan().append(k, v, 1, kPositions, kSlots).argument(), "plan");
  EXPECT_EQ(plan.append(k, v, kTokens + 1, kPositions, kSlots).argument(), "tokens");
  EXPECT_EQ(plan.append(k, v, -1, kPositions, kSlots).argument(), "tokens");
  EXPECT_EQ(plan.append(nullptr, v, 1, kPositions, kSlots).argument(), "k");
  EXPECT_EQ(plan.append(k, nullptr, 1, kPositions, kSlots).argument(), "v");
  const std::int64_t far[1] = {kFar + 1};
  EXPECT_EQ(plan.append(k, v, 1, far, kSlots).argument(), "positions[0]");
  const std::int64_t twice[2] = {3, 3};
  EXPECT_EQ(plan.append(k, v, 2, kPositions, twice).argument(), "slot_mapping[1]");
  const std::int32_t beyond[1] = {static_cast<std::int32_t>(kBlocks * kBlockSize)};
  EXPECT_EQ(plan.append(k, v, 1, kPositions, beyond).argument(), "slot_mapping[0]");
  EXPECT_EQ(plan.append(pages.k.data() + 8, v, 1, kPositions, kSlots).argument(), "k");
  EXPECT_TRUE(plan.append(k, v, 0, kPositions, kSlots).ok());  // nothing to write
  EXPECT_EQ(pages.k, before);
  EXPECT_EQ(pages.v, before);
}

}  // namespace
