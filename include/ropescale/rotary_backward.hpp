// ropescale: the rotary backward pass (the transpose of apply_rotary) for training code.
//
// Forward RoPE is y = m R(theta) x per pair, so dL/dx = m R(theta)^T dL/dy = m R(-theta) dL/dy:
// the upstream gradient rotated by the inverse angle and scaled by the attention factor m (not
// 1/m as the inverse would be). Pass-through channels [rotary_dim, head_dim) get the gradient
// unchanged.
#pragma once

#include <cstdint>

#include "ropescale/error.hpp"
#include "ropescale/rotary.hpp"

namespace ropescale {

/// Backward pass of apply_rotary, in place: grad holds dL/d(rotated x) on entry and dL/dx on
/// return. With forward y = m R(pos * inv_freq) x per pair,
///
///     dL/dx = m R(pos * inv_freq)^T dL/dy = m R(-pos * inv_freq) dL/dy
///
/// i.e. the upstream gradient rotated by the inverse angle and multiplied by the attention factor
/// (RotaryDirection::kBackward). Pass-through channels keep their gradient. Same angles, positions
/// and layout as the forward call; any storage type (float, double, Eigen::half,
/// Eigen::bfloat16; arithmetic in float, or double for double). Status twin: try_rotary_backward.
template <typename T, typename Angles>
inline Status try_rotary_backward(const Angles& angles, const std::int64_t* positions,
                                  const HeadsView<T>& grad, PairLayout layout) {
  const HeadsView<const T> in = grad.as_const();
  const char* names[] = {"grad"};
  return detail::rotary_call<T>(angles, positions, &in, &grad, 1, names, names, layout,
                                RotaryDirection::kBackward);
}
template <typename T, typename Angles>
inline void rotary_backward(const Angles& angles, const std::int64_t* positions,
                            const HeadsView<T>& grad, PairLayout layout) {
  throw_if_error(try_rotary_backward(angles, positions, grad, layout));
}

/// Backward pass for queries and keys together, in place (GQA head counts may differ).
template <typename T, typename Angles>
inline Status try_rotary_backward_qk(const Angles& angles, const std::int64_t* positions,
                                     const HeadsView<T>& grad_q, const HeadsView<T>& grad_k,
                                     PairLayout layout) {
  const HeadsView<const T> in[2] = {grad_q.as_const(), grad_k.as_const()};
  const HeadsView<T> out[2] = {grad_q, grad_k};
  const char* names[] = {"grad_q", "grad_k"};
  return detail::rotary_call<T>(angles, positions, in, out, 2, names, names, layout,
                                RotaryDirection::kBackward);
}
template <typename T, typename Angles>
inline void rotary_backward_qk(const Angles& angles, const std::int64_t* positions,
                               const HeadsView<T>& grad_q, const HeadsView<T>& grad_k,
                               PairLayout layout) {
  throw_if_error(try_rotary_backward_qk(angles, positions, grad_q, grad_k, layout));
}

/// Backward pass out of place: grad_in = m R^T grad_out; pass-through channels are copied.
template <typename T, typename Angles>
inline Status try_rotary_backward_out(const Angles& angles, const std::int64_t* positions,
                                      const HeadsView<const T>& grad_out,
                                      const HeadsView<T>& grad_in, PairLayout layout) {
  const char* names_in[] = {"grad_out"};
  const char* names_out[] = {"grad_in"};
  return detail::rotary_call<T>(angles, positions, &grad_out, &grad_in, 1, names_in, names_out,
                                layout, RotaryDirection::kBackward);
}
template <typename T, typename Angles>
inline void rotary_backward_out(const Angles& angles, const std::int64_t* positions,
                                const HeadsView<const T>& grad_out, const HeadsView<T>& grad_in,
                                PairLayout layout) {
  throw_if_error(try_rotary_backward_out(angles, positions, grad_out, grad_in, layout));
}

}  // namespace ropescale
