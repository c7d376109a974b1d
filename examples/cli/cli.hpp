// The ropescale tool's subcommand registry and argument helpers.
//
// Each subcommand lives in its own cmd_<name>.cpp and registers itself with a static
// `const bool registered = register_command({...});` that lists its options (name, value, default,
// help): the same list parses the arguments and prints `COMMAND --help`. Conventions every
// subcommand follows: a readable table on stdout by default, one JSON object with `--format json`
// (json_document(): `"schema": kJsonSchema` and `"command"` first, field names shared by every
// subcommand, docs/cli.md), `--help` / `-h`, and exit code 2 with a one-line message on stderr
// naming the option for bad arguments (throw UsageError); a message about a value the user did not
// type says where it came from (Args::shown). Every input file and output path is checked before
// any work starts.
#pragma once

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <limits>
#include <map>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string>
#include <system_error>
#include <vector>

#if defined(__unix__) || defined(__APPLE__)
#include <unistd.h>
#endif

#include "ropescale/error.hpp"
#include "ropescale/io/hf_config.hpp"

namespace cli {

/// Thrown for bad command-line arguments: main prints the message and exits with 2.
struct UsageError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

/// Thrown for an input file whose contents are refused: main prints it and exits with 2.
struct InputError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

/// Throws InputError naming the option `key` and its file when `status` (from reading that file)
/// is not ok. The status's "in PATH" context is dropped: the message names the option and the file
/// once.
inline void check_input(const std::string& key, const std::string& path,
                        const ropescale::Status& status) {
  if (status.ok()) return;
  std::string where = status.context();
  const std::string in_path = "in " + path;
  if (where == in_path)
    where.clear();
  else if (where.size() > in_path.size() + 2 &&
           where.compare(where.size() - in_path.size() - 2, std::string::npos, ", " + in_path) == 0)
    where.resize(where.size() - in_path.size() - 2);
  const ropescale::Status shown =
      ropescale::Status(status.code(), status.argument(), status.value(), status.rule())
          .with_context(where);
  throw InputError(key + " = '" + path + "': " + shown.reason());
}

/// Version of the JSON every subcommand prints (`"schema"`); raised when a field changes meaning
/// or disappears (docs/cli.md, docs/cli-schema.json).
inline constexpr int kJsonSchema = 1;

/// The start of every JSON document the tool prints or writes.
inline nlohmann::json json_document(const std::string& command) {
  nlohmann::json j = nlohmann::json::object();
  j["schema"] = kJsonSchema;
  j["command"] = command;
  return j;
}

/// A JSON document of `command` holding `fields` (an object) after the schema and the command.
inline nlohmann::json json_document(const std::string& command, const nlohmann::json& fields) {
  nlohmann::json j = json_document(command);
  for (const auto& item : fields.items()) j[item.key()] = item.value();
  return j;
}

/// Names of the pair layouts in JSON and tables (ropescale::to_string(PairLayout) spells them).
inline const char* pair_layout_name(bool interleaved) {
  return interleaved ? "interleaved" : "half_split";
}

/// The fields of one kind for a plain RoPE known by its spec alone (`analyze --base`, a llama2.c
/// checkpoint): rope_type "default", no M-RoPE; kinds_json() fills the rest from a config.
inline nlohmann::json spec_kind_json(const ropescale::RopeSpec& spec,
                                     const nlohmann::json& pair_layout,
                                     const nlohmann::json& max_position_embeddings,
                                     const std::vector<std::int64_t>& layers) {
  return {{"layer_type", ""},
          {"layers", layers},
          {"rope_type", "default"},
          {"rope_theta", spec.rope_theta},
          {"head_dim", spec.head_dim},
          {"rotary_dim", spec.rotary_dim},
          {"freq_dim", spec.frequency_dim()},
          {"pair_layout", pair_layout},
          {"original_max_position", spec.original_max_position},
          {"max_position_embeddings", max_position_embeddings},
          {"mrope_section", nlohmann::json::array()},
          {"mrope_interleaved", false},
          {"mrope_layout", nullptr}};
}

/// The RoPE fields every subcommand that reads a config prints, for each distinct RoPE ("kind")
/// of the model: which layers use it and its spec. `kinds` has one entry for a model whose layers
/// share one RoPE (layer_type "", layers every layer or empty when the config gives no count).
inline nlohmann::json kinds_json(const ropescale::ModelRope& model) {
  nlohmann::json kinds = nlohmann::json::array();
  for (std::size_t k = 0; k < model.kinds.size(); ++k) {
    const ropescale::RopeConfig& cfg = model.kinds[k].config;
    std::vector<std::int64_t> layers;
    for (std::size_t l = 0; l < model.layer_kind.size(); ++l)
      if (model.layer_kind[l] == static_cast<std::int64_t>(k))
        layers.push_back(static_cast<std::int64_t>(l));
    nlohmann::json j = spec_kind_json(cfg.spec, pair_layout_name(cfg.interleaved_pairs),
                                      cfg.max_position_embeddings, layers);
    j["layer_type"] = model.uniform() ? std::string() : model.kinds[k].layer_type;
    j["rope_type"] = ropescale::to_string(cfg.rope_type);
    j["mrope_section"] = cfg.mrope_section;
    j["mrope_interleaved"] = cfg.mrope_interleaved;
    j["mrope_layout"] = cfg.is_mrope() ? nlohmann::json(ropescale::to_string(cfg.mrope_layout))
                                       : nlohmann::json(nullptr);
    kinds.push_back(std::move(j));
  }
  return kinds;
}

/// One command-line option: `--name VALUE` (or a flag when `value` is empty), its default as
/// shown to the user (empty: none) and one line of help.
struct Option {
  std::string name;
  std::string value;
  std::string fallback;
  std::string help;
};

/// `--format table|json`, shared by the subcommands that print JSON.
inline Option format_option() {
  return {"--format", "table|json", "table",
          "a table for reading or one JSON object (docs/cli.md)"};
}

struct Command {
  std::string name;
  std::string summary;  ///< one line for `ropescale help`
  std::string usage;    ///< the synopsis line(s)
  std::function<int(const std::vector<std::string>& args)> run;
  std::vector<Option> options;  ///< every option, in the order `--help` shows them
};

/// `ropescale COMMAND --help`: the synopsis, the summary and every option with its default.
inline std::string command_help(const Command& c) {
  std::string out = "usage: ropescale " + c.name + " " + c.usage + "\n  " + c.summary + "\n";
  if (c.options.empty()) return out;
  out += "\noptions:\n";
  std::size_t width = 10;
  for (const Option& o : c.options)
    width = std::max(width, o.name.size() + (o.value.empty() ? 0 : o.value.size() + 1));
  const std::size_t indent = width + 4, columns = 100;
  for (const Option& o : c.options) {
    const std::string head = o.name + (o.value.empty() ? "" : " " + o.value);
    std::string line = "  " + head + std::string(width + 2 - head.size(), ' ');
    const std::string text = o.help + (o.fallback.empty() ? "" : " (default: " + o.fallback + ")");
    // Words wrapped at `columns`, continuation lines under the help column.
    std::size_t pos = 0, used = line.size();
    while (pos < text.size()) {
      const std::size_t space = text.find(' ', pos);
      const std::string word = text.substr(pos, space == std::string::npos ? space : space - pos);
      if (used > indent && used + 1 + word.size() > columns) {
        line += "\n" + std::string(indent, ' ');
        used = indent;
      } else if (used > indent) {
        line += " ";
        ++used;
      }
      line += word;
      used += word.size();
      pos = space == std::string::npos ? text.size() : space + 1;
    }
    out += line + "\n";
  }
  out += "  -h, --help" + std::string(width - 8, ' ') + "this help\n";
  return out;
}

inline std::map<std::string, Command>& registry() {
  static std::map<std::string, Command> commands;
  return commands;
}

inline bool register_command(Command command) {
  registry()[command.name] = std::move(command);
  return true;
}

inline void check_input_file(const std::string& key, const std::string& path);
inline void check_output_file(const std::string& key, const std::string& path);

/// Parses "--key value" and "--flag" arguments. Unknown keys are rejected.
class Args {
 public:
  /// The options of a Command: those with a `value` take one, the others are flags.
  Args(const std::vector<std::string>& args, const std::vector<Option>& options)
      : Args(args, names(options, true), names(options, false)) {}

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
  /// `key = value` for a message, saying where a value the user did not type came from: its
  /// default, or `origin` (e.g. "the first of --search-multiples").
  std::string shown(const std::string& key, const std::string& value,
                    const std::string& origin = "the default") const {
    return key + " = " + clip(value) + (has(key) ? "" : " (" + origin + "; not given)");
  }
  std::string get(const std::string& key, const std::string& fallback = "") const {
    auto it = values_.find(key);
    return it == values_.end() ? fallback : it->second;
  }
  /// The integer value of key (fallback when absent), which must lie in [lo, hi].
  std::int64_t get_int(const std::string& key, std::int64_t fallback,
                       std::int64_t lo = std::numeric_limits<std::int64_t>::min(),
                       std::int64_t hi = std::numeric_limits<std::int64_t>::max()) const {
    if (!has(key)) return fallback;
    return parse_int(key, get(key), lo, hi);
  }
  /// The finite numeric value of key (fallback when absent), which must lie in [lo, hi].
  double get_double(const std::string& key, double fallback,
                    double lo = -std::numeric_limits<double>::max(),
                    double hi = std::numeric_limits<double>::max()) const {
    if (!has(key)) return fallback;
    const std::string v = get(key);
    errno = 0;
    char* end = nullptr;
    const double x = v.empty() ? 0.0 : std::strtod(v.c_str(), &end);
    if (v.empty() || end != v.c_str() + v.size() || std::isspace(static_cast<unsigned char>(v[0])))
      throw UsageError(key + " = '" + clip(v) + "': not a number");
    if (!std::isfinite(x) || errno == ERANGE)
      throw UsageError(key + " = '" + clip(v) + "': must be a finite number");
    if (x < lo || x > hi)
      throw UsageError(key + " = " + clip(v) + ": must be in [" + num(lo) + ", " + num(hi) + "]");
    return x;
  }
  /// An input file given with `key`: it must exist and be a readable regular file.
  std::string input_file(const std::string& key, const std::string& fallback = "") const {
    const std::string path = get(key, fallback);
    check_input_file(key, path);
    return path;
  }
  /// An output file given with `key` (empty when absent): checked before any work starts.
  std::string output_file(const std::string& key) const {
    if (!has(key)) return "";
    const std::string path = get(key);
    check_output_file(key, path);
    return path;
  }

