// `ropescale analyze`: the critical-dimension report (LongRoPE2 section 2) for one model and one
// target length, with every scaling method side by side.
//
//   ropescale analyze                                  LLaMA3-8B, 8k -> 128k (built-in default)
//   ropescale analyze --config config.json             a Hugging Face config.json
//   ropescale analyze --base 10000 --rotary-dim 96 --train-len 2048 --target 131072
//   ... [--format table|json] [--svg plot.svg]
#include <fstream>
#include <iostream>
#include <string>
#include <vector>

#include "analyze_report.hpp"
#include "cli.hpp"
#include "ropescale/critical.hpp"
#include "ropescale/io/hf_config.hpp"

namespace {

constexpr const char* kUsage =
    "[--config FILE | --base B --rotary-dim D --train-len L] [--target L] "
    "[--format table|json] [--svg FILE]";

int run_analyze(const std::vector<std::string>& argv) {
  cli::Args args(
      argv, {"--config", "--base", "--rotary-dim", "--train-len", "--target", "--format", "--svg"});
  const bool json = args.json_format();
  const bool manual = args.has("--base") || args.has("--rotary-dim") || args.has("--train-len");
  if (manual && args.has("--config"))
    throw cli::UsageError("--config and --base/--rotary-dim/--train-len exclude each other");
  if (manual && !(args.has("--base") && args.has("--rotary-dim") && args.has("--train-len")))
    throw cli::UsageError("--base, --rotary-dim and --train-len go together");

  analyze::Options opt;
  if (args.has("--config")) {
    opt.config = args.input_file("--config");
    ropescale::ModelRope model;  // read once here so that its errors name --config
    cli::check_input("--config", opt.config, ropescale::try_load_hf_model(opt.config, {}, &model));
  }
  const std::string svg = args.output_file("--svg");
  opt.manual = manual;
  if (manual) {
    opt.base = args.get_double("--base", 0.0, 0.0, ropescale::kMaxRopeTheta);
    if (!(opt.base > 1.0))
      throw cli::UsageError("--base = " + args.get("--base") + ": must be > 1");
    opt.rotary_dim = args.get_int("--rotary-dim", 0, 2, ropescale::kMaxHeadDim);
    if (opt.rotary_dim % 2 != 0)
      throw cli::UsageError("--rotary-dim = " + std::to_string(opt.rotary_dim) +
                            ": must be even (channels rotate in pairs)");
    opt.train_len = args.get_int("--train-len", 0, 7, ropescale::kMaxPosition);
  }
  if (args.has("--target")) opt.target = args.get_int("--target", 0, 1, ropescale::kMaxPosition);
  // A config with a RoPE per layer type (Gemma 3 / Gemma 4) gets one report per kind.
  std::vector<analyze::Report> reports = {analyze::make_report(opt)};
  for (std::size_t k = 1; k < reports[0].layer_kinds; ++k) {
    opt.layer_kind = k;
    reports.push_back(analyze::make_report(opt));
  }

  if (!svg.empty()) {
    for (const analyze::Report& report : reports) {
      std::string path = svg;
      if (reports.size() > 1) {  // out.svg -> out.full_attention.svg
        const auto dot = path.find_last_of('.');
        const std::string tag = "." + report.layer_type;
        path = dot == std::string::npos ? path + tag : path.substr(0, dot) + tag + path.substr(dot);
      }
      std::ofstream out(path);
      if (!out) throw cli::UsageError("--svg = '" + path + "': cannot be opened for writing");
      out << analyze::render_svg(report.cmp, report.model);
      out.close();
      if (!out) throw cli::UsageError("--svg = '" + path + "': write failed");
    }
  }
  if (json) {
    if (reports.size() == 1) {
      std::cout << analyze::to_json(reports[0].cmp, reports[0].model, reports[0].with_detected,
                                    reports[0].detected_critical_pair)
                       .dump(1)
                << "\n";
    } else {
      nlohmann::ordered_json all = nlohmann::ordered_json::object();
      all["layer_kinds"] = nlohmann::ordered_json::array();
      for (const analyze::Report& r : reports) {
        nlohmann::ordered_json one = nlohmann::ordered_json::object();
        one["layer_type"] = r.layer_type;
        one["report"] = analyze::to_json(r.cmp, r.model, r.with_detected, r.detected_critical_pair);
        all["layer_kinds"].push_back(one);
      }
      std::cout << all.dump(1) << "\n";
    }
  } else {
    for (std::size_t k = 0; k < reports.size(); ++k) {
      if (k > 0) std::cout << "\n";
      analyze::print_table(std::cout, reports[k].cmp, reports[k].model,
                           reports[k].detected_critical_pair);
    }
  }
  return 0;
}

const bool registered = cli::register_command(
    {"analyze", "critical-dimension report: which pairs each scaling method leaves OOD", kUsage,
     run_analyze});

}  // namespace
