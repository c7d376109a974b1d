// ropescale internal: undoes macro_scope.hpp so no internal macro leaks to users.
#undef ROPESCALE_RESTRICT
