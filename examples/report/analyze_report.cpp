// `ropescale analyze` output (examples/report/analyze_report.hpp): building the comparison, the
// per-pair table, the JSON document and the SVG plot.
#include "analyze_report.hpp"

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

Report make_report(const Options& opt) {
  Report r;
  ropescale::RopeSpec spec = llama3_8b_spec();
  r.model = "LLaMA3-8B (built-in default)";
  std::int64_t window_max = 0;
  std::vector<ropescale::FactorTable> own;
  std::optional<ropescale::RopeConfig> cfg;
  if (!opt.config.empty()) {
    // No default rope_theta: a config without one is refused, as `factors` refuses it.
    const ropescale::ModelRope model = ropescale::load_hf_model(opt.config).value();
    if (opt.layer_kind >= model.kinds.size())
      ropescale::throw_if_error(ropescale::make_status(
          ropescale::ErrorCode::kOutOfRange, "layer_kind",
          static_cast<std::int64_t>(opt.layer_kind),
          "must be < the config's RoPE kinds (" + std::to_string(model.kinds.size()) + ")"));
    cfg = model.kinds[opt.layer_kind].config;
    r.layer_kinds = model.kinds.size();
    if (!model.uniform() || model.kinds[0].layer_type != "all")
      r.layer_type = model.kinds[opt.layer_kind].layer_type;
    spec = cfg->spec;
    window_max = cfg->max_position_embeddings;
    // The config's own extension: YaRN's factor x its window (Qwen2.5 ships max_position_embeddings
    // equal to that window); LongRoPE and Llama-3.1 name it in max_position_embeddings.
    if (cfg->rope_type == ropescale::RopeType::kYarn)
      window_max = static_cast<std::int64_t>(
          std::llround(cfg->yarn.factor * static_cast<double>(spec.original_max_position)));
    const auto slash = opt.config.find_last_of("/\\");
    r.model = slash == std::string::npos ? opt.config : opt.config.substr(slash + 1);
    if (!r.layer_type.empty()) r.model += " [" + r.layer_type + " layers]";
  } else if (opt.manual) {
    spec.rope_theta = opt.base;
    spec.rotary_dim = opt.rotary_dim;
    spec.head_dim = opt.rotary_dim > 0 ? opt.rotary_dim : 1;
    spec.original_max_position = opt.train_len;
    r.model = "custom";
  }
  ropescale::throw_if_error(ropescale::critical_dims(spec).status());
  std::int64_t target =
      window_max > spec.original_max_position ? window_max : 16 * spec.original_max_position;
  if (opt.target) target = *opt.target;
  if (target < spec.original_max_position)
    ropescale::throw_if_error(
        ropescale::make_status(ropescale::ErrorCode::kInvalidArgument, "--target", target,
                               "must be >= the training length L_train (" +
                                   std::to_string(spec.original_max_position) + ")"));

  if (cfg && cfg->rope_type != ropescale::RopeType::kDefault) {
    if (cfg->rope_type == ropescale::RopeType::kLongRope) {
      const ropescale::FactorTable lf = cfg->table_for(spec.original_max_position + 1).value();
      r.with_detected = true;
      const ropescale::LongRope2Detection det = ropescale::detect_longrope2(lf.factors()).value();
      if (det.found) r.detected_critical_pair = det.critical_pair;
      own.emplace_back(lf.factors(), lf.attention_factor(),
                       r.detected_critical_pair ? "longrope2" : "longrope");
    } else {
      own.push_back(cfg->table_for(target).value());
    }
  }
  const std::size_t config_tables = own.size();
  const ropescale::RopeSpec llama3 = llama3_8b_spec();
  const bool has_v2 = !own.empty() && own.back().method() == "longrope2";
  if (!has_v2 && spec.rotary_dim == llama3.rotary_dim && spec.rope_theta == llama3.rope_theta &&
      spec.original_max_position == llama3.original_max_position) {
    const Eigen::ArrayXd f = Eigen::Map<const Eigen::ArrayXd>(kLlama3LongRope2, 64);
    own.emplace_back(f, ropescale::longrope_default_attention_factor(16.0, 8192), "longrope2");
  }

  std::vector<ropescale::FactorTable> tables = ropescale::standard_tables(spec, target).value();
  for (std::size_t k = 0; k < own.size(); ++k) {
    const ropescale::FactorTable& t = own[k];
    bool clash = false;
    for (const auto& s : tables) clash = clash || s.method() == t.method();
    // The config's table is kept apart from the closed form of the same name.
    const bool from_config = k < config_tables;
    if (clash && from_config)
      tables.emplace_back(t.factors(), t.attention_factor(), "config:" + t.method());
    else if (!clash)
      tables.push_back(t);
  }
  r.cmp = ropescale::compare_tables(spec, target, tables).value();
  return r;
}

