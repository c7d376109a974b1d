#include "tasks.hpp"

#include <algorithm>
#include <fstream>
#include <sstream>

#include "ropescale/error.hpp"

namespace tiny_llama {

using ropescale::ErrorCode;
using ropescale::make_status;
using ropescale::throw_if_error;

namespace {

const char* const kNames[] = {"Anna", "Ben",  "Lily", "Max",  "Sara", "Tom", "Mia",
                              "Sam",  "Lucy", "Jack", "Emma", "Leo",  "Zoe", "Tim",
                              "Ella", "Finn", "Ruby", "Noah", "Ivy",  "Owen"};
constexpr int kNumNames = sizeof(kNames) / sizeof(kNames[0]);

std::int64_t uniform(std::mt19937_64& rng, std::int64_t lo, std::int64_t hi) {  // [lo, hi]
  return std::uniform_int_distribution<std::int64_t>(lo, hi)(rng);
}

Sequence from_bytes(const std::string& bytes) {
  // bytes holds T + 1 tokens: inputs bytes[0..T), targets bytes[1..T].
  Sequence s;
  const std::size_t n = bytes.size() - 1;
  s.tokens.resize(n);
  s.targets.resize(n);
  s.loss_weight.assign(n, 0.0f);
  for (std::size_t t = 0; t < n; ++t) {
    s.tokens[t] = static_cast<unsigned char>(bytes[t]);
    s.targets[t] = static_cast<unsigned char>(bytes[t + 1]);
  }
  return s;
}

std::string text_window(std::mt19937_64& rng, const std::string& text, std::int64_t n) {
  if (static_cast<std::int64_t>(text.size()) <= n)
    throw_if_error(make_status(ErrorCode::kInvalidArgument, "text bytes",
                               static_cast<std::int64_t>(text.size()),
                               "must exceed the window of " + std::to_string(n)));
  const std::int64_t start = uniform(rng, 0, static_cast<std::int64_t>(text.size()) - n);
  std::string w = text.substr(static_cast<std::size_t>(start), static_cast<std::size_t>(n));
  for (char& c : w)
    if (c == '\n') c = ' ';
  return w;
}

}  // namespace

Corpus Corpus::load(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw_if_error(make_status(ErrorCode::kIoError, "text", path, "cannot be opened"));
  std::ostringstream ss;
  ss << in.rdbuf();
  const std::string all = ss.str();
  if (all.size() < 10000)
    throw_if_error(make_status(ErrorCode::kParseError, "text", path, "holds under 10000 bytes"));
  std::size_t cut = all.size() * 9 / 10;
  const std::size_t nl = all.find('\n', cut);
  if (nl != std::string::npos) cut = nl + 1;
  Corpus c;
  c.train = all.substr(0, cut);
  c.held_out = all.substr(cut);
  return c;
}

Sequence make_copy_row(std::mt19937_64& rng, const CopyOptions& o) {
  if (o.symbols < 2 || o.symbols > 26 || o.min_span < 2 || o.max_span < o.min_span ||
      o.length < 2 * o.max_span + 2)
    throw_if_error(make_status(ErrorCode::kInvalidArgument, "CopyOptions", o.length,
                               "needs 2 <= symbols <= 26, 2 <= min_span <= max_span and "
                               "length >= 2 max_span + 2"));
  std::string row(static_cast<std::size_t>(o.length + 1), 'a');
  for (char& c : row) c = static_cast<char>('a' + uniform(rng, 0, o.symbols - 1));
  const std::int64_t span = uniform(rng, o.min_span, o.max_span);
  const std::int64_t first = uniform(rng, 0, o.length + 1 - 2 * span);
  const std::int64_t second = uniform(rng, first + span, o.length + 1 - span);
  for (std::int64_t i = 0; i < span; ++i)
    row[static_cast<std::size_t>(second + i)] = row[static_cast<std::size_t>(first + i)];
  Sequence s = from_bytes(row);
  // Target index t predicts row[t + 1]: the repeat's tokens after its first one.
  for (std::int64_t t = second; t < second + span - 1; ++t)
    s.loss_weight[static_cast<std::size_t>(t)] = 1.0f;
  return s;
}

NeedleRow make_needle_row(std::mt19937_64& rng, const std::string& text, const NeedleOptions& o) {
  if (o.needles < 1 || o.needles > kNumNames || o.digits < 1 || o.digits > 12)
    throw_if_error(make_status(ErrorCode::kInvalidArgument, "NeedleOptions", o.needles,
                               "needs 1 <= needles <= 20 and 1 <= digits <= 12"));
  std::vector<int> names(kNumNames);
  for (int i = 0; i < kNumNames; ++i) names[static_cast<std::size_t>(i)] = i;
  std::shuffle(names.begin(), names.end(), rng);
  std::vector<std::string> keys, values, sentences;
  std::int64_t needle_bytes = 0;
  for (std::int64_t i = 0; i < o.needles; ++i) {
    keys.push_back(std::string(" The pass key of ") + kNames[names[static_cast<std::size_t>(i)]] +
                   " is ");
    std::string v;
    for (std::int64_t d = 0; d < o.digits; ++d)
      v.push_back(static_cast<char>('0' + uniform(rng, 0, 9)));
    values.push_back(v);
    sentences.push_back(keys.back() + v + ".");
    needle_bytes += static_cast<std::int64_t>(sentences.back().size());
  }
  const std::int64_t total = o.length + 1;
  const std::int64_t filler = total - 2 * needle_bytes;
  if (filler < 8)
    throw_if_error(make_status(ErrorCode::kInvalidArgument, "NeedleOptions.length", o.length,
                               "too short for the needles and questions"));
  const std::string fill = text_window(rng, text, filler);
  std::vector<std::int64_t> at(static_cast<std::size_t>(o.needles));
  for (std::int64_t i = 0; i < o.needles; ++i) {
    const double depth = (i == 0 && o.depth >= 0.0)
                             ? o.depth
                             : std::uniform_real_distribution<double>(0.0, 1.0)(rng);
    at[static_cast<std::size_t>(i)] =
        static_cast<std::int64_t>(depth * static_cast<double>(filler));
  }
  std::vector<std::size_t> order(static_cast<std::size_t>(o.needles));
  for (std::size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::sort(order.begin(), order.end(),
            [&](std::size_t a, std::size_t b) { return at[a] < at[b]; });
  std::string row;
  std::int64_t cursor = 0;
  for (std::size_t i : order) {
    row += fill.substr(static_cast<std::size_t>(cursor), static_cast<std::size_t>(at[i] - cursor));
    row += sentences[i];
    cursor = at[i];
  }
  row += fill.substr(static_cast<std::size_t>(cursor));
  // Questions in a fresh random order, answers carry the loss.
  std::vector<std::size_t> ask(order.size());
  for (std::size_t i = 0; i < ask.size(); ++i) ask[i] = i;
  std::shuffle(ask.begin(), ask.end(), rng);
  if (o.ask_last_first > 0.0 &&
      std::uniform_real_distribution<double>(0.0, 1.0)(rng) < o.ask_last_first)
    std::iter_swap(ask.begin(), std::find(ask.begin(), ask.end(), order.back()));
  NeedleRow out;
  std::vector<std::pair<std::int64_t, std::int64_t>> spans;
  for (std::size_t i : ask) {
    row += keys[i];
    const std::int64_t begin = static_cast<std::int64_t>(row.size()) - 1;  // target index
    row += values[i];
    spans.emplace_back(begin, begin + o.digits);
    row += ".";
  }
  out.seq = from_bytes(row);
  for (const auto& sp : spans)
    for (std::int64_t t = sp.first; t < sp.second; ++t)
      out.seq.loss_weight[static_cast<std::size_t>(t)] = 1.0f;
  out.answers = spans;
  return out;
}

std::size_t needle_name_count() noexcept { return kNumNames; }
const char* needle_name(std::size_t i) noexcept { return kNames[i % kNumNames]; }

Sequence make_text_row(std::mt19937_64& rng, const std::string& text, std::int64_t length) {
  Sequence s = from_bytes(text_window(rng, text, length + 1));
  std::fill(s.loss_weight.begin(), s.loss_weight.end(), 1.0f);
  return s;
}

Sequence make_paragraph_row(std::mt19937_64& rng, const std::string& text,
                            std::int64_t max_length) {
  if (max_length < 2 || static_cast<std::int64_t>(text.size()) < 4)
    throw_if_error(make_status(ErrorCode::kInvalidArgument, "max_length", max_length,
                               "must be >= 2 with a text of at least 4 bytes"));
  // The paragraph after a random point: from the byte after the next blank line to the next one.
  const std::size_t from =
      static_cast<std::size_t>(uniform(rng, 0, static_cast<std::int64_t>(text.size()) - 1));
  std::size_t begin = text.find("\n\n", from);
  begin = begin == std::string::npos ? 0 : begin + 2;
  if (begin >= text.size()) begin = 0;
  std::size_t end = text.find("\n\n", begin);
  end = end == std::string::npos ? text.size() : end;
  std::string p = text.substr(
      begin, std::min<std::size_t>(end - begin, static_cast<std::size_t>(max_length) + 1));
  if (p.size() < 2) p = text.substr(0, 2);
  Sequence s = from_bytes(p);
  std::fill(s.loss_weight.begin(), s.loss_weight.end(), 1.0f);
  return s;
}

NeedleScore score_needles(const Matrix& log_probs, const NeedleRow& row) {
  NeedleScore sc;
  for (const auto& sp : row.answers) {
    bool ok = true;
    for (std::int64_t t = sp.first; t < sp.second; ++t) {
      const auto col = log_probs.col(static_cast<Eigen::Index>(t));
      Eigen::Index best = 0;
      col.maxCoeff(&best);
      const int target = row.seq.targets[static_cast<std::size_t>(t)];
      ok = ok && best == target;
      sc.answer_nll -= static_cast<double>(col(target));
      ++sc.answer_tokens;
    }
    sc.correct += ok ? 1 : 0;
    ++sc.total;
  }
  return sc;
}

}  // namespace tiny_llama
