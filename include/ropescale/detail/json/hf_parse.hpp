// ropescale internal: the config.json reader behind io/hf_config.hpp's parse_hf_model and
// parse_hf_config. It reads the config once, where it lies:
//
//   RawFields   the text model's fields, looked up by key with their JSON paths; the top-level
//               copies a nested text config inherits and the config-class defaults are
//               overrides on those fields (values held as data), never edits of a JSON copy.
//   KindSource  what one RoPE kind reads: the raw fields, the rope block that kind uses (the
//               whole config's, or a v5 per-layer-type block), and that kind's overrides
//               (Gemma 3's local base for sliding layers, Gemma 4's global_head_dim, ...).
//   resolvers   one per rope type, each holding Hugging Face's precedence for its parameters
//               and its window as data (first_of / window_precedence), filling a RopeConfig.
//   parse_model the layer plan (layer types, NoPE layers), one KindSource per distinct kind,
//               kinds deduplicated, each layer mapped to its kind.
//
// The generators of scaling.hpp and frequencies.hpp hold the parameter rules; what was read is
// checked by them (validate_kind), their messages renamed to the config key a parameter came
// from. The types it fills (RopeConfig, ModelRope) are io/rope_config.hpp's.
// Not a public header.
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

#include "ropescale/detail/json/json_read.hpp"

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
// Widths, theta, M-RoPE, pair layout
// ---------------------------------------------------------------------------------------------

inline bool is_mla_family_key(const KindSource& k) { return k.find("qk_rope_head_dim") != nullptr; }

// The fields a reader may have meant as the head width, for the refusal message.
inline std::string head_fields_seen(const KindSource& k) {
  std::string seen;
  for (const char* key : {"hidden_size", "num_attention_heads", "n_embd", "n_head", "d_model",
                          "n_heads", "kv_channels", "head_dim", "qk_rope_head_dim", "rotary_dim"}) {
    if (const Json* v = k.find(key))
      seen += std::string(seen.empty() ? "" : ", ") + key + " = " + json_excerpt(*v);
  }
  return seen.empty() ? std::string("none") : seen;
}

// head_dim when neither qk_rope_head_dim nor head_dim is given: HF's generic
// hidden_size / num_attention_heads. ChatGLM's kv_channels and GPT-2-style n_embd / n_head are
// refused with the fields seen rather than guessed.
inline Status read_generic_head_dim(const KindSource& k, std::int64_t* head_dim) {
  const Json* hs = k.find("hidden_size");
  const Json* nh = k.find("num_attention_heads");
  if (const Json* kv = k.find("kv_channels"))
    return make_status(ErrorCode::kUnsupported, k.path("kv_channels"), json_excerpt(*kv),
                       "the rotary width of this family (ChatGLM) is not derived from "
                       "kv_channels by ropescale; fields seen: " +
                           head_fields_seen(k) + "; add head_dim and partial_rotary_factor");
  if (hs == nullptr || nh == nullptr)
    return missing_field(k.path(hs == nullptr ? "hidden_size" : "num_attention_heads"),
                         "needed when head_dim is absent; fields seen: " + head_fields_seen(k) +
                             "; add head_dim (the per-head width) to the config");
  std::int64_t hidden = 0, heads = 0;
  ROPESCALE_RETURN_IF_ERROR(read_positive_int(*hs, k.path("hidden_size"), &hidden));
  ROPESCALE_RETURN_IF_ERROR(read_positive_int(*nh, k.path("num_attention_heads"), &heads));
  if (hidden % heads != 0)
    return make_status(ErrorCode::kInvalidArgument, k.path("hidden_size"), hidden,
                       "must be divisible by num_attention_heads (" + std::to_string(heads) +
                           ") when head_dim is absent");
  *head_dim = hidden / heads;
  return Status();
}

