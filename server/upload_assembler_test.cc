#include "server/upload_assembler.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace fedkit::server {
namespace {

v1::UpdateChunk Values(int64_t offset, std::vector<float> values) {
  v1::UpdateChunk chunk;
  chunk.mutable_values()->set_offset(offset);
  for (float v : values) chunk.mutable_values()->add_values(v);
  return chunk;
}

v1::UpdateChunk Masked(int64_t byte_offset, std::string packed) {
  v1::UpdateChunk chunk;
  chunk.mutable_masked()->set_byte_offset(byte_offset);
  chunk.mutable_masked()->set_packed(std::move(packed));
  return chunk;
}

TEST(PlainUploadAssemblerTest, ChunksInOrderGiveTheDelta) {
  PlainUploadAssembler assembler(5);
  ASSERT_TRUE(assembler.Add(Values(0, {1, 2})).ok());
  ASSERT_TRUE(assembler.Add(Values(2, {})).ok());
  ASSERT_TRUE(assembler.Add(Values(2, {3, 4, 5})).ok());
  ASSERT_TRUE(assembler.Finish().ok());
  EXPECT_THAT(assembler.values(), ::testing::ElementsAre(1, 2, 3, 4, 5));
}

TEST(PlainUploadAssemblerTest, EachBadChunkIsRefusedUnderItsCounter) {
  {
    PlainUploadAssembler assembler(3);
    v1::UpdateChunk header;
    header.mutable_header()->set_total_size(3);
    const absl::Status status = assembler.Add(header);
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
    EXPECT_EQ(assembler.refusal(), "malformed_stream");
  }
  {
    PlainUploadAssembler assembler(3);
    ASSERT_TRUE(assembler.Add(Values(0, {1})).ok());
    const absl::Status status = assembler.Add(Values(2, {1}));  // skips offset 1
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(status.message(), ::testing::HasSubstr("offset 2, expected 1"));
    EXPECT_EQ(assembler.refusal(), "malformed_stream");
  }
  {
    PlainUploadAssembler assembler(3);
    EXPECT_EQ(assembler.Add(Masked(0, "abc")).code(), absl::StatusCode::kInvalidArgument);
    EXPECT_EQ(assembler.refusal(), "malformed_stream");
  }
  {
    PlainUploadAssembler assembler(3);
    ASSERT_TRUE(assembler.Add(Values(0, {1, 2})).ok());
    EXPECT_EQ(assembler.Add(Values(2, {3, 4})).code(), absl::StatusCode::kResourceExhausted);
    EXPECT_EQ(assembler.refusal(), "oversized");
  }
  {
    PlainUploadAssembler assembler(3);
    ASSERT_TRUE(assembler.Add(Values(0, {1, 2})).ok());
    const absl::Status status = assembler.Finish();
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(status.message(), ::testing::HasSubstr("after 2 of 3"));
    EXPECT_EQ(assembler.refusal(), "wrong_shape");
  }
}

TEST(MaskedUploadAssemblerTest, BytesInOrderUpToEightPerValue) {
  MaskedUploadAssembler assembler(2);  // at most 16 bytes
  ASSERT_TRUE(assembler.Add(Masked(0, "0123456789")).ok());
  ASSERT_TRUE(assembler.Add(Masked(10, "abcdef")).ok());
  EXPECT_EQ(assembler.packed(), "0123456789abcdef");
  EXPECT_EQ(assembler.Add(Masked(16, "x")).code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(assembler.refusal(), "oversized");
}

TEST(MaskedUploadAssemblerTest, WrongKindOrOffsetIsMalformed) {
  MaskedUploadAssembler assembler(2);
  EXPECT_EQ(assembler.Add(Values(0, {1})).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(assembler.refusal(), "malformed_stream");
  MaskedUploadAssembler other(2);
  EXPECT_EQ(other.Add(Masked(3, "x")).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(other.refusal(), "malformed_stream");
}

// A header declaring more than 2^60 values cannot overflow the byte limit into a small or
// negative one.
TEST(MaskedUploadAssemblerTest, AHugeDeclaredLengthDoesNotOverflow) {
  MaskedUploadAssembler assembler(int64_t{1} << 62);
  EXPECT_TRUE(assembler.Add(Masked(0, "abc")).ok());
}

v1::UpdateChunk Compressed(int64_t byte_offset, std::string data) {
  v1::UpdateChunk chunk;
  chunk.mutable_compressed()->set_byte_offset(byte_offset);
  chunk.mutable_compressed()->set_data(std::move(data));
  return chunk;
}

TEST(CompressedUploadAssemblerTest, ExactlyTheDeclaredBytesInOrder) {
  CompressedUploadAssembler assembler(5);
  ASSERT_TRUE(assembler.Add(Compressed(0, "ab")).ok());
  EXPECT_EQ(assembler.Finish().code(), absl::StatusCode::kInvalidArgument);  // 2 of 5
  EXPECT_EQ(assembler.refusal(), "wrong_shape");
  CompressedUploadAssembler complete(5);
  ASSERT_TRUE(complete.Add(Compressed(0, "ab")).ok());
  ASSERT_TRUE(complete.Add(Compressed(2, "cde")).ok());
  ASSERT_TRUE(complete.Finish().ok());
  EXPECT_EQ(complete.bytes(), "abcde");
}

TEST(CompressedUploadAssemblerTest, EachBadChunkIsRefusedUnderItsCounter) {
  {
    CompressedUploadAssembler assembler(4);
    EXPECT_EQ(assembler.Add(Masked(0, "ab")).code(), absl::StatusCode::kInvalidArgument);
    EXPECT_EQ(assembler.refusal(), "malformed_stream");
  }
  {
    CompressedUploadAssembler assembler(4);
    ASSERT_TRUE(assembler.Add(Compressed(0, "ab")).ok());
    EXPECT_EQ(assembler.Add(Compressed(1, "cd")).code(), absl::StatusCode::kInvalidArgument);
    EXPECT_EQ(assembler.refusal(), "malformed_stream");
  }
  {
    CompressedUploadAssembler assembler(4);
    EXPECT_EQ(assembler.Add(Compressed(0, "abcde")).code(), absl::StatusCode::kResourceExhausted);
    EXPECT_EQ(assembler.refusal(), "oversized");
  }
}

}  // namespace
}  // namespace fedkit::server
