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
#include "ropescale/detail/kernels/fp8.hpp"
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

// ---------------------------------------------------------------------------------------------
// The dispatch table: one KernelTable per instruction set and storage type, built at compile
// time (constant-initialized, no start-up code), chosen once per call or per plan from the path
// kernel_path.hpp resolved (KernelPath comes from there; rotary.hpp includes it first). As
// Highway's per-export tables: a new instruction set is one namespace above plus one case in
// kernel_table(); a new kernel family is one field here plus one line in make_kernel_table and
// in each set's Kernels (rotary_simd_body.inc, and `portable` below).
// ---------------------------------------------------------------------------------------------

/// One token's kernel: rotate_token of one instruction set for one layout and storage type.
template <typename T>
using TokenKernel = void (*)(const T*, T*, std::int64_t, std::int64_t, std::int64_t, std::int64_t,
                             std::int64_t, std::int64_t, const compute_t<T>*,
                             const compute_t<T>*) noexcept;
/// m*cos, m*sin of p * f[i] for one row (sincos_row_fast's contract).
template <typename C>
using SincosRowKernel = void (*)(double, const double*, std::int64_t, double, C*, C*) noexcept;
/// One row quantized: returns the scale, writes the codes (quantize.hpp).
template <typename T>
using QuantizeKernel = float (*)(const T*, std::int64_t, std::int8_t*) noexcept;
/// One row quantized to fp8 e4m3 codes: returns the scale (fp8.hpp).
template <typename T>
using QuantizeFp8Kernel = float (*)(const T*, std::int64_t, std::uint8_t*) noexcept;

/// Pair counts the rotation is compiled for with the count fixed (no tail loop); 0 = any count.
constexpr int kHalfVariants[] = {16, 32, 48, 64, 0};
constexpr int kNumHalfVariants = 5;
/// Row lengths the quantization is compiled for (head_dim); 0 = any length.
constexpr int kRowVariants[] = {64, 128, 256, 0};
constexpr int kNumRowVariants = 4;

constexpr int variant_index(const int* variants, int count, std::int64_t n) noexcept {
  for (int i = 0; i + 1 < count; ++i)
    if (variants[i] == n) return i;
  return count - 1;
}

template <typename T>
struct KernelTable {
  using C = compute_t<T>;
  KernelPath path;
  TokenKernel<T> rotate[2][kNumHalfVariants];          // [interleaved][pair-count variant]
  SincosRowKernel<C> sincos_row;                       // angle rows on the fly
  QuantizeKernel<T> quantize_int8[kNumRowVariants];    // [row-length variant]
  QuantizeFp8Kernel<T> quantize_fp8[kNumRowVariants];  // [row-length variant]

  TokenKernel<T> rotate_kernel(bool interleaved, std::int64_t half) const noexcept {
    return rotate[interleaved ? 1 : 0][variant_index(kHalfVariants, kNumHalfVariants, half)];
  }
  QuantizeKernel<T> quantize_int8_kernel(std::int64_t row) const noexcept {
    return quantize_int8[variant_index(kRowVariants, kNumRowVariants, row)];
  }
  QuantizeFp8Kernel<T> quantize_fp8_kernel(std::int64_t row) const noexcept {
    return quantize_fp8[variant_index(kRowVariants, kNumRowVariants, row)];
  }
};

template <typename T, typename K, bool kInterleaved>
constexpr void fill_rotate_row(TokenKernel<T>* row) noexcept {
  row[0] = K::template rotate_fn<kHalfVariants[0], kInterleaved, T>();
  row[1] = K::template rotate_fn<kHalfVariants[1], kInterleaved, T>();
  row[2] = K::template rotate_fn<kHalfVariants[2], kInterleaved, T>();
  row[3] = K::template rotate_fn<kHalfVariants[3], kInterleaved, T>();
  row[4] = K::template rotate_fn<kHalfVariants[4], kInterleaved, T>();
}

/// The table of one instruction set: K is that set's Kernels (function templates by family).
template <typename T, typename K>
constexpr KernelTable<T> make_kernel_table(KernelPath path) noexcept {
  KernelTable<T> t{};
  t.path = path;
  fill_rotate_row<T, K, false>(t.rotate[0]);
  fill_rotate_row<T, K, true>(t.rotate[1]);
  t.sincos_row = K::template sincos_fn<compute_t<T>>();
  t.quantize_int8[0] = K::template quantize_int8_fn<kRowVariants[0], T>();
  t.quantize_int8[1] = K::template quantize_int8_fn<kRowVariants[1], T>();
  t.quantize_int8[2] = K::template quantize_int8_fn<kRowVariants[2], T>();
  t.quantize_int8[3] = K::template quantize_int8_fn<kRowVariants[3], T>();
  t.quantize_fp8[0] = K::template quantize_fp8_fn<kRowVariants[0], T>();
  t.quantize_fp8[1] = K::template quantize_fp8_fn<kRowVariants[1], T>();
  t.quantize_fp8[2] = K::template quantize_fp8_fn<kRowVariants[2], T>();
  t.quantize_fp8[3] = K::template quantize_fp8_fn<kRowVariants[3], T>();
  return t;
}

