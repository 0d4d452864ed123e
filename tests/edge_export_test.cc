// The device path of fedkit-export's files: the frozen, 8-bit and pruned exports (models/python/
// export.py) loaded by LibTorch C++ as a device app would, with torch::jit::load and forward(), on
// the first Fashion-MNIST test examples read by FedKit's own reader; their logits and predicted
// classes must match what the exporter computed in Python (its --expected-out file). The models
// (a small 2NN and a small CNN) are trained here for a few seeded SGD steps first, so that they
// predict different classes for different examples.
//
// FedKit's TorchScriptModel (models/torchscript_model.h) is the training path: it refuses a module
// without parameters, and a frozen or quantized module has none (its weights are graph constants or
// packed parameters), so inference on a device goes through torch::jit::load + forward; the last
// test pins that refusal so the README's advice stays true.
#include <torch/nn/functional/loss.h>
#include <torch/optim/sgd.h>
#include <torch/script.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <set>
#include <string>
#include <vector>

#include "data/idx.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "models/torchscript_model.h"
#include "nlohmann/json.hpp"
#include "tests/subprocess.h"

namespace fedkit {
namespace {

using ::testing::HasSubstr;

constexpr int kExamples = 8;

std::string WorkDir() {
  static const std::string dir = [] {
    const auto path = std::filesystem::temp_directory_path() /
                      ("fedkit_edge_export_test_" + std::to_string(::getpid()));
    std::filesystem::create_directories(path);
    return path.string();
  }();
  return dir;
}

// Runs argv to completion; fails the test with its output unless it exits 0.
void RunOrFail(const std::vector<std::string>& argv, const std::string& log_name) {
  testing_util::Subprocess process;
  ASSERT_TRUE(process.Start(argv, WorkDir() + "/" + log_name)) << argv[0];
  const int code = process.Wait();
  ASSERT_EQ(code, 0) << argv[0] << " exited " << code << ":\n" << process.Output();
}

// Exports `model` (a TorchScript file) as frozen, int8 and pruned (sparsity 0.5) files into the
// work directory under `prefix`; returns the parsed --expected-out file.
nlohmann::json Export(const std::string& model, const std::string& prefix) {
  const std::string base = WorkDir() + "/" + prefix;
  RunOrFail({FEDKIT_EXPORT_BINARY,
             model,
             "--frozen",
             base + "_frozen.pt",
             "--int8",
             base + "_int8.pt",
             "--pruned",
             base + "_pruned.pt",
             "--sparsity",
             "0.5",
             "--calibration-examples",
             "64",
             "--latency-runs",
             "1",
             "--latency-warmup",
             "0",
             "--expected-out",
             base + "_expected.json",
             "--expected-count",
             std::to_string(kExamples)},
            prefix + "_export.log");
  std::ifstream in(base + "_expected.json");
  return nlohmann::json::parse(in, nullptr, /*allow_exceptions=*/false);
}

// `steps` SGD steps (batch 32, lr 0.05) of the TorchScript model at `in` on consecutive training
// examples, written to `out`.
void TrainBriefly(const std::string& in, const std::string& out, const data::Examples& train,
                  int steps) {
  torch::manual_seed(3);
  torch::jit::Module module = torch::jit::load(in);
  module.train();
  std::vector<torch::Tensor> parameters;
  for (const auto& p : module.parameters()) parameters.push_back(p);
  torch::optim::SGD optimizer(parameters, torch::optim::SGDOptions(0.05));
  constexpr int64_t kBatch = 32;
  for (int step = 0; step < steps; ++step) {
    const int64_t first = (step * kBatch) % (train.size() - kBatch);
    const torch::Tensor x =
        torch::from_blob(const_cast<float*>(train.features.data()) + first * train.feature_dim,
                         {kBatch, 1, 28, 28}, torch::kFloat32);
    const torch::Tensor y = torch::from_blob(const_cast<int64_t*>(train.labels.data()) + first,
                                             {kBatch}, torch::kInt64);
    optimizer.zero_grad();
    torch::nn::functional::cross_entropy(module.forward({x}).toTensor(), y).backward();
    optimizer.step();
  }
  module.eval();
  module.save(out);
}

class EdgeExportTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    auto test = data::LoadFashionMnist(data::kDefaultFashionMnistDir, data::Split::kTest);
    ASSERT_TRUE(test.ok()) << test.status();
    features_ = new torch::Tensor(
        torch::from_blob(test->features.data(), {kExamples, 1, 28, 28}, torch::kFloat32).clone());
    auto train = data::LoadFashionMnist(data::kDefaultFashionMnistDir, data::Split::kTrain);
    ASSERT_TRUE(train.ok()) << train.status();
    const std::string cnn = WorkDir() + "/small_cnn.pt";
    RunOrFail({FEDKIT_TORCH_PYTHON, FEDKIT_MAKE_MODEL_PY, "small-cnn", cnn, "--seed", "7"},
              "make_model.log");
    const std::string trained_mlp = WorkDir() + "/small_2nn_trained.pt";
    const std::string trained_cnn = WorkDir() + "/small_cnn_trained.pt";
    try {
      TrainBriefly(std::string(FEDKIT_TORCHSCRIPT_FIXTURES) + "/fmnist_small_2nn.pt", trained_mlp,
                   *train, 100);
      TrainBriefly(cnn, trained_cnn, *train, 100);
    } catch (const c10::Error& e) {
      FAIL() << "training the test models: " << e.what_without_backtrace();
    }
    mlp_ = new nlohmann::json(Export(trained_mlp, "2nn"));
    cnn_ = new nlohmann::json(Export(trained_cnn, "cnn"));
  }
  static void TearDownTestSuite() {
    delete features_;
    delete mlp_;
    delete cnn_;
    std::filesystem::remove_all(WorkDir());
  }

