// Core types: RopeSpec, base inverse frequencies, FactorTable, Error and Status.
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "ropescale/error.hpp"
#include "ropescale/factors.hpp"
#include "ropescale/frequencies.hpp"

using ropescale::ErrorCode;
using ropescale::FactorTable;
using ropescale::RopeSpec;
using ropescale::Status;

namespace {

TEST(RopeSpec, BaseInvFreqMatchesHuggingFaceFloat64) {
  std::ifstream in(std::string(ROPESCALE_TEST_DATA_DIR) + "/inv_freq.json");
  const auto j = nlohmann::json::parse(in);
  for (const auto& c : j["cases"]) {
    if (c["name"] != "default_theta1e4_d128") continue;
    const RopeSpec spec{128, 128, c["config"]["rope_theta"].get<double>(), 4096};
    const auto expected = c["inv_freq_f64"].get<std::vector<double>>();
    const Eigen::ArrayXd ours = ropescale::base_inv_freq(spec).value();
    ASSERT_EQ(static_cast<std::size_t>(ours.size()), expected.size());
    for (std::size_t i = 0; i < expected.size(); ++i)
      EXPECT_NEAR(ours[static_cast<Eigen::Index>(i)], expected[i], 1e-15 * expected[i]);
    return;
  }
  FAIL() << "case default_theta1e4_d128 missing";
}

TEST(RopeSpec, CriticalPairsFromThePaper) {
  // LongRoPE2 sec. 3: LLaMA3-8B (500000, d 128, 8k) pair 35 (dim 70), lower bound 24;
  // Phi3-mini at 2k (10000, d 96) pair 31 (dim 62), lower 19; Phi-4-mini at 4k pair 34, lower 22.
  EXPECT_EQ(ropescale::critical_dims(RopeSpec{128, 128, 500000, 8192}).value().critical_pair, 35);
  EXPECT_EQ(ropescale::critical_dims(RopeSpec{128, 128, 500000, 8192}).value().lower_pair, 24);
  EXPECT_EQ(ropescale::critical_dims(RopeSpec{96, 96, 10000, 2048}).value().critical_pair, 31);
  EXPECT_EQ(ropescale::critical_dims(RopeSpec{96, 96, 10000, 2048}).value().lower_pair, 19);
  EXPECT_EQ(ropescale::critical_dims(RopeSpec{128, 96, 10000, 4096}).value().critical_pair, 34);
  EXPECT_EQ(ropescale::critical_dims(RopeSpec{128, 96, 10000, 4096}).value().lower_pair, 22);
}

TEST(RopeSpec, ValidationNamesFieldValueAndRule) {
  EXPECT_TRUE(ropescale::validate(RopeSpec{128, 96, 1e4, 4096}).ok());
  const Status s = ropescale::validate(RopeSpec{128, 96, 1.0, 4096});
  EXPECT_EQ(s.code(), ErrorCode::kInvalidArgument);
  EXPECT_EQ(s.message(), "ropescale: invalid_argument: rope_theta = 1: must be finite and > 1");
  EXPECT_NE(
      ropescale::validate(RopeSpec{128, 96, 1e4, 0}).message().find("original_max_position = 0"),
      std::string::npos);
  EXPECT_NE(ropescale::validate(RopeSpec{-1, 96, 1e4, 4096}).message().find("head_dim = -1"),
            std::string::npos);
  EXPECT_NE(ropescale::validate(RopeSpec{128, 0, 1e4, 4096}).message().find("rotary_dim = 0"),
            std::string::npos);
  EXPECT_NE(
      ropescale::validate(RopeSpec{128, 96, std::nan(""), 4096}).message().find("rope_theta = nan"),
      std::string::npos);
  EXPECT_THROW(ropescale::base_inv_freq(RopeSpec{128, 95, 1e4, 4096}).value(), ropescale::Error);
}

TEST(FactorTable, IdentityInvFreqAndEquality) {
  const RopeSpec spec{128, 96, 1e4, 4096};
  const FactorTable id = FactorTable::identity(spec);
  EXPECT_EQ(id.pairs(), 48);
  EXPECT_TRUE(id.is_identity());
  EXPECT_EQ(id.method(), "default");
  EXPECT_TRUE((id.inv_freq(spec).value() == ropescale::base_inv_freq(spec).value()).all());

  Eigen::ArrayXd f = Eigen::ArrayXd::LinSpaced(48, 1.0, 32.0);
  const FactorTable t(f, 1.19, "longrope");
  EXPECT_FALSE(t.is_identity());
  const Eigen::ArrayXd inv = t.inv_freq(spec).value();
  for (int i = 0; i < 48; ++i)
    EXPECT_DOUBLE_EQ(inv[i], 1.0 / (f[i] * std::pow(1e4, 2.0 * i / 96.0)));
  EXPECT_EQ(t, FactorTable(f, 1.19, "longrope"));
  // The method is provenance: it does not change the numbers, so == ignores it.
  EXPECT_EQ(t, FactorTable(f, 1.19, "other"));
  EXPECT_NE(t.method(), FactorTable(f, 1.19, "other").method());
  EXPECT_NE(t, FactorTable(f, 1.2, "longrope"));
  Eigen::ArrayXd g = f;
  g[47] *= 1 + 1e-14;
  EXPECT_NE(t, FactorTable(g, 1.19, "longrope"));
  EXPECT_TRUE(t.approx_equal(FactorTable(g, 1.19, "x"), 1e-12));
  EXPECT_FALSE(t.approx_equal(FactorTable(g, 1.19, "x"), 1e-16));
  EXPECT_FALSE(t.approx_equal(id));
}

TEST(FactorTable, PrintsMethodPairsAttentionAndFactors) {
  const FactorTable t(Eigen::ArrayXd::LinSpaced(3, 1.0, 2.0), 1.5, "yarn");
  std::ostringstream os;
  os << t;
  EXPECT_EQ(os.str(),
            "FactorTable{method=yarn, pairs=3, attention_factor=1.5, factors=[1, 1.5, 2]}");
}

TEST(FactorTable, RejectsBadValuesWithStatusTwin) {
  Eigen::ArrayXd f = Eigen::ArrayXd::Ones(4);
  f[1] = -2;
  const Status s = FactorTable::make(f, 1.0, "x").status();
  EXPECT_EQ(s.message(), "ropescale: invalid_argument: factors[1] = -2: must be finite and > 0");
  EXPECT_EQ(s.argument(), "factors[1]");
  f[1] = INFINITY;
  EXPECT_FALSE(FactorTable::make(f, 1.0, "x").ok());
  EXPECT_FALSE(FactorTable::make(Eigen::ArrayXd(), 1.0, "x").ok());
  EXPECT_FALSE(FactorTable::make(Eigen::ArrayXd::Ones(4), 0.0, "x").ok());
  const ropescale::Result<FactorTable> out = FactorTable::make(Eigen::ArrayXd::Ones(4), 1.0, "x");
  ASSERT_TRUE(out.ok());
  EXPECT_EQ(out->pairs(), 4);
  EXPECT_EQ(out->method(), "x");
  EXPECT_THROW(FactorTable::identity(0), ropescale::Error);
  const Status len = FactorTable::identity(4).validate_for(RopeSpec{16, 16, 1e4, 64});
  EXPECT_EQ(len.message(),
            "ropescale: invalid_argument: factor table length = 4: must equal rotary_dim / 2 = 8");
}

Status returns_early(bool fail, int* reached) {
  ROPESCALE_RETURN_IF_ERROR(fail ? ropescale::make_status(ErrorCode::kOutOfRange, "x", 3, "too big")
                                 : Status());
  *reached = 1;
  return Status();
}

TEST(ErrorAndStatus, StableIdsAndMessages) {
  EXPECT_STREQ(ropescale::error_id(ErrorCode::kOk), "ok");
  EXPECT_STREQ(ropescale::error_id(ErrorCode::kInvalidArgument), "invalid_argument");
  EXPECT_STREQ(ropescale::error_id(ErrorCode::kOutOfRange), "out_of_range");
  EXPECT_STREQ(ropescale::error_id(ErrorCode::kParseError), "parse_error");
  EXPECT_STREQ(ropescale::error_id(ErrorCode::kIoError), "io_error");
  EXPECT_STREQ(ropescale::error_id(ErrorCode::kUnsupported), "unsupported");
  const Status s = ropescale::make_status(ErrorCode::kParseError, "rope_scaling.type",
                                          std::string("foo"), "unknown rope type");
  EXPECT_EQ(s.message(), "ropescale: parse_error: rope_scaling.type = \"foo\": unknown rope type");
  try {
    ropescale::throw_if_error(s);
    FAIL();
  } catch (const ropescale::Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kParseError);
    EXPECT_STREQ(e.id(), "parse_error");
    EXPECT_EQ(std::string(e.what()), s.message());
  }
  EXPECT_NO_THROW(ropescale::throw_if_error(Status()));
  int reached = 0;
  EXPECT_FALSE(returns_early(true, &reached).ok());
  EXPECT_EQ(reached, 0);
  EXPECT_TRUE(returns_early(false, &reached).ok());
  EXPECT_EQ(reached, 1);
}

