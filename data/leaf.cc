#include "data/leaf.h"

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "core/status_macros.h"
#include "nlohmann/json.hpp"

namespace fedkit::data {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

std::string ShapeText(const std::vector<int64_t>& shape) {
  return absl::StrCat("[", absl::StrJoin(shape, ", "), "]");
}

// Accumulates the examples of one or more LEAF files.
struct Accumulator {
  std::optional<std::vector<int64_t>> shape;  // of one row, shared by train and test
  int64_t max_label = -1;
};

struct Rows {
  Examples examples;
  std::vector<std::vector<int64_t>> client_rows;
  std::vector<std::string> client_users;         // the user of each client_rows entry
  std::map<std::string, std::string> user_file;  // user -> the file it came from
};

// The shape of a nested list, descending through first elements.
absl::StatusOr<std::vector<int64_t>> RowShape(const json& row) {
  std::vector<int64_t> shape;
  const json* node = &row;
  while (node->is_array()) {
    if (node->empty()) return absl::InvalidArgumentError("has an empty list");
    shape.push_back(static_cast<int64_t>(node->size()));
    node = &(*node)[0];
  }
  return shape;
}

// Appends the row's numbers in row-major order, checking it is a full array of `shape`.
absl::Status Flatten(const json& node, const std::vector<int64_t>& shape, size_t depth,
                     std::vector<float>* out) {
  if (depth == shape.size()) {
    if (!node.is_number()) {
      return absl::InvalidArgumentError(
          absl::StrCat("has a non-number value ", node.dump().substr(0, 40)));
    }
    out->push_back(node.get<float>());
    return absl::OkStatus();
  }
  if (!node.is_array() || static_cast<int64_t>(node.size()) != shape[depth]) {
    return absl::InvalidArgumentError(absl::StrCat(
        "is ragged: nested lists of different lengths (the row's shape from its first elements "
        "is ",
        ShapeText(shape), ")"));
  }
  for (const json& child : node) {
    FEDKIT_RETURN_IF_ERROR(Flatten(child, shape, depth + 1, out));
  }
  return absl::OkStatus();
}

absl::StatusOr<json> ParseFile(const std::string& file) {
  std::ifstream in(file, std::ios::binary);
  if (!in) {
    return absl::InvalidArgumentError(
        absl::StrCat("cannot read LEAF file ", file, ": ", std::strerror(errno)));
  }
  try {
    return json::parse(in);
  } catch (const json::exception& e) {
    return absl::InvalidArgumentError(
        absl::StrCat("LEAF file ", file, " is not valid JSON: ", e.what()));
  }
}

std::string UserName(const json& user) {
  return user.is_string() ? user.get<std::string>() : user.dump();
}

// Reads one LEAF file's users into `rows` (one client per user when `rows.client_rows` is used).
absl::Status ReadFile(const std::string& file, bool duplicate_users_allowed, Accumulator* acc,
                      Rows* rows) {
  FEDKIT_ASSIGN_OR_RETURN(json doc, ParseFile(file));
  auto bad = [&file](auto&&... parts) {
    return absl::InvalidArgumentError(absl::StrCat("LEAF file ", file, ": ", parts...));
  };
  if (!doc.is_object() || !doc.contains("users") || !doc["users"].is_array()) {
    return bad(
        "no \"users\" list (expected {\"users\": [...], \"num_samples\": [...], "
        "\"user_data\": {...}})");
  }
  if (!doc.contains("user_data") || !doc["user_data"].is_object()) {
    return bad("no \"user_data\" object");
  }
  const json& users = doc["users"];
  const json& user_data = doc["user_data"];
  const json* num_samples = nullptr;
  if (doc.contains("num_samples")) {
    num_samples = &doc["num_samples"];
    if (!num_samples->is_array() || num_samples->size() != users.size()) {
      return bad("\"users\" has ", users.size(), " entries but \"num_samples\" has ",
                 num_samples->is_array() ? num_samples->size() : 0);
    }
  }
  for (const json& user : users) {
    if (!user_data.contains(UserName(user))) {
      return bad("user \"", UserName(user), "\" is in \"users\" but not in \"user_data\"");
    }
  }
  if (user_data.size() != users.size()) {
    for (auto it = user_data.begin(); it != user_data.end(); ++it) {
      if (std::none_of(users.begin(), users.end(),
                       [&](const json& u) { return UserName(u) == it.key(); })) {
        return bad("\"user_data\" has user \"", it.key(), "\" that is not in \"users\"");
      }
    }
    return bad("\"users\" lists a user more than once");
  }

  for (size_t u = 0; u < users.size(); ++u) {
    const std::string name = UserName(users[u]);
    if (auto [it, inserted] = rows->user_file.emplace(name, file);
        !inserted && !duplicate_users_allowed) {
      return bad("user \"", name, "\" is also in ", it->second);
    }
    const json& data = user_data[name];
    if (!data.is_object() || !data.contains("x") || !data["x"].is_array() || !data.contains("y") ||
        !data["y"].is_array()) {
      return bad("user \"", name, "\" has no \"x\" and \"y\" lists");
    }
    const json& x = data["x"];
    const json& y = data["y"];
    if (x.size() != y.size()) {
      return bad("user \"", name, "\" has ", x.size(), " rows in x but ", y.size(), " labels in y");
    }
    if (num_samples != nullptr) {
      const json& n = (*num_samples)[u];
      if (!n.is_number_integer() || n.get<int64_t>() != static_cast<int64_t>(x.size())) {
        return bad("user \"", name, "\": num_samples says ", n.dump(), " but x has ", x.size(),
                   " rows");
      }
    }
    std::vector<int64_t> client;
    client.reserve(x.size());
    for (size_t i = 0; i < x.size(); ++i) {
      auto where = [&]() { return absl::StrCat("user \"", name, "\", x[", i, "] "); };
      absl::StatusOr<std::vector<int64_t>> shape = RowShape(x[i]);
      if (!shape.ok()) return bad(where(), shape.status().message());
      if (shape->empty()) shape->push_back(1);  // a scalar feature
      if (!acc->shape.has_value()) acc->shape = *shape;
      if (*shape != *acc->shape && !(x[i].is_number() && *acc->shape == std::vector<int64_t>{1})) {
        return bad(where(), "has shape ", ShapeText(*shape), " but earlier rows have ",
                   ShapeText(*acc->shape), " (every row must have the same shape)");
      }
      const std::vector<int64_t> nested = x[i].is_array() ? *acc->shape : std::vector<int64_t>{};
      if (absl::Status s = Flatten(x[i], nested, 0, &rows->examples.features); !s.ok()) {
        return bad(where(), s.message());
      }
      const json& label = y[i];
      if (label.is_number_float()) {
        return bad("user \"", name, "\", y[", i, "] = ", label.dump(),
                   " is not an integer class label: regression targets are not supported by this "
                   "reader yet");
      }
      if (!label.is_number_integer()) {
        return bad("user \"", name, "\", y[", i, "] = ", label.dump().substr(0, 40),
                   " is not an integer class label");
      }
      if (label.is_number_unsigned() && label.get<uint64_t>() > INT32_MAX) {
        return bad("user \"", name, "\", y[", i, "] = ", label.dump(), " is too large a label");
      }
      const int64_t value = label.get<int64_t>();
      if (value < 0) {
        return bad("user \"", name, "\", y[", i, "] = ", value,
                   " is negative (labels are class indices 0, 1, ...)");
      }
      acc->max_label = std::max(acc->max_label, value);
      client.push_back(rows->examples.size());
      rows->examples.labels.push_back(value);
    }
    rows->client_rows.push_back(std::move(client));
    rows->client_users.push_back(name);
  }
  return absl::OkStatus();
}

// The .json files of a directory in name order, or the path itself if it is a file.
absl::StatusOr<std::vector<std::string>> JsonFiles(const fs::path& path) {
  std::error_code ec;
  if (fs::is_regular_file(path, ec)) return std::vector<std::string>{path.string()};
  if (!fs::is_directory(path, ec)) {
    return absl::InvalidArgumentError(
        absl::StrCat("LEAF data ", path.string(), ": no such file or directory"));
  }
  std::vector<std::string> files;
  for (const fs::directory_entry& entry : fs::directory_iterator(path, ec)) {
    if (entry.is_regular_file(ec) && entry.path().extension() == ".json") {
      files.push_back(entry.path().string());
    }
  }
  if (ec) {
    return absl::InvalidArgumentError(
        absl::StrCat("cannot list LEAF directory ", path.string(), ": ", ec.message()));
  }
  if (files.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("LEAF directory ", path.string(), " has no .json files"));
  }
  std::sort(files.begin(), files.end());
  return files;
}

}  // namespace