// Head width, the model family's own rule (HF's configuration_*.py):
//   MLA (DeepSeek-V2/V3/R1, Kimi-K2, MiniCPM3, ...: `qk_rope_head_dim`): HF sets
//     head_dim = qk_rope_head_dim, and only those channels rotate (the rest of q/k is `nope`).
//   `head_dim` when present (Gemma, Qwen3, Mistral, ... set it independently of hidden_size).
//   GPT-J / CodeGen `rotary_dim`: that many channels rotate (*rotary_override).
//   else hidden_size / num_attention_heads (read_generic_head_dim).
inline Status read_head_dim(const KindSource& k, std::int64_t* head_dim,
                            std::optional<std::int64_t>* rotary_override) {
  if (const ConfigField qr = k.top("qk_rope_head_dim")) {
    std::int64_t w = 0;
    ROPESCALE_RETURN_IF_ERROR(read_positive_int(*qr.value, qr.path, &w));
    if (const ConfigField hd = k.top("head_dim")) {
      std::int64_t h = 0;
      ROPESCALE_RETURN_IF_ERROR(read_positive_int(*hd.value, hd.path, &h));
      if (h != w)
        return make_status(ErrorCode::kUnsupported, hd.path, h,
                           "differs from qk_rope_head_dim (" + std::to_string(w) +
                               "); MLA rotates qk_rope_head_dim channels: remove head_dim or "
                               "make it equal");
    }
    *head_dim = w;
    return Status();
  }
  if (const ConfigField hd = k.top("head_dim")) {
    ROPESCALE_RETURN_IF_ERROR(read_positive_int(*hd.value, hd.path, head_dim));
  } else {
    ROPESCALE_RETURN_IF_ERROR(read_generic_head_dim(k, head_dim));
  }
  if (const ConfigField rd = k.top("rotary_dim")) {  // GPT-J, CodeGen
    std::int64_t r = 0;
    ROPESCALE_RETURN_IF_ERROR(read_positive_int(*rd.value, rd.path, &r));
    *rotary_override = r;
  }
  if (*head_dim > kMaxConfigHeadDim)
    return make_status(ErrorCode::kInvalidArgument, k.path("head_dim"), *head_dim,
                       "must be <= " + std::to_string(kMaxConfigHeadDim));
  return Status();
}

// The rotating fraction p: HF v5 standardize_rope_params lets a top-level partial_rotary_factor
// overwrite the block's (older HF read the top level only); GPT-NeoX spells it rotary_pct.
inline Status read_partial_rotary(const KindSource& k, double* partial, bool* given) {
  const ConfigField pr = first_of(k, {{From::kTop, "partial_rotary_factor"},
                                      {From::kBlock, "partial_rotary_factor"},
                                      {From::kTop, "rotary_pct"}});
  *given = static_cast<bool>(pr);
  if (!pr) return Status();
  ROPESCALE_RETURN_IF_ERROR(read_double(*pr.value, pr.path, partial));
  if (!(*partial > 0.0 && *partial <= 1.0))
    return make_status(ErrorCode::kInvalidArgument, pr.path, *partial, "must be in (0, 1]");
  return Status();
}

// head_dim, rotary_dim and (proportional) freq_dim of the spec.
inline Status read_widths(const KindSource& k, RopeType type, RopeSpec* spec) {
  std::int64_t head_dim = 0;
  std::optional<std::int64_t> rotary_override;
  ROPESCALE_RETURN_IF_ERROR(read_head_dim(k, &head_dim, &rotary_override));
  double partial = 1.0;
  bool has_partial = false;
  ROPESCALE_RETURN_IF_ERROR(read_partial_rotary(k, &partial, &has_partial));
  spec->head_dim = head_dim;
  const std::string shape = " (head_dim " + std::to_string(head_dim) + ", partial_rotary_factor " +
                            format_value(partial) + ")";
  if (type == RopeType::kProportional) {
    // HF: rope_angles = int(partial_rotary_factor * head_dim // 2) pairs rotate, with exponents
    // over head_dim; the other head_dim/2 - rope_angles pairs have frequency 0.
    spec->rotary_dim =
        2 * static_cast<std::int64_t>(std::floor(partial * static_cast<double>(head_dim) / 2.0));
    spec->freq_dim = head_dim % 2 == 0 ? head_dim : 0;
    if (spec->rotary_dim <= 0 || head_dim % 2 != 0)
      return make_status(ErrorCode::kInvalidArgument, "rotary_dim", spec->rotary_dim,
                         "proportional: 2 * int(partial_rotary_factor * head_dim // 2) must be > 0 "
                         "and head_dim even" +
                             shape);
  } else if (rotary_override && !has_partial) {
    spec->rotary_dim = *rotary_override;
    if (spec->rotary_dim % 2 != 0 || spec->rotary_dim > head_dim)
      return make_status(ErrorCode::kInvalidArgument, k.path("rotary_dim"), spec->rotary_dim,
                         "must be even and <= head_dim (" + std::to_string(head_dim) + ")");
  } else {
    // HF: dim = int(head_dim * partial_rotary_factor).
    spec->rotary_dim = static_cast<std::int64_t>(static_cast<double>(head_dim) * partial);
    if (spec->rotary_dim <= 0 || spec->rotary_dim % 2 != 0)
      return make_status(ErrorCode::kInvalidArgument, "rotary_dim", spec->rotary_dim,
                         "int(head_dim * partial_rotary_factor) must be even and > 0" + shape);
  }
  return Status();
}

