// ropescale internal: the unchecked rotary kernels. Not a public header: include
// ropescale/rotary.hpp, whose front door validates every argument before calling these.
//
// Per token the caller prepares one row of angles; per head the kernel rotates rotary_dim
// channels in the compute type C (float, or double for double storage):
//   half-split : rows c[half], s[half]        x_i' = x_i c_i - y_i s_i, y_i' = y_i c_i + x_i s_i
//                with y = x + offset (offset = frequency_dim / 2; half unless proportional)
//   interleaved: rows c[half], s[half]        x_2i' = x_2i c_i - x_2i+1 s_i,
//                                             x_2i+1' = x_2i+1 c_i + x_2i s_i
//                the vector kernels load each line of x once and build (c0 c0 c1 c1 ..) and
//                (s0 s0 s1 s1 ..) in registers; the pair swap and the alternating sign are
//                in-register operations, so the loop streams like the half-split one.
#pragma once

#include "ropescale/detail/internal_header_check.hpp"

#include "ropescale/kernel_path.hpp"

#include <cstdint>
#include <cstring>
#include <type_traits>

#include "ropescale/config.hpp"
#include "ropescale/detail/kernels/angle.hpp"
#include "ropescale/detail/kernels/convert.hpp"
#include "ropescale/detail/kernels/quantize.hpp"
#include "ropescale/detail/kernels/simd_packets.hpp"
#include "ropescale/detail/macro_scope.hpp"

namespace ropescale {
namespace detail {

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
inline void rotate_interleaved(T* ROPESCALE_RESTRICT x, const C* ROPESCALE_RESTRICT c,
                               const C* ROPESCALE_RESTRICT s, std::int64_t half) noexcept {
  const std::int64_t n = kHalf > 0 ? kHalf : half;
  for (std::int64_t i = 0; i < n; ++i) {
    const C a = Elem<T>::template load<C>(x[2 * i]);
    const C b = Elem<T>::template load<C>(x[2 * i + 1]);
    Elem<T>::store(x[2 * i], a * c[i] - b * s[i]);
    Elem<T>::store(x[2 * i + 1], b * c[i] + a * s[i]);
  }
}

// Out of place, the channels a layout does not rotate are copied bit for bit: interleaved
// [2 half, head_dim); half-split [half, offset) and [offset + half, head_dim).
template <typename T>
inline void copy_unrotated(const T* in, T* out, bool interleaved_layout, std::int64_t half,
                           std::int64_t offset, std::int64_t head_dim) noexcept {
  const auto copy = [&](std::int64_t a, std::int64_t b) {
    if (a < b)
      std::memcpy(static_cast<void*>(out + a), static_cast<const void*>(in + a),
                  sizeof(T) * static_cast<std::size_t>(b - a));
  };
  if (interleaved_layout) {
    copy(2 * half, head_dim);
  } else {
    copy(half, offset);
    copy(offset + half, head_dim);
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
#include "ropescale/detail/kernels/rotary_simd_body.inc"
#undef ROPESCALE_SIMD_PACKET
#undef ROPESCALE_SIMD_TARGET
}  // namespace avx2
namespace avx512 {
#define ROPESCALE_SIMD_PACKET PacketAvx512
#define ROPESCALE_SIMD_TARGET ROPESCALE_TARGET_AVX512
#include "ropescale/detail/kernels/rotary_simd_body.inc"
#undef ROPESCALE_SIMD_PACKET
#undef ROPESCALE_SIMD_TARGET
}  // namespace avx512
namespace avx512_bf16 {
#define ROPESCALE_SIMD_PACKET PacketAvx512Bf16
#define ROPESCALE_SIMD_TARGET ROPESCALE_TARGET_AVX512_BF16
#include "ropescale/detail/kernels/rotary_simd_body.inc"
#undef ROPESCALE_SIMD_PACKET
#undef ROPESCALE_SIMD_TARGET
}  // namespace avx512_bf16
#endif
#if ROPESCALE_HAVE_NEON_PATH
namespace neon {
#define ROPESCALE_SIMD_PACKET PacketNeon
#define ROPESCALE_SIMD_TARGET
#include "ropescale/detail/kernels/rotary_simd_body.inc"
#undef ROPESCALE_SIMD_PACKET
#undef ROPESCALE_SIMD_TARGET
}  // namespace neon
#endif

/// The angle-row and int8 kernels of an instruction set (KernelPath comes from kernel_path.hpp,
/// which rotary.hpp includes before this header).
template <typename C>
using SincosRowKernel = void (*)(double, const double*, std::int64_t, double, C*, C*) noexcept;
template <typename T>
using QuantizeKernel = float (*)(const T*, std::int64_t, std::int8_t*) noexcept;

template <typename C>
inline SincosRowKernel<C> select_sincos_row(KernelPath path) noexcept {
  switch (path) {
#if ROPESCALE_HAVE_X86_PATHS
    case KernelPath::kAvx2:
      return &avx2::sincos_row<C>;
    case KernelPath::kAvx512:
      return &avx512::sincos_row<C>;
    case KernelPath::kAvx512Bf16:
      return &avx512_bf16::sincos_row<C>;
#endif
#if ROPESCALE_HAVE_NEON_PATH
    case KernelPath::kNeon:
      return &neon::sincos_row<C>;
#endif
    default:
      return &sincos_row_fast<C>;
  }
}

template <int kN, typename T>
inline QuantizeKernel<T> select_quantize_int8(KernelPath path) noexcept {
  switch (path) {
#if ROPESCALE_HAVE_X86_PATHS
    case KernelPath::kAvx2:
      return &avx2::quantize_int8<kN, T>;
    case KernelPath::kAvx512:
      return &avx512::quantize_int8<kN, T>;
    case KernelPath::kAvx512Bf16:
      return &avx512_bf16::quantize_int8<kN, T>;
#endif
#if ROPESCALE_HAVE_NEON_PATH
    case KernelPath::kNeon:
      return &neon::quantize_int8<kN, T>;
#endif
    default:
      return &quantize_int8_row<kN, T>;
  }
}

/// The int8 kernel of a path for rows of `row` values, the length fixed at compile time for the
/// common head sizes. Paths may differ from the portable one by one step where they fuse x * inv
/// + 1.5 * 2^23 into one multiply-add (the error stays within half a step plus a float rounding).
template <typename T>
inline QuantizeKernel<T> select_quantize_int8_row(std::int64_t row, KernelPath path) noexcept {
  switch (row) {
    case 64:
      return select_quantize_int8<64, T>(path);
    case 128:
      return select_quantize_int8<128, T>(path);
    case 256:
      return select_quantize_int8<256, T>(path);
    default:
      return select_quantize_int8<0, T>(path);
  }
}

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
