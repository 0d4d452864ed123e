#include "compression/secagg_compression.h"

#include <string>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "compression/random.h"
#include "core/status_macros.h"

namespace fedkit::compression {

absl::Status CheckSecAggCompression(const CompressionSpec& spec, bool with_dp) {
  FEDKIT_RETURN_IF_ERROR(ValidateCompressionSpec(spec));
  if (spec.method == CompressionMethod::kNone) return absl::OkStatus();
  const std::string name = FormatCompressionSpec(spec);
  if (with_dp) {
    return absl::InvalidArgumentError(absl::StrCat(
        "compression ", name,
        " is not supported with DP under secure aggregation (its encoding sizes the modulus: a "
        "smaller --secagg-modulus-bits is that encoding's compression)"));
  }
  if (spec.method == CompressionMethod::kTopK) {
    return absl::InvalidArgumentError(absl::StrCat(
        "compression ", name,
        " cannot run under secure aggregation: each device would keep other coordinates and the "
        "server sees only the sum; use randk (the round's devices share its coordinates)"));
  }
  if ((spec.method == CompressionMethod::kQuantize ||
       spec.method == CompressionMethod::kQuantizeRotate) &&
      spec.bits < 2) {
    return absl::InvalidArgumentError(
        absl::StrCat("compression ", name, " under secure aggregation needs at least 2 bits"));
  }
  return absl::OkStatus();
}

int64_t SecAggVectorLength(const CompressionSpec& spec, int64_t dimension) {
  return (spec.method == CompressionMethod::kRandK ? KeptCoordinates(spec, dimension) : dimension) +
         1;
}

absl::StatusOr<std::vector<float>> RandomKValuesForSecureAggregation(
    UpdateEncoder& encoder, absl::Span<const float> delta, double clip_norm, uint64_t shared_seed,
    absl::Span<const int64_t> kept) {
  if (encoder.spec().method != CompressionMethod::kRandK) {
    return absl::InvalidArgumentError(
        absl::StrCat("random-k under secure aggregation needs a randk encoder, not ",
                     FormatCompressionSpec(encoder.spec())));
  }
  const int64_t k = KeptCoordinates(encoder.spec(), encoder.dimension());
  const std::vector<int64_t> expected = RandomKIndices(shared_seed, encoder.dimension(), k);
  if (kept != absl::MakeConstSpan(expected)) {
    return absl::InvalidArgumentError(
        "the kept coordinates are not the shared seed's (RandomKIndices)");
  }
  FEDKIT_ASSIGN_OR_RETURN(const std::string encoded, encoder.Encode(delta, clip_norm, shared_seed));
  FEDKIT_ASSIGN_OR_RETURN(const std::vector<float> decoded,
                          DecodeUpdate(encoder.spec(), encoded, encoder.dimension()));
  std::vector<float> values;
  values.reserve(kept.size());
  for (int64_t position : kept) values.push_back(decoded[position]);
  return values;
}

}  // namespace fedkit::compression
