// ropescale internal: overflow-checked integer arithmetic for sizes, strides and positions.
// Not a public header: every front door that multiplies or adds caller-supplied sizes calls these
// (one rule, one function) instead of the bare operators, whose overflow is undefined behaviour.
#pragma once

#include "ropescale/detail/internal_header_check.hpp"

#include <cstdint>
#include <limits>

namespace ropescale {
namespace detail {

/// *out = a * b; false (and *out untouched) when the product does not fit in int64.
inline bool checked_mul(std::int64_t a, std::int64_t b, std::int64_t* out) noexcept {
  std::int64_t r = 0;
#if defined(__GNUC__) || defined(__clang__)
  if (__builtin_mul_overflow(a, b, &r)) return false;
#else
  constexpr std::int64_t kMax = std::numeric_limits<std::int64_t>::max();
  constexpr std::int64_t kMin = std::numeric_limits<std::int64_t>::min();
  if (a != 0 && b != 0) {
    if (a > 0 ? (b > 0 ? a > kMax / b : b < kMin / a) : (b > 0 ? a < kMin / b : a < kMax / b))
      return false;
  }
  r = a * b;
#endif
  *out = r;
  return true;
}

/// *out = a + b; false (and *out untouched) when the sum does not fit in int64.
inline bool checked_add(std::int64_t a, std::int64_t b, std::int64_t* out) noexcept {
  std::int64_t r = 0;
#if defined(__GNUC__) || defined(__clang__)
  if (__builtin_add_overflow(a, b, &r)) return false;
#else
  constexpr std::int64_t kMax = std::numeric_limits<std::int64_t>::max();
  constexpr std::int64_t kMin = std::numeric_limits<std::int64_t>::min();
  if ((b > 0 && a > kMax - b) || (b < 0 && a < kMin - b)) return false;
  r = a + b;
#endif
  *out = r;
  return true;
}

/// |a|; false for INT64_MIN, whose magnitude does not fit.
inline bool checked_abs(std::int64_t a, std::int64_t* out) noexcept {
  if (a == std::numeric_limits<std::int64_t>::min()) return false;
  *out = a < 0 ? -a : a;
  return true;
}

}  // namespace detail
}  // namespace ropescale
