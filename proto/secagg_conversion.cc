#include "proto/secagg_conversion.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "core/status_macros.h"
#include "privacy/secagg/prg.h"
#include "privacy/secagg/shamir.h"

namespace fedkit {
namespace {

using secagg::Key32;

absl::StatusOr<Key32> KeyFromBytes(const std::string& bytes, absl::string_view field) {
  if (bytes.size() != secagg::kKeyBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, " must be ", secagg::kKeyBytes, " bytes, got ", bytes.size()));
  }
  Key32 key;
  std::copy(bytes.begin(), bytes.end(), key.begin());
  return key;
}

std::string KeyToBytes(const Key32& key) { return std::string(key.begin(), key.end()); }

int ValueBytes(int modulus_bits) { return (modulus_bits + 7) / 8; }

}  // namespace

v1::SecureAggregationParams SecAggParamsToProto(const SecAggAssignment& a) {
  v1::SecureAggregationParams p;
  p.set_protocol(std::string(secagg::VariantName(a.config.variant)));
  p.set_num_clients(a.config.num_clients);
  p.set_threshold(a.config.threshold);
  p.set_degree(a.config.degree);
  p.set_graph_seed(a.config.graph_seed);
  p.set_modulus_bits(a.config.modulus_bits);
  p.set_vector_length(a.config.vector_length);
  p.set_session_id(KeyToBytes(a.config.session_id));
  p.set_client_index(a.client_index);
  p.set_max_inputs(a.max_inputs);
  p.set_scale(a.encoding.scale);
  p.set_clip_norm(a.encoding.clip_norm);
  p.set_max_weight(a.encoding.max_weight);
  p.set_max_clients(a.encoding.max_clients);
  if (a.dp_options.has_value()) {
    v1::DpEncodingParams& dp = *p.mutable_dp();
    dp.set_max_clients(a.dp_options->max_clients);
    dp.set_dim(a.dp_options->dim);
    dp.set_noise_multiplier(a.dp_options->noise_multiplier);
    dp.set_dropout_tolerance(a.dp_options->dropout_tolerance);
    dp.set_with_count(a.dp_options->with_count);
    dp.set_clipped_count_stddev(a.dp_options->clipped_count_stddev);
  }
  return p;
}

absl::StatusOr<SecAggAssignment> SecAggParamsFromProto(const v1::SecureAggregationParams& p) {
  SecAggAssignment a;
  FEDKIT_ASSIGN_OR_RETURN(a.config.variant, secagg::ParseVariant(p.protocol()));
  a.config.num_clients = p.num_clients();
  a.config.threshold = p.threshold();
  a.config.degree = p.degree();
  a.config.graph_seed = p.graph_seed();
  a.config.modulus_bits = p.modulus_bits();
  a.config.vector_length = p.vector_length();
  FEDKIT_ASSIGN_OR_RETURN(a.config.session_id, KeyFromBytes(p.session_id(), "session_id"));
  FEDKIT_RETURN_IF_ERROR(secagg::ValidateProtocolConfig(a.config));
  a.client_index = p.client_index();
  if (a.client_index < 0 || a.client_index >= a.config.num_clients) {
    return absl::InvalidArgumentError(
        absl::StrCat("client_index ", a.client_index, " outside [0, ", a.config.num_clients, ")"));
  }
  if (p.max_inputs() < 0 || p.max_inputs() > a.config.num_clients) {
    return absl::InvalidArgumentError(
        absl::StrCat("max_inputs ", p.max_inputs(), " outside [0, ", a.config.num_clients, "]"));
  }
  a.max_inputs = p.max_inputs();
  const int64_t summed = a.max_inputs > 0 ? a.max_inputs : a.config.num_clients;
  a.encoding.modulus_bits = p.modulus_bits();
  a.encoding.scale = p.scale();
  a.encoding.clip_norm = p.clip_norm();
  a.encoding.max_weight = p.max_weight();
  a.encoding.max_clients = p.max_clients();
  if (p.has_dp()) {
    if (!(a.encoding.clip_norm > 0) || !std::isfinite(a.encoding.clip_norm)) {
      return absl::InvalidArgumentError("secure aggregation with DP needs clip_norm > 0");
    }
    privacy::DistributedDpEncodingOptions options;
    options.modulus_bits = p.modulus_bits();
    options.max_clients = p.dp().max_clients();
    options.dim = p.dp().dim();
    options.noise_multiplier = p.dp().noise_multiplier();
    options.dropout_tolerance = p.dp().dropout_tolerance();
    options.with_count = p.dp().with_count();
    options.clipped_count_stddev = p.dp().clipped_count_stddev();
    if (options.max_clients < summed) {
      return absl::InvalidArgumentError(
          absl::StrCat("the DP encoding's max_clients (", options.max_clients,
                       ") is below the inputs the server sums (", summed, ")"));
    }
    absl::StatusOr<privacy::DistributedDpEncoding> encoding =
        privacy::ChooseDistributedDpEncoding(options);
    if (!encoding.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("the DP encoding cannot be derived: ", encoding.status().message()));
    }
    if (encoding->length() != a.config.vector_length) {
      return absl::InvalidArgumentError(absl::StrCat("the DP encoding has ", encoding->length(),
                                                     " values, the protocol ",
                                                     a.config.vector_length));
    }
    a.dp_options = options;
    a.dp_encoding = *std::move(encoding);
    return a;
  }
  if (!(a.encoding.scale > 0) || !(a.encoding.clip_norm > 0) || a.encoding.max_weight < 1 ||
      a.encoding.max_clients < summed) {
    return absl::InvalidArgumentError(
        "secure aggregation encoding needs scale > 0, clip_norm > 0, max_weight >= 1 and "
        "max_clients >= the inputs the server sums (max_inputs, or num_clients)");
  }
  return a;
}

