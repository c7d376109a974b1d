// ropescale: what a Hugging Face config.json describes, as io/hf_config.hpp reads it (its opening
// comment says which field each member comes from): RopeType, the import options (YarnSemantics,
// Olmo3Rope, HfImportOptions), RopeConfig (one RoPE: spec, method and method parameters),
// LayerRope, AttentionScaleTerms and ModelRope (a model's RoPE per layer).
#pragma once

#include <Eigen/Core>
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "ropescale/error.hpp"
#include "ropescale/factors.hpp"
#include "ropescale/frequencies.hpp"
#include "ropescale/mrope_layout.hpp"
#include "ropescale/scaling.hpp"

namespace ropescale {

/// The rope types Hugging Face's ROPE_INIT_FUNCTIONS know (the config's `rope_type`).
/// kProportional is Gemma 4's `proportional` (transformers v5): see RopeSpec::freq_dim.
enum class RopeType { kDefault, kLinear, kDynamic, kYarn, kLongRope, kLlama3, kProportional };

/// The config spelling: "default", "linear", "dynamic", "yarn", "longrope", "llama3".
inline const char* to_string(RopeType t) noexcept {
  switch (t) {
    case RopeType::kDefault:
      return "default";
    case RopeType::kLinear:
      return "linear";
    case RopeType::kDynamic:
      return "dynamic";
    case RopeType::kYarn:
      return "yarn";
    case RopeType::kLongRope:
      return "longrope";
    case RopeType::kLlama3:
      return "llama3";
    case RopeType::kProportional:
      return "proportional";
  }
  return "unknown";
}

/// Which transformers YaRN to reproduce. They differ only when the block has
/// `original_max_position_embeddings` (and in the mscale / truncate keys, which the legacy code
/// does not read).
enum class YarnSemantics {
  /// Current transformers: the correction range uses block.original_max_position_embeddings
  /// (else max_position_embeddings); `factor` is used as given, and derived as
  /// max_position_embeddings / original only when missing. mscale, mscale_all_dim, truncate and
  /// attention_factor are honoured.
  kCurrent,
  /// transformers 4.4x-v5-dev: as kCurrent, but whenever the block has
  /// original_max_position_embeddings the factor is replaced by max_position_embeddings / original
  /// (a config with max_position_embeddings == original then gets factor 1).
  kDerivedFactor,
  /// transformers @ ef46806: the correction range uses max_position_embeddings; the factor is
  /// the block's; attention factor 0.1 ln s + 1 unless attention_factor is given.
  kLegacy,
};

/// Which RoPE OLMo 3's sliding-window layers get (its config has `layer_types` and one YaRN
/// `rope_scaling` block).
enum class Olmo3Rope {
  /// As the model was trained and as transformers 4.57, vLLM and OLMo-core run it: sliding layers
  /// default RoPE at rope_theta, full-attention layers YaRN (Olmo3RotaryEmbedding per layer type
  /// in transformers 4.57 modeling_olmo3.py).
  kTrained,
  /// transformers v5 main: one rotary embedding for every layer, so the sliding layers get YaRN
  /// too (what HF v5 computes, not what the model was trained with).
  kTransformersV5,
};

/// Import options.
struct HfImportOptions {
  YarnSemantics yarn = YarnSemantics::kCurrent;
  Olmo3Rope olmo3 = Olmo3Rope::kTrained;
  /// Used when the config has no rope_theta (HF's config classes default to 10000 for Llama);
  /// unset means a missing rope_theta is an error.
  std::optional<double> default_rope_theta;
};

/// Largest head_dim the importer accepts; guards against absurd allocations from bad input.
inline constexpr std::int64_t kMaxConfigHeadDim = std::int64_t{1} << 16;
/// Largest num_hidden_layers the importer accepts (per-layer tables are allocated per layer).
inline constexpr std::int64_t kMaxConfigLayers = std::int64_t{1} << 20;

/// A model's RoPE as its config describes it: spec, method and method parameters.
///
/// spec.original_max_position is the method's window L (see the header comment). Only the
/// parameters of rope_type are meaningful; the others keep their defaults.
struct RopeConfig {
  RopeType rope_type = RopeType::kDefault;
  RopeSpec spec;
  std::int64_t max_position_embeddings = 0;
  double factor = 1.0;  ///< linear, dynamic and proportional: s
  /// HunYuan's `dynamic` with `alpha` (HunYuanDenseV1RotaryEmbedding): base = rope_theta *
  /// alpha^(d/(d-2)) at every length, the NTK-aware table of ntk_factors(spec, alpha); 0 = none
  /// (the generic dynamic NTK of `factor`).
  double ntk_alpha = 0.0;
  YarnParams yarn;          ///< yarn (yarn.original_max_position = the resolved window)
  Llama3Params llama3;      ///< llama3
  LongRopeParams longrope;  ///< longrope (longrope.factor = s, max_position_embeddings / L)
  /// M-RoPE (Qwen2-VL / Qwen2.5-VL / Qwen3-VL / ERNIE 4.5 VL: t, h, w; HunYuan-VL xdrope: 4
  /// axes): pairs per position axis, empty for text-only models. Build a MropeSections
  /// (ropescale/mrope.hpp) from it and spec.pairs().
  std::vector<std::int64_t> mrope_section;
  bool mrope_interleaved = false;  ///< Qwen3-VL's interleaved section layout
  /// The section layout (mrope_layout.hpp): kInterleaved iff mrope_interleaved; kErnie3d for
  /// ERNIE 4.5 VL. Build MropeSections(mrope_section, mrope_layout, spec.pairs()).
  MropeLayout mrope_layout = MropeLayout::kSectioned;
  /// How HF's modeling code pairs the checkpoint's channels: true when they rotate as
  /// (2i, 2i + 1) (PairLayout::kInterleaved): `rope_interleave: true`, or an MLA config
  /// (DeepSeek-V2/V3, Kimi-K2: their config classes default it to true) that does not say.
  /// Also true for model_type gptj, codegen (rotate_every_two), glm, glm4 (rotate_half_llm).
  /// false: rotate_half pairs (PairLayout::kHalfSplit).
  bool interleaved_pairs = false;

