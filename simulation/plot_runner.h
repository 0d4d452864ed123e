// fedkit-sim --plot: checks the picture's path, finds the fedkit-plot script (scripts/plot.py,
// installed beside fedkit-sim) and runs it on the run's metrics file.
#ifndef FEDKIT_SIMULATION_PLOT_RUNNER_H_
#define FEDKIT_SIMULATION_PLOT_RUNNER_H_

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace fedkit::simulation {

// OK iff `path` ends in .png or .svg (any case) and its directory exists; otherwise
// INVALID_ARGUMENT whose message names the path and what is wrong. Reads only the file system's
// directory entry.
absl::Status CheckPlotOutput(const std::string& path);

// The fedkit-plot to run: `executable_dir`/fedkit-plot when that is an executable file, else the
// first executable fedkit-plot in `path_env` (a PATH value, directories separated by ':'; an empty
// entry is the current directory, as for the shell). NOT_FOUND naming both places otherwise.
absl::StatusOr<std::string> FindFedkitPlot(const std::string& executable_dir,
                                           const std::string& path_env);

// The directory of this process's executable (/proc/self/exe), or "" when it cannot be read.
std::string OwnExecutableDirectory();

// The command line that plots a run: accuracy and loss against round, side by side, from
// `metrics_path` into `output` (whose extension picks PNG or SVG), titled `title`.
std::vector<std::string> PlotCommand(const std::string& fedkit_plot,
                                     const std::string& metrics_path, const std::string& output,
                                     const std::string& title);

// Runs argv[0] with the arguments argv[1..] (no shell; it inherits stdin, stdout, stderr and the
// environment) and waits for it. OK iff it exits with status 0; otherwise INTERNAL whose message
// names argv[0] and the exit status or signal, or that it could not be started (errno's text).
// Blocks the calling thread until the child exits; any thread may call it.
absl::Status RunProgram(const std::vector<std::string>& argv);

}  // namespace fedkit::simulation

#endif  // FEDKIT_SIMULATION_PLOT_RUNNER_H_
