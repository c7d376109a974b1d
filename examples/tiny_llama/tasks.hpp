// Training and evaluation rows for the tiny Llama, byte-level (token = byte, vocab 256).
//
// - copy (induction): random symbols with one span repeated at a random distance; loss on the
//   repeat after its first token, which only a model that looks back at the first occurrence can
//   predict (the induction diagnostic: chance is ln(symbols)).
// - needle: TinyStories text with key sentences "The pass key of <name> is <digits>." at random
//   depths and, at the end, questions "The pass key of <name> is" whose answer digits carry the
//   loss: needle-driven perplexity (LongRoPE2 section 3.2) when only answers count.
// - text: a TinyStories window, loss on every byte.
#pragma once

#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "tiny_llama.hpp"

namespace tiny_llama {

/// The bundled text split into a training part and a held-out part (the last tenth).
struct Corpus {
  std::string train;
  std::string held_out;
  static Corpus load(const std::string& path);
};

struct CopyOptions {
  std::int64_t length = 64;   ///< row tokens
  std::int64_t symbols = 16;  ///< alphabet size (bytes 'a', 'b', ...)
  std::int64_t min_span = 6;
  std::int64_t max_span = 16;
};
Sequence make_copy_row(std::mt19937_64& rng, const CopyOptions& o);

struct NeedleOptions {
  std::int64_t length = 256;  ///< row tokens
  std::int64_t needles = 1;   ///< key sentences (and questions) per row
  std::int64_t digits = 4;    ///< answer length
  /// Depth of the first needle as a fraction of the filler, or < 0 for uniform at random.
  double depth = -1.0;
  /// Probability that the first question asks for the needle that sits last, so that at depth 1
  /// it follows its own needle sentence directly (the study's single-needle rows end that way).
  /// 0 draws nothing extra, so older runs repeat.
  double ask_last_first = 0.0;
};
/// The answer spans of a needle row: [begin, end) target indices whose loss is the answer's.
struct NeedleRow {
  Sequence seq;
  std::vector<std::pair<std::int64_t, std::int64_t>> answers;
};
NeedleRow make_needle_row(std::mt19937_64& rng, const std::string& text, const NeedleOptions& o);

/// The names needle rows use as keys ("Anna", "Ben", ...), needle_name_count() of them.
std::size_t needle_name_count() noexcept;
const char* needle_name(std::size_t i) noexcept;  ///< i modulo the count

/// A text window of `length` tokens, loss on every target.
Sequence make_text_row(std::mt19937_64& rng, const std::string& text, std::int64_t length);

/// One TinyStories paragraph (the text between blank lines) after a random point, cut to at most
/// max_length tokens, loss on every target: a short document for packing.
Sequence make_paragraph_row(std::mt19937_64& rng, const std::string& text, std::int64_t max_length);

/// Teacher-forced greedy accuracy of a needle row: for each answer, whether the argmax of every
/// answer digit is the digit (exact match of greedy decoding), and the answer NLL.
struct NeedleScore {
  std::int64_t correct = 0;
  std::int64_t total = 0;
  double answer_nll = 0.0;
  std::int64_t answer_tokens = 0;
  /// Scores of several rows add up.
  NeedleScore& operator+=(const NeedleScore& o) noexcept {
    correct += o.correct;
    total += o.total;
    answer_nll += o.answer_nll;
    answer_tokens += o.answer_tokens;
    return *this;
  }
  /// Exact-match rate over needles (0 with none).
  double accuracy() const noexcept {
    return total > 0 ? static_cast<double>(correct) / static_cast<double>(total) : 0.0;
  }
  /// Mean negative log-likelihood per answer token (0 with none).
  double mean_answer_nll() const noexcept {
    return answer_tokens > 0 ? answer_nll / static_cast<double>(answer_tokens) : 0.0;
  }
};
NeedleScore score_needles(const Matrix& log_probs, const NeedleRow& row);

}  // namespace tiny_llama
