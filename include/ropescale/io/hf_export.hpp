// ropescale: Hugging Face config.json export (needs nlohmann/json).
//
// The inverse of io/hf_config.hpp, in its own header so that a config reader does not compile
// the search:
//
//   to_hf_config(c)                 a whole (RoPE-only) config.json; parse_hf_config of it == c
//   to_rope_scaling(c)              the `rope_scaling` block alone (null for default RoPE)
//   longrope_config_from_tables()   any FactorTable (LongRoPE2-searched or other) as a
//                                   `longrope` config Hugging Face accepts
//   longrope_config_from_search()   a search result's table, in one call (to_hf_config(result))
//   to_rope_freqs(table)            llama.cpp's per-pair `rope_freqs` divisors
//
// What can fail returns Result<T>: the Status names the argument, its value and the rule.
#pragma once

#include <Eigen/Core>
#include <cmath>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "ropescale/error.hpp"
#include "ropescale/factors.hpp"
#include "ropescale/frequencies.hpp"
#include "ropescale/io/hf_config.hpp"
#include "ropescale/search_state.hpp"

namespace ropescale {

namespace detail {

inline nlohmann::json to_json_array(const Eigen::ArrayXd& a) {
  nlohmann::json out = nlohmann::json::array();
  for (Eigen::Index i = 0; i < a.size(); ++i) out.push_back(a[i]);
  return out;
}

// The partial_rotary_factor p with int(head_dim * p) == rotary_dim, as HF truncates.
inline double partial_rotary_factor_for(std::int64_t head_dim, std::int64_t rotary_dim) {
  double p = static_cast<double>(rotary_dim) / static_cast<double>(head_dim);
  for (int k = 0;
       k < 8 && static_cast<std::int64_t>(static_cast<double>(head_dim) * p) < rotary_dim; ++k)
    p = std::nextafter(p, 2.0);
  return p;
}

}  // namespace detail

/// The `rope_scaling` block for a config (null for default RoPE). Writes `rope_type` and the
/// older `type` key, so both old and new readers accept it.
inline nlohmann::json to_rope_scaling(const RopeConfig& c) {
  using nlohmann::json;
  if (c.rope_type == RopeType::kDefault && !c.is_mrope()) return json();
  json b = json::object();
  b["rope_type"] = to_string(c.rope_type);
  b["type"] = to_string(c.rope_type);
  if (c.is_mrope()) {
    b["mrope_section"] = c.mrope_section;
    b["mrope_interleaved"] = c.mrope_interleaved;
  }
  switch (c.rope_type) {
    case RopeType::kDefault:
      break;
    case RopeType::kProportional:
      if (c.factor != 1.0) b["factor"] = c.factor;
      break;
    case RopeType::kLinear:
    case RopeType::kDynamic:
      b["factor"] = c.factor;
      if (c.ntk_alpha != 0.0) b["alpha"] = c.ntk_alpha;
      break;
    case RopeType::kYarn:
      b["factor"] = c.yarn.factor;
      b["beta_fast"] = c.yarn.beta_fast;
      b["beta_slow"] = c.yarn.beta_slow;
      if (c.yarn.mscale != 0.0) b["mscale"] = c.yarn.mscale;
      if (c.yarn.mscale_all_dim != 0.0) b["mscale_all_dim"] = c.yarn.mscale_all_dim;
      if (!c.yarn.truncate) b["truncate"] = false;
      if (c.yarn.attention_factor) b["attention_factor"] = *c.yarn.attention_factor;
      if (c.yarn.original_max_position != 0 &&
          c.yarn.original_max_position != c.max_position_embeddings)
        b["original_max_position_embeddings"] = c.yarn.original_max_position;
      break;
    case RopeType::kLlama3:
      b["factor"] = c.llama3.factor;
      b["low_freq_factor"] = c.llama3.low_freq_factor;
      b["high_freq_factor"] = c.llama3.high_freq_factor;
      b["original_max_position_embeddings"] = c.llama3.original_max_position;
      break;
    case RopeType::kLongRope:
      b["short_factor"] = detail::to_json_array(c.longrope.short_factor);
      b["long_factor"] = detail::to_json_array(c.longrope.long_factor);
      if (c.longrope.attention_factor) b["attention_factor"] = *c.longrope.attention_factor;
      if (c.longrope.short_mscale) b["short_mscale"] = *c.longrope.short_mscale;
      if (c.longrope.long_mscale) b["long_mscale"] = *c.longrope.long_mscale;
      if (c.spec.original_max_position == c.max_position_embeddings)
        b["factor"] = c.longrope.factor;  // no original window: s comes from the block
      break;
  }
  return b;
}

/// A whole (RoPE-only) config.json: head_dim, partial_rotary_factor, rope_theta,
/// max_position_embeddings, original_max_position_embeddings where it matters, rope_scaling.
/// An error when the config cannot be written faithfully (an invalid spec, a LongRoPE factor that
/// is not max_position_embeddings / original_max_position_embeddings).
inline Result<nlohmann::json> to_hf_config(const RopeConfig& c) {
  using nlohmann::json;
  ROPESCALE_RETURN_IF_ERROR(validate(c.spec));
  json j = json::object();
  // HF reads `alpha` only in HunYuan's rotary embedding, and ERNIE's 3D M-RoPE layout comes from
  // its model class: name the family that gives them meaning.
  if (c.ntk_alpha != 0.0) j["model_type"] = "hunyuan_v1_dense";
  if (c.mrope_layout == MropeLayout::kErnie3d) j["model_type"] = "ernie4_5_vl_moe_text";
  j["head_dim"] = c.spec.head_dim;
  if (c.interleaved_pairs) j["rope_interleave"] = true;
  if (c.spec.rotary_dim != c.spec.head_dim)
    j["partial_rotary_factor"] =
        detail::partial_rotary_factor_for(c.spec.head_dim, c.spec.rotary_dim);
  j["rope_theta"] = c.spec.rope_theta;
  j["max_position_embeddings"] = c.max_position_embeddings;
  const std::int64_t window = c.spec.original_max_position;
  switch (c.rope_type) {
    case RopeType::kDefault:
    case RopeType::kLinear:
    case RopeType::kProportional:
      if (window != c.max_position_embeddings) j["original_max_position_embeddings"] = window;
      break;
    case RopeType::kLongRope:
      if (window != c.max_position_embeddings) {
        const double s =
            static_cast<double>(c.max_position_embeddings) / static_cast<double>(window);
        if (s != c.longrope.factor)
          return make_status(ErrorCode::kInvalidArgument, "longrope.factor", c.longrope.factor,
                             "must equal max_position_embeddings / "
                             "original_max_position_embeddings (" +
                                 detail::format_value(s) + ") for Hugging Face");
        j["original_max_position_embeddings"] = window;
      }
      break;
    case RopeType::kDynamic:
    case RopeType::kYarn:
    case RopeType::kLlama3:
      break;
  }
  const json block = to_rope_scaling(c);
  if (!block.is_null()) j["rope_scaling"] = block;
  return j;
}

/// A LongRoPE config that reproduces arbitrary tables in Hugging Face: `long_table` for
/// sequences longer than spec.original_max_position, `short_table` (identity if null) otherwise.
/// HF applies one attention factor to both sets, so both tables must share it; it is written as
/// an explicit attention_factor. Use it to ship a LongRoPE2-searched or any other table.
inline Result<RopeConfig> longrope_config_from_tables(const RopeSpec& spec,
                                                      std::int64_t max_position_embeddings,
                                                      const FactorTable& long_table,
                                                      const FactorTable* short_table = nullptr) {
  ROPESCALE_RETURN_IF_ERROR(long_table.validate_for(spec));  // validates spec too
  if (max_position_embeddings < spec.original_max_position)
    return make_status(ErrorCode::kInvalidArgument, "max_position_embeddings",
                       max_position_embeddings,
                       "must be >= spec.original_max_position (" +
                           std::to_string(spec.original_max_position) + ")");
  RopeConfig c;
  c.rope_type = RopeType::kLongRope;
  c.spec = spec;
  c.max_position_embeddings = max_position_embeddings;
  c.longrope.long_factor = long_table.factors();
  if (short_table != nullptr) {
    ROPESCALE_RETURN_IF_ERROR(short_table->validate_for(spec));
    if (short_table->attention_factor() != long_table.attention_factor())
      return make_status(ErrorCode::kInvalidArgument, "short_table.attention_factor",
                         short_table->attention_factor(),
                         "must equal long_table.attention_factor (" +
                             detail::format_value(long_table.attention_factor()) +
                             "): Hugging Face applies one attention factor to both sets");
    c.longrope.short_factor = short_table->factors();
  } else {
    c.longrope.short_factor = Eigen::ArrayXd::Ones(static_cast<Eigen::Index>(spec.pairs()));
  }
  c.longrope.factor = static_cast<double>(max_position_embeddings) /
                      static_cast<double>(spec.original_max_position);
  c.longrope.attention_factor = long_table.attention_factor();
  return c;
}

/// The LongRoPE config that ships a search's table: long factors = result.table (for sequences
/// longer than the spec's original_max_position), short factors = 1, max_position_embeddings =
/// the search's target length. Everything comes from the result itself.
inline Result<RopeConfig> longrope_config_from_search(const SearchResult& result) {
  return longrope_config_from_tables(result.spec, result.target_length, result.table);
}

/// A search result as a Hugging Face config.json (see longrope_config_from_search): one call.
inline Result<nlohmann::json> to_hf_config(const SearchResult& result) {
  Result<RopeConfig> c = longrope_config_from_search(result);
  if (!c.ok()) return c.status();
  return to_hf_config(*c);
}

/// llama.cpp's `rope_freqs`: one float32 divisor of the angle per rotary pair (lambda_i).
/// The attention factor is not part of it (llama.cpp's rope.scaling.attn_factor carries it).
inline std::vector<float> to_rope_freqs(const FactorTable& table) {
  std::vector<float> out(static_cast<std::size_t>(table.pairs()));
  for (Eigen::Index i = 0; i < table.factors().size(); ++i)
    out[static_cast<std::size_t>(i)] = static_cast<float>(table.factors()[i]);
  return out;
}

/// The same list as JSON numbers (double precision, lambda_i per pair).
inline nlohmann::json to_rope_freqs_json(const FactorTable& table) {
  return detail::to_json_array(table.factors());
}

}  // namespace ropescale
