// RoundTelemetry: measures how one round went on the device (fedkit.v1.DeviceTelemetry, sent in
// the upload's header): training time and throughput, the process's peak memory, model load
// time, the round's bytes, CPU time and, where the platform exposes it, energy. The operating
// system is read through DeviceProbe, so tests inject their own readings; LinuxDeviceProbe reads
// /proc and RAPL.
//
// What each number is, honestly (the library runs inside an app's process):
//   training_seconds     steady-clock wall time of local training;
//   examples_per_second  examples x epochs / training_seconds;
//   peak_memory_bytes    VmHWM of /proc/self/status after training: the peak resident set of the
//                        whole process since it started (the app's memory and earlier rounds
//                        included), not the round's own peak; the kernel offers no per-round peak
//                        short of resetting the process's counter (clear_refs), which a library
//                        must not do to its host;
//   model_load_seconds   assignment received to model ready to train: artifact download and
//                        verification, model download, and the checks of its shape;
//   upload_bytes,        the channel's ChannelTraffic (serialized protobuf message sizes; no gRPC,
//   download_bytes       HTTP/2 or TLS framing) from the check-in that brought the assignment up
//                        to the upload, plus the upload's own header and payload (see Report);
//   cpu_seconds          CLOCK_PROCESS_CPUTIME_ID (user + system) during training: the whole
//                        process, because LibTorch trains on its intra-op threads too; anything
//                        else the app runs meanwhile is included;
//   energy_joules        RAPL package-0 energy counter during training (intel-rapl:0): the whole
//                        CPU package, every process on it. Unset where there is no RAPL zone or it
//                        is unreadable (Linux 5.10+ makes energy_uj root-only), never an error.
// A reading the probe cannot make leaves its field unset.
//
// Thread safety: a RoundTelemetry is used by one thread (the device loop's). The probe must
// outlive it; LinuxDeviceProbe may be shared by threads (it keeps no state).
#ifndef FEDKIT_CLIENT_ROUND_TELEMETRY_H_
#define FEDKIT_CLIENT_ROUND_TELEMETRY_H_

#include <cstdint>
#include <optional>
#include <string>

#include "absl/strings/string_view.h"
#include "client/coordinator_channel.h"
#include "fedkit/v1/coordinator.pb.h"

namespace fedkit::client {

// A RAPL energy counter reading: it wraps to 0 after max_range_uj.
struct EnergyReading {
  uint64_t energy_uj = 0;
  std::optional<uint64_t> max_range_uj;
};

// The operating system's readings RoundTelemetry needs. Each returns nullopt when it cannot read
// (never an error: telemetry is best effort).
class DeviceProbe {
 public:
  virtual ~DeviceProbe() = default;
  // A monotonic clock, in seconds from an arbitrary origin.
  virtual double MonotonicSeconds() = 0;
  // User + system CPU time of the whole process.
  virtual std::optional<double> ProcessCpuSeconds() = 0;
  // The process's peak resident set size so far (VmHWM), in bytes.
  virtual std::optional<int64_t> PeakResidentBytes() = 0;
  // The CPU package's energy counter.
  virtual std::optional<EnergyReading> Energy() = 0;
};

// Where LinuxDeviceProbe reads (tests point these at files of their own).
struct LinuxProbePaths {
  std::string proc_status = "/proc/self/status";
  std::string rapl_zone = "/sys/class/powercap/intel-rapl:0";  // energy_uj, max_energy_range_uj
};

// Linux: steady clock, clock_gettime(CLOCK_PROCESS_CPUTIME_ID), VmHWM from proc_status, RAPL from
// rapl_zone. Files that are missing, unreadable or malformed give nullopt.
class LinuxDeviceProbe final : public DeviceProbe {
 public:
  explicit LinuxDeviceProbe(LinuxProbePaths paths = {});
  double MonotonicSeconds() override;
  std::optional<double> ProcessCpuSeconds() override;
  std::optional<int64_t> PeakResidentBytes() override;
  std::optional<EnergyReading> Energy() override;

 private:
  const LinuxProbePaths paths_;
};

// VmHWM from the text of /proc/PID/status ("VmHWM:    123456 kB"), in bytes; nullopt when the
// line is missing or malformed.
std::optional<int64_t> ParseVmHwmBytes(absl::string_view proc_status);

class RoundTelemetry {
 public:
  // `probe` is not owned. `traffic_at_check_in` is the channel's traffic before the check-in that
  // brought the assignment (nullopt: the channel does not count bytes). Starts the model load
  // clock.
  RoundTelemetry(DeviceProbe* probe, std::optional<ChannelTraffic> traffic_at_check_in);

  // The model is ready to train (downloaded and checked): stops the model load clock.
  void ModelReady();
  // Around local training on the calling thread.
  void TrainingStarted();
  // `examples_processed`: examples x epochs trained on.
  void TrainingFinished(int64_t examples_processed);

  // The report for the upload header. `traffic_now` is the channel's traffic before the upload,
  // and `upload_message_bytes` what the upload itself will send (its header, which this report
  // then makes a little longer, and payload): added to bytes sent. Fields not measured (a phase
  // not reached, a probe reading missing, a channel that does not count) are unset.
  v1::DeviceTelemetry Report(std::optional<ChannelTraffic> traffic_now,
                             int64_t upload_message_bytes) const;

 private:
  DeviceProbe* const probe_;
  const std::optional<ChannelTraffic> traffic_at_check_in_;
  const double assigned_at_;
  std::optional<double> model_load_seconds_;
  double training_started_at_ = 0;
  std::optional<double> cpu_at_start_;
  std::optional<EnergyReading> energy_at_start_;
  std::optional<double> training_seconds_;
  int64_t examples_processed_ = 0;
  std::optional<double> cpu_seconds_;
  std::optional<double> energy_joules_;
  std::optional<int64_t> peak_memory_bytes_;
};

}  // namespace fedkit::client

#endif  // FEDKIT_CLIENT_ROUND_TELEMETRY_H_
