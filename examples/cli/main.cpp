// ropescale: the command-line tool. `ropescale` alone runs the default job; `ropescale help`
// lists the subcommands; `ropescale help COMMAND` or `ropescale COMMAND --help` shows one with
// every option and its default; `ropescale --version` prints the library's version.
//
// Exit codes: 0 success, 2 a bad argument or input (one line on stderr naming the option),
// 1 anything else (one line on stderr), a failed write to standard output included.
#include <cstdio>
#include <exception>
#include <iostream>
#include <new>
#include <string>
#include <vector>

#include "cli.hpp"
#include "ropescale/config.hpp"
#include "ropescale/error.hpp"

namespace {

// The job `ropescale` runs with no arguments.
constexpr const char* kDefaultCommand = "extend";

void print_help(std::ostream& os) {
  os << "usage: ropescale [COMMAND] [OPTIONS]\n"
     << "  (no command runs '" << kDefaultCommand
     << "'; 'ropescale help COMMAND' shows one with its options)\n"
     << "  ropescale --version   the version\n\n"
     << "commands:\n";
  for (const auto& entry : cli::registry()) {
    os << "  " << entry.first
       << std::string(entry.first.size() < 13 ? 13 - entry.first.size() : 1, ' ')
       << entry.second.summary << "\n";
  }
}

// One line: the message without line breaks.
std::string one_line(std::string m) {
  for (char& c : m)
    if (c == '\n' || c == '\r') c = ' ';
  return m;
}

// Standard output must have taken everything (a full disk, a closed pipe): else exit 1.
int finish(const std::string& name, int rc) {
  std::cout.flush();
  const bool failed = !std::cout || std::fflush(stdout) != 0 || std::ferror(stdout) != 0;
  if (!failed) return rc;
  std::cerr << "ropescale" << (name.empty() ? "" : " " + name)
            << ": error: writing to standard output failed\n";
  return 1;
}

int help(const std::vector<std::string>& args) {
  if (args.empty()) {
    print_help(std::cout);
    return 0;
  }
  const auto topic = cli::registry().find(args.front());
  if (args.size() > 1 || topic == cli::registry().end()) {
    std::cerr << "ropescale help: unknown command '" << cli::Args::clip(args.back())
              << "' (try 'ropescale help')\n";
    return 2;
  }
  std::cout << cli::command_help(topic->second);
  return 0;
}

int run_command(const std::string& name, const std::vector<std::string>& args) {
  if (name == "help") return help(args);
  auto it = cli::registry().find(name);
  if (it == cli::registry().end()) {
    std::cerr << "ropescale: unknown command '" << cli::Args::clip(name)
              << "' (try 'ropescale help')\n";
    return 2;
  }
  for (const std::string& a : args)
    if (a == "--help" || a == "-h") {
      std::cout << cli::command_help(it->second);
      return 0;
    }
  try {
    return it->second.run(args);
  } catch (const cli::UsageError& e) {
    std::cerr << "ropescale " << name << ": " << one_line(e.what()) << " (see 'ropescale " << name
              << " --help')\n";
    return 2;
  } catch (const cli::InputError& e) {
    std::cerr << "ropescale " << name << ": " << one_line(e.what()) << "\n";
    return 2;
  } catch (const ropescale::Error& e) {
    // The library's fields, without its "ropescale: " prefix (the line names the command).
    std::cerr << "ropescale " << name << ": " << one_line(e.status().reason()) << "\n";
    return 2;
  } catch (const std::bad_alloc&) {
    std::cerr << "ropescale " << name << ": out of memory\n";
    return 1;
  } catch (const std::exception& e) {
    std::cerr << "ropescale " << name << ": error: " << one_line(e.what()) << "\n";
    return 1;
  }
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  if (!args.empty() && args.front() == "--version") {
    if (args.size() > 1) {
      std::cerr << "ropescale: --version takes no arguments\n";
      return 2;
    }
    std::cout << "ropescale " << ropescale::version() << "\n";
    return finish("", 0);
  }
  std::string name = kDefaultCommand;
  if (!args.empty() && args.front().rfind("--", 0) != 0) {
    name = args.front();
    args.erase(args.begin());
  } else if (!args.empty() && (args.front() == "--help" || args.front() == "-h")) {
    name = "help";
    args.erase(args.begin());
  }
  if (name == "-h") name = "help";
  return finish(name, run_command(name, args));
}
