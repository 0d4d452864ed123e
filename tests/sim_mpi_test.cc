// fedkit-sim under Open MPI (label "mpi"): `mpirun -np 2 fedkit-sim ...` splits each round's
// clients over two processes and must give the final model of one process bit for bit (the
// partial aggregates are exact integers, merged on every rank), for plain FedAvg and central DP.
#include <cstdlib>
#include <filesystem>
#include <string>

#include "gtest/gtest.h"
#include "models/flat_params.h"
#include "models/model.h"
#include "tests/sim_runner.h"

namespace fedkit {
namespace {

std::vector<float> LoadMlp(const std::string& path) {
  auto model = *models::CreateModel("mlp", data::DatasetInfo{{1, 28, 28}, 10}, 0);
  absl::Status loaded = models::LoadModule(path, *model);
  EXPECT_TRUE(loaded.ok()) << loaded;
  return models::FlattenParameters(*model);
}

class SimMpiTest : public ::testing::TestWithParam<std::string> {};

TEST_P(SimMpiTest, TwoRanksGiveTheOneProcessModelBitForBit) {
  // One directory per case: ctest runs the cases in parallel, and a shared one.pt let a case
  // compare another case's model (seen in CI).
  const std::string dir = ::testing::TempDir() + "/fedkit_mpi_" +
                          ::testing::UnitTest::GetInstance()->current_test_info()->name();
  std::filesystem::create_directories(dir);
  const std::string args =
      "--dataset fmnist --clients 40 --clients-per-round 9 --rounds 3 --model mlp --eval-every 0 "
      "--threads 1 --seed 4 " +
      GetParam();
  const Result one = RunSim(args + " --model-out " + dir + "/one.pt");
  ASSERT_EQ(one.exit_code, 0) << one.output;
  // As root (CI) Open MPI wants both confirmations; --oversubscribe allows 2 ranks on any host.
  const std::string mpirun =
      "OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 mpirun --oversubscribe -np 2 ";
  const Result two =
      RunCommand(mpirun + FEDKIT_SIM_BINARY + " " + args + " --model-out " + dir + "/two.pt");
  if (two.exit_code != 0 && two.output.find("plm_rsh_agent") != std::string::npos) {
    // Open MPI's launcher wants ssh or rsh even for local ranks; without either nothing ran.
    GTEST_SKIP() << "mpirun cannot launch here (no rsh agent): " << two.output;
  }
  ASSERT_EQ(two.exit_code, 0) << two.output;
  EXPECT_NE(two.output.find("x 2 MPI processes"), std::string::npos) << two.output;
  const std::vector<float> a = LoadMlp(dir + "/one.pt");
  const std::vector<float> b = LoadMlp(dir + "/two.pt");
  ASSERT_EQ(a.size(), b.size());
  ASSERT_FALSE(a.empty());
  EXPECT_TRUE(a == b) << "the 2-rank model differs from the 1-process model";
}

std::string ModeName(const ::testing::TestParamInfo<std::string>& info) {
  static const char* const kNames[] = {"FedAvg", "CentralDp", "AdaptiveClipping",
                                       "MedianUnderNoiseAttack", "MultiKrumUnderScaleAttack"};
  return kNames[info.index];
}

INSTANTIATE_TEST_SUITE_P(Modes, SimMpiTest,
                         ::testing::Values("", "--dp central --clip-norm 1 --noise-multiplier 0.5",
                                           "--dp central --clip-norm 1 --noise-multiplier 0.5 "
                                           "--adaptive-clip-quantile 0.5",
                                           // Buffering aggregators merged across ranks
                                           // (Serialize / MergeSerialized), attackers included.
                                           "--aggregator median --attack noise:0.5 "
                                           "--attack-fraction 0.2",
                                           "--aggregator multi-krum:2,5 --attack scale:10 "
                                           "--attack-fraction 0.2"),
                         ModeName);

}  // namespace
}  // namespace fedkit