void print_table(std::ostream& os, const ropescale::MethodComparison& cmp, const std::string& model,
                 const std::optional<std::int64_t>& detected_critical_pair) {
  const auto& a = cmp.analysis;
  const auto& d = a.dims;
  const std::string s = fmt("%g", a.scale);
  os << "model: " << model << "\n"
     << (a.spec.frequency_dim() != a.spec.rotary_dim
             ? "freq_dim " + std::to_string(a.spec.frequency_dim()) +
                   " (proportional: exponent 2i/freq_dim)\n"
             : std::string())
     << "rope_theta " << fmt("%g", a.spec.rope_theta) << ", rotary_dim " << a.spec.rotary_dim
     << " (" << a.pairs() << " pairs), L_train " << a.spec.original_max_position << " -> L "
     << a.target_length << ", s = L / L_train = " << s << "\n"
     << "critical pair i_tcd = " << d.critical_pair << ", d_tcd = " << d.critical_dim
     << " (d/2 log_base(L_train / 2pi) = " << fmt("%.3f", d.critical_pair_exact) << ")\n"
     << "lower search bound i10 = " << d.lower_pair << " (its period fits 10 times in L_train)\n";
  if (detected_critical_pair)
    os << "config factor table: NTK-anchored below critical pair c = " << *detected_critical_pair
       << "\n";
  os << "pairs >= " << d.critical_pair << " never completed a period in pre-training; at L they "
     << "stay in range\nonly if lambda_i >= s (LongRoPE2 eq. 10)\n\n";

  std::string head = fmt("%4s %8s %9s %6s", "pair", "theta", "period", "Ltr/T");
  for (const auto& m : cmp.methods) head += fmt(" %9s", label(m.method).substr(0, 9).c_str());
  os << head << "\n";
  const std::string rule(head.size(), '-');
  os << rule << "\n";
  for (std::int64_t i = 0; i < a.pairs(); ++i) {
    if (i == d.lower_pair && d.lower_pair < d.critical_pair)
      os << "---- i10 = " << i << ": lower bound of the critical-dimension search\n";
    if (i == d.critical_pair)
      os << "==== i_tcd = " << i << ": critical pairs from here, lambda must be >= " << s << "\n";
    const Eigen::Index e = static_cast<Eigen::Index>(i);
    // Three decimals below 10 so that 0.997 (pair 35 of LLaMA3-8B) does not print as 1.00.
    const std::string train_periods = a.train_periods[e] < 10.0 ? fmt("%.3f", a.train_periods[e])
                                                                : compact(a.train_periods[e], 6);
    std::string row = fmt("%4lld %8.3g %9.4g %6s", static_cast<long long>(i), a.theta[e],
                          a.period[e], train_periods.c_str());
    for (const auto& m : cmp.methods)
      row += fmt(" %8s%c", compact(m.factors[e], 8).c_str(), m.is_ood(i) ? '!' : ' ');
    while (!row.empty() && row.back() == ' ') row.pop_back();
    os << row << "\n";
  }
  os << rule << "\n";
  os << "Ltr/T = L_train / period (full periods seen in pre-training)\n"
     << "! = out of distribution at L (lambda_i < s on a critical pair)\n\n";
  os << fmt("%-24s %s", "method", "OOD pairs at L") << "\n";
  for (const auto& m : cmp.methods) {
    std::string line = fmt("%-24s ", (label(m.method) + " (" + m.method + ")").c_str());
    line += m.ood_pairs.empty()
                ? std::string("none")
                : std::to_string(m.ood_pairs.size()) + " pairs: " + pair_ranges(m.ood_pairs);
    if (m.detected_critical_pair)
      line += "; NTK-anchored below c = " + std::to_string(*m.detected_critical_pair);
    os << line << "\n";
  }
}

