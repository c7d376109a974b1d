// ropescale internal: the config.json reader behind io/hf_config.hpp's try_parse_hf_model and
// try_parse_hf_config: the head and rotary widths, one flat (single-block) config, the
// config-class defaults and the per-layer-type assembly, on the field readers of json_read.hpp.
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
#include <limits>
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

// How parse_flat names what it reads: `top` prefixes top-level fields ("" or "text_config."),
// `block` is the displayed path of the rope block (empty: top + the key found), `nested` marks a
// v5 per-layer-type block (HF then takes original_max_position_embeddings from the block only),
// `family` is the config's model_type.
struct FlatNames {
  std::string top;
  std::string block;
  bool nested = false;
  std::string family;
  std::string theta_key;  // the config key rope_theta was copied from (Gemma 3's local base)
};

inline bool is_mla_family_key(const Json& j) {
  return find_member(j, "qk_rope_head_dim") != nullptr;
}

// The fields a reader may have meant as the head width, for the refusal message.
inline std::string head_fields_seen(const Json& j) {
  std::string seen;
  for (const char* k : {"hidden_size", "num_attention_heads", "n_embd", "n_head", "d_model",
                        "n_heads", "kv_channels", "head_dim", "qk_rope_head_dim", "rotary_dim"}) {
    if (const Json* v = find_member(j, k))
      seen += std::string(seen.empty() ? "" : ", ") + k + " = " + json_excerpt(*v);
  }
  return seen.empty() ? std::string("none") : seen;
}

// Rotary width, the model family's own rule (HF's configuration_*.py):
//   MLA (DeepSeek-V2/V3/R1, Kimi-K2, MiniCPM3, ...: `qk_rope_head_dim`): HF sets
//     head_dim = qk_rope_head_dim, and only those channels rotate (the rest of q/k is `nope`).
//   `head_dim` when present (Gemma, Qwen3, Mistral, ... set it independently of hidden_size).
//   GPT-J / CodeGen `rotary_dim`: that many channels rotate.
//   else hidden_size / num_attention_heads (HF's generic rule).
// Widths that cannot be told without guessing (ChatGLM's kv_channels, GPT-2-style n_embd/n_head
// without head_dim) are refused with the fields seen.
inline Status read_head_dim(const Json& j, const FlatNames& nm, std::int64_t* head_dim,
                            std::optional<std::int64_t>* rotary_override) {
  const std::string& tp = nm.top;
  if (const Json* qr = find_member(j, "qk_rope_head_dim")) {
    std::int64_t w = 0;
    ROPESCALE_RETURN_IF_ERROR(read_positive_int(*qr, tp + "qk_rope_head_dim", &w));
    if (const Json* hd = find_member(j, "head_dim")) {
      std::int64_t h = 0;
      ROPESCALE_RETURN_IF_ERROR(read_positive_int(*hd, tp + "head_dim", &h));
      if (h != w)
        return make_status(ErrorCode::kUnsupported, tp + "head_dim", h,
                           "differs from qk_rope_head_dim (" + std::to_string(w) +
                               "); MLA rotates qk_rope_head_dim channels: remove head_dim or "
                               "make it equal");
    }
    *head_dim = w;
    return Status();
  }
  if (const Json* hd = find_member(j, "head_dim")) {
    ROPESCALE_RETURN_IF_ERROR(read_positive_int(*hd, tp + "head_dim", head_dim));
  } else {
    const Json* hs = find_member(j, "hidden_size");
    const Json* nh = find_member(j, "num_attention_heads");
    if (find_member(j, "kv_channels") != nullptr)
      return make_status(ErrorCode::kUnsupported, tp + "kv_channels",
                         json_excerpt(*find_member(j, "kv_channels")),
                         "the rotary width of this family (ChatGLM) is not derived from "
                         "kv_channels by ropescale; fields seen: " +
                             head_fields_seen(j) + "; add head_dim and partial_rotary_factor");
    if (hs == nullptr || nh == nullptr) {
      const std::string seen = head_fields_seen(j);
      return missing_field(tp + (hs == nullptr ? "hidden_size" : "num_attention_heads"),
                           "needed when head_dim is absent; fields seen: " + seen +
                               "; add head_dim (the per-head width) to the config");
    }
    std::int64_t hidden = 0, heads = 0;
    ROPESCALE_RETURN_IF_ERROR(read_positive_int(*hs, tp + "hidden_size", &hidden));
    ROPESCALE_RETURN_IF_ERROR(read_positive_int(*nh, tp + "num_attention_heads", &heads));
    if (hidden % heads != 0)
      return make_status(ErrorCode::kInvalidArgument, tp + "hidden_size", hidden,
                         "must be divisible by num_attention_heads (" + std::to_string(heads) +
                             ") when head_dim is absent");
    *head_dim = hidden / heads;
  }
  if (const Json* rd = find_member(j, "rotary_dim")) {  // GPT-J, CodeGen
    std::int64_t r = 0;
    ROPESCALE_RETURN_IF_ERROR(read_positive_int(*rd, tp + "rotary_dim", &r));
    *rotary_override = r;
  }
  return Status();
}

// Where a generator's parameter was read from in config.json, and what to add to its message.
struct ConfigKey {
  std::string param;  // the generator's name ("rope_theta", "factor")
  std::string path;   // the config key ("rope_scaling.factor", "rotary_emb_base")
  std::string note;   // appended to the message ("" for none)
};

// A generator's message names its parameter ("beta_fast = 0.5: ...", "long_factor[3] = 0: ...");
// the importer has the generators validate what it read (scaling.hpp and frequencies.hpp hold the
// rules, once) and renames the parameter to the key it came from ("rope_scaling.beta_fast = 0.5:
// ..."), as its own reads name their keys. `keys` is searched first, then the rope block's keys.
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

