// How uploads and model downloads are cut into fedkit.v1 stream messages, and how many bytes those
// messages take: the gRPC channel (client/grpc_channel.cc) and service (server/grpc_service.cc) cut
// streams with the constants here, and the simulator and the coordinator report a round's
// upload_bytes / download_bytes with the sizes here, so that a simulated round and a real one
// report the same numbers. Sizes are protobuf's serialized sizes (ByteSizeLong) of the messages;
// gRPC's 5-byte message prefix, HTTP/2 and TLS framing are not counted.
//
// Pure functions of their arguments; thread-safe.
#ifndef FEDKIT_PROTO_WIRE_SIZES_H_
#define FEDKIT_PROTO_WIRE_SIZES_H_

#include <cstdint>

#include "fedkit/v1/coordinator.pb.h"

namespace fedkit::proto {

// Floats per DeltaValues message of a plain upload (1 MiB of values).
inline constexpr int64_t kUploadChunkFloats = int64_t{256} << 10;
// Bytes per MaskedValues / CompressedValues message.
inline constexpr int64_t kUploadChunkBytes = 4 * kUploadChunkFloats;
// Floats per ModelChunk the coordinator sends by default, and bytes per ModelChunk of an encoded
// model (ModelChunk.encoded): the same 1 MiB.
inline constexpr int64_t kDefaultModelChunkFloats = int64_t{256} << 10;
inline constexpr int64_t kDefaultModelChunkBytes = 4 * kDefaultModelChunkFloats;

enum class UploadPayload { kFloats, kMaskedBytes, kCompressedBytes };

// Bytes of the UpdateChunk messages of an upload: the header chunk, then `payload_size` floats
// (kFloats) or bytes in chunks of kUploadChunkFloats floats / kUploadChunkBytes bytes.
int64_t UploadStreamBytes(const v1::UpdateHeader& header, UploadPayload payload,
                          int64_t payload_size);

// Bytes of the ModelChunk messages of a download of `total` floats in chunks of `chunk_floats`
// (>= 1), the first carrying `layout`.
int64_t ModelStreamBytes(int64_t round, int64_t total, int64_t chunk_floats,
                         const v1::ParameterLayout& layout);

// Bytes of the ModelChunk messages of an encoded download (encoding other than FLOAT32) of `total`
// floats whose encoding has `encoded_size` bytes, in chunks of `chunk_bytes` (>= 1) bytes, the
// first carrying `layout`.
int64_t EncodedModelStreamBytes(int64_t round, int64_t total, v1::ModelEncoding encoding,
                                int64_t encoded_size, int64_t chunk_bytes,
                                const v1::ParameterLayout& layout);

}  // namespace fedkit::proto

#endif  // FEDKIT_PROTO_WIRE_SIZES_H_
