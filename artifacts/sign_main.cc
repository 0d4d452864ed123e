// fedkit-sign: Ed25519 keys and detached signatures for model artifacts (see artifacts/signing.h).
// Exit status: 0 success (verify: the artifact is approved), 1 failure (the message names the file
// at fault), 2 usage error.
#include <iostream>
#include <string>
#include <vector>

#include "artifacts/artifact_files.h"
#include "artifacts/sign_options.h"
#include "artifacts/signing.h"

namespace fedkit::artifacts {
namespace {

int Fail(const std::string& what, const absl::Status& status) {
  std::cerr << "fedkit-sign: " << what << ": " << status.message() << "\n";
  return 1;
}

int Keygen(const SignOptions& o) {
  absl::StatusOr<KeyPair> pair = GenerateKeyPair();
  if (!pair.ok()) return Fail("keygen", pair.status());
  absl::StatusOr<std::string> priv = PrivateKeyToPem(pair->private_key);
  if (!priv.ok()) return Fail("keygen", priv.status());
  absl::StatusOr<std::string> pub = PublicKeyToPem(pair->public_key);
  if (!pub.ok()) return Fail("keygen", pub.status());
  const char* hint = o.force ? "" : " (pass --force to replace it)";
  absl::Status s = WriteFileBytes(o.out_private, *priv, 0600, o.force);
  if (!s.ok())
    return Fail("--out-private", absl::Status(s.code(), std::string(s.message()) + hint));
  s = WriteFileBytes(o.out_public, *pub, 0644, o.force);
  if (!s.ok()) return Fail("--out-public", absl::Status(s.code(), std::string(s.message()) + hint));
  std::cout << "key " << Fingerprint(pair->public_key) << ": private " << o.out_private
            << ", public " << o.out_public << "\n";
  return 0;
}

int Sign(const SignOptions& o) {
  absl::StatusOr<std::string> pem = ReadFileBytes(o.key);
  if (!pem.ok()) return Fail("--key", pem.status());
  absl::StatusOr<PrivateKey> key = PrivateKeyFromPem(*pem);
  if (!key.ok()) return Fail(o.key, key.status());
  absl::StatusOr<std::string> artifact = ReadFileBytes(o.artifact);
  if (!artifact.ok()) return Fail("--artifact", artifact.status());
  absl::StatusOr<SignatureFile> file = MakeSignatureFile(*artifact, *key);
  if (!file.ok()) return Fail("sign", file.status());
  absl::Status s = WriteFileBytes(o.out, FormatSignatureFile(*file), 0644, o.force);
  if (!s.ok()) {
    return Fail("--out", absl::Status(s.code(), std::string(s.message()) +
                                                    (o.force ? "" : " (pass --force)")));
  }
  std::cout << o.out << ": sha256 " << ToHex(file->sha256) << " signed by key "
            << file->key_fingerprint << "\n";
  return 0;
}

int Verify(const SignOptions& o) {
  absl::StatusOr<std::string> pem = ReadFileBytes(o.public_key);
  if (!pem.ok()) return Fail("--public-key", pem.status());
  absl::StatusOr<PublicKey> key = PublicKeyFromPem(*pem);
  if (!key.ok()) return Fail(o.public_key, key.status());
  absl::StatusOr<std::string> sig_text = ReadFileBytes(o.signature);
  if (!sig_text.ok()) return Fail("--signature", sig_text.status());
  absl::StatusOr<SignatureFile> file = ParseSignatureFile(*sig_text);
  if (!file.ok()) return Fail(o.signature, file.status());
  absl::StatusOr<std::string> artifact = ReadFileBytes(o.artifact);
  if (!artifact.ok()) return Fail("--artifact", artifact.status());
  absl::Status s = VerifySignatureFile(*artifact, *file, *key);
  if (!s.ok()) {
    // A hash mismatch is the artifact's fault; anything else is the signature's.
    return Fail(s.code() == absl::StatusCode::kDataLoss ? o.artifact : o.signature, s);
  }
  std::cout << o.artifact << ": OK, signed by key " << Fingerprint(*key) << "\n";
  return 0;
}

}  // namespace
}  // namespace fedkit::artifacts

int main(int argc, char** argv) {
  using fedkit::artifacts::SignOptions;
  fedkit::artifacts::SignParseResult parsed =
      fedkit::artifacts::ParseSignOptions(std::vector<std::string>(argv, argv + argc));
  if (parsed.exit_code >= 0) {
    (parsed.exit_code == 0 ? std::cout : std::cerr) << parsed.message << "\n";
    return parsed.exit_code;
  }
  switch (parsed.options.command) {
    case SignOptions::Command::kKeygen:
      return fedkit::artifacts::Keygen(parsed.options);
    case SignOptions::Command::kSign:
      return fedkit::artifacts::Sign(parsed.options);
    case SignOptions::Command::kVerify:
      return fedkit::artifacts::Verify(parsed.options);
    default:
      return 2;
  }
}
