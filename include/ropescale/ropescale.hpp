// ropescale: umbrella header. Includes every Eigen-only public header; the JSON config
// import/export (ropescale/io/hf_config.hpp) needs nlohmann/json and is included separately.
#pragma once

#include "ropescale/config.hpp"
#include "ropescale/error.hpp"
#include "ropescale/factors.hpp"
#include "ropescale/frequencies.hpp"
#include "ropescale/rotary.hpp"