TEST(ErrorAndStatus, FieldsAreKeptAndFormattedOnDemand) {
  const Status s =
      ropescale::make_status(ErrorCode::kInvalidArgument, "rotary_dim", 7, "must be even");
  EXPECT_EQ(s.code(), ErrorCode::kInvalidArgument);
  EXPECT_EQ(s.argument(), "rotary_dim");
  EXPECT_EQ(s.value(), "7");
  EXPECT_EQ(s.rule(), "must be even");
  EXPECT_EQ(s.context(), "");
  EXPECT_EQ(s.reason(), "invalid_argument: rotary_dim = 7: must be even");
  EXPECT_EQ(s.message(), "ropescale: " + s.reason());

  // Renaming the argument and adding contexts (inner first) change fields, never the rule.
  const Status t = s.with_argument("rope_scaling.rotary_dim")
                       .with_context("layer 3")
                       .with_context("in config.json");
  EXPECT_EQ(t.argument(), "rope_scaling.rotary_dim");
  EXPECT_EQ(t.value(), "7");
  EXPECT_EQ(t.rule(), "must be even");
  EXPECT_EQ(t.context(), "layer 3, in config.json");
  EXPECT_EQ(t.message(),
            "ropescale: invalid_argument: rope_scaling.rotary_dim = 7: must be even (layer 3, in "
            "config.json)");
  EXPECT_EQ(t.with_code(ErrorCode::kParseError).id(), std::string("parse_error"));
  EXPECT_NE(s, t);
  EXPECT_EQ(s, s.with_context(""));

  // A rule broken by no single argument; a field with no value to show.
  EXPECT_EQ(ropescale::make_status(ErrorCode::kParseError, "malformed JSON").message(),
            "ropescale: parse_error: malformed JSON");
  EXPECT_EQ(Status(ErrorCode::kParseError, "checkpoint history", "", "missing").message(),
            "ropescale: parse_error: checkpoint history: missing");

  // An ok Status stays ok through every modifier and has no text.
  const Status ok = Status().with_argument("x").with_context("y").with_code(ErrorCode::kIoError);
  EXPECT_TRUE(ok.ok());
  EXPECT_EQ(ok.message(), "");
  EXPECT_EQ(ok.reason(), "");
  EXPECT_EQ(ok.argument(), "");
}

