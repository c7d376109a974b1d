// ropescale internal: the layer plan of a config.json: the layer count and types (listed, or
// derived as the config class does), the layers without RoPE, Llama 4's attention terms and the
// scale terms beside the tables. Included by detail/json/hf_parse.hpp after the types it fills
// (ModelRope). Not a public header.
#pragma once

#include "ropescale/detail/internal_header_check.hpp"

#include <algorithm>
#include <cstdint>
#include <string>
#include <unordered_map>
#include <vector>

#include "ropescale/detail/json/hf_fields.hpp"

namespace ropescale {

namespace detail {

// Every source of the layer count (layer_types, no_rope_layers, num_hidden_layers) is held to
// kMaxConfigLayers before anything is allocated per layer.
inline Status check_layer_count(const std::string& path, std::int64_t n) {
  if (n > kMaxConfigLayers)
    return make_status(ErrorCode::kInvalidArgument, path, n,
                       "must be <= kMaxConfigLayers = " + std::to_string(kMaxConfigLayers));
  return Status();
}

inline Status read_layer_types(const RawFields& w, const std::string& tp,
                               std::vector<std::string>* out) {
  const Json* lt = w.find("layer_types");
  if (lt == nullptr) return Status();
  if (!lt->is_array())
    return json_type_error(tp + "layer_types", *lt, "must be an array of strings");
  ROPESCALE_RETURN_IF_ERROR(
      check_layer_count(tp + "layer_types.size()", static_cast<std::int64_t>(lt->size())));
  out->reserve(lt->size());
  for (std::size_t i = 0; i < lt->size(); ++i) {
    if (!(*lt)[i].is_string())
      return json_type_error(tp + "layer_types[" + std::to_string(i) + "]", (*lt)[i],
                             "must be a string");
    out->push_back((*lt)[i].get<std::string>());
  }
  return Status();
}

// Layers without RoPE (NoPE), per layer, from the three forms configs use:
//   no_rope_layers      Llama4TextConfig / SmolLM3Config: one entry per layer, 1 = the layer uses
//                       RoPE (`self.use_rope = config.no_rope_layers[layer_idx]`), 0 = NoPE.
//   no_rope_layer_interval  the same classes when the list is absent or empty: layer i is NoPE
//                       iff (i + 1) % interval == 0 (default 4).
//   layer_types         entries that are not attention with RoPE: "linear_attention"
//                       (Qwen3-Next, Qwen3.5 Gated DeltaNet), "conv" (LFM2), "mamba".
// *source names the field; nope stays empty when every layer has RoPE.
inline bool is_nope_layer_type(const std::string& t) {
  return t == "linear_attention" || t == "conv" || t == "mamba";
}

inline Status read_nope_layers(const RawFields& w, const std::string& tp, const std::string& family,
                               std::int64_t num_layers, const std::vector<std::string>& types,
                               std::vector<char>* nope, std::string* source) {
  const bool nope_family = family == "llama4_text" || family == "llama4" || family == "smollm3";
  const std::int64_t listed = types.empty() ? num_layers : static_cast<std::int64_t>(types.size());
  const Json* nr = w.find("no_rope_layers");
  if (nr != nullptr && !nr->is_array())
    return json_type_error(tp + "no_rope_layers", *nr,
                           "must be an array with one 0 (no RoPE) or 1 (RoPE) per layer");
  if (nr != nullptr && !nr->empty()) {
    const std::int64_t n = static_cast<std::int64_t>(nr->size());
    ROPESCALE_RETURN_IF_ERROR(check_layer_count(tp + "no_rope_layers.size()", n));
    if (listed > 0 && n != listed)
      return make_status(ErrorCode::kInvalidArgument, tp + "no_rope_layers.size()", n,
                         "must equal the number of layers (" + std::to_string(listed) + ")");
    nope->assign(static_cast<std::size_t>(n), 0);
    for (std::size_t i = 0; i < nr->size(); ++i) {
      const Json& v = (*nr)[i];
      const std::string path = tp + "no_rope_layers[" + std::to_string(i) + "]";
      std::int64_t x = -1;
      if (v.is_boolean()) {
        x = v.get<bool>() ? 1 : 0;
      } else if (v.is_number()) {
        ROPESCALE_RETURN_IF_ERROR(read_int(v, path, &x));
      } else {
        return json_type_error(path, v, "must be 0 (no RoPE) or 1 (RoPE)");
      }
      if (x != 0 && x != 1)
        return make_status(ErrorCode::kInvalidArgument, path, x,
                           "must be 0 (no RoPE) or 1 (RoPE), as Llama4TextConfig and "
                           "SmolLM3Config read it");
      (*nope)[i] = x == 0 ? 1 : 0;
    }
    *source = "no_rope_layers";
  } else if (nope_family) {
    std::int64_t interval = 4;  // Llama4TextConfig / SmolLM3Config default
    if (const Json* iv = w.find("no_rope_layer_interval"))
      ROPESCALE_RETURN_IF_ERROR(read_positive_int(*iv, tp + "no_rope_layer_interval", &interval));
    if (listed <= 0)
      return missing_field(tp + "num_hidden_layers",
                           "NoPE layers are derived from no_rope_layer_interval per layer");
    nope->assign(static_cast<std::size_t>(listed), 0);
    for (std::int64_t i = 0; i < listed; ++i)
      (*nope)[static_cast<std::size_t>(i)] = (i + 1) % interval == 0 ? 1 : 0;
    *source = "no_rope_layer_interval";
  }
  // Layers whose type is not attention never rotate, whatever the lists say.
  for (std::size_t i = 0; i < types.size(); ++i) {
    if (!is_nope_layer_type(types[i])) continue;
    if (nope->empty()) nope->assign(types.size(), 0);
    if (source->empty()) *source = "layer_types";
    (*nope)[i] = 1;
  }
  return Status();
}

// Llama 4's attention terms beside the RoPE: attention_chunk_size (its RoPE layers attend within
// chunks) and attn_temperature_tuning / floor_scale / attn_scale (its NoPE layers' query scale).
// Llama4TextConfig defaults: tuning on, floor_scale 8192, attn_scale 0.1, chunk 8192.
inline Status read_llama4_attention(const RawFields& w, const std::string& tp,
                                    const std::string& family, ModelRope* m) {
  if (family != "llama4_text" && family != "llama4") return Status();
  m->attention_chunk_size = 8192;
  if (const Json* v = w.find("attention_chunk_size"))
    ROPESCALE_RETURN_IF_ERROR(
        read_positive_int(*v, tp + "attention_chunk_size", &m->attention_chunk_size));
  AttnTemperatureTuning& t = m->scales.temperature_tuning;
  t.enabled = true;
  if (const Json* v = w.find("attn_temperature_tuning")) {
    // Published configs write true or an integer (4 in Llama-4-Scout); HF tests truthiness.
    if (v->is_boolean()) {
      t.enabled = v->get<bool>();
    } else if (v->is_number()) {
      double x = 0;
      ROPESCALE_RETURN_IF_ERROR(read_double(*v, tp + "attn_temperature_tuning", &x));
      t.enabled = x != 0.0;
    } else {
      return json_type_error(tp + "attn_temperature_tuning", *v, "must be true, false or a number");
    }
  }
  for (const char* k : {"floor_scale", "attn_scale"}) {
    const Json* v = w.find(k);
    if (v == nullptr) continue;
    double x = 0;
    ROPESCALE_RETURN_IF_ERROR(read_double(*v, tp + k, &x));
    if (!(x > 0.0)) return make_status(ErrorCode::kInvalidArgument, tp + k, x, "must be > 0");
    (std::string(k) == "floor_scale" ? t.floor_scale : t.attn_scale) = x;
  }
  return Status();
}

// The scale terms beside the tables (see AttentionScaleTerms), read after the kinds:
//   softmax_scale: MLA models (qk_rope_head_dim) whose RoPE is YaRN with a nonzero
//     mscale_all_dim: yarn_get_mscale(factor, mscale_all_dim)^2 (DeepseekV3Attention.__init__).
//   llama4_scaling_beta: rope block's llama_4_scaling_beta (Ministral 3, Mistral 4) with the
//     block's original_max_position_embeddings (v5 copies the top level there).
inline Status read_scale_terms(const RawFields& w, ModelRope* m) {
  if (m->kinds.empty()) return Status();
  const RopeConfig& c = m->kinds[0].config;
  if (w.find("qk_rope_head_dim") != nullptr && c.rope_type == RopeType::kYarn &&
      c.yarn.mscale_all_dim != 0.0) {
    const double ms = yarn_get_mscale(c.yarn.factor, c.yarn.mscale_all_dim);
    m->scales.softmax_scale = ms * ms;
  }
  const RopeBlock block = config_block(w);
  const ConfigField beta = block.field("llama_4_scaling_beta");
  if (!beta) return Status();
  double b = 0;
  ROPESCALE_RETURN_IF_ERROR(read_double(*beta.value, beta.path, &b));
  if (!(b >= 0.0 && b <= 1e3))
    return make_status(ErrorCode::kInvalidArgument, beta.path, b, "must be in [0, 1000]");
  if (b == 0.0) return Status();
  ConfigField orig = block.field("original_max_position_embeddings");
  if (!orig) orig = w.field("original_max_position_embeddings");
  if (!orig)
    return missing_field(block.name + ".original_max_position_embeddings",
                         "llama_4_scaling_beta scales queries per original window");
  ROPESCALE_RETURN_IF_ERROR(
      read_positive_int(*orig.value, orig.path, &m->scales.llama4_scaling_original));
  m->scales.llama4_scaling_beta = b;
  return Status();
}

// Layer types the family's config class derives when config.json has no layer_types:
//   Gemma3TextConfig: layer i is sliding unless (i + 1) % sliding_window_pattern == 0 (6);
//     Gemma3nTextConfig's default layer_types repeat 4 sliding + 1 full.
//   Qwen3NextConfig: layer i is linear attention (Gated DeltaNet, no RoPE) unless
//     (i + 1) % full_attention_interval == 0 (4).
inline Status derive_layer_types(const RawFields& w, const std::string& family,
                                 std::int64_t num_layers, std::vector<std::string>* types) {
  const char* key = nullptr;
  std::int64_t period = 0;
  const char *other = nullptr, *every = "full_attention";
  if (is_gemma3(family)) {
    key = "sliding_window_pattern";
    period = family.rfind("gemma3n", 0) == 0 ? 5 : 6;
    other = "sliding_attention";
  } else if (family == "qwen3_next") {
    key = "full_attention_interval";
    period = 4;
    other = "linear_attention";
  } else {
    return Status();
  }
  if (const ConfigField f = w.field(key))
    ROPESCALE_RETURN_IF_ERROR(read_positive_int(*f.value, f.path, &period));
  for (std::int64_t i = 0; i < num_layers; ++i)
    types->push_back((i + 1) % period != 0 ? other : every);
  return Status();
}

// Which layers there are and which rotate: layer types (listed or derived), the layer count,
// NoPE layers (nope[l] = 1; empty: every layer rotates) and Llama 4's attention terms.
inline Status read_layer_plan(const RawFields& w, const std::string& family, ModelRope* m,
                              std::int64_t* num_layers, std::vector<char>* nope) {
  const std::string& tp = w.top();
  ROPESCALE_RETURN_IF_ERROR(read_layer_types(w, tp, &m->layer_types));
  if (const ConfigField nl = w.field("num_hidden_layers")) {
    ROPESCALE_RETURN_IF_ERROR(read_positive_int(*nl.value, nl.path, num_layers));
    ROPESCALE_RETURN_IF_ERROR(check_layer_count(nl.path, *num_layers));
  }
  const std::int64_t listed = static_cast<std::int64_t>(m->layer_types.size());
  if (listed > 0 && *num_layers > 0 && listed != *num_layers)
    return make_status(ErrorCode::kInvalidArgument, tp + "layer_types.size()", listed,
                       "must equal num_hidden_layers (" + std::to_string(*num_layers) + ")");
  if (m->layer_types.empty())
    ROPESCALE_RETURN_IF_ERROR(derive_layer_types(w, family, *num_layers, &m->layer_types));
  ROPESCALE_RETURN_IF_ERROR(
      read_nope_layers(w, tp, family, *num_layers, m->layer_types, nope, &m->nope_source));
  ROPESCALE_RETURN_IF_ERROR(read_llama4_attention(w, tp, family, m));
  if (m->layer_types.empty() && (family == "llama4_text" || family == "llama4")) {
    // Llama4TextConfig (v5): RoPE layers use chunked attention, NoPE layers full attention.
    for (const char n : *nope)
      m->layer_types.push_back(n != 0 ? "full_attention" : "chunked_attention");
  }
  if (!nope->empty() && std::find(nope->begin(), nope->end(), 0) == nope->end())
    return make_status(ErrorCode::kUnsupported, tp + m->nope_source, "every layer",
                       "no layer has RoPE; there is nothing for ropescale to rotate");
  return Status();
}

// The distinct rotating layer types in order of first appearance, and each layer's index among
// them (kNoRope for NoPE layers); a hash map keeps it linear in the number of layers.
inline void distinct_layer_types(const std::vector<std::string>& types,
                                 const std::vector<char>& nope, std::vector<std::string>* distinct,
                                 std::vector<std::int64_t>* type_of_layer) {
  std::unordered_map<std::string, std::int64_t> index;
  type_of_layer->reserve(types.size());
  for (std::size_t l = 0; l < types.size(); ++l) {
    if (l < nope.size() && nope[l] != 0) {
      type_of_layer->push_back(ModelRope::kNoRope);
      continue;
    }
    auto it = index.emplace(types[l], static_cast<std::int64_t>(distinct->size())).first;
    if (it->second == static_cast<std::int64_t>(distinct->size())) distinct->push_back(types[l]);
    type_of_layer->push_back(it->second);
  }
}

}  // namespace detail

}  // namespace ropescale
