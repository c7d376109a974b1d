// ropescale internal: the unchecked rotary kernels. Not a public header: include
// ropescale/rotary.hpp, whose front door validates every argument before calling these.
//
// Per token the caller prepares one row of angles; per head the kernel rotates rotary_dim
// channels in the compute type C (float, or double for double storage):
//   half-split : rows c[half], s[half]        x_i' = x_i c_i - y_i s_i, y_i' = y_i c_i + x_i s_i
//                with y = x + offset (offset = frequency_dim / 2; half unless proportional)
//   interleaved: rows cc[2 half], ss[2 half]  v_j' = v_j cc_j + v_(j^1) ss_j
//                with cc = (c0 c0 c1 c1 ..), ss = (-s0 s0 -s1 s1 ..): the pair swap is one
//                in-register permute, so the loop vectorizes like the half-split one.
#pragma once

#include "ropescale/detail/internal_header_check.hpp"

#include <cstdint>
#include <cstring>
#include <type_traits>

#include "ropescale/config.hpp"
#include "ropescale/detail/convert.hpp"
#include "ropescale/detail/macro_scope.hpp"
#include "ropescale/detail/simd_packets.hpp"

namespace ropescale {
namespace detail {

/// Arithmetic type for a storage type: double for double, float for everything else.
template <typename T>
using compute_t =
    std::conditional_t<std::is_same<std::remove_cv_t<T>, double>::value, double, float>;

// kHalf > 0 fixes the pair count at compile time so the loops have no tail. Loads convert
// storage T to compute C and stores convert back, inside the one loop.
template <int kHalf, typename T, typename C>
inline void rotate_half_split(T* ROPESCALE_RESTRICT x, const C* ROPESCALE_RESTRICT c,
                              const C* ROPESCALE_RESTRICT s, std::int64_t half,
                              std::int64_t offset) noexcept {
  const std::int64_t n = kHalf > 0 ? kHalf : half;
  T* ROPESCALE_RESTRICT y = x + offset;
  for (std::int64_t i = 0; i < n; ++i) {
    const C x0 = Elem<T>::template load<C>(x[i]);
    const C x1 = Elem<T>::template load<C>(y[i]);
    Elem<T>::store(x[i], x0 * c[i] - x1 * s[i]);
    Elem<T>::store(y[i], x1 * c[i] + x0 * s[i]);
  }
}

template <int kHalf, typename T, typename C>
inline void rotate_interleaved(T* ROPESCALE_RESTRICT x, const C* ROPESCALE_RESTRICT cc,
                               const C* ROPESCALE_RESTRICT ss, std::int64_t half) noexcept {
  const std::int64_t n = kHalf > 0 ? kHalf : half;
  for (std::int64_t i = 0; i < n; ++i) {
    const C a = Elem<T>::template load<C>(x[2 * i]);
    const C b = Elem<T>::template load<C>(x[2 * i + 1]);
    Elem<T>::store(x[2 * i], a * cc[2 * i] + b * ss[2 * i]);
    Elem<T>::store(x[2 * i + 1], b * cc[2 * i + 1] + a * ss[2 * i + 1]);
  }
}

/// The interleaved rows of one token: cc = (c0 c0 c1 c1 ..), ss = (-s0 s0 -s1 s1 ..). kHalf > 0
/// fixes the count; restrict lets the loop vectorize.
template <int kHalf, typename C>
inline void expand_interleaved_rows(const C* ROPESCALE_RESTRICT c, const C* ROPESCALE_RESTRICT s,
                                    C* ROPESCALE_RESTRICT cc, C* ROPESCALE_RESTRICT ss,
                                    std::int64_t half) noexcept {
  const std::int64_t n = kHalf > 0 ? kHalf : half;
  for (std::int64_t i = 0; i < n; ++i) {
    cc[2 * i] = c[i];
    cc[2 * i + 1] = c[i];
    ss[2 * i] = -s[i];
    ss[2 * i + 1] = s[i];
  }
}

/// Rotates every head of one token with one prepared row. `in == out` means in place; then
/// channels [rotary_dim, head_dim) are untouched, otherwise the head is copied first (so the
/// pass-through channels are copied bit for bit) and rotated in place in `out`.
template <int kHalf, bool kInterleaved, typename T, typename C>
inline void rotate_token(const T* in_base, T* out_base, std::int64_t heads,
                         std::int64_t in_head_stride, std::int64_t out_head_stride,
                         std::int64_t half, std::int64_t offset, std::int64_t head_dim, const C* c,
                         const C* s) noexcept {
  for (std::int64_t h = 0; h < heads; ++h) {
    const T* in = in_base + h * in_head_stride;
    T* out = out_base + h * out_head_stride;
    if (in != out)
      std::memcpy(static_cast<void*>(out), static_cast<const void*>(in), sizeof(T) * head_dim);
    if (kInterleaved)
      rotate_interleaved<kHalf>(out, c, s, half);
    else
      rotate_half_split<kHalf>(out, c, s, half, offset);
  }
}

// The vector kernels, one namespace per instruction set, all from one source. Which one runs is
// chosen per call (rotary_call.hpp, from kernel_path.hpp's active_kernel_path()).
#if ROPESCALE_HAVE_X86_PATHS
namespace avx2 {
#define ROPESCALE_SIMD_PACKET PacketAvx2
#define ROPESCALE_SIMD_TARGET ROPESCALE_TARGET_AVX2
#include "ropescale/detail/rotary_simd_body.inc"
#undef ROPESCALE_SIMD_PACKET
#undef ROPESCALE_SIMD_TARGET
}  // namespace avx2
namespace avx512 {
#define ROPESCALE_SIMD_PACKET PacketAvx512
#define ROPESCALE_SIMD_TARGET ROPESCALE_TARGET_AVX512
#include "ropescale/detail/rotary_simd_body.inc"
#undef ROPESCALE_SIMD_PACKET
#undef ROPESCALE_SIMD_TARGET
}  // namespace avx512
namespace avx512_bf16 {
#define ROPESCALE_SIMD_PACKET PacketAvx512Bf16
#define ROPESCALE_SIMD_TARGET ROPESCALE_TARGET_AVX512_BF16
#include "ropescale/detail/rotary_simd_body.inc"
#undef ROPESCALE_SIMD_PACKET
#undef ROPESCALE_SIMD_TARGET
}  // namespace avx512_bf16
#endif
#if ROPESCALE_HAVE_NEON_PATH
namespace neon {
#define ROPESCALE_SIMD_PACKET PacketNeon
#define ROPESCALE_SIMD_TARGET
#include "ropescale/detail/rotary_simd_body.inc"
#undef ROPESCALE_SIMD_PACKET
#undef ROPESCALE_SIMD_TARGET
}  // namespace neon
#endif

/// One token's kernel: rotate_token of one instruction set for one layout and storage type.
template <typename T>
using TokenKernel = void (*)(const T*, T*, std::int64_t, std::int64_t, std::int64_t, std::int64_t,
                             std::int64_t, std::int64_t, const compute_t<T>*,
                             const compute_t<T>*) noexcept;

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
