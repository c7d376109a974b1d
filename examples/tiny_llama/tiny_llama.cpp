#include "tiny_llama.hpp"

#include <algorithm>
#include <cmath>
#include <exception>
#include <limits>
#include <thread>

#include "ropescale/error.hpp"

namespace tiny_llama {

using ropescale::ErrorCode;
using ropescale::make_status;
using ropescale::throw_if_error;

namespace {

void require_positive(const char* name, std::int64_t v, std::int64_t limit) {
  if (v <= 0 || v > limit)
    throw_if_error(make_status(ErrorCode::kInvalidArgument, name, v,
                               "must be in [1, " + std::to_string(limit) + "]"));
}

Eigen::Index ix(std::int64_t v) { return static_cast<Eigen::Index>(v); }

// RMSNorm of every column: y = x * r * g with r = 1 / sqrt(mean(x^2) + eps).
void rms_norm(const Matrix& x, const Matrix& g, double eps, Matrix& y, Eigen::VectorXf& r) {
  const float inv_n = 1.0f / static_cast<float>(x.rows());
  r = ((x.array().square().colwise().sum() * inv_n) + static_cast<float>(eps)).rsqrt().transpose();
  y = (x.array().rowwise() * r.transpose().array()).colwise() * g.col(0).array();
}

// Backward of rms_norm: dx = r (g dy) - x r^3 / n * sum(g dy x); dg += sum over tokens of dy x r.
void rms_norm_backward(const Matrix& x, const Matrix& g, const Eigen::VectorXf& r, const Matrix& dy,
                       Matrix& dx, Matrix& dg) {
  const float inv_n = 1.0f / static_cast<float>(x.rows());
  const Eigen::ArrayXXf gdy = dy.array().colwise() * g.col(0).array();
  const Eigen::ArrayXf dot = (gdy * x.array()).colwise().sum().transpose();
  const Eigen::ArrayXf r3 = r.array().cube() * inv_n;
  dx = (gdy.rowwise() * r.transpose().array()) - (x.array().rowwise() * (dot * r3).transpose());
  dg.col(0) +=
      ((dy.array() * x.array()).rowwise() * r.transpose().array()).rowwise().sum().matrix();
}

float sigmoid(float a) { return 1.0f / (1.0f + std::exp(-a)); }

// Per-layer activations kept for the backward pass.
struct LayerCache {
  Matrix x;                  // input of the layer [dim, T]
  Matrix xn1;                // attention-normed input
  Eigen::VectorXf r1;        // RMSNorm 1/rms per token
  Matrix q, k, v;            // projections after rotary (q, k) [dim|kv_dim, T]
  std::vector<Matrix> prob;  // per query head, softmax probabilities [T(key), T(query)]
  Matrix attn;               // concatenated head outputs before wo [dim, T]
  Matrix h;                  // residual after attention
  Matrix xn2;
  Eigen::VectorXf r2;
  Matrix gate, up, act;  // SwiGLU: gate, up projections and silu(gate) * up [hidden, T]
};

struct Workspace {
  std::vector<LayerCache> layers;
  Matrix xf, xnf;
  Eigen::VectorXf rf;
  Matrix logits;  // log-probabilities after the forward [vocab, T]
};

std::vector<std::int64_t> positions_of(const Sequence& s) {
  if (!s.positions.empty()) return s.positions;
  std::vector<std::int64_t> p(s.tokens.size());
  for (std::size_t t = 0; t < p.size(); ++t) p[t] = static_cast<std::int64_t>(t);
  return p;
}

void check_sequence(const Config& c, const Rope& rope, const Sequence& s) {
  const std::size_t n = s.tokens.size();
  if (n == 0)
    throw_if_error(make_status(ErrorCode::kInvalidArgument, "tokens", 0, "must not be empty"));
  if (s.targets.size() != n || s.loss_weight.size() != n ||
      (!s.positions.empty() && s.positions.size() != n) ||
      (!s.document.empty() && s.document.size() != n))
    throw_if_error(make_status(ErrorCode::kInvalidArgument, "sequence", n,
                               "targets, loss_weight, positions and document must match tokens"));
  for (std::size_t t = 0; t < n; ++t) {
    if (s.tokens[t] < 0 || s.tokens[t] >= c.vocab_size || s.targets[t] < 0 ||
        s.targets[t] >= c.vocab_size)
      throw_if_error(
          make_status(ErrorCode::kOutOfRange, "token", s.tokens[t], "must be in [0, vocab_size)"));
  }
  if (rope.cache == nullptr || rope.cache->rotary_dim() != c.head_dim)
    throw_if_error(make_status(ErrorCode::kInvalidArgument, "rope.cache", "rotary_dim",
                               "must be a cache of head_dim / 2 pairs"));
}

constexpr std::int64_t kQueryBlock = 128;

// First key each query may attend to: the start of its document's run (keys j with
// first[i] <= j <= i are visible).
std::vector<std::int64_t> first_keys(const Sequence& s) {
  std::vector<std::int64_t> first(s.tokens.size(), 0);
  for (std::size_t i = 1; i < first.size(); ++i)
    first[i] = (!s.document.empty() && s.document[i] != s.document[i - 1])
                   ? static_cast<std::int64_t>(i)
                   : first[i - 1];
  return first;
}

void rotate(const Config& c, const Rope& rope, const std::vector<std::int64_t>& pos, Matrix& q,
            Matrix& k, bool backward) {
  const std::int64_t T = q.cols();
  auto qv = ropescale::HeadsView<float>::tokens_heads_dim(q.data(), T, c.n_heads, c.head_dim);
  auto kv = ropescale::HeadsView<float>::tokens_heads_dim(k.data(), T, c.n_kv_heads, c.head_dim);
  if (backward)
    ropescale::throw_if_error(ropescale::rotate(*rope.cache, pos.data(), qv, kv,
                                                ropescale::PairLayout::kHalfSplit,
                                                ropescale::RotaryDirection::kBackward));
  else
    ropescale::throw_if_error(
        ropescale::rotate(*rope.cache, pos.data(), qv, kv, ropescale::PairLayout::kHalfSplit));
}

// The attention half's projections: xn = rms_norm(x), then q, k, v, with q and k rotated.
void project_qkv(const Weights& w, std::int64_t l, const Rope& rope,
                 const std::vector<std::int64_t>& pos, const Matrix& x, Matrix& xn,
                 Eigen::VectorXf& r, Matrix& q, Matrix& k, Matrix& v) {
  const Config& c = w.config();
  rms_norm(x, w.layer(l, Weights::kAttnNorm), c.rms_norm_eps, xn, r);
  q.noalias() = w.layer(l, Weights::kQ) * xn;
  k.noalias() = w.layer(l, Weights::kK) * xn;
  v.noalias() = w.layer(l, Weights::kV) * xn;
  rotate(c, rope, pos, q, k, false);
}

// Softmax of a score column over the visible keys [j0, j1); the other keys get probability 0.
template <typename Col>
void softmax_visible(Col&& col, std::int64_t j0, std::int64_t j1) {
  auto seen = col.segment(ix(j0), ix(j1 - j0)).array();
  seen = (seen - seen.maxCoeff()).exp();
  seen /= seen.sum();
  col.head(ix(j0)).setZero();
  col.tail(ix(col.size() - j1)).setZero();
}

// The rest of a layer after attention: h = x + W_o attn, then
// out = h + W_down (silu(W_gate xn) * W_up xn) with xn = rms_norm(h).
void finish_layer(const Weights& w, std::int64_t l, const Matrix& x, const Matrix& attn, Matrix& h,
                  Matrix& xn, Eigen::VectorXf& r, Matrix& gate, Matrix& up, Matrix& act,
                  Matrix& out) {
  const Config& c = w.config();
  h = x;
  h.noalias() += w.layer(l, Weights::kO) * attn;
  rms_norm(h, w.layer(l, Weights::kFfnNorm), c.rms_norm_eps, xn, r);
  gate.noalias() = w.layer(l, Weights::kGate) * xn;
  up.noalias() = w.layer(l, Weights::kUp) * xn;
  act = gate.unaryExpr([](float a) { return a * sigmoid(a); }).cwiseProduct(up);
  out = h;
  out.noalias() += w.layer(l, Weights::kDown) * act;
}

// The final norm and head: log-probabilities [vocab, T] of the last layer's output x.
void log_probs_of(const Weights& w, const Matrix& x, Matrix& xf, Matrix& xnf, Eigen::VectorXf& rf,
                  Matrix& logits) {
  xf = x;
  rms_norm(xf, w.final_norm(), w.config().rms_norm_eps, xnf, rf);
  logits.noalias() = w.lm_head() * xnf;
  for (Eigen::Index t = 0; t < logits.cols(); ++t) {
    auto col = logits.col(t);
    const float mx = col.maxCoeff();
    col.array() -= mx + std::log((col.array() - mx).exp().sum());
  }
}

LossSum run_forward(const Weights& w, const Rope& rope, const Sequence& s, Workspace& ws) {
  const Config& c = w.config();
  check_sequence(c, rope, s);
  const std::vector<std::int64_t> pos = positions_of(s);
  const std::int64_t T = static_cast<std::int64_t>(s.tokens.size());
  const std::int64_t group = c.n_heads / c.n_kv_heads;
  const float scale = 1.0f / std::sqrt(static_cast<float>(c.head_dim));
  const std::vector<std::int64_t> first = first_keys(s);

  Matrix x(ix(c.dim), ix(T));
  for (std::int64_t t = 0; t < T; ++t) x.col(ix(t)) = w.embed().col(s.tokens[t]);
  ws.layers.resize(static_cast<std::size_t>(c.n_layers));
  for (std::int64_t l = 0; l < c.n_layers; ++l) {
    LayerCache& L = ws.layers[static_cast<std::size_t>(l)];
    L.x = x;
    project_qkv(w, l, rope, pos, L.x, L.xn1, L.r1, L.q, L.k, L.v);
    L.attn.resize(ix(c.dim), ix(T));
    L.prob.resize(static_cast<std::size_t>(c.n_heads));
    for (std::int64_t h = 0; h < c.n_heads; ++h) {
      const std::int64_t kvh = h / group;
      const auto qh = L.q.middleRows(ix(h * c.head_dim), ix(c.head_dim));
      const auto kh = L.k.middleRows(ix(kvh * c.head_dim), ix(c.head_dim));
      const auto vh = L.v.middleRows(ix(kvh * c.head_dim), ix(c.head_dim));
      Matrix& P = L.prob[static_cast<std::size_t>(h)];
      P.setZero(ix(T), ix(T));  // [key, query]: column i is query i
      // Causal blocks of queries: block [i0, i1) sees keys [0, i1) only, which halves the
      // score and value products of a long sequence.
      for (std::int64_t i0 = 0; i0 < T; i0 += kQueryBlock) {
        const std::int64_t i1 = std::min(T, i0 + kQueryBlock);
        auto Pb = P.block(0, ix(i0), ix(i1), ix(i1 - i0));
        Pb.noalias() =
            (kh.leftCols(ix(i1)).transpose() * qh.middleCols(ix(i0), ix(i1 - i0))) * scale;
        for (std::int64_t i = i0; i < i1; ++i)
          softmax_visible(Pb.col(ix(i - i0)), first[static_cast<std::size_t>(i)], i + 1);
        L.attn.block(ix(h * c.head_dim), ix(i0), ix(c.head_dim), ix(i1 - i0)).noalias() =
            vh.leftCols(ix(i1)) * Pb;
      }
    }
    finish_layer(w, l, L.x, L.attn, L.h, L.xn2, L.r2, L.gate, L.up, L.act, x);
  }
  log_probs_of(w, x, ws.xf, ws.xnf, ws.rf, ws.logits);
  LossSum loss;
  for (std::int64_t t = 0; t < T; ++t) {
    const double wt = s.loss_weight[static_cast<std::size_t>(t)];
    if (wt != 0.0) {
      loss.nll -=
          wt * static_cast<double>(ws.logits(s.targets[static_cast<std::size_t>(t)], ix(t)));
      loss.weight += wt;
    }
  }
  return loss;
}

}  // namespace

void validate(const Config& c) {
  constexpr std::int64_t kBig = std::int64_t{1} << 20;
  require_positive("vocab_size", c.vocab_size, kBig);
  require_positive("dim", c.dim, kBig);
  require_positive("hidden_dim", c.hidden_dim, kBig);
  require_positive("n_layers", c.n_layers, 1024);
  require_positive("n_heads", c.n_heads, 1024);
  require_positive("n_kv_heads", c.n_kv_heads, c.n_heads);
  require_positive("head_dim", c.head_dim, 4096);
  require_positive("max_position_embeddings", c.max_position_embeddings, kBig);
  if (c.n_heads % c.n_kv_heads != 0)
    throw_if_error(make_status(ErrorCode::kInvalidArgument, "n_kv_heads", c.n_kv_heads,
                               "must divide n_heads (" + std::to_string(c.n_heads) + ")"));
  if (c.n_heads * c.head_dim != c.dim)
    throw_if_error(
        make_status(ErrorCode::kInvalidArgument, "head_dim", c.head_dim,
                    "n_heads * head_dim must equal dim (" + std::to_string(c.dim) + ")"));
  if (c.head_dim % 2 != 0)
    throw_if_error(
        make_status(ErrorCode::kInvalidArgument, "head_dim", c.head_dim, "must be even"));
  if (!(c.rms_norm_eps > 0.0) || !std::isfinite(c.rms_norm_eps) ||
      !(static_cast<float>(c.rms_norm_eps) > 0.0f))
    throw_if_error(make_status(ErrorCode::kInvalidArgument, "rms_norm_eps", c.rms_norm_eps,
                               "must be finite and > 0 in float"));
  throw_if_error(ropescale::validate(c.rope_spec()));
  // Each size is at most 2^20 and n_layers at most 1024, so no product below overflows int64.
  const std::int64_t per_layer =
      2 * c.dim + 2 * c.dim * c.dim + 2 * c.kv_dim() * c.dim + 3 * c.hidden_dim * c.dim;
  const std::int64_t total = 2 * c.vocab_size * c.dim + c.dim + c.n_layers * per_layer;
  if (total > kMaxParameters)
    throw_if_error(make_status(ErrorCode::kInvalidArgument, "parameters", total,
                               "must be at most 2^30 (the sizes of this config are too large "
                               "for the tiny Llama)"));
}

std::vector<TensorShape> tensor_shapes(const Config& c) {
  validate(c);
  const std::int64_t d = c.dim, kv = c.kv_dim(), hd = c.hidden_dim;
  std::vector<TensorShape> s;
  s.push_back({"model.embed_tokens.weight", d, c.vocab_size});
  for (std::int64_t l = 0; l < c.n_layers; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    s.push_back({p + "input_layernorm.weight", d, 1});
    s.push_back({p + "self_attn.q_proj.weight", d, d});
    s.push_back({p + "self_attn.k_proj.weight", kv, d});
    s.push_back({p + "self_attn.v_proj.weight", kv, d});
    s.push_back({p + "self_attn.o_proj.weight", d, d});
    s.push_back({p + "post_attention_layernorm.weight", d, 1});
    s.push_back({p + "mlp.gate_proj.weight", hd, d});
    s.push_back({p + "mlp.up_proj.weight", hd, d});
    s.push_back({p + "mlp.down_proj.weight", d, hd});
  }
  s.push_back({"model.norm.weight", d, 1});
  s.push_back({"lm_head.weight", c.vocab_size, d});
  return s;
}

Weights::Weights(const Config& c) : config_(c) {
  for (const TensorShape& t : tensor_shapes(c))
    tensors_.push_back({t.name, Matrix::Zero(ix(t.rows), ix(t.cols))});
}

Weights Weights::initialized(const Config& c, std::uint64_t seed) {
  Weights w(c);
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> normal(0.0f, 0.02f);
  const float residual = 1.0f / std::sqrt(2.0f * static_cast<float>(c.n_layers));
  for (Tensor& t : w.tensors_) {
    const bool norm = t.value.cols() == 1 && t.name.find("norm") != std::string::npos;
    if (norm) {
      t.value.setOnes();
      continue;
    }
    const bool out =
        t.name.find("o_proj") != std::string::npos || t.name.find("down_proj") != std::string::npos;
    for (Eigen::Index i = 0; i < t.value.size(); ++i)
      t.value.data()[i] = normal(rng) * (out ? residual : 1.0f);
  }
  return w;
}

void require_finite_loss(double loss, std::int64_t step) {
  if (!std::isfinite(loss))
    throw_if_error(make_status(ErrorCode::kInvalidArgument,
                               "training loss at step " + std::to_string(step), loss,
                               "must be finite (the run diverged or the weights hold NaN/inf); "
                               "nothing more is written"));
}

std::int64_t Weights::parameter_count() const noexcept {
  std::int64_t n = 0;
  for (const Tensor& t : tensors_) n += t.value.size();
  return n;
}

void Weights::set_zero() {
  for (Tensor& t : tensors_) t.value.setZero();
}

Weights& Weights::operator+=(const Weights& o) {
  for (std::size_t i = 0; i < tensors_.size(); ++i) tensors_[i].value += o.tensors_[i].value;
  return *this;
}

LossSum forward(const Weights& w, const Rope& rope, const Sequence& s, Matrix* log_probs) {
  Workspace ws;
  const LossSum loss = run_forward(w, rope, s, ws);
  if (log_probs != nullptr) *log_probs = std::move(ws.logits);
  return loss;
}

Matrix forward_chunk(const Weights& w, const Rope& rope, const std::vector<std::int32_t>& tokens,
                     KvCache& cache) {
  const Config& c = w.config();
  const std::int64_t n = static_cast<std::int64_t>(tokens.size());
  const std::int64_t p0 = cache.length();
  Sequence s;
  s.tokens = tokens;
  s.targets.assign(tokens.size(), 0);
  s.loss_weight.assign(tokens.size(), 0.0f);
  check_sequence(c, rope, s);
  if (cache.k.empty()) {
    cache.k.assign(static_cast<std::size_t>(c.n_layers), Matrix(ix(c.kv_dim()), 0));
    cache.v = cache.k;
  }
  if (static_cast<std::int64_t>(cache.k.size()) != c.n_layers ||
      static_cast<std::int64_t>(cache.v.size()) != c.n_layers)
    throw_if_error(make_status(ErrorCode::kInvalidArgument, "cache", cache.k.size(),
                               "must hold one key and one value matrix per layer"));
  std::vector<std::int64_t> pos(tokens.size());
  for (std::int64_t t = 0; t < n; ++t) pos[static_cast<std::size_t>(t)] = p0 + t;
  const std::int64_t group = c.n_heads / c.n_kv_heads;
  const float scale = 1.0f / std::sqrt(static_cast<float>(c.head_dim));
  Matrix x(ix(c.dim), ix(n)), xn, q, k, v, attn(ix(c.dim), ix(n)), h, gate, up, act, next;
  Eigen::VectorXf r;
  for (std::int64_t t = 0; t < n; ++t)
    x.col(ix(t)) = w.embed().col(tokens[static_cast<std::size_t>(t)]);
  for (std::int64_t l = 0; l < c.n_layers; ++l) {
    project_qkv(w, l, rope, pos, x, xn, r, q, k, v);
    Matrix& K = cache.k[static_cast<std::size_t>(l)];
    Matrix& V = cache.v[static_cast<std::size_t>(l)];
    K.conservativeResize(Eigen::NoChange, ix(p0 + n));
    V.conservativeResize(Eigen::NoChange, ix(p0 + n));
    K.rightCols(ix(n)) = k;
    V.rightCols(ix(n)) = v;
    for (std::int64_t hd = 0; hd < c.n_heads; ++hd) {
      const std::int64_t kvh = hd / group;
      Matrix P = (K.middleRows(ix(kvh * c.head_dim), ix(c.head_dim)).transpose() *
                  q.middleRows(ix(hd * c.head_dim), ix(c.head_dim))) *
                 scale;  // [key, query]
      for (std::int64_t i = 0; i < n; ++i) softmax_visible(P.col(ix(i)), 0, p0 + i + 1);
      attn.middleRows(ix(hd * c.head_dim), ix(c.head_dim)).noalias() =
          V.middleRows(ix(kvh * c.head_dim), ix(c.head_dim)) * P;
    }
    finish_layer(w, l, x, attn, h, xn, r, gate, up, act, next);
    x.swap(next);
  }
  Matrix xf, logits;
  log_probs_of(w, x, xf, xn, r, logits);
  return logits;
}

void rerotate(const Weights& w, const ropescale::KeyRerotation& r, KvCache& cache) {
  const Config& c = w.config();
  if (r.rotary_dim() != c.head_dim)
    throw_if_error(make_status(ErrorCode::kInvalidArgument, "r.rotary_dim()", r.rotary_dim(),
                               "must equal head_dim (" + std::to_string(c.head_dim) + ")"));
  const std::int64_t n = cache.length();
  std::vector<std::int64_t> pos(static_cast<std::size_t>(n));
  for (std::int64_t t = 0; t < n; ++t) pos[static_cast<std::size_t>(t)] = t;
  for (Matrix& K : cache.k) {
    if (K.cols() != n || K.rows() != c.kv_dim())
      throw_if_error(make_status(ErrorCode::kInvalidArgument, "cache.k", K.cols(),
                                 "every layer must cache the same tokens"));
    throw_if_error(r.apply(
        pos.data(),
        ropescale::HeadsView<float>::tokens_heads_dim(K.data(), n, c.n_kv_heads, c.head_dim),
        ropescale::PairLayout::kHalfSplit));
  }
}

LossSum forward_backward(const Weights& w, const Rope& rope, const Sequence& s, float scale,
                         Weights& grad) {
  const Config& c = w.config();
  Workspace ws;
  const LossSum loss = run_forward(w, rope, s, ws);
  const std::vector<std::int64_t> pos = positions_of(s);
  const std::int64_t T = static_cast<std::int64_t>(s.tokens.size());
  const std::int64_t group = c.n_heads / c.n_kv_heads;
  const float att_scale = 1.0f / std::sqrt(static_cast<float>(c.head_dim));

  // d(scale * sum w_t nll_t)/dlogits = scale * w_t (softmax - onehot).
  Matrix dlogits = ws.logits.array().exp().matrix();
  for (std::int64_t t = 0; t < T; ++t) {
    const float wt = s.loss_weight[static_cast<std::size_t>(t)] * scale;
    if (wt == 0.0f) {
      dlogits.col(ix(t)).setZero();
      continue;
    }
    dlogits(s.targets[static_cast<std::size_t>(t)], ix(t)) -= 1.0f;
    dlogits.col(ix(t)) *= wt;
  }
  grad.lm_head().noalias() += dlogits * ws.xnf.transpose();
  Matrix dxn = w.lm_head().transpose() * dlogits;
  Matrix dx;
  rms_norm_backward(ws.xf, w.final_norm(), ws.rf, dxn, dx, grad.final_norm());

  Matrix dact, dgate, dup, dxn2, dh, dattn, dq, dk, dv, tmp;
  for (std::int64_t l = c.n_layers - 1; l >= 0; --l) {
    const LayerCache& L = ws.layers[static_cast<std::size_t>(l)];
    // FFN: x_out = h + down(silu(gate) * up).
    grad.layer(l, Weights::kDown).noalias() += dx * L.act.transpose();
    dact.noalias() = w.layer(l, Weights::kDown).transpose() * dx;
    dgate.resize(L.gate.rows(), L.gate.cols());
    dup.resize(L.up.rows(), L.up.cols());
    for (Eigen::Index i = 0; i < L.gate.size(); ++i) {
      const float a = L.gate.data()[i];
      const float sg = sigmoid(a);
      const float silu = a * sg;
      dup.data()[i] = dact.data()[i] * silu;
      dgate.data()[i] = dact.data()[i] * L.up.data()[i] * sg * (1.0f + a * (1.0f - sg));
    }
    grad.layer(l, Weights::kGate).noalias() += dgate * L.xn2.transpose();
    grad.layer(l, Weights::kUp).noalias() += dup * L.xn2.transpose();
    dxn2.noalias() = w.layer(l, Weights::kGate).transpose() * dgate;
    dxn2.noalias() += w.layer(l, Weights::kUp).transpose() * dup;
    rms_norm_backward(L.h, w.layer(l, Weights::kFfnNorm), L.r2, dxn2, tmp,
                      grad.layer(l, Weights::kFfnNorm));
    dh = dx + tmp;
    // Attention: h = x + o(attn).
    grad.layer(l, Weights::kO).noalias() += dh * L.attn.transpose();
    dattn.noalias() = w.layer(l, Weights::kO).transpose() * dh;
    dq.setZero(L.q.rows(), L.q.cols());
    dk.setZero(L.k.rows(), L.k.cols());
    dv.setZero(L.v.rows(), L.v.cols());
    for (std::int64_t h = 0; h < c.n_heads; ++h) {
      const std::int64_t kvh = h / group;
      const Eigen::Index r0 = ix(h * c.head_dim), k0 = ix(kvh * c.head_dim), n = ix(c.head_dim);
      const Matrix& P = L.prob[static_cast<std::size_t>(h)];
      const auto dO = dattn.middleRows(r0, n);
      // O = V P: dV += dO P^T, dP = V^T dO, dS = P (dP - colsum(dP P)) (softmax per column).
      dv.middleRows(k0, n).noalias() += dO * P.transpose();
      Matrix dS = L.v.middleRows(k0, n).transpose() * dO;
      const Eigen::RowVectorXf cs = (dS.array() * P.array()).colwise().sum();
      dS = (P.array() * (dS.array().rowwise() - cs.array())) * att_scale;
      // S = scale K^T Q: dQ = K dS, dK = Q dS^T.
      dq.middleRows(r0, n).noalias() += L.k.middleRows(k0, n) * dS;
      dk.middleRows(k0, n).noalias() += L.q.middleRows(r0, n) * dS.transpose();
    }
    rotate(c, rope, pos, dq, dk, true);
    grad.layer(l, Weights::kQ).noalias() += dq * L.xn1.transpose();
    grad.layer(l, Weights::kK).noalias() += dk * L.xn1.transpose();
    grad.layer(l, Weights::kV).noalias() += dv * L.xn1.transpose();
    Matrix dxn1 = w.layer(l, Weights::kQ).transpose() * dq;
    dxn1.noalias() += w.layer(l, Weights::kK).transpose() * dk;
    dxn1.noalias() += w.layer(l, Weights::kV).transpose() * dv;
    rms_norm_backward(L.x, w.layer(l, Weights::kAttnNorm), L.r1, dxn1, tmp,
                      grad.layer(l, Weights::kAttnNorm));
    dx = dh + tmp;
  }
  for (std::int64_t t = 0; t < T; ++t) grad.embed().col(s.tokens[t]) += dx.col(ix(t));
  return loss;
}

void parallel_for(std::int64_t n, int threads, const std::function<void(std::int64_t)>& f) {
  const int k = static_cast<int>(std::max<std::int64_t>(1, std::min<std::int64_t>(threads, n)));
  std::vector<std::exception_ptr> failure(static_cast<std::size_t>(k));
  auto work = [&](int id) {
    try {
      for (std::int64_t i = id; i < n; i += k) f(i);
    } catch (...) {
      failure[static_cast<std::size_t>(id)] = std::current_exception();
    }
  };
  std::vector<std::thread> pool;
  for (int id = 1; id < k; ++id) pool.emplace_back(work, id);
  work(0);
  for (std::thread& t : pool) t.join();
  for (const std::exception_ptr& e : failure)
    if (e) std::rethrow_exception(e);
}

LossSum batch_gradient(const Weights& w, const Rope& rope, const std::vector<Sequence>& batch,
                       int threads, Weights& grad) {
  double total_weight = 0.0;
  for (const Sequence& s : batch)
    for (float x : s.loss_weight) total_weight += x;
  const float scale = total_weight > 0 ? static_cast<float>(1.0 / total_weight) : 0.0f;
  const int n = std::max(1, std::min<int>(threads, static_cast<int>(batch.size())));
  std::vector<Weights> part(static_cast<std::size_t>(n), Weights(w.config()));
  std::vector<LossSum> loss(static_cast<std::size_t>(n));
  // Sequence i goes to thread i % n, so each thread's sum has a fixed order.
  parallel_for(n, n, [&](std::int64_t id) {
    for (std::size_t i = static_cast<std::size_t>(id); i < batch.size();
         i += static_cast<std::size_t>(n)) {
      const LossSum l =
          forward_backward(w, rope, batch[i], scale, part[static_cast<std::size_t>(id)]);
      loss[static_cast<std::size_t>(id)].nll += l.nll;
      loss[static_cast<std::size_t>(id)].weight += l.weight;
    }
  });
  grad = std::move(part[0]);
  LossSum total = loss[0];
  for (int id = 1; id < n; ++id) {
    grad += part[static_cast<std::size_t>(id)];
    total.nll += loss[static_cast<std::size_t>(id)].nll;
    total.weight += loss[static_cast<std::size_t>(id)].weight;
  }
  return total;
}

AdamW::AdamW(const Weights& shape, Options o) : o_(o), m_(shape.config()), v_(shape.config()) {}

void AdamW::restore(Weights m, Weights v, std::int64_t steps) {
  if (m.parameter_count() != m_.parameter_count() || v.parameter_count() != v_.parameter_count() ||
      steps < 0 || steps > kMaxTrainSteps)
    throw_if_error(make_status(ErrorCode::kInvalidArgument, "optimizer state", steps,
                               "must match the weights' shapes and have steps in [0, 10^12]"));
  m_ = std::move(m);
  v_ = std::move(v);
  t_ = steps;
}

double AdamW::step(Weights& w, const Weights& grad, double lr) {
  double sq = 0.0;
  for (const Tensor& g : grad.tensors()) sq += static_cast<double>(g.value.squaredNorm());
  const double norm = std::sqrt(sq);
  const double clip = (o_.clip_norm > 0 && norm > o_.clip_norm) ? o_.clip_norm / norm : 1.0;
  ++t_;
  const double bc1 = 1.0 - std::pow(o_.beta1, static_cast<double>(t_));
  const double bc2 = 1.0 - std::pow(o_.beta2, static_cast<double>(t_));
  const float b1 = static_cast<float>(o_.beta1), b2 = static_cast<float>(o_.beta2);
  for (std::size_t i = 0; i < w.tensors().size(); ++i) {
    Matrix& p = w.tensors()[i].value;
    const bool decay = p.cols() > 1;  // matrices decay; norm weights do not
    const Eigen::ArrayXXf g = grad.tensors()[i].value.array() * static_cast<float>(clip);
    Eigen::ArrayXXf m = m_.tensors()[i].value.array();
    Eigen::ArrayXXf v = v_.tensors()[i].value.array();
    m = b1 * m + (1.0f - b1) * g;
    v = b2 * v + (1.0f - b2) * g.square();
    m_.tensors()[i].value = m.matrix();
    v_.tensors()[i].value = v.matrix();
    const Eigen::ArrayXXf update =
        (m / static_cast<float>(bc1)) /
        ((v / static_cast<float>(bc2)).sqrt() + static_cast<float>(o_.eps));
    if (decay) p *= static_cast<float>(1.0 - lr * o_.weight_decay);
    p.array() -= static_cast<float>(lr) * update;
  }
  return norm;
}

}  // namespace tiny_llama