// rope_theta: block (v5), top level, GPT-NeoX's rotary_emb_base, the caller's default. *path is
// the key it came from (named if a generator refuses it).
inline Status read_theta(const KindSource& k, const HfImportOptions& options, double* theta,
                         std::string* path) {
  const ConfigField f = first_of(
      k,
      {{From::kBlock, "rope_theta"}, {From::kTop, "rope_theta"}, {From::kTop, "rotary_emb_base"}});
  if (f) {
    *path = f.path;
    return read_double(*f.value, f.path, theta);
  }
  if (!options.default_rope_theta) return missing_field(k.path("rope_theta"), "the RoPE base");
  *theta = *options.default_rope_theta;
  *path = "HfImportOptions::default_rope_theta";
  return Status();
}

// The method: block.rope_type, else block.type; no block, a null one, or one holding only
// M-RoPE sections or rope_theta: default RoPE (HF's default).
inline Status read_rope_type(const RopeBlock& b, RopeType* out) {
  *out = RopeType::kDefault;
  if (b.obj == nullptr) return Status();
  if (!b.obj->is_object()) return json_type_error(b.name, *b.obj, "must be an object or null");
  const bool typed = b.find("rope_type") != nullptr || b.find("type") != nullptr;
  if (!typed) {
    for (const auto& item : b.obj->items())
      if (item.value().is_object())
        return make_status(ErrorCode::kUnsupported, b.name + "." + item.key(), "{...}",
                           "a per-layer-type block needs layer_types listing every layer's "
                           "type, with each key of " +
                               b.name + " among them");
  }
  if (typed ||
      (!b.empty() && b.find("mrope_section") == nullptr && b.find("rope_theta") == nullptr))
    return parse_rope_type(*b.obj, b.name, out);
  return Status();
}

// The section list: mrope_section, or HunYuan-VL's xdrope_section (HF's HunYuanVLTextConfig
// renames it, refusing two different lists). Each entry in [0, pairs], summing to pairs.
inline Status read_mrope_sections(const RopeBlock& b, std::int64_t pairs, ConfigField* where,
                                  std::vector<std::int64_t>* out) {
  ConfigField ms = b.field("mrope_section");
  if (const ConfigField xs = b.field("xdrope_section")) {
    if (!ms)
      ms = xs;
    else if (!bounded_equal(*ms.value, *xs.value))
      return make_status(ErrorCode::kInvalidArgument, xs.path, json_excerpt(*xs.value),
                         "differs from mrope_section (" + json_excerpt(*ms.value) +
                             "); HF reads xdrope_section as another name for it");
  }
  *where = ms;
  if (!ms) return Status();
  const Json& v = *ms.value;
  if (!v.is_array() || v.empty() || v.size() > static_cast<std::size_t>(kMaxMropeAxes))
    return json_type_error(ms.path, v,
                           "must be an array of 1 to 4 integers (pairs per position axis)");
  std::int64_t sum = 0;
  for (std::size_t a = 0; a < v.size(); ++a) {
    const std::string p = ms.path + "[" + std::to_string(a) + "]";
    std::int64_t x = 0;
    ROPESCALE_RETURN_IF_ERROR(read_int(v[a], p, &x));
    if (x < 0 || x > pairs)
      return make_status(ErrorCode::kInvalidArgument, p, x,
                         "must be in [0, rotary_dim / 2 = " + std::to_string(pairs) + "]");
    sum += x;
    out->push_back(x);
  }
  if (sum != pairs)
    return make_status(ErrorCode::kInvalidArgument, ms.path, json_excerpt(v),
                       "must sum to rotary_dim / 2 = " + std::to_string(pairs));
  return Status();
}

