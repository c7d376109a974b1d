// ropescale: Hugging Face config.json import and export (needs nlohmann/json).
//
// A model's RoPE lives in its config.json:
//
//   {"head_dim": 128, "rope_theta": 500000.0, "max_position_embeddings": 131072,
//    "rope_scaling": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
//                     "high_freq_factor": 4.0, "original_max_position_embeddings": 8192}}
//
// Four entry points, each returning Result<T> (a value, or a Status naming the field):
//
//   parse_hf_config(json or text, options) -> RopeConfig   one RoPE for every layer
//   load_hf_config(path, options)          -> RopeConfig
//   parse_hf_model(json or text, options)  -> ModelRope    one RoPE per layer type (Gemma 3,
//   load_hf_model(path, options)           -> ModelRope    per-layer rope_parameters, NoPE layers)
//
// A RopeConfig holds the RopeSpec, the method and its parameters; RopeConfig::table_for(seq_len)
// gives the exact FactorTable Hugging Face transformers uses for a sequence of seq_len tokens
// (for LongRoPE: the long factors iff seq_len > original_max_position_embeddings). Writing a
// config back (to_hf_config, to_rope_scaling, longrope_config_from_tables, to_rope_freqs) is in
// io/hf_export.hpp.
//
// What is read, and from where (HF's rules; "block" = `rope_parameters` if present, else
// `rope_scaling`):
//   text model           `text_config` when it holds the text model (Gemma 3, Qwen3-VL), else
//                        the top level. model_type selects HF's config-class defaults where the
//                        published config relies on them (detail::class_default_table, each row
//                        citing its class: gemma3_text head_dim 256 and rope_theta 1e6; qwen3
//                        head_dim 128; glm / glm4 / glm4_moe partial_rotary_factor 0.5; ...);
//                        ModelRope::class_defaults lists the ones a config used.
//   rope type            block.rope_type, else block.type; "su" is LongRoPE's old name;
//                        "mrope" (Qwen2-VL) is default RoPE plus mrope_section. No block, or a
//                        null one: default RoPE. "proportional": Gemma 4 (RopeSpec::freq_dim).
//   rope_theta           block.rope_theta (transformers v5), else top level, else GPT-NeoX's
//                        rotary_emb_base.
//   head_dim             MLA (qk_rope_head_dim present: DeepSeek-V2/V3/R1, Kimi-K2, MiniCPM3):
//                        qk_rope_head_dim, as HF's config classes set it; else top-level
//                        head_dim, else hidden_size / num_attention_heads. Configs that name the
//                        width otherwise (ChatGLM kv_channels; n_embd / n_head) are refused with
//                        the fields seen.
//   rotary_dim           int(head_dim * partial_rotary_factor) (top level, which v5 copies over
//                        the block's, else block, else GPT-NeoX rotary_pct, else 1); GPT-J's
//                        rotary_dim when given instead. proportional: 2 int(p head_dim // 2).
//   window L             linear/default: top-level original_max_position_embeddings, else
//                        max_position_embeddings. dynamic: max_position_embeddings (HF ignores the
//                        original). yarn: see YarnSemantics. llama3, longrope: top level (v5
//                        standardize_rope_params puts it over the block's), else block, else
//                        max_position_embeddings. A v5 per-layer-type block uses its own window.
//   M-RoPE               block.mrope_section (pair counts per axis summing to rotary_dim / 2; 3,
//                        or up to 4 sectioned: HunYuan-VL's xdrope_section, its older name) and
//                        block.mrope_interleaved (default: true for qwen3_vl*, else false);
//                        ernie4_5_vl*: ERNIE's 3D layout (MropeLayout::kErnie3d).
//   per layer            parse_hf_model / load_hf_model: `layer_types` (or Gemma 3's
//                        sliding_window_pattern) with v5 `rope_parameters` keyed by layer type,
//                        Gemma 3 / 3n's rope_local_base_freq for their sliding layers, OLMo 3's
//                        sliding layers (Olmo3Rope). Layers without RoPE (ModelRope::kNoRope):
//                        no_rope_layers (1 = RoPE, Llama 4 / SmolLM3), no_rope_layer_interval,
//                        layer_types entries linear_attention / conv / mamba; Cohere2 is refused.
//   HunYuan alpha        hunyuan_*: `dynamic` with a truthy alpha is base rope_theta *
//                        alpha^(d/(d-2)) at every length (RopeConfig::ntk_alpha).
//   scale terms          ModelRope::scales: MLA softmax scale, llama_4_scaling_beta, Llama 4's
//                        attn_temperature_tuning (AttentionScaleTerms says where each goes).
//
// Every error names the field by its JSON path (Status::argument()), its value and the rule, e.g.
//   ropescale: invalid_argument: rope_scaling.long_factor.size() = 47: must equal rotary_dim / 2 =
//   48
// and no value is returned on error.
#pragma once

#include <Eigen/Core>
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "ropescale/error.hpp"
#include "ropescale/io/rope_config.hpp"

#pragma push_macro("ROPESCALE_INSIDE_PUBLIC_HEADER")
#define ROPESCALE_INSIDE_PUBLIC_HEADER
#include "ropescale/detail/file_io.hpp"
#include "ropescale/detail/json/hf_parse.hpp"
#pragma pop_macro("ROPESCALE_INSIDE_PUBLIC_HEADER")

