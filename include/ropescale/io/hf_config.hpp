// ropescale: Hugging Face config.json import and export (needs nlohmann/json).
//
// A model's RoPE lives in its config.json:
//
//   {"head_dim": 128, "rope_theta": 500000.0, "max_position_embeddings": 131072,
//    "rope_scaling": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
//                     "high_freq_factor": 4.0, "original_max_position_embeddings": 8192}}
//
// parse_hf_config() turns a whole config (as published; unknown fields ignored) into a RopeConfig
// (parse_hf_model() into one per layer type, for models whose layers differ):
// the RopeSpec, the method and its parameters. RopeConfig::table_for(seq_len) then gives the exact
// FactorTable Hugging Face transformers uses for a sequence of seq_len tokens (for LongRoPE: the
// long factors iff seq_len > original_max_position_embeddings). to_hf_config() / to_rope_scaling()
// write a config back; parse(to_hf_config(c)) == c. longrope_config_from_tables() and
// to_rope_freqs() export any FactorTable, as a `longrope` block HF accepts or as llama.cpp's
// per-pair `rope_freqs` divisors; to_hf_config(search_result) ships a search's table in one call.
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
// Every error names the field by its JSON path, its value and the rule, e.g.
//   ropescale: invalid_argument: rope_scaling.long_factor.size() = 47: must equal rotary_dim / 2 =
//   48
// and nothing is returned on error (the try_* twins leave *out untouched).
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
#include "ropescale/search_state.hpp"

#pragma push_macro("ROPESCALE_INSIDE_PUBLIC_HEADER")
#define ROPESCALE_INSIDE_PUBLIC_HEADER
#include "ropescale/detail/file_io.hpp"
#include "ropescale/detail/json/hf_parse.hpp"
#pragma pop_macro("ROPESCALE_INSIDE_PUBLIC_HEADER")

