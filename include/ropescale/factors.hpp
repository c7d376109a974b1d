// ropescale: the per-pair rescale factor table every scaling method produces.
//
// One table describes any RoPE rescaling (PI, NTK, YaRN, Llama-3.1, LongRoPE, LongRoPE2, ...):
//
//     inv_freq_i = base_inv_freq_i / lambda_i          (LongRoPE2 eq. 8: theta_i / lambda_i)
//     cos'(pos, i) = attention_factor * cos(pos * inv_freq_i)
//     sin'(pos, i) = attention_factor * sin(pos * inv_freq_i)
//
// lambda_i divides the frequency (multiplies the period), as Hugging Face's LongRoPE `ext_factors`
// and llama.cpp's `rope_freqs` do. attention_factor (the "mscale") multiplies both cos and sin, as
// Hugging Face's `attention_scaling` does, so q.k logits scale by attention_factor^2.
// The identity table (all lambda_i = 1, attention_factor = 1) is plain RoPE.
#pragma once

#include <Eigen/Core>
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <ostream>
#include <string>
#include <utility>

#include "ropescale/error.hpp"
#include "ropescale/frequencies.hpp"

namespace ropescale {

/// Smallest factor lambda_i a table accepts: below it inv_freq_i = base_inv_freq_i / lambda_i
/// leaves the range in which angles stay exact (5e-324 would make it inf).
inline constexpr double kMinFactor = 1e-6;
/// Smallest factor a listed table (LongRoPE short/long lists, LongRoPE2 searched values) may hold.
/// Real tables hold values >= 1; the bound only keeps base_inv_freq / lambda finite.
inline constexpr double kMinListedFactor = kMinFactor;
/// Attention factors m are accepted in [1/1000, 1000]: m multiplies every rotated value (and the
/// inverse divides by m^2), so a larger one overflows float or half outputs. Real ones are ~1-2.
inline constexpr double kMinAttentionFactor = 1e-3;
inline constexpr double kMaxAttentionFactor = 1e3;

namespace detail {

/// The one check of an attention factor, shared by tables and raw frequency sources.
inline Status check_attention_factor(const std::string& name, double attention_factor) {
  if (!std::isfinite(attention_factor) || !(attention_factor > 0.0))
    return make_status(ErrorCode::kInvalidArgument, name, attention_factor,
                       "must be finite and > 0");
  if (attention_factor < kMinAttentionFactor || attention_factor > kMaxAttentionFactor)
    return make_status(ErrorCode::kInvalidArgument, name, attention_factor,
                       "must be in [1e-3, 1e3] (outputs scale by it)");
  return Status();
}

}  // namespace detail

/// Per-pair rescale factors lambda_i, the attention factor, and where they came from.
class FactorTable {
 public:
  FactorTable() = default;

  /// A table from explicit factors; an error when a factor or the attention factor is
  /// non-finite, <= 0 or out of range. `method` is free-form provenance ("yarn", "longrope2", ...).
  static Result<FactorTable> make(Eigen::ArrayXd factors, double attention_factor = 1.0,
                                  std::string method = "custom") {
    ROPESCALE_RETURN_IF_ERROR(check_values(factors, attention_factor));
    FactorTable t;
    t.factors_ = std::move(factors);
    t.attention_factor_ = attention_factor;
    t.method_ = std::move(method);
    return t;
  }
  /// make(...).value(): throws Error on bad input (aborts without exceptions).
  explicit FactorTable(Eigen::ArrayXd factors, double attention_factor = 1.0,
                       std::string method = "custom")
      : FactorTable(make(std::move(factors), attention_factor, std::move(method)).value()) {}

  /// Plain RoPE for `pairs` pairs (> 0; throws Error otherwise). Checked: default_factors(spec).
  static FactorTable identity(std::int64_t pairs) {
    if (pairs <= 0)
      throw_if_error(make_status(ErrorCode::kInvalidArgument, "pairs", pairs, "must be > 0"));
    return FactorTable(Eigen::ArrayXd::Ones(static_cast<Eigen::Index>(pairs)), 1.0, "default");
  }
  /// Plain RoPE for a spec (throws Error on an invalid spec). Checked: default_factors(spec).
  static FactorTable identity(const RopeSpec& spec) {
    throw_if_error(validate(spec));
    return identity(spec.pairs());
  }

