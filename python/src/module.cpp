// The `ropescale` Python module: pybind11 bindings over the public headers. No maths lives here:
// every number comes from the library; this file converts arguments, checks what only a binding
// can see (dtype, shape, strides, writability of the caller's buffer) and releases the GIL
// around the kernels. Every library error reaches Python as ropescale.Error (a ValueError) with
// the C++ message.
#include <pybind11/functional.h>
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <cstdint>
#include <limits>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "ropescale/critical.hpp"
#include "ropescale/io/hf_config.hpp"
#include "ropescale/io/hf_export.hpp"
#include "ropescale/io/search_checkpoint.hpp"
#include "ropescale/needle.hpp"
#include "ropescale/packing.hpp"
#include "ropescale/rerotate.hpp"
#include "ropescale/rotary.hpp"
#include "ropescale/search.hpp"
#include "ropescale/window.hpp"

#include "common.hpp"

namespace py = pybind11;
namespace rs = ropescale;

namespace {}  // namespace

namespace ropescale_py {

// Raises ropescale.Error for a failed Status (translated in the module's exception translator).
void check(const rs::Status& s) { rs::throw_if_error(s); }

[[noreturn]] void fail(const std::string& argument, const std::string& value,
                       const std::string& rule) {
  check(rs::make_status(rs::ErrorCode::kInvalidArgument, argument, value, rule));
  throw std::logic_error("unreachable");
}

// nlohmann::json <-> Python objects through the json module (configs are small).
py::object to_python(const nlohmann::json& j) {
  return py::module_::import("json").attr("loads")(j.dump());
}
nlohmann::json from_python(const py::object& o) {
  const std::string text = py::str(py::module_::import("json").attr("dumps")(o));
  nlohmann::json j;
  check(rs::detail::parse_json_text(text, &j));
  return j;
}

py::array_t<double> to_numpy(const Eigen::ArrayXd& a) {
  py::array_t<double> out(static_cast<py::ssize_t>(a.size()));
  std::copy(a.data(), a.data() + a.size(), out.mutable_data());
  return out;
}

rs::PairLayout parse_layout(const std::string& s) {
  if (s == "half_split") return rs::PairLayout::kHalfSplit;
  if (s == "interleaved") return rs::PairLayout::kInterleaved;
  fail("layout", "\"" + s + "\"", "must be \"half_split\" or \"interleaved\"");
}
rs::RotaryDirection parse_direction(const std::string& s) {
  if (s == "forward") return rs::RotaryDirection::kForward;
  if (s == "inverse") return rs::RotaryDirection::kInverse;
  if (s == "backward") return rs::RotaryDirection::kBackward;
  fail("direction", "\"" + s + "\"", "must be \"forward\", \"inverse\" or \"backward\"");
}

// A table for one spec and pair layout: what a model's attention needs.
struct Table {
  rs::RopeSpec spec;
  rs::FactorTable table;
  rs::PairLayout layout = rs::PairLayout::kHalfSplit;
  std::shared_ptr<rs::RotaryFrequencies> freqs;

