// fedkit-client: a device taking part in federated training run by a fedkit coordinator. It holds
// one shard of Fashion-MNIST, built exactly as the simulator builds client --client-index's data.
#include <pthread.h>
#include <signal.h>

#include <algorithm>
#include <atomic>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "artifacts/artifact_files.h"
#include "artifacts/signing.h"
#include "cli/yaml_config.h"
#include "client/device_flags.h"
#include "client/fault_injection.h"
#include "client/federated_client.h"
#include "client/model_source.h"
#include "client/paced_channel.h"
#include "data/federated_dataset.h"
#include "data/idx.h"
#include "models/compute_threads.h"
#include "models/model.h"
#include "models/torchscript_model.h"

namespace fedkit::client {
namespace {

struct Flags {
  std::string server;
  std::string data_dir = data::kDefaultFashionMnistDir;
  std::string partition = "iid";
  int64_t num_clients = 0;
  int64_t client_index = -1;
  uint64_t seed = 0;
  std::string model;  // empty: whatever the coordinator assigns
  std::vector<std::string> trusted_keys;
  bool allow_unsigned_models = false;
  std::string model_cache;  // empty: DefaultModelCache(); "none": no cache
  int64_t max_model_bytes = int64_t{256} << 20;
  std::string client_id;
  std::string tls_ca;
  std::string tls_cert;
  std::string tls_key;
  std::string tls_server_name;
  std::string token;
  bool insecure = false;
  bool no_telemetry = false;
  std::optional<uint64_t> dp_noise_seed;
  std::string go_silent;
  double seconds_per_example = 0;
  DeviceLimitFlags limits;
  std::string model_dir;
};

int UsageError(absl::string_view flag, absl::string_view message) {
  std::cerr << "fedkit-client: " << flag << ": " << message << "\n";
  return 2;
}

// Waits for SIGINT/SIGTERM (blocked in every thread, so only this thread receives them) and cancels
// the client; SIGUSR1 from Stop() ends the wait without cancelling.
class SignalWatcher {
 public:
  // Blocks the signals in the calling thread and in all threads it creates afterwards: call before
  // any thread exists.
  static void BlockSignals() {
    // A shell starts background jobs with SIGINT ignored, and Linux discards ignored signals even
    // while blocked: restore the default disposition so that sigwait() sees them.
    std::signal(SIGINT, SIG_DFL);
    std::signal(SIGTERM, SIG_DFL);
    sigset_t set = Set();
    pthread_sigmask(SIG_BLOCK, &set, nullptr);
  }

  explicit SignalWatcher(FederatedClient* client)
      : thread_([this, client] {
          const sigset_t set = Set();
          while (true) {
            int signal = 0;
            if (sigwait(&set, &signal) != 0) continue;
            if (signal == SIGUSR1) return;
            if (received_.exchange(signal) == 0) {
              std::cerr << "fedkit-client: " << (signal == SIGINT ? "SIGINT" : "SIGTERM")
                        << ", stopping\n";
            }
            client->Cancel();
          }
        }) {}

  ~SignalWatcher() {
    pthread_kill(thread_.native_handle(), SIGUSR1);
    thread_.join();
  }

  int received() const { return received_.load(); }

 private:
  static sigset_t Set() {
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGUSR1);
    return set;
  }

