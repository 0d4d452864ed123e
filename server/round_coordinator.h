// The coordinator's round state machine, without transport: driven by "a client said X" and "time
// passed" events with the time passed in, so tests and the simulator drive it without sockets or
// sleeps. The gRPC service is a thin adapter over this class.
#ifndef FEDKIT_SERVER_ROUND_COORDINATOR_H_
#define FEDKIT_SERVER_ROUND_COORDINATOR_H_

#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/btree_map.h"
#include "absl/container/btree_set.h"
#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "aggregation/aggregator.h"
#include "aggregation/robust.h"
#include "aggregation/server_optimizer.h"
#include "aggregation/staleness.h"
#include "artifacts/signing.h"
#include "compression/download_codec.h"
#include "compression/secagg_quantization.h"
#include "compression/spec.h"
#include "core/parameter_layout.h"
#include "fedkit/v1/checkpoint.pb.h"
#include "fedkit/v1/coordinator.pb.h"
#include "privacy/adaptive_clipping.h"
#include "privacy/dp_setup.h"
#include "privacy/noise.h"
#include "privacy/rdp_accountant.h"
#include "privacy/secagg/encoding.h"
#include "server/device_telemetry.h"
#include "server/encoded_model_cache.h"
#include "server/participation.h"
#include "server/privacy_ledger.h"
#include "server/secure_aggregation_round.h"

