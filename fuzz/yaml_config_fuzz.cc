// Fuzz target: YAML config files (cli/yaml_config.h) as the binaries read them: a CLI11 app with
// --config and a few flags of each kind (integer, number with a validator, string, list, flag)
// parses "--config FILE" where FILE holds the fuzzer's bytes. A CLI::ParseError is the expected
// refusal (the binary prints it and exits 2); any other exception escapes and is a finding, as
// it would terminate the binary.
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <string>
#include <vector>

#include "cli/yaml_config.h"

namespace {

const std::string& Path() {
  static const std::string* path = [] {
    const char* tmp = std::getenv("FEDKIT_FUZZ_TMPDIR");
    return new std::string(std::string(tmp != nullptr ? tmp : "/dev/shm") + "/fedkit-fuzz-yaml-" +
                           std::to_string(::getpid()) + ".yaml");
  }();
  return *path;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::ofstream(Path(), std::ios::binary | std::ios::trunc)
      .write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
  CLI::App app("fuzz");
  fedkit::cli::AddYamlConfigOption(app);
  int rounds = 1;
  double lr = 0.1;
  double momentum = 0;
  std::string model = "mlp";
  std::vector<std::string> ids;
  bool insecure = false;
  app.add_option("--rounds", rounds)->check(fedkit::cli::Positive());
  app.add_option("--client-lr", lr)->check(fedkit::cli::NonNegative());
  app.add_option("--server-momentum", momentum)->check(fedkit::cli::BelowOne());
  app.add_option("--model", model);
  app.add_option("--client-ids", ids);
  app.add_flag("--insecure", insecure);
  const std::string config = Path();
  std::vector<std::string> args = {"fuzz", "--config", config};
  std::vector<char*> argv;
  for (std::string& arg : args) argv.push_back(arg.data());
  try {
    app.parse(static_cast<int>(argv.size()), argv.data());
  } catch (const CLI::ParseError&) {
    // Refused with a message: what a bad config should get.
  }
  return 0;
}
