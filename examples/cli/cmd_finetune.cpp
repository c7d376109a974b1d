// `ropescale finetune`: context-extension fine-tuning of a tiny Llama directory whose config.json
// carries a rope_scaling (as `ropescale extend --export` writes it): mixed context window training
// (LongRoPE2 section 3.3), long-table (mixed's documents, every segment with the extended table:
// the arm that differs from mixed only in the window rule) or long-only, the same tokens per step
// in all three.
//
//   ropescale finetune --model DIR --out DIR [--mode mixed|long-table|long] [--steps N]
//                      [--tokens-per-step N] [--lr X] [--threads N] [--seed S] [--log FILE]
//                      [--format table|json]
//
// The output directory gets the fine-tuned weights and the same config.json (the same tables).
#include <fstream>
#include <iomanip>
#include <iostream>
#include <limits>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "checkpoint.hpp"
#include "cli.hpp"
#include "finetune.hpp"

#ifndef ROPESCALE_EXAMPLES_DATA_DIR
#define ROPESCALE_EXAMPLES_DATA_DIR "examples/data"
#endif

namespace {

constexpr const char* kUsage =
    "--model DIR --out DIR [--mode mixed|long-table|long] [--steps N] [--tokens-per-step N] [--lr "
    "X] "
    "[--threads N] [--seed S] [--log FILE] [--text FILE] [--format table|json]";

const std::vector<cli::Option>& options() {
  static const tiny_llama::FinetuneOptions d;
  static const std::vector<cli::Option> kOptions = {
      {"--model", "DIR", "",
       "an extended model: config.json with a longrope rope_scaling (required)"},
      {"--out", "DIR", "", "the directory to write (required)"},
      {"--mode", "mixed|long-table|long", "mixed",
       "mixed context windows; mixed's documents all with the long table; or long windows only"},
      {"--steps", "N", std::to_string(d.steps), "optimizer steps"},
      {"--tokens-per-step", "N", std::to_string(d.tokens_per_step), "tokens per step"},
      {"--lr", "X", cli::Args::num(d.lr), "learning rate"},
      {"--threads", "N", "2", "threads"},
      {"--seed", "S", "7", "seed of the rows"},
      {"--log", "FILE", "", "also write one JSON line per step"},
      {"--text", "FILE", "examples/data/tinystories-valid-prefix.txt", "training text"},
      cli::format_option(),
  };
  return kOptions;
}

int run_finetune(const std::vector<std::string>& argv) {
  cli::Args args(argv, options());
  const bool json = args.json_format();
  const std::string model = args.get("--model");
  if (model.empty())
    throw cli::UsageError("--model is required (a directory with a rope_scaling in config.json)");
  cli::check_model_dir("--model", model);
  const std::string out = args.get("--out");
  if (out.empty()) throw cli::UsageError("--out is required (the directory to write)");
  cli::check_output_dir("--out", out);
  const std::string mode = args.get("--mode", "mixed");
  if (mode != "mixed" && mode != "long-table" && mode != "long")
    throw cli::UsageError("--mode = '" + cli::Args::clip(mode) +
                          "': must be 'mixed', 'long-table' or 'long'");
  tiny_llama::FinetuneOptions o;
  o.mode = mode == "mixed"        ? tiny_llama::FinetuneMode::kMixed
           : mode == "long-table" ? tiny_llama::FinetuneMode::kLongTable
                                  : tiny_llama::FinetuneMode::kLongOnly;
  o.steps = args.get_int("--steps", o.steps, 1, 1000000);
  o.tokens_per_step = args.get_int("--tokens-per-step", o.tokens_per_step, 2, 1 << 24);
  o.lr = args.get_double("--lr", o.lr, 1e-8, 1.0);
  o.threads = static_cast<int>(args.get_int("--threads", 2, 1, 256));
  o.seed = static_cast<std::uint64_t>(
      args.get_int("--seed", 7, 0, std::numeric_limits<std::int64_t>::max()));
  const std::string log_path = args.output_file("--log");
  const std::string text = args.input_file(
      "--text", std::string(ROPESCALE_EXAMPLES_DATA_DIR) + "/tinystories-valid-prefix.txt");

  tiny_llama::Weights w = tiny_llama::load_model_dir(model);
  const ropescale::RopeConfig rope = tiny_llama::load_rope_config(model);
  if (rope.rope_type != ropescale::RopeType::kLongRope)
    throw cli::InputError("--model = '" + cli::Args::clip(model) +
                          "': config.json has no longrope rope_scaling (run ropescale extend "
                          "--export first)");
  const std::int64_t L = w.config().max_position_embeddings;
  o.target_length = rope.max_position_embeddings;
  if (o.tokens_per_step < o.target_length)
    throw cli::UsageError("--tokens-per-step = " + std::to_string(o.tokens_per_step) +
                          ": must hold one window of " + std::to_string(o.target_length));
  const tiny_llama::MethodTables tables{rope.table_for(L).value(),
                                        rope.table_for(o.target_length).value()};
  const tiny_llama::Corpus corpus = tiny_llama::Corpus::load(text);
  std::ofstream log;
  if (!log_path.empty()) log.open(log_path, std::ios::trunc);
  std::cerr << "fine-tuning " << model << " (" << mode << ", " << o.steps << " steps x "
            << o.tokens_per_step << " tokens, windows " << L << " / " << o.target_length << ")\n";
  double last_loss = 0.0, last_tps = 0.0;
  tiny_llama::finetune(w, tables, corpus, o, [&](const tiny_llama::FinetuneStep& s) {
    const nlohmann::json line = {{"step", s.step},
                                 {"loss", s.loss},
                                 {"short_tokens", s.short_tokens},
                                 {"long_tokens", s.long_tokens},
                                 {"tokens_per_second", s.tokens_per_second}};
    if (log.is_open()) log << line.dump() << "\n" << std::flush;
    last_loss = s.loss;
    last_tps = s.tokens_per_second;
    std::cerr << "\rstep " << s.step << "/" << o.steps << "  loss " << std::fixed
              << std::setprecision(3) << s.loss << "  " << std::setprecision(0)
              << s.tokens_per_second << " tok/s   " << std::flush;
  });
  std::cerr << "\n";
  nlohmann::json cfg = nlohmann::json::parse(std::ifstream(model + "/config.json"));
  cfg["ropescale_finetune"] = {{"mode", tiny_llama::to_string(o.mode)},
                               {"steps", o.steps},
                               {"tokens_per_step", o.tokens_per_step},
                               {"lr", o.lr},
                               {"seed", o.seed}};
  tiny_llama::save_model_dir(out, w, cfg);
  const nlohmann::json summary =
      cli::json_document("finetune", {{"out", out},
                                      {"mode", tiny_llama::to_string(o.mode)},
                                      {"steps", o.steps},
                                      {"tokens", o.steps * o.tokens_per_step},
                                      {"final_loss", last_loss},
                                      {"tokens_per_second", last_tps}});
  if (json)
    std::cout << summary.dump(2) << "\n";
  else
    std::cout << "wrote " << out << " (" << tiny_llama::to_string(o.mode) << ", "
              << o.steps * o.tokens_per_step << " tokens, final loss " << std::fixed
              << std::setprecision(3) << last_loss << ", " << std::setprecision(0) << last_tps
              << " tokens/s)\n";
  return 0;
}

const bool registered = cli::register_command(
    {"finetune", "fine-tune an extended tiny Llama: mixed context windows, long-table or long-only",
     kUsage, run_finetune, options()});

}  // namespace
