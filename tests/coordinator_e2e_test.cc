// End-to-end runs of fedkit-coordinator with fedkit-client processes over TLS on loopback: training
// works across processes, reproduces the simulator exactly, and survives a coordinator crash.
#include <arpa/inet.h>
#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <regex>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "artifacts/artifact_files.h"
#include "artifacts/signing.h"
#include "fedkit/v1/coordinator.grpc.pb.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "models/flat_params.h"
#include "models/model.h"
#include "models/torchscript_model.h"
#include "privacy/dp_setup.h"
#include "server/checkpoint.h"
#include "server/client_sampler.h"
#include "server/participation.h"
#include "server/privacy_ledger.h"
#include "tests/sim_runner.h"
#include "tests/subprocess.h"

namespace fedkit {
namespace {

namespace fs = std::filesystem;
using testing_util::PollUntil;
using testing_util::Scaled;
using testing_util::ScaledSeconds;
using testing_util::Subprocess;

constexpr int kClients = 20;
constexpr char kSeed[] = "5";
// Small, fast rounds: the TFF tutorial model, one local epoch.
const std::vector<std::string> kTraining = {"--model",      "seed", "--local-epochs", "1",
                                            "--batch-size", "50",   "--client-lr",    "0.05"};

class CoordinatorE2eTest : public ::testing::Test {
 protected:
  void StopMidRunAndResume(int sig);
  void SetUp() override {
    dir_ = fs::path(::testing::TempDir()) /
           ("fedkit_e2e_" +
            std::string(::testing::UnitTest::GetInstance()->current_test_info()->name()));
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    const std::string command = std::string("bash ") + FEDKIT_SOURCE_DIR +
                                "/deploy/make-certs.sh " + (dir_ / "certs").string() +
                                " localhost 127.0.0.1 > " + (dir_ / "certs.log").string() + " 2>&1";
    ASSERT_EQ(std::system(command.c_str()), 0) << "make-certs.sh failed";
  }

  std::string Path(const std::string& name) const { return (dir_ / name).string(); }

  // Each case's flags (after --listen 127.0.0.1:0 --insecure) make fedkit-coordinator exit with 2
  // and a line starting "fedkit-coordinator: " + the expected text (the flag to change).
  void ExpectUsageErrors(
      const std::vector<std::pair<std::vector<std::string>, std::string>>& cases) {
    int n = 0;
    for (const auto& [flags, expected] : cases) {
      std::vector<std::string> argv = {FEDKIT_COORDINATOR_BINARY, "--listen", "127.0.0.1:0",
                                       "--insecure"};
      argv.insert(argv.end(), flags.begin(), flags.end());
      Subprocess refused;
      ASSERT_TRUE(refused.Start(argv, Path("refused" + std::to_string(n++) + ".log")));
      EXPECT_EQ(refused.Wait(), 2) << expected << ": " << refused.Output();
      EXPECT_THAT(refused.Output(), ::testing::HasSubstr("fedkit-coordinator: " + expected))
          << refused.Output();
    }
  }

  // fedkit-coordinator's command line: TLS on port_ (0: an ephemeral one), the run's training
  // setup, then `extra` (a repeated flag's last value wins).
  std::vector<std::string> CoordinatorArgv(const std::vector<std::string>& extra) const {
    std::vector<std::string> argv = {FEDKIT_COORDINATOR_BINARY,
                                     "--listen",
                                     "127.0.0.1:" + std::to_string(port_),
                                     "--tls-cert",
                                     Path("certs/server.pem"),
                                     "--tls-key",
                                     Path("certs/server.key"),
                                     "--rounds",
                                     "5",
                                     "--clients-per-round",
                                     std::to_string(kClients),
                                     "--seed",
                                     kSeed,
                                     "--eval-data",
                                     "/usr/share/datasets/fashion-mnist",
                                     "--retry-interval",
                                     "0.2",
                                     "--linger",
                                     "3"};
    argv.insert(argv.end(), kTraining.begin(), kTraining.end());
    argv.insert(argv.end(), extra.begin(), extra.end());
    // FedBuff has no rounds of a fixed size: --buffer-size and --concurrency replace the flag.
    if (std::find(extra.begin(), extra.end(), "fedbuff") != extra.end()) {
      auto it = std::find(argv.begin(), argv.end(), "--clients-per-round");
      argv.erase(it, it + 2);
    }
    return argv;
  }

  // Starts the coordinator on an ephemeral port and returns it once it is serving.
  void StartCoordinator(Subprocess& coordinator, const std::vector<std::string>& extra,
                        const std::string& log_name) {
    const std::vector<std::string> argv = CoordinatorArgv(extra);
    ASSERT_TRUE(coordinator.Start(argv, Path(log_name)));
    std::smatch match;
    const std::regex serving("serving on port (\\d+)");
    ASSERT_TRUE(PollUntil(
        [&] {
          const std::string out = coordinator.Output();
          return std::regex_search(out, match, serving) || coordinator.WaitFor({}).has_value();
        },
        std::chrono::seconds(60)))
        << coordinator.Output();
    const std::string out = coordinator.Output();
    ASSERT_TRUE(std::regex_search(out, match, serving)) << out;
    port_ = std::stoi(match[1]);
  }

  // `model` empty: the clients start without --model and take what they are assigned; `extra`
  // adds per-client flags.
  void StartClients(std::vector<Subprocess>& clients, const std::string& model = "seed",
                    int count = kClients,
                    const std::function<std::vector<std::string>(int)>& extra = nullptr) {
    clients.resize(count);
    for (int i = 0; i < count; ++i) {
      StartClient(clients[i], i, model, extra ? extra(i) : std::vector<std::string>{},
                  "client" + std::to_string(i) + ".log");
    }
  }
  // Client `index` of kClients (extra flags may override --num-clients).
  void StartClient(Subprocess& client, int index, const std::string& model,
                   const std::vector<std::string>& extra, const std::string& log_name) {
    std::vector<std::string> argv = {FEDKIT_CLIENT_BINARY,
                                     "--server",
                                     "127.0.0.1:" + std::to_string(port_),
                                     "--tls-ca",
                                     Path("certs/ca.pem"),
                                     "--num-clients",
                                     std::to_string(kClients),
                                     "--client-index",
                                     std::to_string(index),
                                     "--partition",
                                     "iid",
                                     "--seed",
                                     kSeed};
    if (!model.empty()) argv.insert(argv.end(), {"--model", model});
    argv.insert(argv.end(), extra.begin(), extra.end());
    ASSERT_TRUE(client.Start(argv, Path(log_name)));
    // Under a sanitizer (a stretched time scale) a client's start-up peak, the whole dataset with
    // its shadow memory, is over a GiB: twenty starting together exhaust the machine. There each
    // client is started once the previous one has its shard and has freed the rest.
    if (testing_util::TestTimeScale() > 1) {
      PollUntil(
          [&] {
            return client.Output().find(" examples), ") != std::string::npos ||
                   client.WaitFor({}).has_value();
          },
          std::chrono::minutes(1));
    }
  }

  // The simulator's final model for the same setup, run in this test.
  std::vector<float> SimulatedModel(const std::string& model = "seed") {
    std::string args =
        "--dataset fmnist --clients 20 --clients-per-round 20 --rounds 5 --partition iid "
        "--seed " +
        std::string(kSeed) + " --eval-every 0 --threads 2 --model-out " + Path("sim.pt");
    for (const auto& a : kTraining) args += " " + a;
    args += " --model " + model;  // the last --model wins
    Result r = RunSim(args);
    EXPECT_EQ(r.exit_code, 0) << r.output;
    return LoadModel(Path("sim.pt"), model);
  }

  // A TorchScript model's --model-out is itself a TorchScript file.
  static std::vector<float> LoadModel(const std::string& path, const std::string& model = "seed") {
    if (models::IsTorchScriptPath(model)) {
      auto loaded = models::CreateModel(path, data::DatasetInfo{{1, 28, 28}, 10}, 0);
      EXPECT_TRUE(loaded.ok()) << loaded.status();
      return loaded.ok() ? models::FlattenParameters(**loaded) : std::vector<float>();
    }
    auto model_object = *models::CreateModel("seed", data::DatasetInfo{{1, 28, 28}, 10}, 0);
    absl::Status loaded = models::LoadModule(path, *model_object);
    EXPECT_TRUE(loaded.ok()) << loaded;
    return models::FlattenParameters(*model_object);
  }

  // An operator's Ed25519 key pair written as PEM files NAME.key and NAME.pub.
  artifacts::KeyPair WriteKeyPair(const std::string& name) {
    absl::StatusOr<artifacts::KeyPair> key = artifacts::GenerateKeyPair();
    EXPECT_TRUE(key.ok()) << key.status();
    EXPECT_TRUE(artifacts::WriteFileBytes(Path(name + ".key"),
                                          *artifacts::PrivateKeyToPem(key->private_key), 0600, true)
                    .ok());
    EXPECT_TRUE(artifacts::WriteFileBytes(Path(name + ".pub"),
                                          *artifacts::PublicKeyToPem(key->public_key), 0644, true)
                    .ok());
    return *key;
  }

