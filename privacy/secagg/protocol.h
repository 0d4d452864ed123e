// Configuration and messages of the secure aggregation protocol (Bonawitz et al., CCS 2017, semi-
// honest server; and SecAgg+ of Bell et al., CCS 2020). Transport-agnostic: the simulator passes
// these structs in memory, the gRPC coordinator converts them to and from fedkit.v1 messages.
//
// Clients are numbered 0..n-1 within a round ("protocol index"). Client u holds secrets of its
// own: two X25519 key pairs (c for encrypting shares, s for pairwise masks) and a self-mask seed
// b_u. The holders of u's shares are u itself and its neighbours in the masking graph (everyone
// for SecAgg, a random Harary graph for SecAgg+). Phases:
//   0 advertise keys     u -> server: (c_pk_u, s_pk_u).                       Survivors: U1.
//   1 share keys         server -> u: its neighbours' keys in U1; u -> server: for each
//                        neighbour v in U1, AEAD_{k_uv}(u, v, share_v(s_sk_u), share_v(b_u)).  U2.
//   2 masked input       server -> u: ciphertexts addressed to u from U2;
//                        u -> server: y_u = x_u + PRG(b_u) + sum_{v in N(u) cap U2} +-PRG(s_uv)
//                        (+ if u < v, - otherwise) mod 2^bits.                 U3.
//   3 unmasking          server -> u: which of the owners u holds shares of survived (U3) and
//                        which dropped (U2 \ U3); u -> server: b-shares of survivors, s_sk-shares
//                        of dropped clients, never both for one owner.        U5.
//   finish               server reconstructs b_u (u in U3) and s_sk_u (u in U2 \ U3) from >= t
//                        shares, removes the masks and is left with sum_{u in U3} x_u.
// The server proceeds past a phase only while >= t clients remain and every remaining client has
// >= t remaining share holders; otherwise the round aborts having seen only masked vectors and
// fewer than t shares of any secret. A per-round random session id is mixed into every key
// derivation and authenticated with every ciphertext, so nothing replays across rounds.
//
// Malicious clients (the server is still assumed semi-honest: it relays faithfully and follows the
// protocol, but a client may send anything):
//   - A wrong share revealed in phase 3. Each secret the server reconstructs has a binding
//     commitment: u's masking key s_sk_u its advertised public key s_pk_u, and u's self-mask seed
//     b_u the commitment SHA-256(tag, session id, u, b_u) u sends with its shares in phase 1 (b_u
//     is 256 random bits, so the commitment hides it). The server reconstructs from t shares and
//     checks the commitment; on a mismatch it tries other t-subsets of the shares it holds (those
//     leaving out e shares, for e = 1, 2, ..., up to a budget), and once one matches it names as
//     culprit every holder whose share is off the recovered polynomial, provided the shares on it
//     number at least t + (those off it) (else liars who outnumber the named could frame honest
//     holders; the secret is right either way). With fewer than t good shares (or more bad ones
//     than the budget covers) the round aborts, naming the culprits found for other secrets. A
//     culprit's own input stays in the sum (it was masked and sent in phase 2; taking it out would
//     need both of its secrets, which honest holders never reveal together): its lie changes
//     nothing but is reported.
//   - A bad share ciphertext (does not authenticate, or the wrong sender, recipient or size
//     inside): the recipient v does not abort; it applies the pairwise mask with the sender u all
//     the same (it needs only u's public key), holds no share of u, and names u in its masked input
//     message. If u's masked input is not yet in the sum the server excludes u: u's masked input is
//     refused and u is treated as a client dropped after phase 1 (its masking key is reconstructed
//     from the shares its other holders reveal, so its pairwise masks come out of the sum). If u's
//     input was already summed, u stays included and b_u must come from its other holders. Either
//     way, a secret whose good remaining holders fall below t aborts the round naming u (an
//     excluded u's pairwise masks are in its reporters' inputs, and only its masking key takes
//     them out). A malicious recipient can so exclude an honest sender: no worse than that sender
//     dropping out, but one recipient that reports every neighbour whose input is not yet summed
//     excludes them all and can so make the round abort as if they had dropped (the server cannot
//     tell which side lies; the reports, naming both, are there for the operator).
//   - A masked input is any value in Z_{2^bits}: bounding what it decodes to is the encoding's
//     and the caller's job (privacy/secagg/encoding.h; the coordinator bounds the decoded weight).
#ifndef FEDKIT_PRIVACY_SECAGG_PROTOCOL_H_
#define FEDKIT_PRIVACY_SECAGG_PROTOCOL_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "privacy/secagg/crypto.h"
#include "privacy/secagg/graph.h"
#include "privacy/secagg/shamir.h"

