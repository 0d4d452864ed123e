// Starting, waiting for and killing child processes in end-to-end tests.
#ifndef FEDKIT_TESTS_SUBPROCESS_H_
#define FEDKIT_TESTS_SUBPROCESS_H_

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <fstream>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

extern char** environ;

namespace fedkit::testing_util {

// A child process with stdout and stderr sent to files. Killed (SIGKILL) on destruction if still
// running, so a failing test leaves nothing behind.
class Subprocess {
 public:
  Subprocess() = default;
  Subprocess(const Subprocess&) = delete;
  Subprocess& operator=(const Subprocess&) = delete;
  Subprocess(Subprocess&& other) noexcept { *this = std::move(other); }
  Subprocess& operator=(Subprocess&& other) noexcept {
    std::swap(pid_, other.pid_);
    std::swap(exit_code_, other.exit_code_);
    std::swap(output_path_, other.output_path_);
    return *this;
  }
  ~Subprocess() {
    if (pid_ > 0 && !exit_code_) {
      kill(pid_, SIGKILL);
      Wait();
    }
  }

  // Starts argv[0] (a path) with the given arguments; both output streams go to `output_path`.
  // Returns false if the process could not be started.
  bool Start(const std::vector<std::string>& argv, const std::string& output_path) {
    output_path_ = output_path;
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO, output_path.c_str(),
                                     O_WRONLY | O_CREAT | O_TRUNC, 0644);
    posix_spawn_file_actions_adddup2(&actions, STDOUT_FILENO, STDERR_FILENO);
    posix_spawn_file_actions_addopen(&actions, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
    std::vector<char*> args;
    for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    const int rc = posix_spawn(&pid_, args[0], &actions, nullptr, args.data(), environ);
    posix_spawn_file_actions_destroy(&actions);
    return rc == 0;
  }

  // Blocks until the child exits; its exit status, or 128 + signal if a signal ended it.
  int Wait() {
    if (exit_code_) return *exit_code_;
    int status = 0;
    while (waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
    }
    exit_code_ = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    return *exit_code_;
  }

  // Waits up to `timeout` (zero: just looks); nullopt if still running.
  std::optional<int> WaitFor(std::chrono::milliseconds timeout) {
    const auto end = std::chrono::steady_clock::now() + timeout;
    while (true) {
      if (exit_code_) return exit_code_;
      int status = 0;
      const pid_t done = waitpid(pid_, &status, WNOHANG);
      if (done == pid_) {
        exit_code_ = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
        return exit_code_;
      }
      if (std::chrono::steady_clock::now() >= end) return std::nullopt;
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  }

  void Signal(int sig) {
    if (pid_ > 0 && !exit_code_) kill(pid_, sig);
  }

  std::string Output() const {
    std::ifstream in(output_path_);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
  }

  pid_t pid() const { return pid_; }

 private:
  pid_t pid_ = -1;
  std::optional<int> exit_code_;
  std::string output_path_;
};

// How many times longer than usual a test may wait for its processes: the environment variable
// FEDKIT_TEST_TIME_SCALE, a number >= 1 (1 when unset or not a number >= 1). scripts/sanitize.sh
// sets it, since ASan and TSan make every process several times slower. Deadlines in tests only
// bound a hung test (or are part of the scenario, like a round timeout the devices must beat), so
// stretching them never turns a failure into a pass.
inline double TestTimeScale() {
  const char* value = std::getenv("FEDKIT_TEST_TIME_SCALE");
  if (value == nullptr) return 1.0;
  char* end = nullptr;
  const double scale = std::strtod(value, &end);
  return (end != value && *end == '\0' && scale >= 1.0) ? scale : 1.0;
}

// `duration` times TestTimeScale().
inline std::chrono::milliseconds Scaled(std::chrono::milliseconds duration) {
  return std::chrono::milliseconds(
      static_cast<std::chrono::milliseconds::rep>(duration.count() * TestTimeScale()));
}

// `seconds` times TestTimeScale(), as a whole number for a command-line flag.
inline std::string ScaledSeconds(int seconds) {
  return std::to_string(static_cast<long>(seconds * TestTimeScale() + 0.5));
}

// Polls `predicate` every 20 ms until it holds or Scaled(timeout) passes; returns whether it held.
// The timeout only bounds a hung test; it is never the assertion itself.
template <typename Predicate>
bool PollUntil(Predicate predicate, std::chrono::milliseconds timeout) {
  const auto end = std::chrono::steady_clock::now() + Scaled(timeout);
  while (std::chrono::steady_clock::now() < end) {
    if (predicate()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return predicate();
}

}  // namespace fedkit::testing_util

#endif  // FEDKIT_TESTS_SUBPROCESS_H_
