// ropescale: a rotary call planned once and run at every decode step and layer.
//
// A decode step rotates a few tokens per layer with the same shapes, strides, layout, storage
// type, angle source and kernel path every time; only the buffers, the token count and the
// positions change. RotaryShapePlan checks the fixed part once (what rotate(q, k) checks
// on every call) and resolves the kernel from the dispatch table; rotate() then checks only what
// a call can change and makes one indirect call per token and operand:
//
//   auto plan = RotaryShapePlan<float, RotaryCache>::make(cache, q_shape, &k_shape,
//                                                        PairLayout::kHalfSplit).value();
//   for each step, for each layer:
//     Status s = plan.rotate(q_layer, k_layer, tokens, positions);   // in place
//
//   q_shape, k_shape  HeadsView shapes: heads, head_dim and strides as every call will use them,
//                     tokens = the most tokens a call may pass. data is not used (may be null).
//   rotate(q, k, ..)  the views' data pointers for this call (k null when the plan has no k);
//                     tokens in [0, max_tokens()); positions as rotate(q, k) takes them.
//
// Per call, rotate() checks: tokens in range, q (and k) not null, q and k not sharing memory
// (a byte-range test, exact row test only when the ranges meet), and every position inside the
// angle source. A refused call writes nothing. The kernel path is the one active when the plan
// was made (kernel_path.hpp); results are those of rotate(q, k) on that path, bit for bit.
// The plan keeps a pointer to the angle source, which must outlive it. A plan is immutable:
// several threads may call rotate() at once on disjoint buffers.
#pragma once

#include <cstdint>
#include <string>

#include "ropescale/error.hpp"
#include "ropescale/rotary.hpp"

namespace ropescale {

template <typename T, typename Angles>
class RotaryShapePlan {
 public:
  RotaryShapePlan() = default;

  /// Checks the shapes once (rules and messages of rotate(q, k); k null: one operand).
  static Result<RotaryShapePlan> make(const Angles& angles, const HeadsView<T>& q,
                                      const HeadsView<T>* k, PairLayout layout,
                                      RotaryDirection direction = RotaryDirection::kForward) {
    static_assert(detail::is_rotary_storage<T>::value,
                  "rotary storage type must be float, double, Eigen::half or Eigen::bfloat16");
    ROPESCALE_RETURN_IF_ERROR(detail::check_layout(layout));
    ROPESCALE_RETURN_IF_ERROR(detail::check_direction(direction));
    const std::int64_t rotary_dim = detail::layout_channels(angles, layout);
    RotaryShapePlan plan;
    plan.n_ops_ = k == nullptr ? 1 : 2;
    const HeadsView<T> views[2] = {q, k != nullptr ? *k : q};
    const char* names[2] = {k == nullptr ? "x" : "q", "k"};
    for (int i = 0; i < plan.n_ops_; ++i) {
      HeadsView<T> v = views[i];
      v.data = detail::shape_probe<T>();  // the shape alone: data is checked per call
      ROPESCALE_RETURN_IF_ERROR(detail::check_view(names[i], v, rotary_dim));
      if (v.tokens != views[0].tokens)
        return make_status(ErrorCode::kInvalidArgument, std::string(names[i]) + ".tokens", v.tokens,
                           "must equal q.tokens (" + std::to_string(q.tokens) + ")");
      plan.ops_[i] = {nullptr,        nullptr,       v.heads,        v.head_dim,
                      v.token_stride, v.head_stride, v.token_stride, v.head_stride};
    }
    plan.angles_ = &angles;
    plan.max_tokens_ = q.tokens;
    plan.kernel_ = detail::resolve_kernel<T>(angles, layout, direction, active_kernel_path());
    return plan;
  }

  /// Rotates q (and k) in place: `tokens` tokens at `positions`, with the plan's shapes.
  Status rotate(T* q, T* k, std::int64_t tokens, const std::int64_t* positions) const {
    ROPESCALE_RETURN_IF_ERROR(
        detail::check_planned_call(angles_ != nullptr, "RotaryShapePlan", tokens, max_tokens_));
    if ((k != nullptr) != (n_ops_ == 2))
      return make_status(ErrorCode::kInvalidArgument, "k", k == nullptr ? "null" : "a buffer",
                         n_ops_ == 2 ? "must not be null: the plan rotates q and k"
                                     : "must be null: the plan was made without k");
    if (tokens == 0) return Status();
    detail::Operand<T> ops[2] = {ops_[0], ops_[1]};
    T* data[2] = {q, k};
    const char* names[2] = {n_ops_ == 1 ? "x" : "q", "k"};
    for (int i = 0; i < n_ops_; ++i) {
      if (data[i] == nullptr && ops[i].heads > 0)
        return make_status(ErrorCode::kInvalidArgument, names[i], nullptr, "must not be null");
      ops[i].in = data[i];
      ops[i].out = data[i];
    }
    if (n_ops_ == 2 && ops[0].heads > 0 && ops[1].heads > 0 && overlap(ops[0], ops[1], tokens))
      return make_status(ErrorCode::kInvalidArgument, "k", "overlapping buffer",
                         "must not overlap q");
    ROPESCALE_RETURN_IF_ERROR(detail::check_positions(*angles_, positions, tokens));
    detail::run_plain<T>(kernel_, *angles_, positions, 0, tokens, ops, n_ops_);
    return Status();
  }
  /// One operand (a plan made without k).
  Status rotate(T* x, std::int64_t tokens, const std::int64_t* positions) const {
    return rotate(x, nullptr, tokens, positions);
  }

  std::int64_t max_tokens() const noexcept { return max_tokens_; }
  KernelPath path() const noexcept { return kernel_.path; }

 private:
  // Whether rows of a and b share a byte over `tokens` tokens (rows_overlap: the byte ranges
  // first, the exact row test only when they meet, as for fused QKV).
  static bool overlap(const detail::Operand<T>& a, const detail::Operand<T>& b,
                      std::int64_t tokens) noexcept {
    const HeadsView<const T> va{
        a.in, tokens, a.heads, a.head_dim, a.in_token_stride, a.in_head_stride};
    const HeadsView<const T> vb{
        b.in, tokens, b.heads, b.head_dim, b.in_token_stride, b.in_head_stride};
    return detail::rows_overlap(detail::row_set(va), detail::row_set(vb));
  }

  const Angles* angles_ = nullptr;
  detail::ResolvedKernel<T> kernel_;
  detail::Operand<T> ops_[2];
  int n_ops_ = 0;
  std::int64_t max_tokens_ = 0;
};

}  // namespace ropescale
