// Model families whose config.json does not follow the plain Llama rules: MLA widths
// (DeepSeek-V3), per-layer RoPE (Gemma 3 in every published form, Gemma 4 / transformers v5
// rope_parameters by layer type), Gemma 4's `proportional`, M-RoPE sections (Qwen2-VL,
// Qwen3-VL), the transformers v5 window rule, and the refusals that name what is missing.
//
// Goldens: tests/data/inv_freq_v5.json for DeepSeek-V3 and Gemma 4, computed by running the
// RoPE functions of transformers v5's modeling_rope_utils.py in float32 and float64 (its `meta`
// records the source); configs deepseek_v3.json and gemma4_text_v5.json (their `_note` says
// where the values come from). Gemma 3 and the Qwen-VL configs are checked against a scalar long
// double reference written from HF's code (Gemma3TextConfig.convert_rope_params_to_dict: sliding
// layers default RoPE at rope_local_base_freq, full layers rope_theta with the config's scaling;
// _compute_default/_linear: inv_freq_i = 1 / (factor * theta^(2i/d))).
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "ropescale/io/hf_config.hpp"
#include "ropescale/io/hf_export.hpp"
#include "ropescale/mrope.hpp"
#include "test_data.hpp"

namespace {

using nlohmann::json;
using ropescale::ModelRope;
using ropescale::RopeConfig;
using ropescale::RopeType;
using ropescale_test::data_path;
using ropescale_test::load_json;
using ropescale_test::max_rel_error;
using ropescale_test::to_array;

const json& case_named(const json& golden, const std::string& name) {
  for (const json& c : golden["cases"])
    if (c["name"] == name) return c;
  ADD_FAILURE() << "no golden case " << name;
  static const json kNull;
  return kNull;
}

// inv_freq_i = 1 / (factor * theta^(2i / denom)) for i < pairs, in long double (HF's formula).
Eigen::ArrayXd reference_inv_freq(long double theta, std::int64_t denom, std::int64_t pairs,
                                  long double factor = 1.0L) {
  Eigen::ArrayXd out(pairs);
  for (std::int64_t i = 0; i < pairs; ++i)
    out[i] =
        static_cast<double>(1.0L / (factor * std::pow(theta, 2.0L * static_cast<long double>(i) /
                                                                 static_cast<long double>(denom))));
  return out;
}

ropescale::Status status_of(const json& j) { return ropescale::parse_hf_config(j).status(); }
ropescale::Status model_status_of(const json& j) {
  return ropescale::parse_hf_model(j, {}).status();
}
void expect_refused(const ropescale::Status& st, ropescale::ErrorCode code,
                    const std::vector<std::string>& needles) {
  EXPECT_EQ(st.code(), code) << st.message();
  for (const std::string& n : needles)
    EXPECT_NE(st.message().find(n), std::string::npos) << "'" << n << "' not in " << st.message();
}

// ---------------------------------------------------------------------------------------------
// MLA: DeepSeek-V3
// ---------------------------------------------------------------------------------------------

TEST(HfModels, DeepSeekV3RotatesQkRopeHeadDim) {
  const json golden = load_json("inv_freq_v5.json");
  const json& g = case_named(golden, "deepseek_v3_yarn40");
  const RopeConfig c = ropescale::load_hf_config(data_path("deepseek_v3.json")).value();
  EXPECT_EQ(c.spec.head_dim, 64);  // not hidden_size / heads = 56
  EXPECT_EQ(c.spec.rotary_dim, 64);
  EXPECT_EQ(c.spec.pairs(), 32);
  EXPECT_EQ(c.rope_type, RopeType::kYarn);
  EXPECT_EQ(c.yarn.original_max_position, 4096);
  EXPECT_TRUE(c.interleaved_pairs);  // HF: rope_interleave defaults to true for DeepSeek-V3
  const ropescale::FactorTable t = c.table_for().value();
  EXPECT_LE(max_rel_error(t.inv_freq(c.spec).value(), to_array(g["inv_freq_f64"])), 1e-12);
  EXPECT_EQ(t.attention_factor(), g["attention_factor"].get<double>());  // exactly 1.0
  // Same through the golden's own copy of the config.
  const RopeConfig again = ropescale::parse_hf_config(g["config"]).value();
  EXPECT_TRUE(again == c);
}

TEST(HfModels, MlaHeadDimThatDisagreesIsRefusedByName) {
  json j = load_json("deepseek_v3.json");
  j["head_dim"] = 128;
  expect_refused(status_of(j), ropescale::ErrorCode::kUnsupported,
                 {"head_dim = 128", "qk_rope_head_dim (64)", "remove head_dim"});
  j["head_dim"] = 64;  // agreeing is fine
  EXPECT_TRUE(status_of(j).ok());
}

// ---------------------------------------------------------------------------------------------
// Rotary width by family
// ---------------------------------------------------------------------------------------------

TEST(HfModels, FamilyWidthRules) {
  // Qwen3: head_dim is a class default of 128, not hidden_size / heads (1024 / 16 = 64).
  const json qwen3 = json::parse(R"({"model_type": "qwen3", "hidden_size": 1024,
      "num_attention_heads": 16, "rope_theta": 1000000, "max_position_embeddings": 40960})");
  EXPECT_EQ(ropescale::parse_hf_config(qwen3).value().spec.head_dim, 128);
  // GPT-NeoX (Pythia): rotary_pct and rotary_emb_base.
  const json neox = json::parse(R"({"model_type": "gpt_neox", "hidden_size": 512,
      "num_attention_heads": 8, "rotary_pct": 0.25, "rotary_emb_base": 10000,
      "max_position_embeddings": 2048})");
  const RopeConfig n = ropescale::parse_hf_config(neox).value();
  EXPECT_EQ(n.spec.head_dim, 64);
  EXPECT_EQ(n.spec.rotary_dim, 16);
  EXPECT_EQ(n.spec.rope_theta, 10000.0);
  // GPT-J style rotary_dim with an explicit head_dim.
  const json gptj = json::parse(R"({"head_dim": 256, "rotary_dim": 64, "rope_theta": 10000,
      "max_position_embeddings": 2048})");
  EXPECT_EQ(ropescale::parse_hf_config(gptj).value().spec.rotary_dim, 64);
  EXPECT_FALSE(
      ropescale::parse_hf_config(gptj).value().interleaved_pairs);  // no model_type: not told
  json gptj_typed = gptj;
  gptj_typed["model_type"] = "gptj";  // HF GPT-J: rotate_every_two
  EXPECT_TRUE(ropescale::parse_hf_config(gptj_typed).value().interleaved_pairs);
  EXPECT_FALSE(ropescale::parse_hf_config(qwen3).value().interleaved_pairs);
  // Cannot be told without guessing: refused with the fields seen and what to add.
  expect_refused(status_of(json::parse(R"({"n_embd": 4096, "n_head": 16, "rope_theta": 10000,
      "max_position_embeddings": 2048})")),
                 ropescale::ErrorCode::kParseError,
                 {"hidden_size = null", "n_embd = 4096", "n_head = 16", "add head_dim"});
  expect_refused(status_of(json::parse(R"({"kv_channels": 128, "hidden_size": 4096,
      "num_attention_heads": 32, "rope_theta": 10000, "max_position_embeddings": 2048})")),
                 ropescale::ErrorCode::kUnsupported, {"kv_channels = \"128\"", "add head_dim"});
  // Layers without RoPE: the single-RoPE reader refuses, naming the field and the first NoPE
  // layer, and points at parse_hf_model (which reads them).
  expect_refused(
      status_of(json::parse(R"({"head_dim": 128, "rope_theta": 500000,
      "max_position_embeddings": 8192, "no_rope_layers": [1, 1, 1, 0]})")),
      ropescale::ErrorCode::kUnsupported,
      {"no_rope_layers = \"1 layers without RoPE\"", "NoPE, first: layer 3", "parse_hf_model"});
  expect_refused(status_of(json::parse(R"({"model_type": "cohere2", "head_dim": 128,
      "rope_theta": 50000, "max_position_embeddings": 8192})")),
                 ropescale::ErrorCode::kUnsupported, {"model_type = \"cohere2\"", "NoPE"});
  // Llama 4 derives NoPE layers from no_rope_layer_interval even without the list (48 layers by
  // class default, every 4th NoPE).
  expect_refused(status_of(json::parse(R"({"model_type": "llama4_text", "head_dim": 128,
      "rope_theta": 500000, "max_position_embeddings": 8192})")),
                 ropescale::ErrorCode::kUnsupported,
                 {"no_rope_layer_interval = \"12 layers without RoPE\"", "NoPE"});
}

