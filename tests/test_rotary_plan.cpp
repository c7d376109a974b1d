// RotaryShapePlan (rotary_plan.hpp): a plan made once and run over many calls gives the bits of
// rotate(q, k) on every call (both layouts, every direction, storage types, cache and on the
// fly, GQA and fused-QKV strides, fewer tokens than planned), the per-call checks refuse bad
// buffers, token counts and positions without writing, and make() refuses bad shapes by name.
#include <gtest/gtest.h>

#include <Eigen/Core>
#include <cstdint>
#include <cstring>
#include <random>
#include <vector>

#include "ropescale/rotary_plan.hpp"
#include "ropescale/scaling.hpp"

namespace {

using ropescale::ErrorCode;
using ropescale::HeadsView;
using ropescale::PairLayout;
using ropescale::RopeSpec;
using ropescale::RotaryDirection;
using ropescale::RotaryShapePlan;

const RopeSpec kSpec{64, 64, 10000.0, 4096};

template <typename T>
std::vector<T> random_values(std::size_t n, unsigned seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd(0.0f, 2.0f);
  std::vector<T> v(n);
  for (T& e : v) e = static_cast<T>(nd(rng));
  return v;
}

template <typename T>
bool same_bits(const std::vector<T>& a, const std::vector<T>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), sizeof(T) * a.size()) == 0;
}

// Steps of 1..max tokens through one plan against the plain call on copies of the same data.
template <typename T, typename Angles>
void check_plan_matches_call(const Angles& angles, PairLayout layout, RotaryDirection direction) {
  SCOPED_TRACE(std::string(ropescale::to_string(layout)) + " " + ropescale::to_string(direction));
  const std::int64_t max_tokens = 5, hq = 4, hk = 2, d = kSpec.head_dim;
  const auto q_shape = HeadsView<T>::tokens_heads_dim(nullptr, max_tokens, hq, d);
  const auto k_shape = HeadsView<T>::heads_tokens_dim(nullptr, max_tokens, hk, d);
  const auto plan =
      RotaryShapePlan<T, Angles>::make(angles, q_shape, &k_shape, layout, direction).value();
  EXPECT_EQ(plan.max_tokens(), max_tokens);
  EXPECT_EQ(plan.path(), ropescale::active_kernel_path());
  for (std::int64_t tokens : {std::int64_t{1}, std::int64_t{3}, max_tokens, std::int64_t{0}}) {
    std::vector<T> q = random_values<T>(static_cast<std::size_t>(max_tokens * hq * d), 1);
    std::vector<T> k = random_values<T>(static_cast<std::size_t>(max_tokens * hk * d), 2);
    std::vector<T> q_ref = q, k_ref = k;
    std::vector<std::int64_t> pos(static_cast<std::size_t>(max_tokens));
    for (std::int64_t t = 0; t < max_tokens; ++t) pos[static_cast<std::size_t>(t)] = 100 + 7 * t;
    ASSERT_TRUE(plan.rotate(q.data(), k.data(), tokens, pos.data()).ok());
    // The plain call on the same shapes with `tokens` tokens (k keeps its planned stride).
    HeadsView<T> qv = q_shape, kv = k_shape;
    qv.data = q_ref.data();
    qv.tokens = tokens;
    kv.data = k_ref.data();
    kv.tokens = tokens;
    ASSERT_TRUE(ropescale::rotate(angles, pos.data(), qv, kv, layout, direction).ok());
    EXPECT_TRUE(same_bits(q, q_ref)) << "tokens " << tokens;
    EXPECT_TRUE(same_bits(k, k_ref)) << "tokens " << tokens;
    if (tokens > 0) {
      const std::vector<T> untouched = random_values<T>(q.size(), 1);
      EXPECT_FALSE(same_bits(q, untouched));  // the step did rotate
    }
  }
}

