// ropescale: the operands and angle sources of the rotation verbs in rotary.hpp (which draws
// the layout and the angle formula): PairLayout, RotaryDirection, HeadsView (a strided
// [tokens, heads, head_dim] view), RotaryFrequencies (angles computed per token) and
// RotaryCache / RotaryCacheD (angles precomputed per position).
#pragma once

#include <Eigen/Core>
#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <functional>
#include <limits>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "ropescale/error.hpp"
#include "ropescale/factors.hpp"
#include "ropescale/frequencies.hpp"
#include "ropescale/kernel_path.hpp"

#pragma push_macro("ROPESCALE_INSIDE_PUBLIC_HEADER")
#define ROPESCALE_INSIDE_PUBLIC_HEADER
#include "ropescale/detail/aligned.hpp"
#include "ropescale/detail/checked_math.hpp"
#include "ropescale/detail/kernels/angle.hpp"
#include "ropescale/detail/kernels/rotary_kernels.hpp"
#pragma pop_macro("ROPESCALE_INSIDE_PUBLIC_HEADER")

namespace ropescale {

/// Which channels form a rotating pair (see the drawing at the top of rotary.hpp).
enum class PairLayout { kHalfSplit, kInterleaved };

/// kForward applies RoPE; kInverse undoes it; kBackward is the transpose (gradient pass).
enum class RotaryDirection { kForward, kInverse, kBackward };

inline const char* to_string(PairLayout layout) noexcept {
  return layout == PairLayout::kHalfSplit ? "half_split" : "interleaved";
}
inline const char* to_string(RotaryDirection d) noexcept {
  return d == RotaryDirection::kForward   ? "forward"
         : d == RotaryDirection::kInverse ? "inverse"
                                          : "backward";
}

/// A strided [tokens, heads, head_dim] tensor of query or key heads (strides in elements).
template <typename T>
struct HeadsView {
  T* data = nullptr;
  std::int64_t tokens = 0;
  std::int64_t heads = 0;
  std::int64_t head_dim = 0;
  std::int64_t token_stride = 0;
  std::int64_t head_stride = 0;

  /// Contiguous [tokens, heads, head_dim]; an error when heads * head_dim overflows int64.
  static Result<HeadsView> make(T* data, std::int64_t tokens, std::int64_t heads,
                                std::int64_t head_dim) {
    std::int64_t stride = 0;
    ROPESCALE_RETURN_IF_ERROR(stride_of("heads * head_dim", heads, head_dim, &stride));
    return HeadsView{data, tokens, heads, head_dim, stride, head_dim};
  }
  /// Contiguous [heads, tokens, head_dim]; an error when tokens * head_dim overflows int64.
  static Result<HeadsView> make_heads_first(T* data, std::int64_t tokens, std::int64_t heads,
                                            std::int64_t head_dim) {
    std::int64_t stride = 0;
    ROPESCALE_RETURN_IF_ERROR(stride_of("tokens * head_dim", tokens, head_dim, &stride));
    return HeadsView{data, tokens, heads, head_dim, head_dim, stride};
  }
  /// make(...).value() and make_heads_first(...).value(): throw Error (abort without exceptions).
  static HeadsView tokens_heads_dim(T* data, std::int64_t tokens, std::int64_t heads,
                                    std::int64_t head_dim) {
    return make(data, tokens, heads, head_dim).value();
  }
  static HeadsView heads_tokens_dim(T* data, std::int64_t tokens, std::int64_t heads,
                                    std::int64_t head_dim) {
    return make_heads_first(data, tokens, heads, head_dim).value();
  }
  /// The same view, read-only.
  HeadsView<const T> as_const() const {
    return {data, tokens, heads, head_dim, token_stride, head_stride};
  }

