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
//                        published config relies on them (gemma3_text: head_dim 256, rope_theta
//                        1e6, rope_local_base_freq 1e4, sliding_window_pattern 6, ...; gemma /
//                        gemma2: head_dim 256; qwen3: head_dim 128).
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
//   M-RoPE               block.mrope_section (3 pair counts summing to rotary_dim / 2) and
//                        block.mrope_interleaved (default: true for qwen3_vl*, else false).
//   per layer            parse_hf_model / load_hf_model: `layer_types` (or Gemma 3's
//                        sliding_window_pattern) with v5 `rope_parameters` keyed by layer type,
//                        or Gemma 3's rope_local_base_freq for its sliding layers. Layers without
//                        RoPE (no_rope_layers, Cohere2) are refused.
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
#include "ropescale/factors.hpp"
#include "ropescale/frequencies.hpp"
#include "ropescale/scaling.hpp"
#include "ropescale/search_state.hpp"

#define ROPESCALE_INSIDE_PUBLIC_HEADER
#include "ropescale/detail/file_io.hpp"
#undef ROPESCALE_INSIDE_PUBLIC_HEADER

namespace ropescale {

/// The rope types Hugging Face's ROPE_INIT_FUNCTIONS know (the config's `rope_type`).
/// kProportional is Gemma 4's `proportional` (transformers v5): see RopeSpec::freq_dim.
enum class RopeType { kDefault, kLinear, kDynamic, kYarn, kLongRope, kLlama3, kProportional };

/// The config spelling: "default", "linear", "dynamic", "yarn", "longrope", "llama3".
inline const char* to_string(RopeType t) noexcept {
  switch (t) {
    case RopeType::kDefault:
      return "default";
    case RopeType::kLinear:
      return "linear";
    case RopeType::kDynamic:
      return "dynamic";
    case RopeType::kYarn:
      return "yarn";
    case RopeType::kLongRope:
      return "longrope";
    case RopeType::kLlama3:
      return "llama3";
    case RopeType::kProportional:
      return "proportional";
  }
  return "unknown";
}

/// Which transformers YaRN to reproduce. They differ only when the block has
/// `original_max_position_embeddings` (and in the mscale / truncate keys, which the legacy code
/// does not read).
enum class YarnSemantics {
  /// Current transformers: the correction range uses block.original_max_position_embeddings
  /// (else max_position_embeddings); `factor` is used as given, and derived as
  /// max_position_embeddings / original only when missing. mscale, mscale_all_dim, truncate and
  /// attention_factor are honoured.
  kCurrent,
  /// transformers 4.4x-v5-dev: as kCurrent, but whenever the block has
  /// original_max_position_embeddings the factor is replaced by max_position_embeddings / original
  /// (a config with max_position_embeddings == original then gets factor 1).
  kDerivedFactor,
  /// transformers @ ef46806: the correction range uses max_position_embeddings; the factor is
  /// the block's; attention factor 0.1 ln s + 1 unless attention_factor is given.
  kLegacy,
};

/// Import options.
struct HfImportOptions {
  YarnSemantics yarn = YarnSemantics::kCurrent;
  /// Used when the config has no rope_theta (HF's config classes default to 10000 for Llama);
  /// unset means a missing rope_theta is an error.
  std::optional<double> default_rope_theta;
};

/// Largest head_dim the importer accepts; guards against absurd allocations from bad input.
inline constexpr std::int64_t kMaxConfigHeadDim = std::int64_t{1} << 16;
/// Largest num_hidden_layers the importer accepts (per-layer tables are allocated per layer).
inline constexpr std::int64_t kMaxConfigLayers = std::int64_t{1} << 20;

/// A model's RoPE as its config describes it: spec, method and method parameters.
///
/// spec.original_max_position is the method's window L (see the header comment). Only the
/// parameters of rope_type are meaningful; the others keep their defaults.
struct RopeConfig {
  RopeType rope_type = RopeType::kDefault;
  RopeSpec spec;
  std::int64_t max_position_embeddings = 0;
  double factor = 1.0;      ///< linear, dynamic and proportional: s
  YarnParams yarn;          ///< yarn (yarn.original_max_position = the resolved window)
  Llama3Params llama3;      ///< llama3
  LongRopeParams longrope;  ///< longrope (longrope.factor = s, max_position_embeddings / L)
  /// M-RoPE (Qwen2-VL / Qwen2.5-VL / Qwen3-VL): pairs per position axis (t, h, w), empty for
  /// text-only models. Build a MropeSections (ropescale/mrope.hpp) from it and spec.pairs().
  std::vector<std::int64_t> mrope_section;
  bool mrope_interleaved = false;  ///< Qwen3-VL's interleaved section layout
  /// How HF's modeling code pairs the checkpoint's channels: true when they rotate as
  /// (2i, 2i + 1) (PairLayout::kInterleaved): `rope_interleave: true`, or an MLA config
  /// (DeepSeek-V2/V3, Kimi-K2: their config classes default it to true) that does not say.
  /// Also true for model_type gptj, codegen (rotate_every_two), glm, glm4 (rotate_half_llm).
  /// false: rotate_half pairs (PairLayout::kHalfSplit).
  bool interleaved_pairs = false;

