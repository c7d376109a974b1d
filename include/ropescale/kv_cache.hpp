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
  detail::check_append_types<T, S, Slot>();
  std::int64_t rows = 0;
  ROPESCALE_RETURN_IF_ERROR(detail::check_append_shapes(angles, k, v, cache, layout, &rows));
  if (k.tokens == 0) return Status();
  return detail::append_kv<T, S>(
      detail::resolve_append_kernels<T>(angles, layout, cache.head_dim, active_kernel_path()),
      angles, positions, k, v, slot_mapping, cache, rows, layout);
}

/// rotate_and_append_kv planned once, for a decode step that appends a few tokens per layer
/// with the same shapes, cache and layout every time. make() runs the checks of the layout, the
/// cache (its fields, pages and scales) and the k and v shapes once and resolves the kernels
/// from the dispatch table; append() then checks what a call changes (the token count, at most
/// the planned one; non-null k and v; the positions; the slots; k and v not sharing memory with
/// the pages or scales; for double keys into int8 pages, each row's range) and writes what
/// rotate_and_append_kv writes, bit for bit (nothing when a check fails):
///
///   auto plan = KVAppendPlan<Eigen::bfloat16, std::int8_t, RotaryCache>::make(
///                   angles, k_shape, v_shape, cache, PairLayout::kHalfSplit).value();
///   for each step, for each layer:
///     Status s = plan.append(k_new, v_new, tokens, positions, slot_mapping);
///
///   k_shape, v_shape  HeadsView shapes as every call will use them (heads, head_dim, strides);
///                     tokens = the most tokens a call may pass; data is not used (may be null)
///   cache             copied into the plan: its pages and scales must stay where they are
///                     (a plan for 0 tokens accepts null pages: it can only append 0 tokens)
///
/// The kernel path is the one active when the plan was made. The plan keeps a pointer to the
/// angle source, which must outlive it. A plan is immutable: several threads may append at once
/// to disjoint slots.
template <typename T, typename S, typename Angles>
class KVAppendPlan {
 public:
  KVAppendPlan() = default;

  static Result<KVAppendPlan> make(const Angles& angles, const HeadsView<const T>& k_shape,
                                   const HeadsView<const T>& v_shape, const PagedKVCache<S>& cache,
                                   PairLayout layout) {
    detail::check_append_types<T, S, std::int64_t>();
    HeadsView<const T> k = k_shape, v = v_shape;
    k.data = detail::shape_probe<const T>();  // the shapes alone: data is checked per call
    v.data = k.data;
    KVAppendPlan plan;
    ROPESCALE_RETURN_IF_ERROR(
        detail::check_append_shapes(angles, k, v, cache, layout, &plan.rows_));
    plan.angles_ = &angles;
    plan.k_ = k_shape;
    plan.v_ = v_shape;
    plan.cache_ = cache;
    plan.layout_ = layout;
    plan.kernels_ =
        detail::resolve_append_kernels<T>(angles, layout, cache.head_dim, active_kernel_path());
    return plan;
  }

  /// Appends `tokens` tokens of k and v (the plan's shapes, this call's data) at `positions`
  /// into the slots of slot_mapping (int32_t or int64_t, as rotate_and_append_kv takes them).
  template <typename Slot>
  Status append(const T* k, const T* v, std::int64_t tokens, const std::int64_t* positions,
                const Slot* slot_mapping) const {
    detail::check_append_types<T, S, Slot>();
    ROPESCALE_RETURN_IF_ERROR(
        detail::check_planned_call(angles_ != nullptr, "KVAppendPlan", tokens, k_.tokens));
    if (tokens == 0) return Status();
    if (k == nullptr)
      return make_status(ErrorCode::kInvalidArgument, "k", nullptr, "must not be null");
    if (v == nullptr)
      return make_status(ErrorCode::kInvalidArgument, "v", nullptr, "must not be null");
    HeadsView<const T> kv = k_, vv = v_;
    kv.data = k;
    kv.tokens = tokens;
    vv.data = v;
    vv.tokens = tokens;
    return detail::append_kv<T, S>(kernels_, *angles_, positions, kv, vv, slot_mapping, cache_,
                                   rows_, layout_);
  }

  std::int64_t max_tokens() const noexcept { return k_.tokens; }
  KernelPath path() const noexcept { return kernels_.rotate.path; }

 private:
  const Angles* angles_ = nullptr;
  HeadsView<const T> k_, v_;  // the shapes; data unused
  PagedKVCache<S> cache_;
  PairLayout layout_ = PairLayout::kHalfSplit;
  std::int64_t rows_ = 0;
  detail::AppendKernels<T> kernels_;
};

}  // namespace ropescale
