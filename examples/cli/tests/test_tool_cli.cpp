// The `ropescale` tool fed what a new user (or a hostile one) types: every bad argument or input
// exits 2 with one line on stderr naming the option, quickly and before any work; `--help` works
// on every subcommand. Runs the built tool (ROPESCALE_TOOL) through the shell.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <limits>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "schema_check.hpp"

namespace {

struct ToolRun {
  int rc = -1;
  std::string out, err;
  double seconds = 0.0;
};

std::string temp_path(const std::string& name) {
  const testing::TestInfo* info = testing::UnitTest::GetInstance()->current_test_info();
  return testing::TempDir() + "ropescale_tool_" + info->name() + "_" + name;
}

std::string read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream os;
  os << in.rdbuf();
  return os.str();
}

// Runs `ropescale ARGS`, killed after timeout_s (a runaway shows as rc 137).
ToolRun run(const std::string& args, int timeout_s = 60) {
  const std::string out = temp_path("stdout"), err = temp_path("stderr");
  const std::string cmd = "timeout -s KILL " + std::to_string(timeout_s) +
                          " '" ROPESCALE_TOOL "' " + args + " >'" + out + "' 2>'" + err + "'";
  const auto t0 = std::chrono::steady_clock::now();
  const int status = std::system(cmd.c_str());
  ToolRun r;
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  r.rc = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  r.out = read_text(out);
  r.err = read_text(err);
  std::remove(out.c_str());
  std::remove(err.c_str());
  return r;
}

bool contains(const std::string& s, const std::string& needle) {
  return s.find(needle) != std::string::npos;
}

// Runs of white space (help text wraps at 100 columns) as one space.
std::string one_spaced(const std::string& s) {
  std::string out;
  for (char c : s) {
    const bool space = c == ' ' || c == '\n';
    if (!space || out.empty() || out.back() != ' ') out += space ? ' ' : c;
  }
  return out;
}

// Exit 2, nothing on stdout, exactly one line on stderr that starts with "ropescale CMD: " and
// holds every needle; no doubled "ropescale: " prefix.
void expect_bad_argument(const std::string& args, const std::string& cmd,
                         const std::vector<std::string>& needles, double max_seconds = 20.0) {
  const ToolRun r = run(args);
  SCOPED_TRACE("ropescale " + args);
  EXPECT_EQ(r.rc, 2) << r.err;
  EXPECT_EQ(r.out, "");
  ASSERT_FALSE(r.err.empty());
  EXPECT_EQ(r.err.find('\n'), r.err.size() - 1) << r.err;  // one line
  EXPECT_EQ(r.err.rfind("ropescale " + cmd + ": ", 0), 0u) << r.err;
  EXPECT_FALSE(contains(r.err, "ropescale: ")) << r.err;
  for (const std::string& n : needles) EXPECT_TRUE(contains(r.err, n)) << r.err;
  EXPECT_LT(r.seconds, max_seconds);
}

const std::string kData = ROPESCALE_TEST_DATA_DIR;

// 1 (through the tool). A config with 100k nested arrays.
TEST(ToolCli, Item01DeeplyNestedConfig) {
  const std::string path = temp_path("deep.json");
  std::ofstream(path) << "{\"head_dim\": 64, \"max_position_embeddings\": 4096, \"rope_theta\": "
                      << std::string(100000, '[') << std::string(100000, ']') << "}";
  expect_bad_argument("factors --config '" + path + "'", "factors",
                      {"--config = '" + path + "'", "rope_theta = [[[[", "must be a number"});
  std::remove(path.c_str());
}

// 17. Sizes that used to run away.
TEST(ToolCli, Item17RunawaySizesAreRefusedUpFront) {
  expect_bad_argument("analyze --base 10000 --rotary-dim 2000000000 --train-len 8192", "analyze",
                      {"--rotary-dim = 2000000000", "must be in [2, 65536]"}, 5.0);
  expect_bad_argument("pack --lengths 1000000000000 --segment-length 64 --original 16", "pack",
                      {"--lengths", "2^22 segments"}, 5.0);
  expect_bad_argument("pack --lengths 1000000000000000 --segment-length 64 --original 16", "pack",
                      {"--lengths entry 1 = 1000000000000000", "must be in [1, 281474976710656]"},
                      5.0);
}

// 18. Directories where files are expected.
TEST(ToolCli, Item18DirectoriesAsInputs) {
  const std::string dir = temp_path("dir");
  std::filesystem::create_directories(dir);
  expect_bad_argument("stories260k --model '" + dir + "'", "stories260k",
                      {"--model", "is a directory"});
  // A model directory without its files.
  expect_bad_argument("extend --model '" + dir + "'", "extend", {"--model", "config.json"});
  expect_bad_argument("finetune --model '" + dir + "' --out '" + dir + "/o'", "finetune",
                      {"--model", "config.json"});
  expect_bad_argument("factors --config '" + dir + "'", "factors", {"--config", "is a directory"});
  expect_bad_argument("pack --lengths-file '" + dir + "'", "pack",
                      {"--lengths-file", "is a directory"});
  expect_bad_argument("analyze --config '" + dir + "'", "analyze", {"--config", "is a directory"});
  expect_bad_argument("extend --json '" + dir + "'", "extend", {"--json", "is a directory"});
  std::filesystem::remove_all(dir);
}

