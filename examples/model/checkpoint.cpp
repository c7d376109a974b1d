#include "checkpoint.hpp"

#include <sys/stat.h>
#include <cstring>
#include <fstream>
#include <map>
#include <sstream>

#include "ropescale/error.hpp"
#include "ropescale/io/hf_config.hpp"

namespace tiny_llama {

using ropescale::ErrorCode;
using ropescale::make_status;
using ropescale::throw_if_error;
using json = nlohmann::json;

namespace {

[[noreturn]] void fail(ErrorCode code, const std::string& what, const std::string& value,
                       const std::string& why) {
  throw_if_error(make_status(code, what, value, why));
  throw std::logic_error("unreachable");
}

std::string read_all(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0 || !S_ISREG(st.st_mode))
    fail(ErrorCode::kIoError, "path", path, "is not a readable regular file");
  std::ifstream in(path, std::ios::binary);
  if (!in) fail(ErrorCode::kIoError, "path", path, "cannot be opened");
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void write_all(const std::string& path, const std::string& bytes) {
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    if (!out) fail(ErrorCode::kIoError, "path", tmp, "cannot be written");
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    if (!out) fail(ErrorCode::kIoError, "path", tmp, "write failed");
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0)
    fail(ErrorCode::kIoError, "path", path, "rename failed");
}

// HF orientation of a stored tensor: the embedding is kept [dim, vocab] here, [vocab, dim] on disk.
bool stored_transposed(const std::string& name) { return name == "model.embed_tokens.weight"; }

}  // namespace

void save_safetensors(const std::string& path, const Weights& w, const json& metadata) {
  json header = json::object();
  std::string data;
  for (const Tensor& t : w.tensors()) {
    // Row-major [rows, cols] of the HF tensor = column-major bytes of its transpose.
    const Matrix hf = stored_transposed(t.name) ? Matrix(t.value.transpose()) : t.value;
    const Matrix colmajor_of_rowmajor = hf.transpose();
    const std::size_t begin = data.size();
    data.append(reinterpret_cast<const char*>(colmajor_of_rowmajor.data()),
                static_cast<std::size_t>(hf.size()) * sizeof(float));
    json shape = hf.cols() == 1 ? json::array({hf.rows()}) : json::array({hf.rows(), hf.cols()});
    header[t.name] = {{"dtype", "F32"}, {"shape", shape}, {"data_offsets", {begin, data.size()}}};
  }
  json meta = metadata;
  meta["format"] = "pt";
  header["__metadata__"] = meta;
  std::string h = header.dump();
  while ((8 + h.size()) % 8 != 0) h.push_back(' ');  // align the data to 8 bytes
  std::string bytes(8, '\0');
  std::uint64_t n = h.size();
  for (int i = 0; i < 8; ++i)
    bytes[static_cast<std::size_t>(i)] = static_cast<char>((n >> (8 * i)) & 0xff);
  bytes += h;
  bytes += data;
  write_all(path, bytes);
}

