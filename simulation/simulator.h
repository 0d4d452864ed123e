// Federated training of many virtual clients in one process.
#ifndef FEDKIT_SIMULATION_SIMULATOR_H_
#define FEDKIT_SIMULATION_SIMULATOR_H_

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "aggregation/aggregator.h"
#include "aggregation/robust.h"
#include "aggregation/server_optimizer.h"
#include "client/local_trainer.h"
#include "compression/download_codec.h"
#include "compression/update_codec.h"
#include "data/federated_dataset.h"
#include "fedkit/v1/coordinator.pb.h"
#include "models/evaluate.h"
#include "models/model.h"
#include "privacy/adaptive_clipping.h"
#include "privacy/distributed_dp_encoding.h"
#include "privacy/dp_setup.h"
#include "privacy/rdp_accountant.h"
#include "privacy/secagg/encoding.h"
#include "privacy/secagg/in_memory_round.h"
#include "privacy/secagg/protocol.h"
#include "server/participation.h"
#include "simulation/algorithm.h"
#include "simulation/attack.h"
#include "simulation/batched_trainer.h"
#include "simulation/client_evaluation.h"
#include "simulation/collective.h"
#include "simulation/round_algorithm.h"
#include "simulation/system_model.h"
#include "simulation/worker_pool.h"

