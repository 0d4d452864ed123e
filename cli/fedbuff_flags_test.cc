#include "cli/fedbuff_flags.h"

#include <memory>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace fedkit::cli {
namespace {

using ::testing::HasSubstr;

// Parses `args` (after the program name) into `flags` with an app that lives as long as the
// parser (ResolveFedBuffFlags asks the app's options); false if CLI11 refused them.
class Parser {
 public:
  explicit Parser(FedBuffFlags* flags) { AddFedBuffFlags(app_, "devices training (C)", flags); }
  bool Parse(const std::vector<std::string>& args) {
    std::vector<std::string> reversed(args.rbegin(), args.rend());
    try {
      app_.parse(reversed);
    } catch (const CLI::ParseError&) {
      return false;
    }
    return true;
  }

 private:
  CLI::App app_{"test"};
};

bool Parse(const std::vector<std::string>& args, FedBuffFlags* flags,
           std::vector<std::unique_ptr<Parser>>* parsers) {
  parsers->push_back(std::make_unique<Parser>(flags));
  return parsers->back()->Parse(args);
}

TEST(FedBuffFlagsTest, DefaultsAndValuesReachTheSettings) {
  std::vector<std::unique_ptr<Parser>> parsers;
  FedBuffFlags defaults;
  ASSERT_TRUE(Parse({}, &defaults, &parsers));
  EXPECT_FALSE(ResolveFedBuffFlags(true, &defaults).has_value());
  EXPECT_EQ(defaults.settings.buffer_size, 10);
  EXPECT_EQ(defaults.settings.concurrency, 20);
  EXPECT_EQ(defaults.settings.staleness.exponent, 0.5);

  FedBuffFlags set;
  ASSERT_TRUE(
      Parse({"--buffer-size", "3", "--concurrency", "7", "--staleness", "poly:1"}, &set, &parsers));
  EXPECT_FALSE(ResolveFedBuffFlags(true, &set).has_value());
  EXPECT_EQ(set.settings.buffer_size, 3);
  EXPECT_EQ(set.settings.concurrency, 7);
  EXPECT_EQ(set.settings.staleness.exponent, 1.0);
}

TEST(FedBuffFlagsTest, ErrorsNameTheFlag) {
  std::vector<std::unique_ptr<Parser>> parsers;
  FedBuffFlags bad_weighting;
  ASSERT_TRUE(Parse({"--staleness", "fast"}, &bad_weighting, &parsers));
  std::optional<FlagError> error = ResolveFedBuffFlags(true, &bad_weighting);
  ASSERT_TRUE(error.has_value());
  EXPECT_EQ(error->flag, "--staleness");
  EXPECT_THAT(error->message, HasSubstr("constant, sqrt or poly:A"));

  FedBuffFlags without;
  ASSERT_TRUE(Parse({"--concurrency", "4"}, &without, &parsers));
  error = ResolveFedBuffFlags(false, &without);
  ASSERT_TRUE(error.has_value());
  EXPECT_EQ(error->flag, "--concurrency");
  EXPECT_EQ(error->message, "needs --algorithm fedbuff");
  FedBuffFlags none;
  ASSERT_TRUE(Parse({}, &none, &parsers));
  EXPECT_FALSE(ResolveFedBuffFlags(false, &none).has_value());

  FedBuffFlags zero;
  EXPECT_FALSE(Parse({"--buffer-size", "0"}, &zero, &parsers));  // CLI11's Positive check
}

}  // namespace
}  // namespace fedkit::cli
