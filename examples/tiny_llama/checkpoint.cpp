#include "checkpoint.hpp"

#include <sys/stat.h>

#include <algorithm>
#include <cmath>
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

namespace {

// A value shown as it is in the file (make_status quotes a std::string; JSON text keeps its own
// quotes, so 5, null and "F16" read as they were written).
struct Shown {
  std::string text;
};
std::ostream& operator<<(std::ostream& os, const Shown& v) { return os << v.text; }

// A JSON value for an error message, bounded (a header may hold 100k nested arrays or a huge
// string): scalars as JSON, a short array of scalars in full, anything else by its kind and size.
std::string shown(const json& v) {
  constexpr auto kReplace = json::error_handler_t::replace;
  if (v.is_string())
    return json(v.get_ref<const std::string&>().substr(0, 40)).dump(-1, ' ', false, kReplace);
  if (v.is_object()) return "an object of " + std::to_string(v.size()) + " members";
  if (!v.is_array()) return v.dump();
  bool flat = v.size() <= 4;
  for (const json& e : v) flat = flat && e.is_primitive();
  if (!flat) return "an array of " + std::to_string(v.size()) + " values";
  std::string out = "[";
  for (const json& e : v) out += (out.size() > 1 ? "," : "") + shown(e);
  return out + "]";
}

[[noreturn]] void fail_shown(const std::string& what, const std::string& value,
                             const std::string& why) {
  throw_if_error(make_status(ErrorCode::kParseError, what, Shown{value}, why));
  throw std::logic_error("unreachable");
}
[[noreturn]] void fail_json(const std::string& what, const json& value, const std::string& why) {
  fail_shown(what, shown(value), why);
}

// obj[key] by reference (null when absent): a copy of a hostile value (100k nested arrays)
// would recurse as deep as it is nested.
const json& member(const json& obj, const char* key) {
  static const json kAbsent;
  const auto it = obj.find(key);
  return it == obj.end() ? kAbsent : *it;
}

// One tensor of the file, checked against the config: where its bytes are.
struct StoredTensor {
  std::uint64_t begin = 0, end = 0;
};

// The JSON header of a safetensors file's bytes; *data0 = where the tensor bytes start.
json read_header(const std::string& bytes, const std::string& path, std::size_t* data0) {
  if (bytes.size() < 8) fail(ErrorCode::kParseError, "safetensors", path, "shorter than 8 bytes");
  std::uint64_t n = 0;
  for (int i = 7; i >= 0; --i)
    n = (n << 8) | static_cast<unsigned char>(bytes[static_cast<std::size_t>(i)]);
  if (n > bytes.size() - 8)
    fail(ErrorCode::kParseError, path + ": header length", std::to_string(n),
         "exceeds the file size");
  json header = json::parse(bytes.begin() + 8, bytes.begin() + 8 + static_cast<long>(n), nullptr,
                            /*allow_exceptions=*/false);
  if (!header.is_object())
    fail(ErrorCode::kParseError, "safetensors header", path, "is not a JSON object");
  *data0 = 8 + static_cast<std::size_t>(n);
  return header;
}

}  // namespace