// 19. --help / -h on every subcommand, selfcheck --format json, no empty usage line.
TEST(ToolCli, Item19HelpOnEverySubcommand) {
  const ToolRun help = run("help");
  ASSERT_EQ(help.rc, 0);
  const std::vector<std::string> commands = {"analyze", "extend",    "factors",     "finetune",
                                             "pack",    "selfcheck", "stories260k", "train"};
  for (const std::string& c : commands) {
    EXPECT_TRUE(contains(help.out, "  " + c + " ")) << help.out;
    for (const char* flag : {"--help", "-h"}) {
      const ToolRun r = run(c + " " + flag);
      EXPECT_EQ(r.rc, 0) << c << " " << flag << ": " << r.err;
      EXPECT_EQ(r.out.rfind("usage: ropescale " + c + " ", 0), 0u) << r.out;
      EXPECT_EQ(r.err, "");
    }
  }
  // Every usage line in `help` says something (selfcheck's used to be only spaces).
  std::istringstream lines(help.out);
  std::string line;
  while (std::getline(lines, line)) {
    if (!line.empty()) {
      EXPECT_NE(line.find_first_not_of(' '), std::string::npos) << "empty usage in:\n" << help.out;
    }
  }
  const ToolRun sc = run("selfcheck --format json");
  ASSERT_EQ(sc.rc, 0) << sc.err;
  const nlohmann::json j = nlohmann::json::parse(sc.out);
  EXPECT_EQ(j.at("ok"), true);
  EXPECT_LT(j.at("max_error").get<double>(), 1e-5);
}

// 20. Messages name the option the user typed, once; integers are parsed strictly; output paths
// are checked before the work; analyze needs rope_theta like factors does.
TEST(ToolCli, Item20MessagesNameTheOption) {
  expect_bad_argument("factors --config '" + temp_path("missing.json") + "'", "factors",
                      {"--config = '", "no such file"});
  const std::string cfg = "--config '" + kData + "/llama31_8b.json'";
  expect_bad_argument("factors " + cfg + " --seq-len 99999999999999999999", "factors",
                      {"--seq-len = 99999999999999999999: must be in [1, 281474976710656]"});
  expect_bad_argument("factors " + cfg + " --seq-len 9223372036854775807", "factors",
                      {"--seq-len = 9223372036854775807: must be in [1, 281474976710656]"});
  expect_bad_argument("factors " + cfg + " --seq-len 12x", "factors",
                      {"--seq-len = '12x': not an integer"});
  expect_bad_argument("pack --lengths 5,,7", "pack", {"--lengths: empty entry"});
  expect_bad_argument("pack --lengths 5,7,", "pack", {"--lengths: empty entry"});
  // Output paths fail before the job (the whole extend job takes minutes).
  expect_bad_argument("extend --json /nonexistent-dir/x.json", "extend",
                      {"--json = '/nonexistent-dir/x.json'", "does not exist"}, 10.0);
  expect_bad_argument("analyze --svg /nonexistent-dir/x.svg", "analyze", {"--svg"}, 10.0);
  // A config without rope_theta: refused by analyze as by factors.
  nlohmann::json c = nlohmann::json::parse(read_text(kData + "/llama31_8b.json"));
  c.erase("rope_theta");
  const std::string path = temp_path("no_theta.json");
  std::ofstream(path) << c.dump();
  expect_bad_argument("analyze --config '" + path + "'", "analyze", {"rope_theta"});
  expect_bad_argument("factors --config '" + path + "'", "factors",
                      {"--config = '" + path + "'", "rope_theta"});
  std::remove(path.c_str());
  // Good input still works.
  const ToolRun ok = run("factors " + cfg + " --seq-len 131072 --format json");
  EXPECT_EQ(ok.rc, 0) << ok.err;
  EXPECT_EQ(nlohmann::json::parse(ok.out).at("kinds").at(0).at("rotary_dim"), 128);
  const ToolRun packed =
      run("pack --lengths 5,12,40 --segment-length 64 --original 16 --format json");
  EXPECT_EQ(packed.rc, 0) << packed.err;
  EXPECT_EQ(nlohmann::json::parse(packed.out).at("tokens"), 57);
}

