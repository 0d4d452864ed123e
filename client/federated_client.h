// The device library's main entry point: takes part in federated training until the run ends.
#ifndef FEDKIT_CLIENT_FEDERATED_CLIENT_H_
#define FEDKIT_CLIENT_FEDERATED_CLIENT_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "client/coordinator_channel.h"
#include "client/global_model_store.h"
#include "client/local_trainer.h"
#include "client/model_source.h"
#include "client/round_telemetry.h"
#include "compression/update_codec.h"
#include "data/examples.h"
#include "models/model.h"

namespace fedkit::client {

// How to reach a coordinator over gRPC.
struct ConnectionOptions {
  std::string server;           // "host:port"
  bool insecure = false;        // plaintext; only when explicitly asked for
  std::string tls_ca_file;      // PEM of the CA that signed the server's certificate
  std::string tls_cert_file;    // client certificate for mutual TLS (optional)
  std::string tls_key_file;     // its private key
  std::string tls_server_name;  // override of the name checked against the certificate (tests)
  std::string bearer_token;     // sent as "authorization: Bearer <token>" (optional)
  absl::Duration call_timeout = absl::Seconds(60);
};

// Opens a gRPC channel to the coordinator. INVALID_ARGUMENT naming the option for missing files or
// inconsistent settings (e.g. neither TLS CA nor insecure). Does not connect yet.
absl::StatusOr<std::unique_ptr<CoordinatorChannel>> ConnectGrpc(const ConnectionOptions& options);

struct FederatedClientOptions {
  std::string client_id;  // stable device id
  // This device's index, mixed into its local-training seed exactly as the simulator mixes a
  // virtual client's index, so a run over the network can reproduce a simulation bit for bit.
  int64_t client_index = 0;
  // Reconnection after transport errors: exponential backoff with full jitter, capped.
  absl::Duration initial_backoff = absl::Milliseconds(200);
  absl::Duration max_backoff = absl::Seconds(30);
  // Give up after this long without any successful call (0 = never).
  absl::Duration give_up_after = absl::Minutes(10);
  uint64_t jitter_seed = 0;
  // With the constructor that takes a model: if set, assignments naming another model are
  // FAILED_PRECONDITION; also advertised in capabilities.model_names at check-in. (With a
  // ModelSource, the source decides.)
  std::string model_name;
  // Distributed DP: draw this device's noise share from a stream seeded by
  // privacy::ClientNoiseSeed(dp_noise_seed, round, client_index), as the simulator does with its
  // --seed, to reproduce a simulation; unset: the CSPRNG. Anyone who knows the seed can remove the
  // noise: tests only.
  std::optional<uint64_t> dp_noise_seed;
  // Receives one line per round and per notable event (waits, retries); empty = silent.
  std::function<void(absl::string_view)> log;
  // Send this device's measurements of each round (client/round_telemetry.h: training time,
  // throughput, peak memory, model load time, bytes, CPU time, energy) in the upload header, plain
  // and masked. They carry no training data; the coordinator keeps only their distribution.
  bool send_telemetry = true;
  // Where the measurements come from; null: LinuxDeviceProbe (/proc/self, RAPL). Tests inject.
  std::shared_ptr<DeviceProbe> telemetry_probe;

  // Device conditions: whether the device may take part now, as the app knows it (charging, on an
  // unmetered network, idle, battery above a level, ...); empty = always. Called on Run()'s thread
  // before each check-in, after each download and after each minibatch of local training; it
  // must be cheap and must not throw; of this client it may call only the calls any thread may
  // (LatestModel, minibatches_trained, rounds_contributed, Cancel). Not eligible before a check-in:
  // the client does not call the coordinator, and asks again after initial_backoff, doubling up to
  // max_backoff (the wait does not count towards give_up_after; Cancel() interrupts it). Not
  // eligible once assigned (after the download, or mid-training: training stops after the current
  // minibatch): the client tells the coordinator it drops out (Decline DEVICE_NOT_ELIGIBLE), which
  // then no longer waits for it, uploads nothing, and checks in again once eligible.
  std::function<bool()> eligibility;

  // Device limits, in bytes; 0 = unknown / unlimited. Advertised at check-in (the coordinator
  // assigns no model larger than max_model_bytes, nor than memory_bytes), and enforced here: an
  // assignment whose model needs more than max_model_bytes (4 bytes per parameter, or its
  // artifact's size if larger) is refused: RESOURCE_EXHAUSTED from Run(), Decline
  // ARTIFACT_TOO_LARGE to the coordinator, nothing downloaded. Guideline classes for edge devices
  // (the model's bytes): high-end phone ~100 MB, mid-range phone ~30 MB, IoT board ~5 MB,
  // microcontroller ~500 KB.
  int64_t max_model_bytes = 0;
  int64_t memory_bytes = 0;

