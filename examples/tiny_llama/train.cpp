#include "train.hpp"

#include <chrono>
#include <cmath>
#include <exception>
#include <fstream>
#include <nlohmann/json.hpp>
#include <optional>
#include <thread>

#include "checkpoint.hpp"
#include "ropescale/error.hpp"
#include "ropescale/factors.hpp"
#include "ropescale/frequencies.hpp"
#include "ropescale/search_space.hpp"

namespace tiny_llama {

nlohmann::json to_json(const Diagnostics& d) {
  nlohmann::json j = {{"step", d.step},
                      {"train_loss", d.train_loss},
                      {"copy_nll", d.copy_nll},
                      {"copy_accuracy", d.copy_accuracy},
                      {"needle_accuracy", d.needle_accuracy},
                      {"needle_nll", d.needle_nll},
                      {"text_bpb", d.text_bpb},
                      {"tokens_per_second", d.tokens_per_second},
                      {"seconds", d.seconds}};
  if (!d.depth_accuracy.empty()) {
    j["depths"] = eval_depths();
    j["depth_accuracy"] = d.depth_accuracy;
  }
  if (!d.depth_accuracy_scaled.empty()) j["depth_accuracy_scaled"] = d.depth_accuracy_scaled;
  return j;
}

bool induction_alive(const Diagnostics& d, std::int64_t after_step, double fraction) {
  return d.step < after_step || d.copy_nll < fraction * std::log(16.0);
}

TrainOptions default_curriculum() {
  TrainOptions o;
  const CopyOptions short_copy{64, 16, 8, 24}, long_copy{256, 26, 8, 32};
  Stage copy;  // grow induction: short rows, few symbols, copying is the whole signal
  copy.name = "copy64";
  copy.steps = 3000;
  copy.batch = 64;
  copy.lr = 3e-3;
  copy.copy_options = {short_copy};
  copy.advance_at_copy_accuracy = 0.9;
  Stage widen;  // widen it: full window, more symbols, needles; the short rows stay in the mix
  widen.name = "copy256+needles";
  widen.steps = 1000;
  widen.batch = 16;
  widen.lr = 2e-3;
  widen.copy = 0.5;
  widen.needle = 0.5;
  widen.copy_options = {short_copy, long_copy};
  widen.needle_options = NeedleOptions{256, 3, 4, -1.0};
  Stage text = widen;  // add text once copying holds
  text.name = "text+needles";
  text.steps = 1000;
  text.lr = 1.5e-3;
  text.copy = 0.2;
  text.needle = 0.5;
  text.text = 0.3;
  text.cosine = true;
  // Text cost the needles most of their accuracy (0.88 -> 0.06 within 50 steps, back to ~0.4 by
  // the stage's end): consolidate retrieval with more needle rows at a lower rate.
  Stage consolidate = text;
  consolidate.name = "needles+text";
  consolidate.steps = 1500;
  consolidate.lr = 1e-3;
  consolidate.copy = 0.1;
  consolidate.needle = 0.7;
  consolidate.text = 0.2;
  // Needle accuracy stayed at 0.5-0.6 through it: a last, needle-heavy stage at a low rate.
  Stage sharpen = consolidate;
  sharpen.name = "needles";
  sharpen.steps = 1000;
  sharpen.lr = 5e-4;
  sharpen.needle = 0.8;
  sharpen.text = 0.1;
  o.stages = {copy, widen, text, consolidate, sharpen};
  o.keep_going = [](const Diagnostics& d) { return induction_alive(d); };
  return o;
}

TrainOptions needle_depth_curriculum() {
  TrainOptions o;
  Stage st;
  st.name = "needles-all-depths";
  st.steps = 1500;
  st.batch = 16;
  st.lr = 5e-4;
  st.copy = 0.1;
  st.needle = 0.7;
  st.text = 0.2;
  st.cosine = true;
  st.copy_options = {CopyOptions{64, 16, 8, 24}, CopyOptions{256, 26, 8, 32}};
  st.needle_options = NeedleOptions{256, 3, 4, -1.0};
  st.needle_start_fraction = 0.25;
  st.needle_end_fraction = 0.1;
  st.scaled_attention_fraction = 1.0 / 3.0;
  st.max_attention_factor = 1.2;
  o.stages = {st};
  o.warmup_steps = 50;
  o.seed = 2;
  return o;
}

TrainOptions gate_curriculum(std::int64_t steps) {
  TrainOptions o = needle_depth_curriculum();
  Stage& st = o.stages.front();
  st.name = "gate";
  st.steps = steps;
  st.copy = 0.1;
  st.needle = 0.3;
  st.study_needle = 0.4;
  st.text = 0.2;
  st.needle_start_fraction = 0.2;
  st.needle_end_fraction = 0.2;
  st.needle_options.ask_last_first = 1.0 / 3.0;
  o.seed = 3;
  return o;
}

EvalSets EvalSets::make(const Corpus& corpus, std::int64_t window, std::uint64_t seed,
                        std::int64_t depth_rows) {
  std::mt19937_64 rng(seed);
  EvalSets e;
  for (int i = 0; i < 64; ++i) e.copy.push_back(make_copy_row(rng, CopyOptions{64, 16, 6, 16}));
  for (int i = 0; i < 32; ++i)
    e.needle.push_back(make_needle_row(rng, corpus.held_out, NeedleOptions{window, 1, 4, -1.0}));
  for (int i = 0; i < 16; ++i) e.text.push_back(make_text_row(rng, corpus.held_out, window));
  if (depth_rows > 0) {
    // Seeds apart from the study's (LengthSet::make's seed * 131 + group, seeds < 10^4).
    const std::vector<ropescale::TokenId> hay = haystack_tokens(corpus.held_out);
    const std::vector<double>& depths = eval_depths();
    for (std::size_t k = 0; k < depths.size(); ++k)
      for (std::int64_t i = 0; i < depth_rows; ++i)
        e.depth.push_back(make_study_needle(hay, window, depths[k], (seed << 8) + 0x5000 + k,
                                            static_cast<std::uint64_t>(i)));
  }
  return e;
}

std::vector<double> depth_accuracy(const Weights& w, const Rope& rope, const EvalSets& sets,
                                   int threads) {
  const std::size_t groups = eval_depths().size();
  if (sets.depth.empty() || sets.depth.size() % groups != 0) return {};
  std::vector<int> correct(sets.depth.size(), 0);
  parallel_for(static_cast<std::int64_t>(sets.depth.size()), threads, [&](std::int64_t i) {
    const StudyNeedle& r = sets.depth[static_cast<std::size_t>(i)];
    Matrix lp;
    forward(w, rope, r.seq, &lp);
    correct[static_cast<std::size_t>(i)] = score_study_needle(lp, r).correct ? 1 : 0;
  });
  const std::size_t per = sets.depth.size() / groups;
  std::vector<double> acc(groups, 0.0);
  for (std::size_t i = 0; i < correct.size(); ++i) acc[i / per] += correct[i];
  for (double& a : acc) a /= static_cast<double>(per);
  return acc;
}

Diagnostics evaluate(const Weights& w, const Rope& rope, const EvalSets& sets, int threads) {
  Diagnostics d;
  std::vector<double> copy_nll(sets.copy.size()), copy_acc(sets.copy.size()),
      copy_n(sets.copy.size());
  parallel_for(static_cast<std::int64_t>(sets.copy.size()), threads, [&](std::int64_t i) {
    const Sequence& s = sets.copy[static_cast<std::size_t>(i)];
    Matrix lp;
    const LossSum l = forward(w, rope, s, &lp);
    copy_nll[static_cast<std::size_t>(i)] = l.nll;
    copy_n[static_cast<std::size_t>(i)] = l.weight;
    double acc = 0;
    for (std::size_t t = 0; t < s.tokens.size(); ++t) {
      if (s.loss_weight[t] == 0.0f) continue;
      Eigen::Index best = 0;
      lp.col(static_cast<Eigen::Index>(t)).maxCoeff(&best);
      acc += best == s.targets[t] ? 1.0 : 0.0;
    }
    copy_acc[static_cast<std::size_t>(i)] = acc;
  });
  double n = 0;
  for (std::size_t i = 0; i < copy_n.size(); ++i) {
    d.copy_nll += copy_nll[i];
    d.copy_accuracy += copy_acc[i];
    n += copy_n[i];
  }
  d.copy_nll /= n;
  d.copy_accuracy /= n;
  std::vector<NeedleScore> scores(sets.needle.size());
  parallel_for(static_cast<std::int64_t>(sets.needle.size()), threads, [&](std::int64_t i) {
    Matrix lp;
    forward(w, rope, sets.needle[static_cast<std::size_t>(i)].seq, &lp);
    scores[static_cast<std::size_t>(i)] =
        score_needles(lp, sets.needle[static_cast<std::size_t>(i)]);
  });
  NeedleScore needles;
  for (const NeedleScore& s : scores) needles += s;
  d.needle_accuracy = needles.accuracy();
  d.needle_nll = needles.mean_answer_nll();
  std::vector<LossSum> text(sets.text.size());
  parallel_for(static_cast<std::int64_t>(sets.text.size()), threads, [&](std::int64_t i) {
    text[static_cast<std::size_t>(i)] = forward(w, rope, sets.text[static_cast<std::size_t>(i)]);
  });
  LossSum text_sum;
  for (const LossSum& l : text) text_sum += l;
  d.text_bpb = text_sum.mean() / std::log(2.0);
  d.depth_accuracy = depth_accuracy(w, rope, sets, threads);
  return d;
}

void check_start(const TrainOptions& o) {
  using ropescale::ErrorCode;
  using ropescale::make_status;
  using ropescale::throw_if_error;
  if (o.eval_every < 1)
    throw_if_error(
        make_status(ErrorCode::kInvalidArgument, "eval_every", o.eval_every, "must be >= 1"));
  if (o.start_step == 0 && o.start_stage == 0 && o.start_stage_step == 0) return;  // a fresh run
  const auto stages = static_cast<std::int64_t>(o.stages.size());
  if (o.start_step < 0 || o.start_step > kMaxTrainSteps)
    throw_if_error(make_status(ErrorCode::kInvalidArgument, "resume step", o.start_step,
                               "must be in [0, " + std::to_string(kMaxTrainSteps) + "]"));
  if (o.start_stage < 0 || o.start_stage >= stages)
    throw_if_error(make_status(ErrorCode::kInvalidArgument, "resume stage", o.start_stage,
                               "must be in [0, " + std::to_string(stages - 1) + "]: the plan has " +
                                   std::to_string(stages) +
                                   " stages (a finished run has nothing to resume)"));
  const Stage& st = o.stages[static_cast<std::size_t>(o.start_stage)];
  if (o.start_stage_step < 0 || o.start_stage_step >= st.steps)
    throw_if_error(make_status(ErrorCode::kInvalidArgument, "resume stage_step", o.start_stage_step,
                               "must be in [0, " + std::to_string(st.steps - 1) + "]: stage '" +
                                   st.name + "' of this plan has " + std::to_string(st.steps) +
                                   " steps"));
}

void train(Weights& w, AdamW& opt, const Corpus& corpus, const TrainOptions& o,
           const std::function<void(const Diagnostics&)>& progress) {
  check_start(o);
  const Config& c = w.config();
  const ropescale::RopeSpec spec = c.rope_spec();
  const ropescale::RotaryCache cache(spec, ropescale::FactorTable::identity(spec),
                                     c.max_position_embeddings);
  const Rope rope{&cache};
  const EvalSets sets =
      EvalSets::make(corpus, c.max_position_embeddings, eval_seed(o.seed), kEvalDepthRows);
  // The gate's second condition: the original frequencies times the 4x long table's attention
  // factor (what a longrope config applies within L_train).
  const ropescale::RotaryCache scaled_eval(
      spec,
      ropescale::FactorTable(Eigen::ArrayXd::Ones(spec.pairs()),
                             ropescale::SearchSpace::longrope2(spec, 4 * c.max_position_embeddings)
                                 .value()
                                 .attention_factor),
      c.max_position_embeddings);
  bool study_rows = false;
  for (const Stage& st : o.stages) study_rows = study_rows || st.study_needle > 0.0;
  const std::vector<ropescale::TokenId> train_hay =
      study_rows ? haystack_tokens(corpus.train) : std::vector<ropescale::TokenId>();
  Weights grad(c);
  std::ofstream log;
  if (!o.log_path.empty()) log.open(o.log_path, std::ios::app);
  std::int64_t step = o.start_step;
  const auto t0 = std::chrono::steady_clock::now();
  double loss_sum = 0.0, tokens = 0.0;
  std::int64_t loss_steps = 0;
  auto tick = t0;
  for (std::size_t si = static_cast<std::size_t>(o.start_stage); si < o.stages.size(); ++si) {
    const Stage& st = o.stages[si];
    const double mix = st.copy + st.needle + st.study_needle + st.text;
    const std::int64_t k0 = si == static_cast<std::size_t>(o.start_stage) ? o.start_stage_step : 0;
    bool advance = false;
    for (std::int64_t k = k0; k < st.steps && !advance; ++k, ++step) {
      // Each step's rows derive from (seed, step) alone, so a resumed run sees the same batches.
      std::mt19937_64 rng(o.seed * 0x9E3779B97F4A7C15ULL + static_cast<std::uint64_t>(step));
      std::vector<Sequence> batch;
      for (std::int64_t b = 0; b < st.batch; ++b) {
        const double u = std::uniform_real_distribution<double>(0.0, mix)(rng);
        if (u < st.copy) {
          const std::size_t n = st.copy_options.size();
          const std::size_t which =
              n > 0 ? std::uniform_int_distribution<std::size_t>(0, n - 1)(rng) : 0;
          batch.push_back(make_copy_row(rng, n == 0 ? CopyOptions{} : st.copy_options[which]));
        } else if (u < st.copy + st.needle + st.study_needle) {
          NeedleOptions no = st.needle_options;
          if (st.needle_start_fraction > 0.0 || st.needle_end_fraction > 0.0) {
            const double u = std::uniform_real_distribution<double>(0.0, 1.0)(rng);
            if (u < st.needle_start_fraction)
              no.depth = 0.0;
            else if (u < st.needle_start_fraction + st.needle_end_fraction)
              no.depth = 1.0;
          }
          if (u < st.copy + st.needle) {
            batch.push_back(make_needle_row(rng, corpus.train, no).seq);
          } else {
            const double depth =
                no.depth >= 0.0 ? no.depth : std::uniform_real_distribution<double>(0.0, 1.0)(rng);
            batch.push_back(make_study_needle(train_hay, no.length, depth, rng(), 0).seq);
          }
        } else {
          batch.push_back(make_text_row(rng, corpus.train, st.text_length));
        }
        tokens += static_cast<double>(batch.back().tokens.size());
      }
      double lr = st.lr;
      if (step < o.warmup_steps)
        lr *= static_cast<double>(step + 1) / static_cast<double>(o.warmup_steps);
      if (st.cosine) {
        const double f =
            static_cast<double>(k) / static_cast<double>(std::max<std::int64_t>(1, st.steps));
        lr *= o.final_lr_fraction +
              (1.0 - o.final_lr_fraction) * 0.5 * (1.0 + std::cos(ropescale::kPi * f));
      }
      // Some steps run the original frequencies with a longrope attention factor.
      std::optional<ropescale::RotaryCache> scaled;
      if (st.scaled_attention_fraction > 0.0 &&
          std::uniform_real_distribution<double>(0.0, 1.0)(rng) < st.scaled_attention_fraction) {
        const double af = std::uniform_real_distribution<double>(1.0, st.max_attention_factor)(rng);
        scaled.emplace(spec, ropescale::FactorTable(Eigen::ArrayXd::Ones(spec.pairs()), af),
                       c.max_position_embeddings);
      }
      const LossSum l = batch_gradient(w, scaled ? Rope{&*scaled} : rope, batch, o.threads, grad);
      require_finite_loss(l.mean(), step + 1);
      opt.step(w, grad, lr);
      loss_sum += l.mean();
      ++loss_steps;
      const bool last = si + 1 == o.stages.size() && k + 1 == st.steps;
      if ((step + 1) % o.eval_every == 0 || last) {
        const auto now = std::chrono::steady_clock::now();
        Diagnostics d = evaluate(w, rope, sets, o.threads);
        d.depth_accuracy_scaled = depth_accuracy(w, Rope{&scaled_eval}, sets, o.threads);
        d.step = step + 1;
        d.train_loss = loss_sum / static_cast<double>(loss_steps);
        d.tokens_per_second = tokens / std::chrono::duration<double>(now - tick).count();
        d.seconds = std::chrono::duration<double>(now - t0).count();
        loss_sum = 0.0;
        loss_steps = 0;
        tokens = 0.0;
        if (log.is_open()) {
          nlohmann::json line = to_json(d);
          line["stage"] = st.name;
          line["lr"] = lr;
          log << line.dump() << "\n" << std::flush;
        }
        advance =
            st.advance_at_copy_accuracy > 0.0 && d.copy_accuracy >= st.advance_at_copy_accuracy;
        if (!o.out_dir.empty()) {
          // The position the next step starts from.
          const bool next_stage = advance || k + 1 == st.steps;
          const TrainPosition at{d.step, static_cast<std::int64_t>(si) + (next_stage ? 1 : 0),
                                 next_stage ? 0 : k + 1};
          save_model_dir(o.out_dir, w,
                         {{"ropescale_training", {{"step", d.step}, {"stage", st.name}}}});
          save_optimizer(o.out_dir, opt, at);
          // The diagnostics of these weights and the seed of their evaluation rows, so a test
          // can check that the directory reproduces them.
          nlohmann::json ev = to_json(d);
          ev["stage"] = st.name;
          ev["eval_seed"] = eval_seed(o.seed);
          std::ofstream(o.out_dir + "/eval.json", std::ios::trunc) << ev.dump(2) << "\n";
        }
        if (progress) progress(d);
        tick = std::chrono::steady_clock::now();
        if (o.keep_going && !o.keep_going(d)) return;
      }
    }
  }
}

}  // namespace tiny_llama
