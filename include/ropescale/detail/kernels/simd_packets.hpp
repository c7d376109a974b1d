// ropescale internal: the packet operations the rotary kernels are written in, one struct per
// instruction set. Not a public header. Each struct gives, for float lanes:
//   kWidth                      floats per packet
//   load(p) / store(p, v)       from and to float, Eigen::half and Eigen::bfloat16 storage
//   store2(p, a, b)             store(p, a) and store(p + kWidth, b)
//   mul, add, sub               lane-wise
//   swap_pairs(v)               (a0 b0 a1 b1 ..) -> (b0 a0 b1 a1 ..)
//   load_dup_pairs(p)           kWidth / 2 floats from p as (p0 p0 p1 p1 ..)
//   sub_add(a, b)               a - b on even lanes, a + b on odd lanes
//   deinterleave(v0, v1, &e, &o)  kWidth pairs (a0 b0 a1 b1 ..) in v0, v1 -> the a's in e and the
//                               b's in o, in pair order P (each path's own lane order)
//   interleave(e, o, &v0, &v1)  its inverse
//   load_pair_order(p)          kWidth floats from p in pair order P (c and s rows for e and o)
//   store_bytes(q, b)           the low byte of each 32-bit lane of b (type Bits) to q[0..kWidth)
//   store_bytes4(q, b0..b3)     store_bytes of four packets to q[0..4 kWidth)
//   opaque(v)                   v, through an empty asm statement: the compiler may not fuse the
//                               product that made v into the next sum (no FMA contraction)
// 16-bit stores round to nearest even and keep NaN a (quiet) NaN, as detail/kernels/convert.hpp
// does. Every x86 function carries its instruction set as a target attribute, so each compiles into
// any build and runs only where kernel_path.hpp found the CPU able to.
#pragma once

#include "ropescale/detail/internal_header_check.hpp"

#include <Eigen/Core>
#include <cstdint>

#include "ropescale/detail/kernels/cpu_features.hpp"

// ROPESCALE_TARGET_* (each path's target attribute), ROPESCALE_PACKET_OP, ROPESCALE_HAVE_*.
#include "ropescale/detail/macro_scope.hpp"

#if ROPESCALE_HAVE_X86_PATHS
#include <immintrin.h>
#endif
#if ROPESCALE_HAVE_NEON_PATH
#include <arm_neon.h>
#endif

