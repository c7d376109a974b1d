// ropescale: the search space of the LongRoPE2 / LongRoPE v1 factor search, and its genome.
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
// A genome becomes a FactorTable only through longrope2_factors (scaling.hpp), the one anchor rule,
// so every table the search evaluates, returns, exports or checkpoints is that function's output.
// The evolution over the space is in search.hpp; its parameters and state in search_state.hpp.
#pragma once

#include <Eigen/Core>
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "ropescale/error.hpp"
#include "ropescale/factors.hpp"
#include "ropescale/frequencies.hpp"
#include "ropescale/scaling.hpp"

#pragma push_macro("ROPESCALE_INSIDE_PUBLIC_HEADER")
#define ROPESCALE_INSIDE_PUBLIC_HEADER
#include "ropescale/detail/json/field_table.hpp"
#pragma pop_macro("ROPESCALE_INSIDE_PUBLIC_HEADER")

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
  /// factors in [s, 2s] on a 0.01 grid, non-decreasing, c from critical_dims(spec).lower_pair
  /// to critical_dims(spec).critical_pair (both clamped to [1, rotary_dim/2 - 1]), attention
  /// factor sqrt(1 + ln s / ln L_train) (LongRoPE's default, which LongRoPE2's released configs
  /// use). An error on an invalid spec, target_length < original_max_position, rotary_dim < 4 or
  /// original_max_position <= 2 pi (critical_dims' rule: no pair completed a period).
  static Result<SearchSpace> longrope2(const RopeSpec& spec, std::int64_t target_length) {
    Result<SearchSpace> made = base(spec, target_length);
    if (!made.ok()) return made;
    SearchSpace& sp = *made;
    sp.method = SearchMethod::kLongRoPE2;
    if (spec.pairs() < 2)
      return make_status(ErrorCode::kInvalidArgument, "rotary_dim", spec.rotary_dim,
                         "must be >= 4 for a LongRoPE2 search (a critical pair c >= 1 "
                         "with a searched pair at or above it)");
    const std::int64_t hi_c = spec.pairs() - 1;
    const Result<CriticalDims> dims = critical_dims(spec);
    if (!dims.ok()) return dims.status();
    sp.critical_lower = std::clamp<std::int64_t>(dims->lower_pair, 1, hi_c);
    sp.critical_upper = std::clamp<std::int64_t>(dims->critical_pair, sp.critical_lower, hi_c);
    sp.lower_bound = sp.scale;
    sp.upper_bound = 2.0 * sp.scale;
    return made;
  }

  /// LongRoPE (v1) space: every pair searched in [1, 1.25 s] (arXiv 2402.13753, Table 4), c = 0.
  /// An error on an invalid spec or target_length < original_max_position.
  static Result<SearchSpace> longrope(const RopeSpec& spec, std::int64_t target_length) {
    Result<SearchSpace> made = base(spec, target_length);
    if (!made.ok()) return made;
    SearchSpace& sp = *made;
    sp.method = SearchMethod::kLongRoPE;
    sp.critical_lower = 0;
    sp.critical_upper = 0;
    sp.lower_bound = 1.0;
    sp.upper_bound = 1.25 * sp.scale;
    return made;
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

  /// The field table (detail/json/field_table.hpp): equality, mismatch() and the
  /// checkpoint JSON are derived from it. Every field defines the search. freq_dim compares and
  /// is written as RopeSpec::frequency_dim() (0 and rotary_dim mean the same span; the key is
  /// left out then, as in files written before it existed).
  static auto fields() {
    using detail::kFieldDefining;
    using detail::kFieldOptional;
    using detail::kFieldPersisted;
    using detail::member_field;
    using detail::nested_field;
    constexpr unsigned kAll = kFieldPersisted | kFieldDefining;
    return std::make_tuple(
        nested_field("head_dim", &SearchSpace::spec, &RopeSpec::head_dim, kAll),
        nested_field("rotary_dim", &SearchSpace::spec, &RopeSpec::rotary_dim, kAll),
        nested_field("rope_theta", &SearchSpace::spec, &RopeSpec::rope_theta, kAll),
        detail::make_field<SearchSpace, std::int64_t>(
            "freq_dim", kAll | kFieldOptional,
            [](const SearchSpace& s) { return s.spec.frequency_dim(); },
            [](SearchSpace& s, std::int64_t v) { s.spec.freq_dim = v; },
            [](const SearchSpace& s) { return s.spec.frequency_dim() == s.spec.rotary_dim; }),
        nested_field("original_max_position", &SearchSpace::spec, &RopeSpec::original_max_position,
                     kAll),
        member_field("scale", &SearchSpace::scale, kAll),
        member_field("method", &SearchSpace::method, kAll),
        member_field("critical_lower", &SearchSpace::critical_lower, kAll),
        member_field("critical_upper", &SearchSpace::critical_upper, kAll),
        member_field("lower_bound", &SearchSpace::lower_bound, kAll),
        member_field("upper_bound", &SearchSpace::upper_bound, kAll),
        member_field("step", &SearchSpace::step, kAll),
        member_field("monotonicity", &SearchSpace::monotonicity, kAll),
        member_field("attention_factor", &SearchSpace::attention_factor, kAll));
  }

 private:
  static Result<SearchSpace> base(const RopeSpec& spec, std::int64_t target_length) {
    ROPESCALE_RETURN_IF_ERROR(validate(spec));
    if (target_length < spec.original_max_position)
      return make_status(
          ErrorCode::kInvalidArgument, "target_length", target_length,
          "must be >= original_max_position (" + std::to_string(spec.original_max_position) + ")");
    SearchSpace sp;
    sp.spec = spec;
    sp.scale = static_cast<double>(target_length) / static_cast<double>(spec.original_max_position);
    sp.attention_factor = longrope_default_attention_factor(sp.scale, spec.original_max_position);
    return sp;
  }
};

