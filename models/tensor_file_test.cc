#include "models/tensor_file.h"

#include <torch/serialize.h>
#include <torch/torch.h>

#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "data/federated_dataset.h"
#include "data/partition.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace fedkit::models {
namespace {

namespace fs = std::filesystem;
using ::testing::AllOf;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

class TensorFileTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::path(::testing::TempDir()) /
           ("tensor_file_test_" +
            std::string(::testing::UnitTest::GetInstance()->current_test_info()->name()));
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  // torch::pickle_save writes the zip format that Python's torch.save writes and torch.load reads.
  std::string Save(const std::string& name, const c10::Dict<std::string, torch::Tensor>& dict) {
    const std::vector<char> bytes = torch::pickle_save(dict);
    const std::string path = (dir_ / name).string();
    std::ofstream(path, std::ios::binary)
        .write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    return path;
  }

  absl::StatusOr<std::unique_ptr<data::FederatedDataset>> Make(const std::string& path,
                                                               int64_t max_clients = 0) {
    data::FederatedDatasetOptions options;
    options.dataset.kind = data::DatasetSpec::Kind::kTensors;
    options.dataset.path = path;
    options.num_clients = max_clients;
    options.partition.kind = data::PartitionSpec::Kind::kNatural;
    return MakeFederatedDatasetWithTensors(options);
  }

  fs::path dir_;
};

// 30 examples of 2x2 features (row i is all i), label i % 4, client ids 7, 3, 7, 3, ... with the
// last ten rows on client 12.
c10::Dict<std::string, torch::Tensor> Good() {
  c10::Dict<std::string, torch::Tensor> d;
  torch::Tensor x = torch::arange(30, torch::kFloat32).reshape({30, 1, 1}).expand({30, 2, 2});
  d.insert("x", x.contiguous());
  d.insert("y", torch::arange(30, torch::kInt64).remainder(4));
  std::vector<int64_t> c;
  for (int i = 0; i < 30; ++i) c.push_back(i >= 20 ? 12 : (i % 2 == 0 ? 7 : 3));
  d.insert("client", torch::tensor(c, torch::kInt64));
  return d;
}

TEST_F(TensorFileTest, ReadsClientsInIdOrderAndHoldsOutLastTenth) {
  const std::string path = Save("good.pt", Good());
  auto dataset = Make(path);
  ASSERT_TRUE(dataset.ok()) << dataset.status();
  const data::FederatedDataset& ds = **dataset;
  EXPECT_THAT(ds.info().feature_shape, ElementsAre(2, 2));
  EXPECT_EQ(ds.info().num_classes, 4);
  ASSERT_EQ(ds.num_clients(), 3);  // ids 3, 7, 12 with 10 rows each; one of each held out
  for (int64_t cl = 0; cl < 3; ++cl) EXPECT_EQ(ds.NumTrainExamples(cl), 9);
  data::Examples c3 = ds.TrainExamples(0);
  ASSERT_EQ(c3.size(), 9);
  EXPECT_EQ(c3.feature_dim, 4);
  EXPECT_EQ(c3.features[0], 1.0f);
  EXPECT_EQ(c3.features[4], 3.0f);
  EXPECT_THAT(c3.labels, ElementsAre(1, 3, 1, 3, 1, 3, 1, 3, 1));
  EXPECT_EQ(ds.TrainExamples(2).features[0], 20.0f);
  const data::Examples& eval = ds.EvalExamples();
  ASSERT_EQ(eval.size(), 3);
  EXPECT_EQ(eval.features[0], 19.0f);
  EXPECT_EQ(eval.features[4], 18.0f);
  EXPECT_EQ(eval.features[8], 29.0f);

  auto two = Make(path, 2);
  ASSERT_TRUE(two.ok()) << two.status();
  EXPECT_EQ((*two)->num_clients(), 2);
  EXPECT_FALSE(Make(path, 4).ok());
}

TEST_F(TensorFileTest, TestTensorsAreTheEvalSet) {
  auto d = Good();
  d.insert("test_x", torch::full({5, 2, 2}, 0.5, torch::kFloat64));
  d.insert("test_y", torch::tensor({0, 1, 2, 3, 6}, torch::kInt32));
  auto dataset = Make(Save("test.pt", d));
  ASSERT_TRUE(dataset.ok()) << dataset.status();
  EXPECT_EQ((*dataset)->info().num_classes, 7);
  EXPECT_EQ((*dataset)->NumTrainExamples(0), 10);
  const data::Examples& eval = (*dataset)->EvalExamples();
  ASSERT_EQ(eval.size(), 5);
  EXPECT_EQ(eval.feature_dim, 4);
  EXPECT_EQ(eval.features[19], 0.5f);
  EXPECT_THAT(eval.labels, ElementsAre(0, 1, 2, 3, 6));
}

