#include "finetune.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <random>

#include "ropescale/error.hpp"
#include "ropescale/training.hpp"

namespace tiny_llama {

using ropescale::ErrorCode;
using ropescale::make_status;
using ropescale::throw_if_error;

const char* to_string(FinetuneMode m) noexcept {
  switch (m) {
    case FinetuneMode::kMixed:
      return "mixed";
    case FinetuneMode::kLongTable:
      return "long_table";
    case FinetuneMode::kLongOnly:
      return "long_only";
  }
  return "?";
}

namespace {

// A document to pack: a row with its targets and loss weights.
Sequence draw_document(std::mt19937_64& rng, const Corpus& corpus, std::int64_t length,
                       bool paragraph, double needle_fraction) {
  if (std::uniform_real_distribution<double>(0.0, 1.0)(rng) < needle_fraction)
    return make_needle_row(
               rng, corpus.train,
               NeedleOptions{length, std::clamp<std::int64_t>(length / 80, 1, 3), 4, -1.0})
        .seq;
  return paragraph ? make_paragraph_row(rng, corpus.train, length)
                   : make_text_row(rng, corpus.train, length);
}

// The segments of a packing plan as rows: pieces copied from their documents, position ids from
// the plan, one document id per piece (per-document causal masks) or one for a full-causal
// segment.
std::vector<std::pair<ropescale::RopeWindow, Sequence>> segments_of(
    const std::vector<Sequence>& docs, const ropescale::PackingPlan& plan) {
  std::vector<std::pair<ropescale::RopeWindow, Sequence>> out;
  for (const ropescale::PackedSegment& seg : plan.segments) {
    Sequence s;
    s.positions = seg.position_ids().value();
    s.tokens.resize(static_cast<std::size_t>(seg.length));
    s.targets.resize(s.tokens.size());
    s.loss_weight.resize(s.tokens.size());
    s.document.resize(s.tokens.size());
    for (std::size_t k = 0; k < seg.pieces.size(); ++k) {
      const ropescale::DocumentPiece& p = seg.pieces[k];
      const Sequence& d = docs[static_cast<std::size_t>(p.document)];
      for (std::int64_t t = 0; t < p.length; ++t) {
        const auto src = static_cast<std::size_t>(p.document_offset + t);
        const auto dst = static_cast<std::size_t>(p.segment_offset + t);
        s.tokens[dst] = d.tokens[src];
        s.targets[dst] = d.targets[src];
        s.loss_weight[dst] = d.loss_weight[src];
        s.document[dst] =
            seg.mask == ropescale::MaskKind::kDocumentCausal ? static_cast<std::int32_t>(k) : 0;
      }
    }
    out.emplace_back(seg.window, std::move(s));
  }
  return out;
}

}  // namespace

void finetune(Weights& w, const MethodTables& tables, const Corpus& corpus,
              const FinetuneOptions& o, const std::function<void(const FinetuneStep&)>& progress) {
  const Config& c = w.config();
  const ropescale::RopeSpec spec = c.rope_spec();
  const std::int64_t L = c.max_position_embeddings;
  if (o.target_length <= L)
    throw_if_error(make_status(ErrorCode::kInvalidArgument, "target_length", o.target_length,
                               "must exceed L_train (" + std::to_string(L) + ")"));
  if (o.tokens_per_step < o.target_length || o.steps < 1)
    throw_if_error(make_status(ErrorCode::kInvalidArgument, "tokens_per_step", o.tokens_per_step,
                               "must hold one long document, with steps >= 1"));
  const ropescale::RotaryCache within(spec, tables.within, o.target_length);
  const ropescale::RotaryCache beyond(spec, tables.beyond, o.target_length);
  AdamW opt(w, AdamW::Options{});
  Weights g_short(c), g_long(c);
  ropescale::PackOptions pack;
  pack.segment_length = o.target_length;
  pack.original_max_position = L;
  const auto t0 = std::chrono::steady_clock::now();
  double trained = 0.0;
  for (std::int64_t step = 0; step < o.steps; ++step) {
    std::mt19937_64 rng(o.seed * 0x9E3779B97F4A7C15ULL + static_cast<std::uint64_t>(step));
    // Long documents first, then (mixed and long-table) short ones up to the step's tokens.
    const bool with_short = o.mode != FinetuneMode::kLongOnly;
    const std::int64_t n_long =
        with_short ? std::min(o.long_documents, o.tokens_per_step / o.target_length)
                   : o.tokens_per_step / o.target_length;
    std::vector<Sequence> docs;
    std::vector<std::int64_t> lengths;
    std::int64_t tokens = 0;
    for (std::int64_t i = 0; i < n_long; ++i) {
      docs.push_back(draw_document(rng, corpus, o.target_length, false, o.needle_fraction));
      tokens += static_cast<std::int64_t>(docs.back().tokens.size());
    }
    while (with_short && tokens < o.tokens_per_step) {
      Sequence d = draw_document(rng, corpus, L, true, o.needle_fraction);
      const std::int64_t room = o.tokens_per_step - tokens;
      if (static_cast<std::int64_t>(d.tokens.size()) > room) {
        if (room < 2) break;
        for (auto* v : {&d.tokens, &d.targets}) v->resize(static_cast<std::size_t>(room));
        d.loss_weight.resize(static_cast<std::size_t>(room));
      }
      tokens += static_cast<std::int64_t>(d.tokens.size());
      docs.push_back(std::move(d));
    }
    trained += static_cast<double>(tokens);
    for (const Sequence& d : docs) lengths.push_back(static_cast<std::int64_t>(d.tokens.size()));
    std::vector<Sequence> short_rows, long_rows;
    // The packing plan's window rule picks each segment's table; long-table overrides it.
    for (auto& ws : segments_of(docs, ropescale::pack_documents(lengths, pack).value()))
      (ws.first == ropescale::RopeWindow::kLong || o.mode == FinetuneMode::kLongTable ? long_rows
                                                                                      : short_rows)
          .push_back(std::move(ws.second));
    // The batch's mean loss: the two groups' gradients weighted by their loss weights.
    LossSum ls, ll;
    if (!short_rows.empty()) ls = batch_gradient(w, Rope{&within}, short_rows, o.threads, g_short);
    if (!long_rows.empty()) ll = batch_gradient(w, Rope{&beyond}, long_rows, o.threads, g_long);
    const double total = ls.weight + ll.weight;
    Weights& g = long_rows.empty() ? g_short : g_long;
    if (!short_rows.empty() && !long_rows.empty()) {
      const float a = static_cast<float>(ls.weight / total),
                  b = static_cast<float>(ll.weight / total);
      for (std::size_t t = 0; t < g.tensors().size(); ++t)
        g.tensors()[t].value = a * g_short.tensors()[t].value + b * g_long.tensors()[t].value;
    }
    require_finite_loss((ls.nll + ll.nll) / total, step + 1);
    double lr = o.lr;
    if (step < o.warmup_steps)
      lr *= static_cast<double>(step + 1) / static_cast<double>(o.warmup_steps);
    opt.step(w, g, lr);
    if (progress) {
      FinetuneStep r;
      r.step = step + 1;
      r.loss = (ls.nll + ll.nll) / total;
      for (const Sequence& s : short_rows) r.short_tokens += static_cast<double>(s.tokens.size());
      for (const Sequence& s : long_rows) r.long_tokens += static_cast<double>(s.tokens.size());
      r.tokens_per_second =
          trained / std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      progress(r);
    }
  }
}

}  // namespace tiny_llama
