// Evolutionary factor search: a synthetic fitness with a known optimum, the constraints on every
// evaluated genome, no duplicate evaluation, determinism across thread counts, stop conditions,
// kill-and-resume equivalence, seeds and bad input.
#include <gtest/gtest.h>

#include <Eigen/Core>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <stdexcept>
#include <thread>
#include <vector>

#include "ropescale/scaling.hpp"
#include "ropescale/search.hpp"

using ropescale::EvolutionSearch;
using ropescale::FactorTable;
using ropescale::Genome;
using ropescale::Monotonicity;
using ropescale::RopeSpec;
using ropescale::SearchMethod;
using ropescale::SearchParams;
using ropescale::SearchProgress;
using ropescale::SearchResult;
using ropescale::SearchSpace;
using ropescale::SearchState;
using ropescale::StopReason;

namespace {

// rotary_dim 32, base 1e4, 4k -> 32k (s = 8): critical pairs 8 .. 12 (Alg. 1's range).
RopeSpec small_spec() { return RopeSpec{32, 32, 10000.0, 4096}; }

// LLaMA3-8B's RoPE (rotary 128, base 5e5, 8k), extended to 128k: s = 16, c in [24, 35].
RopeSpec llama3_spec() { return RopeSpec{128, 128, 500000.0, 8192}; }

// A hidden LongRoPE2 table: lambda_i = lambda_c^(i/c) below c, the listed values from c.
Eigen::ArrayXd hidden_table(std::int64_t pairs, std::int64_t c, const std::vector<double>& top) {
  Eigen::ArrayXd t(pairs);
  for (std::int64_t i = 0; i < pairs; ++i)
    t[i] = i < c ? std::pow(top[0], static_cast<double>(i) / static_cast<double>(c))
                 : top[static_cast<std::size_t>(i - c)];
  return t;
}

double log_sq_loss(const FactorTable& t, const Eigen::ArrayXd& target) {
  return (t.factors().log() - target.log()).square().sum();
}

// A cheap fitness for the structural tests: prefers a table near 1.4 s everywhere above c = 28.
double structural_loss(const FactorTable& t) {
  const Eigen::ArrayXd& f = t.factors();
  double loss = 0.0;
  for (Eigen::Index i = 0; i < f.size(); ++i) {
    const double want = i < 28 ? std::pow(22.0, i / 28.0) : 22.0 + 0.1 * (i - 28);
    loss += std::abs(std::log(f[i] / want));
  }
  return loss;
}

void expect_same_result(const SearchResult& a, const SearchResult& b) {
  EXPECT_EQ(a.best, b.best);
  EXPECT_EQ(a.best_loss, b.best_loss);
  EXPECT_EQ(a.table, b.table);
  EXPECT_EQ(a.table.method(), b.table.method());
  EXPECT_EQ(a.critical_pair, b.critical_pair);
  EXPECT_EQ(a.target_length, b.target_length);
  EXPECT_EQ(a.evaluations, b.evaluations);
  EXPECT_EQ(a.iterations, b.iterations);
  ASSERT_EQ(a.state.history.size(), b.state.history.size());
  for (std::size_t i = 0; i < a.state.history.size(); ++i) {
    EXPECT_EQ(a.state.history[i].genome, b.state.history[i].genome) << "evaluation " << i;
    EXPECT_EQ(a.state.history[i].loss, b.state.history[i].loss) << "evaluation " << i;
  }
  EXPECT_EQ(a.state.population, b.state.population);
  EXPECT_EQ(a.state.rng_state, b.state.rng_state);
}

}  // namespace

TEST(SearchSpace, Longrope2DefaultsFollowThePaper) {
  const SearchSpace sp = SearchSpace::longrope2(llama3_spec(), 131072).value();
  EXPECT_EQ(sp.scale, 16.0);
  EXPECT_EQ(sp.lower_bound, 16.0);
  EXPECT_EQ(sp.upper_bound, 32.0);
  EXPECT_EQ(sp.step, 0.01);
  // LLaMA3-8B: i10_tcd = 24, i_tcd = 35 (LongRoPE2 Alg. 1 / eq. 7).
  EXPECT_EQ(sp.critical_lower, 24);
  EXPECT_EQ(sp.critical_upper, 35);
  // sqrt(1 + ln 16 / ln 8192) = 1.1435437...
  EXPECT_NEAR(sp.attention_factor, std::sqrt(1.0 + std::log(16.0) / std::log(8192.0)), 1e-15);
  EXPECT_NEAR(sp.attention_factor, 1.143544, 1e-6);
  EXPECT_TRUE(ropescale::validate(sp).ok());

  const SearchSpace v1 = SearchSpace::longrope(llama3_spec(), 131072).value();
  EXPECT_EQ(v1.method, SearchMethod::kLongRoPE);
  EXPECT_EQ(v1.critical_lower, 0);
  EXPECT_EQ(v1.critical_upper, 0);
  EXPECT_EQ(v1.lower_bound, 1.0);
  EXPECT_EQ(v1.upper_bound, 20.0);  // 1.25 s (LongRoPE Table 4)
}

