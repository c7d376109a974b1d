// Seeded mutation fuzzing of the config.json importer and the search checkpoint reader, bounded
// in time so it runs in ctest.
//
// Seeds are the real model configs and the golden-case configs. Each input gets 1-4 mutations,
// either on the text (byte flips, JSON-token insertions, deletions, duplications, truncation,
// runs of 100k opening brackets) or on the parsed tree (a node replaced by a hostile value: deep
// nesting, huge integers, megabyte strings, nested per-layer rope_parameters blocks; a key removed
// or added, an array resized, inf/nan injected through the json API). Every input must give
// either an error with a short "ropescale: " message or a config whose tables are valid and which
// survives an export/import round trip unchanged. The checkpoint reader gets the same treatment
// from a real checkpoint: an error, or a state that validates. The fused KV-cache append gets
// random page tables and slot maps (kv_cache_fuzz.hpp). Crashes, hangs and sanitizer reports fail
// the test by themselves (the ASan+UBSan CI configuration runs it too).
#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <cstdint>
#include <fstream>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "fuzz_driver.hpp"
#include "kv_cache_fuzz.hpp"
#include "ropescale/io/hf_config.hpp"
#include "ropescale/io/hf_export.hpp"
#include "ropescale/io/search_checkpoint.hpp"
#include "test_data.hpp"

namespace {

using ropescale_test::load_json;

using nlohmann::json;

// 2 s per test and at least 300 inputs, at most 200,000 unless ROPESCALE_FUZZ_SECONDS asks for a
// longer run (fuzz_driver.hpp); ROPESCALE_FUZZ_SEED overrides the seed.
constexpr ropescale_test::FuzzDriver kFuzz{0x5eed2502200820ULL, 2.0, 300, 200000};

std::vector<json> seeds() {
  std::vector<json> out;
  for (const char* name : {"phi35_mini_instruct.json", "phi4_mini_instruct.json", "llama31_8b.json",
                           "llama3_8b_longrope2.json"})
    out.push_back(load_json(name));
  const json golden = load_json("inv_freq.json");
  for (const json& c : golden["cases"]) out.push_back(c["config"]);
  return out;
}

// A v5 per-layer config with n distinct layer types (each its own rope_parameters block) and a
// filler array of `filler` numbers: the importer's work must be linear in the config's size, not
// (types x config), so 4,000 types beside a 100k-entry field take a fraction of a second (before:
// one copy of the whole config per type, 4,000 x 100k JSON nodes, several GB).
json many_types_config(int n, int filler) {
  json j = {{"model_type", "llama"},
            {"head_dim", 64},
            {"max_position_embeddings", 4096},
            {"num_hidden_layers", n}};
  json types = json::array(), block = json::object();
  for (int i = 0; i < n; ++i) {
    const std::string t = "t" + std::to_string(i);
    types.push_back(t);
    block[t] = {{"rope_type", "default"}, {"rope_theta", 10000.0 + (i % 2 == 0 ? i : 0)}};
  }
  j["layer_types"] = types;
  j["rope_parameters"] = block;
  j["filler"] = json(std::vector<int>(static_cast<std::size_t>(filler), 7));
  return j;
}

// Configs with per-layer RoPE, nesting, MLA and M-RoPE sections, for the model-level importer.
std::vector<json> model_seeds() {
  std::vector<json> out = seeds();
  for (const char* name : {"deepseek_v3.json", "gemma4_text_v5.json", "gemma3_4b_it.json",
                           "qwen25_yarn4.json", "glm4_9b_chat_hf.json", "hunyuan_7b_instruct.json",
                           "llama4_scout_text.json", "smollm3_3b.json", "qwen3_next_80b_a3b.json",
                           "gemma3n_e4b_it.json", "olmo3_7b.json", "ministral3_8b_text.json"})
    out.push_back(load_json(name));
  // Per-layer configs with many layer types (v5 blocks keyed by type, and NoPE entries).
  out.push_back(many_types_config(64, 8));
  json mixed = many_types_config(16, 0);
  mixed["layer_types"][3] = "linear_attention";
  mixed["no_rope_layers"] = json(std::vector<int>(16, 1));
  mixed["no_rope_layers"][7] = 0;
  out.push_back(mixed);
  // M-RoPE sections in both layouts.
  out.push_back(json::parse(R"({"model_type": "qwen3_vl_text", "head_dim": 128,
      "rope_theta": 5000000.0, "max_position_embeddings": 262144,
      "rope_scaling": {"rope_type": "default", "mrope_section": [24, 20, 20],
                       "mrope_interleaved": true}})"));
  out.push_back(json::parse(R"({"model_type": "qwen2_vl", "hidden_size": 3584,
      "num_attention_heads": 28, "rope_theta": 1000000.0, "max_position_embeddings": 32768,
      "rope_scaling": {"type": "mrope", "mrope_section": [16, 24, 24]}})"));
  out.push_back(json::parse(R"({"model_type": "gemma3_text", "head_dim": 128,
      "num_hidden_layers": 12, "rope_theta": 1000000.0, "rope_local_base_freq": 10000.0,
      "sliding_window_pattern": 6, "max_position_embeddings": 131072,
      "rope_scaling": {"rope_type": "linear", "factor": 8.0}})"));
  return out;
}

class Mutator : public ropescale_test::FuzzRng {
 public:
  using FuzzRng::FuzzRng;

