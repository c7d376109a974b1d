// What the bandwidth-relative benchmarks share: 64-byte aligned buffers and the in-place streaming
// pass every kernel is reported against (a ratio measured in the same binary, in the same run).
#pragma once

#include <cstddef>
#include <cstdint>
#include <new>
#include <vector>

namespace bench {

// 64-byte aligned allocation (a cache line; the width of an AVX-512 register).
template <typename T>
struct Aligned64 {
  using value_type = T;
  Aligned64() = default;
  template <typename U>
  Aligned64(const Aligned64<U>&) noexcept {}
  T* allocate(std::size_t n) {
    return static_cast<T*>(::operator new (n * sizeof(T), std::align_val_t{64}));
  }
  void deallocate(T* p, std::size_t) noexcept { ::operator delete (p, std::align_val_t{64}); }
  template <typename U>
  bool operator==(const Aligned64<U>&) const noexcept {
    return true;
  }
  template <typename U>
  bool operator!=(const Aligned64<U>&) const noexcept {
    return false;
  }
};

/// A vector whose data() is 64-byte aligned.
template <typename T>
using AlignedVector = std::vector<T, Aligned64<T>>;

/// In-place streaming read+write of `bytes`: each 8-byte word is read, XORed with an opaque zero
/// (`mask`, which the caller hides from the optimizer) and written back. This is the bandwidth
/// ceiling for an in-place elementwise kernel.
inline void stream_pass(void* data, std::size_t bytes, std::uint64_t mask) {
  auto* w = static_cast<std::uint64_t*>(data);
  const std::size_t n = bytes / 8;
  for (std::size_t i = 0; i < n; ++i) w[i] ^= mask;
}

}  // namespace bench
