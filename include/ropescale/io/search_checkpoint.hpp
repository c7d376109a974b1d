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
// Format, one object:
//   {"format": "ropescale.search_checkpoint", "version": 1,
//    "space": {...}, "params": {...}, "iteration": 7, "rng_state": "...",
//    "history": [{"c": 33, "steps": [2181, 2187, ...], "loss": 3.2}, ...],   loss null = +inf
//    "population": [0, 5, ...],                                   indices into history
//    "best": {"c": 33, "loss": 3.1, "factors": [...]}}            for readers; ignored on load
// Factors are grid indices: lambda = steps[j] * space.step for pair c + j. The space and params
// objects hold the persisted fields of their field tables (SearchSpace::fields(),
// SearchParams::fields()). A state taken in the middle of a batch (EvolutionSearch::state()) is
// written as version 2, which adds
//    "pending": [{"id": 70, "c": 33, "steps": [...], "loss": 3.0}, {"id": 71, ...}, ...]
// (no "loss" key: not answered yet; null: +inf). Version 1 files (no pending batch) read as
// before, and a state at an iteration boundary is still written as version 1.
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

#pragma push_macro("ROPESCALE_INSIDE_PUBLIC_HEADER")
#define ROPESCALE_INSIDE_PUBLIC_HEADER
#include "ropescale/detail/atomic_file.hpp"
#include "ropescale/detail/file_io.hpp"
#include "ropescale/detail/json/checkpoint_json.hpp"
#pragma pop_macro("ROPESCALE_INSIDE_PUBLIC_HEADER")

namespace ropescale {

/// The JSON document of a state (see the format above).
inline nlohmann::json search_state_to_json(const SearchState& st) {
  auto loss_json = [](double loss) {
    return std::isfinite(loss) ? nlohmann::json(loss) : nlohmann::json(nullptr);
  };
  nlohmann::json history = nlohmann::json::array();
  for (const EvaluatedGenome& e : st.history)
    history.push_back(nlohmann::json{
        {"c", e.genome.critical_pair}, {"steps", e.genome.steps}, {"loss", loss_json(e.loss)}});
  nlohmann::json j{{"format", kSearchCheckpointFormat},
                   {"version", st.pending.empty() ? 1 : 2},
                   {"space", detail::checkpoint_space_json(st.space)},
                   {"params", detail::checkpoint_params_json(st.params)},
                   {"iteration", st.iteration},
                   {"rng_state", st.rng_state},
                   {"history", std::move(history)},
                   {"population", st.population}};
  if (!st.pending.empty()) {
    nlohmann::json pending = nlohmann::json::array();
    for (const PendingCandidate& c : st.pending) {
      nlohmann::json e{{"id", c.id}, {"c", c.genome.critical_pair}, {"steps", c.genome.steps}};
      if (c.answered) e["loss"] = loss_json(c.loss);
      pending.push_back(std::move(e));
    }
    j["pending"] = std::move(pending);
  }
  const std::int64_t best = st.population.empty() || st.history.empty() ? -1 : st.best_index();
  if (best >= 0 && validate(st.space, st.history[static_cast<std::size_t>(best)].genome).ok() &&
      validate(st.space).ok()) {
    const EvaluatedGenome& e = st.history[static_cast<std::size_t>(best)];
    const Eigen::ArrayXd f = detail::genome_table_of(st.space, e.genome).factors();
    nlohmann::json loss = nullptr;
    if (std::isfinite(e.loss)) loss = e.loss;
    j["best"] = nlohmann::json{{"c", e.genome.critical_pair},
                               {"loss", loss},
                               {"factors", std::vector<double>(f.data(), f.data() + f.size())}};
  }
  return j;
}

/// Parses and validates a state from JSON; kParseError naming the field on any problem.
inline Result<SearchState> search_state_from_json(const nlohmann::json& j) {
  SearchState st;
  ROPESCALE_RETURN_IF_ERROR(detail::checkpoint_state_from(j, &st));
  ROPESCALE_RETURN_IF_ERROR(validate(st));
  return st;
}

/// Loads a checkpoint file. Never modifies the file. kIoError when it cannot be read,
/// kParseError when it is not valid JSON (e.g. truncated) or not a valid search state.
inline Result<SearchState> load_search_checkpoint(const std::string& path) {
  std::string text;
  ROPESCALE_RETURN_IF_ERROR(detail::read_file("checkpoint path", path, &text));
  nlohmann::json j = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded())
    return make_status(ErrorCode::kParseError, "checkpoint", path,
                       "is not valid JSON (truncated or corrupt); the file was left unchanged");
  Result<SearchState> st = search_state_from_json(j);
  if (!st.ok()) return st.status().with_code(ErrorCode::kParseError).with_context("in " + path);
  return st;
}

/// Writes a checkpoint atomically: "<path>.tmp" in the same directory, flushed, then renamed
/// over path, and the directory synced. A symbolic link at path keeps pointing at the file it
/// named (that file is replaced). On failure the previous file is untouched (kIoError).
inline Status save_search_checkpoint(const std::string& path_in, const SearchState& st) {
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

/// Installs a checkpoint writer on `search` that writes `path` after every iteration. A failed
/// write (disk full, directory gone) does not stop the search: the previous checkpoint stays, the
/// failure is reported in SearchProgress and SearchResult (checkpoint_failures,
/// checkpoint_error), and the next iteration tries again.
inline void checkpoint_search_to(EvolutionSearch& search, const std::string& path) {
  search.set_checkpoint_writer(
      [path](const SearchState& st) { return save_search_checkpoint(path, st); });
}

/// Runs `search` with a checkpoint at `path` after every iteration; when `path` already exists,
/// resumes from it instead (refusing, with kParseError and without touching the file, a
/// checkpoint that is corrupt or belongs to another space or parameter set).
inline Result<SearchResult> run_or_resume_search(EvolutionSearch& search, const std::string& path,
                                                 const SearchFitness& fitness,
                                                 const std::vector<Genome>& seeds = {}) {
  bool exists = false;
  {
    std::ifstream probe(path, std::ios::binary);
    exists = probe.good();
  }
  checkpoint_search_to(search, path);
  if (!exists) return search.run(fitness, seeds);
  const Result<SearchState> st = load_search_checkpoint(path);
  if (!st.ok()) return st.status();
  return search.resume(*st, fitness);
}

}  // namespace ropescale
