#include "simulation/progress_bar.h"

#include <sys/ioctl.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"

namespace fedkit::simulation {

absl::StatusOr<ProgressMode> ParseProgressMode(absl::string_view text) {
  if (text == "auto") return ProgressMode::kAuto;
  if (text == "on") return ProgressMode::kOn;
  if (text == "off") return ProgressMode::kOff;
  return absl::InvalidArgumentError(
      absl::StrCat("'", text, "': expected auto (a bar when stderr is a terminal), on or off"));
}

bool ProgressEnabled(ProgressMode mode, bool stderr_is_terminal) {
  switch (mode) {
    case ProgressMode::kOn:
      return true;
    case ProgressMode::kOff:
      return false;
    case ProgressMode::kAuto:
      break;
  }
  return stderr_is_terminal;
}

std::string FormatDuration(double seconds) {
  if (!std::isfinite(seconds) || seconds < 0) return "--:--";
  const int64_t total = static_cast<int64_t>(std::llround(seconds));
  const int64_t hours = total / 3600, minutes = total / 60 % 60, secs = total % 60;
  if (hours > 0) return absl::StrFormat("%d:%02d:%02d", hours, minutes, secs);
  return absl::StrFormat("%d:%02d", minutes, secs);
}

std::string FormatProgress(const ProgressState& state, int width) {
  if (width < 2) width = 80;
  const size_t room = static_cast<size_t>(width - 1);
  const int total = std::max(state.rounds_total, 0);
  const int done = std::clamp(state.rounds_done, 0, std::max(total, 0));
  const double fraction = total > 0 ? static_cast<double>(done) / total : 0.0;

  const std::string head = absl::StrFormat("round %d/%d", done, total);
  const std::string percent = absl::StrFormat("%3d%%", static_cast<int>(fraction * 100));
  const std::string elapsed = FormatDuration(state.elapsed_seconds) + " elapsed";
  std::string eta;
  if (done < total) {
    eta = "ETA " + (done > 0 ? FormatDuration(state.elapsed_seconds / done * (total - done))
                             : std::string("--:--"));
  }
  std::string accuracy, accuracy_round;
  if (state.last_accuracy.has_value()) {
    accuracy = absl::StrFormat("accuracy %.4f", *state.last_accuracy);
    accuracy_round = absl::StrFormat(" (round %d)", state.last_accuracy_round);
  }

  // head [bar]  pct  rest...; the bar's cells come from the room left by the rest.
  auto line = [&](int cells, std::vector<std::string> rest) {
    std::string text = head;
    if (cells > 0) {
      const int filled = static_cast<int>(cells * fraction);
      absl::StrAppend(&text, " [", std::string(filled, '#'), std::string(cells - filled, '-'), "]");
    }
    rest.erase(std::remove(rest.begin(), rest.end(), std::string()), rest.end());
    if (!rest.empty()) absl::StrAppend(&text, "  ", absl::StrJoin(rest, "  "));
    return text;
  };
  const std::vector<std::vector<std::string>> candidates = {
      {percent, elapsed, eta, accuracy + accuracy_round},
      {percent, elapsed, eta, accuracy},
      {percent, eta, accuracy},
      {percent, eta},
      {percent},
      {},
  };
  const std::string richest = line(0, candidates.front());
  constexpr size_t kMinCells = 10, kMaxCells = 30;
  if (richest.size() + 3 + kMinCells <= room) {
    return line(static_cast<int>(std::min(kMaxCells, room - richest.size() - 3)),
                candidates.front());
  }
  for (const std::vector<std::string>& parts : candidates) {
    std::string text = line(0, parts);
    if (text.size() <= room) return text;
  }
  return head.substr(0, room);
}

int TerminalWidth(int fd) {
  struct winsize size {};
  if (fd >= 0 && ioctl(fd, TIOCGWINSZ, &size) == 0 && size.ws_col > 0) return size.ws_col;
  return 80;
}

int ProgressBar::Width() const { return width_fd_ >= 0 ? TerminalWidth(width_fd_) : fixed_width_; }

void ProgressBar::Update(const ProgressState& state) {
  out_ << '\r' << FormatProgress(state, Width()) << "\033[K" << std::flush;
  drawn_ = true;
}

void ProgressBar::Clear() {
  if (!drawn_) return;
  out_ << "\r\033[K" << std::flush;
  drawn_ = false;
}

void ProgressBar::Finish(const ProgressState& state) {
  Update(state);
  out_ << '\n' << std::flush;
  drawn_ = false;
}

}  // namespace fedkit::simulation
