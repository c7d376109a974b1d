// `ropescale selfcheck`: rotates random heads with plain RoPE at long positions and checks them
// against a long double reference, forward then inverse, on both angle sources.
#include <cmath>
#include <cstdint>
#include <iomanip>
#include <iostream>
#include <nlohmann/json.hpp>
#include <random>
#include <vector>

#include "cli.hpp"
#include "ropescale/rotary.hpp"

namespace {

const std::vector<cli::Option>& options() {
  static const std::vector<cli::Option> kOptions = {cli::format_option()};
  return kOptions;
}

int run_selfcheck(const std::vector<std::string>& argv) {
  cli::Args args(argv, options());
  const bool json = args.json_format();
  ropescale::RopeSpec spec;  // Llama-style: head 128, theta 500000, trained at 8192
  spec.head_dim = 128;
  spec.rotary_dim = 128;
  spec.rope_theta = 500000.0;
  spec.original_max_position = 8192;
  const auto table = ropescale::FactorTable::identity(spec);
  const Eigen::ArrayXd inv_freq = table.inv_freq(spec).value();
  const std::vector<std::int64_t> positions = {0, 1, 4095, 131071, 1 << 21, std::int64_t{1} << 31};
  const std::int64_t tokens = static_cast<std::int64_t>(positions.size());
  const std::int64_t heads = 4;
  std::mt19937 rng(7);
  std::normal_distribution<float> dist;
  std::vector<float> x(static_cast<std::size_t>(tokens * heads * spec.head_dim));
  for (auto& v : x) v = dist(rng);
  const std::vector<float> x0 = x;

  const ropescale::RotaryFrequencies freqs(spec, table);
  auto view = ropescale::HeadsView<float>::tokens_heads_dim(x.data(), tokens, heads, spec.head_dim);
  ropescale::throw_if_error(
      ropescale::rotate(freqs, positions.data(), view, ropescale::PairLayout::kHalfSplit));

  double max_err = 0;
  const std::int64_t half = spec.pairs();
  for (std::int64_t t = 0; t < tokens; ++t)
    for (std::int64_t h = 0; h < heads; ++h)
      for (std::int64_t i = 0; i < half; ++i) {
        const std::size_t base = static_cast<std::size_t>((t * heads + h) * spec.head_dim);
        const long double angle = static_cast<long double>(positions[t]) *
                                  (1.0L / std::pow(500000.0L, 2.0L * i / 128.0L));
        const long double a = x0[base + i], b = x0[base + i + half];
        const long double ra = a * std::cos(angle) - b * std::sin(angle);
        const long double rb = b * std::cos(angle) + a * std::sin(angle);
        max_err = std::fmax(max_err, static_cast<double>(std::fabs(ra - x[base + i])));
        max_err = std::fmax(max_err, static_cast<double>(std::fabs(rb - x[base + i + half])));
      }
  ropescale::throw_if_error(ropescale::rotate(freqs, positions.data(), view,
                                              ropescale::PairLayout::kHalfSplit,
                                              ropescale::RotaryDirection::kInverse));
  double round_trip = 0;
  for (std::size_t j = 0; j < x.size(); ++j)
    round_trip = std::fmax(round_trip, std::fabs(static_cast<double>(x[j]) - x0[j]));

  const bool ok = max_err < 1e-5 && round_trip < 1e-5;
  if (json) {
    nlohmann::json out = cli::json_document(
        "selfcheck", {{"version", ropescale::version()},
                      {"tokens", tokens},
                      {"heads", heads},
                      {"head_dim", spec.head_dim},
                      {"positions", positions},
                      {"max_error", max_err},
                      {"round_trip_error", round_trip},
                      {"kernel_path", ropescale::to_string(ropescale::active_kernel_path())},
                      {"ok", ok}});
    std::cout << out.dump(1) << "\n";
    return ok ? 0 : 1;
  }
  std::cout << "ropescale " << ropescale::version() << " self-check\n"
            << "  spec: " << spec << "\n"
            << "  rotated " << tokens << " tokens x " << heads << " heads x " << spec.head_dim
            << " (float, half-split) at positions 0 .. 2^31 on the fly\n"
            << std::scientific << std::setprecision(2)
            << "  max |error| vs long double reference: " << max_err << "\n"
            << "  max |error| after forward + inverse:  " << round_trip << "\n";
  std::cout << (ok ? "  OK\n" : "  FAILED\n");
  return ok ? 0 : 1;
}

const bool registered = cli::register_command(
    {"selfcheck", "rotate random heads at long positions and check against long double",
     "[--format table|json]", run_selfcheck, options()});

}  // namespace
