#include "privacy/secagg/protocol.h"

#include <openssl/crypto.h>

#include "absl/strings/str_cat.h"
#include "core/status_macros.h"

namespace fedkit::secagg {
namespace {

constexpr int64_t kIdBytes = 4;

int64_t PackedValueBytes(int modulus_bits) { return (modulus_bits + 7) / 8; }

}  // namespace

absl::string_view VariantName(Variant variant) {
  return variant == Variant::kSecAgg ? "secagg" : "secagg+";
}

absl::StatusOr<Variant> ParseVariant(absl::string_view name) {
  if (name == "secagg") return Variant::kSecAgg;
  if (name == "secagg+") return Variant::kSecAggPlus;
  return absl::InvalidArgumentError(
      absl::StrCat("unknown secure aggregation protocol '", name, "' (secagg, secagg+)"));
}

absl::StatusOr<ProtocolConfig> MakeProtocolConfig(Variant variant, int num_clients,
                                                  int64_t vector_length, int modulus_bits,
                                                  double dropout_rate, double corrupt_fraction) {
  ProtocolConfig config;
  config.variant = variant;
  config.num_clients = num_clients;
  config.modulus_bits = modulus_bits;
  config.vector_length = vector_length;
  if (num_clients < 2) {
    return absl::InvalidArgumentError(
        absl::StrCat("secure aggregation needs at least 2 clients, got ", num_clients));
  }
  config.degree = num_clients - 1;
  FEDKIT_ASSIGN_OR_RETURN(config.threshold, SecAggThreshold(num_clients));
  if (variant == Variant::kSecAggPlus) {
    absl::StatusOr<GraphParameters> sparse =
        SecAggPlusParameters(num_clients, dropout_rate, corrupt_fraction);
    if (sparse.ok()) {
      config.degree = sparse->degree;
      config.threshold = sparse->threshold;
    } else if (sparse.status().code() != absl::StatusCode::kFailedPrecondition) {
      return sparse.status();
    }
    // FAILED_PRECONDITION: n is too small for a sparse graph; the complete graph it is.
  }
  FEDKIT_ASSIGN_OR_RETURN(config.session_id, SecureRandomKey());
  Key32 seed_bytes;
  FEDKIT_RETURN_IF_ERROR(SecureRandomBytes(absl::MakeSpan(seed_bytes)));
  for (int i = 0; i < 8; ++i) config.graph_seed = (config.graph_seed << 8) | seed_bytes[i];
  FEDKIT_RETURN_IF_ERROR(ValidateProtocolConfig(config));
  return config;
}

absl::StatusOr<ProtocolConfig> MakeProtocolConfig(const SecureAggregationSettings& settings,
                                                  int num_clients, int64_t vector_length) {
  return MakeProtocolConfig(settings.variant, num_clients, vector_length, settings.modulus_bits,
                            settings.design_dropout_rate, settings.corrupt_fraction);
}

absl::Status ValidateProtocolConfig(const ProtocolConfig& config) {
  const int n = config.num_clients;
  if (n < 2) {
    return absl::InvalidArgumentError(absl::StrCat("secagg: need n >= 2 clients, got ", n));
  }
  const bool complete = config.degree == n - 1;
  if (config.variant == Variant::kSecAgg && !complete) {
    return absl::InvalidArgumentError(
        absl::StrCat("secagg: the SecAgg variant uses the complete graph (degree ", n - 1,
                     "), got degree ", config.degree));
  }
  if (!complete && (config.degree < 2 || config.degree % 2 != 0 || config.degree > n - 2)) {
    return absl::InvalidArgumentError(
        absl::StrCat("secagg: degree must be even and in [2, n - 2] or n - 1 (complete), got ",
                     config.degree, " for n = ", n));
  }
  if (config.threshold < 2 || config.threshold > config.degree + 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("secagg: threshold must be in [2, degree + 1 = ", config.degree + 1,
                     "] (a client and its neighbours hold its shares), got ", config.threshold));
  }
  if (complete && 2 * config.threshold <= n) {
    return absl::InvalidArgumentError(absl::StrCat(
        "secagg: threshold must exceed n/2 (semi-honest server), got t = ", config.threshold,
        " for n = ", n));
  }
  if (config.modulus_bits < 1 || config.modulus_bits > 64) {
    return absl::InvalidArgumentError(
        absl::StrCat("secagg: modulus bits must be in [1, 64], got ", config.modulus_bits));
  }
  if (config.vector_length < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("secagg: vector length must be >= 1, got ", config.vector_length));
  }
  return absl::OkStatus();
}

