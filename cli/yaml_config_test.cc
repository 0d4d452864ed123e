// YamlConfig through a CLI11 app, as the binaries use it (--config FILE).
#include "cli/yaml_config.h"

#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace fedkit::cli {
namespace {

using ::testing::HasSubstr;

// Parses "--config FILE" with FILE holding `yaml`: "" when accepted, else the ParseError's
// message. Any other exception fails the test (it would terminate the binary). The file is named
// after the running test: ctest runs each test as its own process, side by side, and a shared
// file let one test read another's YAML (CI saw it once).
std::string ParseConfig(const std::string& yaml, int* rounds,
                        std::vector<std::string>* ids = nullptr) {
  const std::string path = ::testing::TempDir() + "/yaml_config_test_" +
                           ::testing::UnitTest::GetInstance()->current_test_info()->name() +
                           ".yaml";
  std::ofstream(path, std::ios::trunc) << yaml;
  CLI::App app("test");
  AddYamlConfigOption(app);
  app.add_option("--rounds", *rounds)->check(Positive());
  std::vector<std::string> unused;
  app.add_option("--client-ids", ids != nullptr ? *ids : unused);
  std::vector<std::string> args = {"test", "--config", path};
  std::vector<char*> argv;
  for (std::string& arg : args) argv.push_back(arg.data());
  try {
    app.parse(static_cast<int>(argv.size()), argv.data());
  } catch (const CLI::ParseError& e) {
    return e.what();
  }
  return "";
}

TEST(YamlConfigTest, ReadsScalarsAndListsWithUnderscoresForDashes) {
  int rounds = 0;
  std::vector<std::string> ids;
  EXPECT_EQ(ParseConfig("rounds: 7\nclient_ids: [a, b]\n", &rounds, &ids), "");
  EXPECT_EQ(rounds, 7);
  EXPECT_EQ(ids, (std::vector<std::string>{"a", "b"}));
}

TEST(YamlConfigTest, RefusesNestedValuesAndBadYamlWithAMessage) {
  int rounds = 0;
  EXPECT_THAT(ParseConfig("rounds: {a: 1}\n", &rounds), HasSubstr("scalar or a list"));
  EXPECT_THAT(ParseConfig("rounds: [1, [2]]\n", &rounds), HasSubstr("list elements"));
  EXPECT_THAT(ParseConfig("rounds: [1\n", &rounds), HasSubstr("not valid YAML"));
  EXPECT_THAT(ParseConfig("- 1\n- 2\n", &rounds), HasSubstr("mapping"));
}

// Found by fuzz/yaml_config_fuzz.cc: a key that is a list or a mapping threw yaml-cpp's
// TypedBadConversion past CLI11, which terminated the binary instead of refusing the file.
TEST(YamlConfigTest, AKeyThatIsNotAScalarIsRefusedNotACrash) {
  int rounds = 0;
  EXPECT_THAT(ParseConfig("? [a, b]\n: 1\n", &rounds), HasSubstr("key"));
  EXPECT_THAT(ParseConfig("{[a]: 1}\n", &rounds), HasSubstr("key"));
  EXPECT_THAT(ParseConfig("{rounds: 2}: 1\n", &rounds), HasSubstr("key"));
  EXPECT_THAT(ParseConfig("? &k [x]\n: 1\n*k : 2\n", &rounds), HasSubstr("key"));
}

}  // namespace
}  // namespace fedkit::cli
