// Converting a module's parameters to and from one flat float vector.
#ifndef FEDKIT_MODELS_FLAT_PARAMS_H_
#define FEDKIT_MODELS_FLAT_PARAMS_H_

#include <torch/nn/module.h>

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/types/span.h"
#include "core/parameter_layout.h"

namespace fedkit::models {

// The layout of `module`'s parameters (recursively, registration order).
ParameterLayout LayoutOf(const torch::nn::Module& module);

// Copies the parameters into one vector laid out as LayoutOf(module). Parameters must be float32.
std::vector<float> FlattenParameters(const torch::nn::Module& module);

// Overwrites the parameters from `flat`. INVALID_ARGUMENT (nothing written) if flat.size() differs
// from the layout's size.
absl::Status AssignParameters(absl::Span<const float> flat, torch::nn::Module& module);

// Writes `module` with torch::save, so torch::load into a module of the same architecture (or
// LoadModule below) reads it back. Errors name the path.
absl::Status SaveModule(const torch::nn::Module& module, const std::string& path);
absl::Status LoadModule(const std::string& path, torch::nn::Module& module);

}  // namespace fedkit::models

#endif  // FEDKIT_MODELS_FLAT_PARAMS_H_
