// Tests for `ropescale analyze`'s outputs (examples/report/analyze_report.hpp and svg.hpp):
// the SVG is well-formed XML with one series per method and one red ring per OOD pair, the JSON
// has the documented keys and values, the table fits 100 columns, a config's own table is
// read and its NTK-anchored critical pair detected, and bad input raises ropescale::Error (which
// the tool turns into exit code 2).
#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "analyze_report.hpp"
#include "svg.hpp"
#include "xml_check.hpp"

namespace {

using ropescale_test::parse_xml;
using ropescale_test::XmlElement;

std::string data(const std::string& name) {
  return std::string(ROPESCALE_TEST_DATA_DIR) + "/" + name;
}

analyze::Report default_report() { return analyze::make_report(analyze::Options{}); }

analyze::Report config_report(const std::string& name) {
  analyze::Options opt;
  opt.config = data(name);
  return analyze::make_report(opt);
}

std::vector<std::int64_t> range(std::int64_t first, std::int64_t last) {
  std::vector<std::int64_t> out;
  for (std::int64_t i = first; i <= last; ++i) out.push_back(i);
  return out;
}

std::vector<std::string> method_names(const analyze::Report& r) {
  std::vector<std::string> out;
  for (const auto& m : r.cmp.methods) out.push_back(m.method);
  return out;
}

std::vector<const XmlElement*> series_groups(const XmlElement& root) {
  std::vector<const XmlElement*> groups, out;
  root.collect("g", &groups);
  for (const XmlElement* g : groups) {
    const std::string* cls = g->attribute("class");
    if (cls != nullptr && *cls == "series") out.push_back(g);
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// The checker itself must reject what browsers reject.
// ---------------------------------------------------------------------------------------------

TEST(XmlCheck, AcceptsAndRejects) {
  EXPECT_TRUE(
      parse_xml("<?xml version=\"1.0\"?>\n<a x='1' y=\"&amp;&#955;&#x3bb;\"><b/>t&lt;</a>\n").ok);
  EXPECT_TRUE(parse_xml("<!-- c --><a><![CDATA[<&>]]><?pi x?></a>").ok);
  const char* bad[] = {
      "",                             // no root
      "<a><b></a></b>",               // crossed tags
      "<a></b>",                      // wrong end tag
      "<a x=1/>",                     // unquoted attribute
      "<a x='1' x='2'/>",             // duplicate attribute
      "<a>fish & chips</a>",          // bare ampersand
      "<a>&nbsp;</a>",                // undefined entity
      "<a x='<'/>",                   // '<' in attribute
      "<a/><b/>",                     // two roots
      "<a>",                          // unterminated
      "<a><!-- x -- y --></a>",       // '--' in comment
      "<a/>\n<?xml version='1.0'?>",  // late declaration
      "<1a/>",                        // bad name
      "<a b='1'c='2'/>",              // attributes without whitespace
  };
  for (const char* doc : bad) EXPECT_FALSE(parse_xml(doc).ok) << doc;
}

// ---------------------------------------------------------------------------------------------
// SVG
// ---------------------------------------------------------------------------------------------

TEST(Svg, EscapeAndNumbers) {
  EXPECT_EQ(svg::escape("a<b & \"c\" 'd'>"), "a&lt;b &amp; &quot;c&quot; &apos;d&apos;&gt;");
  EXPECT_EQ(svg::num(12.5), "12.5");
  EXPECT_EQ(svg::num(3.0), "3");
  EXPECT_EQ(svg::num(-0.001), "0");
  EXPECT_EQ(svg::num(1.0 / 3.0), "0.33");
  svg::Document doc(10, 10);
  doc.open_group({{"data-x", "<&>"}});
  doc.text(1, 2, "x < y & z");
  // str() closes the open group.
  const auto r = parse_xml(doc.str());
  ASSERT_TRUE(r.ok) << r.error;
  EXPECT_EQ(r.root->name, "svg");
  ASSERT_EQ(r.root->children.size(), 1u);
  EXPECT_EQ(*r.root->children[0]->attribute("data-x"), "&lt;&amp;&gt;");
}

TEST(Svg, DefaultReportIsWellFormedWithOneSeriesPerMethod) {
  const analyze::Report r = default_report();
  const std::string text = analyze::render_svg(r.cmp, r.model);
  const auto x = parse_xml(text);
  ASSERT_TRUE(x.ok) << x.error;
  EXPECT_EQ(x.root->name, "svg");
  ASSERT_NE(x.root->attribute("xmlns"), nullptr);
  EXPECT_EQ(*x.root->attribute("xmlns"), "http://www.w3.org/2000/svg");
  ASSERT_NE(x.root->attribute("viewBox"), nullptr);

  const auto groups = series_groups(*x.root);
  ASSERT_EQ(groups.size(), r.cmp.methods.size());
  for (std::size_t k = 0; k < groups.size(); ++k) {
    const auto& m = r.cmp.methods[k];
    ASSERT_NE(groups[k]->attribute("data-method"), nullptr);
    EXPECT_EQ(*groups[k]->attribute("data-method"), m.method);
    std::vector<const XmlElement*> lines, circles;
    groups[k]->collect("polyline", &lines);
    groups[k]->collect("circle", &circles);
    ASSERT_EQ(lines.size(), 1u) << m.method;
    // One vertex per pair.
    std::istringstream pts(*lines[0]->attribute("points"));
    std::string p;
    std::size_t count = 0;
    while (pts >> p) ++count;
    EXPECT_EQ(count, 64u) << m.method;
    // One dot per pair plus one red ring per OOD pair.
    std::size_t rings = 0;
    for (const XmlElement* c : circles) {
      const std::string* cls = c->attribute("class");
      if (cls != nullptr && *cls == "ood") ++rings;
    }
    EXPECT_EQ(rings, m.ood_pairs.size()) << m.method;
    EXPECT_EQ(circles.size(), 64u + m.ood_pairs.size()) << m.method;
  }
  // Default methods: the closed forms and the published LongRoPE2 table; NTK has 28 OOD pairs.
  EXPECT_EQ(method_names(r), (std::vector<std::string>{"linear", "ntk", "ntk_critical", "yarn",
                                                       "llama3", "longrope2"}));
  EXPECT_EQ(r.cmp.methods[1].ood_pairs, range(35, 62));
  // The markers and the critical region are there.
  EXPECT_NE(text.find("i_tcd = 35 (d_tcd = 70)"), std::string::npos);
  EXPECT_NE(text.find("i10 = 24"), std::string::npos);
  EXPECT_NE(text.find("class=\"critical-region\""), std::string::npos);
}

TEST(Svg, LambdaEqualsSLineSitsOnTheFlatPiSeries) {
  // PI is lambda = s everywhere, so its polyline is horizontal at the height of the s line.
  const analyze::Report r = default_report();
  const auto x = parse_xml(analyze::render_svg(r.cmp, r.model));
  ASSERT_TRUE(x.ok) << x.error;
  std::vector<const XmlElement*> groups;
  x.root->collect("g", &groups);
  const XmlElement* markers = nullptr;
  for (const XmlElement* g : groups)
    if (g->attribute("class") && *g->attribute("class") == "markers") markers = g;
  ASSERT_NE(markers, nullptr);
  std::vector<const XmlElement*> lines;
  markers->collect("line", &lines);
  ASSERT_FALSE(lines.empty());
  const std::string y_s = *lines[0]->attribute("y1");
  EXPECT_EQ(*lines[0]->attribute("y2"), y_s);
  std::vector<const XmlElement*> poly;
  series_groups(*x.root)[0]->collect("polyline", &poly);
  std::istringstream pts(*poly[0]->attribute("points"));
  std::string p;
  while (pts >> p) EXPECT_EQ(p.substr(p.find(',') + 1), y_s);
}

TEST(Svg, EscapesMethodNames) {
  const ropescale::RopeSpec spec = analyze::llama3_8b_spec();
  const auto cmp =
      ropescale::compare_tables(
          spec, 131072,
          {ropescale::FactorTable(Eigen::ArrayXd::Constant(64, 16.0), 1.0, "a<b & \"c\"")})
          .value();
  const auto x = parse_xml(analyze::render_svg(cmp, "model <&>"));
  ASSERT_TRUE(x.ok) << x.error;
  EXPECT_EQ(series_groups(*x.root).size(), 1u);
}

TEST(Svg, ConfigWithSevenMethods) {
  // A LongRoPE (v1) table on LLaMA3-8B's RoPE: seven series, the most a report holds.
  const ropescale::RopeSpec spec = analyze::llama3_8b_spec();
  std::vector<ropescale::FactorTable> tables = ropescale::standard_tables(spec, 131072).value();
  tables.emplace_back(Eigen::ArrayXd::LinSpaced(64, 1.0, 40.0), 1.0, "longrope");
  tables.emplace_back(Eigen::Map<const Eigen::ArrayXd>(analyze::kLlama3LongRope2, 64), 1.0,
                      "longrope2");
  const auto cmp = ropescale::compare_tables(spec, 131072, tables).value();
  const auto x = parse_xml(analyze::render_svg(cmp, "seven"));
  ASSERT_TRUE(x.ok) << x.error;
  EXPECT_EQ(series_groups(*x.root).size(), 7u);
  std::ostringstream os;
  analyze::print_table(os, cmp, "seven", std::nullopt);
  std::istringstream lines(os.str());
  std::string line;
  while (std::getline(lines, line)) EXPECT_LE(line.size(), 100u) << line;
}

// ---------------------------------------------------------------------------------------------
// Table
// ---------------------------------------------------------------------------------------------

TEST(Table, DefaultFitsHundredColumnsAndMarksOod) {
  const analyze::Report r = default_report();
  std::ostringstream os;
  analyze::print_table(os, r.cmp, r.model, r.detected_critical_pair);
  const std::string text = os.str();
  std::istringstream lines(text);
  std::string line;
  std::size_t rows = 0, marks = 0;
  while (std::getline(lines, line)) {
    EXPECT_LE(line.size(), 100u) << line;
    if (!line.empty() && line[0] == ' ') {  // only pair rows start with a space
      ++rows;
      for (char c : line) marks += c == '!';
    }
  }
  EXPECT_EQ(rows, 64u);
  EXPECT_EQ(marks, 28u);  // NTK's pairs 35-62
  EXPECT_NE(text.find("critical pair i_tcd = 35, d_tcd = 70"), std::string::npos);
  EXPECT_NE(text.find("lower search bound i10 = 24"), std::string::npos);
  EXPECT_NE(text.find("NTK (ntk)                28 pairs: 35-62"), std::string::npos) << text;
  EXPECT_NE(text.find("LongRoPE2 (longrope2)    none; NTK-anchored below c = 33"),
            std::string::npos);
}

TEST(Table, PairRanges) {
  EXPECT_EQ(analyze::pair_ranges({}), "none");
  EXPECT_EQ(analyze::pair_ranges({35}), "35");
  EXPECT_EQ(analyze::pair_ranges({3, 7, 8, 9, 12, 13}), "3, 7-9, 12-13");
}

// ---------------------------------------------------------------------------------------------
// JSON
// ---------------------------------------------------------------------------------------------

TEST(Json, DefaultKeysAndValues) {
  const analyze::Report r = default_report();
  // Round trip through text, as a consumer of `--format json` sees it.
  const auto j = nlohmann::json::parse(
      analyze::to_json(r.cmp, r.model, r.with_detected, r.detected_critical_pair).dump(1));
  EXPECT_EQ(j.at("critical_pair"), 35);
  EXPECT_EQ(j.at("critical_dim"), 70);
  EXPECT_EQ(j.at("lower_pair"), 24);
  EXPECT_EQ(j.at("target_length"), 131072);
  EXPECT_DOUBLE_EQ(j.at("scale").get<double>(), 16.0);
  EXPECT_FALSE(j.contains("detected_critical_pair"));  // no config table
  ASSERT_EQ(j.at("pairs").size(), 64u);
  const auto& p35 = j.at("pairs")[35];
  EXPECT_EQ(p35.at("pair"), 35);
  EXPECT_NEAR(p35.at("period").get<double>(), 8218.71819405104, 1e-8);
  EXPECT_TRUE(p35.at("critical").get<bool>());
  EXPECT_FALSE(j.at("pairs")[34].at("critical").get<bool>());
  const auto& methods = j.at("methods");
  for (const char* name : {"linear", "ntk", "ntk_critical", "yarn", "llama3", "longrope2"}) {
    ASSERT_TRUE(methods.contains(name)) << name;
    EXPECT_EQ(methods.at(name).at("factors").size(), 64u);
    EXPECT_TRUE(methods.at(name).at("ood_pairs").is_array());
  }
  EXPECT_EQ(methods.at("ntk").at("ood_pairs").get<std::vector<std::int64_t>>(), range(35, 62));
  EXPECT_TRUE(methods.at("yarn").at("ood_pairs").empty());
  EXPECT_EQ(methods.at("longrope2").at("factors")[33].get<double>(), 21.81);
  EXPECT_EQ(methods.at("longrope2").at("detected_critical_pair"), 33);
  EXPECT_TRUE(methods.at("linear").at("detected_critical_pair").is_null());
}

TEST(Json, ConfigTablesAndDetection) {
  // Phi-4-mini: LongRoPE2-shaped, c = 31; window 4096 -> max_position_embeddings 131072.
  const analyze::Report phi4 = config_report("phi4_mini_instruct.json");
  auto j = analyze::to_json(phi4.cmp, phi4.model, phi4.with_detected, phi4.detected_critical_pair);
  EXPECT_EQ(j.at("detected_critical_pair"), 31);
  EXPECT_EQ(j.at("critical_pair"), 34);
  EXPECT_EQ(j.at("rotary_dim"), 96);
  EXPECT_EQ(j.at("target_length"), 131072);
  EXPECT_TRUE(j.at("methods").contains("longrope2"));
  EXPECT_NEAR(j.at("methods").at("longrope2").at("attention_factor").get<double>(),
              1.1902380714238083, 1e-15);  // sqrt(1 + ln 32 / ln 4096), HF's default

  // Phi-3.5-mini: a LongRoPE (v1) table, no NTK-anchored part: null.
  const analyze::Report phi35 = config_report("phi35_mini_instruct.json");
  j = analyze::to_json(phi35.cmp, phi35.model, phi35.with_detected, phi35.detected_critical_pair);
  ASSERT_TRUE(j.contains("detected_critical_pair"));
  EXPECT_TRUE(j.at("detected_critical_pair").is_null());
  EXPECT_TRUE(j.at("methods").contains("longrope"));
  EXPECT_FALSE(j.at("methods").contains("longrope2"));

  // The LLaMA3-8B LongRoPE2 config: c = 33, and the built-in copy is not added twice.
  const analyze::Report lr2 = config_report("llama3_8b_longrope2.json");
  EXPECT_EQ(lr2.detected_critical_pair, 33);
  EXPECT_EQ(method_names(lr2), (std::vector<std::string>{"linear", "ntk", "ntk_critical", "yarn",
                                                         "llama3", "longrope2"}));

  // Llama-3.1-8B: rope_type llama3 with factor 8 is listed apart from the closed-form llama3
  // (factor s = 16) as "config:llama3", and at 128k its low-frequency pairs sit at 8 < 16.
  const analyze::Report l31 = config_report("llama31_8b.json");
  EXPECT_FALSE(l31.with_detected);
  EXPECT_EQ(l31.cmp.analysis.target_length, 131072);  // its max_position_embeddings
  ASSERT_EQ(l31.cmp.methods[4].method, "llama3");
  EXPECT_DOUBLE_EQ(l31.cmp.methods[4].factors[63], 16.0);
  const auto& llama3 = l31.cmp.methods[5];
  ASSERT_EQ(llama3.method, "config:llama3");
  EXPECT_DOUBLE_EQ(llama3.factors[63], 8.0);
  EXPECT_EQ(llama3.ood_pairs, range(35, 63));

  // Without --target, a YaRN config is analysed at its own extension (factor x original window),
  // even when max_position_embeddings equals the window (Qwen2.5 style).
  analyze::Options q;
  q.config = data("qwen25_yarn4.json");
  const analyze::Report qr = analyze::make_report(q);
  EXPECT_EQ(qr.cmp.analysis.target_length, 4 * 32768);
  EXPECT_EQ(qr.cmp.methods.back().method, "config:yarn");

  // Gemma 4: one report per layer type; the full-attention one is proportional (64 pairs).
  analyze::Options g;
  g.config = data("gemma4_text_v5.json");
  const analyze::Report g0 = analyze::make_report(g);
  EXPECT_EQ(g0.layer_kinds, 2u);
  EXPECT_EQ(g0.layer_type, "sliding_attention");
  EXPECT_EQ(g0.cmp.analysis.pairs(), 128);
  g.layer_kind = 1;
  const analyze::Report g1 = analyze::make_report(g);
  EXPECT_EQ(g1.layer_type, "full_attention");
  EXPECT_EQ(g1.cmp.analysis.pairs(), 64);
  EXPECT_EQ(g1.cmp.analysis.spec.frequency_dim(), 512);
}

TEST(Json, ManualSpecAndTarget) {
  analyze::Options opt;
  opt.manual = true;
  opt.base = 10000.0;
  opt.rotary_dim = 96;
  opt.train_len = 2048;
  const analyze::Report r = analyze::make_report(opt);  // default target 16 x 2048
  EXPECT_EQ(r.cmp.analysis.target_length, 32768);
  EXPECT_EQ(r.cmp.analysis.dims.critical_pair, 31);
  EXPECT_EQ(r.cmp.analysis.dims.lower_pair, 19);
  EXPECT_EQ(r.cmp.methods.size(), 5u);  // no published searched table for this RoPE
  opt.target = 131072;
  EXPECT_DOUBLE_EQ(analyze::make_report(opt).cmp.analysis.scale, 64.0);
}

// ---------------------------------------------------------------------------------------------
// Bad input: ropescale::Error, which the tool's main turns into exit code 2.
// ---------------------------------------------------------------------------------------------

void expect_error(const analyze::Options& opt, const std::string& needle) {
  try {
    analyze::make_report(opt);
    ADD_FAILURE() << "no error, expected " << needle;
  } catch (const ropescale::Error& e) {
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
  }
}

TEST(BadInput, Report) {
  analyze::Options opt;
  opt.manual = true;
  opt.base = 1.0;
  opt.rotary_dim = 128;
  opt.train_len = 8192;
  expect_error(opt, "rope_theta = 1: must be finite and > 1");
  opt.base = 10000.0;
  opt.rotary_dim = 7;
  expect_error(opt, "rotary_dim = 7: must be even");
  opt.rotary_dim = 0;
  expect_error(opt, "rotary_dim = 0: must be > 0");
  opt.rotary_dim = -4;
  expect_error(opt, "rotary_dim = -4: must be > 0");
  opt.rotary_dim = 128;
  opt.train_len = 6;
  expect_error(opt, "original_max_position = 6: must be > 2 pi");
  opt.train_len = 8192;
  opt.target = 4096;
  expect_error(opt, "--target = 4096: must be >= the training length L_train (8192)");

  analyze::Options cfg;
  cfg.config = data("does_not_exist.json");
  expect_error(cfg, "cannot be opened");
  // A long_factor list one entry short.
  nlohmann::json j;
  std::ifstream(data("phi4_mini_instruct.json")) >> j;
  j["rope_scaling"]["long_factor"].erase(47);
  const std::string path = ::testing::TempDir() + "ropescale_analyze_short_table.json";
  std::ofstream(path) << j.dump();
  cfg.config = path;
  expect_error(cfg, "long_factor.size() = 47: must equal rotary_dim / 2 = 48");
  std::remove(path.c_str());
}

}  // namespace
