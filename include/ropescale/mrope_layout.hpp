// ropescale: how multimodal RoPE (M-RoPE) assigns rotary pairs to position axes.
//
// MropeLayout (the config reader's RopeConfig::mrope_layout) and MropeSections (the axis of every
// pair, checked against the config's sections), shared by the config reader (io/hf_config.hpp)
// and the rotation (mrope.hpp), so neither needs the other. See mrope.hpp for the layouts drawn
// out.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "ropescale/error.hpp"
#include "ropescale/frequencies.hpp"

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

}  // namespace ropescale
