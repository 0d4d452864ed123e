#include "client/global_model_store.h"

#include <filesystem>
#include <fstream>
#include <iterator>
#include <limits>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace fedkit::client {
namespace {

class GlobalModelStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = (std::filesystem::path(::testing::TempDir()) /
            ::testing::UnitTest::GetInstance()->current_test_info()->name())
               .string();
    std::filesystem::remove_all(dir_);
  }

  static GlobalModelSnapshot Snapshot(float scale) {
    GlobalModelSnapshot s;
    s.model_name = "logreg";
    s.round = 4;
    s.layout.Append("fc.weight", {2, 3});
    s.layout.Append("fc.bias", {2});
    std::vector<float> values;
    for (int i = 0; i < 8; ++i) values.push_back(scale * static_cast<float>(i) - 0.25f);
    s.parameters = std::make_shared<const std::vector<float>>(std::move(values));
    return s;
  }

  std::string ReadAll(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(in), {});
  }
  void WriteAll(const std::string& path, const std::string& bytes) {
    std::ofstream(path, std::ios::binary | std::ios::trunc) << bytes;
  }

  std::string dir_;
};

TEST_F(GlobalModelStoreTest, SavedModelLoadsBackAndASaveReplacesIt) {
  GlobalModelStore store(dir_);
  EXPECT_EQ(store.Load().status().code(), absl::StatusCode::kNotFound);
  ASSERT_TRUE(store.Save(Snapshot(1)).ok());
  absl::StatusOr<GlobalModelSnapshot> loaded = GlobalModelStore(dir_).Load();
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_EQ(loaded->model_name, "logreg");
  EXPECT_EQ(loaded->round, 4);
  EXPECT_EQ(loaded->layout, Snapshot(1).layout);
  EXPECT_EQ(*loaded->parameters, *Snapshot(1).parameters);
  ASSERT_TRUE(store.Save(Snapshot(2)).ok());
  EXPECT_EQ(*store.Load()->parameters, *Snapshot(2).parameters);
  // No temporary file is left behind.
  int files = 0;
  for (const auto& entry : std::filesystem::directory_iterator(dir_)) {
    ++files;
    EXPECT_EQ(entry.path().filename(), "global_model.bin");
  }
  EXPECT_EQ(files, 1);
}

// Any byte changed, a truncation or a file of something else is DATA_LOSS, never a model.
TEST_F(GlobalModelStoreTest, ACorruptFileIsRejectedAtLoad) {
  GlobalModelStore store(dir_);
  ASSERT_TRUE(store.Save(Snapshot(1)).ok());
  const std::string good = ReadAll(store.path());
  for (size_t at : {size_t{3}, size_t{40}, good.size() - 5, good.size() - 1}) {
    std::string bad = good;
    bad[at] = static_cast<char>(bad[at] ^ 0x10);
    WriteAll(store.path(), bad);
    absl::StatusOr<GlobalModelSnapshot> loaded = store.Load();
    EXPECT_EQ(loaded.status().code(), absl::StatusCode::kDataLoss) << "byte " << at;
    EXPECT_THAT(std::string(loaded.status().message()), ::testing::HasSubstr(store.path()));
  }
  WriteAll(store.path(), good.substr(0, good.size() - 4));
  EXPECT_EQ(store.Load().status().code(), absl::StatusCode::kDataLoss);
  WriteAll(store.path(), "");
  EXPECT_EQ(store.Load().status().code(), absl::StatusCode::kDataLoss);
  WriteAll(store.path(), good);
  EXPECT_TRUE(store.Load().ok());
}

TEST_F(GlobalModelStoreTest, InconsistentSnapshotsAreNotSaved) {
  GlobalModelStore store(dir_);
  GlobalModelSnapshot short_values = Snapshot(1);
  short_values.parameters = std::make_shared<const std::vector<float>>(3, 0.0f);
  EXPECT_EQ(store.Save(short_values).code(), absl::StatusCode::kInvalidArgument);
  GlobalModelSnapshot not_finite = Snapshot(1);
  std::vector<float> values = *not_finite.parameters;
  values[2] = std::numeric_limits<float>::quiet_NaN();
  not_finite.parameters = std::make_shared<const std::vector<float>>(values);
  EXPECT_EQ(store.Save(not_finite).code(), absl::StatusCode::kInvalidArgument);
  GlobalModelSnapshot none = Snapshot(1);
  none.parameters = nullptr;
  EXPECT_EQ(store.Save(none).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(store.Load().status().code(), absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace fedkit::client
