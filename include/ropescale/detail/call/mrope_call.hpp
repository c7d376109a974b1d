// ropescale internal: the call path of mrope.hpp's rotations: the angle row of a token from its N
// position ids (MropeRows) and the validated call (mrope_call) on rotary_call.hpp's checks and
// row runner. Not a public header.
#pragma once

#include "ropescale/detail/internal_header_check.hpp"

#include <cstdint>
#include <string>
#include <vector>

#include "ropescale/detail/call/rotary_call.hpp"
#include "ropescale/error.hpp"
#include "ropescale/kernel_path.hpp"
#include "ropescale/mrope_layout.hpp"
#include "ropescale/rotary_types.hpp"

namespace ropescale {

namespace detail {

// The angle row of token t for M-RoPE: plain when every axis id is equal, else pair by pair from
// the N axis rows.
template <typename Angles, typename C>
struct MropeRows {
  const Angles& angles;
  const std::int64_t* positions;  // num_axes x tokens
  std::int64_t tokens;
  int num_axes;
  const std::uint8_t* axes;
  C* scratch;  // 2 * num_axes * pairs
  bool operator()(std::int64_t t, C* cbuf, C* sbuf, double scale, bool direct_ok, const C** c,
                  const C** s) const noexcept {
    bool same = true;
    for (int a = 1; a < num_axes; ++a) same = same && positions[a * tokens + t] == positions[t];
    if (same) {
      const PlainRows<Angles, C> plain{angles, positions};
      return plain(t, cbuf, sbuf, scale, direct_ok, c, s);
    }
    const std::int64_t half = angles.pairs();
    for (int a = 0; a < num_axes; ++a)
      angles.fill(positions[a * tokens + t], scratch + 2 * a * half, scratch + (2 * a + 1) * half,
                  scale);
    for (std::int64_t i = 0; i < half; ++i) {
      const std::int64_t a = axes[i];
      cbuf[i] = scratch[2 * a * half + i];
      sbuf[i] = scratch[(2 * a + 1) * half + i];
    }
    *c = cbuf;
    *s = sbuf;
    return false;
  }
};

template <typename T, typename Angles>
inline Status mrope_call(const Angles& angles, const MropeSections& sections,
                         const std::int64_t* positions, const HeadsView<const T>* ins,
                         const HeadsView<T>* outs, int n, const char* const* names_in,
                         const char* const* names_out, PairLayout layout,
                         RotaryDirection direction) {
  Operand<T> ops[2];
  ROPESCALE_RETURN_IF_ERROR(
      prepare_rotary_call<T>(angles, ins, outs, n, names_in, names_out, layout, direction, ops));
  if (sections.pairs() != angles.pairs())
    return make_status(
        ErrorCode::kInvalidArgument, "sections.pairs()", sections.pairs(),
        "must equal the angle source's pairs (" + std::to_string(angles.pairs()) + ")");
  const std::int64_t tokens = n > 0 ? ins[0].tokens : 0;
  const int num_axes = static_cast<int>(sections.num_axes());
  static const char* const kAxis[3] = {"temporal", "height", "width"};
  for (int a = 0; a < num_axes && tokens > 0; ++a) {
    const Status st =
        check_positions(angles, positions == nullptr ? nullptr : positions + a * tokens, tokens);
    if (!st.ok())
      return st.with_context("row " + std::to_string(a) +
                             (num_axes == 3 ? std::string(", ") + kAxis[a] : std::string()) +
                             ", of the " + std::to_string(num_axes) + " x tokens positions");
  }
  using C = compute_t<T>;
  const std::int64_t half = angles.pairs();
  std::vector<C> buf(static_cast<std::size_t>(row_buffer_size(half) + 2 * num_axes * half));
  const MropeRows<Angles, C> rows{angles,
                                  positions,
                                  tokens,
                                  num_axes,
                                  sections.axes().data(),
                                  buf.data() + row_buffer_size(half)};
  run_rotary_rows<T>(angles, rows, 0, tokens, ops, n, layout, direction, active_kernel_path(),
                     buf.data());
  return Status();
}

}  // namespace detail

}  // namespace ropescale