absl::StatusOr<MaskingGraph> BuildGraph(const ProtocolConfig& config) {
  if (config.degree == config.num_clients - 1) return MaskingGraph::Complete(config.num_clients);
  return MaskingGraph::RandomHarary(config.num_clients, config.degree, config.graph_seed);
}

absl::StatusOr<std::vector<int>> NeighboursOf(const ProtocolConfig& config, int node) {
  if (node < 0 || node >= config.num_clients) {
    return absl::InvalidArgumentError(
        absl::StrCat("node ", node, " outside [0, ", config.num_clients, ")"));
  }
  if (config.degree == config.num_clients - 1) {
    std::vector<int> all;
    all.reserve(config.num_clients - 1);
    for (int v = 0; v < config.num_clients; ++v) {
      if (v != node) all.push_back(v);
    }
    return all;
  }
  return MaskingGraph::RandomHararyNeighbours(config.num_clients, config.degree, config.graph_seed,
                                              node);
}

int64_t WireBytes(const AdvertiseKeysMessage&) { return kIdBytes + 2 * kKeyBytes; }

int64_t WireBytes(const ShareKeysMessage& message) {
  int64_t bytes = kIdBytes + kKeyBytes;  // sender, self-mask seed commitment
  for (const EncryptedShare& share : message.shares) {
    bytes += 2 * kIdBytes + static_cast<int64_t>(share.ciphertext.size());
  }
  return bytes;
}

int64_t WireBytes(const MaskedInputMessage& message, int modulus_bits) {
  return kIdBytes + kIdBytes * static_cast<int64_t>(message.bad_share_senders.size()) +
         static_cast<int64_t>(message.masked_input.size()) * PackedValueBytes(modulus_bits);
}

int64_t WireBytes(const UnmaskResponse& message) {
  // Per share: owner id, kind byte, the share's values.
  return kIdBytes + static_cast<int64_t>(message.shares.size()) *
                        (kIdBytes + 1 + static_cast<int64_t>(kShamirShareBytes));
}

absl::StatusOr<Key32> ShareEncryptionKey(const X25519PrivateKey& own_private,
                                         const Key32& peer_public, const Key32& session_id) {
  FEDKIT_ASSIGN_OR_RETURN(Key32 shared, own_private.SharedSecret(peer_public));
  return HkdfSha256(shared, session_id, "fedkit/secagg/v1/share-encryption");
}

absl::StatusOr<Key32> PairwiseMaskSeed(const X25519PrivateKey& own_private,
                                       const Key32& peer_public, const Key32& session_id) {
  FEDKIT_ASSIGN_OR_RETURN(Key32 shared, own_private.SharedSecret(peer_public));
  return HkdfSha256(shared, session_id, "fedkit/secagg/v1/pairwise-mask");
}

absl::StatusOr<Key32> SelfMaskSeed(const Key32& b, const Key32& session_id) {
  return HkdfSha256(b, session_id, "fedkit/secagg/v1/self-mask");
}

absl::StatusOr<Key32> SelfMaskSeedCommitment(const Key32& b, const Key32& session_id,
                                             int32_t owner) {
  static constexpr absl::string_view kTag = "fedkit/secagg/v1/self-mask-seed-commitment";
  std::vector<uint8_t> message(kTag.begin(), kTag.end());
  message.insert(message.end(), session_id.begin(), session_id.end());
  const uint32_t u = static_cast<uint32_t>(owner);
  for (int i = 0; i < 4; ++i) message.push_back(static_cast<uint8_t>(u >> (8 * i)));
  message.insert(message.end(), b.begin(), b.end());
  absl::StatusOr<Key32> digest = Sha256(message);
  OPENSSL_cleanse(message.data(), message.size());
  return digest;
}

std::vector<uint8_t> ShareAssociatedData(const Key32& session_id, int32_t sender,
                                         int32_t recipient) {
  std::vector<uint8_t> data(session_id.begin(), session_id.end());
  for (int32_t id : {sender, recipient}) {
    const uint32_t u = static_cast<uint32_t>(id);
    for (int i = 0; i < 4; ++i) data.push_back(static_cast<uint8_t>(u >> (8 * i)));
  }
  return data;
}

}  // namespace fedkit::secagg
