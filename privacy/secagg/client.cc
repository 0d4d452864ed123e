#include "privacy/secagg/client.h"

#include <algorithm>
#include <utility>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "core/status_macros.h"
#include "privacy/secagg/prg.h"

namespace fedkit::secagg {
namespace {

// Share plaintext: sender (4, LE) || recipient (4, LE) || s_sk share || b share.
constexpr size_t kSharePlaintextBytes = 8 + 2 * kShamirShareBytes;

void PutId(std::vector<uint8_t>& out, int32_t id) {
  const uint32_t u = static_cast<uint32_t>(id);
  for (int i = 0; i < 4; ++i) out.push_back(static_cast<uint8_t>(u >> (8 * i)));
}

int32_t GetId(absl::Span<const uint8_t> in) {
  uint32_t u = 0;
  for (int i = 0; i < 4; ++i) u |= static_cast<uint32_t>(in[i]) << (8 * i);
  return static_cast<int32_t>(u);
}

uint32_t ShareX(int32_t holder) { return static_cast<uint32_t>(holder) + 1; }

}  // namespace

absl::StatusOr<std::unique_ptr<SecAggClient>> SecAggClient::Create(const ProtocolConfig& config,
                                                                   int32_t index) {
  FEDKIT_RETURN_IF_ERROR(ValidateProtocolConfig(config));
  if (index < 0 || index >= config.num_clients) {
    return absl::InvalidArgumentError(
        absl::StrCat("secagg: client index ", index, " outside [0, ", config.num_clients, ")"));
  }
  FEDKIT_ASSIGN_OR_RETURN(std::vector<int> neighbours, NeighboursOf(config, index));
  return std::unique_ptr<SecAggClient>(new SecAggClient(config, index, std::move(neighbours)));
}

SecAggClient::SecAggClient(const ProtocolConfig& config, int32_t index, std::vector<int> neighbours)
    : config_(config), index_(index), neighbours_(std::move(neighbours)) {}

bool SecAggClient::IsNeighbour(int32_t peer) const {
  return std::binary_search(neighbours_.begin(), neighbours_.end(), peer);
}

absl::Status SecAggClient::CheckPhase(Phase expected, absl::string_view call) const {
  if (phase_ == expected) return absl::OkStatus();
  if (phase_ == Phase::kAborted) {
    return absl::FailedPreconditionError(
        absl::StrCat("secagg client ", index_, ": ", call, " after the round aborted"));
  }
  return absl::FailedPreconditionError(absl::StrCat(
      "secagg client ", index_, ": ", call, " out of phase (message replayed or out of order)"));
}

absl::Status SecAggClient::Abort(absl::Status status) {
  phase_ = Phase::kAborted;
  // Forget every secret: an aborted client reveals nothing more.
  encryption_keys_ = {};
  masking_keys_ = {};
  encryption_private_ = {};
  masking_private_ = {};
  self_mask_seed_ = {};
  held_.clear();
  share_keys_.clear();
  return status;
}

absl::StatusOr<AdvertiseKeysMessage> SecAggClient::AdvertiseKeys() {
  FEDKIT_RETURN_IF_ERROR(CheckPhase(Phase::kAdvertiseKeys, "AdvertiseKeys"));
  FEDKIT_ASSIGN_OR_RETURN(encryption_keys_, GenerateX25519KeyPair());
  FEDKIT_ASSIGN_OR_RETURN(masking_keys_, GenerateX25519KeyPair());
  FEDKIT_ASSIGN_OR_RETURN(encryption_private_,
                          X25519PrivateKey::Create(encryption_keys_.private_key));
  FEDKIT_ASSIGN_OR_RETURN(masking_private_, X25519PrivateKey::Create(masking_keys_.private_key));
  FEDKIT_ASSIGN_OR_RETURN(self_mask_seed_, SecureRandomKey());
  phase_ = Phase::kShareKeys;
  AdvertiseKeysMessage message;
  message.sender = index_;
  message.encryption_public_key = encryption_keys_.public_key;
  message.masking_public_key = masking_keys_.public_key;
  return message;
}

absl::StatusOr<ShareKeysMessage> SecAggClient::ShareKeys(const KeyDirectory& directory) {
  FEDKIT_RETURN_IF_ERROR(CheckPhase(Phase::kShareKeys, "ShareKeys"));
  const std::string who = absl::StrCat("secagg client ", index_, ": key directory: ");
  bool saw_self = false;
  absl::flat_hash_set<std::string> keys_seen;
  for (const PeerKeys& peer : directory.peers) {
    const std::string c(peer.encryption_public_key.begin(), peer.encryption_public_key.end());
    const std::string s(peer.masking_public_key.begin(), peer.masking_public_key.end());
    if (!keys_seen.insert(c).second || !keys_seen.insert(s).second) {
      return Abort(absl::InvalidArgumentError(
          absl::StrCat(who, "public keys are not distinct (client ", peer.id, ")")));
    }
    if (peer.id == index_) {
      if (peer.encryption_public_key != encryption_keys_.public_key ||
          peer.masking_public_key != masking_keys_.public_key) {
        return Abort(
            absl::InvalidArgumentError(absl::StrCat(who, "own keys differ from those advertised")));
      }
      saw_self = true;
      continue;
    }
    if (peer.id < 0 || peer.id >= config_.num_clients || !IsNeighbour(peer.id)) {
      return Abort(
          absl::InvalidArgumentError(absl::StrCat(who, "client ", peer.id, " is not a neighbour")));
    }
    if (peers_.contains(peer.id)) {
      return Abort(absl::InvalidArgumentError(absl::StrCat(who, "client ", peer.id, " twice")));
    }
    peers_.emplace(peer.id, peer);
  }
  if (!saw_self) {
    return Abort(absl::InvalidArgumentError(absl::StrCat(who, "own keys missing")));
  }
  if (static_cast<int>(peers_.size()) + 1 < config_.threshold) {
    return Abort(absl::FailedPreconditionError(absl::StrCat(
        who, "only ", peers_.size() + 1, " share holders, threshold is ", config_.threshold)));
  }

  // Holders: the peers and this client itself, at x = index + 1.
  std::vector<int32_t> holders;
  holders.reserve(peers_.size() + 1);
  holders.push_back(index_);
  for (const auto& [id, unused] : peers_) holders.push_back(id);
  std::sort(holders.begin(), holders.end());
  std::vector<uint32_t> xs;
  xs.reserve(holders.size());
  for (int32_t h : holders) xs.push_back(ShareX(h));
  absl::StatusOr<std::vector<ShamirShare>> key_shares =
      ShamirSplit(masking_keys_.private_key, config_.threshold, xs);
  if (!key_shares.ok()) return Abort(key_shares.status());
  absl::StatusOr<std::vector<ShamirShare>> seed_shares =
      ShamirSplit(self_mask_seed_, config_.threshold, xs);
  if (!seed_shares.ok()) return Abort(seed_shares.status());

  ShareKeysMessage message;
  message.sender = index_;
  absl::StatusOr<Key32> commitment =
      SelfMaskSeedCommitment(self_mask_seed_, config_.session_id, index_);
  if (!commitment.ok()) return Abort(commitment.status());
  message.self_mask_seed_commitment = *commitment;
  message.shares.reserve(peers_.size());
  for (size_t i = 0; i < holders.size(); ++i) {
    const int32_t holder = holders[i];
    if (holder == index_) {
      held_[index_] = HeldShares{(*key_shares)[i], (*seed_shares)[i]};
      continue;
    }
    std::vector<uint8_t> plaintext;
    plaintext.reserve(kSharePlaintextBytes);
    PutId(plaintext, index_);
    PutId(plaintext, holder);
    const auto key_bytes = SerializeShareValues((*key_shares)[i]);
    const auto seed_bytes = SerializeShareValues((*seed_shares)[i]);
    plaintext.insert(plaintext.end(), key_bytes.begin(), key_bytes.end());
    plaintext.insert(plaintext.end(), seed_bytes.begin(), seed_bytes.end());
    absl::StatusOr<Key32> key = ShareEncryptionKey(
        encryption_private_, peers_[holder].encryption_public_key, config_.session_id);
    if (!key.ok()) return Abort(key.status());
    share_keys_[holder] = *key;  // the same key decrypts the peer's shares for us (symmetric)
    absl::StatusOr<std::vector<uint8_t>> sealed =
        AeadEncrypt(*key, plaintext, ShareAssociatedData(config_.session_id, index_, holder));
    if (!sealed.ok()) return Abort(sealed.status());
    message.shares.push_back(EncryptedShare{index_, holder, *std::move(sealed)});
  }
  phase_ = Phase::kMaskInput;
  return message;
}

absl::StatusOr<SecAggClient::HeldShares> SecAggClient::OpenShare(
    const EncryptedShare& share) const {
  const std::string what = absl::StrCat("share from client ", share.sender);
  auto key = share_keys_.find(share.sender);  // derived in ShareKeys
  if (key == share_keys_.end()) {
    return absl::InvalidArgumentError(absl::StrCat(what, ": no key agreed with it"));
  }
  absl::StatusOr<std::vector<uint8_t>> plaintext = AeadDecrypt(
      key->second, share.ciphertext, ShareAssociatedData(config_.session_id, share.sender, index_));
  if (!plaintext.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(what, ": ", plaintext.status().message()));
  }
  if (plaintext->size() != kSharePlaintextBytes ||
      GetId(absl::MakeConstSpan(*plaintext).subspan(0, 4)) != share.sender ||
      GetId(absl::MakeConstSpan(*plaintext).subspan(4, 4)) != index_) {
    return absl::InvalidArgumentError(absl::StrCat(what, " is malformed"));
  }
  const auto body = absl::MakeConstSpan(*plaintext).subspan(8);
  absl::StatusOr<ShamirShare> key_share =
      ParseShareValues(ShareX(index_), body.subspan(0, kShamirShareBytes));
  if (!key_share.ok()) return key_share.status();
  absl::StatusOr<ShamirShare> seed_share =
      ParseShareValues(ShareX(index_), body.subspan(kShamirShareBytes, kShamirShareBytes));
  if (!seed_share.ok()) return seed_share.status();
  return HeldShares{*key_share, *seed_share};
}

