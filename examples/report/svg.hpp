// A tiny SVG 1.1 writer: enough for line plots that render in any browser, no dependency.
//
// Elements are appended in drawing order; open_group()/close_group() nest. Every attribute value
// and text node is escaped, numbers are printed in the C locale with a fixed precision, and str()
// closes the document, so the output is always well-formed XML.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace svg {

/// Escapes the five XML special characters for use in text nodes and quoted attribute values.
inline std::string escape(const std::string& s) {
  std::string out;
  out.reserve(s.size());
  for (char ch : s) {
    switch (ch) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&quot;";
        break;
      case '\'':
        out += "&apos;";
        break;
      default:
        out += ch;
    }
  }
  return out;
}

/// A coordinate or length with two decimals ("12.5", "-3", "0").
inline std::string num(double v) {
  if (!std::isfinite(v)) v = 0.0;
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.2f", v);
  std::string s(buf);
  while (!s.empty() && s.back() == '0') s.pop_back();
  if (!s.empty() && s.back() == '.') s.pop_back();
  if (s == "-0") s = "0";
  return s;
}

/// Extra attributes, e.g. {{"stroke-dasharray", "4 3"}, {"class", "ood"}}.
using Attrs = std::vector<std::pair<std::string, std::string>>;

struct Point {
  double x = 0.0;
  double y = 0.0;
};

class Document {
 public:
  Document(double width, double height) : width_(width), height_(height) {}

  void rect(double x, double y, double w, double h, const std::string& fill,
            const Attrs& extra = {}) {
    element("rect",
            {{"x", num(x)}, {"y", num(y)}, {"width", num(w)}, {"height", num(h)}, {"fill", fill}},
            extra);
  }
  void line(double x1, double y1, double x2, double y2, const std::string& stroke,
            double stroke_width = 1.0, const Attrs& extra = {}) {
    element("line",
            {{"x1", num(x1)},
             {"y1", num(y1)},
             {"x2", num(x2)},
             {"y2", num(y2)},
             {"stroke", stroke},
             {"stroke-width", num(stroke_width)}},
            extra);
  }
  void polyline(const std::vector<Point>& points, const std::string& stroke,
                double stroke_width = 1.5, const Attrs& extra = {}) {
    std::string pts;
    for (const Point& p : points) {
      if (!pts.empty()) pts += ' ';
      pts += num(p.x) + "," + num(p.y);
    }
    element("polyline",
            {{"points", pts},
             {"fill", "none"},
             {"stroke", stroke},
             {"stroke-width", num(stroke_width)}},
            extra);
  }
  void circle(double cx, double cy, double r, const std::string& fill, const Attrs& extra = {}) {
    element("circle", {{"cx", num(cx)}, {"cy", num(cy)}, {"r", num(r)}, {"fill", fill}}, extra);
  }
  /// anchor: "start", "middle" or "end".
  void text(double x, double y, const std::string& content, double size = 12.0,
            const std::string& anchor = "start", const Attrs& extra = {}) {
    body_ +=
        indent() + "<text" +
        attrs({{"x", num(x)}, {"y", num(y)}, {"font-size", num(size)}, {"text-anchor", anchor}},
              extra) +
        ">" + escape(content) + "</text>\n";
  }
  /// A <title> child: browsers show it as a tooltip of the enclosing group.
  void title(const std::string& content) {
    body_ += indent() + "<title>" + escape(content) + "</title>\n";
  }
  void open_group(const Attrs& attributes = {}) {
    body_ += indent() + "<g" + attrs({}, attributes) + ">\n";
    ++depth_;
  }
  void close_group() {
    if (depth_ == 0) return;
    --depth_;
    body_ += indent() + "</g>\n";
  }

  /// The complete document; open groups are closed.
  std::string str() const {
    std::string out = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n";
    out += "<svg xmlns=\"http://www.w3.org/2000/svg\" version=\"1.1\" width=\"" + num(width_) +
           "\" height=\"" + num(height_) + "\" viewBox=\"0 0 " + num(width_) + " " + num(height_) +
           "\" font-family=\"sans-serif\">\n";
    out += body_;
    for (int d = depth_; d > 0; --d)
      out += std::string(static_cast<std::size_t>(2 * d), ' ') + "</g>\n";
    out += "</svg>\n";
    return out;
  }

