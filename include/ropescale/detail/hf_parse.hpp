// ropescale internal: the config.json reader behind io/hf_config.hpp's try_parse_hf_model and
// try_parse_hf_config: the head and rotary widths, one flat (single-block) config, the
// config-class defaults and the per-layer-type assembly, on the field readers of json_read.hpp.
// io/hf_config.hpp includes it after the types it fills (RopeConfig, ModelRope). Not a public
// header.
#pragma once

#include "ropescale/detail/internal_header_check.hpp"

#include <Eigen/Core>
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "ropescale/detail/json_read.hpp"

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
  const std::string head = std::string("ropescale: ") + error_id(s.code()) + ": ";
  const std::string& m = s.message();
  const std::size_t eq = m.find(" = ");
  if (m.compare(0, head.size(), head) != 0 || eq == std::string::npos || eq < head.size()) return s;
  const std::string field = m.substr(head.size(), eq - head.size());
  const std::string param = field.substr(0, field.find_first_of("[."));
  const std::string rest = field.substr(param.size());
  for (const ConfigKey& k : keys)
    if (param == k.param)
      return Status(s.code(), head + format_argument(k.path + rest) + m.substr(eq) + k.note);
  for (const char* k : kBlockKeys)
    if (param == k)
      return Status(s.code(), head + format_argument(bname + "." + field) + m.substr(eq));
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
  // Qwen3-VL adds "mrope_interleaved": true, and its code always interleaves).
  if (const Json* ms = find_member(*block, "mrope_section")) {
    const std::string path = bname + ".mrope_section";
    if (!ms->is_array() || ms->size() != 3)
      return json_type_error(path, *ms, "must be an array of 3 integers (t, h, w pairs)");
    std::int64_t sum = 0;
    for (std::size_t a = 0; a < 3; ++a) {
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
      nm.family == "gptj" || nm.family == "codegen" || nm.family == "glm" || nm.family == "glm4";
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
    case RopeType::kDynamic:
      ROPESCALE_RETURN_IF_ERROR(read_scale(*block, bname, &c.factor));
      c.spec.original_max_position = max_pos;  // HF's dynamic NTK window
      break;
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

// HF config-class defaults that decide the RoPE when a published config leaves them out
// (configuration_gemma3.py Gemma3TextConfig, configuration_gemma.py / gemma2, Qwen3Config).
inline void apply_class_defaults(const std::string& family, Json* w) {
  auto set = [w](const char* key, const Json& v) {
    if (find_member(*w, key) == nullptr) (*w)[key] = v;
  };
  if (family == "gemma3_text" || family == "gemma3") {
    set("head_dim", 256);
    set("hidden_size", 2304);
    set("num_attention_heads", 8);
    set("num_hidden_layers", 26);
    set("max_position_embeddings", 131072);
    set("rope_theta", 1000000.0);
  } else if (family == "gemma" || family == "gemma2") {
    set("head_dim", 256);
    set("max_position_embeddings", 8192);
    set("rope_theta", 10000.0);
  } else if (family == "qwen3" || family == "qwen3_moe" || family == "qwen3_vl_text" ||
             family == "qwen3_vl_moe_text") {
    set("head_dim", 128);
  }
}

inline bool is_gemma3(const std::string& family) {
  return family == "gemma3_text" || family == "gemma3";
}

}  // namespace detail

namespace detail {

inline Status read_layer_types(const Json& w, const std::string& tp,
                               std::vector<std::string>* out) {
  const Json* lt = find_member(w, "layer_types");
  if (lt == nullptr) return Status();
  if (!lt->is_array())
    return json_type_error(tp + "layer_types", *lt, "must be an array of strings");
  for (std::size_t i = 0; i < lt->size(); ++i) {
    if (!(*lt)[i].is_string())
      return json_type_error(tp + "layer_types[" + std::to_string(i) + "]", (*lt)[i],
                             "must be a string");
    out->push_back((*lt)[i].get<std::string>());
  }
  return Status();
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
  apply_class_defaults(family, &w);

  // Layers without RoPE cannot be told apart by this importer: refuse rather than rotate them.
  if (const Json* nr = find_member(w, "no_rope_layers"))
    return make_status(ErrorCode::kUnsupported, tp + "no_rope_layers", json_excerpt(*nr),
                       "layers without RoPE (NoPE; Llama 4, SmolLM3) are not supported: the "
                       "importer would rotate them; apply the table only to RoPE layers yourself");
  // These config classes derive NoPE layers even when the config lists none (Llama4TextConfig
  // and SmolLM3Config from no_rope_layer_interval; Cohere2's full-attention layers).
  if (family == "cohere2" || family == "llama4" || family == "llama4_text" || family == "smollm3")
    return make_status(ErrorCode::kUnsupported, tp + "model_type", family,
                       "this family has layers without RoPE (NoPE), which is not supported: the "
                       "importer would rotate them; apply the table only to its RoPE layers "
                       "yourself");

  ROPESCALE_RETURN_IF_ERROR(read_layer_types(w, tp, &m.layer_types));
  std::int64_t num_layers = 0;
  if (const Json* nl = find_member(w, "num_hidden_layers"))
    ROPESCALE_RETURN_IF_ERROR(read_positive_int(*nl, tp + "num_hidden_layers", &num_layers));
  if (num_layers > kMaxConfigLayers)
    return make_status(ErrorCode::kInvalidArgument, tp + "num_hidden_layers", num_layers,
                       "must be <= " + std::to_string(kMaxConfigLayers));
  if (!m.layer_types.empty() && num_layers > 0 &&
      static_cast<std::int64_t>(m.layer_types.size()) != num_layers)
    return make_status(ErrorCode::kInvalidArgument, tp + "layer_types.size()",
                       static_cast<std::int64_t>(m.layer_types.size()),
                       "must equal num_hidden_layers (" + std::to_string(num_layers) + ")");
  if (m.layer_types.empty() && is_gemma3(family)) {
    // Gemma3TextConfig: layer i is sliding unless (i + 1) % sliding_window_pattern == 0.
    std::int64_t pattern = 6;
    if (const Json* sp = find_member(w, "sliding_window_pattern"))
      ROPESCALE_RETURN_IF_ERROR(read_positive_int(*sp, tp + "sliding_window_pattern", &pattern));
    for (std::int64_t i = 0; i < num_layers; ++i)
      m.layer_types.push_back((i + 1) % pattern != 0 ? "sliding_attention" : "full_attention");
  }

  std::string key = "rope_parameters";
  const Json* block = find_member(w, "rope_parameters");
  if (block == nullptr) {
    key = "rope_scaling";
    block = find_member(w, "rope_scaling");
  }
  // v5 per-layer form: every key of the block is a layer type (HF standardize_rope_params).
  bool nested = false;
  if (block != nullptr && block->is_object() && !block->empty() && !m.layer_types.empty() &&
      find_member(*block, "rope_type") == nullptr && find_member(*block, "type") == nullptr) {
    nested = true;
    for (const auto& item : block->items())
      if (std::find(m.layer_types.begin(), m.layer_types.end(), item.key()) == m.layer_types.end())
        nested = false;
  }

  // One flat config per distinct layer type.
  std::vector<std::pair<std::string, Json>> flats;
  std::vector<FlatNames> names;
  std::vector<std::string> distinct;
  for (const std::string& t : m.layer_types)
    if (std::find(distinct.begin(), distinct.end(), t) == distinct.end()) distinct.push_back(t);
  if (nested) {
    for (const std::string& t : distinct) {
      const Json* sub = find_member(*block, t.c_str());
      if (sub == nullptr)
        return missing_field(tp + key + "." + t, "layer_types lists " + format_value(t));
      Json f = w;
      f.erase("rope_scaling");
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
      flats.emplace_back(t, std::move(f));
      names.push_back({tp, tp + key + "." + t, true, family, theta_key});
    }
  } else if (is_gemma3(family) && !distinct.empty()) {
    // Gemma 3 before v5: sliding layers use default RoPE at rope_local_base_freq (1e4 by
    // default), full layers rope_theta and the config's scaling (Gemma3TextConfig).
    for (const std::string& t : distinct) {
      Json f = w;
      if (t == "sliding_attention") {
        f.erase("rope_scaling");
        f.erase("rope_parameters");
        f["rope_theta"] = 10000.0;
        const Json* lb = find_member(w, "rope_local_base_freq");
        if (lb != nullptr) f["rope_theta"] = *lb;
        names.push_back({tp, tp + "rope_local_base_freq", false, family,
                         lb != nullptr ? tp + "rope_local_base_freq" : std::string()});
      } else {
        names.push_back({tp, "", false, family, ""});
      }
      flats.emplace_back(t, std::move(f));
    }
  } else {
    flats.emplace_back("all", w);
    names.push_back({tp, "", false, family, ""});
  }

  std::vector<std::int64_t> kind_of_type(flats.size());
  for (std::size_t k = 0; k < flats.size(); ++k) {
    RopeConfig rc;
    ROPESCALE_RETURN_IF_ERROR(parse_flat(flats[k].second, options, names[k], &rc));
    std::size_t found = m.kinds.size();
    for (std::size_t q = 0; q < m.kinds.size(); ++q)
      if (m.kinds[q].config == rc) found = q;
    if (found == m.kinds.size()) {
      m.kinds.push_back({flats[k].first, std::move(rc)});
    } else {
      m.kinds[found].layer_type += "," + flats[k].first;
    }
    kind_of_type[k] = static_cast<std::int64_t>(found);
  }
  if (flats.size() == 1 && flats[0].first == "all") {
    const std::int64_t n =
        m.layer_types.empty() ? num_layers : static_cast<std::int64_t>(m.layer_types.size());
    m.layer_kind.assign(static_cast<std::size_t>(n), 0);
  } else {
    for (const std::string& t : m.layer_types) {
      const std::size_t k = static_cast<std::size_t>(
          std::find(distinct.begin(), distinct.end(), t) - distinct.begin());
      m.layer_kind.push_back(kind_of_type[k]);
    }
  }
  *out = std::move(m);
  return Status();
}

}  // namespace detail

}  // namespace ropescale