namespace fedkit::simulation {

// Secure aggregation in the simulator: the same client and server state machines as the
// coordinator and device library, with messages passed in memory.

// Injected client failures, to measure robustness: each sampled client independently goes silent
// with probability `rate`, in `phase` (nullopt = a phase drawn uniformly per client). Without
// secure aggregation only the upload matters: a client dropping before or at upload contributes
// nothing; one dropping at "unmask" already contributed.
struct DropoutOptions {
  double rate = 0.0;
  std::optional<secagg::ClientPhase> phase;
  // Fault injection by client index: these clients always go silent in the given phase when
  // sampled (e.g. to replay a networked run in which those devices were killed).
  std::map<int64_t, secagg::ClientPhase> forced;
};

// User-level differential privacy (DP-FedAvg, central or distributed, adaptive clipping): the
// settings and their derivation are the coordinator's (privacy/dp_setup.h). The simulator samples
// a fixed-size uniform subset (server::SampleClients), the common approximation of TensorFlow
// Privacy / TFF tutorials; the epsilon is that of Poisson sampling at q = K / population.
using DpMode = privacy::DpMode;
using DpOptions = privacy::DpSettings;
using PrivacySetup = privacy::DpSetup;
using privacy::DpModeName;
using privacy::ParseDpMode;

// System heterogeneity and the coordinator's round rules in virtual time
// (simulation/system_model.h): a round samples ceil(K (1 + over_select)) clients, each finishes
// after its device's virtual time, and the round keeps the first K that finish by the deadline; the
// rest (stragglers, and over-selected clients not needed) are treated as devices whose upload never
// arrived, so they are not trained. Under secure aggregation they drop out at the masked upload.
struct SystemOptions {
  std::string device_speeds;               // "" = every device finishes at virtual time 0
  std::optional<double> deadline_seconds;  // virtual; nullopt = no deadline
  double over_select = 0.0;                // in [0, 10]
};

struct SimulationOptions {
  std::string model = "mlp";
  int64_t clients_per_round = 10;
  int rounds = 10;
  client::TrainingPlan plan;
  aggregation::ServerOptimizerOptions server_optimizer;
  // Caps a client's FedAvg weight (its example count), rounded up to an integer; nullopt: no cap
  // (the aggregator refuses counts over aggregation::kDefaultMaxWeight, as the coordinator does).
  std::optional<double> max_client_weight;
  uint64_t seed = 0;
  int threads = 1;
  // Evaluate the global model every this many rounds (and after the last); 0 = only after the last.
  int eval_every = 1;
  // nullopt: plain FedAvg. Requires plan.clip_norm > 0 (phase_timeout and poll_interval unused).
  std::optional<secagg::SecureAggregationSettings> secure_aggregation;
  DropoutOptions dropout;
  DpOptions dp;  // requires plan.clip_norm > 0 unless mode is kNone
  SystemOptions system;
  // The virtual clients' ids, client i's at [i] (as fedkit-client --client-id with --client-index
  // i); empty: fedkit-client's default "client-%06d" of the index. A round samples from the sorted
  // ids, as the coordinator samples from its sorted waiting devices (ids that sort like indices,
  // such as the default ones below a million clients, sample exactly as the indices do).
  std::vector<std::string> client_ids;
  // A coordinator run's participation to replay (server/participation.h), at least one record per
  // round: round r samples from record r's pool with the coordinator's seed (the record's
  // sampling_seed under DP, else derived from the round and its attempt), stops with
  // FAILED_PRECONDITION if that sample is not the record's assignments, and keeps the updates of
  // the assigned devices the record aggregated; the others are silent at their upload. Replaces
  // `dropout` and `system` (INVALID_ARGUMENT with either): which devices reported in time is what
  // the record knows and no simulation can.
  std::vector<server::RoundParticipation> replay;
  // How the coordinator encodes model downloads (server::CoordinatorOptions::download_encoding):
  // the clients train from the decoded model, the global model stays exact.
  compression::DownloadEncoding download_encoding = compression::DownloadEncoding::kFloat32;
  // How a plain round (without secure aggregation and without DP) aggregates its updates
  // (aggregation/robust.h, with the coordinator's value bound and weight cap). Anything but mean
  // needs every update in the clear: INVALID_ARGUMENT with secure_aggregation or DP, and (Krum,
  // Multi-Krum) unless clients_per_round >= 2F + 3. A round in which the aggregator cannot report
  // (Krum with fewer than 2F + 3 contributors, after dropouts) is aborted: the model is unchanged.
  aggregation::AggregatorSpec aggregator;
  // Simulated attackers (simulation/attack.h): the fixed subset ChooseAttackers(population,
  // attack_fraction, seed) of the dataset's clients uploads `attack`'s update whenever sampled.
  // Plain rounds only (INVALID_ARGUMENT with secure_aggregation or DP); attack_fraction in [0, 1),
  // and > 0 only with an attack; label-flip needs a classification dataset. An attacker's upload
  // is unclipped and goes through the coordinator's checks (the clip norm, the value bound, finite
  // values; under compression the coordinator's clip instead): a refused upload does not count.
  AttackSpec attack;
  double attack_fraction = 0.0;
  // Per-client evaluation (simulation/client_evaluation.h) at every evaluated round; unset = off.
  // When the dataset has no per-client test examples, each client holds out a seeded share of its
  // examples for it and trains on the rest only.
  std::optional<ClientEvaluationOptions> client_evaluation;
  // FedAvg, SCAFFOLD or FedNova (simulation/algorithm.h, simulation/round_algorithm.h): the last
  // two in plain rounds of one process only, with the mean aggregator, without attack or prox_mu
  // (INVALID_ARGUMENT otherwise), SCAFFOLD also without compression.
  AlgorithmOptions algorithm;
  // Cross-client batched training (simulation/batched_trainer.h): each worker trains up to this
  // many of a round's clients together, their parameters stacked, instead of one after another;
  // 0 = off. Each client's update equals its own training up to float summation order, so a run
  // is no longer bit-identical to devices' (with 0 it is). Plain rounds of fedavg with a
  // registered model only: INVALID_ARGUMENT with `secure_aggregation`, another `algorithm`, or
  // `plan.max_seconds`; UNIMPLEMENTED for a TorchScript model. Attackers still train alone.
  int64_t client_batching = 0;
};

// What every simulator checks of SimulationOptions: rounds >= 1, threads >= 1, eval_every >= 0,
// max_client_weight > 0 when set, and the plan (client::ValidateTrainingPlan). INVALID_ARGUMENT.
absl::Status ValidateRunOptions(const SimulationOptions& options);
// The cap on a client's FedAvg weight: max_client_weight rounded up to an integer, else the
// aggregators' aggregation::kDefaultMaxWeight.
int64_t ClientWeightCap(const SimulationOptions& options);
// system.device_speeds made with the run's seed (DeviceSpeeds::Create); nullopt when it is empty.
// Errors as DeviceSpeeds::Create's, prefixed with "--device-speeds: ".
absl::StatusOr<std::optional<DeviceSpeeds>> MakeDeviceSpeeds(const SimulationOptions& options);

// What secure aggregation cost in a round.
struct SecureAggregationRoundStats {
  int64_t survivors = 0;  // clients whose input is in the sum (U3)
  int degree = 0;         // neighbours per client
  int threshold = 0;
  double client_seconds_mean = 0.0;  // per client, all phases, excluding training
  double server_seconds = 0.0;
  double client_bytes_sent_mean = 0.0;
};

struct RoundResult {
  int round = 0;                         // 1-based
  int64_t participants = 0;              // sampled clients (over-selected ones included)
  int64_t contributors = 0;              // clients whose update the round aggregated
  int64_t dropped = 0;                   // of which went silent (injected dropouts)
  int64_t examples = 0;                  // examples trained on this round
  double train_loss = 0.0;               // example-weighted mean of the clients' training losses
  double mean_delta_norm = 0.0;          // mean L2 norm of the deltas before clipping
  double seconds = 0.0;                  // wall time of training + aggregation (not evaluation)
  std::optional<models::EvalSums> eval;  // when the round was evaluated
  // With SimulationOptions::client_evaluation, when the round was evaluated.
  std::optional<ClientEvaluation> client_eval;
  double eval_seconds = 0.0;  // both evaluations
  // Wall time from the start of this simulator's first round to the end of this one, evaluation
  // included (a run's time axis even when only some rounds are evaluated).
  double elapsed_seconds = 0.0;
  // Secure aggregation: cost, or why the round aborted (then the global model is unchanged).
  std::optional<SecureAggregationRoundStats> secure_aggregation;
  std::string aborted;  // empty unless the round aborted
  // Mean per participating client of the bytes it sent and received this round, as the
  // coordinator's GetStatus reports them (proto/wire_sizes.h: the upload stream, plain, compressed
  // or masked, and with secure aggregation the protocol's messages; the model download).
  double upload_bytes = 0.0;
  double download_bytes = 0.0;
  // With SystemOptions: the round's virtual duration (open to close, as the coordinator would
  // close it), the sampled clients that finished after the deadline, and those that finished in
  // time but were not needed (over-selection).
  std::optional<double> virtual_seconds;
  std::optional<double> virtual_elapsed_seconds;  // virtual_seconds summed over rounds 1..round
  int64_t stragglers = 0;
  int64_t not_needed = 0;
  // With an attack configured (SimulationOptions::attack, even at fraction 0): how many of the
  // contributors were attackers; and how many uploads the coordinator's checks refused (only an
  // attacker's can be: honest clients clip on the device), which are not contributors.
  std::optional<int64_t> attackers;
  int64_t refused = 0;
  // FedBuff (simulation/fedbuff_simulator.h): the mean and largest staleness of the commit's
  // updates (versions committed between a client's download and this commit).
  std::optional<double> staleness_mean;
  int64_t staleness_max = 0;
  // Differential privacy (unset without): epsilon spent after this round at `delta` (+infinity
  // with noise multiplier 0), the clip norm the clients used, and adaptive clipping's noised
  // estimate of the fraction of unclipped updates (which set the next round's clip).
  std::optional<double> epsilon;
  double delta = 0.0;
  std::optional<double> clip_norm;
  std::optional<double> unclipped_fraction;
};

// What fedkit-sim drives: a source of rounds (server model updates) and the global model they
// make. Synchronous rounds (Simulator below) and FedBuff's buffered asynchronous commits
// (simulation/fedbuff_simulator.h) both are one. Used by one thread at a time.
class RoundRunner {
 public:
  virtual ~RoundRunner() = default;