TEST(SearchSpace, Longrope2NeedsACriticalPair) {
  // The space's c range comes from critical_dims: a training window of at most 2 pi tokens holds
  // no full period of any pair, so there is no critical pair and the space is refused.
  const ropescale::RopeSpec tiny{64, 64, 10000.0, 6};
  const ropescale::Status s = SearchSpace::longrope2(tiny, 64).status();
  EXPECT_EQ(s.code(), ropescale::ErrorCode::kInvalidArgument);
  EXPECT_EQ(s.argument(), "original_max_position");
  EXPECT_NE(s.message().find("must be > 2 pi"), std::string::npos) << s.message();
  // One token more and the window holds pair 0's period: c = 1 .. 1 after clamping.
  const SearchSpace seven = SearchSpace::longrope2({64, 64, 10000.0, 7}, 64).value();
  EXPECT_EQ(seven.critical_lower, 1);
  EXPECT_EQ(seven.critical_upper, 1);
}

TEST(SearchSpace, GenomeTableFollowsTheAnchorRule) {
  const SearchSpace sp = SearchSpace::longrope2(llama3_spec(), 131072).value();
  // LLaMA3-8B's published LongRoPE2 long_factor breaks at c = 33 with lambda_33 = 21.81.
  Genome g;
  g.critical_pair = 33;
  for (int j = 0; j < 31; ++j) g.steps.push_back(2181 + 10 * j);
  const FactorTable t = ropescale::genome_table(sp, g).value();
  EXPECT_EQ(t.method(), "longrope2");
  EXPECT_EQ(t.factors()[0], 1.0);
  // lambda_i = 21.81^(i/33); the published list's ratio r = 1.097906416 (lambda_i = r^i).
  EXPECT_NEAR(t.factors()[1], 1.097906416, 1e-8);
  EXPECT_NEAR(t.factors()[10], std::pow(1.097906416, 10), 1e-6);
  EXPECT_NEAR(t.factors()[33], 21.81, 1e-12);
  EXPECT_NEAR(t.factors()[63], 21.81 + 3.0, 1e-12);

  // project_to_space: rounds to the grid, clamps to [s, 2s], repairs monotonicity.
  Eigen::ArrayXd f = t.factors();
  f[40] = 15.0;    // below s: clamped up, then raised to its left neighbour
  f[50] = 40.0;    // above 2s: clamped down
  f[41] = 22.504;  // rounds to 22.50
  const Genome p = ropescale::project_to_space(sp, f, 33).value();
  EXPECT_TRUE(ropescale::validate(sp, p).ok());
  EXPECT_EQ(p.steps[40 - 33], p.steps[39 - 33]);
  EXPECT_EQ(p.steps[41 - 33], 2250);
  EXPECT_EQ(p.steps[50 - 33], 3200);
  EXPECT_EQ(p.steps[51 - 33], 3200);  // monotone after the clamp to the upper bound
}

TEST(SearchSpace, PublishedLlama3ListIsAGenomeOfItsSpace) {
  // LLaMA3-8B's released LongRoPE2 long_factor (microsoft/nnscaler) lies inside LongRoPE2's
  // space for 8k -> 128k: c = 33 within [24, 35], searched factors on the 0.01 grid in [16, 32],
  // strictly increasing. Projecting it loses nothing but the 1e-8 rounding of its anchored part.
  std::ifstream in(std::string(ROPESCALE_TEST_DATA_DIR) + "/llama3_8b_longrope2.json");
  ASSERT_TRUE(in.good());
  const nlohmann::json j = nlohmann::json::parse(in);
  const std::vector<double> list = j["rope_scaling"]["long_factor"].get<std::vector<double>>();
  ASSERT_EQ(list.size(), 64u);
  const Eigen::ArrayXd published = Eigen::Map<const Eigen::ArrayXd>(list.data(), 64);
  SearchSpace sp = SearchSpace::longrope2(llama3_spec(), 131072).value();
  sp.monotonicity = Monotonicity::kStrictlyIncreasing;
  const Genome g = ropescale::project_to_space(sp, published).value();
  EXPECT_EQ(g.critical_pair, 33);
  EXPECT_TRUE(ropescale::validate(sp, g).ok()) << ropescale::validate(sp, g).message();
  EXPECT_EQ(g.steps.front(), 2181);
  EXPECT_EQ(g.steps.back(), 2605);
  const FactorTable t = ropescale::genome_table(sp, g).value();
  EXPECT_TRUE(t.approx_equal(FactorTable(published, sp.attention_factor), 1e-8)) << t;
  // The search's table is exactly scaling.hpp's LongRoPE2 table.
  EXPECT_EQ(t, ropescale::longrope2_factors(
                   sp.spec, 33, ropescale::genome_table(sp, g).value().factors().tail(31),
                   sp.attention_factor)
                   .value());
  EXPECT_EQ(t.method(), "longrope2");
  // A table with no anchored prefix (YaRN-like: ones, then a ramp) falls back to critical_upper.
  Eigen::ArrayXd yarn = Eigen::ArrayXd::Ones(64);
  for (int i = 20; i < 64; ++i) yarn[i] = std::min(16.0, 1.0 + 0.5 * (i - 19));
  const Genome y = ropescale::project_to_space(sp, yarn).value();
  EXPECT_EQ(y.critical_pair, 35);
  EXPECT_TRUE(ropescale::validate(sp, y).ok());
}

