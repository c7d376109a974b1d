// `ropescale train`: trains the tiny Llama from scratch with the curriculum of
// examples/tiny_llama/train.cpp (copy -> needles -> text), logs held-out diagnostics and writes a
// Hugging Face model directory (config.json + model.safetensors).
//
//   ropescale train --out DIR [--resume] [--plan default|smoke|needles|gate] [--from DIR]
//                   [--steps N] [--threads N] [--seed S] [--log FILE] [--eval-every N]
//                   [--format table|json]
//
// The directory is rewritten at every evaluation (model and AdamW moments); --resume continues
// from it with the same batches an uninterrupted run would have drawn. --plan needles is the
// needle stage over the whole depth range (needle_depth_curriculum), started from the weights in
// --from (default: the shipped tiny Llama) with a fresh AdamW; --plan gate is the stage that trains
// what the study's base-model gate tests (gate_curriculum: study-format needles at every depth),
// --steps long, from --from (default: tiny-llama-needles).
#include <cmath>
#include <iomanip>
#include <iostream>
#include <limits>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "checkpoint.hpp"
#include "cli.hpp"
#include "train.hpp"

#ifndef ROPESCALE_EXAMPLES_DATA_DIR
#define ROPESCALE_EXAMPLES_DATA_DIR "examples/data"
#endif

