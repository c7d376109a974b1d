// Search checkpoints: exact round trip, atomic writes, kill-and-resume from the file, and refusal
// (kParseError, file untouched) of truncated, corrupt and mismatched checkpoints.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "ropescale/io/search_checkpoint.hpp"

using ropescale::ErrorCode;
using ropescale::EvolutionSearch;
using ropescale::FactorTable;
using ropescale::RopeSpec;
using ropescale::SearchParams;
using ropescale::SearchProgress;
using ropescale::SearchResult;
using ropescale::SearchSpace;
using ropescale::SearchState;

namespace {

SearchSpace test_space() {
  return SearchSpace::longrope2(RopeSpec{128, 128, 500000.0, 8192}, 131072).value();
}

double loss(const FactorTable& t) {
  const Eigen::ArrayXd& f = t.factors();
  double sum = 0.0;
  for (Eigen::Index i = 0; i < f.size(); ++i) {
    const double want = i < 30 ? std::pow(20.0, i / 30.0) : 20.0 + 0.2 * (i - 30);
    sum += std::abs(std::log(f[i] / want));
  }
  return sum;
}

std::string temp_path(const std::string& name) {
  const testing::TestInfo* info = testing::UnitTest::GetInstance()->current_test_info();
  return testing::TempDir() + "ropescale_" + info->name() + "_" + name;
}

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream os;
  os << in.rdbuf();
  return os.str();
}

void write_file(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << text;
}

bool exists(const std::string& path) { return std::ifstream(path).good(); }

void expect_same_state(const SearchState& a, const SearchState& b) {
  EXPECT_EQ(a.space, b.space);
  EXPECT_EQ(ropescale::mismatch(a.params, b.params), "");
  EXPECT_EQ(a.params.iterations, b.params.iterations);
  EXPECT_EQ(a.iteration, b.iteration);
  EXPECT_EQ(a.population, b.population);
  EXPECT_EQ(a.rng_state, b.rng_state);
  ASSERT_EQ(a.history.size(), b.history.size());
  for (std::size_t i = 0; i < a.history.size(); ++i) {
    EXPECT_EQ(a.history[i].genome, b.history[i].genome);
    EXPECT_EQ(a.history[i].loss, b.history[i].loss);  // bit-exact through JSON
  }
}

// Expects loading `path` to fail with kParseError mentioning `needle`, leaving the file as it was.
void expect_refused(const std::string& path, const std::string& needle) {
  const std::string before = read_file(path);
  try {
    ropescale::load_search_checkpoint(path).value();
    ADD_FAILURE() << "accepted a bad checkpoint (" << needle << ")";
  } catch (const ropescale::Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kParseError) << e.what();
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
  }
  // run_or_resume refuses it too, before writing anything.
  EvolutionSearch search(test_space(), SearchParams{});
  EXPECT_THROW(ropescale::run_or_resume_search(search, path, loss).value(), ropescale::Error);
  EXPECT_EQ(read_file(path), before);
  EXPECT_FALSE(exists(path + ".tmp"));
}

}  // namespace

TEST(SearchCheckpoint, RoundTripIsExact) {
  SearchParams p;
  p.iterations = 3;
  p.seed = 99;
  EvolutionSearch search(test_space(), p);
  int calls = 0;
  // Some infinite losses (written as null) and awkward doubles.
  const SearchResult r = search
                             .run([&](const FactorTable& t) {
                               return (++calls % 7 == 0) ? INFINITY : loss(t) / 3.0 + 1e-300;
                             })
                             .value();
  const std::string path = temp_path("ckpt.json");
  ropescale::throw_if_error(ropescale::save_search_checkpoint(path, r.state));
  EXPECT_FALSE(exists(path + ".tmp"));
  const SearchState back = ropescale::load_search_checkpoint(path).value();
  expect_same_state(r.state, back);

  const nlohmann::json j = nlohmann::json::parse(read_file(path));
  EXPECT_EQ(j["format"], "ropescale.search_checkpoint");
  EXPECT_EQ(j["version"], 1);
  EXPECT_EQ(j["history"].size(), 64u + 3u * 32u);
  EXPECT_TRUE(j["history"][6]["loss"].is_null());
  // The readable best entry carries the full factor table.
  EXPECT_EQ(j["best"]["factors"].size(), 64u);
  EXPECT_EQ(j["best"]["loss"].get<double>(), r.best_loss);
  EXPECT_EQ(j["best"]["c"].get<std::int64_t>(), r.best.critical_pair);
  std::remove(path.c_str());
}

