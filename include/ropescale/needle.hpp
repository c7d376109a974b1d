// ropescale: needle documents and answer-token perplexity (LongRoPE2's search fitness).
//
// LongRoPE2 (arXiv 2502.20082, sec. 3.2, App. C) scores candidate factors not by plain
// perplexity, which long documents dominate with easy local predictions, but by the perplexity of
// the answer to a question about a needle placed early in a long document: only a model that
// really attends across the whole window predicts it. Each document, exactly L tokens long, is
//
//   [bos] preamble  needle  haystack ...  question  answer_prefix  ANSWER
//          |         |                      |          |             '-- the 7-digit value: scored
//          |         '-- "One of the special magic numbers for <key> is: <value>."
//          '-- "There is a special magic number hidden in the text. Memorize it. ..."
//                                "What is the special magic number for <key> mentioned ...?"
//                                           "The special magic number for <key> ... is"
//
// with the needle at the start (the paper's choice) or at a given depth of the haystack (the
// authors' code variant). Everything is in tokens, so any tokenizer plugs in: the caller tokenizes
// the template pieces once and passes a ValueTokenizer for the random value (digit_value_tokenizer
// covers tokenizers that split numbers into single digits, as Llama's and Phi's do).
//
// Scoring follows the causal-LM convention: row t of the logits predicts token t + 1. The loss of
// a document is the mean negative log-likelihood over its answer positions (stable log-softmax in
// double), and the needle-driven perplexity over documents is
//
//     PPL = exp( mean over documents of the per-document mean answer NLL )
//
// (the authors' evaluation: HF mean cross-entropy per sample, then exp of the mean over samples).
// One loss, mean_nll, whose overloads pick the targets: a document's answer tokens, every token
// (the plain all-token variant: LongRoPE v1's fitness, LongRoPE2 Table 6's ablation), or any
// mask; perplexity is the exp of the mean over documents.
#pragma once

#include <Eigen/Core>
#include <array>
#include <cmath>
#include <cstdint>
#include <functional>
#include <limits>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "ropescale/error.hpp"
#include "ropescale/factors.hpp"

#pragma push_macro("ROPESCALE_INSIDE_PUBLIC_HEADER")
#define ROPESCALE_INSIDE_PUBLIC_HEADER
#include "ropescale/detail/random.hpp"
#pragma pop_macro("ROPESCALE_INSIDE_PUBLIC_HEADER")

