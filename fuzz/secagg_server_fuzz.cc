// Fuzz target: the coordinator's side of secure aggregation (server/secure_aggregation_round.h
// over privacy/secagg/server.h and the conversions of proto/secagg_conversion.h): every message a
// device sends in a round (advertised keys, encrypted shares, the packed masked input, revealed
// shares, polls), for SecAgg and SecAgg+ with 2 to 5 devices. Each device runs the honest protocol
// (fuzz/secagg_device.h); the fuzzer picks who speaks, and whether the message goes as it is,
// edited at the byte level, replaced by raw bytes parsed as a SecAggRequest, or not at all
// (dropouts), and when deadlines pass. Checked beyond the sanitizers: when the round succeeds the
// unmasked sum has the round's length and every included device's input is exactly counted
// (the sum of honest inputs when no message was edited).
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "fuzz/fuzz_input.h"
#include "fuzz/quiet_protobuf.h"
#include "fuzz/secagg_device.h"
#include "privacy/secagg/encoding.h"
#include "server/secure_aggregation_round.h"

namespace fedkit::fuzz {
namespace {

const absl::Time kStart = absl::FromUnixSeconds(3'000'000);
constexpr int64_t kModel = 2;  // model values; the vector adds the weight

void Run(FuzzInput& in) {
  const int n = static_cast<int>(in.Int(2, 5));
  secagg::SecureAggregationSettings settings;
  settings.variant = in.Bool() ? secagg::Variant::kSecAgg : secagg::Variant::kSecAggPlus;
  settings.phase_timeout = absl::Seconds(10);
  server::SecAggInputEncoding encoding;
  absl::StatusOr<secagg::FixedPointEncoding> fixed_point =
      secagg::ChooseEncoding(32, n, /*clip_norm=*/1.0, /*max_weight=*/100);
  if (!fixed_point.ok()) std::abort();
  encoding.fixed_point = *fixed_point;
  server::SecAggRoundLimits limits;
  if (in.Bool()) limits.max_inputs = in.Int(1, n);
  std::vector<std::string> ids;
  for (int i = 0; i < n; ++i) ids.push_back("client-" + std::to_string(i));
  absl::Time now = kStart;
  absl::StatusOr<std::unique_ptr<server::SecureAggregationRound>> started =
      server::SecureAggregationRound::Start(settings, encoding, kModel + 1, ids, now,
                                            absl::Seconds(30), limits);
  if (!started.ok()) std::abort();  // valid settings
  server::SecureAggregationRound& round = **started;

  std::vector<std::unique_ptr<SecAggDevice>> devices;
  std::vector<int64_t> weights;
  for (int i = 0; i < n; ++i) {
    const int64_t examples = in.Int(0, 100);
    weights.push_back(examples);
    devices.push_back(SecAggDevice::Create(*round.ParamsFor(ids[i]), 0.25f, examples));
    if (devices.back() == nullptr) std::abort();  // the round's own parameters must convert
  }
  bool edited = false;
  for (int step = 0; step < 300 && !in.empty(); ++step) {
    const int who = static_cast<int>(in.Int(0, n - 1));
    const std::string& id = in.Int(0, 15) == 0 ? in.Bytes(16) : ids[who];
    SecAggDevice& device = *devices[who];
    switch (in.Int(0, 5)) {
      case 0:
      case 1: {  // the device's next message, maybe edited
        std::optional<v1::SecAggRequest> request = device.NextRequest();
        if (!request.has_value()) break;
        if (in.Bool()) {
          const std::string before = request->SerializeAsString();
          in.EditMessage(*request);
          edited = edited || request->SerializeAsString() != before;
        }
        absl::StatusOr<v1::SecAggResponse> response = round.Handle(id, *request, now);
        if (response.ok() && id == ids[who]) device.OnResponse(*response);
        break;
      }
      case 2: {  // raw bytes
        v1::SecAggRequest request;
        if (request.ParseFromString(in.Bytes(1024))) {
          edited = true;
          (void)round.Handle(id, request, now);
        }
        break;
      }
      case 3: {  // the masked upload, maybe edited, or raw bytes
        std::string packed;
        if (device.masked_upload().has_value() && in.Bool()) {
          packed = *device.masked_upload();
          if (in.Bool()) {
            packed = in.Edit(packed);
            edited = edited || packed != *device.masked_upload();
          }
        } else {
          packed = in.Bytes(64);
          edited = true;
        }
        absl::StatusOr<v1::UploadResponse> response =
            round.HandleMaskedInput(id, packed, in.Bool() ? in.Double() : 0.5);
        if (response.ok() && id == ids[who] && device.masked_upload().has_value() &&
            packed == *device.masked_upload()) {
          device.Uploaded();
        }
        break;
      }
      case 4:
        now += absl::Milliseconds(in.Int(0, 40'000));
        break;
      default:
        break;
    }
    if (round.Advance(now) == server::SecureAggregationRound::State::kReadyToFinish) break;
  }
  round.Advance(now);
  static const bool verbose = std::getenv("FEDKIT_FUZZ_VERBOSE") != nullptr;
  if (verbose) {  // to check what a seed reaches
    std::fprintf(stderr, "secagg_server: phase %s, state %d\n",
                 std::string(round.phase_name()).c_str(), static_cast<int>(round.state()));
  }
  if (round.Finish() != server::SecureAggregationRound::State::kSucceeded) return;
  if (round.sum().size() != static_cast<size_t>(kModel + 1)) std::abort();
  if (edited) return;
  // Only honest messages: the sum is the included devices' encoded inputs.
  int64_t total_weight = 0;
  for (const std::string& id : round.included_clients()) {
    total_weight += weights[std::stoi(id.substr(id.find('-') + 1))];
  }
  absl::StatusOr<secagg::DecodedSum> decoded = secagg::DecodeSum(encoding.fixed_point, round.sum());
  if (!decoded.ok() || decoded->total_weight != total_weight) std::abort();
}

}  // namespace
}  // namespace fedkit::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  fedkit::fuzz::FuzzInput in(data, size);
  fedkit::fuzz::Run(in);
  return 0;
}
