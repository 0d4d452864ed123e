// The accuracy floor, as a test behind the "long" label (about 3 minutes on 2 cores; CI
// skips it): ctest --test-dir build -L long
#include "gtest/gtest.h"
#include "tests/sim_runner.h"

namespace fedkit {
namespace {

TEST(SimAccuracyLongTest, FashionMnistMlpDirichletReaches085In200Rounds) {
  const std::string metrics = TempPath("long_fmnist_mlp.jsonl");
  Result r = RunSim(
      "--dataset fmnist --model mlp --clients 1000 --partition dirichlet:0.5 --clients-per-round "
      "100 "
      "--rounds 200 --local-epochs 5 --batch-size 10 --client-lr 0.1 --seed 1 --eval-every 50 "
      "--metrics-out " +
      metrics);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  auto lines = ReadJsonLines(metrics);
  ASSERT_FALSE(lines.empty());
  EXPECT_EQ(lines.back()["round"], 200);
  EXPECT_GE(lines.back()["accuracy"].get<double>(), 0.85) << r.output;
}

}  // namespace
}  // namespace fedkit
