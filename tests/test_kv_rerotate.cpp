// KV cache re-rotation: keys cached under one factor table, re-rotated in place to another, equal
// the keys rotated from scratch with the new table. Real tables: Phi-4-mini's LongRoPE2-based
// short and long factors (tests/data/phi4_mini_instruct.json), positions up to and past 128k.
#include <gtest/gtest.h>

#include <Eigen/Core>
#include <cmath>
#include <cstdint>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <vector>

#include "ropescale/training.hpp"

namespace {

using ropescale::FactorTable;
using ropescale::HeadsView;
using ropescale::KeyRerotation;
using ropescale::PairLayout;
using ropescale::RopeSpec;

struct Phi4 {
  RopeSpec spec;
  FactorTable short_table, long_table;
  double mscale = 1.0;
};

// Phi-4-mini from its config: head_dim = hidden / heads = 128, rotary_dim = 0.75 * 128 = 96,
// theta 10000, original 4096 -> 131072. Hugging Face's longrope attention factor
// sqrt(1 + ln(s) / ln(original)), s = 131072 / 4096 = 32, applies to both factor sets.
Phi4 load_phi4() {
  std::ifstream in(std::string(ROPESCALE_TEST_DATA_DIR) + "/phi4_mini_instruct.json");
  EXPECT_TRUE(in.good());
  const nlohmann::json j = nlohmann::json::parse(in);
  Phi4 p;
  p.spec.head_dim =
      j.at("hidden_size").get<std::int64_t>() / j.at("num_attention_heads").get<std::int64_t>();
  p.spec.rotary_dim = static_cast<std::int64_t>(j.at("partial_rotary_factor").get<double>() *
                                                static_cast<double>(p.spec.head_dim));
  p.spec.rope_theta = j.at("rope_theta").get<double>();
  p.spec.original_max_position = j.at("original_max_position_embeddings").get<std::int64_t>();
  const double s = j.at("max_position_embeddings").get<double>() /
                   static_cast<double>(p.spec.original_max_position);
  p.mscale =
      std::sqrt(1.0 + std::log(s) / std::log(static_cast<double>(p.spec.original_max_position)));
  auto factors = [&](const char* key) {
    const auto v = j.at("rope_scaling").at(key).get<std::vector<double>>();
    return Eigen::ArrayXd(
        Eigen::Map<const Eigen::ArrayXd>(v.data(), static_cast<Eigen::Index>(v.size())));
  };
  p.short_table = FactorTable(factors("short_factor"), p.mscale, "longrope");
  p.long_table = FactorTable(factors("long_factor"), p.mscale, "longrope");
  return p;
}

TEST(KvRerotate, Phi4ConfigIsWhatWeExpect) {
  const Phi4 p = load_phi4();
  EXPECT_EQ(p.spec.head_dim, 128);
  EXPECT_EQ(p.spec.rotary_dim, 96);
  EXPECT_EQ(p.long_table.pairs(), 48);
  EXPECT_NEAR(p.mscale, std::sqrt(17.0 / 12.0), 1e-15);  // 1 + 5/12 since ln 32 / ln 4096
  EXPECT_EQ(p.long_table.factors()[47], 47.77);
}

const std::vector<std::int64_t> kPositions = {0,      1,      4095,   4096,    65535,
                                              131071, 131072, 200000, 1 << 20, 3000000};
constexpr std::int64_t kHeads = 8;  // Phi-4-mini key/value heads

enum class MemoryOrder { kTokensHeadsDim, kHeadsTokensDim };

template <typename T>
HeadsView<T> view_of(std::vector<T>& b, std::int64_t tokens, std::int64_t head_dim,
                     MemoryOrder order) {
  return order == MemoryOrder::kTokensHeadsDim
             ? HeadsView<T>::tokens_heads_dim(b.data(), tokens, kHeads, head_dim)
             : HeadsView<T>::heads_tokens_dim(b.data(), tokens, kHeads, head_dim);
}

template <typename T>
std::vector<T> random_keys(std::size_t n, unsigned seed) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> u(-1.0, 1.0);
  std::vector<T> k(n);
  for (auto& x : k) x = static_cast<T>(u(rng));
  return k;
}

