// ropescale internal: the config.json fields the importer reads, as data. RawFields holds the
// text model's fields where they lie (text_config or the top level) with their JSON paths; the
// top-level fields a nested text config inherits and the config-class defaults of its model_type
// are overrides on them, never edits of a JSON copy. A KindSource is what one RoPE kind reads:
// its rope block and that kind's overrides; first_of() holds Hugging Face's precedence between
// sources. Included by detail/json/hf_parse.hpp. Not a public header.
#pragma once

#include "ropescale/detail/internal_header_check.hpp"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <deque>
#include <initializer_list>
#include <nlohmann/json.hpp>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "ropescale/detail/json/json_read.hpp"
#include "ropescale/error.hpp"
#include "ropescale/io/rope_config.hpp"

namespace ropescale {

namespace detail {

// ---------------------------------------------------------------------------------------------
// Fields as read
// ---------------------------------------------------------------------------------------------

// One value the reader uses: the JSON it is (nullptr when absent or null) and the path an error
// names.
struct ConfigField {
  const Json* value = nullptr;
  std::string path;
  explicit operator bool() const noexcept { return value != nullptr; }
};

// Containers nested deeper than this compare as equal when of one kind: nlohmann's operator==
// recurses per level, so comparing hostile 100k-deep values would overflow the stack. No config
// nests RoPE fields that deep.
constexpr int kMaxCompareDepth = 64;
inline bool bounded_equal(const Json& a, const Json& b, int depth = 0) {
  if (!a.is_structured() || !b.is_structured()) return a == b;
  if (a.type() != b.type()) return false;
  if (depth >= kMaxCompareDepth) return true;
  if (a.size() != b.size()) return false;
  if (a.is_array()) {
    for (std::size_t i = 0; i < a.size(); ++i)
      if (!bounded_equal(a[i], b[i], depth + 1)) return false;
    return true;
  }
  for (auto it = a.begin(); it != a.end(); ++it) {
    auto jt = b.find(it.key());
    if (jt == b.end() || !bounded_equal(*it, *jt, depth + 1)) return false;
  }
  return true;
}

// The text model's fields. find() looks a key up in the text model's object, then in the
// overrides: values inherited from the top level of a nested config, and config-class defaults
// (owned here). Errors name a field as top() + key, as the text model spells it.
class RawFields {
 public:
  RawFields(const Json& cfg, std::string top) : cfg_(&cfg), top_(std::move(top)) {}
  RawFields(const RawFields&) = delete;
  RawFields& operator=(const RawFields&) = delete;

  const Json* find(const char* key) const {
    if (const Json* v = find_member(*cfg_, key)) return v;
    auto it = overrides_.find(key);
    return it == overrides_.end() ? nullptr : it->second;
  }
  ConfigField field(const char* key) const { return {find(key), top_ + key}; }
  const std::string& top() const noexcept { return top_; }

  // key's value where the text model has none; *v must outlive this object.
  void inherit(const char* key, const Json* v) { overrides_[key] = v; }
  // A value the reader owns (a config-class default).
  void set_default(const std::string& key, Json v) {
    owned_.push_back(std::move(v));
    overrides_[key] = &owned_.back();
  }

 private:
  const Json* cfg_;
  std::string top_;
  std::unordered_map<std::string, const Json*> overrides_;
  std::deque<Json> owned_;  // stable addresses
};

// A field of one kind put over what the config says (a key and the value with its path).
struct FieldOverride {
  std::string key;
  ConfigField field;
};

inline const ConfigField* find_override(const std::vector<FieldOverride>& list, const char* key) {
  for (const FieldOverride& o : list)
    if (o.key == key) return &o.field;
  return nullptr;
}

// The rope block one kind reads: `rope_parameters`, else `rope_scaling`, or a v5 per-layer-type
// block; `name` is its displayed path. Overrides add fields it lacks (Gemma 3's sliding blocks
// take rope_local_base_freq as rope_theta).
struct RopeBlock {
  const Json* obj = nullptr;  // nullptr: no block, or a null one
  std::string name;
  std::vector<FieldOverride> overrides;