v1::SecAggAdvertiseKeys AdvertiseKeysToProto(const secagg::AdvertiseKeysMessage& m) {
  v1::SecAggAdvertiseKeys p;
  p.set_encryption_public_key(KeyToBytes(m.encryption_public_key));
  p.set_masking_public_key(KeyToBytes(m.masking_public_key));
  return p;
}

absl::StatusOr<secagg::AdvertiseKeysMessage> AdvertiseKeysFromProto(
    const v1::SecAggAdvertiseKeys& p, int32_t sender) {
  secagg::AdvertiseKeysMessage m;
  m.sender = sender;
  FEDKIT_ASSIGN_OR_RETURN(m.encryption_public_key,
                          KeyFromBytes(p.encryption_public_key(), "encryption_public_key"));
  FEDKIT_ASSIGN_OR_RETURN(m.masking_public_key,
                          KeyFromBytes(p.masking_public_key(), "masking_public_key"));
  return m;
}

v1::SecAggKeyDirectory KeyDirectoryToProto(const secagg::KeyDirectory& directory) {
  v1::SecAggKeyDirectory p;
  for (const secagg::PeerKeys& peer : directory.peers) {
    v1::SecAggPeerKeys* out = p.add_peers();
    out->set_id(peer.id);
    out->set_encryption_public_key(KeyToBytes(peer.encryption_public_key));
    out->set_masking_public_key(KeyToBytes(peer.masking_public_key));
  }
  return p;
}

absl::StatusOr<secagg::KeyDirectory> KeyDirectoryFromProto(const v1::SecAggKeyDirectory& p) {
  secagg::KeyDirectory directory;
  for (const v1::SecAggPeerKeys& peer : p.peers()) {
    secagg::PeerKeys keys;
    keys.id = peer.id();
    FEDKIT_ASSIGN_OR_RETURN(keys.encryption_public_key,
                            KeyFromBytes(peer.encryption_public_key(), "encryption_public_key"));
    FEDKIT_ASSIGN_OR_RETURN(keys.masking_public_key,
                            KeyFromBytes(peer.masking_public_key(), "masking_public_key"));
    directory.peers.push_back(keys);
  }
  return directory;
}

namespace {

void EncryptedShareToProto(const secagg::EncryptedShare& share, v1::SecAggEncryptedShare* out) {
  out->set_sender(share.sender);
  out->set_recipient(share.recipient);
  out->set_ciphertext(std::string(share.ciphertext.begin(), share.ciphertext.end()));
}

secagg::EncryptedShare EncryptedShareFromProto(const v1::SecAggEncryptedShare& p) {
  return secagg::EncryptedShare{p.sender(), p.recipient(),
                                std::vector<uint8_t>(p.ciphertext().begin(), p.ciphertext().end())};
}

}  // namespace

v1::SecAggShareKeys ShareKeysToProto(const secagg::ShareKeysMessage& m) {
  v1::SecAggShareKeys p;
  for (const auto& share : m.shares) EncryptedShareToProto(share, p.add_shares());
  p.set_self_mask_seed_commitment(KeyToBytes(m.self_mask_seed_commitment));
  return p;
}

