// ropescale internal: which tokens of a host-split call have been handed out, so that a broken
// parallel-for (a range run twice, two threads on overlapping ranges, a range never run) is
// refused before it touches data and reported after the host's loop returns.
//
// One bit per token in 64-bit atomic words. claim(begin, end) sets the range's bits with one
// fetch_or per word; a range any of whose bits was already set is refused and must not run. Each
// token's bit is won by exactly one claim, so every token is written by at most one thread and at
// most once, whatever order and threads the host uses.
#pragma once

#include "ropescale/detail/internal_header_check.hpp"

#include <atomic>
#include <cstdint>
#include <memory>

namespace ropescale {
namespace detail {

class RangeClaims {
 public:
  explicit RangeClaims(std::int64_t tokens)
      : tokens_(tokens),
        words_(static_cast<std::size_t>((tokens + 63) / 64)),
        bits_(new std::atomic<std::uint64_t>[words_]) {
    for (std::size_t w = 0; w < words_; ++w) bits_[w].store(0, std::memory_order_relaxed);
  }

  /// Claims [begin, end) (0 <= begin <= end <= tokens, checked by the caller). True when no token
  /// of it was claimed before; otherwise false, and the first such token is recorded.
  bool claim(std::int64_t begin, std::int64_t end) noexcept {
    bool fresh = true;
    for (std::int64_t t = begin; t < end;) {
      const std::int64_t w = t / 64, stop = end < (w + 1) * 64 ? end : (w + 1) * 64;
      const std::uint64_t mask = span_mask(t - w * 64, stop - w * 64);
      const std::uint64_t taken =
          bits_[static_cast<std::size_t>(w)].fetch_or(mask, std::memory_order_relaxed) & mask;
      if (taken != 0) {
        fresh = false;
        note_twice(w * 64 + lowest_bit(taken));
      }
      t = stop;
    }
    return fresh;
  }

  /// The first token claimed twice, or -1.
  std::int64_t first_twice() const noexcept { return twice_.load(std::memory_order_relaxed); }

  /// The first token no claim covered, or -1. Call after every claim has returned.
  std::int64_t first_unclaimed() const noexcept {
    for (std::size_t w = 0; w < words_; ++w) {
      const std::int64_t base = static_cast<std::int64_t>(w) * 64;
      const std::int64_t n = tokens_ - base < 64 ? tokens_ - base : 64;
      const std::uint64_t missing = ~bits_[w].load(std::memory_order_relaxed) & span_mask(0, n);
      if (missing != 0) return base + lowest_bit(missing);
    }
    return -1;
  }

 private:
  // Bits [lo, hi) of a word, 0 <= lo < hi <= 64.
  static std::uint64_t span_mask(std::int64_t lo, std::int64_t hi) noexcept {
    const std::uint64_t upto = hi >= 64 ? ~std::uint64_t{0} : (std::uint64_t{1} << hi) - 1;
    return upto & ~((std::uint64_t{1} << lo) - 1);
  }
  static std::int64_t lowest_bit(std::uint64_t x) noexcept {
    std::int64_t i = 0;
    while ((x & 1) == 0) {
      x >>= 1;
      ++i;
    }
    return i;
  }
  void note_twice(std::int64_t t) noexcept {
    std::int64_t seen = twice_.load(std::memory_order_relaxed);
    while ((seen < 0 || t < seen) &&
           !twice_.compare_exchange_weak(seen, t, std::memory_order_relaxed)) {
    }
  }

  std::int64_t tokens_;
  std::size_t words_;
  std::unique_ptr<std::atomic<std::uint64_t>[]> bits_;
  std::atomic<std::int64_t> twice_{-1};
};

}  // namespace detail
}  // namespace ropescale