namespace fedkit::server {

struct CoordinatorOptions {
  std::string model_name;
  // The model file devices download when they do not hold it (its hash, size and signature; the
  // bytes are served by the transport, see server/artifact_store.h). Sent in every assignment.
  std::optional<v1::ModelArtifact> artifact;
  int64_t rounds = 1;
  int64_t clients_per_round = 1;  // K: the round closes as soon as K updates are in
  // The fewest clients a round starts with (after the selection window) and commits with (at the
  // deadline).
  int64_t min_clients = 1;
  double over_select = 0.0;  // assign ceil(K * (1 + over_select)) clients
  // A round samples at once only from at least this many waiting devices (Flower's
  // min_available_clients): with fewer, it waits for the selection window. 0, or anything up to the
  // over-selected target, means the target. Set it to the fleet's size to sample each round from
  // every device rather than from the first to check in.
  int64_t min_available = 0;
  absl::Duration round_timeout = absl::Seconds(600);
  // Once min_clients are waiting (but fewer than the over-selected target), start with those
  // waiting after this. A round started with fewer than K closes when all its clients reported.
  absl::Duration selection_timeout = absl::Seconds(30);
  // Waiting clients are told to come back after this; a waiting client not heard from for
  // 3 x retry_interval + 10 s is dropped from the pool.
  absl::Duration retry_interval = absl::Seconds(1);
  // The most devices waiting at once; a new device beyond it is refused RESOURCE_EXHAUSTED (reason
  // "pool_full") with a retry hint. Devices already waiting keep their place. 0 = unlimited.
  int64_t max_waiting = 100000;
  v1::TrainingPlan plan;  // sent to every assigned client (run_seed included)
  aggregation::ServerOptimizerOptions server_optimizer;
  int64_t max_examples_per_client = aggregation::kDefaultMaxWeight;  // larger counts are refused
  // Relative slack on the clip-norm check (float rounding).
  double clip_tolerance = aggregation::kDefaultClipTolerance;
  // Without a clip norm, updates with a coordinate beyond +/- this are refused: the range of the
  // exact fixed-point sum (aggregation/aggregator.h).
  double max_update_value = aggregation::kDefaultMaxUpdateValue;
  // Secure aggregation of every round (needs plan.clip_norm > 0). The round then runs the protocol
  // with all assigned clients and closes when it completes, not at K uploads; weights are capped
  // at max_examples_per_client.
  std::optional<SecureAggregationSettings> secure_aggregation;
  // User-level differential privacy, DP-FedAvg (privacy/dp_setup.h: the simulator's settings and
  // derivation): every delta is clipped to the round's clip norm and weighs 1, and the release is
  // (sum + noise) / clients_per_round. Central: the coordinator adds the noise (to the unmasked
  // sum under secure aggregation). Distributed (needs secure aggregation): the devices add noise
  // shares before masking, and a round with fewer masked inputs than the noise is sized for is
  // abandoned before unmasking. Adaptive clipping: plan.clip_norm is the initial clip; devices
  // report whether their delta was unclipped (in the header, or as the encoded count under secure
  // aggregation) and the clip moves each round. Needs plan.clip_norm > 0 and noise_multiplier > 0.
  // Central noise is the discrete Gaussian on a fixed-point grid, added to the exact integer sum
  // (privacy/central_discrete_noise.h): no floating-point noise is released.
  //
  // Sampling and accounting under DP. The sample is drawn with a seed from the CSPRNG (or, tests
  // only, from dp_noise_seed), not from plan.run_seed, which every device receives: the plan
  // reveals nothing about who was sampled. The seed goes to the operator's records only (the
  // checkpoint's history and RoundParticipation::sampling_seed). A round samples only when at
  // least `population` devices are waiting (not after the selection window with fewer; min_clients
  // still bounds the commit), and the accountant composes the Poisson-subsampled Gaussian at the
  // round's real rate q = (clients assigned, over-selection included: any of them may be summed) /
  // (devices waiting when it was sampled) <= ceil(K (1 + over_select)) / population. The sampling
  // is uniform without replacement among the waiting devices; treating it as Poisson with that
  // rate is the usual approximation, as in TensorFlow Federated's tutorials. Create refuses a
  // population below the over-selected clients per round (INVALID_ARGUMENT naming `population`,
  // `clients_per_round` and `over_select`, payload privacy::kDpFieldPayload = "population").
  std::optional<privacy::DpSettings> dp;
  int64_t population = 0;  // devices that may be sampled; a DP round waits for this many
  // Draw the DP noise from streams seeded per round by privacy::ValueNoiseSeed(dp_noise_seed,
  // round) and CountNoiseSeed (the simulator's, with its --seed), and the DP sample by
  // privacy::DpSamplingSeed, to reproduce a simulation; unset: the CSPRNG. Anyone who knows the
  // seed can subtract the noise: tests only.
  std::optional<uint64_t> dp_noise_seed;
  // How model downloads are encoded (compression/download_codec.h; ModelChunk.encoding): float32
  // is exact; float16 and quantize:8 halve and quarter the bytes, and every device trains from
  // the decoded model (within the encoding's bound of the global model) while the coordinator
  // keeps and updates the exact one. A model float16 cannot hold is served in float32, logged.
  compression::DownloadEncoding download_encoding = compression::DownloadEncoding::kFloat32;
  // How a plain round aggregates its updates (aggregation/robust.h, with the value bound and
  // max_examples_per_client as the weight cap): mean (weighted FedAvg) or a Byzantine-robust
  // aggregator, which keeps every update of the round in memory until it commits (clients per
  // round x the model's floats). Anything but mean needs every update in the clear:
  // INVALID_ARGUMENT (naming `aggregator`) with secure_aggregation or dp, and for krum:F or
  // multi-krum:F,M unless clients_per_round >= 2F + 3. A round that closes with fewer updates than
  // its aggregator needs (Krum's 2F + 3, e.g. at the deadline with min_clients below it) is
  // abandoned and started again (refusal reason "aggregator_too_few_updates"), not fatal.
  aggregation::AggregatorSpec aggregator;
  // FedBuff (Nguyen et al., AISTATS 2022; aggregation/staleness.h), buffered asynchronous
  // aggregation, instead of synchronous rounds. A device that checks in is assigned at once while
  // fewer than `concurrency` (C) assignments are in flight; it trains from the model current then
  // (its assignment's `round` is that model's version + 1) and uploads whenever it is done, each
  // within round_timeout of its assignment. Every `buffer_size` (K) updates from K distinct
  // devices make one commit ("round" in history, metrics and checkpoints): the update of a device
  // that trained from version v, arriving when version u is current, is s = u - v stale and
  // enters the buffer as n w(s) delta with weight n (n its capped example count, w the staleness
  // weighting), so the commit applies sum n_i w(s_i) delta_i / sum n_i through the server
  // optimizer, as FedBuffSimulator does. A device whose update is in the current buffer is told to
  // retry until the buffer commits. While a commit's evaluation and checkpoint run no device is
  // assigned (a checkpoint is durable before any device sees its model) but uploads are still
  // taken into the next buffer; a full buffer refuses more (UNAVAILABLE with a retry hint, reason
  // `buffer_full`) until it commits. The first assignment waits until min_available devices are
  // waiting (0: at once), so that a run starts with its fleet rather than with the first device;
  // clients_per_round, min_clients and selection_timeout are not used. The coordinator holds the
  // versions assignments in flight were given (at most C + 1 models); with a download_encoding
  // other than float32, a download of an older version than the last encoded one encodes it again
  // (EncodedModelCache holds one model's encoding).
  //
  // With secure_aggregation, a buffer is a cohort: the coordinator cannot weigh or even see one
  // update, and the protocol needs its K members to agree keys before any of them uploads, so a
  // buffer's K devices are chosen together (sampled from those waiting, as a synchronous round's,
  // once K are waiting and K slots of C are free) and run one SecureAggregationRound among
  // themselves, from the model current when the cohort formed; up to C / K cohorts run at once,
  // each with its own protocol, phases and deadlines (round_timeout for the masked upload,
  // phase_timeout for the others). A cohort whose unmasking succeeds commits its survivors'
  // weighted average times w(s), s the commits since the cohort formed (every member trained from
  // the same version, so this is the plain buffer's sum n_i w(s) delta_i / sum n_i); one that
  // aborts, or whose sum fails its checks, is dropped alone (refusal reason as in a synchronous
  // round) and its devices may be assigned again. A member that declines is withdrawn from its
  // cohort's protocol. With over_select a cohort has K' = ceil(K (1 + over_select)) devices and the
  // first K masked inputs close its upload phase (the others drop out), so that a cohort need not
  // wait for its slowest device. Cohorts in flight are not checkpointed: a restart loses them, as
  // it loses a plain buffer. Create refuses (INVALID_ARGUMENT naming `fedbuff` and the other
  // field) dp, a robust aggregator and over_select without secure_aggregation, and settings
  // ValidateFedBuffSettings refuses; with secure_aggregation, also a concurrency below K'.
  std::optional<aggregation::FedBuffSettings> fedbuff;
};

// Round history entry, also what GetStatus and the metrics report.
struct RoundOutcome {
  int64_t round = 0;
  int64_t participants = 0;
  int64_t assigned = 0;  // devices assigned the round, over-selection included
  int64_t examples = 0;
  double train_loss = 0.0;
  double seconds = 0.0;  // from round start to commit
  std::optional<double> accuracy;
  std::optional<double> loss;
  std::optional<double> epsilon;  // DP: privacy spent so far (at the settings' delta)
  // DP: the round's sampling rate q as accounted, and the CSPRNG seed its sample was drawn with
  // (operator-side only: in the checkpoint, never in GetStatus or to devices).
  std::optional<double> sampling_rate;
  std::optional<uint64_t> sampling_seed;
  // Adaptive clipping: the clip the round's devices used, and the noised fraction of unclipped
  // updates that set the next one.
  std::optional<double> clip_norm;
  std::optional<double> unclipped_fraction;
  // Mean bytes per device of the round's messages (proto/wire_sizes.h): sent (update streams,
  // secure aggregation requests) over the devices whose upload was accepted, and received (model
  // streams at the default chunk size, secure aggregation responses) over the devices that
  // downloaded the model.
  double upload_bytes = 0.0;
  double download_bytes = 0.0;
  // The device telemetry of the round's accepted uploads, as distributions (no client ids;
  // server/device_telemetry.h). Unset when no upload carried any.
  std::optional<v1::DeviceTelemetrySummary> device_telemetry;
  // FedBuff: the mean and largest staleness of the commit's updates (unset in synchronous rounds).
  std::optional<double> staleness_mean;
  std::optional<int64_t> staleness_max;
};

// Hooks the binary plugs in; all optional. privacy_released, evaluate, save_checkpoint and
// round_committed run in that order on the thread whose call committed the round, after the
// coordinator's lock is released (RPCs meanwhile get prompt answers: devices are told to retry),
// one round at a time and in round order. No later round starts, and the run is not finished(),
// until they have returned: a round's checkpoint is durable before any device sees the next round's
// model.
struct CoordinatorHooks {
  // Evaluates new global parameters: (accuracy, loss).
  std::function<absl::StatusOr<std::pair<double, double>>(absl::Span<const float>)> evaluate;
  // DP: records the released round durably (PrivacyLedger::Append: write and fsync) before its
  // checkpoint is saved and before any device sees the next model; an error stops the run, as
  // save_checkpoint's does.
  std::function<absl::Status(const PrivacyLedgerRecord&)> privacy_released;
  // Persists a checkpoint; an error stops the run (the round is not acknowledged as committed).
  std::function<absl::Status(const v1::Checkpoint&)> save_checkpoint;
  // Observes each committed round (metrics file, logs).
  std::function<void(const RoundOutcome&)> round_committed;
  // Observes who took part in each committed round (server/participation.h), just before
  // round_committed. Recorded only when set (the pool's ids cost memory with large fleets).
  std::function<void(const RoundParticipation&)> round_participation;
  // Observes each counted decline (once per assignment; client id already validated), on the
  // declining call's thread, also outside the lock.
  std::function<void(const v1::DeclineRequest&)> assignment_declined;
  // Lines for the operator's log, each naming the client caught misbehaving in secure aggregation
  // or why a round was abandoned (a forged weight, a non-finite model, the protocol's abort). Run
  // outside the lock, on the thread of the call that caused them (or of a later call).
  std::function<void(const std::string&)> log;
  // Observes each closed phase of a secure aggregation round (its round number and stats), in
  // order, outside the lock like `log`.
  std::function<void(int64_t, const SecAggPhaseStats&)> secagg_phase_closed;
};

// What one client can do to a round under these options, in words naming the options' fields in
// backquotes (a binary maps them to its flags, cli/flag_errors.h): without a clip norm its delta
// is bounded only by `max_update_value`, and with a large `max_examples_per_client` its weight can
// dwarf everyone else's (from kLargeWeightCap on). Empty when neither applies (DP rounds weigh
// every client 1 and clip).
inline constexpr int64_t kLargeWeightCap = int64_t{1} << 16;
std::vector<std::string> SingleClientInfluenceWarnings(const CoordinatorOptions& options);

// Refusals (GetStatus' refusals, by reason) include what secure aggregation caught, each also
// logged through hooks.log naming the client: `secagg_bad_ciphertext` (a client's share ciphertext
// reported bad: it is excluded when its input is not yet summed), `secagg_bad_share` (a revealed
// share off the committed polynomial), and per round abandoned `secagg_forged_weight` (the decoded
// total weight outside [included, included x max_examples_per_client]: some client encoded a
// weight it may not claim; the sum does not say which), `secagg_sum_out_of_range` (the decoded
// weighted sum's norm beyond total weight x clip norm: some client's delta was not clipped) and
// `non_finite_model` (plain or secure rounds: the average or the new global model has a NaN or an
// infinity; the model and the optimizer's state are left as they were), and
// `aggregator_too_few_updates` (a plain round closed with fewer updates than a Krum aggregator
// needs; logged, and the round starts again).
//
// Thread safety: thread-safe. Every public call may come from any thread (the gRPC service calls
// it from its RPC threads, the binary's ticker calls Tick); one mutex guards the round state and is
// never held while a hook runs, nor while a secure round's sum is reconstructed (unmasking expands
// every survivor's masks over the whole model: RPCs meanwhile are told to retry).
class RoundCoordinator {
 public:
  // `initial_parameters` must match `layout`. INVALID_ARGUMENT for inconsistent options.
  static absl::StatusOr<std::unique_ptr<RoundCoordinator>> Create(
      const CoordinatorOptions& options, ParameterLayout layout,
      std::vector<float> initial_parameters, CoordinatorHooks hooks);