TEST(SearchCheckpoint, KillAndResumeFromTheFileEqualsAnUninterruptedRun) {
  SearchParams p;
  p.iterations = 15;
  p.seed = 5;
  EvolutionSearch reference(test_space(), p);
  const SearchResult uninterrupted = reference.run(loss).value();

  const std::string path = temp_path("ckpt.json");
  std::remove(path.c_str());
  // Session 1: killed by the fitness in the middle of iteration 6.
  {
    EvolutionSearch search(test_space(), p);
    int calls = 0;
    EXPECT_THROW(ropescale::run_or_resume_search(search, path,
                                                 [&](const FactorTable& t) {
                                                   if (++calls == 64 + 5 * 32 + 20)
                                                     throw std::runtime_error("killed");
                                                   return loss(t);
                                                 })
                     .value(),
                 std::runtime_error);
  }
  EXPECT_EQ(ropescale::load_search_checkpoint(path).value().iteration, 5);
  // Session 2: stopped on purpose after iteration 9, with another thread count.
  {
    SearchParams q = p;
    q.threads = 2;
    q.thread_safe = true;
    EvolutionSearch search(test_space(), q);
    search.set_stop_callback([](const SearchProgress& pr) { return pr.iteration == 9; });
    const SearchResult part = ropescale::run_or_resume_search(search, path, loss).value();
    EXPECT_EQ(part.iterations, 9);
  }
  EXPECT_EQ(ropescale::load_search_checkpoint(path).value().iteration, 9);
  // Session 3: runs to the end.
  EvolutionSearch search(test_space(), p);
  const SearchResult resumed = ropescale::run_or_resume_search(search, path, loss).value();
  EXPECT_EQ(resumed.best, uninterrupted.best);
  EXPECT_EQ(resumed.best_loss, uninterrupted.best_loss);
  EXPECT_EQ(resumed.table, uninterrupted.table);
  EXPECT_EQ(resumed.table.method(), uninterrupted.table.method());
  expect_same_state(resumed.state, uninterrupted.state);
  // The final checkpoint holds the final state.
  expect_same_state(ropescale::load_search_checkpoint(path).value(), uninterrupted.state);
  std::remove(path.c_str());
}

