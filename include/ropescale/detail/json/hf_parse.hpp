// ropescale internal: the config.json reader behind io/hf_config.hpp's parse_hf_model and
// parse_hf_config. It reads the config once, where it lies:
//
//   hf_fields.hpp  RawFields: the text model's fields with their JSON paths; inherited top-level
//                  fields and config-class defaults as overrides on them. KindSource: what one
//                  RoPE kind reads (its rope block and that kind's overrides).
//   hf_kind.hpp    one kind: method, theta, widths, M-RoPE, pair layout, windows, then one
//                  resolver per method holding HF's precedence as data; the generators check it.
//   hf_layers.hpp  the layer plan: layer types, NoPE layers, Llama 4's attention terms.
//   this header    parse_model: one KindSource per distinct layer type (v5 per-layer blocks,
//                  Gemma 3 / OLMo 3 sliding layers, or one for all), kinds deduplicated, each
//                  layer mapped to its kind.
//
// The types it fills (RopeConfig, ModelRope) are io/rope_config.hpp's. Not a public header.
#pragma once

#include "ropescale/detail/internal_header_check.hpp"

#include "ropescale/error.hpp"
#include "ropescale/io/rope_config.hpp"

#include <Eigen/Core>
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <deque>
#include <initializer_list>
#include <limits>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

#include "ropescale/detail/json/hf_kind.hpp"
#include "ropescale/detail/json/hf_layers.hpp"

