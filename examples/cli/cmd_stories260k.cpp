// `ropescale stories260k`: extend Karpathy's stories260K and measure perplexity (the first
// real-model demo; the tiny Llama study is `ropescale extend`).
//
// Loads Karpathy's stories260K (llama2.c format, trained at 512 tokens, head size 8, so only 4
// rotary pairs), then measures perplexity on held-out TinyStories text at 512, 1024, 2048 and 4096
// tokens with five factor tables, all built for the target length 4096 (s = 8):
//
//   plain     identity (the model as trained)
//   pi        linear position interpolation, lambda_i = s
//   ntk       NTK-aware base change, lambda_i = s^(2i/(d-2))
//   yarn      YaRN NTK-by-parts with its attention factor 0.1 ln s + 1
//   searched  ropescale's evolutionary search, fitness = plain perplexity at 4096 tokens on a part
//             of the text that the evaluation never uses
//
// Every table is used as is at every length (static scaling), so the 512 column also shows what
// each method costs inside the trained window. The model runs with ropescale's rotary kernels in
// its attention (examples/llama2c/llama2c.hpp).
//
// Default budget, sized for about 2 minutes on 2 cores: the search evaluates 64 candidates (an
// initial population of 16, then 4 iterations of 6 mutants + 6 crossovers), each on 2 windows of
// 4096 tokens from the second half of the text; the evaluation reads the first 16384 tokens at
// every length (4 windows of 4096 ... 32 of 512). A 4096-token forward pass costs about 1 s of
// one core, so the search takes ~150 core-seconds and the evaluation ~60.
//
//   ropescale stories260k [--model FILE --tokenizer FILE --text FILE] [--json FILE] [--svg FILE]
//                    [--space longrope|longrope2] [--search-evals N] [--search-windows N]
//                    [--eval-tokens N] [--threads N] [--seed N]
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <iomanip>
#include <iostream>
#include <limits>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#if defined(__unix__) || defined(__APPLE__)
#include <unistd.h>
#endif

#include "cli.hpp"
#include "llama2c.hpp"
#include "ropescale/scaling.hpp"
#include "ropescale/search.hpp"
#include "svg.hpp"

namespace {

constexpr const char* kUsage =
    "[--model FILE --tokenizer FILE --text FILE] [--json FILE] [--svg FILE] "
    "[--space longrope|longrope2] [--search-evals N] [--search-windows N] [--eval-tokens N] "
    "[--threads N] [--seed N]";

#ifndef ROPESCALE_EXAMPLES_DATA_DIR
#define ROPESCALE_EXAMPLES_DATA_DIR "examples/data"
#endif

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

// A progress bar on stderr: redrawn in place on a terminal, a start and an end line otherwise.
class ProgressBar {
 public:
  ProgressBar(std::string label, double total) : label_(std::move(label)), total_(total) {
#if defined(__unix__) || defined(__APPLE__)
    tty_ = isatty(fileno(stderr)) != 0;
#endif
    if (!tty_) std::cerr << label_ << " ..." << std::endl;
    draw(0.0);
  }
  void update(double done) {
    if (!tty_) return;
    const double now = seconds_since(start_);
    if (now - last_draw_ < 0.1 && done < total_) return;
    last_draw_ = now;
    draw(done);
  }
  void finish(const std::string& note = "") {
    if (tty_) {
      draw(total_);
      std::cerr << "\n";
    } else {
      std::cerr << label_ << ": done in " << std::fixed << std::setprecision(1)
                << seconds_since(start_) << " s" << (note.empty() ? "" : ", ") << note << std::endl;
    }
  }

 private:
  void draw(double done) {
    if (!tty_) return;
    constexpr int kWidth = 30;
    const double frac = total_ > 0 ? std::clamp(done / total_, 0.0, 1.0) : 1.0;
    const int fill = static_cast<int>(frac * kWidth + 0.5);
    std::cerr << "\r" << label_ << " [" << std::string(static_cast<std::size_t>(fill), '#')
              << std::string(static_cast<std::size_t>(kWidth - fill), '.') << "] " << std::setw(3)
              << static_cast<int>(frac * 100 + 0.5) << "%  " << std::fixed << std::setprecision(1)
              << seconds_since(start_) << " s " << std::flush;
  }