// M-RoPE (Qwen2-VL: rope_scaling {"type": "mrope", "mrope_section": [16, 24, 24]}; Qwen3-VL adds
// "mrope_interleaved": true, and its code always interleaves; ERNIE 4.5 VL's class alternates
// h/w; HunYuan-VL writes 4 sections as `xdrope_section`).
inline Status read_mrope(const KindSource& k, RopeConfig* c) {
  const RopeBlock& b = k.block;
  ConfigField ms;
  ROPESCALE_RETURN_IF_ERROR(read_mrope_sections(b, c->spec.pairs(), &ms, &c->mrope_section));
  const ConfigField mi = b.field("mrope_interleaved");
  if (!ms) {
    if (mi) return missing_field(b.name + ".mrope_section", "mrope_interleaved needs the sections");
    return Status();
  }
  const bool ernie_vl = k.family.rfind("ernie4_5_vl", 0) == 0;
  c->mrope_interleaved = k.family.rfind("qwen3_vl", 0) == 0;
  if (mi) {
    if (!mi.value->is_boolean())
      return json_type_error(mi.path, *mi.value, "must be true or false");
    c->mrope_interleaved = mi.value->get<bool>();
  }
  if (ernie_vl && c->mrope_interleaved)
    return make_status(ErrorCode::kUnsupported, mi.path, true,
                       "ERNIE 4.5 VL's layout is its own 3D one, not Qwen3-VL's interleaving");
  c->mrope_layout = c->mrope_interleaved ? MropeLayout::kInterleaved
                    : ernie_vl           ? MropeLayout::kErnie3d
                                         : MropeLayout::kSectioned;
  const std::vector<std::int64_t>& s = c->mrope_section;
  if (c->mrope_layout != MropeLayout::kSectioned && s.size() != 3)
    return make_status(ErrorCode::kInvalidArgument, ms.path + ".size()",
                       static_cast<std::int64_t>(s.size()),
                       std::string("must be 3 (temporal, height, width) for the ") +
                           to_string(c->mrope_layout) + " layout");
  if (c->mrope_layout == MropeLayout::kErnie3d && s[0] != s[1])
    return make_status(ErrorCode::kInvalidArgument, ms.path + "[1]", s[1],
                       "must equal mrope_section[0] (" + std::to_string(s[0]) +
                           "): ERNIE's 3D layout alternates height and width pair by pair");
  return Status();
}

// How the checkpoint pairs channels: rope_interleave when given, else the family's modeling
// code (HF's MLA config classes default rope_interleave to true: DeepSeek's q_pe/k_pe are
// interleaved, apply_rotary_pos_emb_interleave reorders them before rotate_half).
inline Status read_pair_layout(const KindSource& k, bool* interleaved) {
  static const char* const kInterleavedFamilies[] = {
      "deepseek_v2", "deepseek_v3", "deepseek_v32",
      "kimi_k2",     "gptj",        "codegen",  // rotate_every_two
      "glm",         "glm4",                    // rotate_half_llm
      "llama4_text", "llama4"};  // view_as_complex over (2i, 2i + 1) (modeling_llama4.py)
  const std::string& f = k.family;
  *interleaved = is_mla_family_key(k) ||
                 // ERNIE 4.5 (text and VL): rotate_half_text over (2i, 2i + 1).
                 f.rfind("ernie4_5", 0) == 0 ||
                 std::any_of(std::begin(kInterleavedFamilies), std::end(kInterleavedFamilies),
                             [&](const char* name) { return f == name; });
  if (const ConfigField ri = k.top("rope_interleave")) {
    if (!ri.value->is_boolean())
      return json_type_error(ri.path, *ri.value, "must be true or false");
    *interleaved = ri.value->get<bool>();
  }
  return Status();
}

// ---------------------------------------------------------------------------------------------
// One resolver per method
// ---------------------------------------------------------------------------------------------

// Where a generator's parameter was read from in config.json, and what to add to its message.
struct ConfigKey {
  std::string param;  // the generator's name ("rope_theta", "factor")
  std::string path;   // the config key ("rope_scaling.factor", "rotary_emb_base")
  std::string note;   // appended to the message ("" for none)
};

// The windows a config gives: max_position_embeddings and the optional original windows at the
// top level and in the block (a v5 per-layer-type block has its own window: no top one).
struct Windows {
  std::int64_t max_pos = 0;
  std::optional<std::int64_t> top, block;
};

