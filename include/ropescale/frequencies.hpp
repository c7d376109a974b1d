// ropescale: the RoPE description and its base inverse frequencies.
//
// A head of head_dim channels rotates only its first rotary_dim channels (partial rotary, e.g.
// Phi-4-mini: head_dim 128, partial_rotary_factor 0.75, rotary_dim 96); the rest pass through.
// The rotary channels form rotary_dim / 2 pairs. Pair i rotates by the angle pos * theta_i with
//
//     theta_i = rope_theta ^ (-2 i / rotary_dim),   i = 0 .. rotary_dim/2 - 1   (RoFormer, eq. 15)
//
// Gemma 4's `proportional` RoPE spreads the exponent over a wider span than the channels that
// rotate: freq_dim = head_dim (512), rotary_dim = int(partial_rotary_factor * head_dim / 2) * 2
// (128), theta_i = rope_theta ^ (-2 i / freq_dim) for the 64 rotating pairs, and Hugging Face's
// rotate_half pairs channel i with channel i + freq_dim / 2 (not i + rotary_dim / 2):
//
//     channel   0 ..  63 | 64 .. 255 | 256 .. 319 | 320 .. 511      (head_dim 512)
//               x_0..x_63 | zero freq | y_0..y_63  | zero freq      half-split, freq_dim 512
//
// Pairs 64..255 have frequency 0 in HF (cos 1, sin 0): the identity, so they are not part of the
// spec's pairs and their channels pass through bit for bit. freq_dim = 0 (every other model)
// means freq_dim = rotary_dim, and everything above reduces to the usual partial rotary.
// and its period is T_i = 2 pi / theta_i tokens. A model pre-trained on original_max_position
// tokens has seen a full period only for pairs with T_i <= original_max_position.
#pragma once

#include <Eigen/Core>
#include <cmath>
#include <cstdint>
#include <ostream>

#include "ropescale/error.hpp"

namespace ropescale {

/// Limits every path accepts (see "Limits and guarantees" in the README).
///
/// Positions: [0, kMaxPosition). The angle reduction is good to ~1e-14 rad up to 2^48 rad and
/// degrades past it, so sources refuse larger positions (and angles) instead of rotating wrongly.
inline constexpr std::int64_t kMaxPosition = std::int64_t{1} << 48;
/// head_dim (and so rotary_dim) of any spec: 65536 channels, far above any model's 64 .. 512.
inline constexpr std::int64_t kMaxHeadDim = std::int64_t{1} << 16;
/// rope_theta: real models use 1e4 .. 1e7; above 1e12 the scaled tables under- and overflow.
inline constexpr double kMaxRopeTheta = 1e12;

/// What a model's RoPE looks like before any rescaling.
struct RopeSpec {
  std::int64_t head_dim = 128;                ///< channels per attention head
  std::int64_t rotary_dim = 128;              ///< leading channels that rotate; even, <= head_dim
  double rope_theta = 10000.0;                ///< the base ("rope_theta" in config.json)
  std::int64_t original_max_position = 4096;  ///< pre-training window L_train
  /// Denominator of the frequency exponent and the span of the half-split pair layout (Gemma 4
  /// `proportional`: head_dim); 0 means rotary_dim. Even, in [rotary_dim, head_dim].
  std::int64_t freq_dim = 0;

  /// Number of rotating pairs, rotary_dim / 2.
  std::int64_t pairs() const noexcept { return rotary_dim / 2; }
  /// The exponent's denominator: freq_dim, or rotary_dim when freq_dim is 0.
  std::int64_t frequency_dim() const noexcept { return freq_dim > 0 ? freq_dim : rotary_dim; }

