// The LongRoPE2 extension study on the tiny Llama: needle accuracy and text perplexity at
// L_train and beyond for plain RoPE, PI, NTK, YaRN and searched tables (LongRoPE2's space scored by
// needle-driven or plain perplexity, LongRoPE v1's space scored by plain perplexity).
//
// Inference rule (LongRoPE2 section 3.3, Hugging Face's longrope): a searched table is used only
// once the sequence exceeds L_train; within L_train the original RoPE (identity table) applies,
// and the KV cache switches with KeyRerotation at the crossing (MethodTables). The static methods
// (PI, NTK, YaRN) apply their table at every length, as engines load them.
//
// Every evaluation row comes from the held-out tenth of the text, with seeds disjoint from the
// rows the searches score, so no searched table has seen the rows it is judged on.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "ropescale/factors.hpp"
#include "ropescale/search.hpp"
#include "tasks.hpp"
#include "tiny_llama.hpp"

namespace tiny_llama {

/// Needle rows at fixed depths and text rows for one length.
struct LengthSet {
  std::int64_t length = 0;
  std::vector<double> depths;
  std::vector<NeedleRow> needles;  ///< needles_per_depth rows per depth, depth-major
  std::vector<Sequence> text;
  static LengthSet make(const std::string& text, std::int64_t length,
                        const std::vector<double>& depths, std::int64_t needles_per_depth,
                        std::int64_t text_rows, std::uint64_t seed);
};

struct LengthScore {
  double needle_accuracy = 0.0;  ///< exact match over all needle rows
  std::vector<double> accuracy_by_depth;
  double answer_nll = 0.0;  ///< mean per answer token (needle-driven perplexity = exp of it)
  double ppl = 0.0;         ///< text perplexity per byte
};

/// The tables one method uses. LongRoPE2's inference rule (section 3.3, Hugging Face's longrope):
/// `within` while the sequence fits L_train, `beyond` once it grows past it. Rows are decoded as
/// an engine does: the first L_train tokens in one chunk with `within`, then the cached keys are
/// switched with ropescale::KeyRerotation and the rest runs with `beyond`. A static method (PI,
/// NTK, YaRN) uses one table for both, which is one plain forward.
struct MethodTables {
  ropescale::FactorTable within, beyond;
  /// One table at every length.
  static MethodTables fixed(const ropescale::FactorTable& t) { return {t, t}; }
  /// The original frequencies within L_train, `extended` beyond it. Hugging Face's longrope
  /// applies one attention factor to both factor sets, so `within` keeps the extended table's
  /// attention factor: what a config written by longrope_config_from_tables loads as.
  static MethodTables switching(const ropescale::RopeSpec& spec,
                                const ropescale::FactorTable& extended) {
    return {ropescale::FactorTable(Eigen::ArrayXd::Ones(spec.pairs()), extended.attention_factor(),
                                   "longrope_short"),
            extended};
  }
};

/// Log-probabilities [vocab, T] of one row under a method, decoded with the inference rule.
Matrix decode_log_probs(const Weights& w, const MethodTables& m, const Sequence& s);

/// Scores a method at set.length.
LengthScore score_method(const Weights& w, const MethodTables& m, const LengthSet& set,
                         int threads);

/// The search objective.
enum class Objective { kNeedle, kPerplexity };
const char* to_string(Objective o) noexcept;

struct SearchRun {
  std::string space;  ///< "longrope2" or "longrope_v1"
  Objective objective = Objective::kNeedle;
  std::int64_t target_length = 0;
  ropescale::FactorTable table;
  std::int64_t critical_pair = 0;  ///< c the search settled on (0 for v1)
  std::int64_t theoretical_critical_pair = 0;
  std::int64_t evaluations = 0;
  double best_loss = 0.0;
  double seconds = 0.0;
};

struct SearchBudget {
  std::int64_t population = 16;
  std::int64_t parents = 8;
  std::int64_t mutations = 4;
  std::int64_t crossovers = 4;
  std::int64_t iterations = 6;
  std::int64_t needle_rows = 6;  ///< rows the needle objective scores
  std::int64_t text_rows = 3;    ///< rows the perplexity objective scores
};

/// Runs one evolutionary search in `space` ("longrope2" or "longrope_v1") at target_length on
/// rows drawn from `text` with `seed`.
SearchRun run_search(const Weights& w, const std::string& space, Objective objective,
                     std::int64_t target_length, const SearchBudget& budget,
                     const std::string& text, std::uint64_t seed, int threads,
                     const std::function<void(const std::string&)>& progress);

}  // namespace tiny_llama
