#include "models/torchscript_model.h"

#include <torch/nn/functional/loss.h>
#include <torch/script.h>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "models/evaluate.h"
#include "models/flat_params.h"

namespace fedkit::models {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

const data::DatasetInfo kInfo{{6}, 3};

std::string Fixture(const std::string& name) {
  return std::string(FEDKIT_TORCHSCRIPT_FIXTURES) + "/" + name;
}

std::string TempPath(const std::string& name) {
  return (std::filesystem::temp_directory_path() / (std::to_string(::getpid()) + "_" + name))
      .string();
}

std::vector<std::string> LayoutNames(const ParameterLayout& layout) {
  std::vector<std::string> names;
  for (const auto& entry : layout.entries) names.push_back(entry.name);
  return names;
}

TEST(TorchScriptModelTest, PathsAreRecognised) {
  EXPECT_TRUE(IsTorchScriptPath("2nn.pt"));
  EXPECT_TRUE(IsTorchScriptPath("models/net.pth"));
  EXPECT_TRUE(IsTorchScriptPath("./net"));
  EXPECT_FALSE(IsTorchScriptPath("mlp"));
  EXPECT_FALSE(IsTorchScriptPath("cnn"));
}

TEST(TorchScriptModelTest, IdentityIsTheFilesContentHash) {
  EXPECT_EQ(*ModelIdentity("mlp"), "mlp");
  auto a = ModelIdentity(Fixture("tiny_2nn.pt"));
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_THAT(*a, ::testing::StartsWith("torchscript:sha256:"));
  EXPECT_EQ(a->size(), std::string("torchscript:sha256:").size() + 64);
  // The same bytes under another path: the same identity. Other bytes: another.
  const std::string copy = TempPath("copy_of_tiny_2nn.pt");
  std::filesystem::copy_file(Fixture("tiny_2nn.pt"), copy,
                             std::filesystem::copy_options::overwrite_existing);
  EXPECT_EQ(*ModelIdentity(copy), *a);
  EXPECT_NE(*ModelIdentity(Fixture("tiny_bn.pt")), *a);
  std::filesystem::remove(copy);
  EXPECT_EQ(ModelIdentity("/nonexistent/m.pt").status().code(), absl::StatusCode::kNotFound);
}

TEST(TorchScriptModelTest, LayoutIsNamedParametersOrder) {
  auto model = CreateModel(Fixture("tiny_2nn.pt"), kInfo, 0);
  ASSERT_TRUE(model.ok()) << model.status();
  const ParameterLayout layout = LayoutOf(**model);
  EXPECT_THAT(LayoutNames(layout), ElementsAre("fc1/weight", "fc1/bias", "fc2/weight", "fc2/bias",
                                               "fc3/weight", "fc3/bias"));
  EXPECT_EQ(layout.size(), 6 * 8 + 8 + 8 * 8 + 8 + 8 * 3 + 3);

  // The flat vector is the module's own tensors, in that order.
  torch::jit::Module reference = torch::jit::load(Fixture("tiny_2nn.pt"));
  std::vector<float> expected;
  for (const auto& p : reference.named_parameters()) {
    const torch::Tensor t = p.value.contiguous();
    expected.insert(expected.end(), t.data_ptr<float>(), t.data_ptr<float>() + t.numel());
  }
  EXPECT_EQ(FlattenParameters(**model), expected);
}

TEST(TorchScriptModelTest, FloatBuffersFollowParametersAndIntegerBuffersStayOut) {
  auto model = CreateModel(Fixture("tiny_bn.pt"), kInfo, 0);
  ASSERT_TRUE(model.ok()) << model.status();
  EXPECT_THAT(LayoutNames(LayoutOf(**model)),
              ElementsAre("fc1/weight", "fc1/bias", "bn/weight", "bn/bias", "fc2/weight",
                          "fc2/bias", "buffer:bn/running_mean", "buffer:bn/running_var"));
  // Assigning the flat vector writes the module's running statistics.
  std::vector<float> flat = FlattenParameters(**model);
  const size_t var_begin = flat.size() - 8;
  for (size_t i = var_begin; i < flat.size(); ++i) flat[i] = 4.0f;
  ASSERT_TRUE(AssignParameters(flat, **model).ok());
  const std::string out = TempPath("bn_saved.pt");
  ASSERT_TRUE(SaveModel(**model, out).ok());
  torch::jit::Module saved = torch::jit::load(out);
  for (const auto& b : saved.named_buffers()) {
    if (b.name == "bn.running_var") {
      EXPECT_TRUE(torch::allclose(b.value, torch::full({8}, 4.0f)));
    }
  }
  std::filesystem::remove(out);
}

TEST(TorchScriptModelTest, ForwardTakesTheDatasetsOwnShape) {
  const data::DatasetInfo images{{1, 8, 8}, 3};
  auto model = CreateModel(Fixture("tiny_cnn.pt"), images, 0);
  ASSERT_TRUE(model.ok()) << model.status();
  // Flattened rows, as the trainer passes them, are viewed as [batch, 1, 8, 8].
  torch::Tensor logits = (*model)->forward(torch::randn({5, 64}));
  EXPECT_THAT(logits.sizes().vec(), ElementsAre(5, 3));
  // The same CNN cannot take 6 flat features: refused at load, naming the file and shapes.
  auto wrong = CreateModel(Fixture("tiny_cnn.pt"), kInfo, 0);
  ASSERT_FALSE(wrong.ok());
  EXPECT_EQ(wrong.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(wrong.status().message(), HasSubstr("tiny_cnn.pt"));
  EXPECT_THAT(wrong.status().message(), HasSubstr("[2, 6]"));
  // A 6-feature 2NN on Fashion-MNIST-shaped features: the interpreter's error, one line.
  auto mismatch = CreateModel(Fixture("tiny_2nn.pt"), images, 0);
  ASSERT_FALSE(mismatch.ok());
  EXPECT_EQ(mismatch.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(mismatch.status().message()),
              HasSubstr("forward() fails on features shaped [2, 1, 8, 8]: RuntimeError: mat1 and "
                        "mat2 shapes cannot be multiplied"));
  EXPECT_EQ(std::string(mismatch.status().message()).find('\n'), std::string::npos);
}

TEST(TorchScriptModelTest, OutputThatDoesNotFitTheClassesIsRefused) {
  const data::DatasetInfo ten_classes{{6}, 10};
  auto model = CreateModel(Fixture("tiny_2nn.pt"), ten_classes, 0);
  ASSERT_FALSE(model.ok());
  EXPECT_EQ(model.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(model.status().message()), HasSubstr("returns Float [2, 3]"))
      << model.status();
  EXPECT_THAT(model.status().message(), HasSubstr("[2, 10]"));
}

TEST(TorchScriptModelTest, OwnLossMethodIsUsed) {
  auto model = CreateModel(Fixture("tiny_own_loss.pt"), kInfo, 0);
  ASSERT_TRUE(model.ok()) << model.status();
  EXPECT_TRUE((*model)->HasOwnLoss());
  auto plain = CreateModel(Fixture("tiny_2nn.pt"), kInfo, 0);
  ASSERT_TRUE(plain.ok());
  EXPECT_FALSE((*plain)->HasOwnLoss());

  torch::manual_seed(5);
  const torch::Tensor logits = torch::randn({4, 3}) * 3;
  const torch::Tensor target = torch::tensor({0, 2, 1, 1}, torch::kInt64);
  namespace F = torch::nn::functional;
  const double smoothed =
      F::cross_entropy(logits, target, F::CrossEntropyFuncOptions().label_smoothing(0.1))
          .item<double>();
  const double cross_entropy = F::cross_entropy(logits, target).item<double>();
  ASSERT_GT(std::abs(smoothed - cross_entropy), 1e-3);
  EXPECT_NEAR((*model)->Loss(logits, target).item<double>(), smoothed, 1e-6);
  EXPECT_NEAR((*plain)->Loss(logits, target).item<double>(), cross_entropy, 1e-6);

  // Evaluation sums the model's own loss too.
  data::Examples ex;
  ex.feature_dim = 6;
  for (int i = 0; i < 6 * 4; ++i) ex.features.push_back(0.1f * static_cast<float>(i % 7));
  ex.labels = {0, 1, 2, 0};
  auto sums = EvaluateRange(**model, ex, 0, 4);
  ASSERT_TRUE(sums.ok()) << sums.status();
  torch::NoGradGuard no_grad;
  const torch::Tensor x = torch::from_blob(ex.features.data(), {4, 6});
  const double expected =
      F::cross_entropy((*model)->forward(x), torch::tensor({0, 1, 2, 0}, torch::kInt64),
                       F::CrossEntropyFuncOptions().label_smoothing(0.1))
          .item<double>() *
      4;
  EXPECT_NEAR(sums->loss_sum, expected, 1e-5);
}

TEST(TorchScriptModelTest, MissingCorruptAndTruncatedFilesAreRefusedByName) {
  auto missing = CreateModel("/nonexistent/model.pt", kInfo, 0);
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(missing.status().message(), HasSubstr("/nonexistent/model.pt"));

  const std::string garbage = TempPath("garbage.pt");
  {
    std::ofstream out(garbage, std::ios::binary);
    out << "this is not a zip archive";
  }
  auto corrupt = CreateModel(garbage, kInfo, 0);
  EXPECT_EQ(corrupt.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(corrupt.status().message(), HasSubstr(garbage));
  EXPECT_THAT(corrupt.status().message(), HasSubstr("not a TorchScript file"));

  std::string bytes;
  {
    std::ifstream in(Fixture("tiny_2nn.pt"), std::ios::binary);
    bytes.assign(std::istreambuf_iterator<char>(in), {});
  }
  ASSERT_GT(bytes.size(), 100u);
  const std::string truncated = TempPath("truncated.pt");
  {
    std::ofstream out(truncated, std::ios::binary);
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size() / 2));
  }
  auto cut = CreateModel(truncated, kInfo, 0);
  EXPECT_EQ(cut.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(cut.status().message(), HasSubstr(truncated));

  // A registry model's torch::save archive is not TorchScript either.
  auto registry = CreateModel("mlp", kInfo, 0);
  ASSERT_TRUE(registry.ok());
  const std::string archive = TempPath("registry_archive.pt");
  ASSERT_TRUE(SaveModel(**registry, archive).ok());
  auto not_script = CreateModel(archive, kInfo, 0);
  EXPECT_EQ(not_script.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(not_script.status().message(), HasSubstr(archive));

  for (const auto& p : {garbage, truncated, archive}) std::filesystem::remove(p);
}

TEST(TorchScriptModelTest, SavedModelLoadsInTorchWithTheCurrentParameters) {
  auto model = CreateModel(Fixture("tiny_2nn.pt"), kInfo, 0);
  ASSERT_TRUE(model.ok());
  std::vector<float> flat(LayoutOf(**model).size());
  for (size_t i = 0; i < flat.size(); ++i) flat[i] = 0.001f * static_cast<float>(i);
  ASSERT_TRUE(AssignParameters(flat, **model).ok());
  const std::string out = TempPath("saved_2nn.pt");
  ASSERT_TRUE(SaveModel(**model, out).ok());
  auto reloaded = CreateModel(out, kInfo, 0);
  ASSERT_TRUE(reloaded.ok()) << reloaded.status();
  EXPECT_EQ(FlattenParameters(**reloaded), flat);
  std::filesystem::remove(out);

  auto unwritable = SaveModel(**model, "/nonexistent/dir/out.pt");
  EXPECT_FALSE(unwritable.ok());
  EXPECT_THAT(unwritable.message(), HasSubstr("/nonexistent/dir/out.pt"));
}

}  // namespace
}  // namespace fedkit::models
