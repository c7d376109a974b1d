// ropescale internal: 64-byte aligned storage for the rows the kernels read (angle tables, row
// buffers). Not a public header. A row that starts on a cache line is read in whole lines and,
// on AVX-512, in whole-vector loads; a row 16 bytes past a line splits every load in two.
#pragma once

#include "ropescale/detail/internal_header_check.hpp"

#include <cstddef>
#include <cstdint>
#include <new>

namespace ropescale {
namespace detail {

/// Alignment of every table row and scratch row the kernels see: one cache line.
inline constexpr std::size_t kRowAlignment = 64;

/// n values of C rounded up to whole cache lines, so that consecutive rows stay aligned.
template <typename C>
constexpr std::int64_t aligned_row_length(std::int64_t n) noexcept {
  constexpr std::int64_t k = static_cast<std::int64_t>(kRowAlignment / sizeof(C));
  return (n + k - 1) / k * k;
}

/// True when p starts a cache line.
inline bool is_row_aligned(const void* p) noexcept {
  return reinterpret_cast<std::uintptr_t>(p) % kRowAlignment == 0;
}

/// std::allocator with kRowAlignment (C++17 aligned operator new).
template <typename T>
struct AlignedAllocator {
  using value_type = T;
  AlignedAllocator() noexcept = default;
  template <typename U>
  AlignedAllocator(const AlignedAllocator<U>&) noexcept {}  // NOLINT: allocator rebind
  T* allocate(std::size_t n) {
    return static_cast<T*>(::operator new (n * sizeof(T), std::align_val_t{kRowAlignment}));
  }
  void deallocate(T* p, std::size_t) noexcept {
    ::operator delete (p, std::align_val_t{kRowAlignment});
  }
  template <typename U>
  bool operator==(const AlignedAllocator<U>&) const noexcept {
    return true;
  }
  template <typename U>
  bool operator!=(const AlignedAllocator<U>&) const noexcept {
    return false;
  }
};

}  // namespace detail
}  // namespace ropescale