Weights load_safetensors(const std::string& path, const Config& config) {
  const std::string bytes = read_all(path);
  if (bytes.size() < 8) fail(ErrorCode::kParseError, "safetensors", path, "shorter than 8 bytes");
  std::uint64_t n = 0;
  for (int i = 7; i >= 0; --i)
    n = (n << 8) | static_cast<unsigned char>(bytes[static_cast<std::size_t>(i)]);
  if (n > bytes.size() - 8)
    fail(ErrorCode::kParseError, "safetensors header length", std::to_string(n),
         "exceeds the file size");
  const json header = json::parse(bytes.begin() + 8, bytes.begin() + 8 + static_cast<long>(n),
                                  nullptr, /*allow_exceptions=*/false);
  if (!header.is_object())
    fail(ErrorCode::kParseError, "safetensors header", path, "is not a JSON object");
  const std::size_t data0 = 8 + static_cast<std::size_t>(n);
  const std::size_t data_size = bytes.size() - data0;
  Weights w(config);
  std::map<std::string, Tensor*> by_name;
  for (Tensor& t : w.tensors()) by_name[t.name] = &t;
  std::size_t seen = 0;
  std::vector<std::pair<std::uint64_t, std::uint64_t>> ranges;
  for (auto it = header.begin(); it != header.end(); ++it) {
    if (it.key() == "__metadata__") continue;
    auto found = by_name.find(it.key());
    if (found == by_name.end())
      fail(ErrorCode::kParseError, "tensor", it.key(), "is not a parameter of this config");
    const json& e = it.value();
    if (!e.is_object() || e.value("dtype", "") != "F32" || !e.contains("shape") ||
        !e.contains("data_offsets") || !e["data_offsets"].is_array() ||
        e["data_offsets"].size() != 2 || !e["data_offsets"][0].is_number_unsigned() ||
        !e["data_offsets"][1].is_number_unsigned())
      fail(ErrorCode::kParseError, "tensor", it.key(), "needs dtype F32, shape and data_offsets");
    Tensor& t = *found->second;
    const Matrix hf_shape = stored_transposed(t.name) ? Matrix(t.value.transpose()) : t.value;
    const json want = hf_shape.cols() == 1 ? json::array({hf_shape.rows()})
                                           : json::array({hf_shape.rows(), hf_shape.cols()});
    if (e["shape"] != want)
      fail(ErrorCode::kParseError, "tensor " + it.key() + " shape", e["shape"].dump(),
           "must be " + want.dump());
    const std::uint64_t b = e["data_offsets"][0], end = e["data_offsets"][1];
    const std::uint64_t need = static_cast<std::uint64_t>(t.value.size()) * sizeof(float);
    if (end < b || end - b != need || end > data_size)
      fail(ErrorCode::kParseError, "tensor " + it.key() + " data_offsets", e["data_offsets"].dump(),
           "must span " + std::to_string(need) + " bytes inside the file");
    ranges.emplace_back(b, end);
    Matrix rowmajor_as_colmajor(hf_shape.cols(), hf_shape.rows());
    std::memcpy(rowmajor_as_colmajor.data(), bytes.data() + data0 + b, need);
    const Matrix hf = rowmajor_as_colmajor.transpose();
    t.value = stored_transposed(t.name) ? Matrix(hf.transpose()) : hf;
    ++seen;
  }
  std::sort(ranges.begin(), ranges.end());
  for (std::size_t i = 1; i < ranges.size(); ++i)
    if (ranges[i].first < ranges[i - 1].second)
      fail(ErrorCode::kParseError, "safetensors", path, "has overlapping tensors");
  if (seen != w.tensors().size())
    fail(ErrorCode::kParseError, "safetensors", path,
         "holds " + std::to_string(seen) + " of the " + std::to_string(w.tensors().size()) +
             " tensors this config needs");
  return w;
}

void save_optimizer(const std::string& dir, const AdamW& opt, const TrainPosition& at) {
  ::mkdir(dir.c_str(), 0755);
  const json meta = {{"step", std::to_string(at.step)},
                     {"stage", std::to_string(at.stage)},
                     {"stage_step", std::to_string(at.stage_step)},
                     {"adam_steps", std::to_string(opt.steps())}};
  save_safetensors(dir + "/optimizer_m.safetensors", opt.first_moment(), meta);
  save_safetensors(dir + "/optimizer_v.safetensors", opt.second_moment(), meta);
}

TrainPosition load_optimizer(const std::string& dir, const Config& config, AdamW& opt) {
  const std::string path = dir + "/optimizer_m.safetensors";
  const std::string bytes = read_all(path);
  std::uint64_t n = 0;
  for (int i = 7; i >= 0 && bytes.size() >= 8; --i)
    n = (n << 8) | static_cast<unsigned char>(bytes[static_cast<std::size_t>(i)]);
  const json header =
      bytes.size() >= 8 && n <= bytes.size() - 8
          ? json::parse(bytes.begin() + 8, bytes.begin() + 8 + static_cast<long>(n), nullptr, false)
          : json();
  const json meta =
      header.is_object() && header.contains("__metadata__") && header["__metadata__"].is_object()
          ? header["__metadata__"]
          : json::object();
  auto field = [&](const char* key) -> std::int64_t {
    const json v = meta.value(key, json());
    std::size_t used = 0;
    long long x = -1;
    if (v.is_string()) {
      const std::string t = v.get<std::string>();
      x = t.empty() ? -1 : std::stoll(t, &used);
      if (used != t.size()) x = -1;
    }
    if (x < 0)
      fail(ErrorCode::kParseError, std::string("optimizer metadata ") + key, path,
           "must be a non-negative integer string");
    return x;
  };
  const TrainPosition at{field("step"), field("stage"), field("stage_step")};
  opt.restore(load_safetensors(path, config),
              load_safetensors(dir + "/optimizer_v.safetensors", config), field("adam_steps"));
  return at;
}

json to_hf_json(const Config& c) {
  return json{{"architectures", {"LlamaForCausalLM"}},
              {"model_type", "llama"},
              {"vocab_size", c.vocab_size},
              {"hidden_size", c.dim},
              {"intermediate_size", c.hidden_dim},
              {"num_hidden_layers", c.n_layers},
              {"num_attention_heads", c.n_heads},
              {"num_key_value_heads", c.n_kv_heads},
              {"head_dim", c.head_dim},
              {"max_position_embeddings", c.max_position_embeddings},
              {"rope_theta", c.rope_theta},
              {"rms_norm_eps", c.rms_norm_eps},
              {"hidden_act", "silu"},
              {"tie_word_embeddings", false},
              {"attention_bias", false},
              {"mlp_bias", false},
              {"torch_dtype", "float32"}};
}

