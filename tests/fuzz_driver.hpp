// The driver every seeded mutation fuzz test shares (test_hf_config_fuzz, and the tiny Llama's
// test_model_fuzz under examples/): the seed and the time budget, read from the environment, the
// loop bound, and the random choices and damage its mutators build on.
//
//   ROPESCALE_FUZZ_SEED=N     the seed (each TEST adds its own offset to it)
//   ROPESCALE_FUZZ_SECONDS=S  the wall-clock budget of each TEST; also lifts the input cap
//
// A test runs `while (!driver.out_of_time(start, inputs))`: at least `min_iterations` inputs
// (even on a slow sanitizer build), then until the budget is spent, and without
// ROPESCALE_FUZZ_SECONDS at most `max_iterations`, so that a fast machine's ctest run stays short.
#pragma once

#include <chrono>
#include <climits>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <utility>

namespace ropescale_test {

class FuzzDriver {
 public:
  using Clock = std::chrono::steady_clock;

  constexpr FuzzDriver(std::uint64_t default_seed, double default_seconds, int min_iterations,
                       int max_iterations = INT_MAX)
      : default_seed_(default_seed),
        default_seconds_(default_seconds),
        min_iterations_(min_iterations),
        max_iterations_(max_iterations) {}

  // ROPESCALE_FUZZ_SEED, or the test file's default.
  std::uint64_t seed() const {
    const char* env = std::getenv("ROPESCALE_FUZZ_SEED");
    return env != nullptr ? std::strtoull(env, nullptr, 10) : default_seed_;
  }
  // ROPESCALE_FUZZ_SECONDS, or the test file's default: wall-clock seconds per TEST.
  double seconds() const {
    const char* env = std::getenv("ROPESCALE_FUZZ_SECONDS");
    return env != nullptr ? std::atof(env) : default_seconds_;
  }
  // The input cap: none when ROPESCALE_FUZZ_SECONDS asks for a run of a given length.
  int max_iterations() const {
    return std::getenv("ROPESCALE_FUZZ_SECONDS") != nullptr ? INT_MAX : max_iterations_;
  }

  // True once the loop that began at `start` and has run `iterations` inputs should stop.
  bool out_of_time(Clock::time_point start, int iterations) const {
    return out_of_time(start, iterations, min_iterations_);
  }
  // The same with a floor of its own (a test whose inputs each cost more).
  bool out_of_time(Clock::time_point start, int iterations, int min_iterations) const {
    if (iterations < min_iterations) return false;
    if (iterations >= max_iterations()) return true;
    const std::chrono::duration<double> spent = Clock::now() - start;
    return spent.count() > seconds();
  }

 private:
  std::uint64_t default_seed_;
  double default_seconds_;
  int min_iterations_;
  int max_iterations_;
};

// The random choices a mutator makes, and the damage every input format shares. Mutators derive
// from it and add what their format needs (hostile values, tree and header edits).
class FuzzRng {
 public:
  explicit FuzzRng(std::uint64_t seed) : rng_(seed) {}

  // Uniform in [0, n); 0 when n is 0.
  std::size_t below(std::size_t n) {
    return n == 0 ? 0 : std::uniform_int_distribution<std::size_t>(0, n - 1)(rng_);
  }
  bool coin() { return below(2) == 0; }
  std::mt19937_64& engine() { return rng_; }

  // One random bit of s[pos] flipped.
  void flip_bit(std::string& s, std::size_t pos) {
    s[pos] = static_cast<char>(s[pos] ^ (1 << below(8)));
  }

  // `leaf` wrapped `depth` times: in one-element arrays, or in objects under `key` when it is
  // given. Built iteratively: parsers must refuse such depth, and a recursive build would
  // overflow the stack before they get the chance.
  static nlohmann::json nested(nlohmann::json leaf, std::size_t depth, const char* key = nullptr) {
    for (; depth > 0; --depth) {
      nlohmann::json outer = key != nullptr ? nlohmann::json::object() : nlohmann::json::array();
      if (key != nullptr)
        outer[key] = std::move(leaf);
      else
        outer.push_back(std::move(leaf));
      leaf = std::move(outer);
    }
    return leaf;
  }

 private:
  std::mt19937_64 rng_;
};

}  // namespace ropescale_test
