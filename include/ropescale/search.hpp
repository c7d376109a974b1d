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
// The search is driven batch by batch (ask/tell): ask() hands out the candidates of one
// iteration (id, genome, table), the host evaluates them anywhere (threads, ranks, machines) and
// tell() takes one loss per id. run(fitness) is that loop with a small thread pool as the host
// (SearchParams::thread_safe). Every random number is drawn in ask(), all candidates of a batch
// are generated before any of them is evaluated, and losses are merged in generation order, so
// the search is a pure function of (space, params, seeds, fitness) however the batch is
// evaluated.
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
#include <optional>
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

#pragma push_macro("ROPESCALE_INSIDE_PUBLIC_HEADER")
#define ROPESCALE_INSIDE_PUBLIC_HEADER
#include "ropescale/detail/call/thread_pool.hpp"
#include "ropescale/detail/random.hpp"
#pragma pop_macro("ROPESCALE_INSIDE_PUBLIC_HEADER")

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

/// One candidate handed out by EvolutionSearch::ask(): its id (the index it takes in the
/// history), its genome and the table to evaluate (genome_table(space, genome), bit for bit).
struct Candidate {
  std::int64_t id = 0;
  Genome genome;
  FactorTable table;
};

/// The evolutionary search. Construct with a space and parameters, optionally install callbacks,
/// then either run() / resume() with a fitness, or drive it batch by batch:
///
///   Result<EvolutionSearch> made = EvolutionSearch::make(space, params);
///   if (!made.ok()) return made.status();
///   EvolutionSearch& search = *made;
///   ROPESCALE_RETURN_IF_ERROR(search.start());          // or search.restore(checkpoint_state)
///   while (true) {
///     std::vector<Candidate> batch = search.ask();      // empty once the search has finished
///     if (batch.empty()) break;
///     std::vector<double> losses = evaluate_anywhere(batch);   // threads, ranks, machines
///     ROPESCALE_RETURN_IF_ERROR(search.tell(ids_of(batch), losses));
///   }
///   Result<SearchResult> r = search.result();
///
/// run(fitness) is exactly this loop (with the thread pool as the host), so both give the same
/// result for the same seed, bit for bit. state() may be taken at any point between calls, the
/// pending batch included (SearchState::pending), and restore() continues from it exactly.
class EvolutionSearch {
 public:
  /// A search over a valid space with valid parameters; kInvalidArgument naming the field
  /// otherwise.
  static Result<EvolutionSearch> make(SearchSpace space, SearchParams params) {
    ROPESCALE_RETURN_IF_ERROR(validate(space));
    ROPESCALE_RETURN_IF_ERROR(validate(params));
    return EvolutionSearch(Checked{}, std::move(space), params);
  }
  /// make(...).value(): throws Error on an invalid space or parameters (aborts without
  /// exceptions).
  EvolutionSearch(SearchSpace space, SearchParams params)
      : EvolutionSearch(make(std::move(space), params).value()) {}

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

  /// Starts a new search (dropping any earlier one). `seeds` join the initial population (after
  /// the flat individuals; duplicates are skipped); each must satisfy validate(space, genome),
  /// e.g. from project_to_space(). kInvalidArgument naming the seed otherwise.
  Status start(const std::vector<Genome>& seeds = {}) {
    for (std::size_t i = 0; i < seeds.size(); ++i) {
      const Status s = validate(space_, seeds[i]);
      if (!s.ok()) return s.with_context("seeds[" + std::to_string(i) + "]");
    }
    session_.emplace(space_, params_);
    session_->rng.seed(params_.seed);
    session_->state.space = space_;
    session_->state.params = params_;
    session_->seeds = seeds;
    return Status();
  }

  /// Continues from a state (e.g. load_search_checkpoint()), pending batch included. The state's
  /// space and search-defining parameters must equal this search's (else kParseError naming the
  /// field); params.iterations may be larger than the state's, to extend a finished search.
  /// Without a pending batch the state is at an iteration boundary, which is processed at once
  /// (checkpoint, progress and stop callbacks), as after a tell() that completes a batch.
  Status restore(const SearchState& state) {
    ROPESCALE_RETURN_IF_ERROR(validate(state));
    const std::string space_diff = mismatch(state.space, space_);
    if (!space_diff.empty())
      return make_status(ErrorCode::kParseError, "checkpoint space", space_diff,
                         "does not match the search's space (checkpoint vs search)");
    const std::string params_diff = mismatch(state.params, params_);
    if (!params_diff.empty())
      return make_status(ErrorCode::kParseError, "checkpoint params", params_diff,
                         "does not match the search's parameters (checkpoint vs search)");
    session_.emplace(space_, params_);
    Session& s = *session_;
    s.state = state;
    s.state.params = params_;
    std::istringstream in(state.rng_state);
    in >> s.rng;
    for (const EvaluatedGenome& e : state.history) s.seen.insert(e.genome);
    for (const PendingCandidate& c : state.pending) s.seen.insert(c.genome);
    s.p0_done = !state.history.empty();
    if (state.pending.empty()) boundary();
    return Status();
  }