  // Where the last good global model is kept (client/global_model_store.h); empty = in memory only.
  // Read at construction (a missing or corrupt file is logged and ignored), replaced after each
  // verified download.
  std::string model_dir;
};

// The bytes a model of `model_size` parameters (and an artifact of `artifact_bytes`, 0 if none)
// needs on a device: max(4 x model_size, artifact_bytes). The coordinator uses the same rule.
int64_t ModelBytes(int64_t model_size, int64_t artifact_bytes);

// Loads a global model snapshot's parameters into `model`, which must have the snapshot's layout
// (names and shapes): the app's own instance of the architecture, e.g. models::CreateModel of
// snapshot.model_name, for inference. FAILED_PRECONDITION naming the difference when the layouts
// differ; INTERNAL if LibTorch fails. Any thread (the model is the caller's).
absl::Status LoadGlobalModel(const GlobalModelSnapshot& snapshot, models::Model& model);

// Runs the loop: (wait until the device is eligible,) check in; if told to retry, wait (as told);
// if assigned, download the model, train with LocalTrainer within the plan's budget, upload
// (retrying the same upload after a transport error; the coordinator treats a repeat as a duplicate
// and does not count it twice); repeat until the coordinator says the run is finished. Thread-safe:
// Run() on one thread, Cancel() from any other.
class FederatedClient {
 public:
  // The model must match what the coordinator assigns (same architecture): a registry model
  // (models::CreateModel) or the app's own torch::nn::Module deriving from models::Model (implement
  // forward()). Examples are this device's training data; an app holding LibTorch tensors or a
  // map-style torch dataset converts them with models/tensor_examples.h. No global state; several
  // clients can run in one process.
  FederatedClient(FederatedClientOptions options, std::unique_ptr<CoordinatorChannel> channel,
                  std::shared_ptr<models::Model> model, data::Examples examples);
  // Trains the model `models` gives for each assignment (client/model_source.h); e.g. an
  // AssignedModelSource, which takes the model the coordinator assigns and downloads, verifies
  // and caches TorchScript artifacts.
  FederatedClient(FederatedClientOptions options, std::unique_ptr<CoordinatorChannel> channel,
                  std::unique_ptr<ModelSource> models, data::Examples examples);
  ~FederatedClient();

  // OK when the coordinator finished the run; CANCELLED after Cancel(); the last error when giving
  // up. When the device refuses an assignment it tells the coordinator (Decline, best effort) and
  // returns the refusal, prefixed "round N: ": FAILED_PRECONDITION if the assignment does not fit
  // the model (another model, size or layout mismatch), or the ModelSource's refusal of an
  // artifact (PERMISSION_DENIED not approved, DATA_LOSS hash mismatch, INVALID_ARGUMENT not a
  // usable model, RESOURCE_EXHAUSTED too large, also for a model over options.max_model_bytes).
  // Nothing is trained on a refused assignment. A device that becomes ineligible drops out of the
  // round and goes on (see FederatedClientOptions::eligibility).
  absl::Status Run();

  // Stops Run() promptly (also interrupts a backoff wait). Idempotent.
  void Cancel();

  // Rounds this client has uploaded an accepted update for.
  int64_t rounds_contributed() const { return rounds_contributed_.load(); }

  // Minibatch steps of local training run so far, all rounds (counted as they finish; a step
  // interrupted by the eligibility check or Cancel() counts, as it ran). Any thread.
  int64_t minibatches_trained() const { return minibatches_trained_.load(); }

  // The last good global model: the parameters of the last download that completed and was
  // verified (size and layout as assigned, finite values), or the one stored in model_dir at
  // construction. Never the parameters of a failed or corrupt download, of a refused assignment
  // or artifact, nor a locally (half-)trained model. NOT_FOUND before any. Any thread, also while
  // Run() is running on another (a short lock; the snapshot shares the immutable parameters).
  // Run inference with LoadGlobalModel.
  absl::StatusOr<GlobalModelSnapshot> LatestModel() const ABSL_LOCKS_EXCLUDED(latest_mu_);