absl::StatusOr<MaskedInputMessage> SecAggClient::MaskInput(const ShareBundle& bundle,
                                                           absl::Span<const uint64_t> input) {
  FEDKIT_RETURN_IF_ERROR(CheckPhase(Phase::kMaskInput, "MaskInput"));
  const std::string who = absl::StrCat("secagg client ", index_, ": ");
  // The input is the caller's, not the network's: a bad one is not the round's fault, so no abort.
  if (static_cast<int64_t>(input.size()) != config_.vector_length) {
    return absl::InvalidArgumentError(
        absl::StrCat(who, "input has ", input.size(), " values, expected ", config_.vector_length));
  }
  const uint64_t mask = ModulusMask(config_.modulus_bits);
  for (uint64_t v : input) {
    if ((v & ~mask) != 0) {
      return absl::InvalidArgumentError(
          absl::StrCat(who, "input value ", v, " outside Z_2^", config_.modulus_bits));
    }
  }

  // Bundle problems the server would have caused (it relays, and is assumed to follow the
  // protocol) abort; a ciphertext that is bad in itself is its sender's doing: the sender is
  // reported, and masked with all the same (the pairwise mask needs only its public key).
  std::vector<int32_t> senders;
  absl::flat_hash_set<int32_t> seen;
  std::vector<int32_t> bad_senders;
  for (const EncryptedShare& share : bundle.shares) {
    if (share.recipient != index_) {
      return Abort(absl::InvalidArgumentError(
          absl::StrCat(who, "share addressed to client ", share.recipient)));
    }
    auto peer = peers_.find(share.sender);
    if (peer == peers_.end()) {
      return Abort(absl::InvalidArgumentError(
          absl::StrCat(who, "share from client ", share.sender, ", not a neighbour in U1")));
    }
    if (!seen.insert(share.sender).second) {
      return Abort(
          absl::InvalidArgumentError(absl::StrCat(who, "two shares from client ", share.sender)));
    }
    senders.push_back(share.sender);
    absl::StatusOr<HeldShares> opened = OpenShare(share);
    if (!opened.ok()) {
      bad_senders.push_back(share.sender);
      continue;
    }
    held_[share.sender] = *opened;
  }
  if (static_cast<int>(senders.size()) + 1 < config_.threshold) {
    return Abort(absl::FailedPreconditionError(absl::StrCat(
        who, "only ", senders.size(), " neighbours shared keys, need ", config_.threshold - 1)));
  }

  MaskedInputMessage message;
  message.sender = index_;
  std::sort(bad_senders.begin(), bad_senders.end());
  message.bad_share_senders = std::move(bad_senders);
  message.masked_input.assign(input.begin(), input.end());
  absl::Span<uint64_t> y = absl::MakeSpan(message.masked_input);
  absl::StatusOr<Key32> self_seed = SelfMaskSeed(self_mask_seed_, config_.session_id);
  if (!self_seed.ok()) return Abort(self_seed.status());
  FEDKIT_RETURN_IF_ERROR(AddPrgMask(*self_seed, +1, config_.modulus_bits, y));
  for (int32_t peer : senders) {
    absl::StatusOr<Key32> seed =
        PairwiseMaskSeed(masking_private_, peers_[peer].masking_public_key, config_.session_id);
    if (!seed.ok()) return Abort(seed.status());
    FEDKIT_RETURN_IF_ERROR(
        AddPrgMask(*seed, PairwiseMaskSign(index_, peer), config_.modulus_bits, y));
  }
  phase_ = Phase::kUnmask;
  share_keys_.clear();
  return message;
}

