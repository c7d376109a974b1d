// Tests for ropescale/io/hf_config.hpp: whole published configs in, Hugging Face's exact tables
// out (the 20 golden cases of tests/data/inv_freq.json through the importer), round trips through
// export, table export for HF and llama.cpp, and clear errors on bad input.
#include "ropescale/io/hf_config.hpp"
#include "ropescale/io/hf_export.hpp"
#include "ropescale/search.hpp"
#include "test_data.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <functional>
#include <limits>
#include <string>

namespace {

using ropescale_test::data_path;
using ropescale_test::load_json;
using ropescale_test::max_rel_error;
using ropescale_test::to_array;

using nlohmann::json;
using ropescale::FactorTable;
using ropescale::HfImportOptions;
using ropescale::RopeConfig;
using ropescale::RopeType;
using ropescale::YarnSemantics;

const char* const kRealConfigs[] = {"phi35_mini_instruct.json", "phi4_mini_instruct.json",
                                    "llama31_8b.json", "llama3_8b_longrope2.json"};

// ---------------------------------------------------------------------------------------------
// Golden vectors through the importer
// ---------------------------------------------------------------------------------------------

TEST(HfConfigGolden, EveryCaseFromTheWholeConfig) {
  const json golden = load_json("inv_freq.json");
  ASSERT_EQ(golden["cases"].size(), 20u);
  for (const json& c : golden["cases"]) {
    SCOPED_TRACE(c["name"].get<std::string>());
    // ef46806 is the legacy YaRN; the v5 cases ran the derived-factor code, and the current
    // rule (explicit factor) must agree on them because their factor equals max_pos / original.
    std::vector<YarnSemantics> semantics = {YarnSemantics::kLegacy};
    if (c["impl"] == "v5yarn") semantics = {YarnSemantics::kDerivedFactor, YarnSemantics::kCurrent};
    for (YarnSemantics sem : semantics) {
      HfImportOptions opt;
      opt.yarn = sem;
      const RopeConfig cfg = ropescale::parse_hf_config(c["config"], opt).value();
      EXPECT_EQ(cfg.spec.head_dim, c["head_dim"].get<std::int64_t>());
      EXPECT_EQ(cfg.spec.rotary_dim, c["rotary_dim"].get<std::int64_t>());
      EXPECT_EQ(std::string(ropescale::to_string(cfg.rope_type)),
                c["rope_type"].get<std::string>());
      const std::int64_t seq = c["seq_len"].is_null() ? 0 : c["seq_len"].get<std::int64_t>();
      const FactorTable t = cfg.table_for(seq).value();
      EXPECT_LE(max_rel_error(t.inv_freq(cfg.spec).value(), to_array(c["inv_freq_f64"])), 1e-12);
      const double want_attn = c["attention_factor"];
      EXPECT_NEAR(t.attention_factor(), want_attn, 1e-12 * want_attn);
      // The float32 column HF actually runs with (float32 pow, products and reciprocals): within
      // 10 float32 roundings (2^-24 each) of our double table.
      const Eigen::ArrayXd f32 = to_array(c["inv_freq_f32"]);
      EXPECT_LE(max_rel_error(t.inv_freq(cfg.spec).value(), f32), 10 * 0x1p-24);
    }
  }
}

TEST(HfConfigGolden, LegacyAndCurrentYarnDifferWhenTheWindowDoes) {
  // max_position_embeddings 65536 with original 4096 in the block: legacy uses 65536 as the
  // correction-range window, current uses 4096, so the ramps differ.
  const json golden = load_json("inv_freq.json");
  for (const json& c : golden["cases"]) {
    if (c["name"] != "yarn_f16_orig4096_v5") continue;
    HfImportOptions legacy;
    legacy.yarn = YarnSemantics::kLegacy;
    const RopeConfig a = ropescale::parse_hf_config(c["config"], legacy).value();
    const RopeConfig b = ropescale::parse_hf_config(c["config"]).value();
    EXPECT_EQ(a.yarn.original_max_position, 65536);
    EXPECT_EQ(b.yarn.original_max_position, 4096);
    EXPECT_FALSE(a.table_for().value().approx_equal(b.table_for().value(), 1e-6));
  }
}

TEST(HfConfig, DerivedFactorVersusExplicitFactor) {
  // Qwen-style: max_position_embeddings == original, factor 4. Current HF keeps factor 4; the
  // v5-dev code derives 1.
  const json j = json::parse(R"({"hidden_size": 1024, "num_attention_heads": 8,
      "rope_theta": 1e6, "max_position_embeddings": 32768,
      "rope_scaling": {"type": "yarn", "factor": 4.0, "original_max_position_embeddings": 32768}})");
  EXPECT_EQ(ropescale::parse_hf_config(j).value().yarn.factor, 4.0);
  HfImportOptions derived;
  derived.yarn = YarnSemantics::kDerivedFactor;
  EXPECT_EQ(ropescale::parse_hf_config(j, derived).value().yarn.factor, 1.0);
  // No factor at all: derived from the windows under every non-legacy semantics.
  json k = j;
  k["max_position_embeddings"] = 131072;
  k["rope_scaling"].erase("factor");
  EXPECT_EQ(ropescale::parse_hf_config(k).value().yarn.factor, 4.0);
}