  json hostile_value() {
    static const char* const kStrings[] = {"",
                                           "su",
                                           "yarn",
                                           "longrope",
                                           "llama3",
                                           "dynamic",
                                           "linear",
                                           "default",
                                           "\xff\xfe",
                                           "1e4",
                                           "proportional",
                                           "mrope",
                                           "gemma3_text",
                                           "qwen3_vl_text",
                                           "full_attention",
                                           "sliding_attention"};
    switch (below(21)) {
      case 16: {  // deep nesting (arrays or objects)
        const bool arrays = coin();
        return nested(1.0, 1 + below(2000), arrays ? nullptr : "factor");
      }
      case 17: {  // integers at and past the 64-bit limits
        switch (below(5)) {
          case 0:
            return std::numeric_limits<std::int64_t>::max();
          case 1:
            return std::numeric_limits<std::int64_t>::min();
          case 2:
            return (std::int64_t{1} << 53) + 1;
          case 3:
            return std::int64_t{1} << 48;
          default:
            return json::parse("123456789012345678901234567890");
        }
      }
      case 18: {  // a megabyte string, sometimes starting like a valid value
        std::string big = coin() ? "yarn" : "";
        big.append((std::size_t{1} << 20) + below(1000), 'x');
        return big;
      }
      case 19: {  // per-layer-type blocks, possibly nested, as Gemma-style configs have them
        json inner = {{"rope_type", coin() ? "yarn" : "default"},
                      {"factor", 4.0},
                      {"rope_theta", 1e6},
                      {"original_max_position_embeddings", 8192}};
        json block = {{"full_attention", inner}, {"sliding_attention", {{"rope_type", "default"}}}};
        if (coin()) block = {{"full_attention", block}};
        return block;
      }
      case 20:
        return -std::numeric_limits<double>::infinity();
      case 0:
        return nullptr;
      case 1:
        return coin();
      case 2:
        return 0;
      case 3:
        return -1;
      case 4:
        return 0.5;
      case 5:
        return 1e308;
      case 6:
        return -1e308;
      case 7:
        return 4.9e-324;
      case 8:
        return std::int64_t{1} << 62;
      case 9:
        return std::numeric_limits<std::uint64_t>::max();
      case 10:
        return kStrings[below(sizeof(kStrings) / sizeof(kStrings[0]))];
      case 11:
        return json::array();
      case 12: {
        json a = json::array();
        const std::size_t n = below(130);
        for (std::size_t i = 0; i < n; ++i) a.push_back(0.5 + static_cast<double>(below(100)));
        return a;
      }
      case 13:
        return json::object();
      case 14:
        return std::numeric_limits<double>::infinity();
      default:
        return std::uniform_real_distribution<double>(-10.0, 200000.0)(engine());
    }
  }

  // Collects pointers to every node of j (pre-order), without recursion: trees may be deep.
  void collect(json& root, std::vector<json*>* nodes) {
    std::vector<json*> todo = {&root};
    while (!todo.empty()) {
      json* j = todo.back();
      todo.pop_back();
      nodes->push_back(j);
      if (j->is_object()) {
        for (auto& item : j->items()) todo.push_back(&item.value());
      } else if (j->is_array()) {
        for (auto& v : *j) todo.push_back(&v);
      }
    }
  }

