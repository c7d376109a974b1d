// Needle documents (exact length, needle placement, answer mask, reproducibility) and the
// answer-token NLL / perplexity arithmetic against hand computations.
#include <gtest/gtest.h>

#include <Eigen/Core>
#include <cmath>
#include <cstdint>
#include <set>
#include <string>
#include <vector>

#include "ropescale/needle.hpp"

using ropescale::NeedleDocument;
using ropescale::NeedleOptions;
using ropescale::NeedleTemplate;
using ropescale::TokenId;

namespace {

// Token ids chosen so that every piece is recognizable in the output.
NeedleTemplate test_template() {
  NeedleTemplate t;
  t.bos = {1};
  t.preamble = {10, 11, 12};
  t.key = {20, 21};
  t.needle_head = {30, 31};
  t.needle_middle = {32};
  t.needle_tail = {33};
  t.question_head = {40};
  t.question_tail = {41, 42};
  t.answer_head = {50};
  t.answer_tail = {51, 52};
  return t;
}

// Digits d -> 500 + d, after a "space" token 99 (a digit-splitting tokenizer).
ropescale::ValueTokenizer test_tokenizer() {
  return ropescale::digit_value_tokenizer({500, 501, 502, 503, 504, 505, 506, 507, 508, 509}, {99});
}

std::vector<TokenId> haystack(int n) {
  std::vector<TokenId> h(static_cast<std::size_t>(n));
  for (int i = 0; i < n; ++i) h[static_cast<std::size_t>(i)] = 1000 + i;
  return h;
}

std::vector<TokenId> slice(const std::vector<TokenId>& v, std::int64_t begin, std::int64_t end) {
  return std::vector<TokenId>(v.begin() + begin, v.begin() + end);
}

std::vector<TokenId> value_tokens(const std::string& value) {
  std::vector<TokenId> out{99};
  for (char ch : value) out.push_back(500 + (ch - '0'));
  return out;
}

}  // namespace

TEST(Needle, DocumentStructureWithTheNeedleAtTheStart) {
  const std::vector<TokenId> hay = haystack(5000);
  NeedleOptions opt;
  opt.length = 1024;
  opt.seed = 17;
  const NeedleDocument d =
      ropescale::make_needle_document(hay, test_template(), test_tokenizer(), opt, 3).value();
  ASSERT_EQ(d.tokens.size(), 1024u);
  ASSERT_EQ(d.positions.size(), 1024u);
  ASSERT_EQ(d.answer_mask.size(), 1024u);
  for (std::size_t i = 0; i < d.positions.size(); ++i)
    EXPECT_EQ(d.positions[i], static_cast<std::int64_t>(i));

  // The value: 7 digits in [1000000, 9999999].
  ASSERT_EQ(d.value.size(), 7u);
  const long value = std::stol(d.value);
  EXPECT_GE(value, 1000000);
  EXPECT_LE(value, 9999999);
  const std::vector<TokenId> vt = value_tokens(d.value);

  // [bos] preamble, then the needle sentence immediately (LongRoPE2 places it at the start).
  EXPECT_EQ(slice(d.tokens, 0, 4), (std::vector<TokenId>{1, 10, 11, 12}));
  EXPECT_EQ(d.needle_begin, 4);
  std::vector<TokenId> needle{30, 31, 20, 21, 32};
  needle.insert(needle.end(), vt.begin(), vt.end());
  needle.push_back(33);
  EXPECT_EQ(slice(d.tokens, d.needle_begin, d.needle_end), needle);
  EXPECT_EQ(d.depth, 0.0);

  // Then a contiguous run of the haystack from the document's offset.
  const std::int64_t fixed = 4 + static_cast<std::int64_t>(needle.size()) + 1 + 2 + 2 + 1 + 2 + 2 +
                             static_cast<std::int64_t>(vt.size());
  EXPECT_EQ(d.haystack_tokens, 1024 - fixed);
  EXPECT_EQ(slice(d.tokens, d.needle_end, d.needle_end + d.haystack_tokens),
            slice(hay, d.haystack_offset, d.haystack_offset + d.haystack_tokens));
  EXPECT_GE(d.haystack_offset, 0);
  EXPECT_LE(d.haystack_offset + d.haystack_tokens, 5000);

  // Question, answer prefix, then the answer: the value tokens, the only masked positions.
  EXPECT_EQ(slice(d.tokens, d.needle_end + d.haystack_tokens, d.answer_begin),
            (std::vector<TokenId>{40, 20, 21, 41, 42, 50, 20, 21, 51, 52}));
  EXPECT_EQ(d.answer_end, 1024);
  EXPECT_EQ(d.answer_begin, 1024 - static_cast<std::int64_t>(vt.size()));
  EXPECT_EQ(slice(d.tokens, d.answer_begin, d.answer_end), vt);
  for (std::int64_t i = 0; i < 1024; ++i)
    EXPECT_EQ(d.answer_mask[static_cast<std::size_t>(i)], i >= d.answer_begin ? 1 : 0) << i;
}