  // Restores rounds completed, parameters, optimizer state and history from a checkpoint written by
  // a coordinator with the same model and optimizer. Call before any client event.
  // FAILED_PRECONDITION for a checkpoint of another run (model, layout, optimizer, seed, rounds);
  // INVALID_ARGUMENT for values no run writes (a parameter or optimizer state that is not finite).
  absl::Status Restore(const v1::Checkpoint& checkpoint);

  // DP with a privacy ledger (server/privacy_ledger.h): call with its records after Restore, or
  // without Restore on a fresh start, and before any client event. FAILED_PRECONDITION when the
  // ledger records a released round beyond rounds_completed() (resuming from an older checkpoint,
  // or none, would re-run released rounds with their privacy unaccounted), naming the rounds and
  // `allow_privacy_rollback`, unless allow_privacy_rollback is true. Then (and always) the
  // accountant holds at least the ledger's spent privacy: order by order, the larger of its RDP
  // and that of the ledger's records composed. FAILED_PRECONDITION without DP.
  absl::Status ResumePrivacyLedger(absl::Span<const PrivacyLedgerRecord> released,
                                   bool allow_privacy_rollback);

  // A device checks in: returns its assignment (again, if it already has one this round), or when
  // to come back, or that the run is over. INVALID_ARGUMENT for a malformed client id.
  // `identity` is who the transport authenticated (server/identity.h; empty: the client itself):
  // outside DP, an identity holding many waiting ids gets at most its fair share of a round's
  // sample (CapPerIdentity in server/client_sampler.h). RESOURCE_EXHAUSTED (with a retry hint)
  // when the waiting pool is full. A device whose capabilities say it cannot hold the model
  // (max_model_bytes or memory_bytes positive and below model_bytes()) is told to retry later (10
  // minutes, or retry_interval if longer) with a reason saying so, counted as refusal
  // `model_too_large`, and neither assigned nor put in the pool.
  absl::StatusOr<v1::CheckInResponse> CheckIn(const v1::CheckInRequest& request, absl::Time now,
                                              absl::string_view identity = "");