Weights load_safetensors(const std::string& path, const Config& config) {
  // Everything about the file is checked against the config's shapes (tensor_shapes() allocates
  // no weights) before a single weight is allocated: a config that asks for gigabytes cannot
  // make a short file cost them.
  const std::vector<TensorShape> shapes = tensor_shapes(config);
  const std::string bytes = read_all(path);
  std::size_t data0 = 0;
  const json header = read_header(bytes, path, &data0);
  const std::uint64_t data_size = bytes.size() - data0;
  std::map<std::string, const TensorShape*> by_name;
  for (const TensorShape& t : shapes) by_name[t.name] = &t;
  std::map<std::string, StoredTensor> stored;
  for (auto it = header.begin(); it != header.end(); ++it) {
    if (it.key() == "__metadata__") continue;
    const std::string where = path + ": tensor " + it.key();
    auto found = by_name.find(it.key());
    if (found == by_name.end())
      fail(ErrorCode::kParseError, "tensor", it.key(),
           "is not a parameter of this config (in " + path + ")");
    const TensorShape& t = *found->second;
    const json& e = it.value();
    if (!e.is_object()) fail_json(where, e, "must be a JSON object");
    const json& dtype = member(e, "dtype");
    if (dtype != "F32") fail_json(where + " dtype", dtype, "must be \"F32\"");
    // HF orientation on disk: the embedding is [vocab, dim]; a [n, 1] norm is stored as [n].
    const std::int64_t rows = stored_transposed(t.name) ? t.cols : t.rows;
    const std::int64_t cols = stored_transposed(t.name) ? t.rows : t.cols;
    const json want = cols == 1 ? json::array({rows}) : json::array({rows, cols});
    const json& shape = member(e, "shape");
    if (shape != want) fail_json(where + " shape", shape, "must be " + want.dump());
    const json& offsets = member(e, "data_offsets");
    const std::uint64_t need = static_cast<std::uint64_t>(rows * cols) * sizeof(float);
    const bool numbers = offsets.is_array() && offsets.size() == 2 &&
                         offsets[0].is_number_unsigned() && offsets[1].is_number_unsigned();
    const std::uint64_t b = numbers ? offsets[0].get<std::uint64_t>() : 0;
    const std::uint64_t end = numbers ? offsets[1].get<std::uint64_t>() : 0;
    if (!numbers || end < b || end - b != need || end > data_size)
      fail_json(where + " data_offsets", offsets,
                "must be [begin, begin + " + std::to_string(need) + "] inside the " +
                    std::to_string(data_size) + " data bytes");
    stored[it.key()] = StoredTensor{b, end};
  }
  for (const TensorShape& t : shapes)
    if (stored.count(t.name) == 0)
      fail_shown(path + ": tensor " + t.name, "absent",
                 "every parameter of the config must be stored (" + std::to_string(shapes.size()) +
                     " tensors)");
  std::vector<std::pair<std::uint64_t, std::uint64_t>> ranges;
  for (const auto& s : stored) ranges.emplace_back(s.second.begin, s.second.end);
  std::sort(ranges.begin(), ranges.end());
  for (std::size_t i = 1; i < ranges.size(); ++i)
    if (ranges[i].first < ranges[i - 1].second)
      fail(ErrorCode::kParseError, "safetensors", path, "has overlapping tensors");
  // The file holds every byte the config asks for: now the weights can be allocated.
  Weights w(config);
  for (Tensor& t : w.tensors()) {
    const StoredTensor& s = stored.at(t.name);
    const Eigen::Index rows = stored_transposed(t.name) ? t.value.cols() : t.value.rows();
    const Eigen::Index cols = stored_transposed(t.name) ? t.value.rows() : t.value.cols();
    Matrix rowmajor_as_colmajor(cols, rows);
    std::memcpy(rowmajor_as_colmajor.data(), bytes.data() + data0 + s.begin, s.end - s.begin);
    if (!rowmajor_as_colmajor.allFinite()) {
      Eigen::Index at = 0;
      while (std::isfinite(rowmajor_as_colmajor.data()[at])) ++at;
      const float bad = rowmajor_as_colmajor.data()[at];
      fail_shown(path + ": tensor " + t.name + " element " + std::to_string(at),
                 std::isnan(bad) ? "nan"
                 : bad > 0       ? "inf"
                                 : "-inf",
                 "every weight must be finite");
    }
    const Matrix hf = rowmajor_as_colmajor.transpose();
    t.value = stored_transposed(t.name) ? Matrix(hf.transpose()) : hf;
  }
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
  std::size_t data0 = 0;
  const json header = read_header(read_all(path), path, &data0);
  const json& meta = member(header, "__metadata__");
  if (!meta.is_object())
    fail_json(path + ": __metadata__", meta,
              "must be an object holding step, stage, stage_step and adam_steps");
  // safetensors metadata values are strings: each count is a plain decimal integer, bounded so
  // that the training loop's step arithmetic cannot overflow.
  auto field = [&](const char* key) -> std::int64_t {
    const json& v = member(meta, key);
    const std::string rule =
        "must be a decimal integer string in [0, " + std::to_string(kMaxTrainSteps) + "]";
    if (!v.is_string()) fail_json(path + ": metadata " + key, v, rule);
    const std::string& t = v.get_ref<const std::string&>();
    std::int64_t x = 0;
    bool ok = !t.empty() && t.size() <= 13;
    for (char ch : t) {
      ok = ok && ch >= '0' && ch <= '9';
      if (ok) x = x * 10 + (ch - '0');
    }
    if (!ok || x > kMaxTrainSteps) fail_json(path + ": metadata " + key, v, rule);
    return x;
  };
  const TrainPosition at{field("step"), field("stage"), field("stage_step")};
  const std::int64_t adam_steps = field("adam_steps");
  opt.restore(load_safetensors(path, config),
              load_safetensors(dir + "/optimizer_v.safetensors", config), adam_steps);
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
      fail_json(key, member(j, key), "must be an integer");
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
  const ropescale::RopeConfig rope = ropescale::parse_hf_config(j).value();
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
  return ropescale::parse_hf_config(cfg).value();
}

Weights load_model_dir(const std::string& dir) {
  const json cfg = json::parse(read_all(dir + "/config.json"), nullptr, false);
  if (cfg.is_discarded() || !cfg.is_object())
    fail(ErrorCode::kParseError, "config.json", dir, "is not a JSON object");
  return load_safetensors(dir + "/model.safetensors", config_from_hf_json(cfg));
}

}  // namespace tiny_llama
