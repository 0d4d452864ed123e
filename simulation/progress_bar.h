// fedkit-sim's progress bar: rounds done of the total, elapsed time, ETA and the last evaluated
// accuracy, redrawn in place on one terminal line (stderr).
#ifndef FEDKIT_SIMULATION_PROGRESS_BAR_H_
#define FEDKIT_SIMULATION_PROGRESS_BAR_H_

#include <optional>
#include <ostream>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace fedkit::simulation {

// --progress: auto draws the bar iff stderr is a terminal.
enum class ProgressMode { kAuto, kOn, kOff };

// "auto", "on" or "off"; INVALID_ARGUMENT naming the value otherwise.
absl::StatusOr<ProgressMode> ParseProgressMode(absl::string_view text);

// Whether to draw: kOn always, kOff never, kAuto iff `stderr_is_terminal`.
bool ProgressEnabled(ProgressMode mode, bool stderr_is_terminal);

struct ProgressState {
  int rounds_done = 0;
  int rounds_total = 0;
  double elapsed_seconds = 0.0;  // wall time since the first round started
  // The last evaluated round and its accuracy; unset before the first evaluation.
  std::optional<double> last_accuracy;
  int last_accuracy_round = 0;
};

// "1:02" below an hour, "1:02:05" from one hour; "--:--" for a negative or non-finite value.
std::string FormatDuration(double seconds);

// The bar's text for a terminal `width` columns wide: at most width - 1 characters (the last
// column is left empty, so no terminal wraps the line), no control characters. The richest form
// that fits of
//   round 37/200 [#####---------------]  18%  0:42 elapsed  ETA 3:05  accuracy 0.8123 (round 30)
// dropping, as the width shrinks, the bar, the accuracy's round, the elapsed time, the accuracy,
// the ETA and the percentage, in that order (then cutting the rest short); "ETA --:--" before the
// first round ends, no ETA once all rounds are done. A width below 2 counts as 80. Pure: the same
// arguments give the same text.
std::string FormatProgress(const ProgressState& state, int width);

// Columns of the terminal on file descriptor `fd` (TIOCGWINSZ), or 80 when it is not a terminal
// or does not say.
int TerminalWidth(int fd);

// Draws FormatProgress on `out`, in place: "\r", the text, then "\033[K" (erase the rest of the
// line). Clear() before anything else is printed to the same terminal, then Update() again; the
// caller prints the other line in between (fedkit-sim: its per-round lines on stdout). `out` is
// borrowed and must outlive the bar; every call flushes it. Not thread-safe: the thread that runs
// the rounds calls it.
class ProgressBar {
 public:
  // `width_fd`: the descriptor whose terminal width (TerminalWidth) each Update reads, so a
  // resized window is followed; -1 to use `fixed_width` instead.
  ProgressBar(std::ostream& out, int width_fd, int fixed_width = 80)
      : out_(out), width_fd_(width_fd), fixed_width_(fixed_width) {}

  // Redraws the line with `state`.
  void Update(const ProgressState& state);
  // Erases the line if the bar is drawn ("\r\033[K"); writes nothing otherwise.
  void Clear();
  // Draws `state` a last time and ends the line ("\n"); the bar is no longer drawn afterwards.
  void Finish(const ProgressState& state);

 private:
  int Width() const;

  std::ostream& out_;
  int width_fd_;
  int fixed_width_;
  bool drawn_ = false;
};

}  // namespace fedkit::simulation

#endif  // FEDKIT_SIMULATION_PROGRESS_BAR_H_
