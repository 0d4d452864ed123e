// Fuzz target: the coordinator's round state machine (server/round_coordinator.h) as the gRPC
// service drives it, with every request a device can send built from the fuzzer's bytes: CheckIn,
// GetModel, Decline, SubmitUpdate (header and delta), SecureAggregationStep and
// SubmitMaskedUpdate, and Tick with time moving forward. Rounds run plain FedAvg or secure
// aggregation (SecAgg or SecAgg+), with or without over-selection. Four devices know their
// assignment ids, and under secure aggregation run the honest protocol (fuzz/secagg_device.h)
// whose messages the fuzzer may send as they are, edited at the byte level, or replace by raw
// bytes parsed as a SecAggRequest; ids may also be the fuzzer's own. Plain rounds may run central
// DP-FedAvg, with adaptive clipping (the upload header's unclipped bit).
// Checked beyond the sanitizers: no call crashes or throws, and the global model stays finite.
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "fuzz/fuzz_input.h"
#include "fuzz/quiet_protobuf.h"
#include "fuzz/secagg_device.h"
#include "server/client_sampler.h"
#include "server/round_coordinator.h"

namespace fedkit::fuzz {
namespace {

constexpr int kDevices = 4;
const absl::Time kStart = absl::FromUnixSeconds(2'000'000);

struct Device {
  std::string id;
  v1::RoundAssignment assignment;  // the last one received (empty before)
  std::unique_ptr<SecAggDevice> secure;
};

std::unique_ptr<server::RoundCoordinator> MakeCoordinator(FuzzInput& in) {
  server::CoordinatorOptions o;
  o.model_name = "tiny";
  o.rounds = in.Int(1, 3);
  o.clients_per_round = in.Int(1, 3);
  o.min_clients = in.Int(1, o.clients_per_round);
  o.over_select = in.Bool() ? 0.5 : 0.0;
  o.min_available = in.Int(0, 4);
  o.round_timeout = absl::Seconds(60);
  o.selection_timeout = absl::Seconds(5);
  o.retry_interval = absl::Seconds(1);
  o.plan.set_local_epochs(1);
  o.plan.set_batch_size(10);
  o.plan.set_learning_rate(0.1);
  o.plan.set_clip_norm(in.Bool() ? 1.0 : 0.0);
  o.plan.set_run_seed(7);
  o.max_examples_per_client = 100;
  if (in.Bool()) {
    secagg::SecureAggregationSettings secure;
    secure.variant = in.Bool() ? secagg::Variant::kSecAgg : secagg::Variant::kSecAggPlus;
    secure.phase_timeout = absl::Seconds(10);
    o.plan.set_clip_norm(1.0);
    o.min_clients = std::max<int64_t>(o.min_clients, 2);
    o.clients_per_round = std::max<int64_t>(o.clients_per_round, 2);
    o.secure_aggregation = secure;
  } else if (in.Bool()) {  // central DP-FedAvg, maybe with adaptive clipping
    privacy::DpSettings dp;
    dp.mode = privacy::DpMode::kCentral;
    dp.noise_multiplier = 0.8;
    if (in.Bool()) {
      dp.adaptive_clip_quantile = 0.5;
      dp.noise_multiplier = 0.05;  // below 2 sigma_b = clients per round / 10
    }
    o.plan.set_clip_norm(1.0);
    o.dp = dp;
    // A DP round starts only once the whole population waits: the round's own clients.
    o.population = server::OverSelectedTarget(o.clients_per_round, o.over_select);
    o.dp_noise_seed = 42;
  }
  ParameterLayout layout;
  layout.Append("w", {3});
  absl::StatusOr<std::unique_ptr<server::RoundCoordinator>> coordinator =
      server::RoundCoordinator::Create(o, layout, {0, 0, 0}, server::CoordinatorHooks{});
  if (!coordinator.ok()) return nullptr;
  return *std::move(coordinator);
}

// The device's ids, or (now and then) the fuzzer's.
template <typename Request>
void SetIds(FuzzInput& in, const Device& device, Request& request) {
  request.set_client_id(device.id);
  request.set_assignment_id(device.assignment.assignment_id());
  request.set_round(device.assignment.round());
  if (in.Int(0, 7) == 0) {
    switch (in.Int(0, 2)) {
      case 0:
        request.set_client_id(in.Bytes(160));
        break;
      case 1:
        request.set_assignment_id(in.Bytes(64));
        break;
      default:
        request.set_round(static_cast<int64_t>(in.Bits(8)));
        break;
    }
  }
}

void CheckFinite(const server::RoundCoordinator& coordinator) {
  for (float value : coordinator.global_parameters()) {
    if (!std::isfinite(value)) std::abort();  // a refused update reached the model
  }
}

void Run(FuzzInput& in) {
  std::unique_ptr<server::RoundCoordinator> coordinator = MakeCoordinator(in);
  if (coordinator == nullptr) return;
  std::vector<Device> devices(kDevices);
  for (int i = 0; i < kDevices; ++i) devices[i].id = "device-" + std::to_string(i);
  absl::Time now = kStart;

  int step = 0;
  for (; step < 400 && !in.empty(); ++step) {
    const int op = static_cast<int>(in.Int(0, 9));
    Device& device = devices[in.Int(0, kDevices - 1)];
    switch (op) {
      case 0: {  // CheckIn
        v1::CheckInRequest request;
        request.set_client_id(in.Int(0, 7) == 0 ? in.Bytes(160) : device.id);
        request.set_api_version(static_cast<int32_t>(in.Int(0, 2)));
        if (in.Bool()) {
          request.mutable_capabilities()->set_num_examples(static_cast<int64_t>(in.Bits(8)));
          request.mutable_capabilities()->set_secure_aggregation(in.Bool());
          if (in.Bool()) request.mutable_capabilities()->add_model_names(in.Bytes(16));
        }
        absl::StatusOr<v1::CheckInResponse> response = coordinator->CheckIn(request, now);
        if (response.ok() && response->has_assignment() && request.client_id() == device.id) {
          device.assignment = response->assignment();
          device.secure.reset();
          if (device.assignment.has_secure_aggregation() &&
              !device.assignment.secure_aggregation().protocol().empty()) {
            device.secure = SecAggDevice::Create(device.assignment.secure_aggregation(),
                                                 /*value=*/0.1f,
                                                 /*examples=*/in.Int(0, 150));
          }
        }
        break;
      }
      case 1: {  // GetModel
        v1::GetModelRequest request;
        SetIds(in, device, request);
        (void)coordinator->GetModel(request, now);
        break;
      }
      case 2: {  // Decline
        v1::DeclineRequest request;
        SetIds(in, device, request);
        request.set_reason(static_cast<v1::DeclineRequest::Reason>(in.Int(-1, 7)));
        (void)coordinator->Decline(request, now);
        break;
      }
      case 3: {  // SubmitUpdate: a plain delta
        v1::UpdateHeader header;
        SetIds(in, device, header);
        header.set_num_examples(in.Bool() ? in.Int(-2, 120) : static_cast<int64_t>(in.Bits(8)));
        std::vector<float> delta(static_cast<size_t>(in.Int(0, 4)));
        for (float& value : delta) value = in.Bool() ? in.Float() : 0.25f;
        header.set_total_size(in.Bool() ? static_cast<int64_t>(delta.size()) : in.Int(-1, 8));
        header.set_train_loss(in.Bool() ? in.Double() : 0.5);
        if (in.Bool()) header.set_unclipped(in.Bool());
        (void)coordinator->SubmitUpdate(header, delta, now);
        break;
      }
      case 4:
      case 5: {  // SecureAggregationStep: the honest device's next message, maybe edited
        if (device.secure == nullptr) break;
        std::optional<v1::SecAggRequest> request = device.secure->NextRequest();
        if (!request.has_value()) break;
        if (op == 5) in.EditMessage(*request);
        SetIds(in, device, *request);
        absl::StatusOr<v1::SecAggResponse> response =
            coordinator->SecureAggregationStep(*request, now);
        if (response.ok()) device.secure->OnResponse(*response);
        break;
      }
      case 6: {  // SecureAggregationStep: raw bytes
        v1::SecAggRequest request;
        if (!request.ParseFromString(in.Bytes(512))) break;
        if (in.Bool()) SetIds(in, device, request);
        (void)coordinator->SecureAggregationStep(request, now);
        break;
      }
      case 7: {  // SubmitMaskedUpdate: the honest upload, edited, or raw bytes
        v1::UpdateHeader header;
        SetIds(in, device, header);
        std::string packed;
        if (device.secure != nullptr && device.secure->masked_upload().has_value()) {
          packed = *device.secure->masked_upload();
          header.set_total_size(device.secure->vector_length());
          if (in.Bool()) packed = in.Edit(packed);
        } else {
          packed = in.Bytes(64);
          header.set_total_size(in.Int(-1, 8));
        }
        if (in.Bool()) header.set_num_examples(static_cast<int64_t>(in.Bits(2)));
        header.set_train_loss(in.Bool() ? in.Double() : 0.5);
        absl::StatusOr<v1::UploadResponse> response =
            coordinator->SubmitMaskedUpdate(header, packed, now);
        if (response.ok() && device.secure != nullptr) device.secure->Uploaded();
        break;
      }
      case 8:  // time passes
        now += absl::Milliseconds(in.Int(0, 120'000));
        (void)coordinator->Tick(now);
        break;
      default:  // what GetStatus reads
        (void)coordinator->Status(now);
        (void)coordinator->WaitingFor(now);
        break;
    }
  }
  CheckFinite(*coordinator);
  static const bool verbose = std::getenv("FEDKIT_FUZZ_VERBOSE") != nullptr;
  if (verbose) {  // to check what a seed reaches
    std::fprintf(stderr, "round_coordinator: %d steps, %lld rounds committed, status: %s\n", step,
                 static_cast<long long>(coordinator->rounds_completed()),
                 coordinator->Status(now).ShortDebugString().c_str());
  }
}

}  // namespace
}  // namespace fedkit::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  fedkit::fuzz::FuzzInput in(data, size);
  fedkit::fuzz::Run(in);
  return 0;
}
