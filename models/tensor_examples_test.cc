#include "models/tensor_examples.h"

#include <torch/torch.h>

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

TEST(TensorExamplesTest, MismatchesAreErrorsNotExceptions) {
  EXPECT_FALSE(ExamplesFromTensors(torch::rand({3, 4}), torch::tensor({1, 2})).ok());
  EXPECT_FALSE(ExamplesFromTensors(torch::rand({2, 4}), torch::rand({2})).ok());
  EXPECT_FALSE(ExamplesFromTensors(torch::ones({2, 4}, torch::kInt64), torch::tensor({1, 2})).ok());
  EXPECT_FALSE(ExamplesFromTensors(torch::rand({2, 4}), torch::tensor({-1, 2})).ok());
}

}  // namespace
}  // namespace fedkit::models
