// ropescale: fused rotate-and-append into a paged KV cache, the step vLLM splits into
// rotary_embedding + reshape_and_cache and FlashInfer fuses (rope + append_paged_kv_cache).
//
// ## The cache
//
//   num_blocks pages of block_size slots; each slot holds num_kv_heads rows of head_dim values,
//   for keys (k_pages) and values (v_pages) alike:
//
//   PageLayout::kHeadMajor   [block][head][slot][dim]   vLLM's value cache, FlashInfer HND
//       row (slot, h) at ((block * H + h) * block_size + offset) * head_dim
//   PageLayout::kTokenMajor  [block][slot][head][dim]   FlashInfer NHD, llama.cpp-style
//       row (slot, h) at ((block * block_size + offset) * H + h) * head_dim
//
//   where block = slot / block_size and offset = slot % block_size.
//
// ## Slots (vLLM's slot_mapping)
//
//   New token t goes to the flat slot slot_mapping[t] = block * block_size + offset, in
//   [0, num_blocks * block_size). The engine's page table (block indices per sequence) is read
//   when it builds slot_mapping: a token at position p of a sequence whose page table is
//   block_table lands in slot block_table[p / block_size] * block_size + p % block_size.
//   Each slot may appear once per call (two tokens cannot own one slot). A token whose slot is
//   kPaddingSlot (-1, vLLM's PAD_SLOT_ID) is a padding token of a batch: nothing is written for
//   it (its position must still be valid for the angle source).
//
// ## Storage
//
//   S = T (float, double, Eigen::half, Eigen::bfloat16): rotated K and V rows are stored as
//   rotate_out would store them, bit for bit (K is rotated straight into its page).
//   S = int8_t: every (slot, head) row is quantized symmetrically on its own,
//       scale = absmax / 127 (float),  q_j = round(x_j / scale) in [-127, 127]  (0 when absmax = 0)
//   and the scale goes to k_scales / v_scales, one float per row, paged like the rows (drop
//   head_dim from the formulas above). K is rotated into a small stack buffer of T, exactly as
//   rotate_out would store it, and quantized from there; dequantize with q_j * scale.
//   Rounding is to nearest even; |q_j * scale - x_j| <= scale / 2 (plus float rounding) for
//   every finite row:
//     - tiny rows: the scale is floored at 2^-126 (FLT_MIN), so a row below 127 * 2^-126 keeps
//       the bound (its values round to multiples of 2^-126) instead of overflowing 127 / absmax;
//     - double rows are scaled in double and the scale is rounded to float once; a row whose
//       absmax / 127 does not fit in float (absmax > 127 * FLT_MAX) is refused by name;
//     - a row holding a NaN or an infinity (in the input, or K's rotation overflowing as
//       rotate_out would) is stored as the sentinel scale = NaN, every q_j = 0: the whole
//       row dequantizes to NaN, never to a finite value.

//   S = Fp8E4M3: every row scaled as for int8 with 448 (the largest E4M3 value) in place of 127,
//       scale = absmax / 448 (float),  q_j = e4m3(x_j * 448 / absmax), rounded to nearest even
//   (OCP FP8 E4M3: saturating, so nothing becomes NaN but a NaN; no infinity). Dequantize with
//   e4m3(q_j) * scale: |error| <= 2^-4 |x_j| (3 mantissa bits) or, below 2^-6 * scale, half a
//   subnormal step 2^-10 * scale. Non-finite rows are the sentinel (scale NaN, codes 0) as for
//   int8. Keys and values are float, half or bfloat16.

// ## Front door
//
// rotate_and_append_kv validates every argument and returns a Status naming the argument, the
// value and the rule. Nothing is written when validation fails.
#pragma once

#include <Eigen/Core>
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <string>
#include <type_traits>
#include <vector>

#include "ropescale/error.hpp"
#include "ropescale/kv_cache_types.hpp"
#include "ropescale/rotary.hpp"

#pragma push_macro("ROPESCALE_INSIDE_PUBLIC_HEADER")
#define ROPESCALE_INSIDE_PUBLIC_HEADER
#include "ropescale/detail/call/kv_append.hpp"
#pragma pop_macro("ROPESCALE_INSIDE_PUBLIC_HEADER")

