#include "cli/yaml_config.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <functional>
#include <iostream>
#include <sstream>
#include <string>

namespace fedkit::cli {

std::string YamlConfig::to_config(const CLI::App* app, bool default_also, bool write_description,
                                  std::string prefix) const {
  // One YAML emitter per entry (it quotes what needs quoting), so that the unset options can be
  // listed between them as comment lines.
  std::string text;
  for (const CLI::Option* opt : app->get_options()) {
    if (opt->get_lnames().empty() || !opt->get_configurable()) continue;
    const std::string name = prefix + opt->get_lnames().front();
    // What was given (command line or file) as given, else the default as captured: never
    // converted back through the option's validators, which may reject a sentinel default.
    const std::vector<std::string>& given = opt->results();
    std::string value = given.empty() ? std::string() : given.front();
    if (given.empty() && default_also) value = opt->get_default_str();
    if (given.size() <= 1 && value.empty()) {
      // Unset with no default (a file path, an optional seed): listed, commented out.
      if (default_also) text += "# " + name + ": (unset)\n";
      continue;
    }
    YAML::Emitter entry;
    entry << YAML::BeginMap << YAML::Key << name << YAML::Value;
    if (given.size() > 1) {
      entry << YAML::Flow << given;
    } else {
      entry << value;
    }
    entry << YAML::EndMap;
    text += std::string(entry.c_str()) + "\n";
  }
  return text;
}

std::vector<CLI::ConfigItem> YamlConfig::from_config(std::istream& input) const {
  YAML::Node root;
  try {
    root = YAML::Load(input);
  } catch (const YAML::Exception& e) {
    throw CLI::ConversionError(std::string("config file is not valid YAML: ") + e.what());
  }
  std::vector<CLI::ConfigItem> items;
  if (root.IsNull()) return items;
  if (!root.IsMap())
    throw CLI::ConversionError("config file must be a YAML mapping of flag: value");
  for (const auto& entry : root) {
    // A key that is a list or a mapping ("? [a, b]: 1", "{[a]: 1}") has no string value: as<>
    // would throw yaml-cpp's TypedBadConversion, which CLI11 does not catch (found by
    // fuzz/yaml_config_fuzz.cc: it terminated the binary).
    if (!entry.first.IsScalar()) {
      throw CLI::ConversionError("config file key at line " +
                                 std::to_string(entry.first.Mark().line + 1) +
                                 " must be a flag name, not a list or a mapping");
    }
    std::string key = entry.first.as<std::string>();
    std::replace(key.begin(), key.end(), '_', '-');
    CLI::ConfigItem item;
    item.name = key;
    const YAML::Node& value = entry.second;
    if (value.IsScalar()) {
      item.inputs.push_back(value.as<std::string>());
    } else if (value.IsSequence()) {
      for (const auto& element : value) {
        if (!element.IsScalar()) {
          throw CLI::ConversionError("config key '" + key + "': list elements must be scalars");
        }
        item.inputs.push_back(element.as<std::string>());
      }
    } else {
      throw CLI::ConversionError("config key '" + key + "' must be a scalar or a list of scalars");
    }
    items.push_back(std::move(item));
  }
  return items;
}

namespace {

// A validator accepting numbers for which `ok` holds; `rule` is what the message says they must be.
CLI::Validator NumberValidator(std::string rule, std::function<bool(double)> ok) {
  return CLI::Validator(
      [rule, ok](std::string& text) -> std::string {
        double value = 0;
        std::istringstream in(text);
        if (!(in >> value) || !in.eof()) return "must be a number, got '" + text + "'";
        if (!ok(value)) return "must be " + rule + ", got " + text;
        return "";
      },
      rule);
}

}  // namespace

CLI::Validator Positive() {
  return NumberValidator("> 0", [](double v) { return v > 0; });
}

CLI::Validator NonNegative() {
  return NumberValidator(">= 0", [](double v) { return v >= 0; });
}

CLI::Validator BelowOne() {
  return NumberValidator("in [0, 1)", [](double v) { return v >= 0 && v < 1; });
}

CLI::Validator InRange(double low, double high) {
  std::ostringstream rule;
  rule << "in [" << low << ", " << high << "]";
  return NumberValidator(rule.str(), [low, high](double v) { return v >= low && v <= high; });
}

void AddYamlConfigOption(CLI::App& app) {
  app.config_formatter(std::make_shared<YamlConfig>());
  app.set_config("--config", "", "YAML file of flag: value pairs (flags on the command line win)");
  app.allow_config_extras(CLI::config_extras_mode::error);
}

int ParseCommandLine(CLI::App& app, int argc, char** argv) {
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    std::cout << app.help();
    return 0;
  } catch (const CLI::ParseError& e) {
    std::cerr << app.get_name() << ": " << e.what() << "\n"
              << "Run with --help for the list of flags.\n";
    return 2;
  }
  return -1;
}

}  // namespace fedkit::cli
