// Hugging Face layout for the tiny Llama: `config.json` (LlamaForCausalLM fields) and
// `model.safetensors`.
//
// safetensors (huggingface/safetensors, docs "Format"): an 8-byte little-endian unsigned header
// length N, N bytes of UTF-8 JSON, then the raw tensor bytes. The JSON maps each tensor name to
// {"dtype", "shape", "data_offsets": [begin, end)} with offsets relative to the byte after the
// header, and may carry a "__metadata__" map of strings. Tensors here are F32, row-major, in
// transformers' [out, in] orientation; embed_tokens.weight is [vocab, dim].
#pragma once

#include <nlohmann/json.hpp>
#include <string>

#include "ropescale/io/hf_config.hpp"
#include "tiny_llama.hpp"

namespace tiny_llama {

/// Writes `path` (safetensors, F32). Throws ropescale::Error (io_error) on failure.
void save_safetensors(const std::string& path, const Weights& w,
                      const nlohmann::json& metadata = nlohmann::json::object());
/// Reads `path` into a Weights of `config`: every tensor must be present with its shape, dtype
/// F32 and a byte range inside the file, all checked before any weight is allocated; unknown
/// tensors, overlapping ranges and non-finite weights are refused. Throws ropescale::Error
/// (parse_error) naming the file, the tensor, the field and its value.
Weights load_safetensors(const std::string& path, const Config& config);

/// The config.json of a LlamaForCausalLM with this architecture (rope_scaling absent).
nlohmann::json to_hf_json(const Config& c);
/// Reads the architecture back from a config.json; L_train (Config::max_position_embeddings) is
/// the original window ropescale's importer resolves, so an extended config (rope_scaling with
/// original_max_position_embeddings) loads the same model.
Config config_from_hf_json(const nlohmann::json& j);

/// Training state beside a model directory: optimizer.safetensors holds AdamW's moments under
/// "m." / "v." + the parameter names and the step in its metadata.
struct TrainPosition {
  std::int64_t step = 0;        ///< steps done in all
  std::int64_t stage = 0;       ///< stage the next step belongs to
  std::int64_t stage_step = 0;  ///< steps done within that stage
};
void save_optimizer(const std::string& dir, const AdamW& opt, const TrainPosition& at);
/// Restores `opt` (built for `config`'s shapes); returns the position stored. The metadata counts
/// must be decimal strings in [0, kMaxTrainSteps]; whether the position fits a plan is
/// check_start()'s (train.hpp) to say.
TrainPosition load_optimizer(const std::string& dir, const Config& config, AdamW& opt);

/// tokenizers' JSON for the byte vocabulary (token id = byte value): a ByteLevel pre-tokenizer
/// and decoder with a BPE model of 256 entries and no merges, so transformers'
/// PreTrainedTokenizerFast encodes text to exactly the ids the tiny Llama trains on.
nlohmann::json byte_tokenizer_json();

/// A model directory: config.json + model.safetensors (+ tokenizer.json and
/// tokenizer_config.json for the byte vocabulary).
void save_model_dir(const std::string& dir, const Weights& w, const nlohmann::json& extra = {});
Weights load_model_dir(const std::string& dir);
/// The RoPE of a model directory's config.json as ropescale reads it (its rope_scaling, if any:
/// table_for(seq_len) is the table Hugging Face uses for seq_len tokens).
ropescale::RopeConfig load_rope_config(const std::string& dir);

}  // namespace tiny_llama