  // The current round's global model for an assigned client, and its encoding for the download
  // (options.download_encoding; the first download of a model encodes it, outside the lock).
  // FAILED_PRECONDITION if the assignment is not current or not this client's. Counts the
  // download's bytes (proto/wire_sizes.h, in chunks of the default size) in the round's traffic.
  struct ModelSnapshot {
    int64_t round = 0;
    std::shared_ptr<const std::vector<float>> parameters;
    // kFloat32: send `parameters`. Otherwise send `encoded` (never null then).
    compression::DownloadEncoding encoding = compression::DownloadEncoding::kFloat32;
    std::shared_ptr<const std::string> encoded;
  };
  absl::StatusOr<ModelSnapshot> GetModel(const v1::GetModelRequest& request, absl::Time now);

  // Validates an update and folds it into the round's aggregate at once (with the mean aggregator
  // the delta is not kept: memory per round is one aggregate, whatever the number of clients; a
  // robust aggregator keeps a copy until the round ends). OK (duplicate=false) when
  // counted; OK (duplicate=true) when the identical update was already counted (recognised by
  // its SHA-256 digest, computed before the lock is taken); otherwise a status naming the reason
  // (FAILED_PRECONDITION for late/unassigned/wrong-round, ALREADY_EXISTS for a different second
  // update, INVALID_ARGUMENT for shape/NaN/norm/range/example-count problems). Refusals are
  // counted by reason. The header's device telemetry, if any, joins the round's distribution
  // when the update is counted; invalid telemetry (negative, NaN, absurd) is ignored and counted
  // (GetStatus' device_telemetry_invalid), never a reason to refuse the update.
  absl::StatusOr<v1::UploadResponse> SubmitUpdate(const v1::UpdateHeader& header,
                                                  absl::Span<const float> delta, absl::Time now);

  // Checks an upload's header before its body is read or any buffer is sized by it: OK when it
  // names this client's assignment in the current round (a retry of a counted update included);
  // otherwise the FAILED_PRECONDITION SubmitUpdate / SubmitMaskedUpdate would give, counted.
  absl::Status CheckUploadHeader(const v1::UpdateHeader& header);

  // A compressed upload's header (plan.compression): as CheckUploadHeader, and then
  // FAILED_PRECONDITION ("not_compressed") when the run's plan does not compress,
  // INVALID_ARGUMENT ("wrong_shape") unless total_size is the model's size and compressed_size is
  // positive, RESOURCE_EXHAUSTED ("oversized") for a compressed_size beyond
  // compression::MaxEncodedSize of the plan's spec; counted. A transport calls it before buffering
  // compressed_size bytes.
  absl::Status CheckCompressedUploadHeader(const v1::UpdateHeader& header);
  // A compressed upload: decodes `encoded` under the plan's spec (compression/update_codec.h;
  // INVALID_ARGUMENT, counted "malformed_compression", for bytes that do not decode), clips the
  // decoded delta to the round's clip norm when there is one (stochastic rounding may push a
  // clipped delta's norm a little over it; the clip keeps every update's L2 sensitivity the clip
  // norm), then as SubmitUpdate. Decoding and clipping run before the lock is taken.
  absl::StatusOr<v1::UploadResponse> SubmitCompressedUpdate(const v1::UpdateHeader& header,
                                                            const std::string& encoded,
                                                            absl::Time now);

  // Secure aggregation steps and polls from an assigned client (see SecureAggregationRound).
  // FAILED_PRECONDITION when the assignment is not current or the round has no secure aggregation.
  absl::StatusOr<v1::SecAggResponse> SecureAggregationStep(const v1::SecAggRequest& request,
                                                           absl::Time now);
  // The masked upload of a secure aggregation round: the packed masked vector. Device telemetry
  // as for SubmitUpdate, when the masked input is accepted.
  absl::StatusOr<v1::UploadResponse> SubmitMaskedUpdate(const v1::UpdateHeader& header,
                                                        const std::string& packed, absl::Time now);

  // A device will not train its assignment, or stopped training it (it refused the artifact, the
  // model does not fit, or DEVICE_NOT_ELIGIBLE: its conditions no longer hold). Counted once per
  // assignment under the reason's name (GetStatus' `declines`); a repeat is OK with duplicate =
  // true. The round no longer waits for a current assignment that declined before its update
  // was in: a plain round commits as soon as K updates are in or every other assigned device has
  // uploaded (with at least min_clients updates; with fewer, nothing more can come and the round
  // is abandoned and starts again), not at its deadline; in a secure aggregation round the client
  // is withdrawn from the protocol (a dropout), so the phase it would have held up closes without
  // it. The declined assignment's uploads are then refused (FAILED_PRECONDITION, reason
  // `declined`) and its device, checking in again, waits for the next round. Accepted for the
  // current round's and the previous round's assignments (a slow download may outlive its round);
  // FAILED_PRECONDITION for an assignment that is not this client's or unknown, INVALID_ARGUMENT
  // for a malformed client id or an unknown reason. May commit the round (its hooks then run on
  // this thread, outside the lock).
  absl::StatusOr<v1::DeclineResponse> Decline(const v1::DeclineRequest& request, absl::Time now);