// Channel pairing of a layout: pair i of a head with `half` pairs.
void pair_channels(PairLayout layout, std::int64_t half, std::int64_t i, std::int64_t* a,
                   std::int64_t* b) {
  *a = layout == PairLayout::kHalfSplit ? i : 2 * i;
  *b = layout == PairLayout::kHalfSplit ? i + half : 2 * i + 1;
}

struct Errors {
  double max_abs = 0;         // max |re-rotated - from scratch|
  double max_over_bound = 0;  // max |re-rotated - from scratch| / documented bound
  bool pass_through_identical = true;
};

// Rotates `raw` with `from`, re-rotates to `to`, and compares with `raw` rotated with `to`.
// The documented bound per channel: m_to * r * (12 u + 2^-51 * p * theta_max),
// r the norm of the raw pair.
template <typename T>
Errors rerotate_vs_scratch(const RopeSpec& spec, const FactorTable& from, const FactorTable& to,
                           const std::vector<std::int64_t>& pos, PairLayout layout,
                           MemoryOrder order, double unit_roundoff, unsigned seed) {
  const std::int64_t tokens = static_cast<std::int64_t>(pos.size());
  const std::int64_t d = spec.head_dim;
  const auto raw = random_keys<T>(static_cast<std::size_t>(tokens * kHeads * d), seed);
  std::vector<T> cached = raw, scratch = raw;
  const auto cv = view_of(cached, tokens, d, order);
  const auto sv = view_of(scratch, tokens, d, order);
  ropescale::throw_if_error(
      ropescale::rotate(ropescale::RotaryFrequencies(spec, from), pos.data(), cv, layout));
  ropescale::throw_if_error(
      ropescale::rotate(ropescale::RotaryFrequencies(spec, to), pos.data(), sv, layout));
  const KeyRerotation r(spec, from, to);
  EXPECT_TRUE(r.apply(pos.data(), cv, layout).ok());

  // theta_max: the largest inverse frequency of either table.
  const double theta_max =
      std::max(from.inv_freq(spec).value().maxCoeff(), to.inv_freq(spec).value().maxCoeff());
  const std::int64_t half = spec.pairs();
  std::vector<T> raw_copy = raw;
  const auto rv = view_of(raw_copy, tokens, d, order);
  Errors e;
  for (std::int64_t t = 0; t < tokens; ++t)
    for (std::int64_t h = 0; h < kHeads; ++h) {
      auto idx = [&](const HeadsView<T>& v, std::int64_t c) {
        return static_cast<std::size_t>(t * v.token_stride + h * v.head_stride + c);
      };
      for (std::int64_t i = 0; i < half; ++i) {
        std::int64_t a, b;
        pair_channels(layout, half, i, &a, &b);
        const double ra = static_cast<double>(raw[idx(rv, a)]);
        const double rb = static_cast<double>(raw[idx(rv, b)]);
        const double bound =
            to.attention_factor() * std::hypot(ra, rb) *
            (12.0 * unit_roundoff + std::ldexp(1.0, -51) *
                                        static_cast<double>(pos[static_cast<std::size_t>(t)]) *
                                        theta_max);
        for (std::int64_t c : {a, b}) {
          const double err = std::abs(static_cast<double>(cached[idx(cv, c)]) -
                                      static_cast<double>(scratch[idx(sv, c)]));
          e.max_abs = std::max(e.max_abs, err);
          e.max_over_bound = std::max(e.max_over_bound, err / bound);
        }
      }
      for (std::int64_t c = spec.rotary_dim; c < d; ++c)
        if (!(cached[idx(cv, c)] == raw[idx(rv, c)])) e.pass_through_identical = false;
    }
  return e;
}

struct Case {
  PairLayout layout;
  MemoryOrder order;
};
const Case kCases[] = {{PairLayout::kHalfSplit, MemoryOrder::kTokensHeadsDim},
                       {PairLayout::kHalfSplit, MemoryOrder::kHeadsTokensDim},
                       {PairLayout::kInterleaved, MemoryOrder::kTokensHeadsDim},
                       {PairLayout::kInterleaved, MemoryOrder::kHeadsTokensDim}};

