// Seeded mutation fuzzing of the tiny Llama's file readers (examples/tiny_llama/checkpoint.cpp),
// the ones the `ropescale` tool opens: the safetensors header of model.safetensors, the optimizer
// state's metadata that `train --resume` reads, and the architecture fields of config.json.
// Bounded in time like test_hf_config_fuzz (ROPESCALE_FUZZ_SECONDS / ROPESCALE_FUZZ_SEED).
//
// The seeds are files the trainer wrote. Mutations replace a header field (dtype, shape,
// data_offsets, a metadata count) with a hostile value, drop, add, rename or duplicate a tensor,
// swap two tensors' byte ranges, poke NaN/inf into the data, or damage the bytes (the header
// length, a byte of the JSON, truncation). Every input must be refused with a ropescale::Error
// whose short message starts with "ropescale: ", or load into finite weights of the config's
// shapes (a position inside the documented bounds); any other exception, a crash or a sanitizer
// report fails the test.
#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <random>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "checkpoint.hpp"
#include "fuzz_driver.hpp"
#include "ropescale/error.hpp"
#include "tiny_llama.hpp"

namespace {

using nlohmann::json;
using tiny_llama::Config;
using tiny_llama::Weights;

// 1 s per test and at least 200 inputs (fuzz_driver.hpp: ROPESCALE_FUZZ_SECONDS and
// ROPESCALE_FUZZ_SEED override the budget and the seed).
constexpr ropescale_test::FuzzDriver kFuzz{0x5afe7e45ULL, 1.0, 200};

Config tiny_config() {
  Config c;
  c.vocab_size = 16;
  c.dim = 8;
  c.hidden_dim = 12;
  c.n_layers = 2;
  c.n_heads = 2;
  c.n_kv_heads = 1;
  c.head_dim = 4;
  c.max_position_embeddings = 16;
  return c;
}

std::string read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream os;
  os << in.rdbuf();
  return os.str();
}

// A safetensors file split into its JSON header and its data bytes, and put back together.
struct Safetensors {
  json header;
  std::string data;

  static Safetensors parse(const std::string& bytes) {
    std::uint64_t n = 0;
    for (int i = 7; i >= 0; --i)
      n = (n << 8) | static_cast<unsigned char>(bytes[static_cast<std::size_t>(i)]);
    return Safetensors{json::parse(bytes.substr(8, n)), bytes.substr(8 + n)};
  }
  std::string bytes() const {
    const std::string h = header.dump(-1, ' ', false, json::error_handler_t::replace);
    std::string out(8, '\0');
    for (int i = 0; i < 8; ++i)
      out[static_cast<std::size_t>(i)] = static_cast<char>((h.size() >> (8 * i)) & 0xff);
    return out + h + data;
  }
};

class Mutator : public ropescale_test::FuzzRng {
 public:
  using FuzzRng::FuzzRng;

  // A value where the reader expects a dtype string, a shape, an offset pair or a count.
  json hostile_value() {
    switch (below(22)) {
      case 0:
        return nullptr;
      case 1:
        return 5;
      case 2:
        return "F16";
      case 3:
        return "F32";
      case 4:
        return "";
      case 5:
        return -1;
      case 6:
        return std::numeric_limits<std::int64_t>::max();
      case 7:
        return std::numeric_limits<std::uint64_t>::max();
      case 8:
        return json::parse("123456789012345678901234567890");
      case 9:
        return 0.5;
      case 10:
        return std::nan("");
      case 11:
        return json::array();
      case 12:
        return json::array({0, std::numeric_limits<std::uint64_t>::max()});
      case 13:
        return json::array({std::uint64_t{1} << 62, std::uint64_t{1} << 62});
      case 14:
        return json::array({-4, 0});
      case 15:
        return json::array({1 << 20, 1 << 20});
      case 16:  // deep nesting
        return nested(1, 1 + below(3000));
      case 17:
        return std::string((std::size_t{1} << 18) + below(100), coin() ? '7' : 'x');
      case 18:
        return json::object();
      case 19:
        return true;
      case 20:
        return count_string();
      default:
        return static_cast<std::int64_t>(below(4096));
    }
  }

