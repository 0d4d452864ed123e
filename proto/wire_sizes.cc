#include "proto/wire_sizes.h"

#include <algorithm>

#include "google/protobuf/io/coded_stream.h"

namespace fedkit::proto {
namespace {

using google::protobuf::io::CodedOutputStream;

// A length-delimited field (one-byte tag) holding `length` bytes.
int64_t DelimitedField(int64_t length) {
  return 1 + static_cast<int64_t>(CodedOutputStream::VarintSize64(static_cast<uint64_t>(length))) +
         length;
}
// A varint field (one-byte tag); proto3 omits zero.
int64_t VarintField(int64_t value) {
  if (value == 0) return 0;
  return 1 + static_cast<int64_t>(CodedOutputStream::VarintSize64(static_cast<uint64_t>(value)));
}
// A bytes or packed field; proto3 omits an empty one.
int64_t NonEmptyField(int64_t length) { return length == 0 ? 0 : DelimitedField(length); }

}  // namespace

int64_t UploadStreamBytes(const v1::UpdateHeader& header, UploadPayload payload,
                          int64_t payload_size) {
  int64_t total = DelimitedField(static_cast<int64_t>(header.ByteSizeLong()));
  const bool floats = payload == UploadPayload::kFloats;
  const int64_t step = floats ? kUploadChunkFloats : kUploadChunkBytes;
  for (int64_t offset = 0; offset < payload_size; offset += step) {
    const int64_t n = std::min(step, payload_size - offset);
    // DeltaValues{offset = 1, values = 2 (packed)}; MaskedValues{byte_offset = 1, packed = 2};
    // CompressedValues{byte_offset = 1, data = 2}.
    const int64_t inner = VarintField(offset) + NonEmptyField(floats ? 4 * n : n);
    total += DelimitedField(inner);
  }
  return total;
}

int64_t ModelStreamBytes(int64_t round, int64_t total, int64_t chunk_floats,
                         const v1::ParameterLayout& layout) {
  chunk_floats = std::max<int64_t>(1, chunk_floats);
  int64_t bytes = 0;
  for (int64_t offset = 0; offset < total; offset += chunk_floats) {
    const int64_t n = std::min(chunk_floats, total - offset);
    // ModelChunk{round = 1, total_size = 2, offset = 3, values = 4 (packed), layout = 5}.
    bytes += VarintField(round) + VarintField(total) + VarintField(offset) + NonEmptyField(4 * n) +
             (offset == 0 ? NonEmptyField(static_cast<int64_t>(layout.ByteSizeLong())) : 0);
  }
  return bytes;
}

int64_t EncodedModelStreamBytes(int64_t round, int64_t total, v1::ModelEncoding encoding,
                                int64_t encoded_size, int64_t chunk_bytes,
                                const v1::ParameterLayout& layout) {
  chunk_bytes = std::max<int64_t>(1, chunk_bytes);
  int64_t bytes = 0;
  for (int64_t offset = 0; offset < encoded_size; offset += chunk_bytes) {
    const int64_t n = std::min(chunk_bytes, encoded_size - offset);
    // ModelChunk{round = 1, total_size = 2, offset = 3, layout = 5, encoding = 6, encoded = 7,
    // encoded_size = 8}.
    bytes += VarintField(round) + VarintField(total) + VarintField(offset) +
             (offset == 0 ? NonEmptyField(static_cast<int64_t>(layout.ByteSizeLong())) : 0) +
             VarintField(encoding) + NonEmptyField(n) + VarintField(encoded_size);
  }
  return bytes;
}

}  // namespace fedkit::proto
