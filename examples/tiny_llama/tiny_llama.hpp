// A tiny Llama-architecture model that trains on the CPU: forward and backward of token embedding,
// RMSNorm, grouped-query causal attention with ropescale's rotary step (half-split, as Hugging
// Face's LlamaForCausalLM), SwiGLU, untied LM head and cross-entropy, with AdamW.
//
// Activations are [channels, tokens] column-major: token t's vector is contiguous, which is the
// [tokens, heads, head_dim] layout ropescale's HeadsView::tokens_heads_dim describes, so the
// rotary forward (apply_rotary_qk) and its backward (rotary_backward_qk) run on the projections
// in place. Weights keep Hugging Face's orientation ([out, in], y = W x), so a checkpoint is a
// plain safetensors file with the names of transformers' Llama.
//
// Attention masks come from a per-token document id: token i attends to token j when j <= i and
// both lie in the same run of equal ids (documents are packed back to back: the per-document
// causal masks of mixed context window training, LongRoPE2 section 3.3); no ids is plain causal
// attention.
#pragma once

#include <Eigen/Core>
#include <cstdint>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "ropescale/rotary.hpp"
#include "ropescale/training.hpp"

namespace tiny_llama {

using Matrix = Eigen::MatrixXf;  // column-major

/// Architecture. The defaults are the shipped model's.
struct Config {
  std::int64_t vocab_size = 256;  ///< byte-level: token = byte
  std::int64_t dim = 128;
  std::int64_t hidden_dim = 384;  ///< SwiGLU width
  std::int64_t n_layers = 3;
  std::int64_t n_heads = 4;
  std::int64_t n_kv_heads = 4;
  std::int64_t head_dim = 32;
  std::int64_t max_position_embeddings = 256;  ///< training window L_train
  double rope_theta = 10000.0;
  double rms_norm_eps = 1e-5;  ///< as in config.json; applied in float

  std::int64_t kv_dim() const noexcept { return n_kv_heads * head_dim; }
  /// The rotary spec of every layer (full rotary width, L_train as original window).
  ropescale::RopeSpec rope_spec() const {
    return ropescale::RopeSpec{head_dim, head_dim, rope_theta, max_position_embeddings};
  }
};

/// The most parameters a Config may hold (4 GiB of float per copy of the weights; training keeps
/// five copies: weights, gradient and AdamW's two moments, plus a second gradient to fine-tune).
constexpr std::int64_t kMaxParameters = std::int64_t{1} << 30;

/// Throws ropescale::Error naming the field when a Config cannot be built (each size in its
/// range, and kMaxParameters in all).
void validate(const Config& c);

/// One named parameter tensor, [rows, cols] as in the Hugging Face checkpoint.
struct Tensor {
  std::string name;
  Matrix value;
};

/// Name and in-memory shape [rows, cols] of every tensor of a Config, in Weights' order; allocates
/// no weights, so a loader can check a file against it first. Throws as validate().
struct TensorShape {
  std::string name;
  std::int64_t rows = 0, cols = 0;
};
std::vector<TensorShape> tensor_shapes(const Config& c);

/// All parameters in a fixed order: embed, then per layer the nine tensors of kLayerTensors,
/// then the final norm and the LM head. Norm weights are [dim, 1].
class Weights {
 public:
  static constexpr int kPerLayer = 9;
  enum LayerTensor : int { kAttnNorm, kQ, kK, kV, kO, kFfnNorm, kGate, kUp, kDown };

  Weights() = default;
  /// Zero-filled tensors of the config's shapes.
  explicit Weights(const Config& c);
  /// GPT-2 style initialisation: normal(0, 0.02), residual outputs scaled by 1/sqrt(2 L), norms 1.
  static Weights initialized(const Config& c, std::uint64_t seed);

  const Config& config() const noexcept { return config_; }
  std::vector<Tensor>& tensors() noexcept { return tensors_; }
  const std::vector<Tensor>& tensors() const noexcept { return tensors_; }

  /// embed_tokens.weight is [vocab, dim]; stored here as [dim, vocab] (column = token vector).
  Matrix& embed() { return tensors_[0].value; }
  const Matrix& embed() const { return tensors_[0].value; }
  Matrix& layer(std::int64_t l, LayerTensor t) { return tensors_[index(l, t)].value; }
  const Matrix& layer(std::int64_t l, LayerTensor t) const { return tensors_[index(l, t)].value; }
  Matrix& final_norm() { return tensors_[tensors_.size() - 2].value; }
  const Matrix& final_norm() const { return tensors_[tensors_.size() - 2].value; }
  Matrix& lm_head() { return tensors_.back().value; }
  const Matrix& lm_head() const { return tensors_.back().value; }

  std::int64_t parameter_count() const noexcept;
  void set_zero();
  Weights& operator+=(const Weights& o);

