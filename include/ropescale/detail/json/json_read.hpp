// ropescale internal: typed readers of JSON fields for the config.json importer. Each names the
// JSON path it reads in its error (kParseError for a missing field or a wrong type,
// kInvalidArgument for a value out of range), excerpts of hostile values stay short, and
// parse_rope_type maps Hugging Face's rope_type names onto RopeType (io/rope_config.hpp). Not a
// public header.
#pragma once

#include "ropescale/detail/internal_header_check.hpp"

#include "ropescale/error.hpp"
#include "ropescale/io/rope_config.hpp"

#include <Eigen/Core>
#include <cmath>
#include <cstdint>
#include <limits>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <utility>

namespace ropescale {

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
  return Status(ErrorCode::kParseError, format_argument(path), json_excerpt(v), rule);
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

// Reads the numbers of a factor list; their count and values are the generators' to check.
inline Status read_factor_list(const Json& v, const std::string& path, Eigen::ArrayXd* out) {
  if (!v.is_array()) return json_type_error(path, v, "must be an array of numbers");
  Eigen::ArrayXd f(static_cast<Eigen::Index>(v.size()));
  for (std::size_t i = 0; i < v.size(); ++i) {
    const std::string p = path + "[" + std::to_string(i) + "]";
    double x = 0;
    ROPESCALE_RETURN_IF_ERROR(read_double(v[i], p, &x));
    f[static_cast<Eigen::Index>(i)] = x;
  }
  *out = std::move(f);
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
  else if (t == "xdrope" && (find_member(block, "mrope_section") != nullptr ||
                             find_member(block, "xdrope_section") != nullptr))
    *out = RopeType::kDynamic;  // HunYuanVLTextConfig: "xdrope" is dynamic (+ alpha) with sections
  else
    return make_status(ErrorCode::kUnsupported, bname + key, t,
                       "must be one of default, linear, dynamic, yarn, longrope (or su), llama3, "
                       "proportional, mrope together with mrope_section, or xdrope together with "
                       "xdrope_section");
  return Status();
}

}  // namespace detail

}  // namespace ropescale
