#include "models/tensor_file.h"

#include <torch/serialize.h>
#include <torch/torch.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <iterator>
#include <map>
#include <numeric>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "core/status_macros.h"
#include "models/tensor_examples.h"
#include "models/torch_status.h"

namespace fedkit::models {
namespace {

bool IsIntegerTensor(const torch::Tensor& t) {
  return !t.is_floating_point() && !t.is_complex() && t.scalar_type() != torch::kBool;
}

std::string FirstLine(const std::string& text) { return text.substr(0, text.find('\n')); }

absl::StatusOr<std::vector<char>> ReadBytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return absl::InvalidArgumentError(
        absl::StrCat("cannot read tensor file ", path, ": ", std::strerror(errno)));
  }
  std::vector<char> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (in.bad()) {
    return absl::InvalidArgumentError(absl::StrCat("cannot read tensor file ", path));
  }
  return bytes;
}

// The file's dict of tensors by key.
absl::StatusOr<std::map<std::string, torch::Tensor>> LoadTensorDict(const std::string& path) {
  torch::IValue value;
  {
    FEDKIT_ASSIGN_OR_RETURN(std::vector<char> bytes, ReadBytes(path));
    try {
      value = torch::pickle_load(bytes);
    } catch (const c10::Error& e) {
      return absl::InvalidArgumentError(absl::StrCat(
          "tensor file ", path, " is corrupt, truncated or not written by torch.save (LibTorch: ",
          FirstLine(e.what_without_backtrace()), ")"));
    } catch (const std::exception& e) {
      return absl::InvalidArgumentError(absl::StrCat(
          "tensor file ", path, " is corrupt, truncated or not written by torch.save (",
          FirstLine(e.what()), ")"));
    }
  }
  if (!value.isGenericDict()) {
    return absl::InvalidArgumentError(
        absl::StrCat("tensor file ", path, " holds a ", value.tagKind(),
                     ", not a dict {\"x\": X, \"y\": Y, \"client\": C}"));
  }
  std::map<std::string, torch::Tensor> out;
  for (const auto& entry : value.toGenericDict()) {
    if (!entry.key().isString()) {
      return absl::InvalidArgumentError(
          absl::StrCat("tensor file ", path, ": the dict's keys must be strings"));
    }
    const std::string key = entry.key().toStringRef();
    if (key != "x" && key != "y" && key != "client" && key != "test_x" && key != "test_y") {
      return absl::InvalidArgumentError(absl::StrCat("tensor file ", path, ": unknown key \"", key,
                                                     "\" (expected x, y, client, test_x, test_y)"));
    }
    if (!entry.value().isTensor()) {
      return absl::InvalidArgumentError(absl::StrCat("tensor file ", path, ": \"", key, "\" is a ",
                                                     entry.value().tagKind(), ", not a tensor"));
    }
    out[key] = entry.value().toTensor();
  }
  return out;
}