  /// --format: "table" (default) or "json".
  bool json_format() const {
    const std::string f = get("--format", "table");
    if (f != "table" && f != "json")
      throw UsageError("--format = '" + clip(f) + "': must be 'table' or 'json'");
    return f == "json";
  }

  static std::vector<std::string> names(const std::vector<Option>& options, bool with_value) {
    std::vector<std::string> out;
    for (const Option& o : options)
      if (o.value.empty() != with_value) out.push_back(o.name);
    return out;
  }

  /// A value echoed in a message, cut to 80 characters.
  static std::string clip(const std::string& v) {
    return v.size() <= 80 ? v : v.substr(0, 80) + "...(" + std::to_string(v.size()) + " chars)";
  }
  static std::string num(double x) {
    std::string s = std::to_string(x);
    if (s.find('.') != std::string::npos) {
      while (!s.empty() && s.back() == '0') s.pop_back();
      if (!s.empty() && s.back() == '.') s.pop_back();
    }
    return s;
  }
  /// Strict integer parsing: the whole text, no overflow, in [lo, hi]; messages name `key`.
  static std::int64_t parse_int(const std::string& key, const std::string& v, std::int64_t lo,
                                std::int64_t hi) {
    errno = 0;
    char* end = nullptr;
    const long long x = v.empty() ? 0 : std::strtoll(v.c_str(), &end, 10);
    if (v.empty() || end != v.c_str() + v.size() || std::isspace(static_cast<unsigned char>(v[0])))
      throw UsageError(key + " = '" + clip(v) + "': not an integer");
    if (errno == ERANGE || x < lo || x > hi)
      throw UsageError(key + " = " + clip(v) + ": must be in [" + std::to_string(lo) + ", " +
                       std::to_string(hi) + "]");
    return static_cast<std::int64_t>(x);
  }
  /// A comma list ("a,b,c"); an empty entry ("a,,b", a trailing comma) is an error naming `key`.
  static std::vector<std::string> split_list(const std::string& key, const std::string& v) {
    std::vector<std::string> out;
    std::size_t pos = 0;
    while (true) {
      const std::size_t comma = v.find(',', pos);
      out.push_back(v.substr(pos, comma == std::string::npos ? std::string::npos : comma - pos));
      if (out.back().empty())
        throw UsageError(key + " = '" + clip(v) + "': empty entry " + std::to_string(out.size()));
      if (comma == std::string::npos) return out;
      pos = comma + 1;
    }
  }
  /// A comma list of strictly increasing integers, each in [lo, hi] (parse_int's rules).
  static std::vector<std::int64_t> parse_increasing_ints(const std::string& key,
                                                         const std::string& v, std::int64_t lo,
                                                         std::int64_t hi) {
    std::vector<std::int64_t> out;
    for (const std::string& item : split_list(key, v)) {
      out.push_back(parse_int(key + " entry " + std::to_string(out.size() + 1), item, lo, hi));
      if (out.size() > 1 && out.back() <= out[out.size() - 2])
        throw UsageError(key + " = '" + clip(v) + "': must increase");
    }
    return out;
  }

