// ropescale: JSON checkpoints of the evolutionary search (search.hpp), written atomically.
//
// A search over a real model runs for hours; a checkpoint after every iteration lets it survive
// a crash, a pre-empted job or a deliberate stop. The file holds the complete SearchState
// (space, parameters, every evaluated genome with its loss, the population, the RNG state), so
//
//   EvolutionSearch search(space, params);
//   SearchResult r = run_or_resume_search(search, "search.json", fitness);
//
// started again after being killed at any point continues from the last completed iteration and
// ends with exactly the result of an uninterrupted run (the fitness being deterministic).
//
// Writing: the JSON goes to "<path>.tmp" in the same directory, is flushed (and fsync'ed on
// POSIX), then renamed over <path>, so a reader sees either the old or the new checkpoint, never
// a torn one. Reading validates everything (format tag and version, every field's type, every
// genome against the space, population indices, the RNG state) and never writes: a truncated,
// corrupt or mismatched file is refused with Error kParseError and left as it was.
//
// Format (version 1), one object:
//   {"format": "ropescale.search_checkpoint", "version": 1,
//    "space": {...}, "params": {...}, "iteration": 7, "rng_state": "...",
//    "history": [{"c": 33, "steps": [2181, 2187, ...], "loss": 3.2}, ...],   loss null = +inf
//    "population": [0, 5, ...],                                   indices into history
//    "best": {"c": 33, "loss": 3.1, "factors": [...]}}            for readers; ignored on load
// Factors are grid indices: lambda = steps[j] * space.step for pair c + j.
#pragma once

#include <cstdint>
#include <cstdio>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#if defined(__unix__) || defined(__APPLE__)
#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#endif

#include <filesystem>
#include <system_error>

#include "ropescale/error.hpp"
#include "ropescale/search.hpp"

#define ROPESCALE_INSIDE_PUBLIC_HEADER
#include "ropescale/detail/file_io.hpp"
#undef ROPESCALE_INSIDE_PUBLIC_HEADER

namespace ropescale {

inline constexpr const char* kSearchCheckpointFormat = "ropescale.search_checkpoint";
inline constexpr int kSearchCheckpointVersion = 1;

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

/// The JSON document of a state (see the format above).
inline nlohmann::json search_state_to_json(const SearchState& st) {
  nlohmann::json history = nlohmann::json::array();
  for (const EvaluatedGenome& e : st.history) {
    nlohmann::json loss = nullptr;
    if (std::isfinite(e.loss)) loss = e.loss;
    history.push_back(
        nlohmann::json{{"c", e.genome.critical_pair}, {"steps", e.genome.steps}, {"loss", loss}});
  }
  nlohmann::json j{{"format", kSearchCheckpointFormat},
                   {"version", kSearchCheckpointVersion},
                   {"space", detail::checkpoint_space_json(st.space)},
                   {"params", detail::checkpoint_params_json(st.params)},
                   {"iteration", st.iteration},
                   {"rng_state", st.rng_state},
                   {"history", std::move(history)},
                   {"population", st.population}};
  const std::int64_t best = st.population.empty() || st.history.empty() ? -1 : st.best_index();
  if (best >= 0 &&
      validate_genome(st.space, st.history[static_cast<std::size_t>(best)].genome).ok() &&
      validate(st.space).ok()) {
    const EvaluatedGenome& e = st.history[static_cast<std::size_t>(best)];
    const Eigen::ArrayXd f = genome_factors(st.space, e.genome);
    nlohmann::json loss = nullptr;
    if (std::isfinite(e.loss)) loss = e.loss;
    j["best"] = nlohmann::json{{"c", e.genome.critical_pair},
                               {"loss", loss},
                               {"factors", std::vector<double>(f.data(), f.data() + f.size())}};
  }
  return j;
}

/// Parses and validates a state from JSON; kParseError naming the field on any problem.
inline Status try_search_state_from_json(const nlohmann::json& j, SearchState* out) {
  if (out == nullptr)
    return make_status(ErrorCode::kInvalidArgument, "out", nullptr, "must not be null");
  SearchState st;
  ROPESCALE_RETURN_IF_ERROR(detail::checkpoint_state_from(j, &st));
  ROPESCALE_RETURN_IF_ERROR(validate(st));
  *out = std::move(st);
  return Status();
}

/// Loads a checkpoint file. Never modifies the file. kIoError when it cannot be read,
/// kParseError when it is not valid JSON (e.g. truncated) or not a valid search state.
inline Status try_load_search_checkpoint(const std::string& path, SearchState* out) {
  if (out == nullptr)
    return make_status(ErrorCode::kInvalidArgument, "out", nullptr, "must not be null");
  std::string text;
  ROPESCALE_RETURN_IF_ERROR(detail::read_file("checkpoint path", path, &text));
  nlohmann::json j = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded())
    return make_status(ErrorCode::kParseError, "checkpoint", path,
                       "is not valid JSON (truncated or corrupt); the file was left unchanged");
  const Status s = try_search_state_from_json(j, out);
  if (!s.ok()) return Status(ErrorCode::kParseError, s.message() + " (in " + path + ")");
  return Status();
}

