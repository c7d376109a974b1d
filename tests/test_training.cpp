// Mixed context window helpers: the Hugging Face selection rule at the window boundary, and the
// packing invariants (every token exactly once, no attention across documents in short
// segments, cu_seqlens and the dense mask describe the same blocks).
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <vector>

#include "ropescale/training.hpp"

namespace {

using ropescale::DocumentPiece;
using ropescale::ErrorCode;
using ropescale::LongPacking;
using ropescale::MaskKind;
using ropescale::PackedSegment;
using ropescale::PackingPlan;
using ropescale::PackOptions;
using ropescale::PositionMatrix;
using ropescale::RopeWindow;

// Phi-4-mini's original_max_position_embeddings, read from its config (tests/data).
std::int64_t phi4_original() {
  std::ifstream in(std::string(ROPESCALE_TEST_DATA_DIR) + "/phi4_mini_instruct.json");
  EXPECT_TRUE(in.good());
  const nlohmann::json j = nlohmann::json::parse(in);
  return j.at("original_max_position_embeddings").get<std::int64_t>();
}

std::vector<std::int64_t> iota_positions(std::int64_t n) {
  std::vector<std::int64_t> p(static_cast<std::size_t>(n));
  for (std::int64_t t = 0; t < n; ++t) p[static_cast<std::size_t>(t)] = t;
  return p;
}

// ------------------------------------------------------------------------------------------
// Selection
// ------------------------------------------------------------------------------------------

TEST(Selection, HuggingFaceRuleAtTheBoundary) {
  const std::int64_t orig = phi4_original();
  ASSERT_EQ(orig, 4096);
  // Rule: long iff max_position + 1 > original. As max position ids:
  EXPECT_EQ(ropescale::select_window(orig - 1, orig).value(), RopeWindow::kShort);  // 4096 tokens
  EXPECT_EQ(ropescale::select_window(orig, orig).value(), RopeWindow::kLong);       // 4097 tokens
  EXPECT_EQ(ropescale::select_window(orig + 1, orig).value(), RopeWindow::kLong);
  EXPECT_EQ(ropescale::select_window(0, orig).value(), RopeWindow::kShort);
  EXPECT_EQ(ropescale::select_window(std::numeric_limits<std::int64_t>::max(), orig).value(),
            RopeWindow::kLong);
  // As sequence lengths (positions 0 .. n-1): n = original - 1 and original stay short.
  for (std::int64_t n : {orig - 1, orig, orig + 1}) {
    const auto p = iota_positions(n);
    const RopeWindow expected = n > orig ? RopeWindow::kLong : RopeWindow::kShort;
    EXPECT_EQ(ropescale::select_window(p.data(), n, orig).value(), expected) << n;
  }
  ropescale::RopeSpec spec;
  spec.original_max_position = orig;
  EXPECT_EQ(ropescale::select_window(spec, orig - 1).value(), RopeWindow::kShort);
  EXPECT_EQ(ropescale::select_window(spec, orig).value(), RopeWindow::kLong);
}

TEST(Selection, UsesTheMaximumNotTheLastPosition) {
  // Position ids that reset (packed documents): the maximum decides.
  const std::vector<std::int64_t> p = {0, 1, 2, 3, 4, 5, 0, 1};
  EXPECT_EQ(ropescale::select_window(p.data(), 8, 6).value(),
            RopeWindow::kShort);                                                   // max 5, 5+1 = 6
  EXPECT_EQ(ropescale::select_window(p.data(), 8, 5).value(), RopeWindow::kLong);  // 6 > 5
}

TEST(Selection, PerSequenceChoiceForABatch) {
  const std::int64_t orig = 4096;
  PositionMatrix ids(3, 4);
  ids << 0, 1, 2, 4095,  //
      4096, 0, 1, 2,     // max first, not last
      10, 11, 12, 13;
  const ropescale::BatchWindows w = ropescale::select_window(ids, orig).value();
  ASSERT_EQ(w.per_sequence.size(), 3u);
  EXPECT_EQ(w.per_sequence[0], RopeWindow::kShort);
  EXPECT_EQ(w.per_sequence[1], RopeWindow::kLong);
  EXPECT_EQ(w.per_sequence[2], RopeWindow::kShort);
  // Hugging Face takes one maximum over the batch: one long row makes it long.
  EXPECT_EQ(w.batch, RopeWindow::kLong);
  const ropescale::BatchWindows first = ropescale::select_window(ids.topRows(1), orig).value();
  EXPECT_EQ(first.per_sequence, std::vector<RopeWindow>{RopeWindow::kShort});
  EXPECT_EQ(first.batch, RopeWindow::kShort);
  // Only the last row long: the batch follows it.
  const ropescale::BatchWindows last =
      ropescale::select_window(PositionMatrix(ids.bottomRows(2).colwise().reverse()), orig).value();
  EXPECT_EQ(last.per_sequence, (std::vector<RopeWindow>{RopeWindow::kShort, RopeWindow::kLong}));
  EXPECT_EQ(last.batch, RopeWindow::kLong);
}

TEST(Selection, SwitchHappensOnceWhenGenerationCrossesTheWindow) {
  // A server switches tables when the window of the old and the new furthest position differ.
  const std::int64_t orig = 4096;
  const auto switches = [orig](std::int64_t before, std::int64_t after) {
    return ropescale::select_window(before, orig).value() !=
           ropescale::select_window(after, orig).value();
  };
  EXPECT_FALSE(switches(4094, 4095));
  EXPECT_TRUE(switches(4095, 4096));
  EXPECT_FALSE(switches(4096, 4097));
  EXPECT_TRUE(switches(10, 100000));
}

TEST(Selection, RejectsBadArguments) {
  ropescale::Status s = ropescale::select_window(-1, 4096).status();
  EXPECT_EQ(s.code(), ErrorCode::kInvalidArgument);
  EXPECT_EQ(s.argument(), "max_position");
  EXPECT_NE(s.message().find("max_position = -1"), std::string::npos) << s.message();
  s = ropescale::select_window(5, 0).status();
  EXPECT_NE(s.message().find("original_max_position = 0: must be > 0"), std::string::npos);
  EXPECT_THROW(ropescale::select_window(3, -4).value(), ropescale::Error);

  const std::vector<std::int64_t> p = {0, 1, -2};
  s = ropescale::select_window(p.data(), 3, 10).status();
  EXPECT_NE(s.message().find("positions[2] = -2"), std::string::npos) << s.message();
  EXPECT_FALSE(ropescale::select_window(p.data(), 0, 10).ok());
  EXPECT_FALSE(ropescale::select_window(nullptr, 3, 10).ok());

  PositionMatrix ids(1, 2);
  ids << 3, -1;
  s = ropescale::select_window(ids, 10).status();
  EXPECT_NE(s.message().find("position_ids(0, 1) = -1"), std::string::npos) << s.message();
  EXPECT_FALSE(ropescale::select_window(ids, 0).ok());
  EXPECT_THROW(ropescale::select_window(PositionMatrix(0, 3), 10).value(), ropescale::Error);
  ropescale::RopeSpec bad;
  bad.rotary_dim = 7;
  EXPECT_THROW(ropescale::select_window(bad, 3).value(), ropescale::Error);
}

// ------------------------------------------------------------------------------------------
// Packing
// ------------------------------------------------------------------------------------------

// The block (attention group) of every token, from cu_seqlens.
std::vector<std::int64_t> blocks_of(const PackedSegment& s) {
  std::vector<std::int64_t> b(static_cast<std::size_t>(s.length), -1);
  for (std::size_t k = 1; k < s.cu_seqlens.size(); ++k)
    for (std::int64_t t = s.cu_seqlens[k - 1]; t < s.cu_seqlens[k]; ++t)
      b[static_cast<std::size_t>(t)] = static_cast<std::int64_t>(k - 1);
  return b;
}

// Checks every invariant of a plan against the input lengths.
void check_plan(const std::vector<std::int64_t>& lengths, const PackOptions& opt,
                const PackingPlan& plan, bool check_dense) {
  const std::int64_t orig = opt.original_max_position;
  // Token -> how many times it was placed.
  std::vector<std::vector<int>> seen(lengths.size());
  for (std::size_t d = 0; d < lengths.size(); ++d)
    seen[d].assign(static_cast<std::size_t>(lengths[d]), 0);
  std::int64_t total = 0;
  for (const PackedSegment& s : plan.segments) {
    SCOPED_TRACE(testing::Message() << "segment of length " << s.length);
    ASSERT_GT(s.length, 0);
    ASSERT_LE(s.length, opt.segment_length);
    total += s.length;
    // Pieces tile [0, length) in order.
    std::int64_t off = 0;
    bool short_pool = false, long_pool = false;
    for (const DocumentPiece& p : s.pieces) {
      ASSERT_EQ(p.segment_offset, off);
      ASSERT_GT(p.length, 0);
      ASSERT_GE(p.document, 0);
      ASSERT_LT(p.document, static_cast<std::int64_t>(lengths.size()));
      const std::int64_t doc_len = lengths[static_cast<std::size_t>(p.document)];
      ASSERT_LE(p.document_offset + p.length, doc_len);
      for (std::int64_t t = 0; t < p.length; ++t)
        ++seen[static_cast<std::size_t>(p.document)]
              [static_cast<std::size_t>(p.document_offset + t)];
      off += p.length;
      (doc_len <= orig ? short_pool : long_pool) = true;
    }
    ASSERT_EQ(off, s.length);
    ASSERT_FALSE(short_pool && long_pool) << "short and long documents mixed in one segment";

    // Positions: restart per document in short segments (= offset within the document), per
    // piece with document masks in long segments, continuous with full causal attention.
    const std::vector<std::int64_t> pos = s.position_ids().value();
    ASSERT_EQ(static_cast<std::int64_t>(pos.size()), s.length);
    for (const DocumentPiece& p : s.pieces)
      for (std::int64_t t = 0; t < p.length; ++t) {
        const std::int64_t got = pos[static_cast<std::size_t>(p.segment_offset + t)];
        const std::int64_t want = short_pool                               ? p.document_offset + t
                                  : opt.long_mask == MaskKind::kFullCausal ? p.segment_offset + t
                                                                           : t;
        ASSERT_EQ(got, want);
      }
    // Mask kind and window.
    ASSERT_EQ(s.mask, short_pool ? MaskKind::kDocumentCausal : opt.long_mask);
    ASSERT_EQ(s.window, ropescale::select_window(pos.data(), s.length, orig).value());
    if (short_pool) {
      ASSERT_EQ(s.window, RopeWindow::kShort);
    }
    ASSERT_EQ(s.max_position(), *std::max_element(pos.begin(), pos.end()));

    // cu_seqlens: starts at 0, strictly increasing, ends at length; one block per piece with
    // document masks, one block with full causal attention.
    ASSERT_GE(s.cu_seqlens.size(), 2u);
    ASSERT_EQ(s.cu_seqlens.front(), 0);
    ASSERT_EQ(s.cu_seqlens.back(), s.length);
    for (std::size_t k = 1; k < s.cu_seqlens.size(); ++k)
      ASSERT_LT(s.cu_seqlens[k - 1], s.cu_seqlens[k]);
    std::int64_t max_block = 0;
    for (std::size_t k = 1; k < s.cu_seqlens.size(); ++k)
      max_block = std::max(max_block, s.cu_seqlens[k] - s.cu_seqlens[k - 1]);
    ASSERT_EQ(s.max_seqlen(), max_block);
    if (s.mask == MaskKind::kDocumentCausal) {
      ASSERT_EQ(s.cu_seqlens.size(), s.pieces.size() + 1);
      for (std::size_t k = 0; k < s.pieces.size(); ++k)
        ASSERT_EQ(s.cu_seqlens[k], s.pieces[k].segment_offset);
    } else {
      ASSERT_EQ(s.cu_seqlens.size(), 2u);
    }

    if (!check_dense) continue;
    // Dense mask: causal, equal to "same cu_seqlens block and j <= i", and in document-masked
    // segments never across a document piece boundary.
    const ropescale::DenseMask m = s.dense_mask().value();
    ASSERT_EQ(m.rows(), s.length);
    ASSERT_EQ(m.cols(), s.length);
    const std::vector<std::int64_t> block = blocks_of(s);
    std::vector<std::int64_t> doc_of(static_cast<std::size_t>(s.length));
    for (std::size_t k = 0; k < s.pieces.size(); ++k)
      for (std::int64_t t = 0; t < s.pieces[k].length; ++t)
        doc_of[static_cast<std::size_t>(s.pieces[k].segment_offset + t)] =
            static_cast<std::int64_t>(k);
    for (std::int64_t i = 0; i < s.length; ++i)
      for (std::int64_t j = 0; j < s.length; ++j) {
        const bool allowed = m(i, j);
        const auto ui = static_cast<std::size_t>(i), uj = static_cast<std::size_t>(j);
        ASSERT_EQ(allowed, j <= i && block[ui] == block[uj]) << i << "," << j;
        if (s.mask == MaskKind::kDocumentCausal && allowed) {
          ASSERT_EQ(doc_of[ui], doc_of[uj]);
        }
        if (s.mask == MaskKind::kFullCausal) {
          ASSERT_EQ(allowed, j <= i);
        }
      }
  }
  // Every token exactly once.
  ASSERT_EQ(total, plan.total_tokens);
  for (std::size_t d = 0; d < lengths.size(); ++d)
    for (std::size_t t = 0; t < seen[d].size(); ++t)
      ASSERT_EQ(seen[d][t], 1) << "document " << d << " token " << t;
  // Short segments come first, then long ones.
  bool in_long = false;
  for (const PackedSegment& s : plan.segments) {
    const bool is_short_pool = lengths[static_cast<std::size_t>(s.pieces.front().document)] <= orig;
    if (!is_short_pool) in_long = true;
    ASSERT_FALSE(in_long && is_short_pool);
  }
}

const std::vector<std::int64_t> kToyCorpus = {5, 12, 16, 3, 40, 9, 70, 20, 7, 30};

PackOptions toy_options() {
  PackOptions o;
  o.segment_length = 64;
  o.original_max_position = 16;
  return o;
}

TEST(Packing, ToyCorpusByHand) {
  // Short documents (<= 16): 0,1,2,3,5,8 with 5+12+16+3+9+7 = 52 tokens -> one short segment.
  // Long documents 4 (40), 6 (70), 7 (20), 9 (30) back to back in 64-token segments:
  //   [doc4 0..40 | doc6 0..24] [doc6 24..70 | doc7 0..18] [doc7 18..20 | doc9 0..30]
  const PackingPlan plan = ropescale::pack_documents(kToyCorpus, toy_options()).value();
  ASSERT_EQ(plan.segments.size(), 4u);
  EXPECT_EQ(plan.total_tokens, 212);
  EXPECT_EQ(plan.num_documents, 10);
  const PackedSegment& s0 = plan.segments[0];
  EXPECT_EQ(s0.window, RopeWindow::kShort);
  EXPECT_EQ(s0.mask, MaskKind::kDocumentCausal);
  EXPECT_EQ(s0.length, 52);
  EXPECT_EQ(s0.cu_seqlens, (std::vector<std::int64_t>{0, 5, 17, 33, 36, 45, 52}));
  EXPECT_EQ(s0.max_seqlen(), 16);
  EXPECT_EQ(s0.max_position(), 15);
  const std::vector<DocumentPiece> p1 = {{4, 0, 0, 40, 0}, {6, 0, 40, 24, 40}};
  const std::vector<DocumentPiece> p2 = {{6, 24, 0, 46, 0}, {7, 0, 46, 18, 46}};
  const std::vector<DocumentPiece> p3 = {{7, 18, 0, 2, 0}, {9, 0, 2, 30, 2}};
  EXPECT_EQ(plan.segments[1].pieces, p1);
  EXPECT_EQ(plan.segments[2].pieces, p2);
  EXPECT_EQ(plan.segments[3].pieces, p3);
  for (int k = 1; k <= 3; ++k) {
    EXPECT_EQ(plan.segments[static_cast<std::size_t>(k)].window, RopeWindow::kLong);
    EXPECT_EQ(plan.segments[static_cast<std::size_t>(k)].mask, MaskKind::kFullCausal);
  }
  EXPECT_EQ(plan.segments[3].cu_seqlens, (std::vector<std::int64_t>{0, 32}));
  EXPECT_EQ(plan.count(RopeWindow::kShort), 1);
  EXPECT_EQ(plan.count(RopeWindow::kLong), 3);
  EXPECT_DOUBLE_EQ(plan.fill_ratio(), 212.0 / 256.0);
  check_plan(kToyCorpus, toy_options(), plan, true);
}

TEST(Packing, ChunkModeKeepsDocumentsApartAndTailsFollowTheRule) {
  PackOptions o = toy_options();
  o.long_packing = LongPacking::kChunk;
  const PackingPlan plan = ropescale::pack_documents(kToyCorpus, o).value();
  // doc4 -> 40; doc6 -> 64 + 6; doc7 -> 20; doc9 -> 30.
  ASSERT_EQ(plan.segments.size(), 6u);
  const std::vector<std::int64_t> lens = {52, 40, 64, 6, 20, 30};
  for (std::size_t k = 0; k < lens.size(); ++k) {
    EXPECT_EQ(plan.segments[k].length, lens[k]) << k;
    if (k > 0) {
      EXPECT_EQ(plan.segments[k].pieces.size(), 1u);
    }
  }
  // The 6-token tail of doc 6 has positions 0..5: inside the original window, so the Hugging
  // Face rule gives it the short factors although it came from the long pool.
  EXPECT_EQ(plan.segments[3].pieces[0].document_offset, 64);
  EXPECT_EQ(plan.segments[3].window, RopeWindow::kShort);
  EXPECT_EQ(plan.segments[3].mask, MaskKind::kFullCausal);
  check_plan(kToyCorpus, o, plan, true);
}

TEST(Packing, DocumentMasksInLongSegments) {
  PackOptions o = toy_options();
  o.long_mask = MaskKind::kDocumentCausal;
  const PackingPlan plan = ropescale::pack_documents(kToyCorpus, o).value();
  ASSERT_EQ(plan.segments.size(), 4u);
  EXPECT_EQ(plan.segments[1].cu_seqlens, (std::vector<std::int64_t>{0, 40, 64}));
  // doc 6's second piece restarts at position 0 (46 tokens, max position 45 > 15: long).
  EXPECT_EQ(plan.segments[2].pieces[0].first_position, 0);
  EXPECT_EQ(plan.segments[2].window, RopeWindow::kLong);
  check_plan(kToyCorpus, o, plan, true);
}

TEST(Packing, RandomCorporaConserveEveryTokenOnce) {
  std::mt19937_64 rng(2025);
  for (int trial = 0; trial < 40; ++trial) {
    PackOptions o;
    o.original_max_position = 1 + static_cast<std::int64_t>(rng() % 40);
    o.segment_length = o.original_max_position + 1 + static_cast<std::int64_t>(rng() % 100);
    o.long_packing = (trial % 2) ? LongPacking::kChunk : LongPacking::kPack;
    o.long_mask = (trial % 4 < 2) ? MaskKind::kFullCausal : MaskKind::kDocumentCausal;
    std::vector<std::int64_t> lengths(static_cast<std::size_t>(rng() % 60));
    for (auto& n : lengths)
      n = 1 + static_cast<std::int64_t>(
                  rng() % static_cast<std::uint64_t>((rng() % 3 == 0) ? 4 * o.segment_length
                                                                      : o.original_max_position));
    SCOPED_TRACE(testing::Message() << "trial " << trial);
    const PackingPlan plan = ropescale::pack_documents(lengths, o).value();
    check_plan(lengths, o, plan, true);
    if (HasFatalFailure()) return;
  }
}

TEST(Packing, PaperScaleWithoutDenseMasks) {
  // LongRoPE2 Phi3-mini setting: L = 131072, original 4096; a corpus of short and 8k-200k docs.
  PackOptions o;
  o.segment_length = 131072;
  o.original_max_position = 4096;
  std::mt19937_64 rng(7);
  std::vector<std::int64_t> lengths;
  for (int i = 0; i < 300; ++i)
    lengths.push_back(i % 3 == 0 ? 8192 + static_cast<std::int64_t>(rng() % 192000)
                                 : 64 + static_cast<std::int64_t>(rng() % 4033));
  const PackingPlan plan = ropescale::pack_documents(lengths, o).value();
  check_plan(lengths, o, plan, false);
  for (const PackedSegment& s : plan.segments) {
    if (&s == &plan.segments.back()) break;
    if (s.window == RopeWindow::kLong && s.mask == MaskKind::kFullCausal) {
      EXPECT_EQ(s.max_position(), 131071);
    }
  }
  EXPECT_GT(plan.fill_ratio(), 0.98);
  EXPECT_THROW(plan.segments.back().dense_mask().value(), ropescale::Error);
}

TEST(Packing, EmptyCorpusGivesNoSegments) {
  const PackingPlan plan = ropescale::pack_documents({}, toy_options()).value();
  EXPECT_TRUE(plan.segments.empty());
  EXPECT_EQ(plan.total_tokens, 0);
  EXPECT_EQ(plan.fill_ratio(), 0.0);
}

TEST(Packing, RejectsBadArguments) {
  ropescale::Status s = ropescale::pack_documents({4, 0, 3}, toy_options()).status();
  EXPECT_EQ(s.code(), ErrorCode::kInvalidArgument);
  EXPECT_NE(s.message().find("lengths[1] = 0: must be > 0"), std::string::npos) << s.message();
  s = ropescale::pack_documents({-5}, toy_options()).status();
  EXPECT_NE(s.message().find("lengths[0] = -5"), std::string::npos);
  PackOptions o = toy_options();
  o.segment_length = 16;  // == original
  s = ropescale::pack_documents({4}, o).status();
  EXPECT_NE(s.message().find("segment_length = 16: must be > original_max_position (16)"),
            std::string::npos)
      << s.message();
  o = toy_options();
  o.original_max_position = 0;
  EXPECT_THROW(ropescale::pack_documents({4}, o).value(), ropescale::Error);
  o = toy_options();
  o.long_mask = static_cast<MaskKind>(7);
  EXPECT_THROW(ropescale::pack_documents({4}, o).value(), ropescale::Error);
  o = toy_options();
  o.long_packing = static_cast<LongPacking>(7);
  EXPECT_THROW(ropescale::pack_documents({4}, o).value(), ropescale::Error);
  const std::int64_t big = std::numeric_limits<std::int64_t>::max() / 2 + 1;
  s = ropescale::pack_documents({big, big}, toy_options()).status();
  EXPECT_NE(s.message().find("overflows"), std::string::npos) << s.message();

  const PackingPlan ok = ropescale::pack_documents(kToyCorpus, toy_options()).value();
  s = ok.segments[0].dense_mask(51).status();
  EXPECT_NE(s.message().find("segment length = 52: must be <= max_tokens (51)"), std::string::npos)
      << s.message();
  EXPECT_TRUE(ok.segments[0].dense_mask(52).ok());
}

}  // namespace
