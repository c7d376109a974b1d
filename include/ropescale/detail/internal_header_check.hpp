// ropescale internal: the first include of every detail/ header (as Eigen's InternalHeaderCheck.h).
// A public header opens the gate around its detail includes and restores it right after:
//   #pragma push_macro("ROPESCALE_INSIDE_PUBLIC_HEADER")
//   #define ROPESCALE_INSIDE_PUBLIC_HEADER
//   #include "ropescale/detail/....hpp"
//   #pragma pop_macro("ROPESCALE_INSIDE_PUBLIC_HEADER")
// so a detail header is never an entry point and the gate macro never reaches users. Push and pop
// (not define and undef) let a detail header include the public header that declares the types it
// serves (rotary_call.hpp includes rotary_types.hpp, hf_parse.hpp io/rope_config.hpp,
// checkpoint_json.hpp search_state.hpp) without closing the gate of the header that included it.
// Every detail header includes what it uses and compiles on its own once the gate is open
// (tests/CMakeLists.txt checks both). No include guard: the check runs for every header.
#ifndef ROPESCALE_INSIDE_PUBLIC_HEADER
#error "ropescale/detail/ headers are internal: include a public header (ropescale/rotary.hpp, ...)"
#endif