namespace ropescale {

namespace detail {

// A string that is equal for two RopeConfigs exactly when operator== holds: doubles in hex, arrays
// element by element. Kinds are deduplicated through it in linear time.
inline std::string rope_config_fingerprint(const RopeConfig& c) {
  std::string out;
  char buf[40];
  auto num = [&](double x) {
    std::snprintf(buf, sizeof buf, "%a,", x);
    out += buf;
  };
  auto opt = [&](const std::optional<double>& x) {
    if (x) {
      num(*x);
    } else {
      out += "-,";
    }
  };
  auto arr = [&](const Eigen::ArrayXd& a) {
    out += std::to_string(a.size()) + "[";
    for (Eigen::Index i = 0; i < a.size(); ++i) num(a[i]);
    out += "]";
  };
  const RopeSpec& s = c.spec;
  out += std::to_string(static_cast<int>(c.rope_type)) + ";" + std::to_string(s.head_dim) + "," +
         std::to_string(s.rotary_dim) + "," + std::to_string(s.freq_dim) + "," +
         std::to_string(s.original_max_position) + "," + std::to_string(c.max_position_embeddings) +
         ";";
  num(s.rope_theta);
  num(c.factor);
  num(c.ntk_alpha);
  const YarnParams& y = c.yarn;
  for (double x : {y.factor, y.beta_fast, y.beta_slow, y.mscale, y.mscale_all_dim}) num(x);
  out += std::to_string(y.truncate) + "," + std::to_string(y.original_max_position) + ",";
  opt(y.attention_factor);
  const Llama3Params& l = c.llama3;
  for (double x : {l.factor, l.low_freq_factor, l.high_freq_factor}) num(x);
  out += std::to_string(l.original_max_position) + ";";
  const LongRopeParams& r = c.longrope;
  arr(r.short_factor);
  arr(r.long_factor);
  num(r.factor);
  opt(r.attention_factor);
  opt(r.short_mscale);
  opt(r.long_mscale);
  for (std::int64_t v : c.mrope_section) out += std::to_string(v) + ",";
  out += ";" + std::to_string(c.mrope_interleaved) +
         std::to_string(static_cast<int>(c.mrope_layout)) + std::to_string(c.interleaved_pairs);
  return out;
}

// One RoPE kind before deduplication: the layer types it serves ("all" for every layer) and
// what it reads.
struct KindPlan {
  std::string label;
  KindSource src;
};

// v5 per-layer form (HF standardize_rope_params): a block without rope_type whose every key is
// a layer type.
inline bool is_per_layer_block(const RopeBlock& b, const std::vector<std::string>& types) {
  if (b.obj == nullptr || !b.obj->is_object() || b.obj->empty() || types.empty() ||
      b.find("rope_type") != nullptr || b.find("type") != nullptr)
    return false;
  const std::unordered_set<std::string> set(types.begin(), types.end());
  for (const auto& item : b.obj->items())
    if (set.count(item.key()) == 0) return false;
  return true;
}

// Gemma 3's default local base: rope_local_base_freq = 10000 (Gemma3TextConfig).
inline const Json& gemma3_local_base_default() {
  static const Json kBase(10000.0);
  return kBase;
}

// v5 per-layer-type blocks: one kind per distinct type, each reading its own block (and its own
// window). Gemma 3's sliding block without rope_theta takes rope_local_base_freq; Gemma 4's
// full-attention layers have their own, wider heads (global_head_dim).
inline Status plan_per_layer_kinds(const KindSource& base, const std::vector<std::string>& distinct,
                                   std::vector<KindPlan>* kinds) {
  const RawFields& w = *base.raw;
  for (const std::string& t : distinct) {
    const Json* sub = find_member(*base.block.obj, t.c_str());
    if (sub == nullptr)
      return missing_field(base.block.name + "." + t, "layer_types lists " + format_value(t));
    KindPlan k{t, base};
    k.src.nested = true;
    k.src.block.obj = sub;
    k.src.block.name = base.block.name + "." + t;
    if (is_gemma3(base.family) && t == "sliding_attention" && sub->is_object() &&
        find_member(*sub, "rope_theta") == nullptr) {
      const ConfigField lb = w.field("rope_local_base_freq");
      k.src.block.overrides.push_back(
          {"rope_theta",
           lb ? lb : ConfigField{&gemma3_local_base_default(), k.src.block.name + ".rope_theta"}});
    }
    if (t == "full_attention")
      if (const ConfigField g = w.field("global_head_dim"))
        k.src.overrides.push_back({"head_dim", g});
    kinds->push_back(std::move(k));
  }
  return Status();
}

// Gemma 3 / 3n before v5: sliding layers use default RoPE at rope_local_base_freq (1e4 by
// default), full layers (every other type) rope_theta and the config's scaling
// (Gemma3TextConfig). OLMo 3 as trained: sliding layers default RoPE at rope_theta, full layers
// the scaling (see Olmo3Rope). Two kinds at most, whatever the number of types.
inline void plan_sliding_kinds(const KindSource& base, const std::vector<std::string>& distinct,
                               std::vector<KindPlan>* kinds,
                               std::vector<std::int64_t>* kind_of_type) {
  const RawFields& w = *base.raw;
  std::int64_t sliding = -1, other = -1;
  for (const std::string& t : distinct) {
    const bool is_sliding = t == "sliding_attention";
    std::int64_t& slot = is_sliding ? sliding : other;
    if (slot >= 0) {
      (*kinds)[static_cast<std::size_t>(slot)].label += "," + t;
      kind_of_type->push_back(slot);
      continue;
    }
    slot = static_cast<std::int64_t>(kinds->size());
    kind_of_type->push_back(slot);
    KindPlan k{t, base};
    if (is_sliding) {
      k.src.block = RopeBlock{nullptr, w.top() + "rope_scaling", {}};
      ConfigField theta;
      if (base.family == "olmo3") {
        theta = base.block.field("rope_theta");  // rope_theta as given; no scaling block
      } else {
        k.src.block.name = w.top() + "rope_local_base_freq";
        theta = w.field("rope_local_base_freq");
        if (!theta) theta = ConfigField{&gemma3_local_base_default(), w.top() + "rope_theta"};
      }
      if (theta) k.src.overrides.push_back({"rope_theta", theta});
    }
    kinds->push_back(std::move(k));
  }
}

// Equal RoPEs share a kind, found by fingerprint (linear, not pairwise); *kind_of_plan maps
// each plan to its kind.
inline Status build_kinds(const std::vector<KindPlan>& plans, const HfImportOptions& options,
                          const std::string& uniform_name, ModelRope* m,
                          std::vector<std::int64_t>* kind_of_plan) {
  std::unordered_map<std::string, std::int64_t> kind_index;
  for (const KindPlan& p : plans) {
    RopeConfig rc;
    ROPESCALE_RETURN_IF_ERROR(parse_kind(p.src, options, &rc));
    const auto next = static_cast<std::int64_t>(m->kinds.size());
    auto it = kind_index.emplace(rope_config_fingerprint(rc), next).first;
    if (it->second == next)
      m->kinds.push_back({p.label == "all" ? uniform_name : p.label, std::move(rc)});
    else
      m->kinds[static_cast<std::size_t>(it->second)].layer_type += "," + p.label;
    kind_of_plan->push_back(it->second);
  }
  return Status();
}

// The text model's fields, read once: text_config or the top level, the top-level RoPE fields
// it inherits, the class defaults its model_type implies.
inline Status read_raw_fields(const Json& j, std::unique_ptr<RawFields>* raw, std::string* family,
                              ModelRope* m) {
  if (!j.is_object()) return json_type_error("config", j, "must be a JSON object");
  const Json* cfg = nullptr;
  std::string tp;
  ROPESCALE_RETURN_IF_ERROR(find_text_model(j, &cfg, &tp));
  if (cfg != &j) m->text_path = "text_config";
  for (const Json* src : {cfg, &j})
    if (family->empty())
      if (const Json* mt = find_member(*src, "model_type"))
        if (mt->is_string()) *family = mt->get<std::string>();
  *raw = std::make_unique<RawFields>(*cfg, tp);
  if (cfg != &j) ROPESCALE_RETURN_IF_ERROR(inherit_top_level(j, raw->get()));
  apply_class_defaults(*family, raw->get(), &m->class_defaults);
  // Cohere2 derives its NoPE layers (the full-attention ones) from sliding_window_pattern and
  // rotates in its own layout: refused rather than guessed.
  if (*family == "cohere2")
    return make_status(ErrorCode::kUnsupported, tp + "model_type", *family,
                       "this family's layers without RoPE (NoPE: its full-attention layers) are "
                       "not read by ropescale; apply the table only to its sliding layers "
                       "yourself");
  return Status();
}

// Each layer's kind: one kind for all (kNoRope on NoPE layers), or through its type's plan.
inline void assign_layer_kinds(const std::vector<KindPlan>& plans, std::int64_t num_layers,
                               const std::vector<char>& nope,
                               const std::vector<std::int64_t>& type_of_layer,
                               const std::vector<std::int64_t>& plan_of_type,
                               const std::vector<std::int64_t>& kind_of_plan, ModelRope* m) {
  auto at = [](const std::vector<std::int64_t>& v, std::int64_t i) {
    return v[static_cast<std::size_t>(i)];
  };
  if (plans.size() == 1 && plans[0].label == "all") {
    const std::int64_t n =
        !m->layer_types.empty()
            ? static_cast<std::int64_t>(m->layer_types.size())
            : (!nope.empty() ? static_cast<std::int64_t>(nope.size()) : num_layers);
    m->layer_kind.assign(static_cast<std::size_t>(n), 0);
    for (std::size_t l = 0; l < m->layer_kind.size(); ++l)
      if (l < nope.size() && nope[l] != 0) m->layer_kind[l] = ModelRope::kNoRope;
    return;
  }
  m->layer_kind.reserve(type_of_layer.size());
  for (const std::int64_t t : type_of_layer)
    m->layer_kind.push_back(t == ModelRope::kNoRope ? ModelRope::kNoRope
                                                    : at(kind_of_plan, at(plan_of_type, t)));
}

inline Status parse_model(const Json& j, const HfImportOptions& options, ModelRope* out) {
  ModelRope m;
  std::unique_ptr<RawFields> raw;
  std::string family;
  ROPESCALE_RETURN_IF_ERROR(read_raw_fields(j, &raw, &family, &m));
  std::int64_t num_layers = 0;
  std::vector<char> nope;  // per layer: 1 = no RoPE; empty: every layer has RoPE
  ROPESCALE_RETURN_IF_ERROR(read_layer_plan(*raw, family, &m, &num_layers, &nope));
  std::vector<std::string> distinct;
  std::vector<std::int64_t> type_of_layer;
  distinct_layer_types(m.layer_types, nope, &distinct, &type_of_layer);

  const KindSource base{raw.get(), config_block(*raw), {}, false, family};
  std::vector<KindPlan> plans;
  std::vector<std::int64_t> plan_of_type;  // per distinct type
  if (is_per_layer_block(base.block, m.layer_types)) {
    ROPESCALE_RETURN_IF_ERROR(plan_per_layer_kinds(base, distinct, &plans));
    for (std::size_t d = 0; d < distinct.size(); ++d)
      plan_of_type.push_back(static_cast<std::int64_t>(d));
  } else if ((is_gemma3(family) || (family == "olmo3" && options.olmo3 == Olmo3Rope::kTrained)) &&
             !distinct.empty()) {
    plan_sliding_kinds(base, distinct, &plans, &plan_of_type);
  } else {
    plans.push_back({"all", base});
  }
  // One block for every RoPE layer beside NoPE layers: the kind is named by its layer types.
  std::string uniform_name = "all";
  if (!nope.empty() && !distinct.empty()) {
    uniform_name.clear();
    for (const std::string& t : distinct) uniform_name += (uniform_name.empty() ? "" : ",") + t;
  }
  std::vector<std::int64_t> kind_of_plan;
  ROPESCALE_RETURN_IF_ERROR(build_kinds(plans, options, uniform_name, &m, &kind_of_plan));
  assign_layer_kinds(plans, num_layers, nope, type_of_layer, plan_of_type, kind_of_plan, &m);
  ROPESCALE_RETURN_IF_ERROR(read_scale_terms(*raw, &m));
  *out = std::move(m);
  return Status();
}

}  // namespace detail

}  // namespace ropescale
