// ropescale internal: undoes macro_scope.hpp so no internal macro leaks to users.
#include "ropescale/detail/internal_header_check.hpp"
#undef ROPESCALE_RESTRICT
