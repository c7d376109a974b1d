// ropescale: rotary position embedding with rescaled frequencies, applied inside a host's
// attention code.
//
// ## What rotates
//
//   x: [tokens, heads, head_dim], element (t, h, j) at data[t*token_stride + h*head_stride + j]
//      [T,H,D] contiguous: token_stride = H*D, head_stride = D
//      [H,T,D] contiguous: token_stride = D,   head_stride = T*D
//      fused QKV [T, Hq+2Hk, D]: q at data, k at data + Hq*D, both token_stride = (Hq+2Hk)*D
//
//   Channels [0, rotary_dim) of every head rotate in rotary_dim/2 pairs; channels
//   [rotary_dim, head_dim) pass through untouched (partial rotary, e.g. Phi-4-mini 96 of 128).
//
//   PairLayout::kHalfSplit   pair i = channels (i, i + rotary_dim/2)  Llama, Hugging Face, NeoX
//       | x0 x1 x2 x3 | y0 y1 y2 y3 | pass-through |     (x_i, y_i) rotate together
//   PairLayout::kInterleaved pair i = channels (2i, 2i + 1)           GPT-J, llama2.c, ggml NORMAL
//       | x0 y0 x1 y1 x2 y2 x3 y3 | pass-through |
//
//   Proportional RoPE (Gemma 4; RopeSpec::freq_dim = head_dim > rotary_dim): the half-split
//   partner of channel i is i + freq_dim/2, as Hugging Face's rotate_half over the whole head:
//       | x0 x1 | pass-through | y0 y1 | pass-through |     (freq_dim = head_dim)
//   Interleaved pairs are unchanged ((2i, 2i + 1), i < rotary_dim/2). The pass-through channels
//   are HF's zero-frequency pairs (cos 1, sin 0) and are left bit for bit untouched.
//
// ## The angle and the attention factor
//
//   angle(t, i) = positions[t] * inv_freq_i,   inv_freq_i = rope_theta^(-2i/rotary_dim) / lambda_i
//   (rope_theta^(-2i/freq_dim) for proportional RoPE, see frequencies.hpp)
//   forward:  x' = m * ( x cos(angle) - y sin(angle) ),  y' = m * ( y cos(angle) + x sin(angle) )
//
// where lambda_i and m (the attention factor, "mscale") come from a FactorTable. m multiplies
// both cos and sin, as Hugging Face's attention_scaling does. RotaryDirection::kInverse undoes the
// forward rotation (angle -> -angle, m -> 1/m); kBackward is its transpose, the gradient of the
// forward pass (angle -> -angle, m kept).
//
// ## Angle sources
//
//   RotaryCache         cos/sin precomputed for positions [0, num_positions), float storage.
//   RotaryFrequencies   cos/sin computed per token on the fly, for positions in [0, 2^48)
//                       whose angle pos * max|inv_freq_i| stays below 2^48 rad (max_position()).
//
// Both compute the angle in double with an exact Cody-Waite range reduction, so float outputs
// stay within 2e-6 of a long double reference at every position up to 2^21 and beyond; the
// float32 `pos * inv_freq` most engines use is off by ~0.1 at 2^21.
//
// ## Front door and kernel
//
// The rotation verbs take the direction as their last parameter:
//
//   rotate(angles, positions, x, layout, dir)            x in place
//   rotate(angles, positions, q, k, layout, dir)         q and k in place, one pass (GQA allowed)
//   rotate(angles, positions, q, &k, layout, pfor, dir)  the same split by the host's threads
//   rotate_out(angles, positions, in, out, layout, dir)  out = R(in) (and the q/k pair form)
//
// plus rotate_mrope (mrope.hpp) and rotate_and_append_kv (kv_cache.hpp). Each validates every
// argument and returns a Status naming the argument, the value and the rule; nothing is written
// when validation fails. The unchecked kernels live in ropescale/detail/.
//
// ## The backward pass
//
// Forward RoPE is y = m R(theta) x per pair, so dL/dx = m R(theta)^T dL/dy = m R(-theta) dL/dy:
// the upstream gradient rotated by the inverse angle and scaled by the attention factor m (not
// 1/m as the inverse would be). That is rotate(..., RotaryDirection::kBackward) on the gradient,
// with the forward call's angles, positions and layout; pass-through channels keep their gradient.
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

#define ROPESCALE_INSIDE_PUBLIC_HEADER
#include "ropescale/detail/aligned.hpp"
#include "ropescale/detail/call/range_claims.hpp"
#include "ropescale/detail/checked_math.hpp"
#include "ropescale/detail/kernels/angle.hpp"
#include "ropescale/detail/kernels/rotary_kernels.hpp"
#undef ROPESCALE_INSIDE_PUBLIC_HEADER

