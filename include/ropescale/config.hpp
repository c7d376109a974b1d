// ropescale: version and assertion macros.
//
// Every macro here can be overridden by defining it before the first ropescale include:
//   ROPESCALE_ASSERT(cond)   always-on internal invariant (aborts with file:line)
//   ROPESCALE_DASSERT(cond)  debug-only invariant, used inside the noexcept kernels
//   ROPESCALE_NO_EXCEPTIONS  defined automatically when the compiler has exceptions off;
//                            the throwing front doors then abort, and the Status-returning
//                            try_* twins are the way to call the library.
//   ROPESCALE_TRY / ROPESCALE_CATCH(type)  try / catch (type) with exceptions; without them the
//                            try block runs and the catch blocks compile away (nlohmann's
//                            JSON_TRY / JSON_CATCH). Catch by unnamed type: a handler cannot
//                            use the exception object.
#pragma once

#define ROPESCALE_VERSION_MAJOR 0
#define ROPESCALE_VERSION_MINOR 1
#define ROPESCALE_VERSION_PATCH 0
#define ROPESCALE_VERSION_STRING "0.1.0"

#include <cstdio>
#include <cstdlib>

#if !defined(ROPESCALE_NO_EXCEPTIONS) && !defined(__cpp_exceptions) && !defined(__EXCEPTIONS)
#define ROPESCALE_NO_EXCEPTIONS
#endif

#ifndef ROPESCALE_TRY
#ifdef ROPESCALE_NO_EXCEPTIONS
#define ROPESCALE_TRY if (true)
#define ROPESCALE_CATCH(type) else if (false)
#else
#define ROPESCALE_TRY try
#define ROPESCALE_CATCH(type) catch (type)
#endif
#endif

#ifndef ROPESCALE_ASSERT
#define ROPESCALE_ASSERT(cond)                                                           \
  do {                                                                                   \
    if (!(cond)) {                                                                       \
      std::fprintf(stderr, "ropescale: assertion failed: %s (%s:%d)\n", #cond, __FILE__, \
                   __LINE__);                                                            \
      std::abort();                                                                      \
    }                                                                                    \
  } while (false)
#endif

#ifndef ROPESCALE_DASSERT
#ifdef NDEBUG
#define ROPESCALE_DASSERT(cond) \
  do {                          \
  } while (false)
#else
#define ROPESCALE_DASSERT(cond) ROPESCALE_ASSERT(cond)
#endif
#endif

namespace ropescale {

/// The library version as "major.minor.patch".
inline const char* version() noexcept { return ROPESCALE_VERSION_STRING; }

}  // namespace ropescale