// ---------------------------------------------------------------------------------------------
// Gemma 3: three published forms, one answer
// ---------------------------------------------------------------------------------------------

void expect_gemma3(const ModelRope& m, std::int64_t layers, std::int64_t head_dim, double factor) {
  ASSERT_EQ(m.kinds.size(), 2u);
  ASSERT_EQ(m.num_layers(), layers);
  for (std::int64_t l = 0; l < layers; ++l) {
    SCOPED_TRACE(l);
    const bool full = (l + 1) % 6 == 0;
    EXPECT_EQ(m.layer_types[static_cast<std::size_t>(l)],
              full ? "full_attention" : "sliding_attention");
    const RopeConfig& c = *m.layer(l).value();
    EXPECT_EQ(c.spec.head_dim, head_dim);
    const ropescale::FactorTable t = c.table_for().value();
    const Eigen::ArrayXd want = full ? reference_inv_freq(1e6L, head_dim, head_dim / 2, factor)
                                     : reference_inv_freq(1e4L, head_dim, head_dim / 2);
    EXPECT_LE(max_rel_error(t.inv_freq(c.spec).value(), want), 1e-12);
    EXPECT_EQ(t.attention_factor(), 1.0);
    EXPECT_EQ(c.rope_type,
              full ? (factor == 1.0 ? RopeType::kDefault : RopeType::kLinear) : RopeType::kDefault);
  }
}