TEST_F(TensorFileTest, FloatTargetsMakeARegressionDataset) {
  auto d = Good();
  d.insert_or_assign("y", torch::arange(60, torch::kFloat64).reshape({30, 2}) / 10);
  d.insert("test_x", torch::zeros({3, 2, 2}));
  d.insert("test_y", torch::ones({3, 2}));
  auto dataset = Make(Save("regression.pt", d));
  ASSERT_TRUE(dataset.ok()) << dataset.status();
  EXPECT_EQ((*dataset)->info().num_classes, 0);
  EXPECT_EQ((*dataset)->info().target_dim, 2);
  const data::Examples first = (*dataset)->TrainExamples(0);
  EXPECT_TRUE(first.is_regression());
  EXPECT_TRUE(first.labels.empty());
  ASSERT_EQ(first.targets.size(), static_cast<size_t>(first.size()) * 2);
  EXPECT_EQ((*dataset)->EvalExamples().size(), 3);
  EXPECT_THAT((*dataset)->EvalExamples().targets, ElementsAre(1, 1, 1, 1, 1, 1));
  // Train and test targets of different tasks are refused.
  d.insert_or_assign("test_y", torch::zeros({3}, torch::kInt64));
  auto mixed = Make(Save("mixed.pt", d));
  ASSERT_FALSE(mixed.ok());
  EXPECT_THAT(std::string(mixed.status().message()), HasSubstr("of one task"));
}

TEST_F(TensorFileTest, BadContentsNameTheFileAndProblem) {
  struct Case {
    std::string name;
    c10::Dict<std::string, torch::Tensor> dict;
    std::string expected;
  };
  std::vector<Case> cases;
  auto without = [](const std::string& key) {
    auto d = Good();
    EXPECT_EQ(d.erase(key), 1u);
    return d;
  };
  cases.push_back({"noclient", without("client"), "missing key \"client\""});
  cases.push_back({"nox", without("x"), "missing key \"x\""});
  {
    auto d = Good();
    d.insert_or_assign("y", torch::zeros({29}, torch::kInt64));
    cases.push_back({"short_y", d, "x has 30 rows but y has 29"});
  }
  {
    auto d = Good();
    d.insert_or_assign("client", torch::zeros({31}, torch::kInt64));
    cases.push_back({"long_client", d, "x has 30 rows but client has 31"});
  }
  {
    auto d = Good();
    d.insert_or_assign("y", torch::zeros({30, 2, 2}, torch::kFloat32));
    cases.push_back({"float_y_3d", d, "y must be float regression targets [N] or [N, k]"});
  }
  {
    auto d = Good();
    torch::Tensor y = torch::zeros({30}, torch::kInt64);
    y[4] = -2;
    d.insert_or_assign("y", y);
    cases.push_back({"negative_y", d, "negative label -2 at row 4"});
  }
  {
    auto d = Good();
    torch::Tensor c = torch::zeros({30}, torch::kInt64);
    c[7] = -1;
    d.insert_or_assign("client", c);
    cases.push_back({"negative_client", d, "client ids must be >= 0; row 7 has -1"});
  }
  {
    auto d = Good();
    d.insert_or_assign("x", torch::zeros({30, 4}, torch::kUInt8));
    cases.push_back({"byte_x", d, "x must be a floating-point tensor"});
  }
  {
    auto d = Good();
    d.insert("test_x", torch::zeros({3, 2, 2}));
    cases.push_back({"test_x_only", d, "\"test_x\" and \"test_y\" go together"});
  }
  {
    auto d = Good();
    d.insert("test_x", torch::zeros({3, 4}));
    d.insert("test_y", torch::zeros({3}, torch::kInt64));
    cases.push_back({"test_shape", d, "test_x rows have shape [4] but x rows have [2, 2]"});
  }
  {
    auto d = Good();
    d.insert("labels", torch::zeros({3}));
    cases.push_back({"unknown_key", d, "unknown key \"labels\""});
  }
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    const std::string path = Save(c.name + ".pt", c.dict);
    auto dataset = Make(path);
    ASSERT_FALSE(dataset.ok());
    EXPECT_EQ(dataset.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(dataset.status().message(), AllOf(HasSubstr(path), HasSubstr(c.expected)));
  }
}