namespace ropescale {
namespace detail {

#if ROPESCALE_HAVE_X86_PATHS

// AVX2: 8 floats; F16C converts 8 halves per instruction; bfloat16 by integer rounding.
struct PacketAvx2 {
  static constexpr int kWidth = 8;
  using F = __m256;
  using Bits = __m256i;
  ROPESCALE_PACKET_OP(ROPESCALE_TARGET_AVX2) F load(const float* p) { return _mm256_loadu_ps(p); }
  ROPESCALE_PACKET_OP(ROPESCALE_TARGET_AVX2) void store(float* p, F v) { _mm256_storeu_ps(p, v); }
  ROPESCALE_PACKET_OP(ROPESCALE_TARGET_AVX2) F load(const Eigen::half* p) {
    return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
  }
  ROPESCALE_PACKET_OP(ROPESCALE_TARGET_AVX2) void store(Eigen::half* p, F v) {
    _mm_storeu_si128(reinterpret_cast<__m128i*>(p),
                     _mm256_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
  }
  ROPESCALE_PACKET_OP(ROPESCALE_TARGET_AVX2) F load(const Eigen::bfloat16* p) {
    const __m256i w = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
    return _mm256_castsi256_ps(_mm256_slli_epi32(w, 16));
  }
  // The bfloat16 bits of each lane (round to nearest even, NaN kept quiet) in its low half.
  ROPESCALE_PACKET_OP(ROPESCALE_TARGET_AVX2) __m256i bf16_bits(F v) {
    const __m256i u = _mm256_castps_si256(v);
    const __m256i hi = _mm256_srli_epi32(u, 16);
    const __m256i lsb = _mm256_and_si256(hi, _mm256_set1_epi32(1));
    const __m256i rounded = _mm256_srli_epi32(
        _mm256_add_epi32(_mm256_add_epi32(u, _mm256_set1_epi32(0x7fff)), lsb), 16);
    const __m256i quiet = _mm256_or_si256(hi, _mm256_set1_epi32(0x40));
    const __m256i nan = _mm256_castps_si256(_mm256_cmp_ps(v, v, _CMP_UNORD_Q));
    return _mm256_blendv_epi8(rounded, quiet, nan);
  }
  ROPESCALE_PACKET_OP(ROPESCALE_TARGET_AVX2) void store(Eigen::bfloat16* p, F v) {
    const __m256i r = bf16_bits(v);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(p),
                     _mm_packus_epi32(_mm256_castsi256_si128(r), _mm256_extracti128_si256(r, 1)));
  }
  // Two packets to p[0, 2 kWidth): bfloat16 packs both with one pack and one permutation.
  template <typename T>
  ROPESCALE_PACKET_OP(ROPESCALE_TARGET_AVX2)
  void store2(T* p, F a, F b) {
    store(p, a);
    store(p + kWidth, b);
  }
  ROPESCALE_PACKET_OP(ROPESCALE_TARGET_AVX2) void store2(Eigen::bfloat16* p, F a, F b) {
    const __m256i packed =
        _mm256_packus_epi32(bf16_bits(a), bf16_bits(b));  // a0-3 b0-3 | a4-7 b4-7
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(p), _mm256_permute4x64_epi64(packed, 0xD8));
  }
  ROPESCALE_PACKET_OP(ROPESCALE_TARGET_AVX2) F mul(F a, F b) { return _mm256_mul_ps(a, b); }
  ROPESCALE_PACKET_OP(ROPESCALE_TARGET_AVX2) F add(F a, F b) { return _mm256_add_ps(a, b); }
  ROPESCALE_PACKET_OP(ROPESCALE_TARGET_AVX2) F sub(F a, F b) { return _mm256_sub_ps(a, b); }
  ROPESCALE_PACKET_OP(ROPESCALE_TARGET_AVX2) F swap_pairs(F v) {
    return _mm256_permute_ps(v, 0xB1);
  }
  ROPESCALE_PACKET_OP(ROPESCALE_TARGET_AVX2) F load_dup_pairs(const float* p) {
    const __m128 h = _mm_loadu_ps(p);
    return _mm256_set_m128(_mm_unpackhi_ps(h, h), _mm_unpacklo_ps(h, h));
  }
  ROPESCALE_PACKET_OP(ROPESCALE_TARGET_AVX2) F sub_add(F a, F b) { return _mm256_addsub_ps(a, b); }
  // Pair order (0 1 4 5 2 3 6 7): shuffles and unpacks work within 128-bit lanes.
  ROPESCALE_PACKET_OP(ROPESCALE_TARGET_AVX2) void deinterleave(F v0, F v1, F* e, F* o) {
    *e = _mm256_shuffle_ps(v0, v1, 0x88);
    *o = _mm256_shuffle_ps(v0, v1, 0xDD);
  }
  ROPESCALE_PACKET_OP(ROPESCALE_TARGET_AVX2) void interleave(F e, F o, F* v0, F* v1) {
    *v0 = _mm256_unpacklo_ps(e, o);
    *v1 = _mm256_unpackhi_ps(e, o);
  }
  ROPESCALE_PACKET_OP(ROPESCALE_TARGET_AVX2) F load_pair_order(const float* p) {
    return _mm256_permutevar8x32_ps(_mm256_loadu_ps(p), _mm256_setr_epi32(0, 1, 4, 5, 2, 3, 6, 7));
  }
  ROPESCALE_PACKET_OP(ROPESCALE_TARGET_AVX2) void store_bytes(std::uint8_t* q, Bits b) {
    // Low bytes as 0..255, then two unsigned-saturating packs that keep them.
    const __m256i lo = _mm256_and_si256(b, _mm256_set1_epi32(0xff));
    const __m128i w = _mm_packus_epi32(_mm256_castsi256_si128(lo), _mm256_extracti128_si256(lo, 1));
    _mm_storel_epi64(reinterpret_cast<__m128i*>(q), _mm_packus_epi16(w, w));
  }
  ROPESCALE_PACKET_OP(ROPESCALE_TARGET_AVX2)
  void store_bytes4(std::uint8_t* q, Bits b0, Bits b1, Bits b2, Bits b3) {
    // Two packs leave the bytes in 4-byte groups (b0 0-3, b1 0-3, b2 0-3, b3 0-3 | b0 4-7, ..);
    // one permutation puts the groups in order.
    const __m256i m = _mm256_set1_epi32(0xff);
    const __m256i p01 = _mm256_packus_epi32(_mm256_and_si256(b0, m), _mm256_and_si256(b1, m));
    const __m256i p23 = _mm256_packus_epi32(_mm256_and_si256(b2, m), _mm256_and_si256(b3, m));
    const __m256i bytes = _mm256_permutevar8x32_epi32(_mm256_packus_epi16(p01, p23),
                                                      _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(q), bytes);
  }
  ROPESCALE_PACKET_OP(ROPESCALE_TARGET_AVX2) F opaque(F v) {
    __asm__("" : "+x"(v));
    return v;
  }
};

// AVX-512: 16 floats; the 16-lane F16C forms; bfloat16 by integer rounding. Only the maskz forms
// of the intrinsics are used: GCC < 13 warns (-Wmaybe-uninitialized, bug 105593) inside the
// unmasked ones, which start from _mm512_undefined_*().
struct PacketAvx512 {
  static constexpr int kWidth = 16;
  static constexpr __mmask16 kAll = 0xFFFF;
  using F = __m512;
  using Bits = __m512i;
  ROPESCALE_PACKET_OP(ROPESCALE_TARGET_AVX512) F load(const float* p) { return _mm512_loadu_ps(p); }
  ROPESCALE_PACKET_OP(ROPESCALE_TARGET_AVX512) void store(float* p, F v) { _mm512_storeu_ps(p, v); }
  ROPESCALE_PACKET_OP(ROPESCALE_TARGET_AVX512) F load(const Eigen::half* p) {
    return _mm512_maskz_cvtph_ps(kAll, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
  }
  ROPESCALE_PACKET_OP(ROPESCALE_TARGET_AVX512) void store(Eigen::half* p, F v) {
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(p),
                        _mm512_maskz_cvtps_ph(kAll, v, _MM_FROUND_TO_NEAREST_INT));
  }
  ROPESCALE_PACKET_OP(ROPESCALE_TARGET_AVX512) F load(const Eigen::bfloat16* p) {
    const __m512i w =
        _mm512_maskz_cvtepu16_epi32(kAll, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
    return _mm512_castsi512_ps(_mm512_maskz_slli_epi32(kAll, w, 16));
  }
  ROPESCALE_PACKET_OP(ROPESCALE_TARGET_AVX512) void store(Eigen::bfloat16* p, F v) {
    const __m512i u = _mm512_castps_si512(v);
    const __m512i hi = _mm512_maskz_srli_epi32(kAll, u, 16);
    const __m512i lsb = _mm512_and_si512(hi, _mm512_set1_epi32(1));
    const __m512i rounded = _mm512_maskz_srli_epi32(
        kAll, _mm512_add_epi32(_mm512_add_epi32(u, _mm512_set1_epi32(0x7fff)), lsb), 16);
    const __m512i quiet = _mm512_or_si512(hi, _mm512_set1_epi32(0x40));
    const __mmask16 nan = _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q);
    const __m512i r = _mm512_mask_blend_epi32(nan, rounded, quiet);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(p), _mm512_maskz_cvtepi32_epi16(kAll, r));
  }
  template <typename T>
  ROPESCALE_PACKET_OP(ROPESCALE_TARGET_AVX512)
  void store2(T* p, F a, F b) {
    store(p, a);
    store(p + kWidth, b);
  }
  ROPESCALE_PACKET_OP(ROPESCALE_TARGET_AVX512) F mul(F a, F b) { return _mm512_mul_ps(a, b); }
  ROPESCALE_PACKET_OP(ROPESCALE_TARGET_AVX512) F add(F a, F b) { return _mm512_add_ps(a, b); }
  ROPESCALE_PACKET_OP(ROPESCALE_TARGET_AVX512) F sub(F a, F b) { return _mm512_sub_ps(a, b); }
  ROPESCALE_PACKET_OP(ROPESCALE_TARGET_AVX512) F swap_pairs(F v) {
    return _mm512_maskz_permute_ps(kAll, v, 0xB1);
  }
  ROPESCALE_PACKET_OP(ROPESCALE_TARGET_AVX512) F load_dup_pairs(const float* p) {
    const __m512i idx = _mm512_set_epi32(7, 7, 6, 6, 5, 5, 4, 4, 3, 3, 2, 2, 1, 1, 0, 0);
    return _mm512_maskz_permutexvar_ps(kAll, idx, _mm512_maskz_loadu_ps(0x00FF, p));
  }
  ROPESCALE_PACKET_OP(ROPESCALE_TARGET_AVX512) F sub_add(F a, F b) {
    return _mm512_mask_sub_ps(_mm512_add_ps(a, b), 0x5555, a, b);
  }
  // Pair order (0 1 8 9 2 3 10 11 4 5 12 13 6 7 14 15): within 128-bit lanes, as for AVX2.
  ROPESCALE_PACKET_OP(ROPESCALE_TARGET_AVX512) void deinterleave(F v0, F v1, F* e, F* o) {
    *e = _mm512_maskz_shuffle_ps(kAll, v0, v1, 0x88);
    *o = _mm512_maskz_shuffle_ps(kAll, v0, v1, 0xDD);
  }
  ROPESCALE_PACKET_OP(ROPESCALE_TARGET_AVX512) void interleave(F e, F o, F* v0, F* v1) {
    *v0 = _mm512_maskz_unpacklo_ps(kAll, e, o);
    *v1 = _mm512_maskz_unpackhi_ps(kAll, e, o);
  }
  ROPESCALE_PACKET_OP(ROPESCALE_TARGET_AVX512) F load_pair_order(const float* p) {
    const __m512i idx = _mm512_setr_epi32(0, 1, 8, 9, 2, 3, 10, 11, 4, 5, 12, 13, 6, 7, 14, 15);
    return _mm512_maskz_permutexvar_ps(kAll, idx, _mm512_loadu_ps(p));
  }
  ROPESCALE_PACKET_OP(ROPESCALE_TARGET_AVX512) void store_bytes(std::uint8_t* q, Bits b) {
    _mm_storeu_si128(reinterpret_cast<__m128i*>(q), _mm512_maskz_cvtepi32_epi8(kAll, b));
  }
  ROPESCALE_PACKET_OP(ROPESCALE_TARGET_AVX512)
  void store_bytes4(std::uint8_t* q, Bits b0, Bits b1, Bits b2, Bits b3) {
    store_bytes(q, b0);
    store_bytes(q + kWidth, b1);
    store_bytes(q + 2 * kWidth, b2);
    store_bytes(q + 3 * kWidth, b3);
  }
  ROPESCALE_PACKET_OP(ROPESCALE_TARGET_AVX512) F opaque(F v) {
    __asm__("" : "+v"(v));
    return v;
  }
};