// The single-block reader behind every import: j is one (flat) text config.
inline Status parse_flat(const Json& j, const HfImportOptions& options, const FlatNames& nm,
                         RopeConfig* out) {
  const std::string& tp = nm.top;
  RopeConfig c;
  // The scaling block: v5's rope_parameters, else rope_scaling.
  std::string bname = tp + "rope_scaling";
  const Json* block = find_member(j, "rope_parameters");
  if (block != nullptr) {
    bname = tp + "rope_parameters";
  } else {
    block = find_member(j, "rope_scaling");
  }
  if (!nm.block.empty()) bname = nm.block;
  static const Json kEmpty = Json::object();
  if (block != nullptr && !block->is_object())
    return json_type_error(bname, *block, "must be an object or null");
  if (block != nullptr && find_member(*block, "rope_type") == nullptr &&
      find_member(*block, "type") == nullptr) {
    for (const auto& item : block->items())
      if (item.value().is_object())
        return make_status(ErrorCode::kUnsupported, bname + "." + item.key(), "{...}",
                           "a per-layer-type block needs layer_types listing every layer's "
                           "type, with each key of " +
                               bname + " among them");
  }
  const bool has_block = block != nullptr;
  if (!has_block) block = &kEmpty;
  if (has_block &&
      (find_member(*block, "rope_type") != nullptr || find_member(*block, "type") != nullptr)) {
    ROPESCALE_RETURN_IF_ERROR(parse_rope_type(*block, bname, &c.rope_type));
  } else if (has_block && !block->empty() && find_member(*block, "mrope_section") == nullptr &&
             find_member(*block, "rope_theta") == nullptr) {
    ROPESCALE_RETURN_IF_ERROR(parse_rope_type(*block, bname, &c.rope_type));
  } else {
    c.rope_type = RopeType::kDefault;  // HF: rope_type defaults to "default"
  }

  // rope_theta: block (v5), top level, GPT-NeoX's rotary_emb_base, the caller's default.
  const Json* theta = find_member(*block, "rope_theta");
  std::string theta_path = bname + ".rope_theta";
  if (theta == nullptr) {
    theta = find_member(j, "rope_theta");
    theta_path = tp + "rope_theta";
  }
  if (theta == nullptr) {
    theta = find_member(j, "rotary_emb_base");
    theta_path = tp + "rotary_emb_base";
  }
  if (theta != nullptr && !nm.theta_key.empty()) theta_path = nm.theta_key;
  if (theta != nullptr) {
    ROPESCALE_RETURN_IF_ERROR(read_double(*theta, theta_path, &c.spec.rope_theta));
  } else if (options.default_rope_theta) {
    c.spec.rope_theta = *options.default_rope_theta;
    theta_path = "HfImportOptions::default_rope_theta";  // named if the generators refuse it
  } else {
    return missing_field(tp + "rope_theta", "the RoPE base");
  }

  // head_dim and rotary_dim
  std::int64_t head_dim = 0;
  std::optional<std::int64_t> rotary_override;
  ROPESCALE_RETURN_IF_ERROR(read_head_dim(j, nm, &head_dim, &rotary_override));
  if (head_dim > kMaxConfigHeadDim)
    return make_status(ErrorCode::kInvalidArgument, tp + "head_dim", head_dim,
                       "must be <= " + std::to_string(kMaxConfigHeadDim));
  double partial = 1.0;
  bool has_partial = false;
  {
    // HF v5 standardize_rope_params: a top-level partial_rotary_factor overwrites the block's
    // (and older HF read the top level only). GPT-NeoX spells it rotary_pct.
    const Json* pr = find_member(j, "partial_rotary_factor");
    std::string path = tp + "partial_rotary_factor";
    if (pr == nullptr) {
      pr = find_member(*block, "partial_rotary_factor");
      path = bname + ".partial_rotary_factor";
    }
    if (pr == nullptr) {
      pr = find_member(j, "rotary_pct");
      path = tp + "rotary_pct";
    }
    if (pr != nullptr) {
      ROPESCALE_RETURN_IF_ERROR(read_double(*pr, path, &partial));
      if (!(partial > 0.0 && partial <= 1.0))
        return make_status(ErrorCode::kInvalidArgument, path, partial, "must be in (0, 1]");
      has_partial = true;
    }
  }
  c.spec.head_dim = head_dim;
  if (c.rope_type == RopeType::kProportional) {
    // HF: rope_angles = int(partial_rotary_factor * head_dim // 2) pairs rotate, with exponents
    // over head_dim; the other head_dim/2 - rope_angles pairs have frequency 0.
    c.spec.rotary_dim =
        2 * static_cast<std::int64_t>(std::floor(partial * static_cast<double>(head_dim) / 2.0));
    c.spec.freq_dim = head_dim % 2 == 0 ? head_dim : 0;
    if (c.spec.rotary_dim <= 0 || head_dim % 2 != 0)
      return make_status(ErrorCode::kInvalidArgument, "rotary_dim", c.spec.rotary_dim,
                         "proportional: 2 * int(partial_rotary_factor * head_dim // 2) must be > 0 "
                         "and head_dim even (head_dim " +
                             std::to_string(head_dim) + ", partial_rotary_factor " +
                             format_value(partial) + ")");
  } else if (rotary_override && !has_partial) {
    c.spec.rotary_dim = *rotary_override;
    if (c.spec.rotary_dim % 2 != 0 || c.spec.rotary_dim > head_dim)
      return make_status(ErrorCode::kInvalidArgument, tp + "rotary_dim", c.spec.rotary_dim,
                         "must be even and <= head_dim (" + std::to_string(head_dim) + ")");
  } else {
    // HF: dim = int(head_dim * partial_rotary_factor).
    c.spec.rotary_dim = static_cast<std::int64_t>(static_cast<double>(head_dim) * partial);
    if (c.spec.rotary_dim <= 0 || c.spec.rotary_dim % 2 != 0)
      return make_status(ErrorCode::kInvalidArgument, "rotary_dim", c.spec.rotary_dim,
                         "int(head_dim * partial_rotary_factor) must be even and > 0 (head_dim " +
                             std::to_string(head_dim) + ", partial_rotary_factor " +
                             format_value(partial) + ")");
  }

  // M-RoPE sections (Qwen2-VL: rope_scaling {"type": "mrope", "mrope_section": [16, 24, 24]};
  // Qwen3-VL adds "mrope_interleaved": true, and its code always interleaves; ERNIE 4.5 VL's
  // class alternates h/w; HunYuan-VL writes 4 sections as `xdrope_section`, which HF's
  // HunYuanVLTextConfig renames to mrope_section, refusing two different lists).
  const bool ernie_vl = nm.family.rfind("ernie4_5_vl", 0) == 0;
  const Json* ms = find_member(*block, "mrope_section");
  std::string ms_path = bname + ".mrope_section";
  if (const Json* xs = find_member(*block, "xdrope_section")) {
    if (ms == nullptr) {
      ms = xs;
      ms_path = bname + ".xdrope_section";
    } else if (*ms != *xs) {
      return make_status(ErrorCode::kInvalidArgument, bname + ".xdrope_section", json_excerpt(*xs),
                         "differs from mrope_section (" + json_excerpt(*ms) +
                             "); HF reads xdrope_section as another name for it");
    }
  }
  if (ms != nullptr) {
    const std::string& path = ms_path;
    if (!ms->is_array() || ms->empty() || ms->size() > static_cast<std::size_t>(kMaxMropeAxes))
      return json_type_error(path, *ms,
                             "must be an array of 1 to 4 integers (pairs per position axis)");
    std::int64_t sum = 0;
    for (std::size_t a = 0; a < ms->size(); ++a) {
      std::int64_t v = 0;
      ROPESCALE_RETURN_IF_ERROR(read_int((*ms)[a], path + "[" + std::to_string(a) + "]", &v));
      if (v < 0 || v > c.spec.pairs())
        return make_status(
            ErrorCode::kInvalidArgument, path + "[" + std::to_string(a) + "]", v,
            "must be in [0, rotary_dim / 2 = " + std::to_string(c.spec.pairs()) + "]");
      sum += v;
      c.mrope_section.push_back(v);
    }
    if (sum != c.spec.pairs())
      return make_status(ErrorCode::kInvalidArgument, path, json_excerpt(*ms),
                         "must sum to rotary_dim / 2 = " + std::to_string(c.spec.pairs()));
    c.mrope_interleaved = nm.family.rfind("qwen3_vl", 0) == 0;
    if (const Json* mi = find_member(*block, "mrope_interleaved")) {
      if (!mi->is_boolean())
        return json_type_error(bname + ".mrope_interleaved", *mi, "must be true or false");
      c.mrope_interleaved = mi->get<bool>();
    }
    if (ernie_vl && c.mrope_interleaved)
      return make_status(ErrorCode::kUnsupported, bname + ".mrope_interleaved", true,
                         "ERNIE 4.5 VL's layout is its own 3D one, not Qwen3-VL's interleaving");
    c.mrope_layout = c.mrope_interleaved ? MropeLayout::kInterleaved
                     : ernie_vl          ? MropeLayout::kErnie3d
                                         : MropeLayout::kSectioned;
    if (c.mrope_layout != MropeLayout::kSectioned && c.mrope_section.size() != 3)
      return make_status(ErrorCode::kInvalidArgument, path + ".size()",
                         static_cast<std::int64_t>(c.mrope_section.size()),
                         std::string("must be 3 (temporal, height, width) for the ") +
                             to_string(c.mrope_layout) + " layout");
    if (c.mrope_layout == MropeLayout::kErnie3d && c.mrope_section[0] != c.mrope_section[1])
      return make_status(ErrorCode::kInvalidArgument, path + "[1]", c.mrope_section[1],
                         "must equal mrope_section[0] (" + std::to_string(c.mrope_section[0]) +
                             "): ERNIE's 3D layout alternates height and width pair by pair");
  } else if (find_member(*block, "mrope_interleaved") != nullptr) {
    return missing_field(bname + ".mrope_section", "mrope_interleaved needs the sections");
  }

  // Pair layout of the checkpoint (DeepSeek: q_pe/k_pe are interleaved; HF's
  // apply_rotary_pos_emb_interleave reorders them before rotate_half).
  // HF's MLA config classes (DeepSeek-V2/V3/V3.2, Kimi-K2, LongCat-Flash, ...) default
  // rope_interleave to true.
  c.interleaved_pairs =
      is_mla_family_key(j) || nm.family == "deepseek_v2" || nm.family == "deepseek_v3" ||
      nm.family == "deepseek_v32" || nm.family == "kimi_k2" ||
      // GPT-J / CodeGen rotate_every_two; GLM / GLM-4 rotate_half_llm.
      nm.family == "gptj" || nm.family == "codegen" || nm.family == "glm" || nm.family == "glm4" ||
      // ERNIE 4.5 (text and VL): rotate_half_text over (2i, 2i + 1) (modeling_ernie4_5*.py).
      nm.family.rfind("ernie4_5", 0) == 0 ||
      // Llama 4: view_as_complex over (2i, 2i + 1) (modeling_llama4.py apply_rotary_emb).
      nm.family == "llama4_text" || nm.family == "llama4";
  if (const Json* ri = find_member(j, "rope_interleave")) {
    if (!ri->is_boolean())
      return json_type_error(tp + "rope_interleave", *ri, "must be true or false");
    c.interleaved_pairs = ri->get<bool>();
  }

  // Windows
  const Json* mp = find_member(j, "max_position_embeddings");
  if (mp == nullptr) return missing_field(tp + "max_position_embeddings", "the context window");
  ROPESCALE_RETURN_IF_ERROR(
      read_positive_int(*mp, tp + "max_position_embeddings", &c.max_position_embeddings));
  std::optional<std::int64_t> top_original, block_original;
  if (const Json* v = find_member(j, "original_max_position_embeddings")) {
    std::int64_t x = 0;
    ROPESCALE_RETURN_IF_ERROR(read_positive_int(*v, tp + "original_max_position_embeddings", &x));
    if (!nm.nested) top_original = x;  // HF v5: a per-layer-type block has its own window
  }
  if (const Json* v = find_member(*block, "original_max_position_embeddings")) {
    std::int64_t x = 0;
    ROPESCALE_RETURN_IF_ERROR(
        read_positive_int(*v, bname + ".original_max_position_embeddings", &x));
    block_original = x;
  }
  const std::int64_t max_pos = c.max_position_embeddings;
  c.spec.original_max_position = top_original.value_or(max_pos);

  bool factor_derived = false;  // yarn's s from the windows, not from the block's factor
  bool alpha_key = false;       // the ntk generator's "factor" is HunYuan's alpha
  switch (c.rope_type) {
    case RopeType::kDefault:
      break;
    case RopeType::kLinear:
      ROPESCALE_RETURN_IF_ERROR(detail::read_scale(*block, bname, &c.factor));
      break;
    case RopeType::kProportional:
      c.factor = 1.0;  // HF: rope_parameters.get("factor", 1.0)
      if (find_member(*block, "factor") != nullptr)
        ROPESCALE_RETURN_IF_ERROR(read_scale(*block, bname, &c.factor));
      break;
    case RopeType::kDynamic: {
      // HunYuan (HunYuanDenseV1RotaryEmbedding; also its MoE and VL models): a truthy
      // rope_scaling.alpha replaces dynamic NTK by a fixed base rope_theta * alpha^(d/(d-2)) over
      // the whole head_dim, at every length. Other families' dynamic NTK ignores alpha.
      const Json* al = find_member(*block, "alpha");
      const bool hunyuan = nm.family.rfind("hunyuan", 0) == 0;
      if (hunyuan && al != nullptr && !(al->is_number() && al->get<double>() == 0.0)) {
        ROPESCALE_RETURN_IF_ERROR(read_double(*al, bname + ".alpha", &c.ntk_alpha));
        if (!(c.ntk_alpha >= 1.0))
          return make_status(ErrorCode::kInvalidArgument, bname + ".alpha", c.ntk_alpha,
                             "must be >= 1 (base = rope_theta * alpha^(d/(d-2)))");
        const double d = static_cast<double>(c.spec.head_dim);
        const double log_base =
            std::log(c.spec.rope_theta) + std::log(c.ntk_alpha) * d / std::max(d - 2.0, 1.0);
        if (!(log_base <= std::log(kMaxRopeTheta)) || c.spec.head_dim <= 2)
          return make_status(ErrorCode::kInvalidArgument, bname + ".alpha", c.ntk_alpha,
                             "rope_theta * alpha^(d/(d-2)) must be <= kMaxRopeTheta (1e12) and "
                             "head_dim > 2 (head_dim " +
                                 std::to_string(c.spec.head_dim) + ")");
        if (c.spec.rotary_dim != c.spec.head_dim)
          return make_status(ErrorCode::kUnsupported, bname + ".alpha", c.ntk_alpha,
                             "HunYuan's alpha rotates the whole head_dim (" +
                                 std::to_string(c.spec.head_dim) +
                                 "); a partial rotary_dim is not defined for it");
        if (find_member(*block, "factor") != nullptr)
          ROPESCALE_RETURN_IF_ERROR(read_scale(*block, bname, &c.factor));
        alpha_key = true;
      } else {
        ROPESCALE_RETURN_IF_ERROR(read_scale(*block, bname, &c.factor));
      }
      c.spec.original_max_position = max_pos;  // HF's dynamic NTK window
      break;
    }
    case RopeType::kYarn: {
      YarnParams& y = c.yarn;
      const bool legacy = options.yarn == YarnSemantics::kLegacy;
      // Which original_max_position_embeddings wins: transformers v5 (kCurrent) lets the top
      // level overwrite the block's (standardize_rope_params, "Phi3 ... exception"); the v5-dev
      // derived-factor code read the block first.
      std::int64_t window = max_pos;
      if (options.yarn == YarnSemantics::kCurrent && top_original)
        window = *top_original;
      else if (!legacy && block_original)
        window = *block_original;
      else if (!legacy && top_original)
        window = *top_original;
      const bool has_factor = find_member(*block, "factor") != nullptr;
      if (options.yarn == YarnSemantics::kDerivedFactor && block_original) {
        y.factor = static_cast<double>(max_pos) / static_cast<double>(*block_original);
        factor_derived = true;
      } else if (has_factor || legacy) {
        ROPESCALE_RETURN_IF_ERROR(detail::read_scale(*block, bname, &y.factor));
      } else if (window != max_pos) {
        y.factor = static_cast<double>(max_pos) / static_cast<double>(window);
        factor_derived = true;
      } else {
        return detail::missing_field(bname + ".factor",
                                     "or an original_max_position_embeddings to derive it from");
      }
      // HF: `get("beta_fast") or 32`: missing, null or 0 means the default.
      for (const char* key : {"beta_fast", "beta_slow"}) {
        double b = 0;
        if (const Json* v = find_member(*block, key))
          ROPESCALE_RETURN_IF_ERROR(detail::read_double(*v, bname + "." + key, &b));
        if (b == 0.0) b = std::string(key) == "beta_fast" ? 32.0 : 1.0;
        (std::string(key) == "beta_fast" ? y.beta_fast : y.beta_slow) = b;
      }
      if (!legacy) {
        for (const char* key : {"mscale", "mscale_all_dim"}) {
          double m = 0;
          if (const Json* v = find_member(*block, key))
            ROPESCALE_RETURN_IF_ERROR(detail::read_double(*v, bname + "." + key, &m));
          (std::string(key) == "mscale" ? y.mscale : y.mscale_all_dim) = m;
        }
        if (const Json* v = find_member(*block, "truncate")) {
          if (!v->is_boolean())
            return detail::json_type_error(bname + ".truncate", *v, "must be true or false");
          y.truncate = v->get<bool>();
        }
      }
      ROPESCALE_RETURN_IF_ERROR(
          detail::read_optional_positive(*block, "attention_factor", bname, &y.attention_factor));
      y.original_max_position = window;
      c.spec.original_max_position = window;
      break;
    }
    case RopeType::kLlama3: {
      Llama3Params& l = c.llama3;
      ROPESCALE_RETURN_IF_ERROR(detail::read_scale(*block, bname, &l.factor));
      const Json* lo = find_member(*block, "low_freq_factor");
      const Json* hi = find_member(*block, "high_freq_factor");
      if (lo == nullptr) return detail::missing_field(bname + ".low_freq_factor", "llama3");
      if (hi == nullptr) return detail::missing_field(bname + ".high_freq_factor", "llama3");
      ROPESCALE_RETURN_IF_ERROR(
          detail::read_double(*lo, bname + ".low_freq_factor", &l.low_freq_factor));
      ROPESCALE_RETURN_IF_ERROR(
          detail::read_double(*hi, bname + ".high_freq_factor", &l.high_freq_factor));
      // transformers v5: the top level wins over the block (standardize_rope_params).
      if (top_original) {
        l.original_max_position = *top_original;
      } else if (block_original) {
        l.original_max_position = *block_original;
      } else {
        return detail::missing_field(bname + ".original_max_position_embeddings",
                                     "llama3's pre-training window");
      }
      c.spec.original_max_position = l.original_max_position;
      break;
    }
    case RopeType::kLongRope: {
      LongRopeParams& p = c.longrope;
      const Json* sf = find_member(*block, "short_factor");
      const Json* lf = find_member(*block, "long_factor");
      if (sf == nullptr) return detail::missing_field(bname + ".short_factor", "longrope");
      if (lf == nullptr) return detail::missing_field(bname + ".long_factor", "longrope");
      ROPESCALE_RETURN_IF_ERROR(
          detail::read_factor_list(*sf, bname + ".short_factor", &p.short_factor));
      ROPESCALE_RETURN_IF_ERROR(
          detail::read_factor_list(*lf, bname + ".long_factor", &p.long_factor));
      ROPESCALE_RETURN_IF_ERROR(
          detail::read_optional_positive(*block, "attention_factor", bname, &p.attention_factor));
      ROPESCALE_RETURN_IF_ERROR(
          detail::read_optional_positive(*block, "short_mscale", bname, &p.short_mscale));
      ROPESCALE_RETURN_IF_ERROR(
          detail::read_optional_positive(*block, "long_mscale", bname, &p.long_mscale));
      // HF's Phi-3.5-MoE rotary module uses short_mscale / long_mscale in place of the attention
      // scaling whenever they are set (attention_factor included); Phi-3's ignores them. Other
      // model types keep ropescale's order (attention_factor, then the set's mscale).
      if (nm.family == "phimoe" && p.attention_factor && (p.short_mscale || p.long_mscale)) {
        if (!p.short_mscale) p.short_mscale = p.attention_factor;
        if (!p.long_mscale) p.long_mscale = p.attention_factor;
        p.attention_factor.reset();
      }
      if (nm.family == "phi3") {
        p.short_mscale.reset();
        p.long_mscale.reset();
      }
      // HF (Phi-3): with an original window, s = max_position_embeddings / original and the
      // block's factor is ignored; without one, L = max_position_embeddings and s = factor.
      const std::optional<std::int64_t> original = top_original ? top_original : block_original;
      if (original) {
        c.spec.original_max_position = *original;
        p.factor = static_cast<double>(max_pos) / static_cast<double>(*original);
      } else {
        c.spec.original_max_position = max_pos;
        if (find_member(*block, "factor") != nullptr || !p.attention_factor) {
          const Json* f = find_member(*block, "factor");
          if (f == nullptr)
            return detail::missing_field(
                bname + ".factor",
                "longrope needs it when original_max_position_embeddings is absent");
          ROPESCALE_RETURN_IF_ERROR(detail::read_double(*f, bname + ".factor", &p.factor));
        }
      }
      break;
    }
  }

  // The generators validate what was read: both tables HF could use must build. Their messages
  // name the parameter; the config key it came from is named instead.
  std::vector<ConfigKey> keys = {{"rope_theta", theta_path, ""}};
  if (alpha_key) keys.push_back({"factor", bname + ".alpha", ""});
  if (factor_derived)
    keys.push_back({"factor", bname + ".factor",
                    " (derived as max_position_embeddings / "
                    "original_max_position_embeddings)"});
  FactorTable probe;
  ROPESCALE_RETURN_IF_ERROR(name_config_key(c.try_table_for(0, &probe), bname, keys));
  ROPESCALE_RETURN_IF_ERROR(
      name_config_key(c.try_table_for(c.spec.original_max_position + 1, &probe), bname, keys));
  *out = std::move(c);
  return Status();
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

// Fills the fields `w` leaves out with its class's defaults and lists each one used in *used
// ("partial_rotary_factor = 0.5 (GlmConfig default)"). A field the rope block carries (v5 moves
// rope_theta and partial_rotary_factor there) counts as present.
inline void apply_class_defaults(const std::string& family, Json* w,
                                 std::vector<std::string>* used) {
  const Json* block = find_member(*w, "rope_parameters");
  if (block == nullptr) block = find_member(*w, "rope_scaling");
  std::vector<std::pair<std::string, double>> add;
  for (const ClassDefault& d : class_default_table()) {
    if (!family_in(family, d.families)) continue;
    if (find_member(*w, d.key) != nullptr) continue;
    if (block != nullptr && find_member(*block, d.key) != nullptr) continue;
    // rope_theta and GPT-NeoX's rotary_emb_base name one value: either one given is the base.
    const std::string key = d.key;
    if ((key == "rotary_emb_base" || key == "rope_theta") &&
        (find_member(*w, "rope_theta") != nullptr ||
         find_member(*w, "rotary_emb_base") != nullptr ||
         (block != nullptr && find_member(*block, "rope_theta") != nullptr)))
      continue;
    add.emplace_back(d.key, d.value);
    if (used != nullptr)
      used->push_back(std::string(d.key) + " = " + format_value(d.value) + " (" + d.source +
                      " default)");
  }
  for (const auto& kv : add) {
    const double v = kv.second;
    if (v == std::floor(v) && kv.first != "rope_theta" && kv.first != "rotary_emb_base" &&
        kv.first != "rope_local_base_freq")
      (*w)[kv.first] = static_cast<std::int64_t>(v);
    else
      (*w)[kv.first] = v;
  }
}

// Gemma 3 and Gemma 3n: sliding layers at rope_local_base_freq (Gemma3TextConfig,
// Gemma3nTextConfig).
inline bool is_gemma3(const std::string& family) {
  return family == "gemma3_text" || family == "gemma3" || family == "gemma3n_text" ||
         family == "gemma3n";
}

}  // namespace detail

