// ropescale internal: symmetric absmax int8 quantization of one row, the rule behind
// kv_cache.hpp's int8 pages. Not a public header. rotary_kernels.hpp compiles quantize_int8_row
// once more per instruction set (the dispatch table beside the rotation).
#pragma once

#include "ropescale/detail/internal_header_check.hpp"

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <type_traits>

#include "ropescale/detail/kernels/convert.hpp"

namespace ropescale {
namespace detail {

// The scale of one int8 row from its largest magnitude: the one rule every int8 path uses.
//   amax = 0                           scale 0, inv 0 (a zero row)
//   amax / 127 < 2^-126 (FLT_MIN)      scale 2^-126, inv 2^126: a floor, so 127 / amax cannot
//                                      overflow and x * inv is exact (a power of two)
//   amax / 127 <= FLT_MAX              scale = amax / 127 (float), inv = 127 / amax (in C)
//   otherwise (NaN, infinity, or a double row past 127 * FLT_MAX)   finite = false
// C is the compute type of the row: float, or double for double storage (then the scale is
// computed in double and rounded to float once).
template <typename C>
struct Int8Scale {
  float scale;
  C inv;
  bool finite;
};

template <typename C>
inline Int8Scale<C> int8_scale(C amax) noexcept {
  constexpr float kMinScale = std::numeric_limits<float>::min();  // 2^-126
  const C s = amax / C(127);
  if (!(s <= C(std::numeric_limits<float>::max())))
    return {std::numeric_limits<float>::quiet_NaN(), C(0), false};
  if (amax == C(0)) return {0.0f, C(0), true};
  if (s < C(kMinScale)) return {kMinScale, C(1) / C(kMinScale), true};
  return {static_cast<float>(s), C(127) / amax, true};
}

/// The largest magnitude an int8 row may hold: its scale, absmax / 127, must fit in float.
inline constexpr double kInt8MaxAbs =
    127.0 * static_cast<double>(std::numeric_limits<float>::max());

// Magnitude bits of a compute value: the same order as the magnitudes, and a NaN wins a max.
inline std::uint32_t magnitude_bits(float v) noexcept { return float_bits(v) & 0x7fffffffu; }
inline std::uint64_t magnitude_bits(double v) noexcept {
  std::uint64_t u;
  std::memcpy(&u, &v, sizeof u);
  return u & 0x7fffffffffffffffu;
}
template <typename U>
inline auto from_magnitude_bits(U u) noexcept {
  using C = std::conditional_t<sizeof(U) == 4, float, double>;
  C v;
  std::memcpy(&v, &u, sizeof v);
  return v;
}

// Largest magnitude of a row in its compute type (NaN when the row holds one).
template <int kN = 0, typename T>
inline compute_t<T> int8_row_absmax(const T* x, std::int64_t row) noexcept {
  using C = compute_t<T>;
  const std::int64_t n = kN > 0 ? kN : row;
  decltype(magnitude_bits(C(0))) amax_bits = 0;
  for (std::int64_t j = 0; j < n; ++j) {
    const auto b = magnitude_bits(Elem<T>::template load<C>(x[j]));
    amax_bits = b > amax_bits ? b : amax_bits;
  }
  return from_magnitude_bits(amax_bits);
}

// The code of one scaled value v = x * inv (|v| <= 127 up to rounding): round to nearest even
// (in the default rounding mode), clamp to [-127, 127]. std::nearbyint rounds v itself, so the
// product that made v is rounded to C first wherever this is inlined (a multiply and an add
// could be fused into one FMA; a multiply and a rounding cannot), and every path gives the same
// codes. The packet kernels round the same way. It vectorizes where the target has a rounding
// instruction (SSE4.1 and up, so every x86 dispatch path; AArch64); x86-64's baseline, which the
// portable path is compiled for without -march, calls nearbyint once per value.
template <typename C>
inline std::int8_t int8_code(C v) noexcept {
  C r = std::nearbyint(v);
  r = r < C(-127) ? C(-127) : r;
  r = r > C(127) ? C(127) : r;
  return static_cast<std::int8_t>(r);
}

// Symmetric absmax int8 quantization of one row with int8_scale's rule; returns the scale. A row
// with a NaN or an infinity (or, for double storage, a magnitude past kInt8MaxAbs, which the
// front door refuses) is stored as the sentinel: scale NaN and every q 0, so the whole row
// dequantizes to NaN. The absmax is an integer max over the magnitude bits (it vectorizes without
// -ffast-math), and each code is int8_code's.
// kN > 0 fixes the row length at compile time (no tail loops), as the rotation does for pairs.
template <int kN = 0, typename T>
inline float quantize_int8_row(const T* x, std::int64_t row, std::int8_t* q) noexcept {
  using C = compute_t<T>;
  const std::int64_t n = kN > 0 ? kN : row;
  const Int8Scale<C> s = int8_scale(int8_row_absmax<kN>(x, n));
  if (!s.finite) {
    std::memset(q, 0, static_cast<std::size_t>(n));
    return s.scale;
  }
  for (std::int64_t j = 0; j < n; ++j) q[j] = int8_code(Elem<T>::template load<C>(x[j]) * s.inv);
  return s.scale;
}

}  // namespace detail
}  // namespace ropescale