// 21. `--version`, `help COMMAND` and `COMMAND --help` list every option with its default.
TEST(ToolCli, Item21VersionAndHelpWithDefaults) {
  const ToolRun v = run("--version");
  EXPECT_EQ(v.rc, 0) << v.err;
  EXPECT_EQ(v.out, "ropescale 0.1.0\n");
  const ToolRun topic = run("help factors");
  ASSERT_EQ(topic.rc, 0) << topic.err;
  EXPECT_EQ(topic.out, run("factors --help").out);
  for (const char* line : {"--config FILE ", "--seq-len N ", "(default: the original window)",
                           "--format table|json ", "(default: table)", "(default: current)"})
    EXPECT_TRUE(contains(one_spaced(topic.out), line)) << line << " in:\n" << topic.out;
  const ToolRun extend = run("help extend");
  for (const char* line :
       {"(default: 1,2,4)", "(default: 2 (--budget full: 2,4))",
        "(default: 16 (--budget full: 200))", "(default: default)", "(default: study.svg)",
        "(default: the first of --search-multiples (none: the last of "
        "--multiples))"})
    EXPECT_TRUE(contains(one_spaced(extend.out), line)) << line << " in:\n" << extend.out;
  // Every option in a command's usage line is documented in its help, for every command.
  for (const std::string c :
       {"analyze", "extend", "factors", "finetune", "pack", "selfcheck", "stories260k", "train"}) {
    const ToolRun h = run("help " + c);
    ASSERT_EQ(h.rc, 0) << c;
    const std::string usage = h.out.substr(0, h.out.find('\n'));
    const std::string options = h.out.substr(h.out.find("options:"));
    for (std::size_t at = usage.find("--"); at != std::string::npos;
         at = usage.find("--", at + 2)) {
      const std::string name = usage.substr(at, usage.find_first_of(" ]|=", at) - at);
      EXPECT_TRUE(contains(options, "\n  " + name + " ") || contains(options, "\n  " + name + "\n"))
          << c << ": " << name << " undocumented in:\n"
          << h.out;
    }
  }
  const ToolRun unknown = run("help no-such-command");
  EXPECT_EQ(unknown.rc, 2);
  EXPECT_TRUE(contains(unknown.err, "unknown command 'no-such-command'")) << unknown.err;
}

// 22. A message about a value the user did not type says where it came from, and blames the
// option that was typed.
TEST(ToolCli, Item22DefaultsAreNamedAsSuch) {
  expect_bad_argument(
      "extend --multiples 1,3", "extend",
      {"--multiples = 1,3: must include 2", "--search-multiples = 2 (the default; not given)",
       "add it or pass --search-multiples"},
      10.0);
  expect_bad_argument("extend --multiples 1,2 --search-multiples 2,4", "extend",
                      {"--search-multiples = 2,4: entry 4 must be one of --multiples = 1,2"}, 10.0);
  expect_bad_argument(
      "extend --search-multiples 2,4 --export-multiple 8 --export '" + temp_path("out") + "'",
      "extend", {"--export-multiple = 8: must be one of --search-multiples = 2,4"}, 10.0);
  expect_bad_argument("extend --multiples 1,2 --search-multiples none --export-all '" +
                          temp_path("all") + "' --export-multiple 4",
                      "extend",
                      {"--export-multiple = 4: must be >= 2 and one of --multiples = 1,2"}, 10.0);
  expect_bad_argument(
      "extend --multiples 1 --search-multiples none --export-all '" + temp_path("all") + "'",
      "extend", {"--export-multiple = 1 (the last of --multiples; not given): must be >= 2"}, 10.0);
  expect_bad_argument(
      "finetune --model '" ROPESCALE_SOURCE_DIR "/examples/data/tiny-llama-gate' --out '" +
          temp_path("ft") + "' --mode long_table",
      "finetune", {"--mode = 'long_table': must be 'mixed', 'long-table' or 'long'"}, 10.0);
}

// 23. A write to a full standard output fails the command (exit 1, one line on stderr).
TEST(ToolCli, Item23WriteErrorsExitNonzero) {
  if (!std::filesystem::exists("/dev/full")) GTEST_SKIP() << "no /dev/full";
  const std::string err = temp_path("stderr");
  for (const std::string& args :
       {"factors --config '" + kData + "/phi4_mini_instruct.json'", std::string("--version"),
        std::string("help"), std::string("analyze --format json")}) {
    const std::string cmd = "'" ROPESCALE_TOOL "' " + args + " >/dev/full 2>'" + err + "'";
    const int status = std::system(cmd.c_str());
    ASSERT_TRUE(WIFEXITED(status)) << args;
    EXPECT_EQ(WEXITSTATUS(status), 1) << args;
    const std::string e = read_text(err);
    EXPECT_TRUE(contains(e, "writing to standard output failed")) << args << ": " << e;
  }
  std::remove(err.c_str());
}

nlohmann::json load_schema() {
  return nlohmann::json::parse(read_text(ROPESCALE_SOURCE_DIR "/docs/cli-schema.json"));
}

