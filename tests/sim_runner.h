// Running fedkit-sim as a child process from tests.
#ifndef FEDKIT_TESTS_SIM_RUNNER_H_
#define FEDKIT_TESTS_SIM_RUNNER_H_

#include <sys/wait.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace fedkit {

struct Result {
  int exit_code = -1;
  std::string output;  // stdout and stderr
};

// Runs a shell command line; its exit code and everything it printed.
inline Result RunCommand(const std::string& command_line) {
  const std::string command = command_line + " 2>&1";
  Result result;
  FILE* pipe = popen(command.c_str(), "r");
  if (pipe == nullptr) return result;
  char buffer[4096];
  size_t n;
  while ((n = fread(buffer, 1, sizeof(buffer), pipe)) > 0) result.output.append(buffer, n);
  const int status = pclose(pipe);
  result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return result;
}

inline Result RunSim(const std::string& args) {
  return RunCommand(std::string(FEDKIT_SIM_BINARY) + " " + args);
}

inline std::vector<nlohmann::json> ReadJsonLines(const std::string& path) {
  std::vector<nlohmann::json> lines;
  std::ifstream in(path);
  for (std::string line; std::getline(in, line);) lines.push_back(nlohmann::json::parse(line));
  return lines;
}

inline std::string TempPath(const std::string& name) {
  return (std::filesystem::path(testing::TempDir()) / ("fedkit_sim_cli_" + name)).string();
}

}  // namespace fedkit

#endif  // FEDKIT_TESTS_SIM_RUNNER_H_
