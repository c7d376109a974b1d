#include "study.hpp"

#include <chrono>
#include <cmath>

#include "ropescale/frequencies.hpp"
#include "ropescale/rotary.hpp"
#include "train.hpp"

namespace tiny_llama {

LengthSet LengthSet::make(const std::string& text, std::int64_t length,
                          const std::vector<double>& depths, std::int64_t needles_per_depth,
                          std::int64_t text_rows, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  LengthSet s;
  s.length = length;
  s.depths = depths;
  for (double d : depths)
    for (std::int64_t i = 0; i < needles_per_depth; ++i)
      s.needles.push_back(make_needle_row(rng, text, NeedleOptions{length, 1, 4, d}));
  for (std::int64_t i = 0; i < text_rows; ++i) s.text.push_back(make_text_row(rng, text, length));
  return s;
}

LengthScore score_table(const Weights& w, const ropescale::FactorTable& table, const LengthSet& set,
                        int threads) {
  const ropescale::RotaryCache cache(w.config().rope_spec(), table, set.length);
  const Rope rope{&cache};
  std::vector<NeedleScore> needle(set.needles.size());
  std::vector<LossSum> text(set.text.size());
  const std::int64_t n_needle = static_cast<std::int64_t>(set.needles.size());
  parallel_for(n_needle + static_cast<std::int64_t>(set.text.size()), threads, [&](std::int64_t i) {
    if (i < n_needle) {
      Matrix lp;
      const NeedleRow& row = set.needles[static_cast<std::size_t>(i)];
      forward(w, rope, row.seq, &lp);
      needle[static_cast<std::size_t>(i)] = score_needles(lp, row);
    } else {
      text[static_cast<std::size_t>(i - n_needle)] =
          forward(w, rope, set.text[static_cast<std::size_t>(i - n_needle)]);
    }
  });
  LengthScore sc;
  const std::size_t per_depth = set.depths.empty() ? 0 : needle.size() / set.depths.size();
  double correct = 0, total = 0, nll = 0, toks = 0;
  for (std::size_t d = 0; d < set.depths.size(); ++d) {
    double c = 0, t = 0;
    for (std::size_t k = d * per_depth; k < (d + 1) * per_depth; ++k) {
      c += static_cast<double>(needle[k].correct);
      t += static_cast<double>(needle[k].total);
      nll += needle[k].answer_nll;
      toks += static_cast<double>(needle[k].answer_tokens);
    }
    sc.accuracy_by_depth.push_back(c / t);
    correct += c;
    total += t;
  }
  sc.needle_accuracy = total > 0 ? correct / total : 0.0;
  sc.answer_nll = toks > 0 ? nll / toks : 0.0;
  double tn = 0, tw = 0;
  for (const LossSum& l : text) {
    tn += l.nll;
    tw += l.weight;
  }
  sc.ppl = tw > 0 ? std::exp(tn / tw) : 0.0;
  return sc;
}

const char* to_string(Objective o) noexcept { return o == Objective::kNeedle ? "needle" : "ppl"; }

SearchRun run_search(const Weights& w, const std::string& space, Objective objective,
                     std::int64_t target_length, const SearchBudget& budget,
                     const std::string& text, std::uint64_t seed, int threads,
                     const std::function<void(const std::string&)>& progress) {
  const ropescale::RopeSpec spec = w.config().rope_spec();
  ropescale::SearchSpace sp = space == "longrope2"
                                  ? ropescale::SearchSpace::longrope2(spec, target_length)
                                  : ropescale::SearchSpace::longrope(spec, target_length);
  ropescale::SearchParams params;
  params.population = budget.population;
  params.parents = budget.parents;
  params.mutations = budget.mutations;
  params.crossovers = budget.crossovers;
  params.iterations = budget.iterations;
  params.seed = seed;
  // Rows the objective scores: needles at depths spread over the window, or text.
  std::vector<double> depths;
  for (std::int64_t i = 0; i < budget.needle_rows; ++i)
    depths.push_back((static_cast<double>(i) + 0.5) / static_cast<double>(budget.needle_rows));
  const LengthSet rows = objective == Objective::kNeedle
                             ? LengthSet::make(text, target_length, depths, 1, 0, seed)
                             : LengthSet::make(text, target_length, {}, 0, budget.text_rows, seed);
  auto fitness = [&](const ropescale::FactorTable& table) {
    const LengthScore sc = score_table(w, table, rows, threads);
    return objective == Objective::kNeedle ? sc.answer_nll : std::log(sc.ppl);
  };
  ropescale::EvolutionSearch search(sp, params);
  const std::string label =
      space + "_" + to_string(objective) + " @" + std::to_string(target_length);
  search.set_progress_callback([&](const ropescale::SearchProgress& p) {
    if (progress)
      progress(label + ": iteration " + std::to_string(p.iteration) + "/" +
               std::to_string(params.iterations) + ", best loss " + std::to_string(p.best_loss));
  });
  const auto t0 = std::chrono::steady_clock::now();
  const ropescale::SearchResult r = search.run(fitness);
  SearchRun out;
  out.space = space;
  out.objective = objective;
  out.target_length = target_length;
  out.table = r.table;
  out.critical_pair = r.best.critical_pair;
  out.theoretical_critical_pair = ropescale::theoretical_critical_pair(spec);
  out.evaluations = r.evaluations;
  out.best_loss = r.best_loss;
  out.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return out;
}

}  // namespace tiny_llama
