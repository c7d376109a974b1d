// Uses ropescale the way an engine would: read a config, rotate one query head and undo it.
#include <cmath>
#include <cstdio>
#include <vector>

#include "ropescale/io/hf_config.hpp"  // nlohmann/json arrives through ropescale::ropescale
#include "ropescale/ropescale.hpp"

int main() {
  const ropescale::RopeConfig cfg =
      ropescale::parse_hf_config(
          R"({"head_dim": 8, "max_position_embeddings": 16, "rope_theta": 10000.0})")
          .value();
  const ropescale::RopeSpec& spec = cfg.spec;
  if (spec.head_dim != 8 || spec.rotary_dim != 8) return 1;
  const auto table = cfg.table_for().value();
  const ropescale::RotaryCache cache(spec, table, 16);
  std::vector<float> q = {1, 2, 3, 4, 5, 6, 7, 8};
  const std::vector<float> orig = q;
  const std::int64_t pos = 5;
  auto view = ropescale::HeadsView<float>::tokens_heads_dim(q.data(), 1, 1, 8);
  ropescale::throw_if_error(
      ropescale::rotate(cache, &pos, view, ropescale::PairLayout::kHalfSplit));
  ropescale::throw_if_error(ropescale::rotate(cache, &pos, view, ropescale::PairLayout::kHalfSplit,
                                              ropescale::RotaryDirection::kInverse));
  double err = 0;
  for (int i = 0; i < 8; ++i) err = std::fmax(err, std::fabs(q[i] - orig[i]));
  std::printf("ropescale %s consumer: round-trip error %.1e\n", ropescale::version(), err);
  return err < 1e-5 ? 0 : 1;
}
