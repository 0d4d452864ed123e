// The device binary's flags for what a device can do (fedkit-client --max-model-mb, --memory-mb),
// parsed into FederatedClientOptions, so that the conversion is tested without the binary.
#ifndef FEDKIT_CLIENT_DEVICE_FLAGS_H_
#define FEDKIT_CLIENT_DEVICE_FLAGS_H_

#include "absl/status/status.h"
#include "client/federated_client.h"

namespace fedkit::client {

// The flags' values as given; 0 = unknown / unlimited. Megabytes of 2^20 bytes, fractions allowed
// (a microcontroller's 0.5).
struct DeviceLimitFlags {
  double max_model_mb = 0;
  double memory_mb = 0;
};

// Sets options->max_model_bytes and options->memory_bytes (rounded down to whole bytes).
// INVALID_ARGUMENT naming the flag ("--max-model-mb: ...") for a negative, non-finite or
// too-large value (over 2^42 MB); `options` is then unchanged.
absl::Status ApplyDeviceLimitFlags(const DeviceLimitFlags& flags, FederatedClientOptions* options);

}  // namespace fedkit::client

#endif  // FEDKIT_CLIENT_DEVICE_FLAGS_H_