absl::StatusOr<UnmaskResponse> SecAggClient::Unmask(const UnmaskRequest& request) {
  if (phase_ == Phase::kDone) {
    return absl::FailedPreconditionError(absl::StrCat(
        "secagg client ", index_,
        ": unmasking request refused: already answered one this round (a second could reveal "
        "both shares of a peer)"));
  }
  FEDKIT_RETURN_IF_ERROR(CheckPhase(Phase::kUnmask, "Unmask"));
  const std::string who = absl::StrCat("secagg client ", index_, ": unmasking request refused: ");
  absl::flat_hash_set<int32_t> survivors;
  for (int32_t id : request.survivors) {
    if (!held_.contains(id)) {
      return Abort(absl::InvalidArgumentError(absl::StrCat(who, "holds no share of client ", id)));
    }
    if (!survivors.insert(id).second) {
      return Abort(absl::InvalidArgumentError(absl::StrCat(who, "client ", id, " listed twice")));
    }
  }
  for (int32_t id : request.dropped) {
    if (survivors.contains(id)) {
      return Abort(absl::InvalidArgumentError(
          absl::StrCat(who, "client ", id,
                       " is listed as both survivor and dropped (would reveal both shares)")));
    }
    if (!held_.contains(id)) {
      return Abort(absl::InvalidArgumentError(absl::StrCat(who, "holds no share of client ", id)));
    }
  }
  if (absl::flat_hash_set<int32_t>(request.dropped.begin(), request.dropped.end()).size() !=
      request.dropped.size()) {
    return Abort(absl::InvalidArgumentError(absl::StrCat(who, "a dropped client listed twice")));
  }
  if (!survivors.contains(index_)) {
    return Abort(absl::InvalidArgumentError(absl::StrCat(who, "it is not listed as a survivor")));
  }
  if (static_cast<int>(survivors.size()) < config_.threshold) {
    return Abort(absl::FailedPreconditionError(absl::StrCat(
        who, "only ", survivors.size(), " surviving share owners, threshold ", config_.threshold)));
  }

  UnmaskResponse response;
  response.sender = index_;
  response.shares.reserve(request.survivors.size() + request.dropped.size());
  for (int32_t id : request.survivors) {
    response.shares.push_back(
        RevealedShare{id, ShareKind::kSelfMaskSeed, held_[id].self_mask_seed});
  }
  for (int32_t id : request.dropped) {
    response.shares.push_back(RevealedShare{id, ShareKind::kMaskingKey, held_[id].masking_key});
  }
  phase_ = Phase::kDone;
  // Nothing else is ever revealed this round.
  held_.clear();
  masking_keys_ = {};
  masking_private_ = {};
  encryption_private_ = {};
  self_mask_seed_ = {};
  return response;
}

}  // namespace fedkit::secagg
