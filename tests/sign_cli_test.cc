// End-to-end test of the fedkit-sign binary: keygen, sign, verify, and a tampered copy refused.
#include <sys/stat.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/subprocess.h"

namespace fedkit {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

struct SignRun {
  int exit_code;
  std::string output;
};

SignRun Sign(const fs::path& dir, const std::vector<std::string>& args) {
  std::vector<std::string> argv = {FEDKIT_SIGN_BINARY};
  argv.insert(argv.end(), args.begin(), args.end());
  testing_util::Subprocess p;
  const std::string out = (dir / "out.txt").string();
  EXPECT_TRUE(p.Start(argv, out));
  const int code = p.Wait();
  return {code, p.Output()};
}

TEST(SignCliTest, KeygenSignVerifyAndTamperedCopy) {
  const fs::path dir = fs::path(testing::TempDir()) / "fedkit_sign_cli";
  fs::remove_all(dir);
  fs::create_directories(dir);
  const std::string priv = (dir / "k.pem").string(), pub = (dir / "p.pem").string();
  const std::string model = (dir / "model.pt").string(), tampered = (dir / "tampered.pt").string();
  {
    std::ofstream out(model, std::ios::binary);
    for (int i = 0; i < 4096; ++i) out.put(static_cast<char>(i * 31));
  }
  SignRun r = Sign(dir, {"keygen", "--out-private", priv, "--out-public", pub});
  ASSERT_EQ(r.exit_code, 0) << r.output;
  struct stat st;
  ASSERT_EQ(stat(priv.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  r = Sign(dir, {"keygen", "--out-private", priv, "--out-public", pub});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.output, HasSubstr("--force"));

  r = Sign(dir, {"sign", "--key", priv, "--artifact", model});
  ASSERT_EQ(r.exit_code, 0) << r.output;
  r = Sign(dir, {"verify", "--public-key", pub, "--artifact", model});
  EXPECT_EQ(r.exit_code, 0) << r.output;

  fs::copy_file(model, tampered);
  {
    std::fstream f(tampered, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(100);
    f.put('\x7f');
  }
  r = Sign(dir,
           {"verify", "--public-key", pub, "--artifact", tampered, "--signature", model + ".sig"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.output, HasSubstr(tampered));

  r = Sign(dir, {"verify", "--public-key", priv, "--artifact", model});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.output, HasSubstr(priv));

  r = Sign(dir, {"verify", "--artifact", model});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(r.output, HasSubstr("--public-key"));
}

}  // namespace
}  // namespace fedkit
