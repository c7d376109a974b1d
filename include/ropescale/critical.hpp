// ropescale: critical-dimension analysis and the out-of-distribution (OOD) report.
//
// LongRoPE2 (arXiv 2502.20082, section 2) starts from one observation: a model pre-trained on
// L_train tokens has seen a full rotation period only in its low (fast) pairs. Pair i rotates by
// theta_i = base^(-2i/d) per token, so its period is T_i = 2 pi / theta_i tokens (eq. 6). Pairs
// with T_i > L_train never completed a period during pre-training; the first of them is the
// theoretical critical pair (eq. 7, after Liu et al. 2023):
//
//     i_tcd = ceil(d/2 * log_base(L_train / 2pi)),      d_tcd = 2 * i_tcd   (full-dim units)
//
// and the critical-dimension search starts at the pair whose period fits 10 times into L_train,
// i10 = ceil(d/2 * log_base(L_train / (2pi * 10))) (Alg. 1 line 2).
//
// A rescaled pair rotates by theta_i / lambda_i (eq. 8), so its period becomes lambda_i T_i. At
// the target length L = s * L_train a critical pair stays inside the angle range it saw in
// pre-training only if L / (lambda_i T_i) <= L_train / T_i, i.e. (eq. 9-10)
//
//     lambda_i >= s    for every i >= i_tcd.
//
// Pairs below i_tcd completed full periods, so any angle they meet is one they have seen. The
// analysis reports, per pair, theta_i, T_i, the number of periods L_train covers, and for a factor
// table the rescaled period T_i * lambda_i, the margin lambda_i - s and whether the pair is OOD.
//
// Known values (test_critical.cpp checks them):
//
//     model                     base    rotary  L_train   i_tcd (d_tcd)   i10
//     LLaMA3-8B               500000     128     8192     35 (70)       24
//     Phi3-mini (paper, 2k)    10000      96     2048     31 (62)       19
//     Phi-4-mini               10000      96     4096     34 (68)       22
//
// Everything here returns plain structs and Eigen arrays; printing belongs to the caller (the
// `ropescale analyze` tool prints a table, JSON and an SVG plot from these structs):
//
//     const auto cmp = ropescale::compare_methods(spec, 131072, {longrope2_table}).value();
//     cmp.analysis.dims.critical_pair;          // 35 for LLaMA3-8B
//     for (const auto& m : cmp.methods)         // linear, ntk, ntk_critical, yarn, llama3, ...
//       m.ood_pairs;                            // ntk: 35..62, the others none
//
// Every entry point validates its input (rope_theta > 1, rotary_dim even and > 0,
// L_train > 2pi, target >= L_train, one factor per pair) and returns Result<T>: the value, or a
// Status naming what broke which rule.
#pragma once

#include <Eigen/Core>
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "ropescale/error.hpp"
#include "ropescale/factors.hpp"
#include "ropescale/frequencies.hpp"
#include "ropescale/scaling.hpp"

namespace ropescale {

/// Relative slack of the OOD test: a critical pair is OOD when lambda_i < s * (1 - kOodRelTol).
/// Generators reach lambda = s through pow() and ratios and may land an ulp or two below s (the
/// last pair of NTK scaling, the flat part of YaRN); such a pair is in range.
inline constexpr double kOodRelTol = 1e-9;

/// Relative tolerance used to detect the NTK-anchored part of a LongRoPE2 table. Published tables
/// print their factors with about 10 significant digits (1.097906416), so 1e-6 is ample.
inline constexpr double kDetectRelTol = 1e-6;

/// Per-pair periods of the unscaled RoPE, the critical dims, and the target it is analysed for.
struct CriticalAnalysis {
  RopeSpec spec;
  std::int64_t target_length = 0;  ///< L
  double scale = 1.0;              ///< s = L / L_train
  CriticalDims dims;
  Eigen::ArrayXd theta;          ///< theta_i = base^(-2i/d), radians per token
  Eigen::ArrayXd period;         ///< T_i = 2pi / theta_i, tokens
  Eigen::ArrayXd train_periods;  ///< L_train / T_i: full periods seen in pre-training

