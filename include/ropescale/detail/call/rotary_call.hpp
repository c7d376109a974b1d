// ropescale internal: the checks and the call path behind rotary.hpp's front doors (views,
// positions, aliasing of inputs and outputs, the per-token angle rows, the validated call), shared
// with mrope.hpp. The types it checks (HeadsView, BasicRotaryCache, RotaryFrequencies) are
// rotary_types.hpp's. Not a public header.
#pragma once

#include "ropescale/detail/internal_header_check.hpp"

#include "ropescale/detail/checked_math.hpp"
#include "ropescale/detail/kernels/rotary_kernels.hpp"
#include "ropescale/error.hpp"
#include "ropescale/kernel_path.hpp"
#include "ropescale/rotary_types.hpp"

#include <Eigen/Core>
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "ropescale/detail/macro_scope.hpp"

namespace ropescale {

namespace detail {

template <typename T>
struct is_rotary_storage
    : std::integral_constant<bool, std::is_same<T, float>::value ||
                                       std::is_same<T, double>::value ||
                                       std::is_same<T, Eigen::half>::value ||
                                       std::is_same<T, Eigen::bfloat16>::value> {};

// True when Angles is a cache whose rows can be used directly as compute type C.
template <typename A, typename C>
struct is_cache_of : std::false_type {};
template <typename S>
struct is_cache_of<BasicRotaryCache<S>, S> : std::true_type {};

// One operand of a call: read from `in`, write to `out` (equal pointers and strides: in place).
template <typename T>
struct Operand {
  const T* in = nullptr;
  T* out = nullptr;
  std::int64_t heads = 0, head_dim = 0;
  std::int64_t in_token_stride = 0, in_head_stride = 0;
  std::int64_t out_token_stride = 0, out_head_stride = 0;
};

// Address range [lo, hi) in elements relative to data of a view's rotated + passed-through rows.
// False when it does not fit in int64 (check_view refuses such views, so callers after it can
// ignore the result).
inline bool extent(std::int64_t tokens, std::int64_t heads, std::int64_t head_dim, std::int64_t ts,
                   std::int64_t hs, std::int64_t& lo, std::int64_t& hi) {
  lo = 0;
  hi = head_dim;
  std::int64_t d = 0;
  if (tokens > 1) {
    if (!checked_mul(ts, tokens - 1, &d) || !checked_add(ts < 0 ? lo : hi, d, ts < 0 ? &lo : &hi))
      return false;
  }
  if (heads > 1) {
    if (!checked_mul(hs, heads - 1, &d) || !checked_add(hs < 0 ? lo : hi, d, hs < 0 ? &lo : &hi))
      return false;
  }
  return true;
}

// rotary_dim: the channels the layout touches (frequency_dim for half-split).
template <typename T>
inline Status check_view(const char* name, const HeadsView<T>& v, std::int64_t rotary_dim) {
  // The name is built only on the error paths: a decode call passes through here per view.
  const auto n = [name] { return std::string(name); };
  if (v.tokens < 0)
    return make_status(ErrorCode::kInvalidArgument, n() + ".tokens", v.tokens, "must be >= 0");
  if (v.heads < 0)
    return make_status(ErrorCode::kInvalidArgument, n() + ".heads", v.heads, "must be >= 0");
  if (v.head_dim <= 0)
    return make_status(ErrorCode::kInvalidArgument, n() + ".head_dim", v.head_dim, "must be > 0");
  if (rotary_dim > v.head_dim)
    return make_status(ErrorCode::kInvalidArgument, n() + ".head_dim", v.head_dim,
                       "must be >= rotary_dim (" + std::to_string(rotary_dim) + ")");
  if (v.tokens == 0 || v.heads == 0) return Status();
  if (v.data == nullptr)
    return make_status(ErrorCode::kInvalidArgument, n() + ".data", nullptr, "must not be null");
  // The whole view must be addressable: its extent in bytes fits in int64.
  std::int64_t lo = 0, hi = 0, neg_lo = 0, span = 0;
  if (!extent(v.tokens, v.heads, v.head_dim, v.token_stride, v.head_stride, lo, hi) ||
      !checked_mul(lo, -1, &neg_lo) || !checked_add(hi, neg_lo, &span) ||
      !checked_mul(span, static_cast<std::int64_t>(sizeof(T)), &span))
    return make_status(ErrorCode::kInvalidArgument, n() + " extent",
                       std::to_string(v.tokens) + " tokens x " + std::to_string(v.heads) +
                           " heads, strides " + std::to_string(v.token_stride) + ", " +
                           std::to_string(v.head_stride),
                       "overflows int64: the view cannot be addressed");
  // Rows (t, h) must not overlap: sort the two strides, the inner must clear a row and the outer
  // must clear all inner rows. (The extent fits, so the used strides' magnitudes do too.)
  struct Dim {
    std::int64_t stride, count;
    const char* name;
  };
  // A stride of a dimension of size 1 is never used (and may be anything, even INT64_MIN).
  Dim a{v.tokens == 1        ? 0
        : v.token_stride < 0 ? -v.token_stride
                             : v.token_stride,
        v.tokens, "token_stride"};
  Dim b{v.heads == 1        ? 0
        : v.head_stride < 0 ? -v.head_stride
                            : v.head_stride,
        v.heads, "head_stride"};
  if (a.stride > b.stride || (a.stride == b.stride && b.count > 1)) std::swap(a, b);
  if (a.count > 1 && a.stride < v.head_dim)
    return make_status(ErrorCode::kInvalidArgument, n() + "." + a.name, a.stride,
                       "rows overlap: must be >= head_dim (" + std::to_string(v.head_dim) + ")");
  std::int64_t inner = 0;
  if (!checked_mul(a.stride, a.count, &inner)) inner = std::numeric_limits<std::int64_t>::max();
  if (b.count > 1 && b.stride < std::max<std::int64_t>(inner, v.head_dim))
    return make_status(
        ErrorCode::kInvalidArgument, n() + "." + b.name, b.stride,
        "rows overlap: must be >= " + std::to_string(std::max<std::int64_t>(inner, v.head_dim)));
  return Status();
}

inline std::int64_t angles_limit(const RotaryFrequencies& f) { return f.max_position(); }
inline const char* angles_range(const RotaryFrequencies&) {
  return "outside the positions RotaryFrequencies serves";
}
inline const char* angles_hint(const RotaryFrequencies&) {
  return "past them the angle loses its accuracy (see RotaryFrequencies::max_position)";
}
template <typename S>
inline const char* angles_range(const BasicRotaryCache<S>&) {
  return "outside the cache";
}
template <typename S>
inline const char* angles_hint(const BasicRotaryCache<S>&) {
  return "use a larger RotaryCache or RotaryFrequencies";
}
template <typename S>
inline std::int64_t angles_limit(const BasicRotaryCache<S>& c) {
  return c.num_positions();
}

// What a planned call (RotaryShapePlan::rotate, KVAppendPlan::append) checks first: that the
// plan was made (`plan_name`'s make) and that `tokens` is in [0, max_tokens].
inline Status check_planned_call(bool made, const char* plan_name, std::int64_t tokens,
                                 std::int64_t max_tokens) {
  if (!made)
    return make_status(ErrorCode::kInvalidArgument, "plan", "empty",
                       std::string("was not made by ") + plan_name + "::make");
  if (tokens < 0 || tokens > max_tokens)
    return make_status(ErrorCode::kInvalidArgument, "tokens", tokens,
                       "must be in [0, max_tokens] (" + std::to_string(max_tokens) + ")");
  return Status();
}

// A stand-in for a view's data when a plan checks its shape alone (data is checked per call).
template <typename T>
inline T* shape_probe() noexcept {
  static T probe{};
  return &probe;
}

template <typename Angles>
inline Status check_positions(const Angles& angles, const std::int64_t* positions,
                              std::int64_t tokens) {
  if (tokens > 0 && positions == nullptr)
    return make_status(ErrorCode::kInvalidArgument, "positions", nullptr, "must not be null");
  for (std::int64_t t = 0; t < tokens; ++t) {
    const std::int64_t p = positions[t];
    if (p < 0)
      return make_status(ErrorCode::kInvalidArgument, "positions[" + std::to_string(t) + "]", p,
                         "must be >= 0");
    if (!angles.covers(p))
      return make_status(ErrorCode::kOutOfRange, "positions[" + std::to_string(t) + "]", p,
                         std::string(angles_range(angles)) + " [0, " +
                             std::to_string(static_cast<long long>(angles_limit(angles))) + "); " +
                             angles_hint(angles));
  }
  return Status();
}

// The rows of a checked view in bytes: row (t, h) is [base + t*ts + h*hs, + row).
struct RowSet {
  std::uintptr_t base = 0;
  std::int64_t tokens = 0, heads = 0, ts = 0, hs = 0, row = 0, lo = 0, hi = 0;
};

template <typename T>
inline RowSet row_set(const HeadsView<T>& v) {
  const std::int64_t size = static_cast<std::int64_t>(sizeof(T));
  RowSet r;
  r.base = reinterpret_cast<std::uintptr_t>(v.data);
  r.tokens = v.tokens;
  r.heads = v.heads;
  r.ts = v.tokens > 1 ? v.token_stride * size : 0;
  r.hs = v.heads > 1 ? v.head_stride * size : 0;
  r.row = v.head_dim * size;
  extent(v.tokens, v.heads, v.head_dim, v.token_stride, v.head_stride, r.lo, r.hi);
  r.lo *= size;
  r.hi *= size;
  return r;
}

inline std::int64_t floor_div(std::int64_t a, std::int64_t b) {  // b > 0
  const std::int64_t q = a / b;
  return (a % b != 0 && a < 0) ? q - 1 : q;
}

// True when some row of a and some row of b share a byte. Exact when both views have the same
// token count and token stride (fused QKV, GQA heads side by side) and their heads are packed or
// few (<= 2^16 head pairs); otherwise any overlap of the two address ranges counts.
inline RowSet merge_packed_heads(RowSet r) {
  if (r.heads > 1 && r.hs == r.row) {  // heads back to back: one row of heads * head_dim
    r.row *= r.heads;
    r.heads = 1;
    r.hs = 0;
  }
  return r;
}

inline bool rows_overlap(const RowSet& a_in, const RowSet& b_in) {
  const RowSet a = merge_packed_heads(a_in), b = merge_packed_heads(b_in);
  if (a.tokens == 0 || a.heads == 0 || b.tokens == 0 || b.heads == 0) return false;
  const std::uintptr_t a0 = a.base + static_cast<std::uintptr_t>(a.lo);
  const std::uintptr_t a1 = a.base + static_cast<std::uintptr_t>(a.hi);
  const std::uintptr_t b0 = b.base + static_cast<std::uintptr_t>(b.lo);
  const std::uintptr_t b1 = b.base + static_cast<std::uintptr_t>(b.hi);
  if (!(a0 < b1 && b0 < a1)) return false;
  const bool same_tokens = a.tokens == b.tokens && (a.tokens == 1 || a.ts == b.ts);
  if (!same_tokens || a.heads * b.heads > (std::int64_t{1} << 16)) return true;
  const std::int64_t s = a.ts < 0 ? -a.ts : a.ts;
  const std::int64_t tmax = a.tokens - 1;
  for (std::int64_t h1 = 0; h1 < a.heads; ++h1)
    for (std::int64_t h2 = 0; h2 < b.heads; ++h2) {
      // b's row h2 minus a's row h1 at the same token, in bytes.
      const std::int64_t delta =
          static_cast<std::int64_t>((b.base + static_cast<std::uintptr_t>(h2 * b.hs)) -
                                    (a.base + static_cast<std::uintptr_t>(h1 * a.hs)));
      // Rows at tokens t (a) and t + j (b) overlap iff -row_b < delta + j*s < row_a.
      if (s == 0) {
        if (-b.row < delta && delta < a.row) return true;
        continue;
      }
      const std::int64_t jmin = std::max(-tmax, floor_div(-b.row - delta, s) + 1);
      const std::int64_t jmax = std::min(tmax, -floor_div(delta - a.row, s) - 1);
      if (jmin <= jmax) return true;
    }
  return false;
}

template <typename T>
inline Status check_in_out(const char* in_name, const HeadsView<const T>& in, const char* out_name,
                           const HeadsView<T>& out) {
  if (in.tokens != out.tokens || in.heads != out.heads || in.head_dim != out.head_dim)
    return make_status(ErrorCode::kInvalidArgument, std::string(out_name) + " shape",
                       std::to_string(out.tokens) + "x" + std::to_string(out.heads) + "x" +
                           std::to_string(out.head_dim),
                       std::string("must equal ") + in_name + " shape " +
                           std::to_string(in.tokens) + "x" + std::to_string(in.heads) + "x" +
                           std::to_string(in.head_dim));
  if (in.tokens == 0 || in.heads == 0) return Status();
  if (static_cast<const void*>(in.data) == static_cast<const void*>(out.data) &&
      in.token_stride == out.token_stride && in.head_stride == out.head_stride)
    return Status();  // exactly in place
  if (rows_overlap(row_set(in), row_set(out.as_const())))
    return make_status(ErrorCode::kInvalidArgument, out_name, "overlapping buffer",
                       std::string("must not overlap ") + in_name +
                           " out of place (pass the same view for in place)");
  return Status();
}

// The row buffers run_rotary_rows needs for `half` pairs (in compute values): c and s, each
// starting on a cache line when the buffer does. (C = double is an upper bound for float too.)
template <typename C = double>
constexpr std::int64_t row_buffer_size(std::int64_t half) {
  return 2 * aligned_row_length<C>(half);
}
template <typename C>
struct RowSlices {
  C *c, *s;
};
template <typename C>
inline RowSlices<C> row_slices(C* buf, std::int64_t half) noexcept {
  return {buf, buf + aligned_row_length<C>(half)};
}

// The row buffers of one call, 64-byte aligned: on the stack for heads up to 512 channels (a
// decode step then allocates nothing), on the heap for wider ones. Not copyable (it may point
// into itself).
template <typename C>
class RowBuffer {
 public:
  explicit RowBuffer(std::int64_t pairs) {
    if (row_buffer_size<C>(pairs) > row_buffer_size<C>(kStackPairs)) {
      heap_.resize(static_cast<std::size_t>(row_buffer_size<C>(pairs)));
      data_ = heap_.data();
    }
  }
  RowBuffer(const RowBuffer&) = delete;
  RowBuffer& operator=(const RowBuffer&) = delete;
  C* data() noexcept { return data_; }

