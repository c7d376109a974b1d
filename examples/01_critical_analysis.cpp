// Critical-dimension analysis of LLaMA3-8B extended from 8k to 128k tokens (LongRoPE2 section 2):
// which rotary pairs never completed a period in pre-training, and which of them each scaling
// method leaves below lambda = s (out of distribution at the target length).
#include <cstdio>
#include <string>
#include <vector>

#include "ropescale/critical.hpp"
#include "ropescale/scaling.hpp"

int main() {
  ropescale::RopeSpec spec;  // LLaMA3-8B
  spec.head_dim = 128;
  spec.rotary_dim = 128;
  spec.rope_theta = 500000.0;
  spec.original_max_position = 8192;
  const std::int64_t target = 131072;

  // The searched part of the published LLaMA3-8B LongRoPE2 long_factor (pairs 33..63, microsoft/
  // nnscaler examples/longrope2/llama3_8b_longrope2_config.json); below pair 33 the table is NTK
  // scaling anchored at lambda_33, which longrope2_factors() rebuilds.
  const std::vector<double> searched = {21.81, 21.87, 21.88, 22.23, 22.28, 22.53, 22.65, 22.73,
                                        22.89, 22.92, 23.18, 23.23, 23.36, 23.42, 23.47, 23.51,
                                        23.52, 23.75, 23.82, 23.89, 24.06, 24.13, 24.14, 24.3,
                                        24.53, 24.67, 24.75, 24.97, 25.49, 26.01, 26.05};
  const auto longrope2 =
      ropescale::longrope2_factors(spec, 33, Eigen::Map<const Eigen::ArrayXd>(searched.data(), 31))
          .value();

  // Every closed-form method at s = 16, plus the searched table.
  const ropescale::MethodComparison cmp =
      ropescale::compare_methods(spec, target, {longrope2}).value();
  const ropescale::CriticalAnalysis& a = cmp.analysis;

  std::printf("LLaMA3-8B: %lld -> %lld tokens, s = %g\n",
              static_cast<long long>(spec.original_max_position), static_cast<long long>(target),
              a.scale);
  std::printf("critical pair %lld (d_tcd = %lld), lower search bound %lld\n",
              static_cast<long long>(a.dims.critical_pair),
              static_cast<long long>(a.dims.critical_dim),
              static_cast<long long>(a.dims.lower_pair));
  for (Eigen::Index i : {Eigen::Index{34}, Eigen::Index{35}})
    std::printf("pair %lld: period %.0f tokens, %.3f periods in L_train\n",
                static_cast<long long>(i), a.period[i], a.train_periods[i]);

  std::printf("\n%-14s %9s %9s  %s\n", "method", "lambda_35", "lambda_63", "OOD pairs at 128k");
  for (const ropescale::TableAnalysis& m : cmp.methods) {
    std::string ood = m.ood_pairs.empty() ? "none"
                                          : std::to_string(m.ood_pairs.front()) + ".." +
                                                std::to_string(m.ood_pairs.back()) + " (" +
                                                std::to_string(m.ood_pairs.size()) + ")";
    if (m.detected_critical_pair)
      ood += ", NTK-anchored below " + std::to_string(*m.detected_critical_pair);
    std::printf("%-14s %9.2f %9.2f  %s\n", m.method.c_str(), m.factors[35], m.factors[63],
                ood.c_str());
  }
  return 0;
}