inline bool operator==(const SearchSpace& a, const SearchSpace& b) {
  return detail::fields_equal(a, b);
}
inline bool operator!=(const SearchSpace& a, const SearchSpace& b) { return !(a == b); }

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

// The table of a genome already checked against its space. LongRoPE2 mode: longrope2_factors,
// the one place the anchor rule lambda_i = lambda_c^(i/c) lives; LongRoPE v1 mode (c = 0): the
// grid values as they are.
inline FactorTable genome_table_of(const SearchSpace& sp, const Genome& g) {
  Eigen::ArrayXd searched(static_cast<Eigen::Index>(g.steps.size()));
  for (Eigen::Index j = 0; j < searched.size(); ++j)
    searched[j] = sp.grid_value(g.steps[static_cast<std::size_t>(j)]);
  if (sp.method == SearchMethod::kLongRoPE2)
    return longrope2_factors(sp.spec, g.critical_pair, searched, sp.attention_factor).value();
  return FactorTable(std::move(searched), sp.attention_factor, to_string(sp.method));
}

}  // namespace detail

/// Checks a genome against a (valid) space: c in [critical_lower, critical_upper], one grid index
/// per searched pair, every factor inside the bounds, monotone as the space requires.
inline Status validate(const SearchSpace& sp, const Genome& g) {
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

/// The FactorTable of a genome, with the space's attention factor. LongRoPE2 mode: exactly
/// longrope2_factors(spec, c, searched, attention_factor) (scaling.hpp), method "longrope2";
/// LongRoPE v1 mode: the searched factors as they are, method "longrope". The search hands the
/// fitness bit-identical tables. Its factors() are the full per-pair factors of the genome:
/// searched values from c, lambda_c^(i/c) below c.
inline Result<FactorTable> genome_table(const SearchSpace& sp, const Genome& g) {
  ROPESCALE_RETURN_IF_ERROR(validate(sp));
  ROPESCALE_RETURN_IF_ERROR(validate(sp, g));
  return detail::genome_table_of(sp, g);
}

/// Projects any factor list onto the space as a genome with critical pair c (LongRoPE v1: 0):
/// the factors of pairs >= c are rounded to the grid, clamped to the bounds and made monotone.
/// Use it to seed the search with a published list or another method's table (e.g. YaRN's).
inline Result<Genome> project_to_space(const SearchSpace& sp,
                                       const Eigen::Ref<const Eigen::ArrayXd>& f,
                                       std::int64_t critical_pair) {
  ROPESCALE_RETURN_IF_ERROR(validate(sp));
  if (static_cast<std::int64_t>(f.size()) != sp.spec.pairs())
    return make_status(ErrorCode::kInvalidArgument, "factors.size()",
                       static_cast<std::int64_t>(f.size()),
                       "must equal rotary_dim / 2 = " + std::to_string(sp.spec.pairs()));
  if (critical_pair < sp.critical_lower || critical_pair > sp.critical_upper)
    return make_status(ErrorCode::kInvalidArgument, "critical_pair", critical_pair,
                       "must be in [critical_lower, critical_upper] = [" +
                           std::to_string(sp.critical_lower) + ", " +
                           std::to_string(sp.critical_upper) + "]");
  for (Eigen::Index i = 0; i < f.size(); ++i)
    if (!std::isfinite(f[i]))
      return make_status(ErrorCode::kInvalidArgument, "factors[" + std::to_string(i) + "]", f[i],
                         "must be finite");
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
inline Result<Genome> project_to_space(const SearchSpace& sp,
                                       const Eigen::Ref<const Eigen::ArrayXd>& f) {
  ROPESCALE_RETURN_IF_ERROR(validate(sp));
  if (sp.method == SearchMethod::kLongRoPE) return project_to_space(sp, f, 0);
  // A list detect_longrope2 refuses (a non-finite entry) is refused by name below.
  const LongRope2Detection d = detect_longrope2(f).value_or(LongRope2Detection{});
  const std::int64_t c = d.found ? std::clamp(d.critical_pair, sp.critical_lower, sp.critical_upper)
                                 : sp.critical_upper;
  return project_to_space(sp, f, c);
}

/// "name (a vs b)" for the first field in which two spaces differ ("" when none), from the
/// field table (SearchSpace::fields()).
inline std::string mismatch(const SearchSpace& a, const SearchSpace& b) {
  return detail::first_field_mismatch(a, b, detail::kFieldDefining);
}

}  // namespace ropescale
