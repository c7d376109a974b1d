// ropescale internal: the unchecked rotary kernels. Not a public header: include
// ropescale/rotary.hpp, whose front door validates every argument before calling these.
#pragma once

#include <cstdint>
#include <type_traits>

#include "ropescale/config.hpp"
#include "ropescale/detail/macro_scope.hpp"

namespace ropescale {
namespace detail {

/// Arithmetic type for a storage type: double for double, float for everything else.
template <typename T>
using compute_t = std::conditional_t<std::is_same<std::remove_cv_t<T>, double>::value, double, float>;

template <typename C, typename T>
inline C load(const T& v) noexcept {
  return static_cast<C>(v);
}
template <typename T, typename C>
inline T store(C v) noexcept {
  return static_cast<T>(v);
}

// Half-split pairs, in place: channel i pairs with i + half. kHalf > 0 fixes the pair count at
// compile time so the loop has no tail; kHalf == 0 reads it from `half`.
template <int kHalf, typename T, typename C>
inline void rotate_half_split_inplace(T* ROPESCALE_RESTRICT x, const C* ROPESCALE_RESTRICT c,
                                      const C* ROPESCALE_RESTRICT s, std::int64_t half) noexcept {
  const std::int64_t n = kHalf > 0 ? kHalf : half;
  T* ROPESCALE_RESTRICT hi = x + n;
  for (std::int64_t i = 0; i < n; ++i) {
    const C x0 = load<C>(x[i]);
    const C x1 = load<C>(hi[i]);
    x[i] = store<T>(x0 * c[i] - x1 * s[i]);
    hi[i] = store<T>(x1 * c[i] + x0 * s[i]);
  }
}

template <int kHalf, typename T, typename C>
inline void rotate_half_split(const T* ROPESCALE_RESTRICT in, T* ROPESCALE_RESTRICT out,
                              const C* ROPESCALE_RESTRICT c, const C* ROPESCALE_RESTRICT s,
                              std::int64_t half) noexcept {
  const std::int64_t n = kHalf > 0 ? kHalf : half;
  for (std::int64_t i = 0; i < n; ++i) {
    const C x0 = load<C>(in[i]);
    const C x1 = load<C>(in[i + n]);
    out[i] = store<T>(x0 * c[i] - x1 * s[i]);
    out[i + n] = store<T>(x1 * c[i] + x0 * s[i]);
  }
}

// Interleaved pairs: channel 2i pairs with 2i + 1.
template <int kHalf, typename T, typename C>
inline void rotate_interleaved(const T* in, T* out, const C* ROPESCALE_RESTRICT c,
                               const C* ROPESCALE_RESTRICT s, std::int64_t half) noexcept {
  const std::int64_t n = kHalf > 0 ? kHalf : half;
  for (std::int64_t i = 0; i < n; ++i) {
    const C x0 = load<C>(in[2 * i]);
    const C x1 = load<C>(in[2 * i + 1]);
    out[2 * i] = store<T>(x0 * c[i] - x1 * s[i]);
    out[2 * i + 1] = store<T>(x1 * c[i] + x0 * s[i]);
  }
}

/// One tensor of heads, addressed as data[t * token_stride + h * head_stride + channel].
template <typename T>
struct HeadsRef {
  T* data;
  std::int64_t heads;
  std::int64_t token_stride;
  std::int64_t head_stride;
};

/// Rotates every head of token t with one cos/sin row. `in == out` means in place.
/// Channels [rotary_dim, head_dim) are copied when out of place and untouched when in place.
template <int kHalf, bool kInterleaved, typename T, typename C>
inline void rotate_token(const T* in_base, T* out_base, std::int64_t heads,
                         std::int64_t in_head_stride, std::int64_t out_head_stride,
                         std::int64_t half, std::int64_t head_dim, const C* c,
                         const C* s) noexcept {
  const std::int64_t rotary_dim = 2 * (kHalf > 0 ? kHalf : half);
  for (std::int64_t h = 0; h < heads; ++h) {
    const T* in = in_base + h * in_head_stride;
    T* out = out_base + h * out_head_stride;
    if (kInterleaved) {
      rotate_interleaved<kHalf>(in, out, c, s, half);
    } else if (in == out) {
      rotate_half_split_inplace<kHalf>(out, c, s, half);
    } else {
      rotate_half_split<kHalf>(in, out, c, s, half);
    }
    if (in != out)
      for (std::int64_t j = rotary_dim; j < head_dim; ++j) out[j] = in[j];
  }
}

/// Calls f with std::integral_constant<int, kHalf> for the common pair counts, 0 otherwise.
template <typename F>
inline void dispatch_half(std::int64_t half, F&& f) {
  switch (half) {
    case 16:
      f(std::integral_constant<int, 16>{});
      break;
    case 32:
      f(std::integral_constant<int, 32>{});
      break;
    case 48:
      f(std::integral_constant<int, 48>{});
      break;
    case 64:
      f(std::integral_constant<int, 64>{});
      break;
    default:
      f(std::integral_constant<int, 0>{});
      break;
  }
}

}  // namespace detail
}  // namespace ropescale

#include "ropescale/detail/macro_unscope.hpp"
