// ropescale: multimodal RoPE (M-RoPE) of Qwen2-VL, Qwen2.5-VL, Qwen3-VL, ERNIE 4.5 VL and
// HunYuan-VL (xdrope).
//
// Every token carries N position ids (N = mrope_section.size(): 3 for (temporal, height, width),
// 4 for HunYuan-VL's (position, width, height, image index)); a text token has them all equal.
// Each rotary pair takes its angle from one of the N, chosen by the config's `mrope_section`
// (pairs per axis, summing to rotary_dim / 2) and the layout (mrope_layout.hpp):
//
//   sectioned  (Qwen2-VL, Qwen2.5-VL; HF apply_multimodal_rotary_pos_emb), section [16, 24, 24]:
//       pair  0 .. 15 -> axis 0     16 .. 39 -> axis 1     40 .. 63 -> axis 2
//     (HunYuan-VL xdrope: the same with 4 axes, [16, 16, 16, 16], as HunyuanOCR's own
//     apply_rotary_pos_emb_xdrope trains it (sections * 2, list doubling). transformers v5's port
//     (modular_hunyuan_vl.py apply_multimodal_rotary_pos_emb) doubles each section instead, so on
//     image tokens the two channels of a pair read different axes; text tokens agree.)
//   interleaved (Qwen3-VL, `mrope_interleaved: true`; HF apply_interleaved_mrope), [24, 20, 20]:
//       pair i -> 1 if i % 3 == 1 and i < 3 * section[1]
//                 2 if i % 3 == 2 and i < 3 * section[2]
//                 0 otherwise                          (t h w t h w ... t t t t)
//   ernie_3d   (ERNIE 4.5 VL; HF Ernie4_5_VLMoeTextRotaryEmbedding), [22, 22, 20]:
//       pair i -> 1 if i < 2 * section[0] and i even,  2 if i < 2 * section[0] and i odd,
//                 0 otherwise                          (h w h w ... h w t t ... t)
//
// The angle of pair i at token n is positions[axis(i) * tokens + n] * inv_freq_i: positions are
// given as N x tokens (HF's position_ids[N, seq]), row-major. The pair's channels, the
// half-split / interleaved layouts (ERNIE pairs adjacent channels: PairLayout::kInterleaved), the
// attention factor and the directions are those of rotary.hpp. A token whose N ids are equal
// takes exactly the plain apply_rotary path, so text tokens are bit for bit plain RoPE.
//
// The frequencies are the ordinary ones (Qwen2-VL's rope_scaling is {"type": "mrope"}, read as
// default RoPE plus the sections; HunYuan-VL's is dynamic + alpha), so any RotaryCache /
// RotaryCacheD / RotaryFrequencies serves.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "ropescale/error.hpp"
#include "ropescale/mrope_layout.hpp"
#include "ropescale/rotary.hpp"

namespace ropescale {

/// Which position axis (0 .. num_axes() - 1) each rotary pair reads.
class MropeSections {
 public:
  MropeSections() = default;