  // GetStatus from the running coordinator, over TLS as a device sees it.
  v1::GetStatusResponse CoordinatorStatus() {
    grpc::SslCredentialsOptions ssl;
    ssl.pem_root_certs = *artifacts::ReadFileBytes(Path("certs/ca.pem"));
    auto stub = v1::Coordinator::NewStub(
        grpc::CreateChannel("127.0.0.1:" + std::to_string(port_), grpc::SslCredentials(ssl)));
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + Scaled(std::chrono::seconds(30)));
    v1::GetStatusResponse status;
    const grpc::Status rpc = stub->GetStatus(&context, v1::GetStatusRequest(), &status);
    EXPECT_TRUE(rpc.ok()) << rpc.error_message();
    return status;
  }

  // Waits (up to two minutes each) for every client to exit; their exit codes.
  static std::vector<int> WaitForAll(std::vector<Subprocess>& clients) {
    std::vector<int> codes;
    for (Subprocess& client : clients) {
      std::optional<int> code;
      PollUntil([&] { return (code = client.WaitFor({})).has_value(); }, std::chrono::minutes(2));
      codes.push_back(code.value_or(-1));
    }
    return codes;
  }

  fs::path dir_;
  int port_ = 0;
};

TEST_F(CoordinatorE2eTest, TwentyTlsClientsTrainAndMatchTheSimulator) {
  Subprocess coordinator;
  StartCoordinator(coordinator,
                   {"--metrics-out", Path("metrics.jsonl"), "--model-out", Path("coordinator.pt")},
                   "coordinator.log");
  std::vector<Subprocess> clients;
  StartClients(clients);
  EXPECT_EQ(coordinator.Wait(), 0) << coordinator.Output();
  for (int i = 0; i < kClients; ++i) {
    EXPECT_EQ(clients[i].Wait(), 0) << "client " << i << ":\n" << clients[i].Output();
  }
  auto metrics = ReadJsonLines(Path("metrics.jsonl"));
  ASSERT_EQ(metrics.size(), 5u);
  for (int r = 0; r < 5; ++r) {
    EXPECT_EQ(metrics[r]["round"], r + 1);
    EXPECT_EQ(metrics[r]["participants"], kClients);
  }
  EXPECT_GT(metrics.back()["accuracy"].get<double>(), metrics.front()["accuracy"].get<double>());

  const std::vector<float> networked = LoadModel(Path("coordinator.pt"));
  const std::vector<float> simulated = SimulatedModel();
  ASSERT_EQ(networked.size(), simulated.size());
  double max_diff = 0;
  for (size_t i = 0; i < networked.size(); ++i) {
    max_diff = std::max(max_diff, static_cast<double>(std::abs(networked[i] - simulated[i])));
  }
  EXPECT_LE(max_diff, 1e-6);
  std::printf("max |coordinator - simulator| over %zu parameters: %g\n", networked.size(),
              max_diff);
}

// A model written in Python, shipped by the coordinator: it signs the TorchScript file at startup,
// half of the devices start without any model and download, verify and load it; the other half
// hold a copy of the file under another path (the model travels by its content hash). The result
// equals the simulator's.
TEST_F(CoordinatorE2eTest, SignedTorchScriptArtifactReachesDevicesAndMatchesTheSimulator) {
  const std::string model = std::string(FEDKIT_TORCHSCRIPT_FIXTURES) + "/fmnist_small_2nn.pt";
  const std::string device_copy = Path("device_copy_of_2nn.pt");
  fs::copy_file(model, device_copy, fs::copy_options::overwrite_existing);
  const artifacts::KeyPair key = WriteKeyPair("operator");
  Subprocess coordinator;
  StartCoordinator(coordinator,
                   {"--model", model, "--sign-key", Path("operator.key"), "--metrics-out",
                    Path("metrics.jsonl"), "--model-out", Path("coordinator.pt")},
                   "coordinator.log");
  EXPECT_THAT(coordinator.Output(),
              ::testing::HasSubstr("signed by key " + artifacts::Fingerprint(key.public_key)));
  std::vector<Subprocess> clients;
  StartClients(clients, "", kClients, [&](int i) -> std::vector<std::string> {
    if (i % 2 == 0) {  // downloads
      return {"--trusted-key", Path("operator.pub"), "--model-cache",
              Path("cache" + std::to_string(i))};
    }
    return {"--model", device_copy};
  });
  EXPECT_EQ(coordinator.Wait(), 0) << coordinator.Output();
  const std::string sha = artifacts::Sha256Hex(*artifacts::ReadFileBytes(model));
  for (int i = 0; i < kClients; ++i) {
    EXPECT_EQ(clients[i].Wait(), 0) << "client " << i << ":\n" << clients[i].Output();
    const bool downloads = i % 2 == 0;
    // Downloaded once (later rounds reuse the loaded model), and kept in the device's cache.
    EXPECT_EQ(clients[i].Output().find("downloaded artifact sha256:" + sha.substr(0, 12)) !=
                  std::string::npos,
              downloads)
        << clients[i].Output();
    if (downloads) {
      EXPECT_TRUE(fs::is_regular_file(Path("cache" + std::to_string(i)) + "/" + sha + ".pt"));
    }
  }
  auto metrics = ReadJsonLines(Path("metrics.jsonl"));
  ASSERT_EQ(metrics.size(), 5u);
  EXPECT_EQ(metrics.back()["participants"], kClients);
  EXPECT_GT(metrics.back()["accuracy"].get<double>(), metrics.front()["accuracy"].get<double>());

  const std::vector<float> networked = LoadModel(Path("coordinator.pt"), model);
  const std::vector<float> simulated = SimulatedModel(model);
  const std::vector<float> initial = LoadModel(model, model);
  ASSERT_EQ(networked.size(), simulated.size());
  ASSERT_EQ(networked.size(), initial.size());
  EXPECT_NE(networked, initial);
  double max_diff = 0;
  for (size_t i = 0; i < networked.size(); ++i) {
    max_diff = std::max(max_diff, static_cast<double>(std::abs(networked[i] - simulated[i])));
  }
  EXPECT_LE(max_diff, 1e-6);
  std::printf("TorchScript artifact: max |coordinator - simulator| over %zu parameters: %g\n",
              networked.size(), max_diff);
}

// Two attacks on the artifact, each refused by every device before anything is trained, and
// counted by the coordinator:
//   - tampered: the coordinator's model file was replaced by another model, and the operator's
//     .sig edited to name the new file's hash (the coordinator, which holds no public key, cannot
//     tell); the signature does not verify on the devices.
//   - wrong key: the artifact is signed by a key the devices do not trust; they refuse it from
//     the assignment alone, without downloading it.
TEST_F(CoordinatorE2eTest, TamperedArtifactAndWrongKeyAreRefusedOnEveryDevice) {
  constexpr int kDevices = 4;
  const std::string model = std::string(FEDKIT_TORCHSCRIPT_FIXTURES) + "/fmnist_small_2nn.pt";
  const std::string substitute = Path("substitute_2nn.pt");
  const std::string command = std::string(FEDKIT_TORCH_PYTHON) + " " + FEDKIT_SOURCE_DIR +
                              "/models/python/make_model.py 2nn " + substitute +
                              " --hidden 16 --seed 99";
  ASSERT_EQ(std::system(command.c_str()), 0);
  const artifacts::KeyPair key = WriteKeyPair("operator");
  WriteKeyPair("stranger");
  absl::StatusOr<artifacts::SignatureFile> genuine =
      artifacts::MakeSignatureFile(*artifacts::ReadFileBytes(model), key.private_key);
  ASSERT_TRUE(genuine.ok());
  artifacts::SignatureFile forged = *genuine;
  forged.sha256 = artifacts::Sha256(*artifacts::ReadFileBytes(substitute));
  ASSERT_TRUE(artifacts::WriteFileBytes(Path("forged.sig"), artifacts::FormatSignatureFile(forged),
                                        0644, true)
                  .ok());

  struct Attack {
    std::string name;
    std::vector<std::string> coordinator_flags;
    std::string device_key;
    std::string device_message;
    bool downloads;
  };
  const std::vector<Attack> attacks = {
      {"tampered",
       {"--model", substitute, "--model-signature", Path("forged.sig")},
       "operator.pub",
       "signature does not verify",
       true},
      {"wrong_key",
       {"--model", model, "--sign-key", Path("operator.key")},
       "stranger.pub",
       "which this device does not trust",
       false},
  };
  for (const Attack& attack : attacks) {
    SCOPED_TRACE(attack.name);
    std::vector<std::string> flags = attack.coordinator_flags;
    flags.insert(flags.end(), {"--rounds", "1", "--clients-per-round", std::to_string(kDevices)});
    Subprocess coordinator;
    port_ = 0;
    StartCoordinator(coordinator, flags, "coordinator_" + attack.name + ".log");
    std::vector<Subprocess> clients;
    StartClients(clients, "", kDevices, [&](int i) -> std::vector<std::string> {
      return {"--trusted-key", Path(attack.device_key), "--model-cache",
              Path(attack.name + "_cache" + std::to_string(i))};
    });
    const std::vector<int> codes = WaitForAll(clients);
    for (int i = 0; i < kDevices; ++i) {
      const std::string out = clients[i].Output();
      EXPECT_EQ(codes[i], 1) << out;
      EXPECT_THAT(out, ::testing::HasSubstr("round 1: "));
      EXPECT_THAT(out, ::testing::HasSubstr(attack.device_message));
      EXPECT_THAT(out, ::testing::HasSubstr("the coordinator was told"));
      EXPECT_THAT(out, ::testing::Not(::testing::HasSubstr("trained on")));
      EXPECT_EQ(out.find("downloaded artifact") != std::string::npos, attack.downloads) << out;
      EXPECT_FALSE(fs::exists(Path(attack.name + "_cache" + std::to_string(i))));
    }
    const v1::GetStatusResponse status = CoordinatorStatus();
    ASSERT_EQ(status.declines().count("artifact_not_approved"), 1u) << status.DebugString();
    EXPECT_EQ(status.declines().at("artifact_not_approved"), kDevices);
    EXPECT_THAT(coordinator.Output(),
                ::testing::HasSubstr("declined its round 1 assignment (artifact_not_approved)"));
    EXPECT_EQ(status.history_size(), 0);  // nothing was committed
    EXPECT_EQ(status.received(), 0);
    coordinator.Signal(SIGKILL);
    coordinator.Wait();
  }
}

// A device holding another TorchScript file is refused by name, not trained on the wrong model.
TEST_F(CoordinatorE2eTest, DeviceWithAnotherTorchScriptFileIsRefused) {
  const std::string model = std::string(FEDKIT_TORCHSCRIPT_FIXTURES) + "/fmnist_small_2nn.pt";
  const std::string other = Path("other_2nn.pt");
  const std::string command = std::string(FEDKIT_TORCH_PYTHON) + " " + FEDKIT_SOURCE_DIR +
                              "/models/python/make_model.py 2nn " + other +
                              " --hidden 16 --seed 99";
  ASSERT_EQ(std::system(command.c_str()), 0);
  Subprocess coordinator;
  StartCoordinator(coordinator, {"--model", model, "--rounds", "1", "--clients-per-round", "1"},
                   "coordinator.log");
  Subprocess client;
  ASSERT_TRUE(client.Start({FEDKIT_CLIENT_BINARY, "--server", "127.0.0.1:" + std::to_string(port_),
                            "--tls-ca", Path("certs/ca.pem"), "--num-clients", "20",
                            "--client-index", "0", "--seed", kSeed, "--model", other},
                           Path("client.log")));
  // The device refuses the assignment (and keeps checking in: the round cannot use it).
  EXPECT_TRUE(PollUntil(
      [&] {
        return client.Output().find("but this client trains 'torchscript:sha256:") !=
                   std::string::npos ||
               client.WaitFor({}).has_value();
      },
      std::chrono::seconds(120)))
      << client.Output();
  EXPECT_THAT(client.Output(), ::testing::HasSubstr("assigns model 'torchscript:sha256:"));
  EXPECT_THAT(client.Output(), ::testing::HasSubstr("but this client trains 'torchscript:sha256:"));
  // Nothing was trained or committed.
  EXPECT_THAT(coordinator.Output(),
              ::testing::Not(::testing::HasSubstr("round    1  participants")));
  client.Signal(SIGKILL);
  coordinator.Signal(SIGKILL);
}

// Stops the coordinator with `sig` once two rounds are committed (and so checkpointed) and the
// third is under way, restarts it on the same checkpoints, and checks that the run completes with
// each round committed exactly once and the simulator's final model. SIGKILL: a crash. SIGTERM:
// a graceful stop, which abandons the round in progress, checkpoints and exits 0.
void CoordinatorE2eTest::StopMidRunAndResume(int sig) {
  const std::vector<std::string> extra = {"--checkpoint-dir", Path("ckpt"),
                                          "--model-out",      Path("coordinator.pt"),
                                          "--metrics-out",    Path("metrics.jsonl")};
  Subprocess first;
  StartCoordinator(first, extra, "coordinator1.log");
  std::vector<Subprocess> clients;
  StartClients(clients);
  ASSERT_TRUE(PollUntil(
      [&] {
        auto store = server::CheckpointStore::Open(Path("ckpt"));
        auto newest = store.ok() ? store->LoadNewest()
                                 : absl::StatusOr<std::optional<v1::Checkpoint>>(std::nullopt);
        return newest.ok() && newest->has_value() && (*newest)->rounds_completed() >= 2;
      },
      std::chrono::minutes(5)))
      << first.Output();
  first.Signal(sig);
  EXPECT_EQ(first.Wait(), sig == SIGKILL ? 128 + SIGKILL : 0) << first.Output();
  if (sig == SIGTERM) {
    EXPECT_THAT(first.Output(), ::testing::HasSubstr("Terminated: stopping after the commit"));
    EXPECT_THAT(first.Output(), ::testing::HasSubstr("rounds committed, checkpoint in"));
  }
  int64_t committed_before_kill = 0;
  {
    auto store = server::CheckpointStore::Open(Path("ckpt"));
    ASSERT_TRUE(store.ok());
    auto newest = store->LoadNewest();
    ASSERT_TRUE(newest.ok() && newest->has_value());
    committed_before_kill = (*newest)->rounds_completed();
  }
  // Rounds take far longer than the 20 ms poll, so the signal lands mid-run.
  ASSERT_LT(committed_before_kill, 5);

  Subprocess second;
  StartCoordinator(second, extra, "coordinator2.log");  // same port: clients reconnect
  EXPECT_EQ(second.Wait(), 0) << second.Output();
  EXPECT_THAT(second.Output(),
              ::testing::HasSubstr("resumed after round " + std::to_string(committed_before_kill)));
  for (int i = 0; i < kClients; ++i) {
    EXPECT_EQ(clients[i].Wait(), 0) << "client " << i << ":\n" << clients[i].Output();
  }

  auto store = server::CheckpointStore::Open(Path("ckpt"));
  ASSERT_TRUE(store.ok());
  auto last = store->LoadNewest();
  ASSERT_TRUE(last.ok() && last->has_value());
  ASSERT_EQ((*last)->history_size(), 5);
  for (int r = 0; r < 5; ++r) EXPECT_EQ((*last)->history(r).round(), r + 1);
  // The metrics file, appended to by both processes: each round once, in order.
  std::vector<int64_t> logged_rounds;
  {
    std::ifstream metrics(Path("metrics.jsonl"));
    for (std::string line; std::getline(metrics, line);) {
      logged_rounds.push_back(nlohmann::json::parse(line).at("round").get<int64_t>());
    }
  }
  EXPECT_EQ(logged_rounds, (std::vector<int64_t>{1, 2, 3, 4, 5}));

  // Rounds are deterministic, so a lost or repeated round would change the final model.
  const std::vector<float> networked = LoadModel(Path("coordinator.pt"));
  const std::vector<float> simulated = SimulatedModel();
  ASSERT_EQ(networked.size(), simulated.size());
  for (size_t i = 0; i < networked.size(); ++i) ASSERT_NEAR(networked[i], simulated[i], 1e-6) << i;
}

TEST_F(CoordinatorE2eTest, CoordinatorKilledMidRunResumesWithoutLosingOrRepeatingRounds) {
  StopMidRunAndResume(SIGKILL);
}

TEST_F(CoordinatorE2eTest, CoordinatorTerminatedMidRunStopsCleanlyAndResumesExactly) {
  StopMidRunAndResume(SIGTERM);
}

// --print-config prints every flag's effective value as a --config file; reading it back gives
// the same configuration.
TEST_F(CoordinatorE2eTest, PrintConfigShowsEveryFlagAndReadsBackTheSame) {
  Subprocess first;
  ASSERT_TRUE(
      first.Start({FEDKIT_COORDINATOR_BINARY, "--rounds", "7", "--insecure", "--print-config"},
                  Path("config1.yaml")));
  ASSERT_EQ(first.Wait(), 0) << first.Output();
  const std::string config = first.Output();
  const std::string lines = "\n" + config;  // every line starts after a newline
  EXPECT_THAT(config, ::testing::HasSubstr("rounds: 7\n"));
  EXPECT_THAT(config, ::testing::HasSubstr("clients-per-round: 10\n"));  // a default
  EXPECT_THAT(config, ::testing::HasSubstr("insecure: true\n"));
  // Every long flag --help lists (but these three) is in the file.
  Subprocess help;
  ASSERT_TRUE(help.Start({FEDKIT_COORDINATOR_BINARY, "--help"}, Path("help.txt")));
  ASSERT_EQ(help.Wait(), 0);
  const std::string usage = help.Output();
  const std::regex flag("\n\\s+--([a-z0-9-]+)");
  int flags = 0;
  for (auto it = std::sregex_iterator(usage.begin(), usage.end(), flag);
       it != std::sregex_iterator(); ++it) {
    const std::string name = (*it)[1];
    if (name == "help" || name == "config" || name == "print-config") continue;
    ++flags;
    // Set ones as keys, unset ones (no default) as comments.
    EXPECT_TRUE(lines.find("\n" + name + ":") != std::string::npos ||
                lines.find("\n# " + name + ": (unset)") != std::string::npos)
        << name;
  }
  EXPECT_GT(flags, 60);
  Subprocess second;
  ASSERT_TRUE(
      second.Start({FEDKIT_COORDINATOR_BINARY, "--config", Path("config1.yaml"), "--print-config"},
                   Path("config2.yaml")));
  ASSERT_EQ(second.Wait(), 0) << second.Output();
  EXPECT_EQ(second.Output(), config);
}

// --log-format json: every line the coordinator writes is one JSON object with a level; a bad
// value is a usage error naming the flag.
TEST_F(CoordinatorE2eTest, JsonLogsAreOneObjectPerLineWithLevels) {
  Subprocess coordinator;
  StartCoordinator(coordinator, {"--log-format", "json"}, "coordinator.log");
  coordinator.Signal(SIGTERM);
  EXPECT_EQ(coordinator.Wait(), 0) << coordinator.Output();
  std::istringstream lines(coordinator.Output());
  std::map<std::string, std::string> level_of;
  for (std::string line; std::getline(lines, line);) {
    const nlohmann::json object = nlohmann::json::parse(line, nullptr, false);
    ASSERT_TRUE(object.is_object()) << line;
    EXPECT_EQ(object.at("logger"), "fedkit-coordinator");
    level_of[object.at("message").get<std::string>().substr(0, 15)] = object.at("level");
  }
  EXPECT_EQ(level_of["serving on port"], "info");
  EXPECT_EQ(level_of["neither --auth-"], "warning");  // no tokens, no client certificates
  EXPECT_EQ(level_of["Terminated: sto"], "info");

  Subprocess refused;
  ASSERT_TRUE(refused.Start({FEDKIT_COORDINATOR_BINARY, "--insecure", "--log-format", "xml"},
                            Path("refused.log")));
  EXPECT_EQ(refused.Wait(), 2);
  EXPECT_THAT(refused.Output(), ::testing::HasSubstr("--log-format: 'xml' is not text or json"));
}

// A free TCP port on loopback (bound, read, released: another process could take it meanwhile,
// which would fail the test loudly, not silently).
int FreeLoopbackPort() {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t length = sizeof(addr);
  if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
      getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &length) != 0) {
    close(fd);
    return 0;
  }
  close(fd);
  return ntohs(addr.sin_port);
}