TEST(Needle, SeededAndReproducible) {
  const std::vector<TokenId> hay = haystack(4000);
  NeedleOptions opt;
  opt.length = 512;
  opt.seed = 5;
  const auto docs =
      ropescale::make_needle_documents(hay, test_template(), test_tokenizer(), opt, 10).value();
  ASSERT_EQ(docs.size(), 10u);
  std::set<std::string> values;
  std::set<std::int64_t> offsets;
  for (std::size_t k = 0; k < docs.size(); ++k) {
    // Document k depends on (seed, k) only.
    const NeedleDocument again =
        ropescale::make_needle_document(hay, test_template(), test_tokenizer(), opt, k).value();
    EXPECT_EQ(again.tokens, docs[k].tokens);
    EXPECT_EQ(again.value, docs[k].value);
    EXPECT_EQ(docs[k].tokens.size(), 512u);
    values.insert(docs[k].value);
    offsets.insert(docs[k].haystack_offset);
  }
  EXPECT_GE(values.size(), 9u);  // 7-digit values collide with probability ~5e-6
  EXPECT_GE(offsets.size(), 9u);
  opt.seed = 6;
  EXPECT_NE(ropescale::make_needle_document(hay, test_template(), test_tokenizer(), opt, 0)
                    .value()
                    .value +
                std::to_string(
                    ropescale::make_needle_document(hay, test_template(), test_tokenizer(), opt, 0)
                        .value()
                        .haystack_offset),
            docs[0].value + std::to_string(docs[0].haystack_offset));
  opt.random_offset = false;
  EXPECT_EQ(ropescale::make_needle_document(hay, test_template(), test_tokenizer(), opt, 0)
                .value()
                .haystack_offset,
            0);
}

TEST(Needle, NeedleAtADepthAndSnappedToABoundary) {
  std::vector<TokenId> hay = haystack(3000);
  NeedleOptions opt;
  opt.length = 1000;
  opt.depth = 0.25;
  opt.random_offset = false;
  const NeedleDocument d =
      ropescale::make_needle_document(hay, test_template(), test_tokenizer(), opt).value();
  const std::int64_t cut = std::llround(0.25 * static_cast<double>(d.haystack_tokens));
  EXPECT_EQ(d.needle_begin, 4 + cut);
  EXPECT_EQ(slice(d.tokens, 4, 4 + cut), slice(hay, 0, cut));
  EXPECT_EQ(d.tokens[static_cast<std::size_t>(d.needle_end)], hay[static_cast<std::size_t>(cut)]);
  EXPECT_NEAR(d.depth, 0.25, 1.0 / static_cast<double>(d.haystack_tokens));
  EXPECT_EQ(d.tokens.size(), 1000u);

  // Newline tokens (7) at haystack indices 100 and 250: the needle goes right after the
  // nearest one to the requested cut.
  hay[100] = 7;
  hay[250] = 7;
  opt.boundary_tokens = {7};
  opt.depth = 210.0 / static_cast<double>(d.haystack_tokens);  // cut 210: 251 is nearer than 101
  const NeedleDocument b =
      ropescale::make_needle_document(hay, test_template(), test_tokenizer(), opt).value();
  EXPECT_EQ(b.needle_begin, 4 + 251);
  EXPECT_EQ(b.tokens[static_cast<std::size_t>(b.needle_begin - 1)], 7);
  opt.depth = 150.0 / static_cast<double>(d.haystack_tokens);  // cut 150: 101 is nearer
  EXPECT_EQ(ropescale::make_needle_document(hay, test_template(), test_tokenizer(), opt)
                .value()
                .needle_begin,
            4 + 101);
  opt.depth = 1.0;  // the very end of the haystack is always a valid place
  const NeedleDocument e =
      ropescale::make_needle_document(hay, test_template(), test_tokenizer(), opt).value();
  EXPECT_EQ(e.needle_begin, 4 + e.haystack_tokens);
  EXPECT_EQ(e.depth, 1.0);
}