  // Time passed: closes or abandons a round past its deadline, starts a round when a selection
  // window ends, drops silent waiting clients.
  absl::Status Tick(absl::Time now);

  // Shutting down (the binary's SIGTERM): from now on no round starts. A round being committed
  // (privacy record, evaluation, checkpoint, hooks) or a secure round being unmasked finishes
  // first (on this thread if no other has taken it); then the round in progress, if any, is
  // abandoned, logged through hooks.log (its devices' uploads are refused as late and they check in
  // again with whoever serves next), and a checkpoint of the state left is saved through
  // save_checkpoint when set (the same rounds as the last commit's: a restart resumes exactly
  // there). Returns the rounds completed; the save_checkpoint hook's error if it fails. Blocks only
  // for that commit or unmasking and the checkpoint; RPCs meanwhile get prompt answers. Idempotent;
  // any thread.
  absl::StatusOr<int64_t> Drain() ABSL_LOCKS_EXCLUDED(mu_);

  // Counts a refusal that happened before the update reached SubmitUpdate (e.g. the transport
  // refused an oversized or malformed stream).
  void CountRefusal(absl::string_view reason);

  v1::GetStatusResponse Status(absl::Time now) const;
  // What the coordinator waits for, in words (also GetStatus' waiting_for and the retry reason
  // waiting devices get): clients to start a round, updates to close it, or a protocol phase.
  std::string WaitingFor(absl::Time now) const;
  bool finished() const;
  int64_t rounds_completed() const;
  int64_t model_size() const { return static_cast<int64_t>(layout_.size()); }
  // The bytes a device needs for the model: max(4 x model_size(), the artifact's size_bytes).
  int64_t model_bytes() const { return model_bytes_; }
  // Whether rounds run secure aggregation (fixed at Create).
  bool uses_secure_aggregation() const { return options_.secure_aggregation.has_value(); }
  // With secure aggregation, the values every masked upload carries: the model and its weight, or
  // under DP the unit-weight encoding's length (the model, plus the unclipped count with adaptive
  // clipping). 0 without secure aggregation.
  int64_t masked_input_length() const;
  const ParameterLayout& layout() const { return layout_; }
  // The plan's update compression (fixed at Create).
  const compression::CompressionSpec& compression() const { return compression_; }
  std::vector<float> global_parameters() const;
  // An error from a hook (e.g. the checkpoint could not be written), which stops the run.
  absl::Status fatal_error() const;
  // Why the run finished early (e.g. the privacy budget), or empty.
  std::string stop_reason() const;

 private:
  enum class Phase { kWaiting, kTraining, kFinished };

  struct Assignment {
    std::string client_id;
    int64_t round = 0;
    // FedBuff: the model it trains from (version round - 1) and its own deadline. Synchronous
    // rounds serve global_ and use round_deadline_.
    std::shared_ptr<const std::vector<float>> model;
    absl::Time deadline = absl::InfiniteFuture();
    // With secure aggregation: the cohort (cohorts_) whose protocol it runs.
    int64_t cohort = 0;
  };

  RoundCoordinator(const CoordinatorOptions& options, ParameterLayout layout,
                   std::vector<float> initial_parameters, CoordinatorHooks hooks,
                   std::unique_ptr<aggregation::ServerOptimizer> optimizer);

