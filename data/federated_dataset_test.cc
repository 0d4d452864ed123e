#include "data/federated_dataset.h"

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "data/idx.h"
#include "data/partition.h"
#include "data/synthetic.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace fedkit::data {
namespace {

using ::testing::HasSubstr;

bool RealFashionMnistPresent() {
  const std::string base = std::string(kDefaultFashionMnistDir) + "/t10k-labels-idx1-ubyte";
  return std::filesystem::exists(base) || std::filesystem::exists(base + ".gz");
}

FederatedDatasetOptions SyntheticOptions(int64_t clients) {
  FederatedDatasetOptions options;
  options.dataset.kind = DatasetSpec::Kind::kSynthetic;
  options.dataset.synthetic_alpha = 1;
  options.dataset.synthetic_beta = 1;
  options.num_clients = clients;
  options.partition.kind = PartitionSpec::Kind::kNatural;
  options.seed = 11;
  return options;
}

TEST(ParseDatasetSpecTest, ParsesGoodSpecs) {
  auto fmnist = ParseDatasetSpec("fmnist");
  ASSERT_TRUE(fmnist.ok()) << fmnist.status();
  EXPECT_EQ(fmnist->kind, DatasetSpec::Kind::kFashionMnist);

  auto s11 = ParseDatasetSpec("synthetic:1,1");
  ASSERT_TRUE(s11.ok()) << s11.status();
  EXPECT_EQ(s11->kind, DatasetSpec::Kind::kSynthetic);
  EXPECT_DOUBLE_EQ(s11->synthetic_alpha, 1.0);
  EXPECT_DOUBLE_EQ(s11->synthetic_beta, 1.0);

  auto s05 = ParseDatasetSpec("synthetic:0.5,0.25");
  ASSERT_TRUE(s05.ok()) << s05.status();
  EXPECT_DOUBLE_EQ(s05->synthetic_alpha, 0.5);
  EXPECT_DOUBLE_EQ(s05->synthetic_beta, 0.25);

  auto s00 = ParseDatasetSpec("synthetic:0,0");
  ASSERT_TRUE(s00.ok()) << s00.status();
  EXPECT_DOUBLE_EQ(s00->synthetic_alpha, 0.0);
}

TEST(ParseDatasetSpecTest, RejectsBadSpecsQuotingText) {
  for (const char* text : {"synthetic:1", "synthetic:a,b", "synthetic:1,2,3", "synthetic:-1,1",
                           "synthetic:", "synthetic", "mnist", "", "FMNIST"}) {
    auto spec = ParseDatasetSpec(text);
    EXPECT_EQ(spec.status().code(), absl::StatusCode::kInvalidArgument) << "\"" << text << "\"";
    EXPECT_THAT(spec.status().message(), HasSubstr(std::string("\"") + text + "\""));
  }
}

TEST(FederatedDatasetTest, SyntheticMillionClientsIsCheap) {
  // Default synthetic_eval_clients (1000): construction costs those clients' test splits only,
  // never anything proportional to the population.
  const FederatedDatasetOptions options = SyntheticOptions(1000000);
  const auto start = std::chrono::steady_clock::now();
  auto dataset = MakeFederatedDataset(options);
  const auto elapsed = std::chrono::steady_clock::now() - start;
  ASSERT_TRUE(dataset.ok()) << dataset.status();
  EXPECT_LT(elapsed, std::chrono::seconds(10));

  const FederatedDataset& ds = **dataset;
  EXPECT_EQ(ds.num_clients(), 1000000);
  EXPECT_EQ(ds.info().feature_dim(), 60);
  EXPECT_EQ(ds.info().num_classes, 10);
  const Examples last = ds.TrainExamples(999999);
  EXPECT_GE(last.size(), 40);
  EXPECT_EQ(last.size(), ds.NumTrainExamples(999999));
  EXPECT_EQ(last.feature_dim, 60);
  EXPECT_EQ(last.features.size(), static_cast<size_t>(last.size() * 60));
}

TEST(FederatedDatasetTest, SyntheticEvalIsUnionOfTestSplits) {
  // Population smaller than synthetic_eval_clients: every client's test split is used.
  FederatedDatasetOptions options = SyntheticOptions(30);
  options.synthetic_eval_clients = 1000;
  auto dataset = MakeFederatedDataset(options);
  ASSERT_TRUE(dataset.ok()) << dataset.status();

  SyntheticData::Options synth;
  synth.alpha = 1;
  synth.beta = 1;
  synth.num_clients = 30;
  synth.seed = options.seed;
  auto data = SyntheticData::Create(synth);
  ASSERT_TRUE(data.ok());
  int64_t expected = 0;
  for (int64_t c = 0; c < 30; ++c) {
    expected += data->NumExamples(c) - data->NumTrainExamples(c);
    EXPECT_EQ((*dataset)->NumTrainExamples(c), data->NumTrainExamples(c));
  }
  const Examples& eval = (*dataset)->EvalExamples();
  EXPECT_EQ(eval.size(), expected);
  EXPECT_EQ(eval.feature_dim, 60);
  EXPECT_EQ(eval.features.size(), static_cast<size_t>(expected * 60));
}

TEST(FederatedDatasetTest, SyntheticEvalSampleIsDeterministicAndBounded) {
  FederatedDatasetOptions options = SyntheticOptions(5000);
  options.synthetic_eval_clients = 20;
  auto a = MakeFederatedDataset(options);
  auto b = MakeFederatedDataset(options);
  options.seed = 12;
  auto c = MakeFederatedDataset(options);
  ASSERT_TRUE(a.ok() && b.ok() && c.ok());
  EXPECT_EQ((*a)->EvalExamples().labels, (*b)->EvalExamples().labels);
  EXPECT_EQ((*a)->EvalExamples().features, (*b)->EvalExamples().features);
  EXPECT_NE((*a)->EvalExamples().features, (*c)->EvalExamples().features);
  // 20 clients of at most 10000 examples, 20% test each.
  EXPECT_GE((*a)->EvalExamples().size(), 20 * 10);
  EXPECT_LE((*a)->EvalExamples().size(), 20 * 2000);
}

TEST(FederatedDatasetTest, SyntheticRequiresNaturalPartition) {
  FederatedDatasetOptions options = SyntheticOptions(10);
  options.partition.kind = PartitionSpec::Kind::kIid;
  auto dataset = MakeFederatedDataset(options);
  EXPECT_EQ(dataset.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(dataset.status().message(), HasSubstr("--partition natural"));
}

TEST(FederatedDatasetTest, RejectsBadPopulationAndEvalClients) {
  FederatedDatasetOptions options = SyntheticOptions(0);
  auto zero = MakeFederatedDataset(options);
  EXPECT_EQ(zero.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(zero.status().message(), HasSubstr("num_clients"));

  options = SyntheticOptions(10);
  options.synthetic_eval_clients = 0;
  auto no_eval = MakeFederatedDataset(options);
  EXPECT_EQ(no_eval.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(no_eval.status().message(), HasSubstr("synthetic_eval_clients"));
}

TEST(FederatedDatasetTest, FashionMnistRefusesNaturalPartition) {
  FederatedDatasetOptions options;
  options.dataset.kind = DatasetSpec::Kind::kFashionMnist;
  options.partition.kind = PartitionSpec::Kind::kNatural;
  auto dataset = MakeFederatedDataset(options);
  EXPECT_EQ(dataset.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(dataset.status().message(), HasSubstr("natural"));
}

TEST(FederatedDatasetTest, FashionMnistMissingDirNamesPath) {
  FederatedDatasetOptions options;
  options.dataset.kind = DatasetSpec::Kind::kFashionMnist;
  options.data_dir = "/nonexistent/fedkit-fmnist-dir";
  auto dataset = MakeFederatedDataset(options);
  EXPECT_EQ(dataset.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(dataset.status().message(), HasSubstr("/nonexistent/fedkit-fmnist-dir"));
}

TEST(FederatedDatasetTest, RealFashionMnistIid) {
  if (!RealFashionMnistPresent()) {
    GTEST_SKIP() << "Fashion-MNIST not installed at " << kDefaultFashionMnistDir;
  }
  FederatedDatasetOptions options;
  options.dataset.kind = DatasetSpec::Kind::kFashionMnist;  // data_dir empty -> default dir
  options.num_clients = 100;
  options.partition.kind = PartitionSpec::Kind::kIid;
  options.seed = 3;
  auto dataset = MakeFederatedDataset(options);
  ASSERT_TRUE(dataset.ok()) << dataset.status();
  const FederatedDataset& ds = **dataset;
  EXPECT_EQ(ds.num_clients(), 100);
  EXPECT_EQ(ds.info().feature_shape, (std::vector<int64_t>{1, 28, 28}));
  int64_t total = 0;
  for (int64_t c = 0; c < ds.num_clients(); ++c) {
    EXPECT_EQ(ds.NumTrainExamples(c), 600);
    total += ds.NumTrainExamples(c);
  }
  EXPECT_EQ(total, 60000);
  EXPECT_EQ(ds.EvalExamples().size(), 10000);
  const Examples first = ds.TrainExamples(0);
  EXPECT_EQ(first.size(), 600);
  EXPECT_EQ(first.features.size(), 600u * 784);

  // Too many clients for the data is reported, naming the option.
  options.num_clients = 60001;
  auto too_many = MakeFederatedDataset(options);
  EXPECT_EQ(too_many.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(too_many.status().message(), HasSubstr("num_clients"));
}

}  // namespace
}  // namespace fedkit::data
