#include "privacy/secagg/crypto.h"

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>
#include <openssl/params.h>
#include <openssl/proverr.h>
#include <openssl/rand.h>

#include <algorithm>
#include <climits>
#include <memory>
#include <string>

#include "absl/strings/str_cat.h"

namespace fedkit::secagg {
namespace {

struct PkeyDeleter {
  void operator()(EVP_PKEY* p) const { EVP_PKEY_free(p); }
};
struct PkeyCtxDeleter {
  void operator()(EVP_PKEY_CTX* p) const { EVP_PKEY_CTX_free(p); }
};
struct CipherCtxDeleter {
  void operator()(EVP_CIPHER_CTX* p) const { EVP_CIPHER_CTX_free(p); }
};
struct KdfDeleter {
  void operator()(EVP_KDF* p) const { EVP_KDF_free(p); }
};
struct KdfCtxDeleter {
  void operator()(EVP_KDF_CTX* p) const { EVP_KDF_CTX_free(p); }
};
using PkeyPtr = std::unique_ptr<EVP_PKEY, PkeyDeleter>;
using PkeyCtxPtr = std::unique_ptr<EVP_PKEY_CTX, PkeyCtxDeleter>;
using CipherCtxPtr = std::unique_ptr<EVP_CIPHER_CTX, CipherCtxDeleter>;
using KdfPtr = std::unique_ptr<EVP_KDF, KdfDeleter>;
using KdfCtxPtr = std::unique_ptr<EVP_KDF_CTX, KdfCtxDeleter>;

constexpr size_t kNonceBytes = 12;
constexpr size_t kTagBytes = 16;
static_assert(kAeadOverheadBytes == kNonceBytes + kTagBytes);

// EVP update calls take an int length; longer inputs are fed in pieces.
constexpr size_t kMaxChunk = size_t{1} << 30;

// INTERNAL with the oldest queued OpenSSL error (the root cause); empties the thread's queue so a
// stale error is never attributed to a later call.
absl::Status OpenSslError(absl::string_view operation) {
  const unsigned long code = ERR_get_error();
  ERR_clear_error();
  if (code == 0) return absl::InternalError(absl::StrCat(operation, " failed"));
  char buf[256];
  ERR_error_string_n(code, buf, sizeof(buf));
  return absl::InternalError(absl::StrCat(operation, " failed: ", buf));
}

// Algorithms fetched once per process: OpenSSL 3's implicit fetch (EVP_aes_256_gcm() passed to an
// Init call, a KDF fetched by name) takes provider locks and string lookups on every call, which
// dominated the cost of the many small operations secure aggregation makes. Fetched objects are
// immutable and safe to share between threads; they live until exit.
const EVP_CIPHER* Aes256Gcm() {
  static const EVP_CIPHER* const cipher = EVP_CIPHER_fetch(nullptr, "AES-256-GCM", nullptr);
  return cipher;
}

EVP_KDF* Hkdf() {
  static EVP_KDF* const kdf = EVP_KDF_fetch(nullptr, OSSL_KDF_NAME_HKDF, nullptr);
  return kdf;
}

absl::Status AuthenticationFailed() {
  ERR_clear_error();
  return absl::InvalidArgumentError("authentication failed");
}

absl::StatusOr<PkeyPtr> PrivateKey(const Key32& private_key) {
  PkeyPtr key(EVP_PKEY_new_raw_private_key(EVP_PKEY_X25519, nullptr, private_key.data(),
                                           private_key.size()));
  if (key == nullptr) return OpenSslError("EVP_PKEY_new_raw_private_key");
  return key;
}

// OpenSSL rejects null data pointers for some zero-length octet-string parameters; empty spans
// may well have one.
template <typename T>
void* ParamData(absl::Span<const T> span) {
  static uint8_t empty = 0;
  return span.empty() ? &empty : const_cast<T*>(span.data());
}

// Feeds `in` to the cipher in int-sized pieces; `out` == nullptr for associated data.
absl::Status CipherUpdate(EVP_CIPHER_CTX* ctx, bool encrypt, uint8_t* out,
                          absl::Span<const uint8_t> in) {
  size_t done = 0;
  while (done < in.size()) {
    const int len = static_cast<int>(std::min(in.size() - done, kMaxChunk));
    int out_len = 0;
    uint8_t* dst = out == nullptr ? nullptr : out + done;
    const int ok = encrypt ? EVP_EncryptUpdate(ctx, dst, &out_len, in.data() + done, len)
                           : EVP_DecryptUpdate(ctx, dst, &out_len, in.data() + done, len);
    // GCM is a stream mode: every update emits exactly its input.
    if (ok != 1 || (out != nullptr && out_len != len)) {
      return OpenSslError(encrypt ? "EVP_EncryptUpdate" : "EVP_DecryptUpdate");
    }
    done += static_cast<size_t>(len);
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status SecureRandomBytes(absl::Span<uint8_t> out) {
  size_t done = 0;
  while (done < out.size()) {
    const int len = static_cast<int>(std::min(out.size() - done, kMaxChunk));
    if (RAND_bytes(out.data() + done, len) != 1) return OpenSslError("RAND_bytes");
    done += static_cast<size_t>(len);
  }
  return absl::OkStatus();
}

absl::StatusOr<Key32> SecureRandomKey() {
  Key32 key;
  absl::Status status = SecureRandomBytes(absl::MakeSpan(key));
  if (!status.ok()) return status;
  return key;
}

absl::StatusOr<X25519KeyPair> GenerateX25519KeyPair() {
  // Any 32 random bytes are a valid X25519 private key (clamping happens inside X25519).
  X25519KeyPair pair;
  absl::Status status = SecureRandomBytes(absl::MakeSpan(pair.private_key));
  if (!status.ok()) return status;
  absl::StatusOr<Key32> public_key = X25519PublicKey(pair.private_key);
  if (!public_key.ok()) {
    OPENSSL_cleanse(pair.private_key.data(), pair.private_key.size());
    return public_key.status();
  }
  pair.public_key = *public_key;
  return pair;
}

absl::StatusOr<Key32> X25519PublicKey(const Key32& private_key) {
  absl::StatusOr<PkeyPtr> key = PrivateKey(private_key);
  if (!key.ok()) return key.status();
  Key32 public_key;
  size_t len = public_key.size();
  if (EVP_PKEY_get_raw_public_key(key->get(), public_key.data(), &len) != 1) {
    return OpenSslError("EVP_PKEY_get_raw_public_key");
  }
  if (len != public_key.size()) return absl::InternalError("X25519 public key has wrong length");
  return public_key;
}

namespace {

absl::StatusOr<Key32> DeriveX25519(EVP_PKEY* own, const Key32& peer_public);

}  // namespace

absl::StatusOr<Key32> X25519SharedSecret(const Key32& own_private, const Key32& peer_public) {
  absl::StatusOr<PkeyPtr> own = PrivateKey(own_private);
  if (!own.ok()) return own.status();
  return DeriveX25519(own->get(), peer_public);
}

struct X25519PrivateKey::Impl {
  PkeyPtr key;
};

absl::StatusOr<X25519PrivateKey> X25519PrivateKey::Create(const Key32& private_key) {
  absl::StatusOr<PkeyPtr> key = PrivateKey(private_key);
  if (!key.ok()) return key.status();
  auto impl = std::make_shared<Impl>();
  impl->key = *std::move(key);
  return X25519PrivateKey(std::move(impl));
}

absl::StatusOr<Key32> X25519PrivateKey::SharedSecret(const Key32& peer_public) const {
  if (impl_ == nullptr) return absl::FailedPreconditionError("X25519 private key not set");
  return DeriveX25519(impl_->key.get(), peer_public);
}

namespace {

absl::StatusOr<Key32> DeriveX25519(EVP_PKEY* own, const Key32& peer_public) {
  PkeyPtr peer(EVP_PKEY_new_raw_public_key(EVP_PKEY_X25519, nullptr, peer_public.data(),
                                           peer_public.size()));
  if (peer == nullptr) return OpenSslError("EVP_PKEY_new_raw_public_key");
  PkeyCtxPtr ctx(EVP_PKEY_CTX_new(own, nullptr));
  if (ctx == nullptr) return OpenSslError("EVP_PKEY_CTX_new");
  if (EVP_PKEY_derive_init(ctx.get()) != 1) return OpenSslError("EVP_PKEY_derive_init");
  if (EVP_PKEY_derive_set_peer(ctx.get(), peer.get()) != 1) {
    return OpenSslError("EVP_PKEY_derive_set_peer");
  }
  Key32 secret;
  size_t len = secret.size();
  if (EVP_PKEY_derive(ctx.get(), secret.data(), &len) != 1) {
    // OpenSSL 3 itself refuses an all-zero result (RFC 7748 §6.1) with this reason; that is the
    // peer's fault, not ours.
    const unsigned long code = ERR_peek_error();
    if (ERR_GET_LIB(code) == ERR_LIB_PROV &&
        ERR_GET_REASON(code) == PROV_R_FAILED_DURING_DERIVATION) {
      ERR_clear_error();
      OPENSSL_cleanse(secret.data(), secret.size());
      return absl::InvalidArgumentError("X25519 peer public key is a low-order point");
    }
    return OpenSslError("EVP_PKEY_derive");
  }
  if (len != secret.size()) return absl::InternalError("X25519 shared secret has wrong length");
  // Checked here too in case the provider does not: constant time, as the secret is secret.
  static constexpr Key32 kZero = {};
  if (CRYPTO_memcmp(secret.data(), kZero.data(), secret.size()) == 0) {
    return absl::InvalidArgumentError("X25519 peer public key is a low-order point");
  }
  return secret;
}

}  // namespace

absl::StatusOr<Key32> HkdfSha256(absl::Span<const uint8_t> input_key_material,
                                 absl::Span<const uint8_t> salt, absl::string_view info) {
  EVP_KDF* kdf = Hkdf();
  if (kdf == nullptr) return OpenSslError("EVP_KDF_fetch(HKDF)");
  KdfCtxPtr ctx(EVP_KDF_CTX_new(kdf));
  if (ctx == nullptr) return OpenSslError("EVP_KDF_CTX_new");

  char digest[] = "SHA256";
  OSSL_PARAM params[5];
  OSSL_PARAM* p = params;
  *p++ = OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, digest, 0);
  *p++ = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY, ParamData(input_key_material),
                                           input_key_material.size());
  // An absent salt is, per RFC 5869, HashLen zero bytes, which is what OpenSSL uses by default.
  if (!salt.empty()) {
    *p++ = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SALT, ParamData(salt), salt.size());
  }
  if (!info.empty()) {
    *p++ = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_INFO, const_cast<char*>(info.data()),
                                             info.size());
  }
  *p = OSSL_PARAM_construct_end();

