// ropescale internal: portable random draws on std::mt19937_64, shared by the factor search and
// the needle documents. The standard distributions differ between standard libraries; these give
// the same numbers everywhere, so a checkpoint resumes and a needle set rebuilds identically.
// Not a public header: include ropescale/search.hpp or ropescale/needle.hpp.
#pragma once

#include "ropescale/detail/internal_header_check.hpp"

#include <cstdint>
#include <limits>
#include <random>

namespace ropescale {
namespace detail {

/// Uniform in [0, 1) with 53 random bits.
inline double uniform01(std::mt19937_64& rng) {
  return static_cast<double>(rng() >> 11) * (1.0 / 9007199254740992.0);
}

/// Uniform in [0, n), n >= 1, by rejection (no modulo bias).
inline std::uint64_t uniform_index(std::mt19937_64& rng, std::uint64_t n) {
  const std::uint64_t max = std::numeric_limits<std::uint64_t>::max();
  const std::uint64_t limit = max - (max % n + 1) % n;  // largest multiple of n, minus 1
  std::uint64_t x;
  do x = rng();
  while (x > limit);
  return x % n;
}

}  // namespace detail
}  // namespace ropescale