TEST(Search, FindsAHiddenOptimumWithinTheDefaultBudget) {
  // Hidden optimum: c = 12 and four searched factors; below c the anchor rule. Every factor must
  // come within 0.05 and c must be exact, for several seeds, with the default parameters.
  const SearchSpace sp = SearchSpace::longrope2(small_spec(), 32768).value();
  ASSERT_EQ(sp.critical_lower, 8);
  ASSERT_EQ(sp.critical_upper, 12);
  const Eigen::ArrayXd target = hidden_table(16, 12, {9.07, 9.44, 9.60, 9.90});
  for (std::uint64_t seed = 1; seed <= 4; ++seed) {
    SearchParams p;
    p.seed = seed;
    EvolutionSearch search(sp, p);
    const SearchResult r =
        search.run([&](const FactorTable& t) { return log_sq_loss(t, target); }).value();
    EXPECT_EQ(r.stop_reason, StopReason::kCompleted);
    EXPECT_EQ(r.iterations, 40);
    EXPECT_EQ(r.evaluations, 64 + 40 * 32);
    EXPECT_EQ(r.best.critical_pair, 12) << "seed " << seed;
    EXPECT_LE((r.table.factors() - target).abs().maxCoeff(), 0.05 + 1e-9)
        << "seed " << seed << ": " << r.table;
  }
}

TEST(Search, EveryEvaluatedGenomeSatisfiesTheConstraintsAndIsNew) {
  for (Monotonicity mono : {Monotonicity::kNonDecreasing, Monotonicity::kStrictlyIncreasing}) {
    for (SearchMethod method : {SearchMethod::kLongRoPE2, SearchMethod::kLongRoPE}) {
      SearchSpace sp = method == SearchMethod::kLongRoPE2
                           ? SearchSpace::longrope2(llama3_spec(), 131072).value()
                           : SearchSpace::longrope(llama3_spec(), 131072).value();
      sp.monotonicity = mono;
      SearchParams p;
      p.iterations = 8;
      p.seed = 7;
      std::vector<FactorTable> seen_tables;
      EvolutionSearch search(sp, p);
      const SearchResult r = search
                                 .run([&](const FactorTable& t) {
                                   seen_tables.push_back(t);
                                   return structural_loss(t);
                                 })
                                 .value();
      ASSERT_EQ(static_cast<std::int64_t>(seen_tables.size()), r.evaluations);
      std::set<Genome> genomes;
      std::set<std::vector<double>> tables;
      for (std::size_t i = 0; i < r.state.history.size(); ++i) {
        const Genome& g = r.state.history[i].genome;
        EXPECT_TRUE(ropescale::validate(sp, g).ok()) << ropescale::validate(sp, g).message();
        EXPECT_TRUE(genomes.insert(g).second) << "genome evaluated twice at " << i;
        // The fitness saw exactly this genome's table, in evaluation order.
        EXPECT_EQ(seen_tables[i], ropescale::genome_table(sp, g).value());
        EXPECT_EQ(seen_tables[i].method(), ropescale::genome_table(sp, g).value().method());
        const Eigen::ArrayXd& f = seen_tables[i].factors();
        EXPECT_TRUE(tables.insert(std::vector<double>(f.data(), f.data() + f.size())).second);
        // Hand-checked constraints on the table itself.
        const std::int64_t c = g.critical_pair;
        EXPECT_GE(c, sp.critical_lower);
        EXPECT_LE(c, sp.critical_upper);
        for (std::int64_t k = 0; k < c; ++k)
          EXPECT_NEAR(f[k], std::pow(f[c], static_cast<double>(k) / c), 1e-12 * f[c]);
        for (std::int64_t k = c; k < f.size(); ++k) {
          EXPECT_GE(f[k], sp.lower_bound - 1e-12);
          EXPECT_LE(f[k], sp.upper_bound + 1e-12);
          EXPECT_NEAR(f[k] / 0.01, std::round(f[k] / 0.01), 1e-6);
          if (k > c) {
            if (mono == Monotonicity::kStrictlyIncreasing)
              EXPECT_GT(f[k], f[k - 1]);
            else
              EXPECT_GE(f[k], f[k - 1]);
          }
        }
      }
      if (method == SearchMethod::kLongRoPE2) {
        // P0 holds one flat (or one-step staircase) individual per critical pair, each at an
        // integer factor (LongRoPE2 Alg. 1).
        for (std::int64_t c = sp.critical_lower; c <= sp.critical_upper; ++c) {
          const Genome& g = r.state.history[static_cast<std::size_t>(c - sp.critical_lower)].genome;
          EXPECT_EQ(g.critical_pair, c);
          if (mono == Monotonicity::kNonDecreasing) {
            EXPECT_EQ(g.steps.front() % 100, 0);
            EXPECT_EQ(g.steps.front(), g.steps.back());
          } else {
            EXPECT_EQ(g.steps.back() - g.steps.front(),
                      static_cast<std::int64_t>(g.steps.size()) - 1);
          }
        }
      }
    }
  }
}