// Standard output of a shell command; its exit code in *code.
std::string Shell(const std::string& command, int* code = nullptr) {
  std::string out;
  FILE* pipe = popen(command.c_str(), "r");
  if (pipe == nullptr) return out;
  char buffer[4096];
  for (size_t n; (n = fread(buffer, 1, sizeof(buffer), pipe)) > 0;) out.append(buffer, n);
  const int status = pclose(pipe);
  if (code != nullptr) *code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return out;
}

// The real Prometheus server (Debian's `prometheus`) scrapes a live coordinator's
// --metrics-listen endpoint on loopback; its HTTP API then answers queries on what it scraped,
// and `promtool check metrics` accepts the exposition.
TEST_F(CoordinatorE2eTest, PrometheusScrapesTheCoordinatorsMetrics) {
  if (!fs::exists("/usr/bin/prometheus") || !fs::exists("/usr/bin/promtool") ||
      !fs::exists("/usr/bin/curl")) {
    GTEST_SKIP() << "needs Debian's prometheus and curl (scripts/install-deps.sh installs them)";
  }
  constexpr int kDevices = 4;
  const int metrics_port = FreeLoopbackPort();
  const int prometheus_port = FreeLoopbackPort();
  ASSERT_GT(metrics_port, 0);
  ASSERT_GT(prometheus_port, 0);
  Subprocess coordinator;
  StartCoordinator(coordinator,
                   {"--rounds", "3", "--clients-per-round", std::to_string(kDevices), "--linger",
                    "600", "--metrics-listen", "127.0.0.1:" + std::to_string(metrics_port)},
                   "coordinator.log");
  ASSERT_THAT(coordinator.Output(),
              ::testing::HasSubstr("Prometheus metrics on port " + std::to_string(metrics_port)));
  {
    std::ofstream config(Path("prometheus.yml"));
    config << "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
           << "scrape_configs:\n  - job_name: fedkit\n    static_configs:\n"
           << "      - targets: ['127.0.0.1:" << metrics_port << "']\n";
  }
  Subprocess prometheus;
  ASSERT_TRUE(
      prometheus.Start({"/usr/bin/prometheus", "--config.file=" + Path("prometheus.yml"),
                        "--storage.tsdb.path=" + Path("tsdb"),
                        "--web.listen-address=127.0.0.1:" + std::to_string(prometheus_port)},
                       Path("prometheus.log")));
  std::vector<Subprocess> clients;
  // Device 0 sends no telemetry (--no-telemetry); the others do, with their uploads over gRPC.
  StartClients(clients, "seed", kDevices, [&](int i) {
    std::vector<std::string> flags = {"--num-clients", std::to_string(kDevices)};
    if (i == 0) flags.push_back("--no-telemetry");
    return flags;
  });

  // One instant-vector query through Prometheus' HTTP API: the samples' values by their labels
  // (label values joined with ','), or empty while it has none.
  auto query = [&](const std::string& promql) {
    std::map<std::string, double> values;
    const std::string body =
        Shell("curl -s --max-time 10 http://127.0.0.1:" + std::to_string(prometheus_port) +
              "/api/v1/query --data-urlencode 'query=" + promql + "'");
    const nlohmann::json reply = nlohmann::json::parse(body, nullptr, /*allow_exceptions=*/false);
    if (!reply.is_object() || reply.value("status", "") != "success") return values;
    for (const auto& sample : reply["data"]["result"]) {
      std::string labels;
      for (const auto& [name, value] : sample["metric"].items()) {
        if (name == "__name__" || name == "instance" || name == "job") continue;
        labels += (labels.empty() ? "" : ",") + value.get<std::string>();
      }
      values[labels] = std::stod(sample["value"][1].get<std::string>());
    }
    return values;
  };
  // All three rounds committed, as Prometheus scraped it.
  ASSERT_TRUE(PollUntil(
      [&] {
        const auto committed = query("fedkit_rounds_committed_total");
        return committed.count("") > 0 && committed.at("") == 3;
      },
      std::chrono::minutes(5)))
      << coordinator.Output() << prometheus.Output();
  ASSERT_TRUE(
      PollUntil([&] { return query("fedkit_round_phase{phase=\"finished\"}")["finished"] == 1; },
                std::chrono::minutes(1)));
  const v1::GetStatusResponse status = CoordinatorStatus();
  ASSERT_EQ(status.history_size(), 3);
  EXPECT_EQ(query("up")[""], 1);
  EXPECT_EQ(query("fedkit_rounds_completed")[""], 3);
  EXPECT_EQ(query("fedkit_rounds_planned")[""], 3);
  EXPECT_EQ(query("fedkit_round_participants")[""], kDevices);
  EXPECT_NEAR(query("fedkit_round_accuracy_ratio")[""], status.history(2).accuracy(), 1e-9);
  EXPECT_EQ(query("fedkit_round_duration_seconds_count")[""], 3);
  EXPECT_EQ(query("fedkit_updates_total")["plain,accepted"], 3 * kDevices);
  EXPECT_EQ(query("fedkit_update_processing_seconds_count")["plain"], 3 * kDevices);
  // Every device checked in, downloaded each round's model and uploaded its update.
  EXPECT_GE(query("fedkit_rpc_duration_seconds_count{method=\"CheckIn\"}")["OK,CheckIn"],
            3 * kDevices);
  EXPECT_EQ(query("fedkit_rpc_duration_seconds_count{method=\"UploadUpdate\"}")["OK,UploadUpdate"],
            3 * kDevices);
  // The model is ~ 4 bytes a parameter, each round to each device.
  EXPECT_GT(query("fedkit_rpc_sent_bytes_total")["GetModel"], 3 * kDevices * 4 * 1000);
  EXPECT_GT(query("fedkit_rpc_received_bytes_total")["UploadUpdate"], 3 * kDevices * 4 * 1000);
  EXPECT_GT(query("process_resident_memory_bytes")[""], 1 << 20);
  EXPECT_GT(query("process_open_fds")[""], 0);
  // Device telemetry: per round the distribution over the three devices that sent it, in
  // GetStatus and as Prometheus gauges of the last round's percentiles.
  EXPECT_EQ(status.device_telemetry_invalid(), 0);
  for (const v1::RoundSummary& round : status.history()) {
    const v1::DeviceTelemetrySummary& t = round.device_telemetry();
    EXPECT_EQ(t.reports(), kDevices - 1) << round.ShortDebugString();
    EXPECT_EQ(t.training_seconds().count(), kDevices - 1);
    EXPECT_GT(t.training_seconds().p50(), 0);
    EXPECT_LE(t.training_seconds().p50(), t.training_seconds().p90());
    EXPECT_GT(t.examples_per_second().p50(), 0);
    EXPECT_GT(t.cpu_seconds().p50(), 0);
    EXPECT_GT(t.peak_memory_bytes().p50(), 1 << 20);
    EXPECT_GE(t.model_load_seconds().p50(), 0);
    EXPECT_GT(t.upload_bytes().p50(), 4 * 1000);    // the delta, 4 bytes a parameter
    EXPECT_GT(t.download_bytes().p50(), 4 * 1000);  // the model
  }
  EXPECT_EQ(query("fedkit_device_telemetry_reports")[""], kDevices - 1);
  EXPECT_NEAR(query("fedkit_device_training_seconds")["50"],
              status.history(2).device_telemetry().training_seconds().p50(), 1e-9);
  EXPECT_NEAR(query("fedkit_device_upload_bytes")["90"],
              status.history(2).device_telemetry().upload_bytes().p90(), 1e-9);

  // promtool lints the exposition itself (names, units, help, types).
  int lint = -1;
  const std::string lint_output =
      Shell("curl -s --max-time 10 http://127.0.0.1:" + std::to_string(metrics_port) +
                "/metrics | promtool check metrics 2>&1",
            &lint);
  EXPECT_EQ(lint, 0) << lint_output;

  coordinator.Signal(SIGTERM);
  EXPECT_EQ(coordinator.Wait(), 0) << coordinator.Output();
  EXPECT_EQ(WaitForAll(clients), std::vector<int>(kDevices, 0));
  prometheus.Signal(SIGTERM);
  prometheus.Wait();
}

