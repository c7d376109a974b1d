// The rotary backward pass (rotary_backward*) checked against central finite differences through
// a small causal attention written here in Eigen: q and k rotated, scores q.k / sqrt(d), softmax,
// a weighted sum of values and a scalar loss sum(out * W). GQA (two query heads per key head),
// partial rotary (8 of 10 channels), a non-trivial factor table with attention factor 1.19 and
// positions up to 70000, for both pair layouts and both memory orders.
#include <gtest/gtest.h>

#include <Eigen/Core>
#include <cmath>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "ropescale/training.hpp"

namespace {

using ropescale::HeadsView;
using ropescale::PairLayout;

constexpr std::int64_t kTokens = 6;
constexpr std::int64_t kQHeads = 2;
constexpr std::int64_t kKHeads = 1;
constexpr std::int64_t kHeadDim = 10;
constexpr std::int64_t kValueDim = 3;
const std::vector<std::int64_t> kPositions = {3, 17, 40, 41, 1000, 70000};

ropescale::RopeSpec small_spec() {
  ropescale::RopeSpec s;
  s.head_dim = kHeadDim;
  s.rotary_dim = 8;
  s.rope_theta = 10000.0;
  s.original_max_position = 16;
  return s;
}

ropescale::FactorTable small_table() {
  Eigen::ArrayXd f(4);
  f << 1.0, 1.7, 3.1, 6.0;
  return ropescale::FactorTable(f, 1.19, "custom");
}

enum class MemoryOrder { kTokensHeadsDim, kHeadsTokensDim };

template <typename T>
HeadsView<T> make_view(std::vector<T>& buf, std::int64_t heads, MemoryOrder order) {
  return order == MemoryOrder::kTokensHeadsDim
             ? HeadsView<T>::tokens_heads_dim(buf.data(), kTokens, heads, kHeadDim)
             : HeadsView<T>::heads_tokens_dim(buf.data(), kTokens, heads, kHeadDim);
}

template <typename T>
T& at(const HeadsView<T>& v, std::int64_t t, std::int64_t h, std::int64_t d) {
  return v.data[t * v.token_stride + h * v.head_stride + d];
}

// Logical [tokens * heads, head_dim] double copy of a view: row t * heads + h.
template <typename T>
Eigen::MatrixXd to_matrix(const HeadsView<T>& v) {
  Eigen::MatrixXd m(v.tokens * v.heads, v.head_dim);
  for (std::int64_t t = 0; t < v.tokens; ++t)
    for (std::int64_t h = 0; h < v.heads; ++h)
      for (std::int64_t d = 0; d < v.head_dim; ++d)
        m(t * v.heads + h, d) = static_cast<double>(at(v, t, h, d));
  return m;
}
template <typename T>
void from_matrix(const Eigen::MatrixXd& m, const HeadsView<T>& v) {
  for (std::int64_t t = 0; t < v.tokens; ++t)
    for (std::int64_t h = 0; h < v.heads; ++h)
      for (std::int64_t d = 0; d < v.head_dim; ++d)
        at(v, t, h, d) = static_cast<T>(m(t * v.heads + h, d));
}

// Causal attention over rotated q [T*Hq, D] and k [T*Hk, D] (rows t * heads + h), values
// V [T*Hk, Dv] and loss weights W [T*Hq, Dv]. Returns the loss; with dq/dk it also returns
// dL/dq_rot and dL/dk_rot.
struct Attention {
  Eigen::MatrixXd v, w;

