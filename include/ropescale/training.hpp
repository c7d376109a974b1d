// ropescale: mixed context window training and serving helpers (LongRoPE2 section 3.3).
//
// LongRoPE2 fine-tunes one model on two kinds of samples at once: short windows keep the original
// RoPE and long windows use the rescaled one. At inference the model switches factor sets when the
// furthest position crosses the pre-training window. This header gives training and serving code
// the four pieces that scheme needs:
//
//   selection      which factor set a sequence uses (the Hugging Face rule) .... select_window
//   packing        documents -> training segments, position ids, masks ......... pack_documents
//   gradients      the transpose of the rotary kernel for backpropagation ....... rotary_backward
//   KV cache       re-rotate cached keys from one factor table to another ...... rerotate_keys
//
// ## Selection
//
// Hugging Face's LongRoPE (`_compute_longrope_parameters` / Phi-3 `rope_modifier`) picks
//
//     long_factor   if max(position_ids) + 1 > original_max_position_embeddings
//     short_factor  otherwise
//
// so a sequence whose last position is original - 1 still uses the short (original) factors and
// one reaching position original switches. Hugging Face takes one max over the whole batch;
// select_windows gives the per-sequence choice and batch_window Hugging Face's single one.
//
// ## Packing (LongRoPE2 section 3.3, Fig. 5)
//
//   short documents (length <= original_max_position), packed whole, next fit in input order:
//     segment  | doc 3    | doc 5      | doc 6  |         positions 0 1 2 | 0 1 2 3 | 0 1 ..
//     mask     per-document causal (block diagonal), original RoPE (short factors)
//   long documents (length > original_max_position), packed back to back or chunked:
//     segment  | doc 1 ............................ | doc 4 (first part) ...|
//     positions 0 1 2 ...                                      ... segment_length - 1
//     mask     full causal across the segment, rescaled RoPE (the paper's choice)
//     or, with long_mask = kDocumentCausal, positions restart and the mask is per document (the
//     nnscaler reference training code: Hugging Face's varlen path splits at position resets)
//
// Every segment records its document pieces and `cu_seqlens`, the cumulative boundaries of its
// attention blocks that FlashAttention's varlen kernels take ({0, length} for full causal), and
// can build a dense boolean mask for small sizes. Its RoPE window is the Hugging Face rule applied
// to its own position ids, so training uses exactly the factors inference will use for them.
//
// ## Gradients
//
// Forward RoPE is y = m R(theta) x per pair, so dL/dx = m R(theta)^T dL/dy = m R(-theta) dL/dy:
// the upstream gradient rotated by the inverse angle and scaled by the attention factor m (not
// 1/m as the inverse would be). Pass-through channels [rotary_dim, head_dim) get the gradient
// unchanged.
//
// ## KV cache re-rotation
//
// A key cached at position p with table A is k_A = m_A R(p theta_A) k. The same key under table B
// is m_B R(p theta_B) k = (m_B / m_A) R(p (theta_B - theta_A)) k_A: undoing A and applying B is a
// single rotation by the frequency difference with scale m_B / m_A, one read and one write of the
// cache and no key projections. Hugging Face recomputes the whole prefix instead.
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
#include "ropescale/rotary.hpp"