TEST(SearchCheckpoint, RefusesTruncatedCorruptAndMismatchedFiles) {
  SearchParams p;
  p.iterations = 2;
  EvolutionSearch search(test_space(), p);
  const SearchResult r = search.run(loss).value();
  const std::string good_path = temp_path("good.json");
  ropescale::throw_if_error(ropescale::save_search_checkpoint(good_path, r.state));
  const std::string good = read_file(good_path);
  const nlohmann::json j = nlohmann::json::parse(good);
  const std::string path = temp_path("bad.json");

  write_file(path, good.substr(0, good.size() / 2));
  expect_refused(path, "not valid JSON");
  write_file(path, good.substr(0, good.size() - 3));
  expect_refused(path, "not valid JSON");
  write_file(path, "");
  expect_refused(path, "not valid JSON");
  std::string flipped = good;
  flipped[flipped.size() / 3] = '#';
  write_file(path, flipped);
  expect_refused(path, "not valid JSON");

  auto refuse_edit = [&](const std::function<void(nlohmann::json&)>& edit,
                         const std::string& needle) {
    nlohmann::json bad = j;
    edit(bad);
    write_file(path, bad.dump());
    expect_refused(path, needle);
  };
  refuse_edit([](nlohmann::json& b) { b["format"] = "something else"; }, "checkpoint.format");
  refuse_edit([](nlohmann::json& b) { b["version"] = 3; }, "checkpoint.version");
  refuse_edit([](nlohmann::json& b) { b.erase("rng_state"); }, "checkpoint.rng_state");
  refuse_edit([](nlohmann::json& b) { b["rng_state"] = "12 34"; }, "rng_state");
  refuse_edit([](nlohmann::json& b) { b["params"]["population"] = "64"; }, "params.population");
  refuse_edit([](nlohmann::json& b) { b["params"]["parents"] = 100; }, "params.parents");
  refuse_edit([](nlohmann::json& b) { b["space"]["method"] = "yarn"; }, "space.method");
  refuse_edit([](nlohmann::json& b) { b["space"]["step"] = -0.01; }, "space.step");
  refuse_edit([](nlohmann::json& b) { b["history"][4]["steps"][0] = 100; }, "history[4]");
  refuse_edit([](nlohmann::json& b) { b["history"][4]["c"] = 50; }, "history[4]");
  refuse_edit([](nlohmann::json& b) { b["history"][4]["loss"] = "low"; }, "history[4].loss");
  refuse_edit([](nlohmann::json& b) { b["history"][5] = b["history"][4]; }, "history[5]");
  refuse_edit([](nlohmann::json& b) { b["population"][0] = 100000; }, "population[0]");
  refuse_edit([](nlohmann::json& b) { b["population"] = nlohmann::json::array(); },
              "population.size()");
  refuse_edit([](nlohmann::json& b) { b["history"] = 3; }, "checkpoint.history");

  // Well-formed but from another search: refused by resume (kParseError, naming the field),
  // file untouched.
  write_file(path, good);
  for (int which = 0; which < 3; ++which) {
    SearchParams q = p;
    SearchSpace sp = test_space();
    std::string field;
    if (which == 0) {
      q.seed = 12345;
      field = "seed";
    } else if (which == 1) {
      q.population = 48;
      field = "population";
    } else {
      sp.monotonicity = ropescale::Monotonicity::kStrictlyIncreasing;
      field = "monotonicity";
    }
    EvolutionSearch other(sp, q);
    try {
      ropescale::run_or_resume_search(other, path, loss).value();
      ADD_FAILURE() << "resumed a checkpoint with another " << field;
    } catch (const ropescale::Error& e) {
      EXPECT_EQ(e.code(), ErrorCode::kParseError);
      EXPECT_NE(std::string(e.what()).find(field), std::string::npos) << e.what();
    }
    EXPECT_EQ(read_file(path), good);
  }

  // A missing file is an I/O error for load (run_or_resume starts a new search instead).
  const std::string missing = temp_path("missing.json");
  std::remove(missing.c_str());
  try {
    ropescale::load_search_checkpoint(missing).value();
    ADD_FAILURE() << "loaded a missing file";
  } catch (const ropescale::Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kIoError);
  }
  std::remove(path.c_str());
  std::remove(good_path.c_str());
}

TEST(SearchCheckpoint, FailedWriteLeavesThePreviousFile) {
  SearchParams p;
  p.iterations = 1;
  EvolutionSearch search(test_space(), p);
  const SearchResult r = search.run(loss).value();
  // A directory where the temp file should go makes the write fail; the old file survives.
  const std::string path = temp_path("ckpt.json");
  write_file(path, "previous");
  const std::string tmp = path + ".tmp";
  ASSERT_EQ(std::system(("mkdir -p '" + tmp + "'").c_str()), 0);
  ropescale::SearchState st = r.state;
  const ropescale::Status s = ropescale::save_search_checkpoint(path, st);
  EXPECT_EQ(s.code(), ErrorCode::kIoError) << s.message();
  EXPECT_EQ(read_file(path), "previous");
  std::remove(tmp.c_str());
  std::remove(path.c_str());
}

