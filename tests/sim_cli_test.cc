// End-to-end tests of the fedkit-sim binary: flags, config files, metrics and model files.
#include <sys/resource.h>
#include <sys/wait.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "data/idx.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "models/evaluate.h"
#include "models/flat_params.h"
#include "models/model.h"
#include "tests/sim_runner.h"

namespace fedkit {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

// Small, fast runs: synthetic data needs no files.
const std::string kSmallSynthetic =
    "--dataset synthetic:1,1 --model logreg --clients 50 --clients-per-round 5 --rounds 3 "
    "--local-epochs 1 --batch-size 10 --client-lr 0.05 --eval-clients 20 --seed 4";

TEST(SimCliTest, WrongFlagsAndValuesExitWithStatus2NamingTheFlag) {
  struct Case {
    std::string args;
    std::string expected;
  };
  const std::vector<Case> cases = {
      {"--no-such-flag 3", "--no-such-flag"},
      {"--rounds abc", "--rounds"},
      {"--rounds 0", "--rounds"},
      {"--client-lr -1", "--client-lr"},
      {"--dataset mnist", "--dataset"},
      {"--partition zipf:2", "--partition"},
      {"--server-optimizer rmsprop", "--server-optimizer"},
      {"--clients 10 --clients-per-round 11", "--clients-per-round"},
      {"--model-out /no/such/dir/model.pt", "--model-out"},
      {"--metrics-out /no/such/dir/m.jsonl", "--metrics-out"},
      {"--config /no/such/config.yaml", "/no/such/config.yaml"},
      {"--compression quantize:0", "--compression"},
      {"--download-compression float8", "--download-compression"},
      {"--aggregator krum", "--aggregator"},
      {"--aggregator trimmed-mean:0.5", "--aggregator"},
      {"--aggregator median --secagg secagg+ --clip-norm 1", "--aggregator"},
      {"--aggregator norm-bound:1 --dp central --clip-norm 1", "--aggregator"},
      {kSmallSynthetic + " --aggregator krum:2", "--aggregator krum:2 needs at least 2F + 3 = 7"},
      {"--attack scale:x", "--attack"},
      {"--attack flip", "--attack"},
      {"--attack sign-flip --attack-fraction 0.2 --secagg secagg --clip-norm 1", "--attack"},
      {"--attack-fraction 1.5", "--attack-fraction"},
      {"--attack-fraction 0.2", "--attack-fraction"},
      {"--algorithm fedprox", "--algorithm"},
      {"--algorithm fedbuf", "accepted: fedavg | scaffold | fednova | fedbuff"},
  };
  for (const Case& c : cases) {
    Result r = RunSim(c.args);
    EXPECT_EQ(r.exit_code, 2) << c.args << "\n" << r.output;
    EXPECT_THAT(r.output, HasSubstr(c.expected)) << c.args;
  }
}

TEST(SimCliTest, UnknownModelAndMissingDataAreClearErrors) {
  Result model = RunSim(kSmallSynthetic + " --model resnet");
  EXPECT_NE(model.exit_code, 0);
  EXPECT_THAT(model.output, HasSubstr("resnet"));

  Result data = RunSim("--dataset fmnist --data-dir /no/such/fmnist --rounds 1");
  EXPECT_NE(data.exit_code, 0);
  EXPECT_THAT(data.output, HasSubstr("/no/such/fmnist"));
}

// A user's own data and model together: a LEAF file written here and a TorchScript model written in
// Python (models/python/make_model.py: 6 features, 3 classes).
TEST(SimCliTest, LeafDatasetTrainsATorchScriptModel) {
  const fs::path dir = fs::path(::testing::TempDir()) / "fedkit_sim_leaf";
  fs::create_directories(dir);
  const std::string leaf = (dir / "users.json").string();
  {
    nlohmann::json users = nlohmann::json::array(), sizes = nlohmann::json::array();
    nlohmann::json user_data = nlohmann::json::object();
    for (int u = 0; u < 4; ++u) {
      const std::string name = "user" + std::to_string(u);
      nlohmann::json x = nlohmann::json::array(), y = nlohmann::json::array();
      for (int i = 0; i < 30; ++i) {
        const int label = (i + u) % 3;
        nlohmann::json row = nlohmann::json::array();
        for (int j = 0; j < 6; ++j) row.push_back(j == label ? 2.0 : 0.1 * ((i * 7 + j) % 5));
        x.push_back(row);
        y.push_back(label);
      }
      users.push_back(name);
      sizes.push_back(30);
      user_data[name] = {{"x", x}, {"y", y}};
    }
    std::ofstream(leaf) << nlohmann::json{
        {"users", users},
        {"num_samples", sizes},
        {"user_data",
         user_data}}.dump();
  }
  const std::string model = std::string(FEDKIT_TORCHSCRIPT_FIXTURES) + "/tiny_2nn.pt";
  const std::string metrics = (dir / "metrics.jsonl").string();
  const std::string out = (dir / "final.pt").string();
  Result r = RunSim("--dataset leaf:" + leaf + " --model " + model +
                    " --clients-per-round 2 --rounds 3 --local-epochs 2 --client-lr 0.1 "
                    "--metrics-out " +
                    metrics + " --model-out " + out);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  std::ifstream in(metrics);
  std::vector<nlohmann::json> lines;
  for (std::string line; std::getline(in, line);) lines.push_back(nlohmann::json::parse(line));
  ASSERT_EQ(lines.size(), 3u);
  EXPECT_EQ(lines[0]["participants"], 2);
  // The final model is TorchScript again, with the trained parameters.
  auto trained = models::CreateModel(out, data::DatasetInfo{{6}, 3}, 0);
  ASSERT_TRUE(trained.ok()) << trained.status();
  auto initial = models::CreateModel(model, data::DatasetInfo{{6}, 3}, 0);
  EXPECT_NE(models::FlattenParameters(**trained), models::FlattenParameters(**initial));

  // The same model on Fashion-MNIST does not fit: refused, naming the file.
  Result wrong = RunSim("--dataset fmnist --model " + model + " --rounds 1");
  EXPECT_NE(wrong.exit_code, 0);
  EXPECT_THAT(wrong.output, HasSubstr(model));
  EXPECT_THAT(wrong.output, HasSubstr("forward() fails on features shaped [2, 1, 28, 28]"));
  Result missing = RunSim(kSmallSynthetic + " --model /no/such/model.pt");
  EXPECT_NE(missing.exit_code, 0);
  EXPECT_THAT(missing.output, HasSubstr("/no/such/model.pt"));
  fs::remove_all(dir);
}

TEST(SimCliTest, ConfigFileSetsFlagsAndCommandLineWins) {
  const std::string config = TempPath("config.yaml");
  {
    std::ofstream out(config);
    out << "dataset: synthetic:1,1\nmodel: logreg\nclients: 30\nclients_per_round: 3\n"
           "rounds: 5\neval-clients: 10\nclient-lr: 0.05\n";
  }
  const std::string metrics = TempPath("config_metrics.jsonl");
  Result r = RunSim("--config " + config + " --rounds 2 --metrics-out " + metrics);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  auto lines = ReadJsonLines(metrics);
  ASSERT_EQ(lines.size(), 2u);  // --rounds 2 on the command line beat rounds: 5
  EXPECT_EQ(lines[0]["participants"], 3);

  {
    std::ofstream out(config);
    out << "rounds: 2\nlearning-rate-typo: 0.1\n";
  }
  Result bad = RunSim("--config " + config);
  EXPECT_EQ(bad.exit_code, 2) << bad.output;
  EXPECT_THAT(bad.output, HasSubstr("learning-rate-typo"));

  {
    std::ofstream out(config);
    out << "rounds: [2\n";
  }
  Result malformed = RunSim("--config " + config);
  EXPECT_EQ(malformed.exit_code, 2) << malformed.output;
}

TEST(SimCliTest, MetricsFileHasOneObjectPerEvaluatedRound) {
  const std::string metrics = TempPath("metrics.jsonl");
  Result r = RunSim(kSmallSynthetic + " --rounds 5 --eval-every 2 --metrics-out " + metrics);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  auto lines = ReadJsonLines(metrics);
  ASSERT_EQ(lines.size(), 3u);  // rounds 2, 4 and the last
  const std::vector<int> rounds = {2, 4, 5};
  for (size_t i = 0; i < lines.size(); ++i) {
    EXPECT_EQ(lines[i]["round"], rounds[i]);
    for (const char* key : {"accuracy", "loss", "participants", "seconds"}) {
      EXPECT_TRUE(lines[i].contains(key)) << key;
    }
    EXPECT_EQ(lines[i]["participants"], 5);
    EXPECT_GE(lines[i]["accuracy"].get<double>(), 0.0);
    EXPECT_LE(lines[i]["accuracy"].get<double>(), 1.0);
  }
  EXPECT_THAT(r.output, HasSubstr("accuracy"));
}

// Robust aggregation against attackers: each metrics line counts the round's attackers (only
// when an attack is configured), and the run prints them.
TEST(SimCliTest, AttackedRunCountsAttackersInTheMetrics) {
  const std::string attacked = TempPath("attacked.jsonl");
  Result r = RunSim(kSmallSynthetic +
                    " --aggregator median --attack scale:10 --attack-fraction 0.3 --metrics-out " +
                    attacked);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_THAT(r.output, HasSubstr("aggregator median, attack scale:10 by 15 of 50 clients"));
  EXPECT_THAT(r.output, HasSubstr("attackers "));
  const auto lines = ReadJsonLines(attacked);
  ASSERT_EQ(lines.size(), 3u);
  int64_t attackers = 0;
  for (const auto& line : lines) {
    ASSERT_TRUE(line.contains("attackers")) << line;
    EXPECT_EQ(line["refused"], 0) << line;  // no clip norm: nothing to refuse them for
    attackers += line["attackers"].get<int64_t>();
    EXPECT_LE(line["attackers"].get<int64_t>(), 5);
  }
  EXPECT_GT(attackers, 0);

  const std::string plain = TempPath("not_attacked.jsonl");
  Result p = RunSim(kSmallSynthetic + " --metrics-out " + plain);
  ASSERT_EQ(p.exit_code, 0) << p.output;
  for (const auto& line : ReadJsonLines(plain)) EXPECT_FALSE(line.contains("attackers")) << line;
}

TEST(SimCliTest, PerClientEvaluationFlagErrorsNameTheFlag) {
  struct Case {
    std::string args;
    std::string expected;
  };
  const std::vector<Case> cases = {
      {"--eval-finetune-steps 5", "--eval-finetune-steps: needs --eval-clients-local"},
      {"--local-eval-fraction 0.3", "--local-eval-fraction: needs --eval-clients-local"},
      {"--local-eval-clients 4", "--local-eval-clients: needs --eval-clients-local"},
      {"--eval-clients-local --local-eval-fraction 0", "--local-eval-fraction: must be in (0, 1)"},
      {"--eval-clients-local --local-eval-fraction 1", "--local-eval-fraction: must be in (0, 1)"},
      {"--eval-clients-local --local-eval-fraction x", "--local-eval-fraction"},
      {"--eval-clients-local --eval-finetune-steps -1", "--eval-finetune-steps"},
      {kSmallSynthetic + " --eval-clients-local --local-eval-clients 51", "--local-eval-clients"},
  };
  for (const Case& c : cases) {
    Result r = RunSim(c.args);
    EXPECT_EQ(r.exit_code, 2) << c.args << "\n" << r.output;
    EXPECT_THAT(r.output, HasSubstr(c.expected)) << c.args;
  }
}

// kSmallSynthetic without --clients-per-round, which FedBuff refuses.
const std::string kSmallSyntheticFedBuff =
    "--dataset synthetic:1,1 --model logreg --clients 50 --rounds 3 --local-epochs 1 "
    "--batch-size 10 --client-lr 0.05 --eval-clients 20 --seed 4";

TEST(SimCliTest, FedBuffFlagErrorsNameTheFlag) {
  struct Case {
    std::string args;
    std::string expected;
  };
  const std::vector<Case> cases = {
      {"--algorithm fedsgd", "--algorithm: unknown algorithm \"fedsgd\""},
      {kSmallSyntheticFedBuff + " --algorithm fedbuff --concurrency 10 --control-variates-dir " +
           TempPath("fedbuff_cv"),
       "--control-variates-dir is not supported with --algorithm fedbuff"},
      {"--buffer-size 5", "--buffer-size: needs --algorithm fedbuff"},
      {"--concurrency 5", "--concurrency: needs --algorithm fedbuff"},
      {"--staleness constant", "--staleness: needs --algorithm fedbuff"},
      {"--algorithm fedbuff --clients-per-round 5", "--clients-per-round: not with --algorithm"},
      {"--algorithm fedbuff --staleness poly:-1", "--staleness: staleness weighting is"},
      {"--algorithm fedbuff --buffer-size 0", "--buffer-size"},
      {kSmallSyntheticFedBuff + " --algorithm fedbuff --concurrency 51",
       "--concurrency: 51 is more"},
      {kSmallSyntheticFedBuff +
           " --algorithm fedbuff --concurrency 3 --secagg secagg --clip-norm 1",
       "--concurrency (3) is below --buffer-size (10): cohorts of --buffer-size clients"},
      {kSmallSyntheticFedBuff +
           " --algorithm fedbuff --concurrency 10 --device-speeds two-speed:1,2,3",
       "--device-speeds: two-speed:SECONDS,FRACTION,SLOWDOWN"},
  };
  for (const Case& c : cases) {
    Result r = RunSim(c.args);
    EXPECT_EQ(r.exit_code, 2) << c.args << "\n" << r.output;
    EXPECT_THAT(r.output, HasSubstr(c.expected)) << c.args;
  }
}

// A FedBuff run: a metrics line per evaluated commit with its staleness and virtual time, and
// per-client evaluation works with it.
TEST(SimCliTest, FedBuffRunsCommitsOnTheVirtualClock) {
  const std::string metrics = TempPath("fedbuff.jsonl");
  Result r = RunSim(kSmallSyntheticFedBuff +
                    " --algorithm fedbuff --buffer-size 3 --concurrency 8 --rounds 4 "
                    "--device-speeds two-speed:0.01,0.25,10 --eval-clients-local "
                    "--local-eval-clients 5 --metrics-out " +
                    metrics);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_THAT(r.output, HasSubstr("FedBuff: 8 training at once, commit every 3 uploads, "
                                  "staleness weight sqrt"));
  EXPECT_THAT(r.output, HasSubstr("staleness "));
  const auto lines = ReadJsonLines(metrics);
  ASSERT_EQ(lines.size(), 4u);
  double previous = 0;
  for (const auto& line : lines) {
    EXPECT_EQ(line["participants"].get<int>(), 3);
    EXPECT_GE(line["staleness_max"].get<int>(), 0);
    EXPECT_GE(line["staleness_mean"].get<double>(), 0.0);
    EXPECT_GT(line["virtual_elapsed_seconds"].get<double>(), previous);
    previous = line["virtual_elapsed_seconds"].get<double>();
    EXPECT_EQ(line["client_accuracies"].size(), 5u);
  }
}

// --eval-clients-local: every evaluated round's line carries the clients' accuracies and their
// summary (and the fine-tuned ones), the console line the percentiles.
TEST(SimCliTest, PerClientEvaluationInTheMetricsAndOnTheConsole) {
  const std::string metrics = TempPath("client_eval.jsonl");
  Result r = RunSim(kSmallSynthetic +
                    " --rounds 2 --eval-clients-local --local-eval-clients 12 "
                    "--eval-finetune-steps 3 --metrics-out " +
                    metrics);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_THAT(r.output, HasSubstr("clients p10/p50/p90 "));
  EXPECT_THAT(r.output, HasSubstr("fine-tuned "));
  const auto lines = ReadJsonLines(metrics);
  ASSERT_EQ(lines.size(), 2u);
  for (const auto& line : lines) {
    ASSERT_TRUE(line.contains("client_accuracies")) << line;
    const auto accuracies = line["client_accuracies"].get<std::vector<double>>();
    const auto clients = line["client_eval_clients"].get<std::vector<int64_t>>();
    ASSERT_EQ(accuracies.size(), 12u);  // synthetic clients all have test examples
    EXPECT_EQ(clients.size(), accuracies.size());
    std::vector<double> sorted = accuracies;
    std::sort(sorted.begin(), sorted.end());
    // Nearest rank of 12: p10 = 2nd, p50 = 6th, p90 = 11th (client_evaluation.h).
    EXPECT_EQ(line["client_accuracy_p10"].get<double>(), sorted[1]);
    EXPECT_EQ(line["client_accuracy_p50"].get<double>(), sorted[5]);
    EXPECT_EQ(line["client_accuracy_p90"].get<double>(), sorted[10]);
    EXPECT_NEAR(line["client_accuracy_worst10"].get<double>(), (sorted[0] + sorted[1]) / 2, 1e-12);
    EXPECT_GE(line["client_accuracy_mean"].get<double>(), sorted.front());
    EXPECT_LE(line["client_accuracy_mean"].get<double>(), sorted.back());
    ASSERT_TRUE(line.contains("client_finetuned_accuracies")) << line;
    EXPECT_EQ(line["client_finetuned_accuracies"].size(), 12u);
    for (const char* key : {"client_finetuned_accuracy_mean", "client_finetuned_accuracy_p10",
                            "client_finetuned_accuracy_p50", "client_finetuned_accuracy_p90",
                            "client_finetuned_accuracy_worst10"}) {
      EXPECT_TRUE(line.contains(key)) << key;
    }
  }
  const std::string plain = TempPath("no_client_eval.jsonl");
  Result p = RunSim(kSmallSynthetic + " --rounds 1 --metrics-out " + plain);
  ASSERT_EQ(p.exit_code, 0) << p.output;
  for (const auto& line : ReadJsonLines(plain)) {
    EXPECT_FALSE(line.contains("client_accuracies")) << line;
  }
}

TEST(SimCliTest, ThreadCountDoesNotChangeMetricsOrModel) {
  std::vector<std::vector<nlohmann::json>> metrics;
  std::vector<std::vector<float>> params;
  for (int threads : {1, 2}) {
    const std::string m = TempPath("threads" + std::to_string(threads) + ".jsonl");
    const std::string model = TempPath("threads" + std::to_string(threads) + ".pt");
    Result r = RunSim(kSmallSynthetic + " --model mlp --client-momentum 0.9 --threads " +
                      std::to_string(threads) + " --metrics-out " + m + " --model-out " + model);
    ASSERT_EQ(r.exit_code, 0) << r.output;
    metrics.push_back(ReadJsonLines(m));
    auto module = *models::CreateModel("mlp", data::DatasetInfo{{60}, 10}, 0);
    ASSERT_TRUE(models::LoadModule(model, *module).ok());
    params.push_back(models::FlattenParameters(*module));
  }
  ASSERT_EQ(metrics[0].size(), metrics[1].size());
  for (size_t i = 0; i < metrics[0].size(); ++i) {
    EXPECT_EQ(metrics[0][i]["accuracy"], metrics[1][i]["accuracy"]);
    EXPECT_EQ(metrics[0][i]["loss"], metrics[1][i]["loss"]);
    EXPECT_EQ(metrics[0][i]["train_loss"], metrics[1][i]["train_loss"]);
  }
  EXPECT_EQ(params[0], params[1]);
}

// SCAFFOLD and FedNova (issue 14): what they cannot run with is refused before any round, naming
// the flags (exit 2).
TEST(SimCliTest, AlgorithmFlagErrorsNameTheFlags) {
  struct Case {
    std::string args;
    std::vector<std::string> expected;
  };
  const std::string used_dir = TempPath("used_variates");
  std::filesystem::create_directories(used_dir);
  std::ofstream(used_dir + "/stale.f32") << "x";
  const std::vector<Case> cases = {
      {"--algorithm scaffold --secagg secagg --clip-norm 1", {"--algorithm scaffold", "--secagg"}},
      {"--algorithm fednova --secagg secagg+ --clip-norm 1", {"--algorithm fednova", "--secagg"}},
      {"--algorithm scaffold --dp central --noise-multiplier 1 --clip-norm 1",
       {"--algorithm scaffold", "--dp"}},
      {"--algorithm scaffold --compression quantize:8", {"--algorithm scaffold", "--compression"}},
      {"--algorithm fednova --aggregator median", {"--algorithm fednova", "--aggregator median"}},
      {"--algorithm scaffold --prox-mu 0.01", {"--algorithm scaffold", "--prox-mu"}},
      {"--control-variates-dir " + TempPath("unused"),
       {"--control-variates-dir is for --algorithm scaffold only"}},
      {"--algorithm scaffold --control-variates-dir " + used_dir,
       {"--control-variates-dir", "not empty"}},
  };
  for (const Case& c : cases) {
    Result r = RunSim(kSmallSynthetic + " " + c.args);
    EXPECT_EQ(r.exit_code, 2) << c.args << "\n" << r.output;
    for (const std::string& expected : c.expected) {
      EXPECT_THAT(r.output, HasSubstr(expected)) << c.args;
    }
  }
}

TEST(SimCliTest, ClientBatchingRunsAndItsErrorsNameTheFlag) {
  Result ok = RunSim(kSmallSynthetic + " --client-batching 3 --threads 2");
  ASSERT_EQ(ok.exit_code, 0) << ok.output;
  EXPECT_THAT(ok.output, HasSubstr("up to 3 clients trained together"));
  struct Case {
    std::string args;
    std::vector<std::string> expected;
  };
  const std::vector<Case> cases = {
      {kSmallSynthetic + " --client-batching -1", {"--client-batching"}},
      {kSmallSynthetic + " --client-batching 2 --secagg secagg --clip-norm 1",
       {"--client-batching", "--secagg"}},
      {kSmallSynthetic + " --client-batching 2 --algorithm fednova",
       {"--client-batching", "--algorithm fednova"}},
      {kSmallSyntheticFedBuff + " --client-batching 2 --algorithm fedbuff --concurrency 10",
       {"--client-batching", "--algorithm fedbuff"}},
  };
  for (const Case& c : cases) {
    Result r = RunSim(c.args);
    EXPECT_EQ(r.exit_code, 2) << c.args << "\n" << r.output;
    for (const std::string& expected : c.expected) {
      EXPECT_THAT(r.output, HasSubstr(expected)) << c.args;
    }
  }
}

TEST(SimCliTest, ScaffoldKeepsItsVariatesOnDiskWithTheSameResultsAndFedNovaRuns) {
  const std::string memory = TempPath("scaffold_memory.jsonl");
  const std::string disk = TempPath("scaffold_disk.jsonl");
  const std::string dir = TempPath("scaffold_variates");
  std::filesystem::remove_all(dir);
  Result a = RunSim(kSmallSynthetic + " --algorithm scaffold --metrics-out " + memory);
  ASSERT_EQ(a.exit_code, 0) << a.output;
  EXPECT_THAT(a.output, HasSubstr("algorithm scaffold"));
  Result b = RunSim(kSmallSynthetic + " --algorithm scaffold --threads 2 --control-variates-dir " +
                    dir + " --metrics-out " + disk);
  ASSERT_EQ(b.exit_code, 0) << b.output;
  EXPECT_THAT(b.output, HasSubstr("control variates in " + dir));
  const auto in_memory = ReadJsonLines(memory);
  const auto on_disk = ReadJsonLines(disk);
  ASSERT_EQ(in_memory.size(), 3u);
  ASSERT_EQ(on_disk.size(), 3u);
  for (size_t i = 0; i < 3; ++i) {
    EXPECT_EQ(in_memory[i]["accuracy"], on_disk[i]["accuracy"]);
    EXPECT_EQ(in_memory[i]["loss"], on_disk[i]["loss"]);
  }
  // At most 3 rounds x 5 clients were sampled out of 50: a file for each, none for the others.
  int64_t files = 0;
  for (const auto& entry : std::filesystem::directory_iterator(dir))
    files += entry.is_regular_file();
  EXPECT_GE(files, 5);
  EXPECT_LE(files, 15);

  const std::string nova = TempPath("fednova.jsonl");
  Result c = RunSim(kSmallSynthetic + " --algorithm fednova --metrics-out " + nova);
  ASSERT_EQ(c.exit_code, 0) << c.output;
  const auto fednova = ReadJsonLines(nova);
  ASSERT_EQ(fednova.size(), 3u);
  const std::string plain = TempPath("fedavg_for_fednova.jsonl");
  Result d = RunSim(kSmallSynthetic + " --algorithm fedavg --metrics-out " + plain);
  ASSERT_EQ(d.exit_code, 0) << d.output;
  EXPECT_NE(ReadJsonLines(plain).back()["loss"], fednova.back()["loss"]);  // unequal step counts
}

TEST(SimCliTest, DpFlagErrorsNameTheFlag) {
  struct Case {
    std::string args;
    std::string expected;
  };
  const std::vector<Case> cases = {
      {"--dp laplace", "--dp"},
      {"--dp central", "--clip-norm"},
      {"--dp distributed --clip-norm 0.5 --noise-multiplier 1", "--secagg"},
      {"--dp central --clip-norm 0.5 --delta 1.5", "--delta"},
      {"--dp central --clip-norm 0.5 --noise-multiplier -1", "--noise-multiplier"},
      {"--noise-multiplier 1", "--dp central"},
      {"--dp central --clip-norm 0.5 --target-epsilon 1", "--noise-multiplier"},
      {"--dp central --clip-norm 0.5 --noise-multiplier 1 --target-epsilon abc",
       "--target-epsilon"},
      {"--dp central --clip-norm 0.5 --adaptive-clip-quantile 1.5", "--adaptive-clip-quantile"},
      // 5 clients per round: the clipped count's noise 5 / 20 is too small for z = 1.
      {"--dp central --clip-norm 0.5 --noise-multiplier 1 --adaptive-clip-quantile 0.5",
       "--noise-multiplier"},
      {"--dp distributed --secagg secagg --clip-norm 0.5 --noise-multiplier 1 "
       "--secagg-modulus-bits 12",
       "--secagg-modulus-bits"},
      {"--dp central --clip-norm 0.5 --dp-dropout-tolerance 0.1", "--dp-dropout-tolerance"},
  };
  for (const Case& c : cases) {
    Result r = RunSim(kSmallSynthetic + " " + c.args);
    EXPECT_EQ(r.exit_code, 2) << c.args << "\n" << r.output;
    EXPECT_THAT(r.output, HasSubstr(c.expected)) << c.args;
  }
}

// q = 5 / 50 and z = 2: epsilon passes 1 in round 12, so --target-epsilon 1 runs 11 rounds,
// evaluates the 11th (the last within budget) although --eval-every is 5, and exits 0 with the
// final model written.
TEST(SimCliTest, DpRunReportsEpsilonPerRoundAndStopsAtTheLastRoundWithinBudget) {
  const std::string metrics = TempPath("dp_budget.jsonl");
  const std::string model = TempPath("dp_budget.pt");
  std::filesystem::remove(model);
  Result r = RunSim(kSmallSynthetic +
                    " --rounds 30 --eval-every 5 --dp central --clip-norm 0.5 --noise-multiplier 2 "
                    "--target-epsilon 1 --metrics-out " +
                    metrics + " --model-out " + model);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_THAT(r.output, HasSubstr("stopping before round 12: epsilon would be 1.00091 > target 1; "
                                  "last round within budget 11 (epsilon 0.968206 at delta 1e-05)"));
  EXPECT_TRUE(std::filesystem::exists(model));
  auto lines = ReadJsonLines(metrics);
  ASSERT_EQ(lines.size(), 3u);  // rounds 5, 10 and 11
  EXPECT_EQ(lines.back()["round"], 11);
  double previous = 0;
  for (const auto& line : lines) {
    const double epsilon = line["epsilon"];
    EXPECT_GT(epsilon, previous);
    EXPECT_LE(epsilon, 1.0);
    previous = epsilon;
    EXPECT_EQ(line["delta"], 1e-5);
    EXPECT_EQ(line["clip_norm"], 0.5);
  }
  EXPECT_THAT(r.output, HasSubstr("epsilon 0.9682"));
}

TEST(SimCliTest, DistributedDpUnderSecAggPlusWithAdaptiveClipping) {
  const std::string metrics = TempPath("dp_distributed.jsonl");
  Result r = RunSim(kSmallSynthetic +
                    " --dp distributed --secagg secagg+ --clip-norm 0.5 --noise-multiplier 0.4 "
                    "--adaptive-clip-quantile 0.5 --dropout 0.1 --threads 2 --metrics-out " +
                    metrics);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_THAT(r.output, HasSubstr("discrete Gaussian variance"));
  auto lines = ReadJsonLines(metrics);
  ASSERT_EQ(lines.size(), 3u);
  for (const auto& line : lines) {
    for (const char* key : {"epsilon", "delta", "clip_norm", "unclipped_fraction", "secagg"}) {
      EXPECT_TRUE(line.contains(key)) << key << " in " << line.dump();
    }
  }
  EXPECT_NE(lines[0]["clip_norm"], lines[2]["clip_norm"]);
}

// The shipped TensorFlow Federated tutorial config, on the real Fashion-MNIST (a declared
// dependency: scripts/install-deps.sh installs dataset-fashion-mnist).
TEST(SimCliTest, TffTutorialConfigRunsAndAccuracyRises) {
  const std::string metrics = TempPath("tff.jsonl");
  const std::string model_path = TempPath("tff.pt");
  Result r = RunSim(std::string("--config ") + FEDKIT_SOURCE_DIR + "/configs/tff_tutorial.yaml" +
                    " --metrics-out " + metrics + " --model-out " + model_path);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  auto lines = ReadJsonLines(metrics);
  ASSERT_EQ(lines.size(), 10u);
  const double first = lines.front()["accuracy"];
  const double last = lines.back()["accuracy"];
  EXPECT_GT(last, first + 0.05) << "first " << first << " last " << last;
  EXPECT_GT(last, 0.5);

  // The written model is a LibTorch archive of the final global model: evaluating it reproduces the
  // last round's reported accuracy.
  data::DatasetInfo info;
  auto test_set = data::LoadFashionMnist(data::kDefaultFashionMnistDir, data::Split::kTest, &info);
  ASSERT_TRUE(test_set.ok()) << test_set.status();
  auto model = *models::CreateModel("seed", info, 0);
  ASSERT_TRUE(models::LoadModule(model_path, *model).ok());
  auto eval = models::EvaluateRange(*model, *test_set, 0, test_set->size());
  ASSERT_TRUE(eval.ok());
  EXPECT_NEAR(eval->accuracy(), last, 1e-9);
}

}  // namespace
}  // namespace fedkit

namespace fedkit {
namespace {

// A round of 2,000 clients out of 100,000 keeps memory small: clients are indices, generated on
// demand, and finished deltas are summed in a bounded window (of 4 per thread, far below 2,000).
// ctest runs each test in its own process, so RUSAGE_CHILDREN sees only this run's fedkit-sim.
TEST(SimCliTest, HundredThousandClientPopulationRunsARoundUnder2GiB) {
  Result r = RunSim(
      "--dataset synthetic:1,1 --model logreg --clients 100000 --clients-per-round 2000 "
      "--rounds 1 --local-epochs 1 --batch-size 10 --client-lr 0.01 --seed 1");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_THAT(r.output, HasSubstr("participants 2000"));
  struct rusage usage;
  ASSERT_EQ(getrusage(RUSAGE_CHILDREN, &usage), 0);
  const double peak_gib = usage.ru_maxrss / (1024.0 * 1024.0);  // ru_maxrss is in KiB
  EXPECT_LT(peak_gib, 2.0);
  EXPECT_GT(peak_gib, 0.0);
  std::printf("fedkit-sim peak RSS: %.3f GiB\n", peak_gib);
}

}  // namespace
}  // namespace fedkit
