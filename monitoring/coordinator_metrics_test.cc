#include "monitoring/coordinator_metrics.h"

#include <memory>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "prometheus/text_serializer.h"

namespace fedkit::monitoring {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

std::string Exposition(prometheus::Registry& registry) {
  return prometheus::TextSerializer().Serialize(registry.Collect());
}

TEST(CoordinatorMetricsTest, ACommittedRoundCountsItsDropoutsAndKeepsItsAccuracy) {
  auto registry = std::make_shared<prometheus::Registry>();
  CoordinatorMetrics metrics(registry);
  metrics.RoundCommitted({.round = 1,
                          .participants = 8,
                          .assigned = 10,
                          .seconds = 12.5,
                          .accuracy = 0.75,
                          .loss = 0.6});
  metrics.RoundCommitted({.round = 2, .participants = 10, .assigned = 11, .seconds = 3});
  const std::string text = Exposition(*registry);
  EXPECT_THAT(text, HasSubstr("fedkit_rounds_committed_total 2\n"));
  EXPECT_THAT(text, HasSubstr("fedkit_round_dropouts_total 3\n"));
  EXPECT_THAT(text, HasSubstr("fedkit_round_participants 10\n"));
  EXPECT_THAT(text, HasSubstr("fedkit_round_assigned 11\n"));
  // Round 2 was not evaluated: the last evaluated accuracy stays.
  EXPECT_THAT(text, HasSubstr("fedkit_round_accuracy_ratio 0.75\n"));
  EXPECT_THAT(text, HasSubstr("fedkit_round_duration_seconds_count 2\n"));
  EXPECT_THAT(text, HasSubstr("fedkit_round_duration_seconds_sum 15.5\n"));
  EXPECT_THAT(text, HasSubstr("fedkit_round_duration_seconds_bucket{le=\"5\"} 1\n"));
}

TEST(CoordinatorMetricsTest, SecureAggregationPhasesAreLabelledAndDropoutsCountedPerPhase) {
  auto registry = std::make_shared<prometheus::Registry>();
  CoordinatorMetrics metrics(registry);
  metrics.SecAggPhaseClosed("secagg-advertise", absl::Milliseconds(200), 10, 10);
  metrics.SecAggPhaseClosed("secagg-upload", absl::Seconds(2), 10, 7);
  const std::string text = Exposition(*registry);
  EXPECT_THAT(text, HasSubstr("fedkit_secagg_dropouts_total{phase=\"secagg-advertise\"} 0\n"));
  EXPECT_THAT(text, HasSubstr("fedkit_secagg_dropouts_total{phase=\"secagg-upload\"} 3\n"));
  EXPECT_THAT(text,
              HasSubstr("fedkit_secagg_phase_duration_seconds_sum{phase=\"secagg-upload\"} 2\n"));
}

TEST(CoordinatorMetricsTest, UpdatesCheckpointsAndRpcsHaveTheirLabels) {
  auto registry = std::make_shared<prometheus::Registry>();
  CoordinatorMetrics metrics(registry);
  metrics.UpdateProcessed("plain", absl::Milliseconds(4), true);
  metrics.UpdateProcessed("plain", absl::Milliseconds(4), false);
  metrics.CheckpointWritten(absl::Milliseconds(30), true);
  metrics.CheckpointWritten(absl::Milliseconds(30), false);
  metrics.RpcFinished("CheckIn", "OK", absl::Milliseconds(1), 40, 60);
  metrics.RpcFinished("CheckIn", "OK", absl::Milliseconds(1), 40, 60);
  metrics.RpcFinished("UploadUpdate", "INVALID_ARGUMENT", absl::Milliseconds(9), 1000, 0);
  const std::string text = Exposition(*registry);
  EXPECT_THAT(text, HasSubstr("fedkit_updates_total{kind=\"plain\",result=\"accepted\"} 1\n"));
  EXPECT_THAT(text, HasSubstr("fedkit_updates_total{kind=\"plain\",result=\"refused\"} 1\n"));
  EXPECT_THAT(text, HasSubstr("fedkit_update_processing_seconds_count{kind=\"plain\"} 2\n"));
  EXPECT_THAT(text, HasSubstr("fedkit_checkpoint_write_seconds_count 1\n"));
  EXPECT_THAT(text, HasSubstr("fedkit_checkpoint_failures_total 1\n"));
  EXPECT_THAT(text,
              HasSubstr("fedkit_rpc_duration_seconds_count{code=\"OK\",method=\"CheckIn\"} 2\n"));
  EXPECT_THAT(text, HasSubstr("fedkit_rpc_received_bytes_total{method=\"CheckIn\"} 80\n"));
  EXPECT_THAT(text, HasSubstr("fedkit_rpc_sent_bytes_total{method=\"CheckIn\"} 120\n"));
  EXPECT_THAT(text, HasSubstr("fedkit_rpc_duration_seconds_count{code=\"INVALID_ARGUMENT\",method="
                              "\"UploadUpdate\"} 1\n"));
  EXPECT_THAT(text, Not(HasSubstr("method=\"GetModel\"")));
}

}  // namespace
}  // namespace fedkit::monitoring