 private:
  // ... implementation detail: chosen by the implementer.
  class Backoff;
  // One assignment: download, train, upload. OK to go on checking in; an error ends Run().
  // `traffic_at_check_in`: the channel's traffic before the check-in that brought it.
  absl::Status DoRound(const v1::RoundAssignment& assignment, Backoff& backoff,
                       std::optional<ChannelTraffic> traffic_at_check_in);
  // The model for the assignment from the source, downloading its artifact first if needed.
  // A refusal is declined to the coordinator and returned; *check_in_again (with OK) when the
  // coordinator refused the download (the round is over for this device).
  absl::StatusOr<std::shared_ptr<models::Model>> ResolveModel(const v1::RoundAssignment& assignment,
                                                              Backoff& backoff,
                                                              bool* check_in_again);
  // Tells the coordinator (one attempt; failures are logged) and returns `why` prefixed with the
  // round.
  absl::Status Refuse(const v1::RoundAssignment& assignment, const absl::Status& why);
  // Local training of `model` from the downloaded parameters with the assignment's plan and this
  // device's seed, measured by `telemetry`. Stops after the current minibatch on Cancel()
  // (CANCELLED) or when the device is no longer eligible (*ineligible set, ABORTED).
  absl::StatusOr<ClientUpdate> TrainForRound(const v1::RoundAssignment& assignment,
                                             std::shared_ptr<models::Model> model,
                                             const std::vector<float>& global,
                                             RoundTelemetry& telemetry, bool* ineligible);
  // The header's telemetry (when options_.send_telemetry), the upload itself counted as
  // `upload_payload_bytes` plus the header's serialized size.
  void AddTelemetry(const RoundTelemetry& telemetry, int64_t upload_payload_bytes,
                    v1::UpdateHeader& header) const;
  // The delta encoded under the plan's compression (compression/update_codec.h), through this
  // device's encoder (which keeps top-k / random-k's error feedback across rounds).
  // FAILED_PRECONDITION for a spec the device cannot use.
  absl::StatusOr<std::string> EncodeUpdate(const v1::RoundAssignment& assignment,
                                           absl::Span<const float> delta);
  // The rest of a round with secure aggregation, after the download: key exchange, training,
  // masked upload, unmasking. OK to go on checking in (also when the round's protocol aborted).
  absl::Status DoSecureRound(const v1::RoundAssignment& assignment,
                             std::shared_ptr<models::Model> model, const std::vector<float>& global,
                             Backoff& backoff, RoundTelemetry& telemetry);
  // One secure aggregation step or poll: retried after transport errors, and (polls) after each
  // retry_later until the phase's answer arrives. Sets *ended_round (and returns an empty
  // response) when the coordinator no longer wants this client in the round: a refusal, or the
  // protocol aborted. Errors are what Run() should return (cancelled, gave up).
  absl::StatusOr<v1::SecAggResponse> SecureAggregationCall(const v1::SecAggRequest& request,
                                                           absl::string_view what, Backoff& backoff,
                                                           bool* ended_round);
  // After a failed call: waits (backoff) and returns OK to retry, or the status Run() returns.
  absl::Status RetryAfter(const absl::Status& error, absl::string_view what, Backoff& backoff);
  // Waits `duration` unless cancelled first; false when cancelled.
  bool Wait(absl::Duration duration);
  // options_.eligibility(), or true without one.
  bool Eligible() const;
  // Before a check-in: waits (backoff, not calling the coordinator) until the device is eligible.
  // OK when eligible; CANCELLED after Cancel().
  absl::Status WaitUntilEligible(Backoff& backoff);
  // The device became ineligible during `assignment`: tells the coordinator (Decline
  // DEVICE_NOT_ELIGIBLE, one attempt) and returns OK to go on checking in.
  absl::Status DropOut(const v1::RoundAssignment& assignment);
  // A download completed and was verified: it becomes LatestModel() and is stored in model_dir.
  void KeepGlobalModel(const v1::RoundAssignment& assignment, const ParameterLayout& layout,
                       const std::vector<float>& global);
  void Log(absl::string_view line) const;

  FederatedClientOptions options_;
  std::unique_ptr<CoordinatorChannel> channel_;
  std::unique_ptr<ModelSource> models_;
  std::shared_ptr<DeviceProbe> probe_;  // options_.telemetry_probe, or a LinuxDeviceProbe
  data::Examples examples_;
  absl::Notification cancelled_;
  std::atomic<int64_t> rounds_contributed_{0};
  std::atomic<bool> cancel_requested_{false};
  int64_t last_counted_round_ = -1;                    // used by Run() only
  std::optional<compression::UpdateEncoder> encoder_;  // used by Run() only
  std::atomic<int64_t> minibatches_trained_{0};
  std::unique_ptr<GlobalModelStore> store_;  // set with options_.model_dir; used by Run() only
  mutable absl::Mutex latest_mu_;
  std::optional<GlobalModelSnapshot> latest_ ABSL_GUARDED_BY(latest_mu_);
};

}  // namespace fedkit::client

#endif  // FEDKIT_CLIENT_FEDERATED_CLIENT_H_
