// Uses ropescale the way an engine would: rotate one query head and undo it.
#include <cmath>
#include <cstdio>
#include <vector>

#include "ropescale/ropescale.hpp"

int main() {
  ropescale::RopeSpec spec;
  spec.head_dim = 8;
  spec.rotary_dim = 8;
  const auto table = ropescale::FactorTable::identity(spec);
  const ropescale::RotaryCache cache(spec, table, 16);
  std::vector<float> q = {1, 2, 3, 4, 5, 6, 7, 8};
  const std::vector<float> orig = q;
  const std::int64_t pos = 5;
  auto view = ropescale::HeadsView<float>::tokens_heads_dim(q.data(), 1, 1, 8);
  ropescale::apply_rotary(cache, &pos, view, ropescale::PairLayout::kHalfSplit);
  ropescale::apply_rotary(cache, &pos, view, ropescale::PairLayout::kHalfSplit,
                          ropescale::RotaryDirection::kInverse);
  double err = 0;
  for (int i = 0; i < 8; ++i) err = std::fmax(err, std::fabs(q[i] - orig[i]));
  std::printf("ropescale %s consumer: round-trip error %.1e\n", ropescale::version(), err);
  return err < 1e-5 ? 0 : 1;
}