absl::StatusOr<secagg::ShareKeysMessage> ShareKeysFromProto(const v1::SecAggShareKeys& p,
                                                            int32_t sender) {
  secagg::ShareKeysMessage m;
  m.sender = sender;
  FEDKIT_ASSIGN_OR_RETURN(m.self_mask_seed_commitment,
                          KeyFromBytes(p.self_mask_seed_commitment(), "self_mask_seed_commitment"));
  for (const auto& share : p.shares()) m.shares.push_back(EncryptedShareFromProto(share));
  return m;  // the state machine checks senders, recipients and sizes
}

v1::SecAggShareBundle ShareBundleToProto(const secagg::ShareBundle& bundle) {
  v1::SecAggShareBundle p;
  for (const auto& share : bundle.shares) EncryptedShareToProto(share, p.add_shares());
  return p;
}

secagg::ShareBundle ShareBundleFromProto(const v1::SecAggShareBundle& p) {
  secagg::ShareBundle bundle;
  for (const auto& share : p.shares()) bundle.shares.push_back(EncryptedShareFromProto(share));
  return bundle;
}

v1::SecAggUnmaskRequest UnmaskRequestToProto(const secagg::UnmaskRequest& request) {
  v1::SecAggUnmaskRequest p;
  p.mutable_survivors()->Add(request.survivors.begin(), request.survivors.end());
  p.mutable_dropped()->Add(request.dropped.begin(), request.dropped.end());
  return p;
}

secagg::UnmaskRequest UnmaskRequestFromProto(const v1::SecAggUnmaskRequest& p) {
  return secagg::UnmaskRequest{{p.survivors().begin(), p.survivors().end()},
                               {p.dropped().begin(), p.dropped().end()}};
}

v1::SecAggUnmask UnmaskResponseToProto(const secagg::UnmaskResponse& response) {
  v1::SecAggUnmask p;
  for (const secagg::RevealedShare& share : response.shares) {
    v1::SecAggRevealedShare* out = p.add_shares();
    out->set_owner(share.owner);
    out->set_kind(static_cast<int32_t>(share.kind));
    const auto bytes = secagg::SerializeShareValues(share.share);
    out->set_values(std::string(bytes.begin(), bytes.end()));
  }
  return p;
}

absl::StatusOr<secagg::UnmaskResponse> UnmaskResponseFromProto(const v1::SecAggUnmask& p,
                                                               int32_t sender) {
  secagg::UnmaskResponse response;
  response.sender = sender;
  for (const v1::SecAggRevealedShare& share : p.shares()) {
    if (share.kind() != static_cast<int32_t>(secagg::ShareKind::kSelfMaskSeed) &&
        share.kind() != static_cast<int32_t>(secagg::ShareKind::kMaskingKey)) {
      return absl::InvalidArgumentError(
          absl::StrCat("revealed share kind ", share.kind(), " is not 1 or 2"));
    }
    const std::string& v = share.values();
    FEDKIT_ASSIGN_OR_RETURN(
        secagg::ShamirShare parsed,
        secagg::ParseShareValues(
            static_cast<uint32_t>(sender) + 1,
            absl::MakeConstSpan(reinterpret_cast<const uint8_t*>(v.data()), v.size())));
    response.shares.push_back(
        secagg::RevealedShare{share.owner(), static_cast<secagg::ShareKind>(share.kind()), parsed});
  }
  return response;
}

std::string PackMaskedValues(absl::Span<const uint64_t> values, int modulus_bits) {
  const int width = ValueBytes(modulus_bits);
  std::string packed(values.size() * width, '\0');
  char* out = packed.data();
  for (uint64_t v : values) {
    for (int b = 0; b < width; ++b) *out++ = static_cast<char>((v >> (8 * b)) & 0xff);
  }
  return packed;
}

absl::Status UnpackMaskedValues(const std::string& packed, int modulus_bits,
                                std::vector<uint64_t>* out) {
  if (modulus_bits < 1 || modulus_bits > 64) {
    return absl::InvalidArgumentError(absl::StrCat("modulus bits ", modulus_bits));
  }
  const int width = ValueBytes(modulus_bits);
  if (packed.size() % width != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("masked values: ", packed.size(), " bytes is not a multiple of ", width));
  }
  const uint64_t mask = secagg::ModulusMask(modulus_bits);
  const auto* in = reinterpret_cast<const uint8_t*>(packed.data());
  const size_t count = packed.size() / width;
  out->reserve(out->size() + count);
  for (size_t i = 0; i < count; ++i) {
    uint64_t v = 0;
    for (int b = 0; b < width; ++b) v |= static_cast<uint64_t>(in[i * width + b]) << (8 * b);
    if ((v & ~mask) != 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("masked value ", v, " outside Z_2^", modulus_bits));
    }
    out->push_back(v);
  }
  return absl::OkStatus();
}

}  // namespace fedkit
