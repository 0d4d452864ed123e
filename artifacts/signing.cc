#include "artifacts/signing.h"

#include <openssl/bio.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include <algorithm>
#include <memory>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace fedkit::artifacts {
namespace {

struct PkeyDeleter {
  void operator()(EVP_PKEY* p) const { EVP_PKEY_free(p); }
};
struct MdCtxDeleter {
  void operator()(EVP_MD_CTX* p) const { EVP_MD_CTX_free(p); }
};
struct BioDeleter {
  void operator()(BIO* p) const { BIO_free(p); }
};
using PkeyPtr = std::unique_ptr<EVP_PKEY, PkeyDeleter>;
using MdCtxPtr = std::unique_ptr<EVP_MD_CTX, MdCtxDeleter>;
using BioPtr = std::unique_ptr<BIO, BioDeleter>;

// INTERNAL with the oldest queued OpenSSL error; empties the thread's error queue.
absl::Status OpenSslError(absl::string_view operation) {
  const unsigned long code = ERR_get_error();
  ERR_clear_error();
  if (code == 0) return absl::InternalError(absl::StrCat(operation, " failed"));
  char buf[256];
  ERR_error_string_n(code, buf, sizeof(buf));
  return absl::InternalError(absl::StrCat(operation, " failed: ", buf));
}

absl::StatusOr<PkeyPtr> EvpPrivateKey(const PrivateKey& key) {
  PkeyPtr pkey(
      EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, nullptr, key.raw().data(), key.raw().size()));
  if (pkey == nullptr) return OpenSslError("EVP_PKEY_new_raw_private_key(ED25519)");
  return pkey;
}

absl::StatusOr<PkeyPtr> EvpPublicKey(const PublicKey& key) {
  PkeyPtr pkey(
      EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, nullptr, key.raw.data(), key.raw.size()));
  if (pkey == nullptr) return OpenSslError("EVP_PKEY_new_raw_public_key(ED25519)");
  return pkey;
}

absl::StatusOr<PublicKey> RawPublicKey(EVP_PKEY* pkey) {
  PublicKey out;
  size_t len = out.raw.size();
  if (EVP_PKEY_get_raw_public_key(pkey, out.raw.data(), &len) != 1) {
    return OpenSslError("EVP_PKEY_get_raw_public_key");
  }
  if (len != out.raw.size()) return absl::InternalError("Ed25519 public key has wrong length");
  return out;
}

// A PEM password callback that refuses: an encrypted key fails instead of prompting on a tty.
int NoPassword(char*, int, int, void*) { return 0; }

absl::Status CheckEd25519(EVP_PKEY* pkey, absl::string_view what) {
  if (EVP_PKEY_get_base_id(pkey) == EVP_PKEY_ED25519) return absl::OkStatus();
  const char* name = EVP_PKEY_get0_type_name(pkey);
  return absl::InvalidArgumentError(
      absl::StrCat(what, " is ", name == nullptr ? "of an unknown type" : name,
                   ", not Ed25519 (make one with fedkit-sign keygen or "
                   "openssl genpkey -algorithm ed25519)"));
}

absl::StatusOr<BioPtr> MemoryBio(absl::string_view pem) {
  BioPtr bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  if (bio == nullptr) return OpenSslError("BIO_new_mem_buf");
  return bio;
}

absl::StatusOr<std::string> BioContents(BIO* bio) {
  char* data = nullptr;
  const long len = BIO_get_mem_data(bio, &data);
  if (len <= 0 || data == nullptr) return absl::InternalError("PEM encoding is empty");
  return std::string(data, static_cast<size_t>(len));
}

bool IsLowerHex(absl::string_view s) {
  return std::all_of(s.begin(), s.end(),
                     [](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); });
}

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

absl::Span<const uint8_t> Bytes(absl::string_view s) {
  return absl::Span<const uint8_t>(reinterpret_cast<const uint8_t*>(s.data()), s.size());
}

}  // namespace

PrivateKey::~PrivateKey() { OPENSSL_cleanse(raw_.data(), raw_.size()); }

Sha256Digest Sha256(absl::Span<const uint8_t> bytes) {
  Sha256Digest digest;
  unsigned int len = 0;
  // EVP_Digest with SHA-256 cannot fail on valid arguments short of memory exhaustion.
  if (EVP_Digest(bytes.data(), bytes.size(), digest.data(), &len, EVP_sha256(), nullptr) != 1 ||
      len != digest.size()) {
    ERR_clear_error();
    std::abort();
  }
  return digest;
}

Sha256Digest Sha256(absl::string_view bytes) { return Sha256(Bytes(bytes)); }

