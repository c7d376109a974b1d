// ropescale: evolutionary search for rescale factors (LongRoPE2's search space, LongRoPE v1's).
//
// LongRoPE2 (arXiv 2502.20082, sec. 3.2, Alg. 1-2, App. B) finds a model's rescale factors by an
// evolutionary search whose fitness is a perplexity measured with the model itself. The space and
// the genome (c and the searched factors above it) are in search_space.hpp; the parameters, the
// resumable state and the result in search_state.hpp; this header is the algorithm (and includes
// both, so it stays the one include a search needs).
//
// The loop (LongRoPE v1 / LongRoPE2 reference code, population 64, 32 parents, 16 mutations and 16
// crossovers per iteration, mutation probability 0.3, 40 iterations):
//   P0    for each c in [critical_lower, critical_upper]: one flat individual, lambda = a random
//         integer in [lower_bound, upper_bound] above c (Alg. 1); then any seed genomes; then
//         mutants (individual k mutated from individual k - n0) until the population is full.
//   loop  parents = the `parents` lowest losses (elitist; ties by evaluation order); children =
//         `mutations` mutants of uniformly drawn parents and `crossovers` crossovers of two
//         distinct parents; population = parents + children.
//   mutation   per searched gene in order, with probability mutation_prob, resample uniformly
//              on the grid between its current neighbours (the first gene's left neighbour is the
//              anchored lambda_{c-1}, clamped to the lower bound); repeated, up to 64 passes,
//              until the child is new. Two departures from the authors' code, both measured on
//              synthetic fitnesses with a known optimum: (1) the last gene, which has no right
//              neighbour, gets a mirrored one, 2 lambda_last - lambda_prev (the upper bound
//              while the two coincide), where the code uses prev + 4 or the upper bound; a range
//              that shrinks with the local spacing is what lets it settle on the grid. (2) With
//              critical_mutation_prob > 0 (default 0.1) a mutation moves c by one, the new or
//              dropped gene continuing the anchored curve. The paper's Alg. 2 never mutates c,
//              which is then only inherited from P0 (set 0 for that): on LLaMA3-8B's space with
//              the released list as hidden optimum, 0.1 recovered c = 33 in 6 of 10 seeds and
//              0 in 3 of 10, at half the final loss.
//   crossover  from the better parent, up to crossover_tries passes: each gene, with probability
//              mutation_prob, takes the other parent's gene with probability 1/2; the first new
//              valid state is the child; failing that, the better parent is mutated instead.
// The LongRoPE (v1) mode (arXiv 2402.13753, Table 4) searches every pair in [1, 1.25 s] with no
// anchor (c = 0).
//
// Fitness is any callable FactorTable -> loss (lower is better), e.g. the needle-driven
// perplexity of needle.hpp computed with the host's model. Non-finite losses count as +infinity.
// With SearchParams::thread_safe the candidates of one iteration are evaluated on a small thread
// pool. Every random number is drawn on the calling thread, candidates are generated before any of
// them is evaluated, and results are merged in generation order, so the search is a pure function
// of (space, params, seeds, fitness) whatever the number of threads.
//
// After every iteration (iteration 0 is the evaluated initial population) the full SearchState is
// handed to the checkpoint callback; io/search_checkpoint.hpp writes it to a JSON file atomically.
// resume(state, fitness) continues exactly where the state left off, so a search killed at any
// point and resumed from its last checkpoint ends with the same result as one never interrupted.
//
// Minimal use:
//
//   auto space = ropescale::SearchSpace::longrope2(spec, 131072);   // s = 32 for a 4k model
//   ropescale::EvolutionSearch search(space, ropescale::SearchParams{});
//   ropescale::SearchResult r = search.run([&](const ropescale::FactorTable& t) {
//     return needle_perplexity_with_my_model(t);                     // lower is better
//   });
//   // r.table: the best factor table, r.best.critical_pair: c, r.best_loss: its loss
#pragma once

