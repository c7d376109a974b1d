// ropescale: KV-cache key re-rotation from one factor table to another (e.g. short -> long when
// generation crosses the original window; select_window in window.hpp says when).
//
// A key cached at position p with table A is k_A = m_A R(p theta_A) k. The same key under table B
// is m_B R(p theta_B) k = (m_B / m_A) R(p (theta_B - theta_A)) k_A: undoing A and applying B is a
// single rotation by the frequency difference with scale m_B / m_A, one read and one write of the
// cache and no key projections. Hugging Face recomputes the whole prefix instead.
#pragma once

#include <Eigen/Core>
#include <cstdint>

#include "ropescale/error.hpp"
#include "ropescale/factors.hpp"
#include "ropescale/frequencies.hpp"
#include "ropescale/rotary.hpp"

namespace ropescale {

/// Switches cached keys from one factor table to another in one pass.
///
/// A key cached at position p under table `from` is k_from = m_from R(p theta_from) k. Under
/// table `to` it would be m_to R(p theta_to) k, and
///
///     m_to R(p theta_to) k = (m_to / m_from) R(p (theta_to - theta_from)) k_from
///
/// so the switch is one rotation by the frequency difference (computed in double, then range
/// reduced exactly like any angle; negative differences are fine) and one scale. Values keep
/// their projection: nothing is recomputed from the hidden states.
///
/// ## Accuracy
///
/// Let u be the unit roundoff of the storage type (float 2^-24, half 2^-11, bfloat16 2^-8; double
/// 2^-53), r = |(x, y)| the norm of a rotary pair of the key before any rotation, p its position
/// and theta_max the largest inverse frequency of either table (1 for plain RoPE's pair 0).
/// Against the same key rotated from scratch with `to` (same storage type), every re-rotated
/// channel is within
///
///     |error| <= m_to * r * (12 u + 2^-51 * p * theta_max)
///
/// The 12 u: three rotations (the cached one, the re-rotation, the one from scratch) each round
/// m*cos and m*sin, the products, the sum and the store, at most (2 sqrt(2) + 1) u ~ 3.8 u of
/// m r apiece. Measured with Phi-4-mini's tables: at most 5.1 u for float, 2 u for half and
/// bfloat16 (whose compute type, float, is far finer than the storage). The second term is the
/// double rounding of the angles p * theta: 1.3e-9 at p = 3e6, invisible in float keys and the
/// only visible term in double ones. For float keys of unit scale the bound is 1.2e-6 at every
/// position; tests check it channel by channel, and the absolute 2e-6, at positions 0 .. 3e6.
/// Each further switch adds one more rotation's rounding (3.8 u); nothing is recomputed.
class KeyRerotation {
 public:
  /// Frequencies theta_to - theta_from and scale m_to / m_from for a spec; an error when the
  /// spec is invalid or a table does not fit it.
  static Result<KeyRerotation> make(const RopeSpec& spec, const FactorTable& from,
                                    const FactorTable& to) {
    ROPESCALE_RETURN_IF_ERROR(validate(spec, from, to));
    return make(from.inv_freq(spec).value(), from.attention_factor(), to.inv_freq(spec).value(),
                to.attention_factor(), spec.frequency_dim());  // both checked above
  }

  /// The same from raw inverse frequencies (equal sizes, finite) and attention factors (> 0).
  /// frequency_dim as for RotaryFrequencies (0: 2 * inv_freq.size()).
  static Result<KeyRerotation> make(const Eigen::ArrayXd& inv_freq_from,
                                    double attention_factor_from, const Eigen::ArrayXd& inv_freq_to,
                                    double attention_factor_to, std::int64_t frequency_dim = 0) {
    ROPESCALE_RETURN_IF_ERROR(RotaryFrequencies::validate(inv_freq_from, attention_factor_from));
    if (inv_freq_to.size() != inv_freq_from.size())
      return make_status(
          ErrorCode::kInvalidArgument, "inv_freq_to.size()",
          static_cast<std::int64_t>(inv_freq_to.size()),
          "must equal inv_freq_from.size() (" + std::to_string(inv_freq_from.size()) + ")");
    ROPESCALE_RETURN_IF_ERROR(RotaryFrequencies::validate(inv_freq_to, attention_factor_to));
    Result<RotaryFrequencies> f = RotaryFrequencies::make(
        inv_freq_to - inv_freq_from, attention_factor_to / attention_factor_from, frequency_dim);
    if (!f.ok()) return f.status();
    return KeyRerotation(std::move(f).value());
  }