  /// True when positions are three ids per token (mrope_section is set).
  bool is_mrope() const noexcept { return !mrope_section.empty(); }

  /// The scale s of the method (1 for default).
  double scale() const noexcept {
    switch (rope_type) {
      case RopeType::kLinear:
      case RopeType::kDynamic:
      case RopeType::kProportional:
        return factor;
      case RopeType::kYarn:
        return yarn.factor;
      case RopeType::kLlama3:
        return llama3.factor;
      case RopeType::kLongRope:
        return longrope.factor;
      case RopeType::kDefault:
        break;
    }
    return 1.0;
  }

  /// The factor set LongRoPE uses for seq_len tokens (window.hpp's rule: long iff seq_len > L);
  /// none for methods with a single table.
  std::optional<RopeWindow> window_for(std::int64_t seq_len) const noexcept {
    if (rope_type != RopeType::kLongRope) return std::nullopt;
    return detail::rope_window(seq_len, spec.original_max_position);
  }

  /// The table Hugging Face uses for a sequence of seq_len tokens (seq_len = max position + 1;
  /// seq_len <= 0 means the init-time table: LongRoPE short factors, dynamic NTK unscaled).
  Result<FactorTable> table_for(std::int64_t seq_len = 0) const {
    switch (rope_type) {
      case RopeType::kDefault:
        return default_factors(spec);
      case RopeType::kLinear:
        return linear_factors(spec, factor);
      case RopeType::kDynamic:
        if (ntk_alpha != 0.0) return ntk_factors(spec, ntk_alpha);
        return dynamic_ntk_factors(spec, factor, max_position_embeddings, seq_len);
      case RopeType::kYarn:
        return yarn_factors(spec, yarn);
      case RopeType::kLlama3:
        return llama3_factors(spec, llama3);
      case RopeType::kLongRope:
        return longrope_factors(spec, longrope,
                                detail::rope_window(seq_len, spec.original_max_position));
      case RopeType::kProportional:
        // HF: inv_freq /= factor on the rotating pairs (the zero-frequency ones stay zero).
        return factor == 1.0 ? default_factors(spec) : linear_factors(spec, factor);
    }
    return make_status(ErrorCode::kInvalidArgument, "rope_type", static_cast<int>(rope_type),
                       "unknown");
  }

