// `ropescale extend` (the main job): the LongRoPE2 extension study on the tiny Llama shipped in
// examples/data/tiny-llama (or any directory `ropescale train` writes).
//
//   1. the critical-dimension report: each rotary pair's period against L_train, LongRoPE2's
//      theoretical critical pair i_tcd and the lower end of the search;
//   2. the searches at each --search-multiples target: LongRoPE2's space scored by needle-driven
//      perplexity and by plain perplexity, and LongRoPE v1's space scored by plain perplexity;
//   3. the comparison on held-out rows the searches never saw: needle exact match and text
//      perplexity at every --multiples length for plain RoPE, PI, NTK, YaRN, the searched tables
//      (with LongRoPE2's inference rule: study.hpp's MethodTables) and the fine-tuned models
//      (--finetuned, each with the rope_scaling of its own config.json).
//
//   ropescale extend [--model DIR] [--finetuned DIR,...|none] [--multiples 1,2,4,8]
//                    [--search-multiples 4,8] [--budget small|default|full]
//                    [--needles-per-depth N] [--text-rows N] [--threads N] [--json FILE]
//                    [--svg FILE] [--export DIR] [--export-multiple M] [--format table|json]
//
// --export DIR writes the model with the LongRoPE2 needle-searched table of --export-multiple
// (default: the first search multiple) as a Hugging Face longrope rope_scaling, the directory
// `ropescale finetune` starts from.
#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <iomanip>
#include <iostream>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "checkpoint.hpp"
#include "cli.hpp"
#include "ropescale/frequencies.hpp"
#include "ropescale/io/hf_config.hpp"
#include "ropescale/scaling.hpp"
#include "study.hpp"
#include "svg.hpp"

#ifndef ROPESCALE_EXAMPLES_DATA_DIR
#define ROPESCALE_EXAMPLES_DATA_DIR "examples/data"
#endif