namespace ropescale {

// =============================================================================================
// Selection
// =============================================================================================

/// Which factor set a sequence uses: the original ("short") or the rescaled ("long") RoPE.
enum class RopeWindow { kShort, kLong };

inline const char* to_string(RopeWindow w) noexcept {
  return w == RopeWindow::kShort ? "short" : "long";
}
inline std::ostream& operator<<(std::ostream& os, RopeWindow w) { return os << to_string(w); }

namespace detail {

inline Status check_original(std::int64_t original_max_position) {
  if (original_max_position <= 0)
    return make_status(ErrorCode::kInvalidArgument, "original_max_position", original_max_position,
                       "must be > 0");
  return Status();
}

inline RopeWindow window_of(std::int64_t max_position, std::int64_t original) noexcept {
  // max_position + 1 > original without overflow at INT64_MAX.
  return max_position >= original ? RopeWindow::kLong : RopeWindow::kShort;
}

}  // namespace detail

/// The Hugging Face rule: kLong iff max_position + 1 > original_max_position. Status twin of
/// select_window; writes *out only on success.
inline Status try_select_window(std::int64_t max_position, std::int64_t original_max_position,
                                RopeWindow* out) {
  ROPESCALE_RETURN_IF_ERROR(detail::check_original(original_max_position));
  if (max_position < 0)
    return make_status(ErrorCode::kInvalidArgument, "max_position", max_position, "must be >= 0");
  if (out == nullptr)
    return make_status(ErrorCode::kInvalidArgument, "out", nullptr, "must not be null");
  *out = detail::window_of(max_position, original_max_position);
  return Status();
}

/// The Hugging Face rule for a sequence whose furthest position id is max_position:
///
///     select_window(4094, 4096) == kShort   (4095 tokens)
///     select_window(4095, 4096) == kShort   (4096 tokens: the whole original window)
///     select_window(4096, 4096) == kLong    (4097 tokens)
inline RopeWindow select_window(std::int64_t max_position, std::int64_t original_max_position) {
  RopeWindow w = RopeWindow::kShort;
  throw_if_error(try_select_window(max_position, original_max_position, &w));
  return w;
}

/// The rule with the original window taken from a spec.
inline RopeWindow select_window(const RopeSpec& spec, std::int64_t max_position) {
  throw_if_error(validate(spec));
  return select_window(max_position, spec.original_max_position);
}

/// The rule applied to a sequence of position ids (its maximum, which need not be the last).
inline Status try_select_window(const std::int64_t* positions, std::int64_t count,
                                std::int64_t original_max_position, RopeWindow* out) {
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
  return try_select_window(max_position, original_max_position, out);
}
inline RopeWindow select_window(const std::int64_t* positions, std::int64_t count,
                                std::int64_t original_max_position) {
  RopeWindow w = RopeWindow::kShort;
  throw_if_error(try_select_window(positions, count, original_max_position, &w));
  return w;
}

/// Row-major [batch, sequence] position ids, the shape of Hugging Face's `position_ids`.
using PositionMatrix = Eigen::Matrix<std::int64_t, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

/// Per-sequence choice for a batch: one window per row of `position_ids`. Training code that
/// rotates each sequence with its own table uses this; see batch_window for Hugging Face's.
inline Status try_select_windows(const Eigen::Ref<const PositionMatrix>& position_ids,
                                 std::int64_t original_max_position, std::vector<RopeWindow>* out) {
  ROPESCALE_RETURN_IF_ERROR(detail::check_original(original_max_position));
  if (position_ids.rows() <= 0 || position_ids.cols() <= 0)
    return make_status(
        ErrorCode::kInvalidArgument, "position_ids shape",
        std::to_string(position_ids.rows()) + "x" + std::to_string(position_ids.cols()),
        "must have at least one row and one column");
  if (out == nullptr)
    return make_status(ErrorCode::kInvalidArgument, "out", nullptr, "must not be null");
  std::vector<RopeWindow> windows(static_cast<std::size_t>(position_ids.rows()));
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
    windows[static_cast<std::size_t>(b)] = detail::window_of(max_position, original_max_position);
  }
  *out = std::move(windows);
  return Status();
}
inline std::vector<RopeWindow> select_windows(const Eigen::Ref<const PositionMatrix>& position_ids,
                                              std::int64_t original_max_position) {
  std::vector<RopeWindow> out;
  throw_if_error(try_select_windows(position_ids, original_max_position, &out));
  return out;
}

/// Hugging Face's single choice for a whole batch (one max over every position id): kLong as
/// soon as any sequence is long. Short sequences batched with a long one then get the long
/// factors, which is why mixed-window training keeps short and long samples in separate batches
/// or rotates per sequence.
inline RopeWindow batch_window(const Eigen::Ref<const PositionMatrix>& position_ids,
                               std::int64_t original_max_position) {
  const std::vector<RopeWindow> w = select_windows(position_ids, original_max_position);
  return std::find(w.begin(), w.end(), RopeWindow::kLong) != w.end() ? RopeWindow::kLong
                                                                     : RopeWindow::kShort;
}

