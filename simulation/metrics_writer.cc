#include "simulation/metrics_writer.h"

#include <cerrno>
#include <cmath>
#include <cstring>
#include <nlohmann/json.hpp>
#include <string>

#include "absl/strings/str_cat.h"
#include "simulation/client_evaluation.h"

namespace fedkit::simulation {
namespace {

void AddSummary(const std::string& prefix, const ClientAccuracySummary& s, nlohmann::json& line) {
  line[prefix + "mean"] = s.mean;
  line[prefix + "p10"] = s.p10;
  line[prefix + "p50"] = s.p50;
  line[prefix + "p90"] = s.p90;
  line[prefix + "worst10"] = s.worst10;
}

void AddClientEvaluation(const ClientEvaluation& eval, nlohmann::json& line) {
  line["client_eval_clients"] = eval.clients;
  line["client_accuracies"] = eval.accuracies;
  AddSummary("client_accuracy_", eval.summary, line);
  if (eval.finetuned_summary.has_value()) {
    line["client_finetuned_accuracies"] = eval.finetuned_accuracies;
    AddSummary("client_finetuned_accuracy_", *eval.finetuned_summary, line);
  }
}

}  // namespace

absl::StatusOr<std::unique_ptr<MetricsWriter>> MetricsWriter::Open(const std::string& path) {
  std::ofstream out(path, std::ios::out | std::ios::trunc);
  if (!out) {
    return absl::InvalidArgumentError(
        absl::StrCat("cannot open metrics file ", path, " for writing: ", std::strerror(errno)));
  }
  return std::unique_ptr<MetricsWriter>(new MetricsWriter(path, std::move(out)));
}

absl::Status MetricsWriter::Append(const RoundResult& round) {
  if (!round.eval) return absl::FailedPreconditionError("round was not evaluated");
  nlohmann::json line = {
      {"round", round.round},
      {"accuracy", round.eval->accuracy()},
      {"loss", round.eval->mean_loss()},
      {"participants", round.participants},
      {"examples", round.examples},
      {"train_loss", round.train_loss},
      {"mean_delta_norm", round.mean_delta_norm},
      {"seconds", round.seconds},
      {"eval_seconds", round.eval_seconds},
      {"elapsed_seconds", round.elapsed_seconds},
      {"upload_bytes", round.upload_bytes},
      {"download_bytes", round.download_bytes},
  };
  if (round.epsilon.has_value()) {
    // JSON has no infinity: null means unbounded (DP with noise multiplier 0).
    line["epsilon"] = std::isfinite(*round.epsilon) ? nlohmann::json(*round.epsilon) : nullptr;
    line["delta"] = round.delta;
  }
  if (round.clip_norm.has_value()) line["clip_norm"] = *round.clip_norm;
  if (round.unclipped_fraction.has_value()) line["unclipped_fraction"] = *round.unclipped_fraction;
  if (round.dropped > 0) line["dropped"] = round.dropped;
  if (!round.aborted.empty()) line["aborted"] = round.aborted;
  if (round.virtual_seconds.has_value()) {
    line["virtual_seconds"] = *round.virtual_seconds;
    if (round.virtual_elapsed_seconds.has_value()) {
      line["virtual_elapsed_seconds"] = *round.virtual_elapsed_seconds;
    }
    line["contributors"] = round.contributors;
    line["stragglers"] = round.stragglers;
    line["not_needed"] = round.not_needed;
  }
  if (round.staleness_mean.has_value()) {
    line["staleness_mean"] = *round.staleness_mean;
    line["staleness_max"] = round.staleness_max;
  }
  if (round.attackers.has_value()) {
    line["attackers"] = *round.attackers;
    line["refused"] = round.refused;
  }
  if (round.client_eval.has_value()) AddClientEvaluation(*round.client_eval, line);
  if (round.secure_aggregation) {
    const SecureAggregationRoundStats& s = *round.secure_aggregation;
    line["secagg"] = {
        {"survivors", s.survivors},           {"degree", s.degree},
        {"threshold", s.threshold},           {"client_seconds_mean", s.client_seconds_mean},
        {"server_seconds", s.server_seconds}, {"client_bytes_sent_mean", s.client_bytes_sent_mean}};
  }
  out_ << line.dump() << '\n';
  out_.flush();
  if (!out_) return absl::DataLossError(absl::StrCat("failed writing metrics to ", path_));
  return absl::OkStatus();
}

}  // namespace fedkit::simulation
