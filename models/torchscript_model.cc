#include "models/torchscript_model.h"

#include <torch/nn/functional/loss.h>

#include <filesystem>
#include <functional>
#include <sstream>
#include <system_error>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "artifacts/artifact_files.h"
#include "artifacts/signing.h"
#include "models/flat_params.h"
#include "models/torch_status.h"

namespace fedkit::models {
namespace {

// The useful line of a LibTorch message: the first (later lines are C++ stack traces), unless the
// message is a TorchScript traceback, whose last non-empty line is the error itself
// ("RuntimeError: mat1 and mat2 shapes cannot be multiplied ...").
std::string FirstLine(const std::string& message) {
  if (message.find("Traceback") == std::string::npos) {
    return message.substr(0, message.find('\n'));
  }
  const size_t end = message.find_last_not_of("\n ");
  if (end == std::string::npos) return message;
  const size_t newline = message.rfind('\n', end);
  const size_t start = newline == std::string::npos ? 0 : newline + 1;
  return message.substr(start, end + 1 - start);
}

std::string ShapeText(const torch::Tensor& t) {
  return absl::StrCat("[", absl::StrJoin(t.sizes(), ", "), "]");
}

}  // namespace

bool IsTorchScriptPath(absl::string_view name) {
  return absl::EndsWith(name, ".pt") || absl::EndsWith(name, ".pth") ||
         absl::EndsWith(name, ".ptl") || absl::StrContains(name, '/');
}

TorchScriptModel::TorchScriptModel(std::string path, torch::jit::Module module,
                                   std::vector<int64_t> feature_shape)
    : path_(std::move(path)), module_(std::move(module)) {
  view_shape_.push_back(-1);
  view_shape_.insert(view_shape_.end(), feature_shape.begin(), feature_shape.end());
}

absl::StatusOr<std::shared_ptr<TorchScriptModel>> TorchScriptModel::Load(
    const std::string& path, const data::DatasetInfo& info) {
  std::error_code ec;
  if (!std::filesystem::is_regular_file(path, ec)) {
    return absl::NotFoundError(absl::StrCat("model file ", path, " does not exist"));
  }
  return LoadArchive(path, info, [&] { return torch::jit::load(path); });
}

absl::StatusOr<std::shared_ptr<TorchScriptModel>> TorchScriptModel::LoadFromBytes(
    absl::string_view bytes, const std::string& name, const data::DatasetInfo& info) {
  return LoadArchive(name, info, [&] {
    std::istringstream in{std::string(bytes)};
    return torch::jit::load(in);
  });
}

absl::StatusOr<std::shared_ptr<TorchScriptModel>> TorchScriptModel::LoadArchive(
    const std::string& path, const data::DatasetInfo& info,
    const std::function<torch::jit::Module()>& load) {
  const bool regression = info.target_dim > 0;
  if (info.feature_dim() <= 0 || (!regression && info.num_classes < 2)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "model ", path,
        " needs a dataset with features and at least 2 classes or regression targets"));
  }
  const int64_t outputs = regression ? info.target_dim : info.num_classes;
  const char* const task = regression ? "regression" : "classification";
  torch::jit::Module module;
  try {
    module = load();
  } catch (const c10::Error& e) {
    return absl::InvalidArgumentError(absl::StrCat(
        path, " is not a TorchScript file (write one with torch.jit.script(model).save(path)): ",
        FirstLine(e.what_without_backtrace())));
  } catch (const std::exception& e) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, " is not a TorchScript file: ", FirstLine(e.what())));
  }

  absl::StatusOr<std::shared_ptr<TorchScriptModel>> result =
      CallTorch([&]() -> absl::StatusOr<std::shared_ptr<TorchScriptModel>> {
        if (!module.find_method("forward")) {
          return absl::InvalidArgumentError(absl::StrCat(path, " has no forward() method"));
        }
        std::shared_ptr<TorchScriptModel> model(
            new TorchScriptModel(path, module, info.feature_shape));
        // Parameters, then floating-point buffers: the flat layout (see the header).
        for (const auto& param : model->module_.named_parameters(/*recurse=*/true)) {
          const torch::Tensor& t = param.value;
          if (t.scalar_type() != torch::kFloat32 || !t.is_contiguous()) {
            return absl::InvalidArgumentError(
                absl::StrCat(path, ": parameter '", param.name,
                             "' is not a contiguous float32 tensor (call model.float() before "
                             "saving)"));
          }
          model->register_parameter(absl::StrReplaceAll(param.name, {{".", "/"}}), t,
                                    t.requires_grad());
        }
        for (const auto& buffer : model->module_.named_buffers(/*recurse=*/true)) {
          const torch::Tensor& t = buffer.value;
          if (!t.is_floating_point()) continue;  // e.g. num_batches_tracked: stays local
          if (t.scalar_type() != torch::kFloat32 || !t.is_contiguous()) {
            return absl::InvalidArgumentError(absl::StrCat(path, ": buffer '", buffer.name,
                                                           "' is not a contiguous float32 tensor"));
          }
          model->register_parameter(
              absl::StrCat("buffer:", absl::StrReplaceAll(buffer.name, {{".", "/"}})), t,
              /*requires_grad=*/false);
        }
        if (model->parameters().empty()) {
          return absl::InvalidArgumentError(absl::StrCat(path, " has no parameters to train"));
        }

        // A dry run on two zero examples: the output must fit the dataset's classes.
        std::vector<int64_t> shape = {2};
        shape.insert(shape.end(), info.feature_shape.begin(), info.feature_shape.end());
        const bool was_training = model->module_.is_training();
        torch::Tensor out;
        {
          torch::NoGradGuard no_grad;
          model->module_.eval();
          torch::jit::IValue value;
          try {
            value = model->module_.forward({torch::zeros(shape)});
          } catch (const c10::Error& e) {
            return absl::InvalidArgumentError(absl::StrCat(
                path, ": forward() fails on features shaped [", absl::StrJoin(shape, ", "),
                "]: ", FirstLine(e.what_without_backtrace())));
          } catch (const std::exception& e) {  // the interpreter's own errors
            return absl::InvalidArgumentError(
                absl::StrCat(path, ": forward() fails on features shaped [",
                             absl::StrJoin(shape, ", "), "]: ", FirstLine(e.what())));
          }
          model->module_.train(was_training);
          if (!value.isTensor()) {
            return absl::InvalidArgumentError(absl::StrCat(
                path, ": forward() returns ", value.tagKind(), ", not a tensor of logits"));
          }
          out = value.toTensor();
        }
        // The task the module declares (optional attribute fedkit_task) must be the dataset's.
        if (model->module_.hasattr("fedkit_task")) {
          const torch::jit::IValue declared = model->module_.attr("fedkit_task");
          if (!declared.isString() || declared.toStringRef() != task) {
            return absl::InvalidArgumentError(absl::StrCat(
                path, " declares fedkit_task = ",
                declared.isString() ? "'" + declared.toStringRef() + "'" : declared.tagKind(),
                " but the dataset is a ", task, " dataset"));
          }
        }
        if (out.dim() != 2 || out.size(0) != 2 || out.size(1) != outputs ||
            out.scalar_type() != torch::kFloat32) {
          return absl::InvalidArgumentError(absl::StrCat(
              path, ": forward() on features shaped [", absl::StrJoin(shape, ", "), "] returns ",
              c10::toString(out.scalar_type()), " ", ShapeText(out), "; this dataset needs float ",
              regression ? "regression outputs [2, " : "logits [2, ", outputs, "]"));
        }
        const torch::Tensor dry_target =
            regression ? torch::zeros({2, info.target_dim}) : torch::zeros({2}, torch::kInt64);
        const std::string target_text =
            regression ? absl::StrCat("float targets [2, ", info.target_dim, "]")
                       : std::string("int64 class targets [2]");
        if (model->module_.find_method("loss")) {
          torch::NoGradGuard no_grad;
          torch::jit::IValue loss;
          try {
            loss = model->module_.run_method("loss", out, dry_target);
          } catch (const c10::Error& e) {
            return absl::InvalidArgumentError(
                absl::StrCat(path, ": loss(output, target) fails on logits ", ShapeText(out),
                             " and ", target_text, ": ", FirstLine(e.what_without_backtrace())));
          } catch (const std::exception& e) {
            return absl::InvalidArgumentError(
                absl::StrCat(path, ": loss(output, target) fails on logits ", ShapeText(out),
                             " and ", target_text, ": ", FirstLine(e.what())));
          }
          if (!loss.isTensor() || loss.toTensor().numel() != 1) {
            return absl::InvalidArgumentError(
                absl::StrCat(path, ": loss(output, target) must return a scalar tensor"));
          }
          model->has_loss_ = true;
        }
        model->torch::nn::Module::train(was_training);
        return model;
      });
  if (!result.ok() && result.status().code() == absl::StatusCode::kInternal) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": ", result.status().message()));
  }
  return result;
}