// Secure aggregation over the network, with devices killed mid-round: two clients are SIGKILLed
// right after sharing their keys (so they are in the protocol but never upload). The round must
// complete with the 18 survivors, and the committed model must equal, bit for bit, the
// simulator's round in which exactly those two clients dropped at upload: the coordinator
// recovered the survivors' exact sum (the masks of the dead clients removed through their key
// shares), and nothing else.
// A new user's first secure aggregation run: --clip-norm 5 --secagg secagg+ with every other flag
// at its default starts (the modulus is derived for the default --max-examples of 2^20), and an
// explicit modulus that cannot hold them is refused with a message naming the flags to change.
TEST_F(CoordinatorE2eTest, SecureAggregationDefaultsStartAndATooSmallModulusNamesTheFlags) {
  {
    Subprocess coordinator;
    StartCoordinator(coordinator, {"--secagg", "secagg+", "--clip-norm", "5"}, "coordinator.log");
    EXPECT_EQ(CoordinatorStatus().phase(), "waiting");
  }  // killed here
  Subprocess refused;
  ASSERT_TRUE(
      refused.Start({FEDKIT_COORDINATOR_BINARY, "--listen", "127.0.0.1:0", "--insecure", "--secagg",
                     "secagg+", "--clip-norm", "5", "--secagg-modulus-bits", "32"},
                    Path("refused.log")));
  EXPECT_EQ(refused.Wait(), 2);
  const std::string out = refused.Output();
  EXPECT_THAT(out, ::testing::HasSubstr("--secagg-modulus-bits"));
  EXPECT_THAT(out, ::testing::HasSubstr("--max-examples"));
}

