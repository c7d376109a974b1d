// LongRoPE2 factor search on LLaMA3-8B's RoPE (8k -> 128k) with a stand-in fitness: the distance
// to the factor list Microsoft released for that model, where a real run would measure the
// needle-driven perplexity of the model (needle.hpp). The search is stopped after 10 iterations,
// as if killed, and resumed from its checkpoint file; the result equals an uninterrupted run.
#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include "ropescale/io/search_checkpoint.hpp"
#include "ropescale/search.hpp"

int main() {
  const ropescale::RopeSpec llama3{128, 128, 500000.0, 8192};
  const ropescale::SearchSpace space = ropescale::SearchSpace::longrope2(llama3, 131072).value();
  std::printf("space: s = %g, factors in [%g, %g] step %g, critical pair c in [%lld, %lld]\n",
              space.scale, space.lower_bound, space.upper_bound, space.step,
              static_cast<long long>(space.critical_lower),
              static_cast<long long>(space.critical_upper));

  // The released LLaMA3-8B LongRoPE2 factors above c = 33 (microsoft/nnscaler).
  const std::vector<double> top = {21.81, 21.87, 21.88, 22.23, 22.28, 22.53, 22.65, 22.73,
                                   22.89, 22.92, 23.18, 23.23, 23.36, 23.42, 23.47, 23.51,
                                   23.52, 23.75, 23.82, 23.89, 24.06, 24.13, 24.14, 24.30,
                                   24.53, 24.67, 24.75, 24.97, 25.49, 26.01, 26.05};
  Eigen::ArrayXd released(64);
  for (int i = 0; i < 64; ++i)
    released[i] = i < 33 ? std::pow(top[0], i / 33.0) : top[static_cast<std::size_t>(i - 33)];
  const auto fitness = [&](const ropescale::FactorTable& t) {
    return (t.factors().log() - released.log()).square().sum();
  };

  ropescale::SearchParams params;  // population 64, 32 parents, 16 + 16 children, 40 iterations
  params.seed = 2025;
  const auto report = [](const ropescale::SearchProgress& p) {
    if (p.iteration % 10 == 0)
      std::printf("  iteration %2lld: %4lld evaluations, best loss %.6f (c = %lld)\n",
                  static_cast<long long>(p.iteration), static_cast<long long>(p.evaluations),
                  p.best_loss, static_cast<long long>(p.best->critical_pair));
  };

  const std::string path = "search_synthetic_checkpoint.json";
  std::remove(path.c_str());
  {
    std::printf("session 1 (stops after iteration 10):\n");
    ropescale::EvolutionSearch search(space, params);
    search.set_progress_callback(report);
    search.set_stop_callback([](const ropescale::SearchProgress& p) { return p.iteration == 10; });
    const ropescale::SearchResult r =
        ropescale::run_or_resume_search(search, path, fitness).value();
    std::printf("  stopped: %s\n", ropescale::to_string(r.stop_reason));
  }
  std::printf("session 2 (resumes from the checkpoint):\n");
  ropescale::EvolutionSearch search(space, params);
  search.set_progress_callback(report);
  const ropescale::SearchResult r = ropescale::run_or_resume_search(search, path, fitness).value();
  std::remove(path.c_str());

  ropescale::EvolutionSearch reference(space, params);
  const ropescale::SearchResult u = reference.run(fitness).value();
  std::printf("result: %s after %lld evaluations; c = %lld; same as an uninterrupted run: %s\n",
              ropescale::to_string(r.stop_reason), static_cast<long long>(r.evaluations),
              static_cast<long long>(r.best.critical_pair),
              r.best == u.best && r.best_loss == u.best_loss ? "yes" : "no");
  const Eigen::ArrayXd& f = r.table.factors();
  std::printf(
      "factors 0, 16, 33, 48, 63: %.4f %.4f %.4f %.4f %.4f (released: %.4f %.4f %.4f "
      "%.4f %.4f)\n",
      f[0], f[16], f[33], f[48], f[63], released[0], released[16], released[33], released[48],
      released[63]);
  std::printf("max |lambda - released| = %.2f, attention factor %.6f\n",
              (f - released).abs().maxCoeff(), r.table.attention_factor());
  return 0;
}
