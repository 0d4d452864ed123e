// DeviceTelemetryDistribution: a round's device telemetry (fedkit.v1.DeviceTelemetry, sent with
// each upload by client/round_telemetry.h) kept as distributions only. It stores the values of
// each field and nothing that names a device: no client id, no assignment, no arrival order, and
// the values of one report are not kept together (each field's values are kept sorted on their
// own), so the summary says how the fleet did, not how one device did. With very few reports a
// percentile is still one device's value: the operator sees the count next to it.
//
// The percentiles are nearest-rank over the exact values (a round holds at most a few thousand
// reports). Written by hand: no Debian-packaged C++ library computes exact percentiles of a small
// vector (prometheus-cpp's Summary estimates streaming quantiles over a time window instead).
//
// Thread safety: not thread-safe; the round coordinator calls it under its lock.
#ifndef FEDKIT_SERVER_DEVICE_TELEMETRY_H_
#define FEDKIT_SERVER_DEVICE_TELEMETRY_H_

#include <array>
#include <cstdint>
#include <vector>

#include "absl/status/status.h"
#include "absl/types/span.h"
#include "fedkit/v1/coordinator.pb.h"

namespace fedkit::server {

// Upper bounds on plausible values; a report beyond one is invalid (a broken clock or counter, or
// a device lying), not a fast device.
inline constexpr double kMaxTelemetrySeconds = 7 * 24 * 3600.0;  // a week
inline constexpr double kMaxExamplesPerSecond = 1e9;
inline constexpr int64_t kMaxTelemetryBytes = int64_t{1} << 44;  // 16 TiB
inline constexpr double kMaxEnergyJoules = 1e9;                  // ~280 kWh

// OK when every field that is set is finite, not negative and within the bounds above;
// INVALID_ARGUMENT naming the first field that is not.
absl::Status ValidateDeviceTelemetry(const v1::DeviceTelemetry& telemetry);

// The nearest-rank percentile q (0 < q <= 1) of `sorted` (ascending): the smallest value with at
// least q of the values at or below it. 0 for no values.
double NearestRankPercentile(absl::Span<const double> sorted, double q);

class DeviceTelemetryDistribution {
 public:
  // Adds one report's fields, or (invalid: ValidateDeviceTelemetry fails) only counts it as
  // invalid. Returns whether it was valid.
  bool Add(const v1::DeviceTelemetry& telemetry);

  // reports, invalid_reports, and per field its count, p50 and p90 (fields no valid report set
  // are left unset). Does not change the distribution.
  v1::DeviceTelemetrySummary Summary() const;

  int64_t reports() const { return reports_; }
  int64_t invalid_reports() const { return invalid_reports_; }
  bool empty() const { return reports_ == 0 && invalid_reports_ == 0; }
  void Clear();

 private:
  enum Field {
    kTrainingSeconds,
    kExamplesPerSecond,
    kPeakMemoryBytes,
    kModelLoadSeconds,
    kUploadBytes,
    kDownloadBytes,
    kCpuSeconds,
    kEnergyJoules,
    kFieldCount
  };
  std::array<std::vector<double>, kFieldCount> values_;  // each sorted ascending
  int64_t reports_ = 0;
  int64_t invalid_reports_ = 0;
};

}  // namespace fedkit::server

#endif  // FEDKIT_SERVER_DEVICE_TELEMETRY_H_
