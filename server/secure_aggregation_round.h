// One round of secure aggregation on the coordinator: the SecAggServer state machine plus what a
// networked round needs around it — client ids mapped to protocol indices, a deadline per phase,
// idempotent retries, and the wire messages. Not thread-safe: RoundCoordinator calls it under its
// lock. No I/O; time is passed in. Misbehaving clients (privacy/secagg/protocol.h) are excluded
// where the protocol can exclude them and reported by client id (TakeNewCulprits).
#ifndef FEDKIT_SERVER_SECURE_AGGREGATION_ROUND_H_
#define FEDKIT_SERVER_SECURE_AGGREGATION_ROUND_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "fedkit/v1/coordinator.pb.h"
#include "privacy/distributed_dp_encoding.h"
#include "privacy/secagg/encoding.h"
#include "privacy/secagg/protocol.h"
#include "privacy/secagg/server.h"
#include "proto/secagg_conversion.h"

namespace fedkit::server {

using secagg::SecureAggregationSettings;

// How the round's clients encode their input (sent in every assignment): weighted FedAvg's fixed
// point, or with dp_options DP-FedAvg's unit-weight encoding (privacy/distributed_dp_encoding.h;
// fixed_point then carries only the modulus and the round's clip norm).
struct SecAggInputEncoding {
  secagg::FixedPointEncoding fixed_point;
  std::optional<privacy::DistributedDpEncodingOptions> dp_options;
};

// How many masked inputs the round takes: the masked-input phase closes as soon as max_inputs
// arrived (0: it waits for every client or its deadline; over-selection sets K, the clients per
// round), and the round aborts before unmasking with fewer than min_inputs (distributed DP: the
// noise shares the privacy guarantee needs).
struct SecAggRoundLimits {
  int64_t max_inputs = 0;
  int64_t min_inputs = 0;
};

// A client caught misbehaving (secagg::SecAggCulprit with client ids).
// One closed phase of the protocol: how long it was open and who made it through. Phases are
// named as phase_name() names them ("secagg-advertise", "secagg-share", "secagg-upload",
// "secagg-unmask").
struct SecAggPhaseStats {
  std::string phase;
  absl::Duration duration;
  int64_t clients_in = 0;   // clients the phase waited for (the previous phase's survivors)
  int64_t clients_out = 0;  // clients that completed it; the others dropped out here
};

struct SecAggRoundCulprit {
  std::string client_id;
  int32_t index = 0;  // protocol index
  secagg::SecAggCulprit::Reason reason = secagg::SecAggCulprit::Reason::kBadShareCiphertext;
  std::vector<std::string> others;  // the reporters, or the owners of the bad shares
  bool excluded = false;            // its masked input is out of the round
};

class SecureAggregationRound {
 public:
  // kReadyToFinish: every unmask response is in (or the unmask phase's deadline passed) and only
  // Finish() remains, the slow part (each survivor's masks expanded over the whole vector), which
  // the caller may run outside its own lock.
  enum class State { kRunning, kReadyToFinish, kSucceeded, kAborted };

  // `clients`: the round's assigned client ids (any order; indices follow sorted order).
  static absl::StatusOr<std::unique_ptr<SecureAggregationRound>> Start(
      const SecureAggregationSettings& settings, const SecAggInputEncoding& encoding,
      int64_t vector_length, std::vector<std::string> clients, absl::Time now,
      absl::Duration upload_timeout, SecAggRoundLimits limits = {});

  // The assignment parameters for an assigned client; nullopt for others.
  std::optional<v1::SecureAggregationParams> ParamsFor(const std::string& client_id) const;

  // Whether the client has sent any protocol message this round: it then holds keys only it knows,
  // so handing it the assignment again (say after it restarted) cannot help it rejoin.
  bool Joined(const std::string& client_id) const;

