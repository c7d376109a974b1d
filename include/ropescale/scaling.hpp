// ropescale: every RoPE rescaling method as a generator of one FactorTable.
//
// Each method answers one question: by how much does pair i's wavelength grow? The answer is a
// table of lambda_i (inv_freq_i = base_inv_freq_i / lambda_i) plus the attention factor that
// multiplies cos and sin (see factors.hpp). One kernel family consumes every table.
//
//   method            lambda_i                                          attention factor
//   ----------------  ------------------------------------------------  ------------------------
//   default           1                                                 1
//   linear (PI)       s                                                 1
//   ntk               s^(2i/(d-2))        (base' = base * s^(d/(d-2)))  1
//   ntk_critical      kappa^(2i/d), kappa = base^(log_{L/2pi}(L'/2pi) - 1)  1
//   dynamic_ntk       as ntk with s_eff = s*n/max_pos - (s-1)            1
//   yarn              1 / (ramp_i / s + 1 - ramp_i)                     0.1 ln s + 1 (or mscale)
//   llama3            1 | s | 1 / ((1-sm)/s + sm) by wavelength          1
//   longrope          short_factor or long_factor (listed per pair)      sqrt(1 + ln s / ln L)
//   longrope2         lambda_c^(i/c) below c, searched values from c     as longrope
//   dynamic_longrope  1 + (lambda_i - 1)(cur - 1)/(s - 1), cur = n / L   sqrt(1 + ln cur / ln L)
//
// Notation: d = rotary_dim, i = pair index in [0, d/2), base = rope_theta, L = the pre-training
// window (RopeSpec::original_max_position), s = target / L, n = current sequence length.
//
// Every formula is the one Hugging Face transformers computes (modeling_rope_utils.py,
// `_compute_*_parameters`), written as a divisor of the base frequency; the tests hold each one
// to HF's float64 output within 1e-12 relative. Every generator validates its input at the front
// door and returns Result<FactorTable>: the table, or a Status naming what broke which rule.
#pragma once

#include <Eigen/Core>
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <optional>
#include <string>
#include <utility>

#include "ropescale/error.hpp"
#include "ropescale/factors.hpp"
#include "ropescale/frequencies.hpp"
#include "ropescale/window.hpp"

#pragma push_macro("ROPESCALE_INSIDE_PUBLIC_HEADER")
#define ROPESCALE_INSIDE_PUBLIC_HEADER
#include "ropescale/detail/param_checks.hpp"
#pragma pop_macro("ROPESCALE_INSIDE_PUBLIC_HEADER")