// Checks `doc` against the schema of `command` in docs/cli-schema.json.
void expect_schema(const nlohmann::json& doc, const std::string& command) {
  static const nlohmann::json schema = load_schema();
  const std::vector<std::string> errors =
      schema_check::check(doc, schema.at("commands").at(command), schema);
  EXPECT_TRUE(errors.empty()) << command << ":\n" << schema_check::join(errors);
  EXPECT_EQ(doc.value("schema", 0), 1);
  EXPECT_EQ(doc.value("command", std::string()), command);
}

nlohmann::json run_json(const std::string& args) {
  const ToolRun r = run(args);
  EXPECT_EQ(r.rc, 0) << args << ": " << r.err;
  return nlohmann::json::parse(r.out.empty() ? "null" : r.out);
}

// 24. One JSON schema for every subcommand (docs/cli-schema.json, docs/cli.md).
TEST(ToolJson, EverySubcommandMatchesTheSchema) {
  const std::string phi4 = "--config '" + kData + "/phi4_mini_instruct.json'";
  const nlohmann::json f = run_json("factors " + phi4 + " --seq-len 131072 --format json");
  expect_schema(f, "factors");
  // Every field the table prints, and the pair layout, for a uniform model too.
  const nlohmann::json& k = f.at("kinds").at(0);
  EXPECT_EQ(k.at("rope_type"), "longrope");
  EXPECT_EQ(k.at("head_dim"), 128);
  EXPECT_EQ(k.at("rotary_dim"), 96);
  EXPECT_EQ(k.at("rope_theta"), 10000.0);
  EXPECT_EQ(k.at("original_max_position"), 4096);
  EXPECT_EQ(k.at("max_position_embeddings"), 131072);
  EXPECT_EQ(k.at("pair_layout"), "half_split");
  EXPECT_EQ(k.at("selected"), "long");
  EXPECT_EQ(k.at("attention_factor"), 1.1902380714238083);
  EXPECT_EQ(k.at("inv_freq").size(), 48u);
  EXPECT_EQ(f.at("seq_len"), 131072);

  const nlohmann::json scout =
      run_json("factors --config '" + kData + "/llama4_scout_text.json' --format json");
  expect_schema(scout, "factors");
  EXPECT_EQ(scout.at("nope_layers").size(), 12u);
  EXPECT_EQ(scout.at("kinds").at(0).at("pair_layout"), "interleaved");  // Llama 4: rope_interleave
  const nlohmann::json ds =
      run_json("factors --config '" + kData + "/deepseek_v3.json' --format json");
  expect_schema(ds, "factors");
  EXPECT_EQ(ds.at("kinds").at(0).at("pair_layout"), "interleaved");
  EXPECT_EQ(ds.at("seq_len"), nullptr);

  // Per-layer RoPE: the same `kinds` in factors and analyze.
  const std::string gemma3 = "--config '" + kData + "/gemma3_4b_it.json' --format json";
  const nlohmann::json fg = run_json("factors " + gemma3);
  const nlohmann::json ag = run_json("analyze " + gemma3);
  expect_schema(fg, "factors");
  expect_schema(ag, "analyze");
  ASSERT_EQ(fg.at("kinds").size(), 2u);
  ASSERT_EQ(ag.at("kinds").size(), 2u);
  for (std::size_t i = 0; i < 2; ++i)
    for (const char* key : {"layer_type", "layers", "rope_type", "rope_theta", "pair_layout"})
      EXPECT_EQ(fg["kinds"][i].at(key), ag["kinds"][i].at(key)) << key;
  EXPECT_EQ(fg.at("layer_types").size(), 34u);

  const nlohmann::json a = run_json("analyze --format json");
  expect_schema(a, "analyze");
  EXPECT_EQ(a.at("kinds").at(0).at("critical_pair"), 35);
  EXPECT_EQ(a.at("kinds").at(0).at("pair_layout"), nullptr);  // no config: not known
  expect_schema(run_json("pack --lengths 5,12,40 --segment-length 64 --original 16 --format json"),
                "pack");
  expect_schema(run_json("selfcheck --format json"), "selfcheck");
}

// The checker finds what is missing or mistyped (so the test above can fail).
TEST(ToolJson, TheCheckerRejectsBrokenDocuments) {
  const nlohmann::json schema = load_schema();
  nlohmann::json doc = run_json(
      "pack --lengths 5,12 --segment-length 64 --original 16 "
      "--format json");
  EXPECT_TRUE(schema_check::check(doc, schema["commands"]["pack"], schema).empty());
  nlohmann::json missing = doc;
  missing.erase("short_segments");
  EXPECT_EQ(schema_check::join(schema_check::check(missing, schema["commands"]["pack"], schema)),
            "$: missing \"short_segments\"\n");
  nlohmann::json wrong = doc;
  wrong["schema"] = 2;
  EXPECT_EQ(schema_check::check(wrong, schema["commands"]["pack"], schema).size(), 1u);
  nlohmann::json bad_kind =
      run_json("factors --config '" + kData + "/llama31_8b.json' --format json");
  bad_kind["kinds"][0]["pair_layout"] = 1;
  EXPECT_EQ(schema_check::check(bad_kind, schema["commands"]["factors"], schema).size(), 1u);
}

