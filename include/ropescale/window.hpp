// ropescale: the one short/long rule. LongRoPE (Phi-3), LongRoPE2 and mixed context window
// training use two factor sets: the original RoPE ("short" window) and the rescaled one ("long").
// Which one a sequence uses is decided here, once (detail::rope_window), and every caller asks it:
// the config importer (RopeConfig::table_for / window_for), longrope_factors, the packer
// (packing.hpp) and serving and training code through select_window, the one public name. It
// returns Result<T>: the answer, or a Status naming the argument that broke which rule.
//
// Hugging Face's LongRoPE (`_compute_longrope_parameters` / Phi-3 `rope_modifier`) picks
//
//     long_factor   if max(position_ids) + 1 > original_max_position_embeddings
//     short_factor  otherwise
//
// so a sequence whose last position is original - 1 still uses the short (original) factors and
// one reaching position original switches. Hugging Face takes one max over the whole batch;
// select_window on a batch of position ids gives both the per-sequence choice and that one.
#pragma once

#include <Eigen/Core>
#include <algorithm>
#include <cstdint>
#include <limits>
#include <ostream>
#include <string>
#include <utility>
#include <vector>

#include "ropescale/error.hpp"
#include "ropescale/factors.hpp"
#include "ropescale/frequencies.hpp"

namespace ropescale {

/// Which factor set a sequence uses: the original ("short") or the rescaled ("long") RoPE.
enum class RopeWindow { kShort, kLong };

inline const char* to_string(RopeWindow w) noexcept {
  return w == RopeWindow::kShort ? "short" : "long";
}
inline std::ostream& operator<<(std::ostream& os, RopeWindow w) { return os << to_string(w); }

namespace detail {

// The short/long rule itself (Hugging Face `_compute_longrope_parameters`, Phi-3
// `rope_modifier`): the rescaled ("long") factors iff seq_len > original_max_position, where
// seq_len = max(position_ids) + 1. seq_len <= 0 is Hugging Face's init-time call: short. Unchecked
// and noexcept for the library's own callers (RopeConfig::window_for / table_for,
// longrope_factors, the packer); select_window is the public, checked form.
inline constexpr RopeWindow rope_window(std::int64_t seq_len,
                                        std::int64_t original_max_position) noexcept {
  return seq_len > original_max_position ? RopeWindow::kLong : RopeWindow::kShort;
}

inline Status check_original(std::int64_t original_max_position) {
  if (original_max_position <= 0)
    return make_status(ErrorCode::kInvalidArgument, "original_max_position", original_max_position,
                       "must be > 0");
  return Status();
}

// rope_window for a sequence whose furthest position id is max_position: seq_len = max_position
// + 1, where INT64_MAX (seq_len 2^63, past any int64 window) is long without overflowing.
inline constexpr RopeWindow window_of(std::int64_t max_position, std::int64_t original) noexcept {
  return max_position == std::numeric_limits<std::int64_t>::max()
             ? RopeWindow::kLong
             : rope_window(max_position + 1, original);
}

}  // namespace detail

/// The short/long rule (Hugging Face `_compute_longrope_parameters`, Phi-3 `rope_modifier`) for
/// a sequence whose furthest position id is max_position (>= 0): kLong iff max_position + 1 >
/// original_max_position.
///
///     select_window(4094, 4096) == kShort   (4095 tokens)
///     select_window(4095, 4096) == kShort   (4096 tokens: the whole original window)
///     select_window(4096, 4096) == kLong    (4097 tokens)
///
/// A server that has cached keys up to position `old` and now reaches `now` must switch tables
/// and re-rotate them (rerotate_keys) exactly when the two answers differ.
inline Result<RopeWindow> select_window(std::int64_t max_position,
                                        std::int64_t original_max_position) {
  ROPESCALE_RETURN_IF_ERROR(detail::check_original(original_max_position));
  if (max_position < 0)
    return make_status(ErrorCode::kInvalidArgument, "max_position", max_position, "must be >= 0");
  return detail::window_of(max_position, original_max_position);
}

/// The rule with the original window taken from a spec.
inline Result<RopeWindow> select_window(const RopeSpec& spec, std::int64_t max_position) {
  ROPESCALE_RETURN_IF_ERROR(validate(spec));
  return select_window(max_position, spec.original_max_position);
}

/// The rule applied to a sequence of position ids (its maximum, which need not be the last).
inline Result<RopeWindow> select_window(const std::int64_t* positions, std::int64_t count,
                                        std::int64_t original_max_position) {
  ROPESCALE_RETURN_IF_ERROR(detail::check_original(original_max_position));
  if (count <= 0) return make_status(ErrorCode::kInvalidArgument, "count", count, "must be > 0");
  if (positions == nullptr)
    return make_status(ErrorCode::kInvalidArgument, "positions", nullptr, "must not be null");
  std::int64_t max_position = 0;
  for (std::int64_t t = 0; t < count; ++t) {
    if (positions[t] < 0)
      return make_status(ErrorCode::kInvalidArgument, "positions[" + std::to_string(t) + "]",
                         positions[t], "must be >= 0");
    max_position = std::max(max_position, positions[t]);
  }
  return select_window(max_position, original_max_position);
}

/// Row-major [batch, sequence] position ids, the shape of Hugging Face's `position_ids`.
using PositionMatrix = Eigen::Matrix<std::int64_t, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

/// The rule applied to a batch of sequences: each row's own window, and Hugging Face's single
/// choice for the whole batch.
struct BatchWindows {
  /// One window per row of `position_ids`: training code that rotates each sequence with its
  /// own table uses these.
  std::vector<RopeWindow> per_sequence;
  /// Hugging Face's choice (one max over every position id): kLong as soon as any sequence is
  /// long. Short sequences batched with a long one then get the long factors, which is why
  /// mixed-window training keeps short and long samples in separate batches or rotates per
  /// sequence.
  RopeWindow batch = RopeWindow::kShort;
};

/// The rule applied to every row of a [batch, sequence] matrix of position ids.
inline Result<BatchWindows> select_window(const Eigen::Ref<const PositionMatrix>& position_ids,
                                          std::int64_t original_max_position) {
  ROPESCALE_RETURN_IF_ERROR(detail::check_original(original_max_position));
  if (position_ids.rows() <= 0 || position_ids.cols() <= 0)
    return make_status(
        ErrorCode::kInvalidArgument, "position_ids shape",
        std::to_string(position_ids.rows()) + "x" + std::to_string(position_ids.cols()),
        "must have at least one row and one column");
  BatchWindows out;
  out.per_sequence.resize(static_cast<std::size_t>(position_ids.rows()));
  for (Eigen::Index b = 0; b < position_ids.rows(); ++b) {
    std::int64_t max_position = 0;
    for (Eigen::Index t = 0; t < position_ids.cols(); ++t) {
      const std::int64_t p = position_ids(b, t);
      if (p < 0)
        return make_status(ErrorCode::kInvalidArgument,
                           "position_ids(" + std::to_string(b) + ", " + std::to_string(t) + ")", p,
                           "must be >= 0");
      max_position = std::max(max_position, p);
    }
    const RopeWindow w = detail::window_of(max_position, original_max_position);
    out.per_sequence[static_cast<std::size_t>(b)] = w;
    if (w == RopeWindow::kLong) out.batch = RopeWindow::kLong;
  }
  return out;
}

}  // namespace ropescale