namespace {

constexpr const char* kUsage =
    "--out DIR [--resume] [--plan default|smoke|needles|gate] [--from DIR] [--steps N] "
    "[--threads N] [--seed S] "
    "[--log FILE] "
    "[--eval-every N] [--text FILE] [--format table|json]";

const std::vector<cli::Option>& options() {
  static const std::vector<cli::Option> kOptions = {
      {"--out", "DIR", "", "the model directory to write (required)"},
      {"--resume", "", "", "continue from the optimizer state in --out"},
      {"--plan", "default|smoke|needles|gate", "default",
       "the curriculum; smoke: 10 steps per stage; needles: the needle stage over the whole depth "
       "range, continuing from --from with a fresh AdamW; gate: study-format needles at every "
       "depth, the same way"},
      {"--from", "DIR", "examples/data/tiny-llama (gate: tiny-llama-needles)",
       "the model --plan needles or gate starts from"},
      {"--steps", "N", "3000", "steps of --plan gate"},
      {"--threads", "N", "2", "threads"},
      {"--seed", "S", "1 (needles: 2, gate: 3)", "seed of the initial weights and the rows"},
      {"--log", "FILE", "", "also write one JSON line per evaluation"},
      {"--eval-every", "N", "100 (smoke: 10)", "steps between held-out evaluations"},
      {"--text", "FILE", "examples/data/tinystories-valid-prefix.txt", "training text"},
      cli::format_option(),
  };
  return kOptions;
}

int run_train(const std::vector<std::string>& argv) {
  cli::Args args(argv, options());
  const bool json = args.json_format();
  const std::string out = args.get("--out");
  if (out.empty()) throw cli::UsageError("--out is required (the model directory to write)");
  cli::check_output_dir("--out", out);
  if (args.has("--resume")) cli::check_input_file("--out", out + "/optimizer_m.safetensors");
  const std::string plan = args.get("--plan", "default");
  if (plan != "default" && plan != "smoke" && plan != "needles" && plan != "gate")
    throw cli::UsageError("--plan = '" + cli::Args::clip(plan) +
                          "': must be 'default', 'smoke', 'needles' or 'gate'");
  const bool continues = plan == "needles" || plan == "gate";
  if (args.has("--from") && !continues)
    throw cli::UsageError("--from applies to --plan needles or gate only");
  if (args.has("--steps") && plan != "gate")
    throw cli::UsageError("--steps applies to --plan gate only");
  const std::string from =
      args.get("--from", std::string(ROPESCALE_EXAMPLES_DATA_DIR) +
                             (plan == "gate" ? "/tiny-llama-needles" : "/tiny-llama"));
  if (continues && !args.has("--resume")) cli::check_model_dir("--from", from);
  const std::int64_t steps = args.get_int("--steps", 3000, 1, tiny_llama::kMaxTrainSteps);
  const std::int64_t threads = args.get_int("--threads", 2, 1, 256);
  const std::int64_t eval_every =
      args.get_int("--eval-every", plan == "smoke" ? 10 : 100, 1, 1000000);
  const std::int64_t seed = args.get_int("--seed",
                                         plan == "needles" ? 2
                                         : plan == "gate"  ? 3
                                                           : 1,
                                         0, std::numeric_limits<std::int64_t>::max());
  const std::string log_path = args.output_file("--log");
  const std::string text = args.input_file(
      "--text", std::string(ROPESCALE_EXAMPLES_DATA_DIR) + "/tinystories-valid-prefix.txt");

  tiny_llama::TrainOptions o = plan == "needles" ? tiny_llama::needle_depth_curriculum()
                               : plan == "gate"  ? tiny_llama::gate_curriculum(steps)
                                                 : tiny_llama::default_curriculum();
  if (plan == "smoke")
    for (tiny_llama::Stage& s : o.stages) {
      s.steps = 10;
      s.batch = 4;
    }
  o.threads = static_cast<int>(threads);
  o.seed = static_cast<std::uint64_t>(seed);
  o.eval_every = eval_every;
  o.log_path = log_path;
  o.out_dir = out;

  const tiny_llama::Config config;
  tiny_llama::Weights w = tiny_llama::Weights::initialized(config, o.seed);
  tiny_llama::AdamW opt(w, {});
  if (args.has("--resume")) {
    w = tiny_llama::load_model_dir(out);
    opt = tiny_llama::AdamW(w, {});  // the moments of the directory's shapes
    const tiny_llama::TrainPosition at = tiny_llama::load_optimizer(out, w.config(), opt);
    o.start_step = at.step;
    o.start_stage = at.stage;
    o.start_stage_step = at.stage_step;
    tiny_llama::check_start(o);
    std::cerr << "resuming " << out << " at step " << o.start_step << "\n";
  } else if (continues) {
    w = tiny_llama::load_model_dir(from);
    opt = tiny_llama::AdamW(w, {});
    std::cerr << "continuing from " << from << " with a fresh AdamW\n";
  }
  const tiny_llama::Corpus corpus = tiny_llama::Corpus::load(text);
  std::int64_t total = 0;  // at most: a stage may end early
  for (const auto& s : o.stages) total += s.steps;
  std::cerr << "training " << w.parameter_count() << " parameters, " << total << " steps, "
            << threads << " threads\n";
  nlohmann::json evals = nlohmann::json::array();
  if (!json)
    std::cout
        << "  step  train_loss  copy_nll  copy_acc  needle_acc  needle_nll  text_bpb  tok/s\n";
  tiny_llama::Diagnostics last;
  tiny_llama::train(w, opt, corpus, o, [&](const tiny_llama::Diagnostics& d) {
    last = d;
    if (json) {
      evals.push_back(tiny_llama::to_json(d));
      std::cerr << "\rstep " << d.step << "/" << total << std::flush;
    } else {
      std::cout << std::fixed << std::setprecision(3) << std::setw(6) << d.step << std::setw(12)
                << d.train_loss << std::setw(10) << d.copy_nll << std::setw(10) << d.copy_accuracy
                << std::setw(12) << d.needle_accuracy << std::setw(12) << d.needle_nll
                << std::setw(10) << d.text_bpb << std::setw(7) << std::setprecision(0)
                << d.tokens_per_second << std::endl;
    }
  });
  if (plan == "default" && !tiny_llama::induction_alive(last)) {
    std::cerr << "stopped at step " << last.step << ": held-out copy NLL " << last.copy_nll
              << " is still near chance (ln 16 = 2.77), induction did not start; try another "
                 "--seed\n";
    return 1;
  }
  if (json) {
    std::cerr << "\n";
    std::cout << cli::json_document(
                     "train",
                     {{"out", out}, {"parameters", w.parameter_count()}, {"evaluations", evals}})
                     .dump(2)
              << "\n";
  } else {
    std::cout << "wrote " << out << "/config.json and " << out << "/model.safetensors\n";
  }
  return 0;
}

const bool registered =
    cli::register_command({"train", "train the tiny Llama (copy -> needles -> text curriculum)",
                           kUsage, run_train, options()});

}  // namespace