  Table(rs::RopeSpec s, rs::FactorTable t, rs::PairLayout l)
      : spec(s), table(std::move(t)), layout(l) {
    check(table.validate_for(spec));
    freqs = std::make_shared<rs::RotaryFrequencies>(spec, table);
  }
};

// Positions: a 1-D int64 sequence (list or array), copied (they are small next to the data).
std::vector<std::int64_t> positions_of(const py::object& o, const char* name) {
  py::array_t<std::int64_t, py::array::c_style | py::array::forcecast> a;
  try {
    a = py::array_t<std::int64_t, py::array::c_style | py::array::forcecast>::ensure(o);
  } catch (const py::error_already_set&) {
    a = {};
  }
  if (!a || a.ndim() != 1)
    fail(name, py::str(o.get_type()).cast<std::string>(), "must be a 1-D sequence of integers");
  py::array src = py::array::ensure(o);
  if (src && src.dtype().kind() == 'f')
    fail(name, "float array", "must hold integers (int64 position ids)");
  return std::vector<std::int64_t>(a.data(), a.data() + a.size());
}

// The caller's buffer as [tokens, heads, head_dim] with element strides: a numpy array (buffer
// protocol) or a torch CPU tensor (data_ptr, dtype, shape, stride).
struct Buffer {
  void* data = nullptr;
  std::string dtype;  // float32, float64, float16, bfloat16
  std::vector<std::int64_t> shape, strides;
  py::object keep;  // the owner, alive while the kernel runs
};

Buffer buffer_of(const py::object& x, const char* name) {
  Buffer b;
  b.keep = x;
  if (py::isinstance<py::array>(x)) {
    py::array a = py::reinterpret_borrow<py::array>(x);
    if (!a.writeable()) fail(name, "read-only array", "must be writable (rotated in place)");
    const char kind = a.dtype().kind();
    const auto size = a.itemsize();
    if (kind == 'f' && size == 4)
      b.dtype = "float32";
    else if (kind == 'f' && size == 8)
      b.dtype = "float64";
    else if (kind == 'f' && size == 2)
      b.dtype = "float16";
    else
      fail(name, std::string("dtype ") + py::str(py::object(a.dtype())).cast<std::string>(),
           "must be float32, float64 or float16 (numpy), or a torch float32/float16/bfloat16 "
           "tensor");
    b.data = a.mutable_data();
    for (py::ssize_t i = 0; i < a.ndim(); ++i) {
      b.shape.push_back(a.shape(i));
      if (a.strides(i) % size != 0)
        fail(name, "stride " + std::to_string(a.strides(i)) + " bytes",
             "must be a multiple of the element size");
      b.strides.push_back(a.strides(i) / size);
    }
    return b;
  }
  if (py::hasattr(x, "data_ptr") && py::hasattr(x, "dtype") && py::hasattr(x, "stride")) {
    const std::string device = py::str(x.attr("device").attr("type"));
    if (device != "cpu")
      fail(name, "device " + device, "must be a CPU tensor (move it with .cpu() first)");
    if (x.attr("requires_grad").cast<bool>())
      fail(name, "requires_grad=True", "must not require grad (rotated in place, no autograd)");
    const std::string dt = py::str(x.attr("dtype"));
    if (dt == "torch.float32")
      b.dtype = "float32";
    else if (dt == "torch.float64")
      b.dtype = "float64";
    else if (dt == "torch.float16")
      b.dtype = "float16";
    else if (dt == "torch.bfloat16")
      b.dtype = "bfloat16";
    else
      fail(name, "dtype " + dt, "must be torch.float32, float64, float16 or bfloat16");
    b.data = reinterpret_cast<void*>(x.attr("data_ptr")().cast<std::uintptr_t>());
    for (auto s : x.attr("shape")) b.shape.push_back(s.cast<std::int64_t>());
    for (auto s : x.attr("stride")()) b.strides.push_back(s.cast<std::int64_t>());
    return b;
  }
  fail(name, py::str(x.get_type()).cast<std::string>(),
       "must be a numpy array or a torch CPU tensor");
}

// [tokens, heads, head_dim] (or [tokens, head_dim]: one head), channels contiguous, strides >= 0
// and no two elements at one address.
void check_layout(Buffer& b, const char* name, std::int64_t head_dim) {
  if (b.shape.size() == 2) {
    b.shape.insert(b.shape.begin() + 1, 1);
    b.strides.insert(b.strides.begin() + 1, b.shape[2]);
  }
  if (b.shape.size() != 3)
    fail(std::string(name) + ".ndim", std::to_string(b.shape.size()),
         "must be 3 ([tokens, heads, head_dim]) or 2 ([tokens, head_dim])");
  if (b.shape[2] != head_dim)
    fail(std::string(name) + ".shape[-1]", std::to_string(b.shape[2]),
         "must equal the table's head_dim (" + std::to_string(head_dim) + ")");
  if (b.strides[2] != 1 && head_dim > 1)
    fail(std::string(name) + ".stride(-1)", std::to_string(b.strides[2]),
         "must be 1 (channels contiguous)");
  for (int i = 0; i < 2; ++i)
    if (b.strides[i] < 0)
      fail(std::string(name) + ".stride(" + std::to_string(i) + ")", std::to_string(b.strides[i]),
           "must be >= 0");
  // Sorted by stride, each dimension must start past the extent of the ones below it.
  std::vector<std::pair<std::int64_t, std::int64_t>> dims;  // (stride, extent)
  for (int i = 0; i < 3; ++i)
    if (b.shape[i] > 1) dims.emplace_back(b.strides[i], b.shape[i]);
  std::sort(dims.begin(), dims.end());
  std::int64_t span = 1;
  for (const auto& [stride, extent] : dims) {
    if (stride < span)
      fail(name,
           "strides (" + std::to_string(b.strides[0]) + ", " + std::to_string(b.strides[1]) + ", " +
               std::to_string(b.strides[2]) + ")",
           "must not overlap (two elements at one address)");
    span = stride * extent;
  }
}

template <typename T>
rs::HeadsView<T> view_of(const Buffer& b) {
  return rs::HeadsView<T>{
      static_cast<T*>(b.data), b.shape[0], b.shape[1], b.shape[2], b.strides[0], b.strides[1]};
}

// Runs fn(HeadsView<T>) for the buffer's dtype.
template <typename Fn>
rs::Status dispatch(const Buffer& b, Fn&& fn) {
  if (b.dtype == "float32") return fn(view_of<float>(b));
  if (b.dtype == "float64") return fn(view_of<double>(b));
  if (b.dtype == "float16") return fn(view_of<Eigen::half>(b));
  return fn(view_of<Eigen::bfloat16>(b));
}

void apply_table(const Table& t, const py::object& x, const py::object& positions,
                 const std::string& direction) {
  Buffer b = buffer_of(x, "x");
  check_layout(b, "x", t.spec.head_dim);
  const std::vector<std::int64_t> pos = positions_of(positions, "positions");
  if (static_cast<std::int64_t>(pos.size()) != b.shape[0])
    fail("positions.size()", std::to_string(pos.size()),
         "must equal x's token count (" + std::to_string(b.shape[0]) + ")");
  const rs::RotaryDirection dir = parse_direction(direction);
  rs::Status s;
  {
    py::gil_scoped_release release;
    s = dispatch(b,
                 [&](auto view) { return rs::rotate(*t.freqs, pos.data(), view, t.layout, dir); });
  }
  check(s);
}

// m*cos and m*sin per position and pair; `duplicate` repeats them as Hugging Face's
// cat(freqs, freqs) ([n, rotary_dim]).
py::tuple cos_sin(const Table& t, const py::object& positions, const py::object& dtype,
                  bool duplicate) {
  const std::vector<std::int64_t> pos = positions_of(positions, "positions");
  const py::dtype dt = py::dtype::from_args(dtype);
  const bool single = dt.is(py::dtype::of<float>()) || dt.equal(py::dtype::of<float>());
  if (!single && !dt.equal(py::dtype::of<double>()))
    fail("dtype", py::str(py::object(dt)).cast<std::string>(), "must be float32 or float64");
  const std::int64_t pairs = t.freqs->pairs();
  for (std::size_t i = 0; i < pos.size(); ++i)
    if (!t.freqs->covers(pos[i]))
      check(rs::make_status(rs::ErrorCode::kOutOfRange, "positions[" + std::to_string(i) + "]",
                            pos[i],
                            "must be in [0, " + std::to_string(t.freqs->max_position()) + ")"));
  const std::int64_t width = duplicate ? 2 * pairs : pairs;
  const auto n = static_cast<py::ssize_t>(pos.size());
  auto fill = [&](auto* c, auto* s) {
    py::gil_scoped_release release;
    for (std::size_t p = 0; p < pos.size(); ++p) {
      auto* cr = c + p * width;
      auto* sr = s + p * width;
      t.freqs->fill(pos[p], cr, sr);
      if (duplicate) {
        std::copy(cr, cr + pairs, cr + pairs);
        std::copy(sr, sr + pairs, sr + pairs);
      }
    }
  };
  if (single) {
    py::array_t<float> c({n, static_cast<py::ssize_t>(width)}),
        s({n, static_cast<py::ssize_t>(width)});
    fill(c.mutable_data(), s.mutable_data());
    return py::make_tuple(c, s);
  }
  py::array_t<double> c({n, static_cast<py::ssize_t>(width)}),
      s({n, static_cast<py::ssize_t>(width)});
  fill(c.mutable_data(), s.mutable_data());
  return py::make_tuple(c, s);
}

void rerotate(const Table& from, const Table& to, const py::object& keys,
              const py::object& positions) {
  if (from.spec != to.spec)
    fail("to.spec", "differs from from.spec", "both tables must describe the same RoPE");
  if (from.layout != to.layout)
    fail("to.pair_layout", rs::to_string(to.layout), "must equal from.pair_layout");
  Buffer b = buffer_of(keys, "keys");
  check_layout(b, "keys", from.spec.head_dim);
  const std::vector<std::int64_t> pos = positions_of(positions, "positions");
  if (static_cast<std::int64_t>(pos.size()) != b.shape[0])
    fail("positions.size()", std::to_string(pos.size()),
         "must equal keys' token count (" + std::to_string(b.shape[0]) + ")");
  rs::Status s;
  {
    py::gil_scoped_release release;
    s = dispatch(b, [&](auto view) {
      return rs::rerotate_keys(from.spec, from.table, to.table, pos.data(), view, from.layout);
    });
  }
  check(s);
}

rs::RopeConfig config_from(const py::object& path_or_dict, const rs::HfImportOptions& o) {
  if (py::isinstance<py::str>(path_or_dict) || py::hasattr(path_or_dict, "__fspath__")) {
    const std::string path = py::str(py::module_::import("os").attr("fspath")(path_or_dict));
    return rs::load_hf_config(path, o).value();
  }
  if (py::isinstance<py::dict>(path_or_dict))
    return rs::parse_hf_config(from_python(path_or_dict), o).value();
  fail("config", py::str(path_or_dict.get_type()).cast<std::string>(),
       "must be a path or a dict (a parsed config.json)");
}
rs::ModelRope model_from(const py::object& path_or_dict, const rs::HfImportOptions& o) {
  if (py::isinstance<py::str>(path_or_dict) || py::hasattr(path_or_dict, "__fspath__")) {
    const std::string path = py::str(py::module_::import("os").attr("fspath")(path_or_dict));
    return rs::load_hf_model(path, o).value();
  }
  if (py::isinstance<py::dict>(path_or_dict))
    return rs::parse_hf_model(from_python(path_or_dict), o).value();
  fail("config", py::str(path_or_dict.get_type()).cast<std::string>(),
       "must be a path or a dict (a parsed config.json)");
}
rs::HfImportOptions import_options(const std::string& yarn, const py::object& default_theta) {
  rs::HfImportOptions o;
  if (yarn == "current")
    o.yarn = rs::YarnSemantics::kCurrent;
  else if (yarn == "legacy")
    o.yarn = rs::YarnSemantics::kLegacy;
  else if (yarn == "derived_factor")
    o.yarn = rs::YarnSemantics::kDerivedFactor;
  else
    fail("yarn", "\"" + yarn + "\"", "must be \"current\", \"derived_factor\" or \"legacy\"");
  if (!default_theta.is_none()) o.default_rope_theta = default_theta.cast<double>();
  return o;
}

Table table_of(const rs::RopeConfig& c, std::int64_t seq_len) {
  return Table(c.spec, c.table_for(seq_len).value(),
               c.interleaved_pairs ? rs::PairLayout::kInterleaved : rs::PairLayout::kHalfSplit);
}

std::string spec_repr(const rs::RopeSpec& s) {
  std::ostringstream os;
  os << "RopeSpec(head_dim=" << s.head_dim << ", rotary_dim=" << s.rotary_dim
     << ", rope_theta=" << s.rope_theta << ", original_max_position=" << s.original_max_position;
  if (s.freq_dim != 0) os << ", freq_dim=" << s.freq_dim;
  os << ")";
  return os.str();
}

}  // namespace ropescale_py