  /// `sections`: pairs per axis (1 to kMaxMropeAxes entries, each >= 0, sum == pairs); `layout`:
  /// see mrope_layout.hpp. An error names the field on bad input.
  static Result<MropeSections> make(std::vector<std::int64_t> sections, MropeLayout layout,
                                    std::int64_t pairs) {
    if (pairs <= 0) return make_status(ErrorCode::kInvalidArgument, "pairs", pairs, "must be > 0");
    // One axis byte per pair is allocated below: bound it by the widest head a RopeSpec allows.
    if (pairs > kMaxHeadDim / 2)
      return make_status(ErrorCode::kInvalidArgument, "pairs", pairs,
                         "must be <= kMaxHeadDim / 2 = " + std::to_string(kMaxHeadDim / 2));
    const std::int64_t n = static_cast<std::int64_t>(sections.size());
    if (layout == MropeLayout::kSectioned) {
      if (n < 1 || n > kMaxMropeAxes)
        return make_status(ErrorCode::kInvalidArgument, "mrope_section.size()", n,
                           "must be in [1, " + std::to_string(kMaxMropeAxes) +
                               "] (one entry per position axis) for the sectioned layout");
    } else if (n != 3) {
      return make_status(ErrorCode::kInvalidArgument, "mrope_section.size()", n,
                         std::string("must be 3 (temporal, height, width) for the ") +
                             to_string(layout) + " layout");
    }
    std::int64_t sum = 0;
    for (std::size_t a = 0; a < sections.size(); ++a) {
      if (sections[a] < 0 || sections[a] > pairs)
        return make_status(ErrorCode::kInvalidArgument, "mrope_section[" + std::to_string(a) + "]",
                           sections[a],
                           "must be in [0, rotary_dim / 2 = " + std::to_string(pairs) + "]");
      sum += sections[a];
    }
    if (sum != pairs)
      return make_status(ErrorCode::kInvalidArgument, "sum(mrope_section)", sum,
                         "must equal rotary_dim / 2 = " + std::to_string(pairs));
    if (layout == MropeLayout::kErnie3d && sections[0] != sections[1])
      return make_status(ErrorCode::kInvalidArgument, "mrope_section[1]", sections[1],
                         "must equal mrope_section[0] (" + std::to_string(sections[0]) +
                             "): ERNIE's 3D layout alternates height and width pair by pair");
    std::vector<std::uint8_t> axes(static_cast<std::size_t>(pairs), 0);
    switch (layout) {
      case MropeLayout::kInterleaved:
        for (std::int64_t i = 0; i < pairs; ++i) {
          if (i % 3 == 1 && i < 3 * sections[1]) axes[static_cast<std::size_t>(i)] = 1;
          if (i % 3 == 2 && i < 3 * sections[2]) axes[static_cast<std::size_t>(i)] = 2;
        }
        break;
      case MropeLayout::kErnie3d:
        for (std::int64_t i = 0; i < 2 * sections[0]; ++i)
          axes[static_cast<std::size_t>(i)] = i % 2 == 0 ? 1 : 2;
        break;
      case MropeLayout::kSectioned: {
        std::int64_t i = 0;
        for (std::size_t a = 0; a < sections.size(); ++a)
          for (std::int64_t k = 0; k < sections[a]; ++k)
            axes[static_cast<std::size_t>(i++)] = static_cast<std::uint8_t>(a);
        break;
      }
    }
    MropeSections out;
    out.sections_ = std::move(sections);
    out.layout_ = layout;
    out.axes_ = std::move(axes);
    return out;
  }
  /// `interleaved`: Qwen3-VL's layout, else sectioned.
  static Result<MropeSections> make(std::vector<std::int64_t> sections, bool interleaved,
                                    std::int64_t pairs) {
    return make(std::move(sections),
                interleaved ? MropeLayout::kInterleaved : MropeLayout::kSectioned, pairs);
  }

  /// make(...).value(): throw Error on bad input (abort without exceptions).
  MropeSections(std::vector<std::int64_t> sections, MropeLayout layout, std::int64_t pairs)
      : MropeSections(make(std::move(sections), layout, pairs).value()) {}
  MropeSections(std::vector<std::int64_t> sections, bool interleaved, std::int64_t pairs)
      : MropeSections(make(std::move(sections), interleaved, pairs).value()) {}

  const std::vector<std::int64_t>& sections() const noexcept { return sections_; }
  MropeLayout layout() const noexcept { return layout_; }
  bool interleaved() const noexcept { return layout_ == MropeLayout::kInterleaved; }
  /// Number of position axes N: positions are N x tokens.
  std::int64_t num_axes() const noexcept { return static_cast<std::int64_t>(sections_.size()); }
  std::int64_t pairs() const noexcept { return static_cast<std::int64_t>(axes_.size()); }
  /// axis(i) for every pair i.
  const std::vector<std::uint8_t>& axes() const noexcept { return axes_; }

