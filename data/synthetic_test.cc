#include "data/synthetic.h"

#include <cstdint>
#include <limits>
#include <set>
#include <vector>

#include "absl/status/status.h"
#include "gtest/gtest.h"

namespace fedkit::data {
namespace {

SyntheticData Make(double alpha, double beta, int64_t clients = 100, uint64_t seed = 42,
                   int64_t cap = 10000) {
  SyntheticData::Options options;
  options.alpha = alpha;
  options.beta = beta;
  options.num_clients = clients;
  options.seed = seed;
  options.max_examples_per_client = cap;
  auto data = SyntheticData::Create(options);
  EXPECT_TRUE(data.ok()) << data.status();
  return *std::move(data);
}

void ExpectSame(const Examples& a, const Examples& b) {
  EXPECT_EQ(a.feature_dim, b.feature_dim);
  EXPECT_EQ(a.labels, b.labels);
  EXPECT_EQ(a.features, b.features);
}

TEST(SyntheticTest, InfoIsSixtyFeaturesTenClasses) {
  const SyntheticData data = Make(1, 1);
  EXPECT_EQ(data.info().feature_shape, (std::vector<int64_t>{60}));
  EXPECT_EQ(data.info().num_classes, 10);
  EXPECT_EQ(data.num_clients(), 100);
}

TEST(SyntheticTest, DeterministicPerClient) {
  const SyntheticData a = Make(1, 1);
  const SyntheticData b = Make(1, 1);
  ExpectSame(a.TrainExamples(3), b.TrainExamples(3));
  ExpectSame(a.TestExamples(3), b.TestExamples(3));
  EXPECT_NE(a.TrainExamples(3).features, a.TrainExamples(4).features);
  // A different run seed changes the data too.
  EXPECT_NE(a.TrainExamples(3).features, Make(1, 1, 100, 43).TrainExamples(3).features);
}

TEST(SyntheticTest, GenerationOrderDoesNotMatter) {
  const SyntheticData a = Make(0.5, 0.5);
  const Examples five_first = a.TrainExamples(5);
  const Examples three_after = a.TrainExamples(3);
  const SyntheticData b = Make(0.5, 0.5);
  const Examples three_first = b.TestExamples(3);  // and the test split before the train split
  const Examples five_after = b.TrainExamples(5);
  ExpectSame(five_first, five_after);
  ExpectSame(three_after, b.TrainExamples(3));
  ExpectSame(three_first, a.TestExamples(3));
}

TEST(SyntheticTest, SizesAndRanges) {
  const int64_t cap = 2000;
  const SyntheticData data = Make(1, 1, 200, 7, cap);
  bool saw_cap = false, saw_small = false;
  for (int64_t c = 0; c < data.num_clients(); ++c) {
    const int64_t n = data.NumExamples(c);
    ASSERT_GE(n, 50);
    ASSERT_LE(n, cap);
    saw_cap |= n == cap;
    saw_small |= n < 200;
    EXPECT_EQ(data.NumTrainExamples(c), n * 8 / 10);
  }
  // lognormal(4, 2) is heavy-tailed: with 200 devices both ends must show up.
  EXPECT_TRUE(saw_cap);
  EXPECT_TRUE(saw_small);

  for (int64_t c : {0, 1, 17, 199}) {
    const Examples train = data.TrainExamples(c);
    const Examples test = data.TestExamples(c);
    EXPECT_EQ(train.size(), data.NumTrainExamples(c));
    EXPECT_EQ(train.size() + test.size(), data.NumExamples(c));
    EXPECT_GE(test.size(), 1);
    for (const Examples* ex : {&train, &test}) {
      EXPECT_EQ(ex->feature_dim, 60);
      EXPECT_EQ(ex->features.size(), static_cast<size_t>(ex->size() * 60));
      for (int64_t label : ex->labels) {
        ASSERT_GE(label, 0);
        ASSERT_LT(label, 10);
      }
    }
  }
}

TEST(SyntheticTest, NumExamplesDoesNotDependOnAlphaBeta) {
  const SyntheticData a = Make(0, 0);
  const SyntheticData b = Make(1, 1);
  for (int64_t c = 0; c < 20; ++c) EXPECT_EQ(a.NumExamples(c), b.NumExamples(c));
}

// Mean feature vector of the train split of each client; with beta = 0 all clients' v_k share
// mean 0, with larger beta they spread out.
double SpreadOfClientMeans(const SyntheticData& data, int clients) {
  std::vector<double> means;
  for (int c = 0; c < clients; ++c) {
    const Examples ex = data.TrainExamples(c);
    double sum = 0;
    for (float f : ex.features) sum += f;
    means.push_back(sum / static_cast<double>(ex.features.size()));
  }
  double mu = 0;
  for (double m : means) mu += m;
  mu /= clients;
  double var = 0;
  for (double m : means) var += (m - mu) * (m - mu);
  return var / clients;
}

TEST(SyntheticTest, BetaControlsFeatureHeterogeneity) {
  // Var of the per-client feature mean is about beta + 1/60 (v_k ~ N(B_k, 1) over 60 dims).
  const double flat = SpreadOfClientMeans(Make(0, 0, 40, 1, 200), 40);
  const double wide = SpreadOfClientMeans(Make(0, 4, 40, 1, 200), 40);
  EXPECT_LT(flat, 0.1);
  EXPECT_GT(wide, 1.0);
}

TEST(SyntheticTest, LabelsAreNotDegenerate) {
  // Across clients every class should appear somewhere.
  const SyntheticData data = Make(1, 1);
  std::set<int64_t> classes;
  for (int64_t c = 0; c < 20; ++c) {
    for (int64_t label : data.TrainExamples(c).labels) classes.insert(label);
  }
  EXPECT_EQ(classes.size(), 10u);
}

TEST(SyntheticTest, OutOfRangeClientYieldsNoData) {
  const SyntheticData data = Make(1, 1, 10);
  EXPECT_EQ(data.NumExamples(10), 0);
  EXPECT_EQ(data.NumExamples(-1), 0);
  EXPECT_EQ(data.TrainExamples(10).size(), 0);
  EXPECT_EQ(data.TestExamples(-1).size(), 0);
}

TEST(SyntheticTest, CreateRejectsBadOptions) {
  SyntheticData::Options ok;
  EXPECT_TRUE(SyntheticData::Create(ok).ok());

  SyntheticData::Options bad = ok;
  bad.alpha = -0.1;
  EXPECT_EQ(SyntheticData::Create(bad).status().code(), absl::StatusCode::kInvalidArgument);
  bad = ok;
  bad.beta = -1;
  EXPECT_EQ(SyntheticData::Create(bad).status().code(), absl::StatusCode::kInvalidArgument);
  bad = ok;
  bad.alpha = std::numeric_limits<double>::quiet_NaN();
  EXPECT_EQ(SyntheticData::Create(bad).status().code(), absl::StatusCode::kInvalidArgument);
  bad = ok;
  bad.num_clients = 0;
  EXPECT_EQ(SyntheticData::Create(bad).status().code(), absl::StatusCode::kInvalidArgument);
  bad = ok;
  bad.max_examples_per_client = 49;
  EXPECT_EQ(SyntheticData::Create(bad).status().code(), absl::StatusCode::kInvalidArgument);
  bad.max_examples_per_client = 50;
  EXPECT_TRUE(SyntheticData::Create(bad).ok());
}

}  // namespace
}  // namespace fedkit::data
