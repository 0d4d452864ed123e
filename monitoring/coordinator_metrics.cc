#include "monitoring/coordinator_metrics.h"

#include <string>
#include <utility>

namespace fedkit::monitoring {
namespace {

using prometheus::BuildCounter;
using prometheus::BuildGauge;
using prometheus::BuildHistogram;
using prometheus::Histogram;

// Seconds, from a millisecond RPC to an hour-long round.
Histogram::BucketBoundaries LatencyBuckets() {
  return {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300};
}
Histogram::BucketBoundaries RoundBuckets() {
  return {1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1200, 1800, 3600};
}

}  // namespace

CoordinatorMetrics::CoordinatorMetrics(std::shared_ptr<prometheus::Registry> registry)
    : registry_(std::move(registry)),
      rounds_committed_(BuildCounter()
                            .Name("fedkit_rounds_committed_total")
                            .Help("Rounds committed (aggregated, checkpointed) by this process")
                            .Register(*registry_)
                            .Add({})),
      round_duration_(BuildHistogram()
                          .Name("fedkit_round_duration_seconds")
                          .Help("Round duration from the round's start to its commit")
                          .Register(*registry_)
                          .Add({}, RoundBuckets())),
      round_participants_(BuildGauge()
                              .Name("fedkit_round_participants")
                              .Help("Updates aggregated in the last committed round")
                              .Register(*registry_)
                              .Add({})),
      round_assigned_(BuildGauge()
                          .Name("fedkit_round_assigned")
                          .Help("Devices assigned the last committed round (over-selection "
                                "included)")
                          .Register(*registry_)
                          .Add({})),
      round_dropouts_(BuildCounter()
                          .Name("fedkit_round_dropouts_total")
                          .Help("Assigned devices whose update was not aggregated, over committed "
                                "rounds")
                          .Register(*registry_)
                          .Add({})),
      round_accuracy_(BuildGauge()
                          .Name("fedkit_round_accuracy_ratio")
                          .Help("Evaluation accuracy of the last committed round's model (0-1)")
                          .Register(*registry_)
                          .Add({})),
      round_loss_(BuildGauge()
                      .Name("fedkit_round_loss")
                      .Help("Evaluation loss of the last committed round's model")
                      .Register(*registry_)
                      .Add({})),
      secagg_phase_duration_(BuildHistogram()
                                 .Name("fedkit_secagg_phase_duration_seconds")
                                 .Help("Duration of each closed secure aggregation phase")
                                 .Register(*registry_)),
      secagg_dropouts_(BuildCounter()
                           .Name("fedkit_secagg_dropouts_total")
                           .Help("Clients expected in a secure aggregation phase that did not "
                                 "complete it, by phase")
                           .Register(*registry_)),
      update_processing_(BuildHistogram()
                             .Name("fedkit_update_processing_seconds")
                             .Help("Time to validate and aggregate one complete upload, by kind "
                                   "(plain, masked)")
                             .Register(*registry_)),
      updates_(BuildCounter()
                   .Name("fedkit_updates_total")
                   .Help("Complete uploads validated, by kind and result (accepted, refused)")
                   .Register(*registry_)),
      checkpoint_write_(BuildHistogram()
                            .Name("fedkit_checkpoint_write_seconds")
                            .Help("Time to write and fsync one checkpoint")
                            .Register(*registry_)
                            .Add({}, LatencyBuckets())),
      checkpoint_failures_(BuildCounter()
                               .Name("fedkit_checkpoint_failures_total")
                               .Help("Checkpoint writes that failed")
                               .Register(*registry_)
                               .Add({})),
      rpc_duration_(BuildHistogram()
                        .Name("fedkit_rpc_duration_seconds")
                        .Help("gRPC server handling time, by method and status code")
                        .Register(*registry_)),
      rpc_received_bytes_(BuildCounter()
                              .Name("fedkit_rpc_received_bytes_total")
                              .Help("Serialized request message bytes received, by method")
                              .Register(*registry_)),
      rpc_sent_bytes_(BuildCounter()
                          .Name("fedkit_rpc_sent_bytes_total")
                          .Help("Serialized response message bytes sent, by method")
                          .Register(*registry_)) {}

void CoordinatorMetrics::RoundCommitted(const CommittedRound& round) {
  rounds_committed_.Increment();
  round_duration_.Observe(round.seconds);
  round_participants_.Set(static_cast<double>(round.participants));
  round_assigned_.Set(static_cast<double>(round.assigned));
  if (round.assigned > round.participants) {
    round_dropouts_.Increment(static_cast<double>(round.assigned - round.participants));
  }
  if (round.accuracy.has_value()) round_accuracy_.Set(*round.accuracy);
  if (round.loss.has_value()) round_loss_.Set(*round.loss);
}

void CoordinatorMetrics::SecAggPhaseClosed(absl::string_view phase, absl::Duration took,
                                           int64_t clients_in, int64_t clients_out) {
  const prometheus::Labels labels = {{"phase", std::string(phase)}};
  secagg_phase_duration_.Add(labels, LatencyBuckets()).Observe(absl::ToDoubleSeconds(took));
  prometheus::Counter& dropouts = secagg_dropouts_.Add(labels);  // present from the first phase
  if (clients_in > clients_out) dropouts.Increment(static_cast<double>(clients_in - clients_out));
}

void CoordinatorMetrics::UpdateProcessed(absl::string_view kind, absl::Duration took,
                                         bool accepted) {
  update_processing_.Add({{"kind", std::string(kind)}}, LatencyBuckets())
      .Observe(absl::ToDoubleSeconds(took));
  updates_.Add({{"kind", std::string(kind)}, {"result", accepted ? "accepted" : "refused"}})
      .Increment();
}

void CoordinatorMetrics::CheckpointWritten(absl::Duration took, bool ok) {
  if (ok) {
    checkpoint_write_.Observe(absl::ToDoubleSeconds(took));
  } else {
    checkpoint_failures_.Increment();
  }
}

void CoordinatorMetrics::RpcFinished(absl::string_view method, absl::string_view code,
                                     absl::Duration took, int64_t bytes_in, int64_t bytes_out) {
  rpc_duration_
      .Add({{"method", std::string(method)}, {"code", std::string(code)}}, LatencyBuckets())
      .Observe(absl::ToDoubleSeconds(took));
  rpc_received_bytes_.Add({{"method", std::string(method)}})
      .Increment(static_cast<double>(bytes_in));
  rpc_sent_bytes_.Add({{"method", std::string(method)}}).Increment(static_cast<double>(bytes_out));
}

}  // namespace fedkit::monitoring