TEST(KvRerotate, FloatEqualsFromScratchWithin2e6) {
  const Phi4 p = load_phi4();
  const FactorTable identity = FactorTable::identity(p.spec);
  const double u = std::ldexp(1.0, -24);
  struct Pair {
    const char* name;
    const FactorTable* from;
    const FactorTable* to;
  };
  const Pair pairs[] = {{"identity -> long", &identity, &p.long_table},
                        {"short -> long", &p.short_table, &p.long_table},
                        {"long -> short", &p.long_table, &p.short_table},
                        {"long -> identity", &p.long_table, &identity}};
  unsigned seed = 1;
  for (const Pair& pr : pairs)
    for (const Case& c : kCases) {
      SCOPED_TRACE(testing::Message() << pr.name << ", " << ropescale::to_string(c.layout)
                                      << ", order " << static_cast<int>(c.order));
      const Errors e = rerotate_vs_scratch<float>(p.spec, *pr.from, *pr.to, kPositions, c.layout,
                                                  c.order, u, seed++);
      EXPECT_LT(e.max_abs, 2e-6);
      EXPECT_LE(e.max_over_bound, 1.0);
      EXPECT_TRUE(e.pass_through_identical);
    }
}

TEST(KvRerotate, DoubleEqualsFromScratch) {
  const Phi4 p = load_phi4();
  const double u = std::ldexp(1.0, -53);
  for (const Case& c : kCases) {
    const Errors e = rerotate_vs_scratch<double>(p.spec, FactorTable::identity(p.spec),
                                                 p.long_table, kPositions, c.layout, c.order, u, 7);
    // Dominated by the double rounding of the angles at p = 3e6 (2^-51 * 3e6 = 1.3e-9).
    EXPECT_LT(e.max_abs, 2e-9);
    EXPECT_LE(e.max_over_bound, 1.0);
    EXPECT_TRUE(e.pass_through_identical);
  }
}

TEST(KvRerotate, HalfAndBFloat16WithinTheStatedBound) {
  const Phi4 p = load_phi4();
  for (const Case& c : kCases) {
    const Errors h =
        rerotate_vs_scratch<Eigen::half>(p.spec, p.short_table, p.long_table, kPositions, c.layout,
                                         c.order, std::ldexp(1.0, -11), 3);
    EXPECT_LE(h.max_over_bound, 1.0);
    EXPECT_GT(h.max_abs, 0.0);
    const Errors b = rerotate_vs_scratch<Eigen::bfloat16>(
        p.spec, p.short_table, p.long_table, kPositions, c.layout, c.order, std::ldexp(1.0, -8), 4);
    EXPECT_LE(b.max_over_bound, 1.0);
    EXPECT_TRUE(h.pass_through_identical && b.pass_through_identical);
  }
}

// Against the exact value m_to R(p theta_to) k in long double, with long double frequencies
// built from the config factors: re-rotation error stays at the float level (no drift with p).
TEST(KvRerotate, FloatAgainstLongDoubleReference) {
  const Phi4 p = load_phi4();
  const std::int64_t half = p.spec.pairs(), d = p.spec.head_dim;
  const std::int64_t tokens = static_cast<std::int64_t>(kPositions.size());
  const auto raw = random_keys<float>(static_cast<std::size_t>(tokens * kHeads * d), 21);
  std::vector<float> k = raw;
  const auto kv = HeadsView<float>::tokens_heads_dim(k.data(), tokens, kHeads, d);
  ropescale::throw_if_error(ropescale::rotate(ropescale::RotaryFrequencies(p.spec, p.short_table),
                                              kPositions.data(), kv, PairLayout::kHalfSplit));
  ropescale::throw_if_error(ropescale::rerotate_keys(
      p.spec, p.short_table, p.long_table, kPositions.data(), kv, PairLayout::kHalfSplit));
  double max_err = 0;
  for (std::int64_t t = 0; t < tokens; ++t)
    for (std::int64_t i = 0; i < half; ++i) {
      const long double inv =
          1.0L / (static_cast<long double>(p.long_table.factors()[i]) *
                  std::pow(10000.0L, 2.0L * i / static_cast<long double>(2 * half)));
      const long double angle =
          static_cast<long double>(kPositions[static_cast<std::size_t>(t)]) * inv;
      const long double m = p.mscale;
      for (std::int64_t h = 0; h < kHeads; ++h) {
        const std::size_t base = static_cast<std::size_t>((t * kHeads + h) * d);
        const long double x = raw[base + static_cast<std::size_t>(i)];
        const long double y = raw[base + static_cast<std::size_t>(i + half)];
        const long double ex = m * (x * std::cos(angle) - y * std::sin(angle));
        const long double ey = m * (y * std::cos(angle) + x * std::sin(angle));
        max_err = std::max(
            max_err, static_cast<double>(std::fabs(ex - k[base + static_cast<std::size_t>(i)])));
        max_err = std::max(
            max_err,
            static_cast<double>(std::fabs(ey - k[base + static_cast<std::size_t>(i + half)])));
      }
    }
  EXPECT_LT(max_err, 2e-6);
}

