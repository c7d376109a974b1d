// ropescale internal: the first include of every detail/ header (as Eigen's InternalHeaderCheck.h).
// A public header opens the gate around its detail includes and closes it right after:
//   #define ROPESCALE_INSIDE_PUBLIC_HEADER
//   #include "ropescale/detail/....hpp"
//   #undef ROPESCALE_INSIDE_PUBLIC_HEADER
// so a detail header is never an entry point and the gate macro never reaches users. Detail
// headers include only the standard library, Eigen, nlohmann/json (the io/ ones), config.hpp,
// error.hpp and other detail headers (none of which opens a gate of its own). A few hold the
// checks and readers of one public header's types (rotary_call.hpp, json_read.hpp, hf_parse.hpp,
// checkpoint_json.hpp): that header includes them after those types. No include guard: the check
// runs for every header.
#ifndef ROPESCALE_INSIDE_PUBLIC_HEADER
#error "ropescale/detail/ headers are internal: include a public header (ropescale/rotary.hpp, ...)"
#endif
