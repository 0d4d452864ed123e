// Fuzz target: the device's side of secure aggregation (privacy/secagg/client.h and the
// conversions of proto/secagg_conversion.h): everything a device parses from the coordinator in a
// round, namely its protocol parameters (SecureAggregationParams), the key directory, the share
// bundle and the unmask request. A real SecAggServer runs a round of 2 to 5 clients in memory;
// client 0 receives its messages through their wire form, which the fuzzer may pass as they
// are, edit at the byte level or replace by raw bytes, and the fuzzer also chooses which clients
// drop out in which phase. Checked beyond the sanitizers: whatever it is asked, client 0 never
// reveals two shares of one owner, nor a share other than the one the request asks for
// (self-mask seed of a survivor, masking key of a dropped client), nor its own masking key.
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "fuzz/fuzz_input.h"
#include "fuzz/quiet_protobuf.h"
#include "privacy/secagg/client.h"
#include "privacy/secagg/server.h"
#include "proto/secagg_conversion.h"

namespace fedkit::fuzz {
namespace {

constexpr int64_t kLength = 3;

// The message as sent, edited, or raw bytes parsed as one.
template <typename Message>
Message OverTheWire(FuzzInput& in, Message message) {
  switch (in.Int(0, 3)) {
    case 0:
      in.EditMessage(message);
      break;
    case 1: {
      Message raw;
      if (raw.ParseFromString(in.Bytes(2048))) message = std::move(raw);
      break;
    }
    default:
      break;
  }
  return message;
}

void CheckUnmask(const secagg::UnmaskRequest& request, const secagg::UnmaskResponse& response,
                 int32_t self) {
  const std::set<int32_t> survivors(request.survivors.begin(), request.survivors.end());
  const std::set<int32_t> dropped(request.dropped.begin(), request.dropped.end());
  std::set<int32_t> owners;
  for (const secagg::RevealedShare& share : response.shares) {
    if (!owners.insert(share.owner).second) std::abort();  // two shares of one owner
    if (share.kind == secagg::ShareKind::kSelfMaskSeed && survivors.count(share.owner) == 0) {
      std::abort();
    }
    if (share.kind == secagg::ShareKind::kMaskingKey &&
        (dropped.count(share.owner) == 0 || share.owner == self)) {
      std::abort();
    }
  }
}

void Run(FuzzInput& in) {
  const int n = static_cast<int>(in.Int(2, 5));
  const secagg::Variant variant =
      in.Bool() ? secagg::Variant::kSecAgg : secagg::Variant::kSecAggPlus;
  absl::StatusOr<secagg::ProtocolConfig> config =
      secagg::MakeProtocolConfig(variant, n, kLength, 32, 0.1, 0.05);
  if (!config.ok()) std::abort();
  absl::StatusOr<std::unique_ptr<secagg::SecAggServer>> created =
      secagg::SecAggServer::Create(*config);
  if (!created.ok()) std::abort();
  secagg::SecAggServer& server = **created;

  // Client 0's parameters come over the wire too.
  SecAggAssignment assignment;
  assignment.config = *config;
  assignment.client_index = 0;
  assignment.encoding = *secagg::ChooseEncoding(32, n, 1.0, 100);
  absl::StatusOr<SecAggAssignment> received =
      SecAggParamsFromProto(OverTheWire(in, SecAggParamsToProto(assignment)));
  if (!received.ok()) return;
  std::vector<std::unique_ptr<secagg::SecAggClient>> clients;
  absl::StatusOr<std::unique_ptr<secagg::SecAggClient>> first =
      secagg::SecAggClient::Create(received->config, received->client_index);
  if (!first.ok()) return;
  clients.push_back(*std::move(first));
  for (int i = 1; i < n; ++i) clients.push_back(*secagg::SecAggClient::Create(*config, i));
  const int32_t self = clients[0]->index();
  std::vector<bool> alive(n, true);
  auto drops = [&](int i) {
    if (alive[i] && in.Int(0, 7) == 0) alive[i] = false;
    return !alive[i];
  };

  for (int i = 0; i < n; ++i) {
    absl::StatusOr<secagg::AdvertiseKeysMessage> keys = clients[i]->AdvertiseKeys();
    if (!keys.ok() || drops(i)) continue;
    keys->sender = i;  // the server knows senders by their connection, not by what they say
    (void)server.HandleAdvertiseKeys(*keys);
  }
  if (!server.CloseAdvertiseKeys().ok()) return;
  for (int i = 0; i < n; ++i) {
    if (!alive[i]) continue;
    absl::StatusOr<secagg::KeyDirectory> directory = server.KeyDirectoryFor(i);
    if (!directory.ok()) continue;
    if (i == 0) {
      directory = KeyDirectoryFromProto(OverTheWire(in, KeyDirectoryToProto(*directory)));
      if (!directory.ok()) continue;
    }
    absl::StatusOr<secagg::ShareKeysMessage> shares = clients[i]->ShareKeys(*directory);
    if (!shares.ok() || drops(i)) continue;
    shares->sender = i;
    (void)server.HandleShareKeys(*shares);
  }
  if (!server.CloseShareKeys().ok()) return;
  const std::vector<uint64_t> input(kLength, 5);
  for (int i = 0; i < n; ++i) {
    if (!alive[i]) continue;
    absl::StatusOr<secagg::ShareBundle> bundle = server.ShareBundleFor(i);
    if (!bundle.ok()) continue;
    if (i == 0) *bundle = ShareBundleFromProto(OverTheWire(in, ShareBundleToProto(*bundle)));
    absl::StatusOr<secagg::MaskedInputMessage> masked = clients[i]->MaskInput(*bundle, input);
    if (!masked.ok() || drops(i)) continue;
    masked->sender = i;
    (void)server.HandleMaskedInput(*masked);
  }
  if (!server.CloseMaskedInput().ok()) return;
  for (int i = 0; i < n; ++i) {
    if (!alive[i]) continue;
    absl::StatusOr<secagg::UnmaskRequest> request = server.UnmaskRequestFor(i);
    if (!request.ok()) continue;
    if (i == 0) *request = UnmaskRequestFromProto(OverTheWire(in, UnmaskRequestToProto(*request)));
    absl::StatusOr<secagg::UnmaskResponse> response = clients[i]->Unmask(*request);
    if (!response.ok()) continue;
    if (i == 0) CheckUnmask(*request, *response, self);
    if (drops(i)) continue;
    response->sender = i;
    (void)server.HandleUnmaskResponse(*response);
  }
  (void)server.Finish();
}

}  // namespace
}  // namespace fedkit::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  fedkit::fuzz::FuzzInput in(data, size);
  fedkit::fuzz::Run(in);
  return 0;
}
