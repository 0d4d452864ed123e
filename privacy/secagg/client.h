// The client side of secure aggregation for one round: a state machine driven by the messages the
// server relays. Not thread-safe (one round of one client is sequential); any number of instances
// can run in parallel. No I/O.
#ifndef FEDKIT_PRIVACY_SECAGG_CLIENT_H_
#define FEDKIT_PRIVACY_SECAGG_CLIENT_H_

#include <cstdint>
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
#include "privacy/secagg/shamir.h"

namespace fedkit::secagg {

// Calls must come in order: AdvertiseKeys, ShareKeys, MaskInput, Unmask. A call out of order gets
// FAILED_PRECONDITION and changes nothing. A message that fails validation (wrong ids, keys that
// do not match, a ciphertext that does not authenticate, too few peers to reach the threshold, a
// request that would reveal both shares of one peer) gets INVALID_ARGUMENT or FAILED_PRECONDITION
// naming the problem, and aborts this client for the round: it reveals nothing more.
class SecAggClient {
 public:
  enum class Phase { kAdvertiseKeys, kShareKeys, kMaskInput, kUnmask, kDone, kAborted };

  // INVALID_ARGUMENT for an invalid config or an index outside [0, n).
  static absl::StatusOr<std::unique_ptr<SecAggClient>> Create(const ProtocolConfig& config,
                                                              int32_t index);

  // Phase 0: draws the two key pairs and b_u.
  absl::StatusOr<AdvertiseKeysMessage> AdvertiseKeys();
  // Phase 1: checks the directory (own keys as advertised, only neighbours, distinct keys, enough
  // peers for the threshold), shares s_sk and b_u among itself and the peers, encrypts each share.
  absl::StatusOr<ShareKeysMessage> ShareKeys(const KeyDirectory& directory);
  // Phase 2: decrypts and checks the shares addressed to it, then masks `input` (d values, each
  // < 2^modulus_bits) with b_u and with every peer in U2. A ciphertext that does not authenticate
  // or holds the wrong sender, recipient or values does not abort: its sender is listed in the
  // message's bad_share_senders (see protocol.h). A bundle only the server could have got wrong
  // (shares addressed to another client, from strangers, or two from one sender) aborts.
  absl::StatusOr<MaskedInputMessage> MaskInput(const ShareBundle& bundle,
                                               absl::Span<const uint64_t> input);
  // Phase 3: reveals b-shares of survivors and s_sk-shares of dropped peers. Refuses a request
  // naming itself as dropped, an owner it holds no share of, an owner in both lists, fewer than t
  // survivors among its share owners, or a second request.
  absl::StatusOr<UnmaskResponse> Unmask(const UnmaskRequest& request);

  Phase phase() const { return phase_; }
  int32_t index() const { return index_; }

 private:
  struct HeldShares {
    ShamirShare masking_key;     // share of the owner's s_sk
    ShamirShare self_mask_seed;  // share of the owner's b
  };

  SecAggClient(const ProtocolConfig& config, int32_t index, std::vector<int> neighbours);
  bool IsNeighbour(int32_t peer) const;
  // Decrypts and parses a share addressed to this client; INVALID_ARGUMENT when it is bad.
  absl::StatusOr<HeldShares> OpenShare(const EncryptedShare& share) const;
  absl::Status Abort(absl::Status status);
  absl::Status CheckPhase(Phase expected, absl::string_view call) const;

  const ProtocolConfig config_;
  const int32_t index_;
  const std::vector<int> neighbours_;  // sorted
  Phase phase_ = Phase::kAdvertiseKeys;

  X25519KeyPair encryption_keys_;        // c
  X25519KeyPair masking_keys_;           // s
  X25519PrivateKey encryption_private_;  // c_sk and s_sk prepared for many agreements
  X25519PrivateKey masking_private_;
  Key32 self_mask_seed_ = {};                       // b_u
  absl::flat_hash_map<int32_t, PeerKeys> peers_;    // neighbours in U1 (from the directory)
  absl::flat_hash_map<int32_t, HeldShares> held_;   // owner -> shares (own included), from U2
  absl::flat_hash_map<int32_t, Key32> share_keys_;  // peer -> AEAD key, ShareKeys to MaskInput
};

}  // namespace fedkit::secagg

#endif  // FEDKIT_PRIVACY_SECAGG_CLIENT_H_
