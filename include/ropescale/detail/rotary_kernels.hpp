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

#if defined(__AVX__)
#include <immintrin.h>
#endif

#include "ropescale/config.hpp"
#include "ropescale/detail/convert.hpp"
#include "ropescale/detail/macro_scope.hpp"

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

#if defined(__F16C__) && defined(__AVX__)
// Eigen::half with the x86 F16C conversions (one instruction per 8 values): the same arithmetic
// as the generic loops, 8 pairs (half-split) or 4 pairs (interleaved) per step.
template <int kHalf>
inline void rotate_half_split(Eigen::half* x, const float* c, const float* s, std::int64_t half,
                              std::int64_t offset) noexcept {
  const std::int64_t n = kHalf > 0 ? kHalf : half;
  Eigen::half* y = x + offset;
  const std::int64_t vec_end = n - n % 8;
  for (std::int64_t i = 0; i < vec_end; i += 8) {
    const __m256 x0 = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(x + i)));
    const __m256 x1 = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(y + i)));
    const __m256 cv = _mm256_loadu_ps(c + i);
    const __m256 sv = _mm256_loadu_ps(s + i);
    const __m256 r0 = _mm256_sub_ps(_mm256_mul_ps(x0, cv), _mm256_mul_ps(x1, sv));
    const __m256 r1 = _mm256_add_ps(_mm256_mul_ps(x1, cv), _mm256_mul_ps(x0, sv));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(x + i),
                     _mm256_cvtps_ph(r0, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(y + i),
                     _mm256_cvtps_ph(r1, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
  }
  for (std::int64_t i = vec_end; i < n; ++i) {
    const float x0 = Elem<Eigen::half>::load<float>(x[i]);
    const float x1 = Elem<Eigen::half>::load<float>(y[i]);
    Elem<Eigen::half>::store(x[i], x0 * c[i] - x1 * s[i]);
    Elem<Eigen::half>::store(y[i], x1 * c[i] + x0 * s[i]);
  }
}

template <int kHalf>
inline void rotate_interleaved(Eigen::half* x, const float* cc, const float* ss,
                               std::int64_t half) noexcept {
  const std::int64_t n2 = 2 * (kHalf > 0 ? kHalf : half);  // channels
  const std::int64_t vec_end = n2 - n2 % 8;
  for (std::int64_t j = 0; j < vec_end; j += 8) {
    const __m256 v = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(x + j)));
    const __m256 swapped = _mm256_permute_ps(v, 0xB1);  // (b0 a0 b1 a1 ...)
    const __m256 r = _mm256_add_ps(_mm256_mul_ps(v, _mm256_loadu_ps(cc + j)),
                                   _mm256_mul_ps(swapped, _mm256_loadu_ps(ss + j)));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(x + j),
                     _mm256_cvtps_ph(r, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
  }
  for (std::int64_t j = vec_end; j < n2; j += 2) {
    const float a = Elem<Eigen::half>::load<float>(x[j]);
    const float b = Elem<Eigen::half>::load<float>(x[j + 1]);
    Elem<Eigen::half>::store(x[j], a * cc[j] + b * ss[j]);
    Elem<Eigen::half>::store(x[j + 1], b * cc[j + 1] + a * ss[j + 1]);
  }
}
#endif

#if defined(__AVX2__)
// Eigen::bfloat16 with AVX2: widen 8 values to float by a 16-bit shift; narrow with round to
// nearest even (and NaN kept quiet) exactly as float_to_bf16 does, 8 values per step.
inline __m256 bf16x8_load(const Eigen::bfloat16* p) noexcept {
  const __m256i w = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
  return _mm256_castsi256_ps(_mm256_slli_epi32(w, 16));
}
inline void bf16x8_store(Eigen::bfloat16* p, __m256 v) noexcept {
  const __m256i u = _mm256_castps_si256(v);
  const __m256i lsb = _mm256_and_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(1));
  const __m256i rounded =
      _mm256_srli_epi32(_mm256_add_epi32(_mm256_add_epi32(u, _mm256_set1_epi32(0x7fff)), lsb), 16);
  const __m256i quiet = _mm256_or_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(0x40));
  const __m256i nan = _mm256_castps_si256(_mm256_cmp_ps(v, v, _CMP_UNORD_Q));
  const __m256i r = _mm256_blendv_epi8(rounded, quiet, nan);
  const __m256i packed = _mm256_permute4x64_epi64(_mm256_packus_epi32(r, r), 0xD8);
  _mm_storeu_si128(reinterpret_cast<__m128i*>(p), _mm256_castsi256_si128(packed));
}

template <int kHalf>
inline void rotate_half_split(Eigen::bfloat16* x, const float* c, const float* s, std::int64_t half,
                              std::int64_t offset) noexcept {
  const std::int64_t n = kHalf > 0 ? kHalf : half;
  Eigen::bfloat16* y = x + offset;
  const std::int64_t vec_end = n - n % 8;
  for (std::int64_t i = 0; i < vec_end; i += 8) {
    const __m256 x0 = bf16x8_load(x + i);
    const __m256 x1 = bf16x8_load(y + i);
    const __m256 cv = _mm256_loadu_ps(c + i);
    const __m256 sv = _mm256_loadu_ps(s + i);
    bf16x8_store(x + i, _mm256_sub_ps(_mm256_mul_ps(x0, cv), _mm256_mul_ps(x1, sv)));
    bf16x8_store(y + i, _mm256_add_ps(_mm256_mul_ps(x1, cv), _mm256_mul_ps(x0, sv)));
  }
  for (std::int64_t i = vec_end; i < n; ++i) {
    const float x0 = Elem<Eigen::bfloat16>::load<float>(x[i]);
    const float x1 = Elem<Eigen::bfloat16>::load<float>(y[i]);
    Elem<Eigen::bfloat16>::store(x[i], x0 * c[i] - x1 * s[i]);
    Elem<Eigen::bfloat16>::store(y[i], x1 * c[i] + x0 * s[i]);
  }
}

template <int kHalf>
inline void rotate_interleaved(Eigen::bfloat16* x, const float* cc, const float* ss,
                               std::int64_t half) noexcept {
  const std::int64_t n2 = 2 * (kHalf > 0 ? kHalf : half);
  const std::int64_t vec_end = n2 - n2 % 8;
  for (std::int64_t j = 0; j < vec_end; j += 8) {
    const __m256 v = bf16x8_load(x + j);
    const __m256 swapped = _mm256_permute_ps(v, 0xB1);
    bf16x8_store(x + j, _mm256_add_ps(_mm256_mul_ps(v, _mm256_loadu_ps(cc + j)),
                                      _mm256_mul_ps(swapped, _mm256_loadu_ps(ss + j))));
  }
  for (std::int64_t j = vec_end; j < n2; j += 2) {
    const float a = Elem<Eigen::bfloat16>::load<float>(x[j]);
    const float b = Elem<Eigen::bfloat16>::load<float>(x[j + 1]);
    Elem<Eigen::bfloat16>::store(x[j], a * cc[j] + b * ss[j]);
    Elem<Eigen::bfloat16>::store(x[j + 1], b * cc[j + 1] + a * ss[j + 1]);
  }
}
#endif

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