TEST(HfModels, Gemma3OldStyleSlidingLayersUseTheLocalBase) {
  const json j = json::parse(R"({"model_type": "gemma3_text", "head_dim": 128,
      "hidden_size": 2560, "num_attention_heads": 8, "num_hidden_layers": 12,
      "rope_theta": 1000000.0, "rope_local_base_freq": 10000.0, "sliding_window_pattern": 6,
      "max_position_embeddings": 131072, "rope_scaling": {"rope_type": "linear", "factor": 8.0}})");
  const ModelRope m = ropescale::parse_hf_model(j).value();
  expect_gemma3(m, 12, 128, 8.0);
  // The single-table API refuses instead of applying linear x8 to every layer.
  expect_refused(status_of(j), ropescale::ErrorCode::kUnsupported,
                 {"layer_types", "sliding_attention: default theta 10000",
                  "full_attention: linear theta 1000000", "parse_hf_model"});
}

TEST(HfModels, Gemma3LocalBaseIsNamedWhenRefused) {
  // The sliding layers' theta comes from rope_local_base_freq; a bad one is named as that key,
  // in both the old form and transformers v5's per-layer-type blocks.
  const json old_form = json::parse(R"({"model_type": "gemma3_text", "head_dim": 128,
      "hidden_size": 2560, "num_attention_heads": 8, "num_hidden_layers": 12,
      "rope_theta": 1000000.0, "rope_local_base_freq": 0.5, "sliding_window_pattern": 6,
      "max_position_embeddings": 131072})");
  json v5 = old_form;
  json layer_types = json::array();
  for (int i = 0; i < 12; ++i)
    layer_types.push_back((i + 1) % 6 == 0 ? "full_attention" : "sliding_attention");
  v5["layer_types"] = layer_types;
  v5["rope_parameters"] = {{"full_attention", {{"rope_type", "default"}, {"rope_theta", 1e6}}},
                           {"sliding_attention", {{"rope_type", "default"}}}};
  for (const json& j : {old_form, v5}) {
    const ropescale::Status st = ropescale::parse_hf_model(j, {}).status();
    EXPECT_EQ(st.code(), ropescale::ErrorCode::kInvalidArgument) << st.message();
    EXPECT_NE(st.message().find("rope_local_base_freq = 0.5: must be finite and > 1"),
              std::string::npos)
        << st.message();
  }
}