TEST(Search, IdenticalForAnyThreadCount) {
  const SearchSpace sp = SearchSpace::longrope2(llama3_spec(), 131072).value();
  SearchParams p;
  p.iterations = 12;
  p.seed = 42;
  p.thread_safe = true;
  std::vector<SearchResult> results;
  for (int threads : {1, 2, 4}) {
    p.threads = threads;
    std::atomic<int> concurrent{0}, max_concurrent{0};
    EvolutionSearch search(sp, p);
    results.push_back(search
                          .run([&](const FactorTable& t) {
                            const int now = ++concurrent;
                            int prev = max_concurrent.load();
                            while (now > prev && !max_concurrent.compare_exchange_weak(prev, now)) {
                            }
                            std::this_thread::sleep_for(std::chrono::microseconds(20));
                            --concurrent;
                            return structural_loss(t);
                          })
                          .value());
    EXPECT_LE(max_concurrent.load(), threads);
  }
  expect_same_result(results[0], results[1]);
  expect_same_result(results[0], results[2]);

  // Not thread-safe: never called concurrently, whatever `threads` says; same result.
  p.thread_safe = false;
  p.threads = 4;
  std::atomic<int> concurrent{0};
  bool overlap = false;
  EvolutionSearch serial(sp, p);
  const SearchResult r = serial
                             .run([&](const FactorTable& t) {
                               if (++concurrent > 1) overlap = true;
                               --concurrent;
                               return structural_loss(t);
                             })
                             .value();
  EXPECT_FALSE(overlap);
  expect_same_result(results[0], r);

  // A different seed gives a different search.
  p.seed = 43;
  EvolutionSearch other(sp, p);
  EXPECT_NE(other.run(structural_loss).value().state.history[0].genome, r.state.history[0].genome);
}

TEST(Search, ProgressAndStopConditions) {
  const SearchSpace sp = SearchSpace::longrope2(llama3_spec(), 131072).value();
  SearchParams p;
  p.seed = 3;
  std::vector<SearchProgress> seen;
  {
    EvolutionSearch search(sp, p);
    search.set_progress_callback([&](const SearchProgress& pr) { seen.push_back(pr); });
    const SearchResult r = search.run(structural_loss).value();
    ASSERT_EQ(seen.size(), 41u);  // P0 plus 40 iterations
    for (std::size_t i = 0; i < seen.size(); ++i) {
      EXPECT_EQ(seen[i].iteration, static_cast<std::int64_t>(i));
      EXPECT_EQ(seen[i].evaluations, 64 + 32 * static_cast<std::int64_t>(i));
      EXPECT_GE(seen[i].evaluations_per_second, 0.0);
      if (i > 0) {
        EXPECT_LE(seen[i].best_loss, seen[i - 1].best_loss);  // elitist
      }
    }
    EXPECT_EQ(seen.back().best_loss, r.best_loss);
    // The reported best is the minimum over every evaluation.
    double min_loss = r.state.history[0].loss;
    for (const auto& e : r.state.history) min_loss = std::min(min_loss, e.loss);
    EXPECT_EQ(r.best_loss, min_loss);
    EXPECT_EQ(structural_loss(r.table), r.best_loss);
  }
  {
    p.max_evaluations = 200;  // P0 (64) + 4 x 32 = 192; a fifth batch would exceed 200
    EvolutionSearch search(sp, p);
    const SearchResult r = search.run(structural_loss).value();
    EXPECT_EQ(r.stop_reason, StopReason::kMaxEvaluations);
    EXPECT_EQ(r.evaluations, 192);
    EXPECT_EQ(r.iterations, 4);
    p.max_evaluations = 0;
  }
  {
    EvolutionSearch search(sp, p);
    search.set_stop_callback([](const SearchProgress& pr) { return pr.iteration == 6; });
    const SearchResult r = search.run(structural_loss).value();
    EXPECT_EQ(r.stop_reason, StopReason::kCallback);
    EXPECT_EQ(r.iterations, 6);
    EXPECT_EQ(r.evaluations, 64 + 6 * 32);
  }
  {
    p.max_seconds = 1e-9;
    EvolutionSearch search(sp, p);
    const SearchResult r = search
                               .run([](const FactorTable& t) {
                                 std::this_thread::sleep_for(std::chrono::microseconds(1));
                                 return structural_loss(t);
                               })
                               .value();
    EXPECT_EQ(r.stop_reason, StopReason::kMaxSeconds);
    EXPECT_EQ(r.iterations, 0);
    p.max_seconds = 0.0;
  }
  {
    // Non-finite losses count as +infinity: the search goes on and never picks them.
    EvolutionSearch search(sp, p);
    int calls = 0;
    const SearchResult r = search
                               .run([&](const FactorTable& t) {
                                 return (++calls % 3 == 0) ? std::nan("") : structural_loss(t);
                               })
                               .value();
    EXPECT_TRUE(std::isfinite(r.best_loss));
    std::int64_t infinite = 0;
    for (const auto& e : r.state.history) infinite += std::isinf(e.loss) ? 1 : 0;
    EXPECT_EQ(infinite, r.evaluations / 3);
  }
}

