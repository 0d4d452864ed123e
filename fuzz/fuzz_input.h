// Reading a fuzzer's bytes as a sequence of decisions, for the targets in fuzz/: integers in a
// range, booleans, byte strings and byte-level edits of a message. Once the bytes run out every
// call returns its smallest answer (0, false, empty), so any input is a complete, finite run.
// (libFuzzer's FuzzedDataProvider does the same; this one is ours so the plain gcc build, which
// replays the corpus without clang installed, needs nothing else.)
// Not thread-safe; owns nothing (the bytes must outlive it).
#ifndef FEDKIT_FUZZ_FUZZ_INPUT_H_
#define FEDKIT_FUZZ_FUZZ_INPUT_H_

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>

namespace fedkit::fuzz {

class FuzzInput {
 public:
  FuzzInput(const uint8_t* data, size_t size) : data_(data), size_(size) {}

  size_t remaining() const { return size_ - pos_; }
  bool empty() const { return pos_ >= size_; }

  // Up to 8 bytes, little-endian.
  uint64_t Bits(int bytes) {
    uint64_t value = 0;
    for (int i = 0; i < bytes && pos_ < size_; ++i) value |= uint64_t{data_[pos_++]} << (8 * i);
    return value;
  }
  bool Bool() { return (Bits(1) & 1) != 0; }
  // In [low, high] (high >= low), from as few bytes as the range needs.
  int64_t Int(int64_t low, int64_t high) {
    const uint64_t range = static_cast<uint64_t>(high) - static_cast<uint64_t>(low);
    int bytes = 0;
    for (uint64_t r = range; r != 0; r >>= 8) ++bytes;
    const uint64_t raw = Bits(bytes);
    const uint64_t offset = range == UINT64_MAX ? raw : raw % (range + 1);
    return static_cast<int64_t>(static_cast<uint64_t>(low) + offset);
  }
  // Any 64-bit pattern: a double may be NaN, infinite or subnormal.
  double Double() {
    const uint64_t bits = Bits(8);
    double value;
    std::memcpy(&value, &bits, sizeof(value));
    return value;
  }
  float Float() {
    const uint32_t bits = static_cast<uint32_t>(Bits(4));
    float value;
    std::memcpy(&value, &bits, sizeof(value));
    return value;
  }
  // A length (one byte, or three when the first is 255), then that many bytes (fewer at the end).
  std::string Bytes(size_t max_length) {
    size_t length = static_cast<size_t>(Bits(1));
    if (length == 255) length = static_cast<size_t>(Bits(2));
    if (length > max_length) length = max_length;
    if (length > remaining()) length = remaining();
    std::string out(reinterpret_cast<const char*>(data_ + pos_), length);
    pos_ += length;
    return out;
  }
  // Everything left.
  std::string Rest() {
    std::string out(reinterpret_cast<const char*>(data_ + pos_), remaining());
    pos_ = size_;
    return out;
  }

  // Up to three edits of `bytes` (overwrite, insert or erase one byte, truncate, append), the
  // way a broken or hostile peer changes a valid message.
  std::string Edit(std::string bytes) {
    const int edits = static_cast<int>(Int(0, 3));
    for (int i = 0; i < edits; ++i) {
      const size_t at = bytes.empty() ? 0 : static_cast<size_t>(Int(0, bytes.size() - 1));
      switch (Int(0, 4)) {
        case 0:
          if (!bytes.empty()) bytes[at] = static_cast<char>(Bits(1));
          break;
        case 1:
          bytes.insert(bytes.begin() + static_cast<std::ptrdiff_t>(at), static_cast<char>(Bits(1)));
          break;
        case 2:
          if (!bytes.empty()) bytes.erase(at, 1);
          break;
        case 3:
          bytes.resize(at);
          break;
        default:
          bytes += Bytes(64);
          break;
      }
    }
    return bytes;
  }
  // A protobuf message after Edit() of its wire bytes, when they still parse (else unchanged).
  template <typename Message>
  void EditMessage(Message& message) {
    Message edited;
    if (edited.ParseFromString(Edit(message.SerializeAsString()))) message = std::move(edited);
  }

 private:
  const uint8_t* data_;
  size_t size_;
  size_t pos_ = 0;
};

}  // namespace fedkit::fuzz

#endif  // FEDKIT_FUZZ_FUZZ_INPUT_H_