// ---------------------------------------------------------------------------------------------
// Real configs
// ---------------------------------------------------------------------------------------------

TEST(HfConfig, RealConfigsReadAsPublished) {
  const RopeConfig phi35 = ropescale::load_hf_config(data_path("phi35_mini_instruct.json")).value();
  EXPECT_EQ(phi35.rope_type, RopeType::kLongRope);
  EXPECT_EQ(phi35.spec.head_dim, 96);
  EXPECT_EQ(phi35.spec.rotary_dim, 96);
  EXPECT_EQ(phi35.spec.original_max_position, 4096);
  EXPECT_EQ(phi35.longrope.factor, 32.0);
  EXPECT_EQ(phi35.window_for(4096), ropescale::RopeWindow::kShort);
  EXPECT_EQ(phi35.window_for(4097), ropescale::RopeWindow::kLong);
  EXPECT_EQ(phi35.table_for(4097).value().factors()[47], 64.83999633789062);
  EXPECT_EQ(phi35.table_for(100).value().factors()[47], 2.8399994373321533);

  const RopeConfig phi4 = ropescale::load_hf_config(data_path("phi4_mini_instruct.json")).value();
  EXPECT_EQ(phi4.spec.head_dim, 128);
  EXPECT_EQ(phi4.spec.rotary_dim, 96);  // partial_rotary_factor 0.75

  const RopeConfig llama = ropescale::load_hf_config(data_path("llama31_8b.json")).value();
  EXPECT_EQ(llama.rope_type, RopeType::kLlama3);
  EXPECT_EQ(llama.llama3.original_max_position, 8192);
  EXPECT_EQ(llama.spec.rope_theta, 500000.0);
  EXPECT_FALSE(llama.window_for(200000).has_value());

  const RopeConfig lr2 = ropescale::load_hf_config(data_path("llama3_8b_longrope2.json")).value();
  EXPECT_EQ(lr2.longrope.factor, 16.0);
  const auto det = ropescale::detect_longrope2(lr2.longrope.long_factor).value();
  EXPECT_TRUE(det.found);
  EXPECT_EQ(det.critical_pair, 33);
}

TEST(HfConfig, NewerRopeParametersBlockAndSuAlias) {
  // transformers v5 writes rope_theta and partial_rotary_factor inside rope_parameters.
  const json j = json::parse(R"({"hidden_size": 3072, "num_attention_heads": 24,
      "max_position_embeddings": 131072, "original_max_position_embeddings": 4096,
      "rope_parameters": {"rope_type": "su", "rope_theta": 10000.0, "partial_rotary_factor": 0.75,
        "short_factor": [], "long_factor": []}})");
  json k = j;
  k["rope_parameters"]["short_factor"] = std::vector<double>(48, 1.0);
  k["rope_parameters"]["long_factor"] = std::vector<double>(48, 32.0);
  const RopeConfig c = ropescale::parse_hf_config(k).value();
  EXPECT_EQ(c.rope_type, RopeType::kLongRope);
  EXPECT_EQ(c.spec.rotary_dim, 96);
  EXPECT_EQ(c.spec.rope_theta, 10000.0);
  EXPECT_NEAR(c.table_for(5000).value().attention_factor(), 1.1902380714238083, 1e-15);
  // rope_type "default" in a v5 block is plain RoPE.
  const json d = json::parse(R"({"head_dim": 64, "max_position_embeddings": 2048,
      "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0}})");
  EXPECT_TRUE(ropescale::parse_hf_config(d).value().table_for().value().is_identity());
}

