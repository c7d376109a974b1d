// ropescale: evolutionary search for rescale factors (LongRoPE2's search space, LongRoPE v1's).
//
// LongRoPE2 (arXiv 2502.20082, sec. 3.2, Alg. 1-2, App. B) finds a model's rescale factors by an
// evolutionary search whose fitness is a perplexity measured with the model itself. The genome is
//
//     c                      the critical pair (the paper's d_rcd, in cosine-pair units)
//     lambda_c .. lambda_{d/2-1}   the searched factors of the pairs at and above c
//
// and the pairs below c follow NTK scaling re-anchored at c, which in closed form is
//
//     lambda_i = lambda_c^(i/c),  i < c          (lambda_0 = 1; Alg. 2 lines 7-8)
//
// Every candidate that is ever evaluated satisfies the constraints of the space:
//   - lower_bound <= lambda_i <= upper_bound for the searched pairs (LongRoPE2: [s, 2s], where
//     s = target / original; the OOD bound of eqs. 9-10 gives lambda_i >= s above c),
//   - monotone: non-decreasing (the paper) or strictly increasing (the authors' code and both
//     published factor lists),
//   - on a grid of `step` (0.01 in the authors' code): genomes store integer grid indices, so two
//     genomes are equal exactly when their tables are, and no genome is evaluated twice.
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
#include <atomic>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstdint>
#include <exception>
#include <functional>
#include <limits>
#include <mutex>
#include <numeric>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "ropescale/error.hpp"
#include "ropescale/factors.hpp"
#include "ropescale/frequencies.hpp"
#include "ropescale/scaling.hpp"

namespace ropescale {

/// Which genome the search evolves.
enum class SearchMethod {
  kLongRoPE2,  ///< critical pair c + searched factors above it, NTK anchored below (default)
  kLongRoPE,   ///< LongRoPE v1: every pair searched, no anchor (c = 0)
};

/// Monotonicity constraint on the searched factors.
enum class Monotonicity {
  kNonDecreasing,       ///< lambda_i <= lambda_{i+1} (LongRoPE2 paper, Alg. 2)
  kStrictlyIncreasing,  ///< lambda_i < lambda_{i+1} (authors' code; both published lists)
};

inline const char* to_string(SearchMethod m) noexcept {
  return m == SearchMethod::kLongRoPE ? "longrope" : "longrope2";
}
inline const char* to_string(Monotonicity m) noexcept {
  return m == Monotonicity::kStrictlyIncreasing ? "strictly_increasing" : "non_decreasing";
}

namespace detail {

// LongRoPE's default attention factor ("su" mscale, HF _compute_longrope_parameters):
// sqrt(1 + ln s / ln L) for s > 1, else 1.
inline double search_default_attention_factor(double scale, std::int64_t original) {
  if (!(scale > 1.0)) return 1.0;
  return std::sqrt(1.0 + std::log(scale) / std::log(static_cast<double>(original)));
}

}  // namespace detail

/// Where the search looks. Build it with SearchSpace::longrope2() or ::longrope() and adjust
/// fields as needed; validate(space) checks it.
struct SearchSpace {
  RopeSpec spec;       ///< the model's RoPE before rescaling
  double scale = 1.0;  ///< s = target length / original_max_position
  SearchMethod method = SearchMethod::kLongRoPE2;
  std::int64_t critical_lower = 0;  ///< smallest critical pair c (LongRoPE2 Alg. 1)
  std::int64_t critical_upper = 0;  ///< largest critical pair c
  double lower_bound = 1.0;         ///< smallest searched factor (LongRoPE2: s)
  double upper_bound = 2.0;         ///< largest searched factor (LongRoPE2: 2s)
  double step = 0.01;               ///< grid of the searched factors
  Monotonicity monotonicity = Monotonicity::kNonDecreasing;
  double attention_factor = 1.0;  ///< attached to every candidate table