inline Status read_windows(const KindSource& k, Windows* w) {
  const ConfigField mp = k.top("max_position_embeddings");
  if (!mp) return missing_field(mp.path, "the context window");
  ROPESCALE_RETURN_IF_ERROR(read_positive_int(*mp.value, mp.path, &w->max_pos));
  std::int64_t x = 0;
  if (const ConfigField f = k.top("original_max_position_embeddings")) {
    ROPESCALE_RETURN_IF_ERROR(read_positive_int(*f.value, f.path, &x));
    if (!k.nested) w->top = x;  // HF v5: a per-layer-type block has its own window
  }
  if (const ConfigField f = k.block.field("original_max_position_embeddings")) {
    ROPESCALE_RETURN_IF_ERROR(read_positive_int(*f.value, f.path, &x));
    w->block = x;
  }
  return Status();
}

// What a method's resolver reads: the kind's fields, the options, the windows, and the window L
// its precedence picks (window_precedence; unset when none of its sources is present).
struct MethodInput {
  const KindSource& k;
  const HfImportOptions& options;
  const Windows& win;
  std::optional<std::int64_t> window;
};

// Where each method's window L comes from, first present wins (HF's precedence):
//   default, linear, proportional  top-level original, else max_position_embeddings
//   dynamic                        max_position_embeddings (HF's dynamic NTK ignores the original)
//   yarn                           kCurrent: top, block (v5 standardize_rope_params puts the top
//                                  level over the block, "Phi3 ... exception"), else max;
//                                  kDerivedFactor: block, top, max; kLegacy: max
//   llama3                         top, block (required)
//   longrope                       top, block; none: max_position_embeddings with the block's s
enum class WindowFrom { kTop, kBlock, kMaxPositions };

inline std::vector<WindowFrom> window_precedence(RopeType type, YarnSemantics yarn) {
  using W = WindowFrom;
  switch (type) {
    case RopeType::kDynamic:
      return {W::kMaxPositions};
    case RopeType::kYarn:
      if (yarn == YarnSemantics::kLegacy) return {W::kMaxPositions};
      if (yarn == YarnSemantics::kDerivedFactor) return {W::kBlock, W::kTop, W::kMaxPositions};
      return {W::kTop, W::kBlock, W::kMaxPositions};
    case RopeType::kLlama3:
    case RopeType::kLongRope:
      return {W::kTop, W::kBlock};
    case RopeType::kDefault:
    case RopeType::kLinear:
    case RopeType::kProportional:
      break;
  }
  return {W::kTop, W::kMaxPositions};
}

inline std::optional<std::int64_t> pick_window(const std::vector<WindowFrom>& order,
                                               const Windows& w) {
  for (const WindowFrom from : order) {
    if (from == WindowFrom::kTop && w.top) return w.top;
    if (from == WindowFrom::kBlock && w.block) return w.block;
    if (from == WindowFrom::kMaxPositions) return w.max_pos;
  }
  return std::nullopt;
}

// A required number of the block ("the scale factor s" for `factor`); its range is the
// generators' to check.
inline Status read_block_number(const RopeBlock& b, const char* key, const std::string& rule,
                                double* out) {
  const ConfigField f = b.field(key);
  if (!f) return missing_field(f.path, rule);
  return read_double(*f.value, f.path, out);
}

inline Status read_block_scale(const RopeBlock& b, double* out) {
  return read_block_number(b, "factor", "the scale factor s", out);
}

inline Status read_block_positive(const RopeBlock& b, const char* key, std::optional<double>* out) {
  const ConfigField f = b.field(key);
  if (!f) return Status();
  double x = 0;
  ROPESCALE_RETURN_IF_ERROR(read_double(*f.value, f.path, &x));
  if (!(x > 0.0)) return make_status(ErrorCode::kInvalidArgument, f.path, x, "must be > 0");
  *out = x;
  return Status();
}

// Each resolver fills the method's parameters and spec.original_max_position, and adds to *keys
// the config keys a generator's parameter came from when they are not the block's own.
using Resolver = Status (*)(const MethodInput&, RopeConfig*, std::vector<ConfigKey>*);

inline Status resolve_default(const MethodInput&, RopeConfig*, std::vector<ConfigKey>*) {
  return Status();
}