 public:
  friend bool operator==(const RopeConfig& a, const RopeConfig& b) {
    auto same_array = [](const Eigen::ArrayXd& x, const Eigen::ArrayXd& y) {
      return x.size() == y.size() && (x == y).all();
    };
    const YarnParams &ya = a.yarn, &yb = b.yarn;
    const Llama3Params &la = a.llama3, &lb = b.llama3;
    const LongRopeParams &ra = a.longrope, &rb = b.longrope;
    return a.rope_type == b.rope_type && a.spec == b.spec &&
           a.max_position_embeddings == b.max_position_embeddings && a.factor == b.factor &&
           a.ntk_alpha == b.ntk_alpha && ya.factor == yb.factor && ya.beta_fast == yb.beta_fast &&
           ya.beta_slow == yb.beta_slow && ya.mscale == yb.mscale &&
           ya.mscale_all_dim == yb.mscale_all_dim && ya.truncate == yb.truncate &&
           ya.attention_factor == yb.attention_factor &&
           ya.original_max_position == yb.original_max_position && la.factor == lb.factor &&
           la.low_freq_factor == lb.low_freq_factor && la.high_freq_factor == lb.high_freq_factor &&
           la.original_max_position == lb.original_max_position &&
           same_array(ra.short_factor, rb.short_factor) &&
           same_array(ra.long_factor, rb.long_factor) && ra.factor == rb.factor &&
           ra.attention_factor == rb.attention_factor && ra.short_mscale == rb.short_mscale &&
           ra.long_mscale == rb.long_mscale && a.mrope_section == b.mrope_section &&
           a.mrope_interleaved == b.mrope_interleaved && a.mrope_layout == b.mrope_layout &&
           a.interleaved_pairs == b.interleaved_pairs;
  }
  friend bool operator!=(const RopeConfig& a, const RopeConfig& b) { return !(a == b); }
};

/// One distinct RoPE of a model and the layer types that use it.
struct LayerRope {
  std::string layer_type;  ///< "all" for one block on every layer, else e.g. "full_attention"
  RopeConfig config;
};

/// Llama 4's attention temperature tuning (Llama4TextConfig attn_temperature_tuning, floor_scale,
/// attn_scale): on its NoPE layers HF multiplies the queries by
/// log(floor((pos + 1) / floor_scale) + 1) * attn_scale + 1 (Llama4TextAttention.forward).
struct AttnTemperatureTuning {
  bool enabled = false;
  double floor_scale = 8192.0;
  double attn_scale = 0.1;
};

/// The attention terms outside inv_freq that a model's modeling code applies beside its RoPE
/// table. Where each goes (q: the rotated queries, before q.k):
///
///   scores = (q * query_scale(layer, pos)) . k * (softmax_scale * head_dim_qk^-1/2)
///
/// softmax_scale  DeepSeek-V2/V3, Kimi-K2 (MLA with YaRN and mscale_all_dim):
///                yarn_get_mscale(factor, mscale_all_dim)^2 multiplies the softmax scale
///                (DeepseekV3Attention.__init__); 1 otherwise. The table's own attention factor
///                (cos/sin) is separate and already in FactorTable::attention_factor().
/// llama4_scaling_beta  Ministral 3 / Mistral 4 (rope_parameters.llama_4_scaling_beta):
///                every layer's queries times 1 + beta ln(1 + floor(pos / original)), original =
///                rope_parameters.original_max_position_embeddings (get_llama_4_attn_scale).
/// temperature_tuning  Llama 4: NoPE layers' queries times
///                log(floor((pos + 1) / floor_scale) + 1) * attn_scale + 1.
struct AttentionScaleTerms {
  double softmax_scale = 1.0;
  double llama4_scaling_beta = 0.0;  ///< 0: no per-position query scale
  std::int64_t llama4_scaling_original = 0;
  AttnTemperatureTuning temperature_tuning;

  /// The factor the queries of a layer (rope_layer: whether it rotates) are multiplied by at
  /// position pos (>= 0).
  Result<double> query_scale(std::int64_t pos, bool rope_layer) const {
    if (pos < 0 || pos > kMaxPosition)
      return make_status(ErrorCode::kOutOfRange, "pos", pos, "must be in [0, 2^48]");
    const double p = static_cast<double>(pos);
    double s = 1.0;
    if (llama4_scaling_beta != 0.0)
      s *= 1.0 + llama4_scaling_beta *
                     std::log(1.0 + std::floor(p / static_cast<double>(llama4_scaling_original)));
    const AttnTemperatureTuning& t = temperature_tuning;
    if (t.enabled && !rope_layer)
      s *= std::log(std::floor((p + 1.0) / t.floor_scale) + 1.0) * t.attn_scale + 1.0;
    return s;
  }
  /// True when no term changes attention (every factor is 1).
  bool identity() const noexcept {
    return softmax_scale == 1.0 && llama4_scaling_beta == 0.0 && !temperature_tuning.enabled;
  }
};

/// A model's RoPE per layer: Gemma 3 / 3n (sliding layers: default RoPE at
/// rope_local_base_freq; full layers: rope_theta and the config's scaling), Gemma 4 and any
/// transformers v5 config with `rope_parameters` keyed by layer type, layers without RoPE (NoPE:
/// Llama 4, SmolLM3, Qwen3-Next's linear-attention layers), or one block for every layer.
///
/// kinds lists each distinct layer type's RoPE once, in order of first appearance, so an engine
/// builds one cache per kind; layer_types / layer_kind say which layer uses which. A layer without
/// RoPE has layer_kind kNoRope and no kind: asking for its spec or table is an error naming it.
struct ModelRope {
  /// layer_kind of a layer whose queries and keys are not rotated (NoPE).
  static constexpr std::int64_t kNoRope = -1;