  // The public calls that may commit a round: their work under the lock, after which the public
  // call runs FinishCommit without it.
  absl::StatusOr<v1::CheckInResponse> HandleCheckIn(const v1::CheckInRequest& request,
                                                    absl::Time now, absl::string_view identity)
      ABSL_LOCKS_EXCLUDED(mu_);
  absl::StatusOr<v1::UploadResponse> HandleUpdate(const v1::UpdateHeader& header,
                                                  absl::Span<const float> delta, absl::Time now)
      ABSL_LOCKS_EXCLUDED(mu_);
  absl::StatusOr<v1::SecAggResponse> HandleSecureAggregationStep(const v1::SecAggRequest& request,
                                                                 absl::Time now)
      ABSL_LOCKS_EXCLUDED(mu_);
  absl::StatusOr<v1::UploadResponse> HandleMaskedUpdate(const v1::UpdateHeader& header,
                                                        const std::string& packed, absl::Time now)
      ABSL_LOCKS_EXCLUDED(mu_);
  void HandleTick(absl::Time now) ABSL_LOCKS_EXCLUDED(mu_);
  // FedBuff's check-in under the lock (see CoordinatorOptions::fedbuff): the device's assignment,
  // a new one when a slot is free, or when to come back.
  absl::StatusOr<v1::CheckInResponse> BufferedCheckInLocked(const std::string& client_id,
                                                            absl::Time now,
                                                            absl::string_view identity)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // FedBuff: assignments in flight (not uploaded into the buffer, declined or expired).
  int64_t InFlightLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // FedBuff: ends the assignments past their deadline (their uploads are then refused as late).
  void ExpireAssignmentsLocked(absl::Time now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // FedBuff: ends one assignment, remembering its id to call a later upload "late".
  void EndAssignmentLocked(const std::string& assignment_id) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // FedBuff, after a commit: the buffer's devices may be assigned again; a new empty buffer.
  void StartNextBufferLocked(absl::Time now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  bool buffered() const { return options_.fedbuff.has_value(); }
  // Runs a committed round's evaluation, checkpoint and hooks outside the lock, then lets the next
  // round start (or finishes the run). Returns at once if nothing is pending or another thread is
  // already running them.
  void FinishCommit() ABSL_LOCKS_EXCLUDED(mu_);
  // Reconstructs, outside the lock, the sum of each secure cohort whose unmask phase closed, then
  // commits or drops it. Returns at once if no cohort is ready (another thread may be unmasking
  // one).
  void FinishUnmasking(absl::Time now) ABSL_LOCKS_EXCLUDED(mu_);

  // Decline's bookkeeping under the lock (the hook then runs without it); may close the round.
  absl::StatusOr<v1::DeclineResponse> CountDecline(const v1::DeclineRequest& request,
                                                   absl::Time now) ABSL_LOCKS_EXCLUDED(mu_);
  // A plain round: commits once K updates are in, or once every assigned device has uploaded or
  // declined (abandons it then with fewer than min_clients updates).
  void CloseRoundIfCompleteLocked(absl::Time now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void ExpirePoolLocked(absl::Time now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void MaybeStartRoundLocked(absl::Time now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void StartRoundLocked(absl::Time now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void CommitRoundLocked(absl::Time now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // DP under secure aggregation: decodes the unmasked sum, noises it (central) and divides by the
  // fixed denominator; with adaptive clipping also moves the clip (outcome.unclipped_fraction).
  absl::StatusOr<std::vector<float>> ReleaseDpSumLocked(absl::Span<const uint64_t> sum,
                                                        int64_t inputs, RoundOutcome& outcome)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Adaptive clipping's step at the end of a round, from the exact count of unclipped updates
  // (noised here) or from the count the devices already noised (distributed).
  absl::Status UpdateClipLocked(int64_t unclipped, int64_t reports,
                                std::optional<double> noised_centered_count, RoundOutcome& outcome)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // A new, empty aggregate for a plain round: weighted FedAvg, or unit weights under central DP.
  absl::StatusOr<std::unique_ptr<aggregation::Aggregator>> NewAggregateLocked()
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // A new, empty aggregate_ (NewAggregateLocked); false, with fatal_error_ set, if none can be
  // made.
  bool ResetAggregateLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Zeroes what a round (or a FedBuff buffer) sums besides its aggregate: loss, traffic, unclipped
  // count, device telemetry.
  void ClearRoundTotalsLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Keeps in declined_ only the assignments recently_closed_ still names (deduplication).
  void ForgetOldDeclinesLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Central DP with a budget: finishes the run instead of starting a round that would exceed it.
  bool BudgetExhaustedLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Applies the server optimizer to `average`, accounts the round and leaves its evaluation,
  // checkpoint and hooks to FinishCommit (pending_commit_).
  // `aggregated`: the secure round's included clients (else received_'s).
  void CommitAverageLocked(const std::vector<float>& average, RoundOutcome outcome, absl::Time now,
                           std::optional<std::vector<std::string>> aggregated = std::nullopt)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // A secure aggregation cohort (see CoordinatorOptions::fedbuff): the devices of one
  // SecureAggregationRound. A synchronous secure round is one cohort; FedBuff runs several.
  enum class Unmasking { kNone, kReady, kRunning };
  struct SecureCohort {
    int64_t round = 0;  // the round its devices were told: the model version they train from + 1
    std::unique_ptr<SecureAggregationRound> protocol;
    // kReady: its unmask phase closed (SecureAggregationRound::kReadyToFinish); kRunning:
    // FinishUnmasking reconstructs the sum outside the lock, and nothing else calls protocol.
    Unmasking unmasking = Unmasking::kNone;
    size_t phases_queued = 0;  // closed phases passed to pending_phases_
    absl::Time started;
    std::vector<std::string> assignment_ids;
  };
  // FedBuff under secure aggregation: a cohort whose sum was unmasked and checked, waiting for its
  // turn to commit (one commit at a time).
  struct UnmaskedCohort {
    int64_t round = 0;  // as SecureCohort::round
    std::vector<float> average;
    RoundOutcome outcome;
    RoundParticipation participation;
  };
  // Starts the protocol among `clients`; K = clients_per_round (FedBuff: buffer_size) masked
  // inputs close its upload phase.
  absl::StatusOr<std::unique_ptr<SecureAggregationRound>> StartProtocolLocked(
      std::vector<std::string> clients, absl::Time now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The synchronous secure round's cohort; nullptr without one (or under FedBuff).
  SecureCohort* RoundCohortLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  const SecureCohort* RoundCohortLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The cohort of a current assignment; nullptr if none.
  SecureCohort* CohortOfLocked(const std::string& assignment_id) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // A cohort's protocol phase for status and logs ("secagg-unmasking" while FinishUnmasking runs).
  static std::string CohortPhase(const SecureCohort& cohort);
  // Advances a cohort's protocol; when it ends, commits (synchronous), queues its average
  // (FedBuff: unmasked_) or drops it. Does nothing while it is being unmasked.
  void AdvanceCohortLocked(int64_t id, absl::Time now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void AdvanceCohortsLocked(absl::Time now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // A succeeded cohort's average (decoded and checked: weights, norm); sets outcome's examples.
  // On a failed check, the refusal reason in *refusal and the error; else a fatal error.
  absl::StatusOr<std::vector<float>> CohortAverageLocked(const SecureCohort& cohort,
                                                         RoundOutcome& outcome,
                                                         std::string* refusal)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // A cohort that aborted or whose sum was refused: synchronous, the round is abandoned
  // (RefuseRoundLocked); FedBuff, only the cohort ends (its devices may be assigned again).
  void DropCohortLocked(int64_t id, absl::string_view reason, std::string line)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // FedBuff under secure aggregation: when K devices wait and K slots are free, samples a cohort
  // of K from the pool and starts its protocol.
  void MaybeFormCohortLocked(absl::Time now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // FedBuff under secure aggregation: commits the oldest unmasked cohort when no commit is
  // pending.
  void CommitUnmaskedCohortLocked(absl::Time now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  bool AnyCohortUnmaskingLocked(Unmasking state) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The current assignment named by (client, assignment, round), or a refusal.
  absl::Status CheckAssignmentLocked(const std::string& client_id, const std::string& assignment_id,
                                     int64_t round) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The same for a plain round's update (also refuses a plain update in a secure round).
  absl::Status CheckUpdateAssignmentLocked(const v1::UpdateHeader& header)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // A device joins or refreshes its place in the waiting pool; RESOURCE_EXHAUSTED when the pool is
  // full and the device is not in it.
  absl::Status JoinPoolLocked(const std::string& client_id, absl::Time now,
                              absl::string_view identity) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void LeavePoolLocked(const std::string& client_id) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The waiting clients' ids in order (sorted) and, at the same index, their identities.
  std::pair<std::vector<std::string>, std::vector<std::string>> PoolSnapshotLocked() const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void AbandonRoundLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Under quantized secure aggregation: the cohort's unmasked sum decoded
  // (compression/secagg_quantization.h) and checked like DecodeSum's (total weight, norm); sets
  // outcome.examples. On a failed check, the refusal reason in *refusal and the error.
  absl::StatusOr<std::vector<float>> DecodeQuantizedSumLocked(const SecureCohort& cohort,
                                                              RoundOutcome& outcome,
                                                              std::string* refusal)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Counts `reason`, logs `line` and abandons the round (it starts again).
  void RefuseRoundLocked(absl::string_view reason, std::string line)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Counts and logs the culprits a cohort's protocol caught since the last call.
  void ReportCulpritsLocked(SecureCohort& cohort) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Queues a line for hooks_.log; FlushLog runs the hook outside the lock.
  void LogLocked(std::string line) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // GetModel's checks: the assignment is current and the caller's.
  absl::Status CheckModelRequestLocked(const v1::GetModelRequest& request) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void FlushLog() ABSL_LOCKS_EXCLUDED(mu_);
  // Drain's wait: no thread is running a commit's hooks or a secure round's unmasking.
  bool NoCommitOrUnmaskingRunningLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Ends the current round's assignments, remembering their ids to call later uploads "late".
  void CloseAssignmentsLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  v1::RoundAssignment MakeAssignmentLocked(const std::string& assignment_id, absl::Time now) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status RefuseLocked(absl::Status status, absl::string_view reason)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // RefuseLocked for an update that breaks the rules (not finite, over the clip norm or the value
  // range, a bad example count), also logged naming the client.
  absl::Status RefuseClientLocked(const std::string& client_id, absl::Status status,
                                  absl::string_view reason) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  v1::Checkpoint MakeCheckpointLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  v1::CheckInResponse RetryLocked(absl::Duration after, absl::string_view reason) const;
  std::string WaitingForLocked(absl::Time now) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const CoordinatorOptions options_;
  compression::CompressionSpec compression_;  // from options_.plan, set by Create
  // Quantization under secure aggregation (set by Create; each round sets its rotation seed).
  std::optional<compression::SecAggQuantization> secagg_quantization_;
  const ParameterLayout layout_;
  const v1::ParameterLayout layout_proto_;  // layout_ as sent in a model stream
  const CoordinatorHooks hooks_;
  const int64_t target_assignments_;
  const int64_t start_at_;  // waiting devices that start a round at once (under DP, the only way)
  const int64_t model_bytes_;  // see model_bytes()

  mutable absl::Mutex mu_;
  Phase phase_ ABSL_GUARDED_BY(mu_) = Phase::kWaiting;
  int64_t rounds_completed_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t attempt_ ABSL_GUARDED_BY(mu_) = 0;  // restarts of the current round after abandonment
  std::shared_ptr<const std::vector<float>> global_ ABSL_GUARDED_BY(mu_);
  std::unique_ptr<aggregation::ServerOptimizer> optimizer_ ABSL_GUARDED_BY(mu_);
  // Clients waiting to be selected, sorted by id (the sample depends only on who waits), with
  // when they last checked in; and the same entries by time, so expiry costs O(log n) per device
  // expired rather than a scan of the pool on every check-in.
  struct Waiting {
    absl::Time seen;
    std::string identity;  // who the transport authenticated; empty: the client itself
  };
  absl::btree_map<std::string, Waiting> pool_ ABSL_GUARDED_BY(mu_);
  absl::btree_set<std::pair<absl::Time, std::string>> pool_by_time_ ABSL_GUARDED_BY(mu_);
  std::optional<absl::Time> enough_clients_since_ ABSL_GUARDED_BY(mu_);
  // The current round's assignments, by assignment id and by client.
  absl::flat_hash_map<std::string, Assignment> assignments_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<std::string, std::string> assignment_of_client_ ABSL_GUARDED_BY(mu_);
  // Updates counted this round, by client: what is kept of each is its digest (UpdateDigest: the
  // example count and the delta's bytes), enough to recognise a retry. The round's aggregate of
  // them (plain rounds; a secure aggregation round sums inside its cohort's protocol).
  absl::flat_hash_map<std::string, artifacts::Sha256Digest> received_ ABSL_GUARDED_BY(mu_);
  std::unique_ptr<aggregation::Aggregator> aggregate_ ABSL_GUARDED_BY(mu_);
  // The current round's traffic (RoundOutcome::upload_bytes / download_bytes).
  struct Traffic {
    int64_t sent = 0;       // bytes devices sent
    int64_t uploads = 0;    // accepted uploads
    int64_t received = 0;   // bytes devices received
    int64_t downloads = 0;  // model downloads served
  };
  Traffic traffic_ ABSL_GUARDED_BY(mu_);
  EncodedModelCache encoded_models_;          // thread-safe on its own; used outside mu_
  double loss_sum_ ABSL_GUARDED_BY(mu_) = 0;  // of train_loss x weight (1 under central DP)
  // The current round's device telemetry (distributions only), and the updates whose telemetry
  // was ignored as invalid over the whole run of this process.
  DeviceTelemetryDistribution telemetry_ ABSL_GUARDED_BY(mu_);
  int64_t telemetry_invalid_ ABSL_GUARDED_BY(mu_) = 0;
  // The previous round's assignment ids, with the client each belonged to.
  absl::flat_hash_map<std::string, std::string> recently_closed_ ABSL_GUARDED_BY(mu_);
  absl::Time round_started_ ABSL_GUARDED_BY(mu_);
  absl::Time round_deadline_ ABSL_GUARDED_BY(mu_);
  std::vector<RoundOutcome> history_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, int64_t> refusals_ ABSL_GUARDED_BY(mu_);
  std::vector<std::string> pending_log_ ABSL_GUARDED_BY(mu_);
  // Closed secure aggregation phases not yet passed to hooks_.secagg_phase_closed.
  std::vector<std::pair<int64_t, SecAggPhaseStats>> pending_phases_ ABSL_GUARDED_BY(mu_);
  int64_t rounds_abandoned_ ABSL_GUARDED_BY(mu_) = 0;
  bool draining_ ABSL_GUARDED_BY(mu_) = false;  // Drain: no round starts
  std::map<std::string, int64_t> declines_ ABSL_GUARDED_BY(mu_);
  // Declined assignment ids among assignments_ and recently_closed_ (for deduplication).
  absl::flat_hash_set<std::string> declined_ ABSL_GUARDED_BY(mu_);
  // Current assignments that declined before their update was in (the round does not wait for
  // them).
  int64_t declined_this_round_ ABSL_GUARDED_BY(mu_) = 0;
  // FedBuff: assignments made for the current buffer, and its updates' staleness (sum, largest).
  int64_t buffer_assigned_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t staleness_sum_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t staleness_max_ ABSL_GUARDED_BY(mu_) = 0;
  absl::Status fatal_error_ ABSL_GUARDED_BY(mu_);
  // Set at Create, then constant: weighted FedAvg's encoding under secure aggregation (without DP),
  // and what SetUpDp derived (with DP).
  std::optional<secagg::FixedPointEncoding> secagg_encoding_;
  std::optional<privacy::DpSetup> dp_setup_;
  std::optional<privacy::DistributedDpEncodingOptions> dp_encoding_options_;
  // Adaptive clipping's estimator, the clip of the current round, and the unclipped updates counted
  // in it (plain rounds).
  std::optional<privacy::AdaptiveClipping> adaptive_clipping_ ABSL_GUARDED_BY(mu_);
  double round_clip_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t unclipped_ ABSL_GUARDED_BY(mu_) = 0;
  // Secure aggregation cohorts by id (a synchronous round's one, or FedBuff's in flight), the next
  // id, and FedBuff's unmasked cohorts waiting to commit, oldest first.
  std::map<int64_t, SecureCohort> cohorts_ ABSL_GUARDED_BY(mu_);
  int64_t next_cohort_ ABSL_GUARDED_BY(mu_) = 1;
  std::deque<UnmaskedCohort> unmasked_ ABSL_GUARDED_BY(mu_);
  // The current round's pool and assignments (when hooks_.round_participation is set).
  std::optional<RoundParticipation> participation_ ABSL_GUARDED_BY(mu_);
  privacy::RdpAccountant accountant_ ABSL_GUARDED_BY(mu_);
  // DP: the sampling seeds' CSPRNG (unset with dp_noise_seed), and the current round's sampling
  // rate and seed (see CoordinatorOptions::dp).
  std::unique_ptr<privacy::RandomSource> sampling_random_ ABSL_GUARDED_BY(mu_);
  double round_sampling_rate_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t round_sampling_seed_ ABSL_GUARDED_BY(mu_) = 0;
  // DP noise on the sum and on the clipped count (per round when seeded).
  std::unique_ptr<privacy::RandomSource> value_noise_ ABSL_GUARDED_BY(mu_);
  std::unique_ptr<privacy::RandomSource> count_noise_ ABSL_GUARDED_BY(mu_);
  std::string stop_reason_ ABSL_GUARDED_BY(mu_);
  // A round committed under the lock whose evaluation, checkpoint and hooks FinishCommit has yet to
  // run (the snapshot they need), and whether a thread is running them.
  struct PendingCommit {
    RoundOutcome outcome;
    std::shared_ptr<const std::vector<float>> model;
    std::optional<v1::Checkpoint> checkpoint;
    std::optional<RoundParticipation> participation;
    std::optional<PrivacyLedgerRecord> privacy_record;  // DP
  };
  std::optional<PendingCommit> pending_commit_ ABSL_GUARDED_BY(mu_);
  bool commit_running_ ABSL_GUARDED_BY(mu_) = false;
};

// DP's population against a round's over-selected sample (see CoordinatorOptions::dp): OK, or
// INVALID_ARGUMENT naming `population`, `clients_per_round` and `over_select` with the payload
// privacy::kDpFieldPayload = "population". Create runs it; a binary may run it first.
absl::Status ValidateDpPopulation(int64_t population, int64_t clients_per_round,
                                  double over_select);

// Checks a client id: 1..128 characters of [A-Za-z0-9._-].
absl::Status ValidateClientId(absl::string_view client_id);

}  // namespace fedkit::server

#endif  // FEDKIT_SERVER_ROUND_COORDINATOR_H_
