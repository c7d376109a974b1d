// ropescale internal: what the CPU running the process can execute, probed once. Not a public
// header: include ropescale/kernel_path.hpp.
//
// x86: the compiler's CPU probe (__builtin_cpu_supports), which also checks that the operating
// system saves the AVX and AVX-512 registers. AArch64: Advanced SIMD (NEON) is part of the base
// architecture, half-precision conversions included.
#pragma once

#include "ropescale/detail/internal_header_check.hpp"

// ROPESCALE_HAVE_X86_PATHS / ROPESCALE_HAVE_NEON_PATH: which paths this build compiles.
#include "ropescale/detail/macro_scope.hpp"

#if ROPESCALE_HAVE_X86_PATHS
#include <cpuid.h>
#endif

namespace ropescale {
namespace detail {

#if ROPESCALE_HAVE_X86_PATHS
// F16C from CPUID leaf 1 (ECX bit 29): not every compiler's __builtin_cpu_supports knows it
// (Clang 14 does not). The AVX state it needs is checked by __builtin_cpu_supports("avx2").
inline bool cpu_has_f16c() noexcept {
  unsigned a = 0, b = 0, c = 0, d = 0;
  return __get_cpuid(1, &a, &b, &c, &d) != 0 && (c & (1u << 29)) != 0;
}
#endif

struct CpuFeatures {
  bool avx2_fma_f16c = false;  // AVX2 + FMA + F16C (Haswell, Zen 1 and later)
  bool avx512 = false;         // AVX512 F + BW + VL + DQ (Skylake-SP, Zen 4 and later)
  bool avx512_bf16 = false;    // AVX512_BF16 (Cooper Lake, Sapphire Rapids, Zen 4)
  bool neon = false;           // AArch64 Advanced SIMD
};

inline CpuFeatures probe_cpu_features() noexcept {
  CpuFeatures f;
#if ROPESCALE_HAVE_X86_PATHS
  __builtin_cpu_init();
  f.avx2_fma_f16c =
      __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && cpu_has_f16c();
  f.avx512 = f.avx2_fma_f16c && __builtin_cpu_supports("avx512f") &&
             __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl") &&
             __builtin_cpu_supports("avx512dq");
  f.avx512_bf16 = f.avx512 && __builtin_cpu_supports("avx512bf16");
#endif
#if ROPESCALE_HAVE_NEON_PATH
  f.neon = true;
#endif
  return f;
}

/// The features of this CPU, probed on first use (thread-safe: a function-local static).
inline const CpuFeatures& cpu_features() noexcept {
  static const CpuFeatures f = probe_cpu_features();
  return f;
}

}  // namespace detail
}  // namespace ropescale

#include "ropescale/detail/macro_unscope.hpp"
