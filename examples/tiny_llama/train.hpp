// The tiny Llama's trainer: a curriculum of stages, each a mixture of copy, needle and text rows,
// trained with AdamW on N threads, with held-out diagnostics logged as JSON lines.
//
// Retrieval does not emerge from text plus needles alone at this scale (see the README's study):
// the curriculum grows the copy (induction) mechanism first on short rows with few symbols, then
// widens it to needles with several key-value pairs, and adds text once copying holds.
#pragma once

#include <cstdint>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "study.hpp"
#include "tasks.hpp"
#include "tiny_llama.hpp"

namespace tiny_llama {

struct Stage {
  std::string name;
  std::int64_t steps = 0;
  std::int64_t batch = 32;  ///< rows per step
  double lr = 3e-3;
  double copy = 1.0;  ///< mixture weights of row kinds (normalised)
  double needle = 0.0;
  double text = 0.0;
  /// Rows in the study's format (make_study_needle on the training text): one needle at a depth
  /// drawn as for needle rows (needle_start_fraction at 0, needle_end_fraction at 1, uniform
  /// otherwise), the question right after the haystack, loss on the 4 answer digits.
  double study_needle = 0.0;
  std::int64_t text_length = 256;         ///< row tokens of text rows
  std::vector<CopyOptions> copy_options;  ///< copy rows draw one uniformly (empty: defaults)
  /// Ends the stage early at an evaluation whose held-out copy accuracy reaches this (0: never).
  double advance_at_copy_accuracy = 0.0;
  /// Decays the learning rate (cosine) from lr to TrainOptions::final_lr_fraction * lr over the
  /// stage; otherwise lr is constant.
  bool cosine = false;
  NeedleOptions needle_options;
  /// Fractions of needle rows whose first needle sits at depth 0 (the start of the document) and
  /// at depth 1 (just before the questions); the others keep needle_options.depth. Both 0 draws
  /// nothing extra, so older runs repeat.
  double needle_start_fraction = 0.0;
  double needle_end_fraction = 0.0;
  /// Fraction of steps run with the original frequencies times an attention factor drawn
  /// uniformly in [1, max_attention_factor]: what a longrope config applies within L_train
  /// (Hugging Face's one attention factor for both factor sets). 0 draws nothing extra.
  double scaled_attention_fraction = 0.0;
  double max_attention_factor = 1.0;
};

struct TrainOptions {
  std::vector<Stage> stages;
  std::int64_t warmup_steps = 50;
  double final_lr_fraction = 0.1;  ///< a cosine stage decays to this fraction of its lr
  int threads = 2;
  std::uint64_t seed = 1;
  std::int64_t eval_every = 100;
  std::string log_path;  ///< JSON lines, one per evaluation (empty: none)
  std::string out_dir;   ///< model + optimizer checkpoint at every evaluation (empty: none)
  /// Resume point: steps done in all, the stage and the steps done within it (batches derive
  /// from seed + step, so a resumed run draws what an uninterrupted one would).
  std::int64_t start_step = 0;
  std::int64_t start_stage = 0;
  std::int64_t start_stage_step = 0;
  /// Stops the run at the next evaluation when it returns false (e.g. a dead-run rule).
  std::function<bool(const struct Diagnostics&)> keep_going;
};

/// Held-out diagnostics on fixed rows the training never samples (held-out text, fixed seeds).
struct Diagnostics {
  std::int64_t step = 0;
  double train_loss = 0.0;  ///< mean over the steps since the last evaluation
  double copy_nll = 0.0;    ///< induction: NLL on the repeat (chance = ln symbols)
  double copy_accuracy = 0.0;
  double needle_accuracy = 0.0;  ///< exact match of the answers at L_train
  double needle_nll = 0.0;       ///< per answer token
  double text_bpb = 0.0;         ///< held-out text, bits per byte
  double tokens_per_second = 0.0;
  double seconds = 0.0;
  /// Exact match of study-format needles (one needle, held-out text) per eval_depths() depth,
  /// with the original RoPE and with it times the 4x long table's attention factor (empty: no
  /// depth rows).
  std::vector<double> depth_accuracy, depth_accuracy_scaled;
};

/// The depths of the base-model gate (docs/study-protocol.md), which the evaluation mirrors.
inline const std::vector<double>& eval_depths() {
  static const std::vector<double> kDepths = {0.0, 0.25, 0.5, 0.75, 1.0};
  return kDepths;
}

/// The diagnostics as one JSON object (the log line and the tool's JSON share it).
nlohmann::json to_json(const Diagnostics& d);

/// The dead-run rule of the default curriculum: false (stop) once `after_step` steps are done and
/// the held-out copy NLL is still above `fraction` of chance (ln 16 for the copy rows' 16
/// symbols), i.e. induction never started. The shipped run was at 0.87 of chance at step 1000.
bool induction_alive(const struct Diagnostics& d, std::int64_t after_step = 1500,
                     double fraction = 0.95);

/// The default curriculum for the shipped model (see README for the measured run).
TrainOptions default_curriculum();

/// A needle stage over the whole depth range that continues from trained weights (fresh AdamW):
/// 3-needle rows at uniform depths with a quarter at the document start and a tenth just before
/// the questions, some text and
/// copy rows, and a third of the steps with a longrope attention factor up to 1.2 (8x's is 1.17).
TrainOptions needle_depth_curriculum();

/// The stage that trains what the base-model gate tests, from trained weights (fresh AdamW): half
/// the needle rows in the study's one-needle format, half 3-needle rows whose first question asks
/// for the last needle a third of the time, a fifth of each at depth 0 and at depth 1, text and
/// copy rows, and a third of the steps with an attention factor up to 1.2. `steps` sizes it.
TrainOptions gate_curriculum(std::int64_t steps);

/// Study-format needles per depth in the trainer's evaluation.
inline constexpr std::int64_t kEvalDepthRows = 16;

/// The seed of the evaluation rows of a run trained with `seed`.
inline std::uint64_t eval_seed(std::uint64_t seed) noexcept { return seed ^ 0x5eedULL; }

/// Evaluation sets drawn from held-out text with a fixed seed.
struct EvalSets {
  std::vector<Sequence> copy;
  std::vector<NeedleRow> needle;
  std::vector<Sequence> text;
  /// depth_rows study-format needles per eval_depths() depth, depth-major (none by default).
  std::vector<StudyNeedle> depth;
  static EvalSets make(const Corpus& corpus, std::int64_t window, std::uint64_t seed,
                       std::int64_t depth_rows = 0);
};
Diagnostics evaluate(const Weights& w, const Rope& rope, const EvalSets& sets, int threads);

/// Exact match of sets.depth per eval_depths() depth under `rope` (empty without depth rows).
std::vector<double> depth_accuracy(const Weights& w, const Rope& rope, const EvalSets& sets,
                                   int threads);

/// Throws ropescale::Error naming the field when `o`'s resume point is not one of its plan's
/// (step beyond kMaxTrainSteps, a stage the plan lacks, a stage_step past its stage) or
/// eval_every < 1. train() calls it first; a tool calls it before it prints anything.
void check_start(const TrainOptions& o);

/// Trains `w` in place with `opt` (fresh, or restored with the weights to resume at
/// o.start_step); `progress` receives every evaluation.
void train(Weights& w, AdamW& opt, const Corpus& corpus, const TrainOptions& o,
           const std::function<void(const Diagnostics&)>& progress);

}  // namespace tiny_llama
