// End-to-end tests of fedkit-sim's --plot (through the fedkit-plot beside it in build/bin, or a
// stand-in) and of its progress bar, on a pseudo-terminal and without one.
#include <pty.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cctype>
#include <cerrno>
#include <filesystem>
#include <fstream>
#include <regex>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/sim_runner.h"

namespace fedkit {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;
using ::testing::Not;

const std::string kTiny =
    "--dataset synthetic:1,1 --model logreg --clients 50 --clients-per-round 5 --rounds 3 "
    "--local-epochs 1 --batch-size 10 --client-lr 0.05 --eval-clients 20 --seed 4 --threads 1";

fs::path FreshDir(const std::string& name) {
  const fs::path dir = fs::path(::testing::TempDir()) / ("fedkit_sim_plot_" + name);
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir;
}

bool IsPng(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::string head(8, '\0');
  in.read(head.data(), 8);
  return in && head == std::string("\x89PNG\r\n\x1a\n", 8);
}

std::vector<std::string> FilesIn(const fs::path& dir) {
  std::vector<std::string> names;
  for (const auto& entry : fs::directory_iterator(dir)) {
    names.push_back(entry.path().filename().string());
  }
  return names;
}

// fedkit-sim under another name in `dir`, without fedkit-plot beside it (a hard link: /proc/self/
// exe then names `dir`; a copy where linking is not possible).
std::string SimWithoutFedkitPlot(const fs::path& dir) {
  const fs::path sim = dir / "fedkit-sim";
  std::error_code error;
  fs::create_hard_link(FEDKIT_SIM_BINARY, sim, error);
  if (error) fs::copy_file(FEDKIT_SIM_BINARY, sim);
  return sim.string();
}

// An executable fedkit-plot stand-in in `dir` running `body` (sh).
void WriteFakeFedkitPlot(const fs::path& dir, const std::string& body) {
  std::ofstream(dir / "fedkit-plot") << "#!/bin/sh\n" << body << "\n";
  fs::permissions(dir / "fedkit-plot", fs::perms::owner_all);
}

TEST(SimPlotTest, PlotWritesThePictureOfTheRunAndRemovesItsTemporaryMetrics) {
  const fs::path dir = FreshDir("png");
  const fs::path tmp = FreshDir("png_tmpdir");
  const fs::path png = dir / "run.png";
  // TMPDIR: where fedkit-sim puts the metrics it plots without --metrics-out.
  Result r = RunCommand("TMPDIR=" + tmp.string() + " " + FEDKIT_SIM_BINARY + " " + kTiny +
                        " --plot " + png.string());
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_TRUE(IsPng(png));
  EXPECT_THAT(r.output, HasSubstr("wrote plot to " + png.string()));
  EXPECT_THAT(FilesIn(tmp), ::testing::IsEmpty());

  // With --metrics-out, that file is plotted and kept; SVG by its extension.
  const fs::path svg = dir / "run.svg";
  const fs::path metrics = dir / "run.jsonl";
  r = RunSim(kTiny + " --plot " + svg.string() + " --metrics-out " + metrics.string());
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(ReadJsonLines(metrics.string()).size(), 3u);
  std::ifstream in(svg);
  const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_THAT(text, HasSubstr("<svg"));
}

TEST(SimPlotTest, BadPlotPathsAreRefusedBeforeTheRun) {
  const fs::path dir = FreshDir("bad");
  for (const std::string& path :
       {(dir / "run.jpg").string(), (dir / "run").string(), (dir / "no/such/run.png").string()}) {
    Result r = RunSim(kTiny + " --plot " + path);
    EXPECT_EQ(r.exit_code, 2) << path << "\n" << r.output;
    EXPECT_THAT(r.output, HasSubstr("--plot: " + path));
    EXPECT_THAT(r.output, Not(HasSubstr("accuracy"))) << "a round ran";
  }
  Result r = RunSim(kTiny + " --progress sometimes");
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_THAT(r.output, HasSubstr("--progress: 'sometimes'"));
}

TEST(SimPlotTest, FedkitPlotFromPathAndItsFailuresNameThePlotFlag) {
  const fs::path bin = FreshDir("bin");
  const fs::path path_dir = FreshDir("path");
  const fs::path out = FreshDir("out");
  const std::string sim = SimWithoutFedkitPlot(bin);
  const std::string png = (out / "run.png").string();

  // Neither beside fedkit-sim nor on PATH: refused before the run.
  Result r = RunCommand("PATH=" + path_dir.string() + " " + sim + " " + kTiny + " --plot " + png);
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_THAT(r.output, HasSubstr("--plot: fedkit-plot"));
  EXPECT_THAT(r.output, HasSubstr("nor on PATH"));
  EXPECT_THAT(r.output, Not(HasSubstr("accuracy")));

  // On PATH, failing its --check (python3 or matplotlib missing): refused before the run.
  WriteFakeFedkitPlot(path_dir, "exit 1");
  r = RunCommand("PATH=" + path_dir.string() + " " + sim + " " + kTiny + " --plot " + png);
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_THAT(r.output, HasSubstr("--plot: " + (path_dir / "fedkit-plot").string() +
                                  " exited with status 1"));
  EXPECT_THAT(r.output, HasSubstr("python3-matplotlib"));
  EXPECT_THAT(r.output, Not(HasSubstr("accuracy")));

  // Passing the check, failing the plot: the run is done, exit 1, and the metrics are kept.
  const fs::path tmp = FreshDir("path_tmpdir");
  WriteFakeFedkitPlot(path_dir, "[ \"$1\" = --check ] && exit 0\nexit 3");
  r = RunCommand("TMPDIR=" + tmp.string() + " PATH=" + path_dir.string() + " " + sim + " " + kTiny +
                 " --plot " + png);
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_THAT(r.output, HasSubstr("round    3  accuracy"));
  EXPECT_THAT(r.output,
              HasSubstr("--plot: " + (path_dir / "fedkit-plot").string() +
                        " exited with status 3; the run's metrics are in " + tmp.string()));
  ASSERT_EQ(FilesIn(tmp).size(), 1u);
  EXPECT_EQ(ReadJsonLines((tmp / FilesIn(tmp)[0]).string()).size(), 3u);

  // The real one on PATH: the picture.
  fs::remove(path_dir / "fedkit-plot");
  fs::copy_file(fs::path(FEDKIT_SIM_BINARY).parent_path() / "fedkit-plot",
                path_dir / "fedkit-plot");
  r = RunCommand("PATH=" + path_dir.string() + " " + sim + " " + kTiny + " --plot " + png);
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_TRUE(IsPng(png));
}

// Runs `command` (through /bin/sh) on a new pseudo-terminal 100 columns wide that is its stdin,
// stdout and stderr; everything written to the terminal, and the exit code.
Result RunOnTerminal(const std::string& command) {
  Result result;
  struct winsize size {};
  size.ws_row = 24;
  size.ws_col = 100;
  int terminal = -1;
  const pid_t pid = forkpty(&terminal, nullptr, nullptr, &size);
  if (pid < 0) return result;
  if (pid == 0) {
    execl("/bin/sh", "sh", "-c", command.c_str(), static_cast<char*>(nullptr));
    _exit(127);
  }
  char buffer[4096];
  for (;;) {
    const ssize_t n = read(terminal, buffer, sizeof(buffer));
    if (n > 0) {
      result.output.append(buffer, n);
    } else if (n < 0 && errno == EINTR) {
      continue;
    } else {
      break;  // EIO: every process holding the terminal has exited
    }
  }
  close(terminal);
  int status = 0;
  waitpid(pid, &status, 0);
  result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return result;
}

// The screen's lines after `bytes`, as a terminal shows them: "\r" goes back to the start of the
// line, "\n" to the next line, "ESC [ K" erases from the cursor to the end of the line; other
// escape sequences are dropped.
std::vector<std::string> RenderTerminal(const std::string& bytes) {
  std::vector<std::string> lines(1);
  size_t column = 0;
  for (size_t i = 0; i < bytes.size(); ++i) {
    const char c = bytes[i];
    std::string& line = lines.back();
    if (c == '\r') {
      column = 0;
    } else if (c == '\n') {
      lines.emplace_back();
      column = 0;
    } else if (c == '\033' && i + 1 < bytes.size() && bytes[i + 1] == '[') {
      size_t end = i + 2;
      while (end < bytes.size() && !std::isalpha(static_cast<unsigned char>(bytes[end]))) ++end;
      if (end < bytes.size() && bytes[end] == 'K' && column < line.size()) line.resize(column);
      i = end;
    } else {
      if (column < line.size()) {
        line[column] = c;
      } else {
        line.append(column - line.size(), ' ');
        line.push_back(c);
      }
      ++column;
    }
  }
  return lines;
}

TEST(SimProgressTest, RenderTerminalFollowsCarriageReturnsAndErases) {
  EXPECT_THAT(RenderTerminal("abcdef\rXY\n\rbar 1\rbar 22\r\033[Kline\r\nend"),
              ::testing::ElementsAre("XYcdef", "line", "end"));
}

// On a terminal: the bar is drawn, redrawn in place, erased before each round line (which shows
// whole, alone on its line), and finished on a line of its own.
TEST(SimProgressTest, OnATerminalTheBarIsDrawnInPlaceAndRoundLinesStayClean) {
  Result r = RunOnTerminal(std::string(FEDKIT_SIM_BINARY) + " " + kTiny);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_THAT(r.output, HasSubstr("\rround 0/3 ["));
  EXPECT_THAT(r.output, HasSubstr("ETA"));
  EXPECT_THAT(r.output, HasSubstr("\033[K"));
  const std::vector<std::string> screen = RenderTerminal(r.output);
  const std::regex round_line(R"(round +(\d)  accuracy \d\.\d{4}  loss .*)");
  std::vector<int> rounds;
  size_t last_round_line = 0;
  for (size_t i = 0; i < screen.size(); ++i) {
    std::smatch m;
    if (std::regex_search(screen[i], m, round_line)) {
      EXPECT_TRUE(std::regex_match(screen[i], round_line)) << "not alone: '" << screen[i] << "'";
      rounds.push_back(std::stoi(m[1]));
      last_round_line = i;
    }
  }
  EXPECT_EQ(rounds, (std::vector<int>{1, 2, 3}));
  // The finished bar, after the last round line, and the line ended after it.
  ASSERT_GE(screen.size(), last_round_line + 3) << r.output;
  EXPECT_THAT(screen[last_round_line + 1],
              ::testing::MatchesRegex(R"(round 3/3 \[#+\]  100%  .* elapsed  accuracy .*)"));
  EXPECT_THAT(screen[last_round_line + 1], Not(HasSubstr("ETA")));
  for (const std::string& line : screen) {
    if (line.starts_with("round ") && line.find("/3") != std::string::npos) {
      EXPECT_LE(line.size(), 99u) << "wider than the terminal: " << line;
    }
  }

  Result off = RunOnTerminal(std::string(FEDKIT_SIM_BINARY) + " " + kTiny + " --progress off");
  ASSERT_EQ(off.exit_code, 0) << off.output;
  EXPECT_THAT(off.output, HasSubstr("round    3  accuracy"));
  EXPECT_THAT(off.output, Not(HasSubstr("ETA")));
  EXPECT_THAT(off.output, Not(HasSubstr("\033[K")));
}

TEST(SimProgressTest, WithoutATerminalNoBarUnlessAskedFor) {
  Result r = RunSim(kTiny);  // stdout and stderr a pipe
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_THAT(r.output, HasSubstr("round    3  accuracy"));
  EXPECT_THAT(r.output, Not(HasSubstr("ETA")));
  EXPECT_EQ(r.output.find('\r'), std::string::npos);

  Result on = RunSim(kTiny + " --progress on");
  ASSERT_EQ(on.exit_code, 0) << on.output;
  EXPECT_THAT(on.output, HasSubstr("\rround 3/3 ["));
}

}  // namespace
}  // namespace fedkit
