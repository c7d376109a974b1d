// ropescale: rotary position embedding with rescaled frequencies, applied inside a host's
// attention code.
//
// ## What rotates
//
//   x: [tokens, heads, head_dim], element (t, h, j) at data[t*token_stride + h*head_stride + j]
//      [T,H,D] contiguous: token_stride = H*D, head_stride = D
//      [H,T,D] contiguous: token_stride = D,   head_stride = T*D
//      fused QKV [T, Hq+2Hk, D]: q at data, k at data + Hq*D, both token_stride = (Hq+2Hk)*D
//
//   Channels [0, rotary_dim) of every head rotate in rotary_dim/2 pairs; channels
//   [rotary_dim, head_dim) pass through untouched (partial rotary, e.g. Phi-4-mini 96 of 128).
//
//   PairLayout::kHalfSplit   pair i = channels (i, i + rotary_dim/2)  Llama, Hugging Face, NeoX
//       | x0 x1 x2 x3 | y0 y1 y2 y3 | pass-through |     (x_i, y_i) rotate together
//   PairLayout::kInterleaved pair i = channels (2i, 2i + 1)           GPT-J, llama2.c, ggml NORMAL
//       | x0 y0 x1 y1 x2 y2 x3 y3 | pass-through |
//
//   Proportional RoPE (Gemma 4; RopeSpec::freq_dim = head_dim > rotary_dim): the half-split
//   partner of channel i is i + freq_dim/2, as Hugging Face's rotate_half over the whole head:
//       | x0 x1 | pass-through | y0 y1 | pass-through |     (freq_dim = head_dim)
//   Interleaved pairs are unchanged ((2i, 2i + 1), i < rotary_dim/2). The pass-through channels
//   are HF's zero-frequency pairs (cos 1, sin 0) and are left bit for bit untouched.
//
// ## The angle and the attention factor
//
//   angle(t, i) = positions[t] * inv_freq_i,   inv_freq_i = rope_theta^(-2i/rotary_dim) / lambda_i
//   (rope_theta^(-2i/freq_dim) for proportional RoPE, see frequencies.hpp)
//   forward:  x' = m * ( x cos(angle) - y sin(angle) ),  y' = m * ( y cos(angle) + x sin(angle) )
//
// where lambda_i and m (the attention factor, "mscale") come from a FactorTable. m multiplies
// both cos and sin, as Hugging Face's attention_scaling does. RotaryDirection::kInverse undoes the
// forward rotation (angle -> -angle, m -> 1/m); kBackward is its transpose, the gradient of the
// forward pass (angle -> -angle, m kept).
//
// ## Angle sources
//
//   RotaryCache         cos/sin precomputed for positions [0, num_positions), float storage.
//   RotaryFrequencies   cos/sin computed per token on the fly, for positions in [0, 2^48)
//                       whose angle pos * max|inv_freq_i| stays below 2^48 rad (max_position()).
//
// Both compute the angle in double with an exact Cody-Waite range reduction, so float outputs
// stay within 2e-6 of a long double reference at every position up to 2^21 and beyond; the
// float32 `pos * inv_freq` most engines use is off by ~0.1 at 2^21.
//
// ## Front door and kernel
//
// The rotation verbs take the direction as their last parameter:
//
//   rotate(angles, positions, x, layout, dir)            x in place
//   rotate(angles, positions, q, k, layout, dir)         q and k in place, one pass (GQA allowed)
//   rotate(angles, positions, q, &k, layout, pfor, dir)  the same split by the host's threads
//   rotate_out(angles, positions, in, out, layout, dir)  out = R(in) (and the q/k pair form)
//
// plus rotate_mrope (mrope.hpp) and rotate_and_append_kv (kv_cache.hpp). Each validates every
// argument and returns a Status naming the argument, the value and the rule; nothing is written
// when validation fails. The unchecked kernels live in ropescale/detail/.
//
// ## The backward pass
//
// Forward RoPE is y = m R(theta) x per pair, so dL/dx = m R(theta)^T dL/dy = m R(-theta) dL/dy:
// the upstream gradient rotated by the inverse angle and scaled by the attention factor m (not
// 1/m as the inverse would be). That is rotate(..., RotaryDirection::kBackward) on the gradient,
// with the forward call's angles, positions and layout; pass-through channels keep their gradient.
#pragma once

#include <Eigen/Core>
#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <functional>
#include <limits>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "ropescale/error.hpp"
#include "ropescale/rotary_types.hpp"

#pragma push_macro("ROPESCALE_INSIDE_PUBLIC_HEADER")
#define ROPESCALE_INSIDE_PUBLIC_HEADER
#include "ropescale/detail/call/range_claims.hpp"
#include "ropescale/detail/call/rotary_call.hpp"
#pragma pop_macro("ROPESCALE_INSIDE_PUBLIC_HEADER")

