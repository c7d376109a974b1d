// ropescale: Hugging Face config.json import and export (needs nlohmann/json).
//
// A model's RoPE lives in its config.json:
//
//   {"head_dim": 128, "rope_theta": 500000.0, "max_position_embeddings": 131072,
//    "rope_scaling": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
//                     "high_freq_factor": 4.0, "original_max_position_embeddings": 8192}}
//
// parse_hf_config() turns a whole config (as published; unknown fields ignored) into a RopeConfig:
// the RopeSpec, the method and its parameters. RopeConfig::table_for(seq_len) then gives the exact
// FactorTable Hugging Face transformers uses for a sequence of seq_len tokens (for LongRoPE: the
// long factors iff seq_len > original_max_position_embeddings). to_hf_config() / to_rope_scaling()
// write a config back; parse(to_hf_config(c)) == c. longrope_config_from_tables() and
// to_rope_freqs() export any FactorTable, as a `longrope` block HF accepts or as llama.cpp's
// per-pair `rope_freqs` divisors.
//
// What is read, and from where (HF's rules; "block" = `rope_parameters` if present, else
// `rope_scaling`):
//   rope type            block.rope_type, else block.type; "su" is LongRoPE's old name.
//                        No block, or a null one: default RoPE.
//   rope_theta           block.rope_theta (transformers v5), else top level.
//   head_dim             top-level head_dim, else hidden_size / num_attention_heads.
//   rotary_dim           int(head_dim * partial_rotary_factor) (block, else top level, else 1).
//   window L             linear/default: top-level original_max_position_embeddings, else
//                        max_position_embeddings. dynamic: max_position_embeddings (HF ignores the
//                        original). yarn: see YarnSemantics. llama3: block, else top level.
//                        longrope: top level, else block, else max_position_embeddings.
//
// Every error names the field by its JSON path, its value and the rule, e.g.
//   ropescale: invalid_argument: rope_scaling.long_factor.size() = 47: must equal rotary_dim / 2 =
//   48
// and nothing is returned on error (the try_* twins leave *out untouched).
#pragma once

#include <Eigen/Core>
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

#include "ropescale/detail/file_io.hpp"
#include "ropescale/error.hpp"
#include "ropescale/factors.hpp"
#include "ropescale/frequencies.hpp"
#include "ropescale/scaling.hpp"

namespace ropescale {

/// The rope types Hugging Face's ROPE_INIT_FUNCTIONS know (the config's `rope_type`).
enum class RopeType { kDefault, kLinear, kDynamic, kYarn, kLongRope, kLlama3 };

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

/// A model's RoPE as its config describes it: spec, method and method parameters.
///
/// spec.original_max_position is the method's window L (see the header comment). Only the
/// parameters of rope_type are meaningful; the others keep their defaults.
struct RopeConfig {
  RopeType rope_type = RopeType::kDefault;
  RopeSpec spec;
  std::int64_t max_position_embeddings = 0;
  double factor = 1.0;      ///< linear and dynamic: s
  YarnParams yarn;          ///< yarn (yarn.original_max_position = the resolved window)
  Llama3Params llama3;      ///< llama3
  LongRopeParams longrope;  ///< longrope (longrope.factor = s, max_position_embeddings / L)