inline Status resolve_linear(const MethodInput& in, RopeConfig* c, std::vector<ConfigKey>*) {
  return read_block_scale(in.k.block, &c->factor);
}

// Gemma 4: rope_parameters.get("factor", 1.0).
inline Status resolve_proportional(const MethodInput& in, RopeConfig* c, std::vector<ConfigKey>*) {
  c->factor = 1.0;
  if (in.k.block.find("factor") == nullptr) return Status();
  return read_block_scale(in.k.block, &c->factor);
}

// HunYuan (HunYuanDenseV1RotaryEmbedding; also its MoE and VL models): a truthy
// rope_scaling.alpha replaces dynamic NTK by a fixed base rope_theta * alpha^(d/(d-2)) over the
// whole head_dim, at every length. Other families' dynamic NTK ignores alpha.
inline Status resolve_dynamic(const MethodInput& in, RopeConfig* c, std::vector<ConfigKey>* keys) {
  const RopeBlock& b = in.k.block;
  const ConfigField al = b.field("alpha");
  const bool hunyuan = in.k.family.rfind("hunyuan", 0) == 0;
  if (!hunyuan || !al || (al.value->is_number() && al.value->get<double>() == 0.0))
    return read_block_scale(b, &c->factor);
  ROPESCALE_RETURN_IF_ERROR(read_double(*al.value, al.path, &c->ntk_alpha));
  const RopeSpec& s = c->spec;
  if (!(c->ntk_alpha >= 1.0))
    return make_status(ErrorCode::kInvalidArgument, al.path, c->ntk_alpha,
                       "must be >= 1 (base = rope_theta * alpha^(d/(d-2)))");
  const double d = static_cast<double>(s.head_dim);
  const double log_base =
      std::log(s.rope_theta) + std::log(c->ntk_alpha) * d / std::max(d - 2.0, 1.0);
  if (!(log_base <= std::log(kMaxRopeTheta)) || s.head_dim <= 2)
    return make_status(ErrorCode::kInvalidArgument, al.path, c->ntk_alpha,
                       "rope_theta * alpha^(d/(d-2)) must be <= kMaxRopeTheta (1e12) and "
                       "head_dim > 2 (head_dim " +
                           std::to_string(s.head_dim) + ")");
  if (s.rotary_dim != s.head_dim)
    return make_status(ErrorCode::kUnsupported, al.path, c->ntk_alpha,
                       "HunYuan's alpha rotates the whole head_dim (" + std::to_string(s.head_dim) +
                           "); a partial rotary_dim is not defined for it");
  if (b.find("factor") != nullptr) ROPESCALE_RETURN_IF_ERROR(read_block_scale(b, &c->factor));
  keys->push_back({"factor", al.path, ""});  // the ntk generator's "factor" is alpha
  return Status();
}

// YaRN's scale s: the block's factor, derived as max_position_embeddings / window where HF
// derives it (kDerivedFactor with a block window; any semantics when the factor is missing).
inline Status read_yarn_factor(const MethodInput& in, double* factor,
                               std::vector<ConfigKey>* keys) {
  const RopeBlock& b = in.k.block;
  const YarnSemantics sem = in.options.yarn;
  const std::int64_t window = *in.window;  // yarn's precedence always ends at max_position
  const bool derive =
      (sem == YarnSemantics::kDerivedFactor && in.win.block) ||
      (b.find("factor") == nullptr && sem != YarnSemantics::kLegacy && window != in.win.max_pos);
  if (!derive && b.find("factor") == nullptr && sem != YarnSemantics::kLegacy)
    return missing_field(b.name + ".factor",
                         "or an original_max_position_embeddings to derive it from");
  if (!derive) return read_block_scale(b, factor);
  *factor = static_cast<double>(in.win.max_pos) / static_cast<double>(window);
  keys->push_back({"factor", b.name + ".factor",
                   " (derived as max_position_embeddings / original_max_position_embeddings)"});
  return Status();
}

