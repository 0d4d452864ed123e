#include "cli/logging.h"

#include <nlohmann/json.hpp>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace fedkit::cli {
namespace {

using ::testing::HasSubstr;

std::string Format(LogFormat format, spdlog::level::level_enum level, const std::string& text) {
  spdlog::details::log_msg msg("fedkit-test", level, text);
  spdlog::memory_buf_t out;
  MakeLogFormatter(format, "fedkit-test")->format(msg, out);
  return std::string(out.data(), out.size());
}

TEST(LoggingTest, TextLinesNameTheProgramAndShowLevelsFromWarningsUp) {
  EXPECT_EQ(Format(LogFormat::kText, spdlog::level::info, "serving on port 5"),
            "fedkit-test: serving on port 5\n");
  EXPECT_EQ(Format(LogFormat::kText, spdlog::level::warn, "no auth"),
            "fedkit-test: warning: no auth\n");
  EXPECT_EQ(Format(LogFormat::kText, spdlog::level::err, "disk full"),
            "fedkit-test: error: disk full\n");
}

TEST(LoggingTest, JsonLinesAreOneEscapedObjectEach) {
  const std::string line =
      Format(LogFormat::kJson, spdlog::level::warn, "client \"a\nb\" \xff misbehaved");
  ASSERT_EQ(line.back(), '\n');
  ASSERT_EQ(line.find('\n'), line.size() - 1) << "one line";
  const nlohmann::json object = nlohmann::json::parse(line);
  EXPECT_EQ(object.at("level"), "warning");
  EXPECT_EQ(object.at("logger"), "fedkit-test");
  EXPECT_THAT(object.at("message").get<std::string>(), HasSubstr("client \"a\nb\""));
  EXPECT_THAT(object.at("time").get<std::string>(),
              ::testing::MatchesRegex("[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:.]{12}Z"));
}

TEST(LoggingTest, FlagValuesAreParsedOrRefusedWithTheChoices) {
  EXPECT_EQ(*ParseLogFormat("json"), LogFormat::kJson);
  EXPECT_THAT(ParseLogFormat("xml").status().message(), HasSubstr("text or json"));
  EXPECT_EQ(*ParseLogLevel("warning"), spdlog::level::warn);
  EXPECT_EQ(*ParseLogLevel("error"), spdlog::level::err);
  EXPECT_EQ(*ParseLogLevel("debug"), spdlog::level::debug);
  EXPECT_THAT(ParseLogLevel("loud").status().message(), HasSubstr("trace, debug, info"));
}

}  // namespace
}  // namespace fedkit::cli