TEST(Needle, RejectsBadInput) {
  const std::vector<TokenId> hay = haystack(100);
  NeedleOptions opt;
  opt.length = 20;  // the template alone needs 36 tokens
  EXPECT_THROW(ropescale::make_needle_document(hay, test_template(), test_tokenizer(), opt).value(),
               ropescale::Error);
  opt.length = 200;  // needs 164 haystack tokens, only 100
  try {
    ropescale::make_needle_document(hay, test_template(), test_tokenizer(), opt).value();
    FAIL() << "accepted a short haystack";
  } catch (const ropescale::Error& e) {
    EXPECT_NE(std::string(e.what()).find("haystack.size()"), std::string::npos) << e.what();
  }
  opt.length = 120;
  opt.depth = 1.5;
  EXPECT_THROW(ropescale::make_needle_document(hay, test_template(), test_tokenizer(), opt).value(),
               ropescale::Error);
  opt.depth = 0.0;
  EXPECT_THROW(
      ropescale::make_needle_document(
          hay, test_template(), [](const std::string&) { return std::vector<TokenId>{}; }, opt)
          .value(),
      ropescale::Error);
  EXPECT_EQ(
      ropescale::make_needle_document(hay, test_template(), ropescale::ValueTokenizer{}, opt, 0)
          .status()
          .argument(),
      "tokenize");
  // Exactly the template's size: a document with no haystack at all.
  opt.length = 36;
  const NeedleDocument tight =
      ropescale::make_needle_document(hay, test_template(), test_tokenizer(), opt).value();
  EXPECT_EQ(tight.tokens.size(), 36u);
  EXPECT_EQ(tight.haystack_tokens, 0);
}

TEST(NeedleScore, AnswerNllMatchesAHandComputation) {
  // Four tokens, vocabulary 4. Row t predicts token t + 1.
  //   row 0 = ln[1, 2, 3, 4]          -> p = [.1, .2, .3, .4]; target token 3: -ln 0.4 = ln 2.5
  //   row 1 = [0, 0, 0, 0]            -> p = 1/4;               target token 1: ln 4
  //   row 2 = 1000 + [0, 0, 0, ln 5]  -> p(2) = 1/8;            target token 2: ln 8
  Eigen::MatrixXd logits(3, 4);
  logits.row(0) << 0.0, std::log(2.0), std::log(3.0), std::log(4.0);
  logits.row(1).setZero();
  logits.row(2) << 1000.0, 1000.0, 1000.0, 1000.0 + std::log(5.0);
  const std::vector<TokenId> tokens{0, 3, 1, 2};
  const std::vector<std::uint8_t> answer{0, 1, 0, 1};
  const double expect = 0.5 * (std::log(2.5) + std::log(8.0));  // = ln(20) / 2
  // 1000 + ln 5 is stored with an error up to ulp(1000) / 2 = 5.7e-14: hence 1e-12 below.
  EXPECT_NEAR(ropescale::mean_nll(logits, tokens, answer).value(), expect, 1e-12);
  EXPECT_NEAR(std::exp(ropescale::mean_nll(logits, tokens, answer).value()), std::sqrt(20.0),
              1e-12);
  // Plain NLL over all predicted tokens.
  EXPECT_NEAR(ropescale::mean_nll(logits, tokens).value(),
              (std::log(2.5) + std::log(4.0) + std::log(8.0)) / 3.0, 1e-12);
  // From log-probabilities, and from a row-major float buffer (a model's output).
  EXPECT_NEAR(ropescale::mean_nll(ropescale::detail::log_softmax(logits).value(), tokens, answer, 0,
                                  ropescale::Scores::kLogProbs)
                  .value(),
              expect, 1e-12);
  const Eigen::Matrix<float, 3, 4, Eigen::RowMajor> lf = logits.cast<float>();
  EXPECT_NEAR(ropescale::mean_nll(lf, tokens, answer).value(), expect, 1e-4);
  // A model that returned logits for positions 2.. only (first_row = 2): row 0 predicts token 3.
  EXPECT_NEAR(ropescale::mean_nll(Eigen::MatrixXd(logits.bottomRows(1)), tokens,
                                  std::vector<std::uint8_t>{0, 0, 0, 1}, 2)
                  .value(),
              std::log(8.0), 1e-12);

  // Stable for logits far outside exp's range.
  Eigen::MatrixXf huge(1, 3);
  huge << 3e38f, 3e38f, -3e38f;
  EXPECT_NEAR(ropescale::mean_nll(huge, std::vector<TokenId>{0, 1}, std::vector<std::uint8_t>{0, 1})
                  .value(),
              std::log(2.0), 1e-12);
  const Eigen::MatrixXd ls = ropescale::detail::log_softmax(logits).value();
  for (Eigen::Index r = 0; r < 3; ++r) EXPECT_NEAR(ls.row(r).array().exp().sum(), 1.0, 1e-12);
  EXPECT_NEAR(ls(2, 3), std::log(5.0 / 8.0), 1e-12);
}