namespace fedkit::secagg {

enum class Variant { kSecAgg, kSecAggPlus };
absl::string_view VariantName(Variant variant);  // "secagg", "secagg+"
absl::StatusOr<Variant> ParseVariant(absl::string_view name);

// Everything the server and all clients of one round agree on (sent in the round plan).
struct ProtocolConfig {
  Variant variant = Variant::kSecAgg;
  int num_clients = 0;        // n
  int threshold = 0;          // t: shares needed to reconstruct any secret; also min survivors
  int degree = 0;             // k: neighbours per client (n - 1 for the complete graph)
  uint64_t graph_seed = 0;    // public randomness of the SecAgg+ graph (unused for SecAgg)
  int modulus_bits = 32;      // inputs and masks live in Z_{2^modulus_bits}
  int64_t vector_length = 0;  // d: entries of every input vector
  Key32 session_id = {};      // fresh random per round
};

// What an operator chooses for secure aggregation, one type for the coordinator and the simulator
// (each round's ProtocolConfig is made from it and the round's size).
struct SecureAggregationSettings {
  Variant variant = Variant::kSecAggPlus;
  int modulus_bits = 32;
  // Design parameters of SecAgg+'s graph (Bell et al.): the dropout rate the round must survive
  // and the fraction of clients that may collude with the server.
  double design_dropout_rate = 0.1;
  double corrupt_fraction = 0.05;
  // Networked rounds (the simulator's phases take no time): the deadline of the key advertisement,
  // key sharing and unmasking phases (the masked upload, which waits for local training, gets the
  // round timeout), and the retry_after the coordinator gives polls.
  absl::Duration phase_timeout = absl::Seconds(60);
  absl::Duration poll_interval = absl::Milliseconds(200);
};
// MakeProtocolConfig with the settings' parameters.
absl::StatusOr<ProtocolConfig> MakeProtocolConfig(const SecureAggregationSettings& settings,
                                                  int num_clients, int64_t vector_length);

// A config for n clients and d entries. SecAgg: complete graph, t = floor(n/2) + 1. SecAgg+: k and
// t from SecAggPlusParameters(n, dropout_rate, corrupt_fraction), falling back to the complete
// graph when n is too small for a sparser one. Draws session id and graph seed from the CSPRNG.
absl::StatusOr<ProtocolConfig> MakeProtocolConfig(Variant variant, int num_clients,
                                                  int64_t vector_length, int modulus_bits,
                                                  double dropout_rate, double corrupt_fraction);
// INVALID_ARGUMENT naming the violated rule: n >= 2; 2 <= t <= k + 1 (u and its k neighbours
// hold u's shares); t > n/2 for the complete graph; 1 <= modulus_bits <= 64; d >= 1.
absl::Status ValidateProtocolConfig(const ProtocolConfig& config);
// The masking graph the config describes (complete or Harary(n, k, graph_seed)).
absl::StatusOr<MaskingGraph> BuildGraph(const ProtocolConfig& config);
// Just `node`'s neighbours in that graph, sorted (what a client needs: O(n) time, O(k) memory).
absl::StatusOr<std::vector<int>> NeighboursOf(const ProtocolConfig& config, int node);

// ---- Messages ----
struct AdvertiseKeysMessage {
  int32_t sender = 0;
  Key32 encryption_public_key = {};  // c_pk
  Key32 masking_public_key = {};     // s_pk
};

struct PeerKeys {
  int32_t id = 0;
  Key32 encryption_public_key = {};
  Key32 masking_public_key = {};
};
// Server -> client u after phase 0: the keys of u and of u's neighbours in U1, sorted by id.
struct KeyDirectory {
  std::vector<PeerKeys> peers;
};

struct EncryptedShare {
  int32_t sender = 0;
  int32_t recipient = 0;
  std::vector<uint8_t> ciphertext;  // AEAD(sender, recipient, s_sk share, b share)
};
// Client -> server in phase 1: one ciphertext per neighbour in the client's key directory, and
// the commitment to its self-mask seed (SelfMaskSeedCommitment), which the server keeps to check
// the seed it reconstructs.
struct ShareKeysMessage {
  int32_t sender = 0;
  std::vector<EncryptedShare> shares;
  Key32 self_mask_seed_commitment = {};
};
// Server -> client v after phase 1: the ciphertexts addressed to v from its neighbours in U2.
struct ShareBundle {
  std::vector<EncryptedShare> shares;
};

// Client -> server in phase 2: d values, each < 2^modulus_bits, and the senders in its share
// bundle whose ciphertext was bad (sorted, distinct; the client holds no share of them).
struct MaskedInputMessage {
  int32_t sender = 0;
  std::vector<uint64_t> masked_input;
  std::vector<int32_t> bad_share_senders;
};

// Server -> client v after phase 2, over the owners whose shares v holds (itself and its
// neighbours in U2): which are in U3 and which dropped. Sorted, disjoint.
struct UnmaskRequest {
  std::vector<int32_t> survivors;
  std::vector<int32_t> dropped;
};

enum class ShareKind : uint8_t { kSelfMaskSeed = 1, kMaskingKey = 2 };
struct RevealedShare {
  int32_t owner = 0;
  ShareKind kind = ShareKind::kSelfMaskSeed;
  ShamirShare share;  // share.x == responder + 1
};
// Client -> server in phase 3.
struct UnmaskResponse {
  int32_t sender = 0;
  std::vector<RevealedShare> shares;
};

// Bytes each message takes on the wire with the fedkit.v1 encoding's payload (ids 4 bytes, keys 32,
// values packed to ceil(modulus_bits / 8) bytes), for cost reporting.
int64_t WireBytes(const AdvertiseKeysMessage& message);
int64_t WireBytes(const ShareKeysMessage& message);
int64_t WireBytes(const MaskedInputMessage& message, int modulus_bits);
int64_t WireBytes(const UnmaskResponse& message);

// ---- Key derivation shared by clients and server ----
// Key that encrypts u's shares for v: HKDF(X25519(c_sk_u, c_pk_v), salt = session id).
absl::StatusOr<Key32> ShareEncryptionKey(const X25519PrivateKey& own_private,
                                         const Key32& peer_public, const Key32& session_id);
// Seed of the pairwise mask between u and v: HKDF(X25519(s_sk_u, s_pk_v), salt = session id).
absl::StatusOr<Key32> PairwiseMaskSeed(const X25519PrivateKey& own_private,
                                       const Key32& peer_public, const Key32& session_id);
// Seed of u's self mask from b_u.
absl::StatusOr<Key32> SelfMaskSeed(const Key32& b, const Key32& session_id);
// Binding, hiding commitment to u's self-mask seed: SHA-256 over a domain tag, the session id, u
// (4 bytes, little-endian) and b.
absl::StatusOr<Key32> SelfMaskSeedCommitment(const Key32& b, const Key32& session_id,
                                             int32_t owner);
// The sign with which `self` applies its pairwise mask with `peer`: + if self < peer.
inline int PairwiseMaskSign(int32_t self, int32_t peer) { return self < peer ? 1 : -1; }
// Associated data authenticated with a share ciphertext: session id, sender, recipient.
std::vector<uint8_t> ShareAssociatedData(const Key32& session_id, int32_t sender,
                                         int32_t recipient);

}  // namespace fedkit::secagg

#endif  // FEDKIT_PRIVACY_SECAGG_PROTOCOL_H_
