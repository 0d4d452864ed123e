// t-of-n Shamir secret sharing of 32-byte secrets over the prime field GF(2^61 - 1).
// A secret is split into five limbs of at most 56 bits (7 bytes; the last holds 4), each shared
// with an independent random polynomial of degree t - 1 whose coefficients come from the CSPRNG.
// Share x-coordinates are 1..2^31 (a client's protocol index + 1); 0 is the secret itself.
#ifndef FEDKIT_PRIVACY_SECAGG_SHAMIR_H_
#define FEDKIT_PRIVACY_SECAGG_SHAMIR_H_

#include <array>
#include <cstdint>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "privacy/secagg/crypto.h"

namespace fedkit::secagg {

inline constexpr uint64_t kShamirPrime = (uint64_t{1} << 61) - 1;
inline constexpr int kShamirLimbs = 5;
inline constexpr size_t kShamirShareBytes = 8 * kShamirLimbs;  // serialized y values

struct ShamirShare {
  uint32_t x = 0;                             // evaluation point, >= 1
  std::array<uint64_t, kShamirLimbs> y = {};  // one field element per limb, each < kShamirPrime
};

// Shares of `secret`, one per x in `xs` (distinct, nonzero), any `threshold` of which reconstruct
// it and fewer reveal nothing. INVALID_ARGUMENT if threshold < 1, threshold > xs.size(), or the xs
// are not distinct and nonzero.
absl::StatusOr<std::vector<ShamirShare>> ShamirSplit(const Key32& secret, int threshold,
                                                     absl::Span<const uint32_t> xs);

// The secret from at least `threshold` shares with distinct x (uses the first `threshold`).
// INVALID_ARGUMENT for too few shares, repeated or zero x, y outside the field, or a result that
// does not decode to 32 bytes (limbs 1-4 must be below 2^56 and limb 5, which holds 4 bytes,
// below 2^32).
absl::StatusOr<Key32> ShamirReconstruct(absl::Span<const ShamirShare> shares, int threshold);

// Reconstruction of many secrets shared at the same x-coordinates: computes the Lagrange
// coefficients at 0 once (O(t^2)), then each secret costs O(t). Made with CreateAt, it evaluates
// the polynomial through the shares at another point instead (Interpolate), which is how a share
// is checked against the polynomial a verified subset of shares defines.
class ShamirReconstructor {
 public:
  // `xs`: the evaluation points of the shares that will be passed to Reconstruct, in that order.
  static absl::StatusOr<ShamirReconstructor> Create(absl::Span<const uint32_t> xs);
  // Lagrange coefficients at `point` (Create is CreateAt(xs, 0)). INVALID_ARGUMENT for repeated or
  // zero xs.
  static absl::StatusOr<ShamirReconstructor> CreateAt(absl::Span<const uint32_t> xs,
                                                      uint32_t point);
  // INVALID_ARGUMENT if the shares' x values are not the ones given to Create, in order.
  absl::StatusOr<Key32> Reconstruct(absl::Span<const ShamirShare> shares) const;
  // The value of each limb's polynomial through `shares` at the point given to CreateAt (raw field
  // elements, not decoded to a secret). Same errors as Reconstruct.
  absl::StatusOr<std::array<uint64_t, kShamirLimbs>> Interpolate(
      absl::Span<const ShamirShare> shares) const;

 private:
  explicit ShamirReconstructor(std::vector<uint32_t> xs, std::vector<uint64_t> coefficients)
      : xs_(std::move(xs)), coefficients_(std::move(coefficients)) {}
  std::vector<uint32_t> xs_;
  std::vector<uint64_t> coefficients_;
};

// Checks at once that shares at `extra_xs` lie on the polynomial through shares at `xs` (the t a
// secret was reconstructed from): a random combination of the extra shares, with weights drawn at
// Create from the CSPRNG, against the same combination of their interpolated values. O(t * e) to
// create for e extra points, then O(t + e) per secret. A share off the polynomial passes with
// probability 2^-61 per limb (the weights are unknown to whoever chose the shares).
class ShamirConsistencyCheck {
 public:
  // INVALID_ARGUMENT for empty xs or repeated or zero x values among xs and extra_xs together.
  static absl::StatusOr<ShamirConsistencyCheck> Create(absl::Span<const uint32_t> xs,
                                                       absl::Span<const uint32_t> extra_xs);
  // Whether every extra share lies on the polynomial through `shares`. INVALID_ARGUMENT if the x
  // values are not those given to Create, in order, or a value is outside the field.
  absl::StatusOr<bool> Consistent(absl::Span<const ShamirShare> shares,
                                  absl::Span<const ShamirShare> extra) const;

 private:
  ShamirConsistencyCheck() = default;
  std::vector<uint32_t> xs_;
  std::vector<uint32_t> extra_xs_;
  std::vector<uint64_t> weights_;  // sum_j r_j L_i(extra x_j), per share i
  std::vector<uint64_t> randoms_;  // r_j, per extra share j
};

// Fixed-size byte forms for the wire and for encryption (little-endian words).
std::array<uint8_t, kShamirShareBytes> SerializeShareValues(const ShamirShare& share);
// INVALID_ARGUMENT for the wrong length or a value outside the field.
absl::StatusOr<ShamirShare> ParseShareValues(uint32_t x, absl::Span<const uint8_t> bytes);

}  // namespace fedkit::secagg

#endif  // FEDKIT_PRIVACY_SECAGG_SHAMIR_H_
