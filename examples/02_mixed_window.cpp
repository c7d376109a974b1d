// Mixed context window training in miniature (LongRoPE2 section 3.3).
//
// A toy corpus of short and long documents is packed into 64-token training segments for a model
// whose original window is 16 tokens: short documents keep the original RoPE and a per-document
// causal mask, long ones use rescaled RoPE with continuous positions and full causal attention.
// Then one forward and backward step of a one-head attention (projections Wq, Wk, Wv) runs over
// every segment, with the rotary backward pass carrying the gradient from the rotated queries and
// keys back to the projections, and one SGD step lowers the loss.
#include <Eigen/Core>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <vector>

#include "ropescale/training.hpp"

namespace {

constexpr int kDim = 8;  // model width = head_dim = rotary_dim

// Deterministic uniform numbers in [-1, 1) (splitmix64), identical on every platform.
struct Rng {
  std::uint64_t s;
  double next() {
    std::uint64_t z = (s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    return static_cast<double>(z >> 11) * 0x1.0p-52 - 1.0;
  }
  Eigen::MatrixXd matrix(Eigen::Index r, Eigen::Index c, double scale) {
    Eigen::MatrixXd m(r, c);
    for (Eigen::Index i = 0; i < r; ++i)
      for (Eigen::Index j = 0; j < c; ++j) m(i, j) = scale * next();
    return m;
  }
};

struct Weights {
  Eigen::MatrixXd wq, wk, wv;
};

// One segment's data: token embeddings and regression targets.
struct Batch {
  Eigen::MatrixXd x, y;
};

// Rotates the rows of m (tokens x kDim, one head) in place.
void rotate(const ropescale::RotaryFrequencies& rope, const std::vector<std::int64_t>& pos,
            Eigen::MatrixXd& m, bool backward) {
  // Eigen's default storage is column-major: make the rows contiguous for the kernel.
  Eigen::Matrix<double, Eigen::Dynamic, kDim, Eigen::RowMajor> rows = m;
  const auto view =
      ropescale::HeadsView<double>::tokens_heads_dim(rows.data(), rows.rows(), 1, kDim);
  if (backward)
    ropescale::throw_if_error(ropescale::rotate(rope, pos.data(), view,
                                                ropescale::PairLayout::kHalfSplit,
                                                ropescale::RotaryDirection::kBackward));
  else
    ropescale::throw_if_error(
        ropescale::rotate(rope, pos.data(), view, ropescale::PairLayout::kHalfSplit));
  m = rows;
}

// Loss sum((P V) .* Y) / tokens of one segment; adds the gradients to g when given.
double step(const Weights& w, const Batch& b, const ropescale::PackedSegment& seg,
            const ropescale::RotaryFrequencies& rope, Weights* g) {
  const std::vector<std::int64_t> pos = seg.position_ids().value();
  const ropescale::DenseMask mask = seg.dense_mask().value();
  const double n = static_cast<double>(seg.length);
  Eigen::MatrixXd q = b.x * w.wq, k = b.x * w.wk;
  const Eigen::MatrixXd v = b.x * w.wv;
  rotate(rope, pos, q, false);
  rotate(rope, pos, k, false);
  Eigen::MatrixXd s = q * k.transpose() / std::sqrt(static_cast<double>(kDim));
  Eigen::MatrixXd p = Eigen::MatrixXd::Zero(s.rows(), s.cols());
  for (Eigen::Index i = 0; i < s.rows(); ++i) {
    double mx = -1e300, z = 0;
    for (Eigen::Index j = 0; j < s.cols(); ++j)
      if (mask(i, j)) mx = std::max(mx, s(i, j));
    for (Eigen::Index j = 0; j < s.cols(); ++j)
      if (mask(i, j)) z += (p(i, j) = std::exp(s(i, j) - mx));
    p.row(i) /= z;
  }
  const Eigen::MatrixXd out = p * v;
  const double loss = (out.array() * b.y.array()).sum() / n;
  if (g == nullptr) return loss;
  const Eigen::MatrixXd dout = b.y / n;
  const Eigen::MatrixXd dp = dout * v.transpose();
  Eigen::MatrixXd ds =
      p.array() * (dp.colwise() - (p.array() * dp.array()).rowwise().sum().matrix()).array();
  ds /= std::sqrt(static_cast<double>(kDim));
  Eigen::MatrixXd dq = ds * k, dk = ds.transpose() * q;
  rotate(rope, pos, dq, true);  // dL/d(x Wq) = m R^T dL/dq_rot
  rotate(rope, pos, dk, true);
  g->wq += b.x.transpose() * dq;
  g->wk += b.x.transpose() * dk;
  g->wv += b.x.transpose() * (p.transpose() * dout);
  return loss;
}

}  // namespace

int main() {
  // The model: RoPE over 8 channels, trained on 16 tokens, extended 4x to 64.
  ropescale::RopeSpec spec;
  spec.head_dim = kDim;
  spec.rotary_dim = kDim;
  spec.rope_theta = 10000.0;
  spec.original_max_position = 16;
  // Short windows keep the original RoPE (LongRoPE2 section 3.3); some Hugging Face configs also
  // give them the long table's attention factor, which would go in this table.
  const ropescale::FactorTable short_table(Eigen::ArrayXd::Ones(spec.pairs()), 1.0, "original");
  Eigen::ArrayXd lambda(4);
  lambda << 1.0, 1.5, 3.0, 4.0;  // high frequencies kept, low ones stretched by the 4x factor
  const double mscale = std::sqrt(1.0 + std::log(4.0) / std::log(16.0));  // "su": sqrt(1.5)
  const ropescale::FactorTable long_table(lambda, mscale, "toy longrope");
  const ropescale::RotaryFrequencies short_rope(spec, short_table), long_rope(spec, long_table);

  const std::vector<std::int64_t> corpus = {5, 12, 16, 3, 40, 9, 70, 20, 7, 30};
  ropescale::PackOptions opt;
  opt.segment_length = 64;
  opt.original_max_position = spec.original_max_position;
  const ropescale::PackingPlan plan = ropescale::pack_documents(corpus, opt).value();

  std::printf("corpus: %zu documents, %lld tokens; original window %lld, segment length %lld\n",
              corpus.size(), static_cast<long long>(plan.total_tokens),
              static_cast<long long>(opt.original_max_position),
              static_cast<long long>(opt.segment_length));
  std::printf("plan: %zu segments (%lld short, %lld long), fill %.3f\n", plan.segments.size(),
              static_cast<long long>(plan.count(ropescale::RopeWindow::kShort)),
              static_cast<long long>(plan.count(ropescale::RopeWindow::kLong)), plan.fill_ratio());
  for (std::size_t i = 0; i < plan.segments.size(); ++i) {
    const ropescale::PackedSegment& s = plan.segments[i];
    std::printf(
        "segment %zu: %2lld tokens, %s RoPE (%s), mask %s, max position %lld\n", i,
        static_cast<long long>(s.length), ropescale::to_string(s.window),
        (s.window == ropescale::RopeWindow::kLong ? long_table : short_table).method().c_str(),
        ropescale::to_string(s.mask), static_cast<long long>(s.max_position()));
    std::printf("  cu_seqlens:");
    for (std::int64_t c : s.cu_seqlens) std::printf(" %lld", static_cast<long long>(c));
    std::printf("\n  pieces:");
    for (const ropescale::DocumentPiece& p : s.pieces)
      std::printf(" doc%lld[%lld,%lld)@%lld", static_cast<long long>(p.document),
                  static_cast<long long>(p.document_offset),
                  static_cast<long long>(p.document_offset + p.length),
                  static_cast<long long>(p.first_position));
    std::printf("\n");
  }
  std::printf("mask of segment 0, first 8 tokens (doc0 = tokens 0-4, doc1 from token 5):\n");
  const ropescale::DenseMask m0 = plan.segments[0].dense_mask().value();
  for (int i = 0; i < 8; ++i) {
    std::printf("  ");
    for (int j = 0; j < 8; ++j) std::printf("%c", m0(i, j) ? '#' : '.');
    std::printf("\n");
  }

  // One forward and backward step over every segment.
  Rng rng{2025};
  Weights w{rng.matrix(kDim, kDim, 0.5), rng.matrix(kDim, kDim, 0.5), rng.matrix(kDim, kDim, 0.5)};
  std::vector<Batch> batches;
  for (const ropescale::PackedSegment& s : plan.segments)
    batches.push_back({rng.matrix(s.length, kDim, 1.0), rng.matrix(s.length, kDim, 1.0)});
  auto rope_of = [&](const ropescale::PackedSegment& s) -> const ropescale::RotaryFrequencies& {
    return s.window == ropescale::RopeWindow::kShort ? short_rope : long_rope;
  };
  auto total_loss = [&](const Weights& ww, Weights* g) {
    double l = 0;
    for (std::size_t i = 0; i < plan.segments.size(); ++i)
      l += step(ww, batches[i], plan.segments[i], rope_of(plan.segments[i]), g);
    return l;
  };
  const Eigen::MatrixXd zero = Eigen::MatrixXd::Zero(kDim, kDim);
  Weights g{zero, zero, zero};
  const double loss = total_loss(w, &g);
  std::printf("forward: loss %.4f\n", loss);
  std::printf("backward: |dWq| %.4f  |dWk| %.4f  |dWv| %.4f\n", g.wq.norm(), g.wk.norm(),
              g.wv.norm());

  // The gradient through the rotary backward pass against a central difference.
  const double h = 1e-6;
  Weights wp = w, wm = w;
  wp.wq(2, 5) += h;
  wm.wq(2, 5) -= h;
  const double numeric_q = (total_loss(wp, nullptr) - total_loss(wm, nullptr)) / (2 * h);
  wp = w;
  wm = w;
  wp.wk(6, 1) += h;
  wm.wk(6, 1) -= h;
  const double numeric_k = (total_loss(wp, nullptr) - total_loss(wm, nullptr)) / (2 * h);
  std::printf("check: dL/dWq(2,5) analytic %.5f, finite difference %.5f\n", g.wq(2, 5), numeric_q);
  std::printf("check: dL/dWk(6,1) analytic %.5f, finite difference %.5f\n", g.wk(6, 1), numeric_k);

  const double lr = 0.5;
  Weights next{w.wq - lr * g.wq, w.wk - lr * g.wk, w.wv - lr * g.wv};
  std::printf("SGD step (lr %.1f): loss %.4f -> %.4f\n", lr, loss, total_loss(next, nullptr));
  return 0;
}
