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
#include <cstdio>
#include <cstdlib>
#include <optional>
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

/// Non-throwing result: ok, or an error held as fields (what broke which rule), formatted into a
/// message only on demand. Callers match on `code()` and read `argument()`, `value()`, `rule()`
/// and `context()`; nothing needs to parse `message()` back.
class Status {
 public:
  Status() = default;
  /// An argument that broke a rule. `value` is already formatted (see make_status); empty when
  /// there is no single value to show (e.g. a missing field).
  Status(ErrorCode code, std::string argument, std::string value, std::string rule)
      : code_(code),
        argument_(std::move(argument)),
        value_(std::move(value)),
        rule_(std::move(rule)) {}

  static Status ok_status() { return Status(); }

  bool ok() const noexcept { return code_ == ErrorCode::kOk; }
  explicit operator bool() const noexcept { return ok(); }
  ErrorCode code() const noexcept { return code_; }
  const char* id() const noexcept { return error_id(code_); }
  /// The argument, field or JSON path that broke the rule ("rotary_dim", "rope_scaling.factor").
  const std::string& argument() const noexcept { return argument_; }
  /// Its value as shown in the message (strings quoted, long ones cut); may be empty.
  const std::string& value() const noexcept { return value_; }
  /// The rule it broke ("must be even").
  const std::string& rule() const noexcept { return rule_; }
  /// Where it happened, outermost last ("table 2, method \"yarn\"", "in config.json").
  const std::string& context() const noexcept { return context_; }

  /// "<id>: <argument> = <value>: <rule> (<context>)"; parts that are empty are left out; empty
  /// when ok.
  std::string reason() const {
    if (ok()) return std::string();
    std::string m = std::string(id()) + ": ";
    if (!argument_.empty()) {
      m += argument_;
      if (!value_.empty()) m += " = " + value_;
      m += ": ";
    }
    m += rule_;
    if (!context_.empty()) m += " (" + context_ + ")";
    return m;
  }
  /// "ropescale: " + reason(); empty when ok.
  std::string message() const { return ok() ? std::string() : "ropescale: " + reason(); }

  /// The same error under another argument name (an importer names the config key a parameter
  /// came from). No effect when ok.
  Status with_argument(std::string argument) const {
    Status s = *this;
    if (!ok()) s.argument_ = std::move(argument);
    return s;
  }
  /// The same error under another code (a checkpoint reader reports a bad space as parse_error).
  Status with_code(ErrorCode code) const {
    Status s = *this;
    if (!ok() && code != ErrorCode::kOk) s.code_ = code;
    return s;
  }
  /// Adds where it happened; contexts added later are outer ones and come after. No effect when
  /// ok.
  Status with_context(const std::string& where) const {
    Status s = *this;
    if (!ok() && !where.empty())
      s.context_ = s.context_.empty() ? where : s.context_ + ", " + where;
    return s;
  }

  friend bool operator==(const Status& a, const Status& b) {
    return a.code_ == b.code_ && a.argument_ == b.argument_ && a.value_ == b.value_ &&
           a.rule_ == b.rule_ && a.context_ == b.context_;
  }
  friend bool operator!=(const Status& a, const Status& b) { return !(a == b); }

 private:
  ErrorCode code_ = ErrorCode::kOk;
  std::string argument_;
  std::string value_;
  std::string rule_;
  std::string context_;
};

/// The exception thrown by every checked entry point.
class Error : public std::runtime_error {
 public:
  explicit Error(const Status& status) : std::runtime_error(status.message()), status_(status) {}

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
  return Status(code, detail::format_argument(argument), detail::format_value(value), rule);
}

/// A Status for a rule broken by no single argument (malformed input as a whole).
inline Status make_status(ErrorCode code, const std::string& rule) {
  return Status(code, std::string(), std::string(), rule);
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

/// A value, or the Status that says why there is none: what every checked operation returns.
///
///   ropescale::Result<ropescale::FactorTable> t = ropescale::yarn_factors(spec, 4.0, {});
///   if (!t.ok()) return t.status();          // no exceptions needed
///   use(t.value());                            // or: value() throws Error when not ok
///
/// `value()` on an error throws Error, or prints the message and aborts when exceptions are off
/// (ROPESCALE_NO_EXCEPTIONS).
template <typename T>
class [[nodiscard]] Result {
 public:
  /// A value.
  Result(T value) : value_(std::move(value)) {}  // NOLINT: implicit, `return table;` reads well
  /// An error. An ok Status carries no value, so it becomes an internal error naming the misuse.
  Result(Status status) : status_(std::move(status)) {  // NOLINT: implicit, `return status;`
    if (status_.ok())
      status_ = make_status(ErrorCode::kInvalidArgument, "Result(Status)", "ok",
                            "an ok Status carries no value");
  }

  bool ok() const noexcept { return value_.has_value(); }
  explicit operator bool() const noexcept { return ok(); }
  /// ok_status() with a value, else the error.
  const Status& status() const noexcept { return status_; }

  T& value() & {
    check();
    return *value_;
  }
  const T& value() const& {
    check();
    return *value_;
  }
  T&& value() && {
    check();
    return std::move(*value_);
  }
  /// The value, or `fallback` when there is none.
  T value_or(T fallback) const& { return ok() ? *value_ : std::move(fallback); }
  T value_or(T fallback) && { return ok() ? std::move(*value_) : std::move(fallback); }

  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }

 private:
  void check() const {
    if (!ok()) throw_if_error(status_);
  }

  std::optional<T> value_;
  Status status_;
};

}  // namespace ropescale

/// Returns from the enclosing Status-returning function when expr is not ok.
#define ROPESCALE_RETURN_IF_ERROR(expr)                    \
  do {                                                     \
    ::ropescale::Status ropescale_status_ = (expr);        \
    if (!ropescale_status_.ok()) return ropescale_status_; \
  } while (false)