#include <Eigen/Core>
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <exception>
#include <functional>
#include <limits>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "ropescale/error.hpp"
#include "ropescale/factors.hpp"
#include "ropescale/search_space.hpp"
#include "ropescale/search_state.hpp"

#define ROPESCALE_INSIDE_PUBLIC_HEADER
#include "ropescale/detail/random.hpp"
#include "ropescale/detail/thread_pool.hpp"
#undef ROPESCALE_INSIDE_PUBLIC_HEADER

namespace ropescale {

/// Fitness: a candidate table -> loss, lower is better.
using SearchFitness = std::function<double(const FactorTable&)>;

namespace detail {

// lambda_c^((c-1)/c) as a grid index rounded up (the first gene's left neighbour).
inline std::int64_t anchored_left_grid(const SearchSpace& sp, std::int64_t c, std::int64_t k0) {
  const double anchor = sp.grid_value(k0);
  const double left = std::pow(anchor, static_cast<double>(c - 1) / static_cast<double>(c));
  return static_cast<std::int64_t>(std::ceil(left / sp.step - 1e-9));
}

}  // namespace detail

/// The evolutionary search. Construct with a space and parameters, optionally install callbacks,
/// then run() or resume(). Each run()/resume() call is independent; the object holds no search
/// state between calls (the SearchState does).
class EvolutionSearch {
 public:
  /// Throws Error (kInvalidArgument) on an invalid space or parameters.
  EvolutionSearch(SearchSpace space, SearchParams params)
      : space_(std::move(space)), params_(params) {
    throw_if_error(validate(space_));
    throw_if_error(validate(params_));
  }

  const SearchSpace& space() const noexcept { return space_; }
  const SearchParams& params() const noexcept { return params_; }

  /// Called after every iteration with the complete state, before the progress and stop
  /// callbacks: the place to write a checkpoint (see save_search_checkpoint).
  void set_checkpoint_callback(std::function<void(const SearchState&)> fn) {
    checkpoint_ = std::move(fn);
  }
  /// Like the checkpoint callback, for a writer that reports failure as a Status (see
  /// checkpoint_search_to): a failed write does not stop the search; it is counted in
  /// SearchProgress / SearchResult (checkpoint_failures, checkpoint_error) and the next iteration
  /// tries again. Called after the checkpoint callback.
  void set_checkpoint_writer(std::function<Status(const SearchState&)> fn) {
    writer_ = std::move(fn);
  }
  /// Called after every iteration with the progress.
  void set_progress_callback(std::function<void(const SearchProgress&)> fn) {
    progress_ = std::move(fn);
  }
  /// Called after every iteration; returning true stops the search at that boundary.
  void set_stop_callback(std::function<bool(const SearchProgress&)> fn) { stop_ = std::move(fn); }

  /// Runs the search from scratch. `seeds` join the initial population (after the flat
  /// individuals; duplicates are skipped); each must satisfy validate(space, genome), e.g. from
  /// project_to_space(). Exceptions from the fitness propagate (the last checkpoint stays valid).
  SearchResult run(const SearchFitness& fitness, const std::vector<Genome>& seeds = {}) {
    check_fitness(fitness);
    for (std::size_t i = 0; i < seeds.size(); ++i) {
      const Status s = validate(space_, seeds[i]);
      if (!s.ok())
        throw_if_error(Status(s.code(), s.message() + " (seeds[" + std::to_string(i) + "])"));
    }
    Session session(*this, fitness);
    session.rng.seed(params_.seed);
    session.state.space = space_;
    session.state.params = params_;
    session.initial_population(seeds);
    return session.loop();
  }

