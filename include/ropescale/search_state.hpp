// ropescale: what defines a factor search and where it stands: SearchParams (the evolution's
// settings), SearchState (everything a resume needs, what io/search_checkpoint.hpp writes),
// SearchProgress (after every iteration) and SearchResult (the outcome). The algorithm is in
// search.hpp.
#pragma once

#include <Eigen/Core>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "ropescale/error.hpp"
#include "ropescale/factors.hpp"
#include "ropescale/search_space.hpp"

namespace ropescale {

/// The search checkpoint's format name (io/search_checkpoint.hpp describes the format).
inline constexpr const char* kSearchCheckpointFormat = "ropescale.search_checkpoint";
/// The newest checkpoint version (2: a pending batch); version 1 files are read too.
inline constexpr int kSearchCheckpointVersion = 2;

/// Parameters of the evolution. The first group defines the search (a checkpoint must match it);
/// the second only says how to run it and may change between a run and its resume.
struct SearchParams {
  std::int64_t population = 64;         ///< size of the initial population P0 (LongRoPE2 App. B)
  std::int64_t parents = 32;            ///< survivors per iteration (elitist top-k)
  std::int64_t mutations = 16;          ///< mutants per iteration
  std::int64_t crossovers = 16;         ///< crossover children per iteration
  std::int64_t iterations = 40;         ///< evolution iterations after P0 (may grow on resume)
  double mutation_prob = 0.3;           ///< per-gene resampling probability
  std::int64_t crossover_tries = 20;    ///< crossover passes before falling back to a mutation
  double critical_mutation_prob = 0.1;  ///< chance that a mutation moves c by one (0: paper)
  std::uint64_t seed = 0;               ///< everything random derives from it

  int threads = 1;           ///< evaluation threads; 0 = hardware concurrency
  bool thread_safe = false;  ///< the fitness may run concurrently; otherwise threads is ignored
  std::int64_t max_evaluations = 0;  ///< stop before an iteration that would exceed it; 0 = none
  double max_seconds = 0.0;          ///< stop at the first iteration boundary past it; 0 = none

