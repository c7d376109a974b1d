// ropescale: multimodal RoPE (M-RoPE) of Qwen2-VL, Qwen2.5-VL and Qwen3-VL.
//
// Every token carries three position ids, (temporal, height, width); a text token has t = h = w.
// Each rotary pair takes its angle from one of the three, chosen by the config's `mrope_section`
// (pairs per axis, summing to rotary_dim / 2):
//
//   sectioned  (Qwen2-VL, Qwen2.5-VL; HF apply_multimodal_rotary_pos_emb), section [16, 24, 24]:
//       pair  0 .. 15 -> t     16 .. 39 -> h     40 .. 63 -> w
//   interleaved (Qwen3-VL, `mrope_interleaved: true`; HF apply_interleaved_mrope), [24, 20, 20]:
//       pair i -> h if i % 3 == 1 and i < 3 * section[1]
//                 w if i % 3 == 2 and i < 3 * section[2]
//                 t otherwise                          (t h w t h w ... t t t t)
//
// The angle of pair i at token n is positions[axis(i) * tokens + n] * inv_freq_i: positions are
// given as 3 x tokens (HF's position_ids[3, seq]), row 0 temporal, 1 height, 2 width. The pair's
// channels, the half-split / interleaved layouts, the attention factor and the directions are
// those of rotary.hpp. A token with t = h = w takes exactly the plain apply_rotary path, so text
// tokens are bit for bit plain RoPE.
//
// The frequencies are the ordinary ones (Qwen2-VL's rope_scaling is {"type": "mrope"}, read as
// default RoPE plus the sections), so any RotaryCache / RotaryCacheD / RotaryFrequencies serves.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "ropescale/error.hpp"
#include "ropescale/rotary.hpp"

namespace ropescale {

/// Which position axis (0 = temporal, 1 = height, 2 = width) each rotary pair reads.
class MropeSections {
 public:
  MropeSections() = default;

  /// `sections`: pairs per axis (three entries, each >= 0, sum == pairs); `interleaved`: Qwen3-VL
  /// layout. Throws Error naming the field on bad input.
  MropeSections(std::vector<std::int64_t> sections, bool interleaved, std::int64_t pairs) {
    throw_if_error(make(std::move(sections), interleaved, pairs, this));
  }

  /// Non-throwing twin; *out is set only on success.
  static Status make(std::vector<std::int64_t> sections, bool interleaved, std::int64_t pairs,
                     MropeSections* out) {
    if (out == nullptr)
      return make_status(ErrorCode::kInvalidArgument, "out", nullptr, "must not be null");
    if (pairs <= 0) return make_status(ErrorCode::kInvalidArgument, "pairs", pairs, "must be > 0");
    // One axis byte per pair is allocated below: bound it by the widest head a RopeSpec allows.
    if (pairs > kMaxHeadDim / 2)
      return make_status(ErrorCode::kInvalidArgument, "pairs", pairs,
                         "must be <= kMaxHeadDim / 2 = " + std::to_string(kMaxHeadDim / 2));
    if (sections.size() != 3)
      return make_status(ErrorCode::kInvalidArgument, "mrope_section.size()",
                         static_cast<std::int64_t>(sections.size()),
                         "must be 3 (temporal, height, width)");
    std::int64_t sum = 0;
    for (std::size_t a = 0; a < 3; ++a) {
      if (sections[a] < 0 || sections[a] > pairs)
        return make_status(ErrorCode::kInvalidArgument, "mrope_section[" + std::to_string(a) + "]",
                           sections[a],
                           "must be in [0, rotary_dim / 2 = " + std::to_string(pairs) + "]");
      sum += sections[a];
    }
    if (sum != pairs)
      return make_status(ErrorCode::kInvalidArgument, "sum(mrope_section)", sum,
                         "must equal rotary_dim / 2 = " + std::to_string(pairs));
    std::vector<std::uint8_t> axes(static_cast<std::size_t>(pairs), 0);
    if (interleaved) {
      for (std::int64_t i = 0; i < pairs; ++i) {
        if (i % 3 == 1 && i < 3 * sections[1]) axes[static_cast<std::size_t>(i)] = 1;
        if (i % 3 == 2 && i < 3 * sections[2]) axes[static_cast<std::size_t>(i)] = 2;
      }
    } else {
      std::int64_t i = 0;
      for (std::uint8_t a = 0; a < 3; ++a)
        for (std::int64_t k = 0; k < sections[a]; ++k) axes[static_cast<std::size_t>(i++)] = a;
    }
    out->sections_ = std::move(sections);
    out->interleaved_ = interleaved;
    out->axes_ = std::move(axes);
    return Status();
  }

  const std::vector<std::int64_t>& sections() const noexcept { return sections_; }
  bool interleaved() const noexcept { return interleaved_; }
  std::int64_t pairs() const noexcept { return static_cast<std::int64_t>(axes_.size()); }
  /// axis(i) for every pair i.
  const std::vector<std::uint8_t>& axes() const noexcept { return axes_; }