TEST(HfModels, Gemma3AsPublishedWithTextConfigAndClassDefaults) {
  // gemma-3-4b-it style: the text model under text_config, no rope_theta, no head_dim.
  const json j = json::parse(R"({"model_type": "gemma3", "architectures":
      ["Gemma3ForConditionalGeneration"], "text_config": {"model_type": "gemma3_text",
      "hidden_size": 2560, "num_hidden_layers": 34,
      "rope_scaling": {"factor": 8.0, "rope_type": "linear"}, "sliding_window": 1024},
      "vision_config": {"hidden_size": 1152}})");
  const ModelRope m = ropescale::parse_hf_model(j).value();
  EXPECT_EQ(m.text_path, "text_config");
  expect_gemma3(m, 34, 256, 8.0);  // head_dim 256, not 2560 / 8
  expect_refused(status_of(j), ropescale::ErrorCode::kUnsupported, {"text_config.layer_types"});
}

TEST(HfModels, Gemma3InTransformersV5Form) {
  json layer_types = json::array();
  for (int i = 0; i < 12; ++i)
    layer_types.push_back((i + 1) % 6 == 0 ? "full_attention" : "sliding_attention");
  json j = json::parse(R"({"model_type": "gemma3_text", "head_dim": 128,
      "num_hidden_layers": 12, "max_position_embeddings": 131072, "rope_parameters": {
        "sliding_attention": {"rope_type": "default", "rope_theta": 10000.0},
        "full_attention": {"rope_type": "linear", "factor": 8.0, "rope_theta": 1000000.0}}})");
  j["layer_types"] = layer_types;
  expect_gemma3(ropescale::parse_hf_model(j).value(), 12, 128, 8.0);
  // Blocks without rope_theta take Gemma3TextConfig's per-type defaults (1e4 local, 1e6 global).
  json d = j;
  d["rope_parameters"]["sliding_attention"].erase("rope_theta");
  d["rope_parameters"]["full_attention"].erase("rope_theta");
  expect_gemma3(ropescale::parse_hf_model(d).value(), 12, 128, 8.0);
  // A layer type without a block is named.
  j["rope_parameters"].erase("full_attention");
  j["rope_parameters"]["other"] = json::parse(R"({"rope_type": "default"})");
  expect_refused(model_status_of(j), ropescale::ErrorCode::kUnsupported,
                 {"rope_parameters.other", "needs layer_types"});
}

// ---------------------------------------------------------------------------------------------
// Gemma 4: rope_parameters by layer type, proportional full-attention layers
// ---------------------------------------------------------------------------------------------