  // A string where a decimal count is expected: digits of any length, signs, spaces, letters.
  std::string count_string() {
    static const char* const kOdd[] = {"abc",
                                       "-1",
                                       " 1",
                                       "1 ",
                                       "+5",
                                       "0x10",
                                       "1e5",
                                       "",
                                       "\xd9\xa3",
                                       "9223372036854775807",
                                       "1000000000000",
                                       "1000000000001",
                                       "00000000000000000000007",
                                       "18446744073709551616"};
    if (coin()) return kOdd[below(sizeof(kOdd) / sizeof(kOdd[0]))];
    std::string s;
    for (std::size_t n = 1 + below(25); n > 0; --n) s.push_back(static_cast<char>('0' + below(10)));
    return s;
  }

  void mutate_header(Safetensors& f) {
    std::vector<std::string> names;
    for (auto it = f.header.begin(); it != f.header.end(); ++it)
      if (it.key() != "__metadata__") names.push_back(it.key());
    if (names.empty()) {
      f.header["lm_head.weight"] = hostile_value();
      return;
    }
    const std::string name = names[below(names.size())];
    json& e = f.header[name];
    static const char* const kFields[] = {"dtype", "shape", "data_offsets"};
    switch (below(11)) {
      case 0:
      case 1:
      case 2:  // a field replaced
        if (e.is_object()) e[kFields[below(3)]] = hostile_value();
        break;
      case 3:  // a field removed
        if (e.is_object()) e.erase(kFields[below(3)]);
        break;
      case 4:  // the tensor removed, or replaced whole
        if (coin())
          f.header.erase(name);
        else
          e = hostile_value();
        break;
      case 5:  // a tensor the config does not have, or a renamed one
        f.header[coin() ? "model.layers.7.mlp.up_proj.weight" : name + "x"] = e;
        if (coin()) f.header.erase(name);
        break;
      case 6: {  // two tensors swap their byte ranges (same size or not)
        const std::string other = names[below(names.size())];
        if (e.is_object() && f.header[other].is_object())
          std::swap(e["data_offsets"], f.header[other]["data_offsets"]);
        break;
      }
      case 7: {  // an offset moved by a few bytes
        if (e.is_object() && e.contains("data_offsets") && e["data_offsets"].is_array() &&
            e["data_offsets"].size() == 2 && e["data_offsets"][0].is_number_unsigned()) {
          const std::uint64_t at = e["data_offsets"][below(2)].get<std::uint64_t>();
          e["data_offsets"][below(2)] = at + below(9) - (coin() ? 4 : 0);
        }
        break;
      }
      case 8:  // a shape transposed or resized
        if (e.is_object() && e.contains("shape") && e["shape"].is_array()) {
          json& s = e["shape"];
          if (s.size() == 2 && coin())
            std::swap(s[0], s[1]);
          else if (coin() && !s.empty())
            s.erase(s.size() - 1);
          else
            s.push_back(1);
        }
        break;
      case 9:  // metadata replaced
        f.header["__metadata__"] = coin() ? hostile_value() : json{{"format", hostile_value()}};
        break;
      default: {  // NaN or inf poked into the data
        if (f.data.size() >= 4) {
          const float bad = coin()
                                ? std::numeric_limits<float>::quiet_NaN()
                                : (coin() ? 1.0f : -1.0f) * std::numeric_limits<float>::infinity();
          std::memcpy(&f.data[below(f.data.size() / 4) * 4], &bad, 4);
        }
        break;
      }
    }
  }

  void mutate_bytes(std::string& s) {
    if (s.empty()) return;
    const std::size_t pos = below(s.size());
    switch (below(4)) {
      case 0:  // the header length
        flip_bit(s, below(std::min<std::size_t>(8, s.size())));
        break;
      case 1:
        flip_bit(s, pos);
        break;
      case 2:
        s.resize(pos);
        break;
      default:
        s.insert(pos, std::string(1 + below(64), coin() ? '[' : '\0'));
        break;
    }
  }
};