  /// True when positions are three ids per token (mrope_section is set).
  bool is_mrope() const noexcept { return !mrope_section.empty(); }

  /// The scale s of the method (1 for default).
  double scale() const noexcept {
    switch (rope_type) {
      case RopeType::kLinear:
      case RopeType::kDynamic:
      case RopeType::kProportional:
        return factor;
      case RopeType::kYarn:
        return yarn.factor;
      case RopeType::kLlama3:
        return llama3.factor;
      case RopeType::kLongRope:
        return longrope.factor;
      case RopeType::kDefault:
        break;
    }
    return 1.0;
  }

  /// The factor set LongRoPE uses for seq_len tokens (rope_window: long iff seq_len > L); none
  /// for methods with a single table.
  std::optional<RopeWindow> window_for(std::int64_t seq_len) const noexcept {
    if (rope_type != RopeType::kLongRope) return std::nullopt;
    return rope_window(seq_len, spec.original_max_position);
  }
  /// Deprecated name of window_for.
  [[deprecated("use window_for")]] std::optional<RopeWindow> selection_for(
      std::int64_t seq_len) const noexcept {
    return window_for(seq_len);
  }

  /// The table Hugging Face uses for a sequence of seq_len tokens (seq_len = max position + 1;
  /// seq_len <= 0 means the init-time table: LongRoPE short factors, dynamic NTK unscaled).
  Status try_table_for(std::int64_t seq_len, FactorTable* out) const {
    switch (rope_type) {
      case RopeType::kDefault:
        return try_default_factors(spec, out);
      case RopeType::kLinear:
        return try_linear_factors(spec, factor, out);
      case RopeType::kDynamic:
        return try_dynamic_ntk_factors(spec, factor, max_position_embeddings, seq_len, out);
      case RopeType::kYarn:
        return try_yarn_factors(spec, yarn, out);
      case RopeType::kLlama3:
        return try_llama3_factors(spec, llama3, out);
      case RopeType::kLongRope:
        return try_longrope_factors(spec, longrope,
                                    rope_window(seq_len, spec.original_max_position), out);
      case RopeType::kProportional:
        // HF: inv_freq /= factor on the rotating pairs (the zero-frequency ones stay zero).
        return factor == 1.0 ? try_default_factors(spec, out)
                             : try_linear_factors(spec, factor, out);
    }
    return make_status(ErrorCode::kInvalidArgument, "rope_type", static_cast<int>(rope_type),
                       "unknown");
  }
  FactorTable table_for(std::int64_t seq_len = 0) const {
    FactorTable t;
    throw_if_error(try_table_for(seq_len, &t));
    return t;
  }

