// ropescale: the paged KV cache that kv_cache.hpp's rotate_and_append_kv writes into (its opening
// comment draws the page layouts and the slots): kPaddingSlot, PageLayout and PagedKVCache.
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

/// A paged KV cache the caller owns. S is the storage type: the rotary storage types, or int8_t
/// with one float scale per (slot, head) row in k_scales / v_scales.
template <typename S>
struct PagedKVCache {
  S* k_pages = nullptr;
  S* v_pages = nullptr;
  float* k_scales = nullptr;  ///< int8_t only: num_blocks * block_size * num_kv_heads floats
  float* v_scales = nullptr;  ///< int8_t only
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
