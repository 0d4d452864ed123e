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

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "client/coordinator_channel.h"
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
};

// Runs the loop: check in; if told to retry, wait (as told); if assigned, download the model, train
// with LocalTrainer, upload (retrying the same upload after a transport error; the coordinator
// treats a repeat as a duplicate and does not count it twice); repeat until the coordinator says
// the run is finished. Thread-safe: Run() on one thread, Cancel() from any other.
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
  // usable model, RESOURCE_EXHAUSTED too large). Nothing is trained on a refused assignment.
  absl::Status Run();

  // Stops Run() promptly (also interrupts a backoff wait). Idempotent.
  void Cancel();

  // Rounds this client has uploaded an accepted update for.
  int64_t rounds_contributed() const { return rounds_contributed_.load(); }

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
  // device's seed, measured by `telemetry`.
  absl::StatusOr<ClientUpdate> TrainForRound(const v1::RoundAssignment& assignment,
                                             std::shared_ptr<models::Model> model,
                                             const std::vector<float>& global,
                                             RoundTelemetry& telemetry);
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
};

}  // namespace fedkit::client

#endif  // FEDKIT_CLIENT_FEDERATED_CLIENT_H_