nlohmann::ordered_json to_json(const ropescale::MethodComparison& cmp, const std::string& model,
                               bool with_detected,
                               const std::optional<std::int64_t>& detected_critical_pair) {
  using nlohmann::ordered_json;
  const auto& a = cmp.analysis;
  ordered_json j;
  j["model"] = model;
  j["rope_theta"] = a.spec.rope_theta;
  j["rotary_dim"] = a.spec.rotary_dim;
  j["head_dim"] = a.spec.head_dim;
  j["original_max_position"] = a.spec.original_max_position;
  j["target_length"] = a.target_length;
  j["scale"] = a.scale;
  j["critical_pair"] = a.dims.critical_pair;
  j["critical_dim"] = a.dims.critical_dim;
  j["critical_pair_exact"] = a.dims.critical_pair_exact;
  j["lower_pair"] = a.dims.lower_pair;
  j["lower_dim"] = a.dims.lower_dim;
  if (with_detected)
    j["detected_critical_pair"] =
        detected_critical_pair ? ordered_json(*detected_critical_pair) : ordered_json(nullptr);
  ordered_json pairs = ordered_json::array();
  for (Eigen::Index i = 0; i < a.theta.size(); ++i) {
    ordered_json p;
    p["pair"] = static_cast<std::int64_t>(i);
    p["theta"] = a.theta[i];
    p["period"] = a.period[i];
    p["train_periods"] = a.train_periods[i];
    p["critical"] = a.is_critical(static_cast<std::int64_t>(i));
    pairs.push_back(std::move(p));
  }
  j["pairs"] = std::move(pairs);
  ordered_json methods = ordered_json::object();
  for (const auto& m : cmp.methods) {
    ordered_json o;
    o["factors"] = to_json_array(m.factors);
    o["attention_factor"] = m.attention_factor;
    o["ood_pairs"] = m.ood_pairs;
    o["margin"] = to_json_array(m.margin);
    o["rescaled_period"] = to_json_array(m.rescaled_period);
    o["detected_critical_pair"] =
        m.detected_critical_pair ? ordered_json(*m.detected_critical_pair) : ordered_json(nullptr);
    methods[m.method] = std::move(o);
  }
  j["methods"] = std::move(methods);
  return j;
}