// ---- the numbers an `extend` JSON holds agree with each other ------------------------------

double binomial_se(double p, double n) { return std::sqrt(p * (1.0 - p) / n); }

// An exact-match rate over n rows is a count over n, and its standard error the binomial one.
void expect_rate(const nlohmann::json& acc, const nlohmann::json& se, const nlohmann::json& n,
                 const std::string& where) {
  SCOPED_TRACE(where);
  const double p = acc.get<double>(), rows = n.get<double>();
  ASSERT_GT(rows, 0.0);
  EXPECT_NEAR(p * rows, std::round(p * rows), 1e-6);
  EXPECT_NEAR(se.get<double>(), binomial_se(p, rows), 1e-12);
}

std::string verdict_of(double difference, double se) {
  return difference > 2.0 * se ? "held" : difference < -2.0 * se ? "reversed" : "not shown";
}

// Values, not formats: every standard error is its rate's, the gate's `passed` follows its
// thresholds, the methods that run the original RoPE at L_train (plain, PI, NTK, YaRN under the
// one-table rule) give the same numbers there on the same rows, the c-sweep's best c is the best
// of its selection rows, and every verdict is recomputed from the cells it names.
void expect_extend_values(const nlohmann::json& j) {
  const nlohmann::json& check = j.at("base_model_check");
  bool pass = check.at("needle_n").get<std::int64_t>() >= 80;
  for (std::size_t a = 0; a < 2; ++a)
    for (std::size_t d = 0; d < check.at("depths").size(); ++d) {
      const nlohmann::json& acc = check.at("needle_accuracy").at(a).at(d);
      expect_rate(acc, check.at("needle_se").at(a).at(d), check.at("needle_n"),
                  "base_model_check " + std::to_string(a) + "," + std::to_string(d));
      pass = pass && acc.get<double>() >= check.at("thresholds").at(a).get<double>();
    }
  EXPECT_EQ(check.at("passed").get<bool>(), pass);
  if (!j.contains("methods")) return;  // --model-check-only
  const nlohmann::json& methods = j.at("methods");
  ASSERT_EQ(j.at("lengths").at(0), j.at("train_length"));
  for (auto it = methods.begin(); it != methods.end(); ++it)
    for (std::size_t i = 0; i < j.at("lengths").size(); ++i)
      for (const std::string sfx : {"", "_random"}) {
        const nlohmann::json& acc = it.value().at("needle_accuracy" + sfx).at(i);
        if (acc.is_null()) continue;
        expect_rate(acc, it.value().at("needle_se" + sfx).at(i),
                    it.value().at("needle_n" + sfx).at(i),
                    it.key() + sfx + " @" + std::to_string(i));
      }
  for (const char* name : {"pi", "ntk", "yarn"})
    for (const char* key : {"needle_accuracy", "answer_nll", "needle_accuracy_random", "ppl"}) {
      SCOPED_TRACE(std::string(name) + " " + key + " at L_train");
      EXPECT_EQ(methods.at(name).at(key).at(0), methods.at("plain").at(key).at(0));
      EXPECT_EQ(methods.at(name).at("attention_factor").at(0).get<double>(), 1.0);
    }
  const nlohmann::json& verdicts = j.at("verdicts");
  const std::int64_t i_tcd = j.at("i_tcd").get<std::int64_t>();
  for (const nlohmann::json& sweep : j.at("c_sweep")) {
    const nlohmann::json& cells = sweep.at("cells");
    std::size_t best = 0;
    for (std::size_t c = 1; c < cells.size(); ++c) {
      const double a = cells[c]["select"]["accuracy"], b = cells[best]["select"]["accuracy"];
      if (a > b || (a == b && cells[c]["select"]["answer_nll"].get<double>() <
                                  cells[best]["select"]["answer_nll"].get<double>()))
        best = c;
    }
    EXPECT_EQ(sweep.at("best_c").get<std::size_t>(), best);
    const std::string key =
        "claim1_critical_below_i_tcd@" + std::to_string(sweep.at("multiple").get<int>()) + "x";
    SCOPED_TRACE(key);
    const nlohmann::json& v = verdicts.at(key);
    const nlohmann::json &b = cells[best]["start"],
                         &t = cells[static_cast<std::size_t>(i_tcd)]["start"];
    const double diff = b["accuracy"].get<double>() - t["accuracy"].get<double>();
    const double se = std::hypot(b["se"].get<double>(), t["se"].get<double>());
    EXPECT_NEAR(v.at("difference").get<double>(), diff, 1e-12);
    EXPECT_NEAR(v.at("se").get<double>(), se, 1e-12);
    const std::int64_t c = static_cast<std::int64_t>(best);
    EXPECT_EQ(v.at("verdict"), verdict_of(c < i_tcd ? diff : c > i_tcd ? -diff : 0.0, se));
  }
  for (auto it = verdicts.begin(); it != verdicts.end(); ++it) {
    SCOPED_TRACE(it.key());
    const nlohmann::json& v = it.value();
    if (v.contains("rows")) {
      // A comparison of fine-tuned arms: each arm's accuracies are its rows' cells at the
      // verdict's length and group, the difference the difference of their means.
      std::size_t col = 0;
      while (j["lengths"][col] != v.at("length")) ++col;
      const std::string sfx = v.at("group") == "random" ? "_random" : "";
      double mean[2] = {0.0, 0.0};
      for (std::size_t arm = 0; arm < 2; ++arm) {
        const nlohmann::json& names = v.at("rows").at(arm);
        ASSERT_FALSE(names.empty());
        for (const nlohmann::json& name : names)
          mean[arm] += methods.at(name.get<std::string>())
                           .at("needle_accuracy" + sfx)
                           .at(col)
                           .get<double>() /
                       static_cast<double>(names.size());
      }
      EXPECT_NEAR(v.at("difference").get<double>(), mean[0] - mean[1], 1e-12);
    } else if (it.key().rfind("claim2", 0) == 0) {
      // The first search multiple's column of each seed's two searched rows.
      const std::int64_t m = j.at("search").at(0).at("target_length").get<std::int64_t>() /
                             j.at("train_length").get<std::int64_t>();
      std::size_t col = 0;
      while (j["lengths"][col].get<std::int64_t>() != m * j["train_length"].get<std::int64_t>())
        ++col;
      double dn = 0.0, dp = 0.0;
      const std::size_t seeds = v.at("seeds").get<std::size_t>();
      for (std::size_t s = 0; s < seeds; ++s) {
        const double an =
            methods.at("longrope2_needle_s" + std::to_string(s))["needle_accuracy"][col];
        const double ap = methods.at("longrope2_ppl_s" + std::to_string(s))["needle_accuracy"][col];
        EXPECT_EQ(v.at("accuracy_needle_search").at(s).get<double>(), an);
        EXPECT_EQ(v.at("accuracy_ppl_search").at(s).get<double>(), ap);
        dn += an;
        dp += ap;
      }
      EXPECT_NEAR(v.at("difference").get<double>(), (dn - dp) / static_cast<double>(seeds), 1e-12);
    }
    EXPECT_EQ(
        v.at("verdict"),
        verdict_of(it.key().rfind("claim1", 0) == 0
                       ? (v["best_c"].get<std::int64_t>() < i_tcd   ? v["difference"].get<double>()
                          : v["best_c"].get<std::int64_t>() > i_tcd ? -v["difference"].get<double>()
                                                                    : 0.0)
                       : v.at("difference").get<double>(),
                   v.at("se").get<double>()));
  }
}