  /// LongRoPE2's space for extending `spec` to `target_length` tokens: s = target / original,
  /// factors in [s, 2s] on a 0.01 grid, non-decreasing, c from critical_search_lower_pair(spec)
  /// to theoretical_critical_pair(spec) (both clamped to [1, rotary_dim/2 - 1]), attention factor
  /// sqrt(1 + ln s / ln L_train) (LongRoPE's default, which LongRoPE2's released configs use).
  static SearchSpace longrope2(const RopeSpec& spec, std::int64_t target_length) {
    SearchSpace sp = base(spec, target_length);
    sp.method = SearchMethod::kLongRoPE2;
    if (spec.pairs() < 2)
      throw_if_error(make_status(ErrorCode::kInvalidArgument, "rotary_dim", spec.rotary_dim,
                                 "must be >= 4 for a LongRoPE2 search (a critical pair c >= 1 "
                                 "with a searched pair at or above it)"));
    const std::int64_t hi_c = spec.pairs() - 1;
    sp.critical_lower = std::clamp<std::int64_t>(critical_search_lower_pair(spec), 1, hi_c);
    sp.critical_upper =
        std::clamp<std::int64_t>(theoretical_critical_pair(spec), sp.critical_lower, hi_c);
    sp.lower_bound = sp.scale;
    sp.upper_bound = 2.0 * sp.scale;
    return sp;
  }

  /// LongRoPE (v1) space: every pair searched in [1, 1.25 s] (arXiv 2402.13753, Table 4), c = 0.
  static SearchSpace longrope(const RopeSpec& spec, std::int64_t target_length) {
    SearchSpace sp = base(spec, target_length);
    sp.method = SearchMethod::kLongRoPE;
    sp.critical_lower = 0;
    sp.critical_upper = 0;
    sp.lower_bound = 1.0;
    sp.upper_bound = 1.25 * sp.scale;
    return sp;
  }

  /// Grid index range [lo, hi] of the searched factors.
  std::int64_t grid_lo() const {
    return static_cast<std::int64_t>(std::ceil(lower_bound / step - 1e-9));
  }
  std::int64_t grid_hi() const {
    return static_cast<std::int64_t>(std::floor(upper_bound / step + 1e-9));
  }
  /// The factor of grid index k.
  double grid_value(std::int64_t k) const { return static_cast<double>(k) * step; }

  friend bool operator==(const SearchSpace& a, const SearchSpace& b) noexcept {
    return a.spec == b.spec && a.scale == b.scale && a.method == b.method &&
           a.critical_lower == b.critical_lower && a.critical_upper == b.critical_upper &&
           a.lower_bound == b.lower_bound && a.upper_bound == b.upper_bound && a.step == b.step &&
           a.monotonicity == b.monotonicity && a.attention_factor == b.attention_factor;
  }
  friend bool operator!=(const SearchSpace& a, const SearchSpace& b) noexcept { return !(a == b); }

