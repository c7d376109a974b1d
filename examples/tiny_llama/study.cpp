#include "study.hpp"

#include <chrono>
#include <cmath>
#include <stdexcept>

#include "ropescale/frequencies.hpp"
#include "ropescale/rotary.hpp"
#include "ropescale/scaling.hpp"
#include "ropescale/window.hpp"

namespace tiny_llama {

const char* to_string(InferenceRule r) noexcept {
  return r == InferenceRule::kOneTable ? "one_table" : "split_rerotate";
}

Matrix decode_log_probs(const Weights& w, const MethodTables& m, const Sequence& s,
                        InferenceRule rule) {
  const ropescale::RopeSpec spec = w.config().rope_spec();
  const std::int64_t T = static_cast<std::int64_t>(s.tokens.size());
  const std::int64_t L = spec.original_max_position;
  if (!s.positions.empty() || !s.document.empty())
    throw ropescale::Error(ropescale::make_status(ropescale::ErrorCode::kInvalidArgument,
                                                  "s.positions", s.positions.size(),
                                                  "decoding takes plain rows (positions 0..T-1)"));
  KvCache cache;
  if (rule == InferenceRule::kOneTable) {
    // The whole prompt with one table, chosen by its length (window.hpp's rule).
    const bool long_window =
        ropescale::select_window(T - 1, L).value() == ropescale::RopeWindow::kLong;
    const ropescale::RotaryCache c(spec, long_window ? m.beyond : m.within, T);
    return forward_chunk(w, Rope{&c}, s.tokens, cache);
  }
  const ropescale::RotaryCache within(spec, m.within, std::min(T, L));
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

std::vector<ropescale::TokenId> haystack_tokens(const std::string& text) {
  std::vector<ropescale::TokenId> out(text.size());
  for (std::size_t i = 0; i < text.size(); ++i)
    out[i] = text[i] == '\n' ? ' ' : static_cast<unsigned char>(text[i]);
  return out;
}

namespace {
std::vector<ropescale::TokenId> bytes(const std::string& s) {
  return std::vector<ropescale::TokenId>(s.begin(), s.end());
}
}  // namespace

StudyNeedle make_study_needle(const std::vector<ropescale::TokenId>& haystack, std::int64_t length,
                              double depth, std::uint64_t seed, std::uint64_t index) {
  // The name and a random depth from (seed, index); the value from needle.hpp's own stream.
  std::seed_seq sq{static_cast<std::uint32_t>(seed), static_cast<std::uint32_t>(seed >> 32),
                   static_cast<std::uint32_t>(index), 0x6e65u};
  std::mt19937_64 rng(sq);
  const std::string name = needle_name(static_cast<std::size_t>(rng() % needle_name_count()));
  const double d = depth < 0.0 ? std::uniform_real_distribution<double>(0.0, 1.0)(rng) : depth;
  // The trainer's format: " The pass key of <name> is 1234." ... " The pass key of <name> is 1234"
  // (needle.hpp's key stays empty: the name sits in the heads, so it is not repeated).
  ropescale::NeedleTemplate t;
  t.needle_head = bytes(" The pass key of " + name + " is ");
  t.needle_tail = bytes(".");
  t.answer_head = t.needle_head;
  // The answer: the last 4 of needle.hpp's 7 digits, one byte each.
  const ropescale::ValueTokenizer four_digits = [](const std::string& digits) {
    return bytes(digits.substr(digits.size() - 4));
  };
  ropescale::NeedleOptions o;
  o.length = length + 1;  // inputs are the first `length` tokens
  o.depth = d;
  o.seed = seed;
  StudyNeedle r;
  r.doc = ropescale::make_needle_document(haystack, t, four_digits, o, index).value();
  const std::size_t T = static_cast<std::size_t>(length);
  r.seq.tokens.assign(r.doc.tokens.begin(), r.doc.tokens.end() - 1);
  r.seq.targets.assign(r.doc.tokens.begin() + 1, r.doc.tokens.end());
  r.seq.loss_weight.assign(T, 0.0f);
  for (std::size_t p = 1; p <= T; ++p)
    if (r.doc.answer_mask[p]) r.seq.loss_weight[p - 1] = 1.0f;
  return r;
}

NeedleResult score_study_needle(const Matrix& log_probs, const StudyNeedle& row) {
  NeedleResult r;
  // Row t of log_probs.transpose() predicts token t + 1 (needle.hpp's convention).
  r.answer_nll =
      ropescale::mean_nll(log_probs.transpose(), row.doc, 0, ropescale::Scores::kLogProbs).value();
  r.correct = true;
  for (std::int64_t p = row.doc.answer_begin; p < row.doc.answer_end; ++p) {
    Eigen::Index best = 0;
    log_probs.col(static_cast<Eigen::Index>(p - 1)).maxCoeff(&best);
    r.correct = r.correct && best == row.doc.tokens[static_cast<std::size_t>(p)];
  }
  return r;
}

double binomial_se(double p, std::int64_t n) noexcept {
  return n > 0 ? std::sqrt(p * (1.0 - p) / static_cast<double>(n)) : 0.0;
}

LengthSet LengthSet::make(const std::string& text, std::int64_t length,
                          const std::vector<std::pair<std::string, double>>& groups,
                          std::int64_t per_group, std::int64_t text_rows, std::uint64_t seed) {
  const std::vector<ropescale::TokenId> hay = haystack_tokens(text);
  LengthSet s;
  s.length = length;
  for (std::size_t g = 0; g < groups.size(); ++g) {
    NeedleGroup ng{groups[g].first, groups[g].second, {}};
    for (std::int64_t i = 0; i < per_group; ++i)
      ng.rows.push_back(
          make_study_needle(hay, length, ng.depth, seed * 131 + g, static_cast<std::uint64_t>(i)));
    s.groups.push_back(std::move(ng));
  }
  std::mt19937_64 rng(seed);
  for (std::int64_t i = 0; i < text_rows; ++i) s.text.push_back(make_text_row(rng, text, length));
  return s;
}

LengthScore score_method(const Weights& w, const MethodTables& m, const LengthSet& set,
                         InferenceRule rule, int threads) {
  std::vector<const StudyNeedle*> rows;
  for (const NeedleGroup& g : set.groups)
    for (const StudyNeedle& r : g.rows) rows.push_back(&r);
  const std::int64_t n_needle = static_cast<std::int64_t>(rows.size());
  std::vector<NeedleResult> needle(rows.size());
  std::vector<LossSum> text(set.text.size());
  parallel_for(n_needle + static_cast<std::int64_t>(set.text.size()), threads, [&](std::int64_t i) {
    if (i < n_needle) {
      const StudyNeedle& r = *rows[static_cast<std::size_t>(i)];
      needle[static_cast<std::size_t>(i)] =
          score_study_needle(decode_log_probs(w, m, r.seq, rule), r);
    } else {
      const Sequence& s = set.text[static_cast<std::size_t>(i - n_needle)];
      const Matrix lp = decode_log_probs(w, m, s, rule);
      LossSum& l = text[static_cast<std::size_t>(i - n_needle)];
      for (std::size_t t = 0; t < s.tokens.size(); ++t) {
        l.nll -= static_cast<double>(lp(s.targets[t], static_cast<Eigen::Index>(t)));
        l.weight += 1.0;
      }
    }
  });
  LengthScore sc;
  std::size_t k = 0;
  for (const NeedleGroup& g : set.groups) {
    GroupScore gs;
    gs.name = g.name;
    double nll = 0.0;
    for (std::size_t j = 0; j < g.rows.size(); ++j, ++k) {
      gs.correct += needle[k].correct ? 1 : 0;
      nll += needle[k].answer_nll;
    }
    gs.n = static_cast<std::int64_t>(g.rows.size());
    gs.accuracy = gs.n > 0 ? static_cast<double>(gs.correct) / static_cast<double>(gs.n) : 0.0;
    gs.se = binomial_se(gs.accuracy, gs.n);
    gs.answer_nll = gs.n > 0 ? nll / static_cast<double>(gs.n) : 0.0;
    sc.groups.push_back(gs);
  }
  LossSum text_sum;
  for (const LossSum& l : text) text_sum += l;
  sc.ppl = text_sum.weight > 0 ? std::exp(text_sum.mean()) : 0.0;
  return sc;
}

const char* verdict(double difference, double se) noexcept {
  if (difference > 2.0 * se) return "held";
  if (difference < -2.0 * se) return "reversed";
  return "not shown";
}

ropescale::FactorTable longrope2_init(const ropescale::RopeSpec& spec, std::int64_t target_length,
                                      std::int64_t critical_pair) {
  const ropescale::SearchSpace sp = ropescale::SearchSpace::longrope2(spec, target_length).value();
  return ropescale::longrope2_factors(
             spec, critical_pair, Eigen::ArrayXd::Constant(spec.pairs() - critical_pair, sp.scale),
             sp.attention_factor)
      .value();
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
                                  ? ropescale::SearchSpace::longrope2(spec, target_length).value()
                                  : ropescale::SearchSpace::longrope(spec, target_length).value();
  ropescale::SearchParams params;
  params.population = budget.population;
  params.parents = budget.parents;
  params.mutations = budget.mutations;
  params.crossovers = budget.crossovers;
  params.iterations = budget.iterations;
  params.seed = seed;
  params.threads = threads;
  params.thread_safe = true;  // the fitness only reads the weights and the rows
  // Fitness rows from the training text: needles at the document start (the paper's placement)
  // scored by needle-driven perplexity (needle.hpp), or text rows scored by plain perplexity.
  const std::vector<ropescale::TokenId> hay = haystack_tokens(text);
  std::vector<StudyNeedle> needles;
  std::vector<Sequence> rows;
  if (objective == Objective::kNeedle) {
    for (std::int64_t i = 0; i < budget.needle_rows; ++i)
      needles.push_back(
          make_study_needle(hay, target_length, 0.0, seed, static_cast<std::uint64_t>(i)));
  } else {
    std::mt19937_64 rng(seed);
    for (std::int64_t i = 0; i < budget.text_rows; ++i)
      rows.push_back(make_text_row(rng, text, target_length));
  }
  auto fitness = [&](const ropescale::FactorTable& table) {
    const MethodTables m = MethodTables::switching(spec, table);
    std::vector<double> losses;
    for (const StudyNeedle& r : needles)
      losses.push_back(score_study_needle(decode_log_probs(w, m, r.seq), r).answer_nll);
    for (const Sequence& s : rows) {
      const Matrix lp = decode_log_probs(w, m, s);
      double nll = 0.0;
      for (std::size_t t = 0; t < s.tokens.size(); ++t)
        nll -= static_cast<double>(lp(s.targets[t], static_cast<Eigen::Index>(t)));
      losses.push_back(nll / static_cast<double>(s.tokens.size()));
    }
    return std::log(ropescale::perplexity(losses).value());  // mean loss, through needle.hpp's rule
  };
  ropescale::EvolutionSearch search(sp, params);
  const std::string label = space + "_" + to_string(objective) + " @" +
                            std::to_string(target_length) + " seed " + std::to_string(seed);
  search.set_progress_callback([&](const ropescale::SearchProgress& p) {
    if (progress)
      progress(label + ": iteration " + std::to_string(p.iteration) + "/" +
               std::to_string(params.iterations) + ", best loss " + std::to_string(p.best_loss));
  });
  const auto t0 = std::chrono::steady_clock::now();
  SearchRun out;
  out.result = search.run(fitness).value();
  out.space = space;
  out.objective = objective;
  out.seed = seed;
  out.fitness_rows = objective == Objective::kNeedle ? budget.needle_rows : budget.text_rows;
  out.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return out;
}

}  // namespace tiny_llama
