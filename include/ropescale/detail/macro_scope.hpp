// ropescale internal: macros used by detail kernels; undone by macro_unscope.hpp.
#include "ropescale/detail/internal_header_check.hpp"
#if defined(__GNUC__) || defined(__clang__)
#define ROPESCALE_RESTRICT __restrict__
#else
#define ROPESCALE_RESTRICT
#endif