Config config_from_hf_json(const json& j) {
  auto get_int = [&](const char* key) -> std::int64_t {
    if (!j.contains(key) || !j[key].is_number_integer())
      fail(ErrorCode::kParseError, key, j.contains(key) ? j[key].dump() : "missing",
           "must be an integer");
    return j[key].get<std::int64_t>();
  };
  Config c;
  c.vocab_size = get_int("vocab_size");
  c.dim = get_int("hidden_size");
  c.hidden_dim = get_int("intermediate_size");
  c.n_layers = get_int("num_hidden_layers");
  c.n_heads = get_int("num_attention_heads");
  c.n_kv_heads = get_int("num_key_value_heads");
  c.head_dim = get_int("head_dim");
  if (!j.contains("rope_theta") || !j["rope_theta"].is_number())
    fail(ErrorCode::kParseError, "rope_theta", "missing", "must be a number");
  c.rope_theta = j["rope_theta"].get<double>();
  // L_train is the original window: ropescale's importer resolves it (max_position_embeddings
  // alone, or original_max_position_embeddings once rope_scaling extends the model).
  const ropescale::RopeConfig rope = ropescale::parse_hf_config(j);
  c.max_position_embeddings = rope.spec.original_max_position;
  if (rope.spec.rotary_dim != get_int("head_dim") || rope.spec.rope_theta != c.rope_theta)
    fail(ErrorCode::kParseError, "config.json", "rope",
         "must rotate the whole head with rope_theta");
  if (j.contains("rms_norm_eps") && j["rms_norm_eps"].is_number())
    c.rms_norm_eps = j["rms_norm_eps"].get<double>();
  validate(c);
  return c;
}

json byte_tokenizer_json() {
  // GPT-2's byte-to-character map (the ByteLevel pre-tokenizer's): printable Latin-1 bytes map to
  // themselves, the other 68 bytes to U+0100 onwards in byte order.
  auto printable = [](int b) {
    return (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
  };
  json vocab = json::object();
  int extra = 0;
  for (int b = 0; b < 256; ++b) {
    const unsigned cp =
        printable(b) ? static_cast<unsigned>(b) : 256u + static_cast<unsigned>(extra++);
    std::string utf8;
    if (cp < 0x80) {
      utf8 += static_cast<char>(cp);
    } else {
      utf8 += static_cast<char>(0xC0 | (cp >> 6));
      utf8 += static_cast<char>(0x80 | (cp & 0x3F));
    }
    vocab[utf8] = b;
  }
  const json byte_level = {{"type", "ByteLevel"},
                           {"add_prefix_space", false},
                           {"trim_offsets", false},
                           {"use_regex", false}};
  return json{{"version", "1.0"},
              {"truncation", nullptr},
              {"padding", nullptr},
              {"added_tokens", json::array()},
              {"normalizer", nullptr},
              {"pre_tokenizer", byte_level},
              {"post_processor", nullptr},
              {"decoder", byte_level},
              {"model",
               {{"type", "BPE"},
                {"dropout", nullptr},
                {"unk_token", nullptr},
                {"continuing_subword_prefix", nullptr},
                {"end_of_word_suffix", nullptr},
                {"fuse_unk", false},
                {"byte_fallback", false},
                {"vocab", vocab},
                {"merges", json::array()}}}};
}

void save_model_dir(const std::string& dir, const Weights& w, const json& extra) {
  ::mkdir(dir.c_str(), 0755);
  json cfg = to_hf_json(w.config());
  if (extra.is_object())
    for (auto it = extra.begin(); it != extra.end(); ++it) cfg[it.key()] = it.value();
  write_all(dir + "/config.json", cfg.dump(2) + "\n");
  save_safetensors(dir + "/model.safetensors", w);
  if (w.config().vocab_size == 256) {
    write_all(dir + "/tokenizer.json", byte_tokenizer_json().dump(2) + "\n");
    write_all(dir + "/tokenizer_config.json",
              json{{"tokenizer_class", "PreTrainedTokenizerFast"}}.dump(2) + "\n");
  }
}

ropescale::RopeConfig load_rope_config(const std::string& dir) {
  const json cfg = json::parse(read_all(dir + "/config.json"), nullptr, false);
  if (cfg.is_discarded() || !cfg.is_object())
    fail(ErrorCode::kParseError, "config.json", dir, "is not a JSON object");
  return ropescale::parse_hf_config(cfg);
}

Weights load_model_dir(const std::string& dir) {
  const json cfg = json::parse(read_all(dir + "/config.json"), nullptr, false);
  if (cfg.is_discarded() || !cfg.is_object())
    fail(ErrorCode::kParseError, "config.json", dir, "is not a JSON object");
  return load_safetensors(dir + "/model.safetensors", config_from_hf_json(cfg));
}

}  // namespace tiny_llama