// Two of ten devices are gone: with --min-clients 8 the rounds start with the eight left once the
// selection window ends, and close when all eight reported (not at the round deadline).
TEST_F(CoordinatorE2eTest, AShrunkenFleetRunsRoundsWithMinClients) {
  Subprocess coordinator;
  StartCoordinator(
      coordinator,
      {"--rounds", "2", "--clients-per-round", "10", "--min-clients", "8", "--selection-timeout",
       "1", "--round-timeout", "600", "--metrics-out", Path("metrics.jsonl")},
      "coordinator.log");
  EXPECT_THAT(CoordinatorStatus().waiting_for(), ::testing::HasSubstr("clients: 0 waiting"));
  std::vector<Subprocess> clients;
  StartClients(clients, "seed", 8);
  EXPECT_EQ(WaitForAll(clients), std::vector<int>(8, 0));
  ASSERT_TRUE(
      PollUntil([&] { return coordinator.WaitFor({}).has_value(); }, std::chrono::minutes(2)));
  EXPECT_EQ(coordinator.Wait(), 0) << coordinator.Output();
  const auto metrics = ReadJsonLines(Path("metrics.jsonl"));
  ASSERT_EQ(metrics.size(), 2u);
  for (const auto& m : metrics) {
    EXPECT_EQ(m["participants"].get<int>(), 8);
    EXPECT_LT(m["seconds"].get<double>(), 600);  // closed by the eighth update, not the deadline
  }
}

TEST_F(CoordinatorE2eTest, SecureAggregationWithKilledClientsCommitsTheSurvivorsExactSum) {
  const std::vector<std::string> secure = {"--secagg", "secagg+", "--clip-norm", "5"};
  std::vector<std::string> extra = {"--rounds",
                                    "1",
                                    "--max-examples",
                                    "3000",
                                    "--round-timeout",
                                    ScaledSeconds(20),
                                    "--secagg-phase-timeout",
                                    ScaledSeconds(20),
                                    "--metrics-out",
                                    Path("metrics.jsonl"),
                                    "--model-out",
                                    Path("coordinator.pt")};
  extra.insert(extra.end(), secure.begin(), secure.end());
  Subprocess coordinator;
  StartCoordinator(coordinator, extra, "coordinator.log");
  std::vector<Subprocess> clients;
  StartClients(clients);
  const std::vector<int> victims = {3, 7};
  for (int victim : victims) {
    ASSERT_TRUE(
        PollUntil([&] { return clients[victim].Output().find("keys shared") != std::string::npos; },
                  std::chrono::minutes(2)))
        << clients[victim].Output();
    clients[victim].Signal(SIGKILL);
  }
  EXPECT_EQ(coordinator.Wait(), 0) << coordinator.Output();
  for (int i = 0; i < kClients; ++i) {
    const bool killed = std::find(victims.begin(), victims.end(), i) != victims.end();
    EXPECT_EQ(clients[i].Wait(), killed ? 128 + SIGKILL : 0) << "client " << i << ":\n"
                                                             << clients[i].Output();
    if (killed) {
      EXPECT_THAT(clients[i].Output(),
                  ::testing::Not(::testing::HasSubstr("masked input uploaded")))
          << "client " << i << " was killed too late to test a dropout";
    }
  }
  auto metrics = ReadJsonLines(Path("metrics.jsonl"));
  ASSERT_EQ(metrics.size(), 1u);
  EXPECT_EQ(metrics[0]["participants"], kClients - 2);

  auto simulate = [&](const std::string& drops, const std::string& out) {
    std::string args =
        "--dataset fmnist --clients 20 --clients-per-round 20 --rounds 1 --partition iid --seed " +
        std::string(kSeed) +
        " --eval-every 0 --threads 2 --secagg secagg+ --clip-norm 5 --max-client-weight 3000 "
        "--model-out " +
        Path(out) + drops;
    for (const auto& a : kTraining) args += " " + a;
    Result r = RunSim(args);
    EXPECT_EQ(r.exit_code, 0) << r.output;
    return LoadModel(Path(out));
  };
  const std::vector<float> networked = LoadModel(Path("coordinator.pt"));
  const std::vector<float> survivors = simulate(" --drop-clients 3@upload,7@upload", "sim18.pt");
  const std::vector<float> everyone = simulate("", "sim20.pt");
  ASSERT_EQ(networked.size(), survivors.size());
  EXPECT_EQ(networked, survivors);
  EXPECT_NE(networked, everyone);  // the two dead clients' updates are really absent
}

// DP flags of the coordinator.
class CoordinatorDpE2eTest : public CoordinatorE2eTest {};