// AVX-512 with AVX512_BF16: bfloat16 stores are one vcvtneps2bf16 per 16 values (round to
// nearest even; subnormals flushed to zero, NaN kept NaN).
struct PacketAvx512Bf16 : PacketAvx512 {
  using PacketAvx512::load;
  using PacketAvx512::store;
  ROPESCALE_PACKET_OP(ROPESCALE_TARGET_AVX512_BF16) void store(Eigen::bfloat16* p, F v) {
    const __m256bh b = _mm512_cvtneps_pbh(v);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(p), reinterpret_cast<const __m256i&>(b));
  }
  template <typename T>  // PacketAvx512's would call PacketAvx512's stores
  ROPESCALE_PACKET_OP(ROPESCALE_TARGET_AVX512_BF16) void store2(T* p, F a, F b) {
    store(p, a);
    store(p + kWidth, b);
  }
};

#endif  // ROPESCALE_HAVE_X86_PATHS

#if ROPESCALE_HAVE_NEON_PATH

// AArch64 NEON: 4 floats; fcvtl/fcvtn convert halves (base AArch64); bfloat16 by integer
// rounding (the BF16 extension's bfcvtn is not assumed).
struct PacketNeon {
  static constexpr int kWidth = 4;
  using F = float32x4_t;
  using Bits = uint32x4_t;
  static inline F load(const float* p) { return vld1q_f32(p); }
  static inline void store(float* p, F v) { vst1q_f32(p, v); }
  static inline F load(const Eigen::half* p) {
    return vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(reinterpret_cast<const std::uint16_t*>(p))));
  }
  static inline void store(Eigen::half* p, F v) {
    vst1_u16(reinterpret_cast<std::uint16_t*>(p), vreinterpret_u16_f16(vcvt_f16_f32(v)));
  }
  static inline F load(const Eigen::bfloat16* p) {
    return vreinterpretq_f32_u32(
        vshll_n_u16(vld1_u16(reinterpret_cast<const std::uint16_t*>(p)), 16));
  }
  static inline void store(Eigen::bfloat16* p, F v) {
    const uint32x4_t u = vreinterpretq_u32_f32(v);
    const uint32x4_t hi = vshrq_n_u32(u, 16);
    const uint32x4_t lsb = vandq_u32(hi, vdupq_n_u32(1));
    const uint32x4_t rounded = vshrq_n_u32(vaddq_u32(vaddq_u32(u, vdupq_n_u32(0x7fff)), lsb), 16);
    const uint32x4_t quiet = vorrq_u32(hi, vdupq_n_u32(0x40));
    const uint32x4_t nan = vmvnq_u32(vceqq_f32(v, v));
    vst1_u16(reinterpret_cast<std::uint16_t*>(p), vmovn_u32(vbslq_u32(nan, quiet, rounded)));
  }
  template <typename T>
  static inline void store2(T* p, F a, F b) {
    store(p, a);
    store(p + kWidth, b);
  }
  static inline F mul(F a, F b) { return vmulq_f32(a, b); }
  static inline F add(F a, F b) { return vaddq_f32(a, b); }
  static inline F sub(F a, F b) { return vsubq_f32(a, b); }
  static inline F swap_pairs(F v) { return vrev64q_f32(v); }
  static inline F load_dup_pairs(const float* p) {
    const float32x2_t h = vld1_f32(p);
    return vcombine_f32(vdup_lane_f32(h, 0), vdup_lane_f32(h, 1));
  }
  static inline F sub_add(F a, F b) {  // b's even lanes negated (a sign flip is exact)
    const uint32x4_t sign = {0x80000000u, 0u, 0x80000000u, 0u};
    return vaddq_f32(a, vreinterpretq_f32_u32(veorq_u32(vreinterpretq_u32_f32(b), sign)));
  }
  // Pair order is the natural one: uzp and zip take whole registers.
  static inline void deinterleave(F v0, F v1, F* e, F* o) {
    const float32x4x2_t u = vuzpq_f32(v0, v1);
    *e = u.val[0];
    *o = u.val[1];
  }
  static inline void interleave(F e, F o, F* v0, F* v1) {
    const float32x4x2_t z = vzipq_f32(e, o);
    *v0 = z.val[0];
    *v1 = z.val[1];
  }
  static inline F load_pair_order(const float* p) { return vld1q_f32(p); }
  static inline void store_bytes(std::uint8_t* q, Bits b) {
    const uint16x4_t h = vmovn_u32(b);
    const uint8x8_t o = vmovn_u16(vcombine_u16(h, h));
    vst1_lane_u32(reinterpret_cast<std::uint32_t*>(q), vreinterpret_u32_u8(o), 0);
  }
  static inline void store_bytes4(std::uint8_t* q, Bits b0, Bits b1, Bits b2, Bits b3) {
    store_bytes(q, b0);
    store_bytes(q + kWidth, b1);
    store_bytes(q + 2 * kWidth, b2);
    store_bytes(q + 3 * kWidth, b3);
  }
  static inline F opaque(F v) {
    __asm__("" : "+w"(v));
    return v;
  }
};

#endif  // ROPESCALE_HAVE_NEON_PATH

}  // namespace detail
}  // namespace ropescale

#include "ropescale/detail/macro_unscope.hpp"
