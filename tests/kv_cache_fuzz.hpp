// Seeded fuzzing of the fused KV-cache append (kv_cache.hpp) against an independent oracle,
// included by test_hf_config_fuzz.cpp so that CI's fuzz run (ROPESCALE_FUZZ_SECONDS / _SEED)
// covers it. Each input is a random paged cache (shape, page layout), page tables per sequence
// mapped to slot_mapping the way an engine builds it (block_table[p / block_size] * block_size +
// p % block_size), then damaged: shared or out-of-range blocks, duplicated slots, padding,
// negative, huge and INT64 slots, positions past the angle source; and values with tiny, huge,
// NaN and infinite rows. The oracle: the call is refused exactly when a slot breaks the rules or
// a position is out of range, and then nothing is written; otherwise each written row equals
// apply_rotary_out + a copy (float pages) or dequantizes within half a step or is the NaN
// sentinel (int8 pages), and every other row keeps its sentinel.
#pragma once

#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <set>
#include <vector>

#include "ropescale/kv_cache.hpp"

namespace ropescale_test {

struct KvFuzzCase {
  std::mt19937_64 rng;
  explicit KvFuzzCase(std::uint64_t seed) : rng(seed) {}
  std::int64_t below(std::int64_t n) {
    return std::uniform_int_distribution<std::int64_t>(0, n - 1)(rng);
  }
  float value() {
    switch (below(40)) {
      case 0:
        return std::numeric_limits<float>::quiet_NaN();
      case 1:
        return below(2) ? std::numeric_limits<float>::infinity()
                        : -std::numeric_limits<float>::infinity();
      case 2:
        return 1e-38f * static_cast<float>(below(100) - 50);  // tiny rows
      case 3:
        return 3e37f * static_cast<float>(below(3) - 1);  // rotation may overflow to infinity
      default:
        return std::normal_distribution<float>()(rng);
    }
  }
};

// Runs one random case on pages of S; returns whether the call was accepted.
template <typename S>
inline bool kv_fuzz_one(KvFuzzCase& f, const ropescale::RotaryCache& angles,
                        std::int64_t head_dim) {
  using ropescale::HeadsView;
  constexpr bool kQ8 = std::is_same<S, std::int8_t>::value;
  ropescale::PagedKVCache<S> c;
  c.num_blocks = f.below(6);
  c.block_size = 1 + f.below(8);
  c.num_kv_heads = 1 + f.below(3);
  c.head_dim = head_dim;
  c.page_layout =
      f.below(2) ? ropescale::PageLayout::kHeadMajor : ropescale::PageLayout::kTokenMajor;
  const std::int64_t slots = c.num_blocks * c.block_size, H = c.num_kv_heads, D = head_dim;
  const std::int64_t rows = slots * H;
  const S sentinel = static_cast<S>(kQ8 ? 99 : -7.5f);
  constexpr float kScaleSentinel = -3.25f;
  std::vector<S> kp(static_cast<std::size_t>(rows * D), sentinel), vp = kp;
  std::vector<float> ks(static_cast<std::size_t>(rows), kScaleSentinel), vs = ks;
  if (rows > 0) {  // no pages at all: null pointers, which the call refuses
    c.k_pages = kp.data();
    c.v_pages = vp.data();
    if (kQ8) {
      c.k_scales = ks.data();
      c.v_scales = vs.data();
    }
  }
  // Sequences with page tables; tokens at the ends of their sequences (a prefill chunk or decode).
  std::vector<std::int64_t> positions, slot_mapping;
  const std::int64_t seqs = 1 + f.below(3);
  for (std::int64_t q = 0; q < seqs; ++q) {
    std::vector<std::int64_t> table(static_cast<std::size_t>(1 + f.below(3)));
    for (auto& b : table) b = c.num_blocks > 0 ? f.below(c.num_blocks) : 0;
    if (f.below(8) == 0) table[0] = c.num_blocks + f.below(2);  // a block past the pages
    const std::int64_t len = 1 + f.below(static_cast<std::int64_t>(table.size()) * c.block_size);
    const std::int64_t n = 1 + f.below(len);
    for (std::int64_t p = len - n; p < len; ++p) {
      positions.push_back(p);
      slot_mapping.push_back(table[static_cast<std::size_t>(p / c.block_size)] * c.block_size +
                             p % c.block_size);
    }
  }
  const std::int64_t T = static_cast<std::int64_t>(positions.size());
  switch (f.below(8)) {  // damage
    case 0:
      slot_mapping[static_cast<std::size_t>(f.below(T))] = ropescale::kPaddingSlot;
      break;
    case 1: {
      static const std::int64_t kBad[] = {-2, std::numeric_limits<std::int64_t>::min(),
                                          std::numeric_limits<std::int64_t>::max(), 1LL << 40};
      slot_mapping[static_cast<std::size_t>(f.below(T))] = kBad[f.below(4)];
      break;
    }
    case 2:
      slot_mapping[static_cast<std::size_t>(f.below(T))] = slot_mapping[0];
      break;
    case 3:
      positions[static_cast<std::size_t>(f.below(T))] = angles.num_positions() + f.below(2);
      break;
    default:
      break;
  }
  std::vector<float> k(static_cast<std::size_t>(T * H * D)), v(k.size());
  for (float& x : k) x = f.value();
  for (float& x : v) x = f.value();
  const HeadsView<const float> kv = HeadsView<const float>::tokens_heads_dim(k.data(), T, H, D);
  const HeadsView<const float> vv = HeadsView<const float>::tokens_heads_dim(v.data(), T, H, D);
  const ropescale::PairLayout layout =
      f.below(2) ? ropescale::PairLayout::kHalfSplit : ropescale::PairLayout::kInterleaved;

  // The oracle's verdict, from the rules alone.
  bool want_ok = rows > 0;
  std::set<std::int64_t> seen;
  for (std::int64_t t = 0; t < T; ++t) {
    const std::int64_t s = slot_mapping[static_cast<std::size_t>(t)];
    const std::int64_t p = positions[static_cast<std::size_t>(t)];
    if (p < 0 || p >= angles.num_positions()) want_ok = false;
    if (s == ropescale::kPaddingSlot) continue;
    if (s < 0 || s >= slots || !seen.insert(s).second) want_ok = false;
  }
  const ropescale::Status st = ropescale::rotate_and_append_kv(angles, positions.data(), kv, vv,
                                                               slot_mapping.data(), c, layout);
  EXPECT_EQ(st.ok(), want_ok) << st.message();
  if (!st.ok()) {
    EXPECT_EQ(st.message().rfind("ropescale: ", 0), 0u) << st.message();
    for (const S& x : kp) EXPECT_TRUE(std::memcmp(&x, &sentinel, sizeof(S)) == 0);
    for (const S& x : vp) EXPECT_TRUE(std::memcmp(&x, &sentinel, sizeof(S)) == 0);
    for (float x : ks) EXPECT_EQ(x, kScaleSentinel);
    return false;
  }
  std::vector<float> ref(k.size());
  ropescale::throw_if_error(
      ropescale::rotate_out(angles, positions.data(), kv,
                            HeadsView<float>::tokens_heads_dim(ref.data(), T, H, D), layout));
  std::vector<bool> written(static_cast<std::size_t>(rows), false);
  for (std::int64_t t = 0; t < T; ++t) {
    const std::int64_t s = slot_mapping[static_cast<std::size_t>(t)];
    if (s == ropescale::kPaddingSlot) continue;
    for (std::int64_t h = 0; h < H; ++h) {
      const std::int64_t r = c.row(s, h);
      written[static_cast<std::size_t>(r)] = true;
      for (int which = 0; which < 2; ++which) {
        const float* x = (which == 0 ? ref.data() : v.data()) + (t * H + h) * D;
        const S* q = (which == 0 ? kp.data() : vp.data()) + r * D;
        if constexpr (kQ8) {
          const float scale = (which == 0 ? ks : vs)[static_cast<std::size_t>(r)];
          bool finite = true;
          for (std::int64_t j = 0; j < D; ++j) finite = finite && std::isfinite(x[j]);
          if (!finite) {
            EXPECT_TRUE(std::isnan(scale));
            for (std::int64_t j = 0; j < D; ++j) EXPECT_EQ(q[j], 0);
            continue;
          }
          EXPECT_TRUE(std::isfinite(scale));
          for (std::int64_t j = 0; j < D; ++j)
            EXPECT_LE(std::abs(static_cast<double>(q[j]) * scale - static_cast<double>(x[j])),
                      scale * (0.5 + 1e-5))
                << "t " << t << " h " << h << " j " << j;
        } else {
          EXPECT_EQ(std::memcmp(q, x, sizeof(float) * static_cast<std::size_t>(D)), 0)
              << "t " << t << " h " << h;
        }
      }
    }
  }
  for (std::int64_t r = 0; r < rows; ++r) {
    if (written[static_cast<std::size_t>(r)]) continue;
    for (std::int64_t j = 0; j < D; ++j) {
      EXPECT_TRUE(std::memcmp(&kp[static_cast<std::size_t>(r * D + j)], &sentinel, sizeof(S)) == 0);
      EXPECT_TRUE(std::memcmp(&vp[static_cast<std::size_t>(r * D + j)], &sentinel, sizeof(S)) == 0);
    }
  }
  return true;
}

}  // namespace ropescale_test
