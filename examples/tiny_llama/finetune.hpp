// Context-extension fine-tuning of the tiny Llama, LongRoPE2 section 3.3.
//
// Every mode spends the same tokens per step on the same kinds of data (TinyStories paragraphs and
// needle documents):
//
// - mixed context window training: long documents (target length, above L_train) fill long
//   segments with the extended table; short documents (paragraphs and L_train-long needle rows)
//   are packed by ropescale::pack_documents into segments of the target length with per-document
//   causal masks and position ids restarting at 0, so they run with the original frequencies
//   (the packing plan's window rule picks the table of each segment);
// - long-table: mixed's documents, packed the same way (the same seed gives the same documents,
//   segments, masks and position ids), but every segment runs with the extended table: the arm
//   that differs from mixed only in the window rule (LongRoPE2's Table 7 ablation);
// - long-only: every step is long documents with the extended table.
//
// The tables come from the model directory's config.json (its rope_scaling, as Hugging Face
// reads it: short factors within L_train, long factors beyond), so a directory written by
// `ropescale extend --export` is fine-tuned with exactly the table the study measured.
#pragma once

#include <cstdint>
#include <functional>
#include <string>

#include "study.hpp"
#include "tasks.hpp"
#include "tiny_llama.hpp"

namespace tiny_llama {

enum class FinetuneMode { kMixed, kLongTable, kLongOnly };
const char* to_string(FinetuneMode m) noexcept;

struct FinetuneOptions {
  FinetuneMode mode = FinetuneMode::kMixed;
  std::int64_t target_length = 1024;    ///< long document tokens (> L_train)
  std::int64_t long_documents = 4;      ///< per step in mixed and long-table modes (long-only:
                                        ///< tokens / length)
  std::int64_t tokens_per_step = 8192;  ///< the same in both modes
  std::int64_t steps = 150;
  double lr = 5e-4;
  std::int64_t warmup_steps = 10;
  double needle_fraction = 0.5;  ///< of the documents of each kind
  int threads = 2;
  std::uint64_t seed = 7;
};

/// One step's report.
struct FinetuneStep {
  std::int64_t step = 0;
  double loss = 0.0;
  double short_tokens = 0.0;  ///< tokens trained with the within-L_train table
  double long_tokens = 0.0;
  double tokens_per_second = 0.0;
};

/// Fine-tunes `w` in place with `tables` (within = short factors, beyond = long factors).
void finetune(Weights& w, const MethodTables& tables, const Corpus& corpus,
              const FinetuneOptions& o, const std::function<void(const FinetuneStep&)>& progress);

}  // namespace tiny_llama
