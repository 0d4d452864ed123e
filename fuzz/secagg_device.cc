#include "fuzz/secagg_device.h"

#include <algorithm>
#include <vector>

#include "privacy/secagg/encoding.h"

namespace fedkit::fuzz {

std::unique_ptr<SecAggDevice> SecAggDevice::Create(const v1::SecureAggregationParams& params,
                                                   float value, int64_t examples) {
  absl::StatusOr<SecAggAssignment> assignment = SecAggParamsFromProto(params);
  if (!assignment.ok() || assignment->dp_options.has_value()) return nullptr;
  absl::StatusOr<std::unique_ptr<secagg::SecAggClient>> client =
      secagg::SecAggClient::Create(assignment->config, assignment->client_index);
  if (!client.ok()) return nullptr;
  return std::unique_ptr<SecAggDevice>(
      new SecAggDevice(*std::move(assignment), *std::move(client), value, examples));
}

std::optional<v1::SecAggRequest> SecAggDevice::NextRequest() {
  v1::SecAggRequest request;
  auto poll = [&](v1::SecAggPoll::Want want) {
    request.mutable_poll()->set_want(want);
    return request;
  };
  switch (stage_) {
    case Stage::kAdvertise: {
      absl::StatusOr<secagg::AdvertiseKeysMessage> keys = client_->AdvertiseKeys();
      if (!keys.ok()) {
        stage_ = Stage::kDone;
        return std::nullopt;
      }
      *request.mutable_advertise_keys() = AdvertiseKeysToProto(*keys);
      stage_ = Stage::kWantDirectory;
      return request;
    }
    case Stage::kWantDirectory:
      return poll(v1::SecAggPoll::KEY_DIRECTORY);
    case Stage::kShare:
      stage_ = Stage::kWantBundle;
      return pending_;
    case Stage::kWantBundle:
      return poll(v1::SecAggPoll::SHARE_BUNDLE);
    case Stage::kWantUnmask:
      return poll(v1::SecAggPoll::UNMASK_REQUEST);
    case Stage::kUnmask:
      stage_ = Stage::kWantResult;
      return pending_;
    case Stage::kWantResult:
      return poll(v1::SecAggPoll::RESULT);
    case Stage::kUpload:
    case Stage::kDone:
      return std::nullopt;
  }
  return std::nullopt;
}

void SecAggDevice::OnResponse(const v1::SecAggResponse& response) {
  if (response.has_aborted() || response.has_finished()) {
    stage_ = Stage::kDone;
    return;
  }
  if (stage_ == Stage::kWantDirectory && response.has_key_directory()) {
    absl::StatusOr<secagg::KeyDirectory> directory =
        KeyDirectoryFromProto(response.key_directory());
    absl::StatusOr<secagg::ShareKeysMessage> shares =
        directory.ok() ? client_->ShareKeys(*directory)
                       : absl::StatusOr<secagg::ShareKeysMessage>(directory.status());
    if (!shares.ok()) {
      stage_ = Stage::kDone;
      return;
    }
    pending_.Clear();
    *pending_.mutable_share_keys() = ShareKeysToProto(*shares);
    stage_ = Stage::kShare;
  } else if (stage_ == Stage::kWantBundle && response.has_share_bundle()) {
    const int64_t length = params_.config.vector_length - 1;  // the model; the weight is last
    const std::vector<float> delta(static_cast<size_t>(std::max<int64_t>(length, 0)), value_);
    const int64_t weight = std::min(examples_, params_.encoding.max_weight);
    absl::StatusOr<std::vector<uint64_t>> encoded =
        secagg::EncodeWeightedUpdate(params_.encoding, delta, weight, /*rounding_seed=*/1);
    if (!encoded.ok()) {
      stage_ = Stage::kDone;
      return;
    }
    absl::StatusOr<secagg::MaskedInputMessage> masked =
        client_->MaskInput(ShareBundleFromProto(response.share_bundle()), *encoded);
    if (!masked.ok()) {
      stage_ = Stage::kDone;
      return;
    }
    masked_upload_ = PackMaskedValues(masked->masked_input, params_.config.modulus_bits);
    stage_ = Stage::kUpload;
  } else if (stage_ == Stage::kWantUnmask && response.has_unmask_request()) {
    absl::StatusOr<secagg::UnmaskResponse> unmask =
        client_->Unmask(UnmaskRequestFromProto(response.unmask_request()));
    if (!unmask.ok()) {
      stage_ = Stage::kDone;
      return;
    }
    pending_.Clear();
    *pending_.mutable_unmask() = UnmaskResponseToProto(*unmask);
    stage_ = Stage::kUnmask;
  }
}

void SecAggDevice::Uploaded() {
  masked_upload_.reset();
  if (stage_ == Stage::kUpload) stage_ = Stage::kWantUnmask;
}

}  // namespace fedkit::fuzz