TEST(NeedleScore, AnswerNllOnANeedleDocument) {
  // A document's answer NLL uses exactly its answer positions: give the true answer token
  // probability 1/2 at the answer rows and check ln 2; every other row is noise.
  NeedleOptions opt;
  opt.length = 64;
  opt.seed = 1;
  const NeedleDocument d =
      ropescale::make_needle_document(haystack(100), test_template(), test_tokenizer(), opt)
          .value();
  const Eigen::Index vocab = 1200;
  Eigen::MatrixXf logits = Eigen::MatrixXf::Random(64, vocab) * 5.0f;
  for (std::int64_t p = d.answer_begin; p < d.answer_end; ++p) {
    logits.row(p - 1).setConstant(0.0f);
    logits(p - 1, d.tokens[static_cast<std::size_t>(p)]) = std::log(static_cast<float>(vocab - 1));
  }
  EXPECT_NEAR(ropescale::mean_nll(logits, d).value(), std::log(2.0), 1e-6);
  EXPECT_NEAR(ropescale::mean_nll(ropescale::detail::log_softmax(logits).value(), d, 0,
                                  ropescale::Scores::kLogProbs)
                  .value(),
              std::log(2.0), 1e-6);
  // The logits of the last row (predicting nothing) may be absent.
  EXPECT_NEAR(ropescale::mean_nll(Eigen::MatrixXf(logits.topRows(63)), d).value(), std::log(2.0),
              1e-6);
}

TEST(NeedleScore, PerplexityIsExpOfTheMeanDocumentLoss) {
  EXPECT_NEAR(ropescale::perplexity({std::log(2.0), std::log(8.0)}).value(), 4.0, 1e-14);
  EXPECT_NEAR(ropescale::perplexity({0.0}).value(), 1.0, 0.0);
  EXPECT_THROW(ropescale::perplexity({}).value(), ropescale::Error);
  EXPECT_THROW(ropescale::perplexity({std::nan("")}).value(), ropescale::Error);

  // The search fitness built from documents: exp(mean of the per-document losses).
  NeedleOptions opt;
  opt.length = 64;
  auto docs =
      ropescale::make_needle_documents(haystack(200), test_template(), test_tokenizer(), opt, 3)
          .value();
  const auto fitness =
      ropescale::needle_perplexity_fitness(docs, [](const ropescale::FactorTable& t,
                                                    const NeedleDocument& doc) {
        return t.factors()[0] * static_cast<double>(doc.value[0] - '0');
      }).value();
  const ropescale::FactorTable table(Eigen::ArrayXd::Constant(4, 0.5));
  const double mean =
      0.5 * ((docs[0].value[0] - '0') + (docs[1].value[0] - '0') + (docs[2].value[0] - '0')) / 3.0;
  EXPECT_NEAR(fitness(table), std::exp(mean), 1e-12);
}

TEST(NeedleScore, RejectsBadInput) {
  Eigen::MatrixXd logits = Eigen::MatrixXd::Zero(3, 4);
  const std::vector<TokenId> tokens{0, 3, 1, 2};
  // The first token has no predicting row.
  EXPECT_FALSE(ropescale::mean_nll(logits, tokens, {1, 0, 0, 0}).ok());
  // A target outside the vocabulary.
  EXPECT_EQ(
      ropescale::mean_nll(logits, std::vector<TokenId>{0, 9, 1, 2}, {0, 1, 0, 0}).status().code(),
      ropescale::ErrorCode::kOutOfRange);
  // Too few rows for the last target.
  EXPECT_EQ(
      ropescale::mean_nll(Eigen::MatrixXd(logits.topRows(2)), tokens, {0, 0, 0, 1}).status().code(),
      ropescale::ErrorCode::kOutOfRange);
  // Mask size and an empty mask.
  EXPECT_FALSE(ropescale::mean_nll(logits, tokens, {0, 1}).ok());
  EXPECT_FALSE(ropescale::mean_nll(logits, tokens, {0, 0, 0, 0}).ok());
  EXPECT_THROW(ropescale::mean_nll(logits, tokens, {0, 0, 0, 0}).value(), ropescale::Error);
}
