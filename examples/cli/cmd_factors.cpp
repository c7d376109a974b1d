// `ropescale factors`: reads a Hugging Face config.json and prints the factor table Hugging Face
// uses for a sequence of --seq-len tokens: rotary_dim, the per-pair factors lambda_i, the float64
// inverse frequencies base_inv_freq_i / lambda_i, the attention factor, and which LongRoPE set
// was selected (short, long, or none for other methods). A config with a RoPE per layer type
// (Gemma 3 / Gemma 4, transformers v5 rope_parameters by layer type) prints one section per
// distinct RoPE with the layers that use it.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "cli.hpp"
#include "ropescale/io/hf_config.hpp"
#include "ropescale/io/hf_export.hpp"

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

const std::vector<cli::Option>& options() {
  static const std::vector<cli::Option> kOptions = {
      {"--config", "FILE", "", "the model's Hugging Face config.json (required)"},
      {"--seq-len", "N", "the original window",
       "sequence length (max position + 1) whose table to print; LongRoPE switches to its long "
       "factors past the original window"},
      cli::format_option(),
      {"--yarn", "current|derived|legacy", "current",
       "which transformers YaRN code to follow (current, v5-dev derived factor, legacy window)"},
  };
  return kOptions;
}

int run_factors(const std::vector<std::string>& argv) {
  cli::Args args(argv, options());
  if (!args.has("--config")) throw cli::UsageError("--config FILE is required");
  const bool json_out = args.json_format();
  const std::int64_t seq_len = args.get_int("--seq-len", 0, 1, ropescale::kMaxPosition);
  ropescale::HfImportOptions import;
  import.yarn = parse_yarn(args.get("--yarn", "current"));
  const std::string path = args.input_file("--config");

  ropescale::Result<ropescale::ModelRope> loaded = ropescale::load_hf_model(path, import);
  cli::check_input("--config", path, loaded.status());
  const ropescale::ModelRope& model = *loaded;

  // One section per distinct RoPE (Gemma 3/4: sliding and full layers); a config with one RoPE
  // for every layer prints exactly one.
  nlohmann::json doc = cli::json_document("factors");
  doc["config"] = path;
  doc["seq_len"] = args.has("--seq-len") ? nlohmann::json(seq_len) : nlohmann::json(nullptr);
  doc["layer_types"] = model.layer_types;
  doc["kinds"] = cli::kinds_json(model);
  for (std::size_t k = 0; k < model.kinds.size(); ++k) {
    const ropescale::RopeConfig& cfg = model.kinds[k].config;
    nlohmann::json& kind = doc["kinds"][k];
    const ropescale::FactorTable table = cfg.table_for(seq_len).value();
    const Eigen::ArrayXd inv_freq = table.inv_freq(cfg.spec).value();
    const auto selection = cfg.window_for(seq_len);
    kind["selected"] = selection ? nlohmann::json(ropescale::to_string(*selection)) : nullptr;
    kind["attention_factor"] = table.attention_factor();
    kind["factors"] = ropescale::to_rope_freqs_json(table);
    nlohmann::json inv = nlohmann::json::array();
    for (Eigen::Index i = 0; i < inv_freq.size(); ++i) inv.push_back(inv_freq[i]);
    kind["inv_freq"] = inv;
    if (json_out) continue;

    if (k > 0) std::cout << "\n";
    std::cout << "config             " << path << "\n";
    if (!model.uniform()) {
      std::cout << "layer type         " << model.kinds[k].layer_type << " (layers";
      for (const auto& l : kind["layers"]) std::cout << " " << l.get<std::int64_t>();
      std::cout << ")\n";
    }
    std::cout << "rope_type          " << ropescale::to_string(cfg.rope_type) << "\n"
              << "head_dim           " << cfg.spec.head_dim << "\n"
              << "rotary_dim         " << cfg.spec.rotary_dim << "\n";
    if (cfg.spec.frequency_dim() != cfg.spec.rotary_dim)
      std::cout << "freq_dim           " << cfg.spec.frequency_dim()
                << " (exponent 2i/freq_dim; half-split partner i + freq_dim/2)\n";
    std::cout << "pair_layout        " << cli::pair_layout_name(cfg.interleaved_pairs)
              << (cfg.interleaved_pairs ? " (2i, 2i+1)" : " (i, i + rotary_dim/2)") << "\n";
    if (cfg.is_mrope()) {
      std::cout << "mrope_section     ";
      for (std::int64_t v : cfg.mrope_section) std::cout << " " << v;
      std::cout << " (" << ropescale::to_string(cfg.mrope_layout) << ")\n";
    }
    if (cfg.ntk_alpha != 0.0)
      std::cout << "alpha              " << g17(cfg.ntk_alpha)
                << " (base rope_theta * alpha^(d/(d-2)) at every length)\n";
    std::cout << "rope_theta         " << g17(cfg.spec.rope_theta) << "\n"
              << "window             " << cfg.spec.original_max_position
              << " (max_position_embeddings " << cfg.max_position_embeddings << ")\n"
              << "seq_len            "
              << (args.has("--seq-len") ? std::to_string(seq_len) : std::string("(short window)"))
              << "\n"
              << "selected           " << (selection ? ropescale::to_string(*selection) : "none")
              << "\n"
              << "attention_factor   " << g17(table.attention_factor()) << "\n\n";
    std::printf("%5s  %24s  %24s\n", "pair", "factor", "inv_freq");
    std::fflush(stdout);
    for (Eigen::Index i = 0; i < inv_freq.size(); ++i)
      std::printf("%5ld  %24s  %24s\n", static_cast<long>(i), g17(table.factors()[i]).c_str(),
                  g17(inv_freq[i]).c_str());
    std::fflush(stdout);
  }
  // Layers without RoPE (NoPE), the class defaults the config relied on, and the attention terms
  // beside the tables.
  const std::vector<std::int64_t> nope = model.nope_layers();
  const ropescale::AttentionScaleTerms& sc = model.scales;
  if (json_out) {
    doc["nope_layers"] = nope;
    if (!nope.empty()) doc["nope_source"] = model.nope_source;
    if (!model.class_defaults.empty()) doc["class_defaults"] = model.class_defaults;
    if (model.attention_chunk_size > 0) doc["attention_chunk_size"] = model.attention_chunk_size;
    if (sc.softmax_scale != 1.0) doc["softmax_scale"] = sc.softmax_scale;
    if (sc.llama4_scaling_beta != 0.0) {
      doc["llama_4_scaling_beta"] = sc.llama4_scaling_beta;
      doc["llama_4_scaling_original"] = sc.llama4_scaling_original;
    }
    if (sc.temperature_tuning.enabled)
      doc["attn_temperature_tuning"] = {{"floor_scale", sc.temperature_tuning.floor_scale},
                                        {"attn_scale", sc.temperature_tuning.attn_scale}};
    std::cout << doc.dump() << "\n";
    return 0;
  }
  if (!nope.empty()) {
    std::cout << "\nno RoPE (NoPE)     " << nope.size() << " layers (from " << model.nope_source
              << "):";
    for (std::int64_t l : nope) std::cout << " " << l;
    std::cout << "\n";
  }
  for (const std::string& d : model.class_defaults) std::cout << "class default      " << d << "\n";
  if (model.attention_chunk_size > 0)
    std::cout << "chunked attention  " << model.attention_chunk_size << " tokens per chunk\n";
  if (sc.softmax_scale != 1.0)
    std::cout << "softmax scale      x " << g17(sc.softmax_scale)
              << " (mscale(factor, mscale_all_dim)^2 on 1/sqrt(qk_head_dim))\n";
  if (sc.llama4_scaling_beta != 0.0)
    std::cout << "query scale        1 + " << g17(sc.llama4_scaling_beta) << " ln(1 + floor(pos / "
              << sc.llama4_scaling_original << ")) on every layer\n";
  if (sc.temperature_tuning.enabled)
    std::cout << "temperature tuning NoPE layers' queries x log(floor((pos + 1) / "
              << g17(sc.temperature_tuning.floor_scale) << ") + 1) * "
              << g17(sc.temperature_tuning.attn_scale) << " + 1\n";
  return 0;
}

const bool registered = cli::register_command(
    {"factors", "print the factor table a Hugging Face config.json gives for a sequence length",
     "--config FILE [--seq-len N] [--format table|json] [--yarn current|derived|legacy]",
     run_factors, options()});

}  // namespace
