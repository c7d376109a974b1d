// The LongRoPE2 search, critical-dimension analysis, the window rule, packing and needle
// documents for Python. See module.cpp for the conventions.
#include <pybind11/functional.h>
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstdint>
#include <sstream>
#include <string>
#include <type_traits>
#include <vector>

#include "common.hpp"
#include "ropescale/critical.hpp"
#include "ropescale/io/hf_export.hpp"
#include "ropescale/io/search_checkpoint.hpp"
#include "ropescale/needle.hpp"
#include "ropescale/packing.hpp"
#include "ropescale/search.hpp"
#include "ropescale/window.hpp"

namespace py = pybind11;
namespace rs = ropescale;
using namespace ropescale_py;

namespace {

// "Name(field=value, ...)" from a struct's field table.
template <class S>
std::string fields_repr(const char* name, const S& s) {
  std::ostringstream os;
  os << name << "(";
  bool first = true;
  rs::detail::for_each_field(S::fields(), [&](const auto& f) {
    using T = typename std::decay_t<decltype(f)>::value_type;
    os << (first ? "" : ", ") << f.name << "=";
    if constexpr (std::is_same_v<T, double>)
      os << py::repr(py::float_(f.get(s))).template cast<std::string>();
    else if constexpr (std::is_same_v<T, bool>)
      os << (f.get(s) ? "True" : "False");
    else if constexpr (std::is_enum_v<T>)
      os << "'" << rs::to_string(f.get(s)) << "'";
    else
      os << f.get(s);
    first = false;
  });
  return os.str() + ")";
}

template <class E>
E parse_enum(const std::string& name, const std::string& v, E a, E b) {
  if (v == rs::to_string(a)) return a;
  if (v == rs::to_string(b)) return b;
  fail(name, "\"" + v + "\"",
       std::string("must be \"") + rs::to_string(a) + "\" or \"" + rs::to_string(b) + "\"");
}

py::array_t<std::int64_t> int_array(const std::vector<std::int64_t>& v) {
  py::array_t<std::int64_t> out(static_cast<py::ssize_t>(v.size()));
  std::copy(v.begin(), v.end(), out.mutable_data());
  return out;
}

rs::SearchState load_state(const std::string& path) {
  return rs::load_search_checkpoint(path).value();
}

// Calls a Python fitness from any thread of the search's pool (the GIL is taken per call).
rs::SearchFitness python_fitness(py::function f) {
  return [f](const rs::FactorTable& t) {
    py::gil_scoped_acquire gil;
    return f(t).cast<double>();
  };
}

template <class Fn>
rs::SearchResult without_gil(Fn&& fn) {
  py::gil_scoped_release release;
  return fn();
}

}  // namespace

