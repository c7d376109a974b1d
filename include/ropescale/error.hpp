// ropescale: errors.
//
// Every public function validates its arguments at the front door. A bad argument produces an
// Error (an exception) whose message names the argument, the value and the rule it broke, e.g.
//
//   ropescale: invalid_argument: rotary_dim = 7: must be even
//
// Callers built without exceptions use the try_* twins, which return the same information as a
// Status and never throw. The ErrorCode and its id() string are stable: match on them, not on the
// message text.
#pragma once

#include <cmath>
#include <cstdint>
#include <sstream>
#include <stdexcept>
#include <string>
#include <utility>

#include "ropescale/config.hpp"

namespace ropescale {

/// Stable error categories.
enum class ErrorCode : int {
  kOk = 0,
  kInvalidArgument = 1,  ///< an argument breaks a documented rule
  kOutOfRange = 2,       ///< an index or position outside what a table or cache covers
  kParseError = 3,       ///< malformed or inconsistent input data (JSON, checkpoints, files)
  kIoError = 4,          ///< a file could not be opened, read or written
  kUnsupported = 5,      ///< a well-formed request the library does not implement
};

/// The stable identifier of a code ("invalid_argument", ...).
inline const char* error_id(ErrorCode code) noexcept {
  switch (code) {
    case ErrorCode::kOk:
      return "ok";
    case ErrorCode::kInvalidArgument:
      return "invalid_argument";
    case ErrorCode::kOutOfRange:
      return "out_of_range";
    case ErrorCode::kParseError:
      return "parse_error";
    case ErrorCode::kIoError:
      return "io_error";
    case ErrorCode::kUnsupported:
      return "unsupported";
  }
  return "unknown";
}

/// Non-throwing result: ok, or a code plus a human-readable message.
class Status {
 public:
  Status() = default;
  Status(ErrorCode code, std::string message) : code_(code), message_(std::move(message)) {}

  static Status ok_status() { return Status(); }

  bool ok() const noexcept { return code_ == ErrorCode::kOk; }
  explicit operator bool() const noexcept { return ok(); }
  ErrorCode code() const noexcept { return code_; }
  const char* id() const noexcept { return error_id(code_); }
  /// Full message, "ropescale: <id>: <argument> = <value>: <rule>"; empty when ok.
  const std::string& message() const noexcept { return message_; }

 private:
  ErrorCode code_ = ErrorCode::kOk;
  std::string message_;
};

/// The exception thrown by every checked entry point.
class Error : public std::runtime_error {
 public:
  explicit Error(const Status& status) : std::runtime_error(status.message()), status_(status) {}
  Error(ErrorCode code, const std::string& message) : Error(Status(code, message)) {}

  ErrorCode code() const noexcept { return status_.code(); }
  const char* id() const noexcept { return status_.id(); }
  const Status& status() const noexcept { return status_; }

 private:
  Status status_;
};

namespace detail {

template <typename T>
inline std::string format_value(const T& value) {
  std::ostringstream os;
  os.precision(17);
  os << value;
  return os.str();
}

/// Longest string echoed whole into a message; longer ones show their head and their size, so a
/// hostile 200 MB value cannot make a 200 MB error.
constexpr std::size_t kMaxEchoedChars = 120;

inline std::string format_value(const std::string& value) {
  if (value.size() <= kMaxEchoedChars) return "\"" + value + "\"";
  return "\"" + value.substr(0, kMaxEchoedChars) + "\"... (" + std::to_string(value.size()) +
         " bytes)";
}
inline std::string format_value(const char* value) {
  return value ? format_value(std::string(value)) : std::string("null");
}
inline std::string format_value(std::nullptr_t) { return "null"; }
/// An argument name built from input (a config key, a layer type) is cut like a value.
inline std::string format_argument(const std::string& argument) {
  if (argument.size() <= 2 * kMaxEchoedChars) return argument;
  return argument.substr(0, 2 * kMaxEchoedChars) + "... (" + std::to_string(argument.size()) +
         " bytes)";
}
inline std::string format_value(bool value) { return value ? "true" : "false"; }

}  // namespace detail

/// Builds the Status for an argument that broke a rule: names the argument, its value, the rule.
template <typename T>
inline Status make_status(ErrorCode code, const std::string& argument, const T& value,
                          const std::string& rule) {
  return Status(code, std::string("ropescale: ") + error_id(code) + ": " +
                          detail::format_argument(argument) + " = " + detail::format_value(value) +
                          ": " + rule);
}

/// Throws status as an Error unless it is ok. Without exceptions it prints and aborts.
inline void throw_if_error(const Status& status) {
  if (status.ok()) return;
#ifdef ROPESCALE_NO_EXCEPTIONS
  std::fprintf(stderr, "%s\n", status.message().c_str());
  std::abort();
#else
  throw Error(status);
#endif
}

}  // namespace ropescale

/// Returns from the enclosing Status-returning function when expr is not ok.
#define ROPESCALE_RETURN_IF_ERROR(expr)                    \
  do {                                                     \
    ::ropescale::Status ropescale_status_ = (expr);        \
    if (!ropescale_status_.ok()) return ropescale_status_; \
  } while (false)
