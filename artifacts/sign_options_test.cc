#include "artifacts/sign_options.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace fedkit::artifacts {
namespace {

using ::testing::HasSubstr;

TEST(SignOptionsTest, ParsesEachCommand) {
  SignParseResult r = ParseSignOptions(
      {"fedkit-sign", "keygen", "--out-private", "k.pem", "--out-public", "p.pem"});
  ASSERT_EQ(r.exit_code, -1) << r.message;
  EXPECT_EQ(r.options.command, SignOptions::Command::kKeygen);
  EXPECT_EQ(r.options.out_private, "k.pem");
  EXPECT_FALSE(r.options.force);

  r = ParseSignOptions({"fedkit-sign", "sign", "--key", "k.pem", "--artifact", "m.pt"});
  ASSERT_EQ(r.exit_code, -1) << r.message;
  EXPECT_EQ(r.options.command, SignOptions::Command::kSign);
  EXPECT_EQ(r.options.out, "m.pt.sig");

  r = ParseSignOptions({"fedkit-sign", "verify", "--public-key", "p.pem", "--artifact", "m.pt",
                        "--signature", "x.sig"});
  ASSERT_EQ(r.exit_code, -1) << r.message;
  EXPECT_EQ(r.options.command, SignOptions::Command::kVerify);
  EXPECT_EQ(r.options.signature, "x.sig");
}

TEST(SignOptionsTest, UsageErrorsNameTheFlag) {
  SignParseResult r = ParseSignOptions({"fedkit-sign", "sign", "--artifact", "m.pt"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(r.message, HasSubstr("--key"));
  r = ParseSignOptions(
      {"fedkit-sign", "verify", "--public-key", "p", "--artifact", "m", "--bogus"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(r.message, HasSubstr("--bogus"));
  EXPECT_EQ(ParseSignOptions({"fedkit-sign"}).exit_code, 2);
  EXPECT_EQ(ParseSignOptions({"fedkit-sign", "--help"}).exit_code, 0);
}

}  // namespace
}  // namespace fedkit::artifacts
