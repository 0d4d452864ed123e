#include "models/flat_params.h"

#include <torch/serialize.h>

#include <cstring>

#include "absl/strings/str_cat.h"
#include "models/torch_status.h"

namespace fedkit::models {

ParameterLayout LayoutOf(const torch::nn::Module& module) {
  ParameterLayout layout;
  for (const auto& param : module.named_parameters(/*recurse=*/true)) {
    layout.Append(param.key(), param.value().sizes().vec());
  }
  return layout;
}

std::vector<float> FlattenParameters(const torch::nn::Module& module) {
  const std::vector<torch::Tensor> params = module.parameters(/*recurse=*/true);
  int64_t total = 0;
  for (const auto& p : params) total += p.numel();
  std::vector<float> flat;
  flat.reserve(total);
  for (const auto& param : params) {
    const torch::Tensor p = param.detach().contiguous();
    const float* data = p.data_ptr<float>();
    flat.insert(flat.end(), data, data + p.numel());
  }
  return flat;
}

absl::Status AssignParameters(absl::Span<const float> flat, torch::nn::Module& module) {
  std::vector<torch::Tensor> params = module.parameters(/*recurse=*/true);
  int64_t expected = 0;
  for (const auto& p : params) expected += p.numel();
  if (static_cast<int64_t>(flat.size()) != expected) {
    return absl::InvalidArgumentError(absl::StrCat("flat parameter vector has ", flat.size(),
                                                   " values, the model has ", expected));
  }
  torch::NoGradGuard no_grad;
  const float* src = flat.data();
  for (auto& p : params) {
    // Parameters created by torch::nn are contiguous float32; copy straight into their storage.
    std::memcpy(p.data_ptr<float>(), src, sizeof(float) * p.numel());
    src += p.numel();
  }
  return absl::OkStatus();
}

namespace {

// Prefixes a failed status's message with what was being done to which file.
absl::Status WithPath(absl::Status status, absl::string_view action, const std::string& path) {
  if (status.ok()) return status;
  return absl::Status(status.code(), absl::StrCat(action, " ", path, ": ", status.message()));
}

}  // namespace

absl::Status SaveModule(const torch::nn::Module& module, const std::string& path) {
  return WithPath(CallTorch([&]() -> absl::Status {
                    torch::serialize::OutputArchive archive;
                    module.save(archive);
                    archive.save_to(path);
                    return absl::OkStatus();
                  }),
                  "cannot write model to", path);
}

absl::Status LoadModule(const std::string& path, torch::nn::Module& module) {
  return WithPath(CallTorch([&]() -> absl::Status {
                    torch::serialize::InputArchive archive;
                    archive.load_from(path);
                    module.load(archive);
                    return absl::OkStatus();
                  }),
                  "cannot load model from", path);
}

}  // namespace fedkit::models