 private:
  static Status stride_of(const char* what, std::int64_t a, std::int64_t b, std::int64_t* r) {
    if (!detail::checked_mul(a, b, r))
      return make_status(ErrorCode::kInvalidArgument, what,
                         std::to_string(a) + " * " + std::to_string(b),
                         "overflows int64: the tensor cannot be addressed");
    return Status();
  }
};

/// On-the-fly angle source: the rescaled inverse frequencies and the attention factor.
class RotaryFrequencies {
 public:
  /// inv_freq_i = base_inv_freq_i / lambda_i, attention factor from the table; the half-split
  /// partner offset is spec.frequency_dim() / 2. An error when the table does not fit the spec.
  static Result<RotaryFrequencies> make(const RopeSpec& spec, const FactorTable& table) {
    ROPESCALE_RETURN_IF_ERROR(table.validate_for(spec));
    RotaryFrequencies f;
    f.inv_freq_ = base_inv_freq(spec).value() / table.factors();  // spec checked above
    f.attention_factor_ = table.attention_factor();
    f.frequency_dim_ = spec.frequency_dim();
    f.set_limits();
    return f;
  }

  /// Raw frequencies (any finite values, negative allowed: e.g. the difference of two tables
  /// used to re-rotate a KV cache) and a finite attention factor > 0. frequency_dim is the
  /// half-split span (RopeSpec::frequency_dim()); 0 means 2 * inv_freq.size().
  static Result<RotaryFrequencies> make(Eigen::ArrayXd inv_freq, double attention_factor,
                                        std::int64_t frequency_dim = 0) {
    ROPESCALE_RETURN_IF_ERROR(validate(inv_freq, attention_factor));
    const std::int64_t rd = 2 * static_cast<std::int64_t>(inv_freq.size());
    if (frequency_dim != 0 && (frequency_dim < rd || frequency_dim % 2 != 0))
      return make_status(
          ErrorCode::kInvalidArgument, "frequency_dim", frequency_dim,
          "must be 0 or even and >= 2 * inv_freq.size() (" + std::to_string(rd) + ")");
    RotaryFrequencies f;
    f.inv_freq_ = std::move(inv_freq);
    f.attention_factor_ = attention_factor;
    f.frequency_dim_ = frequency_dim != 0 ? frequency_dim : rd;
    f.set_limits();
    return f;
  }

  /// make(...).value(): throw Error on bad input (abort without exceptions).
  RotaryFrequencies(const RopeSpec& spec, const FactorTable& table)
      : RotaryFrequencies(make(spec, table).value()) {}
  RotaryFrequencies(Eigen::ArrayXd inv_freq, double attention_factor,
                    std::int64_t frequency_dim = 0)
      : RotaryFrequencies(make(std::move(inv_freq), attention_factor, frequency_dim).value()) {}

  /// The rule make() applies to raw frequencies: non-empty, finite, attention factor in range.
  static Status validate(const Eigen::ArrayXd& inv_freq, double attention_factor) {
    if (inv_freq.size() == 0)
      return make_status(ErrorCode::kInvalidArgument, "inv_freq.size()", 0, "must be > 0");
    for (Eigen::Index i = 0; i < inv_freq.size(); ++i)
      if (!std::isfinite(inv_freq[i]))
        return make_status(ErrorCode::kInvalidArgument, "inv_freq[" + std::to_string(i) + "]",
                           inv_freq[i], "must be finite");
    return detail::check_attention_factor("attention_factor", attention_factor);
  }

  std::int64_t pairs() const noexcept { return static_cast<std::int64_t>(inv_freq_.size()); }
  std::int64_t rotary_dim() const noexcept { return 2 * pairs(); }
  /// Channels the half-split layout spans (partner offset frequency_dim / 2); rotary_dim except
  /// for proportional RoPE.
  std::int64_t frequency_dim() const noexcept { return frequency_dim_; }
  const Eigen::ArrayXd& inv_freq() const noexcept { return inv_freq_; }
  double attention_factor() const noexcept { return attention_factor_; }