  /// Continues from a state (e.g. load_search_checkpoint()). The state's space and
  /// search-defining parameters must equal this search's (else Error kParseError naming the
  /// field); params.iterations may be larger than the state's, to extend a finished search.
  SearchResult resume(const SearchState& state, const SearchFitness& fitness) {
    check_fitness(fitness);
    throw_if_error(validate(state));
    const std::string space_diff = search_space_mismatch(state.space, space_);
    if (!space_diff.empty())
      throw_if_error(make_status(ErrorCode::kParseError, "checkpoint space", space_diff,
                                 "does not match the search's space (checkpoint vs search)"));
    const std::string params_diff = search_params_mismatch(state.params, params_);
    if (!params_diff.empty())
      throw_if_error(make_status(ErrorCode::kParseError, "checkpoint params", params_diff,
                                 "does not match the search's parameters (checkpoint vs search)"));
    Session session(*this, fitness);
    session.state = state;
    session.state.params = params_;
    std::istringstream in(state.rng_state);
    in >> session.rng;
    for (const EvaluatedGenome& e : state.history) session.seen.insert(e.genome);
    return session.loop();
  }

 private:
  static void check_fitness(const SearchFitness& fitness) {
    if (!fitness)
      throw_if_error(make_status(ErrorCode::kInvalidArgument, "fitness", "empty",
                                 "must be a callable FactorTable -> loss"));
  }

  // One run()/resume() call.
  struct Session {
    Session(EvolutionSearch& s, const SearchFitness& f)
        : owner(s),
          sp(s.space_),
          p(s.params_),
          fitness(f),
          pool(p.thread_safe
                   ? (p.threads == 0
                          ? std::max(1, static_cast<int>(std::thread::hardware_concurrency()))
                          : p.threads)
                   : 1),
          start(std::chrono::steady_clock::now()) {}

    EvolutionSearch& owner;
    const SearchSpace& sp;
    const SearchParams& p;
    const SearchFitness& fitness;
    detail::ThreadPool pool;
    std::chrono::steady_clock::time_point start;
    std::mt19937_64 rng;
    SearchState state;
    std::set<Genome> seen;  // evaluated or generated
    std::int64_t session_evaluations = 0;
    std::int64_t checkpoint_failures = 0;  // failed writer calls
    Status checkpoint_error;
    bool exhausted = false;

    double elapsed() const {
      return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    }

    // Resamples g.steps[j] uniformly on the grid between its current neighbours.
    void resample_gene(Genome& g, std::size_t j) {
      const bool strict = sp.monotonicity == Monotonicity::kStrictlyIncreasing;
      const std::size_t n = g.steps.size();
      std::int64_t lo, hi;
      if (j == 0) {
        lo = sp.grid_lo();
        if (g.critical_pair > 0)
          lo = std::max(lo, detail::anchored_left_grid(sp, g.critical_pair, g.steps[0]));
      } else {
        lo = g.steps[j - 1] + (strict ? 1 : 0);
      }
      if (j + 1 < n) {
        hi = g.steps[j + 1] - (strict ? 1 : 0);
      } else {
        // The last gene has no right neighbour: mirror the left one around the current value,
        // so that its range, like every interior gene's, scales with the local spacing; the
        // whole upper range while the two coincide.
        hi = sp.grid_hi();
        if (j > 0 && g.steps[j] > g.steps[j - 1])
          hi = std::min(hi, 2 * g.steps[j] - g.steps[j - 1]);
      }
      if (hi <= lo) return;  // only the current value fits (it always does)
      g.steps[j] = lo + static_cast<std::int64_t>(
                            detail::uniform_index(rng, static_cast<std::uint64_t>(hi - lo + 1)));
    }

