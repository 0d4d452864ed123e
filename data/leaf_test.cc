#include "data/leaf.h"

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "data/federated_dataset.h"
#include "data/natural_dataset.h"
#include "data/partition.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace fedkit::data {
namespace {

namespace fs = std::filesystem;
using ::testing::AllOf;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

class LeafTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::path(::testing::TempDir()) /
           ("leaf_test_" +
            std::string(::testing::UnitTest::GetInstance()->current_test_info()->name()));
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  std::string Write(const std::string& name, const std::string& text) {
    const fs::path p = dir_ / name;
    fs::create_directories(p.parent_path());
    std::ofstream(p) << text;
    return p.string();
  }

  absl::StatusOr<std::unique_ptr<FederatedDataset>> Make(const std::string& path,
                                                         int64_t max_clients = 0) {
    FederatedDatasetOptions options;
    options.dataset.kind = DatasetSpec::Kind::kLeaf;
    options.dataset.path = path;
    options.num_clients = max_clients;
    options.partition.kind = PartitionSpec::Kind::kNatural;
    return MakeFederatedDataset(options);
  }

  fs::path dir_;
};

// n rows of 2x3 images for one user: row i is all (base + i), label (base + i) % 3.
std::string User(int base, int n) {
  std::string x = "[", y = "[";
  for (int i = 0; i < n; ++i) {
    const std::string v = std::to_string(base + i);
    x += std::string(i ? "," : "") + "[[" + v + "," + v + "," + v + "],[" + v + "," + v + "," + v +
         "]]";
    y += std::string(i ? "," : "") + std::to_string((base + i) % 3);
  }
  return "{\"x\": " + x + "], \"y\": " + y + "]}";
}

TEST_F(LeafTest, ParsesSpec) {
  auto spec = ParseDatasetSpec("leaf:/some/dir");
  ASSERT_TRUE(spec.ok()) << spec.status();
  EXPECT_EQ(spec->kind, DatasetSpec::Kind::kLeaf);
  EXPECT_EQ(spec->path, "/some/dir");
  auto tensors = ParseDatasetSpec("tensors:a.pt");
  ASSERT_TRUE(tensors.ok()) << tensors.status();
  EXPECT_EQ(tensors->kind, DatasetSpec::Kind::kTensors);
  EXPECT_EQ(tensors->path, "a.pt");
  EXPECT_FALSE(ParseDatasetSpec("leaf:").ok());
  EXPECT_FALSE(ParseDatasetSpec("tensors:").ok());
}

TEST_F(LeafTest, OneFileHoldsOutLastTenthOfEachUser) {
  const std::string file =
      Write("all.json",
            "{\"users\": [\"b\", \"a\"], \"num_samples\": [20, 12], \"user_data\": "
            "{\"a\": " +
                User(100, 12) + ", \"b\": " + User(0, 20) + "}}");
  auto dataset = Make(file);
  ASSERT_TRUE(dataset.ok()) << dataset.status();
  const FederatedDataset& ds = **dataset;
  EXPECT_THAT(ds.info().feature_shape, ElementsAre(2, 3));
  EXPECT_EQ(ds.info().num_classes, 3);
  ASSERT_EQ(ds.num_clients(), 2);
  // Client 0 is "b" (the order of "users"): 20 examples, the last 2 held out.
  EXPECT_EQ(ds.NumTrainExamples(0), 18);
  EXPECT_EQ(ds.NumTrainExamples(1), 11);  // "a": 12, floor(1.2) = 1 held out
  Examples b = ds.TrainExamples(0);
  ASSERT_EQ(b.size(), 18);
  EXPECT_EQ(b.feature_dim, 6);
  EXPECT_EQ(b.features[6 * 5 + 4], 5.0f);
  EXPECT_EQ(b.labels[5], 2);
  Examples a = ds.TrainExamples(1);
  EXPECT_EQ(a.features[0], 100.0f);
  EXPECT_EQ(a.labels[0], 1);
  const Examples& eval = ds.EvalExamples();
  ASSERT_EQ(eval.size(), 3);
  EXPECT_EQ(eval.feature_dim, 6);
  EXPECT_EQ(eval.features[0], 18.0f);  // b's rows 18, 19
  EXPECT_EQ(eval.features[6], 19.0f);
  EXPECT_EQ(eval.features[12], 111.0f);  // a's row 11
  EXPECT_THAT(eval.labels, ElementsAre(0, 1, 0));

  // --clients 1 keeps the first user only.
  auto first = Make(file, 1);
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_EQ((*first)->num_clients(), 1);
  EXPECT_EQ((*first)->EvalExamples().size(), 2);
  auto too_many = Make(file, 3);
  ASSERT_FALSE(too_many.ok());
  EXPECT_THAT(too_many.status().message(), AllOf(HasSubstr(file), HasSubstr("has 2 clients")));
}