 private:
  std::map<std::string, std::string> values_;
};

/// Throws UsageError naming `key` unless `path` is an existing, readable regular file.
inline void check_input_file(const std::string& key, const std::string& path) {
  namespace fs = std::filesystem;
  std::error_code ec;
  const std::string shown = key + " = '" + Args::clip(path) + "'";
  if (path.empty()) throw UsageError(key + " needs a file");
  const fs::file_status st = fs::status(path, ec);
  if (ec || !fs::exists(st)) throw UsageError(shown + ": no such file");
  if (fs::is_directory(st)) throw UsageError(shown + ": is a directory, not a file");
#if defined(__unix__) || defined(__APPLE__)
  if (::access(path.c_str(), R_OK) != 0) throw UsageError(shown + ": cannot be read");
#endif
}

/// Throws UsageError naming `key` unless `path` can be written: an existing writable file, or a
/// new file in an existing writable directory. Nothing is created.
inline void check_output_file(const std::string& key, const std::string& path) {
  namespace fs = std::filesystem;
  std::error_code ec;
  const std::string shown = key + " = '" + Args::clip(path) + "'";
  if (path.empty()) throw UsageError(key + " needs a file");
  const fs::file_status st = fs::status(path, ec);
  if (fs::exists(st)) {
    if (fs::is_directory(st)) throw UsageError(shown + ": is a directory, not a file");
#if defined(__unix__) || defined(__APPLE__)
    if (::access(path.c_str(), W_OK) != 0) throw UsageError(shown + ": cannot be written");
#endif
    return;
  }
  fs::path dir = fs::path(path).parent_path();
  if (dir.empty()) dir = ".";
  if (!fs::is_directory(dir, ec))
    throw UsageError(shown + ": directory '" + Args::clip(dir.string()) + "' does not exist");
#if defined(__unix__) || defined(__APPLE__)
  if (::access(dir.c_str(), W_OK) != 0)
    throw UsageError(shown + ": directory '" + Args::clip(dir.string()) + "' is not writable");
#endif
}

/// A model directory to read (config.json and model.safetensors readable).
inline void check_model_dir(const std::string& key, const std::string& dir) {
  check_input_file(key, dir + "/config.json");
  check_input_file(key, dir + "/model.safetensors");
}

/// A directory to write: an existing one whose config.json may be written, or a new one in a
/// writable parent.
inline void check_output_dir(const std::string& key, const std::string& dir) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (fs::exists(dir, ec)) {
    if (!fs::is_directory(dir, ec))
      throw UsageError(key + " = '" + Args::clip(dir) + "': exists and is not a directory");
    check_output_file(key, dir + "/config.json");
  } else {
    check_output_file(key, dir);
  }
}

}  // namespace cli
