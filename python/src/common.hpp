// Shared by the binding's translation units (module.cpp, search.cpp).
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <Eigen/Core>
#include <nlohmann/json.hpp>
#include <string>

#include "ropescale/error.hpp"
#include "ropescale/frequencies.hpp"

namespace ropescale_py {
void check(const ropescale::Status& s);
[[noreturn]] void fail(const std::string& argument, const std::string& value,
                       const std::string& rule);
pybind11::object to_python(const nlohmann::json& j);
nlohmann::json from_python(const pybind11::object& o);
pybind11::array_t<double> to_numpy(const Eigen::ArrayXd& a);
std::string spec_repr(const ropescale::RopeSpec& s);
}  // namespace ropescale_py