  std::int64_t pairs() const noexcept { return static_cast<std::int64_t>(theta.size()); }
  /// True for pairs at or above the critical pair (never completed a period in pre-training).
  bool is_critical(std::int64_t pair) const noexcept { return pair >= dims.critical_pair; }
};

/// A factor table seen through the critical-dimension lens at the analysis' target length.
struct TableAnalysis {
  std::string method;                   ///< the table's provenance ("yarn", "longrope2", ...)
  Eigen::ArrayXd factors;               ///< lambda_i
  double attention_factor = 1.0;        ///< the table's mscale (reported, not used by the OOD test)
  Eigen::ArrayXd rescaled_period;       ///< T_i * lambda_i
  Eigen::ArrayXd target_periods;        ///< L / (T_i * lambda_i): periods covered at the target
  Eigen::ArrayXd margin;                ///< lambda_i - s; negative on a critical pair means OOD
  std::vector<std::int64_t> ood_pairs;  ///< critical pairs with lambda_i < s, ascending
  /// The NTK-anchored critical pair c when the table has LongRoPE2's shape
  /// (lambda_i = lambda_c^(i/c) for i <= c, a searched part above), else empty.
  std::optional<std::int64_t> detected_critical_pair;

  bool is_ood(std::int64_t pair) const {
    return std::binary_search(ood_pairs.begin(), ood_pairs.end(), pair);
  }
};

namespace detail {

// Critical pairs left out of distribution by `factors` at scale s: every i >= critical_pair with
// lambda_i < s (LongRoPE2 eq. 10), with kOodRelTol slack. Unchecked: factors.size() must equal
// the number of pairs.
inline std::vector<std::int64_t> ood_pairs_unchecked(
    const Eigen::Ref<const Eigen::ArrayXd>& factors, std::int64_t critical_pair, double scale) {
  std::vector<std::int64_t> out;
  const double floor = scale * (1.0 - kOodRelTol);
  for (Eigen::Index i = static_cast<Eigen::Index>(std::max<std::int64_t>(critical_pair, 0));
       i < factors.size(); ++i)
    if (factors[i] < floor) out.push_back(static_cast<std::int64_t>(i));
  return out;
}

}  // namespace detail

/// Per-pair theta_i, period T_i and periods covered by L_train, plus the critical dims, for a
/// model extended to `target_length` tokens (s = target_length / L_train). An error if the
/// spec is invalid, L_train <= 2pi, or target_length < L_train.
inline Result<CriticalAnalysis> analyze_critical(const RopeSpec& spec, std::int64_t target_length) {
  CriticalAnalysis a;
  ROPESCALE_RETURN_IF_ERROR(detail::move_into(critical_dims(spec), &a.dims));
  if (target_length < spec.original_max_position)
    return make_status(
        ErrorCode::kInvalidArgument, "target_length", target_length,
        "must be >= original_max_position (" + std::to_string(spec.original_max_position) + ")");
  a.spec = spec;
  a.target_length = target_length;
  a.scale = static_cast<double>(target_length) / static_cast<double>(spec.original_max_position);
  a.theta = base_inv_freq(spec).value();  // spec checked above
  a.period = kTwoPi / a.theta;
  a.train_periods = static_cast<double>(spec.original_max_position) / a.period;
  return a;
}

/// Reads a factor table at the analysis' target: rescaled periods, margins lambda_i - s, the
/// critical pairs it leaves OOD and, for a LongRoPE2-shaped table, its NTK-anchored critical
/// pair. An error if the table's length is not rotary_dim / 2 or a factor is not > 0.
inline Result<TableAnalysis> analyze_table(const CriticalAnalysis& analysis,
                                           const FactorTable& table) {
  if (analysis.pairs() == 0 || analysis.pairs() != analysis.spec.pairs())
    return make_status(ErrorCode::kInvalidArgument, "analysis.pairs()", analysis.pairs(),
                       "must come from analyze_critical()");
  // A hand-built analysis: every array the computation reads must match, the numbers be sane.
  const Eigen::Index n = analysis.theta.size();
  if (analysis.period.size() != n || analysis.train_periods.size() != n)
    return make_status(ErrorCode::kInvalidArgument, "analysis.period.size()",
                       static_cast<std::int64_t>(analysis.period.size()),
                       "must equal analysis.theta.size() (" + std::to_string(n) +
                           "): the analysis must come from analyze_critical()");
  if (!analysis.period.allFinite() || !(analysis.period > 0.0).all())
    return make_status(ErrorCode::kInvalidArgument, "analysis.period", "non-finite or <= 0",
                       "must come from analyze_critical()");
  if (!std::isfinite(analysis.scale) || !(analysis.scale >= 1.0))
    return make_status(ErrorCode::kInvalidArgument, "analysis.scale", analysis.scale,
                       "must be finite and >= 1");
  if (analysis.target_length <= 0)
    return make_status(ErrorCode::kInvalidArgument, "analysis.target_length",
                       analysis.target_length, "must be > 0");
  ROPESCALE_RETURN_IF_ERROR(table.validate_for(analysis.spec));
  TableAnalysis t;
  t.method = table.method();
  t.factors = table.factors();
  t.attention_factor = table.attention_factor();
  t.rescaled_period = analysis.period * t.factors;
  t.target_periods = static_cast<double>(analysis.target_length) / t.rescaled_period;
  t.margin = t.factors - analysis.scale;
  t.ood_pairs = detail::ood_pairs_unchecked(t.factors, analysis.dims.critical_pair, analysis.scale);
  // validate_for checked every factor finite and > 0, so the detection itself cannot fail.
  const LongRope2Detection det = detect_longrope2(t.factors, kDetectRelTol).value();
  if (det.found) t.detected_critical_pair = det.critical_pair;
  return t;
}

/// Several tables analysed side by side for one model and one target.
struct MethodComparison {
  CriticalAnalysis analysis;
  std::vector<TableAnalysis> methods;  ///< in the order the tables were given
};

/// Analyses every table against the same model and target (see analyze_table()).
inline Result<MethodComparison> compare_tables(const RopeSpec& spec, std::int64_t target_length,
                                               const std::vector<FactorTable>& tables) {
  MethodComparison c;
  ROPESCALE_RETURN_IF_ERROR(detail::move_into(analyze_critical(spec, target_length), &c.analysis));
  c.methods.resize(tables.size());
  for (std::size_t k = 0; k < tables.size(); ++k) {
    const Status st = detail::move_into(analyze_table(c.analysis, tables[k]), &c.methods[k]);
    if (!st.ok())
      return st.with_context("table " + std::to_string(k) + ", method \"" + tables[k].method() +
                             "\"");
  }
  return c;
}

/// The closed-form methods of scaling.hpp, each set up for s = target_length / L_train:
/// linear (PI), ntk (LocalLLaMA base change; left out when rotary_dim == 2), ntk_critical (the
/// LongRoPE2 paper's NTK baseline), yarn (beta_fast 32, beta_slow 1; these three are left out
/// for a proportional spec, freq_dim != rotary_dim) and llama3 (factor s,
/// low_freq_factor 1, high_freq_factor 4, window L_train). LongRoPE and LongRoPE2 are searched,
/// not closed-form: pass their published tables to compare_methods().
inline Result<std::vector<FactorTable>> standard_tables(const RopeSpec& spec,
                                                        std::int64_t target_length) {
  ROPESCALE_RETURN_IF_ERROR(critical_dims(spec).status());
  if (target_length < spec.original_max_position)
    return make_status(
        ErrorCode::kInvalidArgument, "target_length", target_length,
        "must be >= original_max_position (" + std::to_string(spec.original_max_position) + ")");
  const double s =
      static_cast<double>(target_length) / static_cast<double>(spec.original_max_position);
  std::vector<FactorTable> tables(5);
  std::size_t k = 0;
  ROPESCALE_RETURN_IF_ERROR(detail::move_into(linear_factors(spec, s), &tables[k++]));
  // NTK and YaRN are defined for freq_dim == rotary_dim only (see scaling.hpp).
  const bool plain = spec.frequency_dim() == spec.rotary_dim;
  if (plain && spec.rotary_dim > 2)
    ROPESCALE_RETURN_IF_ERROR(detail::move_into(ntk_factors(spec, s), &tables[k++]));
  if (plain)
    ROPESCALE_RETURN_IF_ERROR(
        detail::move_into(ntk_critical_factors(spec, target_length), &tables[k++]));
  YarnParams yarn;
  yarn.factor = s;
  if (plain) ROPESCALE_RETURN_IF_ERROR(detail::move_into(yarn_factors(spec, yarn), &tables[k++]));
  Llama3Params llama3;
  llama3.factor = s;
  llama3.original_max_position = spec.original_max_position;
  ROPESCALE_RETURN_IF_ERROR(detail::move_into(llama3_factors(spec, llama3), &tables[k++]));
  tables.resize(k);
  return tables;
}

/// The side-by-side of every method for one model and target: standard_tables() followed by
/// `searched` (e.g. a LongRoPE or LongRoPE2 long_factor table from a config), each analysed with
/// analyze_table(): where it puts lambda_i and which critical pairs it leaves OOD. Example, at
/// LLaMA3-8B 8k -> 128k (i_tcd = 35, s = 16): linear, ntk_critical and yarn leave no pair OOD;
/// ntk leaves pairs 35-62 below s.
inline Result<MethodComparison> compare_methods(const RopeSpec& spec, std::int64_t target_length,
                                                const std::vector<FactorTable>& searched = {}) {
  Result<std::vector<FactorTable>> tables = standard_tables(spec, target_length);
  if (!tables.ok()) return tables.status();
  tables->insert(tables->end(), searched.begin(), searched.end());
  return compare_tables(spec, target_length, *tables);
}

}  // namespace ropescale