namespace ropescale {

/// Rotates the new keys k (RoPE at `positions`, as rotate_out) and writes them, with the
/// new values v unrotated, into the paged cache at slot_mapping, in one pass over the tokens.
///
///   angles        RotaryCache, RotaryCacheD or RotaryFrequencies (as rotate)
///   positions     one int64 per token, in the angle source's range (decode: the sequence length)
///   k, v          [tokens, num_kv_heads, head_dim] views of T (any strides), left untouched
///   slot_mapping  one flat slot per token (int32_t or int64_t), block * block_size + offset,
///                 distinct, in [0, num_blocks * block_size); kPaddingSlot skips the token
///   cache         the pages (and scales for int8_t); S = T or std::int8_t
///   layout        the pair layout of K's channels
///
/// Only the rows of the given slots are written (and their scales for int8_t).
template <typename T, typename S, typename Angles, typename Slot>
inline Status rotate_and_append_kv(const Angles& angles, const std::int64_t* positions,
                                   const HeadsView<const T>& k, const HeadsView<const T>& v,
                                   const Slot* slot_mapping, const PagedKVCache<S>& cache,
                                   PairLayout layout) {
  static_assert(detail::is_rotary_storage<T>::value,
                "k/v type must be float, double, Eigen::half or Eigen::bfloat16");
  static_assert(std::is_same<S, T>::value || std::is_same<S, std::int8_t>::value ||
                    std::is_same<S, Fp8E4M3>::value,
                "cache storage must be the k/v type, std::int8_t or Fp8E4M3");
  static_assert(!std::is_same<S, Fp8E4M3>::value || !std::is_same<T, double>::value,
                "fp8 pages take float, Eigen::half or Eigen::bfloat16 keys and values");
  static_assert(std::is_same<Slot, std::int32_t>::value || std::is_same<Slot, std::int64_t>::value,
                "slot_mapping must be int32_t or int64_t");
  constexpr bool kQuantized =
      std::is_same<S, std::int8_t>::value || std::is_same<S, Fp8E4M3>::value;
  const char* const quantized_name = std::is_same<S, Fp8E4M3>::value ? "fp8" : "int8";
  ROPESCALE_RETURN_IF_ERROR(detail::check_layout(layout));
  std::int64_t rows = 0;
  ROPESCALE_RETURN_IF_ERROR(detail::check_paged_cache(cache, &rows));
  const std::int64_t rotary_dim = detail::layout_channels(angles, layout);
  ROPESCALE_RETURN_IF_ERROR(
      detail::check_kv_input("k", k, rotary_dim, cache.num_kv_heads, cache.head_dim));
  ROPESCALE_RETURN_IF_ERROR(detail::check_kv_input("v", v, 0, cache.num_kv_heads, cache.head_dim));
  if (v.tokens != k.tokens)
    return make_status(ErrorCode::kInvalidArgument, "v.tokens", v.tokens,
                       "must equal k.tokens (" + std::to_string(k.tokens) + ")");
  if (k.tokens == 0) return Status();
  if (cache.k_pages == nullptr)
    return make_status(ErrorCode::kInvalidArgument, "cache.k_pages", nullptr, "must not be null");
  if (cache.v_pages == nullptr)
    return make_status(ErrorCode::kInvalidArgument, "cache.v_pages", nullptr, "must not be null");
  if (kQuantized && cache.k_scales == nullptr)
    return make_status(ErrorCode::kInvalidArgument, "cache.k_scales", nullptr,
                       std::string("must not be null for an ") + quantized_name + " cache");
  if (kQuantized && cache.v_scales == nullptr)
    return make_status(ErrorCode::kInvalidArgument, "cache.v_scales", nullptr,
                       std::string("must not be null for an ") + quantized_name + " cache");
  ROPESCALE_RETURN_IF_ERROR(detail::check_positions(angles, positions, k.tokens));
  ROPESCALE_RETURN_IF_ERROR(detail::check_slots(slot_mapping, k.tokens, cache.num_slots()));
  ROPESCALE_RETURN_IF_ERROR(detail::check_kv_aliasing(k, v, cache, rows));

  // Angle rows as rotary_call keeps them; the int8 path's rotated heads in a stack tile of 4096
  // values (raw, 64-byte aligned bytes: not value-initialized on every call), wider heads on the
  // heap.
  using C = detail::compute_t<T>;
  constexpr std::int64_t kTileValues = kQuantized ? 4096 : 1;
  detail::RowBuffer<C> row(angles.pairs());
  C* row_buf = row.data();
  alignas(detail::kRowAlignment) unsigned char tile_stack[sizeof(T) * kTileValues];
  std::vector<T, detail::AlignedAllocator<T>> tile_heap;
  T* tile = reinterpret_cast<T*>(tile_stack);
  std::int64_t tile_heads = kQuantized ? kTileValues / cache.head_dim : 0;
  if (kQuantized && tile_heads == 0) {
    tile_heap.resize(static_cast<std::size_t>(cache.head_dim));
    tile = tile_heap.data();
    tile_heads = 1;
  }
  if constexpr (std::is_same<S, std::int8_t>::value && std::is_same<T, double>::value)
    ROPESCALE_RETURN_IF_ERROR(detail::check_int8_range(
        angles, positions, k, v, slot_mapping, cache.head_dim, layout, row_buf, tile, tile_heads));
  detail::run_append_kv<T, S>(angles, positions, k, v, slot_mapping, cache, layout, row_buf, tile,
                              tile_heads);
  return Status();
}

}  // namespace ropescale