  // Runs the next round (or commit) and, when due, evaluates the global model.
  virtual absl::StatusOr<RoundResult> RunRound() = 0;
  // True once RunRound refused to run a round because it would exceed the privacy budget.
  virtual bool privacy_budget_exhausted() const { return false; }
  virtual const std::vector<float>& global_parameters() const = 0;
  // A module holding the current global parameters (e.g. to save with models::SaveModule).
  virtual absl::StatusOr<std::shared_ptr<models::Model>> GlobalModel() const = 0;
};

// Secure aggregation in a simulation, for Simulator and FedBuffSimulator alike.
// The protocol's configuration for a round of `num_clients` masked vectors of `length` values
// (options.secure_aggregation must be set); its graph seed derives from the run seed and `round`
// (public randomness: a run, including which rounds abort, is reproducible). Errors:
// secagg::MakeProtocolConfig's.
absl::StatusOr<secagg::ProtocolConfig> SimulatedProtocolConfig(const SimulationOptions& options,
                                                               int round, int64_t num_clients,
                                                               int64_t length);
// The largest weight a client's masked input may carry: max_client_weight rounded up, else the
// most training examples any client has (at least 1).
int64_t SecureAggregationMaxWeight(const SimulationOptions& options,
                                   const data::FederatedDataset& dataset);
// A round's cost as RoundResult reports it, from an in-memory round of n clients.
SecureAggregationRoundStats SummarizeSecureRound(const secagg::ProtocolConfig& config,
                                                 const secagg::InMemoryRoundResult& outcome, int n);
// Trains participant i (of config.num_clients) on `worker`.
using SecureRoundTrainFunction =
    std::function<absl::StatusOr<client::ClientUpdate>(int worker, int64_t participant)>;
// Turns participant i's trained update into its secure aggregation input.
using SecureRoundEncodeFunction = std::function<absl::StatusOr<std::vector<uint64_t>>(
    const client::ClientUpdate& update, int32_t participant)>;
// One in-memory secure aggregation round on `pool`, each client trained inside its masked-input
// phase (a client dropped before it is not trained) and encoded by `encode`; adds the trained
// clients' count, examples, example-weighted loss and delta norms to `trained`, result.examples,
// `weighted_loss` and `norm_sum`, and the protocol's cost to result.secure_aggregation
// (result.aborted set if the protocol aborted). Errors: a client's training or encoding error, or
// secagg::RunInMemoryRound's.
absl::StatusOr<secagg::InMemoryRoundResult> RunSecureRoundOnPool(
    WorkerPool& pool, const secagg::ProtocolConfig& config,
    const std::vector<std::optional<secagg::ClientPhase>>& drop_at,
    const SecureRoundTrainFunction& train, const SecureRoundEncodeFunction& encode,
    RoundResult& result, int64_t& trained, double& weighted_loss, double& norm_sum);

// Runs rounds of: sample clients uniformly (server::SampleClients), train each with a LocalTrainer
// on a worker, aggregate the deltas in sampled order (weighted FedAvg, or the robust aggregator of
// SimulationOptions::aggregator; attackers' uploads per SimulationOptions::attack), apply the
// server optimizer.
// With secure aggregation, each client's clipped delta is encoded in fixed point (weight times
// delta, plus the weight) and the round runs the SecAgg/SecAgg+ protocol in memory; the server
// optimizer gets the decoded weighted average of the survivors. With differential privacy
// (DpOptions) the average is DP-FedAvg's instead: unweighted, noised, over the fixed denominator.
// A virtual client is only its index into the dataset; memory grows with --threads, not with the
// population. Results are identical for any number of threads and processes: client seeds
// derive from (seed, round, client) and deltas are summed exactly (aggregation/aggregator.h).
class Simulator final : public RoundRunner {
 public:
  // Validates options against the dataset (e.g. clients_per_round <= population). The dataset must
  // outlive the simulator.
  // `collective` (borrowed, may be null = one process) spreads each round's clients over
  // processes (simulation/collective.h): every rank then holds the same model, and only rank 0
  // evaluates. Secure aggregation runs in one process only (INVALID_ARGUMENT otherwise).
  static absl::StatusOr<std::unique_ptr<Simulator>> Create(const SimulationOptions& options,
                                                           const data::FederatedDataset* dataset,
                                                           Collective* collective = nullptr);
  ~Simulator();