TEST(SearchCheckpoint, ProportionalSpecKeepsItsFrequencySpan) {
  // Gemma 4 full-attention layers: 64 rotating pairs with exponents over 512 channels.
  RopeSpec spec{512, 128, 1e6, 8192};
  spec.freq_dim = 512;
  SearchParams p;
  p.iterations = 1;
  EvolutionSearch search(SearchSpace::longrope2(spec, 65536).value(), p);
  const SearchResult r = search.run([](const FactorTable& t) { return t.factors().sum(); }).value();
  const nlohmann::json j = ropescale::search_state_to_json(r.state);
  EXPECT_EQ(j["space"]["freq_dim"], 512);
  const ropescale::Result<SearchState> made = ropescale::search_state_from_json(j);
  ASSERT_TRUE(made.ok()) << made.status().message();
  const SearchState& back = *made;
  EXPECT_EQ(back.space.spec.frequency_dim(), 512);
  expect_same_state(r.state, back);
  // A plain spec writes no freq_dim key.
  EvolutionSearch plain(test_space(), p);
  EXPECT_FALSE(
      ropescale::search_state_to_json(plain.run(loss).value().state)["space"].contains("freq_dim"));
}

// Every search-defining field of the space and of the parameters, changed in turn: resume refuses
// the checkpoint, naming that field; the run settings may change. The names come from the field
// tables, so a field added to either struct without a case here fails the coverage check.
TEST(SearchCheckpoint, ResumeRefusesEveryChangedDefiningField) {
  RopeSpec spec{64, 32, 10000.0, 256};
  const SearchSpace space = SearchSpace::longrope2(spec, 1024).value();
  ASSERT_GE(space.critical_lower, 1);
  ASSERT_LT(space.critical_upper, spec.pairs() - 1);
  SearchParams params;
  params.population = 8;
  params.parents = 4;
  params.mutations = 2;
  params.crossovers = 2;
  params.iterations = 1;
  const auto fitness = [](const FactorTable& t) { return t.factors().sum(); };
  const SearchState state = EvolutionSearch(space, params).run(fitness).value().state;
  // The checkpoint file says the same as the state (freq_dim included).
  const std::string path = temp_path("ckpt.json");
  ropescale::throw_if_error(ropescale::save_search_checkpoint(path, state));

  using Edit = std::function<void(SearchSpace&, SearchParams&)>;
  const std::vector<std::pair<std::string, Edit>> space_edits = {
      {"head_dim", [](SearchSpace& s, SearchParams&) { s.spec.head_dim = 96; }},
      {"rotary_dim", [](SearchSpace& s, SearchParams&) { s.spec.rotary_dim = 48; }},
      {"rope_theta", [](SearchSpace& s, SearchParams&) { s.spec.rope_theta = 20000.0; }},
      {"freq_dim", [](SearchSpace& s, SearchParams&) { s.spec.freq_dim = 64; }},
      {"original_max_position",
       [](SearchSpace& s, SearchParams&) { s.spec.original_max_position = 512; }},
      {"scale", [](SearchSpace& s, SearchParams&) { s.scale += 0.5; }},
      {"method",
       [](SearchSpace& s, SearchParams&) {
         s.method = ropescale::SearchMethod::kLongRoPE;
         s.critical_lower = s.critical_upper = 0;
       }},
      {"critical_lower", [](SearchSpace& s, SearchParams&) { s.critical_lower -= 1; }},
      {"critical_upper", [](SearchSpace& s, SearchParams&) { s.critical_upper += 1; }},
      {"lower_bound", [](SearchSpace& s, SearchParams&) { s.lower_bound += 0.5; }},
      {"upper_bound", [](SearchSpace& s, SearchParams&) { s.upper_bound += 1.0; }},
      {"step", [](SearchSpace& s, SearchParams&) { s.step = 0.02; }},
      {"monotonicity",
       [](SearchSpace& s, SearchParams&) {
         s.monotonicity = ropescale::Monotonicity::kStrictlyIncreasing;
       }},
      {"attention_factor", [](SearchSpace& s, SearchParams&) { s.attention_factor += 0.125; }},
  };
  const std::vector<std::pair<std::string, Edit>> params_edits = {
      {"population", [](SearchSpace&, SearchParams& p) { p.population = 9; }},
      {"parents", [](SearchSpace&, SearchParams& p) { p.parents = 3; }},
      {"mutations", [](SearchSpace&, SearchParams& p) { p.mutations = 3; }},
      {"crossovers", [](SearchSpace&, SearchParams& p) { p.crossovers = 3; }},
      {"mutation_prob", [](SearchSpace&, SearchParams& p) { p.mutation_prob = 0.4; }},
      {"crossover_tries", [](SearchSpace&, SearchParams& p) { p.crossover_tries = 21; }},
      {"critical_mutation_prob",
       [](SearchSpace&, SearchParams& p) { p.critical_mutation_prob = 0.2; }},
      {"seed", [](SearchSpace&, SearchParams& p) { p.seed = 1; }},
  };
  const std::vector<std::pair<std::string, Edit>> run_settings = {
      {"iterations", [](SearchSpace&, SearchParams& p) { p.iterations = 2; }},
      {"threads", [](SearchSpace&, SearchParams& p) { p.threads = 2; }},
      {"thread_safe", [](SearchSpace&, SearchParams& p) { p.thread_safe = true; }},
      {"max_evaluations", [](SearchSpace&, SearchParams& p) { p.max_evaluations = 1000; }},
      {"max_seconds", [](SearchSpace&, SearchParams& p) { p.max_seconds = 1000.0; }},
  };

  // Coverage: the cases name exactly the fields of the tables, split as the tables split them.
  std::vector<std::string> table_space, table_params, table_run, cases_space, cases_params,
      cases_run;
  ropescale::detail::for_each_field(SearchSpace::fields(), [&](const auto& f) {
    ASSERT_TRUE(f.has(ropescale::detail::kFieldDefining)) << f.name;
    table_space.push_back(f.name);
  });
  ropescale::detail::for_each_field(SearchParams::fields(), [&](const auto& f) {
    (f.has(ropescale::detail::kFieldDefining) ? table_params : table_run).push_back(f.name);
  });
  for (const auto& e : space_edits) cases_space.push_back(e.first);
  for (const auto& e : params_edits) cases_params.push_back(e.first);
  for (const auto& e : run_settings) cases_run.push_back(e.first);
  EXPECT_EQ(table_space, cases_space);
  EXPECT_EQ(table_params, cases_params);
  EXPECT_EQ(table_run, cases_run);

  const std::string file = read_file(path);
  for (const auto& group : {std::make_pair(std::string("space"), &space_edits),
                            std::make_pair(std::string("params"), &params_edits)}) {
    for (const auto& [field, edit] : *group.second) {
      SearchSpace sp = space;
      SearchParams p = params;
      edit(sp, p);
      ASSERT_TRUE(ropescale::validate(sp).ok())
          << field << ": " << ropescale::validate(sp).message();
      ASSERT_TRUE(ropescale::validate(p).ok()) << field;
      EXPECT_NE(sp == space && p == params, true) << field;
      for (const bool from_file : {false, true}) {
        EvolutionSearch other(sp, p);
        try {
          if (from_file)
            ropescale::run_or_resume_search(other, path, fitness).value();
          else
            other.resume(state, fitness).value();
          ADD_FAILURE() << "resumed a checkpoint with another " << field;
        } catch (const ropescale::Error& e) {
          EXPECT_EQ(e.code(), ErrorCode::kParseError);
          const std::string want = "checkpoint " + group.first + " = \"" + field + " (";
          EXPECT_NE(std::string(e.what()).find(want), std::string::npos)
              << "want " << want << " in: " << e.what();
        }
      }
      EXPECT_EQ(read_file(path), file) << field;
    }
  }
  for (const auto& [field, edit] : run_settings) {
    SearchSpace sp = space;
    SearchParams p = params;
    edit(sp, p);
    EXPECT_NE(p, params) << field;
    EXPECT_EQ(ropescale::mismatch(state.params, p), "") << field;
    EvolutionSearch other(sp, p);
    EXPECT_NO_THROW(other.resume(state, fitness).value()) << field;
  }
  std::remove(path.c_str());
}

