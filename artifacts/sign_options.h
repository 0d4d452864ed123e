// Command line of fedkit-sign, parsed into an option struct (the library never names flags).
#ifndef FEDKIT_ARTIFACTS_SIGN_OPTIONS_H_
#define FEDKIT_ARTIFACTS_SIGN_OPTIONS_H_

#include <string>
#include <vector>

namespace fedkit::artifacts {

struct SignOptions {
  enum class Command { kNone, kKeygen, kSign, kVerify };
  Command command = Command::kNone;
  // keygen
  std::string out_private;
  std::string out_public;
  bool force = false;
  // sign
  std::string key;
  std::string out;  // default: ARTIFACT.sig
  // verify
  std::string public_key;
  std::string signature;  // default: ARTIFACT.sig
  // sign, verify
  std::string artifact;
};

struct SignParseResult {
  SignOptions options;
  // -1: go on with `options`; otherwise exit with this code after printing `message`
  // (0 for --help, 2 for a usage error naming the flag).
  int exit_code = -1;
  std::string message;
};

// args[0] is the program name.
SignParseResult ParseSignOptions(const std::vector<std::string>& args);

}  // namespace fedkit::artifacts

#endif  // FEDKIT_ARTIFACTS_SIGN_OPTIONS_H_
