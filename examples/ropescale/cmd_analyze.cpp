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
  opt.config = args.get("--config");
  if (args.has("--config") && opt.config.empty()) throw cli::UsageError("--config needs a file");
  opt.manual = manual;
  opt.base = args.get_double("--base", 0.0);
  opt.rotary_dim = args.get_int("--rotary-dim", 0);
  opt.train_len = args.get_int("--train-len", 0);
  if (args.has("--target")) opt.target = args.get_int("--target", 0);
  const analyze::Report report = analyze::make_report(opt);

  if (args.has("--svg")) {
    const std::string path = args.get("--svg");
    std::ofstream out(path);
    if (!out)
      ropescale::throw_if_error(ropescale::make_status(ropescale::ErrorCode::kIoError, "--svg",
                                                       path, "cannot be opened for writing"));
    out << analyze::render_svg(report.cmp, report.model);
    out.close();
    if (!out)
      ropescale::throw_if_error(
          ropescale::make_status(ropescale::ErrorCode::kIoError, "--svg", path, "write failed"));
  }
  if (json)
    std::cout << analyze::to_json(report.cmp, report.model, report.with_detected,
                                  report.detected_critical_pair)
                     .dump(1)
              << "\n";
  else
    analyze::print_table(std::cout, report.cmp, report.model, report.detected_critical_pair);
  return 0;
}

const bool registered = cli::register_command(
    {"analyze", "critical-dimension report: which pairs each scaling method leaves OOD", kUsage,
     run_analyze});

}  // namespace
