// ropescale internal: accurate sin/cos of pos * inv_freq for very long positions.
// Not a public header: include ropescale/rotary.hpp.
#pragma once

#include "ropescale/detail/internal_header_check.hpp"

#include <cmath>
#include <cstdint>
#include <type_traits>

namespace ropescale {
namespace detail {

// pi/2 split into two 30-bit heads and a double tail (Cody & Waite range reduction): for
// |n| < 2^23 the products n * kPio2Hi and n * kPio2Mid are exact, so the reduced argument
// keeps double accuracy for angles up to ~6.5e6 rad.
constexpr double kPio2Hi = 1.570796325802803;       // 30 significant bits
constexpr double kPio2Mid = 9.920935791635221e-10;  // next 30 bits
constexpr double kPio2Lo = 5.170182981794105e-19;   // the rest, rounded
constexpr double kTwoOverPi = 0.6366197723675814;
/// Angles below this use the fast reduction; larger ones the long double one.
constexpr double kFastAngleLimit = 4194304.0;  // 2^22

// sin and cos of |r| <= pi/4 (plus rounding slack) by their Taylor series to r^17 / r^18:
// the truncation error is below 1e-19, so the result is as good as the double arithmetic.
inline void sincos_kernel(double r, double& s, double& c) noexcept {
  const double r2 = r * r;
  double ps = -1.0 / 355687428096000.0;  // -1/17!
  ps = ps * r2 + 1.0 / 1307674368000.0;  // 1/15!
  ps = ps * r2 - 1.0 / 6227020800.0;     // -1/13!
  ps = ps * r2 + 1.0 / 39916800.0;       // 1/11!
  ps = ps * r2 - 1.0 / 362880.0;         // -1/9!
  ps = ps * r2 + 1.0 / 5040.0;           // 1/7!
  ps = ps * r2 - 1.0 / 120.0;            // -1/5!
  ps = ps * r2 + 1.0 / 6.0;              // 1/3!
  s = r - r * r2 * ps;
  double pc = 1.0 / 6402373705728000.0;   // 1/18!
  pc = pc * r2 - 1.0 / 20922789888000.0;  // -1/16!
  pc = pc * r2 + 1.0 / 87178291200.0;     // 1/14!
  pc = pc * r2 - 1.0 / 479001600.0;       // -1/12!
  pc = pc * r2 + 1.0 / 3628800.0;         // 1/10!
  pc = pc * r2 - 1.0 / 40320.0;           // -1/8!
  pc = pc * r2 + 1.0 / 720.0;             // 1/6!
  pc = pc * r2 - 1.0 / 24.0;              // -1/4!
  pc = pc * r2 + 0.5;                     // 1/2!
  c = 1.0 - r2 * pc;
}

// The same for results that end as float: the series to r^9 / r^10, whose truncation error
// (below 2e-9 absolute) is under a thirtieth of a float ulp of 1, at about half the cost. Values
// stay double, so the rounding to float happens once, at the end.
inline void sincos_kernel_for_float(double r, double& s, double& c) noexcept {
  const double r2 = r * r;
  double ps = 1.0 / 362880.0;   // 1/9!
  ps = ps * r2 - 1.0 / 5040.0;  // -1/7!
  ps = ps * r2 + 1.0 / 120.0;   // 1/5!
  ps = ps * r2 - 1.0 / 6.0;     // -1/3!
  s = r + r * r2 * ps;
  double pc = -1.0 / 3628800.0;  // -1/10!
  pc = pc * r2 + 1.0 / 40320.0;  // 1/8!
  pc = pc * r2 - 1.0 / 720.0;    // -1/6!
  pc = pc * r2 + 1.0 / 24.0;     // 1/4!
  pc = pc * r2 - 0.5;            // -1/2!
  c = 1.0 + r2 * pc;
}

// Applies the quadrant q (angle = q * pi/2 + r) to sin/cos of r with selects only, so callers'
// loops stay vectorizable. Works for negative q (two's complement keeps q mod 4 in the low bits).
template <typename Int>
inline void apply_quadrant(Int q, double s, double c, double& sin_out, double& cos_out) noexcept {
  const bool swap = (q & 1) != 0;
  const double ss = swap ? c : s;
  const double cc = swap ? s : c;
  sin_out = (q & 2) ? -ss : ss;
  cos_out = ((q + 1) & 2) ? -cc : cc;
}

/// sin and cos of x = pos * inv_freq for |x| < kFastAngleLimit, to about 2e-16 absolute
/// (kForFloat: 2e-9, for results rounded to float). Branch-free: the quadrant is a floor taken
/// by truncating a positively biased value.
template <bool kForFloat = false>
inline void sincos_fast(double x, double& sin_out, double& cos_out) noexcept {
  constexpr double kBias = 8388608.0;  // 2^23 > any |x * 2/pi| on this path
  const std::int32_t q =
      static_cast<std::int32_t>(x * kTwoOverPi + (0.5 + kBias)) - static_cast<std::int32_t>(kBias);
  const double nq = static_cast<double>(q);
  const double r = ((x - nq * kPio2Hi) - nq * kPio2Mid) - nq * kPio2Lo;
  double s, c;
  if constexpr (kForFloat)
    sincos_kernel_for_float(r, s, c);
  else
    sincos_kernel(r, s, c);
  apply_quadrant(q, s, c, sin_out, cos_out);
}

/// m*cos and m*sin of p * f[i] for a whole row, when |p * f[i]| < kFastAngleLimit for every i.
/// The loop vectorizes (sincos_fast is branch-free); float results take the shorter series.
template <typename C>
inline void sincos_row_fast(double p, const double* f, std::int64_t n, double m, C* cos_out,
                            C* sin_out) noexcept {
  for (std::int64_t i = 0; i < n; ++i) {
    double s, c;
    sincos_fast<std::is_same<C, float>::value>(p * f[i], s, c);
    cos_out[i] = static_cast<C>(m * c);
    sin_out[i] = static_cast<C>(m * s);
  }
}

/// sin and cos of pos * inv_freq for angles up to 2^48 rad (the front doors refuse larger ones).
/// The product is formed in long double (64-bit mantissa on x86) so that positions far past 2^31
/// keep their low bits; the quadrant count n (< 2^48) is split into two 24-bit halves so that
/// n * kPio2Hi is exact in both, and the reduced argument stays good to ~1e-14 rad.
inline void sincos_position(std::int64_t pos, double inv_freq, double& sin_out,
                            double& cos_out) noexcept {
  const double x = static_cast<double>(pos) * inv_freq;
  if (std::abs(x) < kFastAngleLimit &&
      std::abs(pos) < (std::int64_t{1} << 53)) {  // pos exact in double
    sincos_fast(x, sin_out, cos_out);
    return;
  }
  const long double xl = static_cast<long double>(pos) * static_cast<long double>(inv_freq);
  const long double n = std::nearbyint(xl * static_cast<long double>(kTwoOverPi));
  const long double n_hi = std::floor(n / 16777216.0L) * 16777216.0L;  // 2^24
  const long double n_lo = n - n_hi;
  const long double hi = static_cast<long double>(kPio2Hi);
  const long double r = (((xl - n_hi * hi) - n_lo * hi) - n * static_cast<long double>(kPio2Mid)) -
                        n * static_cast<long double>(kPio2Lo);
  double s, c;
  sincos_kernel(static_cast<double>(r), s, c);
  apply_quadrant(static_cast<std::int64_t>(std::fmod(n, 4.0L)), s, c, sin_out, cos_out);
}

}  // namespace detail
}  // namespace ropescale
