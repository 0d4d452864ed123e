#include "models/model.h"

#include <torch/torch.h>

#include <filesystem>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "models/flat_params.h"

namespace fedkit::models {
namespace {

const data::DatasetInfo kFmnist{{1, 28, 28}, 10};
const data::DatasetInfo kSynthetic{{60}, 10};

int64_t ParameterCount(const torch::nn::Module& m) { return LayoutOf(m).size(); }

TEST(ModelRegistryTest, ArchitecturesHaveThePapersParameterCounts) {
  // mlp (2NN): 784*200+200 + 200*200+200 + 200*10+10.
  EXPECT_EQ(ParameterCount(**CreateModel("mlp", kFmnist, 1)), 199210);
  // cnn: conv1 5*5*32+32, conv2 5*5*32*64+64, fc1 7*7*64*512+512, fc2 512*10+10.
  EXPECT_EQ(ParameterCount(**CreateModel("cnn", kFmnist, 1)), 832 + 51264 + 1606144 + 5130);
  EXPECT_EQ(ParameterCount(**CreateModel("logreg", kSynthetic, 1)), 60 * 10 + 10);
  // seed: 784 -> 10 relu -> 10.
  EXPECT_EQ(ParameterCount(**CreateModel("seed", kFmnist, 1)), 7850 + 110);
}

TEST(ModelRegistryTest, ForwardProducesLogitsPerExample) {
  for (const std::string& name : ModelNames()) {
    auto model = CreateModel(name, kFmnist, 3);
    ASSERT_TRUE(model.ok()) << name << ": " << model.status();
    torch::Tensor logits = (*model)->forward(torch::rand({4, 784}));
    EXPECT_EQ(logits.sizes(), (std::vector<int64_t>{4, 10})) << name;
  }
}

TEST(ModelRegistryTest, UnknownNameAndUnsuitableShapeAreClearErrors) {
  auto unknown = CreateModel("resnet", kFmnist, 1);
  EXPECT_EQ(unknown.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(unknown.status().message(), testing::HasSubstr("resnet"));
  EXPECT_THAT(unknown.status().message(), testing::HasSubstr("mlp"));
  auto cnn = CreateModel("cnn", kSynthetic, 1);
  EXPECT_EQ(cnn.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(cnn.status().message(), testing::HasSubstr("cnn"));
}

TEST(ModelRegistryTest, InitialisationDependsOnTheSeedAloneNotTheGlobalRng) {
  torch::manual_seed(1);
  auto a = FlattenParameters(**CreateModel("mlp", kFmnist, 42));
  torch::manual_seed(2);
  auto b = FlattenParameters(**CreateModel("mlp", kFmnist, 42));
  auto c = FlattenParameters(**CreateModel("mlp", kFmnist, 43));
  EXPECT_EQ(a, b);
  EXPECT_NE(a, c);
  // PyTorch's default bound for fc1.weight is 1/sqrt(784); values fill the range.
  const float bound = 1.0f / 28.0f;
  float max_abs = 0;
  for (int i = 0; i < 784 * 200; ++i) max_abs = std::max(max_abs, std::abs(a[i]));
  EXPECT_LE(max_abs, bound);
  EXPECT_GT(max_abs, 0.99f * bound);
}

TEST(FlatParamsTest, RoundTripsThroughTheFlatVector) {
  auto model = *CreateModel("cnn", kFmnist, 5);
  const ParameterLayout layout = LayoutOf(*model);
  ASSERT_EQ(layout.entries.front().name, "conv1.weight");
  EXPECT_EQ(layout.entries.front().shape, (std::vector<int64_t>{32, 1, 5, 5}));
  EXPECT_EQ(layout.entries[1].offset, 800);

  std::vector<float> flat(layout.size());
  for (size_t i = 0; i < flat.size(); ++i) flat[i] = static_cast<float>(i % 1000) * 0.001f;
  ASSERT_TRUE(AssignParameters(flat, *model).ok());
  EXPECT_EQ(FlattenParameters(*model), flat);
  // The layout's offsets address the same values the module holds.
  const auto& fc2_bias = layout.entries.back();
  EXPECT_EQ(fc2_bias.name, "fc2.bias");
  EXPECT_FLOAT_EQ(model->named_parameters()["fc2.bias"][3].item<float>(),
                  flat[fc2_bias.offset + 3]);
}

TEST(FlatParamsTest, WrongSizeIsRefusedAndNothingWritten) {
  auto model = *CreateModel("logreg", kSynthetic, 5);
  const auto before = FlattenParameters(*model);
  std::vector<float> wrong(before.size() + 1, 1.0f);
  absl::Status status = AssignParameters(wrong, *model);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(FlattenParameters(*model), before);
}

TEST(FlatParamsTest, SavedModelLoadsBackWithTorch) {
  auto model = *CreateModel("mlp", kFmnist, 9);
  const std::string path =
      (std::filesystem::path(testing::TempDir()) / "fedkit_model_test.pt").string();
  ASSERT_TRUE(SaveModule(*model, path).ok());
  auto other = *CreateModel("mlp", kFmnist, 10);
  ASSERT_NE(FlattenParameters(*other), FlattenParameters(*model));
  ASSERT_TRUE(LoadModule(path, *other).ok());
  EXPECT_EQ(FlattenParameters(*other), FlattenParameters(*model));

  auto missing = LoadModule("/nonexistent/dir/model.pt", *other);
  EXPECT_FALSE(missing.ok());
  EXPECT_THAT(missing.message(), testing::HasSubstr("/nonexistent/dir/model.pt"));
}

}  // namespace
}  // namespace fedkit::models