TEST(Search, ResumeContinuesExactly) {
  const SearchSpace sp = SearchSpace::longrope2(llama3_spec(), 131072).value();
  SearchParams p;
  p.seed = 11;
  p.iterations = 20;
  EvolutionSearch full(sp, p);
  const SearchResult uninterrupted = full.run(structural_loss).value();

  for (std::int64_t k : {0, 1, 7, 19}) {
    // Stop after k iterations (the checkpoint callback keeps the last state), then resume.
    SearchState last;
    EvolutionSearch first(sp, p);
    first.set_checkpoint_callback([&](const SearchState& st) { last = st; });
    first.set_stop_callback([&](const SearchProgress& pr) { return pr.iteration == k; });
    const SearchResult part = first.run(structural_loss).value();
    EXPECT_EQ(part.iterations, k);
    EXPECT_EQ(last.iteration, k);
    SearchParams q = p;
    q.threads = 3;  // execution settings may change on resume
    q.thread_safe = true;
    EvolutionSearch second(sp, q);
    expect_same_result(uninterrupted, second.resume(last, structural_loss).value());
  }

  // Killed in the middle of an iteration (the fitness throws): resume from the last checkpoint.
  SearchState last;
  EvolutionSearch crashing(sp, p);
  crashing.set_checkpoint_callback([&](const SearchState& st) { last = st; });
  int calls = 0;
  EXPECT_THROW(crashing
                   .run([&](const FactorTable& t) {
                     if (++calls == 64 + 5 * 32 + 17) throw std::runtime_error("killed");
                     return structural_loss(t);
                   })
                   .value(),
               std::runtime_error);
  EXPECT_EQ(last.iteration, 5);
  EvolutionSearch again(sp, p);
  expect_same_result(uninterrupted, again.resume(last, structural_loss).value());

  // A finished search can be extended: more iterations on resume equal a longer run.
  SearchParams longer = p;
  longer.iterations = 25;
  EvolutionSearch extended(sp, longer);
  EvolutionSearch direct(sp, longer);
  expect_same_result(direct.run(structural_loss).value(),
                     extended.resume(uninterrupted.state, structural_loss).value());
}

TEST(Search, ResumeRefusesAMismatchedState) {
  const SearchSpace sp = SearchSpace::longrope2(llama3_spec(), 131072).value();
  SearchParams p;
  p.iterations = 2;
  EvolutionSearch search(sp, p);
  const SearchResult r = search.run(structural_loss).value();

  SearchParams other = p;
  other.seed = 1;
  EvolutionSearch wrong_seed(sp, other);
  try {
    wrong_seed.resume(r.state, structural_loss).value();
    FAIL() << "resume accepted a state with another seed";
  } catch (const ropescale::Error& e) {
    EXPECT_EQ(e.code(), ropescale::ErrorCode::kParseError);
    EXPECT_NE(std::string(e.what()).find("seed"), std::string::npos) << e.what();
  }
  SearchSpace sp2 = sp;
  sp2.upper_bound = 30.0;
  EvolutionSearch wrong_space(sp2, p);
  try {
    wrong_space.resume(r.state, structural_loss).value();
    FAIL() << "resume accepted a state from another space";
  } catch (const ropescale::Error& e) {
    EXPECT_EQ(e.code(), ropescale::ErrorCode::kParseError);
    EXPECT_NE(std::string(e.what()).find("upper_bound"), std::string::npos) << e.what();
  }
  SearchState broken = r.state;
  broken.history[3].genome.steps[2] = 1;  // below s
  EXPECT_THROW(search.resume(broken, structural_loss).value(), ropescale::Error);
  broken = r.state;
  broken.history.push_back(broken.history[0]);  // a duplicate
  EXPECT_THROW(search.resume(broken, structural_loss).value(), ropescale::Error);
  broken = r.state;
  broken.population.push_back(100000);
  EXPECT_THROW(search.resume(broken, structural_loss).value(), ropescale::Error);
  broken = r.state;
  broken.rng_state = "not a generator";
  EXPECT_THROW(search.resume(broken, structural_loss).value(), ropescale::Error);
}