TEST(HfConfig, LongRopeMscaleAndAttentionFactorKeys) {
  json j = load_json("phi35_mini_instruct.json");
  j["rope_scaling"]["short_mscale"] = 1.0;
  j["rope_scaling"]["long_mscale"] = 1.2;
  const RopeConfig c = ropescale::parse_hf_config(j).value();
  EXPECT_EQ(c.table_for(10).value().attention_factor(), 1.0);
  EXPECT_EQ(c.table_for(10000).value().attention_factor(), 1.2);
  j["rope_scaling"]["attention_factor"] = 1.5;
  EXPECT_EQ(ropescale::parse_hf_config(j).value().table_for(10).value().attention_factor(), 1.5);
}

// ---------------------------------------------------------------------------------------------
// Round trips and export
// ---------------------------------------------------------------------------------------------

void expect_round_trip(const RopeConfig& c, const HfImportOptions& opt = {}) {
  const json exported = ropescale::to_hf_config(c).value();
  const RopeConfig back = ropescale::parse_hf_config(exported.dump(), opt).value();
  EXPECT_TRUE(back == c) << exported.dump();
  const std::int64_t L = c.spec.original_max_position;
  for (std::int64_t seq : {std::int64_t{0}, L, L + 1, 4 * L})
    EXPECT_EQ(back.table_for(seq).value(), c.table_for(seq).value()) << seq;
  for (std::int64_t seq : {std::int64_t{0}, L, L + 1, 4 * L})
    EXPECT_EQ(back.table_for(seq).value().method(), c.table_for(seq).value().method()) << seq;
}

TEST(HfConfigRoundTrip, ImportExportImportIsIdentity) {
  for (const char* name : kRealConfigs) {
    SCOPED_TRACE(name);
    expect_round_trip(ropescale::load_hf_config(data_path(name)).value());
  }
  const json golden = load_json("inv_freq.json");
  for (const json& c : golden["cases"]) {
    SCOPED_TRACE(c["name"].get<std::string>());
    for (YarnSemantics sem :
         {YarnSemantics::kCurrent, YarnSemantics::kDerivedFactor, YarnSemantics::kLegacy}) {
      HfImportOptions opt;
      opt.yarn = sem;
      expect_round_trip(ropescale::parse_hf_config(c["config"], opt).value(), opt);
    }
  }
}

TEST(HfConfigRoundTrip, LongRopeWithoutOriginalWindowKeepsBlockFactor) {
  const json j =
      json::parse(R"({"head_dim": 4, "rope_theta": 10000, "max_position_embeddings": 8192,
      "rope_scaling": {"type": "longrope", "factor": 4.0, "short_factor": [1, 1],
                       "long_factor": [2, 3]}})");
  const RopeConfig c = ropescale::parse_hf_config(j).value();
  EXPECT_EQ(c.spec.original_max_position, 8192);
  EXPECT_EQ(c.longrope.factor, 4.0);
  EXPECT_NEAR(c.table_for(9000).value().attention_factor(),
              std::sqrt(1 + std::log(4.0) / std::log(8192.0)), 1e-15);
  expect_round_trip(c);
}

