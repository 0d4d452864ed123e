#include "simulation/plot_runner.h"

#include <sys/stat.h>

#include <filesystem>
#include <fstream>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace fedkit::simulation {
namespace {

namespace fs = std::filesystem;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

// A fresh directory under the test's temporary directory.
fs::path FreshDir(const std::string& name) {
  const fs::path dir = fs::path(::testing::TempDir()) / ("fedkit_plot_runner_" + name);
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir;
}

// Writes a shell script at `path` with `body`, executable iff `executable`.
void WriteScript(const fs::path& path, const std::string& body, bool executable) {
  std::ofstream(path) << "#!/bin/sh\n" << body << "\n";
  chmod(path.c_str(), executable ? 0755 : 0644);
}

TEST(PlotRunnerTest, OutputMustBePngOrSvgInAnExistingDirectory) {
  const fs::path dir = FreshDir("output");
  EXPECT_TRUE(CheckPlotOutput((dir / "run.png").string()).ok());
  EXPECT_TRUE(CheckPlotOutput((dir / "run.SVG").string()).ok());
  for (const std::string name : {"run.jpg", "run", "run.png.txt"}) {
    const absl::Status s = CheckPlotOutput((dir / name).string());
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << name;
    EXPECT_THAT(s.message(), HasSubstr(".png or .svg")) << name;
    EXPECT_THAT(s.message(), HasSubstr(name)) << name;
  }
  const absl::Status missing = CheckPlotOutput((dir / "no" / "such" / "run.png").string());
  EXPECT_EQ(missing.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(missing.message(), HasSubstr("does not exist"));
}

TEST(PlotRunnerTest, FindsFedkitPlotBesideTheExecutableFirstThenOnPath) {
  const fs::path exe_dir = FreshDir("exe");
  const fs::path path_a = FreshDir("path_a");
  const fs::path path_b = FreshDir("path_b");
  const std::string path_env = path_a.string() + ":" + path_b.string();
  // Nowhere: NOT_FOUND naming where it looked.
  absl::StatusOr<std::string> none = FindFedkitPlot(exe_dir.string(), path_env);
  ASSERT_FALSE(none.ok());
  EXPECT_EQ(none.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(none.status().message(), HasSubstr(exe_dir.string()));
  EXPECT_THAT(none.status().message(), HasSubstr("PATH"));
  // Not executable on PATH's first entry: skipped for the second.
  WriteScript(path_a / "fedkit-plot", "exit 0", false);
  WriteScript(path_b / "fedkit-plot", "exit 0", true);
  EXPECT_EQ(*FindFedkitPlot(exe_dir.string(), path_env), (path_b / "fedkit-plot").string());
  EXPECT_EQ(*FindFedkitPlot("", path_env), (path_b / "fedkit-plot").string());
  // Beside the executable wins.
  WriteScript(exe_dir / "fedkit-plot", "exit 0", true);
  EXPECT_EQ(*FindFedkitPlot(exe_dir.string(), path_env), (exe_dir / "fedkit-plot").string());
  // A directory of that name is not a program.
  const fs::path dir_only = FreshDir("dir_only");
  fs::create_directories(dir_only / "fedkit-plot");
  EXPECT_FALSE(FindFedkitPlot(dir_only.string(), "").ok());
}

TEST(PlotRunnerTest, OwnExecutableDirectoryIsThisTestsDirectory) {
  const std::string dir = OwnExecutableDirectory();
  ASSERT_FALSE(dir.empty());
  EXPECT_TRUE(fs::exists(fs::path(dir) / "fedkit_simulation_test"));
}

TEST(PlotRunnerTest, CommandPlotsAccuracyAndLossAgainstRound) {
  EXPECT_THAT(PlotCommand("/bin/fedkit-plot", "m.jsonl", "out.svg", "a run"),
              ElementsAre("/bin/fedkit-plot", "m.jsonl", "-o", "out.svg", "--x", "round", "--y",
                          "accuracy,loss", "--title", "a run"));
}

TEST(PlotRunnerTest, RunProgramReportsExitStatusSignalAndMissingPrograms) {
  const fs::path dir = FreshDir("run");
  const fs::path witness = dir / "witness";
  WriteScript(dir / "ok", "echo \"$1 $2\" > \"$3\"", true);
  ASSERT_TRUE(RunProgram({(dir / "ok").string(), "two", "words", witness.string()}).ok());
  std::string line;
  std::getline(std::ifstream(witness), line);
  EXPECT_EQ(line, "two words");  // arguments passed as they are, no shell splitting

  WriteScript(dir / "fails", "exit 3", true);
  const absl::Status failed = RunProgram({(dir / "fails").string()});
  EXPECT_EQ(failed.code(), absl::StatusCode::kInternal);
  EXPECT_THAT(failed.message(), HasSubstr("exited with status 3"));
  EXPECT_THAT(failed.message(), HasSubstr((dir / "fails").string()));

  WriteScript(dir / "killed", "kill -9 $$", true);
  EXPECT_THAT(RunProgram({(dir / "killed").string()}).message(), HasSubstr("signal 9"));

  const absl::Status missing = RunProgram({(dir / "no-such-program").string()});
  EXPECT_EQ(missing.code(), absl::StatusCode::kInternal);
  EXPECT_THAT(missing.message(), HasSubstr("cannot run"));

  std::ofstream(dir / "no-interpreter") << "#!/no/such/python3\n";
  chmod((dir / "no-interpreter").c_str(), 0755);
  EXPECT_THAT(RunProgram({(dir / "no-interpreter").string()}).message(),
              HasSubstr("the interpreter its #! line names"));
}

}  // namespace
}  // namespace fedkit::simulation