 private:
  static std::size_t index(std::int64_t l, LayerTensor t) {
    return static_cast<std::size_t>(1 + l * kPerLayer + t);
  }
  Config config_;
  std::vector<Tensor> tensors_;
};

/// The rotary step one forward call uses: a cache of angles for every position the batch holds,
/// built from any FactorTable (identity = plain RoPE; rescaled = an extended window).
struct Rope {
  const ropescale::RotaryCache* cache = nullptr;
};

/// One training or evaluation row.
struct Sequence {
  std::vector<std::int32_t> tokens;     ///< inputs, T of them
  std::vector<std::int32_t> targets;    ///< next tokens, T of them
  std::vector<float> loss_weight;       ///< 0 = no loss on this target
  std::vector<std::int64_t> positions;  ///< position ids (default 0..T-1 when empty)
  std::vector<std::int32_t> document;   ///< per-token document id; a change starts a new one
};

/// Loss of one call: sum of weighted negative log-likelihoods and of weights.
struct LossSum {
  double nll = 0.0;
  double weight = 0.0;
  LossSum& operator+=(const LossSum& o) noexcept {
    nll += o.nll;
    weight += o.weight;
    return *this;
  }
  double mean() const noexcept { return weight > 0 ? nll / weight : 0.0; }
};

/// Forward only: the loss of one sequence, and optionally the log-probabilities [vocab, T].
LossSum forward(const Weights& w, const Rope& rope, const Sequence& s, Matrix* log_probs = nullptr);

/// The keys (rotated) and values every layer has cached, [kv_dim, tokens] per layer: an engine's
/// KV cache, for decoding a sequence chunk by chunk.
struct KvCache {
  std::vector<Matrix> k, v;
  std::int64_t length() const noexcept { return k.empty() ? 0 : k.front().cols(); }
};

/// Forward of the next chunk of one sequence (plain causal attention, no documents): its tokens
/// sit at positions cache.length() ... and attend to every cached token and to the chunk's own
/// earlier ones; their keys and values are appended to the cache. Returns the chunk's
/// log-probabilities [vocab, n]. A sequence run in one chunk gives forward()'s log-probabilities.
Matrix forward_chunk(const Weights& w, const Rope& rope, const std::vector<std::int32_t>& tokens,
                     KvCache& cache);

/// Switches every cached key from one factor table to another (`r` built for the model's
/// rope_spec()): LongRoPE2's inference rule when a sequence grows past L_train. Values and the
/// hidden states behind them are kept, as an engine keeps them.
void rerotate(const Weights& w, const ropescale::KeyRerotation& r, KvCache& cache);

/// Forward and backward of one sequence: adds d(scale * nll)/dw to grad and returns the loss.
LossSum forward_backward(const Weights& w, const Rope& rope, const Sequence& s, float scale,
                         Weights& grad);

/// Forward and backward of a batch on `threads` threads (each sequence on one thread, the
/// gradients summed in a fixed order, so the result does not depend on thread timing). grad is
/// overwritten with the gradient of the batch's mean loss (total nll / total weight).
LossSum batch_gradient(const Weights& w, const Rope& rope, const std::vector<Sequence>& batch,
                       int threads, Weights& grad);

/// Throws ropescale::Error (invalid_argument, naming the step) when a training step's loss is not
/// finite: the run diverged or its weights hold NaN/inf, and it stops before its next checkpoint
/// could write a NaN model.
void require_finite_loss(double loss, std::int64_t step);

/// Runs f(i) for i in [0, n) on `threads` threads, i on thread i % threads (so a thread's share
/// and its order are fixed); the first exception is rethrown after every thread has joined.
void parallel_for(std::int64_t n, int threads, const std::function<void(std::int64_t)>& f);

/// The most optimizer or training steps a run may count (a bound that keeps step arithmetic far
/// from int64 overflow; a checkpoint claiming more is refused).
constexpr std::int64_t kMaxTrainSteps = 1000000000000;  // 10^12

/// AdamW (Loshchilov & Hutter) with decoupled weight decay on matrices, none on norm weights.
class AdamW {
 public:
  struct Options {
    double beta1 = 0.9;
    double beta2 = 0.95;
    double eps = 1e-8;
    double weight_decay = 0.1;
    double clip_norm = 1.0;  ///< global gradient-norm clip (0 = none)
  };
  AdamW(const Weights& shape, Options o);
  /// One update with learning rate lr; returns the gradient norm before clipping.
  double step(Weights& w, const Weights& grad, double lr);
  std::int64_t steps() const noexcept { return t_; }
  /// First and second moments (shaped like the weights) and the step count, for checkpoints.
  const Weights& first_moment() const noexcept { return m_; }
  const Weights& second_moment() const noexcept { return v_; }
  void restore(Weights m, Weights v, std::int64_t steps);

 private:
  Options o_;
  Weights m_, v_;
  std::int64_t t_ = 0;
};

}  // namespace tiny_llama