absl::StatusOr<data::NaturalDatasetParts> ReadTensorFileOrThrow(const std::string& path) {
  FEDKIT_ASSIGN_OR_RETURN(auto tensors, LoadTensorDict(path));
  auto bad = [&path](auto&&... parts) {
    return absl::InvalidArgumentError(absl::StrCat("tensor file ", path, ": ", parts...));
  };
  for (const char* key : {"x", "y", "client"}) {
    if (tensors.count(key) == 0) {
      return bad("missing key \"", key,
                 "\" (expected torch.save({\"x\": X, \"y\": Y, \"client\": "
                 "C}, path))");
    }
  }
  if (tensors.count("test_x") != tensors.count("test_y")) {
    return bad("\"test_x\" and \"test_y\" go together; the file has only one of them");
  }
  const torch::Tensor& x = tensors["x"];
  const torch::Tensor& y = tensors["y"];
  const torch::Tensor& c = tensors["client"];
  // Checks one (features, labels) pair; `prefix` is "" or "test_".
  auto check = [&](const std::string& prefix, const torch::Tensor& features,
                   const torch::Tensor& labels) -> absl::Status {
    if (features.dim() < 1 || !features.is_floating_point()) {
      return bad(prefix, "x must be a floating-point tensor [N, ...]; it is a ", features.dim(),
                 "-d ", c10::toString(features.scalar_type()), " tensor (convert with .float())");
    }
    if (labels.is_floating_point() != y.is_floating_point()) {
      return bad(prefix, "y is ", c10::toString(labels.scalar_type()), " but y is ",
                 c10::toString(y.scalar_type()), ": train and test targets must be of one task");
    }
    if (labels.is_floating_point()) {  // regression targets [N] or [N, k]
      if (labels.dim() < 1 || labels.dim() > 2 || (prefix == "test_" && labels.dim() != y.dim()) ||
          (labels.dim() == 2 && labels.size(1) != y.size(1))) {
        return bad(prefix, "y must be float regression targets [N] or [N, k] like y; it is [",
                   absl::StrJoin(labels.sizes(), ", "), "]");
      }
      if (features.size(0) != labels.size(0)) {
        return bad(prefix, "x has ", features.size(0), " rows but ", prefix, "y has ",
                   labels.size(0));
      }
      return absl::OkStatus();
    }
    if (labels.dim() != 1 || !IsIntegerTensor(labels)) {
      return bad(prefix,
                 "y must be a 1-d integer tensor of class labels or float regression targets; it "
                 "is a ",
                 labels.dim(), "-d ", c10::toString(labels.scalar_type()), " tensor");
    }
    if (features.size(0) != labels.size(0)) {
      return bad(prefix, "x has ", features.size(0), " rows but ", prefix, "y has ",
                 labels.size(0));
    }
    if (labels.numel() > 0) {
      const torch::Tensor lowest = labels.to(torch::kInt64).min();
      if (lowest.item<int64_t>() < 0) {
        const int64_t row = (labels.to(torch::kInt64) < 0).nonzero()[0][0].item<int64_t>();
        return bad(prefix, "y has a negative label ", labels[row].item<int64_t>(), " at row ", row,
                   " (labels are class indices 0, 1, ...)");
      }
    }
    return absl::OkStatus();
  };
  FEDKIT_RETURN_IF_ERROR(check("", x, y));
  if (c.dim() != 1 || !IsIntegerTensor(c)) {
    return bad("client must be a 1-d integer tensor of client ids; it is a ", c.dim(), "-d ",
               c10::toString(c.scalar_type()), " tensor");
  }
  if (c.size(0) != x.size(0)) {
    return bad("x has ", x.size(0), " rows but client has ", c.size(0));
  }
  const torch::Tensor ids = c.to(torch::kInt64).contiguous();
  const int64_t n = ids.size(0);
  const int64_t* id = ids.data_ptr<int64_t>();
  for (int64_t i = 0; i < n; ++i) {
    if (id[i] < 0) return bad("client ids must be >= 0; row ", i, " has ", id[i]);
  }

  data::NaturalDatasetParts parts;
  parts.source = path;
  parts.info.feature_shape.assign(x.sizes().begin() + 1, x.sizes().end());
  if (parts.info.feature_shape.empty()) parts.info.feature_shape = {1};
  const bool regression = y.is_floating_point();
  int64_t max_label = !regression && y.numel() > 0 ? y.max().item<int64_t>() : -1;
  if (tensors.count("test_x") > 0) {
    const torch::Tensor& tx = tensors["test_x"];
    const torch::Tensor& ty = tensors["test_y"];
    FEDKIT_RETURN_IF_ERROR(check("test_", tx, ty));
    if (!tx.sizes().slice(1).equals(x.sizes().slice(1))) {
      return bad("test_x rows have shape [", absl::StrJoin(tx.sizes().slice(1), ", "),
                 "] but x rows have [", absl::StrJoin(x.sizes().slice(1), ", "), "]");
    }
    if (!regression && ty.numel() > 0) max_label = std::max(max_label, ty.max().item<int64_t>());
    absl::StatusOr<data::Examples> test = ExamplesFromTensors(tx, ty);
    if (!test.ok()) return bad("test_x/test_y: ", test.status().message());
    parts.test = *std::move(test);
  }
  if (regression) {
    parts.info.num_classes = 0;
    parts.info.target_dim = y.dim() == 2 ? y.size(1) : 1;
  } else {
    parts.info.num_classes = static_cast<int>(max_label + 1);
  }
  absl::StatusOr<data::Examples> examples = ExamplesFromTensors(x, y);
  if (!examples.ok()) return bad("x/y: ", examples.status().message());
  parts.examples = *std::move(examples);
  parts.examples.feature_dim = parts.info.feature_dim();
  if (parts.test.has_value()) parts.test->feature_dim = parts.info.feature_dim();

  // Rows grouped by client id (ascending), in file order within a client.
  std::vector<int64_t> order(static_cast<size_t>(n));
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(),
                   [id](int64_t a, int64_t b) { return id[a] < id[b]; });
  for (size_t i = 0; i < order.size(); ++i) {
    if (i == 0 || id[order[i]] != id[order[i - 1]]) parts.client_rows.emplace_back();
    parts.client_rows.back().push_back(order[i]);
  }
  return parts;
}

}  // namespace

absl::StatusOr<data::NaturalDatasetParts> ReadTensorFile(const std::string& path) {
  absl::StatusOr<data::NaturalDatasetParts> parts =
      CallTorch([&]() { return ReadTensorFileOrThrow(path); });
  if (!parts.ok() && parts.status().code() == absl::StatusCode::kInternal) {
    return absl::InvalidArgumentError(
        absl::StrCat("tensor file ", path, ": ", parts.status().message()));
  }
  return parts;
}

absl::StatusOr<std::unique_ptr<data::FederatedDataset>> MakeFederatedDatasetWithTensors(
    const data::FederatedDatasetOptions& options) {
  if (options.dataset.kind != data::DatasetSpec::Kind::kTensors) {
    return data::MakeFederatedDataset(options);
  }
  if (options.partition.kind != data::PartitionSpec::Kind::kNatural) {
    return absl::InvalidArgumentError(
        "a tensor file has its own per-client split (its \"client\" ids); use --partition natural");
  }
  if (options.num_clients < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("num_clients must be >= 0 (0 = all), got ", options.num_clients));
  }
  FEDKIT_ASSIGN_OR_RETURN(data::NaturalDatasetParts parts, ReadTensorFile(options.dataset.path));
  return data::MakeNaturalDataset(std::move(parts), options.num_clients);
}

}  // namespace fedkit::models