namespace detail {

// Every source of the layer count (layer_types, no_rope_layers, num_hidden_layers) is held to
// kMaxConfigLayers before anything is allocated per layer.
inline Status check_layer_count(const std::string& path, std::int64_t n) {
  if (n > kMaxConfigLayers)
    return make_status(ErrorCode::kInvalidArgument, path, n,
                       "must be <= kMaxConfigLayers = " + std::to_string(kMaxConfigLayers));
  return Status();
}

inline Status read_layer_types(const Json& w, const std::string& tp,
                               std::vector<std::string>* out) {
  const Json* lt = find_member(w, "layer_types");
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

// The top-level keys parse_flat reads. A flat config per layer type is built from these alone
// (plus that type's rope block), so its cost does not grow with the rest of the config.
inline const std::vector<const char*>& flat_keys() {
  static const std::vector<const char*> kKeys = {"head_dim",
                                                 "hidden_size",
                                                 "num_attention_heads",
                                                 "kv_channels",
                                                 "n_embd",
                                                 "n_head",
                                                 "d_model",
                                                 "n_heads",
                                                 "qk_rope_head_dim",
                                                 "rotary_dim",
                                                 "rope_theta",
                                                 "rotary_emb_base",
                                                 "rope_interleave",
                                                 "partial_rotary_factor",
                                                 "rotary_pct",
                                                 "max_position_embeddings",
                                                 "original_max_position_embeddings"};
  return kKeys;
}

// A copy whose containers nested deeper than kMaxCopyDepth are cut to empty ones: nlohmann's copy
// recurses per level, so copying a hostile 100k-deep value would overflow the stack. No config
// nests RoPE fields that deep; a cut value still fails its field's rule with an excerpt.
constexpr int kMaxCopyDepth = 64;
inline Json bounded_copy(const Json& v, int depth = 0) {
  if (!v.is_structured()) return v;
  if (depth >= kMaxCopyDepth) return v.is_array() ? Json::array() : Json::object();
  Json out = v.is_array() ? Json::array() : Json::object();
  if (v.is_array()) {
    for (const Json& e : v) out.push_back(bounded_copy(e, depth + 1));
  } else {
    for (auto it = v.begin(); it != v.end(); ++it) out[it.key()] = bounded_copy(*it, depth + 1);
  }
  return out;
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

inline Status read_nope_layers(const Json& w, const std::string& tp, const std::string& family,
                               std::int64_t num_layers, const std::vector<std::string>& types,
                               std::vector<char>* nope, std::string* source) {
  const bool nope_family = family == "llama4_text" || family == "llama4" || family == "smollm3";
  const std::int64_t listed = types.empty() ? num_layers : static_cast<std::int64_t>(types.size());
  const Json* nr = find_member(w, "no_rope_layers");
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
    if (const Json* iv = find_member(w, "no_rope_layer_interval"))
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
inline Status read_llama4_attention(const Json& w, const std::string& tp, const std::string& family,
                                    ModelRope* m) {
  if (family != "llama4_text" && family != "llama4") return Status();
  m->attention_chunk_size = 8192;
  if (const Json* v = find_member(w, "attention_chunk_size"))
    ROPESCALE_RETURN_IF_ERROR(
        read_positive_int(*v, tp + "attention_chunk_size", &m->attention_chunk_size));
  AttnTemperatureTuning& t = m->scales.temperature_tuning;
  t.enabled = true;
  if (const Json* v = find_member(w, "attn_temperature_tuning")) {
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
    const Json* v = find_member(w, k);
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
inline Status read_scale_terms(const Json& w, const std::string& tp, ModelRope* m) {
  if (m->kinds.empty()) return Status();
  const RopeConfig& c = m->kinds[0].config;
  if (is_mla_family_key(w) && c.rope_type == RopeType::kYarn && c.yarn.mscale_all_dim != 0.0) {
    const double ms = yarn_get_mscale(c.yarn.factor, c.yarn.mscale_all_dim);
    m->scales.softmax_scale = ms * ms;
  }
  std::string bname = tp + "rope_parameters";
  const Json* block = find_member(w, "rope_parameters");
  if (block == nullptr) {
    bname = tp + "rope_scaling";
    block = find_member(w, "rope_scaling");
  }
  const Json* beta = block != nullptr ? find_member(*block, "llama_4_scaling_beta") : nullptr;
  if (beta == nullptr) return Status();
  double b = 0;
  ROPESCALE_RETURN_IF_ERROR(read_double(*beta, bname + ".llama_4_scaling_beta", &b));
  if (!(b >= 0.0 && b <= 1e3))
    return make_status(ErrorCode::kInvalidArgument, bname + ".llama_4_scaling_beta", b,
                       "must be in [0, 1000]");
  if (b == 0.0) return Status();
  const Json* orig = find_member(*block, "original_max_position_embeddings");
  std::string opath = bname + ".original_max_position_embeddings";
  if (orig == nullptr) {
    orig = find_member(w, "original_max_position_embeddings");
    opath = tp + "original_max_position_embeddings";
  }
  if (orig == nullptr)
    return missing_field(bname + ".original_max_position_embeddings",
                         "llama_4_scaling_beta scales queries per original window");
  ROPESCALE_RETURN_IF_ERROR(read_positive_int(*orig, opath, &m->scales.llama4_scaling_original));
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

inline Status parse_model(const Json& j, const HfImportOptions& options, ModelRope* out) {
  if (out == nullptr)
    return make_status(ErrorCode::kInvalidArgument, "out", nullptr, "must not be null");
  if (!j.is_object()) return json_type_error("config", j, "must be a JSON object");
  ModelRope m;
  // Multimodal configs (Gemma 3, Qwen2.5-VL / Qwen3-VL in v5 form) nest the text model.
  const Json* cfg = &j;
  std::string tp;
  if (const Json* tc = find_member(j, "text_config")) {
    if (!tc->is_object()) return json_type_error("text_config", *tc, "must be an object or null");
    for (const char* k : {"rope_theta", "rope_scaling", "rope_parameters", "head_dim",
                          "hidden_size", "max_position_embeddings", "model_type"})
      if (find_member(*tc, k) != nullptr) {
        cfg = tc;
        tp = "text_config.";
        m.text_path = "text_config";
        break;
      }
  }
  std::string family;
  for (const Json* src : {cfg, &j})
    if (family.empty())
      if (const Json* mt = find_member(*src, "model_type"))
        if (mt->is_string()) family = mt->get<std::string>();
  Json w = bounded_copy(*cfg);
  if (w.contains("_note")) w.erase("_note");
  if (cfg != &j) {
    // RoPE fields the top level carries and text_config lacks are the text model's too (older
    // Qwen2-VL files keep rope_scaling at the top); two different values are refused.
    for (const char* k : {"rope_theta", "rope_scaling", "rope_parameters", "partial_rotary_factor",
                          "original_max_position_embeddings", "rope_local_base_freq"}) {
      const Json* outer = find_member(j, k);
      if (outer == nullptr) continue;
      const Json* inner = find_member(w, k);
      if (inner == nullptr) {
        w[k] = bounded_copy(*outer);
      } else if (*inner != bounded_copy(*outer)) {
        return make_status(ErrorCode::kUnsupported, std::string(k), json_excerpt(*outer),
                           "differs from text_config." + std::string(k) + " (" +
                               json_excerpt(*inner) + "); remove one of them");
      }
    }
  }
  apply_class_defaults(family, &w, &m.class_defaults);

  // Cohere2 derives its NoPE layers (the full-attention ones) from sliding_window_pattern and
  // rotates in its own layout: refused rather than guessed.
  if (family == "cohere2")
    return make_status(ErrorCode::kUnsupported, tp + "model_type", family,
                       "this family's layers without RoPE (NoPE: its full-attention layers) are "
                       "not read by ropescale; apply the table only to its sliding layers "
                       "yourself");

  ROPESCALE_RETURN_IF_ERROR(read_layer_types(w, tp, &m.layer_types));
  std::int64_t num_layers = 0;
  if (const Json* nl = find_member(w, "num_hidden_layers")) {
    ROPESCALE_RETURN_IF_ERROR(read_positive_int(*nl, tp + "num_hidden_layers", &num_layers));
    ROPESCALE_RETURN_IF_ERROR(check_layer_count(tp + "num_hidden_layers", num_layers));
  }
  if (!m.layer_types.empty() && num_layers > 0 &&
      static_cast<std::int64_t>(m.layer_types.size()) != num_layers)
    return make_status(ErrorCode::kInvalidArgument, tp + "layer_types.size()",
                       static_cast<std::int64_t>(m.layer_types.size()),
                       "must equal num_hidden_layers (" + std::to_string(num_layers) + ")");
  if (m.layer_types.empty() && is_gemma3(family)) {
    // Gemma3TextConfig: layer i is sliding unless (i + 1) % sliding_window_pattern == 0 (6);
    // Gemma3nTextConfig's default layer_types repeat 4 sliding + 1 full.
    std::int64_t pattern = family.rfind("gemma3n", 0) == 0 ? 5 : 6;
    if (const Json* sp = find_member(w, "sliding_window_pattern"))
      ROPESCALE_RETURN_IF_ERROR(read_positive_int(*sp, tp + "sliding_window_pattern", &pattern));
    for (std::int64_t i = 0; i < num_layers; ++i)
      m.layer_types.push_back((i + 1) % pattern != 0 ? "sliding_attention" : "full_attention");
  }

  if (m.layer_types.empty() && family == "qwen3_next") {
    // Qwen3NextConfig: layer i is linear attention (Gated DeltaNet, no RoPE) unless
    // (i + 1) % full_attention_interval == 0.
    std::int64_t interval = 4;
    if (const Json* fi = find_member(w, "full_attention_interval"))
      ROPESCALE_RETURN_IF_ERROR(read_positive_int(*fi, tp + "full_attention_interval", &interval));
    for (std::int64_t i = 0; i < num_layers; ++i)
      m.layer_types.push_back((i + 1) % interval != 0 ? "linear_attention" : "full_attention");
  }
  std::vector<char> nope;  // per layer: 1 = no RoPE; empty: every layer has RoPE
  ROPESCALE_RETURN_IF_ERROR(
      read_nope_layers(w, tp, family, num_layers, m.layer_types, &nope, &m.nope_source));
  ROPESCALE_RETURN_IF_ERROR(read_llama4_attention(w, tp, family, &m));
  if (m.layer_types.empty() && (family == "llama4_text" || family == "llama4")) {
    // Llama4TextConfig (v5): RoPE layers use chunked attention, NoPE layers full attention.
    for (const char n : nope)
      m.layer_types.push_back(n != 0 ? "full_attention" : "chunked_attention");
  }
  auto is_nope = [&](std::size_t l) { return l < nope.size() && nope[l] != 0; };

  std::string key = "rope_parameters";
  const Json* block = find_member(w, "rope_parameters");
  if (block == nullptr) {
    key = "rope_scaling";
    block = find_member(w, "rope_scaling");
  }
  // The distinct layer types in order of first appearance, and each layer's index among them
  // (a hash map: linear in the number of layers).
  std::vector<std::string> distinct;
  std::vector<std::int64_t> type_of_layer;
  {
    std::unordered_map<std::string, std::int64_t> index;
    type_of_layer.reserve(m.layer_types.size());
    for (std::size_t l = 0; l < m.layer_types.size(); ++l) {
      if (is_nope(l)) {
        type_of_layer.push_back(ModelRope::kNoRope);
        continue;
      }
      const std::string& t = m.layer_types[l];
      auto it = index.emplace(t, static_cast<std::int64_t>(distinct.size())).first;
      if (it->second == static_cast<std::int64_t>(distinct.size())) distinct.push_back(t);
      type_of_layer.push_back(it->second);
    }
  }
  // v5 per-layer form: every key of the block is a layer type (HF standardize_rope_params).
  bool nested = false;
  if (block != nullptr && block->is_object() && !block->empty() && !m.layer_types.empty() &&
      find_member(*block, "rope_type") == nullptr && find_member(*block, "type") == nullptr) {
    const std::unordered_set<std::string> types(m.layer_types.begin(), m.layer_types.end());
    nested = true;
    for (const auto& item : block->items())
      if (types.count(item.key()) == 0) nested = false;
  }

  if (!nope.empty() && std::find(nope.begin(), nope.end(), 0) == nope.end())
    return make_status(ErrorCode::kUnsupported, tp + m.nope_source, "every layer",
                       "no layer has RoPE; there is nothing for ropescale to rotate");

  // One flat config per distinct layer type. Each is built from the few keys parse_flat reads
  // (flat_keys) and that type's own block, never from a copy of the whole config, so the work is
  // linear in the config's size however many types it lists.
  Json base = Json::object();
  for (const char* k : flat_keys())
    if (const Json* v = find_member(w, k)) base[k] = *v;
  auto with_block = [&](const Json& f0) {
    Json f = f0;
    if (const Json* b = find_member(w, "rope_parameters")) f["rope_parameters"] = *b;
    if (const Json* b = find_member(w, "rope_scaling")) f["rope_scaling"] = *b;
    return f;
  };
  std::vector<std::pair<std::string, Json>> flats;
  std::vector<FlatNames> names;
  std::vector<std::int64_t> flat_of_type(distinct.size(), 0);
  if (nested) {
    for (std::size_t d = 0; d < distinct.size(); ++d) {
      const std::string& t = distinct[d];
      const Json* sub = find_member(*block, t.c_str());
      if (sub == nullptr)
        return missing_field(tp + key + "." + t, "layer_types lists " + format_value(t));
      Json f = base;
      f["rope_parameters"] = *sub;
      // Gemma3TextConfig: a sliding block without rope_theta takes rope_local_base_freq (1e4).
      std::string theta_key;
      if (is_gemma3(family) && t == "sliding_attention" && sub->is_object() &&
          find_member(*sub, "rope_theta") == nullptr) {
        const Json* lb = find_member(w, "rope_local_base_freq");
        f["rope_parameters"]["rope_theta"] = lb != nullptr ? *lb : Json(10000.0);
        if (lb != nullptr) theta_key = tp + "rope_local_base_freq";
      }
      // Gemma 4: full-attention layers have their own, wider heads.
      if (t == "full_attention")
        if (const Json* g = find_member(w, "global_head_dim")) f["head_dim"] = *g;
      flat_of_type[d] = static_cast<std::int64_t>(flats.size());
      flats.emplace_back(t, std::move(f));
      names.push_back({tp, tp + key + "." + t, true, family, theta_key});
    }
  } else if ((is_gemma3(family) || (family == "olmo3" && options.olmo3 == Olmo3Rope::kTrained)) &&
             !distinct.empty()) {
    // Gemma 3 / 3n before v5: sliding layers use default RoPE at rope_local_base_freq (1e4 by
    // default), full layers (every other type) rope_theta and the config's scaling
    // (Gemma3TextConfig). OLMo 3 as trained: sliding layers default RoPE at rope_theta, full
    // layers the scaling (see Olmo3Rope). One flat config each, whatever the number of types.
    const bool olmo3 = family == "olmo3";
    std::int64_t sliding = -1, other = -1;
    for (std::size_t d = 0; d < distinct.size(); ++d) {
      const bool is_sliding = distinct[d] == "sliding_attention";
      std::int64_t& slot = is_sliding ? sliding : other;
      if (slot < 0) {
        slot = static_cast<std::int64_t>(flats.size());
        if (is_sliding && olmo3) {
          Json f = base;  // rope_theta as given; no scaling block
          if (const Json* b = find_member(w, key.c_str()))
            if (const Json* th = find_member(*b, "rope_theta")) f["rope_theta"] = *th;
          names.push_back({tp, "", false, family, ""});
          flats.emplace_back(distinct[d], std::move(f));
        } else if (is_sliding) {
          Json f = base;
          f["rope_theta"] = 10000.0;
          const Json* lb = find_member(w, "rope_local_base_freq");
          if (lb != nullptr) f["rope_theta"] = *lb;
          names.push_back({tp, tp + "rope_local_base_freq", false, family,
                           lb != nullptr ? tp + "rope_local_base_freq" : std::string()});
          flats.emplace_back(distinct[d], std::move(f));
        } else {
          names.push_back({tp, "", false, family, ""});
          flats.emplace_back(distinct[d], with_block(base));
        }
      } else {
        flats[static_cast<std::size_t>(slot)].first += "," + distinct[d];
      }
      flat_of_type[d] = slot;
    }
  } else {
    flats.emplace_back("all", with_block(base));
    names.push_back({tp, "", false, family, ""});
  }
  // One block for every RoPE layer beside NoPE layers: the kind is named by its layer types.
  std::string uniform_name = "all";
  if (!nope.empty() && !distinct.empty()) {
    uniform_name.clear();
    for (const std::string& t : distinct) uniform_name += (uniform_name.empty() ? "" : ",") + t;
  }

  // Equal RoPEs share a kind; kinds are found by a fingerprint (linear, not pairwise).
  std::vector<std::int64_t> kind_of_flat(flats.size());
  std::unordered_map<std::string, std::int64_t> kind_index;
  for (std::size_t k = 0; k < flats.size(); ++k) {
    RopeConfig rc;
    ROPESCALE_RETURN_IF_ERROR(parse_flat(flats[k].second, options, names[k], &rc));
    auto it =
        kind_index.emplace(rope_config_fingerprint(rc), static_cast<std::int64_t>(m.kinds.size()))
            .first;
    if (it->second == static_cast<std::int64_t>(m.kinds.size())) {
      m.kinds.push_back({flats[k].first == "all" ? uniform_name : flats[k].first, std::move(rc)});
    } else {
      m.kinds[static_cast<std::size_t>(it->second)].layer_type += "," + flats[k].first;
    }
    kind_of_flat[k] = it->second;
  }
  if (flats.size() == 1 && flats[0].first == "all") {
    const std::int64_t n =
        !m.layer_types.empty()
            ? static_cast<std::int64_t>(m.layer_types.size())
            : (!nope.empty() ? static_cast<std::int64_t>(nope.size()) : num_layers);
    m.layer_kind.assign(static_cast<std::size_t>(n), 0);
    for (std::size_t l = 0; l < m.layer_kind.size(); ++l)
      if (is_nope(l)) m.layer_kind[l] = ModelRope::kNoRope;
  } else {
    m.layer_kind.reserve(type_of_layer.size());
    for (const std::int64_t t : type_of_layer)
      m.layer_kind.push_back(
          t == ModelRope::kNoRope
              ? ModelRope::kNoRope
              : kind_of_flat[static_cast<std::size_t>(flat_of_type[static_cast<std::size_t>(t)])]);
  }
  ROPESCALE_RETURN_IF_ERROR(read_scale_terms(w, tp, &m));
  *out = std::move(m);
  return Status();
}

}  // namespace detail

}  // namespace ropescale
