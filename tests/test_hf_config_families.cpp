// The 2025-2026 families whose config.json needs more than the generic rules: config-class
// defaults (GLM partial_rotary_factor 0.5, ...), HunYuan's dynamic + alpha, layers without RoPE
// (Llama 4, SmolLM3, Qwen3-Next), Gemma 3n's per-layer tables, OLMo 3's sliding layers, and the
// attention scale terms beside the tables (DeepSeek-V3 softmax scale, Ministral 3 query scale,
// Llama 4 temperature tuning).
//
// Goldens: tests/data/inv_freq_families.json, produced by transformers v5's functions
// (modeling_rope_utils.py _compute_default_rope_parameters / _compute_llama3_parameters /
// _compute_yarn_parameters, HunYuanDenseV1RotaryEmbedding.__init__, Llama4TextAttention.forward,
// Ministral 3's get_llama_4_attn_scale, DeepseekV3Attention.__init__) run under torch in float32
// as written and in float64 (its `meta` says so). Configs: tests/data/*.json (their `_note` names
// the published model).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "ropescale/io/hf_config.hpp"
#include "ropescale/io/hf_export.hpp"
#include "ropescale/mrope.hpp"
#include "test_data.hpp"

namespace {

using nlohmann::json;
using ropescale::ErrorCode;
using ropescale::ModelRope;
using ropescale::RopeConfig;
using ropescale::RopeType;
using ropescale::Status;
using ropescale_test::data_path;
using ropescale_test::load_json;
using ropescale_test::max_rel_error;
using ropescale_test::to_array;

const json& golden() {
  static const json g = load_json("inv_freq_families.json");
  return g;
}

const json& case_named(const std::string& name) {
  for (const json& c : golden()["cases"])
    if (c["name"] == name) return c;
  ADD_FAILURE() << "no golden case " << name;
  static const json kNull;
  return kNull;
}

// The table's inv_freq against HF's: float64 to 1e-14 relative, float32 to its rounding.
void expect_inv_freq(const RopeConfig& c, const std::string& name, std::int64_t seq_len = 0) {
  const json& g = case_named(name);
  const Eigen::ArrayXd got = c.table_for(seq_len).value().inv_freq(c.spec).value();
  const Eigen::ArrayXd f64 = to_array(g["inv_freq_f64"]);
  const Eigen::ArrayXd f32 = to_array(g["inv_freq_f32"]);
  ASSERT_EQ(got.size(), f64.size()) << name;
  EXPECT_LT(max_rel_error(got, f64), 1e-13) << name;
  EXPECT_LT(max_rel_error(got, f32), 2e-6) << name;
}

void expect_error(const Status& st, ErrorCode code, const std::vector<std::string>& needles) {
  EXPECT_EQ(st.code(), code) << st.message();
  for (const std::string& n : needles)
    EXPECT_NE(st.message().find(n), std::string::npos) << "'" << n << "' not in " << st.message();
}

// The status of reading j; *m holds the model when it is ok.
Status model_status(const json& j, ModelRope* m = nullptr) {
  ropescale::Result<ModelRope> r = ropescale::parse_hf_model(j);
  if (r.ok() && m != nullptr) *m = std::move(r).value();
  return r.status();
}

bool has_default(const ModelRope& m, const std::string& text) {
  for (const std::string& d : m.class_defaults)
    if (d == text) return true;
  return false;
}

// ---------------------------------------------------------------------------------------------
// Config-class defaults
// ---------------------------------------------------------------------------------------------

TEST(HfFamilies, GlmGetsGlmConfigsHalfRotaryFactor) {
  // GLM-4-9B-chat-hf omits partial_rotary_factor; GlmConfig sets 0.5: 64 channels (32 pairs)
  // rotate, with exponent 2i/64.
  const ModelRope m = ropescale::load_hf_model(data_path("glm4_9b_chat_hf.json")).value();
  ASSERT_TRUE(m.uniform());
  const RopeConfig& c = m.kinds[0].config;
  EXPECT_EQ(c.spec.head_dim, 128);
  EXPECT_EQ(c.spec.rotary_dim, 64);
  EXPECT_TRUE(c.interleaved_pairs);  // rotate_half_llm
  expect_inv_freq(c, "glm4_9b_hf_default_partial_half");
  EXPECT_TRUE(has_default(m, "partial_rotary_factor = 0.5 (GlmConfig default)"));
  // A config that says 1.0 keeps it, and nothing is reported as a default.
  json full = load_json("glm4_9b_chat_hf.json");
  full["partial_rotary_factor"] = 1.0;
  const ModelRope f = ropescale::parse_hf_model(full).value();
  EXPECT_EQ(f.kinds[0].config.spec.rotary_dim, 128);
  EXPECT_TRUE(f.class_defaults.empty());
  // v5 moves the factor into rope_parameters: the block's value counts as given.
  json v5 = load_json("glm4_9b_chat_hf.json");
  v5["rope_parameters"] = {{"rope_type", "default"}, {"partial_rotary_factor", 0.75}};
  EXPECT_EQ(ropescale::parse_hf_config(v5).value().spec.rotary_dim, 96);
}

TEST(HfFamilies, ClassDefaultTableRows) {
  struct Row {
    const char* model_type;
    std::int64_t rotary_dim;
    const char* reported;
  };
  // hidden_size 4096 / 32 heads = 128 unless the class sets head_dim.
  const Row rows[] = {
      {"glm4_moe", 64, "partial_rotary_factor = 0.5 (Glm4MoeConfig default)"},
      {"glm4", 64, "partial_rotary_factor = 0.5 (Glm4Config default)"},
      {"nemotron", 64, "partial_rotary_factor = 0.5 (NemotronConfig default)"},
      {"recurrent_gemma", 64, "partial_rotary_factor = 0.5 (RecurrentGemmaConfig default)"},
      {"phi", 64, "partial_rotary_factor = 0.5 (PhiConfig default)"},
      {"stablelm", 32, "partial_rotary_factor = 0.25 (StableLmConfig default)"},
      {"qwen3_5_moe_text", 32, "partial_rotary_factor = 0.25 (Qwen3_5MoeTextConfig default)"},
      {"gpt_neox", 32, "rotary_pct = 0.25 (GPTNeoXConfig default)"},  // not rotary_emb_base
      {"llama", 128, nullptr},
  };
  for (const Row& r : rows) {
    const json j = {{"model_type", r.model_type},
                    {"hidden_size", 4096},
                    {"num_attention_heads", 32},
                    {"rope_theta", 10000.0},
                    {"max_position_embeddings", 4096}};
    ModelRope m;
    ASSERT_TRUE(model_status(j, &m).ok()) << r.model_type << ": " << model_status(j).message();
    EXPECT_EQ(m.kinds[0].config.spec.rotary_dim, r.rotary_dim) << r.model_type;
    if (r.reported != nullptr) {
      EXPECT_TRUE(has_default(m, r.reported)) << r.model_type;
    } else {
      EXPECT_TRUE(m.class_defaults.empty()) << r.model_type;
    }
    if (std::string(r.model_type) == "gpt_neox") {
      EXPECT_EQ(m.class_defaults.size(), 1u);  // rope_theta is given: no rotary_emb_base default
    }
  }
  // Persimmon: half rotates, theta 25000 from the class when the file has none.
  const json p = {{"model_type", "persimmon"},
                  {"hidden_size", 4096},
                  {"num_attention_heads", 64},
                  {"max_position_embeddings", 16384}};
  ModelRope m;
  ASSERT_TRUE(model_status(p, &m).ok());
  EXPECT_EQ(m.kinds[0].config.spec.rotary_dim, 32);
  EXPECT_EQ(m.kinds[0].config.spec.rope_theta, 25000.0);
  EXPECT_TRUE(has_default(m, "rope_theta = 25000 (PersimmonConfig default)"));
}

// ---------------------------------------------------------------------------------------------
// HunYuan dynamic + alpha
// ---------------------------------------------------------------------------------------------

TEST(HfFamilies, HunYuanAlphaIsAFixedBaseAtEveryLength) {
  const RopeConfig c = ropescale::load_hf_config(data_path("hunyuan_7b_instruct.json")).value();
  EXPECT_EQ(c.rope_type, RopeType::kDynamic);
  EXPECT_EQ(c.ntk_alpha, 1000.0);
  for (std::int64_t seq :
       {std::int64_t{0}, std::int64_t{1024}, std::int64_t{32768}, std::int64_t{300000}})
    expect_inv_freq(c, "hunyuan_7b_alpha_1000", seq);
  EXPECT_EQ(c.table_for(0).value().attention_factor(), 1.0);
  // Round trip keeps alpha (and the family that gives it meaning).
  EXPECT_EQ(ropescale::parse_hf_config(ropescale::to_hf_config(c).value()).value(), c);
  // Another family's dynamic NTK ignores alpha, as HF's generic dynamic does.
  json other = load_json("hunyuan_7b_instruct.json");
  other["model_type"] = "llama";
  const RopeConfig o = ropescale::parse_hf_config(other).value();
  EXPECT_EQ(o.ntk_alpha, 0.0);
  EXPECT_EQ(o.table_for(0).value().factors()[63], 1.0);
}

TEST(HfFamilies, HunYuanAlphaHostileValues) {
  const json base = load_json("hunyuan_7b_instruct.json");
  auto with_alpha = [&](const json& a) {
    json j = base;
    j["rope_scaling"]["alpha"] = a;
    return ropescale::parse_hf_config(j).status();
  };
  expect_error(with_alpha("1000"), ErrorCode::kParseError,
               {"rope_scaling.alpha = \"1000\"", "must be a number"});
  expect_error(with_alpha(0.5), ErrorCode::kInvalidArgument,
               {"rope_scaling.alpha = 0.5", "must be >= 1"});
  expect_error(with_alpha(json::array({1, 2})), ErrorCode::kParseError, {"rope_scaling.alpha"});
  // A base beyond what the generators allow is named as alpha, not as factor.
  expect_error(with_alpha(1e300), ErrorCode::kInvalidArgument,
               {"rope_scaling.alpha = 1.0000000000000001e+300", "must be <= kMaxRopeTheta"});
  // Alpha with a partial rotary width is not defined by HF's code (it rotates head_dim).
  json partial = base;
  partial["partial_rotary_factor"] = 0.5;
  expect_error(ropescale::parse_hf_config(partial).status(), ErrorCode::kUnsupported,
               {"rope_scaling.alpha = 1000", "whole head_dim"});
  // Without alpha, HunYuan's dynamic needs its factor like any dynamic block.
  json no_alpha = base;
  no_alpha["rope_scaling"].erase("alpha");
  no_alpha["rope_scaling"].erase("factor");
  expect_error(ropescale::parse_hf_config(no_alpha).status(), ErrorCode::kParseError,
               {"rope_scaling.factor"});
}

// ---------------------------------------------------------------------------------------------
// Layers without RoPE
// ---------------------------------------------------------------------------------------------

TEST(HfFamilies, Llama4ScoutLoadsWithNopeLayersNamed) {
  const ModelRope m = ropescale::load_hf_model(data_path("llama4_scout_text.json")).value();
  ASSERT_EQ(m.num_layers(), 48);
  EXPECT_FALSE(m.uniform());
  ASSERT_EQ(m.kinds.size(), 1u);
  EXPECT_EQ(m.nope_source, "no_rope_layers");
  const std::vector<std::int64_t> nope = m.nope_layers();
  ASSERT_EQ(nope.size(), 12u);
  for (std::size_t i = 0; i < nope.size(); ++i)
    EXPECT_EQ(nope[i], static_cast<std::int64_t>(4 * i + 3));
  const RopeConfig& c = *m.layer(0).value();
  EXPECT_EQ(c.rope_type, RopeType::kLlama3);
  EXPECT_TRUE(c.interleaved_pairs);  // view_as_complex over adjacent channels
  expect_inv_freq(c, "llama4_scout_llama3_16");
  EXPECT_EQ(m.attention_chunk_size, 8192);
  EXPECT_TRUE(m.scales.temperature_tuning.enabled);
  EXPECT_EQ(m.scales.temperature_tuning.floor_scale, 8192.0);
  EXPECT_EQ(m.scales.temperature_tuning.attn_scale, 0.1);
  // A NoPE layer has no spec, table or kernel call: a clear error naming it.
  EXPECT_TRUE(m.has_rope(2));
  EXPECT_FALSE(m.has_rope(3));
  expect_error(m.layer(7).status(), ErrorCode::kInvalidArgument,
               {"layer = 7", "has no RoPE", "text_config.no_rope_layers"});
  expect_error(m.table_for_layer(47).status(), ErrorCode::kInvalidArgument, {"layer = 47"});
  EXPECT_THROW(m.table_for_layer(3).value(), ropescale::Error);
  EXPECT_THROW(m.layer(3).value(), ropescale::Error);
  // The single-RoPE reader refuses rather than rotating every layer.
  expect_error(ropescale::load_hf_config(data_path("llama4_scout_text.json"), {}).status(),
               ErrorCode::kUnsupported, {"text_config.no_rope_layers", "first: layer 3"});
}

TEST(HfFamilies, Llama4WithoutTheListDerivesEveryFourthLayer) {
  json j = load_json("llama4_scout_text.json");
  j["text_config"]["no_rope_layers"] = json::array();  // Llama4TextConfig: [] means derive
  j["text_config"]["no_rope_layer_interval"] = 4;
  ModelRope m;
  ASSERT_TRUE(model_status(j, &m).ok());
  EXPECT_EQ(m.nope_source, "no_rope_layer_interval");
  const ModelRope listed = ropescale::load_hf_model(data_path("llama4_scout_text.json")).value();
  EXPECT_EQ(m.nope_layers(), listed.nope_layers());
  j["text_config"]["no_rope_layer_interval"] = 3;
  ASSERT_TRUE(model_status(j, &m).ok());
  EXPECT_EQ(m.nope_layers().size(), 16u);
  EXPECT_EQ(m.nope_layers()[0], 2);
}

TEST(HfFamilies, SmolLm3AndQwen3NextNopeLayers) {
  const ModelRope s = ropescale::load_hf_model(data_path("smollm3_3b.json")).value();
  ASSERT_EQ(s.num_layers(), 36);
  EXPECT_EQ(s.nope_layers().size(), 9u);
  EXPECT_FALSE(s.has_rope(35));
  EXPECT_TRUE(s.has_rope(34));
  EXPECT_FALSE(s.scales.temperature_tuning.enabled);  // Llama 4 only
  EXPECT_EQ(s.layer(0).value()->spec.rope_theta, 5e6);
  // Qwen3-Next: layer_types derived from full_attention_interval; linear attention has no RoPE.
  const ModelRope q = ropescale::load_hf_model(data_path("qwen3_next_80b_a3b.json")).value();
  ASSERT_EQ(q.num_layers(), 48);
  EXPECT_EQ(q.nope_source, "layer_types");
  EXPECT_EQ(q.nope_layers().size(), 36u);
  EXPECT_EQ(q.layer_types[0], "linear_attention");
  EXPECT_EQ(q.layer_types[3], "full_attention");
  ASSERT_EQ(q.kinds.size(), 1u);
  EXPECT_EQ(q.kinds[0].layer_type, "full_attention");
  EXPECT_EQ(q.layer(3).value()->spec.rotary_dim, 64);
  expect_inv_freq(*q.layer(3).value(), "qwen3_next_partial_quarter");
  expect_error(q.layer(0).status(), ErrorCode::kInvalidArgument, {"layer = 0", "layer_types"});
}

TEST(HfFamilies, NopeFieldsHostileValues) {
  const json base = {{"model_type", "smollm3"},   {"hidden_size", 2048},
                     {"num_attention_heads", 16}, {"num_hidden_layers", 4},
                     {"rope_theta", 5e6},         {"max_position_embeddings", 65536}};
  auto with = [&](const char* key, const json& v) {
    json j = base;
    j[key] = v;
    return model_status(j);
  };
  expect_error(with("no_rope_layers", "1110"), ErrorCode::kParseError,
               {"no_rope_layers = \"1110\"", "must be an array"});
  expect_error(with("no_rope_layers", json::array({1, 2, 1, 0})), ErrorCode::kInvalidArgument,
               {"no_rope_layers[1] = 2", "must be 0 (no RoPE) or 1 (RoPE)"});
  expect_error(with("no_rope_layers", json::array({1, "x", 1, 0})), ErrorCode::kParseError,
               {"no_rope_layers[1] = \"x\""});
  expect_error(with("no_rope_layers", json::array({1, 1, 0})), ErrorCode::kInvalidArgument,
               {"no_rope_layers.size() = 3", "must equal the number of layers (4)"});
  expect_error(with("no_rope_layers", json::array({0, 0, 0, 0})), ErrorCode::kUnsupported,
               {"no_rope_layers", "no layer has RoPE"});
  expect_error(with("no_rope_layer_interval", 0), ErrorCode::kInvalidArgument,
               {"no_rope_layer_interval = 0", "must be > 0"});
  expect_error(with("no_rope_layer_interval", "4"), ErrorCode::kParseError,
               {"no_rope_layer_interval = \"4\""});
  json huge = base;
  huge.erase("num_hidden_layers");
  huge["no_rope_layers"] =
      json(std::vector<int>(static_cast<std::size_t>(ropescale::kMaxConfigLayers + 1), 1));
  expect_error(model_status(huge), ErrorCode::kInvalidArgument,
               {"no_rope_layers.size() = 1048577", "kMaxConfigLayers"});
  // Qwen3-Next's full_attention_interval.
  json qn = load_json("qwen3_next_80b_a3b.json");
  qn["full_attention_interval"] = 0;
  expect_error(model_status(qn), ErrorCode::kInvalidArgument,
               {"full_attention_interval = 0", "must be > 0"});
  qn["full_attention_interval"] = "4";
  expect_error(model_status(qn), ErrorCode::kParseError, {"full_attention_interval = \"4\""});
  qn["full_attention_interval"] = 1;  // every layer full attention: no NoPE layer
  ModelRope all_full;
  ASSERT_TRUE(model_status(qn, &all_full).ok());
  EXPECT_TRUE(all_full.nope_layers().empty());
  // Booleans are read as HF's truthiness.
  ModelRope m;
  json b = base;
  b["no_rope_layers"] = json::array({true, true, true, false});
  ASSERT_TRUE(model_status(b, &m).ok());
  EXPECT_EQ(m.nope_layers(), std::vector<std::int64_t>{3});
}

// ---------------------------------------------------------------------------------------------
// Gemma 3n and OLMo 3: per-layer tables
// ---------------------------------------------------------------------------------------------

TEST(HfFamilies, Gemma3nSlidingLayersUseTheLocalBase) {
  const ModelRope m = ropescale::load_hf_model(data_path("gemma3n_e4b_it.json")).value();
  ASSERT_EQ(m.num_layers(), 35);
  ASSERT_EQ(m.kinds.size(), 2u);
  for (std::int64_t l = 0; l < 35; ++l)
    EXPECT_EQ(m.layer(l).value()->spec.rope_theta, (l + 1) % 5 == 0 ? 1e6 : 1e4) << l;
  expect_inv_freq(*m.layer(0).value(), "gemma3n_sliding_local_base");
  expect_inv_freq(*m.layer(4).value(), "gemma3n_full");
  // Without layer_types (and the other fields), Gemma3nTextConfig's defaults give the same model.
  const json bare = {{"text_config", {{"model_type", "gemma3n_text"}, {"hidden_size", 2048}}}};
  const ModelRope d = ropescale::parse_hf_model(bare).value();
  ASSERT_EQ(d.num_layers(), 35);
  for (std::int64_t l = 0; l < 35; ++l)
    EXPECT_EQ(d.layer(l).value()->spec.rope_theta, m.layer(l).value()->spec.rope_theta) << l;
  EXPECT_TRUE(has_default(d, "rope_local_base_freq = 10000 (Gemma3nTextConfig default)"));
}

TEST(HfFamilies, Olmo3TrainedByDefaultTransformersV5OnRequest) {
  const ModelRope m = ropescale::load_hf_model(data_path("olmo3_7b.json")).value();
  ASSERT_EQ(m.kinds.size(), 2u);
  const RopeConfig& sliding = *m.layer(0).value();
  const RopeConfig& full = *m.layer(3).value();
  EXPECT_EQ(sliding.rope_type, RopeType::kDefault);
  EXPECT_EQ(full.rope_type, RopeType::kYarn);
  expect_inv_freq(sliding, "olmo3_sliding_default");
  expect_inv_freq(full, "olmo3_yarn8_full");
  EXPECT_DOUBLE_EQ(full.table_for(0).value().attention_factor(),
                   case_named("olmo3_yarn8_full")["attention_factor"].get<double>());
  EXPECT_EQ(sliding.table_for(0).value().attention_factor(), 1.0);
  // transformers v5 main: one YaRN rotary embedding for every layer.
  ropescale::HfImportOptions v5;
  v5.olmo3 = ropescale::Olmo3Rope::kTransformersV5;
  const ModelRope u = ropescale::load_hf_model(data_path("olmo3_7b.json"), v5).value();
  ASSERT_TRUE(u.uniform());
  expect_inv_freq(*u.layer(0).value(), "olmo3_yarn8_full");
}

// ---------------------------------------------------------------------------------------------
// Scale terms beside the table
// ---------------------------------------------------------------------------------------------

TEST(HfFamilies, ScaleTermsMatchTheirHfFormulas) {
  const json& s = golden()["scale_terms"];
  const std::vector<std::int64_t> pos = s["positions"].get<std::vector<std::int64_t>>();
  // Llama 4: NoPE layers only.
  const ModelRope l4 = ropescale::load_hf_model(data_path("llama4_scout_text.json")).value();
  const std::vector<double> tt = s["llama4_temperature_tuning"]["scale"].get<std::vector<double>>();
  for (std::size_t i = 0; i < pos.size(); ++i) {
    EXPECT_NEAR(l4.query_scale(3, pos[i]).value(), tt[i], 1e-15) << pos[i];
    EXPECT_EQ(l4.query_scale(0, pos[i]).value(), 1.0);
  }
  EXPECT_EQ(l4.scales.softmax_scale, 1.0);
  // Ministral 3: every layer, from rope_parameters.llama_4_scaling_beta.
  const ModelRope mi = ropescale::load_hf_model(data_path("ministral3_8b_text.json")).value();
  EXPECT_EQ(mi.scales.llama4_scaling_beta, 0.1);
  EXPECT_EQ(mi.scales.llama4_scaling_original, 16384);
  const std::vector<double> ms = s["ministral3_query_scale"]["scale"].get<std::vector<double>>();
  for (std::size_t i = 0; i < pos.size(); ++i)
    EXPECT_NEAR(mi.query_scale(5, pos[i]).value(), ms[i], 1e-15) << pos[i];
  // DeepSeek-V3: softmax scale mscale(40, 1)^2.
  const ModelRope ds = ropescale::load_hf_model(data_path("deepseek_v3.json")).value();
  EXPECT_NEAR(ds.scales.softmax_scale,
              s["deepseek_v3_softmax_scale"]["mscale_squared"].get<double>(), 1e-15);
  EXPECT_EQ(ds.query_scale(0, 100000).value(), 1.0);
  // A plain model has no terms.
  EXPECT_TRUE(ropescale::load_hf_model(data_path("llama31_8b.json")).value().scales.identity());
  expect_error(l4.query_scale(3, -1).status(), ErrorCode::kOutOfRange, {"pos = -1"});
  expect_error(l4.query_scale(48, 0).status(), ErrorCode::kOutOfRange, {"layer = 48"});
}

TEST(HfFamilies, ScaleTermHostileValues) {
  json mi = load_json("ministral3_8b_text.json");
  auto ministral = [&](const json& beta) {
    json j = mi;
    j["text_config"]["rope_parameters"]["llama_4_scaling_beta"] = beta;
    return model_status(j);
  };
  expect_error(ministral("0.1"), ErrorCode::kParseError,
               {"text_config.rope_parameters.llama_4_scaling_beta = \"0.1\""});
  expect_error(ministral(-0.1), ErrorCode::kInvalidArgument,
               {"llama_4_scaling_beta = -0.1", "must be in [0, 1000]"});
  json no_window = mi;
  no_window["text_config"]["rope_parameters"] = {
      {"rope_type", "default"}, {"rope_theta", 1e9}, {"llama_4_scaling_beta", 0.1}};
  expect_error(model_status(no_window), ErrorCode::kParseError,
               {"rope_parameters.original_max_position_embeddings", "missing"});
  json l4 = load_json("llama4_scout_text.json");
  auto llama4 = [&](const char* key, const json& v) {
    json j = l4;
    j["text_config"][key] = v;
    return model_status(j);
  };
  expect_error(llama4("floor_scale", 0), ErrorCode::kInvalidArgument,
               {"text_config.floor_scale = 0", "must be > 0"});
  expect_error(llama4("attn_scale", "x"), ErrorCode::kParseError, {"text_config.attn_scale"});
  expect_error(llama4("attn_temperature_tuning", "yes"), ErrorCode::kParseError,
               {"text_config.attn_temperature_tuning = \"yes\""});
  expect_error(llama4("attention_chunk_size", -8), ErrorCode::kInvalidArgument,
               {"text_config.attention_chunk_size = -8"});
  ModelRope off;
  json j = l4;
  j["text_config"]["attn_temperature_tuning"] = 0;  // published configs write 4 or 0
  ASSERT_TRUE(model_status(j, &off).ok());
  EXPECT_EQ(off.query_scale(3, 1000000).value(), 1.0);
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// ERNIE 4.5 pairing and 3D layout; HunYuan-VL xdrope (4 axes)
// ---------------------------------------------------------------------------------------------

namespace {

// Applies the config's M-RoPE to the golden q (one head) at the golden positions and compares
// with HF's q_embed (float64).
void expect_mrope_golden(const std::string& config_file, const std::string& case_name) {
  const json golden_file = load_json("mrope_families.json");
  const json* g = nullptr;
  for (const json& c : golden_file["cases"])
    if (c["name"] == case_name) g = &c;
  ASSERT_NE(g, nullptr) << case_name;
  const RopeConfig c = ropescale::load_hf_config(data_path(config_file)).value();
  ASSERT_TRUE(c.is_mrope());
  const ropescale::MropeSections sections(c.mrope_section, c.mrope_layout, c.spec.pairs());
  const ropescale::RotaryFrequencies freqs(c.spec, c.table_for(0).value());
  const std::vector<std::vector<std::int64_t>> rows = (*g)["positions"];
  const std::int64_t tokens = static_cast<std::int64_t>(rows[0].size());
  ASSERT_EQ(static_cast<std::int64_t>(rows.size()), sections.num_axes());
  std::vector<std::int64_t> positions;
  for (const auto& r : rows) positions.insert(positions.end(), r.begin(), r.end());
  std::vector<double> q;
  for (const json& row : (*g)["q"])
    for (const json& v : row) q.push_back(v.get<double>());
  ropescale::throw_if_error(ropescale::rotate_mrope(
      freqs, sections, positions.data(),
      ropescale::HeadsView<double>::tokens_heads_dim(q.data(), tokens, 1, c.spec.head_dim),
      c.interleaved_pairs ? ropescale::PairLayout::kInterleaved
                          : ropescale::PairLayout::kHalfSplit));
  double worst = 0;
  std::size_t k = 0;
  for (const json& row : (*g)["q_embed"])
    for (const json& v : row) worst = std::max(worst, std::abs(q[k++] - v.get<double>()));
  EXPECT_LT(worst, 1e-12) << case_name;
}

}  // namespace

TEST(HfFamilies, Ernie45PairsAdjacentChannels) {
  const RopeConfig c = ropescale::load_hf_config(data_path("ernie45_0p3b.json")).value();
  EXPECT_TRUE(c.interleaved_pairs);
  EXPECT_FALSE(c.is_mrope());
}

TEST(HfFamilies, Ernie45VlThreeDLayoutMatchesHf) {
  const RopeConfig c = ropescale::load_hf_config(data_path("ernie45_vl_28b_a3b.json")).value();
  EXPECT_EQ(c.mrope_layout, ropescale::MropeLayout::kErnie3d);
  EXPECT_TRUE(c.interleaved_pairs);
  expect_mrope_golden("ernie45_vl_28b_a3b.json", "ernie45_vl_3d");
  EXPECT_EQ(ropescale::parse_hf_config(ropescale::to_hf_config(c).value()).value(), c);
  // Unequal h / w sections have no layout in HF's code: refused by name.
  json bad = load_json("ernie45_vl_28b_a3b.json");
  bad["text_config"]["rope_parameters"]["mrope_section"] = json::array({20, 24, 20});
  expect_error(model_status(bad), ErrorCode::kInvalidArgument,
               {"text_config.rope_parameters.mrope_section[1] = 24", "must equal"});
  bad["text_config"]["rope_parameters"]["mrope_section"] = json::array({22, 22, 10, 10});
  expect_error(model_status(bad), ErrorCode::kInvalidArgument,
               {"mrope_section.size() = 4", "ernie_3d"});
}

TEST(HfFamilies, HunYuanVlXdropeFourAxesMatchHf) {
  const RopeConfig c = ropescale::load_hf_config(data_path("hunyuan_ocr.json")).value();
  EXPECT_EQ(c.rope_type, RopeType::kDynamic);
  EXPECT_EQ(c.ntk_alpha, 1000.0);
  EXPECT_EQ(c.mrope_section, (std::vector<std::int64_t>{16, 16, 16, 16}));
  EXPECT_EQ(c.mrope_layout, ropescale::MropeLayout::kSectioned);
  expect_mrope_golden("hunyuan_ocr.json", "hunyuan_vl_xdrope");
}

TEST(HfFamilies, MropeSectionHostileValues) {
  const json base = load_json("hunyuan_ocr.json");
  auto with = [&](const char* key, const json& v) {
    json j = base;
    j["rope_scaling"][key] = v;
    return model_status(j);
  };
  expect_error(with("xdrope_section", json::array({16, 16, 16, 16, 0})), ErrorCode::kParseError,
               {"rope_scaling.xdrope_section", "1 to 4 integers"});
  expect_error(with("xdrope_section", json::array({16, 16, 16, 17})), ErrorCode::kInvalidArgument,
               {"must sum to rotary_dim / 2 = 64"});
  expect_error(with("xdrope_section", json::array({16, 16, "16", 16})), ErrorCode::kParseError,
               {"rope_scaling.xdrope_section[2] = \"16\""});
  expect_error(with("xdrope_section", json(std::vector<int>(100000, 0))), ErrorCode::kParseError,
               {"rope_scaling.xdrope_section"});
  expect_error(with("mrope_section", json::array({32, 32})), ErrorCode::kInvalidArgument,
               {"rope_scaling.xdrope_section", "differs from mrope_section"});
  expect_error(with("xdrope_section", -1), ErrorCode::kParseError, {"rope_scaling.xdrope_section"});
  json interleaved = base;
  interleaved["rope_scaling"]["mrope_interleaved"] = true;
  expect_error(model_status(interleaved), ErrorCode::kInvalidArgument,
               {"xdrope_section.size() = 4", "interleaved"});
}
