// ropescale internal: the checks and the unchecked pass behind kv_cache.hpp's
// rotate_and_append_kv (the paged cache, the inputs, the slots, aliasing, the int8 range) on the
// validated call path of rotary_call.hpp. Not a public header.
#pragma once

#include "ropescale/detail/internal_header_check.hpp"

#include <Eigen/Core>
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <string>
#include <type_traits>
#include <vector>

#include "ropescale/detail/aligned.hpp"
#include "ropescale/detail/call/rotary_call.hpp"
#include "ropescale/detail/kernels/quantize.hpp"
#include "ropescale/error.hpp"
#include "ropescale/kernel_path.hpp"
#include "ropescale/kv_cache_types.hpp"
#include "ropescale/rotary_types.hpp"

namespace ropescale {
namespace detail {

inline bool byte_ranges_overlap(const void* a, std::int64_t a_bytes, const void* b,
                                std::int64_t b_bytes) noexcept {
  if (a == nullptr || b == nullptr || a_bytes <= 0 || b_bytes <= 0) return false;
  const std::uintptr_t a0 = reinterpret_cast<std::uintptr_t>(a);
  const std::uintptr_t b0 = reinterpret_cast<std::uintptr_t>(b);
  return a0 < b0 + static_cast<std::uintptr_t>(b_bytes) &&
         b0 < a0 + static_cast<std::uintptr_t>(a_bytes);
}

template <typename S>
inline Status check_paged_cache(const PagedKVCache<S>& c, std::int64_t* rows) {
  if (c.block_size <= 0)
    return make_status(ErrorCode::kInvalidArgument, "cache.block_size", c.block_size,
                       "must be > 0");
  if (c.num_blocks < 0)
    return make_status(ErrorCode::kInvalidArgument, "cache.num_blocks", c.num_blocks,
                       "must be >= 0");
  if (c.num_kv_heads <= 0)
    return make_status(ErrorCode::kInvalidArgument, "cache.num_kv_heads", c.num_kv_heads,
                       "must be > 0");
  if (c.head_dim <= 0)
    return make_status(ErrorCode::kInvalidArgument, "cache.head_dim", c.head_dim, "must be > 0");
  if (c.page_layout != PageLayout::kHeadMajor && c.page_layout != PageLayout::kTokenMajor)
    return make_status(ErrorCode::kInvalidArgument, "cache.page_layout",
                       static_cast<int>(c.page_layout), "must be kHeadMajor or kTokenMajor");
  std::int64_t slots = 0, elems = 0, scale_bytes = 0;
  if (!checked_mul(c.num_blocks, c.block_size, &slots) ||
      !checked_mul(slots, c.num_kv_heads, rows) || !checked_mul(*rows, c.head_dim, &elems) ||
      !checked_mul(elems, static_cast<std::int64_t>(sizeof(S)), &elems) ||
      !checked_mul(*rows, static_cast<std::int64_t>(sizeof(float)), &scale_bytes))
    return make_status(ErrorCode::kInvalidArgument, "cache.num_blocks", c.num_blocks,
                       "num_blocks * block_size * num_kv_heads * head_dim bytes overflows int64");
  return Status();
}

template <typename T>
inline Status check_kv_input(const char* name, const HeadsView<const T>& x, std::int64_t rotary_dim,
                             std::int64_t heads, std::int64_t head_dim) {
  ROPESCALE_RETURN_IF_ERROR(check_view(name, x, rotary_dim));
  if (x.heads != heads)
    return make_status(ErrorCode::kInvalidArgument, std::string(name) + ".heads", x.heads,
                       "must equal cache.num_kv_heads (" + std::to_string(heads) + ")");
  if (x.head_dim != head_dim)
    return make_status(ErrorCode::kInvalidArgument, std::string(name) + ".head_dim", x.head_dim,
                       "must equal cache.head_dim (" + std::to_string(head_dim) + ")");
  return Status();
}

template <typename Slot>
inline Status check_slots(const Slot* slots, std::int64_t tokens, std::int64_t num_slots) {
  if (tokens > 0 && slots == nullptr)
    return make_status(ErrorCode::kInvalidArgument, "slot_mapping", nullptr, "must not be null");
  for (std::int64_t t = 0; t < tokens; ++t) {
    const std::int64_t s = static_cast<std::int64_t>(slots[t]);
    if (s < 0 && s != kPaddingSlot)
      return make_status(ErrorCode::kInvalidArgument, "slot_mapping[" + std::to_string(t) + "]", s,
                         "must be >= 0, or kPaddingSlot (-1) for a padding token");
    if (s >= num_slots)
      return make_status(ErrorCode::kOutOfRange, "slot_mapping[" + std::to_string(t) + "]", s,
                         "beyond the pages: must be < num_blocks * block_size (" +
                             std::to_string(num_slots) + ")");
  }
  // Duplicates, without a copy or a sort on the usual batches. The slots split into strictly
  // increasing runs (a prefill chunk is one run, a batch of sequences one per sequence); a run
  // holds no duplicate, and runs whose [first, last] ranges are disjoint share none. Up to
  // kMaxRuns runs are compared range against range, slot by slot (a merge of two sorted runs)
  // only where two ranges meet; a small batch (a decode step in any order) compares its pairs.
  // Otherwise a sorted copy finds the first two tokens.
  const auto duplicate = [&](std::int64_t first, std::int64_t second) {
    if (first > second) std::swap(first, second);
    return make_status(ErrorCode::kInvalidArgument, "slot_mapping[" + std::to_string(second) + "]",
                       static_cast<std::int64_t>(slots[second]),
                       "duplicates slot_mapping[" + std::to_string(first) +
                           "]: each slot may be written once per call");
  };
  struct Run {
    std::int64_t begin, end, lo, hi;  // tokens [begin, end), slots [lo, hi]
  };
  constexpr int kMaxRuns = 64;
  Run runs[kMaxRuns];
  int n_runs = 0;
  bool too_many = false;
  for (std::int64_t t = 0; t < tokens && !too_many;) {
    std::int64_t prev = static_cast<std::int64_t>(slots[t]);
    if (prev == kPaddingSlot) {
      ++t;
      continue;
    }
    const std::int64_t begin = t, lo = prev;
    for (++t; t < tokens; ++t) {
      const std::int64_t s = static_cast<std::int64_t>(slots[t]);
      if (s == kPaddingSlot) continue;
      if (s <= prev) break;
      prev = s;
    }
    if (n_runs == kMaxRuns)
      too_many = true;
    else
      runs[n_runs++] = {begin, t, lo, prev};
  }
  const auto first_shared = [&](const Run& a, const Run& b, std::int64_t* ta, std::int64_t* tb) {
    std::int64_t i = a.begin, j = b.begin;  // both runs increase: walk them as a merge
    while (i < a.end && j < b.end) {
      const std::int64_t si = static_cast<std::int64_t>(slots[i]);
      const std::int64_t sj = static_cast<std::int64_t>(slots[j]);
      if (si == kPaddingSlot || si < sj) {
        ++i;
      } else if (sj == kPaddingSlot || sj < si) {
        ++j;
      } else {
        *ta = i;
        *tb = j;
        return true;
      }
    }
    return false;
  };
  if (!too_many) {
    for (int r = 1; r < n_runs; ++r)
      for (int q = 0; q < r; ++q) {
        const Run &a = runs[q], &b = runs[r];
        std::int64_t ta = 0, tb = 0;
        if (a.lo <= b.hi && b.lo <= a.hi && first_shared(a, b, &ta, &tb)) return duplicate(ta, tb);
      }
    return Status();
  }
  constexpr std::int64_t kPairwiseSlots = 64;
  if (tokens <= kPairwiseSlots) {
    for (std::int64_t j = 1; j < tokens; ++j) {
      const std::int64_t s = static_cast<std::int64_t>(slots[j]);
      if (s == kPaddingSlot) continue;
      for (std::int64_t i = 0; i < j; ++i)
        if (static_cast<std::int64_t>(slots[i]) == s) return duplicate(i, j);
    }
    return Status();
  }
  constexpr std::int64_t kStackSlots = 512;
  std::int64_t local[kStackSlots];
  std::vector<std::int64_t> heap;
  std::int64_t* sorted = local;
  if (tokens > kStackSlots) {
    heap.resize(static_cast<std::size_t>(tokens));
    sorted = heap.data();
  }
  std::int64_t n = 0;  // padding tokens share kPaddingSlot and write nothing
  for (std::int64_t t = 0; t < tokens; ++t)
    if (static_cast<std::int64_t>(slots[t]) != kPaddingSlot)
      sorted[n++] = static_cast<std::int64_t>(slots[t]);
  std::sort(sorted, sorted + n);
  const std::int64_t* dup = std::adjacent_find(sorted, sorted + n);
  if (dup != sorted + n) {
    std::int64_t first = 0, second = 0;
    while (static_cast<std::int64_t>(slots[first]) != *dup) ++first;
    second = first + 1;
    while (static_cast<std::int64_t>(slots[second]) != *dup) ++second;
    return duplicate(first, second);
  }
  return Status();
}

// The views' bytes must not share memory with the pages or scales, nor those with one another.
template <typename T, typename S>
inline Status check_kv_aliasing(const HeadsView<const T>& k, const HeadsView<const T>& v,
                                const PagedKVCache<S>& c, std::int64_t rows) {
  const std::int64_t page_bytes = rows * c.head_dim * static_cast<std::int64_t>(sizeof(S));
  const bool scaled = std::is_same<S, std::int8_t>::value || std::is_same<S, Fp8E4M3>::value;
  const std::int64_t scale_bytes = scaled ? rows * static_cast<std::int64_t>(sizeof(float)) : 0;
  struct Range {
    const char* name;
    const void* p;
    std::int64_t bytes;
  };
  const RowSet kr = row_set(k), vr = row_set(v);
  const Range in[2] = {
      {"k", reinterpret_cast<const void*>(kr.base + static_cast<std::uintptr_t>(kr.lo)),
       kr.hi - kr.lo},
      {"v", reinterpret_cast<const void*>(vr.base + static_cast<std::uintptr_t>(vr.lo)),
       vr.hi - vr.lo}};
  const Range out[4] = {{"cache.k_pages", c.k_pages, page_bytes},
                        {"cache.v_pages", c.v_pages, page_bytes},
                        {"cache.k_scales", c.k_scales, scale_bytes},
                        {"cache.v_scales", c.v_scales, scale_bytes}};
  for (const Range& o : out) {
    for (const Range& i : in)
      if (byte_ranges_overlap(i.p, i.bytes, o.p, o.bytes))
        return make_status(ErrorCode::kInvalidArgument, i.name, "overlapping buffer",
                           std::string("must not overlap ") + o.name);
    for (const Range& o2 : out)
      if (&o2 < &o && byte_ranges_overlap(o2.p, o2.bytes, o.p, o.bytes))
        return make_status(ErrorCode::kInvalidArgument, o.name, "overlapping buffer",
                           std::string("must not overlap ") + o2.name);
  }
  return Status();
}

// Double rows bound for int8 pages: every row's absmax (K's after rotation) must be at most
// kInt8MaxAbs, or its float scale would overflow; a NaN or an infinity passes (the sentinel).
// K is rotated once more into tbuf for the check: the double int8 path pays for its range.
template <typename Angles, typename Slot>
inline Status check_int8_range(const Angles& angles, const std::int64_t* positions,
                               const HeadsView<const double>& k, const HeadsView<const double>& v,
                               const Slot* slot_mapping, std::int64_t D, PairLayout layout,
                               KernelPath path, double* row_buf, double* tbuf,
                               std::int64_t tbuf_heads) {
  const auto refuse = [](const char* name, std::int64_t t, std::int64_t h, double amax) {
    return make_status(
        ErrorCode::kOutOfRange,
        std::string(name) + "[token " + std::to_string(t) + ", head " + std::to_string(h) + "]",
        amax,
        "the largest magnitude of a row stored as int8 must fit in float as "
        "absmax / 127: at most 127 * FLT_MAX (4.3e40)");
  };
  const auto too_big = [](double amax) {
    return amax > kInt8MaxAbs && amax != std::numeric_limits<double>::infinity();
  };
  for (std::int64_t t = 0; t < k.tokens; ++t) {
    if (static_cast<std::int64_t>(slot_mapping[t]) == kPaddingSlot) continue;
    const PlainRows<Angles, double> rows{angles, positions + t};
    const double* kt = k.data + t * k.token_stride;
    for (std::int64_t h0 = 0; h0 < k.heads; h0 += tbuf_heads) {
      const std::int64_t nh = std::min(tbuf_heads, k.heads - h0);
      const Operand<double> op{kt + h0 * k.head_stride, tbuf, nh, D, 0, k.head_stride, 0, D};
      run_rotary_rows<double>(angles, rows, 0, 1, &op, 1, layout, RotaryDirection::kForward, path,
                              row_buf);
      for (std::int64_t h = 0; h < nh; ++h) {
        const double amax = int8_row_absmax(tbuf + h * D, D);
        if (too_big(amax)) return refuse("k", t, h0 + h, amax);
      }
    }
    for (std::int64_t h = 0; h < v.heads; ++h) {
      const double amax = int8_row_absmax(v.data + t * v.token_stride + h * v.head_stride, D);
      if (too_big(amax)) return refuse("v", t, h, amax);
    }
  }
  return Status();
}

// The kernels of an append, resolved once (per call, or once per KVAppendPlan): the rotation and
// the row quantization of the cache's storage, all on one path.
template <typename T>
struct AppendKernels {
  ResolvedKernel<T> rotate;
  QuantizeKernel<T> int8 = nullptr;
  QuantizeFp8Kernel<T> fp8 = nullptr;
};
template <typename T, typename Angles>
inline AppendKernels<T> resolve_append_kernels(const Angles& angles, PairLayout layout,
                                               std::int64_t head_dim, KernelPath path) noexcept {
  AppendKernels<T> a;
  a.rotate = resolve_kernel<T>(angles, layout, RotaryDirection::kForward, path);
  a.int8 = kernel_table<T>(path).quantize_int8_kernel(head_dim);
  a.fp8 = kernel_table<T>(path).quantize_fp8_kernel(head_dim);
  return a;
}

// The unchecked pass, one block of tokens at a time: a block is a run of tokens whose slots
// follow one another inside one page (a prefill chunk: a page per block; a decode step: one
// token). The kernel is resolved once per call from the dispatch table. Per block, K is rotated
// from the source straight into the page (float and 16-bit pages), or into tbuf (heads of T,
// L1-resident) and quantized from there in the same pass; V is copied in runs as long as both
// the page and the source are contiguous (a whole block for token-major pages and [T, H, D]
// values; per head for head-major pages and [H, T, D] values), or quantized row by row.
template <typename T, typename S, typename Angles, typename Slot>
inline void run_append_kv(const AppendKernels<T>& kernels, const Angles& angles,
                          const std::int64_t* positions, const HeadsView<const T>& k,
                          const HeadsView<const T>& v, const Slot* slot_mapping,
                          const PagedKVCache<S>& c, compute_t<T>* row_buf, T* tbuf,
                          std::int64_t tbuf_heads) noexcept {
  using C = compute_t<T>;
  const std::int64_t H = c.num_kv_heads, D = c.head_dim, B = c.block_size;
  const bool token_major = c.page_layout == PageLayout::kTokenMajor;
  const std::int64_t row_head_stride = token_major ? 1 : B;
  const std::int64_t row_token_stride = token_major ? H : 1;  // next slot of the same page
  constexpr bool kFp8 = std::is_same<S, Fp8E4M3>::value;
  constexpr bool kQuantized = std::is_same<S, std::int8_t>::value || kFp8;
  const ResolvedKernel<T>& rotate = kernels.rotate;
  const QuantizeKernel<T> quantize_int8 = kernels.int8;
  const QuantizeFp8Kernel<T> quantize_fp8 = kernels.fp8;
  // One row of D values into the page's codes; returns its scale.
  const auto quantize = [&](const T* x, S* codes) -> float {
    if constexpr (kFp8)
      return quantize_fp8(x, D, reinterpret_cast<std::uint8_t*>(codes));  // Fp8E4M3: one byte
    else if constexpr (kQuantized)
      return quantize_int8(x, D, codes);
    else
      return 0.0f * static_cast<float>(sizeof(*x) + sizeof(*codes));
  };
  for (std::int64_t t = 0; t < k.tokens;) {
    const std::int64_t slot = static_cast<std::int64_t>(slot_mapping[t]);
    if (slot == kPaddingSlot) {
      ++t;
      continue;
    }
    std::int64_t n = 1;  // the block: slots slot, slot + 1, .. in the page of slot
    while (t + n < k.tokens && static_cast<std::int64_t>(slot_mapping[t + n]) == slot + n &&
           (slot + n) % B != 0)
      ++n;
    const std::int64_t row0 = c.row(slot, 0);
    const PlainRows<Angles, C> rows{angles, positions + t};
    const T* kt = k.data + t * k.token_stride;
    const T* vt = v.data + t * v.token_stride;
    if constexpr (!kQuantized) {
      const Operand<T> op{kt,
                          c.k_pages + row0 * D,
                          H,
                          D,
                          k.token_stride,
                          k.head_stride,
                          row_token_stride * D,
                          row_head_stride * D};
      run_resolved<T>(rotate, rows, 0, n, &op, 1, row_buf);
      const auto copy = [](T* dst, const T* src, std::int64_t values) {
        std::memcpy(static_cast<void*>(dst), static_cast<const void*>(src),
                    sizeof(T) * static_cast<std::size_t>(values));
      };
      T* vp = c.v_pages + row0 * D;
      const bool heads_packed = H == 1 || v.head_stride == D;
      const bool tokens_packed = n == 1 || v.token_stride == (token_major ? H * D : D);
      if (token_major && heads_packed && tokens_packed) {
        copy(vp, vt, n * H * D);  // the block's rows, back to back on both sides
      } else if (!token_major && tokens_packed) {
        for (std::int64_t h = 0; h < H; ++h) copy(vp + h * B * D, vt + h * v.head_stride, n * D);
      } else {
        for (std::int64_t j = 0; j < n; ++j)
          for (std::int64_t h = 0; h < H; ++h)
            copy(vp + (j * row_token_stride + h * row_head_stride) * D,
                 vt + j * v.token_stride + h * v.head_stride, D);
      }
    } else {
      for (std::int64_t j = 0; j < n; ++j) {
        const std::int64_t rj = row0 + j * row_token_stride;
        for (std::int64_t h0 = 0; h0 < H; h0 += tbuf_heads) {
          const std::int64_t nh = std::min(tbuf_heads, H - h0);
          const Operand<T> op{kt + h0 * k.head_stride, tbuf,          nh, D,
                              k.token_stride,          k.head_stride, 0,  D};
          run_resolved<T>(rotate, rows, j, j + 1, &op, 1, row_buf);
          for (std::int64_t h = 0; h < nh; ++h) {
            const std::int64_t r = rj + (h0 + h) * row_head_stride;
            c.k_scales[r] = quantize(tbuf + h * D, c.k_pages + r * D);
          }
        }
        for (std::int64_t h = 0; h < H; ++h) {
          const std::int64_t r = rj + h * row_head_stride;
          c.v_scales[r] = quantize(vt + j * v.token_stride + h * v.head_stride, c.v_pages + r * D);
        }
      }
    }
    t += n;
  }
}

// The types an append takes (compile-time rules of rotate_and_append_kv and KVAppendPlan).
template <typename T, typename S, typename Slot>
constexpr void check_append_types() noexcept {
  static_assert(is_rotary_storage<T>::value,
                "k/v type must be float, double, Eigen::half or Eigen::bfloat16");
  static_assert(std::is_same<S, T>::value || std::is_same<S, std::int8_t>::value ||
                    std::is_same<S, Fp8E4M3>::value,
                "cache storage must be the k/v type, std::int8_t or Fp8E4M3");
  static_assert(!std::is_same<S, Fp8E4M3>::value || !std::is_same<T, double>::value,
                "fp8 pages take float, Eigen::half or Eigen::bfloat16 keys and values");
  static_assert(std::is_same<Slot, std::int32_t>::value || std::is_same<Slot, std::int64_t>::value,
                "slot_mapping must be int32_t or int64_t");
}

// The checks of what a decode step keeps (the layout, the cache, the k and v shapes and, with
// tokens, non-null pages and scales), in rotate_and_append_kv's order; *rows = the cache's rows.
template <typename T, typename S, typename Angles>
inline Status check_append_shapes(const Angles& angles, const HeadsView<const T>& k,
                                  const HeadsView<const T>& v, const PagedKVCache<S>& cache,
                                  PairLayout layout, std::int64_t* rows) {
  constexpr bool kQuantized =
      std::is_same<S, std::int8_t>::value || std::is_same<S, Fp8E4M3>::value;
  const char* const quantized_name = std::is_same<S, Fp8E4M3>::value ? "fp8" : "int8";
  ROPESCALE_RETURN_IF_ERROR(check_layout(layout));
  ROPESCALE_RETURN_IF_ERROR(check_paged_cache(cache, rows));
  const std::int64_t rotary_dim = layout_channels(angles, layout);
  ROPESCALE_RETURN_IF_ERROR(check_kv_input("k", k, rotary_dim, cache.num_kv_heads, cache.head_dim));
  ROPESCALE_RETURN_IF_ERROR(check_kv_input("v", v, 0, cache.num_kv_heads, cache.head_dim));
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
  return Status();
}

// What every append checks per call once the cache and the shapes are checked (the positions,
// the slots, k and v not sharing memory with the pages; a double row's range for int8 pages),
// then the pass. k and v hold this call's data and tokens > 0. Nothing is written when a check
// fails. rotate_and_append_kv and KVAppendPlan::append both end here.
template <typename T, typename S, typename Angles, typename Slot>
inline Status append_kv(const AppendKernels<T>& kernels, const Angles& angles,
                        const std::int64_t* positions, const HeadsView<const T>& k,
                        const HeadsView<const T>& v, const Slot* slot_mapping,
                        const PagedKVCache<S>& cache, std::int64_t rows, PairLayout layout) {
  constexpr bool kQuantized =
      std::is_same<S, std::int8_t>::value || std::is_same<S, Fp8E4M3>::value;
  ROPESCALE_RETURN_IF_ERROR(check_positions(angles, positions, k.tokens));
  ROPESCALE_RETURN_IF_ERROR(check_slots(slot_mapping, k.tokens, cache.num_slots()));
  ROPESCALE_RETURN_IF_ERROR(check_kv_aliasing(k, v, cache, rows));

  // Angle rows as rotary_call keeps them; the quantized paths' rotated heads in a stack tile of
  // 4096 values (raw, 64-byte aligned bytes: not value-initialized on every call), wider heads
  // on the heap.
  using C = compute_t<T>;
  constexpr std::int64_t kTileValues = kQuantized ? 4096 : 1;
  RowBuffer<C> row(angles.pairs());
  C* row_buf = row.data();
  alignas(kRowAlignment) unsigned char tile_stack[sizeof(T) * kTileValues];
  std::vector<T, AlignedAllocator<T>> tile_heap;
  T* tile = reinterpret_cast<T*>(tile_stack);
  std::int64_t tile_heads = kQuantized ? kTileValues / cache.head_dim : 0;
  if (kQuantized && tile_heads == 0) {
    tile_heap.resize(static_cast<std::size_t>(cache.head_dim));
    tile = tile_heap.data();
    tile_heads = 1;
  }
  if constexpr (std::is_same<S, std::int8_t>::value && std::is_same<T, double>::value)
    ROPESCALE_RETURN_IF_ERROR(check_int8_range(angles, positions, k, v, slot_mapping,
                                               cache.head_dim, layout, kernels.rotate.path, row_buf,
                                               tile, tile_heads));
  run_append_kv<T, S>(kernels, angles, positions, k, v, slot_mapping, cache, row_buf, tile,
                      tile_heads);
  return Status();
}

}  // namespace detail
}  // namespace ropescale
