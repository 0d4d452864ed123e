#include "simulation/plot_runner.h"

#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <system_error>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

extern char** environ;

namespace fedkit::simulation {
namespace {

namespace fs = std::filesystem;

bool IsExecutableFile(const fs::path& path) {
  struct stat st {};
  return stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode) && access(path.c_str(), X_OK) == 0;
}

}  // namespace

absl::Status CheckPlotOutput(const std::string& path) {
  const std::string extension = absl::AsciiStrToLower(fs::path(path).extension().string());
  if (extension != ".png" && extension != ".svg") {
    return absl::InvalidArgumentError(absl::StrCat(
        path, ": the extension picks the format: .png or .svg, not '", extension, "'"));
  }
  std::error_code error;
  const fs::path parent = fs::absolute(path, error).parent_path();
  if (error || !fs::is_directory(parent, error)) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": directory ", parent.string(), " does not exist"));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> FindFedkitPlot(const std::string& executable_dir,
                                           const std::string& path_env) {
  if (!executable_dir.empty()) {
    const fs::path beside = fs::path(executable_dir) / "fedkit-plot";
    if (IsExecutableFile(beside)) return beside.string();
  }
  for (absl::string_view dir : absl::StrSplit(path_env, ':')) {
    const fs::path candidate = fs::path(dir.empty() ? "." : std::string(dir)) / "fedkit-plot";
    if (IsExecutableFile(candidate)) return candidate.string();
  }
  return absl::NotFoundError(absl::StrCat(
      "fedkit-plot (scripts/plot.py, built into build/bin and installed beside fedkit-sim) is "
      "neither in ",
      executable_dir.empty() ? "fedkit-sim's directory" : executable_dir, " nor on PATH"));
}

std::string OwnExecutableDirectory() {
  std::error_code error;
  const fs::path self = fs::read_symlink("/proc/self/exe", error);
  return error ? std::string() : self.parent_path().string();
}

std::vector<std::string> PlotCommand(const std::string& fedkit_plot,
                                     const std::string& metrics_path, const std::string& output,
                                     const std::string& title) {
  return {fedkit_plot, metrics_path,    "-o",      output, "--x", "round",
          "--y",       "accuracy,loss", "--title", title};
}

absl::Status RunProgram(const std::vector<std::string>& argv) {
  if (argv.empty()) return absl::InvalidArgumentError("RunProgram: no program");
  std::vector<char*> args;
  for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  pid_t pid = 0;
  // posix_spawn, not fork: the caller may hold LibTorch's and the worker pool's threads.
  if (const int error = posix_spawn(&pid, argv[0].c_str(), nullptr, nullptr, args.data(), environ);
      error != 0) {
    // ENOENT for a file that is there: the interpreter its #! line names is missing.
    const bool no_interpreter = error == ENOENT && access(argv[0].c_str(), F_OK) == 0;
    return absl::InternalError(
        absl::StrCat("cannot run ", argv[0], ": ", std::strerror(error),
                     no_interpreter ? " (the interpreter its #! line names)" : ""));
  }
  int status = 0;
  while (waitpid(pid, &status, 0) < 0) {
    if (errno != EINTR) {
      return absl::InternalError(absl::StrCat("waiting for ", argv[0], ": ", std::strerror(errno)));
    }
  }
  if (WIFEXITED(status) && WEXITSTATUS(status) == 0) return absl::OkStatus();
  if (WIFEXITED(status)) {
    return absl::InternalError(absl::StrCat(argv[0], " exited with status ", WEXITSTATUS(status)));
  }
  return absl::InternalError(
      absl::StrCat(argv[0], " was killed by signal ", WIFSIGNALED(status) ? WTERMSIG(status) : -1));
}

}  // namespace fedkit::simulation
