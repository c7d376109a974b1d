// ropescale: Hugging Face config.json import and export (needs nlohmann/json).
//
// A model's RoPE lives in its config.json:
//
//   {"head_dim": 128, "rope_theta": 500000.0, "max_position_embeddings": 131072,
//    "rope_scaling": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
//                     "high_freq_factor": 4.0, "original_max_position_embeddings": 8192}}
//
// Four entry points, each returning Result<T> (a value, or a Status naming the field):
//
//   parse_hf_config(json or text, options) -> RopeConfig   one RoPE for every layer
//   load_hf_config(path, options)          -> RopeConfig
//   parse_hf_model(json or text, options)  -> ModelRope    one RoPE per layer type (Gemma 3,
//   load_hf_model(path, options)           -> ModelRope    per-layer rope_parameters, NoPE layers)
//
// A RopeConfig holds the RopeSpec, the method and its parameters; RopeConfig::table_for(seq_len)
// gives the exact FactorTable Hugging Face transformers uses for a sequence of seq_len tokens
// (for LongRoPE: the long factors iff seq_len > original_max_position_embeddings). Writing a
// config back (to_hf_config, to_rope_scaling, longrope_config_from_tables, to_rope_freqs) is in
// io/hf_export.hpp.
//
// What is read, and from where (HF's rules; "block" = `rope_parameters` if present, else
// `rope_scaling`):
//   text model           `text_config` when it holds the text model (Gemma 3, Qwen3-VL), else
//                        the top level. model_type selects HF's config-class defaults where the
//                        published config relies on them (detail::class_default_table, each row
//                        citing its class: gemma3_text head_dim 256 and rope_theta 1e6; qwen3
//                        head_dim 128; glm / glm4 / glm4_moe partial_rotary_factor 0.5; ...);
//                        ModelRope::class_defaults lists the ones a config used.
//   rope type            block.rope_type, else block.type; "su" is LongRoPE's old name;
//                        "mrope" (Qwen2-VL) is default RoPE plus mrope_section. No block, or a
//                        null one: default RoPE. "proportional": Gemma 4 (RopeSpec::freq_dim).
//   rope_theta           block.rope_theta (transformers v5), else top level, else GPT-NeoX's
//                        rotary_emb_base.
//   head_dim             MLA (qk_rope_head_dim present: DeepSeek-V2/V3/R1, Kimi-K2, MiniCPM3):
//                        qk_rope_head_dim, as HF's config classes set it; else top-level
//                        head_dim, else hidden_size / num_attention_heads. Configs that name the
//                        width otherwise (ChatGLM kv_channels; n_embd / n_head) are refused with
//                        the fields seen.
//   rotary_dim           int(head_dim * partial_rotary_factor) (top level, which v5 copies over
//                        the block's, else block, else GPT-NeoX rotary_pct, else 1); GPT-J's
//                        rotary_dim when given instead. proportional: 2 int(p head_dim // 2).
//   window L             linear/default: top-level original_max_position_embeddings, else
//                        max_position_embeddings. dynamic: max_position_embeddings (HF ignores the
//                        original). yarn: see YarnSemantics. llama3, longrope: top level (v5
//                        standardize_rope_params puts it over the block's), else block, else
//                        max_position_embeddings. A v5 per-layer-type block uses its own window.
//   M-RoPE               block.mrope_section (pair counts per axis summing to rotary_dim / 2; 3,
//                        or up to 4 sectioned: HunYuan-VL's xdrope_section, its older name) and
//                        block.mrope_interleaved (default: true for qwen3_vl*, else false);
//                        ernie4_5_vl*: ERNIE's 3D layout (MropeLayout::kErnie3d).
//   per layer            parse_hf_model / load_hf_model: `layer_types` (or Gemma 3's
//                        sliding_window_pattern) with v5 `rope_parameters` keyed by layer type,
//                        Gemma 3 / 3n's rope_local_base_freq for their sliding layers, OLMo 3's
//                        sliding layers (Olmo3Rope). Layers without RoPE (ModelRope::kNoRope):
//                        no_rope_layers (1 = RoPE, Llama 4 / SmolLM3), no_rope_layer_interval,
//                        layer_types entries linear_attention / conv / mamba; Cohere2 is refused.
//   HunYuan alpha        hunyuan_*: `dynamic` with a truthy alpha is base rope_theta *
//                        alpha^(d/(d-2)) at every length (RopeConfig::ntk_alpha).
//   scale terms          ModelRope::scales: MLA softmax scale, llama_4_scaling_beta, Llama 4's
//                        attn_temperature_tuning (AttentionScaleTerms says where each goes).
//
// Every error names the field by its JSON path (Status::argument()), its value and the rule, e.g.
//   ropescale: invalid_argument: rope_scaling.long_factor.size() = 47: must equal rotary_dim / 2 =
//   48
// and no value is returned on error.
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