TEST_F(TensorFileTest, TruncatedCorruptAndMissingFilesAreRefused) {
  const std::string good = Save("good.pt", Good());
  std::vector<char> bytes;
  {
    std::ifstream in(good, std::ios::binary);
    bytes.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  }
  ASSERT_GT(bytes.size(), 100u);
  for (size_t keep : {bytes.size() - 10, bytes.size() / 2, size_t{10}, size_t{0}}) {
    SCOPED_TRACE(keep);
    const std::string path = (dir_ / ("cut" + std::to_string(keep) + ".pt")).string();
    std::ofstream(path, std::ios::binary).write(bytes.data(), static_cast<std::streamsize>(keep));
    auto dataset = Make(path);
    ASSERT_FALSE(dataset.ok());
    EXPECT_EQ(dataset.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(
        dataset.status().message(),
        AllOf(HasSubstr(path), HasSubstr("corrupt, truncated or not written by torch.save")));
  }
  const std::string text = (dir_ / "text.pt").string();
  std::ofstream(text) << "hello, not a zip file\n";
  auto garbage = Make(text);
  ASSERT_FALSE(garbage.ok());
  EXPECT_THAT(garbage.status().message(), HasSubstr(text));

  const std::string tensor_only = (dir_ / "tensor.pt").string();
  {
    const std::vector<char> t = torch::pickle_save(torch::zeros({3}));
    std::ofstream(tensor_only, std::ios::binary)
        .write(t.data(), static_cast<std::streamsize>(t.size()));
  }
  auto not_dict = Make(tensor_only);
  ASSERT_FALSE(not_dict.ok());
  EXPECT_THAT(not_dict.status().message(), AllOf(HasSubstr(tensor_only), HasSubstr("not a dict")));

  auto missing = Make((dir_ / "absent.pt").string());
  ASSERT_FALSE(missing.ok());
  EXPECT_THAT(missing.status().message(), HasSubstr("absent.pt"));
}

TEST_F(TensorFileTest, OtherKindsAreForwarded) {
  data::FederatedDatasetOptions options;
  options.dataset.kind = data::DatasetSpec::Kind::kSynthetic;
  options.dataset.synthetic_alpha = 1;
  options.dataset.synthetic_beta = 1;
  options.num_clients = 5;
  options.partition.kind = data::PartitionSpec::Kind::kNatural;
  auto dataset = MakeFederatedDatasetWithTensors(options);
  ASSERT_TRUE(dataset.ok()) << dataset.status();
  EXPECT_EQ((*dataset)->num_clients(), 5);

  options.dataset.kind = data::DatasetSpec::Kind::kTensors;
  options.dataset.path = Save("p.pt", Good());
  options.partition.kind = data::PartitionSpec::Kind::kIid;
  auto iid = MakeFederatedDatasetWithTensors(options);
  ASSERT_FALSE(iid.ok());
  EXPECT_THAT(iid.status().message(), HasSubstr("--partition natural"));
  // fedkit::data alone cannot read tensor files.
  options.partition.kind = data::PartitionSpec::Kind::kNatural;
  EXPECT_FALSE(data::MakeFederatedDataset(options).ok());
}

// A file written by Python's torch.save, if this machine has python3-torch (Debian's, /usr/bin).
TEST_F(TensorFileTest, ReadsWhatPythonTorchSaveWrote) {
  if (std::system("/usr/bin/python3 -c 'import torch' >/dev/null 2>&1") != 0) {
    GTEST_SKIP() << "no python3-torch";
  }
  const std::string path = (dir_ / "py.pt").string();
  const std::string script =
      "import torch\n"
      "X = torch.arange(40, dtype=torch.float32).reshape(20, 2)\n"
      "torch.save({'x': X, 'y': torch.arange(20) % 3, 'client': torch.arange(20) // 10,\n"
      "            'test_x': X[:4] * 2, 'test_y': torch.tensor([2, 1, 0, 1])}, '" +
      path + "')\n";
  const std::string script_path = (dir_ / "write.py").string();
  std::ofstream(script_path) << script;
  ASSERT_EQ(std::system(("/usr/bin/python3 " + script_path).c_str()), 0);
  auto dataset = Make(path);
  ASSERT_TRUE(dataset.ok()) << dataset.status();
  EXPECT_THAT((*dataset)->info().feature_shape, ElementsAre(2));
  EXPECT_EQ((*dataset)->info().num_classes, 3);
  ASSERT_EQ((*dataset)->num_clients(), 2);
  data::Examples c1 = (*dataset)->TrainExamples(1);
  ASSERT_EQ(c1.size(), 10);
  EXPECT_EQ(c1.features[0], 20.0f);
  EXPECT_EQ(c1.labels[0], 1);
  const data::Examples& eval = (*dataset)->EvalExamples();
  ASSERT_EQ(eval.size(), 4);
  EXPECT_EQ(eval.features[7], 14.0f);
  EXPECT_THAT(eval.labels, ElementsAre(2, 1, 0, 1));

  // And the other way: Python's torch.load reads what torch::pickle_save (the fixtures) wrote.
  const std::string ours = Save("ours.pt", Good());
  const std::string check_path = (dir_ / "check.py").string();
  std::ofstream(check_path) << "import torch\n"
                               "d = torch.load('" +
                                   ours +
                                   "')\n"
                                   "assert sorted(d) == ['client', 'x', 'y'], sorted(d)\n"
                                   "assert d['x'].shape == (30, 2, 2) and d['x'][29, 1, 1] == 29\n"
                                   "assert d['y'].dtype == torch.int64 and d['y'][5] == 1\n"
                                   "assert d['client'][21] == 12\n";
  EXPECT_EQ(std::system(("/usr/bin/python3 " + check_path).c_str()), 0);
}

}  // namespace
}  // namespace fedkit::models
