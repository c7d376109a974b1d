// A checker for the small subset of JSON Schema that docs/cli-schema.json uses: type (a name or
// a list of names), const, required, properties, items, allOf and $ref to "#/definitions/NAME".
// It returns one line per problem, each starting with the JSON path ("$.kinds[0].rotary_dim").
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace schema_check {

inline bool has_type(const nlohmann::json& v, const std::string& type) {
  if (type == "integer") return v.is_number_integer();
  if (type == "number") return v.is_number();
  if (type == "string") return v.is_string();
  if (type == "boolean") return v.is_boolean();
  if (type == "array") return v.is_array();
  if (type == "object") return v.is_object();
  if (type == "null") return v.is_null();
  return false;
}

inline void check_at(const nlohmann::json& v, const nlohmann::json& schema,
                     const nlohmann::json& root, const std::string& path,
                     std::vector<std::string>* errors) {
  if (schema.contains("$ref")) {
    const std::string ref = schema["$ref"].get<std::string>();
    const std::string prefix = "#/definitions/";
    if (ref.rfind(prefix, 0) != 0 || !root.at("definitions").contains(ref.substr(prefix.size()))) {
      errors->push_back(path + ": unknown $ref " + ref);
      return;
    }
    check_at(v, root["definitions"][ref.substr(prefix.size())], root, path, errors);
  }
  if (schema.contains("allOf"))
    for (const auto& s : schema["allOf"]) check_at(v, s, root, path, errors);
  if (schema.contains("const") && v != schema["const"])
    errors->push_back(path + ": " + v.dump() + " is not " + schema["const"].dump());
  if (schema.contains("type")) {
    const nlohmann::json& t = schema["type"];
    bool ok = false;
    if (t.is_string()) ok = has_type(v, t.get<std::string>());
    for (const auto& name : t.is_array() ? t : nlohmann::json::array())
      ok = ok || has_type(v, name.get<std::string>());
    if (!ok) {
      errors->push_back(path + ": " + v.dump().substr(0, 40) + " is not " + t.dump());
      return;
    }
  }
  if (v.is_object()) {
    if (schema.contains("required"))
      for (const auto& key : schema["required"])
        if (!v.contains(key.get<std::string>()))
          errors->push_back(path + ": missing " + key.dump());
    if (schema.contains("properties"))
      for (const auto& p : schema["properties"].items())
        if (v.contains(p.key()))
          check_at(v[p.key()], p.value(), root, path + "." + p.key(), errors);
  }
  if (v.is_array() && schema.contains("items"))
    for (std::size_t i = 0; i < v.size(); ++i)
      check_at(v[i], schema["items"], root, path + "[" + std::to_string(i) + "]", errors);
}

/// Problems of `v` against `schema` (whose $refs resolve in `root`); empty when it conforms.
inline std::vector<std::string> check(const nlohmann::json& v, const nlohmann::json& schema,
                                      const nlohmann::json& root) {
  std::vector<std::string> errors;
  check_at(v, schema, root, "$", &errors);
  return errors;
}

inline std::string join(const std::vector<std::string>& lines) {
  std::string out;
  for (const std::string& l : lines) out += l + "\n";
  return out;
}

}  // namespace schema_check