 private:
  static std::string attrs(const Attrs& base, const Attrs& extra) {
    std::string out;
    for (const auto* list : {&base, &extra})
      for (const auto& kv : *list) out += " " + kv.first + "=\"" + escape(kv.second) + "\"";
    return out;
  }
  std::string indent() const { return std::string(static_cast<std::size_t>(2 * depth_ + 2), ' '); }
  void element(const char* name, const Attrs& base, const Attrs& extra) {
    body_ += indent() + "<" + name + attrs(base, extra) + "/>\n";
  }

  double width_;
  double height_;
  std::string body_;
  int depth_ = 0;
};

/// The colour of line k in every chart the tool draws (cycling after nine).
inline const char* series_color(std::size_t k) {
  static const char* const kColors[] = {"#222222", "#1f77b4", "#2ca02c", "#ff7f0e", "#d62728",
                                        "#9467bd", "#8c564b", "#e377c2", "#17becf"};
  return kColors[k % (sizeof(kColors) / sizeof(kColors[0]))];
}

/// One line of a chart: a value per x position (none: not measured), drawn thicker if `bold`.
struct Series {
  std::string name;
  std::vector<std::optional<double>> values;
  std::string tooltip;  ///< the <title> of its group ("" for the name)
  bool bold = false;
};

/// A panel plotting values against context length: log2 x axis with a grid line per length, a
/// linear or log2 y axis clamped to [ylo, yhi] with grid lines, line k in series_color(k).
inline void length_panel(Document& doc, double x0, double y0, double w, double h,
                         const std::string& title, const std::vector<std::int64_t>& lengths,
                         const std::vector<Series>& series, double ylo, double yhi, bool log_y) {
  if (!(yhi > ylo)) yhi = log_y ? 2 * ylo : ylo + 1;  // one value: give the axis a span
  auto fy = [&](double v) { return log_y ? std::log2(v) : v; };
  const double a = fy(ylo), b = fy(yhi);
  const double xlo = std::log2(static_cast<double>(lengths.front())),
               xhi = std::log2(static_cast<double>(lengths.back()));
  auto x_of = [&](std::int64_t l) {
    return x0 + (xhi > xlo ? (std::log2(static_cast<double>(l)) - xlo) / (xhi - xlo) : 0.5) * w;
  };
  auto y_of = [&](double v) {
    return y0 + h - (fy(std::min(std::max(v, ylo), yhi)) - a) / (b - a) * h;
  };
  if (!title.empty()) doc.text(x0 + w / 2, y0 - 10, title, 13, "middle");
  // Grid: one line per power of two on a log axis spanning whole powers (at most 8), else five.
  const bool doublings = log_y && a == std::floor(a) && b == std::floor(b) && b - a <= 8;
  const int steps = doublings ? static_cast<int>(b - a) : 4;
  for (int k = 0; k <= steps; ++k) {
    const double v = log_y ? std::pow(2.0, a + (b - a) * k / steps) : ylo + (yhi - ylo) * k / steps;
    doc.line(x0, y_of(v), x0 + w, y_of(v), "#ddd");
    doc.text(x0 - 6, y_of(v) + 4, num(v), 10, "end");
  }
  for (std::int64_t l : lengths) {
    doc.line(x_of(l), y0, x_of(l), y0 + h, "#eee");
    doc.text(x_of(l), y0 + h + 16, std::to_string(l), 10, "middle");
  }
  doc.rect(x0, y0, w, h, "none", {{"stroke", "#333"}});
  for (std::size_t r = 0; r < series.size(); ++r) {
    const std::string color = series_color(r);
    std::vector<Point> pts;
    for (std::size_t j = 0; j < lengths.size() && j < series[r].values.size(); ++j)
      if (series[r].values[j]) pts.push_back({x_of(lengths[j]), y_of(*series[r].values[j])});
    doc.open_group({{"class", series[r].name}});
    doc.title(series[r].tooltip.empty() ? series[r].name : series[r].tooltip);
    doc.polyline(pts, color, series[r].bold ? 2.5 : 1.5);
    for (const Point& p : pts) doc.circle(p.x, p.y, 2.5, color);
    doc.close_group();
  }
}

/// The legend of a chart's series: a colour swatch and the name, one row per series from (x, y).
inline void legend(Document& doc, double x, double y, const std::vector<Series>& series) {
  for (std::size_t r = 0; r < series.size(); ++r) {
    const double ly = y + 20 * static_cast<double>(r);
    doc.line(x, ly - 4, x + 20, ly - 4, series_color(r), 2.5);
    doc.text(x + 26, ly, series[r].name, 11);
  }
}

}  // namespace svg