TEST(HfConfigExport, AnyTableShipsAsLongRopeThatHuggingFaceReads) {
  // A LongRoPE2 table (critical pair 31, Phi-4-mini's searched part) shipped as a config.
  const json phi4 = load_json("phi4_mini_instruct.json");
  const Eigen::ArrayXd published = to_array(phi4["rope_scaling"]["long_factor"]);
  ropescale::RopeSpec spec;
  spec.head_dim = 128;
  spec.rotary_dim = 96;
  spec.rope_theta = 10000;
  spec.original_max_position = 4096;
  const FactorTable lr2 =
      ropescale::longrope2_factors(spec, 31, published.tail(17), 1.1902380714238083).value();
  const RopeConfig c = ropescale::longrope_config_from_tables(spec, 131072, lr2).value();
  const json out = ropescale::to_hf_config(c).value();
  EXPECT_EQ(out["rope_scaling"]["rope_type"], "longrope");
  EXPECT_EQ(out["original_max_position_embeddings"], 4096);
  EXPECT_EQ(out["partial_rotary_factor"], 0.75);
  const RopeConfig back = ropescale::parse_hf_config(out).value();
  EXPECT_EQ(back.table_for(4097).value().factors().matrix(), lr2.factors().matrix());
  EXPECT_EQ(back.table_for(4097).value().attention_factor(), lr2.attention_factor());
  EXPECT_TRUE(back.table_for(4096).value().factors().isOnes(0));
  // Same inverse frequencies as HF's Phi-4 long case (published list vs rebuilt: ~1e-8).
  EXPECT_LE(max_rel_error(back.table_for(4097).value().factors(), published), 1e-7);
  // A YaRN table is just as shippable; HF then reproduces it exactly.
  ropescale::YarnParams y;
  y.factor = 16;
  const FactorTable yt = ropescale::yarn_factors(spec, y).value();
  const RopeConfig cy = ropescale::longrope_config_from_tables(spec, 65536, yt).value();
  EXPECT_EQ(ropescale::parse_hf_config(ropescale::to_hf_config(cy).value())
                .value()
                .table_for(65536)
                .value(),
            [&] { return FactorTable(yt.factors(), yt.attention_factor(), "longrope"); }());
  EXPECT_EQ(ropescale::parse_hf_config(ropescale::to_hf_config(cy).value())
                .value()
                .table_for(65536)
                .value()
                .method(),
            "longrope");
}

TEST(HfConfigExport, SearchResultShipsInOneCall) {
  // The result carries its critical pair, spec and target: no spec, length or curve fit needed.
  const ropescale::RopeSpec spec{64, 64, 10000.0, 1024};
  ropescale::SearchParams p;
  p.population = 8;
  p.parents = 4;
  p.mutations = 2;
  p.crossovers = 2;
  p.iterations = 2;
  const ropescale::SearchResult r =
      ropescale::search_longrope2(
          spec, 8192,
          [](const FactorTable& t) { return std::abs(std::log(t.factors().mean() / 5)); }, p)
          .value();
  EXPECT_EQ(r.critical_pair, r.best.critical_pair);
  EXPECT_TRUE(r.spec == spec);
  EXPECT_EQ(r.target_length, 8192);
  const RopeConfig c = ropescale::longrope_config_from_search(r).value();
  EXPECT_TRUE(c == ropescale::longrope_config_from_tables(spec, 8192, r.table).value());
  const RopeConfig back = ropescale::parse_hf_config(ropescale::to_hf_config(r).value()).value();
  EXPECT_TRUE(back == c);
  EXPECT_EQ(back.max_position_embeddings, 8192);
  // Read back, the table is the search's numbers under its config name.
  EXPECT_EQ(back.table_for(8192).value(), r.table);
  EXPECT_EQ(r.table.method(), "longrope2");
  EXPECT_EQ(back.table_for(8192).value().method(), "longrope");
}

TEST(HfConfigExport, LongRopeShortTableMustShareTheAttentionFactor) {
  ropescale::RopeSpec spec;
  const FactorTable a(Eigen::ArrayXd::Constant(64, 2.0), 1.2, "x");
  const FactorTable b(Eigen::ArrayXd::Constant(64, 1.0), 1.0, "x");
  EXPECT_THROW(ropescale::longrope_config_from_tables(spec, 16384, a, &b).value(),
               ropescale::Error);
}

TEST(HfConfigExport, RopeFreqsForLlamaCpp) {
  const RopeConfig llama = ropescale::load_hf_config(data_path("llama31_8b.json")).value();
  const FactorTable t = llama.table_for().value();
  const std::vector<float> freqs = ropescale::to_rope_freqs(t);
  ASSERT_EQ(freqs.size(), 64u);
  EXPECT_EQ(freqs[0], 1.0f);   // high frequency: kept
  EXPECT_EQ(freqs[63], 8.0f);  // low frequency: divided by s
  for (std::size_t i = 0; i < freqs.size(); ++i)
    EXPECT_EQ(freqs[i], static_cast<float>(t.factors()[static_cast<Eigen::Index>(i)]));
  const json j = ropescale::to_rope_freqs_json(t);
  EXPECT_EQ(to_array(j).matrix(), t.factors().matrix());
}