inline Status resolve_yarn(const MethodInput& in, RopeConfig* c, std::vector<ConfigKey>* keys) {
  const RopeBlock& b = in.k.block;
  YarnParams& y = c->yarn;
  ROPESCALE_RETURN_IF_ERROR(read_yarn_factor(in, &y.factor, keys));
  // HF: `get("beta_fast") or 32`: missing, null or 0 means the default.
  struct Param {  // a number of the block, its default, where it goes
    const char* key;
    double fallback;
    double* out;
  };
  for (const Param& beta :
       {Param{"beta_fast", 32.0, &y.beta_fast}, Param{"beta_slow", 1.0, &y.beta_slow}}) {
    double v = 0;
    if (const ConfigField f = b.field(beta.key))
      ROPESCALE_RETURN_IF_ERROR(read_double(*f.value, f.path, &v));
    *beta.out = v == 0.0 ? beta.fallback : v;
  }
  if (in.options.yarn != YarnSemantics::kLegacy) {  // the legacy code reads neither
    for (const Param& m :
         {Param{"mscale", 0.0, &y.mscale}, Param{"mscale_all_dim", 0.0, &y.mscale_all_dim}}) {
      *m.out = m.fallback;
      if (const ConfigField f = b.field(m.key))
        ROPESCALE_RETURN_IF_ERROR(read_double(*f.value, f.path, m.out));
    }
    if (const ConfigField f = b.field("truncate")) {
      if (!f.value->is_boolean()) return json_type_error(f.path, *f.value, "must be true or false");
      y.truncate = f.value->get<bool>();
    }
  }
  ROPESCALE_RETURN_IF_ERROR(read_block_positive(b, "attention_factor", &y.attention_factor));
  y.original_max_position = *in.window;
  return Status();
}

inline Status resolve_llama3(const MethodInput& in, RopeConfig* c, std::vector<ConfigKey>*) {
  const RopeBlock& b = in.k.block;
  Llama3Params& l = c->llama3;
  ROPESCALE_RETURN_IF_ERROR(read_block_scale(b, &l.factor));
  const ConfigField lo = b.field("low_freq_factor"), hi = b.field("high_freq_factor");
  if (!lo) return missing_field(lo.path, "llama3");
  if (!hi) return missing_field(hi.path, "llama3");
  ROPESCALE_RETURN_IF_ERROR(read_double(*lo.value, lo.path, &l.low_freq_factor));
  ROPESCALE_RETURN_IF_ERROR(read_double(*hi.value, hi.path, &l.high_freq_factor));
  if (!in.window)
    return missing_field(b.name + ".original_max_position_embeddings",
                         "llama3's pre-training window");
  l.original_max_position = *in.window;
  return Status();
}

// HF's Phi-3.5-MoE rotary module uses short_mscale / long_mscale in place of the attention
// scaling whenever they are set (attention_factor included); Phi-3's ignores them. Other model
// types keep ropescale's order (attention_factor, then the set's mscale).
inline void apply_phi_mscale_rules(const std::string& family, LongRopeParams* p) {
  if (family == "phimoe" && p->attention_factor && (p->short_mscale || p->long_mscale)) {
    if (!p->short_mscale) p->short_mscale = p->attention_factor;
    if (!p->long_mscale) p->long_mscale = p->attention_factor;
    p->attention_factor.reset();
  }
  if (family == "phi3") {
    p->short_mscale.reset();
    p->long_mscale.reset();
  }
}

inline Status resolve_longrope(const MethodInput& in, RopeConfig* c, std::vector<ConfigKey>*) {
  const RopeBlock& b = in.k.block;
  LongRopeParams& p = c->longrope;
  const ConfigField sf = b.field("short_factor"), lf = b.field("long_factor");
  if (!sf) return missing_field(sf.path, "longrope");
  if (!lf) return missing_field(lf.path, "longrope");
  ROPESCALE_RETURN_IF_ERROR(read_factor_list(*sf.value, sf.path, &p.short_factor));
  ROPESCALE_RETURN_IF_ERROR(read_factor_list(*lf.value, lf.path, &p.long_factor));
  ROPESCALE_RETURN_IF_ERROR(read_block_positive(b, "attention_factor", &p.attention_factor));
  ROPESCALE_RETURN_IF_ERROR(read_block_positive(b, "short_mscale", &p.short_mscale));
  ROPESCALE_RETURN_IF_ERROR(read_block_positive(b, "long_mscale", &p.long_mscale));
  apply_phi_mscale_rules(in.k.family, &p);
  // HF (Phi-3): with an original window, s = max_position_embeddings / original and the block's
  // factor is ignored; without one, L = max_position_embeddings and s = factor.
  if (in.window) {
    p.factor = static_cast<double>(in.win.max_pos) / static_cast<double>(*in.window);
    return Status();
  }
  if (b.find("factor") == nullptr && p.attention_factor) return Status();
  return read_block_number(
      b, "factor", "longrope needs it when original_max_position_embeddings is absent", &p.factor);
}

