#include "monitoring/status_collector.h"

#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "prometheus/text_serializer.h"

namespace fedkit::monitoring {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

TEST(StatusCollectorTest, ReportsWhatGetStatusSaysAtScrapeTime) {
  v1::GetStatusResponse status;
  status.set_current_round(3);
  status.set_phase("secagg-share");
  status.set_checked_in(40);
  status.set_assigned(11);
  status.set_received(2);
  status.set_rounds_total(20);
  status.set_rounds_abandoned(1);
  status.add_history()->set_round(1);
  status.add_history()->set_round(2);
  (*status.mutable_refusals())["norm_too_large"] = 4;
  (*status.mutable_declines())["ARTIFACT_REFUSED"] = 1;
  int calls = 0;
  StatusCollector collector([&] {
    ++calls;
    return status;
  });
  const std::string text = prometheus::TextSerializer().Serialize(collector.Collect());
  EXPECT_EQ(calls, 1);
  EXPECT_THAT(text, HasSubstr("fedkit_round 3\n"));
  EXPECT_THAT(text, HasSubstr("fedkit_rounds_completed 2\n"));
  EXPECT_THAT(text, HasSubstr("fedkit_rounds_planned 20\n"));
  EXPECT_THAT(text, HasSubstr("fedkit_round_phase{phase=\"secagg-share\"} 1\n"));
  EXPECT_THAT(text, HasSubstr("fedkit_round_phase{phase=\"training\"} 0\n"));
  EXPECT_THAT(text, HasSubstr("fedkit_devices{state=\"checked_in\"} 40\n"));
  EXPECT_THAT(text, HasSubstr("fedkit_devices{state=\"assigned\"} 11\n"));
  EXPECT_THAT(text, HasSubstr("fedkit_devices{state=\"uploaded\"} 2\n"));
  EXPECT_THAT(text, HasSubstr("fedkit_rounds_abandoned_total 1\n"));
  EXPECT_THAT(text, HasSubstr("fedkit_refusals_total{reason=\"norm_too_large\"} 4\n"));
  EXPECT_THAT(text, HasSubstr("fedkit_declines_total{reason=\"ARTIFACT_REFUSED\"} 1\n"));
  EXPECT_THAT(text, Not(HasSubstr("fedkit_dp_epsilon")));  // no DP: no epsilon series
}

TEST(StatusCollectorTest, DpRunsReportEpsilonAtTheirDelta) {
  v1::GetStatusResponse status;
  status.set_epsilon(1.25);
  status.set_delta(1e-5);
  const std::string text =
      prometheus::TextSerializer().Serialize(StatusCollector::FamiliesOf(status));
  EXPECT_THAT(text, HasSubstr("fedkit_dp_epsilon 1.25\n"));
  EXPECT_THAT(text, HasSubstr("fedkit_dp_delta 1e-05\n"));
}

TEST(StatusCollectorTest, TheLastRoundsDeviceTelemetryIsReportedAsPercentiles) {
  v1::GetStatusResponse status;
  status.set_device_telemetry_invalid(3);
  const std::string before =
      prometheus::TextSerializer().Serialize(StatusCollector::FamiliesOf(status));
  EXPECT_THAT(before, HasSubstr("fedkit_device_telemetry_invalid_total 3\n"));
  EXPECT_THAT(before, Not(HasSubstr("fedkit_device_training_seconds")));  // no round yet

  v1::RoundSummary* first = status.add_history();
  first->set_round(1);
  first->mutable_device_telemetry()->set_reports(99);
  v1::RoundSummary* last = status.add_history();
  last->set_round(2);
  v1::DeviceTelemetrySummary* t = last->mutable_device_telemetry();
  t->set_reports(20);
  t->mutable_training_seconds()->set_count(20);
  t->mutable_training_seconds()->set_p50(1.5);
  t->mutable_training_seconds()->set_p90(4.25);
  t->mutable_upload_bytes()->set_count(20);
  t->mutable_upload_bytes()->set_p50(1000);
  t->mutable_upload_bytes()->set_p90(2000);
  const std::string text =
      prometheus::TextSerializer().Serialize(StatusCollector::FamiliesOf(status));
  EXPECT_THAT(text, HasSubstr("fedkit_device_telemetry_reports 20\n"));  // the last round's
  EXPECT_THAT(text, HasSubstr("fedkit_device_training_seconds{percentile=\"50\"} 1.5\n"));
  EXPECT_THAT(text, HasSubstr("fedkit_device_training_seconds{percentile=\"90\"} 4.25\n"));
  EXPECT_THAT(text, HasSubstr("fedkit_device_upload_bytes{percentile=\"90\"} 2000\n"));
  EXPECT_THAT(text, HasSubstr("# TYPE fedkit_device_training_seconds gauge"));
  EXPECT_THAT(text, Not(HasSubstr("fedkit_device_energy_joules")));  // no device measured it
}

}  // namespace
}  // namespace fedkit::monitoring
