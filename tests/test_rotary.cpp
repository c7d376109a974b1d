// Rotary kernels: Hugging Face golden vectors, a long double reference at positions up to 2^21
// and beyond, algebraic properties for every layout and storage type, and bad input.
#include <gtest/gtest.h>

#include <Eigen/Core>
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <type_traits>
#include <vector>

#include "reference.hpp"
#include "ropescale/rotary.hpp"
#include "test_data.hpp"

using ropescale::FactorTable;
using ropescale::HeadsView;
using ropescale::PairLayout;
using ropescale::RopeSpec;
using ropescale::RotaryCache;
using ropescale::RotaryDirection;
using ropescale::RotaryFrequencies;
using ropescale_test::load_json;
using ropescale_test::ref_inv_freq;
using ropescale_test::ref_rotate_head;
using ropescale_test::RefLayout;

namespace {

RefLayout ref_layout(PairLayout l) {
  return l == PairLayout::kHalfSplit ? RefLayout::kHalfSplit : RefLayout::kInterleaved;
}

// ---------------------------------------------------------------------------------------------
// Golden vectors from Hugging Face's own code.
// ---------------------------------------------------------------------------------------------

struct GoldenCase {
  std::string file;
  std::string tag;
  std::string f64_case;  // the inv_freq.json case with the same factors, for inv_freq_f64
};

class HfGolden : public ::testing::TestWithParam<GoldenCase> {};

TEST_P(HfGolden, MatchesHuggingFaceAndLongDouble) {
  const GoldenCase gc = GetParam();
  const nlohmann::json file = load_json(gc.file);
  const nlohmann::json* found = nullptr;
  for (const auto& c : file["cases"])
    if (c["tag"] == gc.tag) found = &c;
  ASSERT_NE(found, nullptr);
  const nlohmann::json& c = *found;
  const nlohmann::json freqs = load_json("inv_freq.json");
  std::vector<double> inv_f64;
  for (const auto& fc : freqs["cases"])
    if (fc["name"] == gc.f64_case) inv_f64 = fc["inv_freq_f64"].get<std::vector<double>>();
  ASSERT_FALSE(inv_f64.empty());

  RopeSpec spec;
  spec.head_dim = c["head_dim"].get<std::int64_t>();
  spec.rotary_dim = c["rotary_dim"].get<std::int64_t>();
  spec.rope_theta = file["config"]["rope_theta"].get<double>();
  spec.original_max_position = 4096;
  const double m = c["attention_scaling"].get<double>();
  ASSERT_EQ(static_cast<std::int64_t>(inv_f64.size()), spec.pairs());
  const Eigen::ArrayXd base = ropescale::base_inv_freq(spec).value();
  const Eigen::ArrayXd target = Eigen::Map<const Eigen::ArrayXd>(inv_f64.data(), spec.pairs());
  const FactorTable table(base / target, m, "golden");
  // The table reproduces HF's float64 inverse frequencies to the last bits.
  const Eigen::ArrayXd ours_inv = table.inv_freq(spec).value();
  for (Eigen::Index i = 0; i < target.size(); ++i)
    EXPECT_NEAR(ours_inv[i], target[i], 4e-16 * target[i]);

  const std::vector<std::int64_t> positions = c["positions"].get<std::vector<std::int64_t>>();
  const std::int64_t S = static_cast<std::int64_t>(positions.size());
  const std::int64_t D = spec.head_dim;
  const std::vector<float> q0 = c["q"].get<std::vector<float>>();
  const std::vector<float> k0 = c["k"].get<std::vector<float>>();
  const std::vector<float> q_hf = c["q_embed"].get<std::vector<float>>();
  const std::vector<float> k_hf = c["k_embed"].get<std::vector<float>>();
  ASSERT_EQ(q0.size(), static_cast<std::size_t>(2 * S * D));
  ASSERT_EQ(k0.size(), static_cast<std::size_t>(S * D));

  std::vector<long double> inv_ld(inv_f64.begin(), inv_f64.end());
  const std::int64_t max_pos = *std::max_element(positions.begin(), positions.end());
  const RotaryCache cache(spec, table, max_pos + 1);
  const RotaryFrequencies fly(spec, table);

  for (int source = 0; source < 2; ++source) {
    std::vector<float> q = q0, k = k0;
    // q: [1, 2, S, D] and k: [1, 1, S, D] are [heads, tokens, dim]; q has 2 heads, k one (GQA).
    auto qv = HeadsView<float>::heads_tokens_dim(q.data(), S, 2, D);
    auto kv = HeadsView<float>::heads_tokens_dim(k.data(), S, 1, D);
    if (source == 0)
      ropescale::throw_if_error(
          ropescale::rotate(cache, positions.data(), qv, kv, PairLayout::kHalfSplit));
    else
      ropescale::throw_if_error(
          ropescale::rotate(fly, positions.data(), qv, kv, PairLayout::kHalfSplit));

    for (std::int64_t t = 0; t < S; ++t) {
      double hf_err = 0, our_err = 0, diff = 0;
      auto check_head = [&](const std::vector<float>& in, const std::vector<float>& ours,
                            const std::vector<float>& hf, std::int64_t h) {
        const std::size_t off = static_cast<std::size_t>((h * S + t) * D);
        std::vector<long double> x(in.begin() + off, in.begin() + off + D);
        const auto ref = ref_rotate_head(x, inv_ld, m, positions[t], RefLayout::kHalfSplit);
        for (std::int64_t j = 0; j < D; ++j) {
          hf_err = std::max(hf_err, static_cast<double>(std::fabs(hf[off + j] - ref[j])));
          our_err = std::max(our_err, static_cast<double>(std::fabs(ours[off + j] - ref[j])));
          diff = std::max(diff, static_cast<double>(std::fabs(ours[off + j] - hf[off + j])));
          if (j >= spec.rotary_dim) {  // pass-through channels are bit-identical to the input
            EXPECT_EQ(ours[off + j], in[off + j]);
          }
        }
      };
      check_head(q0, q, q_hf, 0);
      check_head(q0, q, q_hf, 1);
      check_head(k0, k, k_hf, 0);
      EXPECT_LE(our_err, 2e-6) << gc.file << " pos " << positions[t] << " source " << source;
      EXPECT_LE(diff, hf_err + 2e-6) << gc.file << " pos " << positions[t];
      if (positions[t] <= 8) {
        EXPECT_LE(diff, 2e-6) << "HF is exact enough at small positions";
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(
    Fixtures, HfGolden,
    ::testing::Values(GoldenCase{"cos_sin_apply_phi4_mini.json", "short_window_positions",
                                 "phi4_mini_short_seq4096"},
                      GoldenCase{"cos_sin_apply_phi4_mini.json", "all_positions",
                                 "phi4_mini_long_seq4097"},
                      GoldenCase{"cos_sin_apply_llama31_8b.json", "all_positions", "llama31_8b"}));

// At 131071 Hugging Face's float32 path is visibly off; ours is not. This is the headline.
TEST(HfGolden, OursIsMoreAccurateThanFloat32AtLongPositions) {
  const nlohmann::json file = load_json("cos_sin_apply_llama31_8b.json");
  const nlohmann::json& c = file["cases"][0];
  const nlohmann::json freqs = load_json("inv_freq.json");
  std::vector<double> inv_f64;
  for (const auto& fc : freqs["cases"])
    if (fc["name"] == "llama31_8b") inv_f64 = fc["inv_freq_f64"].get<std::vector<double>>();
  const std::vector<std::int64_t> positions = c["positions"].get<std::vector<std::int64_t>>();
  const std::int64_t S = static_cast<std::int64_t>(positions.size()), D = 128;
  const std::vector<float> k0 = c["k"].get<std::vector<float>>();
  const std::vector<float> k_hf = c["k_embed"].get<std::vector<float>>();
  const Eigen::ArrayXd inv = Eigen::Map<const Eigen::ArrayXd>(inv_f64.data(), 64);
  const RotaryFrequencies fly(inv, 1.0);
  std::vector<float> k = k0;
  ropescale::throw_if_error(ropescale::rotate(fly, positions.data(),
                                              HeadsView<float>::heads_tokens_dim(k.data(), S, 1, D),
                                              PairLayout::kHalfSplit));
  const std::int64_t t = S - 1;  // position 131071
  ASSERT_EQ(positions[t], 131071);
  std::vector<long double> x(k0.begin() + t * D, k0.begin() + (t + 1) * D);
  const auto ref = ref_rotate_head(x, std::vector<long double>(inv_f64.begin(), inv_f64.end()),
                                   1.0L, positions[t], RefLayout::kHalfSplit);
  double hf_err = 0, our_err = 0;
  for (std::int64_t j = 0; j < D; ++j) {
    hf_err = std::max(hf_err, static_cast<double>(std::fabs(k_hf[t * D + j] - ref[j])));
    our_err = std::max(our_err, static_cast<double>(std::fabs(k[t * D + j] - ref[j])));
  }
  EXPECT_GT(hf_err, 1e-3);
  EXPECT_LT(our_err, 2e-6);
}

// ---------------------------------------------------------------------------------------------
// Accuracy against long double for unit vectors, positions up to 2^21 and past 2^31.
// ---------------------------------------------------------------------------------------------

// Rotates (1, 0) in every pair at every position and returns max |(cos, sin) - reference|.
template <typename Angles>
double unit_vector_error(const Angles& angles, const std::vector<long double>& inv_ld,
                         long double m, const std::vector<std::int64_t>& positions,
                         PairLayout layout) {
  const std::int64_t half = static_cast<std::int64_t>(inv_ld.size());
  const std::int64_t D = 2 * half;
  const std::int64_t T = static_cast<std::int64_t>(positions.size());
  std::vector<float> x(static_cast<std::size_t>(T * D), 0.0f);
  for (std::int64_t t = 0; t < T; ++t)
    for (std::int64_t i = 0; i < half; ++i)
      x[static_cast<std::size_t>(t * D + (layout == PairLayout::kHalfSplit ? i : 2 * i))] = 1.0f;
  ropescale::throw_if_error(ropescale::rotate(
      angles, positions.data(), HeadsView<float>::tokens_heads_dim(x.data(), T, 1, D), layout));
  double err = 0;
  for (std::int64_t t = 0; t < T; ++t)
    for (std::int64_t i = 0; i < half; ++i) {
      const long double a = static_cast<long double>(positions[t]) * inv_ld[i];
      const std::size_t i0 =
          static_cast<std::size_t>(t * D + (layout == PairLayout::kHalfSplit ? i : 2 * i));
      const std::size_t i1 = static_cast<std::size_t>(
          t * D + (layout == PairLayout::kHalfSplit ? i + half : 2 * i + 1));
      err = std::max(err, static_cast<double>(std::fabs(x[i0] - m * std::cos(a))));
      err = std::max(err, static_cast<double>(std::fabs(x[i1] - m * std::sin(a))));
    }
  return err;
}

std::vector<std::int64_t> sweep_positions(std::int64_t limit) {
  std::vector<std::int64_t> p;
  for (std::int64_t i = 0; i < 512; ++i) p.push_back(i);
  for (std::int64_t i = 512; i < limit; i += 1021) p.push_back(i);
  for (std::int64_t j = 10; (std::int64_t{1} << j) <= limit; ++j) {
    p.push_back((std::int64_t{1} << j) - 1);
    p.push_back(std::int64_t{1} << j);
  }
  for (std::int64_t i = limit - 256; i <= limit; ++i) p.push_back(i);
  return p;
}

struct AccuracyCase {
  const char* name;
  double theta;
  std::int64_t rotary_dim;
  double lambda_scale;  // lambda_i = 1 + lambda_scale * i / pairs (a generic rescaled table)
  double mscale;
};

class UnitVectorAccuracy : public ::testing::TestWithParam<AccuracyCase> {};

TEST_P(UnitVectorAccuracy, OnTheFlyWithin2e6UpTo2Pow21) {
  const AccuracyCase ac = GetParam();
  RopeSpec spec{ac.rotary_dim, ac.rotary_dim, ac.theta, 4096};
  Eigen::ArrayXd lambda(spec.pairs());
  std::vector<long double> lambda_ld(static_cast<std::size_t>(spec.pairs()));
  for (std::int64_t i = 0; i < spec.pairs(); ++i) {
    lambda[i] = 1.0 + ac.lambda_scale * static_cast<double>(i) / static_cast<double>(spec.pairs());
    lambda_ld[static_cast<std::size_t>(i)] = lambda[i];
  }
  const FactorTable table(lambda, ac.mscale, "test");
  const auto inv_ld = ref_inv_freq(ac.theta, ac.rotary_dim, lambda_ld);
  const RotaryFrequencies fly(spec, table);
  const auto positions = sweep_positions(std::int64_t{1} << 21);
  for (PairLayout layout : {PairLayout::kHalfSplit, PairLayout::kInterleaved})
    EXPECT_LE(unit_vector_error(fly, inv_ld, ac.mscale, positions, layout), 2e-6)
        << ac.name << " " << ropescale::to_string(layout);
  // Cache path on a dense prefix of the positions.
  const RotaryCache cache(spec, table, 1 << 17);
  const auto cached_positions = sweep_positions((1 << 17) - 1);
  EXPECT_LE(unit_vector_error(cache, inv_ld, ac.mscale, cached_positions, PairLayout::kHalfSplit),
            2e-6);
}

INSTANTIATE_TEST_SUITE_P(Configs, UnitVectorAccuracy,
                         ::testing::Values(AccuracyCase{"theta1e4_d128", 1e4, 128, 0.0, 1.0},
                                           AccuracyCase{"theta5e5_d128", 5e5, 128, 0.0, 1.0},
                                           AccuracyCase{"rescaled_d96", 1e4, 96, 31.0, 1.19},
                                           AccuracyCase{"llama2c_d8", 1e4, 8, 7.0, 1.0}));

// The cache itself, at every position up to 2^21, for the four fastest frequencies (the ones
// whose angles grow largest and so stress the range reduction most).
TEST(UnitVectorAccuracy, CacheEveryPositionUpTo2Pow21) {
  const RopeSpec spec{8, 8, 1e4, 512};
  const FactorTable table = FactorTable::identity(spec);
  const std::int64_t n = (std::int64_t{1} << 21) + 1;
  const RotaryCache cache(spec, table, n);
  std::vector<std::int64_t> positions(static_cast<std::size_t>(n));
  for (std::int64_t p = 0; p < n; ++p) positions[static_cast<std::size_t>(p)] = p;
  const auto inv_ld = ref_inv_freq(1e4, 8, {1, 1, 1, 1});
  EXPECT_LE(unit_vector_error(cache, inv_ld, 1.0L, positions, PairLayout::kInterleaved), 2e-6);
}

// Past 2^31 (and far past it) the long double product keeps the angle: compare against a
// reference that uses the same double inverse frequencies, so only the angle arithmetic counts.
TEST(UnitVectorAccuracy, PositionsPast2Pow31) {
  const RopeSpec spec{128, 128, 5e5, 8192};
  const FactorTable table = FactorTable::identity(spec);
  const RotaryFrequencies fly(spec, table);
  std::vector<long double> inv_ld;
  for (Eigen::Index i = 0; i < fly.inv_freq().size(); ++i) inv_ld.push_back(fly.inv_freq()[i]);
  const std::vector<std::int64_t> positions = {(std::int64_t{1} << 31) - 1, std::int64_t{1} << 31,
                                               (std::int64_t{1} << 31) + 12345,
                                               std::int64_t{3} << 32, (std::int64_t{1} << 36) + 7};
  EXPECT_LE(unit_vector_error(fly, inv_ld, 1.0L, positions, PairLayout::kHalfSplit), 2e-6);
}

// ---------------------------------------------------------------------------------------------
// Properties for every layout and storage type.
// ---------------------------------------------------------------------------------------------

template <typename T>
double eps_of();
template <>
double eps_of<float>() {
  return 1.2e-7;
}
template <>
double eps_of<double>() {
  return 2.3e-16;
}
template <>
double eps_of<Eigen::half>() {
  return 9.8e-4;
}
template <>
double eps_of<Eigen::bfloat16>() {
  return 7.9e-3;
}

template <typename T>
double to_d(T v) {
  return static_cast<double>(static_cast<float>(v));
}
template <>
double to_d<double>(double v) {
  return v;
}

template <typename T>
std::vector<T> random_vec(std::size_t n, std::uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> d;
  std::vector<T> v(n);
  for (auto& x : v) x = static_cast<T>(d(rng));
  return v;
}

template <typename T>
class RotaryProperties : public ::testing::Test {
 protected:
  // A partial-rotary spec (like Phi-4-mini) with a non-trivial table and attention factor.
  RopeSpec spec{40, 32, 1e4, 512};
  FactorTable table{Eigen::ArrayXd::LinSpaced(16, 1.0, 9.0), 1.25, "test"};
  RotaryFrequencies fly{spec, table};
};

using StorageTypes = ::testing::Types<float, double, Eigen::half, Eigen::bfloat16>;
TYPED_TEST_SUITE(RotaryProperties, StorageTypes, ropescale_test::StorageName);

template <typename T>
double dot(const T* a, const T* b, std::int64_t n) {
  double s = 0;
  for (std::int64_t i = 0; i < n; ++i) s += to_d(a[i]) * to_d(b[i]);
  return s;
}

TYPED_TEST(RotaryProperties, RelativePositionProperty) {
  using T = TypeParam;
  const std::int64_t D = this->spec.head_dim;
  for (PairLayout layout : {PairLayout::kHalfSplit, PairLayout::kInterleaved}) {
    const auto q0 = random_vec<T>(static_cast<std::size_t>(D), 1);
    const auto k0 = random_vec<T>(static_cast<std::size_t>(D), 2);
    double reference = 0, scale = 0;
    bool first = true;
    for (std::int64_t shift : {0, 1, 999, 123456, 2000000}) {
      std::vector<T> q = q0, k = k0;
      const std::int64_t pq = 100 + shift, pk = 37 + shift;
      ropescale::throw_if_error(ropescale::rotate(
          this->fly, &pq, HeadsView<T>::tokens_heads_dim(q.data(), 1, 1, D), layout));
      ropescale::throw_if_error(ropescale::rotate(
          this->fly, &pk, HeadsView<T>::tokens_heads_dim(k.data(), 1, 1, D), layout));
      const double d = dot(q.data(), k.data(), D);
      if (first) {
        reference = d;
        scale = std::sqrt(dot(q.data(), q.data(), D) * dot(k.data(), k.data(), D));
        first = false;
      }
      EXPECT_NEAR(d, reference,
                  16 * eps_of<T>() * scale + 1e-5 * scale * (sizeof(T) == 8 ? 1e-6 : 1))
          << ropescale::to_string(layout) << " shift " << shift;
    }
  }
}

TYPED_TEST(RotaryProperties, ForwardThenInverseIsIdentityAndNormScalesByMscale) {
  using T = TypeParam;
  const std::int64_t D = this->spec.head_dim, T_ = 7, H = 3;
  const std::vector<std::int64_t> pos = {0, 1, 5, 511, 4096, 131071, 2097151};
  for (PairLayout layout : {PairLayout::kHalfSplit, PairLayout::kInterleaved}) {
    const auto x0 = random_vec<T>(static_cast<std::size_t>(T_ * H * D), 3);
    std::vector<T> x = x0;
    auto v = HeadsView<T>::tokens_heads_dim(x.data(), T_, H, D);
    ropescale::throw_if_error(ropescale::rotate(this->fly, pos.data(), v, layout));
    const double m = this->table.attention_factor();
    for (std::int64_t r = 0; r < T_ * H; ++r) {
      const std::int64_t R = this->spec.rotary_dim;
      const double n0 = std::sqrt(dot(x0.data() + r * D, x0.data() + r * D, R));
      const double n1 = std::sqrt(dot(x.data() + r * D, x.data() + r * D, R));
      EXPECT_NEAR(n1, m * n0, 4 * eps_of<T>() * m * n0 + 1e-6 * n0 * (sizeof(T) == 8 ? 1e-6 : 1));
    }
    ropescale::throw_if_error(
        ropescale::rotate(this->fly, pos.data(), v, layout, RotaryDirection::kInverse));
    for (std::size_t j = 0; j < x.size(); ++j)
      EXPECT_NEAR(to_d(x[j]), to_d(x0[j]),
                  8 * eps_of<T>() * (1 + std::fabs(to_d(x0[j]))) + (sizeof(T) == 8 ? 0 : 2e-6));
  }
}

TYPED_TEST(RotaryProperties, BackwardIsTheTransposeOfForward) {
  using T = TypeParam;
  const std::int64_t D = this->spec.head_dim;
  const std::int64_t pos = 77777;
  for (PairLayout layout : {PairLayout::kHalfSplit, PairLayout::kInterleaved}) {
    const auto x0 = random_vec<T>(static_cast<std::size_t>(D), 4);
    const auto y0 = random_vec<T>(static_cast<std::size_t>(D), 5);
    std::vector<T> rx = x0, ry = y0;
    ropescale::throw_if_error(ropescale::rotate(
        this->fly, &pos, HeadsView<T>::tokens_heads_dim(rx.data(), 1, 1, D), layout));
    ropescale::throw_if_error(ropescale::rotate(this->fly, &pos,
                                                HeadsView<T>::tokens_heads_dim(ry.data(), 1, 1, D),
                                                layout, RotaryDirection::kBackward));
    const double lhs = dot(rx.data(), y0.data(), D);  // <R x, y>
    const double rhs = dot(x0.data(), ry.data(), D);  // <x, R^T y>
    const double scale = std::sqrt(dot(x0.data(), x0.data(), D) * dot(y0.data(), y0.data(), D));
    EXPECT_NEAR(lhs, rhs, 16 * eps_of<T>() * scale * 1.25 + (sizeof(T) == 8 ? 0 : 1e-5 * scale));
  }
}

TYPED_TEST(RotaryProperties, InterleavedEqualsHalfSplitAfterPermutation) {
  using T = TypeParam;
  const std::int64_t D = this->spec.head_dim, R = this->spec.rotary_dim, half = R / 2;
  const std::vector<std::int64_t> pos = {3, 65536, 1000003};
  const auto xh0 = random_vec<T>(static_cast<std::size_t>(3 * D), 6);
  std::vector<T> xi0 = xh0;
  for (std::int64_t t = 0; t < 3; ++t)
    for (std::int64_t i = 0; i < half; ++i) {
      xi0[static_cast<std::size_t>(t * D + 2 * i)] = xh0[static_cast<std::size_t>(t * D + i)];
      xi0[static_cast<std::size_t>(t * D + 2 * i + 1)] =
          xh0[static_cast<std::size_t>(t * D + i + half)];
    }
  std::vector<T> xh = xh0, xi = xi0;
  ropescale::throw_if_error(ropescale::rotate(this->fly, pos.data(),
                                              HeadsView<T>::tokens_heads_dim(xh.data(), 3, 1, D),
                                              PairLayout::kHalfSplit));
  ropescale::throw_if_error(ropescale::rotate(this->fly, pos.data(),
                                              HeadsView<T>::tokens_heads_dim(xi.data(), 3, 1, D),
                                              PairLayout::kInterleaved));
  for (std::int64_t t = 0; t < 3; ++t) {
    for (std::int64_t i = 0; i < half; ++i) {
      const double tol = 2 * eps_of<T>() * 4;
      EXPECT_NEAR(to_d(xi[static_cast<std::size_t>(t * D + 2 * i)]),
                  to_d(xh[static_cast<std::size_t>(t * D + i)]), tol);
      EXPECT_NEAR(to_d(xi[static_cast<std::size_t>(t * D + 2 * i + 1)]),
                  to_d(xh[static_cast<std::size_t>(t * D + i + half)]), tol);
    }
    for (std::int64_t j = R; j < D; ++j)  // pass-through channels: bit-identical
      EXPECT_EQ(to_d(xi[static_cast<std::size_t>(t * D + j)]),
                to_d(xi0[static_cast<std::size_t>(t * D + j)]));
  }
}

TYPED_TEST(RotaryProperties, MatchesLongDoubleReference) {
  using T = TypeParam;
  const std::int64_t D = this->spec.head_dim;
  const std::vector<std::int64_t> pos = {0, 9, 4097, 262143, 2097152};
  const std::int64_t n = static_cast<std::int64_t>(pos.size());
  std::vector<long double> lambda(16), inv_ld;
  for (int i = 0; i < 16; ++i) lambda[static_cast<std::size_t>(i)] = this->table.factors()[i];
  inv_ld = ref_inv_freq(1e4, 32, lambda);
  for (PairLayout layout : {PairLayout::kHalfSplit, PairLayout::kInterleaved}) {
    const auto x0 = random_vec<T>(static_cast<std::size_t>(n * 2 * D), 7);
    std::vector<T> x(x0.size());
    // out of place, [H, T, D]
    ropescale::throw_if_error(ropescale::rotate_out(
        this->fly, pos.data(), HeadsView<const T>::heads_tokens_dim(x0.data(), n, 2, D),
        HeadsView<T>::heads_tokens_dim(x.data(), n, 2, D), layout));
    for (std::int64_t h = 0; h < 2; ++h)
      for (std::int64_t t = 0; t < n; ++t) {
        const std::size_t off = static_cast<std::size_t>((h * n + t) * D);
        std::vector<long double> in(static_cast<std::size_t>(D));
        for (std::int64_t j = 0; j < D; ++j) in[static_cast<std::size_t>(j)] = to_d(x0[off + j]);
        const auto ref = ref_rotate_head(in, inv_ld, 1.25L, pos[static_cast<std::size_t>(t)],
                                         ref_layout(layout));
        for (std::int64_t j = 0; j < D; ++j) {
          const double r = static_cast<double>(ref[static_cast<std::size_t>(j)]);
          // storage rounding of the output plus float arithmetic; in double the angle itself
          // carries about 2^-53 * angle of rounding.
          const double angle_err =
              4 * 1.2e-16 * static_cast<double>(pos[static_cast<std::size_t>(t)]);
          const double tol =
              eps_of<T>() * std::fabs(r) + (sizeof(T) == 8 ? 1e-12 + angle_err : 2e-6);
          EXPECT_NEAR(to_d(x[off + j]), r, tol) << "h" << h << " t" << t << " j" << j;
          if (j >= this->spec.rotary_dim) {
            EXPECT_EQ(to_d(x[off + j]), to_d(x0[off + j]));
          }
        }
      }
  }
}

// Pair counts that are not a multiple of the SIMD width run the vector loop and a scalar tail.
TYPED_TEST(RotaryProperties, TailPairCountsMatchReference) {
  using T = TypeParam;
  for (std::int64_t rotary_dim : {2, 6, 20, 26, 34}) {
    const RopeSpec spec{rotary_dim + 2, rotary_dim, 1e4, 512};
    const std::int64_t D = spec.head_dim, half = spec.pairs();
    const FactorTable table(Eigen::ArrayXd::LinSpaced(half, 1.0, 3.0), 0.9, "test");
    std::vector<long double> lambda(static_cast<std::size_t>(half));
    for (std::int64_t i = 0; i < half; ++i)
      lambda[static_cast<std::size_t>(i)] = table.factors()[i];
    const auto inv_ld = ref_inv_freq(1e4, rotary_dim, lambda);
    const RotaryFrequencies fly(spec, table);
    const std::int64_t pos = 3001;
    for (PairLayout layout : {PairLayout::kHalfSplit, PairLayout::kInterleaved}) {
      const auto x0 = random_vec<T>(static_cast<std::size_t>(D), 13);
      std::vector<T> x = x0;
      ropescale::throw_if_error(
          ropescale::rotate(fly, &pos, HeadsView<T>::tokens_heads_dim(x.data(), 1, 1, D), layout));
      std::vector<long double> in(static_cast<std::size_t>(D));
      for (std::int64_t j = 0; j < D; ++j)
        in[static_cast<std::size_t>(j)] = to_d(x0[static_cast<std::size_t>(j)]);
      const auto ref = ref_rotate_head(in, inv_ld, 0.9L, pos, ref_layout(layout));
      for (std::int64_t j = 0; j < D; ++j) {
        const double r = static_cast<double>(ref[static_cast<std::size_t>(j)]);
        EXPECT_NEAR(to_d(x[static_cast<std::size_t>(j)]), r,
                    eps_of<T>() * std::fabs(r) + (sizeof(T) == 8 ? 1e-12 : 2e-6))
            << "rotary_dim " << rotary_dim << " " << ropescale::to_string(layout) << " j " << j;
      }
    }
  }
}

// [T,H,D], [H,T,D], fused QKV and the cache all give the same numbers as the simplest call.
TEST(RotaryLayouts, StridedViewsAgree) {
  const RopeSpec spec{64, 64, 1e4, 4096};
  const FactorTable table(Eigen::ArrayXd::LinSpaced(32, 1.0, 4.0), 1.1, "test");
  const RotaryFrequencies fly(spec, table);
  const RotaryCache cache(spec, table, 5000);
  const std::int64_t T = 5, Hq = 4, Hk = 2, D = 64;
  const std::vector<std::int64_t> pos = {0, 17, 4095, 4096, 4999};
  const auto q0 = random_vec<float>(static_cast<std::size_t>(T * Hq * D), 8);
  const auto k0 = random_vec<float>(static_cast<std::size_t>(T * Hk * D), 9);
  // reference: q and k separately, contiguous [T,H,D], on the fly
  std::vector<float> qr = q0, kr = k0;
  ropescale::throw_if_error(
      ropescale::rotate(fly, pos.data(), HeadsView<float>::tokens_heads_dim(qr.data(), T, Hq, D),
                        PairLayout::kHalfSplit));
  ropescale::throw_if_error(
      ropescale::rotate(fly, pos.data(), HeadsView<float>::tokens_heads_dim(kr.data(), T, Hk, D),
                        PairLayout::kHalfSplit));
  // fused QKV [T, Hq + 2 Hk, D] with the cache, q and k in one call
  const std::int64_t W = (Hq + 2 * Hk) * D;
  std::vector<float> qkv(static_cast<std::size_t>(T * W), -7.0f);
  for (std::int64_t t = 0; t < T; ++t) {
    std::copy_n(q0.begin() + t * Hq * D, Hq * D, qkv.begin() + t * W);
    std::copy_n(k0.begin() + t * Hk * D, Hk * D, qkv.begin() + t * W + Hq * D);
  }
  HeadsView<float> qv{qkv.data(), T, Hq, D, W, D};
  HeadsView<float> kv{qkv.data() + Hq * D, T, Hk, D, W, D};
  ropescale::throw_if_error(ropescale::rotate(cache, pos.data(), qv, kv, PairLayout::kHalfSplit));
  for (std::int64_t t = 0; t < T; ++t) {
    for (std::int64_t j = 0; j < Hq * D; ++j)
      EXPECT_FLOAT_EQ(qkv[static_cast<std::size_t>(t * W + j)],
                      qr[static_cast<std::size_t>(t * Hq * D + j)]);
    for (std::int64_t j = 0; j < Hk * D; ++j)
      EXPECT_FLOAT_EQ(qkv[static_cast<std::size_t>(t * W + Hq * D + j)],
                      kr[static_cast<std::size_t>(t * Hk * D + j)]);
    for (std::int64_t j = (Hq + Hk) * D; j < W; ++j)  // V untouched
      EXPECT_EQ(qkv[static_cast<std::size_t>(t * W + j)], -7.0f);
  }
  // [H,T,D] out of place for q and k together
  std::vector<float> qh(q0.size()), kh(k0.size()), qh_out(q0.size()), kh_out(k0.size());
  for (std::int64_t t = 0; t < T; ++t)
    for (std::int64_t h = 0; h < Hq; ++h)
      std::copy_n(q0.begin() + (t * Hq + h) * D, D, qh.begin() + (h * T + t) * D);
  for (std::int64_t t = 0; t < T; ++t)
    for (std::int64_t h = 0; h < Hk; ++h)
      std::copy_n(k0.begin() + (t * Hk + h) * D, D, kh.begin() + (h * T + t) * D);
  ropescale::throw_if_error(ropescale::rotate_out(
      fly, pos.data(), HeadsView<const float>::heads_tokens_dim(qh.data(), T, Hq, D),
      HeadsView<float>::heads_tokens_dim(qh_out.data(), T, Hq, D),
      HeadsView<const float>::heads_tokens_dim(kh.data(), T, Hk, D),
      HeadsView<float>::heads_tokens_dim(kh_out.data(), T, Hk, D), PairLayout::kHalfSplit));
  for (std::int64_t t = 0; t < T; ++t)
    for (std::int64_t h = 0; h < Hq; ++h)
      for (std::int64_t j = 0; j < D; ++j)
        EXPECT_FLOAT_EQ(qh_out[static_cast<std::size_t>((h * T + t) * D + j)],
                        qr[static_cast<std::size_t>((t * Hq + h) * D + j)]);
}

// Packed documents: positions restart and repeat; a KV-cache decode step at a large offset.
TEST(RotaryLayouts, RepeatedAndUnorderedPositions) {
  const RopeSpec spec{16, 16, 1e4, 64};
  const FactorTable table = FactorTable::identity(spec);
  const RotaryFrequencies fly(spec, table);
  const std::vector<std::int64_t> pos = {0, 1, 2, 0, 1, 1000000};
  const auto x0 = random_vec<float>(6 * 16, 10);
  std::vector<float> x = x0;
  ropescale::throw_if_error(
      ropescale::rotate(fly, pos.data(), HeadsView<float>::tokens_heads_dim(x.data(), 6, 1, 16),
                        PairLayout::kInterleaved));
  EXPECT_EQ(x[0], x0[0]);  // position 0 is the identity
  for (int j = 0; j < 16; ++j)
    EXPECT_EQ(x[static_cast<std::size_t>(j)], x0[static_cast<std::size_t>(j)]);
  // A single decode token at 1000000 equals the packed call's last token.
  std::vector<float> one(x0.end() - 16, x0.end());
  const std::int64_t p = 1000000;
  ropescale::throw_if_error(ropescale::rotate(
      fly, &p, HeadsView<float>::tokens_heads_dim(one.data(), 1, 1, 16), PairLayout::kInterleaved));
  for (int j = 0; j < 16; ++j)
    EXPECT_EQ(one[static_cast<std::size_t>(j)], x[static_cast<std::size_t>(80 + j)]);
}

// ---------------------------------------------------------------------------------------------
// Bad input: a clear error, the Status twin says the same, nothing is written.
// ---------------------------------------------------------------------------------------------

template <typename F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const ropescale::Error& e) {
    return e.what();
  }
  return "";
}

TEST(RotaryBadInput, SpecAndTable) {
  EXPECT_NE(error_of([] {
              ropescale::base_inv_freq(RopeSpec{128, 7, 1e4, 4096}).value();
            }).find("rotary_dim = 7: must be even"),
            std::string::npos);
  EXPECT_NE(error_of([] {
              ropescale::base_inv_freq(RopeSpec{64, 128, 1e4, 4096}).value();
            }).find("rotary_dim = 128: must be <= head_dim (64)"),
            std::string::npos);
  EXPECT_NE(error_of([] {
              ropescale::base_inv_freq(RopeSpec{0, 0, 1e4, 4096}).value();
            }).find("head_dim = 0"),
            std::string::npos);
  EXPECT_NE(error_of([] {
              FactorTable(Eigen::ArrayXd::Constant(4, 1.0).eval() * 0.0);
            }).find("factors[0] = 0: must be finite and > 0"),
            std::string::npos);
  Eigen::ArrayXd f = Eigen::ArrayXd::Ones(4);
  f[2] = std::nan("");
  EXPECT_NE(error_of([&] { FactorTable t(f); }).find("factors[2] = nan"), std::string::npos);
  EXPECT_NE(
      error_of([] { FactorTable t(Eigen::ArrayXd::Ones(4), -1.0); }).find("attention_factor = -1"),
      std::string::npos);
  const RopeSpec spec{128, 128, 1e4, 4096};
  EXPECT_NE(error_of([&] {
              RotaryCache c(spec, FactorTable::identity(32), 16);
            }).find("factor table length = 32: must equal rotary_dim / 2 = 64"),
            std::string::npos);
  EXPECT_NE(error_of([&] {
              RotaryCache c(spec, FactorTable::identity(spec), 0);
            }).find("num_positions = 0"),
            std::string::npos);
  ropescale::Status st = FactorTable::identity(spec).validate_for(RopeSpec{128, 96, 1e4, 4096});
  EXPECT_FALSE(st.ok());
  EXPECT_EQ(st.code(), ropescale::ErrorCode::kInvalidArgument);
  EXPECT_STREQ(st.id(), "invalid_argument");
}

TEST(RotaryBadInput, CallArgumentsLeaveOutputUntouched) {
  const RopeSpec spec{16, 16, 1e4, 64};
  const FactorTable table = FactorTable::identity(spec);
  const RotaryCache cache(spec, table, 64);
  const RotaryFrequencies fly(spec, table);
  const auto x0 = random_vec<float>(4 * 2 * 16, 11);
  std::vector<float> x = x0;
  std::vector<std::int64_t> pos = {0, 1, 2, 3};
  auto v = HeadsView<float>::tokens_heads_dim(x.data(), 4, 2, 16);

  struct Case {
    const char* expect;
    ropescale::Status status;
  };
  std::vector<Case> cases;
  {
    auto bad = v;
    bad.data = nullptr;
    cases.push_back(
        {"x.data = null", ropescale::rotate(cache, pos.data(), bad, PairLayout::kHalfSplit)});
  }
  cases.push_back(
      {"positions = null", ropescale::rotate(cache, static_cast<const std::int64_t*>(nullptr), v,
                                             PairLayout::kHalfSplit)});
  {
    auto bad = v;
    bad.head_dim = 12;
    bad.head_stride = 12;
    bad.token_stride = 24;
    cases.push_back({"x.head_dim = 12: must be >= rotary_dim (16)",
                     ropescale::rotate(cache, pos.data(), bad, PairLayout::kHalfSplit)});
  }
  {
    auto bad = v;
    bad.head_dim = 0;
    cases.push_back({"x.head_dim = 0: must be > 0",
                     ropescale::rotate(cache, pos.data(), bad, PairLayout::kHalfSplit)});
  }
  {
    auto bad = v;
    bad.head_stride = 8;  // heads overlap
    cases.push_back({"x.head_stride = 8: rows overlap",
                     ropescale::rotate(cache, pos.data(), bad, PairLayout::kHalfSplit)});
  }
  {
    std::vector<std::int64_t> p = {0, 1, -5, 3};
    cases.push_back({"positions[2] = -5: must be >= 0",
                     ropescale::rotate(fly, p.data(), v, PairLayout::kHalfSplit)});
  }
  {
    std::vector<std::int64_t> p = {0, 1, 2, 64};
    cases.push_back({"positions[3] = 64: outside the cache [0, 64)",
                     ropescale::rotate(cache, p.data(), v, PairLayout::kHalfSplit)});
  }
  {
    // out of place into a buffer that overlaps the input
    auto out = HeadsView<float>::tokens_heads_dim(x.data() + 8, 4, 2, 16);
    cases.push_back(
        {"out = \"overlapping buffer\": must not overlap in",
         ropescale::rotate_out(cache, pos.data(), v.as_const(), out, PairLayout::kHalfSplit)});
  }
  {
    auto q = HeadsView<float>::tokens_heads_dim(x.data(), 4, 1, 16);
    cases.push_back(
        {"k must not alias q", ropescale::rotate(cache, pos.data(), q, q, PairLayout::kHalfSplit)});
  }
  {
    std::vector<float> y(x.size());
    auto out = HeadsView<float>::tokens_heads_dim(y.data(), 3, 2, 16);
    cases.push_back(
        {"must equal in shape 4x2x16",
         ropescale::rotate_out(cache, pos.data(), v.as_const(), out, PairLayout::kHalfSplit)});
  }
  for (const auto& c : cases) {
    EXPECT_FALSE(c.status.ok()) << c.expect;
    EXPECT_NE(c.status.message().find(c.expect), std::string::npos)
        << "got: " << c.status.message() << "\nwant: " << c.expect;
  }
  EXPECT_EQ(x, x0) << "nothing may be written on error";
  // The throwing front door throws the same message.
  std::vector<std::int64_t> p = {0, 1, 2, 64};
  try {
    ropescale::throw_if_error(ropescale::rotate(cache, p.data(), v, PairLayout::kHalfSplit));
    FAIL() << "no throw";
  } catch (const ropescale::Error& e) {
    EXPECT_EQ(e.code(), ropescale::ErrorCode::kOutOfRange);
    EXPECT_STREQ(e.id(), "out_of_range");
  }
  EXPECT_EQ(x, x0);
}

TEST(RotaryBadInput, EmptyCallsAreFine) {
  const RopeSpec spec{16, 16, 1e4, 64};
  const RotaryFrequencies fly(spec, FactorTable::identity(spec));
  HeadsView<float> empty{nullptr, 0, 4, 16, 64, 16};
  EXPECT_TRUE(ropescale::rotate(fly, static_cast<const std::int64_t*>(nullptr), empty,
                                PairLayout::kHalfSplit)
                  .ok());
}

}  // namespace

// The kernels' own 16-bit conversions agree with Eigen's on every pattern.
namespace {

TEST(StorageConversions, HalfAndBfloat16MatchEigenBitForBit) {
  using ropescale::detail::bits_float;
  using ropescale::detail::float_bits;
  for (std::uint32_t b = 0; b < 65536; ++b) {
    const auto h = static_cast<std::uint16_t>(b);
    Eigen::half eh;
    ropescale::detail::set_raw_bits(eh, h);
    const float ours = ropescale::detail::half_to_float(h);
    const float eig = static_cast<float>(eh);
    if (std::isnan(eig)) {
      EXPECT_TRUE(std::isnan(ours)) << b;
    } else {
      EXPECT_EQ(float_bits(ours), float_bits(eig)) << b;
    }
    Eigen::bfloat16 eb;
    ropescale::detail::set_raw_bits(eb, h);
    const float ob = ropescale::detail::bf16_to_float(h);
    if (std::isnan(static_cast<float>(eb))) {
      EXPECT_TRUE(std::isnan(ob));
    } else {
      EXPECT_EQ(float_bits(ob), float_bits(static_cast<float>(eb))) << b;
    }
  }
  std::mt19937 rng(12);
  std::vector<float> probes = {0.0f,
                               -0.0f,
                               65504.0f,
                               65519.99f,
                               65520.0f,
                               1e10f,
                               -1e10f,
                               6.1035156e-05f,
                               5.9604645e-08f,
                               2.9802322e-08f,
                               2.98023259e-08f,
                               std::numeric_limits<float>::infinity(),
                               std::numeric_limits<float>::quiet_NaN(),
                               1.0009765625f,
                               1.00048828125f,
                               3.0f,
                               -7.5e-6f};
  for (int i = 0; i < 400000; ++i) probes.push_back(bits_float(static_cast<std::uint32_t>(rng())));
  for (float f : probes) {
    const std::uint16_t oh = ropescale::detail::float_to_half(f);
    const std::uint16_t eh = ropescale::detail::raw_bits(Eigen::half(f));
    const std::uint16_t ob = ropescale::detail::float_to_bf16(f);
    const std::uint16_t eb = ropescale::detail::raw_bits(Eigen::bfloat16(f));
    if (std::isnan(f)) {
      EXPECT_EQ(oh & 0x7c00, 0x7c00);
      EXPECT_NE(oh & 0x03ff, 0);
      EXPECT_EQ(ob & 0x7f80, 0x7f80);
      EXPECT_NE(ob & 0x007f, 0);
    } else {
      EXPECT_EQ(oh, eh) << f;
      EXPECT_EQ(ob, eb) << f;
    }
  }
}

}  // namespace
