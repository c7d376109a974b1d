// ropescale internal: OCP FP8 E4M3 (the "fn" variant: no infinities, one NaN pattern per sign)
// conversions and the per-row scaled quantization behind kv_cache.hpp's fp8 pages. Not a public
// header. rotary_kernels.hpp compiles quantize_fp8_row once more per instruction set.
//
//   bits  s eeee mmm, bias 7      (OCP 8-bit Floating Point Specification (OFP8), rev. 1.0, E4M3)
//   e = 1..15                     (-1)^s * 2^(e-7) * (1 + m/8); the largest finite is 448 (0x7e)
//   e = 0                         (-1)^s * 2^-6 * m/8 (subnormals down to 2^-9; 0x00 / 0x80 zero)
//   s 1111 111 (0x7f, 0xff)       NaN; there is no infinity
//
// float -> e4m3 rounds to nearest, ties to even, and saturates: a finite or infinite magnitude
// past 448 becomes +-448 (OCP's saturating mode, what engines use for KV caches); NaN becomes
// 0x7f with the input's sign.
#pragma once

#include "ropescale/detail/internal_header_check.hpp"

#include <cstdint>
#include <cstring>
#include <limits>

#include "ropescale/detail/kernels/convert.hpp"
#include "ropescale/detail/kernels/quantize.hpp"

namespace ropescale {
namespace detail {

constexpr float kFp8E4M3Max = 448.0f;
constexpr std::uint8_t kFp8E4M3MaxBits = 0x7e;
constexpr std::uint8_t kFp8E4M3NanBits = 0x7f;

// Branch-free (selects only) so that a row's loop vectorizes, as convert.hpp's 16-bit ones.
inline float fp8_e4m3_to_float(std::uint8_t b) noexcept {
  const std::uint32_t sign = static_cast<std::uint32_t>(b & 0x80u) << 24;
  const std::uint32_t em = b & 0x7fu;
  const std::uint32_t normal = (em << 20) + (120u << 23);  // rebias 7 -> 127
  const float sub = static_cast<float>(static_cast<std::int32_t>(em)) * 0.001953125f;  // m 2^-9
  std::uint32_t mag = blend(mask_if(em < 0x08u), float_bits(sub), normal);
  mag = blend(mask_if(em == 0x7fu), 0x7fc00000u, mag);
  return bits_float(sign | mag);
}

inline std::uint8_t float_to_fp8_e4m3(float f) noexcept {
  const std::uint32_t u = float_bits(f);
  const std::uint32_t sign = (u >> 24) & 0x80u;
  const std::uint32_t a = u & 0x7fffffffu;
  // Normal range (|f| >= 2^-6): rebias and round the 20 dropped mantissa bits to nearest even; a
  // carry out of the mantissa bumps the exponent.
  const std::uint32_t normal = ((a - (120u << 23)) + 0x7ffffu + ((a >> 20) & 1u)) >> 20;
  // Below 2^-6: adding 2^14 lines 2^-9 units up with the float's last mantissa bit, so the FPU's
  // own rounding gives the nearest-even subnormal (8 = the smallest normal, 0x08, is right too).
  const std::uint32_t sub = float_bits(bits_float(a) + 16384.0f) - 0x46800000u;
  std::uint32_t mag = blend(mask_if(a < 0x3c800000u), sub, normal);
  mag = blend(mask_if(a > 0x43e00000u), kFp8E4M3MaxBits, mag);  // past 448 (and inf): saturate
  mag = blend(mask_if(a > 0x7f800000u), kFp8E4M3NanBits, mag);  // NaN
  return static_cast<std::uint8_t>(sign | mag);
}

// The scale of one fp8 row, int8_scale's rule with 448 in place of 127:
//   amax = 0: scale 0 (codes 0); amax / 448 < 2^-126: scale 2^-126; else amax / 448;
//   NaN or infinity: not finite (the sentinel row: scale NaN, codes 0).
inline Int8Scale<float> fp8_scale(float amax) noexcept {
  constexpr float kMinScale = std::numeric_limits<float>::min();
  const float s = amax / kFp8E4M3Max;
  if (!(s <= std::numeric_limits<float>::max()))
    return {std::numeric_limits<float>::quiet_NaN(), 0.0f, false};
  if (amax == 0.0f) return {0.0f, 0.0f, true};
  if (s < kMinScale) return {kMinScale, 1.0f / kMinScale, true};
  return {s, kFp8E4M3Max / amax, true};
}

/// Per-row scaled fp8 quantization: scale = absmax / 448, q_j = e4m3(x_j * 448 / absmax); returns
/// the scale. Dequantize with fp8_e4m3_to_float(q_j) * scale. A row with a NaN or an infinity is
/// the sentinel (scale NaN, every code 0), as for int8. Computed in float (kv_cache.hpp takes fp8
/// pages for float, half and bfloat16 keys and values; a double row's absmax is rounded to float).
template <int kN = 0, typename T>
inline float quantize_fp8_row(const T* x, std::int64_t row, std::uint8_t* q) noexcept {
  const std::int64_t n = kN > 0 ? kN : row;
  const Int8Scale<float> s = fp8_scale(static_cast<float>(int8_row_absmax<kN>(x, n)));
  if (!s.finite) {
    std::memset(q, 0, static_cast<std::size_t>(n));
    return s.scale;
  }
  for (std::int64_t j = 0; j < n; ++j)
    q[j] = float_to_fp8_e4m3(Elem<T>::template load<float>(x[j]) * s.inv);
  return s.scale;
}

}  // namespace detail
}  // namespace ropescale