  friend bool operator==(const RopeConfig& a, const RopeConfig& b) {
    auto same_array = [](const Eigen::ArrayXd& x, const Eigen::ArrayXd& y) {
      return x.size() == y.size() && (x == y).all();
    };
    const YarnParams &ya = a.yarn, &yb = b.yarn;
    const Llama3Params &la = a.llama3, &lb = b.llama3;
    const LongRopeParams &ra = a.longrope, &rb = b.longrope;
    return a.rope_type == b.rope_type && a.spec == b.spec &&
           a.max_position_embeddings == b.max_position_embeddings && a.factor == b.factor &&
           ya.factor == yb.factor && ya.beta_fast == yb.beta_fast && ya.beta_slow == yb.beta_slow &&
           ya.mscale == yb.mscale && ya.mscale_all_dim == yb.mscale_all_dim &&
           ya.truncate == yb.truncate && ya.attention_factor == yb.attention_factor &&
           ya.original_max_position == yb.original_max_position && la.factor == lb.factor &&
           la.low_freq_factor == lb.low_freq_factor && la.high_freq_factor == lb.high_freq_factor &&
           la.original_max_position == lb.original_max_position &&
           same_array(ra.short_factor, rb.short_factor) &&
           same_array(ra.long_factor, rb.long_factor) && ra.factor == rb.factor &&
           ra.attention_factor == rb.attention_factor && ra.short_mscale == rb.short_mscale &&
           ra.long_mscale == rb.long_mscale && a.mrope_section == b.mrope_section &&
           a.mrope_interleaved == b.mrope_interleaved && a.interleaved_pairs == b.interleaved_pairs;
  }
  friend bool operator!=(const RopeConfig& a, const RopeConfig& b) { return !(a == b); }
};

namespace detail {

using Json = nlohmann::json;

// A short JSON rendering of a value for an error message, as compact as dump() but bounded:
// it stops after ~60 characters and 8 levels, so 100k nested arrays cannot overflow the stack
// and a 200 MB string is not copied.
inline void json_excerpt_into(const Json& v, int depth, std::string& out) {
  constexpr std::size_t kBudget = 60;
  if (v.is_string()) {
    const std::string& str = v.get_ref<const std::string&>();
    out += Json(str.substr(0, kBudget)).dump(-1, ' ', false, Json::error_handler_t::replace);
    return;
  }
  if (!v.is_array() && !v.is_object()) {
    out += v.dump(-1, ' ', false, Json::error_handler_t::replace);
    return;
  }
  const bool arr = v.is_array();
  if (depth >= 8) {
    out += arr ? "[...]" : "{...}";
    return;
  }
  out += arr ? '[' : '{';
  bool first = true;
  for (auto it = v.begin(); it != v.end() && out.size() <= kBudget; ++it) {
    if (!first) out += ',';
    first = false;
    if (!arr) {
      json_excerpt_into(Json(it.key().substr(0, kBudget)), depth + 1, out);
      out += ':';
    }
    json_excerpt_into(*it, depth + 1, out);
  }
  out += arr ? ']' : '}';
}

inline std::string json_excerpt(const Json& v) {
  std::string s;
  json_excerpt_into(v, 0, s);
  if (s.size() > 60) s = s.substr(0, 57) + "...";
  return s;
}

inline Status json_type_error(const std::string& path, const Json& v, const char* rule) {
  // The value is shown as JSON text (strings keep their quotes).
  return Status(ErrorCode::kParseError, std::string("ropescale: parse_error: ") +
                                            format_argument(path) + " = " + json_excerpt(v) + ": " +
                                            rule);
}

inline Status missing_field(const std::string& path, const std::string& rule) {
  return make_status(ErrorCode::kParseError, path, nullptr,
                     "required field is missing (" + rule + ")");
}

// A present, non-null member, or nullptr.
inline const Json* find_member(const Json& obj, const char* key) {
  if (!obj.is_object()) return nullptr;
  auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) return nullptr;
  return &*it;
}

inline Status read_double(const Json& v, const std::string& path, double* out) {
  if (!v.is_number()) return json_type_error(path, v, "must be a number");
  const double x = v.get<double>();
  if (!std::isfinite(x)) return make_status(ErrorCode::kInvalidArgument, path, x, "must be finite");
  *out = x;
  return Status();
}

inline Status read_int(const Json& v, const std::string& path, std::int64_t* out) {
  if (v.is_number_unsigned()) {
    const std::uint64_t u = v.get<std::uint64_t>();
    if (u > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max()))
      return make_status(ErrorCode::kInvalidArgument, path, u,
                         "must fit in a signed 64-bit integer");
    *out = static_cast<std::int64_t>(u);
    return Status();
  }
  if (v.is_number_integer()) {
    *out = v.get<std::int64_t>();
    return Status();
  }
  if (v.is_number_float()) {
    const double x = v.get<double>();
    // Integral floats (4096.0) are accepted, as Python's int() would.
    if (!std::isfinite(x) || x != std::floor(x) || std::abs(x) > 9.0e15)
      return make_status(ErrorCode::kInvalidArgument, path, x, "must be an integer");
    *out = static_cast<std::int64_t>(x);
    return Status();
  }
  return json_type_error(path, v, "must be an integer");
}

