// The LongRoPE2 extension study on the tiny Llama: needle exact match, answer NLL and text
// perplexity at L_train and beyond for plain RoPE, PI, NTK (the paper's critical-dimension form),
// YaRN, LongRoPE2-init, LongRoPE v1 and searched tables, on held-out rows no search saw.
//
// Inference rule. Every method is a pair of tables (within L_train, beyond it) and every row of
// every method is decoded through decode_log_probs with one rule:
//   - kOneTable (the default; Hugging Face's `_compute_longrope_parameters`, vLLM and the paper):
//     a prompt of T tokens uses the long table for the whole forward when T > L_train
//     (ropescale::select_window), the short table otherwise;
//   - kSplit (a separate, labelled row): the first L_train tokens with the short table, then the
//     cached keys re-rotated with ropescale::KeyRerotation and the rest with the long table, as a
//     decode that grows past L_train token by token sees it.
//
// Needle rows are needle.hpp documents (ropescale::make_needle_document) in the tiny Llama's own
// format, "The pass key of <name> is <4 digits>.", with the needle at the start of the document
// (the paper's placement), at uniform random depth, or at fixed depths; answers are scored with
// ropescale::mean_nll (Scores::kLogProbs) and greedy exact match of every answer digit.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "ropescale/factors.hpp"
#include "ropescale/needle.hpp"
#include "ropescale/search.hpp"
#include "tasks.hpp"
#include "tiny_llama.hpp"

namespace tiny_llama {

/// The tables one method uses: `within` for a prompt of at most L_train tokens, `beyond` for a
/// longer one.
struct MethodTables {
  ropescale::FactorTable within, beyond;
  /// One table at every length.
  static MethodTables fixed(const ropescale::FactorTable& t) { return {t, t}; }
  /// A static method (PI, NTK, YaRN): the original RoPE within L_train, `t` beyond it.
  static MethodTables beyond_only(const ropescale::RopeSpec& spec,
                                  const ropescale::FactorTable& t) {
    return {ropescale::FactorTable::identity(spec), t};
  }
  /// LongRoPE / LongRoPE2: the original frequencies within L_train, `extended` beyond it. Hugging
  /// Face's longrope applies one attention factor to both factor sets, so `within` keeps the
  /// extended table's attention factor: what a config written by longrope_config_from_tables
  /// loads as.
  static MethodTables switching(const ropescale::RopeSpec& spec,
                                const ropescale::FactorTable& extended) {
    return {ropescale::FactorTable(Eigen::ArrayXd::Ones(spec.pairs()), extended.attention_factor(),
                                   "longrope_short"),
            extended};
  }
};

/// How a row longer than L_train is decoded (see the file comment).
enum class InferenceRule { kOneTable, kSplit };
const char* to_string(InferenceRule r) noexcept;

/// Log-probabilities [vocab, T] of one plain row (positions 0..T-1) under a method and a rule.
Matrix decode_log_probs(const Weights& w, const MethodTables& m, const Sequence& s,
                        InferenceRule rule = InferenceRule::kOneTable);

/// The held-out or training text as a haystack token stream (bytes, newlines as spaces).
std::vector<ropescale::TokenId> haystack_tokens(const std::string& text);

/// One needle row: the needle.hpp document and the model's input/target view of it.
struct StudyNeedle {
  ropescale::NeedleDocument doc;  ///< length + 1 tokens, ending with the 4 answer digits
  Sequence seq;                   ///< length tokens, loss on the answer digits
};
/// Needle row `index` of a set: the name and the answer derive from (seed, index); depth 0 puts
/// the needle at the document start, d in (0, 1] after a fraction d of the haystack, d < 0 at a
/// depth uniform in [0, 1] drawn from (seed, index).
StudyNeedle make_study_needle(const std::vector<ropescale::TokenId>& haystack, std::int64_t length,
                              double depth, std::uint64_t seed, std::uint64_t index);

/// Exact match (every answer digit the greedy choice) and the mean answer NLL of one row.
struct NeedleResult {
  bool correct = false;
  double answer_nll = 0.0;  ///< mean per answer token
};
NeedleResult score_study_needle(const Matrix& log_probs, const StudyNeedle& row);

/// Binomial standard error of a rate p over n trials (0 with none).
double binomial_se(double p, std::int64_t n) noexcept;

/// A named group of needle rows of one length (e.g. "start", "random", "depth 0.25").
struct NeedleGroup {
  std::string name;
  double depth = 0.0;  ///< as make_study_needle takes it (< 0: random)
  std::vector<StudyNeedle> rows;
};

/// Needle groups and text rows for one length.
struct LengthSet {
  std::int64_t length = 0;
  std::vector<NeedleGroup> groups;
  std::vector<Sequence> text;
  /// `per_group` rows for each (name, depth) of `groups`, `text_rows` text rows, from `text`.
  static LengthSet make(const std::string& text, std::int64_t length,
                        const std::vector<std::pair<std::string, double>>& groups,
                        std::int64_t per_group, std::int64_t text_rows, std::uint64_t seed);
};

struct GroupScore {
  std::string name;
  std::int64_t n = 0;        ///< rows scored
  std::int64_t correct = 0;  ///< exact matches
  double accuracy = 0.0;
  double se = 0.0;          ///< binomial standard error of accuracy
  double answer_nll = 0.0;  ///< mean per answer token over the group
};

struct LengthScore {
  std::vector<GroupScore> groups;  ///< in the set's order
  double ppl = 0.0;                ///< text perplexity per byte (0 without text rows)
};

/// Scores a method on every row of `set` under `rule`.
LengthScore score_method(const Weights& w, const MethodTables& m, const LengthSet& set,
                         InferenceRule rule, int threads);

/// A claim's verdict from a difference (in the claim's favour when positive) and its standard
/// error: "held" when difference > 2 se, "reversed" when difference < -2 se, else "not shown".
const char* verdict(double difference, double se) noexcept;

/// LongRoPE2-init (the paper's Table 5): critical pair c, lambda_i = s from c up, the NTK-style
/// geometric ramp lambda_c^(i/c) below it (longrope2_factors), LongRoPE2's attention factor.
ropescale::FactorTable longrope2_init(const ropescale::RopeSpec& spec, std::int64_t target_length,
                                      std::int64_t critical_pair);

/// The search objective.
enum class Objective { kNeedle, kPerplexity };
const char* to_string(Objective o) noexcept;

struct SearchRun {
  std::string space;  ///< "longrope2" or "longrope_v1"
  Objective objective = Objective::kNeedle;
  std::uint64_t seed = 0;
  std::int64_t fitness_rows = 0;
  ropescale::SearchResult result;
  double seconds = 0.0;
};

struct SearchBudget {
  std::int64_t population = 16;
  std::int64_t parents = 8;
  std::int64_t mutations = 4;
  std::int64_t crossovers = 4;
  std::int64_t iterations = 6;
  std::int64_t needle_rows = 32;  ///< rows the needle objective scores (needle at the start)
  std::int64_t text_rows = 8;     ///< rows the perplexity objective scores
};

/// Runs one evolutionary search in `space` ("longrope2" or "longrope_v1") at target_length on
/// rows drawn from `text` (the training part) with `seed`, every candidate scored under the
/// one-table rule; candidates run on `threads` threads.
SearchRun run_search(const Weights& w, const std::string& space, Objective objective,
                     std::int64_t target_length, const SearchBudget& budget,
                     const std::string& text, std::uint64_t seed, int threads,
                     const std::function<void(const std::string&)>& progress);

}  // namespace tiny_llama