  std::string label_;
  double total_;
  bool tty_ = false;
  Clock::time_point start_ = Clock::now();
  double last_draw_ = -1.0;
};

struct Method {
  std::string name;
  ropescale::FactorTable table;
  std::vector<double> nll;  // nats per token, one per length
};

std::string format_factors(const ropescale::FactorTable& t) {
  std::ostringstream os;
  os << "[";
  for (Eigen::Index i = 0; i < t.factors().size(); ++i)
    os << (i ? ", " : "") << std::setprecision(4) << t.factors()[i];
  os << "]";
  if (t.attention_factor() != 1.0) os << " x" << std::setprecision(4) << t.attention_factor();
  return os.str();
}

// Perplexity against context length, one line per method, log2 x axis and log y axis.
std::string render_svg(const std::vector<std::int64_t>& lengths, const std::vector<Method>& methods,
                       const std::string& subtitle) {
  const double width = 720, height = 440, left = 70, right = 150, top = 60, bottom = 60;
  const double pw = width - left - right, ph = height - top - bottom;
  double lo = 1e300, hi = 0;
  std::vector<svg::Series> series;
  for (const Method& m : methods) {
    series.push_back({m.name, {}, m.name + " " + format_factors(m.table), m.name == "searched"});
    for (double nll : m.nll) {
      const double ppl = std::exp(nll);
      lo = std::min(lo, ppl);
      hi = std::max(hi, ppl);
      series.back().values.push_back(ppl);
    }
  }
  svg::Document doc(width, height);
  doc.rect(0, 0, width, height, "white");
  doc.text(width / 2, 24,
           "stories260K: perplexity vs context length (trained at " +
               std::to_string(lengths.front()) + ")",
           15, "middle");
  doc.text(width / 2, 40, subtitle, 11, "middle", {{"fill", "#555"}});
  svg::length_panel(doc, left, top, pw, ph, "", lengths, series,
                    std::pow(2.0, std::floor(std::log2(lo))),
                    std::pow(2.0, std::ceil(std::log2(hi))), true);
  doc.text(left + pw / 2, height - 18, "context length (tokens, log scale)", 12, "middle");
  doc.text(18, top + ph / 2, "perplexity (log scale)", 12, "middle",
           {{"transform", "rotate(-90 18 " + svg::num(top + ph / 2) + ")"}});
  svg::legend(doc, left + pw + 14, top + 14, series);
  return doc.str();
}

void write_file(const std::string& option, const std::string& path, const std::string& content) {
  std::ofstream out(path, std::ios::binary);
  if (!out)
    ropescale::throw_if_error(ropescale::make_status(ropescale::ErrorCode::kIoError, option, path,
                                                     "cannot be opened for writing"));
  out << content;
  out.close();
  if (!out)
    ropescale::throw_if_error(
        ropescale::make_status(ropescale::ErrorCode::kIoError, option, path, "write failed"));
}

std::int64_t positive(const cli::Args& args, const std::string& key, std::int64_t fallback,
                      std::int64_t max) {
  return args.get_int(key, fallback, 1, max);
}

// Runs load(); a library error about the file's contents names the option the user typed.
template <typename F>
auto load_input(const std::string& key, const std::string& path, F load) {
  try {
    return load();
  } catch (const ropescale::Error& e) {
    cli::check_input(key, path, e.status());
    throw;
  }
}

const std::vector<cli::Option>& options() {
  static const std::vector<cli::Option> kOptions = {
      {"--model", "FILE", "examples/data/stories260K.bin", "a llama2.c checkpoint"},
      {"--tokenizer", "FILE", "examples/data/tok512.bin", "its llama2.c tokenizer"},
      {"--text", "FILE", "examples/data/tinystories-valid-prefix.txt",
       "text to search on (first part) and measure on (held-out part)"},
      {"--json", "FILE", "", "also write every number as JSON (docs/cli.md)"},
      {"--svg", "FILE", "", "also draw perplexity per length"},
      {"--space", "longrope|longrope2", "longrope", "the search space (LongRoPE v1 or LongRoPE2)"},
      {"--search-evals", "N", "64", "fitness evaluations of the search (>= 16)"},
      {"--search-windows", "N", "2", "search-text windows each evaluation scores"},
      {"--eval-tokens", "N", "16384", "held-out tokens per length"},
      {"--threads", "N", "2", "threads"},
      {"--seed", "N", "0", "seed of the search"},
  };
  return kOptions;
}

int run_extend(const std::vector<std::string>& argv) {
  const auto t_start = Clock::now();
  cli::Args args(argv, options());
  const std::string data = ROPESCALE_EXAMPLES_DATA_DIR;
  // Every input and output path, and every number, is checked before any work starts.
  const std::string model_path = args.input_file("--model", data + "/stories260K.bin");
  const std::string tok_path = args.input_file("--tokenizer", data + "/tok512.bin");
  const std::string text_path = args.input_file("--text", data + "/tinystories-valid-prefix.txt");
  const std::string json_path = args.output_file("--json");
  const std::string svg_path = args.output_file("--svg");
  const std::string space_name = args.get("--space", "longrope");
  if (space_name != "longrope" && space_name != "longrope2")
    throw cli::UsageError("--space = '" + cli::Args::clip(space_name) +
                          "': must be 'longrope' or 'longrope2'");
  const std::int64_t search_evals = positive(args, "--search-evals", 64, 1 << 20);
  if (search_evals < 16)
    throw cli::UsageError("--search-evals = " + std::to_string(search_evals) +
                          ": must be >= 16 (the initial population)");
  const std::int64_t search_windows = positive(args, "--search-windows", 2, 1 << 10);
  const std::int64_t eval_tokens = positive(args, "--eval-tokens", 16384, 1 << 24);
  const int threads = static_cast<int>(positive(args, "--threads", 2, 1024));
  const std::int64_t seed = args.get_int("--seed", 0, 0, std::numeric_limits<std::int64_t>::max());

  // Model, tokenizer, text.
  const llama2c::Model model =
      load_input("--model", model_path, [&] { return llama2c::Model::load(model_path); });
  const llama2c::Config& cfg = model.config();
  const llama2c::Tokenizer tokenizer = load_input(
      "--tokenizer", tok_path, [&] { return llama2c::Tokenizer::load(tok_path, cfg.vocab_size); });
  const std::vector<int> tokens = tokenizer.encode(llama2c::join_paragraphs(load_input(
      "--text", text_path, [&] { return llama2c::detail::read_file(text_path, "text file"); })));
  const ropescale::RopeSpec spec = model.rope_spec();
  const std::int64_t train = spec.original_max_position;
  std::vector<std::int64_t> lengths;
  for (std::int64_t l = train; l <= 8 * train; l *= 2) lengths.push_back(l);
  const std::int64_t target = lengths.back();
  const double s = static_cast<double>(target) / static_cast<double>(train);

  // The evaluation reads tokens [0, eval_tokens); the search reads windows from the second half
  // of the text, which the evaluation never touches.
  const std::int64_t n_tokens = static_cast<std::int64_t>(tokens.size());
  const std::int64_t search_begin = std::max(eval_tokens, n_tokens / 2);
  if (eval_tokens < target)
    throw cli::UsageError(args.shown("--eval-tokens", std::to_string(eval_tokens)) +
                          ": must be >= the longest context (" + std::to_string(target) + ")");
  if (search_begin + search_windows * target > n_tokens)
    ropescale::throw_if_error(ropescale::make_status(
        ropescale::ErrorCode::kInvalidArgument, "text tokens", n_tokens,
        "too short for " + std::to_string(eval_tokens) + " evaluation tokens and " +
            std::to_string(search_windows) + " search windows of " + std::to_string(target)));

  std::cout << "ropescale stories260k: " << model_path << "\n"
            << "  model: dim " << cfg.dim << ", " << cfg.n_layers << " layers, " << cfg.n_heads
            << "/" << cfg.n_kv_heads << " heads of " << cfg.head_size() << " (" << spec.pairs()
            << " rotary pairs, base " << spec.rope_theta << "), vocab " << cfg.vocab_size
            << ", trained at " << train << " tokens\n"
            << "  text: " << n_tokens << " tokens; evaluation on tokens [0, " << eval_tokens
            << "), search on tokens [" << search_begin << ", "
            << search_begin + search_windows * target << ")\n"
            << "  every table is built for " << target << " tokens (s = " << s
            << ") and used unchanged at every length\n";

  std::vector<Method> methods;
  methods.push_back({"plain", ropescale::FactorTable::identity(spec), {}});
  methods.push_back({"pi", ropescale::linear_factors(spec, s).value(), {}});
  methods.push_back({"ntk", ropescale::ntk_factors(spec, s).value(), {}});
  ropescale::YarnParams yarn;
  yarn.factor = s;
  methods.push_back({"yarn", ropescale::yarn_factors(spec, yarn).value(), {}});

  // The search. stories260K has 4 rotary pairs (wavelengths 6.3, 63, 628, 6283 tokens; trained at
  // 512), so its critical-pair analysis is tiny: critical_dims gives lower_pair = 1 and
  // critical_pair = 2. LongRoPE2's space (c in [1, 2], lambda in [s, 2s] at and above
  // c, NTK re-anchored below) then has 2-3 free factors and forces lambda >= s = 8 on pairs 2 and
  // 3, where this model's perplexity prefers smaller factors. The default is therefore LongRoPE
  // v1's space (every pair in [1, 1.25 s], non-decreasing), which contains plain, PI, NTK and YaRN
  // factors; they seed the population, as LongRoPE v1 seeds PI, NTK and YaRN. --space longrope2
  // runs the paper's space with the same seeds projected onto it. Both use LongRoPE's attention
  // factor sqrt(1 + ln s / ln 512).
  ropescale::SearchSpace space = space_name == "longrope"
                                     ? ropescale::SearchSpace::longrope(spec, target).value()
                                     : ropescale::SearchSpace::longrope2(spec, target).value();
  ropescale::SearchParams params;
  params.population = 16;
  params.parents = 8;
  params.mutations = 6;
  params.crossovers = 6;
  params.iterations = 1000;  // the evaluation budget stops it
  params.max_evaluations = search_evals;
  params.seed = static_cast<std::uint64_t>(seed);
  params.threads = threads;
  params.thread_safe = true;
  std::vector<ropescale::Genome> seeds;
  std::vector<std::size_t> seed_method;  // which baseline each seed was projected from
  for (std::size_t k = 0; k < methods.size(); ++k)
    for (std::int64_t c = space.critical_lower; c <= space.critical_upper; ++c) {
      const ropescale::Genome g =
          ropescale::project_to_space(space, methods[k].table.factors(), c).value();
      if (std::find(seeds.begin(), seeds.end(), g) != seeds.end()) continue;
      seeds.push_back(g);
      seed_method.push_back(k);
    }
  const auto search_windows_tokens =
      llama2c::make_windows(tokens, search_begin, target, search_windows);
  ropescale::EvolutionSearch search(space, params);
  ProgressBar search_bar("search (" + space_name + ", " + std::to_string(search_evals) +
                             " evaluations at " + std::to_string(target) + " tokens)",
                         static_cast<double>(search_evals));
  search.set_progress_callback([&](const ropescale::SearchProgress& p) {
    search_bar.update(static_cast<double>(p.evaluations));
  });
  const auto t_search = Clock::now();
  const ropescale::SearchResult found =
      search
          .run(
              [&](const ropescale::FactorTable& t) {
                return llama2c::mean_nll(model, t, search_windows_tokens, 1);
              },
              seeds)
          .value();
  const double search_seconds = seconds_since(t_search);
  search_bar.finish(std::to_string(found.evaluations) + " evaluations");
  // The seeds' own fitness (best projection per baseline), read back from the search history.
  std::map<std::string, double> seed_ppl;
  for (std::size_t i = 0; i < seeds.size(); ++i)
    for (const ropescale::EvaluatedGenome& e : found.state.history)
      if (e.genome == seeds[i]) {
        const std::string& name = methods[seed_method[i]].name;
        const double ppl = std::exp(e.loss);
        if (!seed_ppl.count(name) || ppl < seed_ppl[name]) seed_ppl[name] = ppl;
      }
  methods.push_back(
      {"searched",
       ropescale::FactorTable(found.table.factors(), found.table.attention_factor(), "searched"),
       {}});

  // Evaluation on the held-out part: every method at every length over the same tokens.
  double total_work = 0;
  for (std::int64_t l : lengths)
    total_work += static_cast<double>(methods.size()) * static_cast<double>(eval_tokens / l) *
                  static_cast<double>(l) * static_cast<double>(l);
  ProgressBar eval_bar("evaluation (" + std::to_string(methods.size()) + " methods x " +
                           std::to_string(lengths.size()) + " lengths)",
                       total_work);
  double work_done = 0;
  for (Method& m : methods)
    for (std::int64_t l : lengths) {
      const auto windows = llama2c::make_windows(tokens, 0, l, eval_tokens / l);
      const double w = static_cast<double>(l) * static_cast<double>(l);
      m.nll.push_back(
          llama2c::mean_nll(model, m.table, windows, threads, [&](std::size_t done, std::size_t) {
            eval_bar.update(work_done + static_cast<double>(done) * w);
          }));
      work_done += static_cast<double>(windows.size()) * w;
    }
  eval_bar.finish();
  const double total_seconds = seconds_since(t_start);

  // The table.
  std::cout << "\nperplexity on held-out text (" << eval_tokens
            << " tokens per length; lower is better)\n"
            << std::left << std::setw(10) << "method" << std::right;
  for (std::int64_t l : lengths) std::cout << std::setw(9) << l;
  std::cout << "   factors lambda_i [x attention factor]\n";
  for (const Method& m : methods) {
    std::cout << std::left << std::setw(10) << m.name << std::right << std::fixed
              << std::setprecision(2);
    for (double v : m.nll) std::cout << std::setw(9) << std::exp(v);
    std::cout << "   " << format_factors(m.table) << "\n";
  }
  std::cout << std::defaultfloat << "\nsearch: " << space_name << " space, critical pair "
            << found.best.critical_pair << ", " << found.evaluations << " evaluations in "
            << std::fixed << std::setprecision(1) << search_seconds << " s\n"
            << "  fitness = ppl at " << target << " on the search text: best "
            << std::setprecision(2) << std::exp(found.best_loss) << "; seeds (projected, x"
            << std::setprecision(3) << space.attention_factor << "):";
  for (const Method& m : methods)
    if (seed_ppl.count(m.name))
      std::cout << " " << m.name << " " << std::setprecision(2) << seed_ppl[m.name];
  std::cout << "\n"
            << "wall time " << std::setprecision(1) << total_seconds << " s, " << threads
            << " threads\n";

  if (args.has("--json")) {
    nlohmann::json j = cli::json_document("stories260k");
    j["model"] = model_path;
    std::vector<std::int64_t> layers;
    for (std::int64_t l = 0; l < cfg.n_layers; ++l) layers.push_back(l);
    // llama2.c pairs adjacent channels (2i, 2i+1).
    j["kinds"] = nlohmann::json::array({cli::spec_kind_json(spec, cli::pair_layout_name(true),
                                                            spec.original_max_position, layers)});
    j["text"] = text_path;
    j["train_length"] = train;
    j["target_length"] = target;
    j["eval_tokens"] = eval_tokens;
    j["lengths"] = lengths;
    j["methods"] = nlohmann::json::object();
    for (const Method& m : methods) {
      nlohmann::json e;
      std::vector<double> ppl,
          f(m.table.factors().data(), m.table.factors().data() + m.table.factors().size());
      for (double v : m.nll) ppl.push_back(std::exp(v));
      e["ppl"] = ppl;
      e["nll"] = m.nll;
      e["factors"] = f;
      e["attention_factor"] = m.table.attention_factor();
      j["methods"][m.name] = e;
    }
    j["search"] = {{"space", space_name},
                   {"critical_pair", found.best.critical_pair},
                   {"evaluations", found.evaluations},
                   {"fitness_ppl", std::exp(found.best_loss)},
                   {"seed_fitness_ppl", seed_ppl},
                   {"attention_factor", space.attention_factor},
                   {"search_tokens", search_windows * target},
                   {"seconds", search_seconds},
                   {"seed", seed}};
    j["seconds"] = total_seconds;
    write_file("--json", json_path, j.dump(1) + "\n");
  }
  if (args.has("--svg")) {
    std::ostringstream sub;
    sub << "held-out TinyStories, " << eval_tokens << " tokens per length; tables built for "
        << target << " (s = " << s << ")";
    write_file("--svg", svg_path, render_svg(lengths, methods, sub.str()));
  }
  return 0;
}

const bool registered = cli::register_command(
    {"stories260k",
     "extend stories260K (llama2.c) from 512 to 4096 tokens: perplexity of plain, PI, NTK, YaRN "
     "and searched factors",
     kUsage, run_extend, options()});

}  // namespace
