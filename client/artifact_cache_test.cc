#include "client/artifact_cache.h"

#include <filesystem>
#include <fstream>
#include <string>

#include "artifacts/signing.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace fedkit::client {
namespace {

namespace fs = std::filesystem;

fs::path FreshDir(const std::string& name) {
  fs::path dir = fs::path(::testing::TempDir()) / ("fedkit_artifact_cache_" + name);
  fs::remove_all(dir);
  return dir;
}

TEST(ArtifactCacheTest, StoredBytesComeBackUnderTheirHash) {
  const fs::path dir = FreshDir("roundtrip") / "nested";
  ArtifactCache cache(dir.string());
  const std::string bytes = "a model archive";
  const std::string sha = artifacts::Sha256Hex(bytes);
  EXPECT_EQ(cache.Load(sha).status().code(), absl::StatusCode::kNotFound);
  ASSERT_TRUE(cache.Store(sha, bytes).ok());
  absl::StatusOr<std::string> loaded = cache.Load(sha);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_EQ(*loaded, bytes);
  EXPECT_TRUE(fs::is_regular_file(cache.PathOf(sha)));
  // Only the final file remains: no temporary is left behind.
  int files = 0;
  for (const auto& entry : fs::directory_iterator(dir)) {
    (void)entry;
    ++files;
  }
  EXPECT_EQ(files, 1);
  // A second object on the same directory (another process, a later run) sees it.
  EXPECT_TRUE(ArtifactCache(dir.string()).Load(sha).ok());
}

TEST(ArtifactCacheTest, BytesUnderAnotherNameAreRefused) {
  ArtifactCache cache(FreshDir("wrong_name").string());
  const absl::Status status = cache.Store(artifacts::Sha256Hex("other"), "bytes");
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << status;
  EXPECT_EQ(cache.Store("not-a-hash", "bytes").code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(cache.Load("../../etc/passwd").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(cache.Load(std::string(64, 'A')).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(ArtifactCacheTest, AFileThatNoLongerHashesToItsNameIsRemoved) {
  ArtifactCache cache(FreshDir("corrupt").string());
  const std::string bytes = "a model archive";
  const std::string sha = artifacts::Sha256Hex(bytes);
  ASSERT_TRUE(cache.Store(sha, bytes).ok());
  {
    std::ofstream out(cache.PathOf(sha), std::ios::binary | std::ios::trunc);
    out << "a model archivE";
  }
  const absl::StatusOr<std::string> loaded = cache.Load(sha);
  EXPECT_EQ(loaded.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(loaded.status().message(), ::testing::HasSubstr("did not hash to its name"));
  EXPECT_FALSE(fs::exists(cache.PathOf(sha)));
}

TEST(ArtifactCacheTest, StoringTwiceKeepsOneCopy) {
  const fs::path dir = FreshDir("twice");
  ArtifactCache cache(dir.string());
  const std::string bytes = "same";
  const std::string sha = artifacts::Sha256Hex(bytes);
  ASSERT_TRUE(cache.Store(sha, bytes).ok());
  ASSERT_TRUE(cache.Store(sha, bytes).ok());
  EXPECT_EQ(*cache.Load(sha), bytes);
}

TEST(ArtifactCacheTest, UnwritableDirectoryIsAnErrorNamingIt) {
  const fs::path dir = FreshDir("unwritable");
  fs::create_directories(dir.parent_path());
  { std::ofstream(dir.string()) << "a file where the directory should be"; }
  ArtifactCache cache((dir / "sub").string());
  const absl::Status status = cache.Store(artifacts::Sha256Hex("x"), "x");
  EXPECT_EQ(status.code(), absl::StatusCode::kInternal) << status;
  EXPECT_THAT(status.message(), ::testing::HasSubstr(dir.string()));
}

}  // namespace
}  // namespace fedkit::client
