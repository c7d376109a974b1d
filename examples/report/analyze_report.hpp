// `ropescale analyze` output: the per-pair table, the JSON document and the SVG plot, all drawn
// from a ropescale::MethodComparison (critical.hpp). A library (ropescale::report, with svg.hpp)
// that the tool and the tests link, so the tests check exactly what the tool prints.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <optional>
#include <ostream>
#include <string>
#include <vector>

#include "ropescale/critical.hpp"
#include "ropescale/io/hf_config.hpp"
#include "ropescale/scaling.hpp"
#include "svg.hpp"

namespace analyze {

// LLaMA3-8B LongRoPE2 long_factor, 8192 -> 131072 tokens, rope_theta 500000 (microsoft/nnscaler
// examples/longrope2/llama3_8b_longrope2_config.json @ 1585c15d). NTK-anchored below pair 33.
inline constexpr double kLlama3LongRope2[64] = {
    1,           1.097906416, 1.205398499, 1.323414747, 1.452985542, 1.595242149, 1.751426591,
    1.922902493, 2.111166985, 2.317863779, 2.544797515, 2.79394952,  3.067495105, 3.367822558,
    3.697553996, 4.059568257, 4.457026037, 4.893397485, 5.372492496, 5.898493984, 6.475994392,
    7.110035795, 7.806153921, 8.570426477, 9.40952622,  10.33077921, 11.34222878, 12.45270576,
    13.67190555, 15.01047283, 16.48009443, 18.09360142, 19.8650811,  21.81,       21.87,
    21.88,       22.23,       22.28,       22.53,       22.65,       22.73,       22.89,
    22.92,       23.18,       23.23,       23.36,       23.42,       23.47,       23.51,
    23.52,       23.75,       23.82,       23.89,       24.06,       24.13,       24.14,
    24.3,        24.53,       24.67,       24.75,       24.97,       25.49,       26.01,
    26.05};

/// The built-in default model: LLaMA3-8B (rope_theta 500000, head 128, trained on 8192 tokens).
inline ropescale::RopeSpec llama3_8b_spec() {
  ropescale::RopeSpec spec;
  spec.head_dim = 128;
  spec.rotary_dim = 128;
  spec.rope_theta = 500000.0;
  spec.original_max_position = 8192;
  return spec;
}

/// What `ropescale analyze` was asked for.
struct Options {
  std::string config;   ///< a config.json path; empty: manual or default
  bool manual = false;  ///< base / rotary_dim / train_len given explicitly
  double base = 0.0;
  std::int64_t rotary_dim = 0;
  std::int64_t train_len = 0;
  std::optional<std::int64_t> target;  ///< default: see make_report()
  std::size_t layer_kind = 0;  ///< which of a per-layer config's RoPE kinds (ModelRope::kinds)
};

/// Everything the three outputs print.
struct Report {
  ropescale::MethodComparison cmp;
  std::string model;
  bool with_detected = false;   ///< the config listed its own factor table
  std::string layer_type;       ///< the config's layer type(s) this report is for ("" if none)
  std::size_t layer_kinds = 1;  ///< how many distinct RoPEs the config has
  std::optional<std::int64_t> detected_critical_pair;
};

/// Builds the comparison the tool prints.
///
/// Model: a config.json (read with ropescale/io/hf_config.hpp; opt.layer_kind picks one of a
/// per-layer config's RoPEs), or base / rotary_dim / train_len (head_dim = rotary_dim), or
/// LLaMA3-8B. Target: `target`, else the config's own extension (YaRN: factor x its window;
/// others: max_position_embeddings), used when it exceeds the window, else 16 x the window
/// (LLaMA3-8B: 131072).
/// Tables: the closed-form methods at s = target / L_train (standard_tables), and a config's own
/// rope_scaling table as a row of its own: named "config:<method>" when a closed form of the
/// same name is listed (a `longrope` long_factor list is named "longrope2" when it is
/// NTK-anchored, else "longrope"), and for LLaMA3-8B's RoPE the
/// published LongRoPE2 table. There is no published LongRoPE (v1) table for LLaMA3-8B: LongRoPE
/// appears when a config lists one (Phi-3.5-mini). Throws ropescale::Error on bad input.
Report make_report(const Options& opt);

/// printf into a std::string.
template <typename... Args>
inline std::string fmt(const char* format, Args... args) {
  char buf[256];
  std::snprintf(buf, sizeof(buf), format, args...);
  return std::string(buf);
}

/// "none", "35", "35-62", "3, 7-9".
inline std::string pair_ranges(const std::vector<std::int64_t>& pairs) {
  if (pairs.empty()) return "none";
  std::string out;
  std::size_t k = 0;
  while (k < pairs.size()) {
    std::size_t j = k;
    while (j + 1 < pairs.size() && pairs[j + 1] == pairs[j] + 1) ++j;
    if (!out.empty()) out += ", ";
    out += std::to_string(pairs[k]);
    if (j > k) out += "-" + std::to_string(pairs[j]);
    k = j + 1;
  }
  return out;
}

/// A number in at most `width` characters: two decimals, then one, then none, then %.3g.
inline std::string compact(double v, int width) {
  for (const char* f : {"%.2f", "%.1f", "%.0f"}) {
    const std::string s = fmt(f, v);
    if (static_cast<int>(s.size()) <= width) return s;
  }
  return fmt("%.3g", v);
}

/// The name the literature uses for a method ("linear" is PI, "llama3" is Llama-3.1, ...).
inline std::string label(const std::string& method) {
  if (method.rfind("config:", 0) == 0) return "cfg:" + label(method.substr(7));
  if (method == "linear") return "PI";
  if (method == "ntk") return "NTK";
  if (method == "ntk_critical") return "NTK-crit";
  if (method == "yarn") return "YaRN";
  if (method == "llama3") return "Llama-3.1";
  if (method == "longrope") return "LongRoPE";
  if (method == "longrope2") return "LongRoPE2";
  return method;
}

/// Facts first, then one row per pair with every method's lambda_i ("!" marks an OOD pair),
/// then one line per method with its OOD pairs. 30 + 10 columns per method: 100 for the seven
/// methods a comparison can hold.
void print_table(std::ostream& os, const ropescale::MethodComparison& cmp, const std::string& model,
                 const std::optional<std::int64_t>& detected_critical_pair);

inline nlohmann::ordered_json to_json_array(const Eigen::ArrayXd& v) {
  nlohmann::ordered_json out = nlohmann::ordered_json::array();
  for (Eigen::Index i = 0; i < v.size(); ++i) out.push_back(v[i]);
  return out;
}

/// The JSON document: critical_pair, critical_dim, lower_pair, pairs (one object per pair) and
/// methods (name -> factors, ood_pairs, ...). `with_detected` adds the top-level
/// detected_critical_pair (null when the config's table has no NTK-anchored part).
nlohmann::ordered_json to_json(const ropescale::MethodComparison& cmp, const std::string& model,
                               bool with_detected,
                               const std::optional<std::int64_t>& detected_critical_pair);

/// Colours for up to eight series (colour-blind-safe Okabe-Ito order, black last).
inline const char* series_colour(std::size_t k) {
  static const char* kColours[] = {"#0072B2", "#E69F00", "#009E73", "#CC79A7",
                                   "#56B4E9", "#D55E00", "#F0E442", "#000000"};
  return kColours[k % 8];
}

/// The plot: log-scale lambda_i per pair for each method (one <g class="series"> per method,
/// data-method = its name), the line lambda = s, the critical pair and the lower search bound as
/// vertical lines, the critical region shaded, and OOD pairs ringed in red.
std::string render_svg(const ropescale::MethodComparison& cmp, const std::string& model);

}  // namespace analyze
