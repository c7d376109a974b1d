// `ropescale study`: the LongRoPE2 extension study on a tiny Llama model directory (config.json +
// model.safetensors, as `ropescale train` writes): critical pairs, the searches and the comparison
// of plain, PI, NTK, YaRN and searched tables at L_train and beyond.
//
//   ropescale study --model DIR [--multiples 1,2,4,8] [--search-multiples 4,8]
//                   [--needles-per-depth N] [--budget small|default] [--threads N]
//                   [--json FILE] [--format table|json]
#include <algorithm>
#include <cmath>
#include <fstream>
#include <iomanip>
#include <iostream>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "checkpoint.hpp"
#include "cli.hpp"
#include "ropescale/frequencies.hpp"
#include "ropescale/scaling.hpp"
#include "study.hpp"

#ifndef ROPESCALE_EXAMPLES_DATA_DIR
#define ROPESCALE_EXAMPLES_DATA_DIR "examples/data"
#endif

namespace {

constexpr const char* kUsage =
    "--model DIR [--multiples 1,2,4,8] [--search-multiples 4,8] [--needles-per-depth N] "
    "[--budget small|default] [--threads N] [--text FILE] [--json FILE] [--format table|json]";

std::vector<std::int64_t> parse_list(const std::string& option, const std::string& v) {
  std::vector<std::int64_t> out;
  std::stringstream ss(v);
  std::string item;
  while (std::getline(ss, item, ',')) {
    std::size_t used = 0;
    long long x = 0;
    try {
      x = std::stoll(item, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (item.empty() || used != item.size() || x < 1 || x > 64)
      throw cli::UsageError(option + " = '" + cli::Args::clip(v) +
                            "': a comma list of integers in [1, 64]");
    out.push_back(x);
  }
  if (out.empty()) throw cli::UsageError(option + " is empty");
  return out;
}

nlohmann::json factors_json(const ropescale::FactorTable& t) {
  std::vector<double> f(t.factors().data(), t.factors().data() + t.factors().size());
  return f;
}

int run_study(const std::vector<std::string>& argv) {
  cli::Args args(argv, {"--model", "--multiples", "--search-multiples", "--needles-per-depth",
                        "--budget", "--threads", "--text", "--json", "--format"});
  const bool json = args.json_format();
  const std::string model = args.get("--model");
  if (model.empty())
    throw cli::UsageError("--model is required (a directory from ropescale train)");
  cli::check_input_file("--model", model + "/config.json");
  cli::check_input_file("--model", model + "/model.safetensors");
  const auto multiples = parse_list("--multiples", args.get("--multiples", "1,2,4,8"));
  const auto search_multiples =
      parse_list("--search-multiples", args.get("--search-multiples", "4,8"));
  if (multiples.front() != 1) throw cli::UsageError("--multiples must start with 1 (L_train)");
  for (auto m : search_multiples)
    if (std::find(multiples.begin(), multiples.end(), m) == multiples.end() || m < 2)
      throw cli::UsageError("--search-multiples: each must be >= 2 and in --multiples");
  const std::int64_t per_depth = args.get_int("--needles-per-depth", 4, 1, 100);
  const std::string budget_name = args.get("--budget", "default");
  if (budget_name != "small" && budget_name != "default")
    throw cli::UsageError("--budget = '" + cli::Args::clip(budget_name) +
                          "': must be 'small' or 'default'");
  const std::int64_t threads = args.get_int("--threads", 2, 1, 256);
  const std::string json_path = args.output_file("--json");
  const std::string text_path = args.input_file(
      "--text", std::string(ROPESCALE_EXAMPLES_DATA_DIR) + "/tinystories-valid-prefix.txt");

  const tiny_llama::Weights w = tiny_llama::load_model_dir(model);
  const tiny_llama::Corpus corpus = tiny_llama::Corpus::load(text_path);
  const ropescale::RopeSpec spec = w.config().rope_spec();
  const std::int64_t L = spec.original_max_position;
  tiny_llama::SearchBudget budget;
  if (budget_name == "small") {
    budget.population = 6;
    budget.parents = 3;
    budget.mutations = 2;
    budget.crossovers = 1;
    budget.iterations = 1;
    budget.needle_rows = 2;
    budget.text_rows = 1;
  }
  const std::vector<double> depths = {0.1, 0.3, 0.5, 0.7, 0.9};
  std::vector<tiny_llama::LengthSet> sets;
  for (std::size_t i = 0; i < multiples.size(); ++i)
    sets.push_back(tiny_llama::LengthSet::make(corpus.held_out, L * multiples[i], depths, per_depth,
                                               2, 1000 + i));
  auto note = [&](const std::string& s) { std::cerr << "\r" << s << "        " << std::flush; };

  // Methods: name -> table for a length (nullopt: not measured there).
  struct Row {
    std::string name;
    std::vector<std::optional<ropescale::FactorTable>> tables;
  };
  std::vector<Row> rows;
  auto static_row = [&](const std::string& name, auto make) {
    Row r{name, {}};
    for (auto m : multiples)
      r.tables.push_back(m == 1 ? ropescale::FactorTable::identity(spec) : make(double(m)));
    rows.push_back(r);
  };
  static_row("plain", [&](double) { return ropescale::FactorTable::identity(spec); });
  static_row("pi", [&](double s) { return ropescale::linear_factors(spec, s); });
  static_row("ntk", [&](double s) { return ropescale::ntk_factors(spec, s); });
  static_row("yarn", [&](double s) {
    ropescale::YarnParams p;
    p.factor = s;
    return ropescale::yarn_factors(spec, p);
  });
  nlohmann::json searches = nlohmann::json::array();
  const struct {
    const char* space;
    tiny_llama::Objective objective;
  } kinds[] = {{"longrope2", tiny_llama::Objective::kNeedle},
               {"longrope2", tiny_llama::Objective::kPerplexity},
               {"longrope_v1", tiny_llama::Objective::kPerplexity}};
  for (const auto& k : kinds) {
    Row r{std::string(k.space) + "_" + tiny_llama::to_string(k.objective), {}};
    for (auto m : multiples) {
      if (m == 1) {
        r.tables.push_back(ropescale::FactorTable::identity(spec));  // the inference rule
        continue;
      }
      if (std::find(search_multiples.begin(), search_multiples.end(), m) ==
          search_multiples.end()) {
        r.tables.push_back(std::nullopt);
        continue;
      }
      const tiny_llama::SearchRun run = tiny_llama::run_search(
          w, k.space == std::string("longrope2") ? "longrope2" : "longrope", k.objective, L * m,
          budget, corpus.train, 77 + m, static_cast<int>(threads), note);
      searches.push_back({{"name", r.name},
                          {"space", k.space},
                          {"objective", tiny_llama::to_string(k.objective)},
                          {"target_length", L * m},
                          {"critical_pair", run.critical_pair},
                          {"i_tcd", run.theoretical_critical_pair},
                          {"evaluations", run.evaluations},
                          {"best_loss", run.best_loss},
                          {"seconds", run.seconds},
                          {"factors", factors_json(run.table)}});
      r.tables.push_back(run.table);
    }
    rows.push_back(r);
  }

  nlohmann::json methods = nlohmann::json::object();
  for (const Row& r : rows) {
    nlohmann::json acc = nlohmann::json::array(), ppl = nlohmann::json::array(),
                   nll = nlohmann::json::array(), fac = nlohmann::json::array(),
                   att = nlohmann::json::array(), depth = nlohmann::json::array();
    for (std::size_t i = 0; i < multiples.size(); ++i) {
      const auto& t = r.tables[i];
      if (!t) {
        for (auto* j : {&acc, &ppl, &nll, &fac, &att, &depth}) j->push_back(nullptr);
        continue;
      }
      note("scoring " + r.name + " @" + std::to_string(sets[i].length));
      const tiny_llama::LengthScore sc =
          tiny_llama::score_table(w, *t, sets[i], static_cast<int>(threads));
      acc.push_back(sc.needle_accuracy);
      ppl.push_back(sc.ppl);
      nll.push_back(sc.answer_nll);
      fac.push_back(factors_json(*t));
      att.push_back(t->attention_factor());
      depth.push_back(sc.accuracy_by_depth);
    }
    methods[r.name] = {{"factors", fac},         {"attention_factor", att},
                       {"needle_accuracy", acc}, {"needle_accuracy_by_depth", depth},
                       {"answer_nll", nll},      {"ppl", ppl}};
  }
  std::cerr << "\n";
  nlohmann::json lengths = nlohmann::json::array();
  for (const auto& s : sets) lengths.push_back(s.length);
  const nlohmann::json out = {
      {"model", model},
      {"train_length", L},
      {"lengths", lengths},
      {"depths", depths},
      {"needles_per_depth", per_depth},
      {"critical_pair_theoretical", ropescale::theoretical_critical_pair(spec)},
      {"critical_pair_search_lower", ropescale::critical_search_lower_pair(spec)},
      {"methods", methods},
      {"search", searches}};
  if (!json_path.empty()) {
    std::ofstream f(json_path, std::ios::trunc);
    f << out.dump(2) << "\n";
  }
  if (json) {
    std::cout << out.dump(2) << "\n";
    return 0;
  }
  std::cout << "needle exact match / text ppl (held-out), L_train = " << L << "\n";
  std::cout << std::left << std::setw(20) << "method";
  for (const auto& s : sets) std::cout << std::right << std::setw(16) << s.length;
  std::cout << "\n";
  for (const Row& r : rows) {
    std::cout << std::left << std::setw(20) << r.name;
    const auto& m = methods[r.name];
    for (std::size_t i = 0; i < sets.size(); ++i) {
      std::ostringstream cell;
      if (m["needle_accuracy"][i].is_null())
        cell << "-";
      else
        cell << std::fixed << std::setprecision(2) << m["needle_accuracy"][i].get<double>() << " / "
             << std::setprecision(2) << m["ppl"][i].get<double>();
      std::cout << std::right << std::setw(16) << cell.str();
    }
    std::cout << "\n";
  }
  std::cout << "\nsearches (i_tcd = " << ropescale::theoretical_critical_pair(spec) << ")\n";
  for (const auto& s : searches)
    std::cout << "  " << std::left << std::setw(20) << s["name"].get<std::string>() << " @"
              << s["target_length"] << ": c = " << s["critical_pair"] << ", " << s["evaluations"]
              << " evaluations, " << std::fixed << std::setprecision(1)
              << s["seconds"].get<double>() << " s\n";
  return 0;
}

const bool registered = cli::register_command(
    {"study", "LongRoPE2 extension study on a tiny Llama directory (searches + comparison)", kUsage,
     run_study});

}  // namespace