  // Runs the next round. Evaluates when eval_every says so, when it is the last round, or when it
  // is the last one within the privacy budget. RESOURCE_EXHAUSTED, without running anything, if
  // the round would take epsilon above dp.target_epsilon (privacy_budget_exhausted() then
  // returns true and the message says which round was the last within budget).
  absl::StatusOr<RoundResult> RunRound() override;

  // Evaluates the current global model on the dataset's eval set, split across the workers.
  absl::StatusOr<models::EvalSums> Evaluate();

  // The seed a client's local training uses in a round (exposed so tests can replay a client).
  static uint64_t ClientTrainingSeed(uint64_t run_seed, int round, int64_t client);

  int rounds_done() const { return rounds_done_; }
  // The attacking clients (dataset indices, ascending; empty without an attack).
  const std::vector<int64_t>& attackers() const { return attackers_; }
  // Set iff dp.mode is not kNone.
  const std::optional<PrivacySetup>& privacy_setup() const { return privacy_setup_; }
  // Epsilon spent so far at dp.delta: 0 before any round, +infinity with z = 0, nullopt without DP.
  std::optional<double> epsilon() const;
  bool privacy_budget_exhausted() const override { return budget_exhausted_; }
  const std::vector<float>& global_parameters() const override { return global_; }
  absl::StatusOr<std::shared_ptr<models::Model>> GlobalModel() const override;