namespace ropescale {

// ---------------------------------------------------------------------------------------------
// Checked entry points. `Angles` is RotaryCache, RotaryCacheD or RotaryFrequencies.
// positions: one int64 per token, >= 0 (and < num_positions for a cache).
// ---------------------------------------------------------------------------------------------

/// Rotates x in place (direction kForward applies RoPE, kInverse undoes it, kBackward turns
/// dL/d(rotated x) into dL/dx; see the top of this header).
template <typename T, typename Angles>
inline Status rotate(const Angles& angles, const std::int64_t* positions, const HeadsView<T>& x,
                     PairLayout layout, RotaryDirection direction = RotaryDirection::kForward) {
  const HeadsView<const T> in = x.as_const();
  const char* names[] = {"x"};
  return detail::rotary_call<T>(angles, positions, &in, &x, 1, names, names, layout, direction);
}

/// Rotates queries and keys in place in one pass over the tokens; q and k may have different
/// head counts (GQA/MQA) and strides but share tokens and positions.
template <typename T, typename Angles>
inline Status rotate(const Angles& angles, const std::int64_t* positions, const HeadsView<T>& q,
                     const HeadsView<T>& k, PairLayout layout,
                     RotaryDirection direction = RotaryDirection::kForward) {
  const HeadsView<const T> in[2] = {q.as_const(), k.as_const()};
  const HeadsView<T> out[2] = {q, k};
  const char* names[] = {"q", "k"};
  return detail::rotary_call<T>(angles, positions, in, out, 2, names, names, layout, direction);
}

/// Out of place: out = R(in). Pass-through channels are copied. in and out must not overlap
/// (the identical view is accepted and means in place).
template <typename T, typename Angles>
inline Status rotate_out(const Angles& angles, const std::int64_t* positions,
                         const HeadsView<const T>& in, const HeadsView<T>& out, PairLayout layout,
                         RotaryDirection direction = RotaryDirection::kForward) {
  const char* ni[] = {"in"};
  const char* no[] = {"out"};
  return detail::rotary_call<T>(angles, positions, &in, &out, 1, ni, no, layout, direction);
}

/// Out of place for queries and keys together.
template <typename T, typename Angles>
inline Status rotate_out(const Angles& angles, const std::int64_t* positions,
                         const HeadsView<const T>& q_in, const HeadsView<T>& q_out,
                         const HeadsView<const T>& k_in, const HeadsView<T>& k_out,
                         PairLayout layout, RotaryDirection direction = RotaryDirection::kForward) {
  const HeadsView<const T> in[2] = {q_in, k_in};
  const HeadsView<T> out[2] = {q_out, k_out};
  const char* ni[] = {"q_in", "k_in"};
  const char* no[] = {"q_out", "k_out"};
  return detail::rotary_call<T>(angles, positions, in, out, 2, ni, no, layout, direction);
}

// ---------------------------------------------------------------------------------------------
// Threads the host owns. A RotaryPlan runs every check of a call once; run(begin, end) then
// rotates tokens [begin, end) and may be called from several threads at once for disjoint
// ranges. Each token's result depends only on that token and the plan fixes the kernel path, so
// any split gives the same bits as one call. The plan keeps pointers to the angle source, the
// positions and the views' data: they must outlive it.
// ---------------------------------------------------------------------------------------------

template <typename T, typename Angles>
class RotaryPlan {
 public:
  RotaryPlan() = default;

  /// q (and k, when not null) in place, as rotate(angles, positions, q[, k], ...).
  static Result<RotaryPlan> make(const Angles& angles, const std::int64_t* positions,
                                 const HeadsView<T>& q, const HeadsView<T>* k, PairLayout layout,
                                 RotaryDirection direction = RotaryDirection::kForward) {
    const int n = k == nullptr ? 1 : 2;
    const HeadsView<const T> in[2] = {q.as_const(), k ? k->as_const() : q.as_const()};
    const HeadsView<T> outs[2] = {q, k ? *k : q};
    const char* names1[] = {"x"};
    const char* names2[] = {"q", "k"};
    const char* const* names = n == 1 ? names1 : names2;
    RotaryPlan plan;
    ROPESCALE_RETURN_IF_ERROR((detail::prepare_rotary_call<T>(angles, in, outs, n, names, names,
                                                              layout, direction, plan.ops_)));
    ROPESCALE_RETURN_IF_ERROR(detail::check_positions(angles, positions, q.tokens));
    plan.angles_ = &angles;
    plan.positions_ = positions;
    plan.tokens_ = q.tokens;
    plan.n_ops_ = n;
    plan.layout_ = layout;
    plan.direction_ = direction;
    plan.path_ = active_kernel_path();
    return plan;
  }