// Each bad DP combination exits with 2 and a message naming the flag to change.
TEST_F(CoordinatorDpE2eTest, DpFlagErrorsNameTheFlag) {
  const std::vector<std::pair<std::vector<std::string>, std::string>> cases = {
      {{"--dp", "bogus"}, "--dp"},
      {{"--dp", "distributed", "--clip-norm", "1", "--dp-population", "100"}, "--dp: distributed"},
      {{"--dp", "central", "--dp-population", "100"}, "--clip-norm"},
      {{"--dp", "central", "--clip-norm", "1"}, "--dp-population"},
      {{"--adaptive-clip-quantile", "0.5"}, "--adaptive-clip-quantile"},
      {{"--dp-noise-seed", "3"}, "--dp-noise-seed"},
      {{"--dp", "central", "--clip-norm", "1", "--dp-population", "100", "--dp-dropout-tolerance",
        "0.1"},
       "--dp-dropout-tolerance"},
      {{"--dp", "central", "--clip-norm", "1", "--dp-population", "100", "--noise-multiplier", "5",
        "--adaptive-clip-quantile", "0.5"},
       "--noise-multiplier"},
      // A DP round samples only from --dp-population waiting devices: q <= 1 needs the
      // over-selected sample to fit in it.
      {{"--dp", "central", "--clip-norm", "1", "--dp-population", "3", "--clients-per-round", "3",
        "--over-select", "0.3"},
       "--dp-population: (3) must be at least the devices a DP round assigns, "
       "ceil(--clients-per-round x (1 + --over-select)) = 4"},
      {{"--allow-privacy-rollback"}, "--allow-privacy-rollback"},
  };
  ExpectUsageErrors(cases);
}

// A compression spec the coordinator cannot use exits with 2, naming the flag.
TEST_F(CoordinatorE2eTest, CompressionFlagErrorsNameTheFlag) {
  const std::vector<std::pair<std::vector<std::string>, std::string>> cases = {
      {{"--compression", "quantize:0"}, "--compression"},
      {{"--compression", "zip"}, "--compression"},
      {{"--secagg", "secagg+", "--clip-norm", "1", "--compression", "topk:0.1"}, "--compression"},
      {{"--download-compression", "float8"},
       "--download-compression: download encoding \"float8\" is not one of: float32, float16, "
       "quantize:8"},
  };
  ExpectUsageErrors(cases);
}

TEST_F(CoordinatorE2eTest, AggregatorFlagErrorsNameTheFlag) {
  const std::vector<std::vector<std::string>> cases = {
      {"--aggregator", "krum"},
      {"--aggregator", "trimmed-mean:0.5"},
      {"--aggregator", "median", "--secagg", "secagg+", "--clip-norm", "1"},
      {"--aggregator", "multi-krum:1,3", "--dp", "central", "--clip-norm", "1", "--dp-population",
       "100"},
  };
  std::vector<std::pair<std::vector<std::string>, std::string>> named;
  for (const auto& flags : cases) named.emplace_back(flags, "--aggregator");
  ExpectUsageErrors(named);
}

TEST_F(CoordinatorE2eTest, FedBuffFlagErrorsNameTheFlag) {
  ExpectUsageErrors({
      {{"--algorithm", "scaffold"}, "--algorithm: is fedavg or fedbuff"},
      {{"--buffer-size", "3"}, "--buffer-size: needs --algorithm fedbuff"},
      {{"--staleness", "constant"}, "--staleness: needs --algorithm fedbuff"},
      {{"--algorithm", "fedbuff", "--clients-per-round", "5"},
       "--clients-per-round: not with --algorithm fedbuff"},
      {{"--algorithm", "fedbuff", "--over-select", "0.3"},
       "--over-select: not with --algorithm fedbuff"},
      {{"--algorithm", "fedbuff", "--staleness", "fast"}, "--staleness: staleness weighting is"},
      {{"--algorithm", "fedbuff", "--buffer-size", "0"}, "--buffer-size"},
      {{"--algorithm", "fedbuff", "--secagg", "secagg+", "--clip-norm", "1", "--buffer-size", "8",
        "--concurrency", "6"},
       "--concurrency (6) is below --buffer-size (8): with --secagg, --algorithm fedbuff runs"},
      {{"--algorithm", "fedbuff", "--aggregator", "median"},
       "--algorithm fedbuff does not run with --aggregator"},
  });
}

// Issue 14, "What it must show" 1: FedBuff over gRPC. Eight fedkit-client processes, two of them
// slow (--seconds-per-example: a round of their 3,000 examples takes at least 3 s, so the run may
// well end before they upload: they are then told the run is over and exit cleanly); at most 6
// train at once and every 3 uploads make a round. Every round commits exactly 3 updates, some
// arrive stale, and the model learns. (results/fedbuff/grpc.md has the full-size run.)
TEST_F(CoordinatorE2eTest, FedBuffCommitsBuffersOfKFromDevicesOfTwoSpeeds) {
  Subprocess coordinator;
  StartCoordinator(
      coordinator,
      {"--algorithm", "fedbuff", "--buffer-size", "3", "--concurrency", "6", "--rounds", "10",
       "--min-available", "8", "--linger", "10", "--metrics-out", Path("metrics.jsonl")},
      "coordinator.log");
  std::vector<Subprocess> clients;
  StartClients(clients, "seed", 8, [](int i) {
    return i < 2 ? std::vector<std::string>{"--seconds-per-example", "0.001"}
                 : std::vector<std::string>{};
  });
  EXPECT_EQ(WaitForAll(clients), std::vector<int>(8, 0));
  ASSERT_TRUE(
      PollUntil([&] { return coordinator.WaitFor({}).has_value(); }, std::chrono::minutes(2)));
  EXPECT_EQ(coordinator.Wait(), 0) << coordinator.Output();
  const auto metrics = ReadJsonLines(Path("metrics.jsonl"));
  ASSERT_EQ(metrics.size(), 10u) << coordinator.Output();
  int64_t stale = 0;
  for (size_t i = 0; i < metrics.size(); ++i) {
    const auto& m = metrics[i];
    EXPECT_EQ(m["round"].get<int64_t>(), static_cast<int64_t>(i + 1));
    EXPECT_EQ(m["participants"].get<int64_t>(), 3) << m.dump();
    ASSERT_TRUE(m.contains("staleness_max")) << m.dump();
    EXPECT_GE(m["staleness_mean"].get<double>(), 0.0);
    EXPECT_LE(m["staleness_mean"].get<double>(), m["staleness_max"].get<double>());
    stale = std::max(stale, m["staleness_max"].get<int64_t>());
  }
  // All eight wait before the first assignment (--min-available 8, so that clients started one by
  // one under a sanitizer are all there: in a first version a run over before the eighth started
  // left it retrying a coordinator that had exited): six devices train from version 0 and the
  // first three uploads commit, so the other three arrive at least one version stale. --linger 10
  // keeps telling devices the run is over while a paced one still holds its last upload.
  EXPECT_GE(stale, 1);
  EXPECT_GT(metrics.back()["accuracy"].get<double>(), 0.5) << metrics.back().dump();
}

// FedBuff under secure aggregation over gRPC: each buffer is a cohort of 3 devices that run the
// protocol among themselves (CoordinatorOptions::fedbuff); at most 6 devices, so two cohorts,
// train at once. Every commit is one cohort's unmasked sum: 3 participants, one staleness for all
// of them, and the model learns.
TEST_F(CoordinatorE2eTest, FedBuffUnderSecureAggregationCommitsCohortsOfK) {
  Subprocess coordinator;
  StartCoordinator(coordinator,
                   {"--algorithm", "fedbuff", "--buffer-size", "3", "--concurrency", "6",
                    "--rounds", "6", "--secagg", "secagg", "--clip-norm", "1", "--min-available",
                    "6", "--linger", "10", "--metrics-out", Path("metrics.jsonl")},
                   "coordinator.log");
  std::vector<Subprocess> clients;
  StartClients(clients, "seed", 6);
  EXPECT_EQ(WaitForAll(clients), std::vector<int>(6, 0));
  ASSERT_TRUE(
      PollUntil([&] { return coordinator.WaitFor({}).has_value(); }, std::chrono::minutes(2)));
  EXPECT_EQ(coordinator.Wait(), 0) << coordinator.Output();
  const auto metrics = ReadJsonLines(Path("metrics.jsonl"));
  ASSERT_EQ(metrics.size(), 6u) << coordinator.Output();
  int64_t stale = 0;
  for (size_t i = 0; i < metrics.size(); ++i) {
    const auto& m = metrics[i];
    EXPECT_EQ(m["round"].get<int64_t>(), static_cast<int64_t>(i + 1));
    EXPECT_EQ(m["participants"].get<int64_t>(), 3) << m.dump();
    EXPECT_EQ(m["assigned"].get<int64_t>(), 3) << m.dump();
    // One cohort, one staleness.
    EXPECT_EQ(m["staleness_mean"].get<double>(), m["staleness_max"].get<double>()) << m.dump();
    stale = std::max(stale, m["staleness_max"].get<int64_t>());
  }
  // Two cohorts start from version 0; the second to finish is at least one version stale.
  EXPECT_GE(stale, 1);
  EXPECT_GT(metrics.back()["accuracy"].get<double>(), 0.5) << metrics.back().dump();
}

