// `ropescale pack`: packs documents of the given token lengths into mixed context window training
// segments (LongRoPE2 section 3.3) and prints the plan: per segment its RoPE window (Hugging Face
// rule on its position ids), mask kind, cu_seqlens and document pieces.
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "cli.hpp"
#include "ropescale/training.hpp"

namespace {

// Document lengths: integers separated by commas, spaces or newlines. An empty entry between two
// commas ("5,,7") or a trailing comma is an error, not a skipped value.
std::vector<std::int64_t> parse_lengths(const std::string& text, const std::string& what) {
  std::vector<std::int64_t> out;
  std::size_t line_start = 0;
  while (line_start <= text.size()) {
    std::size_t line_end = text.find('\n', line_start);
    if (line_end == std::string::npos) line_end = text.size();
    const std::string line = text.substr(line_start, line_end - line_start);
    line_start = line_end + 1;
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;  // blank line
    std::size_t pos = 0;
    while (true) {
      const std::size_t comma = line.find(',', pos);
      const std::string entry =
          line.substr(pos, comma == std::string::npos ? std::string::npos : comma - pos);
      std::istringstream words(entry);
      std::string tok;
      bool any = false;
      while (words >> tok) {
        any = true;
        if (out.size() >= (std::size_t{1} << 24))
          throw cli::UsageError(what + ": more than 2^24 document lengths");
        out.push_back(cli::Args::parse_int(what + " entry " + std::to_string(out.size() + 1), tok,
                                           1, ropescale::kMaxPosition));
      }
      if (!any)
        throw cli::UsageError(what + ": empty entry after " + std::to_string(out.size()) +
                              " length(s) (two commas in a row, or a trailing comma)");
      if (comma == std::string::npos) break;
      pos = comma + 1;
    }
  }
  if (out.empty()) throw cli::UsageError(what + ": no document lengths");
  return out;
}

const std::vector<cli::Option>& options() {
  static const ropescale::PackOptions d;
  static const std::vector<cli::Option> kOptions = {
      {"--lengths", "N,...", "", "document lengths in tokens (or --lengths-file)"},
      {"--lengths-file", "FILE", "", "document lengths, separated by commas or white space"},
      {"--segment-length", "N", std::to_string(d.segment_length), "tokens per training segment"},
      {"--original", "N", std::to_string(d.original_max_position),
       "the pre-training window: documents up to it are short"},
      {"--long-packing", "pack|chunk", "pack", "how long documents fill segments"},
      {"--long-mask", "full|document", "full", "the mask of long segments"},
      {"--show", "N", "20", "segments the table lists"},
      cli::format_option(),
  };
  return kOptions;
}

int run_pack(const std::vector<std::string>& argv) {
  cli::Args args(argv, options());
  const bool json_out = args.json_format();
  std::vector<std::int64_t> lengths;
  if (args.has("--lengths") == args.has("--lengths-file"))
    throw cli::UsageError("give exactly one of --lengths LIST and --lengths-file FILE");
  const std::string source = args.has("--lengths") ? "--lengths" : "--lengths-file";
  if (args.has("--lengths")) {
    lengths = parse_lengths(args.get("--lengths"), "--lengths");
  } else {
    const std::string path = args.input_file("--lengths-file");
    std::ifstream in(path);
    if (!in) throw cli::UsageError("--lengths-file = '" + path + "': cannot be opened");
    std::stringstream ss;
    ss << in.rdbuf();
    lengths = parse_lengths(ss.str(), "--lengths-file");
  }
  ropescale::PackOptions opt;
  opt.original_max_position =
      args.get_int("--original", opt.original_max_position, 1, ropescale::kMaxPosition);
  opt.segment_length =
      args.get_int("--segment-length", opt.segment_length, 2, ropescale::kMaxSegmentTokens);
  if (opt.segment_length <= opt.original_max_position)
    throw cli::UsageError("--segment-length = " + std::to_string(opt.segment_length) +
                          ": must be > --original (" + std::to_string(opt.original_max_position) +
                          ")");
  const std::string packing = args.get("--long-packing", "pack");
  if (packing != "pack" && packing != "chunk")
    throw cli::UsageError("--long-packing = '" + cli::Args::clip(packing) +
                          "': must be 'pack' or 'chunk'");
  opt.long_packing =
      packing == "pack" ? ropescale::LongPacking::kPack : ropescale::LongPacking::kChunk;
  const std::string mask = args.get("--long-mask", "full");
  if (mask != "full" && mask != "document")
    throw cli::UsageError("--long-mask = '" + cli::Args::clip(mask) +
                          "': must be 'full' or 'document'");
  opt.long_mask =
      mask == "full" ? ropescale::MaskKind::kFullCausal : ropescale::MaskKind::kDocumentCausal;
  const std::int64_t show = args.get_int("--show", 20, 0, std::int64_t{1} << 40);

  ropescale::Result<ropescale::PackingPlan> packed = ropescale::pack_documents(lengths, opt);
  if (!packed.ok()) {
    throw cli::UsageError(source + ": " + packed.status().reason());
  }
  const ropescale::PackingPlan plan = std::move(packed).value();

  if (json_out) {
    nlohmann::json segs = nlohmann::json::array();
    for (const ropescale::PackedSegment& s : plan.segments) {
      nlohmann::json pieces = nlohmann::json::array();
      for (const ropescale::DocumentPiece& p : s.pieces)
        pieces.push_back({{"document", p.document},
                          {"document_offset", p.document_offset},
                          {"segment_offset", p.segment_offset},
                          {"length", p.length},
                          {"first_position", p.first_position}});
      segs.push_back({{"window", ropescale::to_string(s.window)},
                      {"mask", ropescale::to_string(s.mask)},
                      {"length", s.length},
                      {"max_position", s.max_position()},
                      {"max_seqlen", s.max_seqlen()},
                      {"cu_seqlens", s.cu_seqlens},
                      {"pieces", pieces}});
    }
    nlohmann::json out =
        cli::json_document("pack", {{"segment_length", opt.segment_length},
                                    {"original_max_position", opt.original_max_position},
                                    {"long_packing", ropescale::to_string(opt.long_packing)},
                                    {"long_mask", ropescale::to_string(opt.long_mask)},
                                    {"documents", plan.num_documents},
                                    {"tokens", plan.total_tokens},
                                    {"fill_ratio", plan.fill_ratio()},
                                    {"short_segments", plan.count(ropescale::RopeWindow::kShort)},
                                    {"long_segments", plan.count(ropescale::RopeWindow::kLong)},
                                    {"segments", segs}});
    std::cout << out.dump() << "\n";
    return 0;
  }

  std::printf("documents %lld, tokens %lld, segment_length %lld, original window %lld\n",
              static_cast<long long>(plan.num_documents), static_cast<long long>(plan.total_tokens),
              static_cast<long long>(opt.segment_length),
              static_cast<long long>(opt.original_max_position));
  std::printf("long documents: %s, %s mask\n", ropescale::to_string(opt.long_packing),
              ropescale::to_string(opt.long_mask));
  std::printf("segments %zu (short %lld, long %lld), fill %.4f\n\n", plan.segments.size(),
              static_cast<long long>(plan.count(ropescale::RopeWindow::kShort)),
              static_cast<long long>(plan.count(ropescale::RopeWindow::kLong)), plan.fill_ratio());
  std::printf("%5s  %6s  %15s  %9s  %7s  %7s  %s\n", "seg", "window", "mask", "tokens", "blocks",
              "max_pos", "pieces doc[from,to)@first_position");
  for (std::size_t i = 0; i < plan.segments.size() && static_cast<std::int64_t>(i) < show; ++i) {
    const ropescale::PackedSegment& s = plan.segments[i];
    std::string pieces;
    for (std::size_t k = 0; k < s.pieces.size(); ++k) {
      if (k == 6) {
        pieces += " ... (" + std::to_string(s.pieces.size()) + " pieces)";
        break;
      }
      const ropescale::DocumentPiece& p = s.pieces[k];
      pieces += (k ? " " : "") + std::to_string(p.document) + "[" +
                std::to_string(p.document_offset) + "," +
                std::to_string(p.document_offset + p.length) + ")@" +
                std::to_string(p.first_position);
    }
    std::printf("%5zu  %6s  %15s  %9lld  %7zu  %7lld  %s\n", i, ropescale::to_string(s.window),
                ropescale::to_string(s.mask), static_cast<long long>(s.length),
                s.cu_seqlens.size() - 1, static_cast<long long>(s.max_position()), pieces.c_str());
  }
  if (static_cast<std::int64_t>(plan.segments.size()) > show)
    std::printf("  ... %zu more (--show N)\n",
                plan.segments.size() - static_cast<std::size_t>(show));
  return 0;
}

const bool registered = cli::register_command(
    {"pack",
     "pack documents into mixed context window training segments (short: original RoPE, "
     "document masks; long: rescaled RoPE)",
     "(--lengths 5,12,40,... | --lengths-file FILE) [--segment-length 131072] [--original 4096] "
     "[--long-packing pack|chunk] [--long-mask full|document] [--show 20] [--format table|json]",
     run_pack, options()});

}  // namespace
