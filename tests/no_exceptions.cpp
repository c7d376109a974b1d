// Built with -fno-exceptions: the Status-returning twins are the whole API a caller needs.
#include <cstdio>
#include <vector>

#include "ropescale/kv_cache.hpp"
#include "ropescale/mrope.hpp"
#include "ropescale/rotary.hpp"
#include "ropescale/rotary_plan.hpp"

int main() {
  const ropescale::RopeSpec spec{8, 8, 1e4, 16};
  ropescale::FactorTable table;
  if (!ropescale::FactorTable::make(Eigen::ArrayXd::Ones(4), 1.0, "default", &table).ok()) return 1;
  if (!table.validate_for(spec).ok()) return 1;
  const ropescale::RotaryFrequencies freqs(spec, table);
  std::vector<float> x(8, 1.0f);
  const std::int64_t bad = -1, good = 3;
  auto view = ropescale::HeadsView<float>::tokens_heads_dim(x.data(), 1, 1, 8);
  const ropescale::Status s =
      ropescale::try_apply_rotary(freqs, &bad, view, ropescale::PairLayout::kInterleaved);
  if (s.ok() || x[0] != 1.0f) return 1;
  std::printf("%s\n", s.message().c_str());
  if (!ropescale::try_apply_rotary(freqs, &good, view, ropescale::PairLayout::kInterleaved).ok())
    return 1;
  // A planned call: made once, a position outside the angle source comes back as a Status.
  using Plan = ropescale::RotaryShapePlan<float, ropescale::RotaryFrequencies>;
  const ropescale::Result<Plan> plan =
      Plan::make(freqs, view, nullptr, ropescale::PairLayout::kHalfSplit);
  if (!plan.ok() || plan->rotate(x.data(), 1, &bad).ok() || !plan->rotate(x.data(), 1, &good).ok())
    return 1;
  // Fused KV-cache append: a slot beyond the pages comes back as a Status, nothing written.
  std::vector<float> pages(2 * 8, -1.0f);
  ropescale::PagedKVCache<float> cache;
  cache.k_pages = pages.data();
  cache.v_pages = pages.data() + 8;
  cache.num_blocks = 1;
  cache.block_size = 1;
  cache.num_kv_heads = 1;
  cache.head_dim = 8;
  const std::int64_t far_slot = 1;
  if (ropescale::try_rotate_and_append_kv(freqs, &good, view.as_const(), view.as_const(), &far_slot,
                                          cache, ropescale::PairLayout::kHalfSplit)
          .ok() ||
      pages[0] != -1.0f)
    return 1;
  // M-RoPE: bad sections and an out-of-range axis come back as a Status.
  ropescale::MropeSections sections;
  if (ropescale::MropeSections::make({1, 1, 1}, false, 4, &sections).ok()) return 1;
  if (!ropescale::MropeSections::make({2, 1, 1}, false, 4, &sections).ok()) return 1;
  const std::int64_t pos3[3] = {3, 3, -2};
  return ropescale::try_apply_rotary_mrope(freqs, sections, pos3, view,
                                           ropescale::PairLayout::kHalfSplit)
                 .ok()
             ? 1
             : 0;
}