  /// Fills m*cos and m*sin of pos * inv_freq_i for every pair (scale multiplies m).
  template <typename C>
  void fill(std::int64_t pos, C* cos_out, C* sin_out, double scale = 1.0) const noexcept {
    const double m = attention_factor_ * scale;
    const double p = static_cast<double>(pos);
    const std::int64_t n = pairs();
    if (std::abs(pos) < (std::int64_t{1} << 53) && p * max_abs_ < detail::kFastAngleLimit) {
      detail::kernel_table<C>(active_kernel_path())
          .sincos_row(p, inv_freq_.data(), n, m, cos_out, sin_out);
      return;
    }
    for (std::int64_t i = 0; i < n; ++i) {
      double s, c;
      detail::sincos_position(pos, inv_freq_[i], s, c);
      cos_out[i] = static_cast<C>(m * c);
      sin_out[i] = static_cast<C>(m * s);
    }
  }

  /// Positions this source accepts: [0, max_position()).
  bool covers(std::int64_t pos) const noexcept { return pos >= 0 && pos < max_position_; }
  /// One past the largest position served: kMaxPosition (2^48), or fewer when the largest
  /// |inv_freq_i| would take the angle past 2^48 rad, where the range reduction loses accuracy.
  std::int64_t max_position() const noexcept { return max_position_; }

  /// Largest angle (radians) any pair is rotated by.
  static constexpr double kMaxAngle = 281474976710656.0;  // 2^48

 private:
  RotaryFrequencies() = default;

  void set_limits() noexcept {
    max_abs_ = inv_freq_.size() > 0 ? inv_freq_.abs().maxCoeff() : 0.0;
    const double by_angle = max_abs_ > 0.0 ? std::floor(kMaxAngle / max_abs_) : kMaxAngle;
    max_position_ = by_angle >= static_cast<double>(kMaxPosition)
                        ? kMaxPosition
                        : static_cast<std::int64_t>(by_angle);
  }

  Eigen::ArrayXd inv_freq_;
  double attention_factor_ = 1.0;
  double max_abs_ = 0.0;  // largest |inv_freq_i|: decides the fast range reduction per token
  std::int64_t frequency_dim_ = 0;
  std::int64_t max_position_ = kMaxPosition;
};

/// Precomputed m*cos and m*sin for positions [0, num_positions): row p holds rotary_dim/2 values.
/// Scalar float (RotaryCache) suits float/half/bfloat16 data; double (RotaryCacheD) double data.
/// Every row starts on a 64-byte boundary (rows are padded to whole cache lines), so the kernels
/// read it in whole lines.
template <typename Scalar>
class BasicRotaryCache {
  static_assert(std::is_same<Scalar, float>::value || std::is_same<Scalar, double>::value,
                "cache scalar must be float or double");

 public:
  using scalar_type = Scalar;
  /// Most cos (and sin) values one cache holds: 2^31, 8 GiB each in float. Longer contexts use
  /// RotaryFrequencies, which needs no table.
  static constexpr std::int64_t kMaxCacheEntries = std::int64_t{1} << 31;

