// The ropescale tool's subcommand registry and argument helpers.
//
// Each subcommand lives in its own cmd_<name>.cpp and registers itself with a static
// `const bool registered = register_command({...});`. Conventions every subcommand follows:
// a readable table on stdout by default, one JSON object with `--format json`, and exit code 2
// with a one-line message on stderr for bad arguments (throw UsageError).
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <stdexcept>
#include <string>
#include <vector>

namespace cli {

/// Thrown for bad command-line arguments: main prints the message and exits with 2.
struct UsageError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

struct Command {
  std::string name;
  std::string summary;  ///< one line for `ropescale help`
  std::string usage;    ///< the synopsis line(s)
  std::function<int(const std::vector<std::string>& args)> run;
};

inline std::map<std::string, Command>& registry() {
  static std::map<std::string, Command> commands;
  return commands;
}

inline bool register_command(Command command) {
  registry()[command.name] = std::move(command);
  return true;
}

/// Parses "--key value" and "--flag" arguments. Unknown keys are rejected.
class Args {
 public:
  /// `with_value`: options that take a value; `flags`: options that do not.
  Args(const std::vector<std::string>& args, const std::vector<std::string>& with_value,
       const std::vector<std::string>& flags = {}) {
    for (std::size_t i = 0; i < args.size(); ++i) {
      const std::string& a = args[i];
      bool known = false;
      for (const auto& k : with_value) {
        if (a == k) {
          if (i + 1 >= args.size()) throw UsageError(a + " needs a value");
          values_[k] = args[++i];
          known = true;
          break;
        }
        if (a.rfind(k + "=", 0) == 0) {
          values_[k] = a.substr(k.size() + 1);
          known = true;
          break;
        }
      }
      if (known) continue;
      for (const auto& f : flags) {
        if (a == f) {
          values_[f] = "1";
          known = true;
          break;
        }
      }
      if (!known) throw UsageError("unknown argument '" + a + "'");
    }
  }

  bool has(const std::string& key) const { return values_.count(key) != 0; }
  std::string get(const std::string& key, const std::string& fallback = "") const {
    auto it = values_.find(key);
    return it == values_.end() ? fallback : it->second;
  }
  std::int64_t get_int(const std::string& key, std::int64_t fallback) const {
    if (!has(key)) return fallback;
    const std::string v = get(key);
    try {
      std::size_t used = 0;
      const long long x = std::stoll(v, &used);
      if (used != v.size()) throw std::invalid_argument(v);
      return x;
    } catch (const std::exception&) {
      throw UsageError(key + " = '" + v + "': not an integer");
    }
  }
  double get_double(const std::string& key, double fallback) const {
    if (!has(key)) return fallback;
    const std::string v = get(key);
    try {
      std::size_t used = 0;
      const double x = std::stod(v, &used);
      if (used != v.size()) throw std::invalid_argument(v);
      return x;
    } catch (const std::exception&) {
      throw UsageError(key + " = '" + v + "': not a number");
    }
  }
  /// --format: "table" (default) or "json".
  bool json_format() const {
    const std::string f = get("--format", "table");
    if (f != "table" && f != "json")
      throw UsageError("--format = '" + f + "': must be 'table' or 'json'");
    return f == "json";
  }

 private:
  std::map<std::string, std::string> values_;
};

}  // namespace cli
