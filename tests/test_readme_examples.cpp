// The numbers README.md and docs/ quote beside their code examples, on real configs. (The examples
// themselves are whole programs that ctest builds and runs: doc_snippet_*.)
#include <gtest/gtest.h>

#include <Eigen/Core>
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "ropescale/critical.hpp"
#include "ropescale/io/hf_config.hpp"
#include "ropescale/io/hf_export.hpp"
#include "ropescale/rerotate.hpp"
#include "ropescale/rotary.hpp"
#include "ropescale/scaling.hpp"
#include "ropescale/training.hpp"

namespace {

std::string data(const char* name) { return std::string(ROPESCALE_TEST_DATA_DIR) + "/" + name; }

// README "Quick start: an engine", docs/engine.md "The rotary step".
TEST(ReadmeExamples, EngineRotaryStep) {
  auto cfg = ropescale::load_hf_config(data("phi4_mini_instruct.json")).value();
  ropescale::FactorTable table = cfg.table_for(/*seq_len=*/131072).value();
  EXPECT_EQ(table.pairs(), 48);
  const std::int64_t tokens = 3;
  ropescale::RotaryCache cache(cfg.spec, table, /*num_positions=*/131072);
  std::vector<Eigen::bfloat16> q(static_cast<std::size_t>(tokens * 24 * 128),
                                 Eigen::bfloat16(0.5f));
  std::vector<Eigen::bfloat16> k(static_cast<std::size_t>(tokens * 8 * 128),
                                 Eigen::bfloat16(-1.0f));
  const std::vector<std::int64_t> positions = {0, 4096, 131071};
  auto qv = ropescale::HeadsView<Eigen::bfloat16>::tokens_heads_dim(q.data(), tokens, 24, 128);
  auto kv = ropescale::HeadsView<Eigen::bfloat16>::tokens_heads_dim(k.data(), tokens, 8, 128);
  ropescale::throw_if_error(
      ropescale::rotate(cache, positions.data(), qv, kv, ropescale::PairLayout::kHalfSplit));
  // Position 0 only scales by the attention factor; channels 96..127 pass through.
  EXPECT_NEAR(static_cast<float>(q[0]), 0.5f * 1.19024f, 4e-3f);
  EXPECT_EQ(static_cast<float>(q[100]), 0.5f);
  EXPECT_EQ(static_cast<float>(k[static_cast<std::size_t>(2 * 8 * 128 + 127)]), -1.0f);
}

// The engine quick start: the layout comes from the config, the short table serves the original
// window, and keys re-rotated at the switch equal keys rotated with the long table from scratch.
TEST(ReadmeExamples, EngineSwitchAtTheOriginalWindow) {
  EXPECT_TRUE(ropescale::load_hf_config(data("deepseek_v3.json")).value().interleaved_pairs);
  const auto cfg = ropescale::load_hf_config(data("phi4_mini_instruct.json")).value();
  EXPECT_FALSE(cfg.interleaved_pairs);
  const std::int64_t window = cfg.spec.original_max_position;
  ASSERT_EQ(window, 4096);
  const ropescale::FactorTable short_table = cfg.table_for(window).value();
  const ropescale::FactorTable long_table = cfg.table_for(window + 1).value();
  EXPECT_TRUE(short_table.approx_equal(cfg.table_for(0).value(), 0.0));
  EXPECT_FALSE(short_table.approx_equal(long_table, 1e-3));
  const std::int64_t tokens = 8, heads = 2, dim = cfg.spec.head_dim;
  std::vector<std::int64_t> positions(tokens);
  for (std::int64_t t = 0; t < tokens; ++t) positions[static_cast<std::size_t>(t)] = 511 * t + 7;
  std::vector<float> keys(static_cast<std::size_t>(tokens * heads * dim));
  for (std::size_t i = 0; i < keys.size(); ++i) keys[i] = std::sin(0.37f * static_cast<float>(i));
  std::vector<float> direct = keys;
  const ropescale::RotaryFrequencies short_rope(cfg.spec, short_table);
  const ropescale::RotaryFrequencies long_rope(cfg.spec, long_table);
  auto view = [&](std::vector<float>& x) {
    return ropescale::HeadsView<float>::tokens_heads_dim(x.data(), tokens, heads, dim);
  };
  const auto layout = ropescale::PairLayout::kHalfSplit;
  ropescale::throw_if_error(ropescale::rotate(short_rope, positions.data(), view(keys), layout));
  ASSERT_TRUE(ropescale::KeyRerotation::make(cfg.spec, short_table, long_table)
                  ->apply(positions.data(), view(keys), layout)
                  .ok());
  ropescale::throw_if_error(ropescale::rotate(long_rope, positions.data(), view(direct), layout));
  float max_diff = 0.0f;
  for (std::size_t i = 0; i < keys.size(); ++i)
    max_diff = std::max(max_diff, std::fabs(keys[i] - direct[i]));
  EXPECT_LT(max_diff, 2e-6f);
  EXPECT_GT(std::fabs(keys[5] - std::sin(0.37f * 5.0f)), 1e-3f);  // it did rotate
}

// docs/configs.md.
TEST(ReadmeExamples, ScalingAndConfigs) {
  auto cfg = ropescale::load_hf_config(data("phi4_mini_instruct.json")).value();
  auto t = cfg.table_for(8192).value();
  Eigen::ArrayXd inv_freq = t.inv_freq(cfg.spec).value();
  EXPECT_EQ(inv_freq.size(), 48);
  EXPECT_DOUBLE_EQ(t.attention_factor(), 1.1902380714238083);
  auto det = ropescale::detect_longrope2(cfg.longrope.long_factor).value();
  EXPECT_TRUE(det.found);
  EXPECT_EQ(det.critical_pair, 31);
  EXPECT_NEAR(det.anchor, 32.03, 1e-9);
  auto lr2 =
      ropescale::longrope2_factors(
          cfg.spec, det.critical_pair,
          cfg.longrope.long_factor.tail(cfg.spec.pairs() - det.critical_pair), t.attention_factor())
          .value();
  EXPECT_TRUE(lr2.approx_equal(t, 1e-7)) << "the published list is NTK-anchored below 31";
  nlohmann::json out =
      ropescale::to_hf_config(ropescale::longrope_config_from_tables(cfg.spec, 131072, lr2).value())
          .value();
  EXPECT_TRUE(
      ropescale::parse_hf_config(out).value().table_for(131072).value().approx_equal(lr2, 1e-12));
  std::vector<float> rope_freqs = ropescale::to_rope_freqs(lr2);
  EXPECT_EQ(rope_freqs.size(), 48u);
}

// docs/search.md "Critical-dimension analysis".
TEST(ReadmeExamples, CriticalDimensions) {
  ropescale::RopeSpec spec{128, 128, 500000.0, 8192};
  auto dims = ropescale::critical_dims(spec).value();
  EXPECT_EQ(dims.critical_pair, 35);
  EXPECT_EQ(dims.critical_dim, 70);
  EXPECT_EQ(dims.lower_pair, 24);
  auto cfg = ropescale::load_hf_config(data("llama3_8b_longrope2.json")).value();
  const ropescale::FactorTable table = cfg.table_for(131072).value();
  const ropescale::LongRope2Detection det = ropescale::detect_longrope2(table.factors()).value();
  EXPECT_TRUE(det.found);
  EXPECT_EQ(det.critical_pair, 33);
  auto cmp = ropescale::compare_methods(spec, 131072, {table}).value();
  bool saw_ntk = false;
  for (const auto& m : cmp.methods)
    if (m.method == "ntk") {
      saw_ntk = true;
      EXPECT_EQ(m.ood_pairs.size(), 28u);
    }
  EXPECT_TRUE(saw_ntk);
}

// docs/training.md: selection at the boundary.
TEST(ReadmeExamples, WindowSelection) {
  EXPECT_EQ(ropescale::select_window(4096, 4096).value(), ropescale::RopeWindow::kLong);
  EXPECT_EQ(ropescale::select_window(4095, 4096).value(), ropescale::RopeWindow::kShort);
}

}  // namespace