    // Moves c by one in a random direction when the space and the genome allow it.
    void shift_critical(Genome& g) {
      const bool down = detail::uniform01(rng) < 0.5;
      const std::int64_t c = g.critical_pair;
      if (down) {
        if (c - 1 < sp.critical_lower || c - 1 < 1) return;
        const bool strict = sp.monotonicity == Monotonicity::kStrictlyIncreasing;
        // The new first gene continues the old anchored curve: lambda_{c-1} = lambda_c^((c-1)/c).
        const std::int64_t cap = g.steps[0] - (strict ? 1 : 0);
        const std::int64_t k =
            std::min(cap, std::max(sp.grid_lo(), detail::anchored_left_grid(sp, c, g.steps[0])));
        if (k < sp.grid_lo()) return;
        g.steps.insert(g.steps.begin(), k);
        g.critical_pair = c - 1;
      } else {
        if (c + 1 > sp.critical_upper || g.steps.size() < 2) return;
        g.steps.erase(g.steps.begin());
        g.critical_pair = c + 1;
      }
    }

    static constexpr int kMaxMutationPasses = 64;

    // A new mutant of parent, or false when kMaxMutationPasses passes found nothing new.
    bool mutate(const Genome& parent, Genome* out) {
      for (int pass = 0; pass < kMaxMutationPasses; ++pass) {
        Genome g = parent;
        if (sp.method == SearchMethod::kLongRoPE2 && p.critical_mutation_prob > 0.0 &&
            detail::uniform01(rng) < p.critical_mutation_prob)
          shift_critical(g);
        for (std::size_t j = 0; j < g.steps.size(); ++j)
          if (detail::uniform01(rng) < p.mutation_prob) resample_gene(g, j);
        if (seen.count(g) == 0) {
          *out = std::move(g);
          return true;
        }
      }
      return false;
    }

    bool monotone(const Genome& g) const {
      const bool strict = sp.monotonicity == Monotonicity::kStrictlyIncreasing;
      for (std::size_t j = 1; j < g.steps.size(); ++j)
        if (strict ? g.steps[j] <= g.steps[j - 1] : g.steps[j] < g.steps[j - 1]) return false;
      return true;
    }

    // A crossover child of a (better) and b, or false after crossover_tries passes.
    bool crossover(const Genome& a, const Genome& b, Genome* out) {
      Genome x = a;
      for (std::int64_t t = 0; t < p.crossover_tries; ++t) {
        for (std::size_t j = 0; j < x.steps.size(); ++j) {
          if (detail::uniform01(rng) >= p.mutation_prob) continue;
          if (detail::uniform01(rng) >= 0.5) continue;
          const std::int64_t pair = x.critical_pair + static_cast<std::int64_t>(j);
          if (pair >= b.critical_pair)
            x.steps[j] = b.steps[static_cast<std::size_t>(pair - b.critical_pair)];
        }
        if (monotone(x) && seen.count(x) == 0) {
          *out = std::move(x);
          return true;
        }
      }
      return false;
    }

    // Evaluates candidates (already in `seen`), appends them to history, returns their indices.
    std::vector<std::int64_t> evaluate(std::vector<Genome>& batch) {
      const std::size_t n = batch.size();
      std::vector<FactorTable> tables;
      tables.reserve(n);
      for (const Genome& g : batch) tables.push_back(detail::genome_table_of(sp, g));
      std::vector<double> losses(n, 0.0);
      std::vector<std::exception_ptr> errors(n);
      pool.parallel_for(n, [&](std::size_t i) {
        ROPESCALE_TRY { losses[i] = fitness(tables[i]); }
        ROPESCALE_CATCH(...) { errors[i] = std::current_exception(); }
      });
      for (std::size_t i = 0; i < n; ++i)
        if (errors[i]) std::rethrow_exception(errors[i]);
      std::vector<std::int64_t> idx;
      idx.reserve(n);
      for (std::size_t i = 0; i < n; ++i) {
        const double loss =
            std::isfinite(losses[i]) ? losses[i] : std::numeric_limits<double>::infinity();
        idx.push_back(state.evaluations());
        state.history.push_back(EvaluatedGenome{std::move(batch[i]), loss});
      }
      session_evaluations += static_cast<std::int64_t>(n);
      return idx;
    }

