// ropescale: umbrella header. Includes every Eigen-only public header. The JSON headers
// (ropescale/io/hf_config.hpp, ropescale/io/search_checkpoint.hpp) need nlohmann/json and are
// included separately.
#pragma once

#include "ropescale/config.hpp"
#include "ropescale/critical.hpp"
#include "ropescale/error.hpp"
#include "ropescale/factors.hpp"
#include "ropescale/frequencies.hpp"
#include "ropescale/kernel_path.hpp"
#include "ropescale/kv_cache.hpp"
#include "ropescale/mrope.hpp"
#include "ropescale/mrope_layout.hpp"
#include "ropescale/needle.hpp"
#include "ropescale/packing.hpp"
#include "ropescale/rerotate.hpp"
#include "ropescale/rotary.hpp"
#include "ropescale/rotary_plan.hpp"
#include "ropescale/scaling.hpp"
#include "ropescale/search.hpp"
#include "ropescale/search_space.hpp"
#include "ropescale/search_state.hpp"
#include "ropescale/training.hpp"
#include "ropescale/window.hpp"