#define ROPESCALE_INSIDE_PUBLIC_HEADER
#include "ropescale/detail/file_io.hpp"
#undef ROPESCALE_INSIDE_PUBLIC_HEADER

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

  /// The factor set LongRoPE uses for seq_len tokens (rope_window: long iff seq_len > L); none
  /// for methods with a single table.
  std::optional<RopeWindow> window_for(std::int64_t seq_len) const noexcept {
    if (rope_type != RopeType::kLongRope) return std::nullopt;
    return rope_window(seq_len, spec.original_max_position);
  }

  /// The table Hugging Face uses for a sequence of seq_len tokens (seq_len = max position + 1;
  /// seq_len <= 0 means the init-time table: LongRoPE short factors, dynamic NTK unscaled).
  Result<FactorTable> table_for(std::int64_t seq_len = 0) const {
    FactorTable t;
    const Status st = build_table(seq_len, &t);
    if (!st.ok()) return st;
    return t;
  }

 private:
  Status build_table(std::int64_t seq_len, FactorTable* out) const {
    switch (rope_type) {
      case RopeType::kDefault:
        return detail::move_into(default_factors(spec), out);
      case RopeType::kLinear:
        return detail::move_into(linear_factors(spec, factor), out);
      case RopeType::kDynamic:
        if (ntk_alpha != 0.0) return detail::move_into(ntk_factors(spec, ntk_alpha), out);
        return detail::move_into(
            dynamic_ntk_factors(spec, factor, max_position_embeddings, seq_len), out);
      case RopeType::kYarn:
        return detail::move_into(yarn_factors(spec, yarn), out);
      case RopeType::kLlama3:
        return detail::move_into(llama3_factors(spec, llama3), out);
      case RopeType::kLongRope:
        return detail::move_into(
            longrope_factors(spec, longrope, rope_window(seq_len, spec.original_max_position)),
            out);
      case RopeType::kProportional:
        // HF: inv_freq /= factor on the rotating pairs (the zero-frequency ones stay zero).
        return detail::move_into(
            factor == 1.0 ? default_factors(spec) : linear_factors(spec, factor), out);
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

#define ROPESCALE_INSIDE_PUBLIC_HEADER
#include "ropescale/detail/json/hf_parse.hpp"
#undef ROPESCALE_INSIDE_PUBLIC_HEADER

namespace ropescale {

namespace detail {

// A config with several RoPEs (NoPE layers, or a RoPE per layer type) has no single RopeConfig:
// the error names the kinds and points to parse_hf_model.
inline Status single_rope(ModelRope m, RopeConfig* out) {
  if (m.uniform()) {
    *out = std::move(m.kinds[0].config);
    return Status();
  }
  const std::string prefix = m.text_path.empty() ? "" : m.text_path + ".";
  const std::vector<std::int64_t> nope = m.nope_layers();
  if (!nope.empty())
    return make_status(ErrorCode::kUnsupported, prefix + m.nope_source,
                       std::to_string(nope.size()) + " layers without RoPE",
                       "this model has layers without RoPE (NoPE, first: layer " +
                           std::to_string(nope[0]) +
                           "); read it with parse_hf_model / load_hf_model, which says which "
                           "layers rotate");
  std::string kinds;
  for (const LayerRope& k : m.kinds)
    kinds += (kinds.empty() ? "" : "; ") + k.layer_type + ": " + to_string(k.config.rope_type) +
             " theta " + format_value(k.config.spec.rope_theta);
  return make_status(ErrorCode::kUnsupported, prefix + "layer_types",
                     std::to_string(m.kinds.size()) + " RoPE kinds",
                     "this model uses a different RoPE per layer type (" + kinds +
                         "); read it with parse_hf_model / load_hf_model, which gives the "
                         "spec and table of every layer");
}

inline Status parse_json_text(const std::string& text, nlohmann::json* out) {
  nlohmann::json& j = *out;
#ifndef ROPESCALE_NO_EXCEPTIONS
  try {
    j = nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception& e) {
    // nlohmann quotes the last token read, which can be megabytes long: keep the head.
    std::string what = e.what();
    if (what.size() > 300) what = what.substr(0, 300) + "...";
    return Status(ErrorCode::kParseError, "config.json", std::string(), "malformed JSON: " + what);
  }
#else
  j = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded())
    return Status(ErrorCode::kParseError, "config.json", std::string(), "malformed JSON");
#endif
  return Status();
}

inline Status parse_model_text(const std::string& text, const HfImportOptions& options,
                               ModelRope* out) {
  nlohmann::json j;
  ROPESCALE_RETURN_IF_ERROR(parse_json_text(text, &j));
  return parse_model(j, options, out);
}

inline Status load_model(const std::string& path, const HfImportOptions& options, ModelRope* out) {
  std::string text;
  ROPESCALE_RETURN_IF_ERROR(read_file("path", path, &text));
  return parse_model_text(text, options, out).with_context("in " + path);
}

template <typename T>
Result<T> to_result(const Status& st, T value) {
  if (!st.ok()) return st;
  return value;
}

}  // namespace detail

/// A parsed config.json as one RoPE per layer type (see ModelRope).
inline Result<ModelRope> parse_hf_model(const nlohmann::json& config,
                                        const HfImportOptions& options = {}) {
  ModelRope m;
  const Status st = detail::parse_model(config, options, &m);
  return detail::to_result(st, std::move(m));
}
/// config.json text (malformed JSON is a parse_error with nlohmann's position message).
inline Result<ModelRope> parse_hf_model(const std::string& text,
                                        const HfImportOptions& options = {}) {
  ModelRope m;
  const Status st = detail::parse_model_text(text, options, &m);
  return detail::to_result(st, std::move(m));
}
inline Result<ModelRope> parse_hf_model(const char* text, const HfImportOptions& options = {}) {
  return parse_hf_model(std::string(text != nullptr ? text : ""), options);
}
/// A config.json file; errors say which file.
inline Result<ModelRope> load_hf_model(const std::string& path,
                                       const HfImportOptions& options = {}) {
  ModelRope m;
  const Status st = detail::load_model(path, options, &m);
  return detail::to_result(st, std::move(m));
}

/// A parsed config.json whose layers all share one RoPE; the value exists only once a table for
/// both a short and a long sequence has been built. A config with several RoPEs (Gemma 3
/// sliding/full layers, per-layer-type rope_parameters, NoPE layers) is refused with the list
/// of kinds: use parse_hf_model.
inline Result<RopeConfig> parse_hf_config(const nlohmann::json& config,
                                          const HfImportOptions& options = {}) {
  ModelRope m;
  RopeConfig c;
  Status st = detail::parse_model(config, options, &m);
  if (st.ok()) st = detail::single_rope(std::move(m), &c);
  return detail::to_result(st, std::move(c));
}
/// config.json text (malformed JSON is a parse_error with nlohmann's position message).
inline Result<RopeConfig> parse_hf_config(const std::string& text,
                                          const HfImportOptions& options = {}) {
  ModelRope m;
  RopeConfig c;
  Status st = detail::parse_model_text(text, options, &m);
  if (st.ok()) st = detail::single_rope(std::move(m), &c);
  return detail::to_result(st, std::move(c));
}
inline Result<RopeConfig> parse_hf_config(const char* text, const HfImportOptions& options = {}) {
  return parse_hf_config(std::string(text != nullptr ? text : ""), options);
}
/// A config.json file; errors say which file.
inline Result<RopeConfig> load_hf_config(const std::string& path,
                                         const HfImportOptions& options = {}) {
  ModelRope m;
  RopeConfig c;
  Status st = detail::load_model(path, options, &m);
  if (st.ok()) st = detail::single_rope(std::move(m), &c).with_context("in " + path);
  return detail::to_result(st, std::move(c));
}

}  // namespace ropescale