  ConfigField field(const char* key) const {
    if (obj != nullptr)
      if (const Json* v = find_member(*obj, key)) return {v, name + "." + key};
    if (const ConfigField* o = find_override(overrides, key)) return *o;
    return {nullptr, name + "." + key};
  }
  const Json* find(const char* key) const { return field(key).value; }
  bool present() const noexcept { return obj != nullptr || !overrides.empty(); }
  bool empty() const noexcept { return (obj == nullptr || obj->empty()) && overrides.empty(); }
};

// What one RoPE kind reads: the raw fields under this kind's overrides, and its rope block.
// `nested` marks a v5 per-layer-type block (HF then takes original_max_position_embeddings from
// the block only); `family` is the config's model_type.
struct KindSource {
  const RawFields* raw = nullptr;
  RopeBlock block;
  std::vector<FieldOverride> overrides;
  bool nested = false;
  std::string family;

  ConfigField top(const char* key) const {
    if (const ConfigField* o = find_override(overrides, key)) return *o;
    return raw->field(key);
  }
  const Json* find(const char* key) const { return top(key).value; }
  std::string path(const char* key) const { return raw->top() + key; }
};

// Where a value may come from, in Hugging Face's order of precedence: the first present wins.
enum class From { kTop, kBlock };
struct Source {
  From from;
  const char* key;
};

inline ConfigField first_of(const KindSource& k, std::initializer_list<Source> order) {
  for (const Source& s : order) {
    ConfigField f = s.from == From::kTop ? k.top(s.key) : k.block.field(s.key);
    if (f) return f;
  }
  return {};
}

// ---------------------------------------------------------------------------------------------
// The model: text config, class defaults, layer plan, kinds
// ---------------------------------------------------------------------------------------------

// Multimodal configs (Gemma 3, Qwen2.5-VL / Qwen3-VL in v5 form) nest the text model in
// `text_config`; it is the text model when it holds any of its fields.
inline Status find_text_model(const Json& j, const Json** cfg, std::string* top) {
  *cfg = &j;
  const Json* tc = find_member(j, "text_config");
  if (tc == nullptr) return Status();
  if (!tc->is_object()) return json_type_error("text_config", *tc, "must be an object or null");
  for (const char* k : {"rope_theta", "rope_scaling", "rope_parameters", "head_dim", "hidden_size",
                        "max_position_embeddings", "model_type"})
    if (find_member(*tc, k) != nullptr) {
      *cfg = tc;
      *top = "text_config.";
      break;
    }
  return Status();
}

// RoPE fields the top level carries and a nested text config lacks are the text model's too
// (older Qwen2-VL files keep rope_scaling at the top); two different values are refused.
inline Status inherit_top_level(const Json& j, RawFields* raw) {
  for (const char* k : {"rope_theta", "rope_scaling", "rope_parameters", "partial_rotary_factor",
                        "original_max_position_embeddings", "rope_local_base_freq"}) {
    const Json* outer = find_member(j, k);
    if (outer == nullptr) continue;
    const Json* inner = raw->find(k);
    if (inner == nullptr) {
      raw->inherit(k, outer);
    } else if (!bounded_equal(*inner, *outer)) {
      return make_status(ErrorCode::kUnsupported, std::string(k), json_excerpt(*outer),
                         "differs from text_config." + std::string(k) + " (" +
                             json_excerpt(*inner) + "); remove one of them");
    }
  }
  return Status();
}

// The config's rope block: `rope_parameters` (v5), else `rope_scaling`; named rope_scaling when
// there is none.
inline RopeBlock config_block(const RawFields& w) {
  RopeBlock b;
  b.obj = w.find("rope_parameters");
  b.name = w.top() + "rope_parameters";
  if (b.obj == nullptr) {
    b.obj = w.find("rope_scaling");
    b.name = w.top() + "rope_scaling";
  }
  return b;
}

// One default of a transformers config class: what HF's model gets when config.json leaves
// `key` out. `families` lists the model_types the class serves (comma-separated).
struct ClassDefault {
  const char* families;
  const char* key;
  double value;
  const char* source;  // the class it was transcribed from (transformers' configuration_*.py)
};

// The config-class defaults that decide the RoPE when a published config leaves them out. Each
// row is transcribed from the class's __init__ / __post_init__ defaults (transformers v5).
inline const std::vector<ClassDefault>& class_default_table() {
  static const std::vector<ClassDefault> kTable = {
      // Gemma3TextConfig (configuration_gemma3.py)
      {"gemma3_text,gemma3", "head_dim", 256, "Gemma3TextConfig"},
      {"gemma3_text,gemma3", "hidden_size", 2304, "Gemma3TextConfig"},
      {"gemma3_text,gemma3", "num_attention_heads", 8, "Gemma3TextConfig"},
      {"gemma3_text,gemma3", "num_hidden_layers", 26, "Gemma3TextConfig"},
      {"gemma3_text,gemma3", "max_position_embeddings", 131072, "Gemma3TextConfig"},
      {"gemma3_text,gemma3", "rope_theta", 1000000.0, "Gemma3TextConfig"},
      // Gemma3nTextConfig (configuration_gemma3n.py): rope_local_base_freq for sliding layers
      {"gemma3n_text,gemma3n", "head_dim", 256, "Gemma3nTextConfig"},
      {"gemma3n_text,gemma3n", "num_hidden_layers", 35, "Gemma3nTextConfig"},
      {"gemma3n_text,gemma3n", "max_position_embeddings", 32768, "Gemma3nTextConfig"},
      {"gemma3n_text,gemma3n", "rope_theta", 1000000.0, "Gemma3nTextConfig"},
      {"gemma3n_text,gemma3n", "rope_local_base_freq", 10000.0, "Gemma3nTextConfig"},
      // GemmaConfig / Gemma2Config (configuration_gemma.py, configuration_gemma2.py)
      {"gemma,gemma2", "head_dim", 256, "GemmaConfig / Gemma2Config"},
      {"gemma,gemma2", "max_position_embeddings", 8192, "GemmaConfig / Gemma2Config"},
      {"gemma,gemma2", "rope_theta", 10000.0, "GemmaConfig / Gemma2Config"},
      // Qwen3Config and its MoE / VL text classes: head_dim 128, independent of hidden_size
      {"qwen3,qwen3_moe,qwen3_vl_text,qwen3_vl_moe_text", "head_dim", 128, "Qwen3Config"},
      // GlmConfig / Glm4Config / Glm4MoeConfig: kwargs.setdefault("partial_rotary_factor", 0.5)
      // "for BC" (GLM-4-9B -hf checkpoints omit it), head_dim 128
      {"glm", "partial_rotary_factor", 0.5, "GlmConfig"},
      {"glm", "head_dim", 128, "GlmConfig"},
      {"glm4", "partial_rotary_factor", 0.5, "Glm4Config"},
      {"glm4", "head_dim", 128, "Glm4Config"},
      {"glm4_moe", "partial_rotary_factor", 0.5, "Glm4MoeConfig"},
      {"glm4_moe", "head_dim", 128, "Glm4MoeConfig"},
      // NemotronConfig, RecurrentGemmaConfig, PhiConfig, PersimmonConfig: half the head rotates
      {"nemotron", "partial_rotary_factor", 0.5, "NemotronConfig"},
      {"recurrent_gemma", "partial_rotary_factor", 0.5, "RecurrentGemmaConfig"},
      {"phi", "partial_rotary_factor", 0.5, "PhiConfig"},
      {"persimmon", "partial_rotary_factor", 0.5, "PersimmonConfig"},
      {"persimmon", "rope_theta", 25000.0, "PersimmonConfig"},
      // StableLmConfig: a quarter of the head rotates
      {"stablelm", "partial_rotary_factor", 0.25, "StableLmConfig"},
      // GPTNeoXConfig: rotary_pct 0.25, rotary_emb_base 10000
      {"gpt_neox", "rotary_pct", 0.25, "GPTNeoXConfig"},
      {"gpt_neox", "rotary_emb_base", 10000.0, "GPTNeoXConfig"},
      // Qwen3NextConfig, Qwen3_5MoeTextConfig: head_dim 256, a quarter of it rotates
      {"qwen3_next", "partial_rotary_factor", 0.25, "Qwen3NextConfig"},
      {"qwen3_next", "head_dim", 256, "Qwen3NextConfig"},
      {"qwen3_next", "num_hidden_layers", 48, "Qwen3NextConfig"},
      {"qwen3_5_moe_text,qwen3_5_moe", "partial_rotary_factor", 0.25, "Qwen3_5MoeTextConfig"},
      // Llama4TextConfig: 48 layers, every 4th NoPE, head_dim 128, theta 5e5
      {"llama4_text,llama4", "head_dim", 128, "Llama4TextConfig"},
      {"llama4_text,llama4", "rope_theta", 500000.0, "Llama4TextConfig"},
      {"llama4_text,llama4", "num_hidden_layers", 48, "Llama4TextConfig"},
      {"llama4_text,llama4", "max_position_embeddings", 131072, "Llama4TextConfig"},
      // SmolLM3Config: 36 layers, every 4th NoPE, theta 2e6
      {"smollm3", "rope_theta", 2000000.0, "SmolLM3Config"},
      {"smollm3", "num_hidden_layers", 36, "SmolLM3Config"},
      {"smollm3", "max_position_embeddings", 32768, "SmolLM3Config"},
  };
  return kTable;
}

inline bool family_in(const std::string& family, const char* list) {
  const std::string l = list;
  std::size_t pos = 0;
  while (pos <= l.size()) {
    const std::size_t comma = std::min(l.find(',', pos), l.size());
    if (l.compare(pos, comma - pos, family) == 0 && comma - pos == family.size()) return true;
    pos = comma + 1;
  }
  return false;
}

// Sets the fields the config leaves out to its class's defaults (overrides on the raw fields)
// and lists each one used in *used ("partial_rotary_factor = 0.5 (GlmConfig default)"). A field
// the rope block carries (v5 moves rope_theta and partial_rotary_factor there) counts as present.
inline void apply_class_defaults(const std::string& family, RawFields* w,
                                 std::vector<std::string>* used) {
  const RopeBlock block = config_block(*w);
  auto given = [&](const char* key) {
    return w->find(key) != nullptr || block.find(key) != nullptr;
  };
  std::vector<const ClassDefault*> add;
  for (const ClassDefault& d : class_default_table()) {
    if (!family_in(family, d.families) || given(d.key)) continue;
    // rope_theta and GPT-NeoX's rotary_emb_base name one value: either one given is the base.
    const std::string key = d.key;
    if ((key == "rotary_emb_base" || key == "rope_theta") &&
        (given("rope_theta") || w->find("rotary_emb_base") != nullptr))
      continue;
    add.push_back(&d);
    if (used != nullptr)
      used->push_back(key + " = " + format_value(d.value) + " (" + d.source + " default)");
  }
  for (const ClassDefault* d : add) {
    const std::string key = d->key;
    const bool is_base =
        key == "rope_theta" || key == "rotary_emb_base" || key == "rope_local_base_freq";
    if (d->value == std::floor(d->value) && !is_base)
      w->set_default(key, Json(static_cast<std::int64_t>(d->value)));
    else
      w->set_default(key, Json(d->value));
  }
}

// Gemma 3 and Gemma 3n: sliding layers at rope_local_base_freq (Gemma3TextConfig,
// Gemma3nTextConfig).
inline bool is_gemma3(const std::string& family) {
  return family == "gemma3_text" || family == "gemma3" || family == "gemma3n_text" ||
         family == "gemma3n";
}

}  // namespace detail

}  // namespace ropescale