/// The table of a window: `short_factors` for kShort, `long_factors` for kLong.
inline const FactorTable& select_factors(RopeWindow window, const FactorTable& short_factors,
                                         const FactorTable& long_factors) noexcept {
  return window == RopeWindow::kShort ? short_factors : long_factors;
}

/// True when generation that has reached `old_max_position` and now reaches `new_max_position`
/// crosses the original window, i.e. the moment a server must switch tables and re-rotate its
/// cached keys (rerotate_keys).
inline bool window_switches(std::int64_t old_max_position, std::int64_t new_max_position,
                            std::int64_t original_max_position) {
  return select_window(old_max_position, original_max_position) !=
         select_window(new_max_position, original_max_position);
}

// =============================================================================================
// Packing
// =============================================================================================

/// Attention pattern inside a segment.
enum class MaskKind {
  kDocumentCausal,  ///< causal within each document piece, nothing across pieces
  kFullCausal,      ///< causal over the whole segment, across document boundaries
};
inline const char* to_string(MaskKind k) noexcept {
  return k == MaskKind::kDocumentCausal ? "document_causal" : "full_causal";
}
inline std::ostream& operator<<(std::ostream& os, MaskKind k) { return os << to_string(k); }

/// How documents longer than the original window fill long segments.
enum class LongPacking {
  kPack,   ///< back to back; a document that does not fit continues in the next segment
  kChunk,  ///< each document on its own, cut into segment_length chunks (no two documents mix)
};
inline const char* to_string(LongPacking p) noexcept {
  return p == LongPacking::kPack ? "pack" : "chunk";
}

/// Packing parameters. LongRoPE2 trains on segment_length = 131072 with original 4096 (Phi3-mini)
/// or 8192 (LLaMA3-8B).
struct PackOptions {
  std::int64_t segment_length = 131072;       ///< training length L, tokens per segment
  std::int64_t original_max_position = 4096;  ///< pre-training window L_train
  LongPacking long_packing = LongPacking::kPack;
  /// Mask of long segments: kFullCausal with continuous positions (LongRoPE2 Fig. 5b), or
  /// kDocumentCausal with positions restarting per document piece (nnscaler's training code).
  MaskKind long_mask = MaskKind::kFullCausal;
};

/// A contiguous run of one document inside one segment.
struct DocumentPiece {
  std::int64_t document = 0;         ///< index into the input lengths
  std::int64_t document_offset = 0;  ///< first token of the piece within its document
  std::int64_t segment_offset = 0;   ///< first token of the piece within the segment
  std::int64_t length = 0;           ///< tokens
  std::int64_t first_position = 0;   ///< position id of the piece's first token

  friend bool operator==(const DocumentPiece& a, const DocumentPiece& b) noexcept {
    return a.document == b.document && a.document_offset == b.document_offset &&
           a.segment_offset == b.segment_offset && a.length == b.length &&
           a.first_position == b.first_position;
  }
};

/// Dense attention mask: mask(i, j) is true when query token i may attend to key token j.
using DenseMask = Eigen::Matrix<bool, Eigen::Dynamic, Eigen::Dynamic>;

/// Segments larger than this refuse to build a dense mask (64 MiB of bools).
constexpr std::int64_t kMaxDenseMaskTokens = 8192;
/// Largest segment (tokens) any call accepts; LongRoPE2 trains on 2^17.
constexpr std::int64_t kMaxSegmentTokens = std::int64_t{1} << 40;
/// Most segments one pack_documents call may produce (each holds vectors; beyond this the plan
/// alone would take gigabytes).
constexpr std::int64_t kMaxPackSegments = std::int64_t{1} << 22;

/// One training sample: document pieces, its RoPE window and its mask.
struct PackedSegment {
  RopeWindow window = RopeWindow::kShort;  ///< Hugging Face rule on this segment's position ids
  MaskKind mask = MaskKind::kDocumentCausal;
  std::int64_t length = 0;  ///< tokens, <= segment_length (only a pool's last segment is shorter)
  std::vector<DocumentPiece> pieces;
  /// Attention block boundaries, FlashAttention varlen style: {0, b1, ..., length}. Document
  /// masks have one block per piece, full causal one block {0, length}.
  std::vector<std::int64_t> cu_seqlens;