 private:
  Simulator(const SimulationOptions& options, const data::FederatedDataset* dataset);

  SimulationOptions options_;
  // What the clients train on: the given dataset, or client_evaluator_->dataset().
  const data::FederatedDataset* dataset_;
  std::unique_ptr<ClientEvaluator> client_evaluator_;  // with options.client_evaluation
  std::vector<float> global_;
  v1::ParameterLayout layout_proto_;  // the model's layout, as a download carries it
  // ModelChunk bytes of one float32 model download (the layout travels in the first chunk).
  int64_t download_bytes_ = 0;
  // What the round's clients download: the global model's decoded download (empty when it is the
  // global model itself: float32, or a model the encoding cannot hold) and its ModelChunk bytes.
  struct DownloadedModel {
    std::vector<float> decoded;
    int64_t bytes = 0;
  };
  absl::StatusOr<DownloadedModel> Download() const;
  // Update compression: each virtual client's encoder (its error-feedback residual for top-k and
  // random-k), made when it first trains; used by RunRound's ordered consumer only.
  absl::flat_hash_map<int64_t, compression::UpdateEncoder> encoders_;
  std::unique_ptr<aggregation::ServerOptimizer> server_optimizer_;
  std::vector<std::unique_ptr<client::LocalTrainer>> trainers_;  // one per worker
  // With options_.client_batching > 0: one per worker.
  std::vector<std::unique_ptr<BatchedTrainer>> batched_trainers_;
  std::unique_ptr<WorkerPool> pool_;
  int rounds_done_ = 0;
  std::optional<secagg::FixedPointEncoding> encoding_;  // with secure aggregation, without DP
  std::optional<PrivacySetup> privacy_setup_;
  std::optional<privacy::AdaptiveClipping> adaptive_clipping_;
  std::optional<privacy::RdpAccountant> accountant_;  // with DP and z > 0
  std::optional<DeviceSpeeds> device_speeds_;         // with system.device_speeds
  SingleProcess single_process_;
  Collective* collective_ = &single_process_;  // borrowed when given to Create
  bool budget_exhausted_ = false;
  std::optional<std::chrono::steady_clock::time_point> first_round_start_;  // set by RunRound
  double virtual_elapsed_seconds_ = 0.0;  // with SystemOptions: over the rounds run so far
  // With client_ids: the dataset's clients in sorted-id order. With replay: each id's client.
  std::vector<int64_t> clients_by_id_;
  std::map<std::string, int64_t> client_of_id_;
  std::vector<int64_t> attackers_;                   // ascending dataset indices
  std::unique_ptr<RoundAlgorithm> round_algorithm_;  // null for FedAvg

