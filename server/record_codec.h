// Little-endian fixed-width fields and a CRC-32 for the coordinator's own file formats (checkpoint
// framing, server/checkpoint.cc; privacy ledger records, server/privacy_ledger.cc). Internal to
// server/; header-only; pure functions, callable from any thread. Readers must pass at least the
// field's width of bytes.
#ifndef FEDKIT_SERVER_RECORD_CODEC_H_
#define FEDKIT_SERVER_RECORD_CODEC_H_

#include <zlib.h>

#include <cstddef>
#include <cstdint>
#include <cstring>

namespace fedkit::server::record_codec {

// zlib's CRC-32 of `size` bytes.
inline uint32_t Crc32(const char* data, size_t size) {
  uLong crc = crc32_z(0L, Z_NULL, 0);
  crc = crc32_z(crc, reinterpret_cast<const Bytef*>(data), size);
  return static_cast<uint32_t>(crc);
}

inline void PutU32(uint32_t value, char* out) {
  for (int i = 0; i < 4; ++i) out[i] = static_cast<char>((value >> (8 * i)) & 0xff);
}
inline void PutU64(uint64_t value, char* out) {
  for (int i = 0; i < 8; ++i) out[i] = static_cast<char>((value >> (8 * i)) & 0xff);
}
inline uint32_t GetU32(const char* in) {
  uint32_t value = 0;
  for (int i = 0; i < 4; ++i) {
    value |= static_cast<uint32_t>(static_cast<unsigned char>(in[i])) << (8 * i);
  }
  return value;
}
inline uint64_t GetU64(const char* in) {
  uint64_t value = 0;
  for (int i = 0; i < 8; ++i) {
    value |= static_cast<uint64_t>(static_cast<unsigned char>(in[i])) << (8 * i);
  }
  return value;
}
// A double's IEEE-754 bits, little-endian.
inline void PutDouble(double value, char* out) {
  uint64_t bits = 0;
  std::memcpy(&bits, &value, sizeof(bits));
  PutU64(bits, out);
}
inline double GetDouble(const char* in) {
  const uint64_t bits = GetU64(in);
  double value = 0;
  std::memcpy(&value, &bits, sizeof(value));
  return value;
}

}  // namespace fedkit::server::record_codec

#endif  // FEDKIT_SERVER_RECORD_CODEC_H_