// Issue 11: the privacy ledger beside the checkpoints. A DP run's newest checkpoint is lost; the
// restart would resume from the one before and re-run a released round unaccounted, so it is
// refused, naming the ledger and the override, and starts only with --allow-privacy-rollback.
TEST_F(CoordinatorDpE2eTest, ALostCheckpointIsNotReRunWithoutThePrivacyRollbackOverride) {
  const std::vector<std::string> dp = {"--dp",
                                       "central",
                                       "--clip-norm",
                                       "1",
                                       "--noise-multiplier",
                                       "1",
                                       "--dp-population",
                                       std::to_string(kClients),
                                       "--checkpoint-dir",
                                       Path("ckpt")};
  Subprocess first;
  StartCoordinator(first, dp, "coordinator1.log");
  std::vector<Subprocess> clients;
  StartClients(clients);
  EXPECT_EQ(first.Wait(), 0) << first.Output();
  for (int code : WaitForAll(clients)) EXPECT_EQ(code, 0);
  auto ledger = server::ParsePrivacyLedger(
      *artifacts::ReadFileBytes(Path("ckpt/" + std::string(server::kPrivacyLedgerFileName))));
  ASSERT_TRUE(ledger.ok()) << ledger.status();
  ASSERT_EQ(ledger->records.size(), 5u);
  EXPECT_EQ(ledger->records[4].round, 5);
  EXPECT_EQ(ledger->records[4].sampling_rate, 1.0);  // 20 of the 20 waiting
  ASSERT_TRUE(fs::remove(Path("ckpt/checkpoint-00000005.pb")));

  Subprocess refused;  // on the first one's port, which it has closed
  ASSERT_TRUE(refused.Start(CoordinatorArgv(dp), Path("coordinator2.log")));
  EXPECT_EQ(refused.Wait(), 1) << refused.Output();
  EXPECT_THAT(refused.Output(), ::testing::HasSubstr("privacy-ledger: the privacy ledger records "
                                                     "round 5 as released, but the checkpoint "
                                                     "resumes after round 4"));
  EXPECT_THAT(refused.Output(), ::testing::HasSubstr("--allow-privacy-rollback"));

  std::vector<std::string> with_override = dp;
  with_override.push_back("--allow-privacy-rollback");
  Subprocess overridden;
  StartCoordinator(overridden, with_override, "coordinator3.log");
  EXPECT_THAT(overridden.Output(), ::testing::HasSubstr("resumed after round 4"));
  overridden.Signal(SIGKILL);
  overridden.Wait();
}

// Issue 10's floor 1: one round engine. In each mode, eight fedkit-client processes whose ids do
// not sort like their indices train three rounds of three clients each, over-selected to four and
// sampled from the whole fleet (--min-available 8). In round 1 one assigned device goes silent and
// is killed mid-round (fedkit-client --go-silent: in a plain round where it would upload its
// update, after training; under secure aggregation where it would share its keys, after
// advertising them, so the round waits for it until the phase deadline and goes on without it).
// Once round 1 has committed the device is started again, as a crashed phone comes back, so that
// every round samples from the same eight. fedkit-sim then replays the coordinator's participation
// record: it samples every round itself, from the recorded pool with the coordinator's seed (and
// stops if it did not pick the devices the coordinator assigned), and takes from the record only
// which of them reported in time. Its final model must equal the coordinator's bit for bit.
class RoundEngineMatrixTest : public CoordinatorE2eTest {
 protected:
  static constexpr int kDevices = 8;
  // Fruit, so that sorted order (apple, banana, cherry, date, fig, kiwi, lemon, mango) is not
  // index order.
  const std::vector<std::string> ids_ = {"kiwi",   "apple",  "mango", "fig",
                                         "cherry", "banana", "lemon", "date"};

  // `mode`: flags both binaries take; `coordinator_only` and `sim_only` the rest; `device_noise`:
  // devices seed their distributed DP noise as the simulator does.
  void ExpectTheSimulatorReplaysTheCoordinator(const std::vector<std::string>& mode,
                                               const std::vector<std::string>& coordinator_only,
                                               const std::vector<std::string>& sim_only,
                                               bool secure, bool device_noise) {
    // The selection window is long so that every round waits for all eight (a round starts at
    // once when they are all waiting); it only runs out if a device never comes back.
    std::vector<std::string> extra = {"--rounds",
                                      "3",
                                      "--clients-per-round",
                                      "3",
                                      "--over-select",
                                      "0.3",
                                      "--min-available",
                                      std::to_string(kDevices),
                                      "--selection-timeout",
                                      ScaledSeconds(120),
                                      "--round-timeout",
                                      ScaledSeconds(120),
                                      "--secagg-phase-timeout",
                                      ScaledSeconds(20),
                                      "--metrics-out",
                                      Path("metrics.jsonl"),
                                      "--participation-out",
                                      Path("participation.jsonl"),
                                      "--model-out",
                                      Path("coordinator.pt")};
    extra.insert(extra.end(), mode.begin(), mode.end());
    extra.insert(extra.end(), coordinator_only.begin(), coordinator_only.end());
    // The victim: the first device round 1 assigns (the coordinator samples the sorted ids of the
    // whole fleet with the run's seed; under DP with the seed its --dp-noise-seed gives, as it
    // would with its CSPRNG's).
    std::vector<std::string> sorted = ids_;
    std::sort(sorted.begin(), sorted.end());
    const bool dp = std::find(mode.begin(), mode.end(), "--dp") != mode.end();
    const std::vector<int64_t> round1 =
        *server::SampleClients(kDevices, 4,
                               dp ? privacy::DpSamplingSeed(std::stoull(kSeed), 1, 0)
                                  : server::SamplingSeed(std::stoull(kSeed), 1));
    const int victim =
        static_cast<int>(std::find(ids_.begin(), ids_.end(), sorted[round1[0]]) - ids_.begin());
    const std::string silent_at = secure ? "share" : "upload";
    Subprocess coordinator;
    StartCoordinator(coordinator, extra, "coordinator.log");
    auto flags_of = [&](int i) {
      std::vector<std::string> flags = {"--num-clients", std::to_string(kDevices), "--client-id",
                                        ids_[i]};
      if (device_noise) flags.insert(flags.end(), {"--dp-noise-seed", kSeed});
      return flags;
    };
    // The victim starts last, once the seven others wait: its own check-in then starts round 1
    // and brings its assignment at once. (Started with the others, it could hear of the
    // assignment at its next check-in only after three others had uploaded and closed a plain
    // round of K = 3; a loaded machine lost that race.)
    std::vector<Subprocess> clients(kDevices);
    for (int i = 0; i < kDevices; ++i) {
      if (i != victim) {
        StartClient(clients[i], i, "seed", flags_of(i), "client" + std::to_string(i) + ".log");
      }
    }
    ASSERT_TRUE(PollUntil([&] { return CoordinatorStatus().checked_in() == kDevices - 1; },
                          std::chrono::minutes(2)))
        << coordinator.Output();
    {
      std::vector<std::string> flags = flags_of(victim);
      flags.insert(flags.end(), {"--go-silent", silent_at + "@1"});
      StartClient(clients[victim], victim, "seed", flags,
                  "client" + std::to_string(victim) + ".log");
    }
    ASSERT_TRUE(PollUntil(
        [&] {
          return clients[victim].Output().find("round 1: fault injected") != std::string::npos ||
                 coordinator.WaitFor({}).has_value();
        },
        std::chrono::minutes(3)))
        << coordinator.Output();
    ASSERT_THAT(
        clients[victim].Output(),
        ::testing::HasSubstr("round 1: fault injected: silent from its " + silent_at + " on"))
        << coordinator.Output();
    if (secure) {
      // Mid-round: the others wait for its shares until the phase deadline.
      EXPECT_THAT(coordinator.Output(), ::testing::Not(::testing::HasSubstr("round    1")));
    }
    clients[victim].Signal(SIGKILL);
    std::optional<int> killed;
    ASSERT_TRUE(PollUntil([&] { return (killed = clients[victim].WaitFor({})).has_value(); },
                          std::chrono::seconds(30)));
    EXPECT_EQ(*killed, 128 + SIGKILL);
    // Back once round 1 has committed.
    ASSERT_TRUE(PollUntil(
        [&] {
          return coordinator.Output().find("round    1") != std::string::npos ||
                 coordinator.WaitFor({}).has_value();
        },
        std::chrono::minutes(3)))
        << coordinator.Output();
    clients[victim] = Subprocess();
    StartClient(clients[victim], victim, "seed", flags_of(victim),
                "client" + std::to_string(victim) + "-restarted.log");
    EXPECT_EQ(coordinator.Wait(), 0) << coordinator.Output();
    const std::vector<int> codes = WaitForAll(clients);
    for (int i = 0; i < kDevices; ++i) {
      EXPECT_EQ(codes[i], 0) << ids_[i] << ":\n" << clients[i].Output();
    }

    // The record: the whole fleet in every pool, the victim assigned in round 1 but not
    // aggregated; three updates per round.
    const std::vector<server::RoundParticipation> record =
        *server::ReadParticipationFile(Path("participation.jsonl"));
    ASSERT_EQ(record.size(), 3u);
    EXPECT_THAT(record[0].assigned, ::testing::Contains(ids_[victim]));
    EXPECT_THAT(record[0].aggregated, ::testing::Not(::testing::Contains(ids_[victim])));
    std::vector<std::string> others = record[0].assigned;
    others.erase(std::find(others.begin(), others.end(), ids_[victim]));
    EXPECT_EQ(record[0].aggregated, others);
    for (const server::RoundParticipation& round : record) {
      EXPECT_EQ(round.pool, sorted) << round.round;
      EXPECT_EQ(round.attempt, 0) << round.round;
      EXPECT_EQ(round.assigned.size(), 4u) << round.round;
      EXPECT_EQ(round.aggregated.size(), 3u) << round.round;
    }
    const auto metrics = ReadJsonLines(Path("metrics.jsonl"));
    ASSERT_EQ(metrics.size(), 3u);
    for (const auto& m : metrics) EXPECT_EQ(m["participants"].get<int>(), 3);

    {
      std::ofstream out(Path("ids.txt"));
      for (const std::string& id : ids_) out << id << "\n";
    }
    std::string args =
        "--dataset fmnist --clients 8 --clients-per-round 3 --over-select 0.3 --rounds 3 "
        "--partition iid --seed " +
        std::string(kSeed) + " --eval-every 0 --threads 2 --client-ids " + Path("ids.txt") +
        " --replay-participation " + Path("participation.jsonl") + " --model-out " + Path("sim.pt");
    for (const auto& a : kTraining) args += " " + a;
    for (const auto& a : mode) args += " " + a;
    for (const auto& a : sim_only) args += " " + a;
    Result r = RunSim(args);
    ASSERT_EQ(r.exit_code, 0) << r.output;
    const std::vector<float> networked = LoadModel(Path("coordinator.pt"));
    const std::vector<float> simulated = LoadModel(Path("sim.pt"));
    ASSERT_EQ(networked.size(), simulated.size());
    ASSERT_FALSE(networked.empty());
    EXPECT_TRUE(networked == simulated) << "the coordinator's model differs from the simulator's";
    // Not a vacuous equality: the replay of another participation gives another model.
    // Round 3 with the over-selected device that was not needed in place of one that was.
    std::vector<server::RoundParticipation> other = record;
    std::vector<std::string>& kept = other[2].aggregated;
    for (const std::string& id : other[2].assigned) {
      if (std::find(kept.begin(), kept.end(), id) == kept.end()) {
        kept[0] = id;
        break;
      }
    }
    std::sort(kept.begin(), kept.end());
    {
      std::ofstream out(Path("other.jsonl"));
      for (const auto& round : other) out << server::ParticipationToJson(round) << "\n";
    }
    std::string other_args = args;
    other_args.replace(other_args.find(Path("participation.jsonl")),
                       Path("participation.jsonl").size(), Path("other.jsonl"));
    other_args.replace(other_args.find(Path("sim.pt")), Path("sim.pt").size(), Path("other.pt"));
    Result o = RunSim(other_args);
    ASSERT_EQ(o.exit_code, 0) << o.output;
    EXPECT_NE(LoadModel(Path("other.pt")), networked);
  }
};