enum class Outcome { kAccepted, kRefused, kBroken };

// Runs f: kAccepted when it returns, kRefused for a ropescale::Error with a short message,
// kBroken (and a test failure) for anything else.
template <typename F>
Outcome outcome_of(F f) {
  try {
    f();
    return Outcome::kAccepted;
  } catch (const ropescale::Error& e) {
    const std::string m = e.what();
    EXPECT_EQ(m.rfind("ropescale: ", 0), 0u) << m.substr(0, 300);
    EXPECT_LT(m.size(), 2000u) << m.substr(0, 300);
    return ::testing::Test::HasFailure() ? Outcome::kBroken : Outcome::kRefused;
  } catch (const std::exception& e) {
    ADD_FAILURE() << "not a ropescale::Error: " << e.what();
    return Outcome::kBroken;
  }
}

TEST(SafetensorsFuzz, HeaderAndByteMutations) {
  const Config c = tiny_config();
  const std::string path = testing::TempDir() + "ropescale_safetensors_fuzz.safetensors";
  tiny_llama::save_safetensors(path, Weights::initialized(c, 1));
  const std::string seed_bytes = read_bytes(path);
  const Safetensors seed = Safetensors::parse(seed_bytes);
  Mutator m(kFuzz.seed());
  int iterations = 0, accepted = 0;
  const auto start = std::chrono::steady_clock::now();
  while (!kFuzz.out_of_time(start, iterations)) {
    ++iterations;
    std::string input;
    if (m.below(4) != 0) {
      Safetensors f = seed;
      for (std::size_t k = 1 + m.below(3); k > 0; --k) m.mutate_header(f);
      input = f.bytes();
    } else {
      input = seed_bytes;
      for (std::size_t k = 1 + m.below(3); k > 0; --k) m.mutate_bytes(input);
    }
    std::ofstream(path, std::ios::binary | std::ios::trunc) << input;
    Weights w;
    const Outcome o = outcome_of([&] { w = tiny_llama::load_safetensors(path, c); });
    if (o == Outcome::kAccepted) {  // finite weights of the config's shapes
      ++accepted;
      const std::vector<tiny_llama::TensorShape> shapes = tiny_llama::tensor_shapes(c);
      ASSERT_EQ(w.tensors().size(), shapes.size());
      for (std::size_t i = 0; i < shapes.size(); ++i) {
        ASSERT_EQ(w.tensors()[i].value.rows(), shapes[i].rows);
        ASSERT_EQ(w.tensors()[i].value.cols(), shapes[i].cols);
        ASSERT_TRUE(w.tensors()[i].value.allFinite()) << shapes[i].name;
      }
    }
    if (o == Outcome::kBroken) {
      ADD_FAILURE() << "input header (head): " << input.substr(0, 600);
      return;
    }
  }
  std::remove(path.c_str());
  std::printf("safetensors mutations: %d inputs, %d accepted\n", iterations, accepted);
  EXPECT_GT(accepted, 0);
  EXPECT_LT(accepted, iterations);
}

