// Tests for critical.hpp: the critical dims of real models (LongRoPE2 eq. 7 and Alg. 1), periods
// against values computed by hand (30-digit arithmetic, independent of this code), the OOD lists
// of the closed-form methods at LLaMA3-8B 8k -> 128k, detection of the NTK-anchored critical pair
// in the published LongRoPE2 tables, and the bad-input rules.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "ropescale/critical.hpp"
#include "ropescale/scaling.hpp"
#include "test_data.hpp"

namespace {

nlohmann::json load_fixture(const std::string& name) { return ropescale_test::load_json(name); }

using ropescale::CriticalDims;
using ropescale::ErrorCode;
using ropescale::FactorTable;
using ropescale::RopeSpec;

RopeSpec make_spec(std::int64_t head_dim, std::int64_t rotary_dim, double base,
                   std::int64_t train) {
  RopeSpec s;
  s.head_dim = head_dim;
  s.rotary_dim = rotary_dim;
  s.rope_theta = base;
  s.original_max_position = train;
  return s;
}

const RopeSpec kLlama3 = make_spec(128, 128, 500000.0, 8192);

// The critical pairs `table` leaves OOD at `target` (TableAnalysis::ood_pairs).
ropescale::Result<std::vector<std::int64_t>> ood_pairs_of(const RopeSpec& spec, std::int64_t target,
                                                          const FactorTable& table) {
  const auto a = ropescale::analyze_critical(spec, target);
  if (!a.ok()) return a.status();
  const auto t = ropescale::analyze_table(*a, table);
  if (!t.ok()) return t.status();
  return t->ood_pairs;
}
const RopeSpec kPhi3Mini2k = make_spec(96, 96, 10000.0, 2048);  // the paper's Phi3-mini setting
const RopeSpec kPhi4Mini = make_spec(128, 96, 10000.0, 4096);   // partial_rotary_factor 0.75

std::vector<std::int64_t> range(std::int64_t first, std::int64_t last) {
  std::vector<std::int64_t> out;
  for (std::int64_t i = first; i <= last; ++i) out.push_back(i);
  return out;
}

Eigen::ArrayXd long_factor(const std::string& name) {
  const nlohmann::json j = load_fixture(name);
  const auto& list = j.at("rope_scaling").at("long_factor");
  Eigen::ArrayXd f(static_cast<Eigen::Index>(list.size()));
  for (std::size_t i = 0; i < list.size(); ++i)
    f[static_cast<Eigen::Index>(i)] = list[i].get<double>();
  return f;
}

// ---------------------------------------------------------------------------------------------
// Critical dims: LongRoPE2 eq. 7 and Alg. 1 line 2, values from the issue and the paper.
// ---------------------------------------------------------------------------------------------

TEST(CriticalDims, KnownModels) {
  const CriticalDims llama = ropescale::critical_dims(kLlama3).value();
  EXPECT_EQ(llama.critical_pair, 35);
  EXPECT_EQ(llama.critical_dim, 70);
  EXPECT_EQ(llama.lower_pair, 24);
  EXPECT_EQ(llama.lower_dim, 48);
  // 64 ln(8192/2pi) / ln(500000), 30 digits: 34.9841190014724
  EXPECT_NEAR(llama.critical_pair_exact, 34.9841190014724, 1e-12);

  // The paper: "62, corresponding to the 31st cosine dimension" for Phi3-mini at 2k.
  const CriticalDims phi3 = ropescale::critical_dims(kPhi3Mini2k).value();
  EXPECT_EQ(phi3.critical_pair, 31);
  EXPECT_EQ(phi3.critical_dim, 62);
  EXPECT_EQ(phi3.lower_pair, 19);
  EXPECT_NEAR(phi3.critical_pair_exact, 30.1578010073481, 1e-12);

  const CriticalDims phi4 = ropescale::critical_dims(kPhi4Mini).value();
  EXPECT_EQ(phi4.critical_pair, 34);
  EXPECT_EQ(phi4.critical_dim, 68);
  EXPECT_EQ(phi4.lower_pair, 22);
  EXPECT_NEAR(phi4.critical_pair_exact, 33.7701609553159, 1e-12);
}

TEST(CriticalDims, AgreesWithALongDoubleReference) {
  // ceil(d/2 * log_base(L / 2pi)) and the same at L / 10 (LongRoPE2 eq. 7, Alg. 1), in long double.
  const long double pi = 3.141592653589793238462643383279502884L;
  for (const RopeSpec& s : {kLlama3, kPhi3Mini2k, kPhi4Mini}) {
    const CriticalDims d = ropescale::critical_dims(s).value();
    const auto pair = [&](long double length) {
      return static_cast<std::int64_t>(std::ceil(static_cast<long double>(s.frequency_dim() / 2) *
                                                 std::log(length / (2.0L * pi)) /
                                                 std::log(static_cast<long double>(s.rope_theta))));
    };
    const long double train = static_cast<long double>(s.original_max_position);
    EXPECT_EQ(d.critical_pair, pair(train));
    EXPECT_EQ(d.lower_pair, pair(train / 10.0L));
  }
}

TEST(CriticalDims, CriticalPairIsTheFirstPeriodBeyondTheWindow) {
  // Definition check on a sweep of bases and windows: T_{c-1} <= L_train < T_c.
  for (double base : {500.0, 10000.0, 500000.0, 1e6, 1e7})
    for (std::int64_t train : {64, 1000, 2048, 4096, 8192, 32768}) {
      const RopeSpec s = make_spec(128, 128, base, train);
      const auto a = ropescale::analyze_critical(s, train).value();
      const std::int64_t c = a.dims.critical_pair;
      const double l = static_cast<double>(train);
      if (c < a.pairs()) {
        EXPECT_GT(a.period[c], l) << base << " " << train;
      }
      if (c > 0) {
        EXPECT_LE(a.period[c - 1], l) << base << " " << train;
      }
      const std::int64_t lo = a.dims.lower_pair;
      if (lo < a.pairs()) {
        EXPECT_GT(a.period[lo], l / 10.0);
      }
      if (lo > 0) {
        EXPECT_LE(a.period[lo - 1], l / 10.0);
      }
    }
}

TEST(CriticalDims, ClampedToThePairRange) {
  // Base 2 with 8 pairs: every period is <= 2pi * 2 < 1e6, so every pair completed a period.
  const CriticalDims all = ropescale::critical_dims(make_spec(16, 16, 2.0, 1000000)).value();
  EXPECT_EQ(all.critical_pair, 8);
  EXPECT_EQ(all.lower_pair, 8);
  // A window of 7 tokens: the lower bound would be negative.
  const CriticalDims tiny = ropescale::critical_dims(make_spec(128, 128, 10000.0, 7)).value();
  EXPECT_EQ(tiny.lower_pair, 0);
  EXPECT_EQ(tiny.critical_pair, 1);  // 64 * ln(7/2pi)/ln(1e4) = 0.75 -> 1
}

// ---------------------------------------------------------------------------------------------
// Per-pair periods against values computed by hand (2pi base^(2i/d) in 30-digit arithmetic).
// ---------------------------------------------------------------------------------------------

TEST(PairPeriods, HandComputed) {
  const auto a = ropescale::analyze_critical(kLlama3, 131072).value();
  ASSERT_EQ(a.pairs(), 64);
  EXPECT_DOUBLE_EQ(a.theta[0], 1.0);
  EXPECT_NEAR(a.period[0], 6.28318530717959, 1e-13);
  EXPECT_NEAR(a.period[34] / 6695.10948108431, 1.0, 1e-13);
  EXPECT_NEAR(a.period[35] / 8218.71819405104, 1.0, 1e-13);
  EXPECT_NEAR(a.period[63] / 2559195.51737136, 1.0, 1e-13);
  EXPECT_NEAR(a.train_periods[0], 1303.79729380881, 1e-9);
  EXPECT_NEAR(a.train_periods[35], 8192.0 / 8218.71819405104, 1e-13);
  EXPECT_DOUBLE_EQ(a.scale, 16.0);
  EXPECT_FALSE(a.is_critical(34));
  EXPECT_TRUE(a.is_critical(35));

  const auto p = ropescale::analyze_critical(kPhi3Mini2k, 131072).value();
  EXPECT_NEAR(p.period[30] / 1986.91765315922, 1.0, 1e-13);
  EXPECT_NEAR(p.period[31] / 2407.2056922198, 1.0, 1e-13);
  EXPECT_NEAR(p.period[47] / 51861.6744936055, 1.0, 1e-13);  // the paper prints 51861
  EXPECT_DOUBLE_EQ(p.scale, 64.0);

  // Partial rotary: Phi-4-mini's 48 pairs are indexed by rotary_dim 96, not head_dim 128.
  const auto q = ropescale::analyze_critical(kPhi4Mini, 131072).value();
  ASSERT_EQ(q.pairs(), 48);
  EXPECT_NEAR(q.period[34] / 4280.68431820296, 1.0, 1e-13);
}

TEST(PairPeriods, RescaledPeriodAndMargin) {
  const auto a = ropescale::analyze_critical(kLlama3, 131072).value();
  const auto ntk =
      ropescale::analyze_table(a, ropescale::ntk_factors(kLlama3, 16.0).value()).value();
  // NTK (LocalLLaMA): lambda_35 = 16^(35/63) = 4.66611615830447 (hand-computed).
  EXPECT_NEAR(ntk.factors[35], 4.66611615830447, 1e-12);
  EXPECT_NEAR(ntk.margin[35], 4.66611615830447 - 16.0, 1e-12);
  EXPECT_NEAR(ntk.rescaled_period[35] / (8218.71819405104 * 4.66611615830447), 1.0, 1e-12);
  EXPECT_NEAR(ntk.target_periods[35], 131072.0 / (8218.71819405104 * 4.66611615830447), 1e-12);
  // Under PI every period grows by s exactly and the margins are all zero.
  const auto pi =
      ropescale::analyze_table(a, ropescale::linear_factors(kLlama3, 16.0).value()).value();
  EXPECT_TRUE((pi.margin == 0.0).all());
  EXPECT_TRUE(((pi.rescaled_period / a.period - 16.0).abs() < 1e-12).all());
  // PI keeps L / (T lambda) = L_train / T: the target covers what pre-training covered.
  EXPECT_TRUE(((pi.target_periods / a.train_periods - 1.0).abs() < 1e-12).all());
}

// ---------------------------------------------------------------------------------------------
// OOD lists at LLaMA3-8B 8k -> 128k (s = 16, critical pair 35).
// ---------------------------------------------------------------------------------------------

TEST(OodPairs, ClosedFormMethodsAtLlama3_128k) {
  const std::int64_t target = 131072;
  // PI: lambda = s everywhere, nothing below s above c.
  EXPECT_TRUE(ood_pairs_of(kLlama3, target, ropescale::linear_factors(kLlama3, 16.0).value())
                  .value()
                  .empty());
  // YaRN: lambda = s from its ramp end ceil(c(beta_slow = 1)) = 35 upwards.
  ropescale::YarnParams yarn;
  yarn.factor = 16.0;
  EXPECT_TRUE(ood_pairs_of(kLlama3, target, ropescale::yarn_factors(kLlama3, yarn).value())
                  .value()
                  .empty());
  // NTK: lambda_i = 16^(i/63) < 16 for every critical pair but the last.
  EXPECT_EQ(ood_pairs_of(kLlama3, target, ropescale::ntk_factors(kLlama3, 16.0).value()).value(),
            range(35, 62));
  // The paper's NTK reaches s right at the critical dimension (lambda_35 = 16.02).
  EXPECT_TRUE(
      ood_pairs_of(kLlama3, target, ropescale::ntk_critical_factors(kLlama3, target).value())
          .value()
          .empty());
  // Llama-3.1 as published (factor 8) at 128k: its low-frequency pairs get 8 < 16.
  ropescale::Llama3Params l31;  // factor 8, low 1, high 4, window 8192 (llama31_8b.json)
  EXPECT_EQ(ood_pairs_of(kLlama3, target, ropescale::llama3_factors(kLlama3, l31).value()).value(),
            range(35, 63));
  // ... and none at the 64k it was set up for (s = 8).
  EXPECT_TRUE(ood_pairs_of(kLlama3, 65536, ropescale::llama3_factors(kLlama3, l31).value())
                  .value()
                  .empty());
}

TEST(OodPairs, OnlyCriticalPairsCountAndTheSlackIsTiny) {
  const auto a = ropescale::analyze_critical(kLlama3, 131072).value();
  Eigen::ArrayXd f = Eigen::ArrayXd::Constant(64, 16.0);
  f[10] = 1.0;                   // below c: completed periods, never OOD
  f[40] = 15.99;                 // OOD
  f[50] = 16.0 * (1.0 - 1e-12);  // an ulp-level shortfall stays in range
  f[60] = 16.0 * (1.0 - 1e-6);   // a real shortfall does not
  const auto t = ropescale::analyze_table(a, FactorTable(f, 1.0, "hand")).value();
  EXPECT_EQ(t.ood_pairs, (std::vector<std::int64_t>{40, 60}));
  EXPECT_TRUE(t.is_ood(40));
  EXPECT_FALSE(t.is_ood(10));
  EXPECT_NEAR(t.margin[40], -0.01, 1e-12);
  EXPECT_EQ(t.method, "hand");
}

TEST(OodPairs, SideBySide) {
  const auto cmp = ropescale::compare_methods(kLlama3, 131072).value();
  std::vector<std::string> names;
  for (const auto& m : cmp.methods) names.push_back(m.method);
  EXPECT_EQ(names, (std::vector<std::string>{"linear", "ntk", "ntk_critical", "yarn", "llama3"}));
  EXPECT_EQ(cmp.analysis.dims.critical_pair, 35);
  for (const auto& m : cmp.methods) {
    EXPECT_EQ(m.factors.size(), 64);
    EXPECT_FALSE(m.detected_critical_pair.has_value()) << m.method;
    if (m.method != "ntk") {
      EXPECT_TRUE(m.ood_pairs.empty()) << m.method;
    }
  }
  // A searched table joins at the end.
  const Eigen::ArrayXd lr2 = long_factor("llama3_8b_longrope2.json");
  const auto with =
      ropescale::compare_methods(kLlama3, 131072, {FactorTable(lr2, 1.0, "lr2")}).value();
  ASSERT_EQ(with.methods.size(), 6u);
  EXPECT_EQ(with.methods.back().method, "lr2");
  EXPECT_TRUE(with.methods.back().ood_pairs.empty());
  EXPECT_EQ(with.methods.back().detected_critical_pair, 33);
}

// ---------------------------------------------------------------------------------------------
// The published LongRoPE2 tables (tests/data, copied from the model configs).
// ---------------------------------------------------------------------------------------------

TEST(Detection, PublishedLongRope2Tables) {
  // LLaMA3-8B LongRoPE2 (microsoft/nnscaler): geometric r^i up to lambda_33 = 21.81.
  const Eigen::ArrayXd llama = long_factor("llama3_8b_longrope2.json");
  ASSERT_EQ(llama.size(), 64);
  EXPECT_EQ(ropescale::detect_longrope2(llama).value().critical_pair, 33);
  // Phi-4-mini: geometric up to lambda_31 = 32.03.
  const Eigen::ArrayXd phi4 = long_factor("phi4_mini_instruct.json");
  ASSERT_EQ(phi4.size(), 48);
  EXPECT_EQ(ropescale::detect_longrope2(phi4).value().critical_pair, 31);
  // Phi-3.5-mini's LongRoPE (v1) table has no NTK-anchored part.
  EXPECT_FALSE(ropescale::detect_longrope2(long_factor("phi35_mini_instruct.json")).value().found);

  // Both searched tables keep every critical pair in range at 128k.
  const auto a = ropescale::analyze_table(ropescale::analyze_critical(kLlama3, 131072).value(),
                                          FactorTable(llama, 1.0, "longrope2"))
                     .value();
  EXPECT_TRUE(a.ood_pairs.empty());
  EXPECT_EQ(a.detected_critical_pair, 33);
  const auto b = ropescale::analyze_table(ropescale::analyze_critical(kPhi4Mini, 131072).value(),
                                          FactorTable(phi4, 1.0, "longrope2"))
                     .value();
  EXPECT_TRUE(b.ood_pairs.empty());
  EXPECT_EQ(b.detected_critical_pair, 31);
  // Stretched to 256k (s = 32) the LLaMA3 table, whose top factor is 26.05, falls short on
  // every critical pair.
  const auto c = ropescale::analyze_table(ropescale::analyze_critical(kLlama3, 262144).value(),
                                          FactorTable(llama, 1.0, "longrope2"))
                     .value();
  EXPECT_EQ(c.ood_pairs, range(35, 63));
}

TEST(Detection, RoundTripThroughTheGenerator) {
  // longrope2_factors builds lambda_c^(i/c) below c; detection must give c back.
  for (std::int64_t c : {3, 20, 33, 40, 62}) {
    Eigen::ArrayXd searched = Eigen::ArrayXd::LinSpaced(64 - c, 21.81, 26.05);
    searched[0] = 21.81;
    if (c < 63) searched[1] = 21.0;  // leave the geometric law right after the anchor
    const FactorTable t = ropescale::longrope2_factors(kLlama3, c, searched).value();
    EXPECT_EQ(ropescale::detect_longrope2(t.factors()).value().critical_pair, c) << c;
  }
}

TEST(Detection, ClosedFormTablesHaveNone) {
  ropescale::YarnParams yarn;
  yarn.factor = 16.0;
  for (const FactorTable& t :
       {ropescale::linear_factors(kLlama3, 16.0).value(),
        ropescale::ntk_factors(kLlama3, 16.0).value(),
        ropescale::ntk_critical_factors(kLlama3, 131072).value(),
        ropescale::yarn_factors(kLlama3, yarn).value(),
        ropescale::llama3_factors(kLlama3, ropescale::Llama3Params{}).value(),
        FactorTable::identity(kLlama3)})
    EXPECT_FALSE(ropescale::detect_longrope2(t.factors()).value().found) << t.method();
}

// ---------------------------------------------------------------------------------------------
// Bad input: a clear error naming the argument, the value and the rule.
// ---------------------------------------------------------------------------------------------

void expect_invalid(const RopeSpec& spec, std::int64_t target, const std::string& needle) {
  try {
    ropescale::analyze_critical(spec, target).value();
    ADD_FAILURE() << "no error for " << spec << " target " << target;
  } catch (const ropescale::Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kInvalidArgument);
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
  }
  const ropescale::Status st = ropescale::analyze_critical(spec, target).status();
  EXPECT_FALSE(st.ok());
  EXPECT_NE(st.message().find(needle), std::string::npos) << st.message();
}