  double run(const Eigen::MatrixXd& q, const Eigen::MatrixXd& k, Eigen::MatrixXd* dq = nullptr,
             Eigen::MatrixXd* dk = nullptr) const {
    const double scale = 1.0 / std::sqrt(static_cast<double>(kHeadDim));
    if (dq) *dq = Eigen::MatrixXd::Zero(q.rows(), q.cols());
    if (dk) *dk = Eigen::MatrixXd::Zero(k.rows(), k.cols());
    double loss = 0;
    for (std::int64_t h = 0; h < kQHeads; ++h) {
      const std::int64_t kh = h / (kQHeads / kKHeads);
      Eigen::MatrixXd qh(kTokens, kHeadDim), khm(kTokens, kHeadDim), vh(kTokens, kValueDim),
          wh(kTokens, kValueDim);
      for (std::int64_t t = 0; t < kTokens; ++t) {
        qh.row(t) = q.row(t * kQHeads + h);
        khm.row(t) = k.row(t * kKHeads + kh);
        vh.row(t) = v.row(t * kKHeads + kh);
        wh.row(t) = w.row(t * kQHeads + h);
      }
      Eigen::MatrixXd s = qh * khm.transpose() * scale;
      Eigen::MatrixXd p = Eigen::MatrixXd::Zero(kTokens, kTokens);
      for (std::int64_t i = 0; i < kTokens; ++i) {
        const double mx = s.row(i).head(i + 1).maxCoeff();
        double z = 0;
        for (std::int64_t j = 0; j <= i; ++j) z += (p(i, j) = std::exp(s(i, j) - mx));
        p.row(i).head(i + 1) /= z;
      }
      const Eigen::MatrixXd o = p * vh;
      loss += (o.array() * wh.array()).sum();
      if (!dq) continue;
      const Eigen::MatrixXd dp = wh * vh.transpose();
      Eigen::MatrixXd ds = Eigen::MatrixXd::Zero(kTokens, kTokens);
      for (std::int64_t i = 0; i < kTokens; ++i) {
        const double dot = (p.row(i).array() * dp.row(i).array()).sum();
        for (std::int64_t j = 0; j <= i; ++j) ds(i, j) = p(i, j) * (dp(i, j) - dot);
      }
      const Eigen::MatrixXd dqh = ds * khm * scale;
      const Eigen::MatrixXd dkh = ds.transpose() * qh * scale;
      for (std::int64_t t = 0; t < kTokens; ++t) {
        dq->row(t * kQHeads + h) += dqh.row(t);
        dk->row(t * kKHeads + kh) += dkh.row(t);
      }
    }
    return loss;
  }
};

Attention make_attention(std::mt19937_64& rng) {
  std::uniform_real_distribution<double> u(-1.0, 1.0);
  Attention a;
  a.v = Eigen::MatrixXd::NullaryExpr(kTokens * kKHeads, kValueDim, [&] { return u(rng); });
  a.w = Eigen::MatrixXd::NullaryExpr(kTokens * kQHeads, kValueDim, [&] { return u(rng); });
  return a;
}

template <typename T>
std::vector<T> random_buffer(std::mt19937_64& rng, std::int64_t heads) {
  std::uniform_real_distribution<double> u(-1.0, 1.0);
  std::vector<T> b(static_cast<std::size_t>(kTokens * heads * kHeadDim));
  for (auto& x : b) x = static_cast<T>(u(rng));
  return b;
}

// Loss as a function of the unrotated q and k buffers, rotating in storage type T.
template <typename T, typename Angles>
double loss_of(const Angles& angles, const Attention& att, std::vector<T> q, std::vector<T> k,
               PairLayout layout, MemoryOrder order) {
  const auto qv = make_view(q, kQHeads, order);
  const auto kv = make_view(k, kKHeads, order);
  ropescale::throw_if_error(ropescale::rotate(angles, kPositions.data(), qv, kv, layout));
  return att.run(to_matrix(qv), to_matrix(kv));
}

// max |a - b| / max |b|, the norm-wise relative error.
double rel_error(const Eigen::MatrixXd& a, const Eigen::MatrixXd& b) {
  return (a - b).cwiseAbs().maxCoeff() / b.cwiseAbs().maxCoeff();
}

// Central finite differences of the loss in every element of q and k (stored as T), stepping
// by h and dividing by the step actually taken after rounding to T.
template <typename T, typename Angles>
void finite_differences(const Angles& angles, const Attention& att, const std::vector<T>& q,
                        const std::vector<T>& k, PairLayout layout, MemoryOrder order, double h,
                        Eigen::MatrixXd* gq, Eigen::MatrixXd* gk) {
  std::vector<T> qg(q.size()), kg(k.size());
  for (int which = 0; which < 2; ++which) {
    const std::vector<T>& base = which == 0 ? q : k;
    std::vector<T>& grad = which == 0 ? qg : kg;
    for (std::size_t e = 0; e < base.size(); ++e) {
      std::vector<T> plus = base, minus = base;
      plus[e] = static_cast<T>(static_cast<double>(base[e]) + h);
      minus[e] = static_cast<T>(static_cast<double>(base[e]) - h);
      const double step = static_cast<double>(plus[e]) - static_cast<double>(minus[e]);
      const double lp = which == 0 ? loss_of(angles, att, plus, k, layout, order)
                                   : loss_of(angles, att, q, plus, layout, order);
      const double lm = which == 0 ? loss_of(angles, att, minus, k, layout, order)
                                   : loss_of(angles, att, q, minus, layout, order);
      grad[e] = static_cast<T>((lp - lm) / step);
    }
  }
  // Read back in logical order through views of the same memory order.
  *gq = to_matrix(make_view(qg, kQHeads, order));
  *gk = to_matrix(make_view(kg, kKHeads, order));
}

// Analytic gradient: attention backward in double, dL/dq_rot stored as G, rotary_backward in G.
template <typename G, typename T, typename Angles>
void analytic(const Angles& angles, const Attention& att, std::vector<T> q, std::vector<T> k,
              PairLayout layout, MemoryOrder order, Eigen::MatrixXd* gq, Eigen::MatrixXd* gk) {
  const auto qv = make_view(q, kQHeads, order);
  const auto kv = make_view(k, kKHeads, order);
  ropescale::throw_if_error(ropescale::rotate(angles, kPositions.data(), qv, kv, layout));
  Eigen::MatrixXd dq_rot, dk_rot;
  att.run(to_matrix(qv), to_matrix(kv), &dq_rot, &dk_rot);
  std::vector<G> dq(q.size()), dk(k.size());
  const auto dqv = make_view(dq, kQHeads, order);
  const auto dkv = make_view(dk, kKHeads, order);
  from_matrix(dq_rot, dqv);
  from_matrix(dk_rot, dkv);
  ropescale::throw_if_error(ropescale::rotate(angles, kPositions.data(), dqv, dkv, layout,
                                              ropescale::RotaryDirection::kBackward));
  *gq = to_matrix(dqv);
  *gk = to_matrix(dkv);
}

struct Case {
  PairLayout layout;
  MemoryOrder order;
};
std::vector<Case> all_cases() {
  return {{PairLayout::kHalfSplit, MemoryOrder::kTokensHeadsDim},
          {PairLayout::kHalfSplit, MemoryOrder::kHeadsTokensDim},
          {PairLayout::kInterleaved, MemoryOrder::kTokensHeadsDim},
          {PairLayout::kInterleaved, MemoryOrder::kHeadsTokensDim}};
}
std::string name(const Case& c) {
  return std::string(ropescale::to_string(c.layout)) +
         (c.order == MemoryOrder::kTokensHeadsDim ? " [T,H,D]" : " [H,T,D]");
}

// Same-type check: forward and backward in T, finite differences through the T forward.
template <typename T, typename Angles>
void check_same_type(const Angles& angles, double h, double tol) {
  for (const Case& c : all_cases()) {
    SCOPED_TRACE(name(c));
    std::mt19937_64 rng(11);
    const Attention att = make_attention(rng);
    const auto q = random_buffer<T>(rng, kQHeads);
    const auto k = random_buffer<T>(rng, kKHeads);
    Eigen::MatrixXd fq, fk, aq, ak;
    finite_differences(angles, att, q, k, c.layout, c.order, h, &fq, &fk);
    analytic<T>(angles, att, q, k, c.layout, c.order, &aq, &ak);
    const double eq = rel_error(aq, fq), ek = rel_error(ak, fk);
    EXPECT_LT(eq, tol);
    EXPECT_LT(ek, tol);
    // Pass-through channels 8, 9 do get a gradient, unchanged by the rotary backward.
    EXPECT_GT(aq.rightCols(2).cwiseAbs().maxCoeff(), 1e-3);
  }
}

TEST(RotaryGradients, DoubleMatchesFiniteDifferences) {
  const ropescale::RotaryFrequencies freqs(small_spec(), small_table());
  // h = 1e-5: truncation ~h^2 = 1e-10, rounding ~1e-16 / h = 1e-11, far below 1e-8.
  check_same_type<double>(freqs, 1e-5, 1e-8);
  const ropescale::RotaryCacheD cache(small_spec(), small_table(), 70001);
  check_same_type<double>(cache, 1e-5, 1e-8);
}

TEST(RotaryGradients, FloatMatchesFiniteDifferences) {
  // Forward in float storage; h = 1e-2 keeps float rounding of the rotated values (~6e-8) well
  // below the step, and the truncation error (~h^2 times the third derivative) below 1e-4.
  const ropescale::RotaryFrequencies freqs(small_spec(), small_table());
  check_same_type<float>(freqs, 1e-2, 1e-3);
  const ropescale::RotaryCache cache(small_spec(), small_table(), 70001);
  check_same_type<float>(cache, 1e-2, 1e-3);
}

// Half and bfloat16 gradients: the exact gradient (double finite differences) against
// rotary_backward run on the upstream gradient stored as G. Per pair the kernel reads (a, b)
// rounded to G (relative error <= u each), rotates in float (negligible) and rounds the result
// to G (<= u). Each output channel is then off by at most u m |(a, b)| + u |g| <= 2 u |(g_x, g_y)|
// <= 2 sqrt(2) u max|g|, so the norm-wise relative error is below 2.83 u: we allow 3 u,
// i.e. 3 * 2^-11 = 1.5e-3 for half and 3 * 2^-8 = 1.2e-2 for bfloat16.
template <typename G>
void check_low_precision(double unit_roundoff) {
  const ropescale::RotaryFrequencies freqs(small_spec(), small_table());
  const ropescale::RotaryCache cache(small_spec(), small_table(), 70001);
  for (const Case& c : all_cases()) {
    SCOPED_TRACE(name(c));
    std::mt19937_64 rng(5);
    const Attention att = make_attention(rng);
    const auto q = random_buffer<double>(rng, kQHeads);
    const auto k = random_buffer<double>(rng, kKHeads);
    Eigen::MatrixXd fq, fk, aq, ak, cq, ck;
    finite_differences(freqs, att, q, k, c.layout, c.order, 1e-5, &fq, &fk);
    analytic<G>(freqs, att, q, k, c.layout, c.order, &aq, &ak);
    analytic<G>(cache, att, q, k, c.layout, c.order, &cq, &ck);
    const double tol = 3.0 * unit_roundoff;
    EXPECT_LT(rel_error(aq, fq), tol);
    EXPECT_LT(rel_error(ak, fk), tol);
    EXPECT_LT(rel_error(cq, fq), tol);
    EXPECT_LT(rel_error(ck, fk), tol);
    // And the storage rounding is really there (the test is not vacuous).
    EXPECT_GT(rel_error(aq, fq), 1e-9);
  }
}

TEST(RotaryGradients, HalfWithinThreeUnitRoundoffs) {
  check_low_precision<Eigen::half>(std::ldexp(1.0, -11));
}

TEST(RotaryGradients, BFloat16WithinThreeUnitRoundoffs) {
  check_low_precision<Eigen::bfloat16>(std::ldexp(1.0, -8));
}

// <R x, y> = <x, R^T y> for the forward R: the backward is the exact transpose, also at
// positions far past 2^31 where the long double range reduction is used.
TEST(RotaryGradients, BackwardIsTheTransposeOfForward) {
  const ropescale::RotaryFrequencies freqs(small_spec(), small_table());
  const std::vector<std::int64_t> pos = {
      0, 5, 1 << 20, std::int64_t{1} << 33, std::int64_t{3} << 40, 7};
  for (const Case& c : all_cases()) {
    SCOPED_TRACE(name(c));
    std::mt19937_64 rng(3);
    auto x = random_buffer<double>(rng, 3);
    auto y = random_buffer<double>(rng, 3);
    const auto xv = make_view(x, 3, c.order);
    const auto yv = make_view(y, 3, c.order);
    const Eigen::MatrixXd x0 = to_matrix(xv), y0 = to_matrix(yv);
    ropescale::throw_if_error(ropescale::rotate(freqs, pos.data(), xv, c.layout));
    ropescale::throw_if_error(
        ropescale::rotate(freqs, pos.data(), yv, c.layout, ropescale::RotaryDirection::kBackward));
    const double lhs = (to_matrix(xv).array() * y0.array()).sum();
    const double rhs = (x0.array() * to_matrix(yv).array()).sum();
    EXPECT_NEAR(lhs, rhs, 1e-13 * (x0.norm() * y0.norm()));
    // Backward of forward is m^2 times the identity (R^T R = 1, two factors m).
    ropescale::throw_if_error(
        ropescale::rotate(freqs, pos.data(), xv, c.layout, ropescale::RotaryDirection::kBackward));
    Eigen::MatrixXd expect = x0;
    expect.leftCols(8) *= 1.19 * 1.19;
    EXPECT_LT((to_matrix(xv) - expect).cwiseAbs().maxCoeff(), 1e-14);
  }
}

TEST(RotaryGradients, OutOfPlaceEqualsInPlace) {
  const ropescale::RotaryFrequencies freqs(small_spec(), small_table());
  std::mt19937_64 rng(9);
  auto g = random_buffer<float>(rng, 2);
  std::vector<float> out(g.size(), -7.0f);
  const auto in_view = HeadsView<float>::tokens_heads_dim(g.data(), kTokens, 2, kHeadDim);
  const auto out_view = HeadsView<float>::tokens_heads_dim(out.data(), kTokens, 2, kHeadDim);
  ropescale::throw_if_error(ropescale::rotate_out(freqs, kPositions.data(), in_view.as_const(),
                                                  out_view, PairLayout::kInterleaved,
                                                  ropescale::RotaryDirection::kBackward));
  ropescale::throw_if_error(ropescale::rotate(freqs, kPositions.data(), in_view,
                                              PairLayout::kInterleaved,
                                              ropescale::RotaryDirection::kBackward));
  EXPECT_EQ(g, out);  // bit-identical, pass-through channels copied
}

// The backward pass is rotate(..., kBackward): its errors name the verb's operands (x; q and k;
// in and out), as the forward pass does.
TEST(RotaryGradients, RejectsBadArgumentsNamingTheOperand) {
  const ropescale::RotaryFrequencies freqs(small_spec(), small_table());
  std::vector<float> g(static_cast<std::size_t>(kTokens * kHeadDim));
  auto v = HeadsView<float>::tokens_heads_dim(g.data(), kTokens, 1, kHeadDim);
  v.head_dim = 6;  // < rotary_dim 8
  auto s = ropescale::rotate(freqs, kPositions.data(), v, PairLayout::kHalfSplit,
                             ropescale::RotaryDirection::kBackward);
  EXPECT_EQ(s.argument(), "x.head_dim") << s.message();
  EXPECT_EQ(s.value(), "6") << s.message();
  v.head_dim = kHeadDim;
  std::vector<std::int64_t> bad = kPositions;
  bad[2] = -1;
  s = ropescale::rotate(freqs, bad.data(), v, PairLayout::kHalfSplit,
                        ropescale::RotaryDirection::kBackward);
  EXPECT_NE(s.message().find("positions[2] = -1"), std::string::npos) << s.message();
  const ropescale::RotaryCache small_cache(small_spec(), small_table(), 100);
  EXPECT_THROW(ropescale::throw_if_error(ropescale::rotate(small_cache, kPositions.data(), v,
                                                           PairLayout::kHalfSplit,
                                                           ropescale::RotaryDirection::kBackward)),
               ropescale::Error);  // position 70000 outside the cache
  std::vector<float> k(g.size());
  auto kv = HeadsView<float>::tokens_heads_dim(k.data(), kTokens - 1, 1, kHeadDim);
  s = ropescale::rotate(freqs, kPositions.data(), v, kv, PairLayout::kHalfSplit,
                        ropescale::RotaryDirection::kBackward);
  EXPECT_NE(s.message().find("k.tokens = 5: must equal q.tokens (6)"), std::string::npos)
      << s.message();
  s = ropescale::rotate_out(freqs, kPositions.data(), v.as_const(), kv, PairLayout::kHalfSplit,
                            ropescale::RotaryDirection::kBackward);
  EXPECT_EQ(s.argument(), "out shape") << s.message();
  EXPECT_THROW(ropescale::throw_if_error(ropescale::rotate(freqs, kPositions.data(), v,
                                                           static_cast<PairLayout>(3),
                                                           ropescale::RotaryDirection::kBackward)),
               ropescale::Error);
}

}  // namespace
