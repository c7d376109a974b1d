// ropescale: the command-line tool. `ropescale` alone runs the default job; `ropescale help`
// lists the subcommands; `ropescale COMMAND --help` shows one.
//
// Exit codes: 0 success, 2 a bad argument or input (one line on stderr naming the option),
// 1 anything else (one line on stderr).
#include <exception>
#include <iostream>
#include <new>
#include <string>
#include <vector>

#include "cli.hpp"
#include "ropescale/error.hpp"

namespace {

// The job `ropescale` runs with no arguments.
constexpr const char* kDefaultCommand = "extend";

void print_help(std::ostream& os) {
  os << "usage: ropescale [COMMAND] [OPTIONS]\n"
     << "  (no command runs '" << kDefaultCommand << "'; 'ropescale COMMAND --help' shows one)\n\n"
     << "commands:\n";
  for (const auto& entry : cli::registry()) {
    os << "  " << entry.first
       << std::string(entry.first.size() < 10 ? 10 - entry.first.size() : 1, ' ')
       << entry.second.summary << "\n";
    os << "            " << entry.second.usage << "\n";
  }
}

// One line: a message from the library loses its "ropescale: " prefix (main adds the command)
// and any line breaks.
std::string one_line(std::string m) {
  const std::string prefix = "ropescale: ";
  if (m.rfind(prefix, 0) == 0) m = m.substr(prefix.size());
  for (char& c : m)
    if (c == '\n' || c == '\r') c = ' ';
  return m;
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  std::string name = kDefaultCommand;
  if (!args.empty() && args.front().rfind("--", 0) != 0) {
    name = args.front();
    args.erase(args.begin());
  } else if (!args.empty() && (args.front() == "--help" || args.front() == "-h")) {
    name = "help";
    args.erase(args.begin());
  }
  if (name == "help" || name == "-h") {
    print_help(std::cout);
    return 0;
  }
  auto it = cli::registry().find(name);
  if (it == cli::registry().end()) {
    std::cerr << "ropescale: unknown command '" << cli::Args::clip(name)
              << "' (try 'ropescale help')\n";
    return 2;
  }
  for (const std::string& a : args)
    if (a == "--help" || a == "-h") {
      std::cout << "usage: ropescale " << name << " " << it->second.usage << "\n  "
                << it->second.summary << "\n";
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
    std::cerr << "ropescale " << name << ": " << one_line(e.what()) << "\n";
    return 2;
  } catch (const std::bad_alloc&) {
    std::cerr << "ropescale " << name << ": out of memory\n";
    return 1;
  } catch (const std::exception& e) {
    std::cerr << "ropescale " << name << ": error: " << one_line(e.what()) << "\n";
    return 1;
  }
}
