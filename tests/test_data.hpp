// Helpers the tests share for reading the golden data in tests/data.
#pragma once

#include <gtest/gtest.h>

#include <Eigen/Core>
#include <algorithm>
#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <type_traits>

namespace ropescale_test {

/// Path of a file in tests/data.
inline std::string data_path(const std::string& name) {
  return std::string(ROPESCALE_TEST_DATA_DIR) + "/" + name;
}

/// Parses a JSON file from tests/data (a missing file fails the test).
inline nlohmann::json load_json(const std::string& name) {
  std::ifstream in(data_path(name));
  EXPECT_TRUE(in.good()) << name;
  return nlohmann::json::parse(in);
}

/// A JSON list of numbers as an Eigen array.
inline Eigen::ArrayXd to_array(const nlohmann::json& list) {
  Eigen::ArrayXd out(static_cast<Eigen::Index>(list.size()));
  for (std::size_t i = 0; i < list.size(); ++i) out[static_cast<Eigen::Index>(i)] = list[i];
  return out;
}

/// max_i |got_i - want_i| / |want_i| (sizes must match).
inline double max_rel_error(const Eigen::ArrayXd& got, const Eigen::ArrayXd& want) {
  EXPECT_EQ(got.size(), want.size());
  double worst = 0;
  for (Eigen::Index i = 0; i < std::min(got.size(), want.size()); ++i)
    worst = std::max(worst, std::abs(got[i] - want[i]) / std::abs(want[i]));
  return worst;
}

// Names typed tests by rotary storage type (and gives TYPED_TEST_SUITE its third argument, which
// Clang's -Wpedantic wants).
struct StorageName {
  template <typename T>
  static std::string GetName(int) {
    if (std::is_same<T, float>::value) return "float";
    if (std::is_same<T, double>::value) return "double";
    if (std::is_same<T, Eigen::half>::value) return "half";
    return "bfloat16";
  }
};

}  // namespace ropescale_test