  void mutate_tree(json& j) {
    mutate_tree(j, kConfigKeys, sizeof(kConfigKeys) / sizeof(kConfigKeys[0]));
  }

  void mutate_tree(json& j, const char* const* keys, std::size_t n_keys) {
    std::vector<json*> nodes;
    collect(j, &nodes);
    json& node = *nodes[below(nodes.size())];
    switch (below(6)) {
      case 0:  // replace the node
        node = hostile_value();
        break;
      case 1:  // remove a key
        if (node.is_object() && !node.empty()) {
          auto it = node.begin();
          std::advance(it, static_cast<std::ptrdiff_t>(below(node.size())));
          node.erase(it);
        }
        break;
      case 2:  // add or overwrite a known key
        if (node.is_object()) node[keys[below(n_keys)]] = hostile_value();
        break;
      case 3:  // resize an array
        if (node.is_array()) {
          if (coin() && !node.empty()) {
            node.erase(node.size() - 1);
          } else {
            node.push_back(node.empty() ? json(1.0) : json(node.back()));
          }
        }
        break;
      case 4:  // tweak a number
        if (node.is_number()) node = node.get<double>() * (coin() ? -1.0 : 1e-3);
        break;
      default:  // inject nan where a number was
        if (node.is_number()) node = std::nan("");
        break;
    }
  }

  static constexpr const char* kConfigKeys[] = {"rope_theta",
                                                "head_dim",
                                                "hidden_size",
                                                "num_attention_heads",
                                                "partial_rotary_factor",
                                                "max_position_embeddings",
                                                "original_max_position_embeddings",
                                                "rope_scaling",
                                                "rope_parameters",
                                                "type",
                                                "rope_type",
                                                "factor",
                                                "short_factor",
                                                "long_factor",
                                                "low_freq_factor",
                                                "high_freq_factor",
                                                "beta_fast",
                                                "beta_slow",
                                                "mscale",
                                                "mscale_all_dim",
                                                "truncate",
                                                "attention_factor",
                                                "short_mscale",
                                                "long_mscale",
                                                "qk_rope_head_dim",
                                                "layer_types",
                                                "num_hidden_layers",
                                                "rope_local_base_freq",
                                                "sliding_window_pattern",
                                                "global_head_dim",
                                                "text_config",
                                                "model_type",
                                                "mrope_section",
                                                "mrope_interleaved",
                                                "rotary_pct",
                                                "rotary_dim",
                                                "full_attention",
                                                "sliding_attention"};

