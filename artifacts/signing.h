// Signed model artifacts. A TorchScript file runs code when it is loaded, so a device loads only
// artifacts its operator approved: the operator signs the artifact's SHA-256 with an Ed25519 key
// (fedkit-sign), and the device checks the signature with the operator's public key before
// handing the bytes to LibTorch.
//
// What is signed (domain separation): Ed25519 over the 51-byte message
//     "fedkit-artifact-v1" || 0x00 || SHA-256(artifact)
// (kSignatureDomain, its NUL, then the 32-byte digest; see SignedMessage). A signature made for any
// other purpose, or over the raw artifact, never verifies as an artifact signature, and an artifact
// signature cannot be replayed as anything else that uses a different prefix.
//
// Keys: Ed25519 (RFC 8032) via OpenSSL 3's EVP interface. PEM files: the private key as PKCS#8
// ("-----BEGIN PRIVATE KEY-----", unencrypted), the public key as SubjectPublicKeyInfo
// ("-----BEGIN PUBLIC KEY-----"), exactly what `openssl genpkey -algorithm ed25519` writes. A key
// fingerprint (messages, .sig files) is the first 8 bytes of SHA-256(raw 32-byte public key), as 16
// lowercase hex digits.
//
// Detached signature file ("model.pt.sig" beside "model.pt"), ASCII, exactly four lines, each
// ending in "\n", nothing else (no blank lines, no carriage returns, lowercase hex):
//     fedkit-artifact-signature v1
//     sha256 <64 hex digits: SHA-256 of the artifact>
//     key <16 hex digits: fingerprint of the signing public key>
//     sig <128 hex digits: the 64-byte Ed25519 signature>
//
// Errors (absl/status/status.h meanings):
//   INVALID_ARGUMENT   malformed input: a PEM that does not parse, holds another key type (the
//                      message names it, e.g. "RSA, not Ed25519") or is encrypted; a malformed .sig
//                      file (the message names the line); a hex string of the wrong length.
//   DATA_LOSS          the artifact's bytes are not the ones named: "artifact's SHA-256 is X, the
//                      assignment says Y" (a corrupted or substituted download).
//   PERMISSION_DENIED  the bytes may be intact but are not approved: the signature does not verify
//                      with the given public key (message names its fingerprint), or a .sig file
//                      names a different signing key than the one trusted.
//   INTERNAL           OpenSSL itself failed (message has OpenSSL's reason).
//   FAILED_PRECONDITION is not returned by this file; NOT_FOUND / ALREADY_EXISTS come only from
//                      the file helpers in artifacts/artifact_files.h.
//
// No file I/O, no transport, no LibTorch here: everything takes and returns bytes.
// Ownership: all values are plain copies; PrivateKey wipes its bytes when destroyed.
// Thread safety: every function is safe to call concurrently (no shared mutable state).
#ifndef FEDKIT_ARTIFACTS_SIGNING_H_
#define FEDKIT_ARTIFACTS_SIGNING_H_

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"

namespace fedkit::artifacts {

inline constexpr absl::string_view kSignatureDomain = "fedkit-artifact-v1";
inline constexpr absl::string_view kSignatureFileMagic = "fedkit-artifact-signature v1";

using Sha256Digest = std::array<uint8_t, 32>;
using Signature = std::array<uint8_t, 64>;

// ---- Hashing and hex (content addresses) ----
Sha256Digest Sha256(absl::Span<const uint8_t> bytes);
Sha256Digest Sha256(absl::string_view bytes);
std::string ToHex(absl::Span<const uint8_t> bytes);  // lowercase
std::string Sha256Hex(absl::string_view bytes);      // ToHex(Sha256(bytes))
// Strict: exactly 2 * out.size() lowercase or uppercase hex digits, else INVALID_ARGUMENT.
absl::Status ParseHex(absl::string_view hex, absl::Span<uint8_t> out);
absl::StatusOr<Sha256Digest> ParseSha256Hex(absl::string_view hex);

// ---- Keys ----
struct PublicKey {
  std::array<uint8_t, 32> raw = {};  // RFC 8032 encoding
  bool operator==(const PublicKey&) const = default;
};
// The 32-byte RFC 8032 secret ("seed"). Secret material.
class PrivateKey {
 public:
  PrivateKey() = default;
  explicit PrivateKey(const std::array<uint8_t, 32>& raw) : raw_(raw) {}
  PrivateKey(const PrivateKey&) = default;
  PrivateKey& operator=(const PrivateKey&) = default;
  ~PrivateKey();
  const std::array<uint8_t, 32>& raw() const { return raw_; }