 private:
  static SearchSpace base(const RopeSpec& spec, std::int64_t target_length) {
    throw_if_error(validate(spec));
    if (target_length < spec.original_max_position)
      throw_if_error(make_status(
          ErrorCode::kInvalidArgument, "target_length", target_length,
          "must be >= original_max_position (" + std::to_string(spec.original_max_position) + ")"));
    SearchSpace sp;
    sp.spec = spec;
    sp.scale = static_cast<double>(target_length) / static_cast<double>(spec.original_max_position);
    sp.attention_factor =
        detail::search_default_attention_factor(sp.scale, spec.original_max_position);
    return sp;
  }
};

/// Checks a search space: valid spec, s >= 1, 0 < step, lower <= upper with at least one grid
/// point, a critical range inside [0, rotary_dim/2) (exactly 0 in LongRoPE v1 mode), and, for
/// strict monotonicity, room on the grid for every searched pair.
inline Status validate(const SearchSpace& sp) {
  if (sp.method != SearchMethod::kLongRoPE2 && sp.method != SearchMethod::kLongRoPE)
    return make_status(ErrorCode::kInvalidArgument, "space.method", static_cast<int>(sp.method),
                       "must be kLongRoPE2 or kLongRoPE");
  if (sp.monotonicity != Monotonicity::kNonDecreasing &&
      sp.monotonicity != Monotonicity::kStrictlyIncreasing)
    return make_status(ErrorCode::kInvalidArgument, "space.monotonicity",
                       static_cast<int>(sp.monotonicity),
                       "must be kNonDecreasing or kStrictlyIncreasing");
  ROPESCALE_RETURN_IF_ERROR(validate(sp.spec));
  const std::int64_t pairs = sp.spec.pairs();
  if (!std::isfinite(sp.scale) || !(sp.scale >= 1.0))
    return make_status(ErrorCode::kInvalidArgument, "space.scale", sp.scale,
                       "must be finite and >= 1");
  if (!std::isfinite(sp.step) || !(sp.step > 0.0))
    return make_status(ErrorCode::kInvalidArgument, "space.step", sp.step,
                       "must be finite and > 0");
  if (!std::isfinite(sp.lower_bound) || !(sp.lower_bound > 0.0))
    return make_status(ErrorCode::kInvalidArgument, "space.lower_bound", sp.lower_bound,
                       "must be finite and > 0");
  if (sp.lower_bound < kMinFactor)
    return make_status(ErrorCode::kInvalidArgument, "space.lower_bound", sp.lower_bound,
                       "must be >= 1e-6 (kMinFactor): every candidate must make a FactorTable");
  if (!std::isfinite(sp.upper_bound) || !(sp.upper_bound >= sp.lower_bound))
    return make_status(
        ErrorCode::kInvalidArgument, "space.upper_bound", sp.upper_bound,
        "must be finite and >= lower_bound (" + detail::format_value(sp.lower_bound) + ")");
  if (sp.upper_bound / sp.step > 1e15)
    return make_status(ErrorCode::kInvalidArgument, "space.step", sp.step,
                       "too fine for the bounds (upper_bound / step must be <= 1e15)");
  if (sp.grid_hi() < sp.grid_lo() || sp.grid_lo() <= 0)
    return make_status(ErrorCode::kInvalidArgument, "space.step", sp.step,
                       "leaves no positive grid point in [lower_bound, upper_bound]");
  ROPESCALE_RETURN_IF_ERROR(
      detail::check_attention_factor("space.attention_factor", sp.attention_factor));
  if (sp.method == SearchMethod::kLongRoPE) {
    if (sp.critical_lower != 0 || sp.critical_upper != 0)
      return make_status(ErrorCode::kInvalidArgument, "space.critical_lower", sp.critical_lower,
                         "must be 0 (with critical_upper 0) in LongRoPE v1 mode");
  } else {
    if (sp.critical_lower < 0 || sp.critical_lower >= pairs)
      return make_status(ErrorCode::kInvalidArgument, "space.critical_lower", sp.critical_lower,
                         "must be in [0, rotary_dim/2) = [0, " + std::to_string(pairs) + ")");
    if (sp.critical_upper < sp.critical_lower || sp.critical_upper >= pairs)
      return make_status(ErrorCode::kInvalidArgument, "space.critical_upper", sp.critical_upper,
                         "must be in [critical_lower, rotary_dim/2) = [" +
                             std::to_string(sp.critical_lower) + ", " + std::to_string(pairs) +
                             ")");
    if (sp.lower_bound < 1.0)
      return make_status(ErrorCode::kInvalidArgument, "space.lower_bound", sp.lower_bound,
                         "must be >= 1 in LongRoPE2 mode (the anchor rule needs lambda_c >= 1)");
  }
  if (sp.monotonicity == Monotonicity::kStrictlyIncreasing) {
    const std::int64_t genes = pairs - sp.critical_lower;
    if (sp.grid_hi() - sp.grid_lo() + 1 < genes)
      return make_status(ErrorCode::kInvalidArgument, "space.step", sp.step,
                         "leaves fewer grid points in [lower_bound, upper_bound] than the " +
                             std::to_string(genes) + " strictly increasing searched factors");
  }
  return Status();
}

/// One candidate: the critical pair and the grid indices of the searched factors,
/// lambda_{c+j} = steps[j] * space.step. Ordered and compared exactly.
struct Genome {
  std::int64_t critical_pair = 0;
  std::vector<std::int64_t> steps;

