// ropescale internal: reading a whole file into memory with a named io_error for every way it can
// fail (missing, a directory, unreadable, too large). Not a public header.
#pragma once

#include "ropescale/detail/internal_header_check.hpp"

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <system_error>

#include "ropescale/error.hpp"

namespace ropescale {
namespace detail {

/// Largest file the readers load (config.json files are a few KB, checkpoints a few MB).
inline constexpr std::uintmax_t kMaxReadFileBytes = std::uintmax_t{1} << 30;

/// Reads `path` into *text. `what` names the argument in the error ("path", "checkpoint path").
inline Status read_file(const std::string& what, const std::string& path, std::string* text) {
  std::error_code ec;
  const std::filesystem::file_status st = std::filesystem::status(path, ec);
  if (ec || !std::filesystem::exists(st))
    return make_status(ErrorCode::kIoError, what, path, "cannot be opened for reading");
  if (std::filesystem::is_directory(st))
    return make_status(ErrorCode::kIoError, what, path, "is a directory, not a file");
  if (std::filesystem::is_regular_file(st)) {
    const std::uintmax_t size = std::filesystem::file_size(path, ec);
    if (!ec && size > kMaxReadFileBytes)
      return make_status(ErrorCode::kIoError, what, path, "is larger than 1 GiB");
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) return make_status(ErrorCode::kIoError, what, path, "cannot be opened for reading");
  std::ostringstream buf;
  buf << in.rdbuf();
  if (in.bad()) return make_status(ErrorCode::kIoError, what, path, "read failed");
  *text = buf.str();
  return Status();
}

}  // namespace detail
}  // namespace ropescale