  /// m*cos and m*sin for positions [0, num_positions) of a spec and table. An error when the
  /// table does not fit the spec, num_positions is not in (0, 2^31 / pairs], the frequencies do
  /// not cover it, or the memory cannot be allocated.
  static Result<BasicRotaryCache> make(const RopeSpec& spec, const FactorTable& table,
                                       std::int64_t num_positions) {
    Result<RotaryFrequencies> freqs = RotaryFrequencies::make(spec, table);
    if (!freqs.ok()) return freqs.status();
    return make(*freqs, num_positions);
  }
  static Result<BasicRotaryCache> make(const RotaryFrequencies& freqs, std::int64_t num_positions) {
    if (num_positions <= 0)
      return make_status(ErrorCode::kInvalidArgument, "num_positions", num_positions,
                         "must be > 0");
    const std::int64_t pairs = freqs.pairs();
    std::int64_t entries = 0;
    if (!detail::checked_mul(num_positions, pairs, &entries) || entries > kMaxCacheEntries)
      return make_status(ErrorCode::kInvalidArgument, "num_positions", num_positions,
                         "too large: num_positions * pairs (" + std::to_string(pairs) +
                             ") must be <= 2^31; use RotaryFrequencies");
    if (!freqs.covers(num_positions - 1))
      return make_status(ErrorCode::kOutOfRange, "num_positions", num_positions,
                         "must be <= the frequencies' max_position() (" +
                             std::to_string(freqs.max_position()) + ")");
    BasicRotaryCache c;
    c.pairs_ = pairs;
    c.row_stride_ = detail::aligned_row_length<Scalar>(pairs);
    c.frequency_dim_ = freqs.frequency_dim();
    c.attention_factor_ = freqs.attention_factor();
    c.num_positions_ = num_positions;
    const std::int64_t stored = num_positions * c.row_stride_;  // <= 2^31 * 16: no overflow
    bool allocated = false;
    ROPESCALE_TRY {
      c.cos_.resize(static_cast<std::size_t>(stored));
      c.sin_.resize(static_cast<std::size_t>(stored));
      allocated = true;
    }
    ROPESCALE_CATCH(const std::exception&) {}  // bad_alloc: reported below
    if (!allocated)
      return make_status(
          ErrorCode::kInvalidArgument, "num_positions", num_positions,
          "the cache's " + std::to_string(2 * entries) + " values could not be allocated");
    for (std::int64_t p = 0; p < num_positions; ++p)
      freqs.fill(p, c.cos_.data() + p * c.row_stride_, c.sin_.data() + p * c.row_stride_);
    return c;
  }

  /// make(...).value(): throw Error on bad input (abort without exceptions).
  BasicRotaryCache(const RopeSpec& spec, const FactorTable& table, std::int64_t num_positions)
      : BasicRotaryCache(make(spec, table, num_positions).value()) {}
  BasicRotaryCache(const RotaryFrequencies& freqs, std::int64_t num_positions)
      : BasicRotaryCache(make(freqs, num_positions).value()) {}

  std::int64_t num_positions() const noexcept { return num_positions_; }
  std::int64_t pairs() const noexcept { return pairs_; }
  std::int64_t rotary_dim() const noexcept { return 2 * pairs_; }
  std::int64_t frequency_dim() const noexcept { return frequency_dim_; }
  double attention_factor() const noexcept { return attention_factor_; }
  bool covers(std::int64_t pos) const noexcept { return pos >= 0 && pos < num_positions_; }

  /// m*cos / m*sin row of a position in [0, num_positions).
  const Scalar* cos_row(std::int64_t pos) const noexcept { return cos_.data() + pos * row_stride_; }
  const Scalar* sin_row(std::int64_t pos) const noexcept { return sin_.data() + pos * row_stride_; }

  template <typename C>
  void fill(std::int64_t pos, C* cos_out, C* sin_out, double scale = 1.0) const noexcept {
    const Scalar* c = cos_row(pos);
    const Scalar* s = sin_row(pos);
    for (std::int64_t i = 0; i < pairs_; ++i) {
      cos_out[i] = static_cast<C>(static_cast<double>(c[i]) * scale);
      sin_out[i] = static_cast<C>(static_cast<double>(s[i]) * scale);
    }
  }

 private:
  BasicRotaryCache() = default;

  std::int64_t pairs_ = 0;
  std::int64_t row_stride_ = 0;  // pairs_ rounded up to a whole number of cache lines
  std::int64_t frequency_dim_ = 0;
  std::int64_t num_positions_ = 0;
  double attention_factor_ = 1.0;
  std::vector<Scalar, detail::AlignedAllocator<Scalar>> cos_;
  std::vector<Scalar, detail::AlignedAllocator<Scalar>> sin_;
};

using RotaryCache = BasicRotaryCache<float>;
using RotaryCacheD = BasicRotaryCache<double>;

}  // namespace ropescale