  /// make(...).value(): throw Error on bad input (abort without exceptions).
  KeyRerotation(const RopeSpec& spec, const FactorTable& from, const FactorTable& to)
      : KeyRerotation(make(spec, from, to).value()) {}
  KeyRerotation(const Eigen::ArrayXd& inv_freq_from, double attention_factor_from,
                const Eigen::ArrayXd& inv_freq_to, double attention_factor_to)
      : KeyRerotation(
            make(inv_freq_from, attention_factor_from, inv_freq_to, attention_factor_to).value()) {}

  /// The single rotation: inv_freq = theta_to - theta_from, attention factor = m_to / m_from.
  const RotaryFrequencies& frequencies() const noexcept { return freqs_; }
  std::int64_t rotary_dim() const noexcept { return freqs_.rotary_dim(); }
  /// True when both tables give the same frequencies and attention factor: apply() then leaves
  /// every key bit-identical (angle 0, scale 1), and a caller may skip the pass.
  bool is_identity() const noexcept {
    return freqs_.attention_factor() == 1.0 && (freqs_.inv_freq() == 0.0).all();
  }

  /// Re-rotates keys in place; positions holds the position id of each cached token.
  template <typename T>
  Status apply(const std::int64_t* positions, const HeadsView<T>& keys, PairLayout layout) const {
    const HeadsView<const T> in = keys.as_const();
    const char* names[] = {"keys"};
    return detail::rotary_call<T>(freqs_, positions, &in, &keys, 1, names, names, layout,
                                  RotaryDirection::kForward);
  }

  /// Checks that spec is valid and both tables fit it.
  static Status validate(const RopeSpec& spec, const FactorTable& from, const FactorTable& to) {
    ROPESCALE_RETURN_IF_ERROR(ropescale::validate(spec));
    Status s = from.validate_for(spec);
    if (!s.ok()) return s.with_context("table `from`");
    s = to.validate_for(spec);
    if (!s.ok()) return s.with_context("table `to`");
    return Status();
  }

 private:
  explicit KeyRerotation(RotaryFrequencies freqs) : freqs_(std::move(freqs)) {}

  RotaryFrequencies freqs_;
};

/// Re-rotates cached keys in place from table `from` to table `to` (see KeyRerotation for the
/// formula and its accuracy bound). Typical use when generation crosses the original window:
///
///     // The furthest position goes from n - 2 to n - 1: switch when its window changes.
///     if (ropescale::select_window(spec, n - 2).value() !=
///         ropescale::select_window(spec, n - 1).value()) {
///       const auto to_long = ropescale::KeyRerotation::make(spec, short_table, long_table);
///       if (!to_long.ok()) return to_long.status();
///       for (auto& layer : cache)  // keys [tokens, kv_heads, head_dim]
///         ROPESCALE_RETURN_IF_ERROR(
///             to_long->apply(positions.data(), layer.keys, ropescale::PairLayout::kHalfSplit));
///     }
///
/// Build one KeyRerotation and reuse it across layers; this function builds one per call.
template <typename T>
inline Status rerotate_keys(const RopeSpec& spec, const FactorTable& from, const FactorTable& to,
                            const std::int64_t* positions, const HeadsView<T>& keys,
                            PairLayout layout) {
  const Result<KeyRerotation> r = KeyRerotation::make(spec, from, to);
  if (!r.ok()) return r.status();
  return r->apply(positions, keys, layout);
}

}  // namespace ropescale