  Key32 out;
  if (EVP_KDF_derive(ctx.get(), out.data(), out.size(), params) != 1) {
    OPENSSL_cleanse(out.data(), out.size());
    return OpenSslError("EVP_KDF_derive(HKDF)");
  }
  return out;
}

absl::StatusOr<Key32> Sha256(absl::Span<const uint8_t> data) {
  Key32 out;
  unsigned int length = 0;
  if (EVP_Digest(data.data(), data.size(), out.data(), &length, EVP_sha256(), nullptr) != 1 ||
      length != out.size()) {
    return OpenSslError("EVP_Digest(SHA256)");
  }
  return out;
}

absl::StatusOr<std::vector<uint8_t>> AeadEncrypt(const Key32& key,
                                                 absl::Span<const uint8_t> plaintext,
                                                 absl::Span<const uint8_t> associated_data) {
  std::vector<uint8_t> sealed(kNonceBytes + plaintext.size() + kTagBytes);
  uint8_t* nonce = sealed.data();
  uint8_t* ciphertext = nonce + kNonceBytes;
  uint8_t* tag = ciphertext + plaintext.size();
  absl::Status status = SecureRandomBytes(absl::MakeSpan(nonce, kNonceBytes));
  if (!status.ok()) return status;

  CipherCtxPtr ctx(EVP_CIPHER_CTX_new());
  if (ctx == nullptr) return OpenSslError("EVP_CIPHER_CTX_new");
  // 12 bytes is GCM's default IV length, so no EVP_CTRL_GCM_SET_IVLEN is needed.
  if (Aes256Gcm() == nullptr) return OpenSslError("EVP_CIPHER_fetch(AES-256-GCM)");
  if (EVP_EncryptInit_ex(ctx.get(), Aes256Gcm(), nullptr, key.data(), nonce) != 1) {
    return OpenSslError("EVP_EncryptInit_ex");
  }
  status = CipherUpdate(ctx.get(), /*encrypt=*/true, nullptr, associated_data);
  if (!status.ok()) return status;
  status = CipherUpdate(ctx.get(), /*encrypt=*/true, ciphertext, plaintext);
  if (!status.ok()) return status;
  int final_len = 0;
  if (EVP_EncryptFinal_ex(ctx.get(), tag, &final_len) != 1 || final_len != 0) {
    return OpenSslError("EVP_EncryptFinal_ex");
  }
  if (EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_GET_TAG, kTagBytes, tag) != 1) {
    return OpenSslError("EVP_CTRL_GCM_GET_TAG");
  }
  return sealed;
}

