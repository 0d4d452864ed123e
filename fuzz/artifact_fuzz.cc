// Fuzz target: signed model artifacts (artifacts/signing.h): the detached signature file parser
// and its verification against a trusted key, PEM key parsing (public and private), hex parsing,
// and raw signature verification, on the fuzzer's bytes. The signature file is the fuzzer's text,
// or a valid file (for an artifact of the fuzzer's bytes) edited at the byte level.
// Checked beyond the sanitizers: a signature file that parses formats back to the same text (the
// format is strict); a verification that succeeds is for the trusted key and the right bytes.
#include <cstdint>
#include <cstdlib>
#include <string>

#include "artifacts/signing.h"
#include "fuzz/fuzz_input.h"

namespace fedkit::artifacts {
namespace {

// A fixed operator key (the fuzzer cannot forge signatures, it can only break files).
const PrivateKey& OperatorKey() {
  static const PrivateKey key(std::array<uint8_t, 32>{1,  2,  3,  4,  5,  6,  7,  8,  9,  10, 11,
                                                      12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22,
                                                      23, 24, 25, 26, 27, 28, 29, 30, 31, 32});
  return key;
}

void Run(fuzz::FuzzInput& in) {
  static const PublicKey trusted = *PublicKeyOf(OperatorKey());
  switch (in.Int(0, 4)) {
    case 0:
    case 1: {  // .sig file: raw text, or a valid one edited
      const std::string artifact = in.Bytes(256);
      std::string text;
      bool valid = false;
      if (in.Bool()) {
        absl::StatusOr<SignatureFile> made = MakeSignatureFile(artifact, OperatorKey());
        if (!made.ok()) std::abort();
        const std::string formatted = FormatSignatureFile(*made);
        text = in.Edit(formatted);
        valid = text == formatted;
      } else {
        text = in.Rest();
      }
      absl::StatusOr<SignatureFile> parsed = ParseSignatureFile(text);
      if (!parsed.ok()) {
        if (valid) std::abort();  // a file we wrote must parse
        return;
      }
      if (FormatSignatureFile(*parsed) != text) std::abort();  // strict: one text per file
      const absl::Status verified = VerifySignatureFile(artifact, *parsed, trusted);
      if (valid && !verified.ok()) std::abort();
      if (verified.ok() &&
          (parsed->sha256 != Sha256(artifact) || parsed->key_fingerprint != Fingerprint(trusted))) {
        std::abort();
      }
      break;
    }
    case 2: {  // PEM keys
      const std::string pem = in.Rest();
      (void)PublicKeyFromPem(pem);
      (void)PrivateKeyFromPem(pem);
      break;
    }
    case 3: {  // hex
      const std::string hex = in.Rest();
      (void)ParseSha256Hex(hex);
      break;
    }
    default: {  // raw artifact verification with the fuzzer's digest and signature
      const std::string artifact = in.Bytes(256);
      Sha256Digest digest = Sha256(artifact);
      if (in.Bool()) {
        for (uint8_t& byte : digest) byte = static_cast<uint8_t>(in.Bits(1));
      }
      Signature signature = {};
      for (uint8_t& byte : signature) byte = static_cast<uint8_t>(in.Bits(1));
      if (VerifyArtifact(artifact, digest, signature, trusted).ok()) std::abort();  // forged
      break;
    }
  }
}

}  // namespace
}  // namespace fedkit::artifacts

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  fedkit::fuzz::FuzzInput in(data, size);
  fedkit::artifacts::Run(in);
  return 0;
}