    void initial_population(const std::vector<Genome>& seeds) {
      std::vector<Genome> batch;
      const bool strict = sp.monotonicity == Monotonicity::kStrictlyIncreasing;
      const std::int64_t lo = sp.grid_lo(), hi = sp.grid_hi();
      const double int_lo = std::ceil(sp.lower_bound), int_hi = std::floor(sp.upper_bound);
      for (std::int64_t c = sp.critical_lower; c <= sp.critical_upper; ++c) {
        // LongRoPE2 Alg. 1: a flat individual at a random integer in [s, 2s] above c.
        std::int64_t k;
        if (int_lo <= int_hi) {
          const double v = int_lo + static_cast<double>(detail::uniform_index(
                                        rng, static_cast<std::uint64_t>(int_hi - int_lo) + 1));
          k = std::clamp<std::int64_t>(std::llround(v / sp.step), lo, hi);
        } else {
          k = lo + static_cast<std::int64_t>(
                       detail::uniform_index(rng, static_cast<std::uint64_t>(hi - lo + 1)));
        }
        const std::int64_t genes = sp.spec.pairs() - c;
        if (strict) k = std::min(k, hi - (genes - 1));  // room for one grid step per pair
        Genome g;
        g.critical_pair = c;
        for (std::int64_t j = 0; j < genes; ++j) g.steps.push_back(strict ? k + j : k);
        if (seen.insert(g).second) batch.push_back(std::move(g));
      }
      for (const Genome& g : seeds)
        if (seen.insert(g).second) batch.push_back(g);
      // Fill with mutants, individual k mutated from individual k - n0 (authors' code).
      std::size_t src = 0, failures = 0;
      while (static_cast<std::int64_t>(batch.size()) < p.population) {
        Genome child;
        if (mutate(batch[src % batch.size()], &child)) {
          seen.insert(child);
          batch.push_back(std::move(child));
          failures = 0;
        } else if (++failures >= batch.size()) {
          break;  // the space is (nearly) exhausted
        }
        ++src;
      }
      state.population = evaluate(batch);
      state.iteration = 0;
    }

    // Sorted population: lowest loss first, ties by evaluation order.
    std::vector<std::int64_t> ranked() const {
      std::vector<std::int64_t> r = state.population;
      std::sort(r.begin(), r.end(), [&](std::int64_t a, std::int64_t b) {
        const double la = state.history[static_cast<std::size_t>(a)].loss;
        const double lb = state.history[static_cast<std::size_t>(b)].loss;
        return la < lb || (la == lb && a < b);
      });
      return r;
    }

    void iterate() {
      std::vector<std::int64_t> parents = ranked();
      if (static_cast<std::int64_t>(parents.size()) > p.parents)
        parents.resize(static_cast<std::size_t>(p.parents));
      const std::uint64_t np = parents.size();
      auto genome = [&](std::int64_t idx) -> const Genome& {
        return state.history[static_cast<std::size_t>(idx)].genome;
      };
      std::vector<Genome> batch;
      Genome child;
      for (std::int64_t m = 0; m < p.mutations; ++m) {
        const std::int64_t parent = parents[detail::uniform_index(rng, np)];
        if (mutate(genome(parent), &child)) {
          seen.insert(child);
          batch.push_back(child);
        }
      }
      for (std::int64_t x = 0; x < p.crossovers; ++x) {
        bool ok = false;
        if (np >= 2) {
          std::uint64_t a = detail::uniform_index(rng, np);
          std::uint64_t b = detail::uniform_index(rng, np - 1);
          if (b >= a) ++b;
          if (b < a) std::swap(a, b);  // a: the better-ranked parent
          ok = crossover(genome(parents[a]), genome(parents[b]), &child) ||
               mutate(genome(parents[a]), &child);
        } else {
          ok = mutate(genome(parents[0]), &child);
        }
        if (ok) {
          seen.insert(child);
          batch.push_back(child);
        }
      }
      if (batch.empty()) {
        exhausted = true;
        return;
      }
      std::vector<std::int64_t> children = evaluate(batch);
      state.population = std::move(parents);
      state.population.insert(state.population.end(), children.begin(), children.end());
      ++state.iteration;
    }