  bool IsAttacker(int64_t client) const;
  // An attacker's upload in a round (SimulationOptions::attack): trained without device-side
  // clipping on its data (labels flipped for label-flip) and transformed, or noise.
  // --client-batching: trains the participants at `indices` (positions in `participants`)
  // together on `trainer` and returns their updates in that order; an attacker among them trains
  // alone through `alone` (the per-client path, given its position). Errors name the clients.
  absl::StatusOr<std::vector<client::ClientUpdate>> TrainGroup(
      BatchedTrainer& trainer, absl::Span<const float> from, const client::TrainingPlan& plan,
      int round, absl::Span<const int64_t> indices, const std::vector<int64_t>& participants,
      const std::function<absl::StatusOr<client::ClientUpdate>(int64_t)>& alone) const;
  absl::StatusOr<client::ClientUpdate> AttackerUpdate(client::LocalTrainer& trainer,
                                                      absl::Span<const float> from,
                                                      const client::TrainingPlan& plan, int round,
                                                      int64_t client) const;
  // Whether the coordinator accepts a plain upload (RoundCoordinator::SubmitUpdate's checks of
  // its values: finite, within the clip norm with its tolerance when clip_norm > 0).
  static bool PassesUploadChecks(absl::Span<const float> delta, double clip_norm);

  // A round's sampled clients (dataset indices, in the order the coordinator assigns them) and,
  // when replaying, which of them go silent at their upload.
  absl::Status IndexClientIds();
  // The clients a round assigns: clients per round, over-selected (at most the population or the
  // replayed pool).
  int64_t Assigned() const;
  absl::StatusOr<std::vector<int64_t>> SampleRound(int round) const;
  absl::StatusOr<std::vector<int64_t>> ReplayRound(
      int round, std::vector<std::optional<secagg::ClientPhase>>& drop_at) const;

  using TrainFunction = SecureRoundTrainFunction;
  absl::StatusOr<secagg::FixedPointEncoding> ChooseSecureAggregationEncoding() const;
  // The injected dropout schedule of a round (one entry per sampled client).
  std::vector<std::optional<secagg::ClientPhase>> DropoutSchedule(
      int round, const std::vector<int64_t>& participants) const;
  // Applies SystemOptions: clients the round does not keep go silent at the masked upload.
  void ApplySystemSchedule(const std::vector<int64_t>& participants,
                           std::vector<std::optional<secagg::ClientPhase>>& drop_at,
                           RoundResult& result) const;
  // Trains and aggregates the round's clients under secure aggregation. Returns the survivors'
  // weighted average, or nullopt (with result.aborted set) when the protocol aborted.
  // RunSecureAggregation under plan.compression: random-k keeps the round's shared coordinates
  // (the masked vector has k + 1 entries); quantize / quantize-rotate use the shared rotation and
  // scale of compression/secagg_quantization.h with a modulus of bits + ceil(log2 n) bits.
  absl::StatusOr<std::optional<std::vector<float>>> RunCompressedSecureAggregation(
      int round, const std::vector<int64_t>& participants,
      const std::vector<std::optional<secagg::ClientPhase>>& drop_at, const TrainFunction& train,
      RoundResult& result, int64_t& trained, double& weighted_loss, double& norm_sum);
  // INVALID_ARGUMENT for a compression spec secure aggregation cannot carry: top-k (each client
  // keeps other coordinates), 1-bit quantization, anything with DP under secure aggregation.
  static absl::Status CheckCompressionUnderSecureAggregation(const SimulationOptions& options);
  absl::StatusOr<std::optional<std::vector<float>>> RunSecureAggregation(
      int round, const std::vector<int64_t>& participants,
      const std::vector<std::optional<secagg::ClientPhase>>& drop_at, const TrainFunction& train,
      RoundResult& result, int64_t& trained, double& weighted_loss, double& norm_sum);