const std::vector<std::string> kSecAggPlus = {"--secagg", "secagg+"};

TEST_F(RoundEngineMatrixTest, PlainFedAvg) {
  ExpectTheSimulatorReplaysTheCoordinator({}, {}, {}, /*secure=*/false, /*device_noise=*/false);
}

// Robust aggregation (--aggregator): the coordinate-wise median of each round's three updates,
// the same bits in the simulator's replay.
TEST_F(RoundEngineMatrixTest, MedianAggregator) {
  ExpectTheSimulatorReplaysTheCoordinator({"--aggregator", "median"}, {}, {}, false, false);
}

TEST_F(RoundEngineMatrixTest, CentralDp) {
  ExpectTheSimulatorReplaysTheCoordinator(
      {"--dp", "central", "--clip-norm", "1", "--noise-multiplier", "0.5"},
      {"--dp-population", "8", "--dp-noise-seed", kSeed}, {}, false, false);
}

// The server's discrete Gaussian on the unmasked integer sum (privacy/distributed_dp_encoding.h,
// DecodeDistributedDpSumWithCentralNoise), which the simulator adds the same way.
TEST_F(RoundEngineMatrixTest, CentralDpUnderSecAggPlus) {
  ExpectTheSimulatorReplaysTheCoordinator(
      {"--dp", "central", "--secagg", "secagg+", "--clip-norm", "1", "--noise-multiplier", "0.5"},
      {"--dp-population", "8", "--dp-noise-seed", kSeed}, {}, true, false);
}

TEST_F(RoundEngineMatrixTest, SecAggPlus) {
  ExpectTheSimulatorReplaysTheCoordinator({"--secagg", "secagg+", "--clip-norm", "5"},
                                          {"--max-examples", "8000"},
                                          {"--max-client-weight", "8000"}, true, false);
}

TEST_F(RoundEngineMatrixTest, DistributedDpUnderSecAggPlus) {
  ExpectTheSimulatorReplaysTheCoordinator(
      {"--dp", "distributed", "--secagg", "secagg+", "--clip-norm", "1", "--noise-multiplier",
       "0.5", "--dp-dropout-tolerance", "0.34"},
      {"--dp-population", "8", "--dp-noise-seed", kSeed}, {}, true, true);
}

// Update compression (--compression): the devices encode their deltas, the coordinator decodes
// and clips them; the simulator runs the same encoder and decoder with the same seeds, so the
// models agree bit for bit. Top-k keeps its error feedback on each device across rounds.
TEST_F(RoundEngineMatrixTest, QuantizeRotateCompression) {
  ExpectTheSimulatorReplaysTheCoordinator(
      {"--compression", "quantize-rotate:4", "--clip-norm", "5"}, {}, {}, false, false);
}

TEST_F(RoundEngineMatrixTest, TopKCompressionWithErrorFeedback) {
  ExpectTheSimulatorReplaysTheCoordinator({"--compression", "topk:0.05"}, {}, {}, false, false);
}

TEST_F(RoundEngineMatrixTest, RandKCompressionUnderCentralDp) {
  ExpectTheSimulatorReplaysTheCoordinator({"--compression", "randk:0.25", "--dp", "central",
                                           "--clip-norm", "1", "--noise-multiplier", "0.5"},
                                          {"--dp-population", "8", "--dp-noise-seed", kSeed}, {},
                                          false, false);
}

// Compressed model downloads (--download-compression): the devices train from the decoded model
// the coordinator streams, the simulator from the same decoding; the global model stays exact. The
// coordinator's download_bytes are those of the encoded stream.
TEST_F(RoundEngineMatrixTest, Quantize8Downloads) {
  ExpectTheSimulatorReplaysTheCoordinator({"--download-compression", "quantize:8"}, {}, {}, false,
                                          false);
  const auto metrics = ReadJsonLines(Path("metrics.jsonl"));
  ASSERT_EQ(metrics.size(), 3u);
  const double model_floats = static_cast<double>(LoadModel(Path("coordinator.pt")).size());
  for (const auto& m : metrics) {
    EXPECT_GT(m["download_bytes"].get<double>(), model_floats);
    EXPECT_LT(m["download_bytes"].get<double>(), 4.0 * model_floats / 3.9);
  }
}

// Under secure aggregation the round's devices share the compression's randomness: quantization
// with the shared rotation and scale (a 8 + ceil(log2 n)-bit modulus), random-k with the shared
// coordinates (k + 1 masked values); the unmasked sums, and so the models, are the simulator's.
TEST_F(RoundEngineMatrixTest, QuantizeRotateUnderSecAggPlus) {
  ExpectTheSimulatorReplaysTheCoordinator(
      {"--secagg", "secagg+", "--clip-norm", "5", "--compression", "quantize-rotate:8"},
      {"--max-examples", "8000"}, {"--max-client-weight", "8000"}, true, false);
}

TEST_F(RoundEngineMatrixTest, RandKUnderSecAggPlus) {
  ExpectTheSimulatorReplaysTheCoordinator(
      {"--secagg", "secagg+", "--clip-norm", "5", "--compression", "randk:0.25"},
      {"--max-examples", "8000"}, {"--max-client-weight", "8000"}, true, false);
}

TEST_F(RoundEngineMatrixTest, AdaptiveClipping) {
  ExpectTheSimulatorReplaysTheCoordinator(
      // z < 2 sigma_b = 2 (3 / 20): the most noise adaptive clipping allows at 3 per round.
      {"--dp", "central", "--clip-norm", "1", "--noise-multiplier", "0.25",
       "--adaptive-clip-quantile", "0.5"},
      {"--dp-population", "8", "--dp-noise-seed", kSeed}, {}, false, false);
}

}  // namespace
}  // namespace fedkit
