// The server side of secure aggregation for one round: collects each phase's messages, decides who
// survived each phase, and at the end recovers the sum of the survivors' inputs and nothing else.
// Not thread-safe: the driver (simulator or coordinator) serialises calls. No I/O, no clocks: the
// driver closes a phase when all expected messages arrived or its deadline passed.
#ifndef FEDKIT_PRIVACY_SECAGG_SERVER_H_
#define FEDKIT_PRIVACY_SECAGG_SERVER_H_

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "privacy/secagg/crypto.h"
#include "privacy/secagg/graph.h"
#include "privacy/secagg/protocol.h"
#include "privacy/secagg/shamir.h"

namespace fedkit::secagg {

// A client caught misbehaving (protocol.h: malicious clients), with what it did in words.
struct SecAggCulprit {
  enum class Reason {
    kBadShareCiphertext,  // a recipient reported the client's share ciphertext as bad
    kBadRevealedShare,    // a share it revealed is off the polynomial its owner committed to
  };
  int32_t client = 0;
  Reason reason = Reason::kBadShareCiphertext;
  // The reporters of its bad ciphertexts, or the owners of the bad shares it revealed (sorted).
  std::vector<int32_t> others;
};
absl::string_view CulpritReasonName(SecAggCulprit::Reason reason);  // "bad_ciphertext", "bad_share"

// Handle* calls validate the message and record it; they return FAILED_PRECONDITION when the
// message belongs to another phase or the sender is not (or no longer) a participant (a client
// excluded for a bad share ciphertext included),
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

  // Adds the masked vector into the running sum at once (the server never stores it apart), and
  // records the senders it reports for bad share ciphertexts (each must be a neighbour in U2; the
  // ones whose input is not yet summed are excluded from the round). INVALID_ARGUMENT for reports
  // naming anyone else, or unsorted or repeated.
  absl::Status HandleMaskedInput(const MaskedInputMessage& message);
  absl::Status CloseMaskedInput();
  // For a client in U3, after CloseMaskedInput.
  absl::StatusOr<UnmaskRequest> UnmaskRequestFor(int32_t client) const;

  absl::Status HandleUnmaskResponse(const UnmaskResponse& message);
  // Ends the unmasking phase: reconstructs the secrets it needs, each checked against its
  // commitment (protocol.h; holders of shares off the committed polynomial become culprits),
  // removes the masks and returns sum_{u in U3} x_u mod 2^modulus_bits. ABORTED, naming the
  // culprits known, when some needed secret has fewer than t shares or no t of them match its
  // commitment within kMaxReconstructionAttempts tries. Reconstruction tries the t shares of the
  // lowest holders, leaving out first the shares of holders already caught, then every choice of
  // e left-out shares among the lowest t + e for e = 1, 2, ...: any e bad shares are found while
  // the tries needed (sum of C(t + i, i) for i <= e) fit the budget (one bad share: t + 2 tries).
  absl::StatusOr<std::vector<uint64_t>> Finish();
  static constexpr int64_t kMaxReconstructionAttempts = 4096;

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
  // Clients caught misbehaving so far (kept after an abort), sorted by client then reason, one
  // entry per (client, reason).
  std::vector<SecAggCulprit> culprits() const;
  // Whether `client` was excluded for a bad share ciphertext (its masked input is refused).
  bool excluded(int32_t client) const;
  // What the server holds of the inputs: the sum of masked vectors received (tests check it
  // reveals nothing), and how many shares of each kind it holds for `owner` in plaintext.
  const std::vector<uint64_t>& masked_sum() const { return masked_sum_; }
  int RevealedShareCount(int32_t owner, ShareKind kind) const;

 private:
  SecAggServer(const ProtocolConfig& config, MaskingGraph graph);
  absl::Status CheckPhase(Phase expected, absl::string_view what) const;
  // Share holders of `owner` (itself and its neighbours) that are in `alive` and hold a good share
  // of it (did not report its ciphertext as bad).
  int CountAliveHolders(int32_t owner, const std::vector<bool>& alive, bool include_owner) const;
  // " (its share ciphertexts to clients a, b were reported bad)" when some were, else "".
  std::string BadCiphertextNote(int32_t owner) const;
  // Culprits so far, in words, for abort messages ("" when none).
  std::string CulpritNote() const;
  void AddCulprit(int32_t client, SecAggCulprit::Reason reason, int32_t other);
  // Reconstructs a secret from `shares` (at holder + 1), checked by `verify`; records as culprits
  // the holders whose shares are off the recovered polynomial. ABORTED (not recorded) on failure.
  struct Recovered {
    Key32 secret;
    std::vector<int32_t> bad_holders;
  };
  absl::StatusOr<Recovered> RecoverSecret(std::vector<ShamirShare> shares,
                                          const std::function<bool(const Key32&)>& verify,
                                          int32_t owner, absl::string_view what);
  absl::StatusOr<const ShamirReconstructor*> ReconstructorAt(const std::vector<uint32_t>& xs,
                                                             uint32_t point);
  absl::Status CheckSurvival(const std::vector<bool>& alive, absl::string_view phase_name);
  absl::Status AbortWith(absl::Status status);

  const ProtocolConfig config_;
  const MaskingGraph graph_;
  Phase phase_ = Phase::kAdvertiseKeys;
  absl::Status abort_status_;

  std::vector<std::optional<AdvertiseKeysMessage>> keys_;  // U1 by index
  std::vector<std::vector<EncryptedShare>> shares_from_;   // U2: sender -> ciphertexts
  std::vector<Key32> seed_commitments_;                    // U2: sender -> commitment to b
  std::vector<bool> in_u2_;
  // Reports of bad share ciphertexts: holder -> owners it holds no share of; and the senders
  // excluded for them (in U2, never in U3).
  std::vector<absl::flat_hash_set<int32_t>> lacks_share_of_;
  std::vector<bool> excluded_;
  // (client, reason) -> the other clients involved (reporters, or owners of the bad shares).
  std::map<std::pair<int32_t, SecAggCulprit::Reason>, std::vector<int32_t>> culprits_;
  // Lagrange coefficients by (xs, point), reused across owners in Finish.
  std::map<std::pair<std::vector<uint32_t>, uint32_t>, ShamirReconstructor> reconstructors_;
  // Checks of the shares beyond the t used, by (the t xs, the other xs).
  std::map<std::pair<std::vector<uint32_t>, std::vector<uint32_t>>, ShamirConsistencyCheck>
      consistency_checks_;
  std::vector<bool> in_u3_;
  std::vector<uint64_t> masked_sum_;
  std::vector<bool> in_u5_;
  // Revealed plaintext shares, by owner.
  std::vector<std::vector<ShamirShare>> self_mask_seed_shares_;
  std::vector<std::vector<ShamirShare>> masking_key_shares_;
};

}  // namespace fedkit::secagg

#endif  // FEDKIT_PRIVACY_SECAGG_SERVER_H_
