#include "server/participation.h"

#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace fedkit::server {
namespace {

using ::testing::HasSubstr;

TEST(ParticipationTest, RoundTripsThroughJsonLines) {
  RoundParticipation first{1, 0, {"apple", "fig", "kiwi"}, {"apple", "kiwi"}, {"kiwi"}};
  RoundParticipation second{2, 3, {"fig"}, {"fig"}, {}};
  const std::string text = ParticipationToJson(first) + "\n\n" + ParticipationToJson(second) + "\n";
  auto parsed = ParseParticipation(text, "p.jsonl");
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  ASSERT_EQ(parsed->size(), 2u);
  EXPECT_EQ((*parsed)[0].pool, first.pool);
  EXPECT_EQ((*parsed)[0].assigned, first.assigned);
  EXPECT_EQ((*parsed)[0].aggregated, first.aggregated);
  EXPECT_EQ((*parsed)[1].round, 2);
  EXPECT_EQ((*parsed)[1].attempt, 3);
  EXPECT_TRUE((*parsed)[1].aggregated.empty());
  EXPECT_FALSE((*parsed)[0].sampling_seed.has_value());
}

TEST(ParticipationTest, TheSamplingSeedRoundTripsExactlyAndIsChecked) {
  RoundParticipation round{1, 0, {"a", "b"}, {"a"}, {"a"}};
  round.sampling_seed = ~uint64_t{0} - 6;  // above 2^53: kept as a string, exactly
  auto parsed = ParseParticipation(ParticipationToJson(round), "p.jsonl");
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  ASSERT_TRUE((*parsed)[0].sampling_seed.has_value());
  EXPECT_EQ(*(*parsed)[0].sampling_seed, ~uint64_t{0} - 6);
  const std::string ok = R"("round":1,"attempt":0,"pool":["a"],"assigned":["a"],"aggregated":[])";
  for (const std::string seed : {"12", R"("x")", R"("-1")", R"("18446744073709551616")"}) {
    auto bad = ParseParticipation("{" + ok + R"(,"sampling_seed":)" + seed + "}", "p.jsonl");
    ASSERT_FALSE(bad.ok()) << seed;
    EXPECT_THAT(bad.status().message(), HasSubstr("'sampling_seed' must be a string")) << seed;
  }
}

TEST(ParticipationTest, MalformedLinesAreRefusedWithFileLineAndReason) {
  const std::string ok = R"("pool":["a","b"],"assigned":["a"],"aggregated":["a"])";
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"not json", "p.jsonl:1: not a JSON object"},
      {R"({"attempt":0,)" + ok + "}", "'round' must be a non-negative integer"},
      {R"({"round":1,"attempt":-1,)" + ok + "}", "'attempt' must be a non-negative integer"},
      {R"({"round":2,"attempt":0,)" + ok + "}", "round 2 where round 1 was expected"},
      {R"({"round":1,"attempt":0,"pool":"a","assigned":[],"aggregated":[]})",
       "'pool' must be a list of ids"},
      {R"({"round":1,"attempt":0,"pool":["b","a"],"assigned":[],"aggregated":[]})",
       "'pool' is not sorted without repeats at 'a'"},
      {R"({"round":1,"attempt":0,"pool":["a","a"],"assigned":[],"aggregated":[]})",
       "not sorted without repeats"},
      {R"({"round":1,"attempt":0,"pool":["a b"],"assigned":[],"aggregated":[]})", "'pool': "},
      {R"({"round":1,"attempt":0,"pool":[1],"assigned":[],"aggregated":[]})", "not a string"},
      {R"({"round":1,"attempt":0,"pool":["a"],"assigned":["c"],"aggregated":[]})",
       "'c' is in 'assigned' but not in 'pool'"},
      {R"({"round":1,"attempt":0,"pool":["a","b"],"assigned":["a"],"aggregated":["b"]})",
       "'b' is in 'aggregated' but not in 'assigned'"},
  };
  for (const auto& [line, message] : cases) {
    auto parsed = ParseParticipation(line + "\n", "p.jsonl");
    ASSERT_FALSE(parsed.ok()) << line;
    EXPECT_EQ(parsed.status().code(), absl::StatusCode::kInvalidArgument) << line;
    EXPECT_THAT(parsed.status().message(), HasSubstr(message)) << line;
  }
  // The line number counts from the top of the file.
  auto parsed = ParseParticipation(R"({"round":1,"attempt":0,)" + ok + "}\n{}\n", "p.jsonl");
  EXPECT_THAT(parsed.status().message(), HasSubstr("p.jsonl:2: "));
  EXPECT_EQ(ReadParticipationFile("/nonexistent/p.jsonl").status().code(),
            absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace fedkit::server