namespace ropescale {

/// Which channels form a rotating pair (see the drawing at the top of this header).
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
      detail::select_sincos_row<C>(active_kernel_path())(p, inv_freq_.data(), n, m, cos_out,
                                                         sin_out);
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

#define ROPESCALE_INSIDE_PUBLIC_HEADER
#include "ropescale/detail/call/rotary_call.hpp"
#undef ROPESCALE_INSIDE_PUBLIC_HEADER

namespace ropescale {

// ---------------------------------------------------------------------------------------------
// Checked entry points. `Angles` is RotaryCache, RotaryCacheD or RotaryFrequencies.
// positions: one int64 per token, >= 0 (and < num_positions for a cache).
// ---------------------------------------------------------------------------------------------

/// Rotates x in place (direction kForward applies RoPE, kInverse undoes it, kBackward turns
/// dL/d(rotated x) into dL/dx; see the top of this header).
template <typename T, typename Angles>
inline Status rotate(const Angles& angles, const std::int64_t* positions, const HeadsView<T>& x,
                     PairLayout layout, RotaryDirection direction = RotaryDirection::kForward) {
  const HeadsView<const T> in = x.as_const();
  const char* names[] = {"x"};
  return detail::rotary_call<T>(angles, positions, &in, &x, 1, names, names, layout, direction);
}

/// Rotates queries and keys in place in one pass over the tokens; q and k may have different
/// head counts (GQA/MQA) and strides but share tokens and positions.
template <typename T, typename Angles>
inline Status rotate(const Angles& angles, const std::int64_t* positions, const HeadsView<T>& q,
                     const HeadsView<T>& k, PairLayout layout,
                     RotaryDirection direction = RotaryDirection::kForward) {
  const HeadsView<const T> in[2] = {q.as_const(), k.as_const()};
  const HeadsView<T> out[2] = {q, k};
  const char* names[] = {"q", "k"};
  return detail::rotary_call<T>(angles, positions, in, out, 2, names, names, layout, direction);
}

/// Out of place: out = R(in). Pass-through channels are copied. in and out must not overlap
/// (the identical view is accepted and means in place).
template <typename T, typename Angles>
inline Status rotate_out(const Angles& angles, const std::int64_t* positions,
                         const HeadsView<const T>& in, const HeadsView<T>& out, PairLayout layout,
                         RotaryDirection direction = RotaryDirection::kForward) {
  const char* ni[] = {"in"};
  const char* no[] = {"out"};
  return detail::rotary_call<T>(angles, positions, &in, &out, 1, ni, no, layout, direction);
}

/// Out of place for queries and keys together.
template <typename T, typename Angles>
inline Status rotate_out(const Angles& angles, const std::int64_t* positions,
                         const HeadsView<const T>& q_in, const HeadsView<T>& q_out,
                         const HeadsView<const T>& k_in, const HeadsView<T>& k_out,
                         PairLayout layout, RotaryDirection direction = RotaryDirection::kForward) {
  const HeadsView<const T> in[2] = {q_in, k_in};
  const HeadsView<T> out[2] = {q_out, k_out};
  const char* ni[] = {"q_in", "k_in"};
  const char* no[] = {"q_out", "k_out"};
  return detail::rotary_call<T>(angles, positions, in, out, 2, ni, no, layout, direction);
}

// ---------------------------------------------------------------------------------------------
// Threads the host owns. A RotaryPlan runs every check of a call once; run(begin, end) then
// rotates tokens [begin, end) and may be called from several threads at once for disjoint
// ranges. Each token's result depends only on that token and the plan fixes the kernel path, so
// any split gives the same bits as one call. The plan keeps pointers to the angle source, the
// positions and the views' data: they must outlive it.
// ---------------------------------------------------------------------------------------------

template <typename T, typename Angles>
class RotaryPlan {
 public:
  RotaryPlan() = default;

  /// q (and k, when not null) in place, as rotate(angles, positions, q[, k], ...).
  static Result<RotaryPlan> make(const Angles& angles, const std::int64_t* positions,
                                 const HeadsView<T>& q, const HeadsView<T>* k, PairLayout layout,
                                 RotaryDirection direction = RotaryDirection::kForward) {
    const int n = k == nullptr ? 1 : 2;
    const HeadsView<const T> in[2] = {q.as_const(), k ? k->as_const() : q.as_const()};
    const HeadsView<T> outs[2] = {q, k ? *k : q};
    const char* names1[] = {"x"};
    const char* names2[] = {"q", "k"};
    const char* const* names = n == 1 ? names1 : names2;
    RotaryPlan plan;
    ROPESCALE_RETURN_IF_ERROR((detail::prepare_rotary_call<T>(angles, in, outs, n, names, names,
                                                              layout, direction, plan.ops_)));
    ROPESCALE_RETURN_IF_ERROR(detail::check_positions(angles, positions, q.tokens));
    plan.angles_ = &angles;
    plan.positions_ = positions;
    plan.tokens_ = q.tokens;
    plan.n_ops_ = n;
    plan.layout_ = layout;
    plan.direction_ = direction;
    plan.path_ = active_kernel_path();
    return plan;
  }

