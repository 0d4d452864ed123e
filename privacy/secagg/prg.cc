#include "privacy/secagg/prg.h"

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>

#include <algorithm>
#include <bit>
#include <cstring>
#include <memory>

#include "absl/strings/str_cat.h"

namespace fedkit::secagg {
namespace {

struct CipherCtxDeleter {
  void operator()(EVP_CIPHER_CTX* p) const { EVP_CIPHER_CTX_free(p); }
};
using CipherCtxPtr = std::unique_ptr<EVP_CIPHER_CTX, CipherCtxDeleter>;

// Keystream is produced this many bytes at a time: large enough to amortise the EVP call, small
// enough to stay in L1/L2 next to the values being masked.
constexpr size_t kStreamBlockBytes = 16 * 1024;

absl::Status OpenSslError(absl::string_view operation) {
  const unsigned long code = ERR_get_error();
  ERR_clear_error();
  if (code == 0) return absl::InternalError(absl::StrCat(operation, " failed"));
  char buf[256];
  ERR_error_string_n(code, buf, sizeof(buf));
  return absl::InternalError(absl::StrCat(operation, " failed: ", buf));
}

template <typename Word>
Word LoadLittleEndian(const uint8_t* p) {
  Word w = 0;
  if constexpr (std::endian::native == std::endian::little) {
    std::memcpy(&w, p, sizeof(w));
  } else {
    for (size_t i = 0; i < sizeof(Word); ++i) w |= static_cast<Word>(p[i]) << (8 * i);
  }
  return w;
}

// values[i] = values[i] + (word_i XOR flip) - flip (mod 2^bits): flip = 0 adds the word, flip = ~0
// adds its two's-complement negation, so the loop has no branch on the sign and vectorises.
template <typename Word>
inline void AccumulateWord(const uint8_t* __restrict stream, uint64_t flip, uint64_t mask,
                           uint64_t* __restrict value) {
  const uint64_t w = LoadLittleEndian<Word>(stream);
  *value = (*value + ((w ^ flip) - flip)) & mask;
}

template <typename Word>
void AccumulateWords(const uint8_t* __restrict stream, uint64_t flip, uint64_t mask,
                     uint64_t* __restrict values, size_t n) {
  // Fixed-length groups: GCC's -O2 vectoriser only takes loops without a scalar remainder.
  constexpr size_t kGroup = 8;
  size_t i = 0;
  for (; i + kGroup <= n; i += kGroup) {
    for (size_t j = 0; j < kGroup; ++j) {
      AccumulateWord<Word>(stream + (i + j) * sizeof(Word), flip, mask, values + i + j);
    }
  }
  for (; i < n; ++i) AccumulateWord<Word>(stream + i * sizeof(Word), flip, mask, values + i);
}

template <typename Word>
absl::Status MaskWith(EVP_CIPHER_CTX* ctx, uint64_t flip, uint64_t mask,
                      absl::Span<uint64_t> values) {
  // Encrypting zeros yields the raw CTR keystream.
  alignas(64) static const uint8_t kZeros[kStreamBlockBytes] = {};
  alignas(64) uint8_t stream[kStreamBlockBytes];
  constexpr size_t kWordsPerBlock = kStreamBlockBytes / sizeof(Word);
  absl::Status status;
  for (size_t done = 0; done < values.size();) {
    const size_t n = std::min(values.size() - done, kWordsPerBlock);
    const int bytes = static_cast<int>(n * sizeof(Word));
    int out_len = 0;
    if (EVP_EncryptUpdate(ctx, stream, &out_len, kZeros, bytes) != 1 || out_len != bytes) {
      status = OpenSslError("EVP_EncryptUpdate(AES-256-CTR)");
      break;
    }
    AccumulateWords<Word>(stream, flip, mask, values.data() + done, n);
    done += n;
  }
  // The keystream is the mask itself.
  OPENSSL_cleanse(stream, sizeof(stream));
  return status;
}

}  // namespace

absl::Status AddPrgMask(const Key32& seed, int sign, int modulus_bits,
                        absl::Span<uint64_t> values) {
  if (sign != 1 && sign != -1) {
    return absl::InvalidArgumentError(absl::StrCat("PRG mask sign must be +1 or -1, got ", sign));
  }
  if (modulus_bits < 1 || modulus_bits > 64) {
    return absl::InvalidArgumentError(
        absl::StrCat("modulus_bits must be in [1, 64], got ", modulus_bits));
  }
  if (values.empty()) return absl::OkStatus();

  CipherCtxPtr ctx(EVP_CIPHER_CTX_new());
  if (ctx == nullptr) return OpenSslError("EVP_CIPHER_CTX_new");
  static constexpr uint8_t kZeroIv[16] = {};
  // Fetched once (see crypto.cc): an implicit fetch per call costs more than a short mask.
  static const EVP_CIPHER* const kAes256Ctr = EVP_CIPHER_fetch(nullptr, "AES-256-CTR", nullptr);
  if (kAes256Ctr == nullptr) return OpenSslError("EVP_CIPHER_fetch(AES-256-CTR)");
  if (EVP_EncryptInit_ex(ctx.get(), kAes256Ctr, nullptr, seed.data(), kZeroIv) != 1) {
    return OpenSslError("EVP_EncryptInit_ex(AES-256-CTR)");
  }
  const uint64_t flip = sign < 0 ? ~uint64_t{0} : 0;
  const uint64_t mask = ModulusMask(modulus_bits);
  return modulus_bits <= 32 ? MaskWith<uint32_t>(ctx.get(), flip, mask, values)
                            : MaskWith<uint64_t>(ctx.get(), flip, mask, values);
}

}  // namespace fedkit::secagg
