// ropescale internal: branch-free, vectorizable conversions between 16-bit floats and float.
// Not a public header. They round to nearest even exactly as IEEE 754 (and Eigen) do; the tests
// compare them with Eigen::half / Eigen::bfloat16 on every 16-bit pattern.
#pragma once

#include "ropescale/detail/internal_header_check.hpp"

#include <Eigen/Core>
#include <cstdint>
#include <cstring>
#include <type_traits>

namespace ropescale {
namespace detail {

inline std::uint32_t float_bits(float f) noexcept {
  std::uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  return u;
}
inline float bits_float(std::uint32_t u) noexcept {
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}

// bfloat16 is the top half of a float.
inline float bf16_to_float(std::uint16_t h) noexcept {
  return bits_float(static_cast<std::uint32_t>(h) << 16);
}
inline std::uint16_t float_to_bf16(float f) noexcept {
  const std::uint32_t u = float_bits(f);
  const bool nan = (u & 0x7fffffffu) > 0x7f800000u;
  const std::uint32_t rounded = u + 0x7fffu + ((u >> 16) & 1u);
  return static_cast<std::uint16_t>(nan ? ((u >> 16) | 0x40u) : (rounded >> 16));
}

// All-ones when cond holds, zero otherwise; blends written with it stay branch-free.
inline std::uint32_t mask_if(bool cond) noexcept { return 0u - static_cast<std::uint32_t>(cond); }
inline std::uint32_t blend(std::uint32_t mask, std::uint32_t yes, std::uint32_t no) noexcept {
  return (yes & mask) | (no & ~mask);
}

// IEEE binary16: 1 sign, 5 exponent (bias 15), 10 mantissa bits.
inline float half_to_float(std::uint16_t h) noexcept {
  const std::uint32_t sign = static_cast<std::uint32_t>(h & 0x8000u) << 16;
  const std::uint32_t em = h & 0x7fffu;
  const std::uint32_t normal = (em << 13) + (112u << 23);  // rebias 15 -> 127
  const std::uint32_t infnan = normal + (112u << 23);      // exponent 31 -> 255
  const float sub = static_cast<float>(static_cast<std::int32_t>(em)) * 5.9604644775390625e-8f;
  std::uint32_t mag = blend(mask_if(em >= 0x7c00u), infnan, normal);
  mag = blend(mask_if(em < 0x0400u), float_bits(sub), mag);  // zero and subnormals
  return bits_float(sign | mag);
}
inline std::uint16_t float_to_half(float f) noexcept {
  const std::uint32_t u = float_bits(f);
  const std::uint32_t sign = (u >> 16) & 0x8000u;
  const std::uint32_t a = u & 0x7fffffffu;
  // Normal range: rebias and round the 13 dropped mantissa bits to nearest even. A carry out of
  // the mantissa correctly bumps the exponent, up to infinity (0x7c00).
  const std::uint32_t normal = ((a - (112u << 23)) + 0x0fffu + ((a >> 13) & 1u)) >> 13;
  // Below 2^-14 the result is subnormal: adding 0.5f lines 2^-24 units up with the last mantissa
  // bit, so the FPU's own rounding gives the nearest-even subnormal.
  const std::uint32_t sub = float_bits(bits_float(a) + 0.5f) - 0x3f000000u;
  std::uint32_t mag = blend(mask_if(a < 0x38800000u), sub, normal);
  mag = blend(mask_if(a >= 0x47800000u), 0x7c00u, mag);  // overflow -> infinity
  mag = blend(mask_if(a > 0x7f800000u), 0x7e00u, mag);   // NaN stays NaN (quiet)
  return static_cast<std::uint16_t>(sign | mag);
}

// The 16 bits of an Eigen::half / Eigen::bfloat16 (both are exactly one uint16 wide).
template <typename H>
inline std::uint16_t raw_bits(const H& h) noexcept {
  static_assert(sizeof(H) == sizeof(std::uint16_t), "16-bit float expected");
  std::uint16_t b;
  std::memcpy(&b, &h, sizeof b);
  return b;
}
template <typename H>
inline void set_raw_bits(H& h, std::uint16_t b) noexcept {
  static_assert(sizeof(H) == sizeof(std::uint16_t), "16-bit float expected");
  std::memcpy(static_cast<void*>(&h), &b, sizeof b);
}

/// Arithmetic type for a storage type: double for double, float for everything else.
template <typename T>
using compute_t =
    std::conditional_t<std::is_same<std::remove_cv_t<T>, double>::value, double, float>;

// Element loads and stores between storage T and compute type C, branch-free for 16-bit types
// so that the kernels' loops vectorize with the conversion fused in.
template <typename T>
struct Elem {
  template <typename C>
  static C load(const T& v) noexcept {
    return static_cast<C>(v);
  }
  template <typename C>
  static void store(T& out, C v) noexcept {
    out = static_cast<T>(v);
  }
};

template <>
struct Elem<Eigen::bfloat16> {
  template <typename C>
  static float load(const Eigen::bfloat16& v) noexcept {
    return bf16_to_float(raw_bits(v));
  }
  static void store(Eigen::bfloat16& out, float v) noexcept { set_raw_bits(out, float_to_bf16(v)); }
};

template <>
struct Elem<Eigen::half> {
  template <typename C>
  static float load(const Eigen::half& v) noexcept {
    return half_to_float(raw_bits(v));
  }
  static void store(Eigen::half& out, float v) noexcept { set_raw_bits(out, float_to_half(v)); }
};

}  // namespace detail
}  // namespace ropescale