namespace ropescale {

// ---------------------------------------------------------------------------------------------
// default and linear
// ---------------------------------------------------------------------------------------------

/// Plain RoPE: every lambda_i = 1, attention factor 1 (HF `default`). Method "default".
inline Result<FactorTable> default_factors(const RopeSpec& spec) {
  ROPESCALE_RETURN_IF_ERROR(validate(spec));
  return detail::finish_table(Eigen::ArrayXd::Ones(static_cast<Eigen::Index>(spec.pairs())), 1.0,
                              "default");
}

/// Position interpolation (Chen et al. 2023, HF `linear`): every lambda_i = s, so position p
/// is read as p / s. Attention factor 1. Requires s finite and >= 1. Method "linear".
inline Result<FactorTable> linear_factors(const RopeSpec& spec, double factor) {
  ROPESCALE_RETURN_IF_ERROR(validate(spec));
  ROPESCALE_RETURN_IF_ERROR(detail::check_scale_factor("factor", factor));
  return detail::finish_table(
      Eigen::ArrayXd::Constant(static_cast<Eigen::Index>(spec.pairs()), factor), 1.0, "linear");
}

// ---------------------------------------------------------------------------------------------
// NTK-aware base change, two forms
// ---------------------------------------------------------------------------------------------

/// NTK-aware scaling in the LocalLLaMA form (bloc97, 2023; HF `dynamic` at its limit):
/// base' = base * s^(d/(d-2)), hence lambda_i = s^(2i/(d-2)). lambda_0 = 1 and the last pair
/// gets exactly s. Requires s >= 1 and rotary_dim > 2. Method "ntk".
inline Result<FactorTable> ntk_factors(const RopeSpec& spec, double factor) {
  ROPESCALE_RETURN_IF_ERROR(validate(spec));
  ROPESCALE_RETURN_IF_ERROR(detail::check_plain_exponent(spec, "ntk"));
  ROPESCALE_RETURN_IF_ERROR(detail::check_scale_factor("factor", factor));
  if (spec.rotary_dim <= 2)
    return make_status(ErrorCode::kInvalidArgument, "rotary_dim", spec.rotary_dim,
                       "must be > 2 for NTK-aware scaling (the exponent is d/(d-2))");
  const double d = static_cast<double>(spec.rotary_dim);
  const double log_kappa = std::log(factor) * d / (d - 2.0);
  return detail::finish_table(detail::base_change_factors(spec.rotary_dim, log_kappa), 1.0, "ntk");
}

/// The NTK baseline of the LongRoPE2 paper (after Liu et al. 2023, "Scaling laws of RoPE-based
/// extrapolation"): base' = base^(log_{L/2pi}(L'/2pi)) with L = spec.original_max_position and
/// L' = target_length, hence lambda_i = (base'/base)^(2i/d). It makes lambda reach s = L'/L
/// exactly at the theoretical critical dimension i = (d/2) log_base(L/2pi), and exceed s above
/// it (LongRoPE2 eq. 9-10). Requires target_length >= L and L > 2pi. Method "ntk_critical".
inline Result<FactorTable> ntk_critical_factors(const RopeSpec& spec, std::int64_t target_length) {
  ROPESCALE_RETURN_IF_ERROR(validate(spec));
  ROPESCALE_RETURN_IF_ERROR(detail::check_plain_exponent(spec, "ntk_critical"));
  if (target_length < spec.original_max_position)
    return make_status(
        ErrorCode::kInvalidArgument, "target_length", target_length,
        "must be >= original_max_position (" + std::to_string(spec.original_max_position) + ")");
  const double l_train = static_cast<double>(spec.original_max_position);
  if (!(l_train > kTwoPi))
    return make_status(ErrorCode::kInvalidArgument, "original_max_position",
                       spec.original_max_position, "must be > 2 pi for the critical-dimension NTK");
  const double exponent =
      std::log(static_cast<double>(target_length) / kTwoPi) / std::log(l_train / kTwoPi);
  const double log_kappa = (exponent - 1.0) * std::log(spec.rope_theta);
  return detail::finish_table(detail::base_change_factors(spec.rotary_dim, log_kappa), 1.0,
                              "ntk_critical");
}

/// Dynamic NTK as Hugging Face computes it (`_compute_dynamic_ntk_parameters`) for a sequence of
/// seq_len tokens: n = max(seq_len, max_position_embeddings),
/// base' = base * (s n / max_pos - (s - 1))^(d/(d-2)). Up to max_position_embeddings the table is
/// the identity; once the ratio reaches s (n = max_pos (2s - 1) / s) it equals
/// ntk_factors(spec, s), and it keeps growing with n. HF uses
/// max_position_embeddings (not original_max_position_embeddings) as the window. seq_len <= 0
/// means "init time" (HF's seq_len=None). Method "dynamic_ntk".
inline Result<FactorTable> dynamic_ntk_factors(const RopeSpec& spec, double factor,
                                               std::int64_t max_position_embeddings,
                                               std::int64_t seq_len) {
  ROPESCALE_RETURN_IF_ERROR(validate(spec));
  ROPESCALE_RETURN_IF_ERROR(detail::check_scale_factor("factor", factor));
  ROPESCALE_RETURN_IF_ERROR(
      detail::check_positive_int("max_position_embeddings", max_position_embeddings));
  ROPESCALE_RETURN_IF_ERROR(detail::check_plain_exponent(spec, "dynamic_ntk"));
  if (spec.rotary_dim <= 2)
    return make_status(ErrorCode::kInvalidArgument, "rotary_dim", spec.rotary_dim,
                       "must be > 2 for NTK-aware scaling (the exponent is d/(d-2))");
  const double max_pos = static_cast<double>(max_position_embeddings);
  const double n = static_cast<double>(std::max(seq_len, max_position_embeddings));
  const double ratio = (factor * n / max_pos) - (factor - 1.0);
  const double d = static_cast<double>(spec.rotary_dim);
  const double log_kappa = std::log(ratio) * d / (d - 2.0);
  return detail::finish_table(detail::base_change_factors(spec.rotary_dim, log_kappa), 1.0,
                              "dynamic_ntk");
}

/// Dynamic NTK as Hugging Face's rotary module runs it across calls (`dynamic_rope_update`):
/// the table is dynamic_ntk_factors at the longest sequence seen so far (it only grows), and
/// goes back to the original table once a sequence fits below max_position_embeddings again.
/// Per forward pass over seq_len tokens (max position id + 1):
///   seq_len > cached                                  -> cached = seq_len (grow)
///   seq_len < max_position_embeddings < cached        -> cached = max_position_embeddings (reset)
/// and the table is dynamic_ntk_factors(spec, factor, max_position_embeddings, cached).
/// dynamic_ntk_factors(.., seq_len) is the stateless variant (the table for this length alone).
class DynamicNtkState {
 public:
  /// An error on the arguments dynamic_ntk_factors refuses.
  static Result<DynamicNtkState> make(const RopeSpec& spec, double factor,
                                      std::int64_t max_position_embeddings) {
    const Result<FactorTable> probe = dynamic_ntk_factors(spec, factor, max_position_embeddings, 0);
    if (!probe.ok()) return probe.status();
    DynamicNtkState st;
    st.spec_ = spec;
    st.factor_ = factor;
    st.max_pos_ = max_position_embeddings;
    st.cached_ = max_position_embeddings;
    return st;
  }
  /// make(...).value(): throws Error on bad input (aborts without exceptions).
  DynamicNtkState(const RopeSpec& spec, double factor, std::int64_t max_position_embeddings)
      : DynamicNtkState(make(spec, factor, max_position_embeddings).value()) {}

