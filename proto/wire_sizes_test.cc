#include "proto/wire_sizes.h"

#include <cstdint>
#include <string>

#include "gtest/gtest.h"

namespace fedkit::proto {
namespace {

v1::UpdateHeader Header() {
  v1::UpdateHeader header;
  header.set_client_id("device-7");
  header.set_assignment_id("a-123");
  header.set_round(3);
  header.set_num_examples(600);
  header.set_total_size(199210);
  header.set_train_loss(0.5);
  return header;
}

// The messages a stream of `payload_size` floats or bytes consists of, built as a channel builds
// them, and their summed ByteSizeLong.
int64_t MaterializedUploadBytes(const v1::UpdateHeader& header, UploadPayload payload,
                                int64_t payload_size) {
  v1::UpdateChunk chunk;
  *chunk.mutable_header() = header;
  int64_t total = static_cast<int64_t>(chunk.ByteSizeLong());
  const bool floats = payload == UploadPayload::kFloats;
  const int64_t step = floats ? kUploadChunkFloats : kUploadChunkBytes;
  for (int64_t offset = 0; offset < payload_size; offset += step) {
    const int64_t n = std::min(step, payload_size - offset);
    v1::UpdateChunk values;
    if (floats) {
      values.mutable_values()->set_offset(offset);
      for (int64_t i = 0; i < n; ++i) values.mutable_values()->add_values(0.25f);
    } else if (payload == UploadPayload::kMaskedBytes) {
      values.mutable_masked()->set_byte_offset(offset);
      values.mutable_masked()->set_packed(std::string(n, 'x'));
    } else {
      values.mutable_compressed()->set_byte_offset(offset);
      values.mutable_compressed()->set_data(std::string(n, 'x'));
    }
    total += static_cast<int64_t>(values.ByteSizeLong());
  }
  return total;
}

TEST(WireSizesTest, UploadStreamBytesEqualsTheMessagesSerializedSizes) {
  const v1::UpdateHeader header = Header();
  for (int64_t size : {int64_t{0}, int64_t{1}, int64_t{1000}, int64_t{199210}, kUploadChunkFloats,
                       kUploadChunkFloats + 1, 3 * kUploadChunkFloats + 7}) {
    SCOPED_TRACE(size);
    EXPECT_EQ(UploadStreamBytes(header, UploadPayload::kFloats, size),
              MaterializedUploadBytes(header, UploadPayload::kFloats, size));
    EXPECT_EQ(UploadStreamBytes(header, UploadPayload::kMaskedBytes, size),
              MaterializedUploadBytes(header, UploadPayload::kMaskedBytes, size));
    EXPECT_EQ(UploadStreamBytes(header, UploadPayload::kCompressedBytes, size),
              MaterializedUploadBytes(header, UploadPayload::kCompressedBytes, size));
  }
}

TEST(WireSizesTest, FloatsCostFourBytesEachPlusFraming) {
  const v1::UpdateHeader header = Header();
  const int64_t bytes = UploadStreamBytes(header, UploadPayload::kFloats, 199210);
  EXPECT_GT(bytes, 4 * 199210);
  EXPECT_LT(bytes, 4 * 199210 + 200);
}

TEST(WireSizesTest, ModelStreamBytesEqualsTheMessagesSerializedSizes) {
  v1::ParameterLayout layout;
  auto* entry = layout.add_entries();
  entry->set_name("fc1.weight");
  entry->add_shape(200);
  entry->add_shape(784);
  for (int64_t total : {int64_t{1}, int64_t{5000}, int64_t{199210}}) {
    for (int64_t chunk_floats : {int64_t{1000}, int64_t{65536}, kDefaultModelChunkFloats}) {
      SCOPED_TRACE(total);
      SCOPED_TRACE(chunk_floats);
      int64_t expected = 0;
      for (int64_t offset = 0; offset < total; offset += chunk_floats) {
        v1::ModelChunk chunk;
        chunk.set_round(4);
        chunk.set_total_size(total);
        chunk.set_offset(offset);
        for (int64_t i = offset; i < std::min(total, offset + chunk_floats); ++i) {
          chunk.add_values(1.5f);
        }
        if (offset == 0) *chunk.mutable_layout() = layout;
        expected += static_cast<int64_t>(chunk.ByteSizeLong());
      }
      EXPECT_EQ(ModelStreamBytes(4, total, chunk_floats, layout), expected);
    }
  }
}

TEST(WireSizesTest, EncodedModelStreamBytesEqualsTheMessagesSerializedSizes) {
  v1::ParameterLayout layout;
  auto* entry = layout.add_entries();
  entry->set_name("fc1.weight");
  entry->add_shape(200);
  entry->add_shape(784);
  for (int64_t encoded_size : {int64_t{2}, int64_t{10000}, int64_t{398420}, int64_t{2000000}}) {
    for (int64_t chunk_bytes : {int64_t{1000}, int64_t{65536}, kDefaultModelChunkBytes}) {
      SCOPED_TRACE(encoded_size);
      SCOPED_TRACE(chunk_bytes);
      const int64_t total = encoded_size / 2;
      int64_t expected = 0;
      for (int64_t offset = 0; offset < encoded_size; offset += chunk_bytes) {
        v1::ModelChunk chunk;
        chunk.set_round(130);
        chunk.set_total_size(total);
        chunk.set_offset(offset);
        chunk.set_encoding(v1::MODEL_ENCODING_FLOAT16);
        chunk.set_encoded_size(encoded_size);
        chunk.set_encoded(std::string(std::min(chunk_bytes, encoded_size - offset), 'x'));
        if (offset == 0) *chunk.mutable_layout() = layout;
        expected += static_cast<int64_t>(chunk.ByteSizeLong());
      }
      EXPECT_EQ(EncodedModelStreamBytes(130, total, v1::MODEL_ENCODING_FLOAT16, encoded_size,
                                        chunk_bytes, layout),
                expected);
    }
  }
}

}  // namespace
}  // namespace fedkit::proto