inline SearchState load_search_checkpoint(const std::string& path) {
  SearchState st;
  throw_if_error(try_load_search_checkpoint(path, &st));
  return st;
}

namespace detail {

// The file a checkpoint path names: symbolic links are followed (also dangling ones), so that
// the rename replaces the link's target and the link itself survives.
inline std::string checkpoint_target(const std::string& path) {
  namespace fs = std::filesystem;
  fs::path p(path);
  std::error_code ec;
  for (int hop = 0; hop < 40 && fs::is_symlink(fs::symlink_status(p, ec)); ++hop) {
    const fs::path next = fs::read_symlink(p, ec);
    if (ec) break;
    p = next.is_absolute() ? next : p.parent_path() / next;
  }
  return p.string();
}

// fsync of the directory holding `file`, so that a completed rename survives a power loss.
inline bool sync_parent_directory(const std::string& file) {
#if defined(__unix__) || defined(__APPLE__)
  std::filesystem::path dir = std::filesystem::path(file).parent_path();
  if (dir.empty()) dir = ".";
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY);
  if (fd < 0) return false;
  const bool ok = ::fsync(fd) == 0 || errno == EINVAL;  // EINVAL: no directory sync here
  ::close(fd);
  return ok;
#else
  (void)file;
  return true;
#endif
}

}  // namespace detail

/// Writes a checkpoint atomically: "<path>.tmp" in the same directory, flushed, then renamed
/// over path, and the directory synced. A symbolic link at path keeps pointing at the file it
/// named (that file is replaced). On failure the previous file is untouched (kIoError).
inline Status try_save_search_checkpoint(const std::string& path_in, const SearchState& st) {
  if (path_in.empty())
    return make_status(ErrorCode::kInvalidArgument, "checkpoint path", path_in,
                       "must not be empty");
  const std::string path = detail::checkpoint_target(path_in);
  {
    std::error_code ec;
    if (std::filesystem::is_directory(path, ec))
      return make_status(ErrorCode::kIoError, "checkpoint path", path_in,
                         "is a directory, not a file");
  }
  const std::string text = search_state_to_json(st).dump(1) + "\n";
  const std::string tmp = path + ".tmp";
  std::FILE* f = std::fopen(tmp.c_str(), "wb");
  if (f == nullptr)
    return make_status(ErrorCode::kIoError, "checkpoint temp file", tmp,
                       "cannot be opened for writing");
  bool ok = std::fwrite(text.data(), 1, text.size(), f) == text.size();
  ok = std::fflush(f) == 0 && ok;
#if defined(__unix__) || defined(__APPLE__)
  ok = ::fsync(::fileno(f)) == 0 && ok;
#endif
  ok = std::fclose(f) == 0 && ok;
  if (!ok) {
    std::remove(tmp.c_str());
    return make_status(ErrorCode::kIoError, "checkpoint temp file", tmp, "write failed");
  }
#if defined(_WIN32)
  std::remove(path.c_str());  // rename does not replace on Windows
#endif
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    std::remove(tmp.c_str());
    return make_status(ErrorCode::kIoError, "checkpoint path", path,
                       "rename from the temp file failed");
  }
  if (!detail::sync_parent_directory(path))
    return make_status(ErrorCode::kIoError, "checkpoint path", path,
                       "written, but its directory could not be synced");
  return Status();
}

inline void save_search_checkpoint(const std::string& path, const SearchState& st) {
  throw_if_error(try_save_search_checkpoint(path, st));
}

/// Installs a checkpoint writer on `search` that writes `path` after every iteration. A failed
/// write (disk full, directory gone) does not stop the search: the previous checkpoint stays, the
/// failure is reported in SearchProgress and SearchResult (checkpoint_failures,
/// checkpoint_error), and the next iteration tries again.
inline void checkpoint_search_to(EvolutionSearch& search, const std::string& path) {
  search.set_checkpoint_writer(
      [path](const SearchState& st) { return try_save_search_checkpoint(path, st); });
}

/// Runs `search` with a checkpoint at `path` after every iteration; when `path` already exists,
/// resumes from it instead (refusing, with kParseError and without touching the file, a
/// checkpoint that is corrupt or belongs to another space or parameter set).
inline SearchResult run_or_resume_search(EvolutionSearch& search, const std::string& path,
                                         const SearchFitness& fitness,
                                         const std::vector<Genome>& seeds = {}) {
  bool exists = false;
  {
    std::ifstream probe(path, std::ios::binary);
    exists = probe.good();
  }
  checkpoint_search_to(search, path);
  if (!exists) return search.run(fitness, seeds);
  const SearchState st = load_search_checkpoint(path);
  return search.resume(st, fitness);
}

}  // namespace ropescale