// Generation crosses the original window: 4096 keys cached with the short table, the 4097th
// token switches to the long table; the re-rotated cache equals the long-table prefill.
TEST(KvRerotate, SwitchWhenGenerationCrossesTheOriginalWindow) {
  const Phi4 p = load_phi4();
  const std::int64_t orig = p.spec.original_max_position, d = p.spec.head_dim;
  ASSERT_EQ(ropescale::select_window(orig - 1, orig).value(), ropescale::RopeWindow::kShort);
  ASSERT_EQ(ropescale::select_window(orig, orig).value(), ropescale::RopeWindow::kLong);
  std::vector<std::int64_t> pos(static_cast<std::size_t>(orig));
  for (std::int64_t t = 0; t < orig; ++t) pos[static_cast<std::size_t>(t)] = t;
  const std::int64_t heads = 2;
  const auto raw = random_keys<float>(static_cast<std::size_t>(orig * heads * d), 5);
  std::vector<float> cache = raw, prefill = raw;
  const auto cv = HeadsView<float>::tokens_heads_dim(cache.data(), orig, heads, d);
  const auto pv = HeadsView<float>::tokens_heads_dim(prefill.data(), orig, heads, d);
  const ropescale::RotaryCache short_rope(p.spec, p.short_table, orig);
  ropescale::throw_if_error(ropescale::rotate(short_rope, pos.data(), cv, PairLayout::kHalfSplit));
  const KeyRerotation to_long(p.spec, p.short_table, p.long_table);
  EXPECT_FALSE(to_long.is_identity());
  EXPECT_DOUBLE_EQ(to_long.frequencies().attention_factor(), 1.0);  // same mscale both sides
  ASSERT_TRUE(to_long.apply(pos.data(), cv, PairLayout::kHalfSplit).ok());
  ropescale::throw_if_error(ropescale::rotate(ropescale::RotaryFrequencies(p.spec, p.long_table),
                                              pos.data(), pv, PairLayout::kHalfSplit));
  double max_err = 0;
  for (std::size_t j = 0; j < cache.size(); ++j)
    max_err = std::max(max_err, static_cast<double>(std::fabs(cache[j] - prefill[j])));
  EXPECT_LT(max_err, 2e-6);
  EXPECT_GT(max_err, 0.0);
}

TEST(KvRerotate, RoundTripAndIdentity) {
  const Phi4 p = load_phi4();
  const std::int64_t tokens = static_cast<std::int64_t>(kPositions.size()), d = p.spec.head_dim;
  const auto raw = random_keys<float>(static_cast<std::size_t>(tokens * kHeads * d), 8);
  std::vector<float> k = raw;
  const auto kv = HeadsView<float>::tokens_heads_dim(k.data(), tokens, kHeads, d);
  // Same table: identity, bit-identical keys.
  const KeyRerotation same(p.spec, p.long_table, p.long_table);
  EXPECT_TRUE(same.is_identity());
  ASSERT_TRUE(same.apply(kPositions.data(), kv, PairLayout::kInterleaved).ok());
  EXPECT_EQ(k, raw);
  // identity -> long -> identity comes back within two re-rotations' rounding (12 u m r).
  const FactorTable id = FactorTable::identity(p.spec);
  ropescale::throw_if_error(ropescale::rerotate_keys(p.spec, id, p.long_table, kPositions.data(),
                                                     kv, PairLayout::kInterleaved));
  ropescale::throw_if_error(ropescale::rerotate_keys(p.spec, p.long_table, id, kPositions.data(),
                                                     kv, PairLayout::kInterleaved));
  double max_err = 0;
  for (std::size_t j = 0; j < k.size(); ++j)
    max_err = std::max(max_err, static_cast<double>(std::fabs(k[j] - raw[j])));
  EXPECT_LT(max_err, 12 * std::ldexp(1.0, -24) * p.mscale * std::sqrt(2.0));
  // The single rotation's frequencies are the difference of the two tables'.
  const KeyRerotation r(p.spec, id, p.long_table);
  const Eigen::ArrayXd expect = p.long_table.inv_freq(p.spec).value() - id.inv_freq(p.spec).value();
  EXPECT_TRUE((r.frequencies().inv_freq() == expect).all());
  EXPECT_EQ(r.frequencies().attention_factor(), p.mscale);
  EXPECT_EQ(r.rotary_dim(), 96);
}