  std::int64_t tokens() const noexcept { return tokens_; }
  KernelPath path() const noexcept { return path_; }

  /// Rotates tokens [begin, end); 0 <= begin <= end <= tokens(). Safe to call concurrently for
  /// disjoint ranges.
  Status run(std::int64_t begin, std::int64_t end) const {
    if (angles_ == nullptr && tokens_ > 0)
      return make_status(ErrorCode::kInvalidArgument, "plan", "empty",
                         "was not made by RotaryPlan::make");
    if (begin < 0 || begin > end || end > tokens_)
      return make_status(
          ErrorCode::kInvalidArgument, "range",
          "[" + std::to_string(begin) + ", " + std::to_string(end) + ")",
          "must satisfy 0 <= begin <= end <= tokens (" + std::to_string(tokens_) + ")");
    if (begin < end)
      detail::run_rotary<T>(*angles_, positions_, begin, end, ops_, n_ops_, layout_, direction_,
                            path_);
    return Status();
  }

 private:
  const Angles* angles_ = nullptr;
  const std::int64_t* positions_ = nullptr;
  std::int64_t tokens_ = 0;
  detail::Operand<T> ops_[2];
  int n_ops_ = 0;
  PairLayout layout_ = PairLayout::kHalfSplit;
  RotaryDirection direction_ = RotaryDirection::kForward;
  KernelPath path_ = KernelPath::kPortable;
};

/// The host's parallel-for: calls body(begin, end) over ranges that cover [0, n) exactly once,
/// from any threads, and returns when all have run. A plain loop is a valid one. One that breaks
/// this is reported (the parallel rotate's parallel_for error); no token is rotated twice
/// and no two threads write one token, but the tokens of the ranges that did run stay rotated.
using ParallelFor = std::function<void(
    std::int64_t n, const std::function<void(std::int64_t begin, std::int64_t end)>& body)>;

/// rotate(angles, positions, q, *k, ...) (k null: q alone; k is not used to deduce T, so nullptr
/// works) with the tokens split by the host's parallel-for; checks run once, before any thread
/// starts. Same bits as the one-thread call.
template <typename T, typename Angles>
inline Status rotate(const Angles& angles, const std::int64_t* positions, const HeadsView<T>& q,
                     const std::common_type_t<HeadsView<T>>* k, PairLayout layout,
                     const ParallelFor& parallel_for,
                     RotaryDirection direction = RotaryDirection::kForward) {
  if (!parallel_for)
    return make_status(ErrorCode::kInvalidArgument, "parallel_for", "empty", "must be a callable");
  Result<RotaryPlan<T, Angles>> made =
      RotaryPlan<T, Angles>::make(angles, positions, q, k, layout, direction);
  if (!made.ok()) return made.status();
  const RotaryPlan<T, Angles>& plan = *made;
  // A broken parallel-for is refused without rotating any token twice: each range claims its
  // tokens before it runs (detail/call/range_claims.hpp), a range that steps outside [0, tokens) or
  // overlaps one claimed earlier (run twice, or two threads on overlapping ranges) does not run,
  // and tokens no range claimed are reported once the parallel-for returns.
  detail::RangeClaims claims(plan.tokens());
  std::atomic<bool> outside{false};
  std::atomic<std::int64_t> rotated{0};
  parallel_for(plan.tokens(), [&](std::int64_t begin, std::int64_t end) {
    if (begin < 0 || begin > end || end > plan.tokens()) {
      outside.store(true, std::memory_order_relaxed);
      return;
    }
    if (!claims.claim(begin, end)) return;
    if (plan.run(begin, end).ok()) rotated.fetch_add(end - begin, std::memory_order_relaxed);
  });
  const std::int64_t twice = claims.first_twice(), missing = claims.first_unclaimed();
  if (outside.load() || twice >= 0 || missing >= 0 || rotated.load() != plan.tokens()) {
    std::string what =
        std::to_string(rotated.load()) + " of " + std::to_string(plan.tokens()) + " tokens rotated";
    if (outside.load()) what += ", a range outside them";
    if (twice >= 0) what += ", token " + std::to_string(twice) + " handed out twice";
    if (missing >= 0) what += ", token " + std::to_string(missing) + " never handed out";
    return make_status(ErrorCode::kInvalidArgument, "parallel_for", what,
                       "must call body over ranges that cover [0, n) exactly once (a range "
                       "overlapping an earlier one is not run; the views hold a partial result)");
  }
  return Status();
}
}  // namespace ropescale
