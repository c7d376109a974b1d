// ropescale: the paged KV cache that kv_cache.hpp's rotate_and_append_kv writes into (its opening
// comment draws the page layouts and the slots): kPaddingSlot, PageLayout, Fp8E4M3 and
// PagedKVCache.
#pragma once

#include <cstdint>

namespace ropescale {

/// slot_mapping's value for a padding token: the token is skipped (vLLM's PAD_SLOT_ID).
inline constexpr std::int64_t kPaddingSlot = -1;

/// Order of the dimensions inside one page (see the drawing at the top of kv_cache.hpp).
enum class PageLayout { kHeadMajor, kTokenMajor };

inline const char* to_string(PageLayout layout) noexcept {
  return layout == PageLayout::kHeadMajor ? "head_major" : "token_major";
}

/// One OCP FP8 E4M3 value (1 sign, 4 exponent bits with bias 7, 3 mantissa bits; no infinity,
/// 0x7f / 0xff are NaN; largest finite 448), the storage of fp8 pages. `bits` is the raw code.
struct Fp8E4M3 {
  std::uint8_t bits;
};

/// A paged KV cache the caller owns. S is the storage type: the rotary storage types, or int8_t
/// or Fp8E4M3 with one float scale per (slot, head) row in k_scales / v_scales.
template <typename S>
struct PagedKVCache {
  S* k_pages = nullptr;
  S* v_pages = nullptr;
  float* k_scales = nullptr;  ///< int8_t, Fp8E4M3: num_blocks * block_size * num_kv_heads floats
  float* v_scales = nullptr;  ///< int8_t, Fp8E4M3
  std::int64_t num_blocks = 0;
  std::int64_t block_size = 0;
  std::int64_t num_kv_heads = 0;
  std::int64_t head_dim = 0;
  PageLayout page_layout = PageLayout::kHeadMajor;

  /// Slots the pages hold: num_blocks * block_size (valid once the cache passed validation).
  std::int64_t num_slots() const noexcept { return num_blocks * block_size; }
  /// Row index of (slot, head); the row's values start at row * head_dim, its scale at row.
  std::int64_t row(std::int64_t slot, std::int64_t head) const noexcept {
    if (page_layout == PageLayout::kTokenMajor) return slot * num_kv_heads + head;
    const std::int64_t block = slot / block_size, offset = slot % block_size;
    return (block * num_kv_heads + head) * block_size + offset;
  }
};

}  // namespace ropescale