  /// Largest block length (FlashAttention's max_seqlen).
  std::int64_t max_seqlen() const noexcept {
    std::int64_t m = 0;
    for (std::size_t i = 1; i < cu_seqlens.size(); ++i)
      m = std::max(m, cu_seqlens[i] - cu_seqlens[i - 1]);
    return m;
  }
  /// Largest position id in the segment.
  std::int64_t max_position() const noexcept {
    std::int64_t m = 0;
    for (const DocumentPiece& p : pieces) m = std::max(m, p.first_position + p.length - 1);
    return m;
  }
  /// Checks a segment built by hand (pack_documents' segments always pass): 0 <= length <=
  /// kMaxSegmentTokens, pieces inside [0, length) with positions in [0, kMaxPosition), and
  /// cu_seqlens non-decreasing from 0 to length.
  Status validate() const {
    auto bad = [](const std::string& what, std::int64_t v, const std::string& rule) {
      return make_status(ErrorCode::kInvalidArgument, "segment." + what, v, rule);
    };
    if (length < 0 || length > kMaxSegmentTokens)
      return bad("length", length, "must be in [0, 2^40]");
    for (std::size_t k = 0; k < pieces.size(); ++k) {
      const DocumentPiece& p = pieces[k];
      const std::string n = "pieces[" + std::to_string(k) + "]";
      if (p.length < 0 || p.length > length)
        return bad(n + ".length", p.length, "must be in [0, segment.length]");
      if (p.segment_offset < 0 || p.segment_offset > length - p.length)
        return bad(n + ".segment_offset", p.segment_offset,
                   "must be in [0, segment.length - length]");
      if (p.first_position < 0 || p.first_position > kMaxPosition - p.length)
        return bad(n + ".first_position", p.first_position,
                   "must be >= 0 with first_position + length <= 2^48");
    }
    if (!cu_seqlens.empty()) {
      if (cu_seqlens.front() != 0) return bad("cu_seqlens[0]", cu_seqlens.front(), "must be 0");
      for (std::size_t i = 1; i < cu_seqlens.size(); ++i)
        if (cu_seqlens[i] < cu_seqlens[i - 1] || cu_seqlens[i] > length)
          return bad("cu_seqlens[" + std::to_string(i) + "]", cu_seqlens[i],
                     "must be non-decreasing and <= segment.length");
    }
    return Status();
  }
  /// Status twin of position_ids.
  Status try_position_ids(std::vector<std::int64_t>* out) const {
    if (out == nullptr)
      return make_status(ErrorCode::kInvalidArgument, "out", nullptr, "must not be null");
    ROPESCALE_RETURN_IF_ERROR(validate());
    std::vector<std::int64_t> ids(static_cast<std::size_t>(length));
    for (const DocumentPiece& p : pieces)
      for (std::int64_t t = 0; t < p.length; ++t)
        ids[static_cast<std::size_t>(p.segment_offset + t)] = p.first_position + t;
    *out = std::move(ids);
    return Status();
  }
  /// One position id per token, ready for apply_rotary. Throws Error on an invalid segment.
  std::vector<std::int64_t> position_ids() const {
    std::vector<std::int64_t> out;
    throw_if_error(try_position_ids(&out));
    return out;
  }
  /// Status twin of dense_mask.
  Status try_dense_mask(DenseMask* out, std::int64_t max_tokens = kMaxDenseMaskTokens) const {
    if (out == nullptr)
      return make_status(ErrorCode::kInvalidArgument, "out", nullptr, "must not be null");
    ROPESCALE_RETURN_IF_ERROR(validate());
    if (length > max_tokens)
      return make_status(ErrorCode::kInvalidArgument, "segment length", length,
                         "must be <= max_tokens (" + std::to_string(max_tokens) +
                             ") for a dense mask; use cu_seqlens");
    DenseMask m = DenseMask::Constant(static_cast<Eigen::Index>(length),
                                      static_cast<Eigen::Index>(length), false);
    for (std::size_t b = 1; b < cu_seqlens.size(); ++b)
      for (std::int64_t i = cu_seqlens[b - 1]; i < cu_seqlens[b]; ++i)
        for (std::int64_t j = cu_seqlens[b - 1]; j <= i; ++j)
          m(static_cast<Eigen::Index>(i), static_cast<Eigen::Index>(j)) = true;
    *out = std::move(m);
    return Status();
  }
  /// The [length, length] boolean mask of this segment (block-diagonal causal). Throws Error if
  /// length > max_tokens.
  DenseMask dense_mask(std::int64_t max_tokens = kMaxDenseMaskTokens) const {
    DenseMask m;
    throw_if_error(try_dense_mask(&m, max_tokens));
    return m;
  }
};