    // Checkpoint, progress and stop check at an iteration boundary; true to stop.
    bool boundary(StopReason* reason) {
      if (owner.checkpoint_ || owner.writer_) save_rng();
      if (owner.checkpoint_) owner.checkpoint_(state);
      if (owner.writer_) {
        Status written = owner.writer_(state);
        if (!written.ok()) {
          ++checkpoint_failures;
          checkpoint_error = std::move(written);
        }
      }
      const std::int64_t best = state.best_index();
      SearchProgress pr;
      pr.iteration = state.iteration;
      pr.evaluations = state.evaluations();
      pr.best_loss = state.history[static_cast<std::size_t>(best)].loss;
      pr.elapsed_seconds = elapsed();
      pr.evaluations_per_second =
          pr.elapsed_seconds > 0.0 ? static_cast<double>(session_evaluations) / pr.elapsed_seconds
                                   : 0.0;
      pr.best = &state.history[static_cast<std::size_t>(best)].genome;
      pr.checkpoint_failures = checkpoint_failures;
      pr.checkpoint_error = checkpoint_error;
      if (owner.progress_) owner.progress_(pr);
      if (state.iteration >= p.iterations) {
        *reason = StopReason::kCompleted;
        return true;
      }
      if (owner.stop_ && owner.stop_(pr)) {
        *reason = StopReason::kCallback;
        return true;
      }
      if (p.max_seconds > 0.0 && pr.elapsed_seconds >= p.max_seconds) {
        *reason = StopReason::kMaxSeconds;
        return true;
      }
      if (p.max_evaluations > 0 &&
          state.evaluations() + p.mutations + p.crossovers > p.max_evaluations) {
        *reason = StopReason::kMaxEvaluations;
        return true;
      }
      return false;
    }

    void save_rng() {
      std::ostringstream os;
      os << rng;
      state.rng_state = os.str();
    }

    SearchResult loop() {
      StopReason reason = StopReason::kCompleted;
      while (!boundary(&reason)) {
        iterate();
        if (exhausted) {
          reason = StopReason::kExhausted;
          break;
        }
      }
      save_rng();
      SearchResult r;
      const std::int64_t best = state.best_index();
      r.best = state.history[static_cast<std::size_t>(best)].genome;
      r.best_loss = state.history[static_cast<std::size_t>(best)].loss;
      r.table = genome_table(sp, r.best);
      r.critical_pair = r.best.critical_pair;
      r.spec = sp.spec;
      r.target_length = static_cast<std::int64_t>(
          std::llround(sp.scale * static_cast<double>(sp.spec.original_max_position)));
      r.iterations = state.iteration;
      r.evaluations = state.evaluations();
      r.stop_reason = reason;
      r.checkpoint_failures = checkpoint_failures;
      r.checkpoint_error = checkpoint_error;
      r.state = std::move(state);
      return r;
    }
  };

  SearchSpace space_;
  SearchParams params_;
  std::function<void(const SearchState&)> checkpoint_;
  std::function<Status(const SearchState&)> writer_;
  std::function<void(const SearchProgress&)> progress_;
  std::function<bool(const SearchProgress&)> stop_;
};

/// One-call LongRoPE2 search: extend `spec` to `target_length` with the default space and the
/// given parameters. Equivalent to EvolutionSearch(SearchSpace::longrope2(...), params).run(f).
inline SearchResult search_longrope2(const RopeSpec& spec, std::int64_t target_length,
                                     const SearchFitness& fitness,
                                     const SearchParams& params = SearchParams{}) {
  EvolutionSearch search(SearchSpace::longrope2(spec, target_length), params);
  return search.run(fitness);
}

}  // namespace ropescale