void bind_search(py::module_& m) {
  py::class_<rs::Genome>(m, "Genome", "A candidate: critical pair c and grid steps above it.")
      .def(py::init<>())
      .def_readwrite("critical_pair", &rs::Genome::critical_pair)
      .def_readwrite("steps", &rs::Genome::steps)
      .def("__eq__", [](const rs::Genome& a, const rs::Genome& b) { return a == b; })
      .def("__repr__", [](const rs::Genome& g) {
        return "Genome(critical_pair=" + std::to_string(g.critical_pair) + ", " +
               std::to_string(g.steps.size()) + " steps)";
      });

  py::class_<rs::SearchSpace>(m, "SearchSpace", "Where the LongRoPE2 / LongRoPE search looks.")
      .def_static(
          "longrope2",
          [](const rs::RopeSpec& spec, std::int64_t target_length) {
            return rs::SearchSpace::longrope2(spec, target_length).value();
          },
          py::arg("spec"), py::arg("target_length"),
          "LongRoPE2's space for extending spec to target.")
      .def_static(
          "longrope",
          [](const rs::RopeSpec& spec, std::int64_t target_length) {
            return rs::SearchSpace::longrope(spec, target_length).value();
          },
          py::arg("spec"), py::arg("target_length"), "LongRoPE (v1)'s space.")
      .def_readonly("spec", &rs::SearchSpace::spec)
      .def_readwrite("scale", &rs::SearchSpace::scale)
      .def_property(
          "method", [](const rs::SearchSpace& s) { return std::string(rs::to_string(s.method)); },
          [](rs::SearchSpace& s, const std::string& v) {
            s.method =
                parse_enum("method", v, rs::SearchMethod::kLongRoPE2, rs::SearchMethod::kLongRoPE);
          })
      .def_readwrite("critical_lower", &rs::SearchSpace::critical_lower)
      .def_readwrite("critical_upper", &rs::SearchSpace::critical_upper)
      .def_readwrite("lower_bound", &rs::SearchSpace::lower_bound)
      .def_readwrite("upper_bound", &rs::SearchSpace::upper_bound)
      .def_readwrite("step", &rs::SearchSpace::step)
      .def_property(
          "monotonicity",
          [](const rs::SearchSpace& s) { return std::string(rs::to_string(s.monotonicity)); },
          [](rs::SearchSpace& s, const std::string& v) {
            s.monotonicity = parse_enum("monotonicity", v, rs::Monotonicity::kNonDecreasing,
                                        rs::Monotonicity::kStrictlyIncreasing);
          })
      .def_readwrite("attention_factor", &rs::SearchSpace::attention_factor)
      .def(
          "genome_table",
          [](const rs::SearchSpace& s, const rs::Genome& g) {
            check(rs::validate(s));
            check(rs::validate(s, g));
            return rs::genome_table(s, g).value();
          },
          py::arg("genome"), "The FactorTable the search evaluates for a genome.")
      .def("__eq__", [](const rs::SearchSpace& a, const rs::SearchSpace& b) { return a == b; })
      .def("__repr__", [](const rs::SearchSpace& s) { return fields_repr("SearchSpace", s); });

  py::class_<rs::SearchParams>(m, "SearchParams", "Parameters of the evolution.")
      .def(py::init([](py::kwargs kw) {
             rs::SearchParams p;
             rs::detail::for_each_field(rs::SearchParams::fields(), [&](const auto& f) {
               if (!kw.contains(f.name)) return;
               using T = typename std::decay_t<decltype(f)>::value_type;
               f.set(p, kw[f.name].template cast<T>());
               kw.attr("pop")(f.name);
             });
             if (py::len(kw) > 0)
               fail("SearchParams", py::str(py::list(kw.attr("keys")())).cast<std::string>(),
                    "unknown field(s)");
             check(rs::validate(p));
             return p;
           }),
           "SearchParams(population=64, parents=32, ..., seed=0): any field by keyword.")
      .def_readwrite("population", &rs::SearchParams::population)
      .def_readwrite("parents", &rs::SearchParams::parents)
      .def_readwrite("mutations", &rs::SearchParams::mutations)
      .def_readwrite("crossovers", &rs::SearchParams::crossovers)
      .def_readwrite("iterations", &rs::SearchParams::iterations)
      .def_readwrite("mutation_prob", &rs::SearchParams::mutation_prob)
      .def_readwrite("crossover_tries", &rs::SearchParams::crossover_tries)
      .def_readwrite("critical_mutation_prob", &rs::SearchParams::critical_mutation_prob)
      .def_readwrite("seed", &rs::SearchParams::seed)
      .def_readwrite("threads", &rs::SearchParams::threads)
      .def_readwrite("thread_safe", &rs::SearchParams::thread_safe)
      .def_readwrite("max_evaluations", &rs::SearchParams::max_evaluations)
      .def_readwrite("max_seconds", &rs::SearchParams::max_seconds)
      .def("__eq__", [](const rs::SearchParams& a, const rs::SearchParams& b) { return a == b; })
      .def("__repr__", [](const rs::SearchParams& p) { return fields_repr("SearchParams", p); });

  py::class_<rs::Candidate>(m, "Candidate", "One candidate of a batch: id, genome, table.")
      .def_readonly("id", &rs::Candidate::id)
      .def_readonly("genome", &rs::Candidate::genome)
      .def_readonly("table", &rs::Candidate::table)
      .def("__repr__", [](const rs::Candidate& c) {
        return "Candidate(id=" + std::to_string(c.id) +
               ", critical_pair=" + std::to_string(c.genome.critical_pair) + ")";
      });

  py::class_<rs::SearchState>(m, "SearchState", "Everything a resume needs (a checkpoint).")
      .def_readonly("space", &rs::SearchState::space)
      .def_readonly("params", &rs::SearchState::params)
      .def_readonly("iteration", &rs::SearchState::iteration)
      .def_property_readonly("evaluations", &rs::SearchState::evaluations)
      .def_property_readonly(
          "pending",
          [](const rs::SearchState& s) {
            py::list out;
            for (const auto& c : s.pending)
              out.append(py::make_tuple(c.id, c.answered ? py::cast(c.loss) : py::none()));
            return out;
          },
          "[(id, loss or None)] of the batch in flight")
      .def_property_readonly("losses",
                             [](const rs::SearchState& s) {
                               std::vector<double> l;
                               for (const auto& e : s.history) l.push_back(e.loss);
                               return l;
                             })
      .def("to_json",
           [](const rs::SearchState& s) { return to_python(rs::search_state_to_json(s)); })
      .def(
          "save",
          [](const rs::SearchState& s, const std::string& path) {
            check(rs::save_search_checkpoint(path, s));
          },
          py::arg("path"), "Writes the checkpoint file atomically (the C++ format).")
      .def_static("load", &load_state, py::arg("path"), "Reads and validates a checkpoint file.")
      .def("__repr__", [](const rs::SearchState& s) {
        return "SearchState(iteration=" + std::to_string(s.iteration) +
               ", evaluations=" + std::to_string(s.evaluations()) +
               ", pending=" + std::to_string(s.pending.size()) + ")";
      });

  py::class_<rs::SearchResult>(m, "SearchResult", "The outcome of a search.")
      .def_readonly("best", &rs::SearchResult::best)
      .def_readonly("best_loss", &rs::SearchResult::best_loss)
      .def_readonly("table", &rs::SearchResult::table)
      .def_readonly("critical_pair", &rs::SearchResult::critical_pair)
      .def_readonly("spec", &rs::SearchResult::spec)
      .def_readonly("target_length", &rs::SearchResult::target_length)
      .def_readonly("iterations", &rs::SearchResult::iterations)
      .def_readonly("evaluations", &rs::SearchResult::evaluations)
      .def_property_readonly(
          "stop_reason",
          [](const rs::SearchResult& r) { return std::string(rs::to_string(r.stop_reason)); })
      .def_readonly("state", &rs::SearchResult::state)
      .def(
          "to_hf_config",
          [](const rs::SearchResult& r) { return to_python(rs::to_hf_config(r).value()); },
          "The result as the RoPE fields of a Hugging Face config.json (rope_type longrope).")
      .def("__repr__", [](const rs::SearchResult& r) {
        std::ostringstream os;
        os.precision(10);
        os << "SearchResult(best_loss=" << r.best_loss << ", critical_pair=" << r.critical_pair
           << ", evaluations=" << r.evaluations << ", iterations=" << r.iterations
           << ", stop_reason='" << rs::to_string(r.stop_reason) << "')";
        return os.str();
      });

  py::class_<rs::EvolutionSearch>(
      m, "EvolutionSearch",
      "The evolutionary factor search, driven by run(fitness) or batch by batch with ask/tell.")
      .def(py::init<rs::SearchSpace, rs::SearchParams>(), py::arg("space"), py::arg("params"))
      .def_property_readonly("space", &rs::EvolutionSearch::space)
      .def_property_readonly("params", &rs::EvolutionSearch::params)
      .def(
          "start",
          [](rs::EvolutionSearch& s, const std::vector<rs::Genome>& seeds) {
            check(s.start(seeds));
          },
          py::arg("seeds") = std::vector<rs::Genome>{}, "Starts a new search.")
      .def(
          "restore",
          [](rs::EvolutionSearch& s, const rs::SearchState& st) { check(s.restore(st)); },
          py::arg("state"), "Continues from a state (a checkpoint), pending batch included.")
      .def("ask", &rs::EvolutionSearch::ask,
           "The unanswered candidates of the current batch (the next batch when none is "
           "pending); [] once finished.")
      .def(
          "tell",
          [](rs::EvolutionSearch& s, const py::object& a, const py::object& b) {
            if (b.is_none()) {
              check(s.tell(a.cast<std::vector<double>>()));
            } else {
              check(s.tell(a.cast<std::vector<std::int64_t>>(), b.cast<std::vector<double>>()));
            }
          },
          py::arg("ids_or_losses"), py::arg("losses") = py::none(),
          "tell(ids, losses), or tell(losses) for every unanswered candidate in ask() order. "
          "A non-finite loss counts as +inf. Refused (ropescale.Error) on a wrong count, an "
          "unknown id or a second answer; nothing is recorded then.")
      .def_property_readonly("finished", &rs::EvolutionSearch::finished)
      .def_property_readonly(
          "stop_reason",
          [](const rs::EvolutionSearch& s) { return std::string(rs::to_string(s.stop_reason())); })
      .def("state", &rs::EvolutionSearch::state, "The complete state now (a checkpoint).")
      .def(
          "result", [](const rs::EvolutionSearch& s) { return s.result().value(); },
          "The best result so far.")
      .def(
          "set_checkpoint_file",
          [](rs::EvolutionSearch& s, const std::string& path) {
            rs::checkpoint_search_to(s, path);
          },
          py::arg("path"), "Writes a checkpoint to path after every iteration.")
      .def(
          "run",
          [](rs::EvolutionSearch& s, py::function f, const std::vector<rs::Genome>& seeds) {
            const rs::SearchFitness fit = python_fitness(std::move(f));
            return without_gil([&] { return s.run(fit, seeds).value(); });
          },
          py::arg("fitness"), py::arg("seeds") = std::vector<rs::Genome>{},
          "Runs the search with fitness(FactorTable) -> loss (lower is better).")
      .def(
          "resume",
          [](rs::EvolutionSearch& s, const rs::SearchState& st, py::function f) {
            const rs::SearchFitness fit = python_fitness(std::move(f));
            return without_gil([&] { return s.resume(st, fit).value(); });
          },
          py::arg("state"), py::arg("fitness"), "restore(state), then as run().")
      .def("__repr__", [](const rs::EvolutionSearch& s) {
        const rs::SearchState st = s.state();
        return "EvolutionSearch(evaluations=" + std::to_string(st.evaluations()) +
               ", iteration=" + std::to_string(st.iteration) +
               ", finished=" + (s.finished() ? "True" : "False") + ")";
      });

  m.def("load_search_checkpoint", &load_state, py::arg("path"));
}

