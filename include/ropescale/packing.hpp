// ropescale: packing documents into mixed context window training segments (LongRoPE2 section
// 3.3, Fig. 5): position ids, cu_seqlens, masks and each segment's window (window.hpp's rule).
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
#include "ropescale/window.hpp"

namespace ropescale {

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
  /// One position id per token, ready for rotate; an error on an invalid segment.
  Result<std::vector<std::int64_t>> position_ids() const {
    ROPESCALE_RETURN_IF_ERROR(validate());
    std::vector<std::int64_t> ids(static_cast<std::size_t>(length));
    for (const DocumentPiece& p : pieces)
      for (std::int64_t t = 0; t < p.length; ++t)
        ids[static_cast<std::size_t>(p.segment_offset + t)] = p.first_position + t;
    return ids;
  }
  /// The [length, length] boolean mask of this segment (block-diagonal causal); an error on an
  /// invalid segment or when length > max_tokens.
  Result<DenseMask> dense_mask(std::int64_t max_tokens = kMaxDenseMaskTokens) const {
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
///     auto plan = ropescale::pack_documents(doc_lengths, opt).value();
///     for (const auto& seg : plan.segments) {
///       auto pos = seg.position_ids().value();   // rotate with the seg.window table
///       // seg.cu_seqlens, seg.max_seqlen() for a varlen attention kernel
///     }
///
/// An error on a length <= 0, on segment_length <= original_max_position, or on overflow.
inline Result<PackingPlan> pack_documents(const std::vector<std::int64_t>& lengths,
                                          const PackOptions& options) {
  ROPESCALE_RETURN_IF_ERROR(detail::check_pack_options(options));
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
  return plan;
}

}  // namespace ropescale