std::string ToHex(absl::Span<const uint8_t> bytes) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  out.reserve(bytes.size() * 2);
  for (uint8_t b : bytes) {
    out.push_back(kDigits[b >> 4]);
    out.push_back(kDigits[b & 0xf]);
  }
  return out;
}

std::string Sha256Hex(absl::string_view bytes) { return ToHex(Sha256(bytes)); }

absl::Status ParseHex(absl::string_view hex, absl::Span<uint8_t> out) {
  if (hex.size() != out.size() * 2) {
    return absl::InvalidArgumentError(
        absl::StrCat("expected ", out.size() * 2, " hex digits, got ", hex.size(), " characters"));
  }
  for (size_t i = 0; i < out.size(); ++i) {
    const int hi = HexValue(hex[2 * i]);
    const int lo = HexValue(hex[2 * i + 1]);
    if (hi < 0 || lo < 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("not a hex digit at position ", 2 * i + (hi < 0 ? 0 : 1)));
    }
    out[i] = static_cast<uint8_t>(hi << 4 | lo);
  }
  return absl::OkStatus();
}

absl::StatusOr<Sha256Digest> ParseSha256Hex(absl::string_view hex) {
  Sha256Digest digest;
  absl::Status status = ParseHex(hex, absl::MakeSpan(digest));
  if (!status.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("SHA-256: ", status.message()));
  }
  return digest;
}

absl::StatusOr<KeyPair> GenerateKeyPair() {
  PkeyPtr pkey(EVP_PKEY_Q_keygen(nullptr, nullptr, "ED25519"));
  if (pkey == nullptr) return OpenSslError("EVP_PKEY_Q_keygen(ED25519)");
  std::array<uint8_t, 32> raw;
  size_t len = raw.size();
  if (EVP_PKEY_get_raw_private_key(pkey.get(), raw.data(), &len) != 1 || len != raw.size()) {
    OPENSSL_cleanse(raw.data(), raw.size());
    return OpenSslError("EVP_PKEY_get_raw_private_key");
  }
  KeyPair pair{PrivateKey(raw), {}};
  OPENSSL_cleanse(raw.data(), raw.size());
  absl::StatusOr<PublicKey> public_key = RawPublicKey(pkey.get());
  if (!public_key.ok()) return public_key.status();
  pair.public_key = *public_key;
  return pair;
}

absl::StatusOr<PublicKey> PublicKeyOf(const PrivateKey& private_key) {
  absl::StatusOr<PkeyPtr> pkey = EvpPrivateKey(private_key);
  if (!pkey.ok()) return pkey.status();
  return RawPublicKey(pkey->get());
}

std::string Fingerprint(const PublicKey& public_key) {
  const Sha256Digest digest = Sha256(absl::MakeConstSpan(public_key.raw));
  return ToHex(absl::MakeConstSpan(digest).first(8));
}

absl::StatusOr<std::string> PrivateKeyToPem(const PrivateKey& private_key) {
  absl::StatusOr<PkeyPtr> pkey = EvpPrivateKey(private_key);
  if (!pkey.ok()) return pkey.status();
  BioPtr bio(BIO_new(BIO_s_mem()));
  if (bio == nullptr) return OpenSslError("BIO_new");
  // OpenSSL 3 writes PKCS#8 ("BEGIN PRIVATE KEY") here.
  if (PEM_write_bio_PrivateKey(bio.get(), pkey->get(), nullptr, nullptr, 0, nullptr, nullptr) !=
      1) {
    return OpenSslError("PEM_write_bio_PrivateKey");
  }
  return BioContents(bio.get());
}

absl::StatusOr<std::string> PublicKeyToPem(const PublicKey& public_key) {
  absl::StatusOr<PkeyPtr> pkey = EvpPublicKey(public_key);
  if (!pkey.ok()) return pkey.status();
  BioPtr bio(BIO_new(BIO_s_mem()));
  if (bio == nullptr) return OpenSslError("BIO_new");
  if (PEM_write_bio_PUBKEY(bio.get(), pkey->get()) != 1) {
    return OpenSslError("PEM_write_bio_PUBKEY");
  }
  return BioContents(bio.get());
}