// ---------------------------------------------------------------------------------------------
// Bad input
// ---------------------------------------------------------------------------------------------

void expect_bad(const std::string& text, ropescale::ErrorCode code, const std::string& needle) {
  SCOPED_TRACE(text.substr(0, 120));
  const ropescale::Result<RopeConfig> r = ropescale::parse_hf_config(text);
  const ropescale::Status& st = r.status();
  EXPECT_FALSE(r.ok());  // no partial result
  EXPECT_EQ(st.code(), code) << st.message();
  EXPECT_NE(st.message().find(needle), std::string::npos) << st.message();
  EXPECT_THROW(ropescale::parse_hf_config(text).value(), ropescale::Error);
}

std::string mutate(const char* name, const std::function<void(json&)>& f) {
  json j = load_json(name);
  f(j);
  return j.dump();
}

TEST(HfConfigErrors, NameFieldValueAndRule) {
  using EC = ropescale::ErrorCode;
  const char* phi = "phi35_mini_instruct.json";
  const char* llama = "llama31_8b.json";
  expect_bad("{\"rope_theta\": 1e4,", EC::kParseError, "malformed JSON");
  expect_bad("[1, 2]", EC::kParseError, "config = [1,2]: must be a JSON object");
  expect_bad(mutate(llama, [](json& j) { j.erase("rope_theta"); }), EC::kParseError,
             "rope_theta = null: required field is missing");
  expect_bad(mutate(llama, [](json& j) { j.erase("max_position_embeddings"); }), EC::kParseError,
             "max_position_embeddings = null: required field is missing");
  expect_bad(mutate(llama, [](json& j) { j.erase("num_attention_heads"); }), EC::kParseError,
             "num_attention_heads = null: required field is missing");
  expect_bad(mutate(phi, [](json& j) { j["rope_scaling"]["long_factor"].erase(0); }),
             EC::kInvalidArgument,
             "rope_scaling.long_factor.size() = 47: must equal rotary_dim / 2 = 48");
  expect_bad(mutate(phi, [](json& j) { j["rope_scaling"]["short_factor"][3] = 0; }),
             EC::kInvalidArgument, "rope_scaling.short_factor[3] = 0: must be finite and >= 1e-6");
  expect_bad(mutate(phi, [](json& j) { j["rope_scaling"]["short_factor"][5] = "x"; }),
             EC::kParseError, "rope_scaling.short_factor[5] = \"x\": must be a number");
  expect_bad(mutate(phi, [](json& j) { j["rope_scaling"].erase("long_factor"); }), EC::kParseError,
             "rope_scaling.long_factor = null: required field is missing");
  expect_bad(mutate(phi, [](json& j) { j["rope_scaling"]["type"] = "mrope"; }), EC::kUnsupported,
             "rope_scaling.type = \"mrope\": must be one of default, linear");
  expect_bad(mutate(llama, [](json& j) { j["rope_scaling"].erase("rope_type"); }), EC::kParseError,
             "rope_scaling.rope_type = null: required field is missing");
  expect_bad(mutate(llama, [](json& j) { j["rope_theta"] = -5; }), EC::kInvalidArgument,
             "rope_theta = -5: must be finite and > 1");
  // JSON text cannot hold inf/nan (nlohmann rejects the overflow); a json value built in code can.
  expect_bad(R"({"head_dim": 64, "max_position_embeddings": 2048, "rope_theta": 1e999})",
             EC::kParseError, "number overflow");
  for (double bad : {std::numeric_limits<double>::infinity(), std::nan("")}) {
    json j = load_json(llama);
    j["rope_scaling"]["factor"] = bad;
    const auto st = ropescale::parse_hf_config(j).status();
    EXPECT_EQ(st.code(), EC::kInvalidArgument);
    EXPECT_NE(st.message().find("rope_scaling.factor = "), std::string::npos) << st.message();
    EXPECT_NE(st.message().find(": must be finite"), std::string::npos) << st.message();
  }
  expect_bad(mutate(llama, [](json& j) { j["rope_scaling"]["factor"] = 0.5; }),
             EC::kInvalidArgument, "rope_scaling.factor = 0.5: must be finite and >= 1");
  expect_bad(mutate(llama, [](json& j) { j["rope_scaling"]["low_freq_factor"] = 5.0; }),
             EC::kInvalidArgument,
             "rope_scaling.low_freq_factor = 5: must be <= high_freq_factor (4)");
  expect_bad(mutate(llama, [](json& j) { j["head_dim"] = 0; }), EC::kInvalidArgument,
             "head_dim = 0: must be > 0");
  expect_bad(mutate(llama, [](json& j) { j["head_dim"] = 1e12; }), EC::kInvalidArgument,
             "head_dim = 1000000000000: must be <= 65536");
  expect_bad(mutate(llama, [](json& j) { j["max_position_embeddings"] = 4096.5; }),
             EC::kInvalidArgument, "max_position_embeddings = 4096.5: must be an integer");
  expect_bad(mutate(llama, [](json& j) { j["partial_rotary_factor"] = 0.7; }), EC::kInvalidArgument,
             "rotary_dim = 89: int(head_dim * partial_rotary_factor) must be even");
  expect_bad(mutate(llama, [](json& j) { j["rope_scaling"] = "llama3"; }), EC::kParseError,
             "rope_scaling = \"llama3\": must be an object or null");
  expect_bad(R"({"head_dim": 64, "max_position_embeddings": 2048, "rope_theta": 1e4,
      "rope_scaling": {"type": "yarn", "factor": 4, "truncate": "no"}})",
             EC::kParseError, "rope_scaling.truncate = \"no\": must be true or false");
  expect_bad(R"({"head_dim": 64, "max_position_embeddings": 2048, "rope_theta": 1e4,
      "rope_scaling": {"type": "yarn", "factor": 4, "beta_fast": 0.5}})",
             EC::kInvalidArgument, "rope_scaling.beta_fast = 0.5: must be >= beta_slow (1)");
  // The generators check what the importer read, and their message names the config key the
  // value came from: GPT-NeoX's base, a list entry, a factor derived from the two windows.
  expect_bad(R"({"head_dim": 64, "max_position_embeddings": 2048, "rotary_emb_base": 0.5})",
             EC::kInvalidArgument, "rotary_emb_base = 0.5: must be finite and > 1");
  expect_bad(R"({"head_dim": 64, "max_position_embeddings": 2048, "rope_theta": 1e13})",
             EC::kInvalidArgument, "rope_theta = 10000000000000: must be <= 1e12");
  expect_bad(mutate(phi, [](json& j) { j["rope_scaling"]["long_factor"][7] = -2.5; }),
             EC::kInvalidArgument,
             "rope_scaling.long_factor[7] = -2.5: must be finite and >= 1e-6");
  expect_bad(R"({"head_dim": 64, "max_position_embeddings": 2048, "rope_theta": 1e4,
      "original_max_position_embeddings": 4096, "rope_scaling": {"type": "yarn"}})",
             EC::kInvalidArgument,
             "rope_scaling.factor = 0.5: must be finite and >= 1 (derived as "
             "max_position_embeddings / original_max_position_embeddings)");

  const auto st = ropescale::load_hf_config(data_path("no_such_config.json")).status();
  EXPECT_EQ(st.code(), EC::kIoError);
  EXPECT_NE(st.message().find("no_such_config.json"), std::string::npos);
}

TEST(HfConfigErrors, MissingThetaWithDefaultOption) {
  const std::string text = R"({"head_dim": 64, "max_position_embeddings": 2048})";
  HfImportOptions opt;
  opt.default_rope_theta = 10000.0;
  EXPECT_EQ(ropescale::parse_hf_config(text, opt).value().spec.rope_theta, 10000.0);
  opt.default_rope_theta = 0.5;  // a bad default is named as the option, not a config key
  const auto st = ropescale::parse_hf_config(text, opt).status();
  EXPECT_EQ(st.code(), ropescale::ErrorCode::kInvalidArgument);
  EXPECT_NE(st.message().find("HfImportOptions::default_rope_theta = 0.5: must be finite and > 1"),
            std::string::npos)
      << st.message();
}

}  // namespace
