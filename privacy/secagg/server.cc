#include "privacy/secagg/server.h"

#include <algorithm>
#include <map>
#include <optional>
#include <utility>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "core/status_macros.h"
#include "privacy/secagg/prg.h"
#include "privacy/secagg/shamir.h"

namespace fedkit::secagg {
namespace {

std::vector<int32_t> Members(const std::vector<bool>& in) {
  std::vector<int32_t> out;
  for (size_t i = 0; i < in.size(); ++i) {
    if (in[i]) out.push_back(static_cast<int32_t>(i));
  }
  return out;
}

absl::string_view PhaseName(SecAggServer::Phase phase) {
  switch (phase) {
    case SecAggServer::Phase::kAdvertiseKeys:
      return "advertise-keys";
    case SecAggServer::Phase::kShareKeys:
      return "share-keys";
    case SecAggServer::Phase::kMaskedInput:
      return "masked-input";
    case SecAggServer::Phase::kUnmask:
      return "unmask";
    case SecAggServer::Phase::kDone:
      return "done";
    case SecAggServer::Phase::kAborted:
      return "aborted";
  }
  return "?";
}

std::string JoinIds(const std::vector<int32_t>& ids) {
  std::string out;
  for (size_t i = 0; i < ids.size(); ++i) absl::StrAppend(&out, i == 0 ? "" : ", ", ids[i]);
  return out;
}

}  // namespace

absl::string_view CulpritReasonName(SecAggCulprit::Reason reason) {
  switch (reason) {
    case SecAggCulprit::Reason::kBadShareCiphertext:
      return "bad_ciphertext";
    case SecAggCulprit::Reason::kBadRevealedShare:
      return "bad_share";
  }
  return "?";
}

absl::StatusOr<std::unique_ptr<SecAggServer>> SecAggServer::Create(const ProtocolConfig& config) {
  FEDKIT_RETURN_IF_ERROR(ValidateProtocolConfig(config));
  FEDKIT_ASSIGN_OR_RETURN(MaskingGraph graph, BuildGraph(config));
  return std::unique_ptr<SecAggServer>(new SecAggServer(config, std::move(graph)));
}

SecAggServer::SecAggServer(const ProtocolConfig& config, MaskingGraph graph)
    : config_(config),
      graph_(std::move(graph)),
      keys_(config.num_clients),
      shares_from_(config.num_clients),
      seed_commitments_(config.num_clients),
      in_u2_(config.num_clients, false),
      lacks_share_of_(config.num_clients),
      excluded_(config.num_clients, false),
      in_u3_(config.num_clients, false),
      in_u5_(config.num_clients, false),
      self_mask_seed_shares_(config.num_clients),
      masking_key_shares_(config.num_clients) {}

absl::Status SecAggServer::CheckPhase(Phase expected, absl::string_view what) const {
  if (phase_ == expected) return absl::OkStatus();
  return absl::FailedPreconditionError(absl::StrCat("secagg: ", what, " received in phase ",
                                                    PhaseName(phase_), " (expected ",
                                                    PhaseName(expected), ")"));
}

absl::Status SecAggServer::AbortWith(absl::Status status) {
  phase_ = Phase::kAborted;
  abort_status_ = status;
  // Keep nothing but the masked sum: no keys, no ciphertexts, no revealed shares.
  keys_.assign(keys_.size(), std::nullopt);
  shares_from_.assign(shares_from_.size(), {});
  seed_commitments_.assign(seed_commitments_.size(), {});
  self_mask_seed_shares_.assign(self_mask_seed_shares_.size(), {});
  masking_key_shares_.assign(masking_key_shares_.size(), {});
  return status;
}

void SecAggServer::Abort(absl::string_view reason) {
  if (phase_ == Phase::kAborted || phase_ == Phase::kDone) return;
  AbortWith(absl::AbortedError(absl::StrCat("secagg: round aborted: ", reason))).IgnoreError();
}

int SecAggServer::CountAliveHolders(int32_t owner, const std::vector<bool>& alive,
                                    bool include_owner) const {
  int count = include_owner && alive[owner] ? 1 : 0;
  for (int v : graph_.neighbours(owner)) {
    count += alive[v] && !lacks_share_of_[v].contains(owner) ? 1 : 0;
  }
  return count;
}

std::string SecAggServer::BadCiphertextNote(int32_t owner) const {
  auto it = culprits_.find({owner, SecAggCulprit::Reason::kBadShareCiphertext});
  if (it == culprits_.end()) return "";
  return absl::StrCat(" (its share ciphertexts to clients ", JoinIds(it->second),
                      " were reported bad)");
}

void SecAggServer::AddCulprit(int32_t client, SecAggCulprit::Reason reason, int32_t other) {
  std::vector<int32_t>& others = culprits_[{client, reason}];
  if (std::find(others.begin(), others.end(), other) == others.end()) others.push_back(other);
}

std::vector<SecAggCulprit> SecAggServer::culprits() const {
  std::vector<SecAggCulprit> out;
  for (const auto& [key, others] : culprits_) {
    std::vector<int32_t> sorted = others;
    std::sort(sorted.begin(), sorted.end());
    out.push_back(SecAggCulprit{key.first, key.second, std::move(sorted)});
  }
  return out;
}

std::string SecAggServer::CulpritNote() const {
  if (culprits_.empty()) return "";
  std::string out = "; culprits:";
  for (const SecAggCulprit& c : culprits()) {
    absl::StrAppend(&out, " client ", c.client, " (",
                    c.reason == SecAggCulprit::Reason::kBadShareCiphertext
                        ? "share ciphertexts reported bad by clients "
                        : "revealed shares off the committed polynomial of clients ",
                    JoinIds(c.others), ")");
  }
  return out;
}

bool SecAggServer::excluded(int32_t client) const {
  return client >= 0 && client < config_.num_clients && excluded_[client];
}

absl::Status SecAggServer::CheckSurvival(const std::vector<bool>& alive,
                                         absl::string_view phase_name) {
  const int64_t remaining = std::count(alive.begin(), alive.end(), true);
  if (remaining < config_.threshold) {
    return AbortWith(
        absl::AbortedError(absl::StrCat("secagg: round aborted after ", phase_name, ": ", remaining,
                                        " clients remain, threshold is ", config_.threshold)));
  }
  for (int32_t u = 0; u < config_.num_clients; ++u) {
    if (!alive[u]) continue;
    const int holders = CountAliveHolders(u, alive, /*include_owner=*/true);
    if (holders < config_.threshold) {
      return AbortWith(absl::AbortedError(absl::StrCat(
          "secagg: round aborted after ", phase_name, ": client ", u, " has ", holders,
          " remaining share holders, threshold is ", config_.threshold, BadCiphertextNote(u))));
    }
  }
  return absl::OkStatus();
}

// ---- Phase 0: advertise keys ----

absl::Status SecAggServer::HandleAdvertiseKeys(const AdvertiseKeysMessage& message) {
  FEDKIT_RETURN_IF_ERROR(CheckPhase(Phase::kAdvertiseKeys, "advertise-keys message"));
  const int32_t u = message.sender;
  if (u < 0 || u >= config_.num_clients) {
    return absl::FailedPreconditionError(
        absl::StrCat("secagg: advertise-keys from unknown client ", u));
  }
  if (keys_[u].has_value()) {
    return absl::AlreadyExistsError(
        absl::StrCat("secagg: client ", u, " already advertised its keys"));
  }
  if (message.encryption_public_key == message.masking_public_key) {
    return absl::InvalidArgumentError(
        absl::StrCat("secagg: client ", u, " advertised the same key twice"));
  }
  for (const auto& other : keys_) {
    if (!other.has_value()) continue;
    for (const Key32& k : {other->encryption_public_key, other->masking_public_key}) {
      if (k == message.encryption_public_key || k == message.masking_public_key) {
        return absl::InvalidArgumentError(
            absl::StrCat("secagg: client ", u, " advertised a public key already used by client ",
                         other->sender));
      }
    }
  }
  keys_[u] = message;
  return absl::OkStatus();
}

absl::Status SecAggServer::CloseAdvertiseKeys() {
  FEDKIT_RETURN_IF_ERROR(CheckPhase(Phase::kAdvertiseKeys, "closing advertise-keys"));
  std::vector<bool> alive(config_.num_clients);
  for (int32_t u = 0; u < config_.num_clients; ++u) alive[u] = keys_[u].has_value();
  FEDKIT_RETURN_IF_ERROR(CheckSurvival(alive, "advertise-keys"));
  phase_ = Phase::kShareKeys;
  return absl::OkStatus();
}

absl::StatusOr<KeyDirectory> SecAggServer::KeyDirectoryFor(int32_t client) const {
  if (phase_ != Phase::kShareKeys) {
    return absl::FailedPreconditionError(
        absl::StrCat("secagg: key directory requested in phase ", PhaseName(phase_)));
  }
  if (client < 0 || client >= config_.num_clients || !keys_[client].has_value()) {
    return absl::FailedPreconditionError(
        absl::StrCat("secagg: client ", client, " did not advertise keys"));
  }
  KeyDirectory directory;
  std::vector<int32_t> ids = {client};
  for (int v : graph_.neighbours(client)) ids.push_back(v);
  std::sort(ids.begin(), ids.end());
  for (int32_t v : ids) {
    if (!keys_[v].has_value()) continue;
    directory.peers.push_back(
        PeerKeys{v, keys_[v]->encryption_public_key, keys_[v]->masking_public_key});
  }
  return directory;
}

// ---- Phase 1: share keys ----

absl::Status SecAggServer::HandleShareKeys(const ShareKeysMessage& message) {
  FEDKIT_RETURN_IF_ERROR(CheckPhase(Phase::kShareKeys, "share-keys message"));
  const int32_t u = message.sender;
  if (u < 0 || u >= config_.num_clients || !keys_[u].has_value()) {
    return absl::FailedPreconditionError(
        absl::StrCat("secagg: share-keys from client ", u, ", which did not advertise keys"));
  }
  if (in_u2_[u]) {
    return absl::AlreadyExistsError(absl::StrCat("secagg: client ", u, " already sent shares"));
  }
  // Exactly one ciphertext for each neighbour that advertised keys.
  absl::flat_hash_set<int32_t> expected;
  for (int v : graph_.neighbours(u)) {
    if (keys_[v].has_value()) expected.insert(v);
  }
  if (message.shares.size() != expected.size()) {
    return absl::InvalidArgumentError(absl::StrCat("secagg: client ", u, " sent ",
                                                   message.shares.size(), " shares, expected ",
                                                   expected.size()));
  }
  const size_t ciphertext_bytes = kAeadOverheadBytes + 8 + 2 * kShamirShareBytes;
  for (const EncryptedShare& share : message.shares) {
    if (share.sender != u) {
      return absl::InvalidArgumentError(
          absl::StrCat("secagg: client ", u, " sent a share claiming sender ", share.sender));
    }
    if (!expected.erase(share.recipient)) {
      return absl::InvalidArgumentError(absl::StrCat("secagg: client ", u,
                                                     " sent a share for client ", share.recipient,
                                                     ", not a neighbour in U1 or listed twice"));
    }
    if (share.ciphertext.size() != ciphertext_bytes) {
      return absl::InvalidArgumentError(
          absl::StrCat("secagg: client ", u, " sent a share ciphertext of ",
                       share.ciphertext.size(), " bytes, expected ", ciphertext_bytes));
    }
  }
  shares_from_[u] = message.shares;
  seed_commitments_[u] = message.self_mask_seed_commitment;
  in_u2_[u] = true;
  return absl::OkStatus();
}

absl::Status SecAggServer::CloseShareKeys() {
  FEDKIT_RETURN_IF_ERROR(CheckPhase(Phase::kShareKeys, "closing share-keys"));
  FEDKIT_RETURN_IF_ERROR(CheckSurvival(in_u2_, "share-keys"));
  phase_ = Phase::kMaskedInput;
  masked_sum_.assign(config_.vector_length, 0);
  return absl::OkStatus();
}

absl::StatusOr<ShareBundle> SecAggServer::ShareBundleFor(int32_t client) const {
  if (phase_ != Phase::kMaskedInput) {
    return absl::FailedPreconditionError(
        absl::StrCat("secagg: share bundle requested in phase ", PhaseName(phase_)));
  }
  if (client < 0 || client >= config_.num_clients || !in_u2_[client]) {
    return absl::FailedPreconditionError(
        absl::StrCat("secagg: client ", client, " did not share keys"));
  }
  ShareBundle bundle;
  for (int v : graph_.neighbours(client)) {
    if (!in_u2_[v]) continue;
    for (const EncryptedShare& share : shares_from_[v]) {
      if (share.recipient == client) bundle.shares.push_back(share);
    }
  }
  return bundle;
}

// ---- Phase 2: masked input ----

absl::Status SecAggServer::HandleMaskedInput(const MaskedInputMessage& message) {
  FEDKIT_RETURN_IF_ERROR(CheckPhase(Phase::kMaskedInput, "masked input"));
  const int32_t u = message.sender;
  if (u < 0 || u >= config_.num_clients || !in_u2_[u]) {
    return absl::FailedPreconditionError(
        absl::StrCat("secagg: masked input from client ", u, ", which did not share keys"));
  }
  if (excluded_[u]) {
    return absl::FailedPreconditionError(absl::StrCat(
        "secagg: masked input from client ", u, ", excluded from the round", BadCiphertextNote(u)));
  }
  if (in_u3_[u]) {
    return absl::AlreadyExistsError(
        absl::StrCat("secagg: client ", u, " already sent its masked input"));
  }
  if (static_cast<int64_t>(message.masked_input.size()) != config_.vector_length) {
    return absl::InvalidArgumentError(
        absl::StrCat("secagg: client ", u, " sent ", message.masked_input.size(),
                     " masked values, expected ", config_.vector_length));
  }
  const uint64_t mask = ModulusMask(config_.modulus_bits);
  for (uint64_t v : message.masked_input) {
    if ((v & ~mask) != 0) {
      return absl::InvalidArgumentError(absl::StrCat("secagg: client ", u, " sent value ", v,
                                                     " outside Z_2^", config_.modulus_bits));
    }
  }
  for (size_t i = 0; i < message.bad_share_senders.size(); ++i) {
    const int32_t sender = message.bad_share_senders[i];
    if (i > 0 && sender <= message.bad_share_senders[i - 1]) {
      return absl::InvalidArgumentError(
          absl::StrCat("secagg: client ", u, " reported bad share senders unsorted or repeated"));
    }
    if (sender < 0 || sender >= config_.num_clients || !in_u2_[sender] ||
        !graph_.AreNeighbours(u, sender)) {
      return absl::InvalidArgumentError(absl::StrCat("secagg: client ", u, " reported client ",
                                                     sender,
                                                     "'s share as bad, not a neighbour in U2"));
    }
  }
  for (int32_t sender : message.bad_share_senders) {
    lacks_share_of_[u].insert(sender);
    AddCulprit(sender, SecAggCulprit::Reason::kBadShareCiphertext, u);
    // Not yet summed: out of the round, as if it dropped after sharing keys. Already summed: it
    // stays, and its secrets must come from its other holders.
    if (!in_u3_[sender]) excluded_[sender] = true;
  }
  for (int64_t i = 0; i < config_.vector_length; ++i) {
    masked_sum_[i] = (masked_sum_[i] + message.masked_input[i]) & mask;
  }
  in_u3_[u] = true;
  return absl::OkStatus();
}

absl::Status SecAggServer::CloseMaskedInput() {
  FEDKIT_RETURN_IF_ERROR(CheckPhase(Phase::kMaskedInput, "closing masked-input"));
  FEDKIT_RETURN_IF_ERROR(CheckSurvival(in_u3_, "masked-input"));
  // Each dropped client's masking key must be recoverable from surviving holders.
  for (int32_t u = 0; u < config_.num_clients; ++u) {
    if (!in_u2_[u] || in_u3_[u]) continue;
    const int holders = CountAliveHolders(u, in_u3_, /*include_owner=*/false);
    if (holders < config_.threshold) {
      return AbortWith(absl::AbortedError(absl::StrCat(
          "secagg: round aborted after masked-input: ", excluded_[u] ? "excluded" : "dropped",
          " client ", u, " has ", holders, " surviving share holders, threshold is ",
          config_.threshold, BadCiphertextNote(u))));
    }
  }
  phase_ = Phase::kUnmask;
  return absl::OkStatus();
}

absl::StatusOr<UnmaskRequest> SecAggServer::UnmaskRequestFor(int32_t client) const {
  if (phase_ != Phase::kUnmask) {
    return absl::FailedPreconditionError(
        absl::StrCat("secagg: unmask request requested in phase ", PhaseName(phase_)));
  }
  if (client < 0 || client >= config_.num_clients || !in_u3_[client]) {
    return absl::FailedPreconditionError(
        absl::StrCat("secagg: client ", client, " did not send a masked input"));
  }
  UnmaskRequest request;
  request.survivors.push_back(client);
  for (int v : graph_.neighbours(client)) {
    if (!in_u2_[v] || lacks_share_of_[client].contains(v)) continue;
    (in_u3_[v] ? request.survivors : request.dropped).push_back(v);
  }
  std::sort(request.survivors.begin(), request.survivors.end());
  return request;
}

// ---- Phase 3: unmasking ----

absl::Status SecAggServer::HandleUnmaskResponse(const UnmaskResponse& message) {
  FEDKIT_RETURN_IF_ERROR(CheckPhase(Phase::kUnmask, "unmask response"));
  const int32_t v = message.sender;
  if (v < 0 || v >= config_.num_clients || !in_u3_[v]) {
    return absl::FailedPreconditionError(
        absl::StrCat("secagg: unmask response from client ", v, ", not a survivor"));
  }
  if (in_u5_[v]) {
    return absl::AlreadyExistsError(
        absl::StrCat("secagg: client ", v, " already sent its unmask response"));
  }
  FEDKIT_ASSIGN_OR_RETURN(UnmaskRequest request, UnmaskRequestFor(v));
  // The response must answer the request exactly: a b-share per survivor, a key share per dropout.
  std::map<int32_t, ShareKind> expected;
  for (int32_t id : request.survivors) expected[id] = ShareKind::kSelfMaskSeed;
  for (int32_t id : request.dropped) expected[id] = ShareKind::kMaskingKey;
  if (message.shares.size() != expected.size()) {
    return absl::InvalidArgumentError(absl::StrCat("secagg: client ", v, " revealed ",
                                                   message.shares.size(), " shares, expected ",
                                                   expected.size()));
  }
  for (const RevealedShare& revealed : message.shares) {
    auto it = expected.find(revealed.owner);
    if (it == expected.end() || it->second != revealed.kind) {
      return absl::InvalidArgumentError(absl::StrCat(
          "secagg: client ", v, " revealed an unrequested share (owner ", revealed.owner, ")"));
    }
    expected.erase(it);
    if (revealed.share.x != static_cast<uint32_t>(v) + 1) {
      return absl::InvalidArgumentError(
          absl::StrCat("secagg: client ", v, " revealed a share at the wrong point"));
    }
    for (uint64_t y : revealed.share.y) {
      if (y >= kShamirPrime) {
        return absl::InvalidArgumentError(
            absl::StrCat("secagg: client ", v, " revealed a share outside the field"));
      }
    }
  }
  for (const RevealedShare& revealed : message.shares) {
    auto& bucket = revealed.kind == ShareKind::kSelfMaskSeed
                       ? self_mask_seed_shares_[revealed.owner]
                       : masking_key_shares_[revealed.owner];
    bucket.push_back(revealed.share);
  }
  in_u5_[v] = true;
  return absl::OkStatus();
}

absl::StatusOr<const ShamirReconstructor*> SecAggServer::ReconstructorAt(
    const std::vector<uint32_t>& xs, uint32_t point) {
  auto key = std::make_pair(xs, point);
  auto it = reconstructors_.find(key);
  if (it == reconstructors_.end()) {
    FEDKIT_ASSIGN_OR_RETURN(ShamirReconstructor r, ShamirReconstructor::CreateAt(xs, point));
    it = reconstructors_.emplace(std::move(key), std::move(r)).first;
  }
  return &it->second;
}

absl::StatusOr<SecAggServer::Recovered> SecAggServer::RecoverSecret(
    std::vector<ShamirShare> shares, const std::function<bool(const Key32&)>& verify, int32_t owner,
    absl::string_view what) {
  const int t = config_.threshold;
  const int m = static_cast<int>(shares.size());
  if (m < t) {
    return absl::AbortedError(absl::StrCat("secagg: round aborted in unmask: ", m,
                                           " shares of client ", owner, "'s ", what, ", threshold ",
                                           t, BadCiphertextNote(owner), CulpritNote()));
  }
  std::sort(shares.begin(), shares.end(),
            [](const ShamirShare& a, const ShamirShare& b) { return a.x < b.x; });
  // Try the shares of holders not yet caught first (a client that lied about one secret likely
  // lied about others), then all of them.
  std::vector<int> trusted;
  for (int i = 0; i < m; ++i) {
    const int32_t holder = static_cast<int32_t>(shares[i].x) - 1;
    if (!culprits_.contains({holder, SecAggCulprit::Reason::kBadRevealedShare})) {
      trusted.push_back(i);
    }
  }
  std::vector<int> everyone(m);
  for (int i = 0; i < m; ++i) everyone[i] = i;

  int64_t attempts = 0;
  std::optional<std::vector<int>> found;  // indices of t shares that match the commitment
  std::optional<Key32> secret;
  auto attempt = [&](const std::vector<int>& pool, const std::vector<int>& left_out) -> bool {
    std::vector<int> chosen;
    std::vector<uint32_t> xs;
    for (size_t p = 0, e = 0; p < pool.size() && static_cast<int>(chosen.size()) < t; ++p) {
      if (e < left_out.size() && left_out[e] == static_cast<int>(p)) {
        ++e;
        continue;
      }
      chosen.push_back(pool[p]);
      xs.push_back(shares[pool[p]].x);
    }
    if (static_cast<int>(chosen.size()) < t) return false;
    ++attempts;
    std::vector<ShamirShare> subset;
    for (int i : chosen) subset.push_back(shares[i]);
    // Only the first (no share left out) is likely to repeat across owners: cache just those.
    absl::StatusOr<Key32> candidate;
    if (left_out.empty()) {
      absl::StatusOr<const ShamirReconstructor*> r = ReconstructorAt(xs, 0);
      if (!r.ok()) return false;
      candidate = (*r)->Reconstruct(subset);
    } else {
      candidate = ShamirReconstruct(subset, t);
    }
    if (!candidate.ok() || !verify(*candidate)) return false;
    found = std::move(chosen);
    secret = *candidate;
    return true;
  };
  // Leaves out every choice of e positions among the pool's first t + e, for e = 0, 1, ...
  auto search = [&](const std::vector<int>& pool) {
    const int size = static_cast<int>(pool.size());
    for (int e = 0; e <= size - t; ++e) {
      std::vector<int> left_out(e);
      for (int i = 0; i < e; ++i) left_out[i] = i;
      while (true) {
        if (attempts >= kMaxReconstructionAttempts) return;
        if (attempt(pool, left_out)) return;
        // Next combination of e out of t + e positions.
        int i = e - 1;
        while (i >= 0 && left_out[i] == t + i) --i;
        if (i < 0) break;
        ++left_out[i];
        for (int j = i + 1; j < e; ++j) left_out[j] = left_out[j - 1] + 1;
      }
    }
  };
  if (static_cast<int>(trusted.size()) >= t && static_cast<int>(trusted.size()) < m) {
    search(trusted);
  }
  if (!found.has_value()) search(everyone);
  if (!found.has_value()) {
    return absl::AbortedError(absl::StrCat(
        "secagg: round aborted in unmask: no ", t, " of the ", m, " shares of client ", owner,
        "'s ", what, " match its commitment (", attempts, " tries)", CulpritNote()));
  }

  // Every other share should lie on the polynomial through the chosen ones. The commitment binds
  // only the secret, so liars among the chosen could have picked a polynomial through it that
  // leaves honest shares off: holders are named only when the shares on the polynomial number at
  // least t + (those off it). Then, unless more holders lied than are named, the polynomial is the
  // owner's (another one through the secret meets the owner's in at most t - 1 honest shares).
  Recovered recovered;
  recovered.secret = *secret;
  std::vector<uint32_t> xs;
  std::vector<ShamirShare> subset;
  for (int i : *found) {
    xs.push_back(shares[i].x);
    subset.push_back(shares[i]);
  }
  std::vector<bool> chosen(m, false);
  for (int i : *found) chosen[i] = true;
  std::vector<uint32_t> extra_xs;
  std::vector<ShamirShare> extra;
  for (int j = 0; j < m; ++j) {
    if (chosen[j]) continue;
    extra_xs.push_back(shares[j].x);
    extra.push_back(shares[j]);
  }
  if (extra.empty()) return recovered;
  // All at once first (the usual case: nobody lied); one by one only when that fails.
  auto key = std::make_pair(xs, extra_xs);
  auto check = consistency_checks_.find(key);
  if (check == consistency_checks_.end()) {
    FEDKIT_ASSIGN_OR_RETURN(ShamirConsistencyCheck c, ShamirConsistencyCheck::Create(xs, extra_xs));
    check = consistency_checks_.emplace(std::move(key), std::move(c)).first;
  }
  FEDKIT_ASSIGN_OR_RETURN(bool consistent, check->second.Consistent(subset, extra));
  if (consistent) return recovered;
  for (int j = 0; j < m; ++j) {
    if (chosen[j]) continue;
    FEDKIT_ASSIGN_OR_RETURN(const ShamirReconstructor* at, ReconstructorAt(xs, shares[j].x));
    FEDKIT_ASSIGN_OR_RETURN(auto expected, at->Interpolate(subset));
    if (expected != shares[j].y) {
      recovered.bad_holders.push_back(static_cast<int32_t>(shares[j].x) - 1);
    }
  }
  const int off = static_cast<int>(recovered.bad_holders.size());
  if (m - off < t + off) recovered.bad_holders.clear();
  return recovered;
}

absl::StatusOr<std::vector<uint64_t>> SecAggServer::Finish() {
  FEDKIT_RETURN_IF_ERROR(CheckPhase(Phase::kUnmask, "finishing"));
  const int t = config_.threshold;
  const int64_t responders = std::count(in_u5_.begin(), in_u5_.end(), true);
  if (responders < t) {
    return AbortWith(absl::AbortedError(absl::StrCat(
        "secagg: round aborted in unmask: ", responders, " clients responded, threshold ", t)));
  }
  // First every secret (cheap), each checked against its commitment; then the masks (the slow part,
  // each expanded over the whole vector), so a round that cannot finish aborts before that work.
  std::vector<std::optional<Key32>> self_seeds(config_.num_clients);
  std::vector<std::optional<Key32>> masking_keys(config_.num_clients);
  auto recover = [&](int32_t u) -> absl::Status {
    if (in_u3_[u]) {
      const Key32& commitment = seed_commitments_[u];
      auto verify = [&](const Key32& b) {
        absl::StatusOr<Key32> c = SelfMaskSeedCommitment(b, config_.session_id, u);
        return c.ok() && *c == commitment;
      };
      FEDKIT_ASSIGN_OR_RETURN(
          Recovered r, RecoverSecret(self_mask_seed_shares_[u], verify, u, "self-mask seed"));
      for (int32_t holder : r.bad_holders) {
        AddCulprit(holder, SecAggCulprit::Reason::kBadRevealedShare, u);
      }
      self_seeds[u] = r.secret;
    } else if (in_u2_[u]) {
      const Key32& public_key = keys_[u]->masking_public_key;
      auto verify = [&](const Key32& key) {
        absl::StatusOr<Key32> derived = X25519PublicKey(key);
        return derived.ok() && *derived == public_key;
      };
      FEDKIT_ASSIGN_OR_RETURN(Recovered r,
                              RecoverSecret(masking_key_shares_[u], verify, u, "masking key"));
      for (int32_t holder : r.bad_holders) {
        AddCulprit(holder, SecAggCulprit::Reason::kBadRevealedShare, u);
      }
      masking_keys[u] = r.secret;
    }
    return absl::OkStatus();
  };
  // Owners whose secret could not be recovered are tried again once the others have shown who
  // lies (their shares are then left out first).
  std::vector<int32_t> retry;
  for (int32_t u = 0; u < config_.num_clients; ++u) {
    if (!recover(u).ok()) retry.push_back(u);
  }
  for (int32_t u : retry) {
    absl::Status status = recover(u);
    if (!status.ok()) return AbortWith(status);
  }

  std::vector<uint64_t> sum = masked_sum_;
  absl::Span<uint64_t> out = absl::MakeSpan(sum);
  for (int32_t u = 0; u < config_.num_clients; ++u) {
    if (self_seeds[u].has_value()) {
      FEDKIT_ASSIGN_OR_RETURN(Key32 seed, SelfMaskSeed(*self_seeds[u], config_.session_id));
      FEDKIT_RETURN_IF_ERROR(AddPrgMask(seed, -1, config_.modulus_bits, out));
    } else if (masking_keys[u].has_value()) {
      FEDKIT_ASSIGN_OR_RETURN(X25519PrivateKey private_key,
                              X25519PrivateKey::Create(*masking_keys[u]));
      // Survivor v applied PairwiseMaskSign(v, u) * PRG(s_vu); take it back out.
      for (int v : graph_.neighbours(u)) {
        if (!in_u3_[v]) continue;
        FEDKIT_ASSIGN_OR_RETURN(
            Key32 seed,
            PairwiseMaskSeed(private_key, keys_[v]->masking_public_key, config_.session_id));
        FEDKIT_RETURN_IF_ERROR(
            AddPrgMask(seed, -PairwiseMaskSign(v, u), config_.modulus_bits, out));
      }
    }
  }
  phase_ = Phase::kDone;
  return sum;
}

std::vector<int32_t> SecAggServer::advertised() const {
  std::vector<bool> in(keys_.size());
  for (size_t i = 0; i < keys_.size(); ++i) in[i] = keys_[i].has_value();
  return Members(in);
}
std::vector<int32_t> SecAggServer::shared() const { return Members(in_u2_); }
std::vector<int32_t> SecAggServer::masked_input_senders() const { return Members(in_u3_); }
std::vector<int32_t> SecAggServer::unmask_responders() const { return Members(in_u5_); }

int SecAggServer::RevealedShareCount(int32_t owner, ShareKind kind) const {
  if (owner < 0 || owner >= config_.num_clients) return 0;
  return static_cast<int>(kind == ShareKind::kSelfMaskSeed ? self_mask_seed_shares_[owner].size()
                                                           : masking_key_shares_[owner].size());
}

}  // namespace fedkit::secagg