  friend bool operator==(const Genome& a, const Genome& b) noexcept {
    return a.critical_pair == b.critical_pair && a.steps == b.steps;
  }
  friend bool operator!=(const Genome& a, const Genome& b) noexcept { return !(a == b); }
  friend bool operator<(const Genome& a, const Genome& b) noexcept {
    if (a.critical_pair != b.critical_pair) return a.critical_pair < b.critical_pair;
    return a.steps < b.steps;
  }
};

namespace detail {

// lambda_c^((c-1)/c) as a grid index rounded up (the first gene's left neighbour).
inline std::int64_t anchored_left_grid(const SearchSpace& sp, std::int64_t c, std::int64_t k0) {
  const double anchor = sp.grid_value(k0);
  const double left = std::pow(anchor, static_cast<double>(c - 1) / static_cast<double>(c));
  return static_cast<std::int64_t>(std::ceil(left / sp.step - 1e-9));
}

// The full factor table of a genome, unchecked: the LongRoPE2 anchor rule below c.
inline void genome_factors_into(const SearchSpace& sp, const Genome& g, Eigen::ArrayXd* out) {
  const Eigen::Index n = static_cast<Eigen::Index>(sp.spec.pairs());
  out->resize(n);
  const Eigen::Index c = static_cast<Eigen::Index>(g.critical_pair);
  const double anchor = sp.grid_value(g.steps[0]);
  for (Eigen::Index i = 0; i < c; ++i)
    (*out)[i] = std::pow(anchor, static_cast<double>(i) / static_cast<double>(c));
  for (Eigen::Index i = c; i < n; ++i)
    (*out)[i] = sp.grid_value(g.steps[static_cast<std::size_t>(i - c)]);
}

}  // namespace detail

/// Checks a genome against a (valid) space: c in [critical_lower, critical_upper], one grid index
/// per searched pair, every factor inside the bounds, monotone as the space requires.
inline Status validate_genome(const SearchSpace& sp, const Genome& g) {
  if (g.critical_pair < sp.critical_lower || g.critical_pair > sp.critical_upper)
    return make_status(ErrorCode::kInvalidArgument, "genome.critical_pair", g.critical_pair,
                       "must be in [critical_lower, critical_upper] = [" +
                           std::to_string(sp.critical_lower) + ", " +
                           std::to_string(sp.critical_upper) + "]");
  const std::int64_t genes = sp.spec.pairs() - g.critical_pair;
  if (static_cast<std::int64_t>(g.steps.size()) != genes)
    return make_status(ErrorCode::kInvalidArgument, "genome.steps.size()",
                       static_cast<std::int64_t>(g.steps.size()),
                       "must equal rotary_dim/2 - critical_pair = " + std::to_string(genes));
  const std::int64_t lo = sp.grid_lo(), hi = sp.grid_hi();
  const bool strict = sp.monotonicity == Monotonicity::kStrictlyIncreasing;
  for (std::size_t j = 0; j < g.steps.size(); ++j) {
    const std::int64_t k = g.steps[j];
    if (k < lo || k > hi)
      return make_status(ErrorCode::kInvalidArgument, "genome.steps[" + std::to_string(j) + "]", k,
                         "must be a grid index in [" + std::to_string(lo) + ", " +
                             std::to_string(hi) + "] (factors in [lower_bound, upper_bound])");
    if (j > 0 && (strict ? k <= g.steps[j - 1] : k < g.steps[j - 1]))
      return make_status(ErrorCode::kInvalidArgument, "genome.steps[" + std::to_string(j) + "]", k,
                         std::string("must be ") + (strict ? "> " : ">= ") + "the previous step (" +
                             std::to_string(g.steps[j - 1]) + ", monotonicity " +
                             to_string(sp.monotonicity) + ")");
  }
  return Status();
}

/// The full per-pair factors of a genome: searched values from c, lambda_c^(i/c) below c.
inline Eigen::ArrayXd genome_factors(const SearchSpace& sp, const Genome& g) {
  throw_if_error(validate(sp));
  throw_if_error(validate_genome(sp, g));
  Eigen::ArrayXd f;
  detail::genome_factors_into(sp, g, &f);
  return f;
}

/// The FactorTable of a genome, with the space's attention factor. LongRoPE2 mode: exactly
/// longrope2_factors(spec, c, searched, attention_factor) (scaling.hpp), method "longrope2";
/// LongRoPE v1 mode: the searched factors as they are, method "longrope". The search hands the
/// fitness bit-identical tables.
inline FactorTable genome_table(const SearchSpace& sp, const Genome& g) {
  const Eigen::ArrayXd f = genome_factors(sp, g);
  if (sp.method == SearchMethod::kLongRoPE2)
    return longrope2_factors(sp.spec, g.critical_pair, f.tail(f.size() - g.critical_pair),
                             sp.attention_factor);
  return FactorTable(f, sp.attention_factor, to_string(sp.method));
}

/// Projects any factor list onto the space as a genome with critical pair c (LongRoPE v1: 0):
/// the factors of pairs >= c are rounded to the grid, clamped to the bounds and made monotone.
/// Use it to seed the search with a published list or another method's table (e.g. YaRN's).
inline Genome project_to_space(const SearchSpace& sp, const Eigen::Ref<const Eigen::ArrayXd>& f,
                               std::int64_t critical_pair) {
  throw_if_error(validate(sp));
  if (static_cast<std::int64_t>(f.size()) != sp.spec.pairs())
    throw_if_error(make_status(ErrorCode::kInvalidArgument, "factors.size()",
                               static_cast<std::int64_t>(f.size()),
                               "must equal rotary_dim / 2 = " + std::to_string(sp.spec.pairs())));
  if (critical_pair < sp.critical_lower || critical_pair > sp.critical_upper)
    throw_if_error(make_status(ErrorCode::kInvalidArgument, "critical_pair", critical_pair,
                               "must be in [critical_lower, critical_upper] = [" +
                                   std::to_string(sp.critical_lower) + ", " +
                                   std::to_string(sp.critical_upper) + "]"));
  for (Eigen::Index i = 0; i < f.size(); ++i)
    if (!std::isfinite(f[i]))
      throw_if_error(make_status(ErrorCode::kInvalidArgument, "factors[" + std::to_string(i) + "]",
                                 f[i], "must be finite"));
  Genome g;
  g.critical_pair = critical_pair;
  const std::int64_t lo = sp.grid_lo(), hi = sp.grid_hi();
  const bool strict = sp.monotonicity == Monotonicity::kStrictlyIncreasing;
  const std::int64_t n = sp.spec.pairs() - critical_pair;
  for (std::int64_t j = 0; j < n; ++j) {
    // Clamp in double first: llround of a value past 2^63 is undefined (1e20 / 0.01 would land
    // anywhere, typically on the lower bound).
    const double q = f[static_cast<Eigen::Index>(critical_pair + j)] / sp.step;
    std::int64_t k = q <= static_cast<double>(lo) ? lo
                     : q >= static_cast<double>(hi)
                         ? hi
                         : std::clamp<std::int64_t>(std::llround(q), lo, hi);
    if (j > 0) k = std::max(k, g.steps.back() + (strict ? 1 : 0));
    g.steps.push_back(k);
  }
  // Strict monotonicity may have pushed the tail above the bound: pull it back from the top.
  for (std::int64_t j = n - 1; j >= 0; --j) {
    const std::int64_t cap =
        (j == n - 1) ? hi : g.steps[static_cast<std::size_t>(j + 1)] - (strict ? 1 : 0);
    g.steps[static_cast<std::size_t>(j)] = std::min(g.steps[static_cast<std::size_t>(j)], cap);
  }
  return g;
}

/// project_to_space with the critical pair read off the list itself: LongRoPE v1 mode uses 0;
/// LongRoPE2 mode uses detect_longrope2(factors).critical_pair (e.g. 33 for LLaMA3-8B's
/// published long_factor) clamped to [critical_lower, critical_upper], or critical_upper when the
/// list has no NTK-anchored prefix (e.g. a YaRN table).
inline Genome project_to_space(const SearchSpace& sp, const Eigen::Ref<const Eigen::ArrayXd>& f) {
  throw_if_error(validate(sp));
  if (sp.method == SearchMethod::kLongRoPE) return project_to_space(sp, f, 0);
  const LongRope2Detection d = detect_longrope2(f);
  const std::int64_t c = d.found ? std::clamp(d.critical_pair, sp.critical_lower, sp.critical_upper)
                                 : sp.critical_upper;
  return project_to_space(sp, f, c);
}

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
};

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