using namespace ropescale_py;

void bind_search(py::module_& m);
void bind_analysis(py::module_& m);

PYBIND11_MODULE(_ropescale, m) {
  m.doc() =
      "ropescale: rotary position embedding tables, kernels and the LongRoPE2 factor search.\n"
      "Every number comes from the C++ library; errors are ropescale.Error (a ValueError).";
  static py::exception<rs::Error> error(m, "Error", PyExc_ValueError);
  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const rs::Error& e) {
      error(e.what());
    }
  });
  m.attr("__version__") = std::to_string(ROPESCALE_VERSION_MAJOR) + "." +
                          std::to_string(ROPESCALE_VERSION_MINOR) + "." +
                          std::to_string(ROPESCALE_VERSION_PATCH);

  py::class_<rs::RopeSpec>(m, "RopeSpec", "A model's RoPE before rescaling.")
      .def(py::init([](std::int64_t head_dim, std::int64_t rotary_dim, double rope_theta,
                       std::int64_t original_max_position, std::int64_t freq_dim) {
             rs::RopeSpec s{head_dim, rotary_dim < 0 ? head_dim : rotary_dim, rope_theta,
                            original_max_position};
             s.freq_dim = freq_dim;
             check(rs::validate(s));
             return s;
           }),
           py::arg("head_dim") = 128, py::arg("rotary_dim") = -1, py::arg("rope_theta") = 10000.0,
           py::arg("original_max_position") = 4096, py::arg("freq_dim") = 0,
           "rotary_dim defaults to head_dim; freq_dim 0 means rotary_dim.")
      .def_readonly("head_dim", &rs::RopeSpec::head_dim)
      .def_readonly("rotary_dim", &rs::RopeSpec::rotary_dim)
      .def_readonly("rope_theta", &rs::RopeSpec::rope_theta)
      .def_readonly("original_max_position", &rs::RopeSpec::original_max_position)
      .def_readonly("freq_dim", &rs::RopeSpec::freq_dim)
      .def_property_readonly("pairs", &rs::RopeSpec::pairs, "rotary_dim / 2")
      .def_property_readonly("frequency_dim", &rs::RopeSpec::frequency_dim,
                             "the frequency exponent's denominator (freq_dim or rotary_dim)")
      .def_property_readonly(
          "base_inv_freq",
          [](const rs::RopeSpec& s) { return to_numpy(rs::base_inv_freq(s).value()); },
          "rope_theta^(-2i/frequency_dim), float64")
      .def("__eq__", [](const rs::RopeSpec& a, const rs::RopeSpec& b) { return a == b; })
      .def("__repr__", &spec_repr);

  py::class_<rs::FactorTable>(m, "FactorTable",
                              "Per-pair rescale factors lambda_i and the attention factor.")
      .def(py::init([](const std::vector<double>& factors, double attention_factor,
                       const std::string& method) {
             rs::Result<rs::FactorTable> t = rs::FactorTable::make(
                 Eigen::Map<const Eigen::ArrayXd>(factors.data(),
                                                  static_cast<Eigen::Index>(factors.size())),
                 attention_factor, method);
             check(t.status());
             return std::move(t).value();
           }),
           py::arg("factors"), py::arg("attention_factor") = 1.0, py::arg("method") = "custom")
      .def_property_readonly("factors",
                             [](const rs::FactorTable& t) { return to_numpy(t.factors()); })
      .def_property_readonly("attention_factor", &rs::FactorTable::attention_factor)
      .def_property_readonly("method", &rs::FactorTable::method)
      .def_property_readonly("pairs", &rs::FactorTable::pairs)
      .def(
          "inv_freq",
          [](const rs::FactorTable& t, const rs::RopeSpec& s) {
            check(t.validate_for(s));
            return to_numpy(t.inv_freq(s).value());
          },
          py::arg("spec"), "base_inv_freq(spec).value() / factors, float64")
      .def("__eq__", [](const rs::FactorTable& a, const rs::FactorTable& b) { return a == b; })
      .def("__repr__", [](const rs::FactorTable& t) {
        std::ostringstream os;
        os.precision(6);
        os << "FactorTable(method='" << t.method() << "', pairs=" << t.pairs()
           << ", attention_factor=" << t.attention_factor() << ", factors=[";
        for (std::int64_t i = 0; i < t.pairs(); ++i) {
          if (i == 3 && t.pairs() > 6) {
            os << "..., ";
            i = t.pairs() - 3;
          }
          os << t.factors()[i] << (i + 1 < t.pairs() ? ", " : "");
        }
        return os.str() + "])";
      });

  py::class_<Table>(m, "Table",
                    "A model's rotary table: spec, factors, attention factor and pair layout. "
                    "Rotates arrays and tensors in place and gives cos/sin caches.")
      .def(py::init([](const rs::RopeSpec& s, const rs::FactorTable& t, const std::string& l) {
             return Table(s, t, parse_layout(l));
           }),
           py::arg("spec"), py::arg("factors"), py::arg("pair_layout") = "half_split")
      .def_property_readonly("spec", [](const Table& t) { return t.spec; })
      .def_property_readonly("factor_table", [](const Table& t) { return t.table; })
      .def_property_readonly(
          "inv_freq", [](const Table& t) { return to_numpy(t.freqs->inv_freq()); },
          "rescaled inverse frequencies per pair, float64")
      .def_property_readonly("factors", [](const Table& t) { return to_numpy(t.table.factors()); })
      .def_property_readonly("attention_factor",
                             [](const Table& t) { return t.table.attention_factor(); })
      .def_property_readonly("method", [](const Table& t) { return t.table.method(); })
      .def_property_readonly("head_dim", [](const Table& t) { return t.spec.head_dim; })
      .def_property_readonly("rotary_dim", [](const Table& t) { return t.spec.rotary_dim; })
      .def_property_readonly("frequency_dim", [](const Table& t) { return t.spec.frequency_dim(); })
      .def_property_readonly("pair_layout",
                             [](const Table& t) { return std::string(rs::to_string(t.layout)); })
      .def_property_readonly("max_position", [](const Table& t) { return t.freqs->max_position(); })
      .def("cos_sin", &cos_sin, py::arg("positions"), py::arg("dtype") = py::dtype::of<float>(),
           py::arg("duplicate") = false,
           "(cos, sin) numpy arrays [len(positions), pairs] of attention_factor * cos/sin of "
           "position * inv_freq, angles range-reduced in double. duplicate=True gives Hugging "
           "Face's [n, rotary_dim] = cat(freqs, freqs) layout.")
      .def("apply", &apply_table, py::arg("x"), py::arg("positions"),
           py::arg("direction") = "forward",
           "Rotates x in place: a numpy float32/float64/float16 array or a torch CPU "
           "float32/float64/float16/bfloat16 tensor of shape [tokens, heads, head_dim] (or "
           "[tokens, head_dim]) with contiguous channels; positions: one int per token. "
           "direction: forward, inverse or backward (the gradient).")
      .def("__repr__", [](const Table& t) {
        std::ostringstream os;
        os << "Table(method='" << t.table.method() << "', " << spec_repr(t.spec)
           << ", attention_factor=" << t.table.attention_factor() << ", pair_layout='"
           << rs::to_string(t.layout) << "')";
        return os.str();
      });

  m.def("rerotate_keys", &rerotate, py::arg("from_table"), py::arg("to_table"), py::arg("keys"),
        py::arg("positions"),
        "Re-rotates cached keys (rotated with from_table) in place as if rotated with to_table.");

  py::class_<rs::RopeConfig>(m, "RopeConfig", "A model's RoPE as its config.json describes it.")
      .def_property_readonly(
          "rope_type",
          [](const rs::RopeConfig& c) { return std::string(rs::to_string(c.rope_type)); })
      .def_readonly("spec", &rs::RopeConfig::spec)
      .def_readonly("max_position_embeddings", &rs::RopeConfig::max_position_embeddings)
      .def_property_readonly("scale", &rs::RopeConfig::scale)
      .def_readonly("mrope_section", &rs::RopeConfig::mrope_section)
      .def_readonly("interleaved_pairs", &rs::RopeConfig::interleaved_pairs)
      .def_property_readonly(
          "pair_layout",
          [](const rs::RopeConfig& c) {
            return std::string(c.interleaved_pairs ? "interleaved" : "half_split");
          })
      .def("table_for", &table_of, py::arg("seq_len") = 0,
           "The table Hugging Face uses for seq_len tokens (max position + 1; 0: init time).")
      .def(
          "window_for",
          [](const rs::RopeConfig& c, std::int64_t n) -> py::object {
            const auto w = c.window_for(n);
            if (!w) return py::none();
            return py::str(rs::to_string(*w));
          },
          py::arg("seq_len"), "'short' or 'long' for LongRoPE, None for single-table methods.")
      .def(
          "to_rope_scaling",
          [](const rs::RopeConfig& c) { return to_python(rs::to_rope_scaling(c)); },
          "The Hugging Face rope_scaling dict (None for default RoPE).")
      .def(
          "to_hf_config",
          [](const rs::RopeConfig& c) { return to_python(rs::to_hf_config(c).value()); },
          "The RoPE fields of a Hugging Face config.json, as a dict.")
      .def("__eq__", [](const rs::RopeConfig& a, const rs::RopeConfig& b) { return a == b; })
      .def("__repr__", [](const rs::RopeConfig& c) {
        std::ostringstream os;
        os << "RopeConfig(rope_type='" << rs::to_string(c.rope_type) << "', " << spec_repr(c.spec)
           << ", scale=" << c.scale() << ", max_position_embeddings=" << c.max_position_embeddings
           << ")";
        return os.str();
      });

  py::class_<rs::ModelRope>(m, "ModelRope", "A model's RoPE per layer.")
      .def_property_readonly(
          "kinds",
          [](const rs::ModelRope& mr) {
            py::list out;
            for (const auto& k : mr.kinds) out.append(py::make_tuple(k.layer_type, k.config));
            return out;
          },
          "[(layer_type, RopeConfig)], each distinct RoPE once")
      .def_readonly("layer_types", &rs::ModelRope::layer_types)
      .def_readonly("layer_kind", &rs::ModelRope::layer_kind)
      .def_property_readonly("num_layers", &rs::ModelRope::num_layers)
      .def_property_readonly("uniform", &rs::ModelRope::uniform)
      .def(
          "layer", [](const rs::ModelRope& mr, std::int64_t l) { return *mr.layer(l).value(); },
          py::arg("layer"))
      .def(
          "table_for",
          [](const rs::ModelRope& mr, std::int64_t l, std::int64_t seq_len) {
            return table_of(*mr.layer(l).value(), seq_len);
          },
          py::arg("layer"), py::arg("seq_len") = 0)
      .def("__repr__", [](const rs::ModelRope& mr) {
        std::ostringstream os;
        os << "ModelRope(num_layers=" << mr.num_layers() << ", kinds=[";
        for (std::size_t i = 0; i < mr.kinds.size(); ++i)
          os << (i ? ", " : "") << "'" << mr.kinds[i].layer_type
             << "': " << rs::to_string(mr.kinds[i].config.rope_type);
        return os.str() + "])";
      });

  m.def(
      "load_hf_config",
      [](const py::object& c, const std::string& yarn, const py::object& theta) {
        return config_from(c, import_options(yarn, theta));
      },
      py::arg("config"), py::arg("yarn") = "current", py::arg("default_rope_theta") = py::none(),
      "Reads a config.json (a path or a dict) into a RopeConfig, as Hugging Face does.");
  m.def(
      "load_hf_model",
      [](const py::object& c, const std::string& yarn, const py::object& theta) {
        return model_from(c, import_options(yarn, theta));
      },
      py::arg("config"), py::arg("yarn") = "current", py::arg("default_rope_theta") = py::none(),
      "Reads a config.json (a path or a dict) into one RoPE per layer type (ModelRope).");

  bind_search(m);
  bind_analysis(m);
}