absl::StatusOr<PrivateKey> PrivateKeyFromPem(absl::string_view pem) {
  if (pem.find("-----BEGIN PRIVATE KEY-----") == absl::string_view::npos) {
    ERR_clear_error();
    if (pem.find("-----BEGIN PUBLIC KEY-----") != absl::string_view::npos) {
      return absl::InvalidArgumentError("holds a public key, not a private key");
    }
    if (pem.find("-----BEGIN ENCRYPTED PRIVATE KEY-----") != absl::string_view::npos) {
      return absl::InvalidArgumentError(
          "is an encrypted private key; FedKit reads only "
          "unencrypted PKCS#8 (\"BEGIN PRIVATE KEY\")");
    }
    return absl::InvalidArgumentError(
        "is not a PEM PKCS#8 private key (no \"-----BEGIN PRIVATE KEY-----\" line)");
  }
  absl::StatusOr<BioPtr> bio = MemoryBio(pem);
  if (!bio.ok()) return bio.status();
  PkeyPtr pkey(PEM_read_bio_PrivateKey(bio->get(), nullptr, NoPassword, nullptr));
  if (pkey == nullptr) {
    ERR_clear_error();
    return absl::InvalidArgumentError("PEM private key does not parse (corrupted base64 or DER)");
  }
  absl::Status status = CheckEd25519(pkey.get(), "private key");
  if (!status.ok()) return status;
  std::array<uint8_t, 32> raw;
  size_t len = raw.size();
  if (EVP_PKEY_get_raw_private_key(pkey.get(), raw.data(), &len) != 1 || len != raw.size()) {
    OPENSSL_cleanse(raw.data(), raw.size());
    return OpenSslError("EVP_PKEY_get_raw_private_key");
  }
  PrivateKey key(raw);
  OPENSSL_cleanse(raw.data(), raw.size());
  return key;
}

absl::StatusOr<PublicKey> PublicKeyFromPem(absl::string_view pem) {
  if (pem.find("-----BEGIN PUBLIC KEY-----") == absl::string_view::npos) {
    if (pem.find("PRIVATE KEY-----") != absl::string_view::npos) {
      return absl::InvalidArgumentError(
          "holds a private key, not a public key (pass the public key)");
    }
    return absl::InvalidArgumentError(
        "is not a PEM public key (no \"-----BEGIN PUBLIC KEY-----\" line)");
  }
  absl::StatusOr<BioPtr> bio = MemoryBio(pem);
  if (!bio.ok()) return bio.status();
  PkeyPtr pkey(PEM_read_bio_PUBKEY(bio->get(), nullptr, NoPassword, nullptr));
  if (pkey == nullptr) {
    ERR_clear_error();
    return absl::InvalidArgumentError("PEM public key does not parse (corrupted base64 or DER)");
  }
  absl::Status status = CheckEd25519(pkey.get(), "public key");
  if (!status.ok()) return status;
  return RawPublicKey(pkey.get());
}

absl::StatusOr<Signature> Ed25519Sign(absl::Span<const uint8_t> message,
                                      const PrivateKey& private_key) {
  absl::StatusOr<PkeyPtr> pkey = EvpPrivateKey(private_key);
  if (!pkey.ok()) return pkey.status();
  MdCtxPtr ctx(EVP_MD_CTX_new());
  if (ctx == nullptr) return OpenSslError("EVP_MD_CTX_new");
  // Ed25519 is "pure": no separate digest (NULL), one-shot EVP_DigestSign.
  if (EVP_DigestSignInit(ctx.get(), nullptr, nullptr, nullptr, pkey->get()) != 1) {
    return OpenSslError("EVP_DigestSignInit");
  }
  Signature signature;
  size_t len = signature.size();
  static const uint8_t kEmpty = 0;
  if (EVP_DigestSign(ctx.get(), signature.data(), &len, message.empty() ? &kEmpty : message.data(),
                     message.size()) != 1) {
    return OpenSslError("EVP_DigestSign");
  }
  if (len != signature.size()) return absl::InternalError("Ed25519 signature has wrong length");
  return signature;
}

absl::Status Ed25519Verify(absl::Span<const uint8_t> message, const Signature& signature,
                           const PublicKey& public_key) {
  absl::StatusOr<PkeyPtr> pkey = EvpPublicKey(public_key);
  if (!pkey.ok()) return pkey.status();
  MdCtxPtr ctx(EVP_MD_CTX_new());
  if (ctx == nullptr) return OpenSslError("EVP_MD_CTX_new");
  if (EVP_DigestVerifyInit(ctx.get(), nullptr, nullptr, nullptr, pkey->get()) != 1) {
    return OpenSslError("EVP_DigestVerifyInit");
  }
  static const uint8_t kEmpty = 0;
  const int ok = EVP_DigestVerify(ctx.get(), signature.data(), signature.size(),
                                  message.empty() ? &kEmpty : message.data(), message.size());
  ERR_clear_error();
  if (ok != 1) {
    return absl::PermissionDeniedError(
        absl::StrCat("signature does not verify with public key ", Fingerprint(public_key)));
  }
  return absl::OkStatus();
}

std::vector<uint8_t> SignedMessage(const Sha256Digest& artifact_sha256) {
  std::vector<uint8_t> message(kSignatureDomain.begin(), kSignatureDomain.end());
  message.push_back(0);
  message.insert(message.end(), artifact_sha256.begin(), artifact_sha256.end());
  return message;
}

