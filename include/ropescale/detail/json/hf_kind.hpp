// ropescale internal: one RoPE kind of a config.json, read from a KindSource (hf_fields.hpp):
// the method, rope_theta, head and rotary widths, M-RoPE sections, pair layout and windows, then
// one resolver per method holding Hugging Face's precedence for its parameters and window as data
// (window_precedence). The generators of scaling.hpp and frequencies.hpp check what was read
// (validate_kind), their messages renamed to the config key a parameter came from. Included by
// detail/json/hf_parse.hpp after the types it fills (RopeConfig). Not a public header.
#pragma once

#include "ropescale/detail/internal_header_check.hpp"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <iterator>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "ropescale/detail/json/hf_fields.hpp"

namespace ropescale {

namespace detail {

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

// Each resolver fills its method's parameters (spec.original_max_position already holds the
// window its precedence picked, else max_position_embeddings) and adds to *keys the config keys
// a generator's parameter came from when they are not the block's own.
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

}  // namespace detail

}  // namespace ropescale