  // Loads the form's file with torch::jit::load, runs forward on the test examples and compares
  // with the exporter's logits (within `tolerance`) and predicted classes (exactly).
  static void ExpectSameAsPython(const nlohmann::json& expected, const std::string& form,
                                 double tolerance) {
    SCOPED_TRACE(form);
    ASSERT_TRUE(expected.is_object() && expected["forms"].contains(form)) << expected.dump();
    const nlohmann::json& f = expected["forms"][form];
    torch::jit::Module module;
    try {
      module = torch::jit::load(f["file"].get<std::string>());
    } catch (const c10::Error& e) {
      FAIL() << "torch::jit::load(" << f["file"] << "): " << e.what_without_backtrace();
    }
    module.eval();
    torch::NoGradGuard no_grad;
    const torch::Tensor logits = module.forward({*features_}).toTensor();
    ASSERT_EQ(logits.sizes(), (std::vector<int64_t>{kExamples, 10}));
    const torch::Tensor classes = logits.argmax(1).contiguous();
    const std::vector<int64_t> predictions(classes.data_ptr<int64_t>(),
                                           classes.data_ptr<int64_t>() + kExamples);
    EXPECT_EQ(predictions, f["predictions"].get<std::vector<int64_t>>());
    // The trained model tells examples apart: a constant prediction would match trivially.
    EXPECT_GT(std::set<int64_t>(predictions.begin(), predictions.end()).size(), 2u);
    const auto rows = f["logits"].get<std::vector<std::vector<float>>>();
    ASSERT_EQ(rows.size(), static_cast<size_t>(kExamples));
    for (int i = 0; i < kExamples; ++i) {
      for (int c = 0; c < 10; ++c) {
        EXPECT_NEAR(logits[i][c].item<float>(), rows[i][c], tolerance)
            << "example " << i << " class " << c;
      }
    }
  }

  void SetUp() override {
    if (features_ == nullptr || mlp_ == nullptr || cnn_ == nullptr) {
      GTEST_FAIL() << "the exports were not made (see the set-up's failure)";
    }
  }

  static torch::Tensor* features_;
  static nlohmann::json* mlp_;
  static nlohmann::json* cnn_;
};

torch::Tensor* EdgeExportTest::features_ = nullptr;
nlohmann::json* EdgeExportTest::mlp_ = nullptr;
nlohmann::json* EdgeExportTest::cnn_ = nullptr;

TEST_F(EdgeExportTest, TwoNnExportsPredictInCppAsInPython) {
  ExpectSameAsPython(*mlp_, "frozen", 1e-4);
  ExpectSameAsPython(*mlp_, "int8", 1e-4);  // dynamic quantization: the same kernels as Python's
  ExpectSameAsPython(*mlp_, "pruned 0.5", 1e-4);
}

TEST_F(EdgeExportTest, CnnExportsPredictInCppAsInPython) {
  ExpectSameAsPython(*cnn_, "frozen", 1e-4);
  ExpectSameAsPython(*cnn_, "int8", 1e-4);  // static quantization (quantized::conv2d)
  ExpectSameAsPython(*cnn_, "pruned 0.5", 1e-4);
}

TEST_F(EdgeExportTest, Int8ExportRunsQuantizedKernels) {
  // The files hold what their names promise: the 2NN's int8 export runs dynamic quantized linear
  // layers, the CNN's static quantized convolutions, and neither holds float weights to train.
  for (const auto& [expected, op] :
       {std::pair{mlp_, "quantized::linear_dynamic"}, std::pair{cnn_, "quantized::conv2d"}}) {
    torch::jit::Module module =
        torch::jit::load((*expected)["forms"]["int8"]["file"].get<std::string>());
    EXPECT_THAT(module.get_method("forward").graph()->toString(), HasSubstr(op));
    EXPECT_EQ(module.parameters().size(), 0u);
  }
}

TEST_F(EdgeExportTest, TorchScriptModelRefusesAFrozenExportForTraining) {
  const auto model = models::TorchScriptModel::Load(
      (*mlp_)["forms"]["frozen"]["file"].get<std::string>(), data::DatasetInfo{{1, 28, 28}, 10});
  ASSERT_FALSE(model.ok());
  EXPECT_EQ(model.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(model.status().message(), HasSubstr("no parameters"));
}

}  // namespace
}  // namespace fedkit