TEST_F(LeafTest, TrainAndTestDirectories) {
  Write("train/b.json", "{\"users\": [\"u2\"], \"num_samples\": [3], \"user_data\": {\"u2\": " +
                            User(10, 3) + "}}");
  Write("train/a.json",
        "{\"users\": [\"u1\", \"u0\"], \"num_samples\": [2, 4], \"user_data\": "
        "{\"u0\": " +
            User(0, 4) + ", \"u1\": " + User(5, 2) + "}}");
  Write("test/a.json",
        "{\"users\": [\"u1\", \"u0\"], \"num_samples\": [1, 1], \"user_data\": "
        "{\"u0\": " +
            User(50, 1) + ", \"u1\": " + User(60, 1) + "}}");
  Write("test/b.json", "{\"users\": [\"u2\"], \"num_samples\": [2], \"user_data\": {\"u2\": " +
                           User(70, 2) + "}}");
  Write("train/notes.txt", "not json");
  auto dataset = Make(dir_.string());
  ASSERT_TRUE(dataset.ok()) << dataset.status();
  const FederatedDataset& ds = **dataset;
  ASSERT_EQ(ds.num_clients(), 3);  // a.json's u1, u0, then b.json's u2; nothing held out
  EXPECT_EQ(ds.NumTrainExamples(0), 2);
  EXPECT_EQ(ds.NumTrainExamples(1), 4);
  EXPECT_EQ(ds.NumTrainExamples(2), 3);
  EXPECT_EQ(ds.TrainExamples(0).features[0], 5.0f);
  EXPECT_EQ(ds.TrainExamples(2).features[0], 10.0f);
  const Examples& eval = ds.EvalExamples();
  ASSERT_EQ(eval.size(), 4);
  EXPECT_EQ(eval.features[0], 60.0f);
  EXPECT_EQ(eval.features[6], 50.0f);
  EXPECT_EQ(eval.features[12], 70.0f);
  EXPECT_EQ(eval.features[18], 71.0f);
  EXPECT_EQ(ds.info().num_classes, 3);
  // Each user's own test data, for per-client evaluation.
  ASSERT_TRUE(ds.has_client_test_examples());
  EXPECT_THAT(ds.ClientTestExamples(0).labels, ElementsAre(60 % 3));
  EXPECT_EQ(ds.ClientTestExamples(0).features[0], 60.0f);
  EXPECT_EQ(ds.ClientTestExamples(1).features[0], 50.0f);
  ASSERT_EQ(ds.ClientTestExamples(2).size(), 2);
  EXPECT_EQ(ds.ClientTestExamples(2).features[6], 71.0f);
  EXPECT_EQ(ds.ClientTestExamples(3).size(), 0);
}

TEST_F(LeafTest, FlatRowsAndScalarRows) {
  const std::string flat = Write(
      "flat.json",
      "{\"users\": [\"f\"], \"user_data\": {\"f\": {\"x\": [[1,2,3,4],[5,6,7,8],[1,1,1,1],[2,2,2,"
      "2],[3,3,3,3],[4,4,4,4],[5,5,5,5],[6,6,6,6],[7,7,7,7],[8,8,8,8]], \"y\": "
      "[0,1,2,3,4,5,6,7,8,9]}}}");
  auto dataset = Make(flat);
  ASSERT_TRUE(dataset.ok()) << dataset.status();
  EXPECT_THAT((*dataset)->info().feature_shape, ElementsAre(4));
  EXPECT_EQ((*dataset)->info().num_classes, 10);
  EXPECT_EQ((*dataset)->NumTrainExamples(0), 9);
  EXPECT_THAT((*dataset)->EvalExamples().labels, ElementsAre(9));
}

TEST_F(LeafTest, DirectoryWithoutSplitAndEmptyEval) {
  Write("d/one.json", "{\"users\": [\"a\"], \"user_data\": {\"a\": " + User(0, 3) + "}}");
  auto dataset = Make((dir_ / "d").string());
  ASSERT_FALSE(dataset.ok());
  EXPECT_THAT(dataset.status().message(), HasSubstr("eval set is empty"));
}

TEST_F(LeafTest, RefusesOtherPartitions) {
  const std::string file = Write("p.json", "{\"users\": [], \"user_data\": {}}");
  FederatedDatasetOptions options;
  options.dataset.kind = DatasetSpec::Kind::kLeaf;
  options.dataset.path = file;
  options.partition.kind = PartitionSpec::Kind::kIid;
  auto dataset = MakeFederatedDataset(options);
  ASSERT_FALSE(dataset.ok());
  EXPECT_THAT(dataset.status().message(), HasSubstr("--partition natural"));
}