/// The result of pack_documents: short segments first, then long ones.
struct PackingPlan {
  PackOptions options;
  std::vector<PackedSegment> segments;
  std::int64_t num_documents = 0;
  std::int64_t total_tokens = 0;  ///< sum of the input lengths; every token is in one segment

  std::int64_t count(RopeWindow w) const noexcept {
    return static_cast<std::int64_t>(std::count_if(
        segments.begin(), segments.end(), [w](const PackedSegment& s) { return s.window == w; }));
  }
  /// Filled fraction of segments * segment_length.
  double fill_ratio() const noexcept {
    if (segments.empty()) return 0.0;
    return static_cast<double>(total_tokens) /
           (static_cast<double>(segments.size()) * static_cast<double>(options.segment_length));
  }
};

namespace detail {

inline Status check_pack_options(const PackOptions& o) {
  ROPESCALE_RETURN_IF_ERROR(check_original(o.original_max_position));
  if (o.segment_length > kMaxSegmentTokens)
    return make_status(ErrorCode::kInvalidArgument, "segment_length", o.segment_length,
                       "must be <= 2^40");
  if (o.segment_length <= o.original_max_position)
    return make_status(ErrorCode::kInvalidArgument, "segment_length", o.segment_length,
                       "must be > original_max_position (" +
                           std::to_string(o.original_max_position) +
                           "): long segments exceed the original window and every short "
                           "document must fit one segment");
  if (o.long_packing != LongPacking::kPack && o.long_packing != LongPacking::kChunk)
    return make_status(ErrorCode::kInvalidArgument, "long_packing",
                       static_cast<int>(o.long_packing), "must be kPack or kChunk");
  if (o.long_mask != MaskKind::kFullCausal && o.long_mask != MaskKind::kDocumentCausal)
    return make_status(ErrorCode::kInvalidArgument, "long_mask", static_cast<int>(o.long_mask),
                       "must be kFullCausal or kDocumentCausal");
  return Status();
}

// Closes the open segment: cu_seqlens and window from its pieces.
inline void finish_segment(PackedSegment& s, std::int64_t original,
                           std::vector<PackedSegment>& out) {
  if (s.length == 0) return;
  s.cu_seqlens.assign(1, 0);
  if (s.mask == MaskKind::kFullCausal) {
    s.cu_seqlens.push_back(s.length);
  } else {
    for (const DocumentPiece& p : s.pieces) s.cu_seqlens.push_back(p.segment_offset + p.length);
  }
  s.window = window_of(s.max_position(), original);
  out.push_back(std::move(s));
  s = PackedSegment();
}

}  // namespace detail

