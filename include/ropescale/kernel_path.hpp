// ropescale: which instruction set the rotary kernels run on, chosen at run time.
//
// Every build carries the kernels for several instruction sets: a portable one (plain loops the
// compiler vectorizes for the build's baseline) and, where the compiler can target them per
// function, AVX2 + FMA + F16C and AVX-512 (with hardware bfloat16 conversion where the CPU has
// AVX512_BF16) on x86-64, NEON on AArch64. The first rotary call probes the CPU once and takes
// the best path it supports; a build without -march flags still gets the vector kernels.
//
//   KernelPath        instruction set                        16-bit conversions
//   kPortable         the build's baseline (SSE2 on x86-64)  branch-free integer code
//   kAvx2             AVX2 + FMA + F16C, 8 floats            F16C (f16), integer rounding (bf16)
//   kAvx512           AVX-512 F/BW/VL/DQ, 16 floats          16-lane F16C forms, integer (bf16)
//   kAvx512Bf16       kAvx512 + AVX512_BF16                  vcvtneps2bf16 (bf16)
//   kNeon             AArch64 Advanced SIMD, 4 floats        fcvtl/fcvtn (f16), integer (bf16)
//
// The path also picks the kernels beside the rotation: the angle rows of RotaryFrequencies
// (double sin/cos, vectorized at the path's width) and kv_cache.hpp's int8 quantization.
//
// Every path computes the same products in float (double for double storage) and rounds 16-bit
// results to nearest even; they may differ in the last bit of float results where a path fuses
// a multiply-add, and vcvtneps2bf16 flushes subnormal inputs and outputs (|x| < 1.2e-38) to zero.
//
// A host can pin a path (tests, benchmarks, a reproducibility switch) with force_kernel_path, or
// before the first call with the environment variable ROPESCALE_KERNEL_PATH (portable, avx2,
// avx512, avx512_bf16, neon). force_kernel_path refuses a path the CPU lacks; an unknown or
// unsupported value in the environment is reported once on stderr and the best path is used.
#pragma once

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "ropescale/error.hpp"

#pragma push_macro("ROPESCALE_INSIDE_PUBLIC_HEADER")
#define ROPESCALE_INSIDE_PUBLIC_HEADER
#include "ropescale/detail/kernels/cpu_features.hpp"
#include "ropescale/detail/macro_scope.hpp"
#pragma pop_macro("ROPESCALE_INSIDE_PUBLIC_HEADER")