 private:
  std::vector<std::int64_t> sections_;
  bool interleaved_ = false;
  std::vector<std::uint8_t> axes_;
};

namespace detail {

// The angle row of token t for M-RoPE: plain when t = h = w, else pair by pair from three rows.
template <typename Angles, typename C>
struct MropeRows {
  const Angles& angles;
  const std::int64_t* positions;  // 3 x tokens
  std::int64_t tokens;
  const std::uint8_t* axes;
  C* scratch;  // 6 * pairs
  bool operator()(std::int64_t t, C* cbuf, C* sbuf, double scale, bool direct_ok, const C** c,
                  const C** s) const noexcept {
    const std::int64_t p0 = positions[t], p1 = positions[tokens + t],
                       p2 = positions[2 * tokens + t];
    if (p0 == p1 && p1 == p2) {
      const PlainRows<Angles, C> plain{angles, positions};
      return plain(t, cbuf, sbuf, scale, direct_ok, c, s);
    }
    const std::int64_t half = angles.pairs();
    const std::int64_t p[3] = {p0, p1, p2};
    for (int a = 0; a < 3; ++a)
      angles.fill(p[a], scratch + 2 * a * half, scratch + (2 * a + 1) * half, scale);
    for (std::int64_t i = 0; i < half; ++i) {
      const std::int64_t a = axes[i];
      cbuf[i] = scratch[2 * a * half + i];
      sbuf[i] = scratch[(2 * a + 1) * half + i];
    }
    *c = cbuf;
    *s = sbuf;
    return false;
  }
};

template <typename T, typename Angles>
inline Status mrope_call(const Angles& angles, const MropeSections& sections,
                         const std::int64_t* positions, const HeadsView<const T>* ins,
                         const HeadsView<T>* outs, int n, const char* const* names_in,
                         const char* const* names_out, PairLayout layout,
                         RotaryDirection direction) {
  Operand<T> ops[2];
  ROPESCALE_RETURN_IF_ERROR(
      prepare_rotary_call<T>(angles, ins, outs, n, names_in, names_out, layout, direction, ops));
  if (sections.pairs() != angles.pairs())
    return make_status(
        ErrorCode::kInvalidArgument, "sections.pairs()", sections.pairs(),
        "must equal the angle source's pairs (" + std::to_string(angles.pairs()) + ")");
  const std::int64_t tokens = n > 0 ? ins[0].tokens : 0;
  static const char* const kAxis[3] = {"temporal", "height", "width"};
  for (int a = 0; a < 3 && tokens > 0; ++a) {
    const Status st =
        check_positions(angles, positions == nullptr ? nullptr : positions + a * tokens, tokens);
    if (!st.ok())
      return Status(st.code(), st.message() + " (row " + std::to_string(a) + ", " + kAxis[a] +
                                   ", of the 3 x tokens positions)");
  }
  using C = compute_t<T>;
  const std::int64_t half = angles.pairs();
  std::vector<C> buf(static_cast<std::size_t>(row_buffer_size(half) + 6 * half));
  const MropeRows<Angles, C> rows{angles, positions, tokens, sections.axes().data(),
                                  buf.data() + row_buffer_size(half)};
  run_rotary_rows<T>(angles, rows, 0, tokens, ops, n, layout, direction, active_kernel_path(),
                     buf.data());
  return Status();
}

}  // namespace detail

/// M-RoPE in place: positions holds 3 x x.tokens ids (row-major: all temporal ids, then height,
/// then width). Status twin of apply_rotary_mrope.
template <typename T, typename Angles>
inline Status try_apply_rotary_mrope(const Angles& angles, const MropeSections& sections,
                                     const std::int64_t* positions, const HeadsView<T>& x,
                                     PairLayout layout,
                                     RotaryDirection direction = RotaryDirection::kForward) {
  const HeadsView<const T> in = x.as_const();
  const char* names[] = {"x"};
  return detail::mrope_call<T>(angles, sections, positions, &in, &x, 1, names, names, layout,
                               direction);
}
template <typename T, typename Angles>
inline void apply_rotary_mrope(const Angles& angles, const MropeSections& sections,
                               const std::int64_t* positions, const HeadsView<T>& x,
                               PairLayout layout,
                               RotaryDirection direction = RotaryDirection::kForward) {
  throw_if_error(try_apply_rotary_mrope(angles, sections, positions, x, layout, direction));
}

/// M-RoPE on queries and keys in place, one pass over the tokens (GQA head counts may differ).
template <typename T, typename Angles>
inline Status try_apply_rotary_mrope_qk(const Angles& angles, const MropeSections& sections,
                                        const std::int64_t* positions, const HeadsView<T>& q,
                                        const HeadsView<T>& k, PairLayout layout,
                                        RotaryDirection direction = RotaryDirection::kForward) {
  const HeadsView<const T> in[2] = {q.as_const(), k.as_const()};
  const HeadsView<T> out[2] = {q, k};
  const char* names[] = {"q", "k"};
  return detail::mrope_call<T>(angles, sections, positions, in, out, 2, names, names, layout,
                               direction);
}
template <typename T, typename Angles>
inline void apply_rotary_mrope_qk(const Angles& angles, const MropeSections& sections,
                                  const std::int64_t* positions, const HeadsView<T>& q,
                                  const HeadsView<T>& k, PairLayout layout,
                                  RotaryDirection direction = RotaryDirection::kForward) {
  throw_if_error(try_apply_rotary_mrope_qk(angles, sections, positions, q, k, layout, direction));
}

}  // namespace ropescale
