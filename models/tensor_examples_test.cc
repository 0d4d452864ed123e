#include "models/tensor_examples.h"

#include <torch/torch.h>

#include <cmath>

#include "gtest/gtest.h"

namespace fedkit::models {
namespace {

// A small map-style dataset, as an app might have.
class ToyDataset : public torch::data::datasets::Dataset<ToyDataset> {
 public:
  torch::data::Example<> get(size_t index) override {
    return {torch::full({2, 2}, static_cast<float>(index)),
            torch::tensor(static_cast<int64_t>(index % 3))};
  }
  torch::optional<size_t> size() const override { return 5; }
};

TEST(TensorExamplesTest, CopiesFlattenedFeaturesAndLabels) {
  auto x = torch::arange(12, torch::kFloat64).reshape({3, 2, 2});
  auto y = torch::tensor({2, 0, 1}, torch::kInt32);
  auto examples = ExamplesFromTensors(x, y);
  ASSERT_TRUE(examples.ok()) << examples.status();
  EXPECT_EQ(examples->feature_dim, 4);
  EXPECT_EQ(examples->labels, (std::vector<int64_t>{2, 0, 1}));
  ASSERT_EQ(examples->features.size(), 12u);
  for (int i = 0; i < 12; ++i) EXPECT_EQ(examples->features[i], static_cast<float>(i));
}

TEST(TensorExamplesTest, ReadsAMapStyleDataset) {
  ToyDataset dataset;
  auto examples = ExamplesFromDataset(dataset);
  ASSERT_TRUE(examples.ok()) << examples.status();
  EXPECT_EQ(examples->size(), 5);
  EXPECT_EQ(examples->feature_dim, 4);
  EXPECT_EQ(examples->labels, (std::vector<int64_t>{0, 1, 2, 0, 1}));
  EXPECT_EQ(examples->features[4 * 3], 3.0f);
}

TEST(TensorExamplesTest, FloatTargetsAreRegressionTargets) {
  auto one = ExamplesFromTensors(torch::rand({3, 2, 2}), torch::tensor({0.5, -1.0, 2.0}));
  ASSERT_TRUE(one.ok()) << one.status();
  EXPECT_TRUE(one->is_regression());
  EXPECT_EQ(one->target_dim, 1);
  EXPECT_EQ(one->size(), 3);
  EXPECT_EQ(one->targets, (std::vector<float>{0.5f, -1.0f, 2.0f}));
  EXPECT_TRUE(one->labels.empty());
  auto two =
      ExamplesFromTensors(torch::rand({3, 4}), torch::arange(6, torch::kFloat32).reshape({3, 2}));
  ASSERT_TRUE(two.ok()) << two.status();
  EXPECT_EQ(two->target_dim, 2);
  EXPECT_EQ(two->size(), 3);
  EXPECT_EQ(two->Select({2, 0}).targets, (std::vector<float>{4, 5, 0, 1}));
}

TEST(TensorExamplesTest, MismatchesAreErrorsNotExceptions) {
  EXPECT_FALSE(ExamplesFromTensors(torch::rand({3, 4}), torch::tensor({1, 2})).ok());
  // Float targets are regression: their count must match too, and be [N] or [N, k].
  EXPECT_FALSE(ExamplesFromTensors(torch::rand({2, 4}), torch::rand({3})).ok());
  EXPECT_FALSE(ExamplesFromTensors(torch::rand({2, 4}), torch::rand({2, 2, 2})).ok());
  EXPECT_FALSE(ExamplesFromTensors(torch::rand({2, 4}), torch::tensor({1.0f, std::nanf("")})).ok());
  EXPECT_FALSE(ExamplesFromTensors(torch::ones({2, 4}, torch::kInt64), torch::tensor({1, 2})).ok());
  EXPECT_FALSE(ExamplesFromTensors(torch::rand({2, 4}), torch::tensor({-1, 2})).ok());
}

}  // namespace
}  // namespace fedkit::models
