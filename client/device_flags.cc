#include "client/device_flags.h"

#include <cmath>
#include <cstdint>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"

namespace fedkit::client {
namespace {

absl::StatusOr<int64_t> MegabytesToBytes(double mb, absl::string_view flag) {
  // 2^42 MB = 2^62 bytes: below int64's limit, far above any device.
  constexpr double kMaxMb = 4398046511104.0;
  if (!std::isfinite(mb) || mb < 0 || mb > kMaxMb) {
    return absl::InvalidArgumentError(
        absl::StrCat(flag, ": ", mb, " is not a size in MB (0 = unlimited, up to 2^42)"));
  }
  return static_cast<int64_t>(std::floor(mb * 1048576.0));
}

}  // namespace

absl::Status ApplyDeviceLimitFlags(const DeviceLimitFlags& flags, FederatedClientOptions* options) {
  absl::StatusOr<int64_t> max_model = MegabytesToBytes(flags.max_model_mb, "--max-model-mb");
  if (!max_model.ok()) return max_model.status();
  absl::StatusOr<int64_t> memory = MegabytesToBytes(flags.memory_mb, "--memory-mb");
  if (!memory.ok()) return memory.status();
  options->max_model_bytes = *max_model;
  options->memory_bytes = *memory;
  return absl::OkStatus();
}

}  // namespace fedkit::client
