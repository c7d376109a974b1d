// ropescale internal: field tables of persisted structs.
//
// A persisted struct lists its fields once, in `static auto fields()`, as a tuple of descriptors
// (name, flags, how to read it, how to set it). Equality, the first differing field (what resume
// reports) and the checkpoint JSON both ways (checkpoint_json.hpp) are derived from that list, so
// a new field is one line and cannot be forgotten by one of them.
#pragma once

#include "ropescale/detail/internal_header_check.hpp"

#include <string>
#include <tuple>
#include <type_traits>
#include <utility>

#include "ropescale/error.hpp"

namespace ropescale {
namespace detail {

/// kFieldPersisted: written to and read from a checkpoint. kFieldDefining: part of what defines a
/// search, so a resume must match it. kFieldOptional: a checkpoint may omit it (read as the
/// default; written only when omit(s) is false).
enum FieldFlags : unsigned {
  kFieldPersisted = 1u,
  kFieldDefining = 2u,
  kFieldOptional = 4u,
};

template <class S, class T, class Get, class Set, class Omit>
struct Field {
  using value_type = T;
  const char* name;
  unsigned flags;
  Get get;    // const S& -> T: the value compared, formatted and written
  Set set;    // (S&, T)
  Omit omit;  // const S& -> bool: leave the key out of the JSON (kFieldOptional only)

  bool has(unsigned f) const noexcept { return (flags & f) == f; }
};

template <class S, class T, class Get, class Set, class Omit>
Field<S, T, Get, Set, Omit> make_field(const char* name, unsigned flags, Get get, Set set,
                                       Omit omit) {
  return Field<S, T, Get, Set, Omit>{name, flags, std::move(get), std::move(set), std::move(omit)};
}

/// A plain data member.
template <class S, class T>
auto member_field(const char* name, T S::*m, unsigned flags) {
  return make_field<S, T>(
      name, flags, [m](const S& s) { return s.*m; }, [m](S& s, const T& v) { s.*m = v; },
      [](const S&) { return false; });
}

/// A member of a member (SearchSpace::spec.head_dim), named by its inner name.
template <class S, class M, class T>
auto nested_field(const char* name, M S::*outer, T M::*inner, unsigned flags) {
  return make_field<S, T>(
      name, flags, [outer, inner](const S& s) { return (s.*outer).*inner; },
      [outer, inner](S& s, const T& v) { (s.*outer).*inner = v; }, [](const S&) { return false; });
}

template <class Tuple, class F>
void for_each_field(const Tuple& fields, F&& f) {
  std::apply([&](const auto&... field) { (f(field), ...); }, fields);
}

// Enumerations print with their to_string() (found by argument-dependent lookup).
template <class T>
std::string format_field(const T& v) {
  if constexpr (std::is_enum_v<T>)
    return to_string(v);
  else
    return format_value(v);
}

/// Every field equal (flags ignored: equality is of the whole struct).
template <class S>
bool fields_equal(const S& a, const S& b) {
  bool equal = true;
  for_each_field(S::fields(), [&](const auto& f) { equal = equal && f.get(a) == f.get(b); });
  return equal;
}

/// "name (a vs b)" for the first field carrying `flags` in which a and b differ; "" when none.
template <class S>
std::string first_field_mismatch(const S& a, const S& b, unsigned flags) {
  std::string out;
  for_each_field(S::fields(), [&](const auto& f) {
    if (!out.empty() || !f.has(flags) || f.get(a) == f.get(b)) return;
    out =
        std::string(f.name) + " (" + format_field(f.get(a)) + " vs " + format_field(f.get(b)) + ")";
  });
  return out;
}

}  // namespace detail
}  // namespace ropescale
