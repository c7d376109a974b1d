// Tests for ropescale/mrope.hpp (M-RoPE kernels) and the proportional pair layout of
// ropescale/rotary.hpp, against the scalar long double reference (tests/reference.hpp) written
// from Hugging Face's code:
//   M-RoPE: apply_multimodal_rotary_pos_emb (Qwen2-VL: cos/sin split by mrope_section, chunk k
//   from axis k % 3) and Qwen3-VL's apply_interleaved_mrope (pair i from h if i % 3 == 1 and
//   i < 3 s_h, from w if i % 3 == 2 and i < 3 s_w, else t); the angle of pair i is the position
//   of its axis times inv_freq_i, cos/sin times the attention factor, rotate_half pairing.
//   Proportional (Gemma 4): HF's inv_freq has head_dim/2 entries, zeros after the rotating ones,
//   and rotate_half runs over the whole head, which is ref_rotate_head with those 256 entries.
// Every storage type, both layouts, the cache and the on-the-fly paths.
#include <gtest/gtest.h>

#include <Eigen/Core>
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "reference.hpp"
#include "ropescale/mrope.hpp"
#include "ropescale/scaling.hpp"
#include "ropescale/training.hpp"

namespace {

using ropescale::FactorTable;
using ropescale::HeadsView;
using ropescale::MropeSections;
using ropescale::PairLayout;
using ropescale::RopeSpec;
using ropescale_test::ref_rotate_head;
using ropescale_test::RefLayout;

template <typename T>
double tolerance() {
  if (std::is_same<T, double>::value) return 1e-12;
  if (std::is_same<T, float>::value) return 1e-5;
  if (std::is_same<T, Eigen::half>::value) return 4e-3;
  return 3e-2;  // bfloat16
}

// A float cache stores cos/sin in float, whatever the storage type.
template <typename T, typename Angles>
double tolerance_for() {
  const double t = tolerance<T>();
  return std::is_same<Angles, ropescale::RotaryCache>::value ? std::max(t, 1e-5) : t;
}

template <typename T>
std::vector<T> random_values(std::size_t n, std::uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<double> d(0.0, 1.0);
  std::vector<T> out(n);
  for (T& v : out) v = static_cast<T>(d(rng));
  return out;
}

// A Qwen2-VL-like head (128 channels, theta 1e6) with YaRN x4 so the attention factor is not 1.
RopeSpec vl_spec() {
  RopeSpec s;
  s.head_dim = 128;
  s.rotary_dim = 128;
  s.rope_theta = 1e6;
  s.original_max_position = 4096;
  return s;
}
FactorTable vl_table() {
  ropescale::YarnParams y;
  y.factor = 4;
  return ropescale::yarn_factors(vl_spec(), y).value();
}

// Tokens: 0, 1 and 5 are text (t = h = w); the others are vision patches.
constexpr std::int64_t kTokens = 6;
const std::vector<std::int64_t> kPositions = {
    3, 4, 4, 4, 4,    9,  // temporal
    3, 4, 5, 6, 7,    9,  // height
    3, 4, 7, 5, 9000, 9,  // width
};

template <typename T, typename Angles>
void check_mrope(const Angles& angles, const MropeSections& sections, PairLayout layout) {
  const RopeSpec spec = vl_spec();
  const FactorTable table = vl_table();
  const std::int64_t heads = 2, d = spec.head_dim;
  const std::vector<T> x0 = random_values<T>(static_cast<std::size_t>(kTokens * heads * d), 7);
  std::vector<T> x = x0;
  ropescale::throw_if_error(
      ropescale::rotate_mrope(angles, sections, kPositions.data(),
                              HeadsView<T>::tokens_heads_dim(x.data(), kTokens, heads, d), layout));
  const Eigen::ArrayXd inv = table.inv_freq(spec).value();
  const long double m = table.attention_factor();
  for (std::int64_t t = 0; t < kTokens; ++t) {
    for (std::int64_t h = 0; h < heads; ++h) {
      std::vector<long double> in(static_cast<std::size_t>(d));
      for (std::int64_t j = 0; j < d; ++j)
        in[static_cast<std::size_t>(j)] = static_cast<long double>(
            static_cast<double>(x0[static_cast<std::size_t>((t * heads + h) * d + j)]));
      // Pair by pair: rotate with only pair i's frequency at its axis' position.
      std::vector<long double> want = in;
      for (std::int64_t i = 0; i < spec.pairs(); ++i) {
        std::vector<long double> f(static_cast<std::size_t>(spec.pairs()), 0.0L);
        f[static_cast<std::size_t>(i)] = inv[i];
        const std::int64_t pos = kPositions[static_cast<std::size_t>(
            sections.axes()[static_cast<std::size_t>(i)] * kTokens + t)];
        const std::vector<long double> r = ref_rotate_head(
            in, f, 1.0L, pos,
            layout == PairLayout::kHalfSplit ? RefLayout::kHalfSplit : RefLayout::kInterleaved);
        const std::size_t a = layout == PairLayout::kHalfSplit ? static_cast<std::size_t>(i)
                                                               : static_cast<std::size_t>(2 * i);
        const std::size_t b = layout == PairLayout::kHalfSplit
                                  ? static_cast<std::size_t>(i + spec.pairs())
                                  : static_cast<std::size_t>(2 * i + 1);
        want[a] = m * r[a];
        want[b] = m * r[b];
      }
      for (std::int64_t j = 0; j < d; ++j) {
        const double got =
            static_cast<double>(x[static_cast<std::size_t>((t * heads + h) * d + j)]);
        ASSERT_NEAR(got, static_cast<double>(want[static_cast<std::size_t>(j)]),
                    (tolerance_for<T, Angles>()))
            << "token " << t << " head " << h << " channel " << j;
      }
    }
  }
}

// A text-only sequence (t = h = w) must equal plain apply_rotary bit for bit.
template <typename T, typename Angles>
void check_text_is_plain(const Angles& angles, const MropeSections& sections, PairLayout layout,
                         ropescale::RotaryDirection dir) {
  const std::int64_t heads = 3, d = 128, tokens = 5;
  const std::vector<std::int64_t> pos1 = {0, 1, 17, 4095, 8191};
  std::vector<std::int64_t> pos3;
  for (int a = 0; a < 3; ++a) pos3.insert(pos3.end(), pos1.begin(), pos1.end());
  std::vector<T> a = random_values<T>(static_cast<std::size_t>(tokens * heads * d), 11);
  std::vector<T> b = a;
  ropescale::throw_if_error(ropescale::rotate_mrope(
      angles, sections, pos3.data(), HeadsView<T>::heads_tokens_dim(a.data(), tokens, heads, d),
      layout, dir));
  ropescale::throw_if_error(
      ropescale::rotate(angles, pos1.data(),
                        HeadsView<T>::heads_tokens_dim(b.data(), tokens, heads, d), layout, dir));
  EXPECT_EQ(std::memcmp(a.data(), b.data(), sizeof(T) * a.size()), 0);
}

template <typename T>
void check_all_paths() {
  const RopeSpec spec = vl_spec();
  const FactorTable table = vl_table();
  const ropescale::RotaryFrequencies freqs(spec, table);
  const ropescale::RotaryCache cache(spec, table, 10000);
  const ropescale::RotaryCacheD cache_d(spec, table, 10000);
  for (bool interleaved_sections : {false, true}) {
    const MropeSections sections = interleaved_sections ? MropeSections({24, 20, 20}, true, 64)
                                                        : MropeSections({16, 24, 24}, false, 64);
    for (PairLayout layout : {PairLayout::kHalfSplit, PairLayout::kInterleaved}) {
      SCOPED_TRACE(std::string(ropescale::to_string(layout)) +
                   (interleaved_sections ? " qwen3-vl" : " qwen2-vl"));
      check_mrope<T>(freqs, sections, layout);
      check_mrope<T>(cache, sections, layout);
      check_mrope<T>(cache_d, sections, layout);
      for (auto dir : {ropescale::RotaryDirection::kForward, ropescale::RotaryDirection::kInverse,
                       ropescale::RotaryDirection::kBackward}) {
        check_text_is_plain<T>(freqs, sections, layout, dir);
        check_text_is_plain<T>(cache, sections, layout, dir);
        check_text_is_plain<T>(cache_d, sections, layout, dir);
      }
    }
  }
}

TEST(Mrope, FloatMatchesReferenceAndTextIsPlain) { check_all_paths<float>(); }
TEST(Mrope, DoubleMatchesReferenceAndTextIsPlain) { check_all_paths<double>(); }
TEST(Mrope, HalfMatchesReferenceAndTextIsPlain) { check_all_paths<Eigen::half>(); }
TEST(Mrope, Bfloat16MatchesReferenceAndTextIsPlain) { check_all_paths<Eigen::bfloat16>(); }

TEST(Mrope, QkAndErrors) {
  const RopeSpec spec = vl_spec();
  const FactorTable table = vl_table();
  const ropescale::RotaryCache cache(spec, table, 100);
  const MropeSections sections({16, 24, 24}, false, 64);
  std::vector<float> q = random_values<float>(kTokens * 4 * 128, 1),
                     k = random_values<float>(kTokens * 128, 2);
  std::vector<float> q1 = q, k1 = k;
  // q and k together equal q and k one by one.
  const std::vector<std::int64_t> pos = {3, 4, 4, 4, 4, 9, 3, 4, 5, 6, 7, 9, 3, 4, 7, 5, 90, 9};
  ropescale::throw_if_error(ropescale::rotate_mrope(
      cache, sections, pos.data(), HeadsView<float>::tokens_heads_dim(q.data(), kTokens, 4, 128),
      HeadsView<float>::tokens_heads_dim(k.data(), kTokens, 1, 128), PairLayout::kHalfSplit));
  ropescale::throw_if_error(ropescale::rotate_mrope(
      cache, sections, pos.data(), HeadsView<float>::tokens_heads_dim(q1.data(), kTokens, 4, 128),
      PairLayout::kHalfSplit));
  ropescale::throw_if_error(ropescale::rotate_mrope(
      cache, sections, pos.data(), HeadsView<float>::tokens_heads_dim(k1.data(), kTokens, 1, 128),
      PairLayout::kHalfSplit));
  EXPECT_EQ(q, q1);
  EXPECT_EQ(k, k1);

  // Out-of-cache width id: named with its row; nothing written.
  std::vector<float> before = q;
  const ropescale::Status st = ropescale::rotate_mrope(
      cache, sections, kPositions.data(),
      HeadsView<float>::tokens_heads_dim(q.data(), kTokens, 4, 128), PairLayout::kHalfSplit);
  EXPECT_EQ(st.code(), ropescale::ErrorCode::kOutOfRange);
  EXPECT_NE(st.message().find("positions[4] = 9000"), std::string::npos) << st.message();
  EXPECT_NE(st.message().find("row 2, width"), std::string::npos) << st.message();
  EXPECT_EQ(q, before);
  // Sections for another width.
  const MropeSections other({8, 12, 12}, false, 32);
  const ropescale::Status st2 = ropescale::rotate_mrope(
      cache, other, pos.data(), HeadsView<float>::tokens_heads_dim(q.data(), kTokens, 4, 128),
      PairLayout::kHalfSplit);
  EXPECT_EQ(st2.code(), ropescale::ErrorCode::kInvalidArgument);
  EXPECT_NE(st2.message().find("sections.pairs() = 32"), std::string::npos) << st2.message();
  // Bad sections.
  EXPECT_FALSE(MropeSections::make({16, 24}, false, 64).ok());
  const ropescale::Status st3 = MropeSections::make({16, 24, 25}, false, 64).status();
  EXPECT_NE(st3.message().find("sum(mrope_section) = 65"), std::string::npos) << st3.message();
}

TEST(Mrope, LayoutsAssignAxesAsHfDoes) {
  // HunYuan-VL xdrope: 4 sectioned axes.
  const MropeSections x({2, 1, 2, 3}, ropescale::MropeLayout::kSectioned, 8);
  EXPECT_EQ(x.num_axes(), 4);
  EXPECT_EQ(x.axes(), (std::vector<std::uint8_t>{0, 0, 1, 2, 2, 3, 3, 3}));
  // ERNIE 4.5 VL: h w h w ... then t (recomposition_to_3d).
  const MropeSections e({2, 2, 3}, ropescale::MropeLayout::kErnie3d, 7);
  EXPECT_EQ(e.axes(), (std::vector<std::uint8_t>{1, 2, 1, 2, 0, 0, 0}));
  // Qwen3-VL through the bool overload.
  const MropeSections q({3, 2, 2}, true, 7);
  EXPECT_EQ(q.layout(), ropescale::MropeLayout::kInterleaved);
  EXPECT_EQ(q.axes(), (std::vector<std::uint8_t>{0, 1, 2, 0, 1, 2, 0}));
  const ropescale::Status five =
      MropeSections::make({1, 1, 1, 1, 1}, ropescale::MropeLayout::kSectioned, 5).status();
  EXPECT_NE(five.message().find("mrope_section.size() = 5: must be in [1, 4]"), std::string::npos)
      << five.message();
  const ropescale::Status inter4 =
      MropeSections::make({1, 1, 1, 1}, ropescale::MropeLayout::kInterleaved, 4).status();
  EXPECT_NE(inter4.message().find("must be 3 (temporal, height, width) for the interleaved"),
            std::string::npos)
      << inter4.message();
  const ropescale::Status ernie =
      MropeSections::make({2, 1, 4}, ropescale::MropeLayout::kErnie3d, 7).status();
  EXPECT_NE(ernie.message().find("mrope_section[1] = 1: must equal mrope_section[0] (2)"),
            std::string::npos)
      << ernie.message();
}

TEST(Mrope, HugePairCountIsRefusedBeforeAllocating) {
  // Sections that sum to 2^41 pairs: one axis byte per pair would be 2 TiB.
  const std::int64_t huge = std::int64_t{1} << 41;
  const ropescale::Status st = MropeSections::make({huge, 0, 0}, false, huge).status();
  EXPECT_EQ(st.code(), ropescale::ErrorCode::kInvalidArgument);
  EXPECT_NE(st.message().find("pairs = 2199023255552"), std::string::npos) << st.message();
  EXPECT_NE(st.message().find("kMaxHeadDim / 2 = 32768"), std::string::npos) << st.message();
  // The widest allowed head still works.
  const ropescale::Result<MropeSections> s = MropeSections::make({32768, 0, 0}, false, 32768);
  ASSERT_TRUE(s.ok());
  EXPECT_EQ(s->pairs(), 32768);
}

// ---------------------------------------------------------------------------------------------
// Proportional RoPE (Gemma 4 full-attention layers)
// ---------------------------------------------------------------------------------------------

RopeSpec gemma4_full() {
  RopeSpec s;
  s.head_dim = 512;
  s.rotary_dim = 128;
  s.freq_dim = 512;
  s.rope_theta = 1e6;
  s.original_max_position = 131072;
  return s;
}

template <typename T, typename Angles>
void check_proportional(const Angles& angles, PairLayout layout) {
  const std::int64_t tokens = 3, heads = 2, d = 512;
  const std::vector<std::int64_t> pos = {0, 77, 5000};
  const std::vector<T> x0 = random_values<T>(static_cast<std::size_t>(tokens * heads * d), 5);
  std::vector<T> x = x0;
  ropescale::throw_if_error(ropescale::rotate(
      angles, pos.data(), HeadsView<T>::tokens_heads_dim(x.data(), tokens, heads, d), layout));
  // HF: 256 inv_freq entries, 64 rotating (exponent 2i/512) then 192 zeros; for interleaved, the
  // same pairs at (2i, 2i + 1).
  std::vector<long double> inv(256, 0.0L);
  for (int i = 0; i < 64; ++i)
    inv[static_cast<std::size_t>(i)] = 1.0L / std::pow(1e6L, 2.0L * i / 512.0L);
  for (std::int64_t t = 0; t < tokens; ++t)
    for (std::int64_t h = 0; h < heads; ++h) {
      const std::size_t base = static_cast<std::size_t>((t * heads + h) * d);
      std::vector<long double> in(static_cast<std::size_t>(d));
      for (std::int64_t j = 0; j < d; ++j)
        in[static_cast<std::size_t>(j)] =
            static_cast<double>(x0[base + static_cast<std::size_t>(j)]);
      const std::vector<long double> want = ref_rotate_head(
          in, inv, 1.0L, pos[static_cast<std::size_t>(t)],
          layout == PairLayout::kHalfSplit ? RefLayout::kHalfSplit : RefLayout::kInterleaved);
      for (std::int64_t j = 0; j < d; ++j) {
        const bool rotates =
            layout == PairLayout::kHalfSplit ? (j < 64 || (j >= 256 && j < 320)) : j < 128;
        const std::size_t at = base + static_cast<std::size_t>(j);
        if (rotates) {
          ASSERT_NEAR(static_cast<double>(x[at]),
                      static_cast<double>(want[static_cast<std::size_t>(j)]),
                      (tolerance_for<T, Angles>()))
              << j;
        } else {  // HF's zero-frequency pairs: bit-exact pass-through
          ASSERT_EQ(std::memcmp(&x[at], &x0[at], sizeof(T)), 0) << j;
        }
      }
    }
}

template <typename T>
void check_proportional_all() {
  const RopeSpec spec = gemma4_full();
  const FactorTable table = ropescale::default_factors(spec).value();
  const ropescale::RotaryFrequencies freqs(spec, table);
  const ropescale::RotaryCache cache(spec, table, 5001);
  for (PairLayout layout : {PairLayout::kHalfSplit, PairLayout::kInterleaved}) {
    check_proportional<T>(freqs, layout);
    check_proportional<T>(cache, layout);
  }
}

TEST(Proportional, PairLayoutMatchesRotateHalfOverTheWholeHead) {
  check_proportional_all<float>();
  check_proportional_all<double>();
  check_proportional_all<Eigen::half>();
  check_proportional_all<Eigen::bfloat16>();
}

TEST(Proportional, HalfSplitNeedsTheWholeSpan) {
  const RopeSpec spec = gemma4_full();
  const ropescale::RotaryFrequencies freqs(spec, ropescale::default_factors(spec).value());
  EXPECT_EQ(freqs.frequency_dim(), 512);
  std::vector<float> x(256, 1.0f);
  const std::int64_t p = 3;
  const ropescale::Status st = ropescale::rotate(
      freqs, &p, HeadsView<float>::tokens_heads_dim(x.data(), 1, 1, 256), PairLayout::kHalfSplit);
  EXPECT_EQ(st.code(), ropescale::ErrorCode::kInvalidArgument);
  EXPECT_NE(st.message().find("x.head_dim = 256"), std::string::npos) << st.message();
  EXPECT_NE(st.message().find("(512)"), std::string::npos) << st.message();
  // Interleaved pairs only need the rotating channels.
  EXPECT_TRUE(ropescale::rotate(freqs, &p, HeadsView<float>::tokens_heads_dim(x.data(), 1, 1, 256),
                                PairLayout::kInterleaved)
                  .ok());
  // A spec whose freq_dim does not fit is refused by validate().
  RopeSpec bad = spec;
  bad.freq_dim = 1024;
  EXPECT_NE(ropescale::validate(bad).message().find("freq_dim = 1024"), std::string::npos);
  // Re-rotating a KV cache keeps the proportional layout.
  const ropescale::KeyRerotation r(spec, ropescale::default_factors(spec).value(),
                                   ropescale::linear_factors(spec, 2.0).value());
  EXPECT_EQ(r.frequencies().frequency_dim(), 512);
}

}  // namespace