// A committed full-budget extend run (examples/data/FILE), checked against the schema and
// against its own cells.
nlohmann::json expect_committed_full_run(const std::string& file) {
  SCOPED_TRACE(file);
  const std::string text = read_text(std::string(ROPESCALE_SOURCE_DIR) + "/examples/data/" + file);
  EXPECT_FALSE(text.empty());
  if (text.empty()) return nlohmann::json();
  const nlohmann::json j = nlohmann::json::parse(text);
  expect_schema(j, "extend");
  EXPECT_EQ(j.at("budget"), "full");
  EXPECT_GE(j.at("needles_per_group").get<int>(), 200);
  expect_extend_values(j);
  return j;
}

// The full study the docs cite (examples/data/tiny-llama-study.json, `extend --budget full`).
TEST(ToolJson, CommittedStudyAgreesWithItsOwnCells) {
  expect_committed_full_run("tiny-llama-study.json");
}

// The paper's Table 6 on the tiny Llama (examples/data/tiny-llama-table6.json: every 4x table of
// the full study fine-tuned with the same mixed run, then compared): each cell and the verdict
// on the fine-tuned searches agree with the cells they name.
TEST(ToolJson, CommittedTable6AgreesWithItsOwnCells) {
  const nlohmann::json j = expect_committed_full_run("tiny-llama-table6.json");
  ASSERT_TRUE(j.is_object());
  ASSERT_TRUE(j.at("verdicts").contains("claim2_after_mixed_finetune@4x"));
  EXPECT_EQ(j.at("verdicts").at("claim2_after_mixed_finetune@4x").at("seeds"), 3);
}

// The JSON files extend and stories260k write (`tool_json_files` runs this after their small
// runs; ROPESCALE_TOOL_JSON_FILES="extend=PATH,stories260k=PATH").
TEST(ToolJson, WrittenFilesMatchTheSchema) {
  const char* files = std::getenv("ROPESCALE_TOOL_JSON_FILES");
  if (files == nullptr) GTEST_SKIP() << "ROPESCALE_TOOL_JSON_FILES not set";
  std::istringstream list(files);
  std::string item;
  int checked = 0;
  while (std::getline(list, item, ',')) {
    const std::size_t eq = item.find('=');
    ASSERT_NE(eq, std::string::npos) << item;
    const std::string text = read_text(item.substr(eq + 1));
    ASSERT_FALSE(text.empty()) << item;
    const nlohmann::json doc = nlohmann::json::parse(text);
    expect_schema(doc, item.substr(0, eq));
    if (item.substr(0, eq) == "extend") expect_extend_values(doc);
    ++checked;
  }
  EXPECT_GT(checked, 0);
}

