// ropescale internal: the parameter checks the scaling methods of scaling.hpp share (scale
// factors, positive values and counts, listed factor tables, the plain-exponent rule of the NTK
// and YaRN formulas), the checked hand-over of a finished table and the NTK base-change factors.
// Each check names the argument, its value and the rule. Not a public header.
#pragma once

#include "ropescale/detail/internal_header_check.hpp"

#include <Eigen/Core>
#include <cmath>
#include <cstdint>
#include <string>
#include <utility>

#include "ropescale/error.hpp"
#include "ropescale/factors.hpp"
#include "ropescale/frequencies.hpp"

namespace ropescale {

namespace detail {

// A scale factor s of a method that only extends (HF's validators: "factor must be >= 1").
inline Status check_scale_factor(const std::string& name, double factor) {
  if (!std::isfinite(factor) || !(factor >= 1.0))
    return make_status(ErrorCode::kInvalidArgument, name, factor, "must be finite and >= 1");
  return Status();
}

inline Status check_positive(const std::string& name, double value) {
  if (!std::isfinite(value) || !(value > 0.0))
    return make_status(ErrorCode::kInvalidArgument, name, value, "must be finite and > 0");
  return Status();
}

inline Status check_positive_int(const std::string& name, std::int64_t value) {
  if (value <= 0) return make_status(ErrorCode::kInvalidArgument, name, value, "must be > 0");
  if (value > kMaxPosition)
    return make_status(ErrorCode::kInvalidArgument, name, value, "must be <= 2^48 (kMaxPosition)");
  return Status();
}

// Listed factors (config lists, searched values) must stay where base_inv_freq / lambda is a
// usable finite frequency: a denormal lambda would turn the frequency into infinity.
inline Status check_listed_factors(const std::string& name,
                                   const Eigen::Ref<const Eigen::ArrayXd>& f) {
  for (Eigen::Index i = 0; i < f.size(); ++i)
    if (!std::isfinite(f[i]) || !(f[i] >= kMinListedFactor))
      return make_status(ErrorCode::kInvalidArgument, name + "[" + std::to_string(i) + "]", f[i],
                         "must be finite and >= 1e-6");
  return Status();
}

inline Status check_factor_list(const std::string& name, const Eigen::Ref<const Eigen::ArrayXd>& f,
                                std::int64_t expected) {
  if (static_cast<std::int64_t>(f.size()) != expected)
    return make_status(ErrorCode::kInvalidArgument, name + ".size()",
                       static_cast<std::int64_t>(f.size()),
                       "must equal rotary_dim / 2 = " + std::to_string(expected));
  return check_listed_factors(name, f);
}

// NTK-style and YaRN formulas use rotary_dim as the exponent's denominator; a spec whose
// frequency_dim differs (Gemma 4 `proportional`) has no Hugging Face counterpart for them, so
// they refuse it rather than guess which width the formula means.
inline Status check_plain_exponent(const RopeSpec& spec, const char* method) {
  if (spec.frequency_dim() != spec.rotary_dim)
    return make_status(ErrorCode::kUnsupported, "freq_dim", spec.freq_dim,
                       std::string(method) +
                           " is defined for freq_dim == rotary_dim only; use linear or listed "
                           "factors (longrope) on a proportional spec");
  return Status();
}

// Builds the table and hands it over only when everything is valid (no partial result).
inline Result<FactorTable> finish_table(Eigen::ArrayXd factors, double attention_factor,
                                        const char* method) {
  return FactorTable::make(std::move(factors), attention_factor, method);
}

// Moves a result's value into *out, or returns its error (for callers that fill a slot).
template <typename T>
inline Status move_into(Result<T>&& r, T* out) {
  if (!r.ok()) return r.status();
  *out = std::move(r).value();
  return Status();
}

// NTK by base change: lambda_i = kappa^(2i/d) with ln kappa given, computed as exp so that a
// huge kappa cannot overflow before the exponent shrinks it.
inline Eigen::ArrayXd base_change_factors(std::int64_t rotary_dim, double log_kappa) {
  const Eigen::Index n = static_cast<Eigen::Index>(rotary_dim / 2);
  Eigen::ArrayXd out(n);
  const double d = static_cast<double>(rotary_dim);
  for (Eigen::Index i = 0; i < n; ++i)
    out[i] = std::exp(log_kappa * static_cast<double>(2 * i) / d);
  return out;
}

}  // namespace detail

}  // namespace ropescale