TEST(HfModels, Gemma4ProportionalAndSlidingMatchTransformersV5) {
  const json golden = load_json("inv_freq_v5.json");
  const ModelRope m = ropescale::load_hf_model(data_path("gemma4_text_v5.json")).value();
  ASSERT_EQ(m.kinds.size(), 2u);
  ASSERT_EQ(m.num_layers(), 30);
  EXPECT_EQ(m.kinds[0].layer_type, "sliding_attention");
  EXPECT_EQ(m.kinds[1].layer_type, "full_attention");
  for (std::int64_t l = 0; l < 30; ++l)
    EXPECT_EQ(m.layer_kind[static_cast<std::size_t>(l)], (l + 1) % 6 == 0 ? 1 : 0) << l;

  const RopeConfig& full = *m.layer(5).value();
  EXPECT_EQ(full.rope_type, RopeType::kProportional);
  EXPECT_EQ(full.spec.head_dim, 512);    // global_head_dim
  EXPECT_EQ(full.spec.rotary_dim, 128);  // 64 rotating pairs
  EXPECT_EQ(full.spec.freq_dim, 512);    // exponent 2i / 512
  const json& gf = case_named(golden, "gemma4_full_proportional");
  const Eigen::ArrayXd want_full = to_array(gf["inv_freq_f64"]);
  ASSERT_EQ(want_full.size(), 256);
  const ropescale::FactorTable tf = m.table_for_layer(5).value();
  EXPECT_LE(max_rel_error(tf.inv_freq(full.spec).value(), want_full.head(64)), 1e-12);
  EXPECT_TRUE((want_full.tail(192) == 0.0).all());  // HF's zero-frequency pairs: not rotated
  EXPECT_EQ(tf.attention_factor(), gf["attention_factor"].get<double>());

  const RopeConfig& sliding = *m.layer(0).value();
  EXPECT_EQ(sliding.rope_type, RopeType::kDefault);
  EXPECT_EQ(sliding.spec.head_dim, 256);
  EXPECT_EQ(sliding.spec.rotary_dim, 256);
  const json& gs = case_named(golden, "gemma4_sliding_default");
  const ropescale::FactorTable ts = m.table_for_layer(0).value();
  EXPECT_LE(max_rel_error(ts.inv_freq(sliding.spec).value(), to_array(gs["inv_freq_f64"])), 1e-12);
  EXPECT_EQ(ts.attention_factor(), gs["attention_factor"].get<double>());

  // Layer index checks; the single-table API names the kinds.
  expect_refused(m.layer(30).status(), ropescale::ErrorCode::kOutOfRange,
                 {"layer = 30", "[0, 30)"});
  expect_refused(ropescale::load_hf_config(data_path("gemma4_text_v5.json")).status(),
                 ropescale::ErrorCode::kUnsupported,
                 {"sliding_attention: default", "full_attention: proportional"});
  // The full-attention layers' width is read from global_head_dim, and a bad one is named so
  // (not as head_dim, which the sliding layers read).
  json bad = load_json("gemma4_text_v5.json");
  bad["global_head_dim"] = 0;
  expect_refused(model_status_of(bad), ropescale::ErrorCode::kInvalidArgument,
                 {"global_head_dim = 0: must be > 0"});
}

TEST(HfModels, ProportionalSingleBlockRoundTripsAndRefusesNtkStyleMethods) {
  const json j = json::parse(R"({"head_dim": 512, "max_position_embeddings": 131072,
      "rope_parameters": {"rope_type": "proportional", "partial_rotary_factor": 0.25,
                          "rope_theta": 1000000.0, "factor": 2.0}})");
  const RopeConfig c = ropescale::parse_hf_config(j).value();
  EXPECT_EQ(c.spec.rotary_dim, 128);
  EXPECT_EQ(c.spec.freq_dim, 512);
  EXPECT_LE(max_rel_error(c.table_for().value().inv_freq(c.spec).value(),
                          reference_inv_freq(1e6L, 512, 64, 2.0L)),
            1e-12);
  const RopeConfig back = ropescale::parse_hf_config(ropescale::to_hf_config(c).value()).value();
  EXPECT_TRUE(back == c) << ropescale::to_hf_config(c).value().dump();
  // NTK / YaRN have no definition on a proportional spec: refused, not guessed.
  const ropescale::Status st = ropescale::yarn_factors(c.spec, ropescale::YarnParams{}).status();
  expect_refused(st, ropescale::ErrorCode::kUnsupported, {"freq_dim = 512", "yarn"});
}

// ---------------------------------------------------------------------------------------------
// M-RoPE import
// ---------------------------------------------------------------------------------------------

