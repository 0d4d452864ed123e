#include "artifacts/sign_options.h"

#include <CLI/CLI.hpp>

namespace fedkit::artifacts {

SignParseResult ParseSignOptions(const std::vector<std::string>& args) {
  SignParseResult result;
  SignOptions& o = result.options;
  CLI::App app("Sign and verify FedKit model artifacts (Ed25519)", "fedkit-sign");
  app.require_subcommand(1);
  CLI::App* keygen = app.add_subcommand("keygen", "Write a new Ed25519 key pair (PEM)");
  keygen->add_option("--out-private", o.out_private, "Private key file (PKCS#8, mode 0600)")
      ->required();
  keygen->add_option("--out-public", o.out_public, "Public key file (SubjectPublicKeyInfo)")
      ->required();
  keygen->add_flag("--force", o.force, "Replace existing files");
  CLI::App* sign = app.add_subcommand("sign", "Write ARTIFACT.sig");
  sign->add_option("--key", o.key, "Private key PEM")->required();
  sign->add_option("--artifact", o.artifact, "The model file to sign")->required();
  sign->add_option("--out", o.out, "Signature file (default: ARTIFACT.sig)");
  sign->add_flag("--force", o.force, "Replace an existing signature file");
  CLI::App* verify = app.add_subcommand("verify", "Check ARTIFACT against its .sig");
  verify->add_option("--public-key", o.public_key, "Trusted public key PEM")->required();
  verify->add_option("--artifact", o.artifact, "The model file to check")->required();
  verify->add_option("--signature", o.signature, "Signature file (default: ARTIFACT.sig)");

  std::vector<char*> argv;
  for (const std::string& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  try {
    app.parse(static_cast<int>(argv.size()), argv.data());
  } catch (const CLI::CallForHelp&) {
    result.exit_code = 0;
    result.message = app.help();
    return result;
  } catch (const CLI::ParseError& e) {
    result.exit_code = 2;
    result.message = std::string("fedkit-sign: ") + e.what();
    return result;
  }
  if (keygen->parsed()) o.command = SignOptions::Command::kKeygen;
  if (sign->parsed()) o.command = SignOptions::Command::kSign;
  if (verify->parsed()) o.command = SignOptions::Command::kVerify;
  if (o.out.empty() && !o.artifact.empty()) o.out = o.artifact + ".sig";
  if (o.signature.empty() && !o.artifact.empty()) o.signature = o.artifact + ".sig";
  return result;
}

}  // namespace fedkit::artifacts
