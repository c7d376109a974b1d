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
#include <utility>
#include <vector>

#include "analyze_report.hpp"
#include "cli.hpp"
#include "ropescale/critical.hpp"
#include "ropescale/io/hf_config.hpp"

namespace {

constexpr const char* kUsage =
    "[--config FILE | --base B --rotary-dim D --train-len L] [--target L] "
    "[--format table|json] [--svg FILE]";

const std::vector<cli::Option>& options() {
  static const std::vector<cli::Option> kOptions = {
      {"--config", "FILE", "LLaMA3-8B with its published LongRoPE2 table",
       "the model's Hugging Face config.json"},
      {"--base", "B", "", "rope_theta, with --rotary-dim and --train-len instead of --config"},
      {"--rotary-dim", "D", "", "rotating channels (even)"},
      {"--train-len", "L", "", "the pre-training window L_train"},
      {"--target", "L", "the config's own extension, else 16 x the window",
       "target context length"},
      cli::format_option(),
      {"--svg", "FILE", "", "also draw lambda_i per pair for every method"},
  };
  return kOptions;
}

int run_analyze(const std::vector<std::string>& argv) {
  cli::Args args(argv, options());
  const bool json = args.json_format();
  const bool manual = args.has("--base") || args.has("--rotary-dim") || args.has("--train-len");
  if (manual && args.has("--config"))
    throw cli::UsageError("--config and --base/--rotary-dim/--train-len exclude each other");
  if (manual && !(args.has("--base") && args.has("--rotary-dim") && args.has("--train-len")))
    throw cli::UsageError("--base, --rotary-dim and --train-len go together");

  analyze::Options opt;
  ropescale::ModelRope model;
  if (args.has("--config")) {
    opt.config = args.input_file("--config");
    // read once here so that its errors name --config
    ropescale::Result<ropescale::ModelRope> loaded = ropescale::load_hf_model(opt.config);
    cli::check_input("--config", opt.config, loaded.status());
    model = std::move(loaded).value();
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
    // One document: the model's RoPE kinds (a config's, or one built from the spec), each with
    // its report (analyze::to_json's fields) beside the shared RoPE fields.
    nlohmann::json doc = cli::json_document("analyze");
    doc["model"] = reports[0].model;
    doc["config"] = opt.config.empty() ? nlohmann::json(nullptr) : nlohmann::json(opt.config);
    doc["layer_types"] = model.layer_types;
    doc["kinds"] = opt.config.empty() ? nlohmann::json::array({nlohmann::json::object()})
                                      : cli::kinds_json(model);
    for (std::size_t k = 0; k < reports.size(); ++k) {
      const analyze::Report& r = reports[k];
      nlohmann::json& kind = doc["kinds"][k];
      if (opt.config.empty()) {  // no config: the RoPE the options describe, no layout known
        kind = cli::spec_kind_json(r.cmp.analysis.spec, nullptr, nullptr, {});
      }
      const nlohmann::json report = nlohmann::json::parse(
          analyze::to_json(r.cmp, r.model, r.with_detected, r.detected_critical_pair).dump());
      for (const auto& item : report.items())
        if (item.key() != "model" && !kind.contains(item.key())) kind[item.key()] = item.value();
      if (!kind.contains("detected_critical_pair")) kind["detected_critical_pair"] = nullptr;
    }
    std::cout << doc.dump(1) << "\n";
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
     run_analyze, options()});

}  // namespace
