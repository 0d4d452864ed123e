#include "server/device_telemetry.h"

#include <algorithm>
#include <cmath>
#include <string>

#include "absl/strings/str_cat.h"

namespace fedkit::server {
namespace {

absl::Status CheckValue(absl::string_view field, double value, double max) {
  if (!std::isfinite(value) || value < 0 || value > max) {
    return absl::InvalidArgumentError(
        absl::StrCat("telemetry field ", field, " is ", value, ", outside [0, ", max, "]"));
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status ValidateDeviceTelemetry(const v1::DeviceTelemetry& t) {
  const double max_bytes = static_cast<double>(kMaxTelemetryBytes);
  struct Check {
    bool set;
    const char* name;
    double value;
    double max;
  };
  const Check checks[] = {
      {t.has_training_seconds(), "training_seconds", t.training_seconds(), kMaxTelemetrySeconds},
      {t.has_examples_per_second(), "examples_per_second", t.examples_per_second(),
       kMaxExamplesPerSecond},
      {t.has_peak_memory_bytes(), "peak_memory_bytes", static_cast<double>(t.peak_memory_bytes()),
       max_bytes},
      {t.has_model_load_seconds(), "model_load_seconds", t.model_load_seconds(),
       kMaxTelemetrySeconds},
      {t.has_upload_bytes(), "upload_bytes", static_cast<double>(t.upload_bytes()), max_bytes},
      {t.has_download_bytes(), "download_bytes", static_cast<double>(t.download_bytes()),
       max_bytes},
      {t.has_cpu_seconds(), "cpu_seconds", t.cpu_seconds(), kMaxTelemetrySeconds},
      {t.has_energy_joules(), "energy_joules", t.energy_joules(), kMaxEnergyJoules},
  };
  for (const Check& c : checks) {
    if (c.set) {
      if (absl::Status s = CheckValue(c.name, c.value, c.max); !s.ok()) return s;
    }
  }
  return absl::OkStatus();
}

double NearestRankPercentile(absl::Span<const double> sorted, double q) {
  if (sorted.empty()) return 0;
  // Rank ceil(q n), 1-based, clamped to [1, n].
  const double n = static_cast<double>(sorted.size());
  size_t rank = static_cast<size_t>(std::ceil(q * n));
  rank = std::clamp<size_t>(rank, 1, sorted.size());
  return sorted[rank - 1];
}

namespace {

// Keeps `values` sorted, so that neither arrival order nor position ties a value to a report.
void InsertSorted(std::vector<double>& values, double value) {
  values.insert(std::upper_bound(values.begin(), values.end(), value), value);
}

}  // namespace

bool DeviceTelemetryDistribution::Add(const v1::DeviceTelemetry& t) {
  if (!ValidateDeviceTelemetry(t).ok()) {
    ++invalid_reports_;
    return false;
  }
  ++reports_;
  if (t.has_training_seconds()) InsertSorted(values_[kTrainingSeconds], t.training_seconds());
  if (t.has_examples_per_second())
    InsertSorted(values_[kExamplesPerSecond], t.examples_per_second());
  if (t.has_peak_memory_bytes()) {
    InsertSorted(values_[kPeakMemoryBytes], static_cast<double>(t.peak_memory_bytes()));
  }
  if (t.has_model_load_seconds()) InsertSorted(values_[kModelLoadSeconds], t.model_load_seconds());
  if (t.has_upload_bytes())
    InsertSorted(values_[kUploadBytes], static_cast<double>(t.upload_bytes()));
  if (t.has_download_bytes()) {
    InsertSorted(values_[kDownloadBytes], static_cast<double>(t.download_bytes()));
  }
  if (t.has_cpu_seconds()) InsertSorted(values_[kCpuSeconds], t.cpu_seconds());
  if (t.has_energy_joules()) InsertSorted(values_[kEnergyJoules], t.energy_joules());
  return true;
}

v1::DeviceTelemetrySummary DeviceTelemetryDistribution::Summary() const {
  v1::DeviceTelemetrySummary s;
  s.set_reports(reports_);
  s.set_invalid_reports(invalid_reports_);
  v1::TelemetryQuantiles* fields[kFieldCount] = {
      s.mutable_training_seconds(),  s.mutable_examples_per_second(),
      s.mutable_peak_memory_bytes(), s.mutable_model_load_seconds(),
      s.mutable_upload_bytes(),      s.mutable_download_bytes(),
      s.mutable_cpu_seconds(),       s.mutable_energy_joules()};
  for (int f = 0; f < kFieldCount; ++f) {
    const std::vector<double>& sorted = values_[f];
    fields[f]->set_count(static_cast<int64_t>(sorted.size()));
    fields[f]->set_p50(NearestRankPercentile(sorted, 0.5));
    fields[f]->set_p90(NearestRankPercentile(sorted, 0.9));
  }
  // A field no report carried stays absent rather than reading as a zero.
  if (values_[kTrainingSeconds].empty()) s.clear_training_seconds();
  if (values_[kExamplesPerSecond].empty()) s.clear_examples_per_second();
  if (values_[kPeakMemoryBytes].empty()) s.clear_peak_memory_bytes();
  if (values_[kModelLoadSeconds].empty()) s.clear_model_load_seconds();
  if (values_[kUploadBytes].empty()) s.clear_upload_bytes();
  if (values_[kDownloadBytes].empty()) s.clear_download_bytes();
  if (values_[kCpuSeconds].empty()) s.clear_cpu_seconds();
  if (values_[kEnergyJoules].empty()) s.clear_energy_joules();
  return s;
}

void DeviceTelemetryDistribution::Clear() {
  for (std::vector<double>& v : values_) v.clear();
  reports_ = 0;
  invalid_reports_ = 0;
}

}  // namespace fedkit::server