absl::StatusOr<std::vector<uint8_t>> AeadDecrypt(const Key32& key, absl::Span<const uint8_t> sealed,
                                                 absl::Span<const uint8_t> associated_data) {
  if (sealed.size() < kAeadOverheadBytes) return AuthenticationFailed();
  const uint8_t* nonce = sealed.data();
  absl::Span<const uint8_t> ciphertext =
      sealed.subspan(kNonceBytes, sealed.size() - kAeadOverheadBytes);
  // EVP_CTRL_GCM_SET_TAG takes a non-const pointer.
  uint8_t tag[kTagBytes];
  std::copy_n(sealed.end() - kTagBytes, kTagBytes, tag);

  CipherCtxPtr ctx(EVP_CIPHER_CTX_new());
  if (ctx == nullptr) return OpenSslError("EVP_CIPHER_CTX_new");
  if (Aes256Gcm() == nullptr) return OpenSslError("EVP_CIPHER_fetch(AES-256-GCM)");
  if (EVP_DecryptInit_ex(ctx.get(), Aes256Gcm(), nullptr, key.data(), nonce) != 1) {
    return OpenSslError("EVP_DecryptInit_ex");
  }
  if (EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_SET_TAG, kTagBytes, tag) != 1) {
    return OpenSslError("EVP_CTRL_GCM_SET_TAG");
  }
  std::vector<uint8_t> plaintext(ciphertext.size());
  absl::Status status = CipherUpdate(ctx.get(), /*encrypt=*/false, nullptr, associated_data);
  if (status.ok())
    status = CipherUpdate(ctx.get(), /*encrypt=*/false, plaintext.data(), ciphertext);
  if (!status.ok()) {
    OPENSSL_cleanse(plaintext.data(), plaintext.size());
    return status;
  }
  int final_len = 0;
  if (EVP_DecryptFinal_ex(ctx.get(), plaintext.data() + plaintext.size(), &final_len) != 1) {
    // Unauthenticated plaintext must not escape, not even through freed memory.
    OPENSSL_cleanse(plaintext.data(), plaintext.size());
    return AuthenticationFailed();
  }
  return plaintext;
}

}  // namespace fedkit::secagg