 private:
  std::array<uint8_t, 32> raw_ = {};
};
struct KeyPair {
  PrivateKey private_key;
  PublicKey public_key;
};

// A fresh key pair from OpenSSL's CSPRNG. INTERNAL on OpenSSL failure.
absl::StatusOr<KeyPair> GenerateKeyPair();
absl::StatusOr<PublicKey> PublicKeyOf(const PrivateKey& private_key);
// First 8 bytes of SHA-256(public_key.raw), 16 lowercase hex digits.
std::string Fingerprint(const PublicKey& public_key);

// PEM: PKCS#8 private key, SubjectPublicKeyInfo public key (see the top of the file).
absl::StatusOr<std::string> PrivateKeyToPem(const PrivateKey& private_key);
absl::StatusOr<std::string> PublicKeyToPem(const PublicKey& public_key);
// INVALID_ARGUMENT: not PEM, wrong PEM type, encrypted, or not an Ed25519 key ("... is RSA, not
// Ed25519").
absl::StatusOr<PrivateKey> PrivateKeyFromPem(absl::string_view pem);
absl::StatusOr<PublicKey> PublicKeyFromPem(absl::string_view pem);

// ---- Raw Ed25519 (for known-answer tests; artifacts use the functions below) ----
absl::StatusOr<Signature> Ed25519Sign(absl::Span<const uint8_t> message,
                                      const PrivateKey& private_key);
// PERMISSION_DENIED "signature does not verify with public key <fingerprint>".
absl::Status Ed25519Verify(absl::Span<const uint8_t> message, const Signature& signature,
                           const PublicKey& public_key);

// ---- Artifact signatures ----
// "fedkit-artifact-v1\0" || digest (51 bytes): the message Ed25519 actually signs.
std::vector<uint8_t> SignedMessage(const Sha256Digest& artifact_sha256);
absl::StatusOr<Signature> SignArtifactDigest(const Sha256Digest& artifact_sha256,
                                             const PrivateKey& private_key);
absl::StatusOr<Signature> SignArtifact(absl::string_view artifact_bytes,
                                       const PrivateKey& private_key);
// OK iff SHA-256(artifact_bytes) == expected_sha256 (else DATA_LOSS "artifact's SHA-256 is X, the
// assignment says Y") and `signature` is public_key's signature of SignedMessage(expected_sha256)
// (else PERMISSION_DENIED "signature does not verify with public key <fingerprint>"). The hash
// is checked first: a corrupted download is reported as such, not as a forgery.
absl::Status VerifyArtifact(absl::string_view artifact_bytes, const Sha256Digest& expected_sha256,
                            const Signature& signature, const PublicKey& public_key);

// ---- Detached signature files (format at the top of the file) ----
struct SignatureFile {
  Sha256Digest sha256 = {};
  std::string key_fingerprint;  // 16 lowercase hex digits
  Signature signature = {};
};
absl::StatusOr<SignatureFile> MakeSignatureFile(absl::string_view artifact_bytes,
                                                const PrivateKey& private_key);
std::string FormatSignatureFile(const SignatureFile& file);
// Strict parse; INVALID_ARGUMENT naming the line ("line 3: expected \"key <16 hex digits>\"").
absl::StatusOr<SignatureFile> ParseSignatureFile(absl::string_view text);
// PERMISSION_DENIED if the file names a key other than public_key ("signed by key A, but the
// trusted public key is B"); then VerifyArtifact(artifact_bytes, file.sha256, file.signature, ...).
absl::Status VerifySignatureFile(absl::string_view artifact_bytes, const SignatureFile& file,
                                 const PublicKey& public_key);

}  // namespace fedkit::artifacts

#endif  // FEDKIT_ARTIFACTS_SIGNING_H_