namespace ropescale {

/// An instruction set for the rotary kernels. kAuto means "the best this CPU supports".
enum class KernelPath { kAuto, kPortable, kAvx2, kAvx512, kAvx512Bf16, kNeon };

inline const char* to_string(KernelPath p) noexcept {
  switch (p) {
    case KernelPath::kAuto:
      return "auto";
    case KernelPath::kPortable:
      return "portable";
    case KernelPath::kAvx2:
      return "avx2";
    case KernelPath::kAvx512:
      return "avx512";
    case KernelPath::kAvx512Bf16:
      return "avx512_bf16";
    case KernelPath::kNeon:
      return "neon";
  }
  return "unknown";
}

/// The paths in the order of preference, best last.
constexpr KernelPath kAllKernelPaths[] = {KernelPath::kPortable, KernelPath::kNeon,
                                          KernelPath::kAvx2, KernelPath::kAvx512,
                                          KernelPath::kAvx512Bf16};

namespace detail {
// Every name parse_kernel_path accepts, comma separated ("auto, portable, ...").
inline std::string kernel_path_names() {
  std::string names = to_string(KernelPath::kAuto);
  for (KernelPath p : kAllKernelPaths) names += std::string(", ") + to_string(p);
  return names;
}
}  // namespace detail

/// Parses a name as to_string writes it ("portable", "avx2", ...; "auto" too).
inline Result<KernelPath> parse_kernel_path(const std::string& name) {
  for (KernelPath p : kAllKernelPaths)
    if (name == to_string(p)) return p;
  if (name == to_string(KernelPath::kAuto)) return KernelPath::kAuto;
  return make_status(ErrorCode::kInvalidArgument, "kernel path", name,
                     "must be one of " + detail::kernel_path_names());
}

/// True when this build carries the path and this CPU can run it. kAuto is always supported.
inline bool kernel_path_supported(KernelPath p) noexcept {
  const detail::CpuFeatures& f = detail::cpu_features();
  switch (p) {
    case KernelPath::kAuto:
    case KernelPath::kPortable:
      return true;
    case KernelPath::kAvx2:
      return ROPESCALE_HAVE_X86_PATHS && f.avx2_fma_f16c;
    case KernelPath::kAvx512:
      return ROPESCALE_HAVE_X86_PATHS && f.avx512;
    case KernelPath::kAvx512Bf16:
      return ROPESCALE_HAVE_X86_PATHS && f.avx512_bf16;
    case KernelPath::kNeon:
      return ROPESCALE_HAVE_NEON_PATH && f.neon;
  }
  return false;
}

/// The best path this CPU supports (found once).
inline KernelPath best_kernel_path() noexcept {
  static const KernelPath best = [] {
    KernelPath b = KernelPath::kPortable;
    for (KernelPath p : kAllKernelPaths)
      if (kernel_path_supported(p)) b = p;
    return b;
  }();
  return best;
}

namespace detail {

// The path the environment asks for, read once; kAuto when unset, unknown or unsupported.
inline KernelPath env_kernel_path() noexcept {
  static const KernelPath p = [] {
    const char* v = std::getenv("ROPESCALE_KERNEL_PATH");
    if (v == nullptr || *v == '\0') return KernelPath::kAuto;
    const Result<KernelPath> r = parse_kernel_path(v);
    if (!r.ok()) {
      std::fprintf(stderr,
                   "ropescale: ROPESCALE_KERNEL_PATH=%s is not a kernel path (%s); using %s\n", v,
                   kernel_path_names().c_str(), to_string(best_kernel_path()));
      return KernelPath::kAuto;
    }
    const KernelPath parsed = *r;
    if (!kernel_path_supported(parsed)) {
      std::fprintf(stderr,
                   "ropescale: ROPESCALE_KERNEL_PATH=%s is not supported by this CPU or build; "
                   "using %s\n",
                   v, to_string(best_kernel_path()));
      return KernelPath::kAuto;
    }
    return parsed;
  }();
  return p;
}

// The host's pin (force_kernel_path); kAuto when none.
inline std::atomic<int>& forced_kernel_path() noexcept {
  static std::atomic<int> p{static_cast<int>(KernelPath::kAuto)};
  return p;
}

}  // namespace detail

/// The path the next rotary call runs on: the host's pin, else the environment's, else the best.
inline KernelPath active_kernel_path() noexcept {
  const auto forced =
      static_cast<KernelPath>(detail::forced_kernel_path().load(std::memory_order_relaxed));
  if (forced != KernelPath::kAuto) return forced;
  const KernelPath env = detail::env_kernel_path();
  return env != KernelPath::kAuto ? env : best_kernel_path();
}

/// Pins the kernels to one path for the whole process (kAuto releases the pin). Refuses a path
/// this CPU or build lacks. Not meant to race with rotary calls on other threads: a call in
/// flight finishes on the path it started with.
inline Status force_kernel_path(KernelPath p) {
  if (static_cast<int>(p) < static_cast<int>(KernelPath::kAuto) ||
      static_cast<int>(p) > static_cast<int>(KernelPath::kNeon))
    return make_status(ErrorCode::kInvalidArgument, "path", static_cast<int>(p),
                       "is not a KernelPath");
  if (!kernel_path_supported(p))
    return make_status(ErrorCode::kInvalidArgument, "path", to_string(p),
                       std::string("is not supported by this CPU or build (best: ") +
                           to_string(best_kernel_path()) + ")");
  detail::forced_kernel_path().store(static_cast<int>(p), std::memory_order_relaxed);
  return Status();
}

}  // namespace ropescale

#pragma push_macro("ROPESCALE_INSIDE_PUBLIC_HEADER")
#define ROPESCALE_INSIDE_PUBLIC_HEADER
#include "ropescale/detail/macro_unscope.hpp"
#pragma pop_macro("ROPESCALE_INSIDE_PUBLIC_HEADER")
