#include "client/model_stream.h"

#include <cmath>
#include <string>
#include <vector>

#include "compression/download_codec.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "proto/compression_conversion.h"

namespace fedkit::client {
namespace {

using compression::DownloadEncoding;
using ::testing::HasSubstr;

std::vector<float> Model(int n) {
  std::vector<float> values(static_cast<size_t>(n));
  for (int i = 0; i < n; ++i) values[static_cast<size_t>(i)] = std::sin(0.37f * i) * 0.2f;
  return values;
}

v1::ParameterLayout Layout(int n) {
  v1::ParameterLayout layout;
  auto* entry = layout.add_entries();
  entry->set_name("w");
  entry->add_shape(n);
  return layout;
}

// The chunks a coordinator sends for `model` in `encoding`, `piece` floats or bytes each.
std::vector<v1::ModelChunk> Stream(const std::vector<float>& model, DownloadEncoding encoding,
                                   int64_t piece) {
  std::vector<v1::ModelChunk> chunks;
  const int64_t total = static_cast<int64_t>(model.size());
  if (encoding == DownloadEncoding::kFloat32) {
    for (int64_t offset = 0; offset < total; offset += piece) {
      v1::ModelChunk& chunk = chunks.emplace_back();
      chunk.set_total_size(total);
      chunk.set_offset(offset);
      const int64_t end = std::min(total, offset + piece);
      chunk.mutable_values()->Add(model.begin() + offset, model.begin() + end);
    }
  } else {
    const std::string bytes = *compression::EncodeDownload(encoding, model);
    const int64_t size = static_cast<int64_t>(bytes.size());
    for (int64_t offset = 0; offset < size; offset += piece) {
      v1::ModelChunk& chunk = chunks.emplace_back();
      chunk.set_total_size(total);
      chunk.set_offset(offset);
      chunk.set_encoding(proto::DownloadEncodingToProto(encoding));
      chunk.set_encoded_size(size);
      chunk.set_encoded(bytes.substr(static_cast<size_t>(offset), static_cast<size_t>(piece)));
    }
  }
  *chunks.front().mutable_layout() = Layout(static_cast<int>(total));
  return chunks;
}

absl::Status Assemble(std::vector<v1::ModelChunk> chunks, int64_t expected,
                      std::vector<float>* out) {
  ModelStreamAssembler assembler(expected);
  for (v1::ModelChunk& chunk : chunks) {
    if (absl::Status s = assembler.Add(chunk); !s.ok()) {
      // Finish reports the same error.
      v1::ParameterLayout layout;
      EXPECT_EQ(assembler.Finish(out, &layout), s);
      return s;
    }
  }
  v1::ParameterLayout layout;
  absl::Status status = assembler.Finish(out, &layout);
  if (status.ok()) {
    EXPECT_EQ(layout.entries(0).name(), "w");
  }
  return status;
}

class ModelStreamEncodingTest : public ::testing::TestWithParam<DownloadEncoding> {};

TEST_P(ModelStreamEncodingTest, ReassemblesAndDecodesWhateverTheChunking) {
  const std::vector<float> model = Model(5000);
  const std::vector<float> expected = *compression::DecodeDownload(
      GetParam(), *compression::EncodeDownload(GetParam(), model), 5000);
  for (int64_t piece : {1, 999, 1024, 4096, 1 << 20}) {
    SCOPED_TRACE(piece);
    std::vector<float> out;
    ASSERT_TRUE(Assemble(Stream(model, GetParam(), piece), 5000, &out).ok());
    EXPECT_EQ(out, expected);
  }
}

TEST_P(ModelStreamEncodingTest, RefusesAModelOfAnotherSizeBeforeAllocating) {
  std::vector<float> out;
  const absl::Status status = Assemble(Stream(Model(100), GetParam(), 64), 99, &out);
  EXPECT_EQ(status.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(status.message(), HasSubstr("100 values"));
  EXPECT_TRUE(out.empty());
}

TEST_P(ModelStreamEncodingTest, GapsOverlapsAndShortStreamsAreDataLoss) {
  const std::vector<float> model = Model(3000);
  {
    std::vector<v1::ModelChunk> chunks = Stream(model, GetParam(), 500);
    chunks[2].set_offset(chunks[2].offset() + 1);
    std::vector<float> out;
    const absl::Status status = Assemble(chunks, 3000, &out);
    EXPECT_EQ(status.code(), absl::StatusCode::kDataLoss);
    EXPECT_THAT(status.message(), HasSubstr("gap"));
  }
  {
    std::vector<v1::ModelChunk> chunks = Stream(model, GetParam(), 500);
    chunks.insert(chunks.begin() + 2, chunks[1]);
    std::vector<float> out;
    const absl::Status status = Assemble(chunks, 3000, &out);
    EXPECT_EQ(status.code(), absl::StatusCode::kDataLoss);
    EXPECT_THAT(status.message(), HasSubstr("overlap"));
  }
  {
    std::vector<v1::ModelChunk> chunks = Stream(model, GetParam(), 500);
    chunks.pop_back();
    std::vector<float> out;
    const absl::Status status = Assemble(chunks, 3000, &out);
    EXPECT_EQ(status.code(), absl::StatusCode::kDataLoss);
    EXPECT_THAT(status.message(), HasSubstr("stream ended after"));
    EXPECT_TRUE(out.empty());
  }
  {
    std::vector<float> out;
    EXPECT_EQ(Assemble({}, 3000, &out).code(), absl::StatusCode::kDataLoss);
  }
}

INSTANTIATE_TEST_SUITE_P(Encodings, ModelStreamEncodingTest,
                         ::testing::Values(DownloadEncoding::kFloat32, DownloadEncoding::kFloat16,
                                           DownloadEncoding::kQuantize8),
                         [](const auto& info) {
                           std::string name = compression::FormatDownloadEncoding(info.param);
                           return name == "quantize:8" ? std::string("Quantize8") : name;
                         });

TEST(ModelStreamTest, RefusesAnEncodedSizeThatIsNotTheEncodingsSize) {
  std::vector<v1::ModelChunk> chunks = Stream(Model(1000), DownloadEncoding::kFloat16, 4000);
  ASSERT_EQ(chunks.size(), 1u);
  chunks[0].set_encoded_size(1 << 30);  // would make the device reserve a GiB
  std::vector<float> out;
  const absl::Status status = Assemble(chunks, 1000, &out);
  EXPECT_EQ(status.code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(status.message(), HasSubstr("float16 takes 2000 bytes"));
}

TEST(ModelStreamTest, RefusesMoreBytesThanAnnounced) {
  std::vector<v1::ModelChunk> chunks = Stream(Model(1000), DownloadEncoding::kFloat16, 1500);
  chunks[1].mutable_encoded()->append("xx");
  std::vector<float> out;
  const absl::Status status = Assemble(chunks, 1000, &out);
  EXPECT_EQ(status.code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(status.message(), HasSubstr("overruns"));
}

TEST(ModelStreamTest, RefusesAStreamThatChangesItsEncoding) {
  std::vector<v1::ModelChunk> chunks = Stream(Model(1000), DownloadEncoding::kFloat16, 500);
  chunks[2].set_encoding(v1::MODEL_ENCODING_QUANTIZE8);
  std::vector<float> out;
  const absl::Status status = Assemble(chunks, 1000, &out);
  EXPECT_EQ(status.code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(status.message(), HasSubstr("changes the encoding"));
}

TEST(ModelStreamTest, RefusesFloatsInAnEncodedStreamAndBytesInAFloatOne) {
  {
    std::vector<v1::ModelChunk> chunks = Stream(Model(1000), DownloadEncoding::kFloat16, 500);
    chunks[1].add_values(1.0f);
    std::vector<float> out;
    EXPECT_EQ(Assemble(chunks, 1000, &out).code(), absl::StatusCode::kDataLoss);
  }
  {
    std::vector<v1::ModelChunk> chunks = Stream(Model(1000), DownloadEncoding::kFloat32, 500);
    chunks[1].set_encoded("abc");
    std::vector<float> out;
    EXPECT_EQ(Assemble(chunks, 1000, &out).code(), absl::StatusCode::kDataLoss);
  }
}

TEST(ModelStreamTest, AnUnknownEncodingAsksForANewerDevice) {
  std::vector<v1::ModelChunk> chunks = Stream(Model(100), DownloadEncoding::kFloat16, 4000);
  chunks[0].set_encoding(static_cast<v1::ModelEncoding>(7));
  std::vector<float> out;
  const absl::Status status = Assemble(chunks, 100, &out);
  EXPECT_EQ(status.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(status.message(), HasSubstr("update the device's FedKit"));
}

TEST(ModelStreamTest, UndecodableBytesAreDataLoss) {
  std::vector<v1::ModelChunk> chunks = Stream(Model(100), DownloadEncoding::kFloat16, 4000);
  // 0x7c00: binary16 infinity.
  (*chunks[0].mutable_encoded())[10] = '\x00';
  (*chunks[0].mutable_encoded())[11] = '\x7c';
  std::vector<float> out;
  const absl::Status status = Assemble(chunks, 100, &out);
  EXPECT_EQ(status.code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(status.message(), HasSubstr("does not decode"));
  EXPECT_TRUE(out.empty());
}

}  // namespace
}  // namespace fedkit::client
