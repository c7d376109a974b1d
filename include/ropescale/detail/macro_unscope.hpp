// ropescale internal: undoes macro_scope.hpp (restores each internal macro to what it was before
// that scope opened: undefined, outside every scope), so no internal macro leaks to users.
#include "ropescale/detail/internal_header_check.hpp"

#pragma pop_macro("ROPESCALE_RESTRICT")
#pragma pop_macro("ROPESCALE_HAVE_X86_PATHS")
#pragma pop_macro("ROPESCALE_HAVE_NEON_PATH")
#pragma pop_macro("ROPESCALE_TARGET_AVX2")
#pragma pop_macro("ROPESCALE_TARGET_AVX512")
#pragma pop_macro("ROPESCALE_TARGET_AVX512_BF16")
#pragma pop_macro("ROPESCALE_PACKET_OP")