/// The first search-defining field in which two parameter sets differ ("" when none).
/// iterations, threads, thread_safe and the stop limits are not search-defining.
inline std::string search_params_mismatch(const SearchParams& a, const SearchParams& b) {
  auto one = [](const char* name, auto x, auto y) {
    return std::string(name) + " (" + detail::format_value(x) + " vs " + detail::format_value(y) +
           ")";
  };
  if (a.population != b.population) return one("population", a.population, b.population);
  if (a.parents != b.parents) return one("parents", a.parents, b.parents);
  if (a.mutations != b.mutations) return one("mutations", a.mutations, b.mutations);
  if (a.crossovers != b.crossovers) return one("crossovers", a.crossovers, b.crossovers);
  if (a.mutation_prob != b.mutation_prob)
    return one("mutation_prob", a.mutation_prob, b.mutation_prob);
  if (a.crossover_tries != b.crossover_tries)
    return one("crossover_tries", a.crossover_tries, b.crossover_tries);
  if (a.critical_mutation_prob != b.critical_mutation_prob)
    return one("critical_mutation_prob", a.critical_mutation_prob, b.critical_mutation_prob);
  if (a.seed != b.seed) return one("seed", a.seed, b.seed);
  return std::string();
}

/// The first field in which two spaces differ ("" when none).
inline std::string search_space_mismatch(const SearchSpace& a, const SearchSpace& b) {
  auto one = [](const char* name, auto x, auto y) {
    return std::string(name) + " (" + detail::format_value(x) + " vs " + detail::format_value(y) +
           ")";
  };
  if (a.spec.head_dim != b.spec.head_dim)
    return one("spec.head_dim", a.spec.head_dim, b.spec.head_dim);
  if (a.spec.rotary_dim != b.spec.rotary_dim)
    return one("spec.rotary_dim", a.spec.rotary_dim, b.spec.rotary_dim);
  if (a.spec.rope_theta != b.spec.rope_theta)
    return one("spec.rope_theta", a.spec.rope_theta, b.spec.rope_theta);
  if (a.spec.original_max_position != b.spec.original_max_position)
    return one("spec.original_max_position", a.spec.original_max_position,
               b.spec.original_max_position);
  if (a.scale != b.scale) return one("scale", a.scale, b.scale);
  if (a.method != b.method) return one("method", to_string(a.method), to_string(b.method));
  if (a.critical_lower != b.critical_lower)
    return one("critical_lower", a.critical_lower, b.critical_lower);
  if (a.critical_upper != b.critical_upper)
    return one("critical_upper", a.critical_upper, b.critical_upper);
  if (a.lower_bound != b.lower_bound) return one("lower_bound", a.lower_bound, b.lower_bound);
  if (a.upper_bound != b.upper_bound) return one("upper_bound", a.upper_bound, b.upper_bound);
  if (a.step != b.step) return one("step", a.step, b.step);
  if (a.monotonicity != b.monotonicity)
    return one("monotonicity", to_string(a.monotonicity), to_string(b.monotonicity));
  if (a.attention_factor != b.attention_factor)
    return one("attention_factor", a.attention_factor, b.attention_factor);
  return std::string();
}