TEST(KvRerotate, RejectsBadArguments) {
  const Phi4 p = load_phi4();
  std::vector<float> k(static_cast<std::size_t>(2 * kHeads * 128));
  const auto kv = HeadsView<float>::tokens_heads_dim(k.data(), 2, kHeads, 128);
  const std::vector<std::int64_t> pos = {0, 1};
  const FactorTable wrong = FactorTable::identity(32);
  auto s =
      ropescale::rerotate_keys(p.spec, wrong, p.long_table, pos.data(), kv, PairLayout::kHalfSplit);
  EXPECT_EQ(s.code(), ropescale::ErrorCode::kInvalidArgument);
  EXPECT_EQ(s.argument(), "factor table length") << s.message();
  EXPECT_EQ(s.value(), "32") << s.message();
  EXPECT_EQ(s.context(), "table `from`") << s.message();
  s = ropescale::rerotate_keys(p.spec, p.long_table, wrong, pos.data(), kv, PairLayout::kHalfSplit);
  EXPECT_EQ(s.context(), "table `to`") << s.message();
  EXPECT_EQ(KeyRerotation::make(p.spec, p.long_table, wrong).status(), s);
  EXPECT_THROW(KeyRerotation(p.spec, p.long_table, wrong), ropescale::Error);
  RopeSpec bad = p.spec;
  bad.rotary_dim = 0;
  EXPECT_THROW(KeyRerotation(bad, p.long_table, p.long_table), ropescale::Error);

  const std::vector<std::int64_t> neg = {0, -3};
  s = ropescale::rerotate_keys(p.spec, p.short_table, p.long_table, neg.data(), kv,
                               PairLayout::kHalfSplit);
  EXPECT_NE(s.message().find("positions[1] = -3"), std::string::npos) << s.message();
  s = ropescale::rerotate_keys(p.spec, p.short_table, p.long_table,
                               static_cast<const std::int64_t*>(nullptr), kv,
                               PairLayout::kHalfSplit);
  EXPECT_NE(s.message().find("positions = null"), std::string::npos) << s.message();
  auto narrow = kv;
  narrow.head_dim = 64;  // < rotary_dim 96
  narrow.head_stride = 64;
  narrow.token_stride = 64 * kHeads;
  s = ropescale::rerotate_keys(p.spec, p.short_table, p.long_table, pos.data(), narrow,
                               PairLayout::kHalfSplit);
  EXPECT_NE(s.message().find("keys.head_dim = 64"), std::string::npos) << s.message();

  Eigen::ArrayXd a = Eigen::ArrayXd::Constant(4, 0.5), b = Eigen::ArrayXd::Constant(5, 0.5);
  EXPECT_THROW(KeyRerotation(a, 1.0, b, 1.0), ropescale::Error);
  EXPECT_THROW(KeyRerotation(a, 0.0, a, 1.0), ropescale::Error);
  EXPECT_THROW(KeyRerotation(a, 1.0, a, -1.0), ropescale::Error);
  a[1] = std::nan("");
  EXPECT_THROW(KeyRerotation(a, 1.0, b.head(4), 1.0), ropescale::Error);
  // Nothing written on failure.
  std::vector<float> before = k;
  EXPECT_FALSE(ropescale::rerotate_keys(p.spec, p.short_table, p.long_table, neg.data(), kv,
                                        PairLayout::kHalfSplit)
                   .ok());
  EXPECT_EQ(k, before);
}

}  // namespace
