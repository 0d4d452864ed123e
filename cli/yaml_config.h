// YAML configuration files for FedKit's command-line tools, through CLI11's config mechanism.
#ifndef FEDKIT_CLI_YAML_CONFIG_H_
#define FEDKIT_CLI_YAML_CONFIG_H_

#include <CLI/CLI.hpp>
#include <istream>
#include <string>
#include <vector>

namespace fedkit::cli {

// Reads a flat YAML mapping whose keys are long flag names without the dashes ("clients-per-round:
// 100"; underscores are accepted for dashes) and whose values are scalars or lists of scalars.
// Command-line flags override the file. Malformed YAML, nested mappings, or a key that is not a
// scalar throw CLI::ConversionError naming the key (or its line) or the YAML error, which CLI11
// reports like any bad flag; no other exception leaves from_config.
class YamlConfig : public CLI::Config {
 public:
  std::string to_config(const CLI::App* app, bool default_also, bool write_description,
                        std::string prefix) const override;
  std::vector<CLI::ConfigItem> from_config(std::istream& input) const override;
};

// Number validators whose messages read well: "--rounds: must be > 0, got 0".
CLI::Validator Positive();
CLI::Validator NonNegative();
// [0, 1): momenta and betas.
CLI::Validator BelowOne();
// [low, high].
CLI::Validator InRange(double low, double high);

// Installs YamlConfig and a "--config FILE" option on `app`; unknown keys in the file are errors.
void AddYamlConfigOption(CLI::App& app);

// Parses argv; on a parse error prints the message (naming the flag) and returns 2, on --help
// prints usage and returns 0; returns -1 when parsing succeeded and the program should go on.
int ParseCommandLine(CLI::App& app, int argc, char** argv);

}  // namespace fedkit::cli

#endif  // FEDKIT_CLI_YAML_CONFIG_H_
