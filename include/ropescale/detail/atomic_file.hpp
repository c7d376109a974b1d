// ropescale internal: the pieces of an atomic file replacement (the target a path names through
// symbolic links, a directory fsync after the rename). Not a public header.
#pragma once

#include "ropescale/detail/internal_header_check.hpp"

#include <filesystem>
#include <string>
#include <system_error>

#if defined(__unix__) || defined(__APPLE__)
#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#endif

namespace ropescale {

namespace detail {

// The file a checkpoint path names: symbolic links are followed (also dangling ones), so that
// the rename replaces the link's target and the link itself survives.
inline std::string checkpoint_target(const std::string& path) {
  namespace fs = std::filesystem;
  fs::path p(path);
  std::error_code ec;
  for (int hop = 0; hop < 40 && fs::is_symlink(fs::symlink_status(p, ec)); ++hop) {
    const fs::path next = fs::read_symlink(p, ec);
    if (ec) break;
    p = next.is_absolute() ? next : p.parent_path() / next;
  }
  return p.string();
}

// fsync of the directory holding `file`, so that a completed rename survives a power loss.
inline bool sync_parent_directory(const std::string& file) {
#if defined(__unix__) || defined(__APPLE__)
  std::filesystem::path dir = std::filesystem::path(file).parent_path();
  if (dir.empty()) dir = ".";
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY);
  if (fd < 0) return false;
  const bool ok = ::fsync(fd) == 0 || errno == EINVAL;  // EINVAL: no directory sync here
  ::close(fd);
  return ok;
#else
  (void)file;
  return true;
#endif
}

}  // namespace detail

}  // namespace ropescale
