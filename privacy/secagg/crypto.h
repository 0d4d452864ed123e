// Cryptographic building blocks of secure aggregation, over OpenSSL 3: X25519 key agreement,
// HKDF-SHA256, AES-256-GCM and the system CSPRNG. Thin wrappers: every OpenSSL failure becomes an
// absl::Status; no OpenSSL type leaks into the interface.
#ifndef FEDKIT_PRIVACY_SECAGG_CRYPTO_H_
#define FEDKIT_PRIVACY_SECAGG_CRYPTO_H_

#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"

namespace fedkit::secagg {

inline constexpr size_t kKeyBytes = 32;  // X25519 keys, shared secrets, AES-256 keys, PRG seeds
using Key32 = std::array<uint8_t, kKeyBytes>;

// Fills `out` from OpenSSL's CSPRNG (RAND_bytes). INTERNAL if the generator fails.
absl::Status SecureRandomBytes(absl::Span<uint8_t> out);
absl::StatusOr<Key32> SecureRandomKey();

// An X25519 key pair. The private key is secret material: it is shared only through Shamir shares.
struct X25519KeyPair {
  Key32 private_key;
  Key32 public_key;
};
absl::StatusOr<X25519KeyPair> GenerateX25519KeyPair();
// The public key belonging to `private_key` (the server uses it to check a reconstructed key).
absl::StatusOr<Key32> X25519PublicKey(const Key32& private_key);
// X25519(own_private, peer_public). INVALID_ARGUMENT if the peer key is a low-order point (all-zero
// shared secret), which an honest peer never sends.
absl::StatusOr<Key32> X25519SharedSecret(const Key32& own_private, const Key32& peer_public);

// A private key prepared once for many agreements: X25519SharedSecret rebuilds the OpenSSL key
// (deriving the public key again) on every call, which doubles the cost when a client agrees with
// hundreds of peers. Copies share the key; thread-safe for concurrent SharedSecret calls.
class X25519PrivateKey {
 public:
  X25519PrivateKey() = default;
  static absl::StatusOr<X25519PrivateKey> Create(const Key32& private_key);
  // Same result and errors as X25519SharedSecret(private_key, peer_public).
  absl::StatusOr<Key32> SharedSecret(const Key32& peer_public) const;

 private:
  struct Impl;
  explicit X25519PrivateKey(std::shared_ptr<const Impl> impl) : impl_(std::move(impl)) {}
  std::shared_ptr<const Impl> impl_;
};

// HKDF-SHA256 (RFC 5869) expanding to 32 bytes.
absl::StatusOr<Key32> HkdfSha256(absl::Span<const uint8_t> input_key_material,
                                 absl::Span<const uint8_t> salt, absl::string_view info);

// SHA-256 of `data` (the self-mask seed commitment). INTERNAL if OpenSSL fails.
absl::StatusOr<Key32> Sha256(absl::Span<const uint8_t> data);

// AES-256-GCM with a fresh random 96-bit nonce. Output: nonce (12) || ciphertext || tag (16).
inline constexpr size_t kAeadOverheadBytes = 12 + 16;
absl::StatusOr<std::vector<uint8_t>> AeadEncrypt(const Key32& key,
                                                 absl::Span<const uint8_t> plaintext,
                                                 absl::Span<const uint8_t> associated_data);
// Inverse of AeadEncrypt. INVALID_ARGUMENT ("authentication failed") when the ciphertext, tag,
// nonce or associated data was altered, or the input is too short.
absl::StatusOr<std::vector<uint8_t>> AeadDecrypt(const Key32& key, absl::Span<const uint8_t> sealed,
                                                 absl::Span<const uint8_t> associated_data);

}  // namespace fedkit::secagg

#endif  // FEDKIT_PRIVACY_SECAGG_CRYPTO_H_