inline Status read_positive_int(const Json& v, const std::string& path, std::int64_t* out) {
  std::int64_t x = 0;
  ROPESCALE_RETURN_IF_ERROR(read_int(v, path, &x));
  if (x <= 0) return make_status(ErrorCode::kInvalidArgument, path, x, "must be > 0");
  if (x > kMaxPosition)  // sizes and windows; keeps every later sum in range
    return make_status(ErrorCode::kInvalidArgument, path, x, "must be <= 2^48");
  *out = x;
  return Status();
}

inline Status read_factor_list(const Json& v, const std::string& path, std::int64_t expected,
                               Eigen::ArrayXd* out) {
  if (!v.is_array()) return json_type_error(path, v, "must be an array of numbers");
  if (static_cast<std::int64_t>(v.size()) != expected)
    return make_status(ErrorCode::kInvalidArgument, path + ".size()",
                       static_cast<std::int64_t>(v.size()),
                       "must equal rotary_dim / 2 = " + std::to_string(expected));
  Eigen::ArrayXd f(static_cast<Eigen::Index>(v.size()));
  for (std::size_t i = 0; i < v.size(); ++i) {
    const std::string p = path + "[" + std::to_string(i) + "]";
    double x = 0;
    ROPESCALE_RETURN_IF_ERROR(read_double(v[i], p, &x));
    if (!(x >= kMinListedFactor))
      return make_status(ErrorCode::kInvalidArgument, p, x, "must be >= 1e-6");
    f[static_cast<Eigen::Index>(i)] = x;
  }
  *out = std::move(f);
  return Status();
}

inline Status read_scale(const Json& block, const std::string& bname, double* out) {
  const Json* v = find_member(block, "factor");
  if (v == nullptr) return missing_field(bname + ".factor", "the scale factor s");
  double x = 0;
  ROPESCALE_RETURN_IF_ERROR(read_double(*v, bname + ".factor", &x));
  if (!(x >= 1.0))
    return make_status(ErrorCode::kInvalidArgument, bname + ".factor", x, "must be >= 1");
  *out = x;
  return Status();
}

inline Status read_optional_positive(const Json& block, const char* key, const std::string& bname,
                                     std::optional<double>* out) {
  const Json* v = find_member(block, key);
  if (v == nullptr) return Status();
  double x = 0;
  ROPESCALE_RETURN_IF_ERROR(read_double(*v, bname + "." + key, &x));
  if (!(x > 0.0))
    return make_status(ErrorCode::kInvalidArgument, bname + "." + key, x, "must be > 0");
  *out = x;
  return Status();
}