ropescale::Result<std::vector<double>> halves(int n) {
  if (n < 0) return ropescale::make_status(ErrorCode::kInvalidArgument, "n", n, "must be >= 0");
  return std::vector<double>(static_cast<std::size_t>(n), 0.5);
}

TEST(ErrorAndStatus, ResultHoldsAValueOrItsStatus) {
  ropescale::Result<std::vector<double>> good = halves(3);
  ASSERT_TRUE(good.ok());
  EXPECT_TRUE(static_cast<bool>(good));
  EXPECT_TRUE(good.status().ok());
  EXPECT_EQ(good->size(), 3u);
  EXPECT_EQ((*good)[2], 0.5);
  const std::vector<double> moved = std::move(good).value();
  EXPECT_EQ(moved.size(), 3u);

  const ropescale::Result<std::vector<double>> bad = halves(-2);
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().argument(), "n");
  EXPECT_EQ(bad.status().value(), "-2");
  EXPECT_EQ(bad.value_or({1.0}).size(), 1u);
  try {
    (void)bad.value();
    FAIL() << "value() of an error must throw";
  } catch (const ropescale::Error& e) {
    EXPECT_EQ(e.status(), bad.status());
    EXPECT_EQ(std::string(e.what()), "ropescale: invalid_argument: n = -2: must be >= 0");
  }

  // An ok Status carries no value: the Result is an error naming the misuse, never "ok, empty".
  const ropescale::Result<int> misuse = Status();
  EXPECT_FALSE(misuse.ok());
  EXPECT_EQ(misuse.status().argument(), "Result(Status)");
  EXPECT_EQ(misuse.value_or(7), 7);
}

}  // namespace