  std::atomic<int> received_{0};
  std::thread thread_;
};

// $XDG_CACHE_HOME/fedkit/models, else $HOME/.cache/fedkit/models, else none.
std::string DefaultModelCache() {
  if (const char* xdg = std::getenv("XDG_CACHE_HOME"); xdg != nullptr && xdg[0] == '/') {
    return absl::StrCat(xdg, "/fedkit/models");
  }
  if (const char* home = std::getenv("HOME"); home != nullptr && home[0] == '/') {
    return absl::StrCat(home, "/.cache/fedkit/models");
  }
  return "";
}

int Run(int argc, char** argv) {
  Flags f;
  CLI::App app("A device taking part in federated training run by a fedkit coordinator",
               "fedkit-client");
  // Required flags first, so that their placeholder values are not shown as defaults.
  app.add_option("--server", f.server, "Coordinator address HOST:PORT")
      ->required()
      ->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
  app.add_option("--num-clients", f.num_clients, "Number of shards the training set is split into")
      ->required()
      ->check(cli::Positive())
      ->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
  app.add_option("--client-index", f.client_index, "This device's shard, in [0, --num-clients)")
      ->required()
      ->check(cli::NonNegative())
      ->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
  // A flag given twice (say in a script and again by hand) takes the last value.
  app.option_defaults()->always_capture_default()->multi_option_policy(
      CLI::MultiOptionPolicy::TakeLast);
  app.add_option("--data-dir", f.data_dir, "Directory of the Fashion-MNIST IDX files");
  app.add_option("--partition", f.partition,
                 "iid | dirichlet:ALPHA | shards:S (must match the simulator/coordinator setup)");
  app.add_option("--seed", f.seed, "Partition seed");
  app.add_option("--model", f.model,
                 "Model this device trains: logreg | mlp | cnn | seed, or a TorchScript file "
                 "PATH.pt; default: the one each round assigns (a registry model, or the "
                 "coordinator's TorchScript artifact, downloaded and verified)");
  app.add_option("--trusted-key", f.trusted_keys,
                 "Ed25519 public key (PEM, fedkit-sign keygen) whose signed model artifacts this "
                 "device loads; repeat for several")
      ->multi_option_policy(CLI::MultiOptionPolicy::TakeAll);
  app.add_flag("--allow-unsigned-models", f.allow_unsigned_models,
               "Also load unsigned model artifacts (loading TorchScript runs its code)");
  app.add_option("--model-cache", f.model_cache,
                 "Directory of verified model artifacts (default $XDG_CACHE_HOME/fedkit/models or "
                 "~/.cache/fedkit/models; 'none' keeps them in memory only)");
  app.add_option("--max-model-bytes", f.max_model_bytes, "Refuse model artifacts larger than this")
      ->check(cli::Positive());
  app.add_option("--max-model-mb", f.limits.max_model_mb,
                 "The largest model this device holds, in MB (2^20 bytes; 4 bytes per parameter, "
                 "or the artifact's size): advertised, so the coordinator does not assign larger "
                 "ones, and enforced (0 = no limit). Guideline: high-end phone 100, mid-range 30, "
                 "IoT 5, microcontroller 0.5");
  app.add_option("--memory-mb", f.limits.memory_mb,
                 "The device's memory for training, in MB, advertised to the coordinator (0 = "
                 "unknown)");
  app.add_option("--model-dir", f.model_dir,
                 "Keep the last good global model here (atomic writes, SHA-256 checked on load); "
                 "empty = in memory only");
  app.add_option("--client-id", f.client_id,
                 "Stable device id ([A-Za-z0-9._-], 1..128 chars); default client-NNNNNN");
  app.add_option("--tls-ca", f.tls_ca, "PEM file of the CA that signed the server certificate");
  app.add_option("--tls-cert", f.tls_cert, "Client certificate (PEM) for mutual TLS");
  app.add_option("--tls-key", f.tls_key, "Client private key (PEM) for mutual TLS");
  app.add_option("--tls-server-name", f.tls_server_name,
                 "Name checked against the server certificate instead of the host");
  app.add_option("--token", f.token, "Bearer token sent with every call");
  app.add_flag("--insecure", f.insecure, "Plaintext connection (no TLS); for local testing only");
  app.add_flag("--no-telemetry", f.no_telemetry,
               "Do not send this device's round measurements (training time, throughput, peak "
               "memory, model load time, bytes, CPU time, energy) with its uploads");
  app.add_option(
      "--dp-noise-seed", f.dp_noise_seed,
      "Distributed DP: draw this device's noise share from a stream seeded by this (to "
      "reproduce a fedkit-sim run with --seed equal to it); TESTS ONLY: anyone who knows "
      "it can remove the noise. Default: the system CSPRNG");
  app.add_option("--go-silent", f.go_silent,
                 "Failure drill: in round ROUND, stop talking to the coordinator from PHASE on "
                 "(advertise | share | upload | unmask), as a device frozen or killed there "
                 "would; e.g. upload@2. TESTS AND DRILLS ONLY");
  app.add_option("--seconds-per-example", f.seconds_per_example,
                 "Slow-device drill: hold each upload until this many seconds per example and "
                 "epoch have passed since the model download (the real training time counts), "
                 "as a device that trains at that speed would. TESTS AND DRILLS ONLY")
      ->check(cli::NonNegative());
  cli::AddYamlConfigOption(app);
  if (int code = cli::ParseCommandLine(app, argc, argv); code >= 0) return code;

  if (f.client_index >= f.num_clients) {
    return UsageError("--client-index", absl::StrFormat("%d is not below --num-clients %d",
                                                        f.client_index, f.num_clients));
  }
  absl::StatusOr<data::PartitionSpec> partition = data::ParsePartitionSpec(f.partition);
  if (!partition.ok()) return UsageError("--partition", partition.status().message());
  if (partition->kind == data::PartitionSpec::Kind::kNatural) {
    return UsageError("--partition",
                      "Fashion-MNIST has no natural split; use iid, "
                      "dirichlet:ALPHA or shards:S");
  }
  if (const std::vector<std::string> names = models::ModelNames();
      !f.model.empty() && !models::IsTorchScriptPath(f.model) &&
      std::find(names.begin(), names.end(), f.model) == names.end()) {
    return UsageError("--model", absl::StrCat("unknown model '", f.model,
                                              "'; known models: ", absl::StrJoin(names, ", ")));
  }
  if (f.client_id.empty()) f.client_id = absl::StrFormat("client-%06d", f.client_index);
  if (f.client_id.size() > 128 ||
      f.client_id.find_first_not_of("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                                    "0123456789._-") != std::string::npos) {
    return UsageError("--client-id", "use 1..128 characters from [A-Za-z0-9._-]");
  }
  FederatedClientOptions options;
  if (absl::Status limits = ApplyDeviceLimitFlags(f.limits, &options); !limits.ok()) {
    // The message starts with the flag.
    std::cerr << "fedkit-client: " << limits.message() << "\n";
    return 2;
  }
  std::optional<Fault> fault;
  if (!f.go_silent.empty()) {
    absl::StatusOr<Fault> parsed = ParseFault(f.go_silent);
    if (!parsed.ok()) return UsageError("--go-silent", parsed.status().message());
    fault = *parsed;
  }
  ConnectionOptions connection;
  connection.server = f.server;
  connection.insecure = f.insecure;
  connection.tls_ca_file = f.tls_ca;
  connection.tls_cert_file = f.tls_cert;
  connection.tls_key_file = f.tls_key;
  connection.tls_server_name = f.tls_server_name;
  connection.bearer_token = f.token;
  // Before any thread (gRPC's, LibTorch's, the watcher) exists, so that all of them inherit it.
  SignalWatcher::BlockSignals();
  absl::StatusOr<std::unique_ptr<CoordinatorChannel>> channel = ConnectGrpc(connection);
  if (!channel.ok()) {
    // Messages start with the flag at fault ("--tls-ca: ...").
    std::cerr << "fedkit-client: " << channel.status().message() << "\n";
    return 2;
  }

  models::UseSingleThreadedCompute();
  data::FederatedDatasetOptions data_options;
  data_options.dataset.kind = data::DatasetSpec::Kind::kFashionMnist;
  data_options.data_dir = f.data_dir;
  data_options.num_clients = f.num_clients;
  data_options.partition = *partition;
  data_options.seed = f.seed;
  absl::StatusOr<std::unique_ptr<data::FederatedDataset>> dataset =
      data::MakeFederatedDataset(data_options);
  if (!dataset.ok()) {
    std::cerr << "fedkit-client: " << dataset.status().message() << "\n";
    return 1;
  }
  auto log = [](absl::string_view line) {
    std::cerr << absl::StrCat("fedkit-client: ", line, "\n") << std::flush;
  };
  if (fault.has_value()) {
    *channel = std::make_unique<FaultInjectionChannel>(*std::move(channel), *fault, log);
  }
  if (f.seconds_per_example > 0) {
    *channel = std::make_unique<PacedChannel>(*std::move(channel), f.seconds_per_example);
  }
  std::unique_ptr<ModelSource> models;
  std::string model_description;
  if (!f.model.empty()) {
    if (!f.trusted_keys.empty() || f.allow_unsigned_models) {
      return UsageError(f.trusted_keys.empty() ? "--allow-unsigned-models" : "--trusted-key",
                        "applies to the models a device is assigned; this device trains its own "
                        "--model");
    }
    absl::StatusOr<std::shared_ptr<models::Model>> model =
        models::CreateModel(f.model, (*dataset)->info(), 0);
    if (!model.ok()) return UsageError("--model", model.status().message());
    absl::StatusOr<std::string> model_identity = models::ModelIdentity(f.model);
    if (!model_identity.ok()) return UsageError("--model", model_identity.status().message());
    models = std::make_unique<FixedModelSource>(*std::move(model), *model_identity);
    model_description = absl::StrCat("model ", f.model);
  } else {
    AssignedModelOptions assigned;
    assigned.dataset = (*dataset)->info();
    assigned.trust.allow_unsigned = f.allow_unsigned_models;
    for (const std::string& path : f.trusted_keys) {
      absl::StatusOr<std::string> pem = artifacts::ReadFileBytes(path);
      if (!pem.ok()) return UsageError("--trusted-key", pem.status().message());
      absl::StatusOr<artifacts::PublicKey> key = artifacts::PublicKeyFromPem(*pem);
      if (!key.ok()) {
        return UsageError("--trusted-key", absl::StrCat(path, ": ", key.status().message()));
      }
      assigned.trust.trusted_keys.push_back(*key);
    }
    assigned.cache_dir = f.model_cache.empty()     ? DefaultModelCache()
                         : f.model_cache == "none" ? std::string()
                                                   : f.model_cache;
    assigned.max_artifact_bytes = f.max_model_bytes;
    if (options.max_model_bytes > 0) {
      assigned.max_artifact_bytes = std::min(assigned.max_artifact_bytes, options.max_model_bytes);
    }
    assigned.log = log;
    std::vector<std::string> fingerprints;
    for (const auto& key : assigned.trust.trusted_keys) {
      fingerprints.push_back(artifacts::Fingerprint(key));
    }
    model_description = absl::StrCat(
        "the assigned model (artifacts signed by ",
        fingerprints.empty() ? std::string("no trusted key") : absl::StrJoin(fingerprints, ", "),
        assigned.trust.allow_unsigned ? ", or unsigned" : "",
        assigned.cache_dir.empty() ? "; no cache" : absl::StrCat("; cache ", assigned.cache_dir),
        ")");
    models = std::make_unique<AssignedModelSource>(std::move(assigned));
  }
  data::Examples examples = (*dataset)->TrainExamples(f.client_index);
  dataset->reset();  // the rest of the population is not this device's business

  options.model_dir = f.model_dir;
  options.client_id = f.client_id;
  options.client_index = f.client_index;
  options.dp_noise_seed = f.dp_noise_seed;
  options.send_telemetry = !f.no_telemetry;
  options.log = log;
  std::cerr << absl::StrFormat("fedkit-client: %s (shard %d of %d, %d examples), %s, %s %s\n",
                               f.client_id, f.client_index, f.num_clients, examples.size(),
                               model_description, f.insecure ? "plaintext to" : "TLS to", f.server);
  FederatedClient client(std::move(options), std::move(*channel), std::move(models),
                         std::move(examples));
  absl::Status status;
  int signal = 0;
  {
    SignalWatcher watcher(&client);
    status = client.Run();
    signal = watcher.received();
  }
  if (signal != 0 && status.code() == absl::StatusCode::kCancelled) return 128 + signal;
  if (!status.ok()) {
    std::cerr << "fedkit-client: " << status << "\n";
    return 1;
  }
  std::cerr << absl::StrFormat("fedkit-client: done; contributed to %d rounds\n",
                               client.rounds_contributed());
  return 0;
}

}  // namespace
}  // namespace fedkit::client

int main(int argc, char** argv) { return fedkit::client::Run(argc, argv); }