  /// The field table (detail/json/field_table.hpp): equality, mismatch() and the
  /// checkpoint JSON are derived from it. iterations is written but may grow on resume; the
  /// run settings are neither written nor compared by resume.
  static auto fields() {
    using detail::kFieldDefining;
    using detail::kFieldPersisted;
    using detail::member_field;
    constexpr unsigned kAll = kFieldPersisted | kFieldDefining;
    return std::make_tuple(
        member_field("population", &SearchParams::population, kAll),
        member_field("parents", &SearchParams::parents, kAll),
        member_field("mutations", &SearchParams::mutations, kAll),
        member_field("crossovers", &SearchParams::crossovers, kAll),
        member_field("iterations", &SearchParams::iterations, kFieldPersisted),
        member_field("mutation_prob", &SearchParams::mutation_prob, kAll),
        member_field("crossover_tries", &SearchParams::crossover_tries, kAll),
        member_field("critical_mutation_prob", &SearchParams::critical_mutation_prob, kAll),
        member_field("seed", &SearchParams::seed, kAll),
        member_field("threads", &SearchParams::threads, 0u),
        member_field("thread_safe", &SearchParams::thread_safe, 0u),
        member_field("max_evaluations", &SearchParams::max_evaluations, 0u),
        member_field("max_seconds", &SearchParams::max_seconds, 0u));
  }
};

inline bool operator==(const SearchParams& a, const SearchParams& b) {
  return detail::fields_equal(a, b);
}
inline bool operator!=(const SearchParams& a, const SearchParams& b) { return !(a == b); }

/// Largest population, parents, mutations, crossovers and crossover_tries a search accepts
/// (LongRoPE2 uses 64 / 32 / 16 / 16): every count and their sums stay far from overflow.
inline constexpr std::int64_t kMaxSearchCount = std::int64_t{1} << 20;
/// Most iterations a search (or a checkpoint) may hold.
inline constexpr std::int64_t kMaxSearchIterations = std::int64_t{1} << 30;

/// Checks the parameters: counts >= 1 (mutations, crossovers >= 0 with a positive sum) and
/// <= kMaxSearchCount, parents <= population, iterations <= kMaxSearchIterations, probabilities
/// in range, threads >= 0, limits >= 0.
inline Status validate(const SearchParams& p) {
  auto positive = [](const char* name, std::int64_t v) {
    return v >= 1 ? Status() : make_status(ErrorCode::kInvalidArgument, name, v, "must be >= 1");
  };
  auto bounded = [](const char* name, std::int64_t v) {
    return v <= kMaxSearchCount
               ? Status()
               : make_status(ErrorCode::kInvalidArgument, name, v, "must be <= 2^20");
  };
  ROPESCALE_RETURN_IF_ERROR(positive("params.population", p.population));
  ROPESCALE_RETURN_IF_ERROR(positive("params.parents", p.parents));
  ROPESCALE_RETURN_IF_ERROR(positive("params.crossover_tries", p.crossover_tries));
  ROPESCALE_RETURN_IF_ERROR(bounded("params.population", p.population));
  ROPESCALE_RETURN_IF_ERROR(bounded("params.mutations", p.mutations));
  ROPESCALE_RETURN_IF_ERROR(bounded("params.crossovers", p.crossovers));
  ROPESCALE_RETURN_IF_ERROR(bounded("params.crossover_tries", p.crossover_tries));
  if (p.iterations > kMaxSearchIterations)
    return make_status(ErrorCode::kInvalidArgument, "params.iterations", p.iterations,
                       "must be <= 2^30");
  if (p.parents > p.population)
    return make_status(ErrorCode::kInvalidArgument, "params.parents", p.parents,
                       "must be <= population (" + std::to_string(p.population) + ")");
  if (p.mutations < 0)
    return make_status(ErrorCode::kInvalidArgument, "params.mutations", p.mutations,
                       "must be >= 0");
  if (p.crossovers < 0)
    return make_status(ErrorCode::kInvalidArgument, "params.crossovers", p.crossovers,
                       "must be >= 0");
  if (p.mutations + p.crossovers < 1)
    return make_status(ErrorCode::kInvalidArgument, "params.mutations + params.crossovers",
                       p.mutations + p.crossovers, "must be >= 1");
  if (p.iterations < 0)
    return make_status(ErrorCode::kInvalidArgument, "params.iterations", p.iterations,
                       "must be >= 0");
  if (!(p.mutation_prob > 0.0 && p.mutation_prob <= 1.0))
    return make_status(ErrorCode::kInvalidArgument, "params.mutation_prob", p.mutation_prob,
                       "must be in (0, 1]");
  if (!(p.critical_mutation_prob >= 0.0 && p.critical_mutation_prob <= 1.0))
    return make_status(ErrorCode::kInvalidArgument, "params.critical_mutation_prob",
                       p.critical_mutation_prob, "must be in [0, 1]");
  if (p.threads < 0)
    return make_status(ErrorCode::kInvalidArgument, "params.threads", p.threads, "must be >= 0");
  if (p.threads > 1024)
    return make_status(ErrorCode::kInvalidArgument, "params.threads", p.threads, "must be <= 1024");
  if (p.max_evaluations < 0)
    return make_status(ErrorCode::kInvalidArgument, "params.max_evaluations", p.max_evaluations,
                       "must be >= 0 (0: no limit)");
  if (!std::isfinite(p.max_seconds) || p.max_seconds < 0.0)
    return make_status(ErrorCode::kInvalidArgument, "params.max_seconds", p.max_seconds,
                       "must be finite and >= 0 (0: no limit)");
  return Status();
}

/// "name (a vs b)" for the first search-defining field in which two parameter sets differ (""
/// when none), from the field table: iterations, threads, thread_safe and the stop limits are not
/// search-defining.
inline std::string mismatch(const SearchParams& a, const SearchParams& b) {
  return detail::first_field_mismatch(a, b, detail::kFieldDefining);
}

/// One evaluation: the genome and its loss (+infinity for a non-finite fitness value).
struct EvaluatedGenome {
  Genome genome;
  double loss = 0.0;
};

/// A candidate handed out by EvolutionSearch::ask() and not yet part of the history: its id is
/// the history index it will take; `answered` once tell() gave its loss.
struct PendingCandidate {
  std::int64_t id = 0;
  Genome genome;
  bool answered = false;
  double loss = 0.0;  ///< valid when answered (+infinity for a non-finite loss)
};

/// Everything needed to continue a search exactly: at an iteration boundary (pending empty; what
/// the checkpoint callbacks receive) or in the middle of a batch (EvolutionSearch::state()).
struct SearchState {
  SearchSpace space;
  SearchParams params;
  std::int64_t iteration = 0;            ///< completed iterations (0: P0 evaluated)
  std::vector<EvaluatedGenome> history;  ///< every evaluation, in evaluation order
  std::vector<std::int64_t> population;  ///< current population: indices into history
  std::string rng_state;                 ///< std::mt19937_64 written with operator<<
  /// The batch handed out and not yet complete, ids evaluations() + k; empty at a boundary.
  /// Before the initial population is complete, history and population are empty.
  std::vector<PendingCandidate> pending;

