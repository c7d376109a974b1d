// Built with -fno-exceptions: every operation returns a Status or a Result<T>, and every type
// with invariants has a checked make(), so a host without exceptions never aborts on bad input.
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <vector>

#include "ropescale/kv_cache.hpp"
#include "ropescale/mrope.hpp"
#include "ropescale/rerotate.hpp"
#include "ropescale/rotary.hpp"
#include "ropescale/rotary_plan.hpp"
#include "ropescale/scaling.hpp"

int main() {
  const ropescale::RopeSpec spec{8, 8, 1e4, 16};
  // Tables: a bad factor and a bad scale factor come back as errors.
  if (ropescale::FactorTable::make(Eigen::ArrayXd::Constant(4, -1.0)).ok()) return 1;
  if (ropescale::linear_factors(spec, 0.5).ok()) return 1;
  const ropescale::Result<ropescale::FactorTable> table = ropescale::default_factors(spec);
  const ropescale::Result<ropescale::FactorTable> longer = ropescale::linear_factors(spec, 4.0);
  if (!table.ok() || !longer.ok()) return 1;
  // Angle sources: a table that does not fit the spec, a cache too large or past the
  // frequencies' range, non-finite raw frequencies.
  const ropescale::RopeSpec wider{16, 16, 1e4, 16};
  if (ropescale::RotaryFrequencies::make(wider, *table).ok()) return 1;
  if (ropescale::RotaryFrequencies::make(Eigen::ArrayXd::Constant(4, NAN), 1.0).ok()) return 1;
  if (ropescale::RotaryCache::make(spec, *table, 0).ok()) return 1;
  if (ropescale::RotaryCache::make(spec, *table, std::int64_t{1} << 40).ok()) return 1;
  if (!ropescale::RotaryCache::make(spec, *table, 16).ok()) return 1;
  const ropescale::Result<ropescale::RotaryFrequencies> made =
      ropescale::RotaryFrequencies::make(spec, *table);
  if (!made.ok()) return 1;
  const ropescale::RotaryFrequencies& freqs = *made;
  // Key re-rotation between tables that do not fit the spec.
  if (ropescale::KeyRerotation::make(wider, *table, *longer).ok()) return 1;
  if (!ropescale::KeyRerotation::make(spec, *table, *longer).ok()) return 1;
  // Views whose strides overflow int64.
  std::vector<float> x(8, 1.0f);
  const std::int64_t huge = std::int64_t{1} << 62;
  if (ropescale::HeadsView<float>::make(x.data(), 1, huge, 8).ok()) return 1;
  const ropescale::Result<ropescale::HeadsView<float>> view_made =
      ropescale::HeadsView<float>::make(x.data(), 1, 1, 8);
  if (!view_made.ok()) return 1;
  const ropescale::HeadsView<float> view = *view_made;
  const std::int64_t bad = -1, good = 3;
  const ropescale::Status s =
      ropescale::rotate(freqs, &bad, view, ropescale::PairLayout::kInterleaved);
  if (s.ok() || x[0] != 1.0f) return 1;
  std::printf("%s\n", s.message().c_str());
  if (!ropescale::rotate(freqs, &good, view, ropescale::PairLayout::kInterleaved).ok()) return 1;
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
  if (ropescale::rotate_and_append_kv(freqs, &good, view.as_const(), view.as_const(), &far_slot,
                                      cache, ropescale::PairLayout::kHalfSplit)
          .ok() ||
      pages[0] != -1.0f)
    return 1;
  // M-RoPE: bad sections and an out-of-range axis come back as a Status.
  if (ropescale::MropeSections::make({1, 1, 1}, false, 4).ok()) return 1;
  const auto sections_made = ropescale::MropeSections::make({2, 1, 1}, false, 4);
  if (!sections_made.ok()) return 1;
  const ropescale::MropeSections& sections = *sections_made;
  const std::int64_t pos3[3] = {3, 3, -2};
  return ropescale::rotate_mrope(freqs, sections, pos3, view, ropescale::PairLayout::kHalfSplit)
                 .ok()
             ? 1
             : 0;
}