struct BadCase {
  std::string name;
  std::string text;
  std::vector<std::string> expected;  // substrings of the message besides the file name
};

TEST_F(LeafTest, MalformedFilesNameTheFileAndProblem) {
  const std::vector<BadCase> cases = {
      {"invalid", "{\"users\": [\"a\",]}", {"not valid JSON", "line 1, column"}},
      {"nousers", "{\"user_data\": {}}", {"no \"users\""}},
      {"nouserdata", "{\"users\": [\"a\"]}", {"no \"user_data\""}},
      {"numsamples",
       "{\"users\": [\"a\"], \"num_samples\": [1, 2], \"user_data\": {\"a\": " + User(0, 1) + "}}",
       {"\"users\" has 1 entries but \"num_samples\" has 2"}},
      {"missinguser",
       "{\"users\": [\"a\", \"b\"], \"user_data\": {\"a\": " + User(0, 1) + "}}",
       {"user \"b\" is in \"users\" but not in \"user_data\""}},
      {"extrauser",
       "{\"users\": [\"a\"], \"user_data\": {\"a\": " + User(0, 1) + ", \"z\": " + User(0, 1) +
           "}}",
       {"\"user_data\" has user \"z\" that is not in \"users\""}},
      {"countwrong",
       "{\"users\": [\"a\"], \"num_samples\": [5], \"user_data\": {\"a\": " + User(0, 2) + "}}",
       {"user \"a\"", "num_samples says 5 but x has 2 rows"}},
      {"xy",
       "{\"users\": [\"alice\"], \"user_data\": {\"alice\": {\"x\": [[1],[2],[3]], \"y\": "
       "[0,1]}}}",
       {"user \"alice\" has 3 rows in x but 2 labels in y"}},
      {"ragged",
       "{\"users\": [\"r\"], \"user_data\": {\"r\": {\"x\": [[[1,2],[3]]], \"y\": [0]}}}",
       {"user \"r\", x[0]", "ragged"}},
      {"shape",
       "{\"users\": [\"s\"], \"user_data\": {\"s\": {\"x\": [[1,2],[3,4,5]], \"y\": "
       "[0,1]}}}",
       {"user \"s\", x[1]", "has shape [3] but earlier rows have [2]"}},
      {"negative",
       "{\"users\": [\"n\"], \"user_data\": {\"n\": {\"x\": [[1],[2]], \"y\": [0,-1]}}}",
       {"user \"n\", y[1] = -1 is negative"}},
      {"float",
       "{\"users\": [\"g\"], \"user_data\": {\"g\": {\"x\": [[1],[2]], \"y\": [0.5,1]}}}",
       {"user \"g\", y[0] = 0.5", "regression targets are not supported by this reader yet"}},
      {"string",
       "{\"users\": [\"h\"], \"user_data\": {\"h\": {\"x\": [[1],[\"a\"]], \"y\": "
       "[0,1]}}}",
       {"user \"h\", x[1]", "non-number"}},
  };
  for (const BadCase& c : cases) {
    SCOPED_TRACE(c.name);
    const std::string file = Write(c.name + ".json", c.text);
    auto dataset = Make(file);
    ASSERT_FALSE(dataset.ok());
    EXPECT_EQ(dataset.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(dataset.status().message(), HasSubstr(file));
    for (const std::string& e : c.expected) {
      EXPECT_THAT(dataset.status().message(), HasSubstr(e));
    }
  }
}

TEST_F(LeafTest, MissingPathAndDuplicateUsers) {
  auto missing = Make((dir_ / "nope.json").string());
  ASSERT_FALSE(missing.ok());
  EXPECT_THAT(missing.status().message(), HasSubstr("nope.json: no such file or directory"));

  Write("dup/a.json", "{\"users\": [\"u\"], \"user_data\": {\"u\": " + User(0, 1) + "}}");
  const std::string b =
      Write("dup/b.json", "{\"users\": [\"u\"], \"user_data\": {\"u\": " + User(0, 1) + "}}");
  auto dup = Make((dir_ / "dup").string());
  ASSERT_FALSE(dup.ok());
  EXPECT_THAT(dup.status().message(), AllOf(HasSubstr(b), HasSubstr("user \"u\" is also in")));

  fs::create_directories(dir_ / "empty");
  auto empty = Make((dir_ / "empty").string());
  ASSERT_FALSE(empty.ok());
  EXPECT_THAT(empty.status().message(), HasSubstr("has no .json files"));
}

}  // namespace
}  // namespace fedkit::data