namespace ropescale {

/// Reads a parsed config.json into one RoPE per layer type (see ModelRope). Status twin of
/// parse_hf_model; *out is set only on success.
inline Status try_parse_hf_model(const nlohmann::json& j, const HfImportOptions& options,
                                 ModelRope* out) {
  return detail::parse_model(j, options, out);
}
inline ModelRope parse_hf_model(const nlohmann::json& j, const HfImportOptions& options = {}) {
  ModelRope m;
  throw_if_error(try_parse_hf_model(j, options, &m));
  return m;
}

/// Reads a parsed config.json whose layers all share one RoPE. Status-returning twin of
/// parse_hf_config; *out is set only on success, and only after a table for both a short and a
/// long sequence has been built. A config with several RoPEs (Gemma 3 sliding/full layers,
/// per-layer-type rope_parameters) is refused with the list of kinds: use parse_hf_model.
inline Status try_parse_hf_config(const nlohmann::json& j, const HfImportOptions& options,
                                  RopeConfig* out) {
  if (out == nullptr)
    return make_status(ErrorCode::kInvalidArgument, "out", nullptr, "must not be null");
  ModelRope m;
  ROPESCALE_RETURN_IF_ERROR(detail::parse_model(j, options, &m));
  if (!m.uniform()) {
    const std::vector<std::int64_t> nope = m.nope_layers();
    if (!nope.empty())
      return make_status(
          ErrorCode::kUnsupported, (m.text_path.empty() ? "" : m.text_path + ".") + m.nope_source,
          std::to_string(nope.size()) + " layers without RoPE",
          "this model has layers without RoPE (NoPE, first: layer " + std::to_string(nope[0]) +
              "); read it with parse_hf_model / load_hf_model, which says which "
              "layers rotate");
    std::string kinds;
    for (const LayerRope& k : m.kinds)
      kinds += (kinds.empty() ? "" : "; ") + k.layer_type + ": " + to_string(k.config.rope_type) +
               " theta " + detail::format_value(k.config.spec.rope_theta);
    return make_status(ErrorCode::kUnsupported,
                       (m.text_path.empty() ? "" : m.text_path + ".") + "layer_types",
                       std::to_string(m.kinds.size()) + " RoPE kinds",
                       "this model uses a different RoPE per layer type (" + kinds +
                           "); read it with parse_hf_model / load_hf_model, which gives the "
                           "spec and table of every layer");
  }
  *out = std::move(m.kinds[0].config);
  return Status();
}

inline Status try_parse_hf_config(const nlohmann::json& j, RopeConfig* out) {
  return try_parse_hf_config(j, HfImportOptions{}, out);
}

/// Reads a parsed config.json; throws Error naming the field, value and rule on bad input.
inline RopeConfig parse_hf_config(const nlohmann::json& j, const HfImportOptions& options = {}) {
  RopeConfig c;
  throw_if_error(try_parse_hf_config(j, options, &c));
  return c;
}

namespace detail {
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
}  // namespace detail

/// Reads a config.json file into one RoPE per layer type (see ModelRope).
inline Status try_load_hf_model(const std::string& path, const HfImportOptions& options,
                                ModelRope* out) {
  std::string text;
  ROPESCALE_RETURN_IF_ERROR(detail::read_file("path", path, &text));
  nlohmann::json j;
  Status st = detail::parse_json_text(text, &j);
  if (st.ok()) st = try_parse_hf_model(j, options, out);
  if (st.ok()) return st;
  return st.with_context("in " + path);
}
inline ModelRope load_hf_model(const std::string& path, const HfImportOptions& options = {}) {
  ModelRope m;
  throw_if_error(try_load_hf_model(path, options, &m));
  return m;
}

/// Parses config.json text (malformed JSON is a parse_error with nlohmann's position message).
inline Status try_parse_hf_config_text(const std::string& text, const HfImportOptions& options,
                                       RopeConfig* out) {
  nlohmann::json j;
  ROPESCALE_RETURN_IF_ERROR(detail::parse_json_text(text, &j));
  return try_parse_hf_config(j, options, out);
}
inline RopeConfig parse_hf_config_text(const std::string& text,
                                       const HfImportOptions& options = {}) {
  RopeConfig c;
  throw_if_error(try_parse_hf_config_text(text, options, &c));
  return c;
}

/// Reads a config.json file.
inline Status try_load_hf_config(const std::string& path, const HfImportOptions& options,
                                 RopeConfig* out) {
  std::string text;
  ROPESCALE_RETURN_IF_ERROR(detail::read_file("path", path, &text));
  const Status st = try_parse_hf_config_text(text, options, out);
  if (st.ok()) return st;
  return st.with_context("in " + path);
}
inline RopeConfig load_hf_config(const std::string& path, const HfImportOptions& options = {}) {
  RopeConfig c;
  throw_if_error(try_load_hf_config(path, options, &c));
  return c;
}

// ---------------------------------------------------------------------------------------------
// Export
// ---------------------------------------------------------------------------------------------

namespace detail {

inline nlohmann::json to_json_array(const Eigen::ArrayXd& a) {
  nlohmann::json out = nlohmann::json::array();
  for (Eigen::Index i = 0; i < a.size(); ++i) out.push_back(a[i]);
  return out;
}

// The partial_rotary_factor p with int(head_dim * p) == rotary_dim, as HF truncates.
inline double partial_rotary_factor_for(std::int64_t head_dim, std::int64_t rotary_dim) {
  double p = static_cast<double>(rotary_dim) / static_cast<double>(head_dim);
  for (int k = 0;
       k < 8 && static_cast<std::int64_t>(static_cast<double>(head_dim) * p) < rotary_dim; ++k)
    p = std::nextafter(p, 2.0);
  return p;
}

}  // namespace detail

/// The `rope_scaling` block for a config (null for default RoPE). Writes `rope_type` and the
/// older `type` key, so both old and new readers accept it.
inline nlohmann::json to_rope_scaling(const RopeConfig& c) {
  using nlohmann::json;
  if (c.rope_type == RopeType::kDefault && !c.is_mrope()) return json();
  json b = json::object();
  b["rope_type"] = to_string(c.rope_type);
  b["type"] = to_string(c.rope_type);
  if (c.is_mrope()) {
    b["mrope_section"] = c.mrope_section;
    b["mrope_interleaved"] = c.mrope_interleaved;
  }
  switch (c.rope_type) {
    case RopeType::kDefault:
      break;
    case RopeType::kProportional:
      if (c.factor != 1.0) b["factor"] = c.factor;
      break;
    case RopeType::kLinear:
    case RopeType::kDynamic:
      b["factor"] = c.factor;
      if (c.ntk_alpha != 0.0) b["alpha"] = c.ntk_alpha;
      break;
    case RopeType::kYarn:
      b["factor"] = c.yarn.factor;
      b["beta_fast"] = c.yarn.beta_fast;
      b["beta_slow"] = c.yarn.beta_slow;
      if (c.yarn.mscale != 0.0) b["mscale"] = c.yarn.mscale;
      if (c.yarn.mscale_all_dim != 0.0) b["mscale_all_dim"] = c.yarn.mscale_all_dim;
      if (!c.yarn.truncate) b["truncate"] = false;
      if (c.yarn.attention_factor) b["attention_factor"] = *c.yarn.attention_factor;
      if (c.yarn.original_max_position != 0 &&
          c.yarn.original_max_position != c.max_position_embeddings)
        b["original_max_position_embeddings"] = c.yarn.original_max_position;
      break;
    case RopeType::kLlama3:
      b["factor"] = c.llama3.factor;
      b["low_freq_factor"] = c.llama3.low_freq_factor;
      b["high_freq_factor"] = c.llama3.high_freq_factor;
      b["original_max_position_embeddings"] = c.llama3.original_max_position;
      break;
    case RopeType::kLongRope:
      b["short_factor"] = detail::to_json_array(c.longrope.short_factor);
      b["long_factor"] = detail::to_json_array(c.longrope.long_factor);
      if (c.longrope.attention_factor) b["attention_factor"] = *c.longrope.attention_factor;
      if (c.longrope.short_mscale) b["short_mscale"] = *c.longrope.short_mscale;
      if (c.longrope.long_mscale) b["long_mscale"] = *c.longrope.long_mscale;
      if (c.spec.original_max_position == c.max_position_embeddings)
        b["factor"] = c.longrope.factor;  // no original window: s comes from the block
      break;
  }
  return b;
}

/// A whole (RoPE-only) config.json: head_dim, partial_rotary_factor, rope_theta,
/// max_position_embeddings, original_max_position_embeddings where it matters, rope_scaling.
/// Throws Error when the config cannot be written faithfully (a LongRoPE factor that is not
/// max_position_embeddings / original_max_position_embeddings).
inline nlohmann::json to_hf_config(const RopeConfig& c) {
  using nlohmann::json;
  throw_if_error(validate(c.spec));
  json j = json::object();
  // HF reads `alpha` only in HunYuan's rotary embedding, and ERNIE's 3D M-RoPE layout comes from
  // its model class: name the family that gives them meaning.
  if (c.ntk_alpha != 0.0) j["model_type"] = "hunyuan_v1_dense";
  if (c.mrope_layout == MropeLayout::kErnie3d) j["model_type"] = "ernie4_5_vl_moe_text";
  j["head_dim"] = c.spec.head_dim;
  if (c.interleaved_pairs) j["rope_interleave"] = true;
  if (c.spec.rotary_dim != c.spec.head_dim)
    j["partial_rotary_factor"] =
        detail::partial_rotary_factor_for(c.spec.head_dim, c.spec.rotary_dim);
  j["rope_theta"] = c.spec.rope_theta;
  j["max_position_embeddings"] = c.max_position_embeddings;
  const std::int64_t window = c.spec.original_max_position;
  switch (c.rope_type) {
    case RopeType::kDefault:
    case RopeType::kLinear:
    case RopeType::kProportional:
      if (window != c.max_position_embeddings) j["original_max_position_embeddings"] = window;
      break;
    case RopeType::kLongRope:
      if (window != c.max_position_embeddings) {
        const double s =
            static_cast<double>(c.max_position_embeddings) / static_cast<double>(window);
        if (s != c.longrope.factor)
          throw_if_error(make_status(ErrorCode::kInvalidArgument, "longrope.factor",
                                     c.longrope.factor,
                                     "must equal max_position_embeddings / "
                                     "original_max_position_embeddings (" +
                                         detail::format_value(s) + ") for Hugging Face"));
        j["original_max_position_embeddings"] = window;
      }
      break;
    case RopeType::kDynamic:
    case RopeType::kYarn:
    case RopeType::kLlama3:
      break;
  }
  const json block = to_rope_scaling(c);
  if (!block.is_null()) j["rope_scaling"] = block;
  return j;
}

/// A LongRoPE config that reproduces arbitrary tables in Hugging Face: `long_table` for
/// sequences longer than spec.original_max_position, `short_table` (identity if null) otherwise.
/// HF applies one attention factor to both sets, so both tables must share it; it is written as
/// an explicit attention_factor. Use it to ship a LongRoPE2-searched or any other table.
inline RopeConfig longrope_config_from_tables(const RopeSpec& spec,
                                              std::int64_t max_position_embeddings,
                                              const FactorTable& long_table,
                                              const FactorTable* short_table = nullptr) {
  throw_if_error(long_table.validate_for(spec));  // validates spec too
  if (max_position_embeddings < spec.original_max_position)
    throw_if_error(make_status(ErrorCode::kInvalidArgument, "max_position_embeddings",
                               max_position_embeddings,
                               "must be >= spec.original_max_position (" +
                                   std::to_string(spec.original_max_position) + ")"));
  RopeConfig c;
  c.rope_type = RopeType::kLongRope;
  c.spec = spec;
  c.max_position_embeddings = max_position_embeddings;
  c.longrope.long_factor = long_table.factors();
  if (short_table != nullptr) {
    throw_if_error(short_table->validate_for(spec));
    if (short_table->attention_factor() != long_table.attention_factor())
      throw_if_error(make_status(ErrorCode::kInvalidArgument, "short_table.attention_factor",
                                 short_table->attention_factor(),
                                 "must equal long_table.attention_factor (" +
                                     detail::format_value(long_table.attention_factor()) +
                                     "): Hugging Face applies one attention factor to both sets"));
    c.longrope.short_factor = short_table->factors();
  } else {
    c.longrope.short_factor = Eigen::ArrayXd::Ones(static_cast<Eigen::Index>(spec.pairs()));
  }
  c.longrope.factor = static_cast<double>(max_position_embeddings) /
                      static_cast<double>(spec.original_max_position);
  c.longrope.attention_factor = long_table.attention_factor();
  return c;
}

/// The LongRoPE config that ships a search's table: long factors = result.table (for sequences
/// longer than the spec's original_max_position), short factors = 1, max_position_embeddings =
/// the search's target length. Everything comes from the result itself.
inline RopeConfig longrope_config_from_search(const SearchResult& result) {
  return longrope_config_from_tables(result.spec, result.target_length, result.table);
}

/// A search result as a Hugging Face config.json (see longrope_config_from_search): one call.
inline nlohmann::json to_hf_config(const SearchResult& result) {
  return to_hf_config(longrope_config_from_search(result));
}

/// llama.cpp's `rope_freqs`: one float32 divisor of the angle per rotary pair (lambda_i).
/// The attention factor is not part of it (llama.cpp's rope.scaling.attn_factor carries it).
inline std::vector<float> to_rope_freqs(const FactorTable& table) {
  std::vector<float> out(static_cast<std::size_t>(table.pairs()));
  for (Eigen::Index i = 0; i < table.factors().size(); ++i)
    out[static_cast<std::size_t>(i)] = static_cast<float>(table.factors()[i]);
  return out;
}

/// The same list as JSON numbers (double precision, lambda_i per pair).
inline nlohmann::json to_rope_freqs_json(const FactorTable& table) {
  return detail::to_json_array(table.factors());
}

}  // namespace ropescale