TEST(HfModels, QwenVlSectionsAreRead) {
  // Qwen2-VL-7B: rope_scaling {"type": "mrope", "mrope_section": [16, 24, 24]}.
  const json q2 = json::parse(R"({"model_type": "qwen2_vl", "hidden_size": 3584,
      "num_attention_heads": 28, "rope_theta": 1000000.0, "max_position_embeddings": 32768,
      "rope_scaling": {"type": "mrope", "mrope_section": [16, 24, 24]}})");
  const RopeConfig a = ropescale::parse_hf_config(q2).value();
  EXPECT_EQ(a.rope_type, RopeType::kDefault);
  EXPECT_EQ(a.mrope_section, (std::vector<std::int64_t>{16, 24, 24}));
  EXPECT_FALSE(a.mrope_interleaved);
  EXPECT_LE(max_rel_error(a.table_for().value().inv_freq(a.spec).value(),
                          reference_inv_freq(1e6L, 128, 64)),
            1e-12);
  const ropescale::MropeSections sa(a.mrope_section, a.mrope_interleaved, a.spec.pairs());
  EXPECT_EQ(sa.axes()[15], 0);
  EXPECT_EQ(sa.axes()[16], 1);
  EXPECT_EQ(sa.axes()[40], 2);
  EXPECT_TRUE(ropescale::parse_hf_config(ropescale::to_hf_config(a).value()).value() == a);

  // Qwen3-VL: text_config, rope_type default, interleaved.
  const json q3 = json::parse(R"({"model_type": "qwen3_vl", "text_config": {
      "model_type": "qwen3_vl_text", "head_dim": 128, "hidden_size": 4096,
      "num_attention_heads": 32, "rope_theta": 5000000, "max_position_embeddings": 262144,
      "rope_scaling": {"rope_type": "default", "mrope_section": [24, 20, 20],
                       "mrope_interleaved": true}}})");
  const RopeConfig b = ropescale::parse_hf_config(q3).value();
  EXPECT_EQ(b.mrope_section, (std::vector<std::int64_t>{24, 20, 20}));
  EXPECT_TRUE(b.mrope_interleaved);
  const ropescale::MropeSections sb(b.mrope_section, b.mrope_interleaved, b.spec.pairs());
  EXPECT_EQ(sb.axes()[0], 0);
  EXPECT_EQ(sb.axes()[1], 1);
  EXPECT_EQ(sb.axes()[2], 2);
  EXPECT_EQ(sb.axes()[58], 1);  // 58 % 3 == 1, 58 < 60
  EXPECT_EQ(sb.axes()[61], 0);  // past 3 * 20: temporal

  // A top-level rope block next to a text_config without one belongs to the text model; two
  // different ones are refused.
  json q2n = json::parse(R"({"model_type": "qwen2_vl", "rope_theta": 1000000.0,
      "rope_scaling": {"type": "mrope", "mrope_section": [16, 24, 24]},
      "text_config": {"model_type": "qwen2_vl_text", "hidden_size": 3584,
        "num_attention_heads": 28, "max_position_embeddings": 32768}})");
  EXPECT_TRUE(ropescale::parse_hf_config(q2n).value() == a);
  q2n["text_config"]["rope_theta"] = 10000.0;
  expect_refused(status_of(q2n), ropescale::ErrorCode::kUnsupported,
                 {"rope_theta = \"1000000.0\"", "differs from text_config.rope_theta"});

  // Sections that do not cover the pairs, and mrope without sections, are refused by name.
  json bad = q2;
  bad["rope_scaling"]["mrope_section"] = json::array({16, 24, 25});
  expect_refused(status_of(bad), ropescale::ErrorCode::kInvalidArgument,
                 {"rope_scaling.mrope_section", "must sum to rotary_dim / 2 = 64"});
  bad["rope_scaling"].erase("mrope_section");
  expect_refused(status_of(bad), ropescale::ErrorCode::kUnsupported,
                 {"rope_scaling.type = \"mrope\"", "mrope_section"});
}

// ---------------------------------------------------------------------------------------------
// transformers v5 window rule
// ---------------------------------------------------------------------------------------------

TEST(HfModels, TopLevelOriginalWindowWinsInV5) {
  // standardize_rope_params: a top-level original_max_position_embeddings overwrites the
  // block's for yarn / llama3 / longrope.
  const json j = json::parse(R"({"head_dim": 128, "rope_theta": 10000,
      "max_position_embeddings": 131072, "original_max_position_embeddings": 8192,
      "rope_scaling": {"rope_type": "yarn", "factor": 16.0,
                       "original_max_position_embeddings": 4096}})");
  EXPECT_EQ(ropescale::parse_hf_config(j).value().yarn.original_max_position, 8192);
  ropescale::HfImportOptions dev;
  dev.yarn = ropescale::YarnSemantics::kDerivedFactor;  // the v5-dev code read the block first
  EXPECT_EQ(ropescale::parse_hf_config(j, dev).value().yarn.original_max_position, 4096);
  // The table follows the window: the correction range of YaRN (ramp between c(32) and c(1)).
  ropescale::RopeSpec spec;
  ropescale::YarnParams y;
  y.factor = 16.0;
  y.original_max_position = 8192;
  EXPECT_EQ(ropescale::parse_hf_config(j).value().table_for().value(),
            ropescale::yarn_factors(spec, y).value());
  EXPECT_EQ(ropescale::parse_hf_config(j).value().table_for().value().method(),
            ropescale::yarn_factors(spec, y).value().method());
}

}  // namespace