void bind_analysis(py::module_& m) {
  m.def(
      "critical_dims",
      [](const rs::RopeSpec& spec) {
        const rs::Result<rs::CriticalDims> r = rs::critical_dims(spec);
        check(r.status());
        const rs::CriticalDims& d = *r;
        py::dict out;
        out["critical_pair"] = d.critical_pair;
        out["critical_dim"] = d.critical_dim;
        out["lower_pair"] = d.lower_pair;
        out["lower_dim"] = d.lower_dim;
        out["critical_pair_exact"] = d.critical_pair_exact;
        return out;
      },
      py::arg("spec"), "LongRoPE2's critical dimension of a spec (eq. 7), as a dict.");
  m.def(
      "analyze_table",
      [](const rs::RopeSpec& spec, std::int64_t target_length, const rs::FactorTable& t) {
        const rs::Result<rs::CriticalAnalysis> ra = rs::analyze_critical(spec, target_length);
        check(ra.status());
        const rs::CriticalAnalysis& a = *ra;
        const rs::Result<rs::TableAnalysis> rt = rs::analyze_table(a, t);
        check(rt.status());
        const rs::TableAnalysis& ta = *rt;
        py::dict out;
        out["critical_pair"] = a.dims.critical_pair;
        out["scale"] = a.scale;
        out["period"] = to_numpy(a.period);
        out["rescaled_period"] = to_numpy(ta.rescaled_period);
        out["margin"] = to_numpy(ta.margin);
        out["ood_pairs"] = ta.ood_pairs;
        out["detected_critical_pair"] =
            ta.detected_critical_pair ? py::cast(*ta.detected_critical_pair) : py::none();
        return out;
      },
      py::arg("spec"), py::arg("target_length"), py::arg("table"),
      "A table through the critical-dimension lens at target_length: periods, margins "
      "(lambda_i - s) and the out-of-distribution critical pairs.");
  m.def(
      "rope_window",
      [](std::int64_t seq_len, std::int64_t original) {
        check(rs::detail::check_original(original));
        return std::string(rs::to_string(rs::detail::rope_window(seq_len, original)));
      },
      py::arg("seq_len"), py::arg("original_max_position"),
      "'long' iff seq_len > original_max_position (Hugging Face's LongRoPE rule), else 'short'.");
  m.def(
      "pack_documents",
      [](const std::vector<std::int64_t>& lengths, std::int64_t segment_length,
         std::int64_t original, const std::string& long_packing, const std::string& long_mask) {
        rs::PackOptions o;
        o.segment_length = segment_length;
        o.original_max_position = original;
        o.long_packing = parse_enum("long_packing", long_packing, rs::LongPacking::kPack,
                                    rs::LongPacking::kChunk);
        o.long_mask = parse_enum("long_mask", long_mask, rs::MaskKind::kFullCausal,
                                 rs::MaskKind::kDocumentCausal);
        rs::Result<rs::PackingPlan> packed = rs::pack_documents(lengths, o);
        check(packed.status());
        const rs::PackingPlan plan = std::move(packed).value();
        py::list out;
        for (const rs::PackedSegment& s : plan.segments) {
          py::dict d;
          const rs::Result<std::vector<std::int64_t>> pos = s.position_ids();
          check(pos.status());
          d["window"] = rs::to_string(s.window);
          d["mask"] = rs::to_string(s.mask);
          d["length"] = s.length;
          d["position_ids"] = int_array(*pos);
          d["cu_seqlens"] = int_array(s.cu_seqlens);
          d["max_seqlen"] = s.max_seqlen();
          std::vector<std::int64_t> docs;
          for (const auto& p : s.pieces) docs.push_back(p.document);
          d["documents"] = int_array(docs);
          out.append(d);
        }
        return out;
      },
      py::arg("lengths"), py::arg("segment_length"), py::arg("original_max_position"),
      py::arg("long_packing") = "pack", py::arg("long_mask") = "full_causal",
      "Mixed context window packing: one dict per segment with window ('short'/'long'), "
      "position_ids, cu_seqlens (int64 numpy), max_seqlen and the documents it holds.");

  m.def(
      "make_needle_documents",
      [](const std::vector<rs::TokenId>& haystack, const py::dict& tmpl,
         const std::vector<rs::TokenId>& digit_tokens, const std::vector<rs::TokenId>& prefix,
         std::int64_t length, std::int64_t count, double depth, std::uint64_t seed,
         bool random_offset) {
        if (digit_tokens.size() != 10)
          fail("digit_tokens", std::to_string(digit_tokens.size()) + " tokens",
               "must hold the 10 tokens of the digits 0-9");
        rs::NeedleTemplate t;
        const std::pair<const char*, std::vector<rs::TokenId>*> keys[] = {
            {"bos", &t.bos},
            {"preamble", &t.preamble},
            {"key", &t.key},
            {"needle_head", &t.needle_head},
            {"needle_middle", &t.needle_middle},
            {"needle_tail", &t.needle_tail},
            {"question_head", &t.question_head},
            {"question_tail", &t.question_tail},
            {"answer_head", &t.answer_head},
            {"answer_tail", &t.answer_tail}};
        py::dict rest(tmpl);
        for (const auto& [k, dst] : keys)
          if (rest.contains(k)) {
            *dst = rest[k].cast<std::vector<rs::TokenId>>();
            rest.attr("pop")(k);
          }
        if (py::len(rest) > 0)
          fail("template", py::str(py::list(rest.attr("keys")())).cast<std::string>(),
               "unknown key(s)");
        std::array<rs::TokenId, 10> digits{};
        std::copy(digit_tokens.begin(), digit_tokens.end(), digits.begin());
        const rs::ValueTokenizer tok = rs::digit_value_tokenizer(digits, prefix);
        rs::NeedleOptions o;
        o.length = length;
        o.depth = depth;
        o.seed = seed;
        o.random_offset = random_offset;
        if (count < 0 || count > rs::kMaxNeedleDocuments)
          fail("count", std::to_string(count), "must be in [0, 2^20]");
        py::list out;
        for (std::int64_t i = 0; i < count; ++i) {
          rs::Result<rs::NeedleDocument> made =
              rs::make_needle_document(haystack, t, tok, o, static_cast<std::uint64_t>(i));
          check(made.status());
          const rs::NeedleDocument d = std::move(made).value();
          py::dict doc;
          py::array_t<rs::TokenId> tokens(static_cast<py::ssize_t>(d.tokens.size()));
          std::copy(d.tokens.begin(), d.tokens.end(), tokens.mutable_data());
          py::array_t<bool> mask(static_cast<py::ssize_t>(d.answer_mask.size()));
          for (std::size_t k = 0; k < d.answer_mask.size(); ++k)
            mask.mutable_data()[k] = d.answer_mask[k] != 0;
          doc["tokens"] = tokens;
          doc["positions"] = int_array(d.positions);
          doc["answer_mask"] = mask;
          doc["value"] = d.value;
          doc["answer_begin"] = d.answer_begin;
          doc["answer_end"] = d.answer_end;
          doc["needle_begin"] = d.needle_begin;
          doc["needle_end"] = d.needle_end;
          out.append(doc);
        }
        return out;
      },
      py::arg("haystack"), py::arg("template"), py::arg("digit_tokens"),
      py::arg("digit_prefix") = std::vector<rs::TokenId>{}, py::arg("length"), py::arg("count") = 1,
      py::arg("depth") = 0.0, py::arg("seed") = 0, py::arg("random_offset") = true,
      "LongRoPE2's needle documents from the caller's token ids: one dict per document with "
      "tokens (int32), positions, answer_mask and value. template: a dict of token lists "
      "(bos, preamble, key, needle_head, ..., answer_tail; see needle.hpp).");
  m.def(
      "answer_nll",
      [](const py::array_t<double, py::array::c_style | py::array::forcecast>& logits,
         const std::vector<rs::TokenId>& tokens, const std::vector<bool>& answer_mask,
         std::int64_t first_row) {
        if (logits.ndim() != 2)
          fail("logits.ndim", std::to_string(logits.ndim()), "must be 2 ([rows, vocab])");
        Eigen::Map<const Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>> l(
            logits.data(), logits.shape(0), logits.shape(1));
        std::vector<std::uint8_t> mask(answer_mask.begin(), answer_mask.end());
        const rs::Result<double> v = rs::mean_nll(l, tokens, mask, first_row);
        check(v.status());
        return *v;
      },
      py::arg("logits"), py::arg("tokens"), py::arg("answer_mask"), py::arg("first_row") = 0,
      "Mean negative log-likelihood of the masked (answer) tokens; logits row r predicts token "
      "first_row + r + 1 (softmax in double).");
  m.def(
      "perplexity",
      [](const std::vector<double>& losses) {
        if (losses.empty()) fail("losses.size()", "0", "must be > 0");
        for (std::size_t i = 0; i < losses.size(); ++i)
          if (!std::isfinite(losses[i]))
            fail("losses[" + std::to_string(i) + "]", std::to_string(losses[i]), "must be finite");
        return rs::perplexity(losses).value();
      },
      py::arg("losses"), "exp(mean(losses)): LongRoPE2's needle-driven perplexity.");
}
