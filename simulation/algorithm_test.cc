#include "simulation/algorithm.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace fedkit::simulation {
namespace {

using ::testing::HasSubstr;

TEST(AlgorithmTest, NamesRoundTrip) {
  for (Algorithm a :
       {Algorithm::kFedAvg, Algorithm::kScaffold, Algorithm::kFedNova, Algorithm::kFedBuff}) {
    absl::StatusOr<Algorithm> parsed = ParseAlgorithm(AlgorithmName(a));
    ASSERT_TRUE(parsed.ok()) << parsed.status();
    EXPECT_EQ(*parsed, a);
  }
  EXPECT_EQ(AlgorithmName(Algorithm::kScaffold), "scaffold");
  EXPECT_EQ(AlgorithmNames(), "fedavg | scaffold | fednova | fedbuff");
}

TEST(AlgorithmTest, UnknownNamesListTheAcceptedOnes) {
  for (const char* text : {"", "FedAvg", "fedprox", "fed-buff", "scaffold "}) {
    absl::StatusOr<Algorithm> parsed = ParseAlgorithm(text);
    EXPECT_EQ(parsed.status().code(), absl::StatusCode::kInvalidArgument) << text;
    EXPECT_THAT(parsed.status().message(),
                HasSubstr("accepted: fedavg | scaffold | fednova | fedbuff"));
  }
}

}  // namespace
}  // namespace fedkit::simulation