  void mutate_text(std::string& s) {
    static const char* const kTokens[] = {
        "{",  "}",     "[",    "]",    ",",      ":",       "\"",      "-",
        "0",  "1e308", "null", "true", "1e-308", "\\u0000", "\\ud800", "99999999999999999999999",
        "-0", "1.5",   "\xc3"};
    if (s.empty()) {
      s = "{";
      return;
    }
    const std::size_t pos = below(s.size());
    switch (below(6)) {
      case 5:  // a deep run of brackets (valid JSON only if the rest happens to close it)
        s.insert(pos, std::string(1 + below(100000), '['));
        break;
      case 0:
        flip_bit(s, pos);
        break;
      case 1:
        s.insert(pos, kTokens[below(sizeof(kTokens) / sizeof(kTokens[0]))]);
        break;
      case 2:
        s.erase(pos, 1 + below(16));
        break;
      case 3: {
        const std::size_t len = 1 + below(std::min<std::size_t>(64, s.size() - pos));
        s.insert(below(s.size()), s.substr(pos, len));
        break;
      }
      default:
        s.resize(pos);
        break;
    }
  }
};

struct Tally {
  int iterations = 0;
  int accepted = 0;
};

// The importer's contract on one input.
void check_input(const ropescale::Status& st, const ropescale::RopeConfig& c, Tally* tally) {
  ++tally->iterations;
  if (!st.ok()) {
    ASSERT_EQ(st.message().rfind("ropescale: ", 0), 0u) << st.message();
    ASSERT_LT(st.message().size(), 2000u) << st.message().substr(0, 300);
    return;
  }
  ++tally->accepted;
  ASSERT_TRUE(ropescale::validate(c.spec).ok());
  const std::int64_t L = c.spec.original_max_position;
  for (std::int64_t seq : {std::int64_t{0}, std::int64_t{1}, L, L + 1, c.max_position_embeddings,
                           std::int64_t{1} << 40}) {
    const ropescale::Result<ropescale::FactorTable> r = c.table_for(seq);
    if (!r.ok()) {
      // Only dynamic NTK depends on seq_len beyond the two tables checked at import.
      ASSERT_EQ(c.rope_type, ropescale::RopeType::kDynamic) << r.status().message();
      continue;
    }
    const ropescale::FactorTable& t = *r;
    ASSERT_EQ(t.pairs(), c.spec.pairs());
    ASSERT_TRUE(t.validate_for(c.spec).ok());
    ASSERT_TRUE(t.inv_freq(c.spec).value().allFinite());
  }
  // Export then import gives the same config back.
  const std::string text = ropescale::to_hf_config(c).value().dump();
  const ropescale::Result<ropescale::RopeConfig> back = ropescale::parse_hf_config(text);
  ASSERT_TRUE(back.ok()) << back.status().message() << "\n" << text;
  ASSERT_TRUE(*back == c) << text;
}

TEST(HfConfigFuzz, TreeMutations) {
  const std::vector<json> pool = seeds();
  Mutator m(kFuzz.seed());
  Tally tally;
  const auto start = std::chrono::steady_clock::now();
  while (!kFuzz.out_of_time(start, tally.iterations)) {
    json j = pool[m.below(pool.size())];
    const std::size_t rounds = 1 + m.below(4);
    for (std::size_t r = 0; r < rounds; ++r) m.mutate_tree(j);
    const ropescale::Result<ropescale::RopeConfig> r = ropescale::parse_hf_config(j);
    check_input(r.status(), r.value_or(ropescale::RopeConfig{}), &tally);
    if (HasFatalFailure()) {
      ADD_FAILURE() << "input (head): "
                    << j.dump(-1, ' ', false, json::error_handler_t::replace).substr(0, 2000);
      return;
    }
  }
  std::printf("tree mutations: %d inputs, %d accepted\n", tally.iterations, tally.accepted);
  EXPECT_GT(tally.accepted, 0);                 // the mutations keep some configs valid...
  EXPECT_LT(tally.accepted, tally.iterations);  // ...and break others
}

// The model-level importer: per-layer kinds each obey the single-config contract, and every
// layer maps to a kind.
TEST(HfConfigFuzz, ModelTreeMutations) {
  const std::vector<json> pool = model_seeds();
  Mutator m(kFuzz.seed() + 2);
  Tally tally;
  int per_layer = 0;
  const auto start = std::chrono::steady_clock::now();
  while (!kFuzz.out_of_time(start, tally.iterations)) {
    json j = pool[m.below(pool.size())];
    const std::size_t rounds = 1 + m.below(4);
    for (std::size_t r = 0; r < rounds; ++r) m.mutate_tree(j);
    const ropescale::Result<ropescale::ModelRope> parsed = ropescale::parse_hf_model(j);
    const ropescale::Status& st = parsed.status();
    if (!st.ok()) {
      check_input(st, ropescale::RopeConfig{}, &tally);
    } else {
      const ropescale::ModelRope& model = *parsed;
      ASSERT_FALSE(model.kinds.empty());
      per_layer += model.uniform() ? 0 : 1;
      for (const ropescale::LayerRope& k : model.kinds) {
        check_input(st, k.config, &tally);
        if (HasFatalFailure()) break;
      }
      for (std::int64_t l = 0; l < model.num_layers() && !HasFatalFailure(); ++l) {
        const std::int64_t k = model.layer_kind[static_cast<std::size_t>(l)];
        if (k == ropescale::ModelRope::kNoRope) {  // NoPE: refused by name, never rotated
          ASSERT_FALSE(model.has_rope(l));
          ASSERT_EQ(model.layer(l).status().code(), ropescale::ErrorCode::kInvalidArgument);
          continue;
        }
        ASSERT_TRUE(model.layer(l).ok());
        ASSERT_GE(k, 0);
        ASSERT_LT(k, static_cast<std::int64_t>(model.kinds.size()));
      }
    }
    if (HasFatalFailure()) {
      ADD_FAILURE() << "input: " << j.dump(-1, ' ', false, json::error_handler_t::replace);
      return;
    }
  }
  std::printf("model tree mutations: %d inputs, %d accepted, %d per-layer\n", tally.iterations,
              tally.accepted, per_layer);
  EXPECT_GT(tally.accepted, 0);
  EXPECT_GT(per_layer, 0);
  EXPECT_LT(tally.accepted, tally.iterations);
}

TEST(HfConfigHostile, ManyLayerTypesCostLinearWork) {
  const json j = many_types_config(4000, 100000);
  const ropescale::ModelRope m = ropescale::parse_hf_model(j).value();
  ASSERT_EQ(m.num_layers(), 4000);
  // t0 and the odd types share theta 1e4: one kind; every other even type has its own.
  ASSERT_EQ(m.kinds.size(), 2000u);
  EXPECT_EQ(m.layer(1).value()->spec.rope_theta, 10000.0);
  EXPECT_EQ(m.layer(3).value()->spec.rope_theta, 10000.0);
  EXPECT_EQ(m.layer(3998).value()->spec.rope_theta, 13998.0);
  EXPECT_EQ(m.layer_kind[1], m.layer_kind[3999]);
  EXPECT_NE(m.layer_kind[2], m.layer_kind[4]);
  EXPECT_EQ(m.kinds[static_cast<std::size_t>(m.layer_kind[1])].layer_type.substr(0, 9),
            "t0,t1,t3,");
}

TEST(HfConfigHostile, LayerLimitHoldsForEverySource) {
  const std::int64_t over = ropescale::kMaxConfigLayers + 1;
  // layer_types without num_hidden_layers.
  json j = {{"head_dim", 64}, {"rope_theta", 1e4}, {"max_position_embeddings", 4096}};
  j["layer_types"] = json(std::vector<std::string>(static_cast<std::size_t>(over), "a"));
  ropescale::Status st = ropescale::parse_hf_model(j).status();
  EXPECT_EQ(st.code(), ropescale::ErrorCode::kInvalidArgument);
  EXPECT_NE(st.message().find("layer_types.size() = 1048577: must be <= kMaxConfigLayers"),
            std::string::npos)
      << st.message();
  // num_hidden_layers alone.
  json k = {{"head_dim", 64},
            {"rope_theta", 1e4},
            {"max_position_embeddings", 4096},
            {"num_hidden_layers", over}};
  st = ropescale::parse_hf_model(k).status();
  EXPECT_NE(st.message().find("num_hidden_layers = 1048577"), std::string::npos) << st.message();
}

TEST(HfConfigFuzz, TextMutations) {
  const std::vector<json> pool = seeds();
  std::vector<std::string> texts;
  for (const json& j : pool) texts.push_back(j.dump(1));
  Mutator m(kFuzz.seed() + 1);
  Tally tally;
  const auto start = std::chrono::steady_clock::now();
  while (!kFuzz.out_of_time(start, tally.iterations)) {
    std::string s = texts[m.below(texts.size())];
    const std::size_t rounds = 1 + m.below(4);
    for (std::size_t r = 0; r < rounds; ++r) m.mutate_text(s);
    const ropescale::Result<ropescale::RopeConfig> r = ropescale::parse_hf_config(s);
    check_input(r.status(), r.value_or(ropescale::RopeConfig{}), &tally);
    if (HasFatalFailure()) {
      ADD_FAILURE() << "input (head): " << s.substr(0, 2000);
      return;
    }
  }
  std::printf("text mutations: %d inputs, %d accepted\n", tally.iterations, tally.accepted);
  EXPECT_GT(tally.accepted, 0);
  EXPECT_LT(tally.accepted, tally.iterations);
}

// The search checkpoint reader: a real checkpoint, mutated as a tree and as text. Every input is
// refused with a short "ropescale: " message or gives a state that validates.
TEST(CheckpointFuzz, TreeAndTextMutations) {
  static const char* const kCheckpointKeys[] = {
      "format", "version", "space",     "params",     "iteration",   "rng_state",  "history",
      "c",      "steps",   "loss",      "population", "rotary_dim",  "head_dim",   "step",
      "method", "seed",    "mutations", "crossovers", "lower_bound", "upper_bound"};
  ropescale::SearchParams p;
  p.iterations = 2;
  p.population = 16;
  p.parents = 8;
  p.mutations = 4;
  p.crossovers = 4;
  ropescale::EvolutionSearch search(
      ropescale::SearchSpace::longrope2(ropescale::RopeSpec{32, 32, 10000.0, 1024}, 8192).value(),
      p);
  const ropescale::SearchResult r = search
                                        .run([](const ropescale::FactorTable& t) {
                                          return std::abs(std::log(t.factors().mean()));
                                        })
                                        .value();
  const json seed = ropescale::search_state_to_json(r.state);
  const std::string seed_text = seed.dump(1);
  const std::string path = testing::TempDir() + "ropescale_checkpoint_fuzz.json";
  Mutator m(kFuzz.seed() + 2);
  Tally tally;
  const auto start = std::chrono::steady_clock::now();
  while (!kFuzz.out_of_time(start, tally.iterations)) {
    ++tally.iterations;
    ropescale::SearchState st;
    ropescale::Status s;
    if (m.coin()) {
      json j = seed;
      for (std::size_t k = 1 + m.below(4); k > 0; --k)
        m.mutate_tree(j, kCheckpointKeys, sizeof(kCheckpointKeys) / sizeof(kCheckpointKeys[0]));
      ropescale::Result<ropescale::SearchState> r = ropescale::search_state_from_json(j);
      s = r.status();
      if (r.ok()) st = std::move(r).value();
    } else {
      std::string input = seed_text;
      for (std::size_t k = 1 + m.below(4); k > 0; --k) m.mutate_text(input);
      std::ofstream(path, std::ios::binary | std::ios::trunc) << input;
      ropescale::Result<ropescale::SearchState> r = ropescale::load_search_checkpoint(path);
      s = r.status();
      if (r.ok()) st = std::move(r).value();
    }
    if (s.ok()) {
      ++tally.accepted;
      ASSERT_TRUE(ropescale::validate(st).ok());
      continue;
    }
    ASSERT_EQ(s.message().rfind("ropescale: ", 0), 0u) << s.message().substr(0, 300);
    ASSERT_LT(s.message().size(), 2000u) << s.message().substr(0, 300);
  }
  std::remove(path.c_str());
  std::printf("checkpoint mutations: %d inputs, %d accepted\n", tally.iterations, tally.accepted);
  EXPECT_GT(tally.accepted, 0);
  EXPECT_LT(tally.accepted, tally.iterations);
}

// The fused KV-cache append: random page tables and slot maps, damaged, against the oracle of
// kv_cache_fuzz.hpp, on float and int8 pages.
TEST(KvCacheFuzz, PageTablesAndSlotMaps) {
  const ropescale::RopeSpec spec{40, 32, 10000.0, 4096};
  const ropescale::RotaryFrequencies freqs(
      spec, ropescale::FactorTable(Eigen::ArrayXd::LinSpaced(16, 1.0, 4.0), 1.2, "fuzz"));
  const ropescale::RotaryCache angles(freqs, 64);
  ropescale_test::KvFuzzCase f(kFuzz.seed() + 3);
  int iterations = 0, accepted = 0;
  const auto start = std::chrono::steady_clock::now();
  // Its own floor of 100 cases (each checks every written value): seconds under ASan too.
  while (!kFuzz.out_of_time(start, iterations, 100)) {
    ++iterations;
    const bool ok = f.below(2) ? ropescale_test::kv_fuzz_one<float>(f, angles, 40)
                               : ropescale_test::kv_fuzz_one<std::int8_t>(f, angles, 40);
    accepted += ok ? 1 : 0;
    if (::testing::Test::HasFailure()) break;
  }
  std::printf("kv append cases: %d inputs, %d accepted\n", iterations, accepted);
  EXPECT_GT(accepted, 0);
  EXPECT_LT(accepted, iterations);
}

}  // namespace
