// Per-round metrics as JSON Lines.
#ifndef FEDKIT_SIMULATION_METRICS_WRITER_H_
#define FEDKIT_SIMULATION_METRICS_WRITER_H_

#include <fstream>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "simulation/simulator.h"

namespace fedkit::simulation {

// Writes one JSON object per line and flushes it, so a crashed or interrupted run keeps every
// finished round. Opening truncates the file: one file holds one run.
class MetricsWriter {
 public:
  // Errors (the directory is missing, no permission) name the path.
  static absl::StatusOr<std::unique_ptr<MetricsWriter>> Open(const std::string& path);

  // Appends {"round", "accuracy", "loss", "participants", "examples", "train_loss",
  // "mean_delta_norm", "seconds", "eval_seconds", "elapsed_seconds"}, plus "dropped", "aborted",
  // "secagg" (survivors, degree, threshold, costs), the system model's "virtual_seconds",
  // "virtual_elapsed_seconds", "contributors", "stragglers", "not_needed", with an attack
  // "attackers" and "refused", and, with differential privacy, "epsilon" (null when unbounded),
  // "delta", "clip_norm" and "unclipped_fraction" when they apply, and with per-client evaluation
  // "client_eval_clients" (the evaluated clients' indices, ascending), "client_accuracies" (theirs,
  // in that order), "client_accuracy_mean", "_p10", "_p50", "_p90", "_worst10"
  // (simulation/client_evaluation.h), and after fine-tuning the same with "client_finetuned_"
  // ("client_finetuned_accuracies", "client_finetuned_accuracy_mean", ...); the round must have
  // been evaluated (FAILED_PRECONDITION otherwise). DATA_LOSS when the write fails. Not
  // thread-safe: one thread appends.
  absl::Status Append(const RoundResult& round);

 private:
  MetricsWriter(std::string path, std::ofstream out)
      : path_(std::move(path)), out_(std::move(out)) {}

  std::string path_;
  std::ofstream out_;
};

}  // namespace fedkit::simulation

#endif  // FEDKIT_SIMULATION_METRICS_WRITER_H_
