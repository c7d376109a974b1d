// ropescale internal: the search checkpoint's JSON fields, both ways (space, parameters, the
// state read field by field with kParseError naming the field). io/search_checkpoint.hpp includes
// it after the types it converts (SearchSpace, SearchParams, SearchState). Not a public header.
#pragma once

#include "ropescale/detail/internal_header_check.hpp"

#include <cmath>
#include <cstdint>
#include <limits>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

namespace ropescale {

namespace detail {

// The parser returns a kParseError Status naming the field at the first problem (no exceptions,
// so it also serves callers built without them). `R` wraps each step.
inline Status checkpoint_fail(const std::string& field, const std::string& rule) {
  return Status(ErrorCode::kParseError,
                "ropescale: parse_error: search checkpoint " + field + ": " + rule);
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

inline nlohmann::json checkpoint_space_json(const SearchSpace& sp) {
  nlohmann::json j{{"head_dim", sp.spec.head_dim},
                   {"rotary_dim", sp.spec.rotary_dim},
                   {"rope_theta", sp.spec.rope_theta},
                   {"original_max_position", sp.spec.original_max_position},
                   {"scale", sp.scale},
                   {"method", to_string(sp.method)},
                   {"critical_lower", sp.critical_lower},
                   {"critical_upper", sp.critical_upper},
                   {"lower_bound", sp.lower_bound},
                   {"upper_bound", sp.upper_bound},
                   {"step", sp.step},
                   {"monotonicity", to_string(sp.monotonicity)},
                   {"attention_factor", sp.attention_factor}};
  // Proportional specs only (RopeSpec::freq_dim); other checkpoints keep their keys.
  if (sp.spec.frequency_dim() != sp.spec.rotary_dim) j["freq_dim"] = sp.spec.freq_dim;
  return j;
}

inline Status checkpoint_space_from(const nlohmann::json& j, SearchSpace* out) {
  const std::string p = "space";
  SearchSpace sp;
  ROPESCALE_RETURN_IF_ERROR(checkpoint_int(j, p, "head_dim", &sp.spec.head_dim));
  ROPESCALE_RETURN_IF_ERROR(checkpoint_int(j, p, "rotary_dim", &sp.spec.rotary_dim));
  ROPESCALE_RETURN_IF_ERROR(checkpoint_double(j, p, "rope_theta", &sp.spec.rope_theta));
  if (j.is_object() && j.contains("freq_dim"))
    ROPESCALE_RETURN_IF_ERROR(checkpoint_int(j, p, "freq_dim", &sp.spec.freq_dim));
  ROPESCALE_RETURN_IF_ERROR(
      checkpoint_int(j, p, "original_max_position", &sp.spec.original_max_position));
  ROPESCALE_RETURN_IF_ERROR(checkpoint_double(j, p, "scale", &sp.scale));
  std::string method;
  ROPESCALE_RETURN_IF_ERROR(checkpoint_string(j, p, "method", &method));
  if (method == "longrope2")
    sp.method = SearchMethod::kLongRoPE2;
  else if (method == "longrope")
    sp.method = SearchMethod::kLongRoPE;
  else
    return checkpoint_fail("space.method",
                           "must be \"longrope2\" or \"longrope\", not " + format_value(method));
  ROPESCALE_RETURN_IF_ERROR(checkpoint_int(j, p, "critical_lower", &sp.critical_lower));
  ROPESCALE_RETURN_IF_ERROR(checkpoint_int(j, p, "critical_upper", &sp.critical_upper));
  ROPESCALE_RETURN_IF_ERROR(checkpoint_double(j, p, "lower_bound", &sp.lower_bound));
  ROPESCALE_RETURN_IF_ERROR(checkpoint_double(j, p, "upper_bound", &sp.upper_bound));
  ROPESCALE_RETURN_IF_ERROR(checkpoint_double(j, p, "step", &sp.step));
  std::string mono;
  ROPESCALE_RETURN_IF_ERROR(checkpoint_string(j, p, "monotonicity", &mono));
  if (mono == "non_decreasing")
    sp.monotonicity = Monotonicity::kNonDecreasing;
  else if (mono == "strictly_increasing")
    sp.monotonicity = Monotonicity::kStrictlyIncreasing;
  else
    return checkpoint_fail(
        "space.monotonicity",
        "must be \"non_decreasing\" or \"strictly_increasing\", not " + format_value(mono));
  ROPESCALE_RETURN_IF_ERROR(checkpoint_double(j, p, "attention_factor", &sp.attention_factor));
  *out = sp;
  return Status();
}

inline nlohmann::json checkpoint_params_json(const SearchParams& pr) {
  return nlohmann::json{{"population", pr.population},
                        {"parents", pr.parents},
                        {"mutations", pr.mutations},
                        {"crossovers", pr.crossovers},
                        {"iterations", pr.iterations},
                        {"mutation_prob", pr.mutation_prob},
                        {"crossover_tries", pr.crossover_tries},
                        {"critical_mutation_prob", pr.critical_mutation_prob},
                        {"seed", pr.seed}};
}

inline Status checkpoint_params_from(const nlohmann::json& j, SearchParams* out) {
  const std::string p = "params";
  SearchParams pr;
  ROPESCALE_RETURN_IF_ERROR(checkpoint_int(j, p, "population", &pr.population));
  ROPESCALE_RETURN_IF_ERROR(checkpoint_int(j, p, "parents", &pr.parents));
  ROPESCALE_RETURN_IF_ERROR(checkpoint_int(j, p, "mutations", &pr.mutations));
  ROPESCALE_RETURN_IF_ERROR(checkpoint_int(j, p, "crossovers", &pr.crossovers));
  ROPESCALE_RETURN_IF_ERROR(checkpoint_int(j, p, "iterations", &pr.iterations));
  ROPESCALE_RETURN_IF_ERROR(checkpoint_double(j, p, "mutation_prob", &pr.mutation_prob));
  ROPESCALE_RETURN_IF_ERROR(checkpoint_int(j, p, "crossover_tries", &pr.crossover_tries));
  ROPESCALE_RETURN_IF_ERROR(
      checkpoint_double(j, p, "critical_mutation_prob", &pr.critical_mutation_prob));
  const nlohmann::json* seed = nullptr;
  ROPESCALE_RETURN_IF_ERROR(checkpoint_field(j, p, "seed", &seed));
  if (!seed->is_number_unsigned() && !(seed->is_number_integer() && seed->get<std::int64_t>() >= 0))
    return checkpoint_fail("params.seed", "must be an unsigned integer");
  pr.seed = seed->get<std::uint64_t>();
  *out = pr;
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
  if (version != kSearchCheckpointVersion)
    return checkpoint_fail(
        "checkpoint.version",
        "must be " + std::to_string(kSearchCheckpointVersion) + ", not " + std::to_string(version));
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
    const std::string name = "history[" + std::to_string(i) + "]";
    const nlohmann::json& e = (*history)[i];
    EvaluatedGenome eg;
    ROPESCALE_RETURN_IF_ERROR(checkpoint_int(e, name, "c", &eg.genome.critical_pair));
    const nlohmann::json* steps = nullptr;
    ROPESCALE_RETURN_IF_ERROR(checkpoint_field(e, name, "steps", &steps));
    if (!steps->is_array()) return checkpoint_fail(name + ".steps", "must be an array");
    eg.genome.steps.reserve(steps->size());
    for (const nlohmann::json& k : *steps) {
      if (!k.is_number_integer()) return checkpoint_fail(name + ".steps", "must hold integers");
      eg.genome.steps.push_back(k.get<std::int64_t>());
    }
    const nlohmann::json* loss = nullptr;
    ROPESCALE_RETURN_IF_ERROR(checkpoint_field(e, name, "loss", &loss));
    if (loss->is_null())
      eg.loss = std::numeric_limits<double>::infinity();
    else if (loss->is_number())
      eg.loss = loss->get<double>();
    else
      return checkpoint_fail(name + ".loss", "must be a number or null (+infinity)");
    st.history.push_back(std::move(eg));
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