  /// The table HF uses for a forward pass over seq_len tokens (> 0), updating the state as HF
  /// does; on error the state is unchanged.
  Result<FactorTable> update(std::int64_t seq_len) {
    if (seq_len <= 0)
      return make_status(ErrorCode::kInvalidArgument, "seq_len", seq_len, "must be > 0");
    std::int64_t next = cached_;
    if (seq_len > next) next = seq_len;
    if (seq_len < max_pos_ && next > max_pos_) next = max_pos_;
    Result<FactorTable> t = dynamic_ntk_factors(spec_, factor_, max_pos_, next);
    if (t.ok()) cached_ = next;
    return t;
  }

  /// The sequence length the current table was built for (HF's max_seq_len_cached).
  std::int64_t cached_seq_len() const noexcept { return cached_; }

 private:
  DynamicNtkState() = default;

  RopeSpec spec_;
  double factor_ = 1.0;
  std::int64_t max_pos_ = 0;
  std::int64_t cached_ = 0;
};

// ---------------------------------------------------------------------------------------------
// YaRN
// ---------------------------------------------------------------------------------------------

/// YaRN parameters (Peng et al. 2023; HF `yarn`, both the older and the newer semantics).
///
/// The correction range uses `original_max_position` as its window. Older HF
/// (`ef46806`) passes config.max_position_embeddings there; newer HF passes
/// rope_scaling.original_max_position_embeddings when the config has it (io/hf_config.hpp picks
/// the right one). 0 means spec.original_max_position.
struct YarnParams {
  double factor = 1.0;        ///< s; finite and >= 1
  double beta_fast = 32;      ///< rotations at which interpolation starts fading in (pair low)
  double beta_slow = 1;       ///< rotations at which interpolation is complete (pair high)
  double mscale = 0;          ///< DeepSeek `mscale`; used with mscale_all_dim when both are nonzero
  double mscale_all_dim = 0;  ///< DeepSeek `mscale_all_dim`
  bool truncate = true;       ///< floor/ceil the correction range (gpt-oss sets false)
  std::optional<double> attention_factor;  ///< explicit override of the attention factor
  std::int64_t original_max_position = 0;  ///< correction-range window; 0 = spec's
};

/// YaRN's magnitude correction 0.1 * m * ln s + 1 (1 for s <= 1), HF's `get_mscale`.
inline double yarn_get_mscale(double scale, double mscale = 1.0) {
  if (scale <= 1.0) return 1.0;
  return 0.1 * mscale * std::log(scale) + 1.0;
}

/// The attention factor YaRN uses: the explicit one if set, else
/// get_mscale(s, mscale) / get_mscale(s, mscale_all_dim) when both are nonzero (DeepSeek), else
/// 0.1 ln s + 1 (YaRN paper eq. 22, sqrt(1/t)).
inline double yarn_attention_factor(const YarnParams& p) {
  if (p.attention_factor) return *p.attention_factor;
  if (p.mscale != 0.0 && p.mscale_all_dim != 0.0)
    return yarn_get_mscale(p.factor, p.mscale) / yarn_get_mscale(p.factor, p.mscale_all_dim);
  return yarn_get_mscale(p.factor);
}

/// YaRN's correction dimension: the (fractional) pair index whose wavelength fits
/// `num_rotations` times into `window`: d ln(window / (2 pi r)) / (2 ln base).
inline double yarn_correction_dim(double num_rotations, std::int64_t rotary_dim, double base,
                                  double window) {
  return (static_cast<double>(rotary_dim) * std::log(window / (num_rotations * kTwoPi))) /
         (2.0 * std::log(base));
}

/// YaRN "NTK-by-parts": pairs below low = c(beta_fast) keep their frequency (lambda 1), pairs
/// above high = c(beta_slow) are interpolated (lambda s), a linear ramp blends the frequencies in
/// between: inv_freq' = inv_freq * ((1 - ramp_i) + ramp_i / s). With truncate, low/high are
/// floored/ceiled; both are clamped to [0, rotary_dim - 1] as HF does. Method "yarn".
inline Result<FactorTable> yarn_factors(const RopeSpec& spec, const YarnParams& p) {
  ROPESCALE_RETURN_IF_ERROR(validate(spec));
  ROPESCALE_RETURN_IF_ERROR(detail::check_plain_exponent(spec, "yarn"));
  ROPESCALE_RETURN_IF_ERROR(detail::check_scale_factor("factor", p.factor));
  ROPESCALE_RETURN_IF_ERROR(detail::check_positive("beta_fast", p.beta_fast));
  ROPESCALE_RETURN_IF_ERROR(detail::check_positive("beta_slow", p.beta_slow));
  if (p.beta_fast < p.beta_slow)
    return make_status(ErrorCode::kInvalidArgument, "beta_fast", p.beta_fast,
                       "must be >= beta_slow (" + detail::format_value(p.beta_slow) + ")");
  if (!std::isfinite(p.mscale) || p.mscale < 0.0)
    return make_status(ErrorCode::kInvalidArgument, "mscale", p.mscale, "must be finite and >= 0");
  if (!std::isfinite(p.mscale_all_dim) || p.mscale_all_dim < 0.0)
    return make_status(ErrorCode::kInvalidArgument, "mscale_all_dim", p.mscale_all_dim,
                       "must be finite and >= 0");
  if (p.attention_factor)
    ROPESCALE_RETURN_IF_ERROR(detail::check_positive("attention_factor", *p.attention_factor));
  if (p.original_max_position < 0)
    return make_status(ErrorCode::kInvalidArgument, "original_max_position",
                       p.original_max_position, "must be >= 0 (0 = the spec's window)");

  const double window = static_cast<double>(
      p.original_max_position > 0 ? p.original_max_position : spec.original_max_position);
  double low = yarn_correction_dim(p.beta_fast, spec.rotary_dim, spec.rope_theta, window);
  double high = yarn_correction_dim(p.beta_slow, spec.rotary_dim, spec.rope_theta, window);
  if (p.truncate) {
    low = std::floor(low);
    high = std::ceil(high);
  }
  low = std::max(low, 0.0);
  high = std::min(high, static_cast<double>(spec.rotary_dim - 1));
  if (low == high) high += 0.001;  // HF: prevent a zero-width ramp

  const Eigen::Index n = static_cast<Eigen::Index>(spec.pairs());
  Eigen::ArrayXd factors(n);
  for (Eigen::Index i = 0; i < n; ++i) {
    const double ramp = std::clamp((static_cast<double>(i) - low) / (high - low), 0.0, 1.0);
    factors[i] = 1.0 / (ramp / p.factor + (1.0 - ramp));
  }
  const double attention = yarn_attention_factor(p);
  return detail::finish_table(std::move(factors), attention, "yarn");
}

// ---------------------------------------------------------------------------------------------
// Llama 3.1
// ---------------------------------------------------------------------------------------------

/// Llama-3.1 `llama3` scaling (Meta's reference code; HF `_compute_llama3_parameters`).
struct Llama3Params {
  double factor = 8;                          ///< s
  double low_freq_factor = 1;                 ///< wavelengths above L / low_freq_factor get s
  double high_freq_factor = 4;                ///< wavelengths below L / high_freq_factor keep 1
  std::int64_t original_max_position = 8192;  ///< L (rope_scaling.original_max_position_embeddings)
};

/// Llama-3.1 frequency-dependent interpolation. With wavelength w_i = 2 pi / inv_freq_i:
/// lambda_i = 1 if w_i < L/high_freq_factor, s if w_i > L/low_freq_factor, else
/// 1 / ((1 - sm)/s + sm) with sm = (L/w_i - low)/(high - low). Attention factor 1.
/// Requires s >= 1 and 0 < low_freq_factor <= high_freq_factor; equal factors (Llama 4 Scout:
/// 1 and 1) make a step at w = L/low, where HF's smoothing would divide 0 by 0 (factor 1 there).
/// Method "llama3".
inline Result<FactorTable> llama3_factors(const RopeSpec& spec, const Llama3Params& p) {
  ROPESCALE_RETURN_IF_ERROR(validate(spec));
  ROPESCALE_RETURN_IF_ERROR(detail::check_scale_factor("factor", p.factor));
  ROPESCALE_RETURN_IF_ERROR(detail::check_positive("low_freq_factor", p.low_freq_factor));
  ROPESCALE_RETURN_IF_ERROR(detail::check_positive("high_freq_factor", p.high_freq_factor));
  if (!(p.low_freq_factor <= p.high_freq_factor))
    return make_status(
        ErrorCode::kInvalidArgument, "low_freq_factor", p.low_freq_factor,
        "must be <= high_freq_factor (" + detail::format_value(p.high_freq_factor) + ")");
  ROPESCALE_RETURN_IF_ERROR(
      detail::check_positive_int("original_max_position", p.original_max_position));

  const double l = static_cast<double>(p.original_max_position);
  const double low_freq_wavelen = l / p.low_freq_factor;
  const double high_freq_wavelen = l / p.high_freq_factor;
  const Eigen::ArrayXd inv_freq = base_inv_freq(spec).value();  // spec checked above
  Eigen::ArrayXd factors(inv_freq.size());
  for (Eigen::Index i = 0; i < inv_freq.size(); ++i) {
    const double wavelen = kTwoPi / inv_freq[i];
    if (wavelen < high_freq_wavelen) {
      factors[i] = 1.0;
    } else if (wavelen > low_freq_wavelen) {
      factors[i] = p.factor;
    } else if (p.high_freq_factor == p.low_freq_factor) {
      factors[i] = 1.0;  // w == L/low exactly: the band has no width
    } else {
      const double smooth =
          (l / wavelen - p.low_freq_factor) / (p.high_freq_factor - p.low_freq_factor);
      factors[i] = 1.0 / ((1.0 - smooth) / p.factor + smooth);
    }
  }
  return detail::finish_table(std::move(factors), 1.0, "llama3");
}

// ---------------------------------------------------------------------------------------------
// LongRoPE (Phi-3 `longrope`, formerly `su`)
// ---------------------------------------------------------------------------------------------

/// LongRoPE parameters as a Phi-3-style config holds them. The switch point L is
/// spec.original_max_position (top-level `original_max_position_embeddings`).
struct LongRopeParams {
  Eigen::ArrayXd short_factor;  ///< lambda_i for sequences of at most L tokens (rotary_dim/2)
  Eigen::ArrayXd long_factor;   ///< lambda_i for longer sequences (rotary_dim/2)
  double factor = 1.0;  ///< s = max_position_embeddings / L; drives the default attention factor
  std::optional<double> attention_factor;  ///< explicit override (HF `attention_factor`)
  std::optional<double> short_mscale;      ///< per-set override when no attention_factor (vLLM)
  std::optional<double> long_mscale;       ///< per-set override when no attention_factor (vLLM)
};

/// LongRoPE's default attention factor sqrt(1 + ln s / ln L), 1 for s <= 1 (LongRoPE "su"
/// policy; HF `_compute_longrope_parameters`).
inline double longrope_default_attention_factor(double factor, std::int64_t original_max_position) {
  if (factor <= 1.0) return 1.0;
  return std::sqrt(1.0 + std::log(factor) / std::log(static_cast<double>(original_max_position)));
}

/// The attention factor for a selection: explicit attention_factor (HF) first, then that set's
/// short_mscale/long_mscale (vLLM), then the default sqrt(1 + ln s / ln L). HF uses the same
/// value for both sets.
inline double longrope_attention_factor(const RopeSpec& spec, const LongRopeParams& p,
                                        RopeWindow which) {
  if (p.attention_factor) return *p.attention_factor;
  const std::optional<double>& m = which == RopeWindow::kLong ? p.long_mscale : p.short_mscale;
  if (m) return *m;
  return longrope_default_attention_factor(p.factor, spec.original_max_position);
}

namespace detail {
inline Status check_longrope_params(const RopeSpec& spec, const LongRopeParams& p) {
  ROPESCALE_RETURN_IF_ERROR(validate(spec));
  ROPESCALE_RETURN_IF_ERROR(check_factor_list("short_factor", p.short_factor, spec.pairs()));
  ROPESCALE_RETURN_IF_ERROR(check_factor_list("long_factor", p.long_factor, spec.pairs()));
  ROPESCALE_RETURN_IF_ERROR(check_positive("factor", p.factor));
  if (p.attention_factor)
    ROPESCALE_RETURN_IF_ERROR(check_positive("attention_factor", *p.attention_factor));
  if (p.short_mscale) ROPESCALE_RETURN_IF_ERROR(check_positive("short_mscale", *p.short_mscale));
  if (p.long_mscale) ROPESCALE_RETURN_IF_ERROR(check_positive("long_mscale", *p.long_mscale));
  return Status();
}
}  // namespace detail

/// The LongRoPE table for an explicit selection. Method "longrope".
inline Result<FactorTable> longrope_factors(const RopeSpec& spec, const LongRopeParams& p,
                                            RopeWindow which) {
  ROPESCALE_RETURN_IF_ERROR(detail::check_longrope_params(spec, p));
  const Eigen::ArrayXd& f = which == RopeWindow::kLong ? p.long_factor : p.short_factor;
  return detail::finish_table(f, longrope_attention_factor(spec, p, which), "longrope");
}
/// The LongRoPE table HF uses for a sequence of seq_len tokens (long iff seq_len > L).
inline Result<FactorTable> longrope_factors(const RopeSpec& spec, const LongRopeParams& params,
                                            std::int64_t seq_len) {
  return longrope_factors(spec, params, detail::rope_window(seq_len, spec.original_max_position));
}

// ---------------------------------------------------------------------------------------------
// Dynamic LongRoPE
// ---------------------------------------------------------------------------------------------

/// Dynamic LongRoPE (microsoft/LongRoPE `LlamaDynamicLongRoPEScaledRotaryEmbedding`): the factors
/// searched for the full extension s are blended toward 1 for shorter sequences,
///   lambda'_i = 1 + (lambda_i - 1)(cur - 1)/(s - 1),  cur = max(seq_len / L, 1),
/// with attention factor sqrt(1 + ln cur / ln L) (1 at cur = 1). At cur = s this is the searched
/// table; beyond s it keeps growing linearly, as the reference does. Requires s > 1.
/// Method "dynamic_longrope".
inline Result<FactorTable> dynamic_longrope_factors(const RopeSpec& spec,
                                                    const Eigen::Ref<const Eigen::ArrayXd>& factors,
                                                    double factor, std::int64_t seq_len) {
  ROPESCALE_RETURN_IF_ERROR(validate(spec));
  ROPESCALE_RETURN_IF_ERROR(detail::check_factor_list("factors", factors, spec.pairs()));
  if (!std::isfinite(factor) || !(factor > 1.0))
    return make_status(ErrorCode::kInvalidArgument, "factor", factor,
                       "must be finite and > 1 (the blend divides by s - 1)");
  const double cur =
      std::max(static_cast<double>(seq_len) / static_cast<double>(spec.original_max_position), 1.0);
  const double w = (cur - 1.0) / (factor - 1.0);
  Eigen::ArrayXd blended = 1.0 + (factors - 1.0) * w;
  const double attention = longrope_default_attention_factor(cur, spec.original_max_position);
  return detail::finish_table(std::move(blended), attention, "dynamic_longrope");
}

// ---------------------------------------------------------------------------------------------
// LongRoPE2
// ---------------------------------------------------------------------------------------------

/// LongRoPE2 (arXiv 2502.20082, Alg. 2 lines 7-8): the critical pair c splits the table. Pairs
/// i >= c carry the searched factors; pairs below c use NTK scaling with the base refitted so
/// that it passes through the anchor lambda_c, which in closed form is
///   lambda_i = lambda_c^(i/c),  i < c   (lambda_0 = 1, geometric up to the anchor).
/// `searched` holds lambda_c .. lambda_{d/2-1} (length rotary_dim/2 - c). c = 0 means the whole
/// table was searched. Method "longrope2".
inline Result<FactorTable> longrope2_factors(const RopeSpec& spec, std::int64_t critical_pair,
                                             const Eigen::Ref<const Eigen::ArrayXd>& searched,
                                             double attention_factor = 1.0) {
  ROPESCALE_RETURN_IF_ERROR(validate(spec));
  if (critical_pair < 0 || critical_pair >= spec.pairs())
    return make_status(ErrorCode::kInvalidArgument, "critical_pair", critical_pair,
                       "must be in [0, rotary_dim/2) = [0, " + std::to_string(spec.pairs()) + ")");
  const std::int64_t expected = spec.pairs() - critical_pair;
  if (static_cast<std::int64_t>(searched.size()) != expected)
    return make_status(ErrorCode::kInvalidArgument, "searched.size()",
                       static_cast<std::int64_t>(searched.size()),
                       "must equal rotary_dim/2 - critical_pair = " + std::to_string(expected));
  ROPESCALE_RETURN_IF_ERROR(detail::check_listed_factors("searched", searched));
  ROPESCALE_RETURN_IF_ERROR(detail::check_positive("attention_factor", attention_factor));
  const Eigen::Index c = static_cast<Eigen::Index>(critical_pair);
  Eigen::ArrayXd factors(static_cast<Eigen::Index>(spec.pairs()));
  if (c > 0) {
    const double anchor = searched[0];
    for (Eigen::Index i = 0; i < c; ++i)
      factors[i] = std::pow(anchor, static_cast<double>(i) / static_cast<double>(c));
  }
  factors.tail(searched.size()) = searched;
  return detail::finish_table(std::move(factors), attention_factor, "longrope2");
}

/// What detect_longrope2 found in a published factor list.
struct LongRope2Detection {
  bool found = false;              ///< an NTK-anchored prefix followed by a break was found
  std::int64_t critical_pair = 0;  ///< c: lambda_i = lambda_c^(i/c) for all i < c
  double anchor = 0.0;             ///< lambda_c
  double max_rel_error = 0.0;      ///< max_i<c |lambda_i - lambda_c^(i/c)| / lambda_c^(i/c)
};

/// The inverse of longrope2_factors: the largest c >= 2 such that every lambda_i, i < c, equals
/// lambda_c^(i/c) within rel_tol. `found` is false when no c >= 2 fits, when the whole table
/// is one geometric sequence (plain NTK, or all ones), which has no searched part, or when the
/// anchor is 1 (a flat prefix: YaRN and Llama-3.1 tables). Published
/// lists are rounded (LLaMA3-8B LongRoPE2: ~1e-8), hence the 1e-6 default.
/// The LLaMA3-8B LongRoPE2 long_factor gives c = 33; Phi-4-mini's gives c = 31.
inline Result<LongRope2Detection> detect_longrope2(const Eigen::Ref<const Eigen::ArrayXd>& factors,
                                                   double rel_tol = 1e-6) {
  if (!std::isfinite(rel_tol) || !(rel_tol >= 0.0))
    return make_status(ErrorCode::kInvalidArgument, "rel_tol", rel_tol, "must be finite and >= 0");
  for (Eigen::Index i = 0; i < factors.size(); ++i)
    if (!std::isfinite(factors[i]) || !(factors[i] > 0.0))
      return make_status(ErrorCode::kInvalidArgument, "factors[" + std::to_string(i) + "]",
                         factors[i], "must be finite and > 0");
  LongRope2Detection best;
  const Eigen::Index n = factors.size();
  for (Eigen::Index c = n - 1; c >= 2; --c) {
    const double anchor = factors[c];
    double worst = 0.0;
    bool ok = true;
    for (Eigen::Index i = 0; i < c && ok; ++i) {
      const double expect = std::pow(anchor, static_cast<double>(i) / static_cast<double>(c));
      const double rel = std::abs(factors[i] - expect) / expect;
      worst = std::max(worst, rel);
      ok = rel <= rel_tol;
    }
    if (!ok) continue;
    // c == n - 1: one geometric sequence (NTK), no searched part. An anchor of 1: a flat prefix
    // (YaRN, Llama-3.1 keep lambda = 1 below their ramp), not an NTK base change.
    if (c < n - 1 && anchor > 1.0 + std::max(rel_tol, 1e-12)) {
      best.found = true;
      best.critical_pair = static_cast<std::int64_t>(c);
      best.anchor = anchor;
      best.max_rel_error = worst;
    }
    break;
  }
  return best;
}

}  // namespace ropescale