  /// True once start() or restore() was called.
  bool started() const noexcept { return session_.has_value(); }
  /// True once the search has stopped (ask() then returns nothing; see stop_reason()).
  bool finished() const noexcept { return session_.has_value() && session_->finished; }
  StopReason stop_reason() const noexcept {
    return session_.has_value() ? session_->reason : StopReason::kCompleted;
  }

  /// The candidates of the current batch that have no loss yet, generating the next batch when
  /// none is pending; empty once the search has finished. Starts the search (no seeds) when
  /// neither start() nor restore() was called. Asking twice hands out the same candidates.
  std::vector<Candidate> ask() {
    if (!session_) start();
    Session& s = *session_;
    if (s.finished) return {};
    if (s.state.pending.empty()) {
      std::vector<Genome> batch = s.p0_done ? s.next_generation() : s.initial_population();
      if (batch.empty()) {
        s.finished = true;
        s.reason = StopReason::kExhausted;
        return {};
      }
      for (Genome& g : batch) {
        PendingCandidate c;
        c.id = s.state.evaluations() + static_cast<std::int64_t>(s.state.pending.size());
        c.genome = std::move(g);
        s.state.pending.push_back(std::move(c));
      }
    }
    std::vector<Candidate> out;
    for (const PendingCandidate& c : s.state.pending)
      if (!c.answered)
        out.push_back(Candidate{c.id, c.genome, detail::genome_table_of(sp(), c.genome)});
    return out;
  }

  /// Hands back losses for candidates of the pending batch, in any grouping: losses[i] belongs to
  /// ids[i]. A non-finite loss counts as +infinity. Refused, with nothing recorded, when the two
  /// lists differ in length, an id was not handed out by ask() for this batch, or a candidate
  /// already has its loss (kInvalidArgument naming the argument). The answer that completes the
  /// batch closes the iteration: history, population, then the checkpoint, progress and stop
  /// callbacks.
  Status tell(const std::vector<std::int64_t>& ids, const std::vector<double>& losses) {
    if (!session_ || session_->state.pending.empty())
      return make_status(ErrorCode::kInvalidArgument, "tell", "no pending batch",
                         "call ask() first");
    Session& s = *session_;
    if (ids.size() != losses.size())
      return make_status(ErrorCode::kInvalidArgument, "losses.size()",
                         static_cast<std::int64_t>(losses.size()),
                         "must equal ids.size() = " + std::to_string(ids.size()));
    const std::int64_t first = s.state.pending.front().id;
    const auto n = static_cast<std::int64_t>(s.state.pending.size());
    std::vector<bool> told(s.state.pending.size(), false);
    for (std::size_t i = 0; i < ids.size(); ++i) {
      const std::int64_t id = ids[i];
      if (id < first || id >= first + n)
        return make_status(ErrorCode::kInvalidArgument, "ids[" + std::to_string(i) + "]", id,
                           "is not a candidate of the pending batch (ids " + std::to_string(first) +
                               " to " + std::to_string(first + n - 1) + ")");
      const auto k = static_cast<std::size_t>(id - first);
      if (s.state.pending[k].answered || told[k])
        return make_status(ErrorCode::kInvalidArgument, "ids[" + std::to_string(i) + "]", id,
                           "already has a loss (a second answer)");
      told[k] = true;
    }
    for (std::size_t i = 0; i < ids.size(); ++i) {
      PendingCandidate& c = s.state.pending[static_cast<std::size_t>(ids[i] - first)];
      c.answered = true;
      c.loss = std::isfinite(losses[i]) ? losses[i] : std::numeric_limits<double>::infinity();
    }
    for (const PendingCandidate& c : s.state.pending)
      if (!c.answered) return Status();
    s.complete_batch();
    boundary();
    return Status();
  }

