// The server side of secure aggregation for one round: collects each phase's messages, decides who
// survived each phase, and at the end recovers the sum of the survivors' inputs and nothing else.
// Not thread-safe: the driver (simulator or coordinator) serialises calls. No I/O, no clocks: the
// driver closes a phase when all expected messages arrived or its deadline passed.
#ifndef FEDKIT_PRIVACY_SECAGG_SERVER_H_
#define FEDKIT_PRIVACY_SECAGG_SERVER_H_

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "privacy/secagg/crypto.h"
#include "privacy/secagg/graph.h"
#include "privacy/secagg/protocol.h"

namespace fedkit::secagg {

// Handle* calls validate the message and record it; they return FAILED_PRECONDITION when the
// message belongs to another phase or the sender is not (or no longer) a participant,
// ALREADY_EXISTS for a second message from the same sender in a phase (replays included; nothing
// changes), INVALID_ARGUMENT for malformed contents (wrong lengths, values outside the modulus,
// keys reused, missing or extra ciphertexts). Close* calls end a phase: ABORTED (and the round is
// over) when fewer than t clients remain or a remaining client has fewer than t remaining share
// holders. Once aborted, the server keeps nothing but the masked vectors it was sent.
class SecAggServer {
 public:
  enum class Phase { kAdvertiseKeys, kShareKeys, kMaskedInput, kUnmask, kDone, kAborted };

  static absl::StatusOr<std::unique_ptr<SecAggServer>> Create(const ProtocolConfig& config);

  absl::Status HandleAdvertiseKeys(const AdvertiseKeysMessage& message);
  absl::Status CloseAdvertiseKeys();
  // For a client in U1, after CloseAdvertiseKeys.
  absl::StatusOr<KeyDirectory> KeyDirectoryFor(int32_t client) const;

  absl::Status HandleShareKeys(const ShareKeysMessage& message);
  absl::Status CloseShareKeys();
  // For a client in U2, after CloseShareKeys.
  absl::StatusOr<ShareBundle> ShareBundleFor(int32_t client) const;

  // Adds the masked vector into the running sum at once (the server never stores it apart).
  absl::Status HandleMaskedInput(const MaskedInputMessage& message);
  absl::Status CloseMaskedInput();
  // For a client in U3, after CloseMaskedInput.
  absl::StatusOr<UnmaskRequest> UnmaskRequestFor(int32_t client) const;

  absl::Status HandleUnmaskResponse(const UnmaskResponse& message);
  // Ends the unmasking phase: reconstructs the secrets it needs, removes the masks and returns
  // sum_{u in U3} x_u mod 2^modulus_bits. ABORTED when some needed secret has fewer than t shares.
  absl::StatusOr<std::vector<uint64_t>> Finish();

  // Aborts the round now (e.g. the run is shutting down). Idempotent.
  void Abort(absl::string_view reason);

  Phase phase() const { return phase_; }
  const ProtocolConfig& config() const { return config_; }
  // Clients that completed each phase so far: U1, U2, U3, U5 (sorted).
  std::vector<int32_t> advertised() const;
  std::vector<int32_t> shared() const;
  std::vector<int32_t> masked_input_senders() const;
  std::vector<int32_t> unmask_responders() const;
  // Why the round aborted (OK while not aborted).
  const absl::Status& abort_status() const { return abort_status_; }
  // What the server holds of the inputs: the sum of masked vectors received (tests check it
  // reveals nothing), and how many shares of each kind it holds for `owner` in plaintext.
  const std::vector<uint64_t>& masked_sum() const { return masked_sum_; }
  int RevealedShareCount(int32_t owner, ShareKind kind) const;

 private:
  SecAggServer(const ProtocolConfig& config, MaskingGraph graph);
  absl::Status CheckPhase(Phase expected, absl::string_view what) const;
  // Share holders of `owner` (itself and its neighbours) that are in `alive`.
  int CountAliveHolders(int32_t owner, const std::vector<bool>& alive, bool include_owner) const;
  absl::Status CheckSurvival(const std::vector<bool>& alive, absl::string_view phase_name);
  absl::Status AbortWith(absl::Status status);

  const ProtocolConfig config_;
  const MaskingGraph graph_;
  Phase phase_ = Phase::kAdvertiseKeys;
  absl::Status abort_status_;

  std::vector<std::optional<AdvertiseKeysMessage>> keys_;  // U1 by index
  std::vector<std::vector<EncryptedShare>> shares_from_;   // U2: sender -> ciphertexts
  std::vector<bool> in_u2_;
  std::vector<bool> in_u3_;
  std::vector<uint64_t> masked_sum_;
  std::vector<bool> in_u5_;
  // Revealed plaintext shares, by owner.
  std::vector<std::vector<ShamirShare>> self_mask_seed_shares_;
  std::vector<std::vector<ShamirShare>> masking_key_shares_;
};

}  // namespace fedkit::secagg

#endif  // FEDKIT_PRIVACY_SECAGG_SERVER_H_