inline Status parse_rope_type(const Json& block, const std::string& bname, RopeType* out) {
  const Json* v = find_member(block, "rope_type");
  std::string key = ".rope_type";
  if (v == nullptr) {
    v = find_member(block, "type");
    key = ".type";
  }
  if (v == nullptr) return missing_field(bname + ".rope_type", "or the older key 'type'");
  if (!v->is_string()) return json_type_error(bname + key, *v, "must be a string");
  const std::string t = v->get<std::string>();
  if (t == "default")
    *out = RopeType::kDefault;
  else if (t == "linear")
    *out = RopeType::kLinear;
  else if (t == "dynamic")
    *out = RopeType::kDynamic;
  else if (t == "yarn")
    *out = RopeType::kYarn;
  else if (t == "longrope" || t == "su")
    *out = RopeType::kLongRope;
  else if (t == "llama3")
    *out = RopeType::kLlama3;
  else if (t == "proportional")
    *out = RopeType::kProportional;
  else if (t == "mrope" && find_member(block, "mrope_section") != nullptr)
    *out = RopeType::kDefault;  // HF (Qwen2-VL) reads "mrope" as default RoPE plus the sections
  else
    return make_status(ErrorCode::kUnsupported, bname + key, t,
                       "must be one of default, linear, dynamic, yarn, longrope (or su), llama3, "
                       "proportional, or mrope together with mrope_section");
  return Status();
}

}  // namespace detail

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
  if (theta != nullptr) {
    ROPESCALE_RETURN_IF_ERROR(read_double(*theta, theta_path, &c.spec.rope_theta));
  } else if (options.default_rope_theta) {
    c.spec.rope_theta = *options.default_rope_theta;
  } else {
    return missing_field(tp + "rope_theta", "the RoPE base");
  }
  if (!(c.spec.rope_theta > 1.0))
    return make_status(ErrorCode::kInvalidArgument, theta_path, c.spec.rope_theta, "must be > 1");

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
      if (c.spec.rotary_dim <= 2)
        return make_status(ErrorCode::kInvalidArgument, "rotary_dim", c.spec.rotary_dim,
                           "must be > 2 for dynamic NTK (the exponent is d/(d-2))");
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
      } else if (has_factor || legacy) {
        ROPESCALE_RETURN_IF_ERROR(detail::read_scale(*block, bname, &y.factor));
      } else if (window != max_pos) {
        y.factor = static_cast<double>(max_pos) / static_cast<double>(window);
      } else {
        return detail::missing_field(bname + ".factor",
                                     "or an original_max_position_embeddings to derive it from");
      }
      if (!(y.factor >= 1.0))
        return make_status(ErrorCode::kInvalidArgument, bname + ".factor", y.factor,
                           "must be >= 1 (derived as max_position_embeddings / "
                           "original_max_position_embeddings)");
      // HF: `get("beta_fast") or 32`: missing, null or 0 means the default.
      for (const char* key : {"beta_fast", "beta_slow"}) {
        double b = 0;
        if (const Json* v = find_member(*block, key))
          ROPESCALE_RETURN_IF_ERROR(detail::read_double(*v, bname + "." + key, &b));
        if (b == 0.0) b = std::string(key) == "beta_fast" ? 32.0 : 1.0;
        if (!(b > 0.0))
          return make_status(ErrorCode::kInvalidArgument, bname + "." + key, b, "must be > 0");
        (std::string(key) == "beta_fast" ? y.beta_fast : y.beta_slow) = b;
      }
      if (y.beta_fast < y.beta_slow)
        return make_status(ErrorCode::kInvalidArgument, bname + ".beta_fast", y.beta_fast,
                           "must be >= beta_slow (" + detail::format_value(y.beta_slow) + ")");
      if (!legacy) {
        for (const char* key : {"mscale", "mscale_all_dim"}) {
          double m = 0;
          if (const Json* v = find_member(*block, key))
            ROPESCALE_RETURN_IF_ERROR(detail::read_double(*v, bname + "." + key, &m));
          if (m < 0.0)
            return make_status(ErrorCode::kInvalidArgument, bname + "." + key, m, "must be >= 0");
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
      if (!(l.low_freq_factor > 0.0))
        return make_status(ErrorCode::kInvalidArgument, bname + ".low_freq_factor",
                           l.low_freq_factor, "must be > 0");
      if (!(l.low_freq_factor < l.high_freq_factor))
        return make_status(
            ErrorCode::kInvalidArgument, bname + ".low_freq_factor", l.low_freq_factor,
            "must be < high_freq_factor (" + detail::format_value(l.high_freq_factor) + ")");
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
          detail::read_factor_list(*sf, bname + ".short_factor", c.spec.pairs(), &p.short_factor));
      ROPESCALE_RETURN_IF_ERROR(
          detail::read_factor_list(*lf, bname + ".long_factor", c.spec.pairs(), &p.long_factor));
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
          if (!(p.factor > 0.0))
            return make_status(ErrorCode::kInvalidArgument, bname + ".factor", p.factor,
                               "must be > 0");
        }
      }
      break;
    }
  }

  // Safety net: both tables HF could use must build.
  FactorTable probe;
  ROPESCALE_RETURN_IF_ERROR(c.try_table_for(0, &probe));
  ROPESCALE_RETURN_IF_ERROR(c.try_table_for(c.spec.original_max_position + 1, &probe));
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

