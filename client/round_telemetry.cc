#include "client/round_telemetry.h"

#include <time.h>

#include <chrono>
#include <fstream>
#include <sstream>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace fedkit::client {
namespace {

// The whole (small) file, or nullopt when it cannot be read.
std::optional<std::string> ReadSmallFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in.is_open()) return std::nullopt;
  std::stringstream contents;
  contents << in.rdbuf();
  if (in.bad()) return std::nullopt;
  return std::move(contents).str();
}

std::optional<uint64_t> ReadCounter(const std::string& path) {
  std::optional<std::string> text = ReadSmallFile(path);
  uint64_t value = 0;
  if (!text.has_value() || !absl::SimpleAtoi(absl::StripAsciiWhitespace(*text), &value)) {
    return std::nullopt;
  }
  return value;
}

}  // namespace

std::optional<int64_t> ParseVmHwmBytes(absl::string_view proc_status) {
  for (absl::string_view line : absl::StrSplit(proc_status, '\n')) {
    if (!absl::ConsumePrefix(&line, "VmHWM:")) continue;
    line = absl::StripAsciiWhitespace(line);
    if (!absl::ConsumeSuffix(&line, "kB")) return std::nullopt;  // the kernel always says kB
    int64_t kib = 0;
    if (!absl::SimpleAtoi(absl::StripAsciiWhitespace(line), &kib) || kib < 0 ||
        kib > (int64_t{1} << 40)) {
      return std::nullopt;
    }
    return kib * 1024;
  }
  return std::nullopt;
}

LinuxDeviceProbe::LinuxDeviceProbe(LinuxProbePaths paths) : paths_(std::move(paths)) {}

double LinuxDeviceProbe::MonotonicSeconds() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

std::optional<double> LinuxDeviceProbe::ProcessCpuSeconds() {
  timespec ts{};
  if (clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts) != 0) return std::nullopt;
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}

std::optional<int64_t> LinuxDeviceProbe::PeakResidentBytes() {
  std::optional<std::string> status = ReadSmallFile(paths_.proc_status);
  if (!status.has_value()) return std::nullopt;
  return ParseVmHwmBytes(*status);
}

std::optional<EnergyReading> LinuxDeviceProbe::Energy() {
  std::optional<uint64_t> energy = ReadCounter(paths_.rapl_zone + "/energy_uj");
  if (!energy.has_value()) return std::nullopt;
  return EnergyReading{.energy_uj = *energy,
                       .max_range_uj = ReadCounter(paths_.rapl_zone + "/max_energy_range_uj")};
}

RoundTelemetry::RoundTelemetry(DeviceProbe* probe,
                               std::optional<ChannelTraffic> traffic_at_check_in)
    : probe_(probe),
      traffic_at_check_in_(traffic_at_check_in),
      assigned_at_(probe->MonotonicSeconds()) {}

void RoundTelemetry::ModelReady() {
  model_load_seconds_ = probe_->MonotonicSeconds() - assigned_at_;
}

void RoundTelemetry::TrainingStarted() {
  energy_at_start_ = probe_->Energy();
  cpu_at_start_ = probe_->ProcessCpuSeconds();
  training_started_at_ = probe_->MonotonicSeconds();
}

void RoundTelemetry::TrainingFinished(int64_t examples_processed) {
  training_seconds_ = probe_->MonotonicSeconds() - training_started_at_;
  examples_processed_ = examples_processed;
  const std::optional<double> cpu = probe_->ProcessCpuSeconds();
  if (cpu.has_value() && cpu_at_start_.has_value()) cpu_seconds_ = *cpu - *cpu_at_start_;
  const std::optional<EnergyReading> energy = probe_->Energy();
  if (energy.has_value() && energy_at_start_.has_value()) {
    uint64_t used_uj = 0;
    if (energy->energy_uj >= energy_at_start_->energy_uj) {
      used_uj = energy->energy_uj - energy_at_start_->energy_uj;
    } else if (energy->max_range_uj.has_value() &&
               *energy->max_range_uj >= energy_at_start_->energy_uj) {
      // The counter wrapped once (it wraps within minutes only on a busy many-core package).
      used_uj = *energy->max_range_uj - energy_at_start_->energy_uj + energy->energy_uj;
    } else {
      used_uj = UINT64_MAX;  // went backwards without a known range: not a measurement
    }
    if (used_uj != UINT64_MAX) energy_joules_ = static_cast<double>(used_uj) * 1e-6;
  }
  peak_memory_bytes_ = probe_->PeakResidentBytes();
}

v1::DeviceTelemetry RoundTelemetry::Report(std::optional<ChannelTraffic> traffic_now,
                                           int64_t upload_message_bytes) const {
  v1::DeviceTelemetry t;
  if (model_load_seconds_.has_value()) t.set_model_load_seconds(*model_load_seconds_);
  if (training_seconds_.has_value()) {
    t.set_training_seconds(*training_seconds_);
    if (*training_seconds_ > 0) {
      t.set_examples_per_second(static_cast<double>(examples_processed_) / *training_seconds_);
    }
  }
  if (cpu_seconds_.has_value()) t.set_cpu_seconds(*cpu_seconds_);
  if (energy_joules_.has_value()) t.set_energy_joules(*energy_joules_);
  if (peak_memory_bytes_.has_value()) t.set_peak_memory_bytes(*peak_memory_bytes_);
  if (traffic_now.has_value() && traffic_at_check_in_.has_value()) {
    t.set_upload_bytes(traffic_now->bytes_sent - traffic_at_check_in_->bytes_sent +
                       upload_message_bytes);
    t.set_download_bytes(traffic_now->bytes_received - traffic_at_check_in_->bytes_received);
  }
  return t;
}

}  // namespace fedkit::client