// The portable set: the generic loops above, compiled for the build's baseline.
namespace portable {
struct Kernels {
  template <int kHalf, bool kInterleaved, typename T>
  static constexpr TokenKernel<T> rotate_fn() noexcept {
    return &detail::rotate_token<kHalf, kInterleaved, T, compute_t<T>>;
  }
  template <typename C>
  static constexpr SincosRowKernel<C> sincos_fn() noexcept {
    return &sincos_row_fast<C>;
  }
  template <int kN, typename T>
  static constexpr QuantizeKernel<T> quantize_int8_fn() noexcept {
    return &quantize_int8_row<kN, T>;
  }
  template <int kN, typename T>
  static constexpr QuantizeFp8Kernel<T> quantize_fp8_fn() noexcept {
    return &quantize_fp8_row<kN, T>;
  }
};
template <typename T>
inline constexpr KernelTable<T> kTable = make_kernel_table<T, Kernels>(KernelPath::kPortable);
}  // namespace portable

// The vector kernels, one namespace per instruction set, all from one source, each ending in its
// table (kTable). Which one runs is chosen by kernel_table() below.
#if ROPESCALE_HAVE_X86_PATHS
namespace avx2 {
#define ROPESCALE_SIMD_PATH KernelPath::kAvx2
#define ROPESCALE_SIMD_PACKET PacketAvx2
#define ROPESCALE_SIMD_TARGET ROPESCALE_TARGET_AVX2
#include "ropescale/detail/kernels/rotary_simd_body.inc"
#undef ROPESCALE_SIMD_PACKET
#undef ROPESCALE_SIMD_TARGET
#undef ROPESCALE_SIMD_PATH
}  // namespace avx2
namespace avx512 {
#define ROPESCALE_SIMD_PATH KernelPath::kAvx512
#define ROPESCALE_SIMD_PACKET PacketAvx512
#define ROPESCALE_SIMD_TARGET ROPESCALE_TARGET_AVX512
#include "ropescale/detail/kernels/rotary_simd_body.inc"
#undef ROPESCALE_SIMD_PACKET
#undef ROPESCALE_SIMD_TARGET
#undef ROPESCALE_SIMD_PATH
}  // namespace avx512
namespace avx512_bf16 {
#define ROPESCALE_SIMD_PATH KernelPath::kAvx512Bf16
#define ROPESCALE_SIMD_PACKET PacketAvx512Bf16
#define ROPESCALE_SIMD_TARGET ROPESCALE_TARGET_AVX512_BF16
#include "ropescale/detail/kernels/rotary_simd_body.inc"
#undef ROPESCALE_SIMD_PACKET
#undef ROPESCALE_SIMD_TARGET
#undef ROPESCALE_SIMD_PATH
}  // namespace avx512_bf16
#endif
#if ROPESCALE_HAVE_NEON_PATH
namespace neon {
#define ROPESCALE_SIMD_PATH KernelPath::kNeon
#define ROPESCALE_SIMD_PACKET PacketNeon
#define ROPESCALE_SIMD_TARGET
#include "ropescale/detail/kernels/rotary_simd_body.inc"
#undef ROPESCALE_SIMD_PACKET
#undef ROPESCALE_SIMD_TARGET
#undef ROPESCALE_SIMD_PATH
}  // namespace neon
#endif

/// The table of a path (kAuto and paths this build lacks: the portable one). Callers resolve the
/// path once (active_kernel_path(), or a plan's) and keep the reference.
template <typename T>
inline const KernelTable<T>& kernel_table(KernelPath path) noexcept {
  switch (path) {
#if ROPESCALE_HAVE_X86_PATHS
    case KernelPath::kAvx2:
      return avx2::kTable<T>;
    case KernelPath::kAvx512:
      return avx512::kTable<T>;
    case KernelPath::kAvx512Bf16:
      return avx512_bf16::kTable<T>;
#endif
#if ROPESCALE_HAVE_NEON_PATH
    case KernelPath::kNeon:
      return neon::kTable<T>;
#endif
    default:
      return portable::kTable<T>;
  }
}

}  // namespace detail
}  // namespace ropescale

#include "ropescale/detail/macro_unscope.hpp"
