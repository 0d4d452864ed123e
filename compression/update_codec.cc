#include "compression/update_codec.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "compression/hadamard.h"
#include "compression/quantizer.h"
#include "compression/random.h"
#include "compression/wire.h"
#include "core/seeds.h"

namespace fedkit::compression {
namespace {

using internal::ByteReader;

constexpr int64_t kBaseHeaderBytes = 12;
constexpr float kMaxRotatedMagnitude = 0x1.0p100f;

bool HasSeed(CompressionMethod m) {
  return m == CompressionMethod::kQuantizeRotate || m == CompressionMethod::kRandK;
}

int64_t HeaderBytes(CompressionMethod m) {
  return kBaseHeaderBytes + (HasSeed(m) ? 8 : 0) + (IsSparsifying(m) ? 8 : 0);
}

// ceil(log2(dimension)): the bits of a position in [0, dimension).
int PositionBits(int64_t dimension) {
  int bits = 0;
  while ((int64_t{1} << bits) < dimension) ++bits;
  return bits;
}

int64_t BitmapBytes(int64_t dimension) { return (dimension + 7) / 8; }

// Whether topk's positions travel as a bitmap (fewer bytes than packed positions).
bool UseBitmap(int64_t k, int64_t dimension) {
  return BitmapBytes(dimension) < internal::PackedBytes(k, PositionBits(dimension));
}

int64_t PositionBytes(int64_t k, int64_t dimension) {
  return std::min(BitmapBytes(dimension), internal::PackedBytes(k, PositionBits(dimension)));
}

absl::Status CheckDimension(int64_t dimension) {
  if (dimension < 1 || dimension > kMaxDimension) {
    return absl::InvalidArgumentError(
        absl::StrCat("dimension must be in [1, ", kMaxDimension, "], got ", dimension));
  }
  return absl::OkStatus();
}

void PutHeader(const CompressionSpec& spec, int64_t dimension, uint64_t seed, std::string* out) {
  internal::PutU8(out, kUpdateFormatByte);
  internal::PutU8(out, static_cast<uint8_t>(spec.method));
  internal::PutU8(out, static_cast<uint8_t>(IsQuantizing(spec.method) ? spec.bits : 0));
  internal::PutU8(out, 0);
  internal::PutU64(out, static_cast<uint64_t>(dimension));
  if (HasSeed(spec.method)) internal::PutU64(out, seed);
  if (IsSparsifying(spec.method)) {
    internal::PutU64(out, static_cast<uint64_t>(KeptCoordinates(spec, dimension)));
  }
}

// Scales `values` so that their L2 norm is at most clip_norm (> 0). The same computation as
// privacy/clipping.h's ClipL2InPlace, written again here because fedkit::compression depends on
// fedkit::core only.
void ClipInPlace(std::vector<float>& values, double clip_norm) {
  if (!(clip_norm > 0.0)) return;
  double sum_sq = 0.0;
  for (float v : values) sum_sq += static_cast<double>(v) * v;
  const double norm = std::sqrt(sum_sq);
  if (norm <= clip_norm) return;
  const double scale = clip_norm / norm;
  for (float& v : values) v = static_cast<float>(v * scale);
}

// The k positions of the largest |values|, ties to the lower position, sorted.
std::vector<int64_t> TopKPositions(const std::vector<float>& values, int64_t k) {
  std::vector<int64_t> order(values.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = static_cast<int64_t>(i);
  auto larger = [&](int64_t a, int64_t b) {
    const float fa = std::fabs(values[a]), fb = std::fabs(values[b]);
    return fa > fb || (fa == fb && a < b);
  };
  if (k < static_cast<int64_t>(order.size())) {
    std::nth_element(order.begin(), order.begin() + k, order.end(), larger);
    order.resize(static_cast<size_t>(k));
  }
  std::sort(order.begin(), order.end());
  return order;
}

absl::Status Malformed(absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat("malformed compressed update: ", what));
}

}  // namespace

UpdateEncoder::UpdateEncoder(const CompressionSpec& spec, int64_t dimension)
    : spec_(spec), dimension_(dimension) {
  if (IsSparsifying(spec.method)) residual_.assign(static_cast<size_t>(dimension), 0.0f);
}

absl::StatusOr<UpdateEncoder> UpdateEncoder::Create(const CompressionSpec& spec,
                                                    int64_t dimension) {
  absl::Status status = ValidateCompressionSpec(spec);
  if (!status.ok()) return status;
  status = CheckDimension(dimension);
  if (!status.ok()) return status;
  return UpdateEncoder(spec, dimension);
}

absl::StatusOr<std::string> UpdateEncoder::Encode(absl::Span<const float> delta, double clip_norm,
                                                  uint64_t seed) {
  if (static_cast<int64_t>(delta.size()) != dimension_) {
    return absl::InvalidArgumentError(
        absl::StrCat("delta has ", delta.size(), " values, expected ", dimension_));
  }
  if (!(clip_norm >= 0.0) || !std::isfinite(clip_norm)) {
    return absl::InvalidArgumentError(
        absl::StrCat("clip_norm must be >= 0 and finite, got ", clip_norm));
  }
  const bool sparse = IsSparsifying(spec_.method);
  // The corrected vector: delta plus the residual (sparsifiers), checked before anything changes.
  std::vector<float> corrected(delta.begin(), delta.end());
  for (size_t i = 0; i < corrected.size(); ++i) {
    if (!std::isfinite(delta[i])) {
      return absl::InvalidArgumentError(
          absl::StrCat("delta[", i, "] is not finite (", delta[i], ")"));
    }
    if (sparse) {
      corrected[i] += residual_[i];
      if (!std::isfinite(corrected[i])) {
        return absl::InvalidArgumentError(
            absl::StrCat("delta[", i, "] plus the error-feedback residual overflows float"));
      }
    }
  }
  std::vector<float> clipped = corrected;
  ClipInPlace(clipped, clip_norm);

  std::string out;
  out.reserve(static_cast<size_t>(MaxEncodedSize(spec_, dimension_)));
  PutHeader(spec_, dimension_, seed, &out);
  switch (spec_.method) {
    case CompressionMethod::kNone:
      internal::PutF32s(&out, clipped.data(), clipped.size());
      return out;
    case CompressionMethod::kQuantize:
    case CompressionMethod::kQuantizeRotate: {
      if (spec_.method == CompressionMethod::kQuantizeRotate) {
        RotateInPlace(absl::MakeSpan(clipped), seed);
        // Bounded so that the decoder's inverse rotation of the dequantized values (each within
        // its block's [min, max], combined over at most 2^16 of them) stays finite in float.
        for (float v : clipped) {
          if (!(std::fabs(v) <= kMaxRotatedMagnitude)) {
            return absl::InvalidArgumentError(
                "the rotated delta has values beyond 2^100 (or overflows float); clip it");
          }
        }
      }
      Xoshiro256 rng(DeriveSeed(seed, {kRoundingStream}));
      internal::AppendQuantized(clipped, spec_.bits, &rng, &out);
      return out;
    }
    case CompressionMethod::kTopK:
    case CompressionMethod::kRandK: {
      const int64_t k = KeptCoordinates(spec_, dimension_);
      const std::vector<int64_t> positions = spec_.method == CompressionMethod::kTopK
                                                 ? TopKPositions(clipped, k)
                                                 : RandomKIndices(seed, dimension_, k);
      if (spec_.method == CompressionMethod::kTopK) {
        if (UseBitmap(k, dimension_)) {
          std::string bitmap(static_cast<size_t>(BitmapBytes(dimension_)), '\0');
          for (int64_t p : positions) bitmap[p / 8] |= static_cast<char>(1 << (p % 8));
          out += bitmap;
        } else {
          internal::BitWriter writer(&out, PositionBits(dimension_));
          for (int64_t p : positions) writer.Put(static_cast<uint32_t>(p));
          writer.Finish();
        }
      }
      for (int64_t p : positions) internal::PutF32(&out, clipped[p]);
      // residual = corrected - sent: what was clipped away and what was not sent.
      residual_ = std::move(corrected);
      for (int64_t p : positions) residual_[p] -= clipped[p];
      return out;
    }
  }
  return absl::InvalidArgumentError("unknown compression method");
}

int64_t MaxEncodedSize(const CompressionSpec& spec, int64_t dimension) {
  if (!ValidateCompressionSpec(spec).ok() || !CheckDimension(dimension).ok()) return -1;
  const int64_t header = HeaderBytes(spec.method);
  const int64_t k = KeptCoordinates(spec, dimension);
  switch (spec.method) {
    case CompressionMethod::kNone:
      return header + 4 * dimension;
    case CompressionMethod::kQuantize:
    case CompressionMethod::kQuantizeRotate:
      return header + internal::QuantizedBytes(dimension, spec.bits);
    case CompressionMethod::kTopK:
      return header + PositionBytes(k, dimension) + 4 * k;
    case CompressionMethod::kRandK:
      return header + 4 * k;
  }
  return -1;
}

absl::StatusOr<std::vector<float>> DecodeUpdate(const CompressionSpec& spec,
                                                absl::string_view encoded, int64_t dimension) {
  absl::Status status = ValidateCompressionSpec(spec);
  if (!status.ok()) return status;
  status = CheckDimension(dimension);
  if (!status.ok()) return status;
  const int64_t expected = MaxEncodedSize(spec, dimension);
  const int64_t header_bytes = HeaderBytes(spec.method);
  if (static_cast<int64_t>(encoded.size()) < header_bytes) {
    return Malformed(absl::StrCat(encoded.size(), " bytes, shorter than the ", header_bytes,
                                  "-byte header of ", FormatCompressionSpec(spec)));
  }
  ByteReader in(encoded);
  uint8_t format = 0, method = 0, bits = 0, reserved = 0;
  uint64_t claimed_dimension = 0;
  in.U8(&format);
  in.U8(&method);
  in.U8(&bits);
  in.U8(&reserved);
  in.U64(&claimed_dimension);
  if (format != kUpdateFormatByte) {
    return Malformed(absl::StrCat("format byte ", format, ", expected ", kUpdateFormatByte));
  }
  if (method != static_cast<uint8_t>(spec.method)) {
    return Malformed(absl::StrCat("method ", method, ", expected ", static_cast<int>(spec.method),
                                  " (", FormatCompressionSpec(spec), ")"));
  }
  const int expected_bits = IsQuantizing(spec.method) ? spec.bits : 0;
  if (bits != expected_bits || reserved != 0) {
    return Malformed(absl::StrCat("bits ", bits, ", expected ", expected_bits, " (",
                                  FormatCompressionSpec(spec), "), reserved byte ", reserved));
  }
  if (claimed_dimension != static_cast<uint64_t>(dimension)) {
    return Malformed(absl::StrCat("dimension ", claimed_dimension, ", expected ", dimension));
  }
  uint64_t seed = 0;
  if (HasSeed(spec.method)) in.U64(&seed);
  const int64_t k = KeptCoordinates(spec, dimension);
  if (IsSparsifying(spec.method)) {
    uint64_t claimed_k = 0;
    in.U64(&claimed_k);
    if (claimed_k != static_cast<uint64_t>(k)) {
      return Malformed(absl::StrCat("k ", claimed_k, ", expected ", k, " (",
                                    FormatCompressionSpec(spec), " of ", dimension, ")"));
    }
  }
  if (static_cast<int64_t>(encoded.size()) != expected) {
    return Malformed(absl::StrCat(
        encoded.size(), " bytes, expected ", expected, " for ", FormatCompressionSpec(spec), " of ",
        dimension,
        encoded.size() < static_cast<size_t>(expected) ? " (truncated)" : " (trailing)"));
  }
  // From here on the length is right, so every read below is in bounds.
  std::vector<float> out(static_cast<size_t>(dimension), 0.0f);
  switch (spec.method) {
    case CompressionMethod::kNone:
      in.F32s(out.data(), out.size());
      break;
    case CompressionMethod::kQuantize:
    case CompressionMethod::kQuantizeRotate:
      status = internal::ReadQuantized(in.Take(in.remaining()), spec.bits, absl::MakeSpan(out));
      if (!status.ok()) return Malformed(status.message());
      if (spec.method == CompressionMethod::kQuantizeRotate) {
        InverseRotateInPlace(absl::MakeSpan(out), seed);
      }
      break;
    case CompressionMethod::kTopK:
    case CompressionMethod::kRandK: {
      std::vector<int64_t> positions;
      if (spec.method == CompressionMethod::kRandK) {
        positions = RandomKIndices(seed, dimension, k);
      } else if (UseBitmap(k, dimension)) {
        const absl::string_view bitmap = in.Take(static_cast<size_t>(BitmapBytes(dimension)));
        positions.reserve(static_cast<size_t>(k));
        for (int64_t byte = 0; byte < static_cast<int64_t>(bitmap.size()); ++byte) {
          const auto b = static_cast<uint8_t>(bitmap[byte]);
          for (int bit = 0; bit < 8; ++bit) {
            if (((b >> bit) & 1) == 0) continue;
            const int64_t p = byte * 8 + bit;
            if (p >= dimension) return Malformed("bitmap padding bits are set");
            if (static_cast<int64_t>(positions.size()) == k) {
              return Malformed(absl::StrCat("bitmap has more than k = ", k, " bits set"));
            }
            positions.push_back(p);
          }
        }
        if (static_cast<int64_t>(positions.size()) != k) {
          return Malformed(
              absl::StrCat("bitmap has ", positions.size(), " bits set, expected ", k));
        }
      } else {
        const int width = PositionBits(dimension);
        internal::BitReader reader(in.Take(static_cast<size_t>(internal::PackedBytes(k, width))),
                                   width);
        positions.resize(static_cast<size_t>(k));
        for (int64_t j = 0; j < k; ++j) {
          const int64_t p = reader.Get();
          if (p >= dimension) {
            return Malformed(absl::StrCat("position ", p, " is out of range [0, ", dimension, ")"));
          }
          if (j > 0 && p <= positions[j - 1]) {
            return Malformed(absl::StrCat("positions are not strictly increasing (", p, " after ",
                                          positions[j - 1], ")"));
          }
          positions[j] = p;
        }
        if (!reader.PaddingIsZero()) return Malformed("nonzero padding bits after the positions");
      }
      for (int64_t p : positions) in.F32(&out[p]);
      break;
    }
  }
  for (size_t i = 0; i < out.size(); ++i) {
    if (!std::isfinite(out[i])) {
      return Malformed(absl::StrCat("value ", i, " is not finite (", out[i], ")"));
    }
  }
  return out;
}

}  // namespace fedkit::compression
