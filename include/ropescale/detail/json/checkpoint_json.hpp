// ropescale internal: the search checkpoint's JSON fields, both ways (space, parameters, the
// state read field by field with kParseError naming the field).
// The types it converts (SearchSpace, SearchParams, SearchState) and the format's name and
// version are search_state.hpp's. Not a public header.
#pragma once

#include "ropescale/detail/internal_header_check.hpp"

#include "ropescale/error.hpp"
#include "ropescale/search_state.hpp"

#include "ropescale/detail/json/field_table.hpp"

#include <cmath>
#include <cstdint>
#include <limits>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

namespace ropescale {

namespace detail {

// The parser returns a kParseError Status naming the field at the first problem (no exceptions,
// so it also serves callers built without them). `R` wraps each step.
inline Status checkpoint_fail(const std::string& field, const std::string& rule) {
  return Status(ErrorCode::kParseError, "search checkpoint " + field, std::string(), rule);
}

inline Status checkpoint_field(const nlohmann::json& j, const std::string& parent, const char* name,
                               const nlohmann::json** out) {
  if (!j.is_object()) return checkpoint_fail(parent, "must be an object");
  auto it = j.find(name);
  if (it == j.end()) return checkpoint_fail(parent + "." + name, "is missing");
  *out = &*it;
  return Status();
}

inline Status checkpoint_int(const nlohmann::json& j, const std::string& parent, const char* name,
                             std::int64_t* out) {
  const nlohmann::json* v = nullptr;
  ROPESCALE_RETURN_IF_ERROR(checkpoint_field(j, parent, name, &v));
  if (!v->is_number_integer()) return checkpoint_fail(parent + "." + name, "must be an integer");
  if (v->is_number_unsigned() &&
      v->get<std::uint64_t>() >
          static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max()))
    return checkpoint_fail(parent + "." + name, "is out of range");
  *out = v->get<std::int64_t>();
  return Status();
}

inline Status checkpoint_double(const nlohmann::json& j, const std::string& parent,
                                const char* name, double* out) {
  const nlohmann::json* v = nullptr;
  ROPESCALE_RETURN_IF_ERROR(checkpoint_field(j, parent, name, &v));
  if (!v->is_number()) return checkpoint_fail(parent + "." + name, "must be a number");
  *out = v->get<double>();
  return Status();
}

inline Status checkpoint_string(const nlohmann::json& j, const std::string& parent,
                                const char* name, std::string* out) {
  const nlohmann::json* v = nullptr;
  ROPESCALE_RETURN_IF_ERROR(checkpoint_field(j, parent, name, &v));
  if (!v->is_string()) return checkpoint_fail(parent + "." + name, "must be a string");
  *out = v->get<std::string>();
  return Status();
}

// One field value, both ways. Enumerations are written as their to_string() names.
inline nlohmann::json checkpoint_value_json(SearchMethod m) { return to_string(m); }
inline nlohmann::json checkpoint_value_json(Monotonicity m) { return to_string(m); }
template <class T>
nlohmann::json checkpoint_value_json(const T& v) {
  return v;
}

inline Status checkpoint_read(const nlohmann::json& j, const std::string& p, const char* name,
                              std::int64_t* out) {
  return checkpoint_int(j, p, name, out);
}
inline Status checkpoint_read(const nlohmann::json& j, const std::string& p, const char* name,
                              double* out) {
  return checkpoint_double(j, p, name, out);
}
inline Status checkpoint_read(const nlohmann::json& j, const std::string& p, const char* name,
                              std::uint64_t* out) {
  const nlohmann::json* v = nullptr;
  ROPESCALE_RETURN_IF_ERROR(checkpoint_field(j, p, name, &v));
  if (!v->is_number_unsigned() && !(v->is_number_integer() && v->get<std::int64_t>() >= 0))
    return checkpoint_fail(p + "." + name, "must be an unsigned integer");
  *out = v->get<std::uint64_t>();
  return Status();
}
inline Status checkpoint_read(const nlohmann::json& j, const std::string& p, const char* name,
                              int* out) {
  std::int64_t v = 0;
  ROPESCALE_RETURN_IF_ERROR(checkpoint_int(j, p, name, &v));
  if (v < std::numeric_limits<int>::min() || v > std::numeric_limits<int>::max())
    return checkpoint_fail(p + "." + name, "is out of range");
  *out = static_cast<int>(v);
  return Status();
}
inline Status checkpoint_read(const nlohmann::json& j, const std::string& p, const char* name,
                              bool* out) {
  const nlohmann::json* v = nullptr;
  ROPESCALE_RETURN_IF_ERROR(checkpoint_field(j, p, name, &v));
  if (!v->is_boolean()) return checkpoint_fail(p + "." + name, "must be true or false");
  *out = v->get<bool>();
  return Status();
}
inline Status checkpoint_read(const nlohmann::json& j, const std::string& p, const char* name,
                              SearchMethod* out) {
  std::string v;
  ROPESCALE_RETURN_IF_ERROR(checkpoint_string(j, p, name, &v));
  if (v == "longrope2")
    *out = SearchMethod::kLongRoPE2;
  else if (v == "longrope")
    *out = SearchMethod::kLongRoPE;
  else
    return checkpoint_fail(p + "." + name,
                           "must be \"longrope2\" or \"longrope\", not " + format_value(v));
  return Status();
}
inline Status checkpoint_read(const nlohmann::json& j, const std::string& p, const char* name,
                              Monotonicity* out) {
  std::string v;
  ROPESCALE_RETURN_IF_ERROR(checkpoint_string(j, p, name, &v));
  if (v == "non_decreasing")
    *out = Monotonicity::kNonDecreasing;
  else if (v == "strictly_increasing")
    *out = Monotonicity::kStrictlyIncreasing;
  else
    return checkpoint_fail(
        p + "." + name,
        "must be \"non_decreasing\" or \"strictly_increasing\", not " + format_value(v));
  return Status();
}

// The persisted fields of a struct's field table (field_table.hpp) as one JSON object.
template <class S>
nlohmann::json checkpoint_fields_json(const S& s) {
  nlohmann::json j = nlohmann::json::object();
  for_each_field(S::fields(), [&](const auto& f) {
    if (!f.has(kFieldPersisted) || (f.has(kFieldOptional) && f.omit(s))) return;
    j[f.name] = checkpoint_value_json(f.get(s));
  });
  return j;
}

// Reads the persisted fields of S from the object j (named `parent` in messages) over defaults.
template <class S>
Status checkpoint_fields_from(const nlohmann::json& j, const std::string& parent, S* out) {
  if (!j.is_object()) return checkpoint_fail(parent, "must be an object");
  S s;
  Status status;
  for_each_field(S::fields(), [&](const auto& f) {
    if (!status.ok() || !f.has(kFieldPersisted)) return;
    if (f.has(kFieldOptional) && !j.contains(f.name)) return;
    typename std::decay_t<decltype(f)>::value_type v{};
    status = checkpoint_read(j, parent, f.name, &v);
    if (status.ok()) f.set(s, v);
  });
  if (status.ok()) *out = s;
  return status;
}

inline nlohmann::json checkpoint_space_json(const SearchSpace& sp) {
  return checkpoint_fields_json(sp);
}
inline Status checkpoint_space_from(const nlohmann::json& j, SearchSpace* out) {
  return checkpoint_fields_from(j, "space", out);
}
inline nlohmann::json checkpoint_params_json(const SearchParams& pr) {
  return checkpoint_fields_json(pr);
}
inline Status checkpoint_params_from(const nlohmann::json& j, SearchParams* out) {
  return checkpoint_fields_from(j, "params", out);
}

// {"c": .., "steps": [..], "loss": number | null (+inf)}; the loss may be absent when optional
// (*answered then false).
inline Status checkpoint_genome_from(const nlohmann::json& e, const std::string& name, Genome* g,
                                     double* loss_out, bool loss_optional, bool* answered) {
  ROPESCALE_RETURN_IF_ERROR(checkpoint_int(e, name, "c", &g->critical_pair));
  const nlohmann::json* steps = nullptr;
  ROPESCALE_RETURN_IF_ERROR(checkpoint_field(e, name, "steps", &steps));
  if (!steps->is_array()) return checkpoint_fail(name + ".steps", "must be an array");
  g->steps.reserve(steps->size());
  for (const nlohmann::json& k : *steps) {
    if (!k.is_number_integer()) return checkpoint_fail(name + ".steps", "must hold integers");
    g->steps.push_back(k.get<std::int64_t>());
  }
  if (loss_optional && !e.contains("loss")) {
    *answered = false;
    return Status();
  }
  const nlohmann::json* loss = nullptr;
  ROPESCALE_RETURN_IF_ERROR(checkpoint_field(e, name, "loss", &loss));
  if (loss->is_null())
    *loss_out = std::numeric_limits<double>::infinity();
  else if (loss->is_number())
    *loss_out = loss->get<double>();
  else
    return checkpoint_fail(name + ".loss", "must be a number or null (+infinity)");
  if (answered != nullptr) *answered = true;
  return Status();
}

inline Status checkpoint_state_from(const nlohmann::json& j, SearchState* out) {
  if (!j.is_object()) return checkpoint_fail("checkpoint", "must be a JSON object");
  const std::string root = "checkpoint";
  std::string format;
  ROPESCALE_RETURN_IF_ERROR(checkpoint_string(j, root, "format", &format));
  if (format != kSearchCheckpointFormat)
    return checkpoint_fail(
        "checkpoint.format",
        "must be \"" + std::string(kSearchCheckpointFormat) + "\", not " + format_value(format));
  std::int64_t version = 0;
  ROPESCALE_RETURN_IF_ERROR(checkpoint_int(j, root, "version", &version));
  if (version < 1 || version > kSearchCheckpointVersion)
    return checkpoint_fail("checkpoint.version", "must be 1 to " +
                                                     std::to_string(kSearchCheckpointVersion) +
                                                     ", not " + std::to_string(version));
  SearchState st;
  const nlohmann::json* field = nullptr;
  ROPESCALE_RETURN_IF_ERROR(checkpoint_field(j, root, "space", &field));
  ROPESCALE_RETURN_IF_ERROR(checkpoint_space_from(*field, &st.space));
  ROPESCALE_RETURN_IF_ERROR(checkpoint_field(j, root, "params", &field));
  ROPESCALE_RETURN_IF_ERROR(checkpoint_params_from(*field, &st.params));
  ROPESCALE_RETURN_IF_ERROR(checkpoint_int(j, root, "iteration", &st.iteration));
  ROPESCALE_RETURN_IF_ERROR(checkpoint_string(j, root, "rng_state", &st.rng_state));
  const nlohmann::json* history = nullptr;
  ROPESCALE_RETURN_IF_ERROR(checkpoint_field(j, root, "history", &history));
  if (!history->is_array()) return checkpoint_fail("checkpoint.history", "must be an array");
  st.history.reserve(history->size());
  for (std::size_t i = 0; i < history->size(); ++i) {
    EvaluatedGenome eg;
    ROPESCALE_RETURN_IF_ERROR(
        checkpoint_genome_from((*history)[i], "history[" + std::to_string(i) + "]", &eg.genome,
                               &eg.loss, /*loss_optional=*/false, nullptr));
    st.history.push_back(std::move(eg));
  }
  if (j.contains("pending")) {
    const nlohmann::json& pending = j["pending"];
    if (version < 2) return checkpoint_fail("checkpoint.pending", "needs version 2");
    if (!pending.is_array()) return checkpoint_fail("checkpoint.pending", "must be an array");
    for (std::size_t i = 0; i < pending.size(); ++i) {
      const std::string name = "pending[" + std::to_string(i) + "]";
      PendingCandidate c;
      ROPESCALE_RETURN_IF_ERROR(checkpoint_int(pending[i], name, "id", &c.id));
      ROPESCALE_RETURN_IF_ERROR(checkpoint_genome_from(pending[i], name, &c.genome, &c.loss,
                                                       /*loss_optional=*/true, &c.answered));
      st.pending.push_back(std::move(c));
    }
  }
  const nlohmann::json* pop = nullptr;
  ROPESCALE_RETURN_IF_ERROR(checkpoint_field(j, root, "population", &pop));
  if (!pop->is_array()) return checkpoint_fail("checkpoint.population", "must be an array");
  for (const nlohmann::json& k : *pop) {
    if (!k.is_number_integer())
      return checkpoint_fail("checkpoint.population", "must hold integers");
    st.population.push_back(k.get<std::int64_t>());
  }
  *out = std::move(st);
  return Status();
}

}  // namespace detail

}  // namespace ropescale