namespace {

constexpr const char* kUsage =
    "[--model DIR] [--finetuned DIR,...|none] [--multiples 1,2,4,8] [--search-multiples 4,8] "
    "[--budget small|default|full] [--needles-per-depth N] [--text-rows N] [--threads N] "
    "[--json FILE] [--svg FILE|none] [--export DIR] [--export-multiple M] [--format table|json]";

// The SVG `extend` writes unless --svg says otherwise.
constexpr const char* kDefaultSvg = "study.svg";

const std::vector<cli::Option>& options() {
  static const std::vector<cli::Option> kOptions = {
      {"--model", "DIR", "examples/data/tiny-llama",
       "the model to extend (`ropescale train` writes one)"},
      {"--finetuned", "DIR,...|none", "the shipped tiny-llama-mixed and tiny-llama-long",
       "fine-tuned models compared as their own rows"},
      {"--multiples", "M,...", "1,2,4,8",
       "lengths measured, as multiples of L_train (increasing, starting at 1)"},
      {"--search-multiples", "M,...", "4,8", "targets searched (each >= 2 and in --multiples)"},
      {"--budget", "small|default|full", "default",
       "search size and rows per length; docs/study.md's tables use full"},
      {"--needles-per-depth", "N", "2 (--budget full: 8)", "held-out needles per depth and length"},
      {"--text-rows", "N", "2 (--budget full: 4)", "held-out text rows per length"},
      {"--threads", "N", "2", "threads"},
      {"--text", "FILE", "examples/data/tinystories-valid-prefix.txt", "text the rows come from"},
      {"--json", "FILE", "", "also write every number as JSON (docs/cli.md)"},
      {"--svg", "FILE|none", kDefaultSvg, "the chart of needle accuracy and perplexity per length"},
      {"--export", "DIR", "",
       "write the model with the needle-searched table as a longrope config"},
      {"--export-multiple", "M", "the first of --search-multiples", "which search --export ships"},
      cli::format_option(),
  };
  return kOptions;
}

// --budget: the search's size and the rows each length is measured on. "default" is the main job
// (a few minutes on 2 cores); "full" is the search budget the study in examples/data was run with.
struct BudgetPreset {
  const char* name;
  tiny_llama::SearchBudget search;  // population, parents, mutations, crossovers, iterations,
                                    // needle rows, text rows
  std::int64_t needles_per_depth;
  std::int64_t text_rows;
};
const BudgetPreset kBudgets[] = {{"small", {4, 2, 1, 1, 1, 2, 1}, 2, 2},
                                 {"default", {6, 3, 2, 2, 2, 3, 2}, 2, 2},
                                 {"full", tiny_llama::SearchBudget{}, 8, 4}};

nlohmann::json budget_json(const tiny_llama::SearchBudget& b) {
  return {{"population", b.population}, {"parents", b.parents},
          {"mutations", b.mutations},   {"crossovers", b.crossovers},
          {"iterations", b.iterations}, {"needle_rows", b.needle_rows},
          {"text_rows", b.text_rows}};
}

// The budget a run uses, first thing in its table: what the numbers below are measured with.
std::string budget_line(const std::string& name, const tiny_llama::SearchBudget& b,
                        std::int64_t per_depth, std::size_t depths, std::int64_t text_rows) {
  std::ostringstream os;
  os << "budget " << name << ": searches of " << b.population << " + " << b.iterations << " x "
     << (b.mutations + b.crossovers) << " candidates scored on " << b.needle_rows
     << " needle rows or " << b.text_rows << " text rows; " << per_depth << " needles x " << depths
     << " depths and " << text_rows << " text rows per length";
  return os.str();
}

nlohmann::json factors_json(const ropescale::FactorTable& t) {
  return std::vector<double>(t.factors().data(), t.factors().data() + t.factors().size());
}

// One row of the comparison: a model, and per length the tables it runs with (none: not measured).
struct Row {
  std::string name;
  const tiny_llama::Weights* weights = nullptr;
  std::vector<std::optional<tiny_llama::MethodTables>> tables;
};

struct Cell {
  double needle = 0, ppl = 0, answer_nll = 0;
  std::vector<double> by_depth;
};

std::string render_svg(const std::vector<std::int64_t>& lengths, const std::vector<Row>& rows,
                       const std::vector<std::vector<std::optional<Cell>>>& cells, std::int64_t L) {
  const double width = 980, height = 420;
  svg::Document doc(width, height);
  doc.rect(0, 0, width, height, "white");
  doc.text(width / 2, 22,
           "tiny Llama (L_train = " + std::to_string(L) +
               "): needle exact match and text perplexity on held-out rows",
           15, "middle");
  std::vector<svg::Series> acc, ppl;
  double hi = 2.0;
  for (std::size_t r = 0; r < rows.size(); ++r) {
    const bool bold = rows[r].name == "longrope2_needle";
    acc.push_back({rows[r].name, {}, "", bold});
    ppl.push_back({rows[r].name, {}, "", bold});
    for (const auto& c : cells[r]) {
      acc.back().values.push_back(c ? std::optional<double>(c->needle) : std::nullopt);
      ppl.back().values.push_back(c ? std::optional<double>(c->ppl) : std::nullopt);
      if (c) hi = std::max(hi, c->ppl);
    }
  }
  svg::length_panel(doc, 60, 60, 340, 300, "needle exact match", lengths, acc, 0.0, 1.0, false);
  svg::length_panel(doc, 470, 60, 340, 300, "text perplexity per byte (log)", lengths, ppl, 1.0,
                    std::pow(2.0, std::ceil(std::log2(hi))), true);
  doc.text(435, height - 12, "context length (tokens, log scale)", 12, "middle");
  svg::legend(doc, 828, 74, acc);
  return doc.str();
}

int run_extend(const std::vector<std::string>& argv) {
  cli::Args args(argv, options());
  const bool json = args.json_format();
  const std::string data = ROPESCALE_EXAMPLES_DATA_DIR;
  const std::string model = args.get("--model", data + "/tiny-llama");
  cli::check_model_dir("--model", model);
  std::vector<std::string> finetuned;
  if (args.has("--finetuned")) {
    const std::string v = args.get("--finetuned");
    if (v != "none") finetuned = cli::Args::split_list("--finetuned", v);
  } else {
    for (const char* d : {"/tiny-llama-mixed", "/tiny-llama-long"})
      if (std::filesystem::exists(data + d + "/config.json")) finetuned.push_back(data + d);
  }
  for (const std::string& d : finetuned) cli::check_model_dir("--finetuned", d);
  const std::string multiples_text = args.get("--multiples", "1,2,4,8");
  const std::string search_text = args.get("--search-multiples", "4,8");
  const auto multiples = cli::Args::parse_increasing_ints("--multiples", multiples_text, 1, 64);
  const auto search_multiples =
      cli::Args::parse_increasing_ints("--search-multiples", search_text, 1, 64);
  if (multiples.front() != 1)
    throw cli::UsageError(args.shown("--multiples", multiples_text) +
                          ": must start with 1 (L_train)");
  for (auto m : search_multiples) {
    if (m < 2)
      throw cli::UsageError(args.shown("--search-multiples", search_text) + ": entry " +
                            std::to_string(m) + " must be >= 2 (a target beyond L_train)");
    if (std::find(multiples.begin(), multiples.end(), m) != multiples.end()) continue;
    // Blame the option the user typed: a default target missing from --multiples is a fault of
    // --multiples unless --search-multiples was given too.
    if (args.has("--search-multiples") || !args.has("--multiples"))
      throw cli::UsageError(args.shown("--search-multiples", search_text) + ": entry " +
                            std::to_string(m) + " must be one of " +
                            args.shown("--multiples", multiples_text));
    throw cli::UsageError(args.shown("--multiples", multiples_text) + ": must include " +
                          std::to_string(m) + ", a search target of " +
                          args.shown("--search-multiples", search_text) +
                          "; add it or pass --search-multiples");
  }
  const std::string budget_name = args.get("--budget", "default");
  const BudgetPreset* preset = nullptr;
  for (const BudgetPreset& p : kBudgets)
    if (budget_name == p.name) preset = &p;
  if (preset == nullptr)
    throw cli::UsageError("--budget = '" + cli::Args::clip(budget_name) +
                          "': must be 'small', 'default' or 'full'");
  const tiny_llama::SearchBudget budget = preset->search;
  const std::int64_t per_depth =
      args.get_int("--needles-per-depth", preset->needles_per_depth, 1, 100);
  const std::int64_t text_rows = args.get_int("--text-rows", preset->text_rows, 1, 100);
  const std::int64_t threads = args.get_int("--threads", 2, 1, 256);
  const std::string json_path = args.output_file("--json");
  const std::string svg_arg = args.get("--svg", kDefaultSvg);
  const std::string svg_path = svg_arg == "none" ? std::string() : svg_arg;
  if (!svg_path.empty()) cli::check_output_file("--svg", svg_path);
  const std::string export_dir = args.get("--export");
  if (!export_dir.empty()) cli::check_output_dir("--export", export_dir);
  const std::int64_t export_multiple =
      args.get_int("--export-multiple", search_multiples.front(), 2, 64);
  if (!export_dir.empty() && std::find(search_multiples.begin(), search_multiples.end(),
                                       export_multiple) == search_multiples.end())
    throw cli::UsageError(args.shown("--export-multiple", std::to_string(export_multiple),
                                     "the first of --search-multiples") +
                          ": must be one of " + args.shown("--search-multiples", search_text));
  const std::string text_path = args.input_file("--text", data + "/tinystories-valid-prefix.txt");

  const tiny_llama::Weights w = tiny_llama::load_model_dir(model);
  ropescale::ModelRope model_rope;  // the RoPE fields of the JSON, as `factors` prints them
  cli::check_input("--model", model + "/config.json",
                   ropescale::try_load_hf_model(model + "/config.json", {}, &model_rope));
  std::vector<tiny_llama::Weights> tuned;
  std::vector<ropescale::RopeConfig> tuned_rope;
  for (const std::string& d : finetuned) {
    tuned.push_back(tiny_llama::load_model_dir(d));
    tuned_rope.push_back(tiny_llama::load_rope_config(d));
    if (!(tuned.back().config().rope_spec() == w.config().rope_spec()))
      throw cli::InputError("--finetuned = '" + cli::Args::clip(d) +
                            "': its RoPE spec differs from --model's");
  }
  // What the numbers are measured with comes first; the work takes minutes.
  const std::vector<double> depths = {0.1, 0.3, 0.5, 0.7, 0.9};
  if (!json)
    std::cout << budget_line(budget_name, budget, per_depth, depths.size(), text_rows) << "\n"
              << std::flush;
  const tiny_llama::Corpus corpus = tiny_llama::Corpus::load(text_path);
  const ropescale::RopeSpec spec = w.config().rope_spec();
  const std::int64_t L = spec.original_max_position;
  std::vector<tiny_llama::LengthSet> sets;
  for (std::size_t i = 0; i < multiples.size(); ++i)
    sets.push_back(tiny_llama::LengthSet::make(corpus.held_out, L * multiples[i], depths, per_depth,
                                               text_rows, 1000 + i));
  auto note = [&](const std::string& s) { std::cerr << "\r" << s << "          " << std::flush; };

  // --- 1. critical dimensions
  const std::int64_t i_tcd = ropescale::theoretical_critical_pair(spec);
  const std::int64_t lower = ropescale::critical_search_lower_pair(spec);
  const Eigen::ArrayXd inv = ropescale::base_inv_freq(spec);
  nlohmann::json pairs = nlohmann::json::array();
  for (Eigen::Index i = 0; i < inv.size(); ++i) {
    const double period = ropescale::kTwoPi / inv[i];
    pairs.push_back(
        {{"pair", i}, {"period", period}, {"periods_in_train", static_cast<double>(L) / period}});
  }

  // --- 2. searches and 3. the rows
  std::vector<Row> rows;
  auto static_row = [&](const std::string& name, auto make) {
    Row r{name, &w, {}};
    for (auto m : multiples)
      r.tables.push_back(tiny_llama::MethodTables::fixed(
          m == 1 ? ropescale::FactorTable::identity(spec) : make(static_cast<double>(m))));
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
  std::optional<ropescale::FactorTable> exported;
  const struct {
    const char* name;
    const char* space;
    tiny_llama::Objective objective;
  } kinds[] = {{"longrope2_needle", "longrope2", tiny_llama::Objective::kNeedle},
               {"longrope2_ppl", "longrope2", tiny_llama::Objective::kPerplexity},
               {"longrope_v1_ppl", "longrope_v1", tiny_llama::Objective::kPerplexity}};
  for (const auto& k : kinds) {
    Row r{k.name, &w, {}};
    for (auto m : multiples) {
      if (std::find(search_multiples.begin(), search_multiples.end(), m) ==
          search_multiples.end()) {
        r.tables.push_back(std::nullopt);
        continue;
      }
      const tiny_llama::SearchRun run = tiny_llama::run_search(
          w, k.space, k.objective, L * m, budget, corpus.train, 77 + static_cast<std::uint64_t>(m),
          static_cast<int>(threads), note);
      searches.push_back({{"name", k.name},
                          {"space", k.space},
                          {"objective", tiny_llama::to_string(k.objective)},
                          {"target_length", L * m},
                          {"c", run.critical_pair},
                          {"i_tcd", run.theoretical_critical_pair},
                          {"evaluations", run.evaluations},
                          {"best_loss", run.best_loss},
                          {"seconds", run.seconds},
                          {"factors", factors_json(run.table)},
                          {"attention_factor", run.table.attention_factor()}});
      if (k.name == std::string("longrope2_needle") && m == export_multiple) exported = run.table;
      r.tables.push_back(tiny_llama::MethodTables::switching(spec, run.table));
    }
    // A searched row at L_train: the inference rule with the first search's table.
    for (std::size_t i = 0; i < multiples.size(); ++i)
      if (multiples[i] == 1)
        for (const auto& t : r.tables)
          if (t) {
            r.tables[i] = t;
            break;
          }
    rows.push_back(r);
  }
  for (std::size_t f = 0; f < tuned.size(); ++f) {
    const std::string base = std::filesystem::path(finetuned[f]).filename().string();
    Row r{base.empty() ? "finetuned" : base, &tuned[f], {}};
    const ropescale::RopeConfig& rc = tuned_rope[f];
    for (auto m : multiples)
      r.tables.push_back(tiny_llama::MethodTables{rc.table_for(std::min(L * m, L)),
                                                  rc.table_for(std::max(L * m, L + 1))});
    rows.push_back(r);
  }

  std::vector<std::vector<std::optional<Cell>>> cells(rows.size());
  for (std::size_t r = 0; r < rows.size(); ++r)
    for (std::size_t i = 0; i < multiples.size(); ++i) {
      if (!rows[r].tables[i]) {
        cells[r].push_back(std::nullopt);
        continue;
      }
      note("scoring " + rows[r].name + " @" + std::to_string(sets[i].length));
      const tiny_llama::LengthScore sc = tiny_llama::score_method(
          *rows[r].weights, *rows[r].tables[i], sets[i], static_cast<int>(threads));
      cells[r].push_back(Cell{sc.needle_accuracy, sc.ppl, sc.answer_nll, sc.accuracy_by_depth});
    }
  std::cerr << "\r" << std::string(70, ' ') << "\r";

  nlohmann::json lengths = nlohmann::json::array(), methods = nlohmann::json::object();
  for (const auto& s : sets) lengths.push_back(s.length);
  for (std::size_t r = 0; r < rows.size(); ++r) {
    nlohmann::json m = {{"factors", nlohmann::json::array()},
                        {"attention_factor", nlohmann::json::array()},
                        {"needle_accuracy", nlohmann::json::array()},
                        {"needle_accuracy_by_depth", nlohmann::json::array()},
                        {"answer_nll", nlohmann::json::array()},
                        {"ppl", nlohmann::json::array()}};
    for (std::size_t i = 0; i < multiples.size(); ++i) {
      const auto& t = rows[r].tables[i];
      const auto& c = cells[r][i];
      // The table the row uses at this length (beyond L_train: the extended one).
      const ropescale::FactorTable* used =
          t ? (multiples[i] == 1 ? &t->within : &t->beyond) : nullptr;
      m["factors"].push_back(used ? factors_json(*used) : nlohmann::json());
      m["attention_factor"].push_back(used ? nlohmann::json(used->attention_factor())
                                           : nlohmann::json());
      m["needle_accuracy"].push_back(c ? nlohmann::json(c->needle) : nlohmann::json());
      m["needle_accuracy_by_depth"].push_back(c ? nlohmann::json(c->by_depth) : nlohmann::json());
      m["answer_nll"].push_back(c ? nlohmann::json(c->answer_nll) : nlohmann::json());
      m["ppl"].push_back(c ? nlohmann::json(c->ppl) : nlohmann::json());
    }
    if (rows[r].weights != &w) {
      // Short-window quality kept relative to the base model at L_train (LongRoPE2's claim 3).
      const Cell& base = *cells[0][0];
      const Cell& own = *cells[r][0];
      m["short_ppl_kept_percent"] = 100.0 * base.ppl / own.ppl;
      m["short_needle_kept_percent"] =
          base.needle > 0 ? nlohmann::json(100.0 * own.needle / base.needle) : nlohmann::json();
    }
    methods[rows[r].name] = m;
  }
  const nlohmann::json out = cli::json_document("extend", {{"model", model},
                                                           {"kinds", cli::kinds_json(model_rope)},
                                                           {"train_length", L},
                                                           {"lengths", lengths},
                                                           {"depths", depths},
                                                           {"needles_per_depth", per_depth},
                                                           {"text_rows", text_rows},
                                                           {"budget", budget_name},
                                                           {"i_tcd", i_tcd},
                                                           {"search_lower_pair", lower},
                                                           {"pairs", pairs},
                                                           {"methods", methods},
                                                           {"search", searches},
                                                           {"budget_search", budget_json(budget)}});
  if (!json_path.empty()) {
    std::ofstream f(json_path, std::ios::trunc);
    f << out.dump(2) << "\n";
    if (!f) throw cli::InputError("--json = '" + cli::Args::clip(json_path) + "': write failed");
  }
  if (!svg_path.empty()) {
    std::vector<std::int64_t> ls;
    for (const auto& s : sets) ls.push_back(s.length);
    std::ofstream f(svg_path, std::ios::trunc);
    f << render_svg(ls, rows, cells, L);
    if (!f) throw cli::InputError("--svg = '" + cli::Args::clip(svg_path) + "': write failed");
  }
  if (!export_dir.empty() && exported) {
    const ropescale::RopeConfig rc =
        ropescale::longrope_config_from_tables(spec, L * export_multiple, *exported);
    tiny_llama::save_model_dir(export_dir, w, ropescale::to_hf_config(rc));
  }
  if (json) {
    std::cout << out.dump(2) << "\n";
    return 0;
  }
  std::cout << "tiny Llama " << model << ": head_dim " << spec.head_dim << " (" << spec.pairs()
            << " pairs, " << cli::pair_layout_name(model_rope.kinds[0].config.interleaved_pairs)
            << "), theta " << spec.rope_theta << ", L_train " << L << "\n";
  std::cout << "\n";
  std::cout << "critical dimensions: pair i has period 2 pi / theta_i tokens; pairs from i_tcd = "
            << i_tcd << " up never complete a period within L_train; the search scans c from "
            << lower << "\n";
  std::cout << "  pair  " << std::right;
  for (Eigen::Index i = 0; i < inv.size(); ++i) std::cout << std::setw(7) << i;
  std::cout << "\n  period";
  for (const auto& p : pairs)
    std::cout << std::setw(7) << std::fixed << std::setprecision(0) << p["period"].get<double>();
  std::cout << "\n  seen  ";
  for (const auto& p : pairs)
    std::cout << std::setw(7) << std::fixed << std::setprecision(2)
              << p["periods_in_train"].get<double>();
  std::cout << "\n\nsearches (needle = loss on answer tokens only; ppl = loss on every byte)\n";
  for (const auto& s : searches)
    std::cout << "  " << std::left << std::setw(18) << s["name"].get<std::string>() << std::right
              << " @" << std::setw(5) << s["target_length"].get<std::int64_t>()
              << "  c = " << std::setw(2) << s["c"].get<std::int64_t>() << " (i_tcd " << i_tcd
              << "), " << s["evaluations"].get<std::int64_t>() << " evaluations, " << std::fixed
              << std::setprecision(1) << s["seconds"].get<double>() << " s\n";
  std::cout << "\nneedle exact match / text perplexity on held-out rows (" << depths.size()
            << " depths x " << per_depth << " needles, " << text_rows << " text rows per length)\n";
  std::cout << std::left << std::setw(20) << "method";
  for (const auto& s : sets) std::cout << std::right << std::setw(15) << s.length;
  std::cout << "\n";
  for (std::size_t r = 0; r < rows.size(); ++r) {
    std::cout << std::left << std::setw(20) << rows[r].name;
    for (const auto& c : cells[r]) {
      std::ostringstream cell;
      if (!c)
        cell << "-";
      else
        cell << std::fixed << std::setprecision(2) << c->needle << " / " << std::setprecision(2)
             << c->ppl;
      std::cout << std::right << std::setw(15) << cell.str();
    }
    std::cout << "\n";
  }
  for (std::size_t r = 0; r < rows.size(); ++r)
    if (methods[rows[r].name].contains("short_ppl_kept_percent"))
      std::cout << "  " << rows[r].name << ": short-window perplexity kept " << std::setprecision(1)
                << methods[rows[r].name]["short_ppl_kept_percent"].get<double>()
                << "% of the base model's at " << L << "\n";
  if (!export_dir.empty() && exported)
    std::cout << "wrote " << export_dir << " (longrope rope_scaling for " << L * export_multiple
              << " tokens)\n";
  if (!svg_path.empty()) std::cout << "wrote " << svg_path << "\n";
  if (budget_name != "full")
    std::cout << "\nThese numbers come from the '" << budget_name
              << "' budget: smaller searches on fewer rows than docs/study.md's\n"
                 "tables, which come from --budget full, so they differ from them, most in the "
                 "searched rows.\n";
  std::cout << "What the numbers show and what they do not: docs/study.md\n";
  return 0;
}

const bool registered = cli::register_command(
    {"extend",
     "LongRoPE2 study on the tiny Llama: critical pairs, searches, needle/perplexity comparison",
     kUsage, run_extend, options()});

}  // namespace
