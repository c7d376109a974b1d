// A llama2.c model on the CPU: checkpoint loader, byte-fallback BPE tokenizer and a batched
// whole-sequence forward pass in Eigen that calls ropescale for its rotary step.
//
// Karpathy's llama2.c (MIT) stores a Llama-2-architecture model as one flat float32 file; the
// "legacy" (version 0) export used by the tinyllamas checkpoints is
//
//     int32 header[7] = {dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size, seq_len}
//     float32 token_embedding[vocab][dim]
//             rms_att[L][dim]  wq[L][dim][dim]  wk[L][kv_dim][dim]  wv[L][kv_dim][dim]
//             wo[L][dim][dim]  rms_ffn[L][dim]  w1[L][hidden][dim]  w2[L][dim][hidden]
//             w3[L][hidden][dim]  rms_final[dim]
//             freq_cis_real[seq_len][head_size/2]  freq_cis_imag[seq_len][head_size/2]  (unused)
//             wcls[vocab][dim]                   only when vocab_size < 0 (unshared classifier)
//
// with kv_dim = dim * n_kv_heads / n_heads and every matrix (out, in) row-major. The loader checks
// the header against the file size, so a truncated, padded or foreign file is refused with a
// ropescale::Error instead of being read as garbage.
//
// The forward pass is the one of llama2.c's run.c (RMSNorm eps 1e-5, grouped-query causal
// attention, SwiGLU FFN), batched over a whole sequence: activations are [dim, tokens] column-major
// (token t's vector is contiguous, the [tokens, heads, head_size] layout an engine hands to a
// rotary kernel), every projection is one matrix-matrix product, and attention runs block by block
// over query tokens so that only the causal half of the score matrix is computed.
//
// The rotary step is ropescale's: apply_rotary_qk over the query and key heads with
// PairLayout::kInterleaved (llama2.c rotates channels (2p, 2p+1) of each head by
// pos * 10000^(-2p/head_size)), fed by any angle source (RotaryCache or RotaryFrequencies) built
// from any FactorTable. The identity table reproduces run.c.
#pragma once

#include <Eigen/Core>
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <functional>
#include <limits>
#include <queue>
#include <string>
#include <thread>
#include <tuple>
#include <unordered_map>
#include <utility>
#include <vector>

#include "ropescale/error.hpp"
#include "ropescale/factors.hpp"
#include "ropescale/frequencies.hpp"
#include "ropescale/needle.hpp"
#include "ropescale/rotary.hpp"

namespace llama2c {

using RowMatrixXf = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

/// The seven header fields of a llama2.c checkpoint.
struct Config {
  std::int64_t dim = 0;         ///< residual width
  std::int64_t hidden_dim = 0;  ///< FFN width
  std::int64_t n_layers = 0;
  std::int64_t n_heads = 0;     ///< query heads
  std::int64_t n_kv_heads = 0;  ///< key/value heads (GQA when fewer than n_heads)
  std::int64_t vocab_size = 0;
  std::int64_t seq_len = 0;       ///< training context window
  bool shared_classifier = true;  ///< classifier = token embedding (header vocab_size > 0)

