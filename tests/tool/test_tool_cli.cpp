// The `ropescale` tool fed what a new user (or a hostile one) types: every bad argument or input
// exits 2 with one line on stderr naming the option, quickly and before any work; `--help` works
// on every subcommand. Runs the built tool (ROPESCALE_TOOL) through the shell.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

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
  EXPECT_EQ(nlohmann::json::parse(ok.out).at("rotary_dim"), 128);
  const ToolRun packed =
      run("pack --lengths 5,12,40 --segment-length 64 --original 16 --format json");
  EXPECT_EQ(packed.rc, 0) << packed.err;
  EXPECT_EQ(nlohmann::json::parse(packed.out).at("tokens"), 57);
}

}  // namespace
