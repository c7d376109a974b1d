#include "study.hpp"

#include <chrono>
#include <cmath>
#include <stdexcept>

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

Matrix decode_log_probs(const Weights& w, const MethodTables& m, const Sequence& s) {
  const ropescale::RopeSpec spec = w.config().rope_spec();
  const std::int64_t T = static_cast<std::int64_t>(s.tokens.size());
  const std::int64_t L = spec.original_max_position;
  if (!s.positions.empty() || !s.document.empty())
    throw ropescale::Error(ropescale::make_status(ropescale::ErrorCode::kInvalidArgument,
                                                  "s.positions", s.positions.size(),
                                                  "decoding takes plain rows (positions 0..T-1)"));
  const ropescale::RotaryCache within(spec, m.within, std::min(T, L));
  KvCache cache;
  Matrix head =
      forward_chunk(w, Rope{&within}, {s.tokens.begin(), s.tokens.begin() + std::min(T, L)}, cache);
  if (T <= L) return head;
  const ropescale::KeyRerotation to_beyond(spec, m.within, m.beyond);
  if (!to_beyond.is_identity()) rerotate(w, to_beyond, cache);
  const ropescale::RotaryCache beyond(spec, m.beyond, T);
  const Matrix tail =
      forward_chunk(w, Rope{&beyond}, {s.tokens.begin() + L, s.tokens.end()}, cache);
  Matrix out(head.rows(), T);
  out << head, tail;
  return out;
}

namespace {
LossSum text_loss(const Matrix& lp, const Sequence& s) {
  LossSum l;
  for (std::size_t t = 0; t < s.tokens.size(); ++t) {
    if (s.loss_weight[t] == 0.0f) continue;
    l.nll -= static_cast<double>(s.loss_weight[t]) *
             static_cast<double>(lp(s.targets[t], static_cast<Eigen::Index>(t)));
    l.weight += static_cast<double>(s.loss_weight[t]);
  }
  return l;
}
}  // namespace

LengthScore score_method(const Weights& w, const MethodTables& m, const LengthSet& set,
                         int threads) {
  std::vector<NeedleScore> needle(set.needles.size());
  std::vector<LossSum> text(set.text.size());
  const std::int64_t n_needle = static_cast<std::int64_t>(set.needles.size());
  parallel_for(n_needle + static_cast<std::int64_t>(set.text.size()), threads, [&](std::int64_t i) {
    if (i < n_needle) {
      const NeedleRow& row = set.needles[static_cast<std::size_t>(i)];
      needle[static_cast<std::size_t>(i)] = score_needles(decode_log_probs(w, m, row.seq), row);
    } else {
      const Sequence& row = set.text[static_cast<std::size_t>(i - n_needle)];
      text[static_cast<std::size_t>(i - n_needle)] = text_loss(decode_log_probs(w, m, row), row);
    }
  });
  LengthScore sc;
  const std::size_t per_depth = set.depths.empty() ? 0 : needle.size() / set.depths.size();
  NeedleScore all;
  for (std::size_t d = 0; d < set.depths.size(); ++d) {
    NeedleScore at_depth;
    for (std::size_t k = d * per_depth; k < (d + 1) * per_depth; ++k) at_depth += needle[k];
    sc.accuracy_by_depth.push_back(at_depth.accuracy());
    all += at_depth;
  }
  sc.needle_accuracy = all.accuracy();
  sc.answer_nll = all.mean_answer_nll();
  LossSum text_sum;
  for (const LossSum& l : text) text_sum += l;
  sc.ppl = text_sum.weight > 0 ? std::exp(text_sum.mean()) : 0.0;
  return sc;
}

const char* to_string(Objective o) noexcept { return o == Objective::kNeedle ? "needle" : "ppl"; }

SearchRun run_search(const Weights& w, const std::string& space, Objective objective,
                     std::int64_t target_length, const SearchBudget& budget,
                     const std::string& text, std::uint64_t seed, int threads,
                     const std::function<void(const std::string&)>& progress) {
  const ropescale::RopeSpec spec = w.config().rope_spec();
  if (space != "longrope2" && space != "longrope_v1")
    throw std::invalid_argument("run_search: space = '" + space +
                                "': must be 'longrope2' or 'longrope_v1'");
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
    const LengthScore sc = score_method(w, MethodTables::switching(spec, table), rows, threads);
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
