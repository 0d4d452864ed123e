#include "client/round_telemetry.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <optional>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace fedkit::client {
namespace {

namespace fs = std::filesystem;

// Readings scripted by the test: each call takes the next value of its queue (the last repeats).
class ScriptedProbe final : public DeviceProbe {
 public:
  std::vector<double> clock;
  std::vector<std::optional<double>> cpu;
  std::optional<int64_t> peak;
  std::vector<std::optional<EnergyReading>> energy;

  double MonotonicSeconds() override { return Next(clock, clock_calls_); }
  std::optional<double> ProcessCpuSeconds() override { return Next(cpu, cpu_calls_); }
  std::optional<int64_t> PeakResidentBytes() override { return peak; }
  std::optional<EnergyReading> Energy() override { return Next(energy, energy_calls_); }

 private:
  template <typename T>
  static T Next(const std::vector<T>& values, size_t& calls) {
    if (values.empty()) return T();
    const size_t i = std::min(calls++, values.size() - 1);
    return values[i];
  }
  size_t clock_calls_ = 0;
  size_t cpu_calls_ = 0;
  size_t energy_calls_ = 0;
};

fs::path FreshDir(const std::string& name) {
  fs::path dir = fs::path(::testing::TempDir()) / ("fedkit_round_telemetry_" + name);
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir;
}

void Write(const fs::path& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary);
  out << text;
}

TEST(RoundTelemetryTest, MeasuresEachPhaseFromTheProbe) {
  ScriptedProbe probe;
  // Assignment at 100 s, model ready at 100.5 s, training from 101 s to 105 s.
  probe.clock = {100.0, 100.5, 101.0, 105.0};
  probe.cpu = {10.0, 17.5};  // 7.5 s of process CPU over 4 s: LibTorch's threads
  probe.peak = 300 << 20;
  probe.energy = {EnergyReading{.energy_uj = 1'000'000}, EnergyReading{.energy_uj = 21'000'000}};
  RoundTelemetry telemetry(&probe, ChannelTraffic{.bytes_sent = 50, .bytes_received = 70});
  telemetry.ModelReady();
  telemetry.TrainingStarted();
  telemetry.TrainingFinished(2000);  // 1000 examples x 2 epochs
  const v1::DeviceTelemetry t =
      telemetry.Report(ChannelTraffic{.bytes_sent = 150, .bytes_received = 4070}, 1000);
  EXPECT_DOUBLE_EQ(t.model_load_seconds(), 0.5);
  EXPECT_DOUBLE_EQ(t.training_seconds(), 4.0);
  EXPECT_DOUBLE_EQ(t.examples_per_second(), 500.0);
  EXPECT_DOUBLE_EQ(t.cpu_seconds(), 7.5);
  EXPECT_DOUBLE_EQ(t.energy_joules(), 20.0);
  EXPECT_EQ(t.peak_memory_bytes(), int64_t{300} << 20);
  EXPECT_EQ(t.upload_bytes(), 100 + 1000);  // sent since the check-in, plus the upload itself
  EXPECT_EQ(t.download_bytes(), 4000);
}

TEST(RoundTelemetryTest, WhatCannotBeReadIsLeftUnset) {
  ScriptedProbe probe;  // no CPU clock, no VmHWM, no RAPL
  probe.clock = {0.0, 1.0, 2.0, 2.0};
  RoundTelemetry telemetry(&probe, std::nullopt);  // a channel that does not count bytes
  telemetry.ModelReady();
  telemetry.TrainingStarted();
  telemetry.TrainingFinished(10);
  const v1::DeviceTelemetry t = telemetry.Report(std::nullopt, 500);
  EXPECT_TRUE(t.has_model_load_seconds());
  EXPECT_TRUE(t.has_training_seconds());
  EXPECT_FALSE(t.has_examples_per_second());  // zero seconds: no rate rather than infinity
  EXPECT_FALSE(t.has_cpu_seconds());
  EXPECT_FALSE(t.has_energy_joules());
  EXPECT_FALSE(t.has_peak_memory_bytes());
  EXPECT_FALSE(t.has_upload_bytes());
  EXPECT_FALSE(t.has_download_bytes());
}

TEST(RoundTelemetryTest, NotTrainedYetReportsOnlyTheModelLoad) {
  ScriptedProbe probe;
  probe.clock = {3.0, 5.0};
  RoundTelemetry telemetry(&probe, ChannelTraffic{});
  telemetry.ModelReady();
  const v1::DeviceTelemetry t = telemetry.Report(ChannelTraffic{}, 0);
  EXPECT_DOUBLE_EQ(t.model_load_seconds(), 2.0);
  EXPECT_FALSE(t.has_training_seconds());
  EXPECT_FALSE(t.has_cpu_seconds());
}