namespace {

// ---------------------------------------------------------------------------------------------
// LongRoPE mscale keys by family, dynamic NTK across calls
// ---------------------------------------------------------------------------------------------

TEST(HfModels, PhiMoeMscalesOverrideAndPhi3IgnoresThem) {
  json j = load_json("phi35_mini_instruct.json");
  j["rope_scaling"]["short_mscale"] = 1.243163121016122;  // Phi-3.5-MoE's published values
  j["rope_scaling"]["long_mscale"] = 1.243163121016122;
  j["rope_scaling"]["attention_factor"] = 1.5;
  j["model_type"] = "phimoe";  // PhimoeRotaryEmbedding: the set's mscale, else attention scaling
  RopeConfig c = ropescale::parse_hf_config(j).value();
  EXPECT_EQ(c.table_for(10).value().attention_factor(), 1.243163121016122);
  EXPECT_EQ(c.table_for(10000).value().attention_factor(), 1.243163121016122);
  j["rope_scaling"].erase("long_mscale");
  c = ropescale::parse_hf_config(j).value();
  EXPECT_EQ(c.table_for(10000).value().attention_factor(), 1.5);
  EXPECT_TRUE(ropescale::parse_hf_config(ropescale::to_hf_config(c).value()).value() == c);
  j["model_type"] = "phi3";  // Phi3RotaryEmbedding never reads the mscale keys
  j["rope_scaling"].erase("attention_factor");
  c = ropescale::parse_hf_config(j).value();
  EXPECT_EQ(c.table_for(10).value().attention_factor(),
            std::sqrt(1 + std::log(32.0) / std::log(4096.0)));
}

TEST(HfModels, DynamicNtkGrowsLikeTheHfModule) {
  const json j = json::parse(R"({"head_dim": 128, "rope_theta": 10000,
      "max_position_embeddings": 4096, "rope_scaling": {"type": "dynamic", "factor": 4.0}})");
  const RopeConfig c = ropescale::parse_hf_config(j).value();
  ropescale::DynamicNtkState state(c.spec, c.factor, c.max_position_embeddings);
  // (seq_len of the call, the length HF's cached table is built for afterwards)
  const std::vector<std::pair<std::int64_t, std::int64_t>> steps = {
      {100, 4096}, {8192, 8192}, {5000, 8192}, {9000, 9000}, {3000, 4096}, {6000, 6000}};
  for (const auto& [seq, cached] : steps) {
    SCOPED_TRACE(seq);
    const ropescale::FactorTable t = state.update(seq).value();
    EXPECT_EQ(state.cached_seq_len(), cached);
    EXPECT_EQ(t, ropescale::dynamic_ntk_factors(c.spec, 4.0, 4096, cached).value());
    EXPECT_EQ(t.method(),
              ropescale::dynamic_ntk_factors(c.spec, 4.0, 4096, cached).value().method());
  }
  // The stateless table for 5000 tokens differs from what the module uses after 8192.
  EXPECT_NE(ropescale::dynamic_ntk_factors(c.spec, 4.0, 4096, 5000).value(),
            ropescale::dynamic_ntk_factors(c.spec, 4.0, 4096, 8192).value());
  EXPECT_EQ(state.update(0).status().code(), ropescale::ErrorCode::kInvalidArgument);
  EXPECT_EQ(state.cached_seq_len(), 6000) << "an error leaves the state as it was";
  EXPECT_EQ(ropescale::DynamicNtkState::make(c.spec, 0.5, 4096).status().argument(), "factor");
}

}  // namespace
