#include "simulation/round_algorithm.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "aggregation/fednova.h"
#include "aggregation/robust.h"
#include "core/status_macros.h"
#include "simulation/control_variates.h"
#include "simulation/scaffold.h"
#include "simulation/simulator.h"

namespace fedkit::simulation {
namespace {

// FedNova's hooks around the FedAvg round's exact weighted mean.
class FedNovaRound final : public RoundAlgorithm {
 public:
  explicit FedNovaRound(aggregation::FedNovaNormalization normalization)
      : normalization_(std::move(normalization)) {}

  absl::StatusOr<std::vector<float>> Correction(int64_t) const override {
    return std::vector<float>();
  }
  absl::StatusOr<int64_t> OnUpload(int64_t client, int64_t weight,
                                   client::ClientUpdate& update) override {
    absl::Status normalized =
        normalization_.Normalize(absl::MakeSpan(update.delta), weight, update.steps);
    if (!normalized.ok()) {
      return absl::Status(normalized.code(),
                          absl::StrCat("client ", client, ": ", normalized.message()));
    }
    return 0;  // the step count travels in the upload's header
  }
  absl::Status EndRound(std::optional<std::vector<float>>& average) override {
    absl::Status applied = absl::OkStatus();
    if (average.has_value()) applied = normalization_.Apply(absl::MakeSpan(*average));
    normalization_.Reset();
    return applied;
  }

 private:
  aggregation::FedNovaNormalization normalization_;
};

}  // namespace

absl::Status ValidateAlgorithm(const SimulationOptions& options, int processes) {
  const Algorithm algorithm = options.algorithm.algorithm;
  const std::string name = absl::StrCat("`algorithm` ", AlgorithmName(algorithm));
  if (algorithm != Algorithm::kScaffold && !options.algorithm.control_variates_dir.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "`control_variates_dir` is for `algorithm` scaffold only, not ", AlgorithmName(algorithm)));
  }
  if (algorithm == Algorithm::kFedAvg) return absl::OkStatus();
  if (algorithm == Algorithm::kFedBuff) {
    return absl::InvalidArgumentError(
        "`algorithm` fedbuff is asynchronous: FedBuffSimulator runs it, not Simulator");
  }
  if (options.secure_aggregation.has_value() || options.dp.mode != DpMode::kNone) {
    return absl::InvalidArgumentError(absl::StrCat(
        name,
        algorithm == Algorithm::kScaffold
            ? " needs each client's control variate change in the clear (and per-client state): "
            : " needs each client's step count beside its update to normalize it: ",
        "not with secure aggregation (`secure_aggregation`) or DP (`mode`)"));
  }
  if (algorithm == Algorithm::kScaffold &&
      options.plan.compression.method != compression::CompressionMethod::kNone) {
    return absl::InvalidArgumentError(absl::StrCat(
        name,
        " derives the control variates from the exact local update: not with `plan.compression`"));
  }
  if (options.aggregator.kind != aggregation::AggregatorKind::kMean) {
    return absl::InvalidArgumentError(
        absl::StrCat(name, " averages by the weighted mean: not with `aggregator` ",
                     aggregation::FormatAggregatorSpec(options.aggregator)));
  }
  if (options.attack.kind != AttackKind::kNone) {
    return absl::InvalidArgumentError(
        absl::StrCat(name, ": attackers are simulated with fedavg only (`attack`)"));
  }
  if (options.plan.prox_mu > 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        name, " with `prox_mu` > 0: FedProx is fedavg with `prox_mu`; its combination with ",
        AlgorithmName(algorithm), " is not built"));
  }
  if (processes > 1) {
    return absl::InvalidArgumentError(absl::StrCat(name, " runs in one process, not over MPI"));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<RoundAlgorithm>> MakeRoundAlgorithm(const SimulationOptions& options,
                                                                   int64_t dimension,
                                                                   int64_t population) {
  switch (options.algorithm.algorithm) {
    case Algorithm::kFedAvg:
      return nullptr;
    case Algorithm::kScaffold: {
      const std::string& dir = options.algorithm.control_variates_dir;
      absl::StatusOr<std::unique_ptr<ControlVariateStore>> store =
          dir.empty() ? ControlVariateStore::InMemory(dimension)
                      : ControlVariateStore::OnDisk(dir, dimension);
      if (!store.ok()) {
        return absl::Status(store.status().code(),
                            absl::StrCat("`control_variates_dir`: ", store.status().message()));
      }
      FEDKIT_ASSIGN_OR_RETURN(
          std::unique_ptr<Scaffold> scaffold,
          Scaffold::Create(dimension, population, options.plan.learning_rate, *std::move(store)));
      return std::unique_ptr<RoundAlgorithm>(std::move(scaffold));
    }
    case Algorithm::kFedBuff:
      return absl::InvalidArgumentError(
          "`algorithm` fedbuff is asynchronous: FedBuffSimulator runs it, not Simulator");
    case Algorithm::kFedNova: {
      FEDKIT_ASSIGN_OR_RETURN(aggregation::FedNovaNormalization normalization,
                              aggregation::FedNovaNormalization::Create(options.plan.momentum));
      return std::unique_ptr<RoundAlgorithm>(
          std::make_unique<FedNovaRound>(std::move(normalization)));
    }
  }
  return absl::InvalidArgumentError("unknown algorithm");
}

}  // namespace fedkit::simulation