  std::vector<LayerRope> kinds;
  std::vector<std::string> layer_types;  ///< per layer, as the config lists or derives them
  std::vector<std::int64_t> layer_kind;  ///< per layer, index into kinds or kNoRope; empty: unknown
  std::string text_path;                 ///< "text_config" when the text model is nested, else ""
  /// The config field that makes layers NoPE ("no_rope_layers", "no_rope_layer_interval",
  /// "layer_types"); empty when every layer has RoPE.
  std::string nope_source;
  /// The fields config.json left out that the importer took from the model family's
  /// transformers config class, as HF does, e.g. "partial_rotary_factor = 0.5 (GlmConfig
  /// default)"; empty when the file gives every field it needs.
  std::vector<std::string> class_defaults;
  /// Llama 4: chunked attention (attention_chunk_size tokens per chunk on its RoPE layers;
  /// 0 = none).
  std::int64_t attention_chunk_size = 0;
  /// The attention terms beside the tables (softmax scale, per-position query scale, Llama 4's
  /// temperature tuning); see AttentionScaleTerms for where each goes.
  AttentionScaleTerms scales;

  /// The factor layer l's queries are multiplied by at position pos (AttentionScaleTerms).
  Result<double> query_scale(std::int64_t l, std::int64_t pos) const {
    if (l < 0 || (!layer_kind.empty() && l >= num_layers()))
      return make_status(ErrorCode::kOutOfRange, "layer", l,
                         "must be in [0, " + std::to_string(num_layers()) + ")");
    return scales.query_scale(pos, has_rope(l));
  }

  /// True when every layer uses one RoPE (one kind and no NoPE layer).
  bool uniform() const noexcept { return kinds.size() == 1 && nope_layers().empty(); }
  /// Number of layers the config declares (0 when it does not say and the RoPE is uniform).
  std::int64_t num_layers() const noexcept { return static_cast<std::int64_t>(layer_kind.size()); }
  /// True when layer l rotates its queries and keys (false for NoPE layers and out-of-range l).
  bool has_rope(std::int64_t l) const noexcept {
    if (l < 0 || (!layer_kind.empty() && l >= num_layers())) return false;
    return layer_kind.empty() || layer_kind[static_cast<std::size_t>(l)] != kNoRope;
  }
  /// The layers without RoPE, ascending.
  std::vector<std::int64_t> nope_layers() const {
    std::vector<std::int64_t> out;
    for (std::size_t l = 0; l < layer_kind.size(); ++l)
      if (layer_kind[l] == kNoRope) out.push_back(static_cast<std::int64_t>(l));
    return out;
  }

  /// The RoPE of layer l (points into kinds; valid while this ModelRope lives). A NoPE layer is
  /// kInvalidArgument naming it.
  Result<const RopeConfig*> layer(std::int64_t l) const {
    if (kinds.empty())
      return make_status(ErrorCode::kInvalidArgument, "kinds.size()", 0, "must be > 0");
    if (l < 0 || (!layer_kind.empty() && l >= num_layers()))
      return make_status(ErrorCode::kOutOfRange, "layer", l,
                         "must be in [0, " + std::to_string(num_layers()) + ")");
    const std::int64_t k = layer_kind.empty() ? 0 : layer_kind[static_cast<std::size_t>(l)];
    if (k == kNoRope)
      return make_status(ErrorCode::kInvalidArgument, "layer", l,
                         "has no RoPE (NoPE, from " + text_path + (text_path.empty() ? "" : ".") +
                             nope_source +
                             "): its queries and keys are not rotated; there is no spec, table "
                             "or kernel call for it");
    return &kinds[static_cast<std::size_t>(k)].config;
  }
  /// The table of layer l for seq_len tokens (as RopeConfig::table_for).
  Result<FactorTable> table_for_layer(std::int64_t l, std::int64_t seq_len = 0) const {
    Result<const RopeConfig*> c = layer(l);
    if (!c.ok()) return c.status();
    return (*c)->table_for(seq_len);
  }
};

}  // namespace ropescale
