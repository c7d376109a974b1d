// Tests for ropescale/scaling.hpp: every generator against Hugging Face's float64 golden vectors
// (tests/data/inv_freq.json, produced by running the transformers code), against long double
// hand computations of each formula, and the LongRoPE2 builder/detector on published tables.
#include "ropescale/scaling.hpp"
#include "test_data.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>

namespace {

using ropescale_test::load_json;
using ropescale_test::max_rel_error;
using ropescale_test::to_array;

using nlohmann::json;
using ropescale::FactorTable;
using ropescale::RopeSpec;

RopeSpec spec_of(std::int64_t head_dim, std::int64_t rotary_dim, double theta,
                 std::int64_t original) {
  RopeSpec s;
  s.head_dim = head_dim;
  s.rotary_dim = rotary_dim;
  s.rope_theta = theta;
  s.original_max_position = original;
  return s;
}

// Maps one golden case onto the generator API by hand (the config importer has its own test);
// this is what a caller without JSON would write.
FactorTable table_for_case(const json& c, RopeSpec* spec_out) {
  const json& cfg = c["config"];
  const std::string type = c["rope_type"];
  const bool v5 = c["impl"] == "v5yarn";
  // The goldens keep the block under "rope_scaling" for both HF versions.
  const json rs = cfg.contains("rope_parameters") ? cfg["rope_parameters"]
                  : cfg.contains("rope_scaling")  ? cfg["rope_scaling"]
                                                  : json::object();
  const std::int64_t max_pos = cfg["max_position_embeddings"];
  const std::int64_t seq_len = c["seq_len"].is_null() ? 0 : c["seq_len"].get<std::int64_t>();
  RopeSpec spec = spec_of(c["head_dim"], c["rotary_dim"], cfg["rope_theta"], max_pos);
  FactorTable t;
  if (type == "default") {
    t = ropescale::default_factors(spec).value();
  } else if (type == "linear") {
    t = ropescale::linear_factors(spec, rs["factor"]).value();
  } else if (type == "dynamic") {
    t = ropescale::dynamic_ntk_factors(spec, rs["factor"], max_pos, seq_len).value();
  } else if (type == "yarn") {
    ropescale::YarnParams p;
    p.factor = rs["factor"];
    if (v5 && rs.contains("original_max_position_embeddings")) {
      spec.original_max_position = rs["original_max_position_embeddings"];
      p.factor = static_cast<double>(max_pos) / static_cast<double>(spec.original_max_position);
    }
    if (rs.contains("beta_fast")) p.beta_fast = rs["beta_fast"];
    if (rs.contains("beta_slow")) p.beta_slow = rs["beta_slow"];
    if (v5) {
      p.mscale = rs.value("mscale", 0.0);
      p.mscale_all_dim = rs.value("mscale_all_dim", 0.0);
      p.truncate = rs.value("truncate", true);
    }
    t = ropescale::yarn_factors(spec, p).value();
  } else if (type == "llama3") {
    ropescale::Llama3Params p;
    p.factor = rs["factor"];
    p.low_freq_factor = rs["low_freq_factor"];
    p.high_freq_factor = rs["high_freq_factor"];
    p.original_max_position = rs["original_max_position_embeddings"];
    t = ropescale::llama3_factors(spec, p).value();
  } else if (type == "longrope") {
    spec.original_max_position = cfg["original_max_position_embeddings"];
    ropescale::LongRopeParams p;
    p.short_factor = to_array(rs["short_factor"]);
    p.long_factor = to_array(rs["long_factor"]);
    p.factor = static_cast<double>(max_pos) / static_cast<double>(spec.original_max_position);
    t = ropescale::longrope_factors(spec, p, seq_len).value();
  } else {
    ADD_FAILURE() << "unknown golden type " << type;
  }
  *spec_out = spec;
  return t;
}

TEST(ScalingGolden, EveryHuggingFaceCaseWithin1e12) {
  const json golden = load_json("inv_freq.json");
  ASSERT_EQ(golden["cases"].size(), 20u);
  for (const json& c : golden["cases"]) {
    SCOPED_TRACE(c["name"].get<std::string>());
    RopeSpec spec;
    const FactorTable t = table_for_case(c, &spec);
    const Eigen::ArrayXd want = to_array(c["inv_freq_f64"]);
    EXPECT_LE(max_rel_error(t.inv_freq(spec).value(), want), 1e-12);
    const double want_attn = c["attention_factor"];
    EXPECT_NEAR(t.attention_factor(), want_attn, 1e-12 * want_attn);
  }
}

TEST(ScalingGolden, LegacyAndNewerYarnAgreeOnConsistentConfig) {
  const json golden = load_json("inv_freq.json");
  FactorTable legacy, v5;
  RopeSpec s1, s2;
  for (const json& c : golden["cases"]) {
    if (c["name"] == "yarn_f16_orig4096_legacy") legacy = table_for_case(c, &s1);
    if (c["name"] == "yarn_f16_orig4096_v5") v5 = table_for_case(c, &s2);
  }
  EXPECT_TRUE(legacy.approx_equal(v5, 1e-15));
}

// ---------------------------------------------------------------------------------------------
// Hand computations in long double
// ---------------------------------------------------------------------------------------------

TEST(Scaling, LinearIsConstant) {
  const RopeSpec spec = spec_of(128, 128, 1e4, 4096);
  const FactorTable t = ropescale::linear_factors(spec, 4.0).value();
  EXPECT_EQ(t.method(), "linear");
  EXPECT_TRUE((t.factors() == 4.0).all());
  EXPECT_EQ(t.attention_factor(), 1.0);
  EXPECT_EQ(ropescale::default_factors(spec).value(), FactorTable::identity(spec));
  EXPECT_EQ(ropescale::default_factors(spec).value().method(),
            FactorTable::identity(spec).method());
}

TEST(Scaling, NtkLocalLlamaFormMatchesBaseChange) {
  const RopeSpec spec = spec_of(128, 96, 1e4, 4096);
  const double s = 8.0;
  const FactorTable t = ropescale::ntk_factors(spec, s).value();
  EXPECT_EQ(t.method(), "ntk");
  const long double d = 96.0L;
  const long double new_base = 1e4L * std::pow(static_cast<long double>(s), d / (d - 2.0L));
  for (Eigen::Index i = 0; i < t.factors().size(); ++i) {
    const long double want = std::pow(new_base, 2.0L * i / d) / std::pow(1e4L, 2.0L * i / d);
    EXPECT_NEAR(t.factors()[i], static_cast<double>(want), 1e-13 * static_cast<double>(want));
  }
  EXPECT_EQ(t.factors()[0], 1.0);
  EXPECT_NEAR(t.factors()[47], s, 1e-13 * s);  // the last pair gets exactly s
}

TEST(Scaling, NtkCriticalReachesScaleAtCriticalDimension) {
  // LLaMA3-8B: base 5e5, d 128, 8k -> 128k. Paper baseline: kappa = 159.5, lambda_35 ~= 16.02,
  // lambda_63 ~= 147.4 (longrope2-spec section 1).
  const RopeSpec spec = spec_of(128, 128, 5e5, 8192);
  const FactorTable t = ropescale::ntk_critical_factors(spec, 131072).value();
  EXPECT_EQ(t.method(), "ntk_critical");
  const long double two_pi = 6.283185307179586476925286766559L;
  const long double e = std::log(131072.0L / two_pi) / std::log(8192.0L / two_pi);
  const long double kappa = std::pow(5e5L, e - 1.0L);
  EXPECT_NEAR(static_cast<double>(kappa), 159.5, 0.1);
  for (Eigen::Index i = 0; i < 64; ++i) {
    const long double want = std::pow(kappa, 2.0L * i / 128.0L);
    EXPECT_NEAR(t.factors()[i], static_cast<double>(want), 1e-12 * static_cast<double>(want));
  }
  EXPECT_NEAR(t.factors()[35], 16.02, 0.01);
  EXPECT_NEAR(t.factors()[63], 147.4, 0.1);
  // Exactly s at the fractional critical dimension i_c = (d/2) log_base(L/2pi).
  const long double i_c = 64.0L * std::log(8192.0L / two_pi) / std::log(5e5L);
  EXPECT_NEAR(static_cast<double>(std::pow(kappa, 2.0L * i_c / 128.0L)), 16.0, 1e-12);
  // At the training length it is the identity.
  EXPECT_TRUE(ropescale::ntk_critical_factors(spec, 8192)
                  .value()
                  .approx_equal(FactorTable::identity(spec)));
}

TEST(Scaling, DynamicNtkIdentityInsideWindowAndNtkAtFullScale) {
  const RopeSpec spec = spec_of(128, 128, 1e4, 4096);
  EXPECT_TRUE(ropescale::dynamic_ntk_factors(spec, 4.0, 4096, 0)
                  .value()
                  .approx_equal(FactorTable::identity(spec)));
  EXPECT_TRUE(ropescale::dynamic_ntk_factors(spec, 4.0, 4096, 4000)
                  .value()
                  .approx_equal(FactorTable::identity(spec)));
  // ratio = s n / max_pos - (s - 1) equals s at n = max_pos (2s - 1) / s = 7168: the LocalLLaMA
  // NTK table.
  EXPECT_TRUE(ropescale::dynamic_ntk_factors(spec, 4.0, 4096, 7168)
                  .value()
                  .approx_equal(ropescale::ntk_factors(spec, 4.0).value(), 1e-13));
  EXPECT_EQ(ropescale::dynamic_ntk_factors(spec, 4.0, 4096, 8192).value().method(), "dynamic_ntk");
}

TEST(Scaling, YarnRampByHand) {
  // d 128, base 1e4, window 4096, beta 32/1: c(32) = 128 ln(4096/(64 pi)) / (2 ln 1e4) = 20.94
  // -> low 20; c(1) = 128 ln(4096/(2 pi)) / (2 ln 1e4) = 45.03 -> high 46.
  const RopeSpec spec = spec_of(128, 128, 1e4, 4096);
  ropescale::YarnParams p;
  p.factor = 16;
  const FactorTable t = ropescale::yarn_factors(spec, p).value();
  EXPECT_EQ(t.method(), "yarn");
  const long double pi = 3.141592653589793238462643383279502884L;
  const long double c_fast = 128.0L * std::log(4096.0L / (64.0L * pi)) / (2.0L * std::log(1e4L));
  const long double c_slow = 128.0L * std::log(4096.0L / (2.0L * pi)) / (2.0L * std::log(1e4L));
  ASSERT_EQ(std::floor(c_fast), 20.0L);
  ASSERT_EQ(std::ceil(c_slow), 46.0L);
  for (int i = 0; i < 64; ++i) {
    const long double ramp = std::min(1.0L, std::max(0.0L, (i - 20.0L) / 26.0L));
    const long double want = 1.0L / (ramp / 16.0L + 1.0L - ramp);
    EXPECT_NEAR(t.factors()[i], static_cast<double>(want), 1e-14 * static_cast<double>(want)) << i;
  }
  EXPECT_DOUBLE_EQ(t.attention_factor(), static_cast<double>(0.1L * std::log(16.0L) + 1.0L));
  // Explicit attention factor wins; DeepSeek mscale ratio otherwise.
  p.attention_factor = 0.5;
  EXPECT_EQ(ropescale::yarn_factors(spec, p).value().attention_factor(), 0.5);
  p.attention_factor.reset();
  p.mscale = 1.0;
  p.mscale_all_dim = 0.707;
  EXPECT_NEAR(ropescale::yarn_factors(spec, p).value().attention_factor(),
              static_cast<double>((0.1L * std::log(16.0L) + 1.0L) /
                                  (0.1L * 0.707L * std::log(16.0L) + 1.0L)),
              1e-15);
}

TEST(Scaling, YarnCollapsedRangeGetsEpsilonWidth) {
  // beta_fast == beta_slow makes low == high only when truncation lands them together; force it
  // with truncate off and equal betas: HF adds 0.001 to high.
  const RopeSpec spec = spec_of(64, 64, 1e4, 4096);
  ropescale::YarnParams p;
  p.factor = 4;
  p.beta_fast = 8;
  p.beta_slow = 8;
  p.truncate = false;
  const FactorTable t = ropescale::yarn_factors(spec, p).value();
  const double low = ropescale::yarn_correction_dim(8, 64, 1e4, 4096);
  for (int i = 0; i < 32; ++i) {
    const double ramp = std::clamp((i - low) / 0.001, 0.0, 1.0);
    EXPECT_NEAR(t.factors()[i], 1.0 / (ramp / 4 + 1 - ramp), 1e-12) << i;
  }
}

TEST(Scaling, Llama3PiecewiseByHand) {
  const RopeSpec spec = spec_of(128, 128, 5e5, 8192);
  const FactorTable t = ropescale::llama3_factors(spec, {}).value();
  EXPECT_EQ(t.method(), "llama3");
  const long double pi = 3.141592653589793238462643383279502884L;
  int kept = 0, scaled = 0, smooth = 0;
  for (int i = 0; i < 64; ++i) {
    const long double wavelen = 2.0L * pi * std::pow(5e5L, 2.0L * i / 128.0L);
    long double want;
    if (wavelen < 8192.0L / 4.0L) {
      want = 1.0L;
      ++kept;
    } else if (wavelen > 8192.0L) {
      want = 8.0L;
      ++scaled;
    } else {
      const long double sm = (8192.0L / wavelen - 1.0L) / 3.0L;
      want = 1.0L / ((1.0L - sm) / 8.0L + sm);
      ++smooth;
    }
    EXPECT_NEAR(t.factors()[i], static_cast<double>(want), 1e-13 * static_cast<double>(want)) << i;
  }
  EXPECT_GT(kept, 0);
  EXPECT_GT(scaled, 0);
  EXPECT_GT(smooth, 0);
}

TEST(Scaling, LongRopeSelectionAndAttention) {
  const RopeSpec spec = spec_of(96, 96, 1e4, 4096);
  ropescale::LongRopeParams p;
  p.short_factor = Eigen::ArrayXd::Constant(48, 1.5);
  p.long_factor = Eigen::ArrayXd::Constant(48, 40.0);
  p.factor = 32;
  const double want = std::sqrt(1.0 + std::log(32.0) / std::log(4096.0));
  EXPECT_NEAR(want, 1.1902380714238083, 1e-15);  // HF's value for Phi-3.5/4-mini
  const FactorTable s = ropescale::longrope_factors(spec, p, std::int64_t{4096}).value();
  const FactorTable l = ropescale::longrope_factors(spec, p, std::int64_t{4097}).value();
  EXPECT_TRUE((s.factors() == 1.5).all());
  EXPECT_TRUE((l.factors() == 40.0).all());
  EXPECT_EQ(s.attention_factor(), want);
  EXPECT_EQ(l.attention_factor(), want);
  // seq_len 0 is Hugging Face's init-time call: the short set.
  EXPECT_TRUE(
      (ropescale::longrope_factors(spec, p, std::int64_t{0}).value().factors() == 1.5).all());
  // vLLM's per-set mscale, then HF's explicit attention_factor over everything.
  p.short_mscale = 1.0;
  p.long_mscale = 1.3;
  EXPECT_EQ(ropescale::longrope_factors(spec, p, std::int64_t{10}).value().attention_factor(), 1.0);
  EXPECT_EQ(ropescale::longrope_factors(spec, p, std::int64_t{5000}).value().attention_factor(),
            1.3);
  p.attention_factor = 1.25;
  EXPECT_EQ(ropescale::longrope_factors(spec, p, std::int64_t{5000}).value().attention_factor(),
            1.25);
  // s <= 1: no magnitude correction.
  EXPECT_EQ(ropescale::longrope_default_attention_factor(1.0, 4096), 1.0);
}

TEST(Scaling, DynamicLongRopeBlend) {
  const RopeSpec spec = spec_of(96, 96, 1e4, 4096);
  Eigen::ArrayXd f = Eigen::ArrayXd::LinSpaced(48, 1.0, 33.0);
  // At the full extension: the searched table.
  const FactorTable full = ropescale::dynamic_longrope_factors(spec, f, 32.0, 131072).value();
  EXPECT_EQ(full.method(), "dynamic_longrope");
  EXPECT_LE(max_rel_error(full.factors(), f), 1e-15);
  EXPECT_NEAR(full.attention_factor(), 1.1902380714238083, 1e-15);
  // Inside the window: plain RoPE.
  EXPECT_TRUE(ropescale::dynamic_longrope_factors(spec, f, 32.0, 2048)
                  .value()
                  .approx_equal(FactorTable::identity(spec)));
  // Halfway (cur = 16.5): lambda' = 1 + (lambda - 1) * 15.5 / 31.
  const FactorTable mid = ropescale::dynamic_longrope_factors(spec, f, 32.0, 4096 * 33 / 2).value();
  for (int i = 0; i < 48; ++i) EXPECT_NEAR(mid.factors()[i], 1.0 + (f[i] - 1.0) * 0.5, 1e-13);
  EXPECT_NEAR(mid.attention_factor(), std::sqrt(1.0 + std::log(16.5) / std::log(4096.0)), 1e-15);
}

// ---------------------------------------------------------------------------------------------
// LongRoPE2 builder and detector
// ---------------------------------------------------------------------------------------------

TEST(LongRope2, BuilderIsNtkAnchoredAtCriticalPair) {
  const RopeSpec spec = spec_of(128, 128, 5e5, 8192);
  Eigen::ArrayXd searched = Eigen::ArrayXd::LinSpaced(34, 20.0, 26.0);
  const FactorTable t = ropescale::longrope2_factors(spec, 30, searched, 1.1).value();
  EXPECT_EQ(t.method(), "longrope2");
  EXPECT_EQ(t.attention_factor(), 1.1);
  EXPECT_EQ(t.factors()[0], 1.0);
  for (int i = 0; i < 30; ++i)
    EXPECT_NEAR(t.factors()[i], static_cast<double>(std::pow(20.0L, i / 30.0L)), 1e-13 * 20);
  EXPECT_TRUE((t.factors().tail(34) == searched).all());
  // The effective NTK base below c: theta' = theta * lambda_c^(d / (2c)) (spec section 2.1).
  const double new_base = 5e5 * std::pow(20.0, 128.0 / 60.0);
  const Eigen::ArrayXd inv = t.inv_freq(spec).value();
  for (int i = 0; i < 30; ++i)
    EXPECT_NEAR(inv[i], 1.0 / std::pow(new_base, 2.0 * i / 128.0), 1e-13 * inv[i]);
}

TEST(LongRope2, DetectsPublishedCriticalPairs) {
  const json llama = load_json("llama3_8b_longrope2.json");
  const json phi4 = load_json("phi4_mini_instruct.json");
  const auto d1 =
      ropescale::detect_longrope2(to_array(llama["rope_scaling"]["long_factor"])).value();
  EXPECT_TRUE(d1.found);
  EXPECT_EQ(d1.critical_pair, 33);
  EXPECT_EQ(d1.anchor, 21.81);
  EXPECT_LT(d1.max_rel_error, 1e-7);
  const auto d2 =
      ropescale::detect_longrope2(to_array(phi4["rope_scaling"]["long_factor"])).value();
  EXPECT_TRUE(d2.found);
  EXPECT_EQ(d2.critical_pair, 31);
  EXPECT_EQ(d2.anchor, 32.03);
  EXPECT_LT(d2.max_rel_error, 1e-7);
  // Rebuilding from (c, searched part) gives the published table back.
  const Eigen::ArrayXd f = to_array(phi4["rope_scaling"]["long_factor"]);
  const RopeSpec spec = spec_of(128, 96, 1e4, 4096);
  const FactorTable rebuilt = ropescale::longrope2_factors(spec, 31, f.tail(17)).value();
  EXPECT_LE(max_rel_error(rebuilt.factors(), f), 1e-7);
}

TEST(LongRope2, DetectorRejectsTablesWithoutABreak) {
  // LongRoPE v1 (Phi-3.5) is not NTK-anchored; all-ones and plain NTK are one geometric run.
  const json phi35 = load_json("phi35_mini_instruct.json");
  EXPECT_FALSE(
      ropescale::detect_longrope2(to_array(phi35["rope_scaling"]["long_factor"])).value().found);
  EXPECT_FALSE(ropescale::detect_longrope2(Eigen::ArrayXd::Ones(48)).value().found);
  const RopeSpec spec = spec_of(128, 128, 1e4, 4096);
  EXPECT_FALSE(
      ropescale::detect_longrope2(ropescale::ntk_factors(spec, 8).value().factors()).value().found);
  // YaRN and Llama-3.1 keep lambda = 1 below their ramp: a flat prefix, not an NTK anchor.
  ropescale::YarnParams yp;
  yp.factor = 16;
  EXPECT_FALSE(ropescale::detect_longrope2(ropescale::yarn_factors(spec, yp).value().factors())
                   .value()
                   .found);
  EXPECT_FALSE(ropescale::detect_longrope2(ropescale::llama3_factors(spec, {}).value().factors())
                   .value()
                   .found);
  EXPECT_THROW(ropescale::detect_longrope2(Eigen::ArrayXd::Constant(4, -1.0)).value(),
               ropescale::Error);
  EXPECT_FALSE(ropescale::detect_longrope2(Eigen::ArrayXd::Ones(4), -1.0).ok());
  // A synthetic table detects exactly its c.
  Eigen::ArrayXd searched = Eigen::ArrayXd::LinSpaced(20, 9.0, 12.0);
  const auto t = ropescale::longrope2_factors(spec, 44, searched).value();
  const auto d = ropescale::detect_longrope2(t.factors(), 1e-12).value();
  EXPECT_TRUE(d.found);
  EXPECT_EQ(d.critical_pair, 44);
  EXPECT_EQ(d.anchor, 9.0);
}

// ---------------------------------------------------------------------------------------------
// Bad input: the error names the argument, its value and the rule; *out is left untouched.
// ---------------------------------------------------------------------------------------------

void expect_error(const std::function<void()>& f, const std::string& needle) {
  try {
    f();
    ADD_FAILURE() << "no error; wanted one mentioning " << needle;
  } catch (const ropescale::Error& e) {
    EXPECT_EQ(e.code(), ropescale::ErrorCode::kInvalidArgument);
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
  }
}

TEST(ScalingErrors, NameTheArgumentValueAndRule) {
  const RopeSpec spec = spec_of(128, 128, 1e4, 4096);
  expect_error([&] { ropescale::linear_factors(spec, 0.5).value(); },
               "factor = 0.5: must be finite and >= 1");
  expect_error([&] { ropescale::linear_factors(spec, NAN).value(); }, "factor = nan");
  expect_error([&] { ropescale::ntk_factors(spec_of(2, 2, 1e4, 4096), 2).value(); },
               "rotary_dim = 2");
  expect_error([&] { ropescale::ntk_critical_factors(spec, 100).value(); }, "target_length = 100");
  expect_error([&] { ropescale::dynamic_ntk_factors(spec, 2, 0, 10).value(); },
               "max_position_embeddings = 0");
  ropescale::YarnParams y;
  y.factor = 4;
  y.beta_fast = 0.5;
  expect_error([&] { ropescale::yarn_factors(spec, y).value(); },
               "beta_fast = 0.5: must be >= beta_slow");
  ropescale::Llama3Params l;
  l.low_freq_factor = 5;
  l.high_freq_factor = 4;
  expect_error([&] { ropescale::llama3_factors(spec, l).value(); },
               "low_freq_factor = 5: must be <= high_freq_factor");
  ropescale::LongRopeParams p;
  p.short_factor = Eigen::ArrayXd::Ones(63);
  p.long_factor = Eigen::ArrayXd::Ones(64);
  expect_error([&] { ropescale::longrope_factors(spec, p, std::int64_t{0}).value(); },
               "short_factor.size() = 63: must equal rotary_dim / 2 = 64");
  p.short_factor = Eigen::ArrayXd::Ones(64);
  p.long_factor[5] = -1;
  expect_error([&] { ropescale::longrope_factors(spec, p, std::int64_t{0}).value(); },
               "long_factor[5] = -1: must be finite and >= 1e-6");
  expect_error([&] { ropescale::longrope2_factors(spec, 64, Eigen::ArrayXd::Ones(1)).value(); },
               "critical_pair = 64");
  expect_error([&] { ropescale::longrope2_factors(spec, 30, Eigen::ArrayXd::Ones(3)).value(); },
               "searched.size() = 3: must equal rotary_dim/2 - critical_pair = 34");
  expect_error(
      [&] { ropescale::dynamic_longrope_factors(spec, Eigen::ArrayXd::Ones(64), 1.0, 9).value(); },
      "factor = 1");

  // Without exceptions: the Result holds the Status and no table.
  const ropescale::Result<FactorTable> bad = ropescale::linear_factors(spec, -3.0);
  EXPECT_FALSE(bad.ok());
  EXPECT_STREQ(bad.status().id(), "invalid_argument");
  EXPECT_EQ(bad.status().argument(), "factor");
  EXPECT_EQ(bad.value_or(ropescale::linear_factors(spec, 2.0).value()),
            ropescale::linear_factors(spec, 2.0).value());
  EXPECT_FALSE(ropescale::yarn_factors(spec, y).ok());
}

}  // namespace