/// Status twin of pack_documents; writes *out only on success.
inline Status try_pack_documents(const std::vector<std::int64_t>& lengths,
                                 const PackOptions& options, PackingPlan* out) {
  ROPESCALE_RETURN_IF_ERROR(detail::check_pack_options(options));
  if (out == nullptr)
    return make_status(ErrorCode::kInvalidArgument, "out", nullptr, "must not be null");
  std::int64_t total = 0;
  for (std::size_t d = 0; d < lengths.size(); ++d) {
    if (lengths[d] <= 0)
      return make_status(ErrorCode::kInvalidArgument, "lengths[" + std::to_string(d) + "]",
                         lengths[d], "must be > 0");
    if (lengths[d] > std::numeric_limits<std::int64_t>::max() - total)
      return make_status(ErrorCode::kInvalidArgument, "lengths[" + std::to_string(d) + "]",
                         lengths[d], "total token count overflows int64");
    total += lengths[d];
  }
  const std::int64_t L = options.segment_length;
  const std::int64_t orig = options.original_max_position;
  {
    // Refuse before building a plan that would not fit in memory. Upper bound on its segments:
    // next fit closes a short segment only when two neighbours hold more than L tokens; long
    // tokens cut at L, plus one partial segment per document when chunked.
    std::int64_t short_tokens = 0, long_tokens = 0, long_docs = 0;
    for (std::int64_t n : lengths) (n > orig ? (++long_docs, long_tokens) : short_tokens) += n;
    const double bound =
        2.0 * static_cast<double>(short_tokens / L) + 2.0 + static_cast<double>(long_tokens / L) +
        static_cast<double>(options.long_packing == LongPacking::kChunk ? long_docs : 1);
    if (bound > static_cast<double>(kMaxPackSegments))
      return make_status(ErrorCode::kInvalidArgument, "total tokens", total,
                         "would need more than 2^22 segments of " + std::to_string(L) +
                             " tokens (kMaxPackSegments)");
  }
  PackingPlan plan;
  plan.options = options;
  plan.num_documents = static_cast<std::int64_t>(lengths.size());
  plan.total_tokens = total;

  // Short pool: whole documents, next fit in input order, positions restart per document.
  PackedSegment cur;
  cur.mask = MaskKind::kDocumentCausal;
  for (std::size_t d = 0; d < lengths.size(); ++d) {
    const std::int64_t n = lengths[d];
    if (n > orig) continue;
    if (cur.length + n > L) {
      detail::finish_segment(cur, orig, plan.segments);
      cur.mask = MaskKind::kDocumentCausal;
    }
    cur.pieces.push_back({static_cast<std::int64_t>(d), 0, cur.length, n, 0});
    cur.length += n;
  }
  detail::finish_segment(cur, orig, plan.segments);

  // Long pool: back to back (kPack) or one document at a time (kChunk), cut at L.
  const bool full = options.long_mask == MaskKind::kFullCausal;
  cur.mask = options.long_mask;
  for (std::size_t d = 0; d < lengths.size(); ++d) {
    const std::int64_t n = lengths[d];
    if (n <= orig) continue;
    if (options.long_packing == LongPacking::kChunk) {
      detail::finish_segment(cur, orig, plan.segments);
      cur.mask = options.long_mask;
    }
    std::int64_t done = 0;
    while (done < n) {
      if (cur.length == L) {
        detail::finish_segment(cur, orig, plan.segments);
        cur.mask = options.long_mask;
      }
      const std::int64_t take = std::min(n - done, L - cur.length);
      cur.pieces.push_back(
          {static_cast<std::int64_t>(d), done, cur.length, take, full ? cur.length : 0});
      cur.length += take;
      done += take;
    }
  }
  detail::finish_segment(cur, orig, plan.segments);
  *out = std::move(plan);
  return Status();
}

/// Packs documents of the given token lengths into training segments of options.segment_length
/// tokens, LongRoPE2 style (see the drawing at the top of this header):
///
///   * documents of length <= original_max_position go whole, in input order, into short
///     segments with position ids restarting at 0 per document and a per-document causal mask;
///   * longer documents fill long segments back to back (or chunked one document at a time)
///     with continuous position ids 0 .. length-1 and full causal attention, or per-document
///     masks and restarting positions with options.long_mask = kDocumentCausal.
///
/// Every token of every document lands in exactly one segment, once. Segments are not padded: the
/// last segment of each pool may be shorter. Each segment's window follows the Hugging Face rule
/// on its own position ids, so short segments are always kShort, and a long-pool segment whose
/// positions all stay inside the original window (a short tail) is kShort too, exactly as
/// inference would treat it.
///
///     ropescale::PackOptions opt;
///     opt.segment_length = 131072;
///     opt.original_max_position = 4096;
///     auto plan = ropescale::pack_documents(doc_lengths, opt);
///     for (const auto& seg : plan.segments) {
///       auto pos = seg.position_ids();   // for apply_rotary with select_factors(seg.window, ..)
///       // seg.cu_seqlens, seg.max_seqlen() for a varlen attention kernel
///     }
///
/// Throws Error on a length <= 0, on segment_length <= original_max_position, or on overflow.
inline PackingPlan pack_documents(const std::vector<std::int64_t>& lengths,
                                  const PackOptions& options) {
  PackingPlan plan;
  throw_if_error(try_pack_documents(lengths, options, &plan));
  return plan;
}