inline Resolver resolver_for(RopeType type) {
  switch (type) {
    case RopeType::kLinear:
      return resolve_linear;
    case RopeType::kProportional:
      return resolve_proportional;
    case RopeType::kDynamic:
      return resolve_dynamic;
    case RopeType::kYarn:
      return resolve_yarn;
    case RopeType::kLlama3:
      return resolve_llama3;
    case RopeType::kLongRope:
      return resolve_longrope;
    case RopeType::kDefault:
      break;
  }
  return resolve_default;
}

// A generator's message names its parameter ("beta_fast = 0.5: ...", "long_factor[3] = 0: ...");
// the importer has the generators validate what it read (scaling.hpp and frequencies.hpp hold the
// rules, once) and renames the argument field to the key it came from
// ("rope_scaling.beta_fast"), as its own reads name their keys. `keys` is searched first, then
// the rope block's keys.
inline Status name_config_key(Status s, const std::string& bname,
                              const std::vector<ConfigKey>& keys = {}) {
  if (s.ok()) return s;
  static const char* const kBlockKeys[] = {
      "factor",         "beta_fast",        "beta_slow",       "mscale",
      "mscale_all_dim", "attention_factor", "low_freq_factor", "high_freq_factor",
      "short_factor",   "long_factor",      "short_mscale",    "long_mscale"};
  const std::string& field = s.argument();
  if (field.empty()) return s;
  const std::string param = field.substr(0, field.find_first_of("[."));
  const std::string rest = field.substr(param.size());
  for (const ConfigKey& k : keys)
    if (param == k.param)
      return Status(s.code(), format_argument(k.path + rest), s.value(), s.rule() + k.note)
          .with_context(s.context());
  for (const char* k : kBlockKeys)
    if (param == k) return s.with_argument(format_argument(bname + "." + field));
  return s;
}

// The generators check what was read: every table HF may use must build (the one for a short
// sequence, and for methods whose table depends on the length, the one past the window).
inline Status validate_kind(const RopeConfig& c, const std::string& bname,
                            const std::vector<ConfigKey>& keys) {
  ROPESCALE_RETURN_IF_ERROR(name_config_key(c.table_for(0).status(), bname, keys));
  const bool by_length = c.rope_type == RopeType::kLongRope ||
                         (c.rope_type == RopeType::kDynamic && c.ntk_alpha == 0.0);
  if (!by_length) return Status();
  return name_config_key(c.table_for(c.spec.original_max_position + 1).status(), bname, keys);
}

// One kind's RoPE: method, spec, M-RoPE, pair layout, windows, then the method's resolver.
inline Status parse_kind(const KindSource& k, const HfImportOptions& options, RopeConfig* out) {
  RopeConfig c;
  ROPESCALE_RETURN_IF_ERROR(read_rope_type(k.block, &c.rope_type));
  std::string theta_path;
  ROPESCALE_RETURN_IF_ERROR(read_theta(k, options, &c.spec.rope_theta, &theta_path));
  ROPESCALE_RETURN_IF_ERROR(read_widths(k, c.rope_type, &c.spec));
  ROPESCALE_RETURN_IF_ERROR(read_mrope(k, &c));
  ROPESCALE_RETURN_IF_ERROR(read_pair_layout(k, &c.interleaved_pairs));
  Windows win;
  ROPESCALE_RETURN_IF_ERROR(read_windows(k, &win));
  c.max_position_embeddings = win.max_pos;
  const MethodInput in{k, options, win,
                       pick_window(window_precedence(c.rope_type, options.yarn), win)};
  c.spec.original_max_position = in.window.value_or(win.max_pos);
  std::vector<ConfigKey> keys = {{"rope_theta", theta_path, ""}};
  ROPESCALE_RETURN_IF_ERROR(resolver_for(c.rope_type)(in, &c, &keys));
  ROPESCALE_RETURN_IF_ERROR(validate_kind(c, k.block.name, keys));
  *out = std::move(c);
  return Status();
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

// One RoPE kind before deduplication: the layer types it serves ("all" for every layer) and
// what it reads.
struct KindPlan {
  std::string label;
  KindSource src;
};

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