TEST(Search, SeedsJoinTheInitialPopulation) {
  const SearchSpace sp = SearchSpace::longrope2(small_spec(), 32768).value();
  const Eigen::ArrayXd target = hidden_table(16, 10, {9.0, 9.1, 9.3, 9.6, 9.8, 10.2});
  // Seeding with the optimum itself: found in P0, loss 0.
  const Genome seed = ropescale::project_to_space(sp, target, 10).value();
  SearchParams p;
  p.iterations = 1;
  EvolutionSearch search(sp, p);
  const SearchResult r =
      search.run([&](const FactorTable& t) { return log_sq_loss(t, target); }, {seed}).value();
  EXPECT_EQ(r.best, seed);
  EXPECT_NEAR(r.best_loss, 0.0, 1e-24);
  EXPECT_EQ(r.state.history[5].genome, seed);  // after the 5 flat individuals (c = 8 .. 12)

  Genome bad = seed;
  bad.steps[1] = bad.steps[0] - 1;  // not monotone
  EXPECT_THROW(search.run([](const FactorTable&) { return 0.0; }, {bad}).value(), ropescale::Error);
}

TEST(Search, CriticalPairIsFixedWithoutCriticalMutation) {
  // critical_mutation_prob = 0: the paper's Alg. 2, c only inherited from P0.
  const SearchSpace sp = SearchSpace::longrope2(llama3_spec(), 131072).value();
  SearchParams p;
  p.iterations = 6;
  p.critical_mutation_prob = 0.0;
  EvolutionSearch search(sp, p);
  std::map<std::int64_t, int> per_c;
  const SearchResult r = search.run(structural_loss).value();
  for (const auto& e : r.state.history) ++per_c[e.genome.critical_pair];
  EXPECT_EQ(per_c.size(), 12u);  // every c in [24, 35] from P0, never another
  EXPECT_EQ(per_c.begin()->first, 24);
  EXPECT_EQ(per_c.rbegin()->first, 35);
}