namespace ropescale {

namespace detail {

// A config with several RoPEs (NoPE layers, or a RoPE per layer type) has no single RopeConfig:
// the error names the kinds and points to parse_hf_model.
inline Status single_rope(ModelRope m, RopeConfig* out) {
  if (m.uniform()) {
    *out = std::move(m.kinds[0].config);
    return Status();
  }
  const std::string prefix = m.text_path.empty() ? "" : m.text_path + ".";
  const std::vector<std::int64_t> nope = m.nope_layers();
  if (!nope.empty())
    return make_status(ErrorCode::kUnsupported, prefix + m.nope_source,
                       std::to_string(nope.size()) + " layers without RoPE",
                       "this model has layers without RoPE (NoPE, first: layer " +
                           std::to_string(nope[0]) +
                           "); read it with parse_hf_model / load_hf_model, which says which "
                           "layers rotate");
  std::string kinds;
  for (const LayerRope& k : m.kinds)
    kinds += (kinds.empty() ? "" : "; ") + k.layer_type + ": " + to_string(k.config.rope_type) +
             " theta " + format_value(k.config.spec.rope_theta);
  return make_status(ErrorCode::kUnsupported, prefix + "layer_types",
                     std::to_string(m.kinds.size()) + " RoPE kinds",
                     "this model uses a different RoPE per layer type (" + kinds +
                         "); read it with parse_hf_model / load_hf_model, which gives the "
                         "spec and table of every layer");
}

inline Status parse_json_text(const std::string& text, nlohmann::json* out) {
  nlohmann::json& j = *out;
#ifndef ROPESCALE_NO_EXCEPTIONS
  try {
    j = nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception& e) {
    // nlohmann quotes the last token read, which can be megabytes long: keep the head.
    std::string what = e.what();
    if (what.size() > 300) what = what.substr(0, 300) + "...";
    return Status(ErrorCode::kParseError, "config.json", std::string(), "malformed JSON: " + what);
  }
#else
  j = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded())
    return Status(ErrorCode::kParseError, "config.json", std::string(), "malformed JSON");
#endif
  return Status();
}

inline Status parse_model_text(const std::string& text, const HfImportOptions& options,
                               ModelRope* out) {
  nlohmann::json j;
  ROPESCALE_RETURN_IF_ERROR(parse_json_text(text, &j));
  return parse_model(j, options, out);
}

inline Status load_model(const std::string& path, const HfImportOptions& options, ModelRope* out) {
  std::string text;
  ROPESCALE_RETURN_IF_ERROR(read_file("path", path, &text));
  return parse_model_text(text, options, out).with_context("in " + path);
}

template <typename T>
Result<T> to_result(const Status& st, T value) {
  if (!st.ok()) return st;
  return value;
}

}  // namespace detail

/// A parsed config.json as one RoPE per layer type (see ModelRope).
inline Result<ModelRope> parse_hf_model(const nlohmann::json& config,
                                        const HfImportOptions& options = {}) {
  ModelRope m;
  const Status st = detail::parse_model(config, options, &m);
  return detail::to_result(st, std::move(m));
}
/// config.json text (malformed JSON is a parse_error with nlohmann's position message).
inline Result<ModelRope> parse_hf_model(const std::string& text,
                                        const HfImportOptions& options = {}) {
  ModelRope m;
  const Status st = detail::parse_model_text(text, options, &m);
  return detail::to_result(st, std::move(m));
}
inline Result<ModelRope> parse_hf_model(const char* text, const HfImportOptions& options = {}) {
  return parse_hf_model(std::string(text != nullptr ? text : ""), options);
}
/// A config.json file; errors say which file.
inline Result<ModelRope> load_hf_model(const std::string& path,
                                       const HfImportOptions& options = {}) {
  ModelRope m;
  const Status st = detail::load_model(path, options, &m);
  return detail::to_result(st, std::move(m));
}

/// A parsed config.json whose layers all share one RoPE; the value exists only once a table for
/// both a short and a long sequence has been built. A config with several RoPEs (Gemma 3
/// sliding/full layers, per-layer-type rope_parameters, NoPE layers) is refused with the list
/// of kinds: use parse_hf_model.
inline Result<RopeConfig> parse_hf_config(const nlohmann::json& config,
                                          const HfImportOptions& options = {}) {
  ModelRope m;
  RopeConfig c;
  Status st = detail::parse_model(config, options, &m);
  if (st.ok()) st = detail::single_rope(std::move(m), &c);
  return detail::to_result(st, std::move(c));
}
/// config.json text (malformed JSON is a parse_error with nlohmann's position message).
inline Result<RopeConfig> parse_hf_config(const std::string& text,
                                          const HfImportOptions& options = {}) {
  ModelRope m;
  RopeConfig c;
  Status st = detail::parse_model_text(text, options, &m);
  if (st.ok()) st = detail::single_rope(std::move(m), &c);
  return detail::to_result(st, std::move(c));
}
inline Result<RopeConfig> parse_hf_config(const char* text, const HfImportOptions& options = {}) {
  return parse_hf_config(std::string(text != nullptr ? text : ""), options);
}
/// A config.json file; errors say which file.
inline Result<RopeConfig> load_hf_config(const std::string& path,
                                         const HfImportOptions& options = {}) {
  ModelRope m;
  RopeConfig c;
  Status st = detail::load_model(path, options, &m);
  if (st.ok()) st = detail::single_rope(std::move(m), &c).with_context("in " + path);
  return detail::to_result(st, std::move(c));
}

}  // namespace ropescale
