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

#pragma push_macro("ROPESCALE_INSIDE_PUBLIC_HEADER")
#define ROPESCALE_INSIDE_PUBLIC_HEADER
#include "ropescale/detail/call/mrope_call.hpp"
#pragma pop_macro("ROPESCALE_INSIDE_PUBLIC_HEADER")

namespace ropescale {

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