  std::int64_t head_size() const noexcept { return dim / n_heads; }
  std::int64_t kv_dim() const noexcept { return head_size() * n_kv_heads; }
};

/// RMSNorm epsilon of run.c.
constexpr float kRmsEps = 1e-5f;
/// Token ids of llama2.c's sentencepiece vocabularies.
constexpr int kBos = 1;
constexpr int kEos = 2;

namespace detail {

inline ropescale::Error file_error(ropescale::ErrorCode code, const std::string& what,
                                   const std::string& path, const std::string& rule) {
  return ropescale::Error(ropescale::make_status(code, what, path, rule));
}

// Reads a whole file; throws io_error when it cannot be opened or read.
inline std::string read_file(const std::string& path, const char* what) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw file_error(ropescale::ErrorCode::kIoError, what, path, "cannot be opened");
  std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (in.bad()) throw file_error(ropescale::ErrorCode::kIoError, what, path, "read failed");
  return bytes;
}

inline std::int32_t read_i32(const char* p) {
  std::int32_t v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
inline float read_f32(const char* p) {
  float v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

// std::bit_cast for C++17. The builtin, unlike memcpy, lets GCC vectorize a loop that uses it.
template <typename To, typename From>
inline To bit_cast(From from) noexcept {
  static_assert(sizeof(To) == sizeof(From), "bit_cast needs equal sizes");
#if defined(__has_builtin)
#if __has_builtin(__builtin_bit_cast)
#define LLAMA2C_BUILTIN_BIT_CAST 1
#endif
#endif
#ifdef LLAMA2C_BUILTIN_BIT_CAST
  return __builtin_bit_cast(To, from);
#undef LLAMA2C_BUILTIN_BIT_CAST
#else
  To to;
  std::memcpy(&to, &from, sizeof to);
  return to;
#endif
}

}  // namespace detail

/// The weights of a llama2.c model and its batched forward pass.
class Model {
 public:
  struct Layer {
    Eigen::VectorXf rms_att, rms_ffn;
    RowMatrixXf wq, wk, wv, wo, w1, w2, w3;
  };

  /// Loads a legacy (version 0) llama2.c checkpoint. Throws ropescale::Error: io_error when the
  /// file cannot be read, parse_error when the header is implausible or disagrees with the file
  /// size (truncated, padded, a version-1/2 export, or not a checkpoint at all).
  static Model load(const std::string& path) {
    const std::string bytes = detail::read_file(path, "model file");
    return from_bytes(bytes, path);
  }

  /// Parses checkpoint bytes; `name` appears in error messages.
  static Model from_bytes(const std::string& bytes, const std::string& name = "<memory>") {
    using ropescale::ErrorCode;
    constexpr std::int64_t kHeaderBytes = 7 * 4;
    const std::int64_t size = static_cast<std::int64_t>(bytes.size());
    if (size < kHeaderBytes)
      throw detail::file_error(ErrorCode::kParseError, "model file", name,
                               "has " + std::to_string(size) +
                                   " bytes, fewer than the 28-byte llama2.c header (truncated)");
    // llama2.c's newer exports (export.py version 1/2) start with the magic "ak42".
    if (detail::read_i32(bytes.data()) == 0x616b3432)
      throw detail::file_error(ErrorCode::kParseError, "model file", name,
                               "is a version-1/2 llama2.c export (magic 'ak42'); only the legacy "
                               "version-0 layout is supported");
    std::int32_t h[7];
    for (int i = 0; i < 7; ++i) h[i] = detail::read_i32(bytes.data() + 4 * i);
    static const char* const kNames[7] = {"dim",        "hidden_dim", "n_layers", "n_heads",
                                          "n_kv_heads", "vocab_size", "seq_len"};
    constexpr std::int32_t kMaxField = 1 << 20;  // far above any llama2.c model; keeps sizes exact
    for (int i = 0; i < 7; ++i) {
      const std::int64_t v = i == 5 ? std::abs(static_cast<std::int64_t>(h[i])) : h[i];
      if (v <= 0 || v > kMaxField)
        throw ropescale::Error(ropescale::make_status(
            ErrorCode::kParseError, std::string("header ") + kNames[i] + " of " + name, h[i],
            "must be in [1, 2^20]" + std::string(i == 5 ? " in magnitude" : "") +
                "; not a llama2.c checkpoint?"));
    }
    Config c;
    c.dim = h[0];
    c.hidden_dim = h[1];
    c.n_layers = h[2];
    c.n_heads = h[3];
    c.n_kv_heads = h[4];
    c.shared_classifier = h[5] > 0;
    c.vocab_size = std::abs(static_cast<std::int64_t>(h[5]));
    c.seq_len = h[6];
    auto bad = [&](const char* field, std::int64_t value, const std::string& rule) {
      return ropescale::Error(ropescale::make_status(
          ErrorCode::kParseError, std::string("header ") + field + " of " + name, value, rule));
    };
    if (c.dim % c.n_heads != 0 || c.head_size() % 2 != 0)
      throw bad("dim", c.dim,
                "must be a multiple of 2 * n_heads (" + std::to_string(c.n_heads) + ")");
    if (c.n_kv_heads > c.n_heads || c.n_heads % c.n_kv_heads != 0)
      throw bad("n_kv_heads", c.n_kv_heads,
                "must divide n_heads (" + std::to_string(c.n_heads) + ")");

    const std::int64_t L = c.n_layers, d = c.dim, hd = c.hidden_dim, kv = c.kv_dim();
    const std::int64_t floats = c.vocab_size * d + L * d + L * d * d + 2 * L * kv * d + L * d * d +
                                L * d + 3 * L * hd * d + d +
                                c.seq_len * c.head_size() +  // freq_cis_real + freq_cis_imag
                                (c.shared_classifier ? 0 : c.vocab_size * d);
    const std::int64_t expected = kHeaderBytes + 4 * floats;
    if (size != expected)
      throw detail::file_error(
          ErrorCode::kParseError, "model file", name,
          "has " + std::to_string(size) + " bytes but its header (dim " + std::to_string(c.dim) +
              ", hidden " + std::to_string(c.hidden_dim) + ", layers " +
              std::to_string(c.n_layers) + ", heads " + std::to_string(c.n_heads) + "/" +
              std::to_string(c.n_kv_heads) + ", vocab " + std::to_string(h[5]) + ", seq_len " +
              std::to_string(c.seq_len) + ") needs exactly " + std::to_string(expected) +
              (size < expected ? " (truncated)" : " (trailing bytes: wrong format?)"));

    Model m;
    m.config_ = c;
    const char* p = bytes.data() + kHeaderBytes;
    auto take = [&p](Eigen::Index rows, Eigen::Index cols) {
      RowMatrixXf out(rows, cols);
      std::memcpy(out.data(), p, static_cast<std::size_t>(rows * cols) * 4);
      p += rows * cols * 4;
      return out;
    };
    auto take_vec = [&take](Eigen::Index n) -> Eigen::VectorXf { return take(1, n).transpose(); };
    m.token_embedding_ = take(c.vocab_size, d);
    m.layers_.resize(static_cast<std::size_t>(L));
    for (auto& l : m.layers_) l.rms_att = take_vec(d);
    for (auto& l : m.layers_) l.wq = take(d, d);
    for (auto& l : m.layers_) l.wk = take(kv, d);
    for (auto& l : m.layers_) l.wv = take(kv, d);
    for (auto& l : m.layers_) l.wo = take(d, d);
    for (auto& l : m.layers_) l.rms_ffn = take_vec(d);
    for (auto& l : m.layers_) l.w1 = take(hd, d);
    for (auto& l : m.layers_) l.w2 = take(d, hd);
    for (auto& l : m.layers_) l.w3 = take(hd, d);
    m.rms_final_ = take_vec(d);
    p += 4 * c.seq_len * c.head_size();  // legacy freq_cis tables: RoPE comes from ropescale
    m.classifier_ = c.shared_classifier ? m.token_embedding_ : take(c.vocab_size, d);
    for (const RowMatrixXf* w : {&m.token_embedding_, &m.classifier_})
      if (!w->allFinite())
        throw detail::file_error(ErrorCode::kParseError, "model file", name,
                                 "holds non-finite weights");
    return m;
  }

  const Config& config() const noexcept { return config_; }
  const std::vector<Layer>& layers() const noexcept { return layers_; }

  /// The model's RoPE as ropescale describes it: rotary over the whole head, base 10000, trained
  /// at seq_len tokens (run.c hard-codes the base).
  ropescale::RopeSpec rope_spec() const {
    ropescale::RopeSpec s;
    s.head_dim = config_.head_size();
    s.rotary_dim = config_.head_size();
    s.rope_theta = 10000.0;
    s.original_max_position = config_.seq_len;
    return s;
  }

  /// Optional timing of a forward pass (seconds), filled when passed to forward().
  struct Timing {
    double total = 0;
    double rotary = 0;     ///< inside ropescale::rotate
    double attention = 0;  ///< scores, softmax and weighted sum (rotary excluded)
  };

  /// Logits [vocab, tokens] for a whole sequence at positions 0 .. n-1, causal. `angles` is a
  /// ropescale::RotaryCache covering n positions or a ropescale::RotaryFrequencies. Throws
  /// ropescale::Error on an out-of-vocabulary token or an angle source that does not fit.
  template <typename Angles>
  Eigen::MatrixXf forward(const std::vector<int>& tokens, const Angles& angles,
                          Timing* timing = nullptr) const {
    using Clock = std::chrono::steady_clock;
    const auto t_start = Clock::now();
    const Config& c = config_;
    const Eigen::Index n = static_cast<Eigen::Index>(tokens.size());
    if (n == 0)
      throw ropescale::Error(ropescale::make_status(ropescale::ErrorCode::kInvalidArgument,
                                                    "tokens.size()", 0, "must be > 0"));
    if (angles.pairs() != c.head_size() / 2)
      throw ropescale::Error(ropescale::make_status(
          ropescale::ErrorCode::kInvalidArgument, "angles.pairs()", angles.pairs(),
          "must equal head_size / 2 = " + std::to_string(c.head_size() / 2)));
    const Eigen::Index d = c.dim, hs = c.head_size(), kvd = c.kv_dim();
    Eigen::MatrixXf x(d, n);
    for (Eigen::Index t = 0; t < n; ++t) {
      const int id = tokens[static_cast<std::size_t>(t)];
      if (id < 0 || id >= c.vocab_size)
        throw ropescale::Error(ropescale::make_status(
            ropescale::ErrorCode::kInvalidArgument, "tokens[" + std::to_string(t) + "]", id,
            "must be in [0, " + std::to_string(c.vocab_size) + ")"));
      x.col(t) = token_embedding_.row(id).transpose();
    }
    std::vector<std::int64_t> positions(static_cast<std::size_t>(n));
    for (Eigen::Index t = 0; t < n; ++t) positions[static_cast<std::size_t>(t)] = t;

    Eigen::MatrixXf xn(d, n), q(d, n), k(kvd, n), v(kvd, n), att(d, n);
    Eigen::MatrixXf h1(c.hidden_dim, n), h3(c.hidden_dim, n);
    Eigen::MatrixXf qs, scores, o;
    const float scale = 1.0f / std::sqrt(static_cast<float>(hs));
    const Eigen::Index kv_mul = c.n_heads / c.n_kv_heads;
    for (const Layer& l : layers_) {
      rms_norm(x, l.rms_att, xn);
      q.noalias() = l.wq * xn;
      k.noalias() = l.wk * xn;
      v.noalias() = l.wv * xn;
      const auto t_rot = Clock::now();
      ropescale::throw_if_error(ropescale::rotate(
          angles, positions.data(),
          ropescale::HeadsView<float>::tokens_heads_dim(q.data(), n, c.n_heads, hs),
          ropescale::HeadsView<float>::tokens_heads_dim(k.data(), n, c.n_kv_heads, hs),
          ropescale::PairLayout::kInterleaved));
      const auto t_att = Clock::now();
      for (Eigen::Index g = 0; g < c.n_kv_heads; ++g)
        attend_group(q, kv_mul, k.middleRows(g * hs, hs), v.middleRows(g * hs, hs), scale, att,
                     g * kv_mul * hs, qs, scores, o);
      if (timing) {
        timing->rotary += std::chrono::duration<double>(t_att - t_rot).count();
        timing->attention += std::chrono::duration<double>(Clock::now() - t_att).count();
      }
      x.noalias() += l.wo * att;
      rms_norm(x, l.rms_ffn, xn);
      h1.noalias() = l.w1 * xn;
      h3.noalias() = l.w3 * xn;
      // SwiGLU: silu(w1 x) * (w3 x), silu(a) = a / (1 + exp(-a)).
      h1.array() = h1.array() / ((-h1.array()).exp() + 1.0f) * h3.array();
      x.noalias() += l.w2 * h1;
    }
    rms_norm(x, rms_final_, xn);
    Eigen::MatrixXf logits = classifier_ * xn;
    if (timing) timing->total += std::chrono::duration<double>(Clock::now() - t_start).count();
    return logits;
  }

 private:
  static void rms_norm(const Eigen::MatrixXf& x, const Eigen::VectorXf& w, Eigen::MatrixXf& out) {
    const Eigen::RowVectorXf inv =
        ((x.colwise().squaredNorm().array() / static_cast<float>(x.rows())) + kRmsEps).rsqrt();
    out.noalias() = w.asDiagonal() * x * inv.asDiagonal();
  }

  // Causal attention for the query heads that share one key/value head (GQA): softmax(q^T k /
  // sqrt(hs)) times v. q: the group's query heads stacked, hs rows each; k, v: [hs, n] blocks.
  // Queries go in blocks: block [a, a + nq) needs keys [0, a + nq) only, so about
  // half of the n x n scores is never computed, and the group's heads share one product with k and
  // one with v. scores: [keys, group * nq] column-major, one query's scores contiguous.
  template <typename K, typename V>
  static void attend_group(const Eigen::MatrixXf& q, Eigen::Index group, const K& k, const V& v,
                           float scale, Eigen::MatrixXf& out, Eigen::Index out_row,
                           Eigen::MatrixXf& qs, Eigen::MatrixXf& scores, Eigen::MatrixXf& o) {
    const Eigen::Index n = q.cols(), hs = k.rows();
    // Up to 128 queries per block, fewer as the keys grow, so the score block stays near 512 KiB.
    constexpr Eigen::Index kScoreFloats = Eigen::Index{1} << 17;
    const Eigen::Index block =
        std::max<Eigen::Index>(16, std::min<Eigen::Index>(128, kScoreFloats / (n * group)));
    for (Eigen::Index a = 0; a < n; a += block) {
      const Eigen::Index nq = std::min(block, n - a), nk = a + nq;
      qs.resize(hs, group * nq);
      for (Eigen::Index g = 0; g < group; ++g)
        qs.middleCols(g * nq, nq) = q.block(out_row + g * hs, a, hs, nq) * scale;
      scores.resize(nk, group * nq);
      scores.noalias() = k.leftCols(nk).transpose() * qs;
      Eigen::RowVectorXf inv_sum(group * nq);
      for (Eigen::Index c = 0; c < group * nq; ++c) {
        const Eigen::Index valid = a + c % nq + 1;  // query a + c % nq sees keys 0 .. itself
        float* col = scores.col(c).data();
        const float mx = scores.col(c).head(valid).maxCoeff();
        exp_shifted(col, valid, mx);
        inv_sum[c] = 1.0f / scores.col(c).head(valid).sum();
        scores.col(c).tail(nk - valid).setZero();
      }
      o.resize(hs, group * nq);
      o.noalias() = v.leftCols(nk) * scores;
      for (Eigen::Index g = 0; g < group; ++g)
        out.block(out_row + g * hs, a, hs, nq) =
            o.middleCols(g * nq, nq) * inv_sum.segment(g * nq, nq).asDiagonal();
    }
  }

  // x[j] = exp(x[j] - shift) for x[j] <= shift (finite), flushing results below 2^-126 to 0.
  // Cephes' expf polynomial (max relative error 1e-7 on the softmax range) in straight-line float
  // and int32 arithmetic, so that the loop vectorizes at the baseline ISA (the softmax is ~40% of a
  // 4096-token forward pass and Eigen's exp is slow without SSE4.1).
  static void exp_shifted(float* x, Eigen::Index n, float shift) noexcept {
    for (Eigen::Index j = 0; j < n; ++j) {
      const float v = x[j] - shift;
      const float t = v * 1.44269504088896341f + 12582912.0f;  // 1.5 * 2^23: round to integer
      const float nf = t - 12582912.0f;
      float r = v - nf * 0.693359375f;  // ln 2 split in two (Cody-Waite)
      r = r - nf * -2.12194440e-4f;
      float p = 1.9875691500e-4f;
      p = p * r + 1.3981999507e-3f;
      p = p * r + 8.3334519073e-3f;
      p = p * r + 4.1665795894e-2f;
      p = p * r + 1.6666665459e-1f;
      p = p * r + 5.0000001201e-1f;
      p = p * r * r + r + 1.0f;
      // Biased exponent of 2^n from the low bits of t; unsigned so that no input overflows.
      std::int32_t e = static_cast<std::int32_t>(detail::bit_cast<std::uint32_t>(t) -
                                                 std::uint32_t{0x4B400000} + std::uint32_t{127});
      e = e < 1 ? 0 : e;  // underflow: exp(v) < 2^-126 -> 0
      e = e > 254 ? 254 : e;
      x[j] = p * detail::bit_cast<float>(e * (1 << 23));
    }
  }

  Config config_;
  RowMatrixXf token_embedding_;
  std::vector<Layer> layers_;
  Eigen::VectorXf rms_final_;
  RowMatrixXf classifier_;
};

/// llama2.c's tokenizer: a sentencepiece vocabulary with scores, encoded by greedy highest-score
/// pair merging over UTF-8 characters with byte fallback (run.c `encode`), decoded piece by piece.
class Tokenizer {
 public:
  /// Reads a llama2.c tokenizer file (int32 max_token_length, then per token a float32 score, an
  /// int32 length and the bytes) holding exactly `vocab_size` tokens, the model's vocabulary.
  /// Throws ropescale::Error: io_error (cannot read), parse_error (truncated, trailing bytes,
  /// implausible lengths or scores, or a vocabulary without the pieces encode() needs: the byte
  /// pieces <0x00>..<0xFF> at ids 3..258 and " ").
  static Tokenizer load(const std::string& path, std::int64_t vocab_size) {
    return from_bytes(detail::read_file(path, "tokenizer file"), vocab_size, path);
  }

  static Tokenizer from_bytes(const std::string& bytes, std::int64_t vocab_size,
                              const std::string& name = "<memory>") {
    using ropescale::ErrorCode;
    if (vocab_size <= 0 || vocab_size > (1 << 20))
      throw ropescale::Error(ropescale::make_status(ErrorCode::kInvalidArgument, "vocab_size",
                                                    vocab_size, "must be in [1, 2^20]"));
    const std::size_t size = bytes.size();
    auto fail = [&](const std::string& rule) {
      return detail::file_error(ErrorCode::kParseError, "tokenizer file", name, rule);
    };
    if (size < 4) throw fail("has " + std::to_string(size) + " bytes: truncated header");
    const std::int32_t max_len = detail::read_i32(bytes.data());
    if (max_len <= 0 || max_len > 1024)
      throw fail("max_token_length " + std::to_string(max_len) +
                 " is not in [1, 1024]: not a llama2.c tokenizer?");
    Tokenizer tok;
    tok.vocab_.resize(static_cast<std::size_t>(vocab_size));
    tok.scores_.resize(static_cast<std::size_t>(vocab_size));
    std::size_t p = 4;
    for (std::int64_t i = 0; i < vocab_size; ++i) {
      if (size - p < 8)
        throw fail("ends inside token " + std::to_string(i) + " of " + std::to_string(vocab_size) +
                   " (truncated, or vocab_size mismatch)");
      const float score = detail::read_f32(bytes.data() + p);
      const std::int32_t len = detail::read_i32(bytes.data() + p + 4);
      p += 8;
      if (!std::isfinite(score) || len < 0 || len > max_len)
        throw fail("token " + std::to_string(i) + " has score " + std::to_string(score) +
                   " and length " + std::to_string(len) + " (max_token_length " +
                   std::to_string(max_len) + "): corrupt or not a llama2.c tokenizer");
      if (size - p < static_cast<std::size_t>(len))
        throw fail("ends inside token " + std::to_string(i) + " (truncated)");
      tok.vocab_[static_cast<std::size_t>(i)] = bytes.substr(p, static_cast<std::size_t>(len));
      tok.scores_[static_cast<std::size_t>(i)] = score;
      p += static_cast<std::size_t>(len);
    }
    if (p != size)
      throw fail("has " + std::to_string(size - p) + " trailing bytes after " +
                 std::to_string(vocab_size) + " tokens (vocab_size mismatch or wrong format)");
    for (std::int64_t i = static_cast<std::int64_t>(tok.vocab_.size()) - 1; i >= 0; --i)
      tok.lookup_[tok.vocab_[static_cast<std::size_t>(i)]] = static_cast<int>(i);
    // The pieces encode() relies on (run.c's sentencepiece layout): BOS 1 and EOS 2, the 256
    // byte-fallback pieces "<0x00>".."<0xFF>" at ids 3..258 (a character with no piece becomes
    // its bytes + 3), and the " " piece of the dummy prefix.
    if (vocab_size < 3 + 256)
      throw fail("holds " + std::to_string(vocab_size) +
                 " tokens: needs at least 259 (BOS, EOS and 256 byte pieces at ids 3..258)");
    for (int b = 0; b < 256; ++b) {
      char want[8];
      std::snprintf(want, sizeof want, "<0x%02X>", b);
      if (tok.vocab_[static_cast<std::size_t>(3 + b)] != want)
        throw fail("token " + std::to_string(3 + b) + " is not the byte piece " + want +
                   " (byte fallback needs <0x00>..<0xFF> at ids 3..258)");
    }
    if (tok.find(" ") < 0) throw fail("has no \" \" piece (encode prefixes every text with one)");
    return tok;
  }

  std::int64_t vocab_size() const noexcept { return static_cast<std::int64_t>(vocab_.size()); }
  const std::string& piece(int id) const { return vocab_.at(static_cast<std::size_t>(id)); }

  /// Token id of an exact piece, or -1.
  int find(const std::string& piece) const {
    auto it = lookup_.find(piece);
    return it == lookup_.end() ? -1 : it->second;
  }

  /// Encodes like run.c's encode(text, bos, eos): a dummy " " prefix for non-empty text, one token
  /// per UTF-8 character (or its bytes + 3 when the character is not a piece), then repeatedly the
  /// adjacent pair whose concatenation has the highest score (leftmost on ties) is merged. A heap
  /// replaces run.c's quadratic rescans; the merge order is the same.
  std::vector<int> encode(const std::string& text, bool bos = false, bool eos = false) const {
    std::vector<int> ids;
    if (bos) ids.push_back(kBos);
    std::vector<int> sym;
    sym.reserve(text.size() + 1);
    if (!text.empty()) sym.push_back(find(" "));
    std::string ch;
    for (std::size_t i = 0; i < text.size(); ++i) {
      const unsigned char b = static_cast<unsigned char>(text[i]);
      if ((b & 0xC0) != 0x80) ch.clear();
      ch.push_back(static_cast<char>(b));
      const bool next_continues =
          i + 1 < text.size() && (static_cast<unsigned char>(text[i + 1]) & 0xC0) == 0x80;
      if (next_continues && ch.size() < 4) continue;
      const int id = find(ch);
      if (id != -1) {
        sym.push_back(id);
      } else {
        for (unsigned char cb : ch) sym.push_back(static_cast<int>(cb) + 3);
      }
      ch.clear();
    }
    merge(sym);
    ids.insert(ids.end(), sym.begin(), sym.end());
    if (eos) ids.push_back(kEos);
    return ids;
  }

  /// run.c's decode(prev, token): BOS followed by a piece that starts with a space drops the space;
  /// "<0xHH>" pieces are raw bytes.
  std::string decode(int prev, int token) const {
    const std::string& p = piece(token);
    const char* s = p.c_str();
    if (prev == kBos && s[0] == ' ') ++s;
    unsigned int byte = 0;
    if (p.size() == 6 && std::sscanf(s, "<0x%02X>", &byte) == 1)
      return std::string(1, static_cast<char>(byte));
    return std::string(s);
  }

  /// Decodes a sequence (starting from BOS context, as generation does).
  std::string decode(const std::vector<int>& tokens, int prev = kBos) const {
    std::string out;
    for (int t : tokens) {
      out += decode(prev, t);
      prev = t;
    }
    return out;
  }

 private:
  int merged_id(int a, int b) const {
    const std::size_t key =
        static_cast<std::size_t>(a) * vocab_.size() + static_cast<std::size_t>(b);
    if (merge_cache_.empty()) merge_cache_.assign(vocab_.size() * vocab_.size(), -2);
    int& slot = merge_cache_[key];
    if (slot == -2)
      slot = find(vocab_[static_cast<std::size_t>(a)] + vocab_[static_cast<std::size_t>(b)]);
    return slot;
  }

  void merge(std::vector<int>& sym) const {
    const int n = static_cast<int>(sym.size());
    if (n < 2) return;
    std::vector<int> prev(static_cast<std::size_t>(n)), next(static_cast<std::size_t>(n));
    std::vector<char> alive(static_cast<std::size_t>(n), 1);
    for (int i = 0; i < n; ++i) {
      prev[static_cast<std::size_t>(i)] = i - 1;
      next[static_cast<std::size_t>(i)] = i + 1 < n ? i + 1 : -1;
    }
    // Candidate (score, left, right, left id, right id): highest score first, then leftmost.
    using Cand = std::tuple<float, int, int, int, int>;
    auto worse = [](const Cand& x, const Cand& y) {
      if (std::get<0>(x) != std::get<0>(y)) return std::get<0>(x) < std::get<0>(y);
      return std::get<1>(x) > std::get<1>(y);
    };
    std::priority_queue<Cand, std::vector<Cand>, decltype(worse)> heap(worse);
    auto push = [&](int l, int r) {
      if (l < 0 || r < 0) return;
      const int m = merged_id(sym[static_cast<std::size_t>(l)], sym[static_cast<std::size_t>(r)]);
      if (m >= 0)
        heap.emplace(scores_[static_cast<std::size_t>(m)], l, r, sym[static_cast<std::size_t>(l)],
                     sym[static_cast<std::size_t>(r)]);
    };
    for (int i = 0; i + 1 < n; ++i) push(i, i + 1);
    while (!heap.empty()) {
      const Cand c = heap.top();
      heap.pop();
      const int l = std::get<1>(c), r = std::get<2>(c);
      const auto ul = static_cast<std::size_t>(l), ur = static_cast<std::size_t>(r);
      if (!alive[ul] || !alive[ur] || next[ul] != r || sym[ul] != std::get<3>(c) ||
          sym[ur] != std::get<4>(c))
        continue;  // stale: one side was merged since
      sym[ul] = merged_id(sym[ul], sym[ur]);
      alive[ur] = 0;
      next[ul] = next[ur];
      if (next[ur] >= 0) prev[static_cast<std::size_t>(next[ur])] = l;
      push(prev[ul], l);
      push(l, next[ul]);
    }
    std::vector<int> out;
    for (int i = 0; i >= 0; i = next[static_cast<std::size_t>(i)])
      out.push_back(sym[static_cast<std::size_t>(i)]);
    sym.swap(out);
  }

  std::vector<std::string> vocab_;
  std::vector<float> scores_;
  std::unordered_map<std::string, int> lookup_;
  mutable std::vector<int> merge_cache_;
};

/// TinyStories text as the model was trained on it: paragraphs (separated by blank lines) are
/// stripped and joined with a single "\n".
inline std::string join_paragraphs(const std::string& text) {
  std::string out;
  std::size_t pos = 0;
  auto is_space = [](char ch) { return ch == ' ' || ch == '\n' || ch == '\t' || ch == '\r'; };
  while (pos <= text.size()) {
    std::size_t end = text.find("\n\n", pos);
    if (end == std::string::npos) end = text.size();
    std::size_t a = pos, b = end;
    while (a < b && is_space(text[a])) ++a;
    while (b > a && is_space(text[b - 1])) --b;
    if (b > a) {
      if (!out.empty()) out += '\n';
      out.append(text, a, b - a);
    }
    pos = end + 2;
  }
  return out;
}

/// Sum of next-token negative log-likelihoods (nats) over a window. The model reads
/// `window[0 .. n-1)` and is scored on predicting `window[1 .. n)`.
template <typename Angles>
double window_nll(const Model& model, const Angles& angles, const std::vector<int>& window,
                  Model::Timing* timing = nullptr) {
  const std::vector<int> input(window.begin(), window.end() - 1);
  const Eigen::MatrixXf logits = model.forward(input, angles, timing);  // [vocab, tokens]
  // ropescale's plain loss: row t of the [tokens, vocab] logits predicts token t + 1.
  const std::vector<ropescale::TokenId> ids(window.begin(), window.end());
  return ropescale::mean_nll(logits.transpose(), ids).value() * static_cast<double>(logits.cols());
}

/// Evaluation windows for context length `length`: BOS followed by `length` consecutive text
/// tokens, non-overlapping, starting at token `begin` of the text, at most `count` of them. The
/// model reads the first `length` tokens of a window (BOS and length - 1 text tokens, positions
/// 0 .. length-1) and is scored on each of the `length` text tokens once.
inline std::vector<std::vector<int>> make_windows(const std::vector<int>& text, std::int64_t begin,
                                                  std::int64_t length, std::int64_t count) {
  std::vector<std::vector<int>> out;
  for (std::int64_t w = 0; w < count; ++w) {
    const std::int64_t a = begin + w * length;
    if (a < 0 || a + length > static_cast<std::int64_t>(text.size())) break;
    std::vector<int> win;
    win.reserve(static_cast<std::size_t>(length + 1));
    win.push_back(kBos);
    win.insert(win.end(), text.begin() + a, text.begin() + a + length);
    out.push_back(std::move(win));
  }
  return out;
}

/// Mean next-token NLL (nats per token) over windows with one factor table, spread over
/// `threads` threads. `progress(done, total)` (optional) is called from the calling thread after
/// each window it finishes and once at the end.
inline double mean_nll(
    const Model& model, const ropescale::FactorTable& table,
    const std::vector<std::vector<int>>& windows, int threads = 1,
    const std::function<void(std::size_t done, std::size_t total)>& progress = nullptr) {
  if (windows.empty())
    throw ropescale::Error(ropescale::make_status(ropescale::ErrorCode::kInvalidArgument,
                                                  "windows.size()", 0, "must be > 0"));
  std::size_t longest = 0;
  for (const auto& w : windows) {
    if (w.size() < 2)
      throw ropescale::Error(ropescale::make_status(ropescale::ErrorCode::kInvalidArgument,
                                                    "window size", w.size(), "must be >= 2"));
    longest = std::max(longest, w.size());
  }
  const ropescale::RotaryCache cache(model.rope_spec(), table, static_cast<std::int64_t>(longest));
  std::vector<double> sums(windows.size(), 0.0);
  std::atomic<std::size_t> next{0}, done{0};
  auto work = [&](bool report) {
    for (std::size_t i = next++; i < windows.size(); i = next++) {
      sums[i] = window_nll(model, cache, windows[i]);
      const std::size_t d = ++done;
      if (report && progress) progress(d, windows.size());
    }
  };
  const int helpers = std::max(0, std::min(threads, static_cast<int>(windows.size())) - 1);
  std::vector<std::thread> pool;
  for (int i = 0; i < helpers; ++i) pool.emplace_back(work, false);
  work(true);
  for (auto& t : pool) t.join();
  if (progress) progress(windows.size(), windows.size());
  double total = 0;
  std::int64_t count = 0;
  for (std::size_t i = 0; i < windows.size(); ++i) {
    total += sums[i];
    count += static_cast<std::int64_t>(windows[i].size()) - 1;
  }
  return total / static_cast<double>(count);
}

/// Greedy (temperature 0) continuation of `prompt` by `steps` tokens with plain or rescaled RoPE;
/// returns the generated tokens only. Each step reruns the whole sequence (no KV cache): simple
/// and exact, and fine for the few dozen tokens a check needs.
inline std::vector<int> generate_greedy(const Model& model, const ropescale::FactorTable& table,
                                        std::vector<int> prompt, std::int64_t steps) {
  const ropescale::RotaryFrequencies freqs(model.rope_spec(), table);
  std::vector<int> out;
  for (std::int64_t s = 0; s < steps; ++s) {
    const Eigen::MatrixXf logits = model.forward(prompt, freqs);
    Eigen::Index best = 0;
    logits.col(logits.cols() - 1).maxCoeff(&best);
    const int id = static_cast<int>(best);
    out.push_back(id);
    prompt.push_back(id);
  }
  return out;
}

}  // namespace llama2c