  friend bool operator==(const RopeSpec& a, const RopeSpec& b) noexcept {
    return a.head_dim == b.head_dim && a.rotary_dim == b.rotary_dim &&
           a.rope_theta == b.rope_theta && a.original_max_position == b.original_max_position &&
           a.frequency_dim() == b.frequency_dim();
  }
  friend bool operator!=(const RopeSpec& a, const RopeSpec& b) noexcept { return !(a == b); }
  friend std::ostream& operator<<(std::ostream& os, const RopeSpec& s) {
    os << "RopeSpec{head_dim=" << s.head_dim << ", rotary_dim=" << s.rotary_dim
       << ", rope_theta=" << s.rope_theta << ", original_max_position=" << s.original_max_position;
    if (s.frequency_dim() != s.rotary_dim) os << ", freq_dim=" << s.freq_dim;
    return os << "}";
  }
};

/// Checks every field of a RopeSpec; the message names the field, its value and the rule.
inline Status validate(const RopeSpec& spec) {
  if (spec.head_dim <= 0)
    return make_status(ErrorCode::kInvalidArgument, "head_dim", spec.head_dim, "must be > 0");
  if (spec.head_dim > kMaxHeadDim)
    return make_status(ErrorCode::kInvalidArgument, "head_dim", spec.head_dim,
                       "must be <= " + std::to_string(kMaxHeadDim));
  if (spec.rotary_dim <= 0)
    return make_status(ErrorCode::kInvalidArgument, "rotary_dim", spec.rotary_dim, "must be > 0");
  if (spec.rotary_dim % 2 != 0)
    return make_status(ErrorCode::kInvalidArgument, "rotary_dim", spec.rotary_dim,
                       "must be even (channels rotate in pairs)");
  if (spec.rotary_dim > spec.head_dim)
    return make_status(ErrorCode::kInvalidArgument, "rotary_dim", spec.rotary_dim,
                       "must be <= head_dim (" + std::to_string(spec.head_dim) + ")");
  if (!std::isfinite(spec.rope_theta) || !(spec.rope_theta > 1.0))
    return make_status(ErrorCode::kInvalidArgument, "rope_theta", spec.rope_theta,
                       "must be finite and > 1");
  if (spec.rope_theta > kMaxRopeTheta)
    return make_status(ErrorCode::kInvalidArgument, "rope_theta", spec.rope_theta,
                       "must be <= 1e12");
  if (spec.original_max_position <= 0)
    return make_status(ErrorCode::kInvalidArgument, "original_max_position",
                       spec.original_max_position, "must be > 0");
  if (spec.freq_dim != 0) {
    if (spec.freq_dim < spec.rotary_dim || spec.freq_dim > spec.head_dim || spec.freq_dim % 2 != 0)
      return make_status(ErrorCode::kInvalidArgument, "freq_dim", spec.freq_dim,
                         "must be 0 or even and in [rotary_dim, head_dim] = [" +
                             std::to_string(spec.rotary_dim) + ", " +
                             std::to_string(spec.head_dim) + "]");
  }
  if (spec.original_max_position > kMaxPosition)
    return make_status(ErrorCode::kInvalidArgument, "original_max_position",
                       spec.original_max_position, "must be <= 2^48 (kMaxPosition)");
  return Status();
}

/// Base inverse frequencies theta_i = rope_theta^(-2i/frequency_dim()) for the rotary_dim/2
/// rotating pairs, computed in double exactly as Hugging Face's float64 path does
/// (1 / base^(2i/d)). An error on an invalid spec.
inline Result<Eigen::ArrayXd> base_inv_freq(const RopeSpec& spec) {
  ROPESCALE_RETURN_IF_ERROR(validate(spec));
  const Eigen::Index n = static_cast<Eigen::Index>(spec.pairs());
  Eigen::ArrayXd out(n);
  const double d = static_cast<double>(spec.frequency_dim());
  for (Eigen::Index i = 0; i < n; ++i)
    out[i] = 1.0 / std::pow(spec.rope_theta, static_cast<double>(2 * i) / d);
  return out;
}

/// pi and 2 pi: the one copy every formula in the library uses (periods, YaRN's correction
/// range, Llama 3's wavelengths, the critical pair).
inline constexpr double kPi = 3.141592653589793238462643383279502884;
inline constexpr double kTwoPi = 2.0 * kPi;

namespace detail {

// The real-valued pair index whose base period 2pi / theta_i equals `length` tokens:
//   frequency_dim/2 * log_base(length / 2pi)
// (LongRoPE2 eq. 7 before rounding). The one formula behind critical_dims. Unchecked: callers
// validate the spec.
inline double pair_with_period(const RopeSpec& spec, double length) noexcept {
  return static_cast<double>(spec.frequency_dim() / 2) * std::log(length / kTwoPi) /
         std::log(spec.rope_theta);
}

inline std::int64_t clamp_pair(double x, std::int64_t pairs) {
  const double c = std::ceil(x);
  if (c <= 0.0) return 0;
  if (c >= static_cast<double>(pairs)) return pairs;
  return static_cast<std::int64_t>(c);
}

// What the analysis needs beyond validate(spec): the training window must hold a full period of
// pair 0 (L_train > 2pi), otherwise no pair ever completed a period and log_base(L_train / 2pi)
// is negative. critical_dims(spec).status() is the public form of this check.
inline Status check_critical_spec(const RopeSpec& spec) {
  ROPESCALE_RETURN_IF_ERROR(validate(spec));
  if (!(static_cast<double>(spec.original_max_position) > kTwoPi))
    return make_status(ErrorCode::kInvalidArgument, "original_max_position",
                       spec.original_max_position,
                       "must be > 2 pi (the training window must hold one period of pair 0)");
  return Status();
}

}  // namespace detail

/// The critical pair and the lower search bound of a RoPE description.
struct CriticalDims {
  std::int64_t critical_pair = 0;    ///< i_tcd: first pair whose period exceeds L_train
  std::int64_t critical_dim = 0;     ///< d_tcd = 2 * i_tcd (full-dimension units, eq. 7)
  std::int64_t lower_pair = 0;       ///< i10: first pair whose period exceeds L_train / 10
  std::int64_t lower_dim = 0;        ///< 2 * i10
  double critical_pair_exact = 0.0;  ///< d/2 * log_base(L_train / 2pi) before the ceiling
};

/// The theoretical critical pair i_tcd = ceil(d/2 log_base(L_train/2pi)) (LongRoPE2 eq. 7), its
/// full-dimension value d_tcd = 2 i_tcd, and the lower search bound i10 (Alg. 1). Both pair
/// indices are clamped to [0, rotary_dim/2]; critical_pair == rotary_dim/2 means every pair
/// completed a period in pre-training. An error if the spec is invalid or L_train <= 2pi.
inline Result<CriticalDims> critical_dims(const RopeSpec& spec) {
  ROPESCALE_RETURN_IF_ERROR(detail::check_critical_spec(spec));
  const double train = static_cast<double>(spec.original_max_position);
  CriticalDims d;
  d.critical_pair_exact = detail::pair_with_period(spec, train);
  d.critical_pair = detail::clamp_pair(d.critical_pair_exact, spec.pairs());
  d.critical_dim = 2 * d.critical_pair;
  d.lower_pair = detail::clamp_pair(detail::pair_with_period(spec, train / 10.0), spec.pairs());
  d.lower_dim = 2 * d.lower_pair;
  return d;
}

}  // namespace ropescale
