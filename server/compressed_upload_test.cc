// The coordinator's side of update compression (plan.compression): compressed uploads decode into
// the same exact aggregate as float uploads, malformed or oversized ones are refused and counted,
// and the round's traffic is reported per device.
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "compression/spec.h"
#include "compression/update_codec.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "proto/compression_conversion.h"
#include "proto/layout_conversion.h"
#include "proto/wire_sizes.h"
#include "server/round_coordinator.h"

namespace fedkit::server {
namespace {

using ::testing::HasSubstr;

const absl::Time kStart = absl::FromUnixSeconds(1'000'000);
constexpr int64_t kDim = 20000;

ParameterLayout Layout() {
  ParameterLayout layout;
  layout.Append("w", {kDim - 10});
  layout.Append("b", {10});
  return layout;
}

compression::CompressionSpec Spec(const char* text) {
  absl::StatusOr<compression::CompressionSpec> spec = compression::ParseCompressionSpec(text);
  EXPECT_TRUE(spec.ok()) << spec.status();
  return *spec;
}

CoordinatorOptions Options(const compression::CompressionSpec& spec, double clip_norm = 0.0) {
  CoordinatorOptions o;
  o.model_name = "m";
  o.rounds = 2;
  o.clients_per_round = 2;
  o.min_clients = 2;
  o.plan.set_local_epochs(1);
  o.plan.set_batch_size(10);
  o.plan.set_learning_rate(0.1);
  o.plan.set_clip_norm(clip_norm);
  o.plan.set_run_seed(7);
  *o.plan.mutable_compression() = proto::CompressionToProto(spec);
  return o;
}

std::unique_ptr<RoundCoordinator> Make(const CoordinatorOptions& o) {
  auto c = RoundCoordinator::Create(o, Layout(), std::vector<float>(kDim, 0.0f), {});
  EXPECT_TRUE(c.ok()) << c.status();
  return c.ok() ? *std::move(c) : nullptr;
}

std::map<std::string, v1::RoundAssignment> Assign(RoundCoordinator& c) {
  std::map<std::string, v1::RoundAssignment> assigned;
  for (int pass = 0; pass < 2; ++pass) {
    for (const std::string id : {"a", "b"}) {
      v1::CheckInRequest request;
      request.set_client_id(id);
      request.set_api_version(1);
      absl::StatusOr<v1::CheckInResponse> r = c.CheckIn(request, kStart);
      EXPECT_TRUE(r.ok()) << r.status();
      if (r.ok() && r->has_assignment()) assigned[id] = r->assignment();
    }
  }
  return assigned;
}

v1::UpdateHeader Header(const v1::RoundAssignment& a, const std::string& id,
                        const std::string& encoded) {
  v1::UpdateHeader h;
  h.set_client_id(id);
  h.set_assignment_id(a.assignment_id());
  h.set_round(a.round());
  h.set_num_examples(10);
  h.set_total_size(kDim);
  h.set_compressed_size(static_cast<int64_t>(encoded.size()));
  return h;
}

std::vector<float> Delta(float scale) {
  std::vector<float> delta(kDim);
  for (int64_t i = 0; i < kDim; ++i) delta[i] = scale * static_cast<float>((i % 17) - 8) / 8.0f;
  return delta;
}

TEST(CompressedUploadTest, TheAggregateIsTheMeanOfWhatTheDevicesEncoded) {
  const compression::CompressionSpec spec = Spec("quantize-rotate:8");
  auto c = Make(Options(spec));
  ASSERT_NE(c, nullptr);
  EXPECT_EQ(c->compression(), spec);
  auto assigned = Assign(*c);
  ASSERT_EQ(assigned.size(), 2u);
  EXPECT_EQ(assigned["a"].plan().compression().method(), v1::CompressionParams::QUANTIZE_ROTATE);
  EXPECT_EQ(assigned["a"].plan().compression().bits(), 8);

  std::vector<float> expected(kDim, 0.0f);
  int64_t sent = 0;
  for (const auto& [id, scale] : std::map<std::string, float>{{"a", 0.01f}, {"b", -0.02f}}) {
    auto encoder = compression::UpdateEncoder::Create(spec, kDim);
    ASSERT_TRUE(encoder.ok());
    auto encoded = encoder->Encode(Delta(scale), 0.0, id == "a" ? 1 : 2);
    ASSERT_TRUE(encoded.ok()) << encoded.status();
    auto decoded = compression::DecodeUpdate(spec, *encoded, kDim);
    ASSERT_TRUE(decoded.ok());
    for (int64_t i = 0; i < kDim; ++i) expected[i] += (*decoded)[i] / 2.0f;
    const v1::UpdateHeader header = Header(assigned[id], id, *encoded);
    ASSERT_TRUE(c->CheckCompressedUploadHeader(header).ok());
    absl::StatusOr<v1::UploadResponse> r = c->SubmitCompressedUpdate(header, *encoded, kStart);
    ASSERT_TRUE(r.ok()) << r.status();
    sent += proto::UploadStreamBytes(header, proto::UploadPayload::kCompressedBytes,
                                     static_cast<int64_t>(encoded->size()));
  }
  ASSERT_EQ(c->rounds_completed(), 1);
  const std::vector<float> global = c->global_parameters();
  for (int64_t i = 0; i < kDim; ++i) EXPECT_NEAR(global[i], expected[i], 1e-6) << i;

  const v1::GetStatusResponse status = c->Status(kStart);
  ASSERT_EQ(status.history_size(), 1);
  EXPECT_DOUBLE_EQ(status.history(0).upload_bytes(), static_cast<double>(sent) / 2.0);
  // 8 bits instead of 32 per value: about 4x fewer bytes than float uploads.
  EXPECT_LT(status.history(0).upload_bytes() * 3.9, 4.0 * kDim);
}

TEST(CompressedUploadTest, DownloadsAreCountedPerDevice) {
  auto c = Make(Options(Spec("topk:0.1")));
  ASSERT_NE(c, nullptr);
  auto assigned = Assign(*c);
  ASSERT_EQ(assigned.size(), 2u);
  for (const auto& [id, a] : assigned) {
    v1::GetModelRequest get;
    get.set_client_id(id);
    get.set_assignment_id(a.assignment_id());
    get.set_round(a.round());
    ASSERT_TRUE(c->GetModel(get, kStart).ok());
  }
  for (const auto& [id, a] : assigned) {
    auto encoder = compression::UpdateEncoder::Create(c->compression(), kDim);
    ASSERT_TRUE(encoder.ok());
    auto encoded = encoder->Encode(Delta(0.01f), 0.0, 3);
    ASSERT_TRUE(encoded.ok());
    ASSERT_TRUE(c->SubmitCompressedUpdate(Header(a, id, *encoded), *encoded, kStart).ok());
  }
  const v1::GetStatusResponse status = c->Status(kStart);
  ASSERT_EQ(status.history_size(), 1);
  EXPECT_DOUBLE_EQ(status.history(0).download_bytes(),
                   static_cast<double>(proto::ModelStreamBytes(
                       1, kDim, proto::kDefaultModelChunkFloats, LayoutToProto(Layout()))));
  EXPECT_GT(status.history(0).upload_bytes(), 0.0);
}

TEST(CompressedUploadTest, DecodedUpdatesAreClippedToTheRoundsClipNorm) {
  // 2-bit quantization of a delta clipped to 1 decodes to a vector of a larger norm; the
  // coordinator clips it again, so the round's clip norm check never refuses it.
  const compression::CompressionSpec spec = Spec("quantize:2");
  auto c = Make(Options(spec, /*clip_norm=*/1.0));
  ASSERT_NE(c, nullptr);
  auto assigned = Assign(*c);
  for (const auto& [id, a] : assigned) {
    auto encoder = compression::UpdateEncoder::Create(spec, kDim);
    ASSERT_TRUE(encoder.ok());
    auto encoded = encoder->Encode(Delta(1.0f), 1.0, 5);
    ASSERT_TRUE(encoded.ok());
    absl::StatusOr<v1::UploadResponse> r =
        c->SubmitCompressedUpdate(Header(a, id, *encoded), *encoded, kStart);
    EXPECT_TRUE(r.ok()) << r.status();
  }
  EXPECT_EQ(c->rounds_completed(), 1);
}

TEST(CompressedUploadTest, MalformedAndOversizedUploadsAreRefusedAndCounted) {
  const compression::CompressionSpec spec = Spec("quantize-rotate:4");
  auto c = Make(Options(spec));
  ASSERT_NE(c, nullptr);
  auto assigned = Assign(*c);
  const v1::RoundAssignment& a = assigned["a"];

  std::string garbage(100, '\x7f');
  absl::StatusOr<v1::UploadResponse> r =
      c->SubmitCompressedUpdate(Header(a, "a", garbage), garbage, kStart);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(r.status().message(), HasSubstr("does not decode"));

  v1::UpdateHeader oversized = Header(a, "a", garbage);
  oversized.set_compressed_size(compression::MaxEncodedSize(spec, kDim) + 1);
  EXPECT_EQ(c->CheckCompressedUploadHeader(oversized).code(), absl::StatusCode::kResourceExhausted);
  v1::UpdateHeader wrong_size = Header(a, "a", garbage);
  wrong_size.set_total_size(kDim + 1);
  EXPECT_EQ(c->CheckCompressedUploadHeader(wrong_size).code(), absl::StatusCode::kInvalidArgument);

  const v1::GetStatusResponse status = c->Status(kStart);
  EXPECT_EQ(status.refusals().at("malformed_compression"), 1);
  EXPECT_EQ(status.refusals().at("oversized"), 1);
  EXPECT_EQ(status.refusals().at("wrong_shape"), 1);
  EXPECT_EQ(c->rounds_completed(), 0);  // nothing was folded in
}

TEST(CompressedUploadTest, APlanWithoutCompressionRefusesCompressedUploads) {
  auto c = Make(Options(compression::CompressionSpec{}));
  ASSERT_NE(c, nullptr);
  auto assigned = Assign(*c);
  std::string bytes(10, 'x');
  EXPECT_EQ(c->CheckCompressedUploadHeader(Header(assigned["a"], "a", bytes)).code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(c->Status(kStart).refusals().at("not_compressed"), 1);
}

TEST(CompressedUploadTest, CreateRefusesABadSpecAndWhatSecureAggregationCannotCarry) {
  CoordinatorOptions o = Options(compression::CompressionSpec{});
  o.plan.mutable_compression()->set_method(v1::CompressionParams::QUANTIZE);
  o.plan.mutable_compression()->set_bits(40);
  auto bad = RoundCoordinator::Create(o, Layout(), std::vector<float>(kDim, 0.0f), {});
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(bad.status().message(), HasSubstr("compression"));

  // Under secure aggregation the server sees only the sum: top-k cannot run; quantization and
  // random-k change the masked vector.
  CoordinatorOptions secure = Options(Spec("topk:0.1"), /*clip_norm=*/1.0);
  secure.secure_aggregation.emplace();
  secure.max_examples_per_client = 100;
  auto refused = RoundCoordinator::Create(secure, Layout(), std::vector<float>(kDim, 0.0f), {});
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(refused.status().message(), HasSubstr("cannot run under secure aggregation"));
  *secure.plan.mutable_compression() = proto::CompressionToProto(Spec("quantize-rotate:8"));
  auto quantized = RoundCoordinator::Create(secure, Layout(), std::vector<float>(kDim, 0.0f), {});
  ASSERT_TRUE(quantized.ok()) << quantized.status();
  EXPECT_EQ((*quantized)->masked_input_length(), kDim + 1);
  *secure.plan.mutable_compression() = proto::CompressionToProto(Spec("randk:0.1"));
  auto sparse = RoundCoordinator::Create(secure, Layout(), std::vector<float>(kDim, 0.0f), {});
  ASSERT_TRUE(sparse.ok()) << sparse.status();
  EXPECT_EQ((*sparse)->masked_input_length(), kDim / 10 + 1);
}

}  // namespace
}  // namespace fedkit::server
