// Hostile input at every front door of the library: each test is one reproduction from an audit
// with ASan+UBSan (numbered as in the audit) and checks that the call answers with a named
// ropescale::Error / Status instead of a crash, undefined behaviour, a standard exception, a hang
// or a silent NaN. The tool's own cases live in examples/cli/tests/test_tool_cli.cpp.
#include <gtest/gtest.h>

#include <Eigen/Core>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "ropescale/critical.hpp"
#include "ropescale/io/hf_config.hpp"
#include "ropescale/io/search_checkpoint.hpp"
#include "ropescale/needle.hpp"
#include "ropescale/rotary.hpp"
#include "ropescale/search.hpp"
#include "ropescale/training.hpp"

using ropescale::ErrorCode;
using ropescale::FactorTable;
using ropescale::HeadsView;
using ropescale::PairLayout;
using ropescale::RopeSpec;
using ropescale::Status;

namespace {

constexpr std::int64_t kI64Max = std::numeric_limits<std::int64_t>::max();
constexpr std::int64_t kI64Min = std::numeric_limits<std::int64_t>::min();

bool contains(const std::string& haystack, const std::string& needle) {
  return haystack.find(needle) != std::string::npos;
}

std::string temp_path(const std::string& name) {
  const testing::TestInfo* info = testing::UnitTest::GetInstance()->current_test_info();
  return testing::TempDir() + "ropescale_hostile_" + info->name() + "_" + name;
}

Status parse(const std::string& text) { return ropescale::parse_hf_config(text).status(); }

// Runs f, which must throw ropescale::Error (no other exception) whose message holds `needle`.
template <typename F>
void expect_error(F f, const std::string& needle) {
  try {
    f();
    ADD_FAILURE() << "no error (expected '" << needle << "')";
  } catch (const ropescale::Error& e) {
    EXPECT_TRUE(contains(e.what(), needle)) << e.what();
  }
}

const RopeSpec kSpec{64, 64, 10000.0, 4096};

// 1. A deep array where a number is expected: the error excerpt is bounded, no recursion.
TEST(HostileInput, Item01DeeplyNestedValueInConfigGivesABoundedExcerpt) {
  const std::size_t depth = 100000;
  const std::string text =
      "{\"head_dim\": 64, \"max_position_embeddings\": 4096, \"rope_theta\": " +
      std::string(depth, '[') + std::string(depth, ']') + "}";
  const Status s = parse(text);
  EXPECT_EQ(s.code(), ErrorCode::kParseError);
  EXPECT_TRUE(contains(s.message(), "rope_theta = [[[[[[[[")) << s.message().substr(0, 200);
  EXPECT_TRUE(contains(s.message(), "must be a number")) << s.message().substr(0, 200);
  EXPECT_LT(s.message().size(), 200u);
  // A small container is still shown whole, as before.
  EXPECT_TRUE(contains(parse("[1, 2]").message(), "config = [1,2]: must be a JSON object"));
}

// 2. max_position_embeddings = INT64_MAX used to reach original_max_position + 1 (signed overflow).
TEST(HostileInput, Item02HugeWindowsInConfigAreRefusedByName) {
  const std::string big = "9223372036854775807";
  Status s =
      parse("{\"head_dim\": 64, \"rope_theta\": 10000, \"max_position_embeddings\": " + big + "}");
  EXPECT_EQ(s.code(), ErrorCode::kInvalidArgument);
  EXPECT_TRUE(contains(s.message(), "max_position_embeddings = " + big + ": must be <= 2^48"))
      << s.message();
  s = parse("{\"head_dim\": 64, \"rope_theta\": 10000, \"max_position_embeddings\": " + big +
            ", \"rope_scaling\": {\"type\": \"dynamic\", \"factor\": 2}}");
  EXPECT_TRUE(contains(s.message(), "max_position_embeddings = " + big)) << s.message();
  s = parse(
      "{\"head_dim\": 64, \"rope_theta\": 10000, \"max_position_embeddings\": 4096, "
      "\"rope_scaling\": {\"rope_type\": \"llama3\", \"factor\": 8, \"low_freq_factor\": 1, "
      "\"high_freq_factor\": 4, \"original_max_position_embeddings\": " +
      big + "}}");
  EXPECT_TRUE(contains(s.message(), "rope_scaling.original_max_position_embeddings = " + big))
      << s.message();
  // The library's own entry points refuse such windows too.
  RopeSpec spec = kSpec;
  spec.original_max_position = kI64Max;
  EXPECT_TRUE(contains(ropescale::validate(spec).message(), "original_max_position"));
  EXPECT_FALSE(ropescale::dynamic_ntk_factors(kSpec, 2.0, kI64Max, kI64Max).ok());
}

// 3. Strides and shapes whose products overflow int64.
TEST(HostileInput, Item03ViewShapesAndStridesThatOverflowAreRefused) {
  const FactorTable table = FactorTable::identity(kSpec);
  const ropescale::RotaryFrequencies freqs(kSpec, table);
  std::vector<float> x(4 * 64, 1.0f);
  const std::vector<float> x0 = x;
  const std::vector<std::int64_t> pos = {0, 1, 2, 3};
  // token_stride = INT64_MIN: its magnitude does not fit.
  HeadsView<float> v{x.data(), 2, 1, 64, kI64Min, 64};
  Status s = ropescale::rotate(freqs, pos.data(), v, PairLayout::kHalfSplit);
  EXPECT_EQ(s.code(), ErrorCode::kInvalidArgument);
  EXPECT_TRUE(contains(s.message(), "x extent")) << s.message();
  // 2^62 tokens of stride 4: stride * count overflows.
  v = HeadsView<float>{x.data(), std::int64_t{1} << 62, 1, 64, 64, 64};
  s = ropescale::rotate(freqs, pos.data(), v, PairLayout::kHalfSplit);
  EXPECT_TRUE(contains(s.message(), "overflows int64")) << s.message();
  // Out of place, 2^40 x 2^20 x 128.
  const RopeSpec wide{128, 128, 10000.0, 4096};
  const ropescale::RotaryFrequencies wf(wide, FactorTable::identity(wide));
  const std::int64_t t40 = std::int64_t{1} << 40, h20 = std::int64_t{1} << 20;
  const HeadsView<const float> in{x.data(), t40, h20, 128, h20 * 128, 128};
  const HeadsView<float> out{x.data() + 8, t40, h20, 128, h20 * 128, 128};
  s = ropescale::rotate_out(wf, pos.data(), in, out, PairLayout::kHalfSplit);
  EXPECT_EQ(s.code(), ErrorCode::kInvalidArgument);
  EXPECT_TRUE(contains(s.message(), "overflows int64")) << s.message();
  EXPECT_EQ(x, x0);
  // The stride of a dimension of size 1 is never used, whatever it holds.
  v = HeadsView<float>{x.data(), 1, 1, 64, kI64Min, kI64Min};
  EXPECT_TRUE(ropescale::rotate(freqs, pos.data(), v, PairLayout::kHalfSplit).ok());
  x = x0;
  // The factory's own product.
  expect_error(
      [] { HeadsView<float>::tokens_heads_dim(nullptr, 1, std::int64_t{1} << 40, 1 << 30); },
      "heads * head_dim");
  expect_error(
      [] { HeadsView<float>::heads_tokens_dim(nullptr, std::int64_t{1} << 40, 1, 1 << 30); },
      "tokens * head_dim");
}

// 4. Search counts whose sums overflow; absurd populations.
TEST(HostileInput, Item04SearchCountsAreBounded) {
  ropescale::SearchParams p;
  p.mutations = kI64Max;
  p.crossovers = kI64Max;
  EXPECT_TRUE(contains(ropescale::validate(p).message(), "params.mutations")) << "sum overflow";
  p.mutations = kI64Max - 1;
  p.crossovers = 1;
  EXPECT_FALSE(ropescale::validate(p).ok());
  p = ropescale::SearchParams{};
  p.population = 1000000000000;
  p.parents = 32;
  EXPECT_TRUE(contains(ropescale::validate(p).message(), "params.population = 1000000000000"));
  p = ropescale::SearchParams{};
  p.iterations = kI64Max;
  EXPECT_TRUE(contains(ropescale::validate(p).message(), "params.iterations"));
  p = ropescale::SearchParams{};
  EXPECT_TRUE(ropescale::validate(p).ok());
}

// 5. q and k that share a head (or q_out and k_in): refused, nothing written.
TEST(HostileInput, Item05OverlappingQueryAndKeyViewsAreRefused) {
  const FactorTable table = FactorTable::identity(kSpec);
  const ropescale::RotaryCache cache(kSpec, table, 16);
  const std::int64_t T = 4, D = 64;
  const std::vector<std::int64_t> pos = {1, 2, 3, 4};
  std::vector<float> buf(static_cast<std::size_t>(T * 3 * D));
  for (std::size_t i = 0; i < buf.size(); ++i) buf[i] = static_cast<float>(i % 17) - 8.0f;
  const std::vector<float> buf0 = buf;
  // q = heads {0, 1}, k = heads {1, 2} of a [T, 3, D] buffer: head 1 is shared.
  HeadsView<float> q{buf.data(), T, 2, D, 3 * D, D};
  HeadsView<float> k{buf.data() + D, T, 2, D, 3 * D, D};
  Status s = ropescale::rotate(cache, pos.data(), q, k, PairLayout::kHalfSplit);
  EXPECT_EQ(s.code(), ErrorCode::kInvalidArgument);
  EXPECT_TRUE(contains(s.message(), "k = \"overlapping buffer\": must not overlap q"))
      << s.message();
  EXPECT_EQ(buf, buf0);
  s = ropescale::rotate(cache, pos.data(), q, k, PairLayout::kHalfSplit,
                        ropescale::RotaryDirection::kBackward);
  EXPECT_EQ(s.argument(), "k") << s.message();  // the backward pass names the same operands
  EXPECT_EQ(s.rule(), "must not overlap q") << s.message();
  EXPECT_EQ(buf, buf0);
  // Out of place: q_out is k_in.
  std::vector<float> other(buf.size(), 0.0f);
  const HeadsView<const float> q_in{other.data(), T, 1, D, 3 * D, D};
  const HeadsView<float> q_out{buf.data() + 2 * D, T, 1, D, 3 * D, D};
  const HeadsView<const float> k_in{buf.data() + 2 * D, T, 1, D, 3 * D, D};
  const HeadsView<float> k_out{other.data() + D, T, 1, D, 3 * D, D};
  s = ropescale::rotate_out(cache, pos.data(), q_in, q_out, k_in, k_out, PairLayout::kHalfSplit);
  EXPECT_TRUE(contains(s.message(), "q_out = \"overlapping buffer\": must not overlap k_in"))
      << s.message();
  EXPECT_EQ(buf, buf0);
  // The fused QKV layout (q, k, v heads side by side in each token) is still accepted and gives
  // the same result as rotating separate copies.
  HeadsView<float> q1{buf.data(), T, 1, D, 3 * D, D};
  HeadsView<float> k1{buf.data() + D, T, 1, D, 3 * D, D};
  ASSERT_TRUE(ropescale::rotate(cache, pos.data(), q1, k1, PairLayout::kHalfSplit).ok());
  std::vector<float> ref = buf0;
  auto rq = HeadsView<float>{ref.data(), T, 1, D, 3 * D, D};
  auto rk = HeadsView<float>{ref.data() + D, T, 1, D, 3 * D, D};
  ropescale::throw_if_error(ropescale::rotate(cache, pos.data(), rq, PairLayout::kHalfSplit));
  ropescale::throw_if_error(ropescale::rotate(cache, pos.data(), rk, PairLayout::kHalfSplit));
  EXPECT_EQ(buf, ref);
  // Fused QKV with many packed heads (300 q, 300 k: 90000 head pairs) is checked exactly too.
  const std::int64_t H = 300, d = 8;
  std::vector<float> fused(static_cast<std::size_t>(2 * 3 * H * d), 1.0f);
  const RopeSpec small{8, 8, 10000.0, 64};
  const ropescale::RotaryCache c8(small, FactorTable::identity(small), 4);
  HeadsView<float> qs{fused.data(), 2, H, d, 3 * H * d, d};
  HeadsView<float> ks{fused.data() + H * d, 2, H, d, 3 * H * d, d};
  EXPECT_TRUE(ropescale::rotate(c8, pos.data(), qs, ks, PairLayout::kHalfSplit).ok());
  ks.data -= 1;  // now k's first head overlaps q's last
  EXPECT_FALSE(ropescale::rotate(c8, pos.data(), qs, ks, PairLayout::kHalfSplit).ok());
}

// 6. On-the-fly angles: right up to 2^48, refused past it (they used to lose their norm).
TEST(HostileInput, Item06RotaryFrequenciesAreRightOrRefused) {
  const Eigen::ArrayXd inv_freq = (Eigen::ArrayXd(3) << 1.0, 1.0 / 1024.0, 0.25).finished();
  const ropescale::RotaryFrequencies f(inv_freq, 1.0);
  EXPECT_EQ(f.max_position(), ropescale::kMaxPosition);
  for (std::int64_t pos :
       {std::int64_t{1} << 40, (std::int64_t{1} << 47) + 12345, ropescale::kMaxPosition - 1}) {
    double c[3], s[3];
    f.fill(pos, c, s);
    for (int i = 0; i < 3; ++i) {
      // inv_freq is a power of two: the angle is exact in long double, and glibc's sinl/cosl
      // reduce it exactly.
      const long double angle = static_cast<long double>(pos) * inv_freq[i];
      EXPECT_NEAR(c[i], static_cast<double>(std::cos(angle)), 1e-12) << pos << " pair " << i;
      EXPECT_NEAR(s[i], static_cast<double>(std::sin(angle)), 1e-12) << pos << " pair " << i;
    }
  }
  EXPECT_FALSE(f.covers(ropescale::kMaxPosition));
  EXPECT_FALSE(f.covers((std::int64_t{1} << 57) + 12345));
  EXPECT_FALSE(f.covers(kI64Max));
  std::vector<float> x(6, 1.0f);
  const std::vector<float> x0 = x;
  const std::int64_t far = (std::int64_t{1} << 57) + 12345;
  auto v = HeadsView<float>::tokens_heads_dim(x.data(), 1, 1, 6);
  const Status s = ropescale::rotate(f, &far, v, PairLayout::kHalfSplit);
  EXPECT_EQ(s.code(), ErrorCode::kOutOfRange);
  EXPECT_TRUE(
      contains(s.message(), "outside the positions RotaryFrequencies serves [0, 281474976710656)"))
      << s.message();
  EXPECT_EQ(x, x0);
  // A source with large frequencies serves fewer positions: the angle is what is bounded.
  const ropescale::RotaryFrequencies fast((Eigen::ArrayXd(1) << 1024.0).finished(), 1.0);
  EXPECT_EQ(fast.max_position(), std::int64_t{1} << 38);
}

// 7. Denormal factors: inv_freq would be inf; rerotate_keys must not throw.
TEST(HostileInput, Item07TinyFactorsAreRefusedAndRerotateReturnsAStatus) {
  expect_error([] { FactorTable(Eigen::ArrayXd::Constant(32, 5e-324)); },
               "factors[0] = 4.9406564584124654e-324: must be >= 1e-6");
  EXPECT_FALSE(FactorTable::make(Eigen::ArrayXd::Constant(32, 1e-7), 1.0, "x").ok());
  EXPECT_TRUE(FactorTable::make(Eigen::ArrayXd::Constant(32, 1e-6), 1.0, "x").ok());
  // Two valid tables whose ratio of attention factors leaves the accepted range: a Status.
  const FactorTable from(Eigen::ArrayXd::Ones(32), 1e-3), to(Eigen::ArrayXd::Ones(32), 1e3);
  std::vector<float> keys(64, 1.0f);
  const std::int64_t pos = 5;
  Status s;
  EXPECT_NO_THROW(
      s = ropescale::rerotate_keys(kSpec, from, to, &pos,
                                   HeadsView<float>::tokens_heads_dim(keys.data(), 1, 1, 64),
                                   PairLayout::kHalfSplit));
  EXPECT_EQ(s.code(), ErrorCode::kInvalidArgument);
  EXPECT_TRUE(contains(s.message(), "attention_factor = 1000000")) << s.message();
}

// 8. Values whose outputs overflow.
TEST(HostileInput, Item08ValuesThatOverflowTheOutputAreRefused) {
  RopeSpec spec = kSpec;
  spec.rope_theta = 1e300;
  EXPECT_TRUE(
      contains(ropescale::validate(spec).message(), "rope_theta = 1.0000000000000001e+300"));
  const Status s =
      parse("{\"head_dim\": 64, \"rope_theta\": 1e300, \"max_position_embeddings\": 4096}");
  EXPECT_TRUE(contains(s.message(), "rope_theta")) << s.message();
  expect_error([] { FactorTable(Eigen::ArrayXd::Ones(32), 1e39); }, "must be in [1e-3, 1e3]");
  expect_error([] { ropescale::RotaryFrequencies(Eigen::ArrayXd::Ones(4), 1e6); },
               "attention_factor = 1000000");
  // The largest accepted factor keeps unit half inputs finite in both directions.
  const ropescale::RotaryFrequencies f(Eigen::ArrayXd::Constant(4, 0.5), 1e3);
  std::vector<Eigen::half> x(8, Eigen::half(1.0f));
  const std::int64_t pos = 3;
  auto v = HeadsView<Eigen::half>::tokens_heads_dim(x.data(), 1, 1, 8);
  ropescale::throw_if_error(ropescale::rotate(f, &pos, v, PairLayout::kHalfSplit));
  for (const Eigen::half& h : x) EXPECT_TRUE(std::isfinite(static_cast<float>(h)));
  ropescale::throw_if_error(
      ropescale::rotate(f, &pos, v, PairLayout::kHalfSplit, ropescale::RotaryDirection::kInverse));
  for (const Eigen::half& h : x) EXPECT_NEAR(static_cast<float>(h), 1.0f, 2e-2f);
}

// 9. Hand-built public structs are validated where they are used.
TEST(HostileInput, Item09HandBuiltStructsAreValidated) {
  ropescale::PackedSegment seg;
  seg.length = 4;
  seg.cu_seqlens = {0, 64};
  Status s = seg.dense_mask().status();
  EXPECT_TRUE(contains(s.message(), "segment.cu_seqlens[1] = 64")) << s.message();
  seg.cu_seqlens = {0, 4};
  seg.pieces = {{0, 0, 2, 8, 0}};  // 8 tokens at offset 2 of a 4-token segment
  expect_error([&] { seg.position_ids().value(); }, "segment.pieces[0].length = 8");
  seg.pieces = {{0, 0, 0, 4, kI64Max - 1}};
  expect_error([&] { seg.position_ids().value(); }, "first_position");
  seg = ropescale::PackedSegment{};
  seg.length = -4;
  expect_error([&] { seg.dense_mask().value(); }, "segment.length = -4");
  expect_error([&] { seg.position_ids().value(); }, "segment.length = -4");
  // A valid hand-built segment still works.
  seg.length = 3;
  seg.pieces = {{0, 0, 0, 3, 5}};
  seg.cu_seqlens = {0, 3};
  EXPECT_EQ(seg.position_ids().value(), (std::vector<std::int64_t>{5, 6, 7}));
  EXPECT_EQ(seg.dense_mask().value().count(), 6);

  // A CriticalAnalysis with arrays of the wrong size.
  ropescale::CriticalAnalysis a;
  a.spec = kSpec;
  a.target_length = 65536;
  a.scale = 16;
  a.theta = ropescale::base_inv_freq(kSpec).value();  // pairs() matches, period does not
  s = ropescale::analyze_table(a, FactorTable::identity(kSpec)).status();
  EXPECT_TRUE(contains(s.message(), "analysis.period.size() = 0")) << s.message();
  a = ropescale::analyze_critical(kSpec, 65536).value();
  a.scale = std::nan("");
  EXPECT_FALSE(ropescale::analyze_table(a, FactorTable::identity(kSpec)).ok());

  // log_softmax of a matrix without columns.
  expect_error([] { ropescale::detail::log_softmax(Eigen::MatrixXd(3, 0)).value(); },
               "logits.cols() = 0");
}

// 10. project_to_space with factors far past the grid: clamped to the upper bound.
TEST(HostileInput, Item10ProjectionClampsHugeFactorsToTheUpperBound) {
  const ropescale::SearchSpace sp =
      ropescale::SearchSpace::longrope2(RopeSpec{128, 128, 500000.0, 8192}, 131072).value();
  const ropescale::Genome g =
      ropescale::project_to_space(sp, Eigen::ArrayXd::Constant(64, 1e20), sp.critical_upper)
          .value();
  ASSERT_FALSE(g.steps.empty());
  for (std::int64_t k : g.steps) EXPECT_EQ(k, sp.grid_hi());
  const ropescale::Genome low =
      ropescale::project_to_space(sp, Eigen::ArrayXd::Constant(64, 1e-20), sp.critical_upper)
          .value();
  for (std::int64_t k : low.steps) EXPECT_EQ(k, sp.grid_lo());
}

// 11. Requests too large to serve answer with ropescale::Error, not a standard exception.
TEST(HostileInput, Item11HugeRequestsGiveRopescaleErrors) {
  const RopeSpec spec{128, 128, 10000.0, 4096};
  const FactorTable table = FactorTable::identity(spec);
  expect_error([&] { ropescale::RotaryCache(spec, table, kI64Max / 128); }, "num_positions");
  expect_error([&] { ropescale::RotaryCache(spec, table, std::int64_t{1} << 40); },
               "use RotaryFrequencies");
  const RopeSpec huge{std::int64_t{1} << 62, std::int64_t{1} << 62, 10000.0, 4096};
  expect_error([&] { ropescale::base_inv_freq(huge).value(); }, "head_dim = 4611686018427387904");
  expect_error([&] { FactorTable::identity(huge); }, "head_dim");
  const ropescale::ValueTokenizer tok = [](const std::string&) {
    return std::vector<ropescale::TokenId>{1};
  };
  expect_error(
      [&] {
        ropescale::make_needle_documents({1, 2, 3}, ropescale::NeedleTemplate{}, tok,
                                         ropescale::NeedleOptions{}, kI64Max)
            .value();
      },
      "count = 9223372036854775807");
}

// 12. pack_documents of 2^50 tokens used to build 2^38 segments (a hang).
TEST(HostileInput, Item12PackingRefusesPlansTooLargeToBuild) {
  const auto t0 = std::chrono::steady_clock::now();
  const Status s =
      ropescale::pack_documents({std::int64_t{1} << 50}, ropescale::PackOptions{}).status();
  EXPECT_EQ(s.code(), ErrorCode::kInvalidArgument);
  EXPECT_TRUE(contains(s.message(), "2^22 segments")) << s.message();
  EXPECT_LT(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(), 5.0);
  // A large but reasonable plan still packs.
  ropescale::PackOptions o;
  o.segment_length = 1024;
  o.original_max_position = 256;
  const ropescale::Result<ropescale::PackingPlan> plan =
      ropescale::pack_documents({std::int64_t{1} << 24, 100}, o);
  ASSERT_TRUE(plan.ok());
  EXPECT_EQ(plan->total_tokens, (std::int64_t{1} << 24) + 100);
}

ropescale::SearchSpace small_space() {
  return ropescale::SearchSpace::longrope2(RopeSpec{32, 32, 10000.0, 1024}, 8192).value();
}
double smooth_loss(const FactorTable& t) {
  double sum = 0.0;
  for (Eigen::Index i = 0; i < t.factors().size(); ++i)
    sum += std::abs(std::log(t.factors()[i] / (1.0 + 0.5 * static_cast<double>(i))));
  return sum;
}

// 13. Checkpoints: directory paths, symbolic links, absurd iterations, failed writes.
TEST(HostileInput, Item13CheckpointsSurviveHostilePathsAndFiles) {
  namespace fs = std::filesystem;
  ropescale::SearchParams p;
  p.iterations = 2;
  ropescale::EvolutionSearch search(small_space(), p);
  const ropescale::SearchResult reference = search.run(smooth_loss).value();

  // A directory is an io_error (not a parse_error), for reading and for writing.
  const std::string dir = temp_path("dir");
  fs::create_directories(dir);
  Status s = ropescale::load_search_checkpoint(dir).status();
  EXPECT_EQ(s.code(), ErrorCode::kIoError) << s.message();
  EXPECT_TRUE(contains(s.message(), "is a directory")) << s.message();
  s = ropescale::save_search_checkpoint(dir, reference.state);
  EXPECT_EQ(s.code(), ErrorCode::kIoError) << s.message();

  // A symbolic link keeps pointing at the checkpoint it named.
  const std::string real = temp_path("real.json"), link = temp_path("link.json");
  fs::remove(real);
  fs::remove(link);
  fs::create_symlink(real, link);  // dangling until the first write
  ASSERT_TRUE(ropescale::save_search_checkpoint(link, reference.state).ok());
  ASSERT_TRUE(ropescale::save_search_checkpoint(link, reference.state).ok());
  EXPECT_TRUE(fs::is_symlink(fs::symlink_status(link)));
  EXPECT_TRUE(fs::is_regular_file(fs::symlink_status(real)));
  EXPECT_EQ(ropescale::load_search_checkpoint(link).value().iteration, 2);
  EXPECT_FALSE(fs::exists(link + ".tmp"));
  EXPECT_FALSE(fs::exists(real + ".tmp"));

  // iteration 1e18 is refused.
  nlohmann::json j = ropescale::search_state_to_json(reference.state);
  j["iteration"] = 1000000000000000000LL;
  s = ropescale::search_state_from_json(j).status();
  EXPECT_EQ(s.code(), ErrorCode::kParseError);
  EXPECT_TRUE(contains(s.message(), "iteration = 1000000000000000000")) << s.message();

  // The directory holding a checkpoint is synced after the rename (and a missing one says so).
  EXPECT_TRUE(ropescale::detail::sync_parent_directory(real));
  EXPECT_FALSE(ropescale::detail::sync_parent_directory(dir + "/missing/x.json"));

  // A checkpoint that cannot be written does not stop the search: reported, and the result is
  // that of a run without checkpoints.
  ropescale::EvolutionSearch again(small_space(), p);
  ropescale::checkpoint_search_to(again, dir + "/missing/ckpt.json");
  std::int64_t seen_failures = 0;
  again.set_progress_callback(
      [&](const ropescale::SearchProgress& pr) { seen_failures = pr.checkpoint_failures; });
  ropescale::SearchResult r;
  EXPECT_NO_THROW(r = again.run(smooth_loss).value());
  EXPECT_EQ(r.checkpoint_failures, 3);  // P0 and two iterations
  EXPECT_EQ(seen_failures, 3);
  EXPECT_EQ(r.checkpoint_error.code(), ErrorCode::kIoError);
  EXPECT_EQ(r.best, reference.best);
  EXPECT_EQ(r.best_loss, reference.best_loss);
  EXPECT_EQ(reference.checkpoint_failures, 0);
  fs::remove(link);
  fs::remove(real);
  fs::remove_all(dir);
}

// 14. NaN and infinity never leave a scoring function without an error.
TEST(HostileInput, Item14NoSilentNaNFromScoring) {
  Eigen::MatrixXd logits = Eigen::MatrixXd::Zero(2, 4);
  logits(0, 2) = std::nan("");
  const std::vector<ropescale::TokenId> tokens = {1, 2, 3};
  const std::vector<std::uint8_t> mask = {0, 1, 0};
  Status s = ropescale::mean_nll(logits, tokens, mask).status();
  EXPECT_EQ(s.code(), ErrorCode::kInvalidArgument);
  EXPECT_TRUE(contains(s.message(), "log-probability of tokens[1]")) << s.message();
  expect_error([&] { ropescale::mean_nll(logits, tokens, mask).value(); }, "= nan");
  const double inf = std::numeric_limits<double>::infinity();
  expect_error(
      [&] {
        ropescale::perplexity({inf, -inf}).value();
      },
      "losses[0] = inf: must be finite");
  expect_error([&] { ropescale::perplexity({800.0}).value(); }, "mean loss = 800");
  Eigen::MatrixXd masked = Eigen::MatrixXd::Constant(2, 3, -inf);
  masked(1, 0) = 0.0;
  expect_error([&] { ropescale::detail::log_softmax(masked).value(); },
               "logits row 0 = \"all -inf\"");
  // -inf entries in a row with a finite logit are fine (a masked vocabulary).
  masked.row(0) << 0.0, -inf, 0.0;
  const Eigen::MatrixXd ls = ropescale::detail::log_softmax(masked).value();
  EXPECT_NEAR(ls(0, 0), std::log(0.5), 1e-15);
  EXPECT_EQ(ls(0, 1), -inf);
  EXPECT_EQ(ls(1, 0), 0.0);
}

// 15. Enumerations outside their values.
TEST(HostileInput, Item15SearchSpaceEnumsAreChecked) {
  ropescale::SearchSpace sp = small_space();
  ASSERT_TRUE(ropescale::validate(sp).ok());
  sp.method = static_cast<ropescale::SearchMethod>(7);
  EXPECT_TRUE(contains(ropescale::validate(sp).message(), "space.method = 7"));
  sp = small_space();
  sp.monotonicity = static_cast<ropescale::Monotonicity>(7);
  EXPECT_TRUE(contains(ropescale::validate(sp).message(), "space.monotonicity = 7"));
}

// 16. A huge string value is not echoed whole into the message.
TEST(HostileInput, Item16HugeStringsAreCutInMessages) {
  nlohmann::json j = {{"head_dim", 64}, {"rope_theta", 10000}, {"max_position_embeddings", 4096}};
  j["rope_scaling"] = {{"rope_type", std::string(20000000, 'x')}};
  const Status s = ropescale::parse_hf_config(j).status();
  EXPECT_EQ(s.code(), ErrorCode::kUnsupported);
  EXPECT_LT(s.message().size(), 400u);
  EXPECT_TRUE(contains(s.message(), "(20000000 bytes)")) << s.message();
  // Short values are shown whole.
  EXPECT_EQ(
      ropescale::make_status(ErrorCode::kInvalidArgument, "x", std::string("abc"), "r").message(),
      "ropescale: invalid_argument: x = \"abc\": r");
}

}  // namespace