TEST(OptimizerFuzz, MetadataMutations) {
  const Config c = tiny_config();
  const std::string dir = testing::TempDir() + "ropescale_optimizer_fuzz";
  const Weights w = Weights::initialized(c, 2);
  tiny_llama::save_model_dir(dir, w);
  tiny_llama::save_optimizer(dir, tiny_llama::AdamW(w, {}), tiny_llama::TrainPosition{12, 1, 3});
  const std::string m_path = dir + "/optimizer_m.safetensors";
  const Safetensors seed = Safetensors::parse(read_bytes(m_path));
  static const char* const kKeys[] = {"step", "stage", "stage_step", "adam_steps"};
  Mutator m(kFuzz.seed() + 1);
  int iterations = 0, accepted = 0;
  const auto start = std::chrono::steady_clock::now();
  while (!kFuzz.out_of_time(start, iterations)) {
    ++iterations;
    Safetensors f = seed;
    for (std::size_t k = 1 + m.below(3); k > 0; --k) {
      json& meta = f.header["__metadata__"];
      const char* key = kKeys[m.below(4)];
      if (!meta.is_object()) meta = json::object();
      switch (m.below(5)) {
        case 0:
          meta.erase(key);
          break;
        case 1:
          meta[key] = m.hostile_value();
          break;
        case 2:
          m.mutate_header(f);
          break;
        default:
          meta[key] = m.count_string();
          break;
      }
    }
    std::ofstream(m_path, std::ios::binary | std::ios::trunc) << f.bytes();
    tiny_llama::AdamW opt(w, {});
    tiny_llama::TrainPosition at;
    const Outcome o = outcome_of([&] { at = tiny_llama::load_optimizer(dir, c, opt); });
    if (o == Outcome::kAccepted) {  // every count inside its bound
      ++accepted;
      for (std::int64_t v : {at.step, at.stage, at.stage_step, opt.steps()}) {
        ASSERT_GE(v, 0);
        ASSERT_LE(v, tiny_llama::kMaxTrainSteps);
      }
    }
    if (o == Outcome::kBroken) {
      ADD_FAILURE() << "metadata: "
                    << f.header["__metadata__"]
                           .dump(-1, ' ', false, json::error_handler_t::replace)
                           .substr(0, 600);
      return;
    }
  }
  std::printf("optimizer metadata mutations: %d inputs, %d accepted\n", iterations, accepted);
  EXPECT_GT(accepted, 0);
  EXPECT_LT(accepted, iterations);
}

TEST(ModelConfigFuzz, ArchitectureFieldMutations) {
  static const char* const kKeys[] = {"vocab_size",
                                      "hidden_size",
                                      "intermediate_size",
                                      "num_hidden_layers",
                                      "num_attention_heads",
                                      "num_key_value_heads",
                                      "head_dim",
                                      "rope_theta",
                                      "rms_norm_eps",
                                      "max_position_embeddings"};
  const json seed = tiny_llama::to_hf_json(tiny_config());
  Mutator m(kFuzz.seed() + 2);
  int iterations = 0, accepted = 0;
  const auto start = std::chrono::steady_clock::now();
  while (!kFuzz.out_of_time(start, iterations)) {
    ++iterations;
    json j = seed;
    for (std::size_t k = 1 + m.below(3); k > 0; --k) {
      const char* key = kKeys[m.below(sizeof(kKeys) / sizeof(kKeys[0]))];
      switch (m.below(4)) {
        case 0:
          j.erase(key);
          break;
        case 1:
          j[key] = m.hostile_value();
          break;
        default:  // a size that still reads as one: powers of two up to 2^40
          j[key] = std::int64_t{1} << m.below(41);
          break;
      }
    }
    Config c;
    const Outcome o = outcome_of([&] { c = tiny_llama::config_from_hf_json(j); });
    if (o == Outcome::kAccepted) {  // a config the bounds allow, its shapes listed unallocated
      ++accepted;
      ASSERT_NO_THROW(tiny_llama::validate(c));
      std::int64_t parameters = 0;
      for (const tiny_llama::TensorShape& t : tiny_llama::tensor_shapes(c))
        parameters += t.rows * t.cols;
      ASSERT_LE(parameters, tiny_llama::kMaxParameters);
    }
    if (o == Outcome::kBroken) {
      ADD_FAILURE() << "config: "
                    << j.dump(-1, ' ', false, json::error_handler_t::replace).substr(0, 600);
      return;
    }
  }
  std::printf("config mutations: %d inputs, %d accepted\n", iterations, accepted);
  EXPECT_GT(accepted, 0);
  EXPECT_LT(accepted, iterations);
}

}  // namespace