  std::int64_t tokens() const noexcept { return tokens_; }
  KernelPath path() const noexcept { return path_; }

  /// Rotates tokens [begin, end); 0 <= begin <= end <= tokens(). Safe to call concurrently for
  /// disjoint ranges.
  Status run(std::int64_t begin, std::int64_t end) const {
    if (angles_ == nullptr && tokens_ > 0)
      return make_status(ErrorCode::kInvalidArgument, "plan", "empty",
                         "was not made by RotaryPlan::make");
    if (begin < 0 || begin > end || end > tokens_)
      return make_status(
          ErrorCode::kInvalidArgument, "range",
          "[" + std::to_string(begin) + ", " + std::to_string(end) + ")",
          "must satisfy 0 <= begin <= end <= tokens (" + std::to_string(tokens_) + ")");
    if (begin < end)
      detail::run_rotary<T>(*angles_, positions_, begin, end, ops_, n_ops_, layout_, direction_,
                            path_);
    return Status();
  }

 private:
  const Angles* angles_ = nullptr;
  const std::int64_t* positions_ = nullptr;
  std::int64_t tokens_ = 0;
  detail::Operand<T> ops_[2];
  int n_ops_ = 0;
  PairLayout layout_ = PairLayout::kHalfSplit;
  RotaryDirection direction_ = RotaryDirection::kForward;
  KernelPath path_ = KernelPath::kPortable;
};

/// The host's parallel-for: calls body(begin, end) over ranges that cover [0, n) exactly once,
/// from any threads, and returns when all have run. A plain loop is a valid one. One that breaks
/// this is reported (the parallel rotate's parallel_for error); no token is rotated twice
/// and no two threads write one token, but the tokens of the ranges that did run stay rotated.
using ParallelFor = std::function<void(
    std::int64_t n, const std::function<void(std::int64_t begin, std::int64_t end)>& body)>;

/// rotate(angles, positions, q, *k, ...) (k null: q alone; k is not used to deduce T, so nullptr
/// works) with the tokens split by the host's parallel-for; checks run once, before any thread
/// starts. Same bits as the one-thread call.
template <typename T, typename Angles>
inline Status rotate(const Angles& angles, const std::int64_t* positions, const HeadsView<T>& q,
                     const std::common_type_t<HeadsView<T>>* k, PairLayout layout,
                     const ParallelFor& parallel_for,
                     RotaryDirection direction = RotaryDirection::kForward) {
  if (!parallel_for)
    return make_status(ErrorCode::kInvalidArgument, "parallel_for", "empty", "must be a callable");
  Result<RotaryPlan<T, Angles>> made =
      RotaryPlan<T, Angles>::make(angles, positions, q, k, layout, direction);
  if (!made.ok()) return made.status();
  const RotaryPlan<T, Angles>& plan = *made;
  // A broken parallel-for is refused without rotating any token twice: each range claims its
  // tokens before it runs (detail/call/range_claims.hpp), a range that steps outside [0, tokens) or
  // overlaps one claimed earlier (run twice, or two threads on overlapping ranges) does not run,
  // and tokens no range claimed are reported once the parallel-for returns.
  detail::RangeClaims claims(plan.tokens());
  std::atomic<bool> outside{false};
  std::atomic<std::int64_t> rotated{0};
  parallel_for(plan.tokens(), [&](std::int64_t begin, std::int64_t end) {
    if (begin < 0 || begin > end || end > plan.tokens()) {
      outside.store(true, std::memory_order_relaxed);
      return;
    }
    if (!claims.claim(begin, end)) return;
    if (plan.run(begin, end).ok()) rotated.fetch_add(end - begin, std::memory_order_relaxed);
  });
  const std::int64_t twice = claims.first_twice(), missing = claims.first_unclaimed();
  if (outside.load() || twice >= 0 || missing >= 0 || rotated.load() != plan.tokens()) {
    std::string what =
        std::to_string(rotated.load()) + " of " + std::to_string(plan.tokens()) + " tokens rotated";
    if (outside.load()) what += ", a range outside them";
    if (twice >= 0) what += ", token " + std::to_string(twice) + " handed out twice";
    if (missing >= 0) what += ", token " + std::to_string(missing) + " never handed out";
    return make_status(ErrorCode::kInvalidArgument, "parallel_for", what,
                       "must call body over ranges that cover [0, n) exactly once (a range "
                       "overlapping an earlier one is not run; the views hold a partial result)");
  }
  return Status();
}
}  // namespace ropescale
