// ropescale: the command-line tool. `ropescale` alone runs the default job; `ropescale help`
// lists the subcommands.
#include <exception>
#include <iostream>
#include <string>
#include <vector>

#include "cli.hpp"
#include "ropescale/error.hpp"

namespace {

// The job `ropescale` runs with no arguments.
constexpr const char* kDefaultCommand = "extend";

void print_help(std::ostream& os) {
  os << "usage: ropescale [COMMAND] [OPTIONS]\n"
     << "  (no command runs '" << kDefaultCommand << "')\n\ncommands:\n";
  for (const auto& entry : cli::registry()) {
    os << "  " << entry.first
       << std::string(entry.first.size() < 10 ? 10 - entry.first.size() : 1, ' ')
       << entry.second.summary << "\n";
    os << "            " << entry.second.usage << "\n";
  }
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  std::string name = kDefaultCommand;
  if (!args.empty()) {
    name = args.front();
    args.erase(args.begin());
  }
  if (name == "help" || name == "--help" || name == "-h") {
    print_help(std::cout);
    return 0;
  }
  auto it = cli::registry().find(name);
  if (it == cli::registry().end()) {
    std::cerr << "ropescale: unknown command '" << name << "' (try 'ropescale help')\n";
    return 2;
  }
  try {
    return it->second.run(args);
  } catch (const cli::UsageError& e) {
    std::cerr << "ropescale " << name << ": " << e.what() << "\nusage: ropescale " << name << " "
              << it->second.usage << "\n";
    return 2;
  } catch (const ropescale::Error& e) {
    std::cerr << "ropescale " << name << ": " << e.what() << "\n";
    return 2;
  } catch (const std::exception& e) {
    std::cerr << "ropescale " << name << ": error: " << e.what() << "\n";
    return 1;
  }
}
