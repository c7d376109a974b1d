// Names kept for existing callers still compile and forward to the one rule they were folded
// into (this file is built with deprecation warnings off; the rest of the tree uses new names).
#include <gtest/gtest.h>

#include <cstdint>
#include <string>

#include "ropescale/io/hf_config.hpp"

namespace {

std::string data(const char* name) { return std::string(ROPESCALE_TEST_DATA_DIR) + "/" + name; }

TEST(DeprecatedNames, ForwardToTheWindowRule) {
  const ropescale::RopeConfig phi35 = ropescale::load_hf_config(data("phi35_mini_instruct.json"));
  EXPECT_EQ(phi35.selection_for(4096), phi35.window_for(4096));
  EXPECT_EQ(phi35.selection_for(4097), ropescale::RopeWindow::kLong);
}

}  // namespace
