#include "server/device_telemetry.h"

#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace fedkit::server {
namespace {

using ::testing::HasSubstr;

v1::DeviceTelemetry Report(double training_seconds, int64_t upload_bytes) {
  v1::DeviceTelemetry t;
  t.set_training_seconds(training_seconds);
  t.set_upload_bytes(upload_bytes);
  return t;
}

TEST(NearestRankPercentileTest, IsTheSmallestValueWithAtLeastQBelowIt) {
  const std::vector<double> ten = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10};
  EXPECT_EQ(NearestRankPercentile(ten, 0.5), 5);
  EXPECT_EQ(NearestRankPercentile(ten, 0.9), 9);
  EXPECT_EQ(NearestRankPercentile(ten, 1.0), 10);
  const std::vector<double> one = {7};
  EXPECT_EQ(NearestRankPercentile(one, 0.5), 7);
  EXPECT_EQ(NearestRankPercentile(one, 0.9), 7);
  const std::vector<double> three = {1, 2, 30};
  EXPECT_EQ(NearestRankPercentile(three, 0.5), 2);
  EXPECT_EQ(NearestRankPercentile(three, 0.9), 30);
  EXPECT_EQ(NearestRankPercentile({}, 0.5), 0);
}

TEST(DeviceTelemetryDistributionTest, SummarisesEachFieldWhateverTheArrivalOrder) {
  DeviceTelemetryDistribution forward;
  DeviceTelemetryDistribution backward;
  for (int i = 1; i <= 20; ++i) forward.Add(Report(i, 1000 * i));
  for (int i = 20; i >= 1; --i) backward.Add(Report(i, 1000 * i));
  const v1::DeviceTelemetrySummary s = forward.Summary();
  EXPECT_EQ(s.reports(), 20);
  EXPECT_EQ(s.invalid_reports(), 0);
  EXPECT_EQ(s.training_seconds().count(), 20);
  EXPECT_EQ(s.training_seconds().p50(), 10);
  EXPECT_EQ(s.training_seconds().p90(), 18);
  EXPECT_EQ(s.upload_bytes().p50(), 10000);
  EXPECT_EQ(s.upload_bytes().p90(), 18000);
  // Fields no device measured stay absent (not a zero percentile).
  EXPECT_FALSE(s.has_energy_joules());
  EXPECT_FALSE(s.has_cpu_seconds());
  EXPECT_EQ(s.SerializeAsString(), backward.Summary().SerializeAsString());
}

TEST(DeviceTelemetryDistributionTest, CountsEachFieldOverTheReportsThatSetIt) {
  DeviceTelemetryDistribution d;
  v1::DeviceTelemetry with_energy = Report(1, 10);
  with_energy.set_energy_joules(3.5);
  d.Add(with_energy);
  d.Add(Report(2, 20));
  const v1::DeviceTelemetrySummary s = d.Summary();
  EXPECT_EQ(s.reports(), 2);
  EXPECT_EQ(s.training_seconds().count(), 2);
  EXPECT_EQ(s.energy_joules().count(), 1);
  EXPECT_EQ(s.energy_joules().p50(), 3.5);
  EXPECT_EQ(s.energy_joules().p90(), 3.5);
}

TEST(DeviceTelemetryDistributionTest, InvalidReportsAreCountedAndLeaveTheDistributionAlone) {
  DeviceTelemetryDistribution d;
  EXPECT_TRUE(d.Add(Report(4, 100)));
  const double nan = std::numeric_limits<double>::quiet_NaN();
  const double inf = std::numeric_limits<double>::infinity();
  std::vector<v1::DeviceTelemetry> bad(6, Report(1000, 1));
  bad[0].set_training_seconds(-1);
  bad[1].set_examples_per_second(nan);
  bad[2].set_cpu_seconds(inf);
  bad[3].set_peak_memory_bytes(-5);
  bad[4].set_upload_bytes(kMaxTelemetryBytes + 1);  // absurd
  bad[5].set_model_load_seconds(kMaxTelemetrySeconds * 2);
  for (const v1::DeviceTelemetry& t : bad) EXPECT_FALSE(d.Add(t)) << t.ShortDebugString();
  const v1::DeviceTelemetrySummary s = d.Summary();
  EXPECT_EQ(s.reports(), 1);
  EXPECT_EQ(s.invalid_reports(), 6);
  // None of an invalid report's fields got in, its valid ones neither.
  EXPECT_EQ(s.training_seconds().count(), 1);
  EXPECT_EQ(s.training_seconds().p90(), 4);
  EXPECT_EQ(s.upload_bytes().p90(), 100);
  d.Clear();
  EXPECT_TRUE(d.empty());
  EXPECT_EQ(d.Summary().reports(), 0);
}

TEST(DeviceTelemetryDistributionTest, AnEmptyReportIsValidAndCounted) {
  DeviceTelemetryDistribution d;
  EXPECT_TRUE(d.Add(v1::DeviceTelemetry()));
  EXPECT_EQ(d.Summary().reports(), 1);
  EXPECT_FALSE(d.Summary().has_training_seconds());
}

TEST(ValidateDeviceTelemetryTest, NamesTheField) {
  v1::DeviceTelemetry t;
  t.set_energy_joules(-0.5);
  const absl::Status s = ValidateDeviceTelemetry(t);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(s.message()), HasSubstr("energy_joules"));
  t.set_energy_joules(0);  // zero is a measurement, not an error
  EXPECT_TRUE(ValidateDeviceTelemetry(t).ok());
}

}  // namespace
}  // namespace fedkit::server