TEST(RotaryShapePlan, GivesTheBitsOfThePlainCall) {
  ropescale::YarnParams yarn;
  yarn.factor = 4.0;
  const auto table = ropescale::yarn_factors(kSpec, yarn).value();
  const ropescale::RotaryCache cache(kSpec, table, 512);
  const ropescale::RotaryFrequencies fly(kSpec, table);
  for (PairLayout layout : {PairLayout::kHalfSplit, PairLayout::kInterleaved})
    for (RotaryDirection dir :
         {RotaryDirection::kForward, RotaryDirection::kInverse, RotaryDirection::kBackward}) {
      check_plan_matches_call<float>(cache, layout, dir);
      check_plan_matches_call<Eigen::bfloat16>(cache, layout, dir);
      check_plan_matches_call<Eigen::half>(fly, layout, dir);
      check_plan_matches_call<double>(fly, layout, dir);
    }
}

TEST(RotaryShapePlan, OneOperandAndFusedQkv) {
  const ropescale::RotaryCache cache(kSpec, ropescale::FactorTable::identity(32), 64);
  const std::int64_t tokens = 3, hq = 2, hk = 1, d = 64, row = (hq + 2 * hk) * d;
  std::vector<std::int64_t> pos = {0, 5, 63};
  // One operand.
  std::vector<float> x = random_values<float>(static_cast<std::size_t>(tokens * hq * d), 3);
  std::vector<float> x_ref = x;
  const auto x_shape = HeadsView<float>::tokens_heads_dim(nullptr, tokens, hq, d);
  const auto one = RotaryShapePlan<float, ropescale::RotaryCache>::make(cache, x_shape, nullptr,
                                                                        PairLayout::kHalfSplit)
                       .value();
  ASSERT_TRUE(one.rotate(x.data(), tokens, pos.data()).ok());
  ASSERT_TRUE(ropescale::rotate(cache, pos.data(),
                                HeadsView<float>::tokens_heads_dim(x_ref.data(), tokens, hq, d),
                                PairLayout::kHalfSplit)
                  .ok());
  EXPECT_TRUE(same_bits(x, x_ref));
  // Fused QKV: q and k side by side in one buffer share a token stride; the byte ranges meet but
  // no row does, so the exact test accepts it.
  std::vector<float> qkv = random_values<float>(static_cast<std::size_t>(tokens * row), 4);
  std::vector<float> qkv_ref = qkv;
  const HeadsView<float> q_shape{nullptr, tokens, hq, d, row, d};
  const HeadsView<float> k_shape{nullptr, tokens, hk, d, row, d};
  const auto plan = RotaryShapePlan<float, ropescale::RotaryCache>::make(cache, q_shape, &k_shape,
                                                                         PairLayout::kInterleaved)
                        .value();
  ASSERT_TRUE(plan.rotate(qkv.data(), qkv.data() + hq * d, tokens, pos.data()).ok());
  HeadsView<float> qv = q_shape, kv = k_shape;
  qv.data = qkv_ref.data();
  kv.data = qkv_ref.data() + hq * d;
  ASSERT_TRUE(ropescale::rotate(cache, pos.data(), qv, kv, PairLayout::kInterleaved).ok());
  EXPECT_TRUE(same_bits(qkv, qkv_ref));
  // k one head into q: rows meet.
  const auto before = qkv;
  const ropescale::Status s = plan.rotate(qkv.data(), qkv.data() + d, tokens, pos.data());
  EXPECT_EQ(s.code(), ErrorCode::kInvalidArgument);
  EXPECT_EQ(s.argument(), "k");
  EXPECT_TRUE(same_bits(qkv, before));
}

