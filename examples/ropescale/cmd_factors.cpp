// `ropescale factors`: reads a Hugging Face config.json and prints the factor table Hugging Face
// uses for a sequence of --seq-len tokens: rotary_dim, the per-pair factors lambda_i, the float64
// inverse frequencies base_inv_freq_i / lambda_i, the attention factor, and which LongRoPE set
// was selected (short, long, or none for other methods).
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "cli.hpp"
#include "ropescale/io/hf_config.hpp"

namespace {

ropescale::YarnSemantics parse_yarn(const std::string& v) {
  if (v == "current") return ropescale::YarnSemantics::kCurrent;
  if (v == "derived") return ropescale::YarnSemantics::kDerivedFactor;
  if (v == "legacy") return ropescale::YarnSemantics::kLegacy;
  throw cli::UsageError("--yarn = '" + cli::Args::clip(v) +
                        "': must be 'current', 'derived' or 'legacy'");
}

// Shortest decimal that reads back as the same double (as Python's repr and JSON output do).
std::string g17(double x) {
  char buf[40];
  for (int digits = 15; digits <= 17; ++digits) {
    std::snprintf(buf, sizeof buf, "%.*g", digits, x);
    if (std::strtod(buf, nullptr) == x) break;
  }
  return buf;
}

int run_factors(const std::vector<std::string>& argv) {
  cli::Args args(argv, {"--config", "--seq-len", "--format", "--yarn"});
  if (!args.has("--config")) throw cli::UsageError("--config FILE is required");
  const bool json_out = args.json_format();
  const std::int64_t seq_len = args.get_int("--seq-len", 0, 1, ropescale::kMaxPosition);
  ropescale::HfImportOptions options;
  options.yarn = parse_yarn(args.get("--yarn", "current"));
  const std::string path = args.input_file("--config");

  ropescale::RopeConfig cfg;
  cli::check_input("--config", path, ropescale::try_load_hf_config(path, options, &cfg));
  const ropescale::FactorTable table = cfg.table_for(seq_len);
  const Eigen::ArrayXd inv_freq = table.inv_freq(cfg.spec);
  const auto selection = cfg.selection_for(seq_len);

  if (json_out) {
    nlohmann::json out = nlohmann::json::object();
    out["rotary_dim"] = cfg.spec.rotary_dim;
    out["factors"] = ropescale::to_rope_freqs_json(table);
    nlohmann::json inv = nlohmann::json::array();
    for (Eigen::Index i = 0; i < inv_freq.size(); ++i) inv.push_back(inv_freq[i]);
    out["inv_freq"] = inv;
    out["attention_factor"] = table.attention_factor();
    out["selected"] = selection ? nlohmann::json(ropescale::to_string(*selection)) : nullptr;
    std::cout << out.dump() << "\n";
    return 0;
  }

  std::cout << "config             " << path << "\n"
            << "rope_type          " << ropescale::to_string(cfg.rope_type) << "\n"
            << "head_dim           " << cfg.spec.head_dim << "\n"
            << "rotary_dim         " << cfg.spec.rotary_dim << "\n"
            << "rope_theta         " << g17(cfg.spec.rope_theta) << "\n"
            << "window             " << cfg.spec.original_max_position
            << " (max_position_embeddings " << cfg.max_position_embeddings << ")\n"
            << "seq_len            "
            << (args.has("--seq-len") ? std::to_string(seq_len) : std::string("(short window)"))
            << "\n"
            << "selected           " << (selection ? ropescale::to_string(*selection) : "none")
            << "\n"
            << "attention_factor   " << g17(table.attention_factor()) << "\n\n";
  std::printf("%5s  %24s  %24s\n", "pair", "factor", "inv_freq");
  for (Eigen::Index i = 0; i < inv_freq.size(); ++i)
    std::printf("%5ld  %24s  %24s\n", static_cast<long>(i), g17(table.factors()[i]).c_str(),
                g17(inv_freq[i]).c_str());
  return 0;
}

const bool registered = cli::register_command(
    {"factors", "print the factor table a Hugging Face config.json gives for a sequence length",
     "--config FILE [--seq-len N] [--format json|table] [--yarn current|derived|legacy]",
     run_factors});

}  // namespace