std::string render_svg(const ropescale::MethodComparison& cmp, const std::string& model) {
  const auto& a = cmp.analysis;
  const double width = 980, height = 560;
  const double left = 70, top = 56, right = 220, bottom = 56;
  const double pw = width - left - right, ph = height - top - bottom;
  const std::int64_t n = a.pairs();
  const double col = pw / static_cast<double>(std::max<std::int64_t>(n, 1));
  auto x_of = [&](double pair) { return left + (pair + 0.5) * col; };
  auto edge_of = [&](double pair) { return left + pair * col; };

  double lo = std::min(1.0, a.scale), hi = std::max(1.0, a.scale);
  for (const auto& m : cmp.methods) {
    lo = std::min(lo, m.factors.minCoeff());
    hi = std::max(hi, m.factors.maxCoeff());
  }
  // Decade below the smallest factor; a little headroom above the largest.
  const double lo_log = std::floor(std::log10(lo) + 1e-12);
  const double hi_log = std::max(std::log10(hi) + 0.08, lo_log + 1.0);
  auto y_of = [&](double v) { return top + ph * (hi_log - std::log10(v)) / (hi_log - lo_log); };

  svg::Document doc(width, height);
  doc.rect(0, 0, width, height, "#ffffff");
  doc.text(left, 24,
           model + ": rescale factor per rotary pair, " +
               std::to_string(a.spec.original_max_position) + " -> " +
               std::to_string(a.target_length) + " tokens (s = " + fmt("%g", a.scale) + ")",
           15, "start", {{"font-weight", "bold"}});
  doc.text(left, 42,
           "rope_theta " + fmt("%g", a.spec.rope_theta) + ", rotary_dim " +
               std::to_string(a.spec.rotary_dim) +
               "; shaded: critical pairs, never a full period in pre-training",
           11, "start", {{"fill", "#444444"}});

  // Critical region, then grid and axes.
  const std::int64_t c = a.dims.critical_pair, lower = a.dims.lower_pair;
  if (c < n)
    doc.rect(edge_of(static_cast<double>(c)), top, pw - static_cast<double>(c) * col, ph, "#f2f2f2",
             {{"class", "critical-region"}});
  doc.open_group({{"class", "grid"}});
  const bool few_decades = hi_log - lo_log <= 3.0;
  for (double k = lo_log; k <= hi_log; k += 1.0) {
    for (int m = 1; m <= 9; ++m) {
      const double v = static_cast<double>(m) * std::pow(10.0, k);
      if (std::log10(v) > hi_log) break;
      const double y = y_of(v);
      doc.line(left, y, left + pw, y, m == 1 ? "#c8c8c8" : "#ececec", 1.0);
      if (m == 1 || (few_decades && (m == 2 || m == 5)))
        doc.text(left - 6, y + 4, fmt("%g", v), m == 1 ? 11 : 9, "end");
    }
  }
  const std::int64_t step = std::max<std::int64_t>(1, (n + 7) / 8);
  for (std::int64_t i = 0; i < n; i += step) {
    doc.line(x_of(static_cast<double>(i)), top + ph, x_of(static_cast<double>(i)), top + ph + 4,
             "#000000");
    doc.text(x_of(static_cast<double>(i)), top + ph + 17, std::to_string(i), 11, "middle");
  }
  doc.close_group();
  doc.rect(left, top, pw, ph, "none", {{"stroke", "#000000"}, {"stroke-width", "1"}});
  doc.text(left + pw / 2, height - 14, "rotary pair i (full dimension 2i)", 12, "middle");
  doc.text(18, top + ph / 2, "\u03bb_i (log scale)", 12, "middle",
           {{"transform", "rotate(-90 18 " + svg::num(top + ph / 2) + ")"}});

  // Markers: lambda = s, the critical pair and the lower search bound.
  doc.open_group({{"class", "markers"}});
  const double ys = y_of(a.scale);
  doc.line(left, ys, left + pw, ys, "#000000", 1.2, {{"stroke-dasharray", "6 4"}});
  doc.text(left + pw - 4, ys - 5, "\u03bb = s = " + fmt("%g", a.scale), 11, "end");
  if (c < n) {
    const double xc = edge_of(static_cast<double>(c));
    doc.line(xc, top, xc, top + ph, "#b00000", 1.5, {{"stroke-dasharray", "5 3"}});
    doc.text(
        xc - 4, top + 14,
        "i_tcd = " + std::to_string(c) + " (d_tcd = " + std::to_string(a.dims.critical_dim) + ")",
        11, "end", {{"fill", "#b00000"}});
  }
  if (lower < n && lower < c) {
    const double xl = edge_of(static_cast<double>(lower));
    doc.line(xl, top, xl, top + ph, "#555555", 1.2, {{"stroke-dasharray", "2 3"}});
    doc.text(xl - 4, top + 28, "i10 = " + std::to_string(lower), 11, "end", {{"fill", "#555555"}});
  }
  doc.close_group();

  // One series per method; OOD points ringed in red inside the series' group.
  for (std::size_t k = 0; k < cmp.methods.size(); ++k) {
    const auto& m = cmp.methods[k];
    const char* colour = series_colour(k);
    doc.open_group({{"class", "series"}, {"data-method", m.method}});
    doc.title(label(m.method) + ": " +
              (m.ood_pairs.empty() ? std::string("no OOD pairs")
                                   : "OOD pairs " + pair_ranges(m.ood_pairs)));
    std::vector<svg::Point> pts;
    for (Eigen::Index i = 0; i < m.factors.size(); ++i)
      pts.push_back({x_of(static_cast<double>(i)), y_of(m.factors[i])});
    doc.polyline(pts, colour, 1.6);
    for (Eigen::Index i = 0; i < m.factors.size(); ++i) {
      doc.circle(pts[static_cast<std::size_t>(i)].x, pts[static_cast<std::size_t>(i)].y, 2.2,
                 colour);
      if (m.is_ood(static_cast<std::int64_t>(i)))
        doc.circle(pts[static_cast<std::size_t>(i)].x, pts[static_cast<std::size_t>(i)].y, 4.8,
                   "none", {{"class", "ood"}, {"stroke", "#d00000"}, {"stroke-width", "1.3"}});
    }
    doc.close_group();
  }

  // Legend.
  doc.open_group({{"class", "legend"}});
  const double lx = left + pw + 16;
  double ly = top + 8;
  for (std::size_t k = 0; k < cmp.methods.size(); ++k) {
    const auto& m = cmp.methods[k];
    doc.line(lx, ly, lx + 22, ly, series_colour(k), 2.0);
    doc.circle(lx + 11, ly, 2.4, series_colour(k));
    std::string text = label(m.method);
    if (!m.ood_pairs.empty()) text += " (" + std::to_string(m.ood_pairs.size()) + " OOD)";
    doc.text(lx + 28, ly + 4, text, 11);
    ly += 18;
  }
  ly += 6;
  doc.circle(lx + 11, ly, 4.8, "none", {{"stroke", "#d00000"}, {"stroke-width", "1.3"}});
  doc.text(lx + 28, ly + 4, "OOD: \u03bb_i < s at i \u2265 i_tcd", 11);
  ly += 18;
  doc.line(lx, ly, lx + 22, ly, "#000000", 1.2, {{"stroke-dasharray", "6 4"}});
  doc.text(lx + 28, ly + 4, "\u03bb = s", 11);
  ly += 18;
  doc.line(lx + 11, ly - 7, lx + 11, ly + 7, "#b00000", 1.5, {{"stroke-dasharray", "5 3"}});
  doc.text(lx + 28, ly + 4, "critical pair i_tcd", 11);
  ly += 18;
  doc.line(lx + 11, ly - 7, lx + 11, ly + 7, "#555555", 1.2, {{"stroke-dasharray", "2 3"}});
  doc.text(lx + 28, ly + 4, "lower search bound i10", 11);
  doc.close_group();
  return doc.str();
}

}  // namespace analyze