TEST(BadInput, Spec) {
  expect_invalid(make_spec(128, 128, 1.0, 8192), 131072, "rope_theta = 1: must be finite and > 1");
  expect_invalid(make_spec(128, 128, 0.5, 8192), 131072, "rope_theta = 0.5");
  expect_invalid(make_spec(128, 128, std::nan(""), 8192), 131072, "rope_theta = nan");
  expect_invalid(make_spec(128, 127, 10000.0, 8192), 131072, "rotary_dim = 127: must be even");
  expect_invalid(make_spec(128, 0, 10000.0, 8192), 131072, "rotary_dim = 0: must be > 0");
  expect_invalid(make_spec(128, -2, 10000.0, 8192), 131072, "rotary_dim = -2");
  expect_invalid(make_spec(128, 128, 10000.0, 6), 131072,
                 "original_max_position = 6: must be > 2 pi");
  expect_invalid(make_spec(128, 128, 10000.0, 0), 131072, "original_max_position = 0");
  expect_invalid(kLlama3, 8191, "target_length = 8191: must be >= original_max_position (8192)");
  // The smallest window that holds one period of pair 0, and target == L_train, are fine.
  EXPECT_NO_THROW(ropescale::analyze_critical(make_spec(128, 128, 10000.0, 7), 7).value());
  EXPECT_THROW(ropescale::critical_dims(make_spec(128, 128, 10000.0, 6)).value(), ropescale::Error);
}