/// One distinct RoPE of a model and the layer types that use it.
struct LayerRope {
  std::string layer_type;  ///< "all" for one block on every layer, else e.g. "full_attention"
  RopeConfig config;
};

/// A model's RoPE per layer: Gemma 3 (sliding layers: default RoPE at rope_local_base_freq; full
/// layers: rope_theta and the config's scaling), Gemma 4 and any transformers v5 config with
/// `rope_parameters` keyed by layer type, or one block for every layer.
///
/// kinds lists each distinct layer type's RoPE once, in order of first appearance, so an engine
/// builds one cache per kind; layer_types / layer_kind say which layer uses which.
struct ModelRope {
  std::vector<LayerRope> kinds;
  std::vector<std::string> layer_types;  ///< per layer, as the config lists or derives them
  std::vector<std::int64_t> layer_kind;  ///< per layer, index into kinds; empty: unknown count
  std::string text_path;                 ///< "text_config" when the text model is nested, else ""

  /// True when every layer uses one RoPE (kinds.size() == 1).
  bool uniform() const noexcept { return kinds.size() == 1; }
  /// Number of layers the config declares (0 when it does not say and the RoPE is uniform).
  std::int64_t num_layers() const noexcept { return static_cast<std::int64_t>(layer_kind.size()); }

  /// The RoPE of layer l. Status twin of layer().
  Status try_layer(std::int64_t l, const RopeConfig** out) const {
    if (out == nullptr)
      return make_status(ErrorCode::kInvalidArgument, "out", nullptr, "must not be null");
    if (kinds.empty())
      return make_status(ErrorCode::kInvalidArgument, "kinds.size()", 0, "must be > 0");
    if (l < 0 || (!layer_kind.empty() && l >= num_layers()))
      return make_status(ErrorCode::kOutOfRange, "layer", l,
                         "must be in [0, " + std::to_string(num_layers()) + ")");
    *out = layer_kind.empty()
               ? &kinds[0].config
               : &kinds[static_cast<std::size_t>(layer_kind[static_cast<std::size_t>(l)])].config;
    return Status();
  }
  const RopeConfig& layer(std::int64_t l) const {
    const RopeConfig* c = nullptr;
    throw_if_error(try_layer(l, &c));
    return *c;
  }
  /// Spec and table (for seq_len tokens, as RopeConfig::table_for) of layer l.
  const RopeSpec& spec_for_layer(std::int64_t l) const { return layer(l).spec; }
  FactorTable table_for_layer(std::int64_t l, std::int64_t seq_len = 0) const {
    return layer(l).table_for(seq_len);
  }
};

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
      if (is_gemma3(family) && t == "sliding_attention" && sub->is_object() &&
          find_member(*sub, "rope_theta") == nullptr) {
        const Json* lb = find_member(w, "rope_local_base_freq");
        f["rope_parameters"]["rope_theta"] = lb != nullptr ? *lb : Json(10000.0);
      }
      // Gemma 4: full-attention layers have their own, wider heads.
      if (t == "full_attention")
        if (const Json* g = find_member(w, "global_head_dim")) f["head_dim"] = *g;
      flats.emplace_back(t, std::move(f));
      names.push_back({tp, tp + key + "." + t, true, family});
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
        if (const Json* lb = find_member(w, "rope_local_base_freq")) f["rope_theta"] = *lb;
        names.push_back({tp, tp + "rope_local_base_freq", false, family});
      } else {
        names.push_back({tp, "", false, family});
      }
      flats.emplace_back(t, std::move(f));
    }
  } else {
    flats.emplace_back("all", w);
    names.push_back({tp, "", false, family});
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
    return Status(ErrorCode::kParseError,
                  "ropescale: parse_error: config.json: malformed JSON: " + what);
  }
#else
  j = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded())
    return Status(ErrorCode::kParseError, "ropescale: parse_error: config.json: malformed JSON");
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
  return Status(st.code(), st.message() + " (in " + path + ")");
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
  return Status(st.code(), st.message() + " (in " + path + ")");
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
  throw_if_error(validate(spec));
  throw_if_error(long_table.validate_for(spec));
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