  // A SecureAggregation RPC from an assigned client (assignment already checked by the caller).
  // Steps: accepted / duplicate; polls: the next phase's message, retry_later while the phase is
  // open, aborted once the protocol aborted. FAILED_PRECONDITION when the step is for a phase that
  // has closed (the client is treated as dropped), ALREADY_EXISTS for a different second message,
  // INVALID_ARGUMENT for malformed contents.
  absl::StatusOr<v1::SecAggResponse> Handle(const std::string& client_id,
                                            const v1::SecAggRequest& request, absl::Time now);
  // The masked upload (packed bytes as received) and the senders whose share ciphertext the client
  // found bad (UpdateHeader.secagg_bad_share_senders; they are excluded when their own input is not
  // in yet). FAILED_PRECONDITION for a client already excluded.
  absl::StatusOr<v1::UploadResponse> HandleMaskedInput(
      const std::string& client_id, const std::string& packed, double train_loss,
      absl::Span<const int32_t> bad_share_senders = {});

  // The client left the round (it declined its assignment, e.g. no longer eligible): no phase
  // waits for its messages from now on; the protocol treats it as a dropout. Unknown ids are
  // ignored. Not during Finish.
  void Withdraw(const std::string& client_id);

  // Closes every phase whose messages are all in (withdrawn clients' aside) or whose deadline has
  // passed, up to kReadyToFinish.
  State Advance(absl::Time now);
  // In kReadyToFinish: reconstructs the sum (which the caller decodes: it knows the encoding's
  // meaning); kSucceeded, or kAborted when too few unmask responses came. In any other state it
  // only returns the state. Handle and HandleMaskedInput refuse (retry later, late upload) in
  // kReadyToFinish; still, no other call may run concurrently with Finish.
  State Finish();
  State state() const { return state_; }
  absl::Time deadline() const { return deadline_; }
  absl::string_view phase_name() const;
  // The phases Advance closed so far, in order (the unmask phase's entry is added when it closes,
  // before Finish).
  const std::vector<SecAggPhaseStats>& closed_phases() const { return closed_phases_; }

  // After kSucceeded: the unmasked sum of the included clients' encoded vectors (mod 2^bits).
  const std::vector<uint64_t>& sum() const { return sum_; }
  int64_t included() const { return included_; }
  // After kSucceeded: the ids of the included clients, in protocol (sorted) order.
  std::vector<std::string> included_clients() const;
  double mean_train_loss() const;
  // After kAborted.
  const absl::Status& abort_status() const { return abort_status_; }
  // Culprits caught since the last call, once per (client, reason). Not during Finish.
  std::vector<SecAggRoundCulprit> TakeNewCulprits();

 private:
  SecureAggregationRound(const SecureAggregationSettings& settings,
                         const SecAggInputEncoding& encoding, secagg::ProtocolConfig config,
                         std::vector<std::string> clients,
                         std::unique_ptr<secagg::SecAggServer> server, absl::Time now,
                         absl::Duration upload_timeout, SecAggRoundLimits limits);
  // Records a step's digest; OK(true) if it is an identical retry.
  absl::StatusOr<bool> CheckRetry(int32_t index, int step, const std::string& payload);
  v1::SecAggResponse Retry() const;
  v1::SecAggResponse Aborted() const;
  void CloseCurrentPhase();
  void AbortWith(absl::Status status);

  const SecureAggregationSettings settings_;
  const SecAggInputEncoding encoding_;
  const secagg::ProtocolConfig config_;
  const std::vector<std::string> clients_;  // by protocol index
  absl::flat_hash_map<std::string, int32_t> index_of_;
  std::unique_ptr<secagg::SecAggServer> server_;
  const absl::Duration upload_timeout_;
  const SecAggRoundLimits limits_;
  absl::Time deadline_;
  absl::Time phase_opened_;
  std::vector<SecAggPhaseStats> closed_phases_;
  State state_ = State::kRunning;
  absl::Status abort_status_;
  // Hash of each accepted message per (client, step), to tell a retry from a different message.
  absl::flat_hash_map<int64_t, size_t> accepted_digests_;
  std::vector<double> train_losses_;
  std::set<std::pair<int32_t, secagg::SecAggCulprit::Reason>> reported_culprits_;
  std::set<int32_t> withdrawn_;  // protocol indices of clients that left the round (Withdraw)
  std::vector<uint64_t> sum_;
  int64_t included_ = 0;
};

}  // namespace fedkit::server

#endif  // FEDKIT_SERVER_SECURE_AGGREGATION_ROUND_H_