torch::Tensor TorchScriptModel::forward(torch::Tensor features) {
  return module_.forward({features.reshape(view_shape_)}).toTensor();
}

torch::Tensor TorchScriptModel::Loss(const torch::Tensor& output, const torch::Tensor& target) {
  if (!has_loss_) return Model::Loss(output, target);
  return module_.run_method("loss", output, target).toTensor();
}

void TorchScriptModel::train(bool on) {
  torch::nn::Module::train(on);
  module_.train(on);
}

absl::Status TorchScriptModel::Save(const std::string& path) const {
  absl::Status status = CallTorch([&]() -> absl::Status {
    module_.save(path);
    return absl::OkStatus();
  });
  if (status.ok()) return status;
  return absl::InternalError(absl::StrCat("cannot write model to ", path, ": ", status.message()));
}

absl::StatusOr<std::string> ModelIdentity(absl::string_view name) {
  if (!IsTorchScriptPath(name)) return std::string(name);
  absl::StatusOr<std::string> bytes = artifacts::ReadFileBytes(std::string(name));
  if (!bytes.ok()) {
    return absl::NotFoundError(absl::StrCat("model file ", bytes.status().message()));
  }
  return absl::StrCat("torchscript:sha256:", artifacts::Sha256Hex(*bytes));
}

absl::Status SaveModel(const Model& model, const std::string& path) {
  if (const auto* script = dynamic_cast<const TorchScriptModel*>(&model)) {
    return script->Save(path);
  }
  return SaveModule(model, path);
}

}  // namespace fedkit::models
