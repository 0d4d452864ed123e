#include "simulation/control_variates.h"

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace fedkit::simulation {
namespace {

namespace fs = std::filesystem;

absl::Status CheckDimension(int64_t dimension) {
  if (dimension < 1) {
    return absl::InvalidArgumentError(absl::StrCat("dimension must be >= 1, got ", dimension));
  }
  return absl::OkStatus();
}

absl::Status IoError(absl::string_view action, const std::string& path) {
  return absl::InternalError(
      absl::StrCat("cannot ", action, " ", path, ": ", std::strerror(errno)));
}

}  // namespace

absl::StatusOr<std::unique_ptr<ControlVariateStore>> ControlVariateStore::InMemory(
    int64_t dimension) {
  if (absl::Status valid = CheckDimension(dimension); !valid.ok()) return valid;
  return std::unique_ptr<ControlVariateStore>(new ControlVariateStore("", dimension));
}

absl::StatusOr<std::unique_ptr<ControlVariateStore>> ControlVariateStore::OnDisk(
    const std::string& directory, int64_t dimension) {
  if (absl::Status valid = CheckDimension(dimension); !valid.ok()) return valid;
  if (directory.empty()) return absl::InvalidArgumentError("the directory is empty");
  std::error_code error;
  fs::create_directories(directory, error);
  if (error || !fs::is_directory(directory, error)) {
    return absl::InternalError(absl::StrCat("cannot create directory ", directory, ": ",
                                            error ? error.message() : "not a directory"));
  }
  fs::directory_iterator entries(directory, error);
  if (error) {
    return absl::InternalError(absl::StrCat("cannot list ", directory, ": ", error.message()));
  }
  if (entries != fs::directory_iterator()) {
    return absl::FailedPreconditionError(
        absl::StrCat(directory,
                     " is not empty: control variates start at 0 in an empty "
                     "directory (remove a previous run's files first)"));
  }
  return std::unique_ptr<ControlVariateStore>(new ControlVariateStore(directory, dimension));
}

std::string ControlVariateStore::PathOf(int64_t client) const {
  return absl::StrFormat("%s/client-%d.f32", directory_, client);
}

absl::StatusOr<std::vector<float>> ControlVariateStore::Get(int64_t client) const {
  absl::MutexLock lock(&mutex_);
  return GetLocked(client);
}

absl::StatusOr<std::vector<float>> ControlVariateStore::GetLocked(int64_t client) const {
  if (client < 0) return absl::InvalidArgumentError(absl::StrCat("client ", client, " < 0"));
  if (!on_disk()) {
    auto it = in_memory_.find(client);
    if (it == in_memory_.end()) return std::vector<float>(dimension_, 0.0f);
    return it->second;
  }
  const std::string path = PathOf(client);
  FILE* file = std::fopen(path.c_str(), "rb");
  if (file == nullptr) {
    if (errno == ENOENT) return std::vector<float>(dimension_, 0.0f);
    return IoError("open", path);
  }
  std::vector<float> values(dimension_);
  const size_t read = std::fread(values.data(), sizeof(float), values.size(), file);
  const bool more = read == values.size() && std::fgetc(file) != EOF;
  const bool failed = std::ferror(file) != 0;
  std::fclose(file);
  if (failed) return IoError("read", path);
  if (read != values.size() || more) {
    return absl::DataLossError(
        absl::StrCat(path, " does not hold ", dimension_, " float32 values"));
  }
  return values;
}

absl::Status ControlVariateStore::Add(int64_t client, absl::Span<const float> delta) {
  if (static_cast<int64_t>(delta.size()) != dimension_) {
    return absl::InvalidArgumentError(absl::StrCat("control variate change has ", delta.size(),
                                                   " values, expected ", dimension_));
  }
  absl::MutexLock lock(&mutex_);
  absl::StatusOr<std::vector<float>> values = GetLocked(client);
  if (!values.ok()) return values.status();
  for (size_t j = 0; j < delta.size(); ++j) (*values)[j] += delta[j];
  if (!on_disk()) {
    in_memory_[client] = *std::move(values);
    return absl::OkStatus();
  }
  const std::string path = PathOf(client);
  std::error_code exists_error;
  const bool existed = fs::exists(path, exists_error);
  const std::string temporary = path + ".tmp";
  FILE* file = std::fopen(temporary.c_str(), "wb");
  if (file == nullptr) return IoError("create", temporary);
  const size_t written = std::fwrite(values->data(), sizeof(float), values->size(), file);
  const bool closed = std::fclose(file) == 0;
  if (written != values->size() || !closed) {
    std::remove(temporary.c_str());
    return IoError("write", temporary);
  }
  if (std::rename(temporary.c_str(), path.c_str()) != 0) {
    std::remove(temporary.c_str());
    return IoError("rename to", path);
  }
  if (!existed) ++files_;
  return absl::OkStatus();
}

int64_t ControlVariateStore::clients_stored() const {
  absl::MutexLock lock(&mutex_);
  return on_disk() ? files_ : static_cast<int64_t>(in_memory_.size());
}

int64_t ControlVariateStore::bytes_in_memory() const {
  absl::MutexLock lock(&mutex_);
  return static_cast<int64_t>(in_memory_.size()) * dimension_ * static_cast<int64_t>(sizeof(float));
}

}  // namespace fedkit::simulation