TEST(RotaryShapePlan, PerCallChecksWriteNothing) {
  const ropescale::RotaryCache cache(kSpec, ropescale::FactorTable::identity(32), 64);
  const std::int64_t tokens = 2, d = 64;
  const auto q_shape = HeadsView<float>::tokens_heads_dim(nullptr, tokens, 2, d);
  const auto k_shape = HeadsView<float>::tokens_heads_dim(nullptr, tokens, 1, d);
  const auto plan = RotaryShapePlan<float, ropescale::RotaryCache>::make(cache, q_shape, &k_shape,
                                                                         PairLayout::kHalfSplit)
                        .value();
  std::vector<float> q = random_values<float>(static_cast<std::size_t>(tokens * 2 * d), 5);
  std::vector<float> k = random_values<float>(static_cast<std::size_t>(tokens * d), 6);
  const auto q0 = q, k0 = k;
  std::vector<std::int64_t> pos = {3, 64};  // 64 is outside the cache
  const auto expect = [&](const ropescale::Status& s, ErrorCode code, const std::string& arg) {
    EXPECT_EQ(s.code(), code) << s.message();
    EXPECT_EQ(s.argument(), arg) << s.message();
    EXPECT_TRUE(same_bits(q, q0));
    EXPECT_TRUE(same_bits(k, k0));
  };
  expect(plan.rotate(q.data(), k.data(), 2, pos.data()), ErrorCode::kOutOfRange, "positions[1]");
  pos[1] = -1;
  expect(plan.rotate(q.data(), k.data(), 2, pos.data()), ErrorCode::kInvalidArgument,
         "positions[1]");
  pos[1] = 4;
  expect(plan.rotate(q.data(), k.data(), 3, pos.data()), ErrorCode::kInvalidArgument, "tokens");
  expect(plan.rotate(q.data(), k.data(), -1, pos.data()), ErrorCode::kInvalidArgument, "tokens");
  expect(plan.rotate(nullptr, k.data(), 2, pos.data()), ErrorCode::kInvalidArgument, "q");
  expect(plan.rotate(q.data(), nullptr, 2, pos.data()), ErrorCode::kInvalidArgument, "k");
  expect(plan.rotate(q.data(), k.data(), 2, nullptr), ErrorCode::kInvalidArgument, "positions");
  expect(plan.rotate(q.data(), q.data() + d, 2, pos.data()), ErrorCode::kInvalidArgument, "k");
  const RotaryShapePlan<float, ropescale::RotaryCache> empty;
  expect(empty.rotate(q.data(), k.data(), 2, pos.data()), ErrorCode::kInvalidArgument, "plan");
  EXPECT_TRUE(plan.rotate(q.data(), k.data(), 2, pos.data()).ok());
  EXPECT_FALSE(same_bits(q, q0));
}

TEST(RotaryShapePlan, MakeRefusesBadShapes) {
  const ropescale::RotaryCache cache(kSpec, ropescale::FactorTable::identity(32), 64);
  using Plan = RotaryShapePlan<float, ropescale::RotaryCache>;
  const auto q = HeadsView<float>::tokens_heads_dim(nullptr, 4, 2, 64);
  const auto check = [](const ropescale::Result<Plan>& r, const std::string& arg) {
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.status().argument(), arg) << r.status().message();
  };
  check(Plan::make(cache, HeadsView<float>::tokens_heads_dim(nullptr, 4, 2, 32), nullptr,
                   PairLayout::kHalfSplit),
        "x.head_dim");
  check(Plan::make(cache, q, nullptr, static_cast<PairLayout>(7)), "layout");
  check(Plan::make(cache, q, nullptr, PairLayout::kHalfSplit, static_cast<RotaryDirection>(9)),
        "direction");
  const HeadsView<float> overlapping{nullptr, 4, 2, 64, 64, 64};  // heads on top of tokens
  check(Plan::make(cache, q, &overlapping, PairLayout::kHalfSplit), "k.token_stride");
  const auto k3 = HeadsView<float>::tokens_heads_dim(nullptr, 3, 1, 64);
  check(Plan::make(cache, q, &k3, PairLayout::kHalfSplit), "k.tokens");
}

}  // namespace