  /// The scale s of the method (1 for default).
  double scale() const noexcept {
    switch (rope_type) {
      case RopeType::kLinear:
      case RopeType::kDynamic:
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

  /// LongRoPE's choice for seq_len tokens (long iff seq_len > L); none for other methods.
  std::optional<LongRopeSelection> selection_for(std::int64_t seq_len) const noexcept {
    if (rope_type != RopeType::kLongRope) return std::nullopt;
    return longrope_select(spec, seq_len);
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
        return try_longrope_factors(spec, longrope, longrope_select(spec, seq_len), out);
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
           ra.long_mscale == rb.long_mscale;
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
  return Status(ErrorCode::kParseError, std::string("ropescale: parse_error: ") + path + " = " +
                                            json_excerpt(v) + ": " + rule);
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
  else
    return make_status(ErrorCode::kUnsupported, bname + key, t,
                       "must be one of default, linear, dynamic, yarn, longrope (or su), llama3");
  return Status();
}

}  // namespace detail

/// Reads a parsed config.json. Status-returning twin of parse_hf_config; *out is set only on
/// success, and only after a table for both a short and a long sequence has been built.
inline Status try_parse_hf_config(const nlohmann::json& j, const HfImportOptions& options,
                                  RopeConfig* out) {
  using detail::find_member;
  using detail::Json;
  if (out == nullptr)
    return make_status(ErrorCode::kInvalidArgument, "out", nullptr, "must not be null");
  if (!j.is_object()) return detail::json_type_error("config", j, "must be a JSON object");

  RopeConfig c;
  // The scaling block: v5's rope_parameters, else rope_scaling.
  std::string bname = "rope_scaling";
  const Json* block = find_member(j, "rope_parameters");
  if (block != nullptr) {
    bname = "rope_parameters";
  } else {
    block = find_member(j, "rope_scaling");
  }
  static const Json kEmpty = Json::object();
  if (block != nullptr && !block->is_object())
    return detail::json_type_error(bname, *block, "must be an object or null");
  if (block != nullptr && bname == "rope_parameters" &&
      find_member(*block, "rope_type") == nullptr && find_member(*block, "type") == nullptr) {
    for (const auto& item : block->items())
      if (item.value().is_object())
        return make_status(ErrorCode::kUnsupported, bname + "." + item.key(), "{...}",
                           "per-layer-type rope parameters are not supported; pass one layer "
                           "type's block as rope_parameters");
  }
  const bool has_block = block != nullptr;
  if (!has_block) block = &kEmpty;
  if (has_block) {
    ROPESCALE_RETURN_IF_ERROR(detail::parse_rope_type(*block, bname, &c.rope_type));
  } else {
    c.rope_type = RopeType::kDefault;
  }

  // rope_theta
  const Json* theta = find_member(*block, "rope_theta");
  std::string theta_path = bname + ".rope_theta";
  if (theta == nullptr) {
    theta = find_member(j, "rope_theta");
    theta_path = "rope_theta";
  }
  if (theta != nullptr) {
    ROPESCALE_RETURN_IF_ERROR(detail::read_double(*theta, theta_path, &c.spec.rope_theta));
  } else if (options.default_rope_theta) {
    c.spec.rope_theta = *options.default_rope_theta;
  } else {
    return detail::missing_field("rope_theta", "the RoPE base");
  }
  if (!(c.spec.rope_theta > 1.0))
    return make_status(ErrorCode::kInvalidArgument, theta_path, c.spec.rope_theta, "must be > 1");

  // head_dim and rotary_dim
  std::int64_t head_dim = 0;
  if (const Json* hd = find_member(j, "head_dim")) {
    ROPESCALE_RETURN_IF_ERROR(detail::read_positive_int(*hd, "head_dim", &head_dim));
  } else {
    const Json* hs = find_member(j, "hidden_size");
    const Json* nh = find_member(j, "num_attention_heads");
    if (hs == nullptr)
      return detail::missing_field("hidden_size", "needed when head_dim is absent");
    if (nh == nullptr)
      return detail::missing_field("num_attention_heads", "needed when head_dim is absent");
    std::int64_t hidden = 0, heads = 0;
    ROPESCALE_RETURN_IF_ERROR(detail::read_positive_int(*hs, "hidden_size", &hidden));
    ROPESCALE_RETURN_IF_ERROR(detail::read_positive_int(*nh, "num_attention_heads", &heads));
    if (hidden % heads != 0)
      return make_status(ErrorCode::kInvalidArgument, "hidden_size", hidden,
                         "must be divisible by num_attention_heads (" + std::to_string(heads) +
                             ") when head_dim is absent");
    head_dim = hidden / heads;
  }
  if (head_dim > kMaxConfigHeadDim)
    return make_status(ErrorCode::kInvalidArgument, "head_dim", head_dim,
                       "must be <= " + std::to_string(kMaxConfigHeadDim));
  double partial = 1.0;
  {
    const Json* pr = find_member(*block, "partial_rotary_factor");
    std::string path = bname + ".partial_rotary_factor";
    if (pr == nullptr) {
      pr = find_member(j, "partial_rotary_factor");
      path = "partial_rotary_factor";
    }
    if (pr != nullptr) {
      ROPESCALE_RETURN_IF_ERROR(detail::read_double(*pr, path, &partial));
      if (!(partial > 0.0 && partial <= 1.0))
        return make_status(ErrorCode::kInvalidArgument, path, partial, "must be in (0, 1]");
    }
  }
  c.spec.head_dim = head_dim;
  // HF: dim = int(head_dim * partial_rotary_factor).
  c.spec.rotary_dim = static_cast<std::int64_t>(static_cast<double>(head_dim) * partial);
  if (c.spec.rotary_dim <= 0 || c.spec.rotary_dim % 2 != 0)
    return make_status(ErrorCode::kInvalidArgument, "rotary_dim", c.spec.rotary_dim,
                       "int(head_dim * partial_rotary_factor) must be even and > 0 (head_dim " +
                           std::to_string(head_dim) + ", partial_rotary_factor " +
                           detail::format_value(partial) + ")");

  // Windows
  const Json* mp = find_member(j, "max_position_embeddings");
  if (mp == nullptr) return detail::missing_field("max_position_embeddings", "the context window");
  ROPESCALE_RETURN_IF_ERROR(
      detail::read_positive_int(*mp, "max_position_embeddings", &c.max_position_embeddings));
  std::optional<std::int64_t> top_original, block_original;
  if (const Json* v = find_member(j, "original_max_position_embeddings")) {
    std::int64_t x = 0;
    ROPESCALE_RETURN_IF_ERROR(
        detail::read_positive_int(*v, "original_max_position_embeddings", &x));
    top_original = x;
  }
  if (const Json* v = find_member(*block, "original_max_position_embeddings")) {
    std::int64_t x = 0;
    ROPESCALE_RETURN_IF_ERROR(
        detail::read_positive_int(*v, bname + ".original_max_position_embeddings", &x));
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
    case RopeType::kDynamic:
      ROPESCALE_RETURN_IF_ERROR(detail::read_scale(*block, bname, &c.factor));
      c.spec.original_max_position = max_pos;  // HF's dynamic NTK window
      if (c.spec.rotary_dim <= 2)
        return make_status(ErrorCode::kInvalidArgument, "rotary_dim", c.spec.rotary_dim,
                           "must be > 2 for dynamic NTK (the exponent is d/(d-2))");
      break;
    case RopeType::kYarn: {
      YarnParams& y = c.yarn;
      const bool legacy = options.yarn == YarnSemantics::kLegacy;
      std::int64_t window = max_pos;
      if (!legacy && block_original)
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
      if (block_original) {
        l.original_max_position = *block_original;
      } else if (top_original) {
        l.original_max_position = *top_original;
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

inline Status try_parse_hf_config(const nlohmann::json& j, RopeConfig* out) {
  return try_parse_hf_config(j, HfImportOptions{}, out);
}

/// Reads a parsed config.json; throws Error naming the field, value and rule on bad input.
inline RopeConfig parse_hf_config(const nlohmann::json& j, const HfImportOptions& options = {}) {
  RopeConfig c;
  throw_if_error(try_parse_hf_config(j, options, &c));
  return c;
}

/// Parses config.json text (malformed JSON is a parse_error with nlohmann's position message).
inline Status try_parse_hf_config_text(const std::string& text, const HfImportOptions& options,
                                       RopeConfig* out) {
  nlohmann::json j;
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
  if (c.rope_type == RopeType::kDefault) return json();
  json b = json::object();
  b["rope_type"] = to_string(c.rope_type);
  b["type"] = to_string(c.rope_type);
  switch (c.rope_type) {
    case RopeType::kDefault:
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
  if (c.spec.rotary_dim != c.spec.head_dim)
    j["partial_rotary_factor"] =
        detail::partial_rotary_factor_for(c.spec.head_dim, c.spec.rotary_dim);
  j["rope_theta"] = c.spec.rope_theta;
  j["max_position_embeddings"] = c.max_position_embeddings;
  const std::int64_t window = c.spec.original_max_position;
  switch (c.rope_type) {
    case RopeType::kDefault:
    case RopeType::kLinear:
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