  const Eigen::ArrayXd& factors() const noexcept { return factors_; }
  double attention_factor() const noexcept { return attention_factor_; }
  const std::string& method() const noexcept { return method_; }
  std::int64_t pairs() const noexcept { return static_cast<std::int64_t>(factors_.size()); }
  bool empty() const noexcept { return factors_.size() == 0; }

  /// True when this is plain RoPE (every lambda is exactly 1 and the attention factor is 1).
  bool is_identity() const noexcept { return attention_factor_ == 1.0 && (factors_ == 1.0).all(); }

  /// Checks that the table fits a spec (one factor per rotary pair).
  Status validate_for(const RopeSpec& spec) const {
    ROPESCALE_RETURN_IF_ERROR(validate(spec));
    if (pairs() != spec.pairs())
      return make_status(ErrorCode::kInvalidArgument, "factor table length", pairs(),
                         "must equal rotary_dim / 2 = " + std::to_string(spec.pairs()));
    return check_values(factors_, attention_factor_);
  }

  /// Rescaled inverse frequencies base_inv_freq_i / lambda_i in double; an error when the table
  /// does not fit the spec.
  Result<Eigen::ArrayXd> inv_freq(const RopeSpec& spec) const {
    ROPESCALE_RETURN_IF_ERROR(validate_for(spec));
    return Eigen::ArrayXd(base_inv_freq(spec).value() / factors_);
  }

  /// Exact equality of the numbers: factors and attention factor. The method is provenance, not
  /// part of the value: a searched table exported as a config and read back ("longrope2" becomes
  /// "longrope") is the same table. Compare method() explicitly where provenance matters.
  friend bool operator==(const FactorTable& a, const FactorTable& b) noexcept {
    return a.attention_factor_ == b.attention_factor_ && a.factors_.size() == b.factors_.size() &&
           (a.factors_ == b.factors_).all();
  }
  friend bool operator!=(const FactorTable& a, const FactorTable& b) noexcept { return !(a == b); }

  /// Equal within a relative tolerance on every factor and the attention factor (method ignored).
  bool approx_equal(const FactorTable& other, double rel_tol = 1e-12) const noexcept {
    if (factors_.size() != other.factors_.size()) return false;
    auto close = [rel_tol](double x, double y) {
      return std::abs(x - y) <= rel_tol * std::max(std::abs(x), std::abs(y));
    };
    if (!close(attention_factor_, other.attention_factor_)) return false;
    for (Eigen::Index i = 0; i < factors_.size(); ++i)
      if (!close(factors_[i], other.factors_[i])) return false;
    return true;
  }

  /// "FactorTable{method=yarn, pairs=64, attention_factor=1.27, factors=[1, 1, ..., 16]}".
  friend std::ostream& operator<<(std::ostream& os, const FactorTable& t) {
    os << "FactorTable{method=" << t.method_ << ", pairs=" << t.pairs()
       << ", attention_factor=" << t.attention_factor_ << ", factors=[";
    for (Eigen::Index i = 0; i < t.factors_.size(); ++i) os << (i ? ", " : "") << t.factors_[i];
    return os << "]}";
  }

 private:
  static Status check_values(const Eigen::ArrayXd& factors, double attention_factor) {
    if (factors.size() == 0)
      return make_status(ErrorCode::kInvalidArgument, "factors.size()", 0, "must be > 0");
    for (Eigen::Index i = 0; i < factors.size(); ++i) {
      const double v = factors[i];
      if (!std::isfinite(v) || !(v > 0.0))
        return make_status(ErrorCode::kInvalidArgument, "factors[" + std::to_string(i) + "]", v,
                           "must be finite and > 0");
      if (v < kMinFactor)
        return make_status(ErrorCode::kInvalidArgument, "factors[" + std::to_string(i) + "]", v,
                           "must be >= 1e-6 (kMinFactor)");
    }
    return detail::check_attention_factor("attention_factor", attention_factor);
  }

  Eigen::ArrayXd factors_;
  double attention_factor_ = 1.0;
  std::string method_ = "default";
};

}  // namespace ropescale
