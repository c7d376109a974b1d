// Scalar long double reference for rotary embedding, used by the tests. Deliberately simple:
// one element at a time, no range reduction tricks, std::cos/std::sin in long double.
#pragma once

#include <cmath>
#include <cstdint>
#include <vector>

namespace ropescale_test {

enum class RefLayout { kHalfSplit, kInterleaved };

/// Rotates one head (head_dim values) at `pos` with inverse frequencies inv_freq (long double)
/// and attention factor m. Channels past 2 * inv_freq.size() pass through.
inline std::vector<long double> ref_rotate_head(const std::vector<long double>& x,
                                                const std::vector<long double>& inv_freq,
                                                long double m, std::int64_t pos, RefLayout layout) {
  std::vector<long double> out = x;
  const std::size_t half = inv_freq.size();
  for (std::size_t i = 0; i < half; ++i) {
    const long double angle = static_cast<long double>(pos) * inv_freq[i];
    const long double c = m * std::cos(angle);
    const long double s = m * std::sin(angle);
    const std::size_t a = layout == RefLayout::kHalfSplit ? i : 2 * i;
    const std::size_t b = layout == RefLayout::kHalfSplit ? i + half : 2 * i + 1;
    out[a] = x[a] * c - x[b] * s;
    out[b] = x[b] * c + x[a] * s;
  }
  return out;
}

/// inv_freq_i = 1 / (lambda_i * base^(2i/d)) in long double.
inline std::vector<long double> ref_inv_freq(long double base, std::int64_t rotary_dim,
                                             const std::vector<long double>& lambda) {
  std::vector<long double> out(static_cast<std::size_t>(rotary_dim / 2));
  for (std::size_t i = 0; i < out.size(); ++i)
    out[i] = 1.0L / (lambda[i] * std::pow(base, 2.0L * static_cast<long double>(i) /
                                                    static_cast<long double>(rotary_dim)));
  return out;
}

}  // namespace ropescale_test
