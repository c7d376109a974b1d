// Names kept for existing callers still compile and forward to the one rule they were folded
// into (this file is built with deprecation warnings off; the rest of the tree uses new names).
#include <gtest/gtest.h>

#include <cstdint>
#include <string>

#include "ropescale/scaling.hpp"
#include "ropescale/search_space.hpp"
#include "ropescale/window.hpp"

namespace {

TEST(DeprecatedNames, ForwardToTheWindowRule) {
  const ropescale::RopeSpec spec{96, 96, 10000.0, 4096};
  for (const std::int64_t seq_len : {std::int64_t{-1}, std::int64_t{0}, std::int64_t{4096},
                                     std::int64_t{4097}, std::int64_t{1} << 40}) {
    const ropescale::LongRopeSelection old = ropescale::longrope_select(spec, seq_len);
    EXPECT_EQ(old, ropescale::rope_window(seq_len, spec.original_max_position)) << seq_len;
  }
  EXPECT_EQ(ropescale::LongRopeSelection::kLong, ropescale::RopeWindow::kLong);
}

TEST(DeprecatedNames, ValidateGenomeIsValidateOfSpaceAndGenome) {
  const ropescale::SearchSpace sp =
      ropescale::SearchSpace::longrope2(ropescale::RopeSpec{128, 128, 500000.0, 8192}, 131072);
  ropescale::Genome g;
  g.critical_pair = sp.critical_lower;
  g.steps.assign(static_cast<std::size_t>(sp.spec.pairs() - g.critical_pair), sp.grid_lo());
  EXPECT_TRUE(ropescale::validate_genome(sp, g).ok());
  g.steps.back() = sp.grid_hi() + 1;
  EXPECT_FALSE(ropescale::validate_genome(sp, g).ok());
  EXPECT_EQ(ropescale::validate_genome(sp, g).message(), ropescale::validate(sp, g).message());
}

}  // namespace