// =============================================================================================
// Gradients
// =============================================================================================

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

// =============================================================================================
// KV cache re-rotation
// =============================================================================================

/// Switches cached keys from one factor table to another in one pass.
///
/// A key cached at position p under table `from` is k_from = m_from R(p theta_from) k. Under
/// table `to` it would be m_to R(p theta_to) k, and
///
///     m_to R(p theta_to) k = (m_to / m_from) R(p (theta_to - theta_from)) k_from
///
/// so the switch is one rotation by the frequency difference (computed in double, then range
/// reduced exactly like any angle; negative differences are fine) and one scale. Values keep
/// their projection: nothing is recomputed from the hidden states.
///
/// ## Accuracy
///
/// Let u be the unit roundoff of the storage type (float 2^-24, half 2^-11, bfloat16 2^-8; double
/// 2^-53), r = |(x, y)| the norm of a rotary pair of the key before any rotation, p its position
/// and theta_max the largest inverse frequency of either table (1 for plain RoPE's pair 0).
/// Against the same key rotated from scratch with `to` (same storage type), every re-rotated
/// channel is within
///
///     |error| <= m_to * r * (12 u + 2^-51 * p * theta_max)
///
/// The 12 u: three rotations (the cached one, the re-rotation, the one from scratch) each round
/// m*cos and m*sin, the products, the sum and the store, at most (2 sqrt(2) + 1) u ~ 3.8 u of
/// m r apiece. Measured with Phi-4-mini's tables: at most 5.1 u for float, 2 u for half and
/// bfloat16 (whose compute type, float, is far finer than the storage). The second term is the
/// double rounding of the angles p * theta: 1.3e-9 at p = 3e6, invisible in float keys and the
/// only visible term in double ones. For float keys of unit scale the bound is 1.2e-6 at every
/// position; tests check it channel by channel, and the absolute 2e-6, at positions 0 .. 3e6.
/// Each further switch adds one more rotation's rounding (3.8 u); nothing is recomputed.
class KeyRerotation {
 public:
  /// Frequencies theta_to - theta_from and scale m_to / m_from for a spec. Throws Error when the
  /// spec is invalid or a table does not fit it (check_tables says so without throwing).
  KeyRerotation(const RopeSpec& spec, const FactorTable& from, const FactorTable& to)
      : KeyRerotation(checked(spec, from, to)) {}

  /// The same from raw inverse frequencies (equal sizes, finite) and attention factors (> 0).
  KeyRerotation(const Eigen::ArrayXd& inv_freq_from, double attention_factor_from,
                const Eigen::ArrayXd& inv_freq_to, double attention_factor_to)
      : KeyRerotation(
            checked(inv_freq_from, attention_factor_from, inv_freq_to, attention_factor_to)) {}

  /// The single rotation: inv_freq = theta_to - theta_from, attention factor = m_to / m_from.
  const RotaryFrequencies& frequencies() const noexcept { return freqs_; }
  std::int64_t rotary_dim() const noexcept { return freqs_.rotary_dim(); }
  /// True when both tables give the same frequencies and attention factor: apply() then leaves
  /// every key bit-identical (angle 0, scale 1), and a caller may skip the pass.
  bool is_identity() const noexcept {
    return freqs_.attention_factor() == 1.0 && (freqs_.inv_freq() == 0.0).all();
  }