  /// tell() for every unanswered candidate at once, in the order ask() handed them out:
  /// losses.size() must equal their number.
  Status tell(const std::vector<double>& losses) {
    std::vector<std::int64_t> ids;
    if (session_)
      for (const PendingCandidate& c : session_->state.pending)
        if (!c.answered) ids.push_back(c.id);
    if (session_ && !session_->state.pending.empty() && losses.size() != ids.size())
      return make_status(
          ErrorCode::kInvalidArgument, "losses.size()", static_cast<std::int64_t>(losses.size()),
          "must equal the number of unanswered candidates (" + std::to_string(ids.size()) + ")");
    return tell(ids, losses);
  }

  /// The complete state now (RNG and pending batch included): what a checkpoint holds.
  SearchState state() const {
    if (!session_) return SearchState{};
    SearchState st = session_->state;
    std::ostringstream os;
    os << session_->rng;
    st.rng_state = os.str();
    return st;
  }

  /// The best result so far (the final one once finished()). kInvalidArgument before the
  /// initial population has been evaluated.
  Result<SearchResult> result() const {
    if (!session_ || session_->state.history.empty())
      return make_status(ErrorCode::kInvalidArgument, "result", "no evaluation yet",
                         "tell the losses of the initial population first");
    const Session& s = *session_;
    SearchResult r;
    r.state = state();
    const std::int64_t best = s.state.best_index();
    r.best = s.state.history[static_cast<std::size_t>(best)].genome;
    r.best_loss = s.state.history[static_cast<std::size_t>(best)].loss;
    r.table = detail::genome_table_of(space_, r.best);  // the history holds valid genomes
    r.critical_pair = r.best.critical_pair;
    r.spec = space_.spec;
    r.target_length = static_cast<std::int64_t>(
        std::llround(space_.scale * static_cast<double>(space_.spec.original_max_position)));
    r.iterations = s.state.iteration;
    r.evaluations = s.state.evaluations();
    r.stop_reason = s.reason;
    r.checkpoint_failures = s.checkpoint_failures;
    r.checkpoint_error = s.checkpoint_error;
    return r;
  }

  /// Runs the search from scratch: start(seeds), then ask / evaluate / tell until it finishes,
  /// the candidates of a batch evaluated on the thread pool (SearchParams::thread_safe, threads).
  /// Exceptions from the fitness propagate (the last checkpoint stays valid).
  Result<SearchResult> run(const SearchFitness& fitness, const std::vector<Genome>& seeds = {}) {
    ROPESCALE_RETURN_IF_ERROR(check_fitness(fitness));
    ROPESCALE_RETURN_IF_ERROR(start(seeds));
    return drive(fitness);
  }

  /// restore(state), then ask / evaluate / tell as run() does.
  Result<SearchResult> resume(const SearchState& state, const SearchFitness& fitness) {
    ROPESCALE_RETURN_IF_ERROR(check_fitness(fitness));
    ROPESCALE_RETURN_IF_ERROR(restore(state));
    return drive(fitness);
  }

 private:
  struct Checked {};
  EvolutionSearch(Checked, SearchSpace space, SearchParams params)
      : space_(std::move(space)), params_(params) {}

  static Status check_fitness(const SearchFitness& fitness) {
    if (!fitness)
      return make_status(ErrorCode::kInvalidArgument, "fitness", "empty",
                         "must be a callable FactorTable -> loss");
    return Status();
  }

  const SearchSpace& sp() const noexcept { return space_; }

  // The thread pool as one host of ask/tell.
  Result<SearchResult> drive(const SearchFitness& fitness) {
    const int threads =
        params_.thread_safe
            ? (params_.threads == 0
                   ? std::max(1, static_cast<int>(std::thread::hardware_concurrency()))
                   : params_.threads)
            : 1;
    detail::ThreadPool pool(threads);
    while (true) {
      const std::vector<Candidate> batch = ask();
      if (batch.empty()) break;
      const std::size_t n = batch.size();
      std::vector<double> losses(n, 0.0);
      std::vector<std::int64_t> ids(n);
      std::vector<std::exception_ptr> errors(n);
      pool.parallel_for(n, [&](std::size_t i) {
        ids[i] = batch[i].id;
        ROPESCALE_TRY { losses[i] = fitness(batch[i].table); }
        ROPESCALE_CATCH(...) { errors[i] = std::current_exception(); }
      });
      for (std::size_t i = 0; i < n; ++i)
        if (errors[i]) std::rethrow_exception(errors[i]);
      ROPESCALE_RETURN_IF_ERROR(tell(ids, losses));
    }
    return result();
  }