namespace ropescale {

/// A token id of the host's tokenizer.
using TokenId = std::int32_t;

/// The tokenized pieces of the needle template (LongRoPE2 App. C). Any piece may be empty.
/// The needle sentence is needle_head + key + needle_middle + VALUE + needle_tail, the question
/// question_head + key + question_tail, the answer prefix answer_head + key + answer_tail, and
/// the document ends with the VALUE tokens, which are the scored answer.
struct NeedleTemplate {
  std::vector<TokenId> bos;            ///< e.g. {1}; first in every document
  std::vector<TokenId> preamble;       ///< "There is a special magic number hidden ..."
  std::vector<TokenId> key;            ///< e.g. the tokens of "numerous-kite"
  std::vector<TokenId> needle_head;    ///< "One of the special magic numbers for"
  std::vector<TokenId> needle_middle;  ///< "is:"
  std::vector<TokenId> needle_tail;    ///< "."
  std::vector<TokenId> question_head;  ///< "What is the special magic number for"
  std::vector<TokenId> question_tail;  ///< "mentioned in the provided text?"
  std::vector<TokenId> answer_head;    ///< "The special magic number for"
  std::vector<TokenId> answer_tail;    ///< "mentioned in the provided text is"
};

/// Tokenizes the needle's value, given as its decimal digits ("6716097"). Must return at least
/// one token and the same tokens for the same digits.
using ValueTokenizer = std::function<std::vector<TokenId>(const std::string& digits)>;

/// A ValueTokenizer for tokenizers that split numbers into single digits: `prefix` (e.g. the
/// space token) followed by digit_tokens[d] for every digit d.
inline ValueTokenizer digit_value_tokenizer(const std::array<TokenId, 10>& digit_tokens,
                                            std::vector<TokenId> prefix = {}) {
  return [digit_tokens, prefix](const std::string& digits) {
    std::vector<TokenId> out = prefix;
    for (char ch : digits) {
      if (ch < '0' || ch > '9')
        throw_if_error(make_status(ErrorCode::kInvalidArgument, "digits", digits,
                                   "must hold decimal digits only"));
      out.push_back(digit_tokens[static_cast<std::size_t>(ch - '0')]);
    }
    return out;
  };
}

/// How to build needle documents.
struct NeedleOptions {
  std::int64_t length = 0;  ///< exact document length in tokens (the target window L)
  /// Where the needle goes: 0 = right after the preamble, before any haystack (LongRoPE2's
  /// choice); d in (0, 1] = after a fraction d of the document's haystack.
  double depth = 0.0;
  std::uint64_t seed = 0;  ///< value and haystack offset derive from (seed, document index)
  /// true: each document's haystack starts at a random offset of the stream; false: at 0.
  bool random_offset = true;
  /// If non-empty, a needle at depth > 0 is moved to just after the nearest of these tokens
  /// (e.g. newline tokens, as the authors' code does), so it does not split a sentence.
  std::vector<TokenId> boundary_tokens;
};

/// One needle document.
struct NeedleDocument {
  std::vector<TokenId> tokens;            ///< exactly NeedleOptions::length tokens
  std::vector<std::int64_t> positions;    ///< 0 .. length-1 (one window, no packing)
  std::vector<std::uint8_t> answer_mask;  ///< 1 at the answer (value) positions, else 0
  std::string value;                      ///< the 7-digit value, e.g. "6716097"
  std::int64_t needle_begin = 0;          ///< first token of the needle sentence
  std::int64_t needle_end = 0;            ///< one past its last token
  std::int64_t answer_begin = 0;          ///< first answer token (= length - answer size)
  std::int64_t answer_end = 0;            ///< = length
  std::int64_t haystack_offset = 0;       ///< where this document's haystack starts in the stream
  std::int64_t haystack_tokens = 0;       ///< haystack tokens in the document
  double depth = 0.0;                     ///< haystack fraction before the needle, as placed
};

namespace detail {

inline void needle_append(std::vector<TokenId>& out, const std::vector<TokenId>& piece) {
  out.insert(out.end(), piece.begin(), piece.end());
}

}  // namespace detail

/// Builds needle document number `index` (0, 1, ...) from a haystack token stream (e.g. several
/// PG19 books, tokenized and concatenated). Its value is uniform in [1000000, 9999999] and its
/// haystack offset uniform over the stream, both from (options.seed, index) alone.
/// kInvalidArgument when the pieces do not fit in options.length, the haystack is too short, the
/// depth is outside [0, 1] or the tokenizer returns nothing.
inline Result<NeedleDocument> make_needle_document(const std::vector<TokenId>& haystack,
                                                   const NeedleTemplate& tmpl,
                                                   const ValueTokenizer& tokenize,
                                                   const NeedleOptions& options,
                                                   std::uint64_t index = 0) {
  if (!tokenize)
    return make_status(ErrorCode::kInvalidArgument, "tokenize", "empty",
                       "must be a callable digits -> tokens");
  if (options.length <= 0)
    return make_status(ErrorCode::kInvalidArgument, "options.length", options.length,
                       "must be > 0");
  if (!(options.depth >= 0.0 && options.depth <= 1.0))
    return make_status(ErrorCode::kInvalidArgument, "options.depth", options.depth,
                       "must be in [0, 1]");
  std::seed_seq seq{static_cast<std::uint32_t>(options.seed),
                    static_cast<std::uint32_t>(options.seed >> 32),
                    static_cast<std::uint32_t>(index), static_cast<std::uint32_t>(index >> 32)};
  std::mt19937_64 rng(seq);
  const std::string value = std::to_string(1000000 + detail::uniform_index(rng, 9000000));
  const std::vector<TokenId> value_tokens = tokenize(value);
  if (value_tokens.empty())
    return make_status(ErrorCode::kInvalidArgument, "tokenize(\"" + value + "\").size()", 0,
                       "must be > 0");

  std::vector<TokenId> needle = tmpl.needle_head;
  detail::needle_append(needle, tmpl.key);
  detail::needle_append(needle, tmpl.needle_middle);
  detail::needle_append(needle, value_tokens);
  detail::needle_append(needle, tmpl.needle_tail);
  std::vector<TokenId> tail = tmpl.question_head;
  detail::needle_append(tail, tmpl.key);
  detail::needle_append(tail, tmpl.question_tail);
  detail::needle_append(tail, tmpl.answer_head);
  detail::needle_append(tail, tmpl.key);
  detail::needle_append(tail, tmpl.answer_tail);
  const std::int64_t head = static_cast<std::int64_t>(tmpl.bos.size() + tmpl.preamble.size());
  const std::int64_t fixed =
      head + static_cast<std::int64_t>(needle.size() + tail.size() + value_tokens.size());
  const std::int64_t hay = options.length - fixed;
  if (hay < 0)
    return make_status(ErrorCode::kInvalidArgument, "options.length", options.length,
                       "must be >= the template's " + std::to_string(fixed) + " tokens");
  const std::int64_t stream = static_cast<std::int64_t>(haystack.size());
  if (stream < hay)
    return make_status(ErrorCode::kInvalidArgument, "haystack.size()", stream,
                       "must be >= the " + std::to_string(hay) + " haystack tokens a " +
                           std::to_string(options.length) + "-token document needs");
  const std::int64_t offset = options.random_offset
                                  ? static_cast<std::int64_t>(detail::uniform_index(
                                        rng, static_cast<std::uint64_t>(stream - hay + 1)))
                                  : 0;

  std::int64_t cut = 0;
  if (options.depth > 0.0) {
    cut = std::llround(options.depth * static_cast<double>(hay));
    if (!options.boundary_tokens.empty()) {
      auto is_cut = [&](std::int64_t j) {
        if (j <= 0 || j >= hay) return true;
        const TokenId prev = haystack[static_cast<std::size_t>(offset + j - 1)];
        for (TokenId b : options.boundary_tokens)
          if (b == prev) return true;
        return false;
      };
      for (std::int64_t d = 0;; ++d) {  // nearest boundary, the earlier one on a tie
        if (is_cut(cut - d)) {
          cut = std::max<std::int64_t>(cut - d, 0);
          break;
        }
        if (is_cut(cut + d)) {
          cut = std::min(cut + d, hay);
          break;
        }
      }
    }
  }

  NeedleDocument doc;
  doc.tokens.reserve(static_cast<std::size_t>(options.length));
  detail::needle_append(doc.tokens, tmpl.bos);
  detail::needle_append(doc.tokens, tmpl.preamble);
  const auto hay_begin = haystack.begin() + static_cast<std::ptrdiff_t>(offset);
  doc.tokens.insert(doc.tokens.end(), hay_begin, hay_begin + static_cast<std::ptrdiff_t>(cut));
  doc.needle_begin = static_cast<std::int64_t>(doc.tokens.size());
  detail::needle_append(doc.tokens, needle);
  doc.needle_end = static_cast<std::int64_t>(doc.tokens.size());
  doc.tokens.insert(doc.tokens.end(), hay_begin + static_cast<std::ptrdiff_t>(cut),
                    hay_begin + static_cast<std::ptrdiff_t>(hay));
  detail::needle_append(doc.tokens, tail);
  doc.answer_begin = static_cast<std::int64_t>(doc.tokens.size());
  detail::needle_append(doc.tokens, value_tokens);
  doc.answer_end = static_cast<std::int64_t>(doc.tokens.size());
  ROPESCALE_ASSERT(doc.answer_end == options.length);
  doc.positions.resize(doc.tokens.size());
  for (std::size_t i = 0; i < doc.positions.size(); ++i)
    doc.positions[i] = static_cast<std::int64_t>(i);
  doc.answer_mask.assign(doc.tokens.size(), 0);
  for (std::int64_t i = doc.answer_begin; i < doc.answer_end; ++i)
    doc.answer_mask[static_cast<std::size_t>(i)] = 1;
  doc.value = value;
  doc.haystack_offset = offset;
  doc.haystack_tokens = hay;
  doc.depth = hay > 0 ? static_cast<double>(cut) / static_cast<double>(hay) : 0.0;
  return doc;
}

/// Most documents one make_needle_documents call builds.
inline constexpr std::int64_t kMaxNeedleDocuments = std::int64_t{1} << 20;

/// Documents 0 .. count-1 (LongRoPE2 uses 10, each from a random PG19 validation book).
inline Result<std::vector<NeedleDocument>> make_needle_documents(
    const std::vector<TokenId>& haystack, const NeedleTemplate& tmpl,
    const ValueTokenizer& tokenize, const NeedleOptions& options, std::int64_t count) {
  if (count < 0 || count > kMaxNeedleDocuments)
    return make_status(ErrorCode::kInvalidArgument, "count", count, "must be in [0, 2^20]");
  std::vector<NeedleDocument> docs;
  docs.reserve(static_cast<std::size_t>(std::min<std::int64_t>(count, 1024)));
  for (std::int64_t k = 0; k < count; ++k) {
    Result<NeedleDocument> d =
        make_needle_document(haystack, tmpl, tokenize, options, static_cast<std::uint64_t>(k));
    if (!d.ok()) return d.status().with_context("document " + std::to_string(k));
    docs.push_back(std::move(d).value());
  }
  return docs;
}

// ---------------------------------------------------------------------------------------------
// Scoring
// ---------------------------------------------------------------------------------------------

namespace detail {

// Row-wise log-softmax in double, stable for any magnitude: x - max - log(sum exp(x - max)).
// Logits must be finite or -inf (a masked-out token), with at least one finite logit per row;
// kInvalidArgument otherwise (NaN, +inf, an all -inf row, no columns). mean_nll softmaxes one row
// at a time itself (row_log_prob); this whole-matrix form turns logits into the log-probabilities
// mean_nll takes with Scores::kLogProbs.
template <typename Derived>
inline Result<Eigen::MatrixXd> log_softmax(const Eigen::MatrixBase<Derived>& logits) {
  if (logits.cols() == 0 && logits.rows() > 0)
    return make_status(ErrorCode::kInvalidArgument, "logits.cols()", 0,
                       "must be > 0 (one column per vocabulary entry)");
  Eigen::MatrixXd m = logits.template cast<double>();
  for (Eigen::Index r = 0; r < m.rows(); ++r) {
    double mx = -std::numeric_limits<double>::infinity();
    for (Eigen::Index c = 0; c < m.cols(); ++c) {
      const double v = m(r, c);
      if (std::isnan(v) || v == std::numeric_limits<double>::infinity())
        return make_status(ErrorCode::kInvalidArgument,
                           "logits(" + std::to_string(r) + ", " + std::to_string(c) + ")", v,
                           "must be finite or -inf");
      mx = std::max(mx, v);
    }
    if (!std::isfinite(mx))
      return make_status(ErrorCode::kInvalidArgument, "logits row " + std::to_string(r), "all -inf",
                         "must hold at least one finite logit");
    const double lse = mx + std::log((m.row(r).array() - mx).exp().sum());
    m.row(r).array() -= lse;
  }
  return m;
}

// Mean of -logp over the masked targets; logp(row, token) supplies the log-probability.
template <typename Derived, typename LogProb>
inline Status masked_mean_nll(const Eigen::MatrixBase<Derived>& m,
                              const std::vector<TokenId>& tokens,
                              const std::vector<std::uint8_t>& mask, std::int64_t first_row,
                              const char* what, LogProb logp, double* out) {
  if (out == nullptr)
    return make_status(ErrorCode::kInvalidArgument, "out", nullptr, "must not be null");
  if (mask.size() != tokens.size())
    return make_status(ErrorCode::kInvalidArgument, "mask.size()",
                       static_cast<std::int64_t>(mask.size()),
                       "must equal tokens.size() = " + std::to_string(tokens.size()));
  if (first_row < 0)
    return make_status(ErrorCode::kInvalidArgument, "first_row", first_row, "must be >= 0");
  double sum = 0.0;
  std::int64_t count = 0;
  for (std::size_t p = 0; p < tokens.size(); ++p) {
    if (!mask[p]) continue;
    if (p == 0)
      return make_status(ErrorCode::kInvalidArgument, "mask[0]", 1,
                         "must be 0: no logit row predicts the first token");
    const std::int64_t row = static_cast<std::int64_t>(p) - 1 - first_row;
    if (row < 0 || row >= static_cast<std::int64_t>(m.rows()))
      return make_status(ErrorCode::kOutOfRange,
                         std::string(what) + " row for position " + std::to_string(p), row,
                         "must be in [0, rows) = [0, " + std::to_string(m.rows()) +
                             ") (row r predicts token first_row + r + 1, first_row = " +
                             std::to_string(first_row) + ")");
    const TokenId t = tokens[p];
    if (t < 0 || t >= m.cols())
      return make_status(ErrorCode::kOutOfRange, "tokens[" + std::to_string(p) + "]", t,
                         "must be in [0, vocab) = [0, " + std::to_string(m.cols()) + ")");
    const double lp = logp(static_cast<Eigen::Index>(row), static_cast<Eigen::Index>(t));
    if (!std::isfinite(lp) || lp > 0.0)
      return make_status(ErrorCode::kInvalidArgument,
                         std::string("log-probability of tokens[") + std::to_string(p) + "] from " +
                             what + " row " + std::to_string(row),
                         lp,
                         "must be finite and <= 0 (NaN or +inf in the row, or a target of "
                         "probability 0)");
    sum -= lp;
    ++count;
  }
  if (count == 0)
    return make_status(ErrorCode::kInvalidArgument, "mask", "all zero",
                       "must select at least one target position");
  *out = sum / static_cast<double>(count);
  return Status();
}

template <typename Derived>
inline double row_log_prob(const Eigen::MatrixBase<Derived>& logits, Eigen::Index row,
                           Eigen::Index token) {
  // One contiguous double copy of the row: max and exp-sum then vectorize.
  const Eigen::ArrayXd r = logits.row(row).transpose().template cast<double>().array();
  const double m = r.maxCoeff();
  return r[token] - m - std::log((r - m).exp().sum());
}

}  // namespace detail

/// What a score matrix holds: raw logits (softmaxed here, in double) or log-probabilities the
/// model already log-softmaxed.
enum class Scores { kLogits, kLogProbs };

/// Mean negative log-likelihood of the tokens where mask is 1, from a score matrix (rows x
/// vocab, any float type, any storage order). Row r holds the model's prediction made at position
/// first_row + r, i.e. for token first_row + r + 1; pass first_row > 0 when the model returned
/// scores for a tail of the document only. Logits are softmaxed in double, stable for any
/// magnitude. The overloads below choose the targets for the two losses LongRoPE2 uses.
template <typename Derived>
inline Result<double> mean_nll(const Eigen::MatrixBase<Derived>& scores,
                               const std::vector<TokenId>& tokens,
                               const std::vector<std::uint8_t>& mask, std::int64_t first_row = 0,
                               Scores kind = Scores::kLogits) {
  double v = 0.0;
  if (kind == Scores::kLogProbs) {
    ROPESCALE_RETURN_IF_ERROR(detail::masked_mean_nll(
        scores, tokens, mask, first_row, "log_probs",
        [&](Eigen::Index r, Eigen::Index t) { return static_cast<double>(scores(r, t)); }, &v));
  } else {
    ROPESCALE_RETURN_IF_ERROR(detail::masked_mean_nll(
        scores, tokens, mask, first_row, "logits",
        [&](Eigen::Index r, Eigen::Index t) { return detail::row_log_prob(scores, r, t); }, &v));
  }
  return v;
}

/// The needle loss of one document: mean NLL over its answer tokens (doc.answer_mask; LongRoPE2
/// sec. 3.2).
template <typename Derived>
inline Result<double> mean_nll(const Eigen::MatrixBase<Derived>& scores, const NeedleDocument& doc,
                               std::int64_t first_row = 0, Scores kind = Scores::kLogits) {
  return mean_nll(scores, doc.tokens, doc.answer_mask, first_row, kind);
}

/// The plain language-model loss: mean NLL over every predicted token 1 .. n-1 (logits rows
/// 0 .. n-2 at least).
template <typename Derived>
inline Result<double> mean_nll(const Eigen::MatrixBase<Derived>& logits,
                               const std::vector<TokenId>& tokens) {
  std::vector<std::uint8_t> mask(tokens.size(), 1);
  if (!mask.empty()) mask[0] = 0;
  return mean_nll(logits, tokens, mask);
}

/// exp(mean of per-document losses): LongRoPE2's needle-driven perplexity when the losses are
/// mean_nll(scores, doc) values, plain perplexity when they are mean_nll(logits, tokens) values. An
/// error on an empty list, a loss that is not finite, or a mean loss whose exp overflows: it never
/// returns NaN/inf.
inline Result<double> perplexity(const std::vector<double>& losses) {
  if (losses.empty())
    return make_status(ErrorCode::kInvalidArgument, "losses.size()", 0, "must be > 0");
  double sum = 0.0;
  for (std::size_t i = 0; i < losses.size(); ++i) {
    if (std::isnan(losses[i]))
      return make_status(ErrorCode::kInvalidArgument, "losses[" + std::to_string(i) + "]",
                         losses[i], "must not be NaN");
    if (!std::isfinite(losses[i]))
      return make_status(ErrorCode::kInvalidArgument, "losses[" + std::to_string(i) + "]",
                         losses[i], "must be finite");
    sum += losses[i];
  }
  const double mean = sum / static_cast<double>(losses.size());
  const double ppl = std::exp(mean);
  if (!std::isfinite(ppl))
    return make_status(ErrorCode::kInvalidArgument, "mean loss", mean,
                       "must be <= 709 (exp of it overflows double)");
  return ppl;
}

/// The loss of one document under one candidate table, e.g. run the host model with the table's
/// inv_freq and attention factor on doc.tokens / doc.positions and return
/// mean_nll(logits, doc).
using NeedleDocumentLoss = std::function<double(const FactorTable&, const NeedleDocument&)>;

/// A search fitness (search.hpp): the needle-driven perplexity of `docs` under a table,
/// exp(mean over documents of loss(table, doc)). Lower is better.
/// An error when docs is empty or loss is not callable. The fitness itself throws Error (aborts
/// without exceptions) on a NaN loss, which EvolutionSearch::run passes on to its caller.
inline Result<std::function<double(const FactorTable&)>> needle_perplexity_fitness(
    std::vector<NeedleDocument> docs, NeedleDocumentLoss loss) {
  if (docs.empty())
    return make_status(ErrorCode::kInvalidArgument, "docs.size()", 0, "must be > 0");
  if (!loss)
    return make_status(ErrorCode::kInvalidArgument, "loss", "empty",
                       "must be a callable (table, document) -> loss");
  return std::function<double(const FactorTable&)>(
      [docs = std::move(docs), loss = std::move(loss)](const FactorTable& table) {
        std::vector<double> losses;
        losses.reserve(docs.size());
        for (const NeedleDocument& d : docs) {
          losses.push_back(loss(table, d));
          // A document the candidate gives probability 0: the worst fitness, which the search
          // never picks (perplexity() itself refuses infinite losses).
          if (losses.back() == std::numeric_limits<double>::infinity()) return losses.back();
        }
        return perplexity(losses).value();
      });
}

}  // namespace ropescale