TEST(Search, RejectsBadInput) {
  const SearchSpace sp = SearchSpace::longrope2(llama3_spec(), 131072).value();
  auto expect_invalid = [](const SearchSpace& s, const SearchParams& p, const char* needle) {
    try {
      EvolutionSearch search(s, p);
      FAIL() << "accepted, expected an error about " << needle;
    } catch (const ropescale::Error& e) {
      EXPECT_EQ(e.code(), ropescale::ErrorCode::kInvalidArgument);
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
  };
  SearchParams p;
  p.parents = 65;
  expect_invalid(sp, p, "params.parents");
  p = SearchParams{};
  p.mutation_prob = 0.0;
  expect_invalid(sp, p, "params.mutation_prob");
  p = SearchParams{};
  p.mutations = 0;
  p.crossovers = 0;
  expect_invalid(sp, p, "params.mutations + params.crossovers");
  p = SearchParams{};
  p.max_seconds = -1.0;
  expect_invalid(sp, p, "params.max_seconds");
  SearchSpace s = sp;
  s.critical_upper = 64;
  expect_invalid(s, SearchParams{}, "space.critical_upper");
  s = sp;
  s.upper_bound = 10.0;
  expect_invalid(s, SearchParams{}, "space.upper_bound");
  s = sp;
  s.step = 0.0;
  expect_invalid(s, SearchParams{}, "space.step");
  s = sp;
  s.monotonicity = Monotonicity::kStrictlyIncreasing;
  s.step = 1.0;  // 17 grid points for 40 strictly increasing factors
  expect_invalid(s, SearchParams{}, "space.step");
  EXPECT_THROW(SearchSpace::longrope2(llama3_spec(), 4096).value(), ropescale::Error);
  EXPECT_THROW(SearchSpace::longrope2(RopeSpec{2, 2, 10000.0, 4096}, 8192).value(),
               ropescale::Error);
  // Two pairs: c = 1 is the only choice, and the search runs.
  const SearchSpace tiny = SearchSpace::longrope2(RopeSpec{4, 4, 10000.0, 4096}, 8192).value();
  EXPECT_EQ(tiny.critical_lower, 1);
  EXPECT_EQ(tiny.critical_upper, 1);
  SearchParams few;
  few.iterations = 3;
  const SearchResult r =
      EvolutionSearch(tiny, few)
          .run([](const FactorTable& t) { return std::abs(t.factors()[1] - 3.0); })
          .value();
  EXPECT_EQ(r.best.critical_pair, 1);
  EXPECT_NEAR(r.table.factors()[1], 3.0, 0.5);
  // A space of five genomes (factors 2, 2.5, .., 4): P0 takes all five, then the search reports
  // exhaustion instead of looping.
  SearchSpace coarse = tiny;
  coarse.step = 0.5;
  const SearchResult ex =
      EvolutionSearch(coarse, few)
          .run([](const FactorTable& t) { return std::abs(t.factors()[1] - 3.0); })
          .value();
  EXPECT_EQ(ex.stop_reason, StopReason::kExhausted);
  EXPECT_EQ(ex.evaluations, 5);
  EXPECT_EQ(ex.iterations, 0);
  EXPECT_EQ(ex.table.factors()[1], 3.0);

  EvolutionSearch ok(sp, SearchParams{});
  EXPECT_THROW(ok.run(ropescale::SearchFitness{}).value(), ropescale::Error);
}

namespace {

SearchParams ask_tell_params() {
  SearchParams p;
  p.population = 16;
  p.parents = 8;
  p.mutations = 4;
  p.crossovers = 4;
  p.iterations = 5;
  p.seed = 11;
  return p;
}

std::vector<std::int64_t> ids_of(const std::vector<ropescale::Candidate>& batch) {
  std::vector<std::int64_t> ids;
  for (const ropescale::Candidate& c : batch) ids.push_back(c.id);
  return ids;
}

}  // namespace

TEST(SearchAskTell, EqualsRunBitForBitHoweverTheBatchIsAnswered) {
  const SearchSpace sp = SearchSpace::longrope2(llama3_spec(), 131072).value();
  const SearchResult reference =
      EvolutionSearch(sp, ask_tell_params()).run(structural_loss).value();
  // Answers in reverse order, three at a time, as a farm of hosts would return them.
  EvolutionSearch search(sp, ask_tell_params());
  ASSERT_TRUE(search.start().ok());
  std::int64_t batches = 0;
  while (true) {
    const std::vector<ropescale::Candidate> batch = search.ask();
    if (batch.empty()) break;
    ++batches;
    // Asking again before answering hands out the same candidates.
    const std::vector<ropescale::Candidate> again = search.ask();
    ASSERT_EQ(ids_of(again), ids_of(batch));
    for (std::size_t i = 0; i < batch.size(); ++i) {
      EXPECT_EQ(batch[i].id, search.state().evaluations() + static_cast<std::int64_t>(i));
      EXPECT_EQ(batch[i].table, ropescale::genome_table(sp, batch[i].genome).value());
    }
    for (std::size_t end = batch.size(); end > 0;) {
      const std::size_t begin = end >= 3 ? end - 3 : 0;
      std::vector<std::int64_t> ids;
      std::vector<double> losses;
      for (std::size_t i = end; i-- > begin;) {
        ids.push_back(batch[i].id);
        losses.push_back(structural_loss(batch[i].table));
      }
      ASSERT_TRUE(search.tell(ids, losses).ok());
      end = begin;
    }
  }
  EXPECT_TRUE(search.finished());
  EXPECT_EQ(batches, reference.iterations + 1);
  const SearchResult r = search.result().value();
  expect_same_result(reference, r);
  EXPECT_EQ(r.stop_reason, reference.stop_reason);
  EXPECT_TRUE(r.state.pending.empty());
}

TEST(SearchAskTell, ResumesInTheMiddleOfABatch) {
  const SearchSpace sp = SearchSpace::longrope2(llama3_spec(), 131072).value();
  const SearchResult reference =
      EvolutionSearch(sp, ask_tell_params()).run(structural_loss).value();
  // Stop in the middle of the initial population and of the third batch.
  for (const int stop_batch : {0, 2}) {
    EvolutionSearch first(sp, ask_tell_params());
    SearchState mid;
    for (int b = 0;; ++b) {
      const std::vector<ropescale::Candidate> batch = first.ask();
      ASSERT_FALSE(batch.empty());
      if (b == stop_batch) {
        ASSERT_TRUE(first.tell({batch[1].id}, {structural_loss(batch[1].table)}).ok());
        mid = first.state();
        break;
      }
      std::vector<double> losses;
      for (const ropescale::Candidate& c : batch) losses.push_back(structural_loss(c.table));
      ASSERT_TRUE(first.tell(losses).ok());
    }
    ASSERT_FALSE(mid.pending.empty());
    EXPECT_TRUE(mid.pending[1].answered);
    EXPECT_FALSE(mid.pending[0].answered);
    EXPECT_TRUE(ropescale::validate(mid).ok()) << ropescale::validate(mid).message();
    // restore + ask hands out the unanswered rest; the ending equals the uninterrupted run.
    EvolutionSearch second(sp, ask_tell_params());
    ASSERT_TRUE(second.restore(mid).ok());
    const std::vector<ropescale::Candidate> rest = second.ask();
    ASSERT_EQ(rest.size(), mid.pending.size() - 1);
    EXPECT_EQ(rest[0].id, mid.pending[0].id);
    EXPECT_EQ(rest[1].id, mid.pending[2].id);
    expect_same_result(reference, second.resume(mid, structural_loss).value());
  }
}

TEST(SearchAskTell, RefusesBadAnswersByNameAndRecordsNothing) {
  const SearchSpace sp = SearchSpace::longrope2(llama3_spec(), 131072).value();
  EvolutionSearch search(sp, ask_tell_params());
  auto expect_refused = [&](const ropescale::Status& s, const std::string& argument,
                            const std::string& rule) {
    EXPECT_EQ(s.code(), ropescale::ErrorCode::kInvalidArgument) << s.message();
    EXPECT_NE(s.message().find(argument), std::string::npos) << s.message();
    EXPECT_NE(s.message().find(rule), std::string::npos) << s.message();
  };
  expect_refused(search.tell({0}, {1.0}), "tell", "call ask() first");
  const std::vector<ropescale::Candidate> batch = search.ask();
  ASSERT_EQ(batch.size(), 16u);
  const std::string before = search.state().rng_state;
  auto unchanged = [&] {
    const SearchState st = search.state();
    for (const ropescale::PendingCandidate& c : st.pending) EXPECT_FALSE(c.answered) << c.id;
    EXPECT_EQ(st.rng_state, before);
    EXPECT_TRUE(st.history.empty());
  };
  // Wrong count: the two lists differ, or the whole-batch form gets too few or too many.
  expect_refused(search.tell({0, 1}, {1.0}), "losses.size() = 1", "must equal ids.size() = 2");
  expect_refused(search.tell(std::vector<double>(15, 1.0)), "losses.size() = 15",
                 "unanswered candidates (16)");
  expect_refused(search.tell(std::vector<double>(17, 1.0)), "losses.size() = 17",
                 "unanswered candidates (16)");
  // An id not handed out (before, after, negative), with good ones beside it.
  expect_refused(search.tell({0, 16}, {1.0, 1.0}), "ids[1] = 16", "not a candidate");
  expect_refused(search.tell({-1}, {1.0}), "ids[0] = -1", "not a candidate");
  // A second answer, in one call and across calls.
  expect_refused(search.tell({3, 3}, {1.0, 2.0}), "ids[1] = 3", "second answer");
  unchanged();
  ASSERT_TRUE(search.tell({3}, {1.0}).ok());
  expect_refused(search.tell({4, 3}, {1.0, 2.0}), "ids[1] = 3", "second answer");
  EXPECT_FALSE(search.state().pending[4].answered);
  // A non-finite loss counts as +infinity.
  std::vector<std::int64_t> ids;
  std::vector<double> losses;
  for (const ropescale::Candidate& c : batch)
    if (c.id != 3) {
      ids.push_back(c.id);
      losses.push_back(c.id == 5   ? std::nan("")
                       : c.id == 6 ? -std::numeric_limits<double>::infinity()
                                   : 2.0 + static_cast<double>(c.id));
    }
  ASSERT_TRUE(search.tell(ids, losses).ok());
  const SearchState st = search.state();
  ASSERT_EQ(st.history.size(), 16u);
  EXPECT_EQ(st.history[5].loss, std::numeric_limits<double>::infinity());
  EXPECT_EQ(st.history[6].loss, std::numeric_limits<double>::infinity());
  EXPECT_EQ(st.history[3].loss, 1.0);
  EXPECT_EQ(search.result().value().best_loss, 1.0);
  // The next batch's ids continue after the history; the old ids are refused now.
  const std::vector<ropescale::Candidate> next = search.ask();
  ASSERT_FALSE(next.empty());
  EXPECT_EQ(next.front().id, 16);
  expect_refused(search.tell({3}, {1.0}), "ids[0] = 3", "not a candidate");
}

TEST(SearchAskTell, RestoreRefusesAnInconsistentPendingBatch) {
  const SearchSpace sp = SearchSpace::longrope2(llama3_spec(), 131072).value();
  EvolutionSearch search(sp, ask_tell_params());
  const std::vector<ropescale::Candidate> batch = search.ask();
  const SearchState mid = search.state();
  auto refused = [&](SearchState bad, const std::string& needle) {
    EvolutionSearch other(sp, ask_tell_params());
    const ropescale::Status s = other.restore(bad);
    EXPECT_EQ(s.code(), ropescale::ErrorCode::kParseError) << needle;
    EXPECT_NE(s.message().find(needle), std::string::npos) << s.message();
    EXPECT_FALSE(other.started());
  };
  SearchState bad = mid;
  bad.pending[2].id = 7;
  refused(bad, "pending[2].id = 7");
  bad = mid;
  bad.pending[3].genome = bad.pending[1].genome;
  refused(bad, "pending[3]");
  bad = mid;
  bad.pending[0].answered = true;
  bad.pending[0].loss = std::nan("");
  refused(bad, "pending[0].loss");
  bad = mid;
  bad.pending.clear();
  refused(bad, "history.size()");
  bad = mid;
  bad.population = {0};
  refused(bad, "population.size()");
  // The untouched state restores and hands out the same batch.
  EvolutionSearch other(sp, ask_tell_params());
  ASSERT_TRUE(other.restore(mid).ok());
  const std::vector<ropescale::Candidate> again = other.ask();
  ASSERT_EQ(again.size(), batch.size());
  for (std::size_t i = 0; i < batch.size(); ++i) EXPECT_EQ(again[i].genome, batch[i].genome);
}