// ---- hostile model directories: config.json, model.safetensors, optimizer state, tokenizer -----

// The config.json of a tiny Llama (8-dim, one layer) and its tensors as safetensors stores them.
nlohmann::json tiny_config_json() {
  return {{"architectures", {"LlamaForCausalLM"}},
          {"model_type", "llama"},
          {"vocab_size", 8},
          {"hidden_size", 8},
          {"intermediate_size", 8},
          {"num_hidden_layers", 1},
          {"num_attention_heads", 2},
          {"num_key_value_heads", 2},
          {"head_dim", 4},
          {"max_position_embeddings", 16},
          {"rope_theta", 10000.0},
          {"rms_norm_eps", 1e-5}};
}

std::vector<std::pair<std::string, std::vector<int>>> tiny_tensors() {
  std::vector<std::pair<std::string, std::vector<int>>> t = {{"model.embed_tokens.weight", {8, 8}}};
  for (const char* n : {"input_layernorm", "post_attention_layernorm"})
    t.push_back({std::string("model.layers.0.") + n + ".weight", {8}});
  for (const char* n : {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj",
                        "self_attn.o_proj", "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"})
    t.push_back({std::string("model.layers.0.") + n + ".weight", {8, 8}});
  t.push_back({"model.norm.weight", {8}});
  t.push_back({"lm_head.weight", {8, 8}});
  return t;
}

// A safetensors file of the tiny tensors, every weight `fill`, with `metadata`; `edit` may change
// the header before it is written.
void write_safetensors(const std::string& path, float fill, const nlohmann::json& metadata,
                       const std::function<void(nlohmann::json&)>& edit = nullptr) {
  nlohmann::json header = nlohmann::json::object();
  std::string data;
  for (const auto& [name, shape] : tiny_tensors()) {
    std::size_t n = 1;
    for (int d : shape) n *= static_cast<std::size_t>(d);
    const std::vector<float> values(n, fill);
    const std::size_t begin = data.size();
    data.append(reinterpret_cast<const char*>(values.data()), n * sizeof(float));
    header[name] = {{"dtype", "F32"}, {"shape", shape}, {"data_offsets", {begin, data.size()}}};
  }
  header["__metadata__"] = metadata;
  if (edit) edit(header);
  const std::string h = header.dump();
  std::string bytes(8, '\0');
  for (int i = 0; i < 8; ++i)
    bytes[static_cast<std::size_t>(i)] = static_cast<char>((h.size() >> (8 * i)) & 0xff);
  std::ofstream(path, std::ios::binary | std::ios::trunc) << bytes << h << data;
}

// A model directory of the tiny config; with optimizer state whose metadata is `position`.
std::string tiny_model_dir(const std::string& name, float fill = 0.01f,
                           const nlohmann::json& position = nullptr) {
  const std::string dir = temp_path(name);
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  std::ofstream(dir + "/config.json") << tiny_config_json().dump();
  write_safetensors(dir + "/model.safetensors", fill, {{"format", "pt"}});
  if (!position.is_null()) {
    write_safetensors(dir + "/optimizer_m.safetensors", 0.0f, position);
    write_safetensors(dir + "/optimizer_v.safetensors", 0.0f, position);
  }
  return dir;
}

// A config that asks for more than the file holds, or more than the tool allows, is refused
// before any weight is allocated (2^20 hidden size used to request 4 TiB).
TEST(ToolCli, ModelConfigSizesAreCheckedBeforeAllocating) {
  const std::string dir = tiny_model_dir("huge");
  const std::string out = dir + "/out";
  nlohmann::json c = tiny_config_json();
  c["hidden_size"] = 1 << 20;
  c["num_attention_heads"] = 256;
  c["num_key_value_heads"] = 256;
  c["head_dim"] = 4096;
  std::ofstream(dir + "/config.json", std::ios::trunc) << c.dump();
  std::ofstream(dir + "/model.safetensors", std::ios::trunc)
      << std::string("\x08\0\0\0\0\0\0\0{}      ", 16);
  expect_bad_argument("finetune --model '" + dir + "' --out '" + out + "'", "finetune",
                      {"parameters = ", "must be at most 2^30"}, 10.0);
  // Within the bounds (1e9 parameters, 4 GB of weights) but a 16-byte file: the file is refused.
  c = tiny_config_json();
  c["vocab_size"] = 500000;
  c["hidden_size"] = 1024;
  c["intermediate_size"] = 1024;
  c["num_attention_heads"] = 8;
  c["num_key_value_heads"] = 8;
  c["head_dim"] = 128;
  std::ofstream(dir + "/config.json", std::ios::trunc) << c.dump();
  expect_bad_argument("finetune --model '" + dir + "' --out '" + out + "'", "finetune",
                      {dir + "/model.safetensors: tensor model.embed_tokens.weight = absent"},
                      10.0);
  EXPECT_FALSE(std::filesystem::exists(out));
  std::filesystem::remove_all(dir);
}