  // Checkpoint, progress and stop check at an iteration boundary.
  void boundary() {
    Session& s = *session_;
    if (checkpoint_ || writer_) {
      const SearchState st = state();
      if (checkpoint_) checkpoint_(st);
      if (writer_) {
        Status written = writer_(st);
        if (!written.ok()) {
          ++s.checkpoint_failures;
          s.checkpoint_error = std::move(written);
        }
      }
    }
    const std::int64_t best = s.state.best_index();
    SearchProgress pr;
    pr.iteration = s.state.iteration;
    pr.evaluations = s.state.evaluations();
    pr.best_loss = s.state.history[static_cast<std::size_t>(best)].loss;
    pr.elapsed_seconds = s.elapsed();
    pr.evaluations_per_second =
        pr.elapsed_seconds > 0.0 ? static_cast<double>(s.session_evaluations) / pr.elapsed_seconds
                                 : 0.0;
    pr.best = &s.state.history[static_cast<std::size_t>(best)].genome;
    pr.checkpoint_failures = s.checkpoint_failures;
    pr.checkpoint_error = s.checkpoint_error;
    if (progress_) progress_(pr);
    const SearchParams& p = params_;
    s.finished = true;
    if (s.state.iteration >= p.iterations)
      s.reason = StopReason::kCompleted;
    else if (stop_ && stop_(pr))
      s.reason = StopReason::kCallback;
    else if (p.max_seconds > 0.0 && pr.elapsed_seconds >= p.max_seconds)
      s.reason = StopReason::kMaxSeconds;
    else if (p.max_evaluations > 0 &&
             s.state.evaluations() + p.mutations + p.crossovers > p.max_evaluations)
      s.reason = StopReason::kMaxEvaluations;
    else
      s.finished = false;
  }

  // One search from start() or restore(): the state and the generator of new candidates.
  struct Session {
    Session(const SearchSpace& space, const SearchParams& params)
        : sp(space), p(params), start(std::chrono::steady_clock::now()) {}

    SearchSpace sp;
    SearchParams p;
    std::chrono::steady_clock::time_point start;
    std::mt19937_64 rng;
    SearchState state;
    std::vector<Genome> seeds;  // join P0
    std::set<Genome> seen;      // evaluated or generated
    bool p0_done = false;       // the initial population has been generated and evaluated
    bool finished = false;
    StopReason reason = StopReason::kCompleted;
    std::int64_t session_evaluations = 0;
    std::int64_t checkpoint_failures = 0;  // failed writer calls
    Status checkpoint_error;

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

    // P0: the flat individuals, the seeds, then mutants until the population is full.
    std::vector<Genome> initial_population() {
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
      return batch;
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

    // The `parents` best of the population.
    std::vector<std::int64_t> parents() const {
      std::vector<std::int64_t> r = ranked();
      if (static_cast<std::int64_t>(r.size()) > p.parents)
        r.resize(static_cast<std::size_t>(p.parents));
      return r;
    }

    // The children of one iteration: mutants, then crossovers.
    std::vector<Genome> next_generation() {
      const std::vector<std::int64_t> parents = this->parents();
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
      return batch;
    }

    // The pending batch has every loss: it joins the history; the population becomes P0, or the
    // parents plus the children.
    void complete_batch() {
      std::vector<std::int64_t> children;
      children.reserve(state.pending.size());
      for (PendingCandidate& c : state.pending) {
        children.push_back(state.evaluations());
        state.history.push_back(EvaluatedGenome{std::move(c.genome), c.loss});
      }
      session_evaluations += static_cast<std::int64_t>(state.pending.size());
      state.pending.clear();
      if (!p0_done) {
        state.population = std::move(children);
        state.iteration = 0;
        p0_done = true;
        return;
      }
      state.population = parents();
      state.population.insert(state.population.end(), children.begin(), children.end());
      ++state.iteration;
    }
  };

  SearchSpace space_;
  SearchParams params_;
  std::optional<Session> session_;
  std::function<void(const SearchState&)> checkpoint_;
  std::function<Status(const SearchState&)> writer_;
  std::function<void(const SearchProgress&)> progress_;
  std::function<bool(const SearchProgress&)> stop_;
};

/// One-call LongRoPE2 search: extend `spec` to `target_length` with the default space and the
/// given parameters: EvolutionSearch::make(SearchSpace::longrope2(...), params)->run(f).
inline Result<SearchResult> search_longrope2(const RopeSpec& spec, std::int64_t target_length,
                                             const SearchFitness& fitness,
                                             const SearchParams& params = SearchParams{}) {
  Result<SearchSpace> space = SearchSpace::longrope2(spec, target_length);
  if (!space.ok()) return space.status();
  Result<EvolutionSearch> search = EvolutionSearch::make(std::move(space).value(), params);
  if (!search.ok()) return search.status();
  return search->run(fitness);
}

}  // namespace ropescale
