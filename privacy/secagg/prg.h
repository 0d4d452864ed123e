// The pseudorandom generator that expands a 32-byte seed into a mask vector: AES-256 in counter
// mode (OpenSSL EVP, AES-NI when the CPU has it) over a zero IV, so the seed is the whole key. Each
// seed is used for one vector only (pairwise seeds and self-mask seeds are fresh every round).
#ifndef FEDKIT_PRIVACY_SECAGG_PRG_H_
#define FEDKIT_PRIVACY_SECAGG_PRG_H_

#include <cstdint>

#include "absl/status/status.h"
#include "absl/types/span.h"
#include "privacy/secagg/crypto.h"

namespace fedkit::secagg {

// Values are elements of Z_{2^modulus_bits}, 1 <= modulus_bits <= 64, held in uint64_t.
inline uint64_t ModulusMask(int modulus_bits) {
  return modulus_bits >= 64 ? ~uint64_t{0} : (uint64_t{1} << modulus_bits) - 1;
}

// Adds (sign = +1) or subtracts (sign = -1) PRG(seed) to `values` element-wise, mod 2^modulus_bits.
// Element i of PRG(seed) is the i-th 4-byte (modulus_bits <= 32) or 8-byte little-endian word of
// the AES-CTR keystream, reduced mod 2^modulus_bits; the stream is generated in blocks, never
// materialised whole. INVALID_ARGUMENT for a bad sign or modulus; INTERNAL if OpenSSL fails.
absl::Status AddPrgMask(const Key32& seed, int sign, int modulus_bits, absl::Span<uint64_t> values);

}  // namespace fedkit::secagg

#endif  // FEDKIT_PRIVACY_SECAGG_PRG_H_