TEST(RoundTelemetryTest, AWrappedEnergyCounterUsesItsRange) {
  ScriptedProbe probe;
  probe.clock = {0.0, 0.0, 0.0, 1.0};
  probe.energy = {EnergyReading{.energy_uj = 900, .max_range_uj = 1000},
                  EnergyReading{.energy_uj = 400, .max_range_uj = 1000}};
  RoundTelemetry wrapped(&probe, std::nullopt);
  wrapped.TrainingStarted();
  wrapped.TrainingFinished(1);
  EXPECT_DOUBLE_EQ(wrapped.Report(std::nullopt, 0).energy_joules(), 500e-6);

  ScriptedProbe backwards;  // went back without a known range: no value at all
  backwards.clock = {0.0, 0.0, 1.0};
  backwards.energy = {EnergyReading{.energy_uj = 900}, EnergyReading{.energy_uj = 400}};
  RoundTelemetry unknown(&backwards, std::nullopt);
  unknown.TrainingStarted();
  unknown.TrainingFinished(1);
  EXPECT_FALSE(unknown.Report(std::nullopt, 0).has_energy_joules());
}

TEST(LinuxDeviceProbeTest, ReadsVmHwmAndRaplFromTheGivenFiles) {
  const fs::path dir = FreshDir("present");
  Write(dir / "status", "Name:\tapp\nVmPeak:\t  999 kB\nVmHWM:\t    2048 kB\nVmRSS:\t 1024 kB\n");
  fs::create_directories(dir / "rapl");
  Write(dir / "rapl" / "energy_uj", "123456789\n");
  Write(dir / "rapl" / "max_energy_range_uj", "262143328850\n");
  LinuxDeviceProbe probe({.proc_status = dir / "status", .rapl_zone = dir / "rapl"});
  EXPECT_EQ(probe.PeakResidentBytes(), 2048 * 1024);
  const std::optional<EnergyReading> energy = probe.Energy();
  ASSERT_TRUE(energy.has_value());
  EXPECT_EQ(energy->energy_uj, 123456789u);
  EXPECT_EQ(energy->max_range_uj, 262143328850u);
}

TEST(LinuxDeviceProbeTest, NoRaplZoneOrAnUnreadableOneIsNoEnergyNotAnError) {
  const fs::path dir = FreshDir("absent");
  LinuxDeviceProbe absent({.proc_status = dir / "no-status", .rapl_zone = dir / "no-rapl"});
  EXPECT_EQ(absent.Energy(), std::nullopt);
  EXPECT_EQ(absent.PeakResidentBytes(), std::nullopt);
  fs::create_directories(dir / "garbage");
  Write(dir / "garbage" / "energy_uj", "not a number\n");
  LinuxDeviceProbe garbage({.rapl_zone = dir / "garbage"});
  EXPECT_EQ(garbage.Energy(), std::nullopt);
  // And a whole round measured with it: the energy field stays unset, the rest is there.
  RoundTelemetry telemetry(&absent, std::nullopt);
  telemetry.ModelReady();
  telemetry.TrainingStarted();
  telemetry.TrainingFinished(1);
  const v1::DeviceTelemetry t = telemetry.Report(std::nullopt, 0);
  EXPECT_FALSE(t.has_energy_joules());
  EXPECT_TRUE(t.has_training_seconds());
  EXPECT_TRUE(t.has_cpu_seconds());
}

TEST(LinuxDeviceProbeTest, ThisProcessHasAPeakAndACpuClock) {
  LinuxDeviceProbe probe;
  const std::optional<int64_t> peak = probe.PeakResidentBytes();
  ASSERT_TRUE(peak.has_value());
  EXPECT_GT(*peak, 0);
  const std::optional<double> cpu = probe.ProcessCpuSeconds();
  ASSERT_TRUE(cpu.has_value());
  EXPECT_GE(*cpu, 0);
}

TEST(ParseVmHwmBytesTest, RefusesMalformedLines) {
  EXPECT_EQ(ParseVmHwmBytes("VmHWM:  12 kB\n"), 12 * 1024);
  EXPECT_EQ(ParseVmHwmBytes("VmHWM:  12 MB\n"), std::nullopt);
  EXPECT_EQ(ParseVmHwmBytes("VmHWM:  -3 kB\n"), std::nullopt);
  EXPECT_EQ(ParseVmHwmBytes("VmHWM:  kB\n"), std::nullopt);
  EXPECT_EQ(ParseVmHwmBytes("VmRSS:  12 kB\n"), std::nullopt);
  EXPECT_EQ(ParseVmHwmBytes(""), std::nullopt);
}

}  // namespace
}  // namespace fedkit::client