  // The DP part of a round: the sum of the contributors' clipped deltas (noised by the clients in
  // distributed mode) and what adaptive clipping needs.
  struct DpSum {
    // Plain rounds: the exact integer sum, which the release noises
    // (aggregation::CentralDpRelease).
    std::optional<aggregation::ExactSum> exact;
    // Secure rounds: the decoded sum, already noised (by the clients, or central noise on the
    // unmasked integers).
    std::vector<double> sum;
    int64_t reports = 0;                          // deltas in the sum
    int64_t unclipped = 0;                        // exact count of unclipped bits (central)
    std::optional<double> noised_centered_count;  // distributed, with adaptive clipping
  };
  absl::Status SetUpPrivacy();
  // Epsilon after `steps` more rounds, for the budget check.
  absl::StatusOr<double> EpsilonAfter(int64_t steps) const;
  // The protocol of round `round` among `num_clients` assigned clients.
  absl::StatusOr<secagg::ProtocolConfig> RoundProtocolConfig(int round, int64_t num_clients,
                                                             int64_t length) const;
  // Refuses at start-up, not in round 1, a protocol that cannot run with as many clients as a
  // round may assign.
  absl::Status CheckProtocolSizes(int64_t length) const;
  // DP under secure aggregation: every client encodes its clipped delta with weight 1 (and its
  // noise share in distributed mode). nullopt (with result.aborted set) when the round aborted.
  absl::StatusOr<std::optional<DpSum>> RunDpSecureAggregation(
      int round, double clip_norm, const std::vector<int64_t>& participants,
      const std::vector<std::optional<secagg::ClientPhase>>& drop_at, const TrainFunction& train,
      RoundResult& result, int64_t& trained, double& weighted_loss, double& norm_sum);
  // Several processes: replaces each process's partial aggregate and totals by the sum over all.
  absl::Status MergeAcrossProcesses(std::unique_ptr<aggregation::Aggregator>& aggregate,
                                    DpSum& dp_sum, int64_t& examples, int64_t& trained,
                                    double& weighted_loss, double& norm_sum, int64_t& attackers,
                                    int64_t& refused);
  // Releases the round's average from the sum (adding central noise) and updates the clip.
  // A plain round's upload of `client`: with plan.compression, encodes update.delta through the
  // client's encoder and replaces it with what the coordinator decodes and clips
  // (RoundCoordinator::SubmitCompressedUpdate). Returns the upload stream's bytes.
  // An attacker's encoder does not clip (clip_on_device false); the coordinator's clip applies.
  absl::StatusOr<int64_t> CompressAsUploaded(int round, int64_t client,
                                             const client::TrainingPlan& plan, int64_t weight,
                                             bool clip_on_device, client::ClientUpdate& update);
  absl::StatusOr<std::vector<float>> ReleaseDpAverage(int round, double clip_norm,
                                                      const DpSum& dp_sum, RoundResult& result);
};

}  // namespace fedkit::simulation

#endif  // FEDKIT_SIMULATION_SIMULATOR_H_