// A state taken in the middle of a batch goes through the file (version 2, the pending batch
// with its answered losses) and resumes to the uninterrupted result; a boundary state is still
// written as version 1, and a pending batch in a version 1 file is refused.
TEST(SearchCheckpoint, PendingBatchRoundTripsAndResumes) {
  SearchParams p;
  p.population = 12;
  p.parents = 6;
  p.mutations = 3;
  p.crossovers = 3;
  p.iterations = 3;
  const SearchResult reference = EvolutionSearch(test_space(), p).run(loss).value();
  EvolutionSearch first(test_space(), p);
  std::vector<double> losses;
  for (const ropescale::Candidate& c : first.ask()) losses.push_back(loss(c.table));
  ASSERT_TRUE(first.tell(losses).ok());
  const std::vector<ropescale::Candidate> batch = first.ask();
  ASSERT_TRUE(first
                  .tell({batch[0].id, batch[2].id},
                        {std::numeric_limits<double>::infinity(), loss(batch[2].table)})
                  .ok());
  const SearchState mid = first.state();
  const std::string path = temp_path("ckpt.json");
  ropescale::throw_if_error(ropescale::save_search_checkpoint(path, mid));
  const nlohmann::json j = nlohmann::json::parse(read_file(path));
  EXPECT_EQ(j["version"], 2);
  ASSERT_EQ(j["pending"].size(), batch.size());
  EXPECT_TRUE(j["pending"][0]["loss"].is_null());  // +infinity
  EXPECT_FALSE(j["pending"][1].contains("loss"));  // not answered
  const SearchState back = ropescale::load_search_checkpoint(path).value();
  expect_same_state(mid, back);
  ASSERT_EQ(back.pending.size(), mid.pending.size());
  for (std::size_t i = 0; i < mid.pending.size(); ++i) {
    EXPECT_EQ(back.pending[i].id, mid.pending[i].id);
    EXPECT_EQ(back.pending[i].genome, mid.pending[i].genome);
    EXPECT_EQ(back.pending[i].answered, mid.pending[i].answered);
    if (mid.pending[i].answered) {
      EXPECT_EQ(back.pending[i].loss, mid.pending[i].loss);
    }
  }
  // The file resumes to the run whose batch got the same losses: batch[0] told +inf there too.
  EvolutionSearch second(test_space(), p);
  const SearchResult resumed = second.resume(back, loss).value();
  EvolutionSearch direct(test_space(), p);
  ASSERT_TRUE(direct.restore(mid).ok());
  const SearchResult same = direct.resume(mid, loss).value();
  EXPECT_EQ(ropescale::search_state_to_json(resumed.state),
            ropescale::search_state_to_json(same.state));
  EXPECT_EQ(resumed.state.history[batch[0].id].loss, std::numeric_limits<double>::infinity());
  EXPECT_EQ(resumed.state.history.size(), reference.state.history.size());

  // A boundary state is version 1, as before; "pending" in a version 1 file is refused.
  nlohmann::json v1 = ropescale::search_state_to_json(reference.state);
  EXPECT_EQ(v1["version"], 1);
  EXPECT_FALSE(v1.contains("pending"));
  v1["pending"] = j["pending"];
  write_file(path, v1.dump());
  expect_refused(path, "checkpoint.pending");
  nlohmann::json bad = j;
  bad["pending"][1]["id"] = 99;
  write_file(path, bad.dump());
  expect_refused(path, "pending[1].id");
  std::remove(path.c_str());
}