TEST(ToolCli, ATensorDtypeOfTheWrongTypeExitsTwoNamingFileAndField) {
  const std::string dir = tiny_model_dir("dtype");
  for (const nlohmann::json& dtype : {nlohmann::json(5), nlohmann::json(nullptr)}) {
    write_safetensors(dir + "/model.safetensors", 0.01f, {{"format", "pt"}},
                      [&](nlohmann::json& h) { h["lm_head.weight"]["dtype"] = dtype; });
    expect_bad_argument("finetune --model '" + dir + "' --out '" + dir + "/out'", "finetune",
                        {dir + "/model.safetensors: tensor lm_head.weight dtype = " + dtype.dump(),
                         "must be \"F32\""});
  }
  std::filesystem::remove_all(dir);
}

TEST(ToolCli, NonFiniteWeightsAreRefusedAndNothingIsWritten) {
  for (float bad : {std::nanf(""), std::numeric_limits<float>::infinity()}) {
    const std::string dir = tiny_model_dir("nan", bad);
    const std::string out = dir + "/out";
    expect_bad_argument("finetune --model '" + dir + "' --out '" + out + "'", "finetune",
                        {"model.safetensors: tensor model.embed_tokens.weight element 0 = ",
                         "every weight must be finite"});
    EXPECT_FALSE(std::filesystem::exists(out));
    std::filesystem::remove_all(dir);
  }
}

TEST(ToolCli, ResumeCountsAreCheckedIntegersInRange) {
  const nlohmann::json good = {
      {"step", "5"}, {"stage", "0"}, {"stage_step", "5"}, {"adam_steps", "5"}};
  const std::string rule = "must be a decimal integer string in [0, 1000000000000]";
  struct Case {
    const char* key;
    nlohmann::json value;
    std::vector<std::string> needles;
  };
  const std::vector<Case> cases = {
      {"step", "9223372036854775807", {"metadata step = \"9223372036854775807\"", rule}},
      {"adam_steps",
       "9223372036854775807",
       {"metadata adam_steps = \"9223372036854775807\"", rule}},
      {"step", "abc", {"metadata step = \"abc\"", rule}},
      {"step", "12345678901234567890", {"metadata step = \"12345678901234567890\"", rule}},
      {"stage", "99", {"resume stage = 99", "must be in [0, 4]: the plan has 5 stages"}},
      {"stage_step", "10", {"resume stage_step = 10", "must be in [0, 9]"}}};
  for (const Case& k : cases) {
    nlohmann::json position = good;
    position[k.key] = k.value;
    const std::string dir = tiny_model_dir("resume", 0.01f, position);
    const std::string before = read_text(dir + "/model.safetensors");
    expect_bad_argument("train --out '" + dir + "' --resume --plan smoke", "train", k.needles);
    EXPECT_EQ(read_text(dir + "/model.safetensors"), before);  // nothing rewritten
    std::filesystem::remove_all(dir);
  }
}

// A llama2.c tokenizer of `vocab` pieces: <unk>, BOS, EOS, the 256 byte pieces, then filler;
// `space` adds the " " piece.
std::string llama2c_tokenizer(int vocab, bool space) {
  std::vector<std::string> pieces = {"<unk>", "\n<s>\n", "\n</s>\n"};
  for (int b = 0; b < 256; ++b) {
    char p[8];
    std::snprintf(p, sizeof p, "<0x%02X>", b);
    pieces.push_back(p);
  }
  if (space) pieces.push_back(" ");
  while (static_cast<int>(pieces.size()) < vocab)
    pieces.push_back("w" + std::to_string(pieces.size()));
  std::string bytes;
  auto put = [&](const void* p, std::size_t n) { bytes.append(static_cast<const char*>(p), n); };
  const std::int32_t max_len = 8;
  put(&max_len, 4);
  for (const std::string& p : pieces) {
    const float score = -1.0f;
    const auto len = static_cast<std::int32_t>(p.size());
    put(&score, 4);
    put(&len, 4);
    put(p.data(), p.size());
  }
  return bytes;
}

TEST(ToolCli, ATokenizerWithoutTheSpacePieceIsRefusedOnLoad) {
  const std::string path = temp_path("tok_no_space.bin");
  std::ofstream(path, std::ios::binary) << llama2c_tokenizer(512, false);
  expect_bad_argument("stories260k --tokenizer '" + path + "'", "stories260k",
                      {"--tokenizer", "no \" \" piece"}, 30.0);
  std::remove(path.c_str());
}

}  // namespace
