// Little-endian byte and bit streams for compression/'s formats (internal to compression/).
// Writers append to a std::string they borrow; readers borrow the bytes they read and never read
// past their end (a short read reports false and leaves the reader at the end). Thread-compatible.
// Hand-written: the few lines of shifts a serialization library would bring are not worth one.
#ifndef FEDKIT_COMPRESSION_WIRE_H_
#define FEDKIT_COMPRESSION_WIRE_H_

#include <bit>
#include <cstdint>
#include <cstring>
#include <string>

#include "absl/strings/string_view.h"

namespace fedkit::compression::internal {

inline void PutU8(std::string* out, uint8_t v) { out->push_back(static_cast<char>(v)); }
inline void PutU32(std::string* out, uint32_t v) {
  for (int i = 0; i < 4; ++i) out->push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}
inline void PutU64(std::string* out, uint64_t v) {
  for (int i = 0; i < 8; ++i) out->push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}
inline void PutF32(std::string* out, float f) {
  uint32_t v;
  std::memcpy(&v, &f, 4);
  PutU32(out, v);
}

// Appends `values` as little-endian float32: one memcpy on a little-endian host.
inline void PutF32s(std::string* out, const float* values, size_t count) {
  if constexpr (std::endian::native == std::endian::little) {
    const size_t at = out->size();
    out->resize(at + 4 * count);
    std::memcpy(out->data() + at, values, 4 * count);
  } else {
    for (size_t i = 0; i < count; ++i) PutF32(out, values[i]);
  }
}

class ByteReader {
 public:
  explicit ByteReader(absl::string_view bytes) : bytes_(bytes) {}
  size_t remaining() const { return bytes_.size() - pos_; }
  size_t position() const { return pos_; }
  bool U8(uint8_t* v) {
    if (remaining() < 1) return Fail();
    *v = static_cast<uint8_t>(bytes_[pos_++]);
    return true;
  }
  bool U32(uint32_t* v) {
    if (remaining() < 4) return Fail();
    *v = 0;
    for (int i = 0; i < 4; ++i) *v |= uint32_t{static_cast<uint8_t>(bytes_[pos_++])} << (8 * i);
    return true;
  }
  bool U64(uint64_t* v) {
    if (remaining() < 8) return Fail();
    *v = 0;
    for (int i = 0; i < 8; ++i) *v |= uint64_t{static_cast<uint8_t>(bytes_[pos_++])} << (8 * i);
    return true;
  }
  bool F32(float* f) {
    uint32_t v;
    if (!U32(&v)) return false;
    std::memcpy(f, &v, 4);
    return true;
  }
  // `count` little-endian float32 values into `values`: one memcpy on a little-endian host.
  bool F32s(float* values, size_t count) {
    if (remaining() < 4 * count) return Fail();
    if constexpr (std::endian::native == std::endian::little) {
      std::memcpy(values, bytes_.data() + pos_, 4 * count);
      pos_ += 4 * count;
    } else {
      for (size_t i = 0; i < count; ++i) F32(&values[i]);
    }
    return true;
  }
  // The next n bytes (n <= remaining()).
  absl::string_view Take(size_t n) {
    if (remaining() < n) n = remaining();
    absl::string_view view = bytes_.substr(pos_, n);
    pos_ += n;
    return view;
  }

 private:
  bool Fail() {
    pos_ = bytes_.size();
    return false;
  }
  absl::string_view bytes_;
  size_t pos_ = 0;
};

// Values of `width` bits (0..32), least significant bit first, bit t of the stream in bit t % 8 of
// byte t / 8; Finish pads the last byte with zero bits.
class BitWriter {
 public:
  BitWriter(std::string* out, int width) : out_(out), width_(width) {}
  void Put(uint32_t value) {
    if (width_ == 0) return;
    buffer_ |= uint64_t{value} << filled_;
    filled_ += width_;
    while (filled_ >= 8) {
      out_->push_back(static_cast<char>(buffer_ & 0xff));
      buffer_ >>= 8;
      filled_ -= 8;
    }
  }
  void Finish() {
    if (filled_ > 0) out_->push_back(static_cast<char>(buffer_ & 0xff));
    buffer_ = 0;
    filled_ = 0;
  }

 private:
  std::string* out_;
  int width_;
  uint64_t buffer_ = 0;
  int filled_ = 0;
};

// Reads what BitWriter wrote from `bytes`, which must hold at least ceil(count * width / 8) bytes
// for `count` Get calls (the caller checks the length first).
class BitReader {
 public:
  BitReader(absl::string_view bytes, int width) : bytes_(bytes), width_(width) {}
  uint32_t Get() {
    if (width_ == 0) return 0;
    while (filled_ < width_ && pos_ < bytes_.size()) {
      buffer_ |= uint64_t{static_cast<uint8_t>(bytes_[pos_++])} << filled_;
      filled_ += 8;
    }
    if (filled_ < width_) filled_ = width_;  // past the end: zero bits (the caller checked length)
    const uint32_t value = static_cast<uint32_t>(buffer_ & ((uint64_t{1} << width_) - 1));
    buffer_ >>= width_;
    filled_ -= width_;
    return value;
  }
  // Whether the bits left over in the last byte read are all zero (the writer's padding).
  bool PaddingIsZero() const { return buffer_ == 0; }

 private:
  absl::string_view bytes_;
  int width_;
  uint64_t buffer_ = 0;
  int filled_ = 0;
  size_t pos_ = 0;
};

// Bytes of `count` values of `width` bits, packed.
inline int64_t PackedBytes(int64_t count, int width) { return (count * width + 7) / 8; }

}  // namespace fedkit::compression::internal

#endif  // FEDKIT_COMPRESSION_WIRE_H_
