// ropescale internal: defines every internal macro; macro_unscope.hpp takes them away again
// (nlohmann/json's detail/macro_scope.hpp and macro_unscope.hpp). A header that uses one includes
// this after its other includes and macro_unscope.hpp at its end. Each macro is pushed before it
// is defined and popped by macro_unscope.hpp, so scopes nest: a header opening its scope inside
// another's leaves the outer one's macros defined when it closes. No include guard: every header
// that uses the macros opens its own scope. The list of internal macros is
// tests/internal_macros.txt; tests/CMakeLists.txt checks that none is defined after any public
// header and that the list names every ROPESCALE_ macro defined under include/ that is not public.
#include "ropescale/detail/internal_header_check.hpp"

#pragma push_macro("ROPESCALE_RESTRICT")
#pragma push_macro("ROPESCALE_HAVE_X86_PATHS")
#pragma push_macro("ROPESCALE_HAVE_NEON_PATH")
#pragma push_macro("ROPESCALE_TARGET_AVX2")
#pragma push_macro("ROPESCALE_TARGET_AVX512")
#pragma push_macro("ROPESCALE_TARGET_AVX512_BF16")
#pragma push_macro("ROPESCALE_PACKET_OP")
#undef ROPESCALE_RESTRICT
#undef ROPESCALE_HAVE_X86_PATHS
#undef ROPESCALE_HAVE_NEON_PATH
#undef ROPESCALE_TARGET_AVX2
#undef ROPESCALE_TARGET_AVX512
#undef ROPESCALE_TARGET_AVX512_BF16
#undef ROPESCALE_PACKET_OP

// No-alias promise on kernel pointers.
#if defined(__GNUC__) || defined(__clang__)
#define ROPESCALE_RESTRICT __restrict__
#else
#define ROPESCALE_RESTRICT
#endif

// The x86 instruction-set paths are compiled into every build (per-function target attributes)
// where the compiler supports those attributes; the NEON path wherever the target is AArch64.
#if (defined(__x86_64__) || defined(__i386__)) && \
    (defined(__clang__) || (defined(__GNUC__) && __GNUC__ >= 10))
#define ROPESCALE_HAVE_X86_PATHS 1
#else
#define ROPESCALE_HAVE_X86_PATHS 0
#endif
#if defined(__aarch64__) && defined(__ARM_NEON)
#define ROPESCALE_HAVE_NEON_PATH 1
#else
#define ROPESCALE_HAVE_NEON_PATH 0
#endif

// The target attribute of each x86 path's functions, and the attributes of a packet operation
// (detail/kernels/simd_packets.hpp).
#if ROPESCALE_HAVE_X86_PATHS
#define ROPESCALE_TARGET_AVX2 __attribute__((target("avx2,fma,f16c")))
#define ROPESCALE_TARGET_AVX512 \
  __attribute__((target("avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512dq")))
#define ROPESCALE_TARGET_AVX512_BF16 \
  __attribute__((target("avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512dq,avx512bf16")))
#define ROPESCALE_PACKET_OP(TARGET) TARGET __attribute__((always_inline)) static inline
#endif