  std::int64_t evaluations() const noexcept { return static_cast<std::int64_t>(history.size()); }

  /// Index into history of the best member of the population (lowest loss, then earliest).
  std::int64_t best_index() const {
    std::int64_t best = -1;
    for (std::int64_t idx : population)
      if (best < 0 ||
          history[static_cast<std::size_t>(idx)].loss <
              history[static_cast<std::size_t>(best)].loss ||
          (history[static_cast<std::size_t>(idx)].loss ==
               history[static_cast<std::size_t>(best)].loss &&
           idx < best))
        best = idx;
    return best;
  }
};

/// Checks a state for internal consistency: valid space and params, every history and pending
/// genome valid and distinct, losses not NaN, pending ids consecutive after the history,
/// population indices distinct and in range, parseable RNG state.
/// Error code kParseError: a state comes from a checkpoint.
inline Status validate(const SearchState& st) {
  auto bad = [](const std::string& what, const auto& value, const std::string& rule) {
    return make_status(ErrorCode::kParseError, "search state " + what, value, rule);
  };
  Status s = validate(st.space);
  if (!s.ok()) return s.with_code(ErrorCode::kParseError);
  s = validate(st.params);
  if (!s.ok()) return s.with_code(ErrorCode::kParseError);
  if (st.iteration < 0) return bad("iteration", st.iteration, "must be >= 0");
  if (st.iteration > kMaxSearchIterations)
    return bad("iteration", st.iteration, "must be <= 2^30 (kMaxSearchIterations)");
  const bool before_p0 = st.history.empty();
  if (before_p0 && st.pending.empty())
    return bad("history.size()", 0, "must be > 0 (or the initial population pending)");
  if (before_p0 && st.iteration != 0)
    return bad("iteration", st.iteration, "must be 0 before the initial population is complete");
  std::set<Genome> seen;
  for (std::size_t i = 0; i < st.history.size(); ++i) {
    const EvaluatedGenome& e = st.history[i];
    s = validate(st.space, e.genome);
    if (!s.ok())
      return s.with_code(ErrorCode::kParseError)
          .with_context("search state history[" + std::to_string(i) + "]");
    if (std::isnan(e.loss) || e.loss == -std::numeric_limits<double>::infinity())
      return bad("history[" + std::to_string(i) + "].loss", e.loss,
                 "must be a number or +infinity");
    if (!seen.insert(e.genome).second)
      return bad("history[" + std::to_string(i) + "]", "duplicate",
                 "every genome is evaluated once");
  }
  for (std::size_t i = 0; i < st.pending.size(); ++i) {
    const PendingCandidate& c = st.pending[i];
    const std::string name = "pending[" + std::to_string(i) + "]";
    const std::int64_t want = st.evaluations() + static_cast<std::int64_t>(i);
    if (c.id != want)
      return bad(name + ".id", c.id,
                 "must be " + std::to_string(want) + " (history size + position in the batch)");
    s = validate(st.space, c.genome);
    if (!s.ok()) return s.with_code(ErrorCode::kParseError).with_context("search state " + name);
    if (c.answered && (std::isnan(c.loss) || c.loss == -std::numeric_limits<double>::infinity()))
      return bad(name + ".loss", c.loss, "must be a number or +infinity");
    if (!seen.insert(c.genome).second)
      return bad(name, "duplicate", "every genome is evaluated once");
  }
  if (before_p0) {
    if (!st.population.empty())
      return bad("population.size()", static_cast<std::int64_t>(st.population.size()),
                 "must be 0 before the initial population is complete");
  } else if (st.population.empty()) {
    return bad("population.size()", 0, "must be > 0");
  }
  std::set<std::int64_t> members;
  for (std::size_t i = 0; i < st.population.size(); ++i) {
    const std::int64_t idx = st.population[i];
    if (idx < 0 || idx >= st.evaluations())
      return bad("population[" + std::to_string(i) + "]", idx,
                 "must index history [0, " + std::to_string(st.evaluations()) + ")");
    if (!members.insert(idx).second)
      return bad("population[" + std::to_string(i) + "]", idx, "must not repeat");
  }
  std::mt19937_64 rng;
  std::istringstream in(st.rng_state);
  in >> rng;
  if (in.fail()) return bad("rng_state", "<unreadable>", "must be a std::mt19937_64 state");
  return Status();
}

/// Why a search stopped.
enum class StopReason {
  kCompleted,       ///< all iterations done
  kMaxEvaluations,  ///< the next iteration would exceed params.max_evaluations
  kMaxSeconds,      ///< params.max_seconds elapsed
  kCallback,        ///< the stop callback asked to stop
  kExhausted,       ///< no new valid genome could be generated
};

inline const char* to_string(StopReason r) noexcept {
  switch (r) {
    case StopReason::kCompleted:
      return "completed";
    case StopReason::kMaxEvaluations:
      return "max_evaluations";
    case StopReason::kMaxSeconds:
      return "max_seconds";
    case StopReason::kCallback:
      return "callback";
    case StopReason::kExhausted:
      return "exhausted";
  }
  return "unknown";
}

/// Reported after every iteration.
struct SearchProgress {
  std::int64_t iteration = 0;            ///< completed iterations (0: P0 evaluated)
  std::int64_t evaluations = 0;          ///< total evaluations, including earlier sessions
  double best_loss = 0.0;                ///< best loss so far
  double evaluations_per_second = 0;     ///< this session's rate
  double elapsed_seconds = 0.0;          ///< this session's wall time
  const Genome* best = nullptr;          ///< best genome so far (valid during the callback)
  std::int64_t checkpoint_failures = 0;  ///< failed checkpoint writes in this session
  Status checkpoint_error;               ///< the last failure (ok when none)
};

/// The outcome of run() / resume(). It carries what the search knows about its table (the
/// critical pair, the spec, the target length), so exporting it needs nothing else:
/// to_hf_config(result) in io/hf_export.hpp.
struct SearchResult {
  Genome best;  ///< lowest-loss genome (c = best.critical_pair)
  double best_loss = 0.0;
  FactorTable table;               ///< genome_table(space, best)
  std::int64_t critical_pair = 0;  ///< c of the best genome (0 in LongRoPE v1 mode)
  RopeSpec spec;                   ///< the model's RoPE before rescaling (state.space.spec)
  std::int64_t target_length = 0;  ///< round(space.scale * spec.original_max_position)
  std::int64_t iterations = 0;
  std::int64_t evaluations = 0;
  StopReason stop_reason = StopReason::kCompleted;
  SearchState state;                     ///< the final state (resume() from it to continue)
  std::int64_t checkpoint_failures = 0;  ///< checkpoint writes that failed (the search went on)
  Status checkpoint_error;               ///< the last such failure (ok when none)
};

}  // namespace ropescale