 private:
  std::vector<std::int64_t> sections_;
  MropeLayout layout_ = MropeLayout::kSectioned;
  std::vector<std::uint8_t> axes_;
};

namespace detail {

// The angle row of token t for M-RoPE: plain when every axis id is equal, else pair by pair from
// the N axis rows.
template <typename Angles, typename C>
struct MropeRows {
  const Angles& angles;
  const std::int64_t* positions;  // num_axes x tokens
  std::int64_t tokens;
  int num_axes;
  const std::uint8_t* axes;
  C* scratch;  // 2 * num_axes * pairs
  bool operator()(std::int64_t t, C* cbuf, C* sbuf, double scale, bool direct_ok, const C** c,
                  const C** s) const noexcept {
    bool same = true;
    for (int a = 1; a < num_axes; ++a) same = same && positions[a * tokens + t] == positions[t];
    if (same) {
      const PlainRows<Angles, C> plain{angles, positions};
      return plain(t, cbuf, sbuf, scale, direct_ok, c, s);
    }
    const std::int64_t half = angles.pairs();
    for (int a = 0; a < num_axes; ++a)
      angles.fill(positions[a * tokens + t], scratch + 2 * a * half, scratch + (2 * a + 1) * half,
                  scale);
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
  const int num_axes = static_cast<int>(sections.num_axes());
  static const char* const kAxis[3] = {"temporal", "height", "width"};
  for (int a = 0; a < num_axes && tokens > 0; ++a) {
    const Status st =
        check_positions(angles, positions == nullptr ? nullptr : positions + a * tokens, tokens);
    if (!st.ok())
      return st.with_context("row " + std::to_string(a) +
                             (num_axes == 3 ? std::string(", ") + kAxis[a] : std::string()) +
                             ", of the " + std::to_string(num_axes) + " x tokens positions");
  }
  using C = compute_t<T>;
  const std::int64_t half = angles.pairs();
  std::vector<C> buf(static_cast<std::size_t>(row_buffer_size(half) + 2 * num_axes * half));
  const MropeRows<Angles, C> rows{angles,
                                  positions,
                                  tokens,
                                  num_axes,
                                  sections.axes().data(),
                                  buf.data() + row_buffer_size(half)};
  run_rotary_rows<T>(angles, rows, 0, tokens, ops, n, layout, direction, active_kernel_path(),
                     buf.data());
  return Status();
}

}  // namespace detail

/// M-RoPE in place: positions holds sections.num_axes() x x.tokens ids (row-major: all ids of
/// axis 0, then axis 1, ...). The direction as for rotate (rotary.hpp).
template <typename T, typename Angles>
inline Status rotate_mrope(const Angles& angles, const MropeSections& sections,
                           const std::int64_t* positions, const HeadsView<T>& x, PairLayout layout,
                           RotaryDirection direction = RotaryDirection::kForward) {
  const HeadsView<const T> in = x.as_const();
  const char* names[] = {"x"};
  return detail::mrope_call<T>(angles, sections, positions, &in, &x, 1, names, names, layout,
                               direction);
}

/// M-RoPE on queries and keys in place, one pass over the tokens (GQA head counts may differ).
template <typename T, typename Angles>
inline Status rotate_mrope(const Angles& angles, const MropeSections& sections,
                           const std::int64_t* positions, const HeadsView<T>& q,
                           const HeadsView<T>& k, PairLayout layout,
                           RotaryDirection direction = RotaryDirection::kForward) {
  const HeadsView<const T> in[2] = {q.as_const(), k.as_const()};
  const HeadsView<T> out[2] = {q, k};
  const char* names[] = {"q", "k"};
  return detail::mrope_call<T>(angles, sections, positions, in, out, 2, names, names, layout,
                               direction);
}

}  // namespace ropescale
