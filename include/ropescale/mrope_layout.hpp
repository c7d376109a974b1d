// ropescale: how multimodal RoPE (M-RoPE) assigns rotary pairs to position axes.
//
// Shared by the config reader (io/hf_config.hpp: RopeConfig::mrope_layout) and the kernels
// (mrope.hpp: MropeSections), so neither needs the other. See mrope.hpp for the layouts drawn out.
#pragma once

#include <cstdint>

namespace ropescale {

/// Which position axis each rotary pair reads, given the config's `mrope_section`.
enum class MropeLayout {
  /// Qwen2-VL / Qwen2.5-VL (3 axes) and HunYuan-VL xdrope (4 axes): consecutive blocks of
  /// section[a] pairs per axis a (HF apply_multimodal_rotary_pos_emb, apply_rotary_pos_emb_xdrope).
  kSectioned,
  /// Qwen3-VL (`mrope_interleaved`): t h w t h w ... (HF apply_interleaved_mrope); 3 axes.
  kInterleaved,
  /// ERNIE 4.5 VL: the first section[0] + section[1] pairs alternate height (even pairs) and
  /// width (odd pairs), the last section[2] pairs are temporal (HF
  /// Ernie4_5_VLMoeTextRotaryEmbedding.recomposition_to_3d); 3 axes, section[0] == section[1].
  kErnie3d,
};

/// The largest number of position axes an M-RoPE config may name (HunYuan-VL xdrope: 4).
inline constexpr std::int64_t kMaxMropeAxes = 4;

/// "sectioned", "interleaved", "ernie_3d".
inline const char* to_string(MropeLayout l) noexcept {
  switch (l) {
    case MropeLayout::kSectioned:
      return "sectioned";
    case MropeLayout::kInterleaved:
      return "interleaved";
    case MropeLayout::kErnie3d:
      return "ernie_3d";
  }
  return "unknown";
}

}  // namespace ropescale
