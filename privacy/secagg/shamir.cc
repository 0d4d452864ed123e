#include "privacy/secagg/shamir.h"

#include <openssl/crypto.h>

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"

namespace fedkit::secagg {
namespace {

constexpr uint64_t kP = kShamirPrime;
// Bytes of the secret held by each limb; every limb is < 2^56 < p, so it is a field element.
constexpr int kLimbBytes[kShamirLimbs] = {7, 7, 7, 7, 4};
static_assert(7 * 4 + 4 == kKeyBytes);

// Arithmetic in GF(2^61 - 1). Operands are always reduced (< p).
inline uint64_t FieldAdd(uint64_t a, uint64_t b) {
  const uint64_t s = a + b;  // < 2^62, no overflow
  return s >= kP ? s - kP : s;
}
inline uint64_t FieldSub(uint64_t a, uint64_t b) { return a >= b ? a - b : a + kP - b; }
inline uint64_t FieldMul(uint64_t a, uint64_t b) {
  // 2^61 = 1 (mod p): fold the high bits onto the low ones, twice.
  const unsigned __int128 x = static_cast<unsigned __int128>(a) * b;  // < 2^122
  const uint64_t folded = (static_cast<uint64_t>(x) & kP) + static_cast<uint64_t>(x >> 61);
  const uint64_t r = (folded & kP) + (folded >> 61);  // <= p
  return r >= kP ? r - kP : r;
}
// a^(p-2) = a^-1 for a != 0 (Fermat).
uint64_t FieldInverse(uint64_t a) {
  uint64_t result = 1;
  for (uint64_t e = kP - 2; e != 0; e >>= 1) {
    if (e & 1) result = FieldMul(result, a);
    a = FieldMul(a, a);
  }
  return result;
}

absl::Status CheckXs(absl::Span<const uint32_t> xs) {
  std::vector<uint32_t> sorted(xs.begin(), xs.end());
  std::sort(sorted.begin(), sorted.end());
  if (!sorted.empty() && sorted.front() == 0) {
    return absl::InvalidArgumentError("Shamir x-coordinate 0 is the secret itself");
  }
  const auto dup = std::adjacent_find(sorted.begin(), sorted.end());
  if (dup != sorted.end()) {
    return absl::InvalidArgumentError(absl::StrCat("repeated Shamir x-coordinate ", *dup));
  }
  return absl::OkStatus();
}

absl::Status CheckYs(const ShamirShare& share) {
  for (uint64_t y : share.y) {
    if (y >= kP) {
      return absl::InvalidArgumentError(
          absl::StrCat("Shamir share value outside the field (x = ", share.x, ")"));
    }
  }
  return absl::OkStatus();
}

// Fills `out` with independent uniform field elements: 61 random bits each, redrawing the single
// out-of-range value 2^61 - 1 so there is no bias.
absl::Status RandomFieldElements(absl::Span<uint64_t> out) {
  std::vector<uint64_t> raw(out.size());
  absl::Span<uint8_t> raw_bytes(reinterpret_cast<uint8_t*>(raw.data()), raw.size() * 8);
  absl::Status status = SecureRandomBytes(raw_bytes);
  size_t filled = 0;
  while (status.ok()) {
    for (uint64_t r : raw) {
      const uint64_t v = r & kP;  // endianness is irrelevant for uniform bits
      if (v != kP && filled < out.size()) out[filled++] = v;
    }
    if (filled == out.size()) break;
    status = SecureRandomBytes(raw_bytes);  // probability ~2^-61 per element
  }
  OPENSSL_cleanse(raw.data(), raw_bytes.size());
  return status;
}

}  // namespace

absl::StatusOr<std::vector<ShamirShare>> ShamirSplit(const Key32& secret, int threshold,
                                                     absl::Span<const uint32_t> xs) {
  if (threshold < 1 || static_cast<size_t>(threshold) > xs.size()) {
    return absl::InvalidArgumentError(
        absl::StrCat("Shamir threshold ", threshold, " not in [1, ", xs.size(), "]"));
  }
  absl::Status status = CheckXs(xs);
  if (!status.ok()) return status;

  // coefficients[limb * t + k] is the coefficient of x^k of that limb's polynomial; k = 0 holds the
  // limb itself. These reveal the secret, so they are wiped before returning.
  const size_t t = static_cast<size_t>(threshold);
  std::vector<uint64_t> coefficients(kShamirLimbs * t);
  size_t offset = 0;
  for (int limb = 0; limb < kShamirLimbs; ++limb) {
    uint64_t value = 0;
    for (int b = 0; b < kLimbBytes[limb]; ++b) {
      value |= static_cast<uint64_t>(secret[offset + b]) << (8 * b);
    }
    offset += kLimbBytes[limb];
    coefficients[limb * t] = value;
    status = RandomFieldElements(absl::MakeSpan(coefficients.data() + limb * t + 1, t - 1));
    if (!status.ok()) break;
  }

  std::vector<ShamirShare> shares;
  if (status.ok()) {
    shares.reserve(xs.size());
    for (uint32_t x : xs) {
      ShamirShare share;
      share.x = x;
      for (int limb = 0; limb < kShamirLimbs; ++limb) {
        const uint64_t* c = &coefficients[limb * t];
        uint64_t y = c[t - 1];  // Horner
        for (size_t k = t - 1; k-- > 0;) y = FieldAdd(FieldMul(y, x), c[k]);
        share.y[limb] = y;
      }
      shares.push_back(share);
    }
  }
  OPENSSL_cleanse(coefficients.data(), coefficients.size() * sizeof(uint64_t));
  if (!status.ok()) return status;
  return shares;
}

absl::StatusOr<Key32> ShamirReconstruct(absl::Span<const ShamirShare> shares, int threshold) {
  if (threshold < 1 || shares.size() < static_cast<size_t>(threshold)) {
    return absl::InvalidArgumentError(absl::StrCat("Shamir reconstruction needs ", threshold,
                                                   " shares (threshold >= 1), got ",
                                                   shares.size()));
  }
  // Every share given is validated, even the ones beyond `threshold` that go unused: a bad one
  // means the caller's bookkeeping is wrong.
  std::vector<uint32_t> xs;
  xs.reserve(shares.size());
  for (const ShamirShare& share : shares) {
    absl::Status status = CheckYs(share);
    if (!status.ok()) return status;
    xs.push_back(share.x);
  }
  absl::Status status = CheckXs(xs);
  if (!status.ok()) return status;
  xs.resize(threshold);
  absl::StatusOr<ShamirReconstructor> reconstructor = ShamirReconstructor::Create(xs);
  if (!reconstructor.ok()) return reconstructor.status();
  return reconstructor->Reconstruct(shares.first(threshold));
}

absl::StatusOr<ShamirReconstructor> ShamirReconstructor::Create(absl::Span<const uint32_t> xs) {
  return CreateAt(xs, 0);
}

absl::StatusOr<ShamirReconstructor> ShamirReconstructor::CreateAt(absl::Span<const uint32_t> xs,
                                                                  uint32_t point) {
  if (xs.empty()) return absl::InvalidArgumentError("Shamir reconstruction needs >= 1 share");
  absl::Status status = CheckXs(xs);
  if (!status.ok()) return status;

  // Lagrange basis at a = point: l_i = n_i / d_i with n_i = prod_{j != i} (a - x_j) and
  // d_i = prod_{j != i} (x_i - x_j). The xs are distinct below p, so no d_i is 0.
  const size_t t = xs.size();
  const uint64_t a = point;
  std::vector<uint64_t> numerators(t, 1);
  std::vector<uint64_t> denominators(t, 1);
  for (size_t i = 0; i < t; ++i) {
    uint64_t n = 1;
    uint64_t d = 1;
    for (size_t j = 0; j < t; ++j) {
      if (j == i) continue;
      n = FieldMul(n, FieldSub(a, xs[j]));
      d = FieldMul(d, FieldSub(xs[i], xs[j]));
    }
    numerators[i] = n;
    denominators[i] = d;
  }
  // Batch inversion (Montgomery's trick): one field inversion for all t denominators.
  std::vector<uint64_t> prefix(t);
  uint64_t running = 1;
  for (size_t i = 0; i < t; ++i) {
    prefix[i] = running;
    running = FieldMul(running, denominators[i]);
  }
  uint64_t inverse = FieldInverse(running);  // = 1 / (d_0 ... d_{t-1})
  std::vector<uint64_t> coefficients(t);
  for (size_t i = t; i-- > 0;) {
    coefficients[i] = FieldMul(numerators[i], FieldMul(inverse, prefix[i]));  // n_i / d_i
    inverse = FieldMul(inverse, denominators[i]);  // now 1 / (d_0 ... d_{i-1})
  }
  return ShamirReconstructor(std::vector<uint32_t>(xs.begin(), xs.end()), std::move(coefficients));
}

absl::StatusOr<std::array<uint64_t, kShamirLimbs>> ShamirReconstructor::Interpolate(
    absl::Span<const ShamirShare> shares) const {
  if (shares.size() != xs_.size()) {
    return absl::InvalidArgumentError(
        absl::StrCat("expected ", xs_.size(), " Shamir shares, got ", shares.size()));
  }
  std::array<uint64_t, kShamirLimbs> limbs = {};
  for (size_t i = 0; i < shares.size(); ++i) {
    if (shares[i].x != xs_[i]) {
      return absl::InvalidArgumentError(
          absl::StrCat("Shamir share ", i, " has x = ", shares[i].x, ", expected ", xs_[i]));
    }
    absl::Status status = CheckYs(shares[i]);
    if (!status.ok()) return status;
    for (int limb = 0; limb < kShamirLimbs; ++limb) {
      limbs[limb] = FieldAdd(limbs[limb], FieldMul(coefficients_[i], shares[i].y[limb]));
    }
  }
  return limbs;
}

absl::StatusOr<Key32> ShamirReconstructor::Reconstruct(absl::Span<const ShamirShare> shares) const {
  absl::StatusOr<std::array<uint64_t, kShamirLimbs>> interpolated = Interpolate(shares);
  if (!interpolated.ok()) return interpolated.status();
  std::array<uint64_t, kShamirLimbs>& limbs = *interpolated;

  Key32 secret;
  size_t offset = 0;
  absl::Status status;
  for (int limb = 0; limb < kShamirLimbs; ++limb) {
    // Wrong or inconsistent shares almost surely give a limb wider than its byte size.
    if (limbs[limb] >> (8 * kLimbBytes[limb]) != 0) {
      status = absl::InvalidArgumentError(
          "Shamir shares are inconsistent: reconstructed value is not a 32-byte secret");
      break;
    }
    for (int b = 0; b < kLimbBytes[limb]; ++b) {
      secret[offset + b] = static_cast<uint8_t>(limbs[limb] >> (8 * b));
    }
    offset += kLimbBytes[limb];
  }
  OPENSSL_cleanse(limbs.data(), sizeof(limbs));
  if (!status.ok()) {
    OPENSSL_cleanse(secret.data(), secret.size());
    return status;
  }
  return secret;
}

absl::StatusOr<ShamirConsistencyCheck> ShamirConsistencyCheck::Create(
    absl::Span<const uint32_t> xs, absl::Span<const uint32_t> extra_xs) {
  if (xs.empty()) return absl::InvalidArgumentError("Shamir consistency check needs >= 1 share");
  std::vector<uint32_t> all(xs.begin(), xs.end());
  all.insert(all.end(), extra_xs.begin(), extra_xs.end());
  absl::Status status = CheckXs(all);
  if (!status.ok()) return status;
  const size_t t = xs.size();
  const size_t e = extra_xs.size();
  ShamirConsistencyCheck check;
  check.xs_.assign(xs.begin(), xs.end());
  check.extra_xs_.assign(extra_xs.begin(), extra_xs.end());
  check.randoms_.resize(e);
  status = RandomFieldElements(absl::MakeSpan(check.randoms_));
  if (!status.ok()) return status;

  // L_i(a) = P(a) / ((a - x_i) d_i) with P(a) = prod_k (a - x_k), d_i = prod_{k != i} (x_i - x_k),
  // so w_i = (1 / d_i) sum_j r_j P(a_j) / (a_j - x_i). Every inverse by one batch inversion: the
  // t values d_i and the t * e differences a_j - x_i (all nonzero: the points are distinct).
  std::vector<uint64_t> values(t + t * e);
  for (size_t i = 0; i < t; ++i) {
    uint64_t d = 1;
    for (size_t k = 0; k < t; ++k) {
      if (k != i) d = FieldMul(d, FieldSub(xs[i], xs[k]));
    }
    values[i] = d;
  }
  for (size_t j = 0; j < e; ++j) {
    for (size_t i = 0; i < t; ++i) values[t + j * t + i] = FieldSub(extra_xs[j], xs[i]);
  }
  std::vector<uint64_t> prefix(values.size());
  uint64_t running = 1;
  for (size_t i = 0; i < values.size(); ++i) {
    prefix[i] = running;
    running = FieldMul(running, values[i]);
  }
  uint64_t inverse = FieldInverse(running);
  std::vector<uint64_t> inverses(values.size());
  for (size_t i = values.size(); i-- > 0;) {
    inverses[i] = FieldMul(inverse, prefix[i]);
    inverse = FieldMul(inverse, values[i]);
  }
  check.weights_.assign(t, 0);
  for (size_t j = 0; j < e; ++j) {
    uint64_t p = 1;
    for (size_t k = 0; k < t; ++k) p = FieldMul(p, values[t + j * t + k]);
    const uint64_t rp = FieldMul(check.randoms_[j], p);
    for (size_t i = 0; i < t; ++i) {
      check.weights_[i] = FieldAdd(check.weights_[i], FieldMul(rp, inverses[t + j * t + i]));
    }
  }
  for (size_t i = 0; i < t; ++i) check.weights_[i] = FieldMul(check.weights_[i], inverses[i]);
  return check;
}

absl::StatusOr<bool> ShamirConsistencyCheck::Consistent(absl::Span<const ShamirShare> shares,
                                                        absl::Span<const ShamirShare> extra) const {
  if (shares.size() != xs_.size() || extra.size() != extra_xs_.size()) {
    return absl::InvalidArgumentError(absl::StrCat("expected ", xs_.size(), " and ",
                                                   extra_xs_.size(), " Shamir shares, got ",
                                                   shares.size(), " and ", extra.size()));
  }
  std::array<uint64_t, kShamirLimbs> interpolated = {};
  std::array<uint64_t, kShamirLimbs> combined = {};
  for (size_t i = 0; i < shares.size(); ++i) {
    if (shares[i].x != xs_[i]) return absl::InvalidArgumentError("Shamir share x out of order");
    absl::Status status = CheckYs(shares[i]);
    if (!status.ok()) return status;
    for (int limb = 0; limb < kShamirLimbs; ++limb) {
      interpolated[limb] = FieldAdd(interpolated[limb], FieldMul(weights_[i], shares[i].y[limb]));
    }
  }
  for (size_t j = 0; j < extra.size(); ++j) {
    if (extra[j].x != extra_xs_[j])
      return absl::InvalidArgumentError("Shamir share x out of order");
    absl::Status status = CheckYs(extra[j]);
    if (!status.ok()) return status;
    for (int limb = 0; limb < kShamirLimbs; ++limb) {
      combined[limb] = FieldAdd(combined[limb], FieldMul(randoms_[j], extra[j].y[limb]));
    }
  }
  return interpolated == combined;
}

std::array<uint8_t, kShamirShareBytes> SerializeShareValues(const ShamirShare& share) {
  std::array<uint8_t, kShamirShareBytes> bytes;
  for (int limb = 0; limb < kShamirLimbs; ++limb) {
    for (int b = 0; b < 8; ++b)
      bytes[8 * limb + b] = static_cast<uint8_t>(share.y[limb] >> (8 * b));
  }
  return bytes;
}

absl::StatusOr<ShamirShare> ParseShareValues(uint32_t x, absl::Span<const uint8_t> bytes) {
  if (bytes.size() != kShamirShareBytes) {
    return absl::InvalidArgumentError(absl::StrCat(
        "Shamir share values must be ", kShamirShareBytes, " bytes, got ", bytes.size()));
  }
  if (x == 0) return absl::InvalidArgumentError("Shamir x-coordinate 0 is the secret itself");
  ShamirShare share;
  share.x = x;
  for (int limb = 0; limb < kShamirLimbs; ++limb) {
    uint64_t y = 0;
    for (int b = 0; b < 8; ++b) y |= static_cast<uint64_t>(bytes[8 * limb + b]) << (8 * b);
    share.y[limb] = y;
  }
  absl::Status status = CheckYs(share);
  if (!status.ok()) return status;
  return share;
}

}  // namespace fedkit::secagg
