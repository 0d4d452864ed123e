// The device path of fedkit-export's files: the frozen, 8-bit and pruned exports (models/python/
// export.py) loaded by LibTorch C++ as a device app would, with torch::jit::load and forward(), on
// the first Fashion-MNIST test examples read by FedKit's own reader; their logits and predicted
// classes must match what the exporter computed in Python (its --expected-out file).
//
// FedKit's TorchScriptModel (models/torchscript_model.h) is the training path: it refuses a module
// without parameters, and a frozen or quantized module has none (its weights are graph constants or
// packed parameters), so inference on a device goes through torch::jit::load + forward; the last
// test pins that refusal so the README's advice stays true.
#include <torch/script.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
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

class EdgeExportTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    auto test = data::LoadFashionMnist(data::kDefaultFashionMnistDir, data::Split::kTest);
    ASSERT_TRUE(test.ok()) << test.status();
    features_ = new torch::Tensor(
        torch::from_blob(test->features.data(), {kExamples, 1, 28, 28}, torch::kFloat32).clone());
    const std::string cnn = WorkDir() + "/small_cnn.pt";
    RunOrFail({FEDKIT_TORCH_PYTHON, FEDKIT_MAKE_MODEL_PY, "small-cnn", cnn, "--seed", "7"},
              "make_model.log");
    mlp_ = new nlohmann::json(
        Export(std::string(FEDKIT_TORCHSCRIPT_FIXTURES) + "/fmnist_small_2nn.pt", "2nn"));
    cnn_ = new nlohmann::json(Export(cnn, "cnn"));
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