 private:
  static constexpr std::int64_t kStackPairs = 256;
  alignas(kRowAlignment) C stack_[row_buffer_size<C>(kStackPairs)];
  std::vector<C, AlignedAllocator<C>> heap_;
  C* data_ = stack_;
};

inline Status check_layout(PairLayout layout) {
  if (layout != PairLayout::kHalfSplit && layout != PairLayout::kInterleaved)
    return make_status(ErrorCode::kInvalidArgument, "layout", static_cast<int>(layout),
                       "must be kHalfSplit or kInterleaved");
  return Status();
}

inline Status check_direction(RotaryDirection direction) {
  if (direction != RotaryDirection::kForward && direction != RotaryDirection::kInverse &&
      direction != RotaryDirection::kBackward)
    return make_status(ErrorCode::kInvalidArgument, "direction", static_cast<int>(direction),
                       "must be kForward, kInverse or kBackward");
  return Status();
}

// The channels of a head a layout touches: frequency_dim for half-split (the partner of pair i
// is i + frequency_dim / 2), rotary_dim for interleaved.
template <typename Angles>
inline std::int64_t layout_channels(const Angles& angles, PairLayout layout) {
  return layout == PairLayout::kHalfSplit ? angles.frequency_dim() : angles.rotary_dim();
}

// The angle row of token t for the plain front doors: one position id per token. Points c/s at
// a cache's own row when `direct_ok` and the cache stores C (no copy), else fills cbuf/sbuf.
template <typename Angles, typename C>
struct PlainRows {
  const Angles& angles;
  const std::int64_t* positions;
  bool operator()(std::int64_t t, C* cbuf, C* sbuf, double scale, bool direct_ok, const C** c,
                  const C** s) const noexcept {
    if constexpr (is_cache_of<Angles, C>::value) {
      if (direct_ok) {
        *c = angles.cos_row(positions[t]);
        *s = angles.sin_row(positions[t]);
        return true;
      }
    }
    angles.fill(positions[t], cbuf, sbuf, scale);
    *c = cbuf;
    *s = sbuf;
    return false;
  }
};

// What a call resolves once: the kernel of the dispatch table for the storage type, layout, pair
// count and path, and the direction's row treatment. A RotaryShapePlan keeps one; the plain front
// doors resolve one per call. Both then run run_resolved.
template <typename T>
struct ResolvedKernel {
  TokenKernel<T> kernel = nullptr;
  std::int64_t half = 0, offset = 0;  // pairs; the half-split partner offset
  double scale = 1.0;                 // multiplies the rows (kInverse: 1 / m^2)
  bool negate = false;                // sin negated (kInverse, kBackward)
  KernelPath path = KernelPath::kPortable;
};

template <typename T, typename Angles>
inline ResolvedKernel<T> resolve_kernel(const Angles& angles, PairLayout layout,
                                        RotaryDirection direction, KernelPath path) noexcept {
  ResolvedKernel<T> r;
  r.half = angles.pairs();
  r.offset = angles.frequency_dim() / 2;
  const double m = angles.attention_factor();
  r.scale = direction == RotaryDirection::kInverse ? 1.0 / (m * m) : 1.0;
  r.negate = direction != RotaryDirection::kForward;
  r.path = path;
  r.kernel = kernel_table<T>(path).rotate_kernel(layout == PairLayout::kInterleaved, r.half);
  return r;
}

// Rotates every operand over tokens [t_begin, t_end) with the rows `rows` gives (PlainRows, or
// the M-RoPE rows of mrope.hpp). Each token's result depends only on that token, so disjoint
// ranges may run on different threads and give the same bits as one call. buf: row_buffer_size
// compute values, 64-byte aligned (RowBuffer).
template <typename T, typename Rows>
inline void run_resolved(const ResolvedKernel<T>& k, const Rows& rows, std::int64_t t_begin,
                         std::int64_t t_end, const Operand<T>* ops, int n_ops,
                         compute_t<T>* buf) noexcept {
  using C = compute_t<T>;
  const RowSlices<C> slices = row_slices(buf, k.half);
  C* cbuf = slices.c;
  C* sbuf = slices.s;
  for (std::int64_t t = t_begin; t < t_end; ++t) {
    const C* c = cbuf;
    const C* s = sbuf;
    // Forward calls read a cache's rows in place (both layouts take the half rows); the other
    // directions negate or rescale a copy.
    const bool direct = rows(t, cbuf, sbuf, k.scale, !k.negate, &c, &s);
    if (!direct && k.negate)
      for (std::int64_t i = 0; i < k.half; ++i) sbuf[i] = -sbuf[i];
    for (int o = 0; o < n_ops; ++o) {
      const Operand<T>& op = ops[o];
      k.kernel(op.in + t * op.in_token_stride, op.out + t * op.out_token_stride, op.heads,
               op.in_head_stride, op.out_head_stride, k.half, k.offset, op.head_dim, c, s);
    }
  }
}

// run_resolved with the kernel resolved here, on `path`.
template <typename T, typename Angles, typename Rows>
inline void run_rotary_rows(const Angles& angles, const Rows& rows, std::int64_t t_begin,
                            std::int64_t t_end, const Operand<T>* ops, int n_ops, PairLayout layout,
                            RotaryDirection direction, KernelPath path,
                            compute_t<T>* buf) noexcept {
  run_resolved<T>(resolve_kernel<T>(angles, layout, direction, path), rows, t_begin, t_end, ops,
                  n_ops, buf);
}

// The plain front doors' rows (one position per token) over a resolved kernel: the run both
// rotary_call and RotaryShapePlan end in.
template <typename T, typename Angles>
inline void run_plain(const ResolvedKernel<T>& k, const Angles& angles,
                      const std::int64_t* positions, std::int64_t t_begin, std::int64_t t_end,
                      const Operand<T>* ops, int n_ops) {
  const PlainRows<Angles, compute_t<T>> rows{angles, positions};
  RowBuffer<compute_t<T>> buf(k.half);
  run_resolved<T>(k, rows, t_begin, t_end, ops, n_ops, buf.data());
}

template <typename T, typename Angles>
inline void run_rotary(const Angles& angles, const std::int64_t* positions, std::int64_t t_begin,
                       std::int64_t t_end, const Operand<T>* ops, int n_ops, PairLayout layout,
                       RotaryDirection direction, KernelPath path) {
  run_plain<T>(resolve_kernel<T>(angles, layout, direction, path), angles, positions, t_begin,
               t_end, ops, n_ops);
}

// Validates everything of a call except the positions and fills ops[0..n). Shared by the plain
// and the M-RoPE front doors.
template <typename T, typename Angles>
inline Status prepare_rotary_call(const Angles& angles, const HeadsView<const T>* ins,
                                  const HeadsView<T>* outs, int n, const char* const* names_in,
                                  const char* const* names_out, PairLayout layout,
                                  RotaryDirection direction, Operand<T>* ops) {
  static_assert(is_rotary_storage<T>::value,
                "rotary storage type must be float, double, Eigen::half or Eigen::bfloat16");
  ROPESCALE_RETURN_IF_ERROR(check_layout(layout));
  ROPESCALE_RETURN_IF_ERROR(check_direction(direction));
  const std::int64_t rotary_dim = layout_channels(angles, layout);
  for (int i = 0; i < n; ++i) {
    ROPESCALE_RETURN_IF_ERROR(check_view(names_in[i], ins[i], rotary_dim));
    ROPESCALE_RETURN_IF_ERROR(check_view(names_out[i], outs[i], rotary_dim));
    ROPESCALE_RETURN_IF_ERROR(check_in_out(names_in[i], ins[i], names_out[i], outs[i]));
    if (ins[i].tokens != ins[0].tokens)
      return make_status(ErrorCode::kInvalidArgument, std::string(names_in[i]) + ".tokens",
                         ins[i].tokens,
                         std::string("must equal ") + names_in[0] + ".tokens (" +
                             std::to_string(ins[0].tokens) + ")");
  }
  if (n == 2 && ins[0].tokens > 0 && ins[0].heads > 0 && ins[1].heads > 0) {
    if (static_cast<const void*>(outs[0].data) == static_cast<const void*>(outs[1].data))
      return make_status(ErrorCode::kInvalidArgument, names_out[1], "same pointer as q",
                         "k must not alias q");
    // One pass writes both: no output row may share memory with the other operand's rows
    // (a shared head would be rotated twice, or read after it was written).
    const RowSet q_in = row_set(ins[0]), k_in = row_set(ins[1]);
    const RowSet q_out = row_set(outs[0].as_const()), k_out = row_set(outs[1].as_const());
    if (rows_overlap(q_out, k_out))
      return make_status(ErrorCode::kInvalidArgument, names_out[1], "overlapping buffer",
                         std::string("must not overlap ") + names_out[0]);
    if (rows_overlap(q_out, k_in))
      return make_status(ErrorCode::kInvalidArgument, names_out[0], "overlapping buffer",
                         std::string("must not overlap ") + names_in[1]);
    if (rows_overlap(k_out, q_in))
      return make_status(ErrorCode::kInvalidArgument, names_out[1], "overlapping buffer",
                         std::string("must not overlap ") + names_in[0]);
  }
  for (int i = 0; i < n; ++i)
    ops[i] = {ins[i].data,         outs[i].data,       ins[i].heads,         ins[i].head_dim,
              ins[i].token_stride, ins[i].head_stride, outs[i].token_stride, outs[i].head_stride};
  return Status();
}

template <typename T, typename Angles>
inline Status rotary_call(const Angles& angles, const std::int64_t* positions,
                          const HeadsView<const T>* ins, const HeadsView<T>* outs, int n,
                          const char* const* names_in, const char* const* names_out,
                          PairLayout layout, RotaryDirection direction) {
  Operand<T> ops[2];
  ROPESCALE_RETURN_IF_ERROR(
      prepare_rotary_call<T>(angles, ins, outs, n, names_in, names_out, layout, direction, ops));
  const std::int64_t tokens = n > 0 ? ins[0].tokens : 0;
  ROPESCALE_RETURN_IF_ERROR(check_positions(angles, positions, tokens));
  run_rotary<T>(angles, positions, 0, tokens, ops, n, layout, direction, active_kernel_path());
  return Status();
}

}  // namespace detail

}  // namespace ropescale

#include "ropescale/detail/macro_unscope.hpp"