TEST(BadInput, TableOfTheWrongLength) {
  const auto a = ropescale::analyze_critical(kLlama3, 131072).value();
  const FactorTable short_table(Eigen::ArrayXd::Constant(48, 16.0), 1.0, "phi");
  try {
    ropescale::analyze_table(a, short_table).value();
    ADD_FAILURE() << "no error";
  } catch (const ropescale::Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kInvalidArgument);
    EXPECT_NE(
        std::string(e.what()).find("factor table length = 48: must equal rotary_dim / 2 = 64"),
        std::string::npos)
        << e.what();
  }
  EXPECT_EQ(ropescale::analyze_table(a, short_table).status().argument(), "factor table length");
  // compare_tables says which table failed.
  const ropescale::Status st =
      ropescale::compare_tables(kLlama3, 131072,
                                {ropescale::linear_factors(kLlama3, 16.0).value(), short_table})
          .status();
  EXPECT_FALSE(st.ok());
  EXPECT_NE(st.message().find("table 1, method \"phi\""), std::string::npos) << st.message();
  // An analysis that did not come from analyze_critical() is refused, not read out of bounds.
  EXPECT_FALSE(ropescale::analyze_table(ropescale::CriticalAnalysis{}, short_table).ok());
}

TEST(BadInput, CompareMethods) {
  EXPECT_THROW(ropescale::compare_methods(kLlama3, 4096).value(), ropescale::Error);
  EXPECT_THROW(ropescale::compare_methods(make_spec(128, 128, 10000.0, 5), 4096).value(),
               ropescale::Error);
  // rotary_dim 2 has no NTK (its exponent d/(d-2) diverges): the method is left out.
  const auto two = ropescale::compare_methods(make_spec(2, 2, 10000.0, 4096), 8192).value();
  for (const auto& m : two.methods) EXPECT_NE(m.method, "ntk");
  EXPECT_EQ(two.methods.size(), 4u);
}

}  // namespace