absl::StatusOr<NaturalDatasetParts> ReadLeaf(const std::string& path) {
  const fs::path root(path);
  std::error_code ec;
  const bool split = fs::is_directory(root / "train", ec) && fs::is_directory(root / "test", ec);
  Accumulator acc;
  Rows train;
  FEDKIT_ASSIGN_OR_RETURN(std::vector<std::string> train_files,
                          JsonFiles(split ? root / "train" : root));
  for (const std::string& file : train_files) {
    FEDKIT_RETURN_IF_ERROR(ReadFile(file, /*duplicate_users_allowed=*/false, &acc, &train));
  }
  NaturalDatasetParts parts;
  parts.source = path;
  if (split) {
    Rows test;
    FEDKIT_ASSIGN_OR_RETURN(std::vector<std::string> test_files, JsonFiles(root / "test"));
    for (const std::string& file : test_files) {
      FEDKIT_RETURN_IF_ERROR(ReadFile(file, /*duplicate_users_allowed=*/true, &acc, &test));
    }
    parts.test = std::move(test.examples);
    // Each training user's own test rows (a user may appear in several test files).
    std::map<std::string, std::vector<int64_t>> test_rows_of;
    for (size_t c = 0; c < test.client_rows.size(); ++c) {
      std::vector<int64_t>& rows = test_rows_of[test.client_users[c]];
      rows.insert(rows.end(), test.client_rows[c].begin(), test.client_rows[c].end());
    }
    for (const std::string& user : train.client_users) {
      auto it = test_rows_of.find(user);
      parts.test_client_rows.push_back(it == test_rows_of.end() ? std::vector<int64_t>{}
                                                                : std::move(it->second));
    }
  }
  if (!acc.shape.has_value()) {
    return absl::InvalidArgumentError(absl::StrCat("LEAF data ", path, " has no examples"));
  }
  parts.info.feature_shape = *acc.shape;
  parts.info.num_classes = static_cast<int>(acc.max_label + 1);
  const int64_t dim = parts.info.feature_dim();
  parts.examples = std::move(train.examples);
  parts.examples.feature_dim = dim;
  if (parts.test.has_value()) parts.test->feature_dim = dim;
  parts.client_rows = std::move(train.client_rows);
  return parts;
}

}  // namespace fedkit::data