/// One evaluation: the genome and its loss (+infinity for a non-finite fitness value).
struct EvaluatedGenome {
  Genome genome;
  double loss = 0.0;
};

/// Everything needed to continue a search exactly. Written after every iteration.
struct SearchState {
  SearchSpace space;
  SearchParams params;
  std::int64_t iteration = 0;            ///< completed iterations (0: P0 evaluated)
  std::vector<EvaluatedGenome> history;  ///< every evaluation, in evaluation order
  std::vector<std::int64_t> population;  ///< current population: indices into history
  std::string rng_state;                 ///< std::mt19937_64 written with operator<<

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

/// Checks a state for internal consistency: valid space and params, every history genome valid
/// and distinct, losses not NaN, population indices distinct and in range, parseable RNG state.
/// Error code kParseError: a state comes from a checkpoint.
inline Status validate(const SearchState& st) {
  auto bad = [](const std::string& what, const auto& value, const std::string& rule) {
    return make_status(ErrorCode::kParseError, "search state " + what, value, rule);
  };
  Status s = validate(st.space);
  if (!s.ok()) return Status(ErrorCode::kParseError, s.message());
  s = validate(st.params);
  if (!s.ok()) return Status(ErrorCode::kParseError, s.message());
  if (st.iteration < 0) return bad("iteration", st.iteration, "must be >= 0");
  if (st.iteration > kMaxSearchIterations)
    return bad("iteration", st.iteration, "must be <= 2^30 (kMaxSearchIterations)");
  if (st.history.empty()) return bad("history.size()", 0, "must be > 0");
  std::set<Genome> seen;
  for (std::size_t i = 0; i < st.history.size(); ++i) {
    const EvaluatedGenome& e = st.history[i];
    s = validate_genome(st.space, e.genome);
    if (!s.ok())
      return Status(ErrorCode::kParseError, "ropescale: parse_error: search state history[" +
                                                std::to_string(i) + "]: " + s.message());
    if (std::isnan(e.loss) || e.loss == -std::numeric_limits<double>::infinity())
      return bad("history[" + std::to_string(i) + "].loss", e.loss,
                 "must be a number or +infinity");
    if (!seen.insert(e.genome).second)
      return bad("history[" + std::to_string(i) + "]", "duplicate",
                 "every genome is evaluated once");
  }
  if (st.population.empty()) return bad("population.size()", 0, "must be > 0");
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

/// The outcome of run() / resume().
struct SearchResult {
  Genome best;  ///< lowest-loss genome (c = best.critical_pair)
  double best_loss = 0.0;
  FactorTable table;  ///< genome_table(space, best)
  std::int64_t iterations = 0;
  std::int64_t evaluations = 0;
  StopReason stop_reason = StopReason::kCompleted;
  SearchState state;                     ///< the final state (resume() from it to continue)
  std::int64_t checkpoint_failures = 0;  ///< checkpoint writes that failed (the search went on)
  Status checkpoint_error;               ///< the last such failure (ok when none)
};

/// Fitness: a candidate table -> loss, lower is better.
using SearchFitness = std::function<double(const FactorTable&)>;

namespace detail {

// Portable random draws (the standard distributions differ between standard libraries; these
// make a checkpoint resume identically anywhere).
inline double search_uniform01(std::mt19937_64& rng) {
  return static_cast<double>(rng() >> 11) * (1.0 / 9007199254740992.0);
}
// Uniform in [0, n), n >= 1, by rejection.
inline std::uint64_t search_uniform_index(std::mt19937_64& rng, std::uint64_t n) {
  const std::uint64_t max = std::numeric_limits<std::uint64_t>::max();
  const std::uint64_t limit = max - (max % n + 1) % n;  // largest multiple of n, minus 1
  std::uint64_t x;
  do x = rng();
  while (x > limit);
  return x % n;
}

// A fixed set of worker threads; the calling thread works too. parallel_for runs fn(0..n-1),
// each index exactly once; fn must not throw.
class SearchThreadPool {
 public:
  explicit SearchThreadPool(int threads) {
    for (int i = 1; i < threads; ++i) workers_.emplace_back([this] { work(); });
  }
  ~SearchThreadPool() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stop_ = true;
    }
    work_cv_.notify_all();
    for (std::thread& t : workers_) t.join();
  }
  SearchThreadPool(const SearchThreadPool&) = delete;
  SearchThreadPool& operator=(const SearchThreadPool&) = delete;

  void parallel_for(std::size_t n, const std::function<void(std::size_t)>& fn) {
    if (workers_.empty() || n <= 1) {
      for (std::size_t i = 0; i < n; ++i) fn(i);
      return;
    }
    {
      std::lock_guard<std::mutex> lock(mutex_);
      job_ = &fn;
      n_ = n;
      next_.store(0);
      busy_ = workers_.size();
      ++generation_;
    }
    work_cv_.notify_all();
    drain(fn, n);
    std::unique_lock<std::mutex> lock(mutex_);
    done_cv_.wait(lock, [this] { return busy_ == 0; });
    job_ = nullptr;
  }

 private:
  void drain(const std::function<void(std::size_t)>& fn, std::size_t n) {
    for (std::size_t i = next_.fetch_add(1); i < n; i = next_.fetch_add(1)) fn(i);
  }
  void work() {
    std::uint64_t seen = 0;
    for (;;) {
      const std::function<void(std::size_t)>* job;
      std::size_t n;
      {
        std::unique_lock<std::mutex> lock(mutex_);
        work_cv_.wait(lock, [&] { return stop_ || generation_ != seen; });
        if (stop_) return;
        seen = generation_;
        job = job_;
        n = n_;
      }
      drain(*job, n);
      std::lock_guard<std::mutex> lock(mutex_);
      if (--busy_ == 0) done_cv_.notify_one();
    }
  }

  std::vector<std::thread> workers_;
  std::mutex mutex_;
  std::condition_variable work_cv_, done_cv_;
  const std::function<void(std::size_t)>* job_ = nullptr;
  std::size_t n_ = 0;
  std::atomic<std::size_t> next_{0};
  std::size_t busy_ = 0;
  std::uint64_t generation_ = 0;
  bool stop_ = false;
};

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
  /// individuals; duplicates are skipped); each must satisfy validate_genome, e.g. from
  /// project_to_space(). Exceptions from the fitness propagate (the last checkpoint stays valid).
  SearchResult run(const SearchFitness& fitness, const std::vector<Genome>& seeds = {}) {
    check_fitness(fitness);
    for (std::size_t i = 0; i < seeds.size(); ++i) {
      const Status s = validate_genome(space_, seeds[i]);
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
    detail::SearchThreadPool pool;
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
      g.steps[j] = lo + static_cast<std::int64_t>(detail::search_uniform_index(
                            rng, static_cast<std::uint64_t>(hi - lo + 1)));
    }

    // Moves c by one in a random direction when the space and the genome allow it.
    void shift_critical(Genome& g) {
      const bool down = detail::search_uniform01(rng) < 0.5;
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
            detail::search_uniform01(rng) < p.critical_mutation_prob)
          shift_critical(g);
        for (std::size_t j = 0; j < g.steps.size(); ++j)
          if (detail::search_uniform01(rng) < p.mutation_prob) resample_gene(g, j);
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
          if (detail::search_uniform01(rng) >= p.mutation_prob) continue;
          if (detail::search_uniform01(rng) >= 0.5) continue;
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
      Eigen::ArrayXd f;
      for (const Genome& g : batch) {
        detail::genome_factors_into(sp, g, &f);
        tables.emplace_back(f, sp.attention_factor, to_string(sp.method));
      }
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
          const double v = int_lo + static_cast<double>(detail::search_uniform_index(
                                        rng, static_cast<std::uint64_t>(int_hi - int_lo) + 1));
          k = std::clamp<std::int64_t>(std::llround(v / sp.step), lo, hi);
        } else {
          k = lo + static_cast<std::int64_t>(
                       detail::search_uniform_index(rng, static_cast<std::uint64_t>(hi - lo + 1)));
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
        const std::int64_t parent = parents[detail::search_uniform_index(rng, np)];
        if (mutate(genome(parent), &child)) {
          seen.insert(child);
          batch.push_back(child);
        }
      }
      for (std::int64_t x = 0; x < p.crossovers; ++x) {
        bool ok = false;
        if (np >= 2) {
          std::uint64_t a = detail::search_uniform_index(rng, np);
          std::uint64_t b = detail::search_uniform_index(rng, np - 1);
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