absl::StatusOr<Signature> SignArtifactDigest(const Sha256Digest& artifact_sha256,
                                             const PrivateKey& private_key) {
  return Ed25519Sign(SignedMessage(artifact_sha256), private_key);
}

absl::StatusOr<Signature> SignArtifact(absl::string_view artifact_bytes,
                                       const PrivateKey& private_key) {
  return SignArtifactDigest(Sha256(artifact_bytes), private_key);
}

absl::Status VerifyArtifact(absl::string_view artifact_bytes, const Sha256Digest& expected_sha256,
                            const Signature& signature, const PublicKey& public_key) {
  const Sha256Digest actual = Sha256(artifact_bytes);
  if (actual != expected_sha256) {
    return absl::DataLossError(absl::StrCat("artifact's SHA-256 is ", ToHex(actual),
                                            ", the assignment says ", ToHex(expected_sha256)));
  }
  return Ed25519Verify(SignedMessage(expected_sha256), signature, public_key);
}

absl::StatusOr<SignatureFile> MakeSignatureFile(absl::string_view artifact_bytes,
                                                const PrivateKey& private_key) {
  SignatureFile file;
  file.sha256 = Sha256(artifact_bytes);
  absl::StatusOr<PublicKey> public_key = PublicKeyOf(private_key);
  if (!public_key.ok()) return public_key.status();
  file.key_fingerprint = Fingerprint(*public_key);
  absl::StatusOr<Signature> signature = SignArtifactDigest(file.sha256, private_key);
  if (!signature.ok()) return signature.status();
  file.signature = *signature;
  return file;
}

std::string FormatSignatureFile(const SignatureFile& file) {
  return absl::StrCat(kSignatureFileMagic, "\nsha256 ", ToHex(file.sha256), "\nkey ",
                      file.key_fingerprint, "\nsig ", ToHex(file.signature), "\n");
}

absl::StatusOr<SignatureFile> ParseSignatureFile(absl::string_view text) {
  constexpr size_t kMaxBytes = 1024;  // the real file is 255 bytes
  if (text.size() > kMaxBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("signature file is ", text.size(), " bytes; a valid one is 255"));
  }
  if (text.empty()) return absl::InvalidArgumentError("signature file is empty");
  if (text.back() != '\n') {
    return absl::InvalidArgumentError("signature file does not end with a newline (truncated?)");
  }
  std::vector<absl::string_view> lines = absl::StrSplit(text.substr(0, text.size() - 1), '\n');
  if (lines[0] != kSignatureFileMagic) {
    return absl::InvalidArgumentError(absl::StrCat("line 1: expected \"", kSignatureFileMagic,
                                                   "\" (not a FedKit signature file "
                                                   "or an unsupported version)"));
  }
  struct Field {
    absl::string_view prefix;
    size_t hex_digits;
  };
  static constexpr Field kFields[] = {{"sha256 ", 64}, {"key ", 16}, {"sig ", 128}};
  if (lines.size() != 4) {
    return absl::InvalidArgumentError(
        absl::StrCat("expected 4 lines (magic, sha256, key, sig), got ", lines.size()));
  }
  std::string values[3];
  for (int i = 0; i < 3; ++i) {
    const absl::string_view line = lines[i + 1];
    const Field& field = kFields[i];
    const absl::string_view value = line.substr(std::min(line.size(), field.prefix.size()));
    if (line.substr(0, field.prefix.size()) != field.prefix || value.size() != field.hex_digits ||
        !IsLowerHex(value)) {
      return absl::InvalidArgumentError(absl::StrCat("line ", i + 2, ": expected \"", field.prefix,
                                                     "<", field.hex_digits,
                                                     " lowercase hex digits>\""));
    }
    values[i] = std::string(value);
  }
  SignatureFile file;
  absl::Status status = ParseHex(values[0], absl::MakeSpan(file.sha256));
  if (status.ok()) status = ParseHex(values[2], absl::MakeSpan(file.signature));
  if (!status.ok()) return status;
  file.key_fingerprint = values[1];
  return file;
}

absl::Status VerifySignatureFile(absl::string_view artifact_bytes, const SignatureFile& file,
                                 const PublicKey& public_key) {
  const std::string trusted = Fingerprint(public_key);
  if (file.key_fingerprint != trusted) {
    return absl::PermissionDeniedError(absl::StrCat("signed by key ", file.key_fingerprint,
                                                    ", but the trusted public key is ", trusted));
  }
  return VerifyArtifact(artifact_bytes, file.sha256, file.signature, public_key);
}

}  // namespace fedkit::artifacts