  /// Re-rotates keys in place; positions holds the position id of each cached token.
  template <typename T>
  Status try_apply(const std::int64_t* positions, const HeadsView<T>& keys,
                   PairLayout layout) const {
    const HeadsView<const T> in = keys.as_const();
    const char* names[] = {"keys"};
    return detail::rotary_call<T>(freqs_, positions, &in, &keys, 1, names, names, layout,
                                  RotaryDirection::kForward);
  }
  template <typename T>
  void apply(const std::int64_t* positions, const HeadsView<T>& keys, PairLayout layout) const {
    throw_if_error(try_apply(positions, keys, layout));
  }

  /// Checks that spec is valid and both tables fit it.
  static Status check_tables(const RopeSpec& spec, const FactorTable& from, const FactorTable& to) {
    ROPESCALE_RETURN_IF_ERROR(validate(spec));
    Status s = from.validate_for(spec);
    if (!s.ok())
      return make_status(ErrorCode::kInvalidArgument, "from.pairs()", from.pairs(),
                         "table does not fit the spec (" + s.message() + ")");
    s = to.validate_for(spec);
    if (!s.ok())
      return make_status(ErrorCode::kInvalidArgument, "to.pairs()", to.pairs(),
                         "table does not fit the spec (" + s.message() + ")");
    return Status();
  }

 private:
  explicit KeyRerotation(RotaryFrequencies freqs) : freqs_(std::move(freqs)) {}

  static RotaryFrequencies checked(const Eigen::ArrayXd& a, double ma, const Eigen::ArrayXd& b,
                                   double mb, std::int64_t frequency_dim = 0) {
    throw_if_error(RotaryFrequencies::check(a, ma));
    if (b.size() != a.size())
      throw_if_error(make_status(
          ErrorCode::kInvalidArgument, "inv_freq_to.size()", static_cast<std::int64_t>(b.size()),
          "must equal inv_freq_from.size() (" + std::to_string(a.size()) + ")"));
    throw_if_error(RotaryFrequencies::check(b, mb));
    return RotaryFrequencies(b - a, mb / ma, frequency_dim);
  }
  static RotaryFrequencies checked(const RopeSpec& spec, const FactorTable& from,
                                   const FactorTable& to) {
    throw_if_error(check_tables(spec, from, to));
    return checked(from.inv_freq(spec), from.attention_factor(), to.inv_freq(spec),
                   to.attention_factor(), spec.frequency_dim());
  }

  RotaryFrequencies freqs_;
};

/// Re-rotates cached keys in place from table `from` to table `to` (see KeyRerotation for the
/// formula and its accuracy bound). Typical use when generation crosses the original window:
///
///     if (ropescale::window_switches(n - 2, n - 1, spec.original_max_position)) {
///       const ropescale::KeyRerotation to_long(spec, short_table, long_table);
///       for (auto& layer : cache)  // keys [tokens, kv_heads, head_dim]
///         to_long.apply(positions.data(), layer.keys, ropescale::PairLayout::kHalfSplit);
///     }
///
/// Build one KeyRerotation and reuse it across layers; this function builds one per call.
template <typename T>
inline Status try_rerotate_keys(const RopeSpec& spec, const FactorTable& from,
                                const FactorTable& to, const std::int64_t* positions,
                                const HeadsView<T>& keys, PairLayout layout) {
  ROPESCALE_RETURN_IF_ERROR(KeyRerotation::check_tables(spec, from, to));
  // Everything the constructor could refuse, as a Status: it must not throw from here.
  const Eigen::ArrayXd a = from.inv_freq(spec), b = to.inv_freq(spec);
  ROPESCALE_RETURN_IF_ERROR(
      RotaryFrequencies::check(b - a, to.attention_factor() / from.attention_factor()));
  const KeyRerotation r(spec, from, to);
  return r.try_apply(positions, keys, layout);
}
template <typename T>
inline void rerotate_keys(const RopeSpec& spec, const FactorTable& from, const FactorTable& to,
                          const std::int64_t* positions, const HeadsView<T>& keys,
                          PairLayout layout) {
  throw_if_error(try_rerotate_keys(spec, from, to, positions, keys, layout));
}

}  // namespace ropescale
