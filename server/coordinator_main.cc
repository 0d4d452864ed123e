// fedkit-coordinator: the federated learning coordinator service that devices connect out to.
#include <fcntl.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/health_check_service_interface.h>
#include <malloc.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <thread>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_format.h"
#include "absl/synchronization/notification.h"
#include "aggregation/robust.h"
#include "aggregation/staleness.h"
#include "artifacts/artifact_files.h"
#include "artifacts/signing.h"
#include "cli/fedbuff_flags.h"
#include "cli/flag_errors.h"
#include "cli/logging.h"
#include "cli/yaml_config.h"
#include "compression/download_codec.h"
#include "compression/secagg_compression.h"
#include "compression/spec.h"
#include "core/status_macros.h"
#include "dashboard/dashboard_server.h"
#include "data/idx.h"
#include "models/compute_threads.h"
#include "models/evaluate.h"
#include "models/flat_params.h"
#include "models/model.h"
#include "models/torchscript_model.h"
#include "monitoring/coordinator_metrics.h"
#include "monitoring/metrics_endpoint.h"
#include "monitoring/process_collector.h"
#include "monitoring/rpc_interceptor.h"
#include "monitoring/status_collector.h"
#include "privacy/adaptive_clipping.h"
#include "privacy/dp_setup.h"
#include "privacy/secagg/encoding.h"
#include "proto/compression_conversion.h"
#include "server/artifact_store.h"
#include "server/checkpoint.h"
#include "server/client_sampler.h"
#include "server/grpc_service.h"
#include "server/privacy_ledger.h"
#include "server/round_coordinator.h"

namespace fedkit::server {
namespace {

struct Flags {
  std::string listen = "0.0.0.0:50051";
  std::string http;  // the dashboard's HOST:PORT; empty: none
  std::string model = "mlp";
  std::string model_signature;
  std::string sign_key;
  int64_t rounds = 10;
  int64_t clients_per_round = 10;
  int64_t min_clients = 0;  // 0 = clients_per_round
  double over_select = 0.0;
  int64_t min_available = 0;  // 0 = the over-selected target
  double round_timeout = 600;
  double selection_timeout = 30;
  double retry_interval = 1.0;
  std::string server_optimizer = "sgd";
  double server_lr = 1.0;
  double server_momentum = 0.0;
  double clip_norm = 0.0;
  int local_epochs = 1;
  int batch_size = 10;
  double client_lr = 0.1;
  double client_momentum = 0.0;
  double prox_mu = 0.0;
  int64_t max_steps = 0;
  double max_seconds = 0.0;
  int64_t max_examples = 1 << 20;
  std::string eval_data;
  std::string checkpoint_dir;
  std::string metrics_out;
  std::string metrics_listen;
  std::string participation_out;
  std::string model_out;
  uint64_t seed = 0;
  std::string tls_cert, tls_key, tls_client_ca;
  std::string auth_tokens;
  bool insecure = false;
  double linger = 5.0;
  int64_t max_transfers = CoordinatorServiceOptions().max_concurrent_transfers;
  int64_t max_threads = 512;  // 0 = gRPC's default (no cap)
  int64_t grpc_memory_mb = 1024;
  int64_t max_waiting = CoordinatorOptions().max_waiting;
  int64_t max_ids_per_identity = CallerQuotaOptions().max_ids_per_identity;
  double checkin_rate = CallerQuotaOptions().check_ins_per_second;
  double checkin_burst = CallerQuotaOptions().check_in_burst;
  int64_t max_streams = CoordinatorServiceOptions().max_streams;
  int64_t max_streams_per_identity = CallerQuotaOptions().max_streams_per_identity;
  double stream_idle_timeout =
      absl::ToDoubleSeconds(CoordinatorServiceOptions().stream_idle_timeout);
  double max_stream_seconds =
      absl::ToDoubleSeconds(CoordinatorServiceOptions().max_stream_duration);
  std::string dp = "none";
  double noise_multiplier = 1.0;
  int64_t dp_population = 0;
  double delta = 1e-5;
  double target_epsilon = 0;          // 0 = no budget
  double adaptive_clip_quantile = 0;  // 0 = a fixed clip
  double adaptive_clip_lr = 0.2;
  std::optional<double> dp_dropout_tolerance;  // unset: derived from --secagg-design-dropout
  std::optional<uint64_t> dp_noise_seed;
  bool allow_privacy_rollback = false;
  std::string secagg = "none";
  std::string compression = "none";
  std::string download_compression = "float32";
  std::string aggregator = "mean";
  std::string algorithm = "fedavg";
  cli::FedBuffFlags fedbuff;
  int secagg_modulus_bits = 32;
  double secagg_phase_timeout = 60;
  double secagg_design_dropout = 0.1;
  double secagg_corrupt_fraction = 0.05;
};

int UsageError(const std::string& flag, absl::string_view message) {
  std::cerr << "fedkit-coordinator: " << flag << ": " << message << "\n";
  return 2;
}

absl::StatusOr<std::string> ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::InvalidArgumentError("cannot read " + path);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

// The --model file as a served artifact, signed by --sign-key or with --model-signature's
// signature (or unsigned). Prints the error naming the flag and returns it.
absl::StatusOr<std::unique_ptr<ModelArtifactStore>> LoadArtifact(const Flags& f) {
  auto fail = [](const std::string& flag, const absl::Status& status) {
    UsageError(flag, status.message());
    return status;
  };
  if (!f.model_signature.empty() && !f.sign_key.empty()) {
    return fail("--sign-key",
                absl::InvalidArgumentError("give --model-signature or --sign-key, not both"));
  }
  absl::StatusOr<std::string> bytes = artifacts::ReadFileBytes(f.model);
  if (!bytes.ok()) return fail("--model", bytes.status());
  std::optional<artifacts::SignatureFile> signature;
  if (!f.model_signature.empty()) {
    absl::StatusOr<std::string> text = artifacts::ReadFileBytes(f.model_signature);
    if (!text.ok()) return fail("--model-signature", text.status());
    absl::StatusOr<artifacts::SignatureFile> parsed = artifacts::ParseSignatureFile(*text);
    if (!parsed.ok()) {
      return fail("--model-signature",
                  absl::Status(parsed.status().code(),
                               absl::StrCat(f.model_signature, ": ", parsed.status().message())));
    }
    signature = *std::move(parsed);
  } else if (!f.sign_key.empty()) {
    absl::StatusOr<std::string> pem = artifacts::ReadFileBytes(f.sign_key);
    if (!pem.ok()) return fail("--sign-key", pem.status());
    absl::StatusOr<artifacts::PrivateKey> key = artifacts::PrivateKeyFromPem(*pem);
    if (!key.ok()) {
      return fail("--sign-key",
                  absl::Status(key.status().code(),
                               absl::StrCat(f.sign_key, ": ", key.status().message())));
    }
    absl::StatusOr<artifacts::SignatureFile> signed_now =
        artifacts::MakeSignatureFile(*bytes, *key);
    if (!signed_now.ok()) return fail("--sign-key", signed_now.status());
    signature = *std::move(signed_now);
  }
  absl::StatusOr<std::unique_ptr<ModelArtifactStore>> store =
      ModelArtifactStore::Create(*std::move(bytes), std::move(signature));
  if (!store.ok()) {
    if (f.model_signature.empty()) {
      return fail("--model", absl::Status(store.status().code(),
                                          absl::StrCat(f.model, ": ", store.status().message())));
    }
    return fail(
        "--model-signature",
        absl::Status(store.status().code(), absl::StrCat(f.model_signature, " does not sign ",
                                                         f.model, ": ", store.status().message())));
  }
  return store;
}

// Model-sized buffers (downloads, uploads) come and go at every round. glibc raises its mmap
// threshold after the first such free, so later ones would be carved from per-thread arenas (up
// to 8 per core) and stay resident when freed; with a fixed threshold they are mapped and
// returned to the system, and two arenas serve the gRPC threads. In the 1,000-device load test
// this is the difference between 760 and under 500 MiB of peak RSS.
void TuneMallocForModelSizedBuffers() {
  mallopt(M_MMAP_THRESHOLD, 256 * 1024);
  mallopt(M_ARENA_MAX, 2);
}

// The write end of this pipe receives the number of each SIGINT/SIGTERM (OnStopSignal).
int stop_signal_pipe[2] = {-1, -1};

void OnStopSignal(int sig) {
  const int saved = errno;
  const char byte = static_cast<char>(sig);
  (void)!write(stop_signal_pipe[1], &byte, 1);  // async-signal-safe
  errno = saved;
}

int Run(int argc, char** argv) {
  TuneMallocForModelSizedBuffers();
  // SIGINT/SIGTERM go to whichever thread does not block them, and OpenBLAS starts threads before
  // main with nothing blocked: so a handler, not sigwait, takes them, and writes the signal's
  // number to a pipe that the signal thread below reads.
  if (pipe2(stop_signal_pipe, O_CLOEXEC) != 0) {
    std::cerr << "fedkit-coordinator: pipe: " << std::strerror(errno) << "\n";
    return 1;
  }
  struct sigaction on_stop = {};
  on_stop.sa_handler = &OnStopSignal;
  on_stop.sa_flags = SA_RESTART;
  sigemptyset(&on_stop.sa_mask);
  sigaction(SIGINT, &on_stop, nullptr);
  sigaction(SIGTERM, &on_stop, nullptr);

  Flags f;
  CLI::App app("FedKit coordinator: runs federated rounds for devices that check in over gRPC",
               "fedkit-coordinator");
  app.option_defaults()->always_capture_default()->multi_option_policy(
      CLI::MultiOptionPolicy::TakeLast);
  app.add_option("--listen", f.listen, "HOST:PORT to serve on");
  app.add_option("--http", f.http,
                 "HOST:PORT to serve a live dashboard on (http://HOST:PORT/; read-only, no TLS or "
                 "auth: keep it on loopback or behind a proxy; port 0 picks one)");
  app.add_option("--model", f.model,
                 "logreg | mlp | cnn | seed, or a TorchScript file PATH.pt (Fashion-MNIST shaped)");
  app.add_option("--model-signature", f.model_signature,
                 "Detached signature of the --model file (fedkit-sign sign writes PATH.pt.sig); "
                 "devices verify it before loading the model");
  app.add_option("--sign-key", f.sign_key,
                 "Ed25519 private key (PEM, fedkit-sign keygen): sign the --model file at startup "
                 "instead of --model-signature");
  app.add_option("--rounds", f.rounds, "Rounds to run")->check(cli::Positive());
  app.add_option("--algorithm", f.algorithm,
                 "fedavg (synchronous rounds) | fedbuff (buffered asynchronous aggregation: "
                 "--concurrency devices train at once, every --buffer-size uploads make a round)");
  cli::AddFedBuffFlags(app, "devices training at once (C)", &f.fedbuff);
  app.add_option("--clients-per-round", f.clients_per_round, "Updates that close a round")
      ->check(cli::Positive());
  app.add_option("--min-clients", f.min_clients,
                 "At the deadline, commit with at least this many (default: clients-per-round)")
      ->check(cli::NonNegative());
  app.add_option("--over-select", f.over_select,
                 "Extra fraction of clients assigned (FedBuff with --secagg: of each cohort)")
      ->check(cli::InRange(0, 10));
  app.add_option("--min-available", f.min_available,
                 "Sample at once only from at least this many waiting devices, else after the "
                 "selection window (default: the over-selected target); FedBuff: assign the "
                 "first device once this many are waiting")
      ->check(cli::NonNegative());
  app.add_option("--round-timeout", f.round_timeout, "Round deadline in seconds")
      ->check(cli::Positive());
  app.add_option("--selection-timeout", f.selection_timeout,
                 "Start a round with fewer than the over-selected target after this many seconds")
      ->check(cli::NonNegative());
  app.add_option("--retry-interval", f.retry_interval, "Seconds waiting clients are told to wait")
      ->check(cli::Positive());
  app.add_option("--server-optimizer", f.server_optimizer, "sgd | adam | yogi | adagrad");
  app.add_option("--server-lr", f.server_lr, "Server learning rate")->check(cli::Positive());
  app.add_option("--server-momentum", f.server_momentum, "Server SGD momentum")
      ->check(cli::BelowOne());
  app.add_option("--clip-norm", f.clip_norm, "L2 clip norm of client deltas (0 = off)")
      ->check(cli::NonNegative());
  app.add_option("--local-epochs", f.local_epochs, "Client local epochs")->check(cli::Positive());
  app.add_option("--batch-size", f.batch_size, "Client batch size")->check(cli::Positive());
  app.add_option("--client-lr", f.client_lr, "Client learning rate")->check(cli::Positive());
  app.add_option("--client-momentum", f.client_momentum, "Client SGD momentum")
      ->check(cli::BelowOne());
  app.add_option("--prox-mu", f.prox_mu, "FedProx mu")->check(cli::NonNegative());
  app.add_option("--max-steps", f.max_steps,
                 "Compute budget per round on a device: local training stops after this many "
                 "minibatch steps and uploads what it has (0 = no limit)")
      ->check(cli::NonNegative());
  app.add_option("--max-seconds", f.max_seconds,
                 "Compute budget per round on a device: local training stops after this many "
                 "seconds and uploads what it has (0 = no limit)")
      ->check(cli::NonNegative());
  app.add_option("--max-examples", f.max_examples, "Largest example count a client may report")
      ->check(cli::Positive());
  app.add_option("--eval-data", f.eval_data, "Fashion-MNIST directory to evaluate on");
  app.add_option("--checkpoint-dir", f.checkpoint_dir, "Checkpoint directory (resume from it)");
  app.add_option("--metrics-out", f.metrics_out, "JSON Lines per committed round");
  app.add_option("--metrics-listen", f.metrics_listen,
                 "HOST:PORT to serve Prometheus metrics on (http://HOST:PORT/metrics; no TLS or "
                 "auth: keep it on loopback or a private network)");
  app.add_option("--participation-out", f.participation_out,
                 "JSON Lines per committed round: the devices waiting, assigned and aggregated "
                 "(audit, or fedkit-sim --replay-participation)");
  app.add_option("--model-out", f.model_out, "Write the final model here (torch::save)");
  app.add_option("--seed", f.seed, "Run seed");
  app.add_option("--tls-cert", f.tls_cert, "Server certificate (PEM)");
  app.add_option("--tls-key", f.tls_key, "Server private key (PEM)");
  app.add_option("--tls-client-ca", f.tls_client_ca, "CA for client certificates (mutual TLS)");
  app.add_option("--auth-tokens", f.auth_tokens,
                 "File of accepted bearer tokens: \"TOKEN CLIENT-IDS\" per line (ids: an id, a "
                 "prefix ending in *, or *), see deploy/tokens.example");
  app.add_flag("--insecure", f.insecure, "Serve plaintext (no TLS)");
  app.add_option("--dp", f.dp,
                 "Differential privacy (DP-FedAvg: clipped deltas of weight 1, fixed denominator; "
                 "needs --clip-norm and --dp-population): none | central (discrete Gaussian noise "
                 "on the exact sum, added here) | distributed (the devices add discrete Gaussian "
                 "shares before "
                 "secure aggregation masks them; needs --secagg)");
  app.add_option("--noise-multiplier", f.noise_multiplier, "DP noise stddev / clip norm (z)")
      ->check(cli::Positive());
  app.add_option("--dp-population", f.dp_population,
                 "DP: a round samples only when at least this many devices are waiting; each "
                 "round accounts q = devices assigned (over-selection included) / devices waiting "
                 "<= ceil(clients per round x (1 + over-select)) / population")
      ->check(cli::NonNegative());
  app.add_option("--adaptive-clip-quantile", f.adaptive_clip_quantile,
                 "DP: move the clip norm towards this quantile of the update norms each round "
                 "(Andrew et al. 2021; --clip-norm is the initial clip; 0 = fixed clip)")
      ->check(CLI::Range(0.0, 1.0));
  app.add_option("--adaptive-clip-lr", f.adaptive_clip_lr,
                 "DP: adaptive clipping's geometric learning rate")
      ->check(cli::NonNegative());
  app.add_option("--dp-dropout-tolerance", f.dp_dropout_tolerance,
                 "Distributed DP: fraction of a round's devices that may drop while their noise "
                 "shares still add up to the target (default: from --secagg-design-dropout)")
      ->check(CLI::Range(0.0, 1.0));
  app.add_option("--dp-noise-seed", f.dp_noise_seed,
                 "Draw the DP noise from streams seeded by this (to reproduce a fedkit-sim run "
                 "with --seed equal to it); TESTS ONLY: anyone who knows it can remove the noise. "
                 "Default: the system CSPRNG");
  app.add_flag("--allow-privacy-rollback", f.allow_privacy_rollback,
               "DP: resume even though the privacy ledger (--checkpoint-dir/privacy-ledger) "
               "records rounds beyond the newest readable checkpoint; they are re-run and charged "
               "again on top of the privacy the ledger says was spent");
  app.add_option("--delta", f.delta, "DP delta at which epsilon is reported")
      ->check(cli::BelowOne());
  app.add_option("--target-epsilon", f.target_epsilon,
                 "DP budget: stop before a round after which epsilon would exceed it (0 = none)")
      ->check(cli::NonNegative());
  app.add_option(
      "--compression", f.compression,
      "Update compression, sent in the plan: none | quantize:BITS | quantize-rotate:BITS (uniform "
      "stochastic quantization, after a randomized Hadamard rotation) | topk:FRACTION | "
      "randk:FRACTION (sparsification with error feedback on the device)");
  app.add_option(
      "--download-compression", f.download_compression,
      "Model download encoding: float32 (exact) | float16 | quantize:8 (8 bits per value, "
      "min and max per block of 1024); devices train from the decoded model, the "
      "global model stays float32");
  app.add_option("--aggregator", f.aggregator,
                 "How plain rounds aggregate (not with --secagg or --dp): mean (weighted FedAvg) | "
                 "median | trimmed-mean:BETA | krum:F | multi-krum:F,M | norm-bound:C; all but "
                 "mean keep the round's updates in memory");
  app.add_option("--secagg", f.secagg,
                 "Secure aggregation of every round: none | secagg | secagg+ (needs --clip-norm)");
  app.add_option("--secagg-modulus-bits", f.secagg_modulus_bits,
                 "Secure aggregation: values are summed modulo 2^BITS (default: the smallest from "
                 "32 bits that holds a round's clients at weights up to --max-examples)")
      ->check(CLI::Range(8, 64));
  app.add_option("--secagg-phase-timeout", f.secagg_phase_timeout,
                 "Seconds allowed for each key-exchange and unmasking phase")
      ->check(cli::Positive());
  app.add_option("--secagg-design-dropout", f.secagg_design_dropout,
                 "SecAgg+: dropout rate the neighbourhood graph is sized to survive")
      ->check(cli::BelowOne());
  app.add_option("--secagg-corrupt-fraction", f.secagg_corrupt_fraction,
                 "SecAgg+: fraction of clients assumed to collude with the server")
      ->check(cli::BelowOne());
  app.add_option("--max-transfers", f.max_transfers,
                 "Model downloads and update uploads served at once (each holds about one model "
                 "of memory); more wait, then are told to retry")
      ->check(cli::Positive());
  app.add_option("--max-threads", f.max_threads,
                 "gRPC threads serving calls at once, further calls are told to retry (0 = no "
                 "cap; a cap trades memory for slower rounds as refused devices back off)")
      ->check(CLI::Range(int64_t{0}, int64_t{100000}));
  app.add_option(
         "--grpc-memory-mb", f.grpc_memory_mb,
         "gRPC's resource quota: MiB of transport buffers before it refuses work (0 = none)")
      ->check(CLI::Range(int64_t{0}, int64_t{1} << 20));
  app.add_option("--max-waiting", f.max_waiting,
                 "Devices waiting for a round at once; new ones beyond it are told to retry (0 = "
                 "no cap)")
      ->check(cli::NonNegative());
  app.add_option("--max-ids-per-identity", f.max_ids_per_identity,
                 "Client ids one token with a prefix or '*' grant may use within a minute (0 = no "
                 "cap)")
      ->check(cli::NonNegative());
  app.add_option("--checkin-rate", f.checkin_rate,
                 "Check-ins per second one identity (token or certificate) may make (0 = no cap)")
      ->check(cli::NonNegative());
  app.add_option("--checkin-burst", f.checkin_burst, "Check-ins one identity may make at once")
      ->check(cli::Positive());
  app.add_option("--max-streams", f.max_streams,
                 "Upload and download streams open at once over all devices; more are told to "
                 "retry")
      ->check(cli::Positive());
  app.add_option("--max-streams-per-identity", f.max_streams_per_identity,
                 "Streams one identity may have open at once (0 = no cap)")
      ->check(cli::NonNegative());
  app.add_option("--stream-idle-timeout", f.stream_idle_timeout,
                 "Seconds a stream may go without a message before it is cancelled")
      ->check(cli::Positive());
  app.add_option("--max-stream-seconds", f.max_stream_seconds,
                 "Seconds a stream may stay open before it is cancelled")
      ->check(cli::Positive());
  app.add_option("--linger", f.linger, "Seconds to keep answering 'finished' after the last round")
      ->check(cli::NonNegative());
  std::string log_format = "text";
  std::string log_level = "info";
  app.add_option("--log-format", log_format,
                 "Log lines on stderr as text or json (one JSON object per line: time, level, "
                 "logger, message)");
  app.add_option("--log-level", log_level,
                 "Least severe log level shown: trace, debug, info, warning, error, off");
  bool print_config = false;
  app.add_flag("--print-config", print_config,
               "Print the effective configuration (every flag, from the command line, --config "
               "and the defaults) as a --config YAML file, and exit")
      ->configurable(false);
  cli::AddYamlConfigOption(app);
  if (int code = cli::ParseCommandLine(app, argc, argv); code >= 0) return code;
  if (print_config) {
    std::cout << app.config_to_str(/*default_also=*/true, /*write_description=*/false);
    return 0;
  }
  cli::LogOptions log_options;
  if (auto format = cli::ParseLogFormat(log_format); format.ok()) {
    log_options.format = *format;
  } else {
    return UsageError("--log-format", format.status().message());
  }
  if (auto level = cli::ParseLogLevel(log_level); level.ok()) {
    log_options.level = *level;
  } else {
    return UsageError("--log-level", level.status().message());
  }
  // Usage errors (exit 2) stay plain lines on stderr; from here on, lines go through the logger.
  cli::ConfigureLogging("fedkit-coordinator", log_options);

  auto optimizer_kind = aggregation::ParseServerOptimizerKind(f.server_optimizer);
  if (!optimizer_kind.ok())
    return UsageError("--server-optimizer", optimizer_kind.status().message());
  if (f.tls_cert.empty() != f.tls_key.empty()) {
    return UsageError(f.tls_cert.empty() ? "--tls-cert" : "--tls-key",
                      "--tls-cert and --tls-key go together");
  }
  if (f.tls_cert.empty() && !f.insecure) {
    return UsageError("--insecure", "no --tls-cert/--tls-key given; plaintext needs --insecure");
  }
  if (!f.tls_cert.empty() && f.insecure) {
    return UsageError("--insecure", "cannot be combined with --tls-cert");
  }
  if (!f.tls_client_ca.empty() && f.tls_cert.empty()) {
    return UsageError("--tls-client-ca", "mutual TLS needs --tls-cert and --tls-key");
  }
  if (f.algorithm != "fedavg" && f.algorithm != "fedbuff") {
    return UsageError("--algorithm",
                      absl::StrCat("is fedavg or fedbuff (the coordinator runs those two), not '",
                                   f.algorithm, "'"));
  }
  if (std::optional<cli::FlagError> error =
          cli::ResolveFedBuffFlags(f.algorithm == "fedbuff", &f.fedbuff)) {
    return UsageError(error->flag, error->message);
  }
  if (f.algorithm == "fedbuff") {
    // Synchronous rounds' flags mean nothing here: K and C replace them.
    // (--over-select, under --secagg, over-selects each cohort.)
    for (const char* flag :
         {"--clients-per-round", "--min-clients", "--selection-timeout", "--over-select"}) {
      if (app.count(flag) > 0 &&
          !(std::string_view(flag) == "--over-select" && f.secagg != "none")) {
        return UsageError(flag,
                          "not with --algorithm fedbuff: --concurrency devices train at once and "
                          "every --buffer-size uploads make a round");
      }
    }
  }
  if (f.min_clients == 0) f.min_clients = f.clients_per_round;
  if (f.min_clients > f.clients_per_round) {
    return UsageError("--min-clients", "must not exceed --clients-per-round");
  }

  Authentication auth;
  auth.client_certificates = !f.tls_client_ca.empty();
  if (!f.auth_tokens.empty()) {
    auto loaded = TokenAuthenticator::FromFile(f.auth_tokens);
    if (!loaded.ok()) return UsageError("--auth-tokens", loaded.status().message());
    auth.tokens = std::move(*loaded);
  }
  if (!auth.tokens.enabled() && !auth.client_certificates) {
    spdlog::warn(
        "neither --auth-tokens nor --tls-client-ca: any caller may check in as any client id; "
        "for tests and closed networks only");
  }

  models::UseSingleThreadedCompute();
  data::DatasetInfo info{{1, 28, 28}, 10};
  std::optional<data::Examples> eval_set;
  if (!f.eval_data.empty()) {
    auto loaded = data::LoadFashionMnist(f.eval_data, data::Split::kTest, &info);
    if (!loaded.ok()) return UsageError("--eval-data", loaded.status().message());
    eval_set = std::move(*loaded);
  }
  CoordinatorOptions options;
  // A TorchScript model is also the artifact devices download: read once, so that what is
  // trained, hashed, signed and served are the same bytes.
  std::unique_ptr<ModelArtifactStore> artifact;
  absl::StatusOr<std::shared_ptr<models::Model>> model;
  if (models::IsTorchScriptPath(f.model)) {
    absl::StatusOr<std::unique_ptr<ModelArtifactStore>> store = LoadArtifact(f);
    if (!store.ok()) return 2;
    artifact = *std::move(store);
    model = models::TorchScriptModel::LoadFromBytes(artifact->bytes(), f.model, info);
    if (!model.ok()) return UsageError("--model", model.status().message());
    options.model_name = absl::StrCat("torchscript:sha256:", artifact->artifact().sha256());
    options.artifact = artifact->artifact();
  } else {
    if (!f.model_signature.empty() || !f.sign_key.empty()) {
      return UsageError(f.sign_key.empty() ? "--model-signature" : "--sign-key",
                        "only a TorchScript --model file is shipped and signed; registry models "
                        "are built into every device");
    }
    model = models::CreateModel(f.model, info, InitialModelSeed(f.seed));
    if (!model.ok()) return UsageError("--model", model.status().message());
    absl::StatusOr<std::string> model_identity = models::ModelIdentity(f.model);
    if (!model_identity.ok()) return UsageError("--model", model_identity.status().message());
    options.model_name = *model_identity;
  }
  options.rounds = f.rounds;
  options.clients_per_round = f.clients_per_round;
  options.min_clients = f.min_clients;
  options.min_available = f.min_available;
  options.over_select = f.over_select;
  options.round_timeout = absl::Seconds(f.round_timeout);
  options.selection_timeout = absl::Seconds(f.selection_timeout);
  options.retry_interval = absl::Seconds(f.retry_interval);
  options.max_waiting = f.max_waiting;
  if (f.algorithm == "fedbuff") options.fedbuff = f.fedbuff.settings;
  options.plan.set_local_epochs(f.local_epochs);
  options.plan.set_batch_size(f.batch_size);
  options.plan.set_learning_rate(f.client_lr);
  options.plan.set_momentum(f.client_momentum);
  options.plan.set_prox_mu(f.prox_mu);
  options.plan.set_max_steps(f.max_steps);
  options.plan.set_max_seconds(f.max_seconds);
  options.plan.set_clip_norm(f.clip_norm);
  options.plan.set_run_seed(f.seed);
  {
    absl::StatusOr<compression::CompressionSpec> spec =
        compression::ParseCompressionSpec(f.compression);
    if (!spec.ok()) return UsageError("--compression", spec.status().message());
    if (f.secagg != "none") {
      if (absl::Status fits = compression::CheckSecAggCompression(*spec, f.dp != "none");
          !fits.ok()) {
        return UsageError("--compression", fits.message());
      }
    }
    *options.plan.mutable_compression() = proto::CompressionToProto(*spec);
  }
  {
    absl::StatusOr<compression::DownloadEncoding> encoding =
        compression::ParseDownloadEncoding(f.download_compression);
    if (!encoding.ok()) return UsageError("--download-compression", encoding.status().message());
    options.download_encoding = *encoding;
  }
  options.server_optimizer.kind = *optimizer_kind;
  options.server_optimizer.learning_rate = f.server_lr;
  options.server_optimizer.momentum = f.server_momentum;
  options.max_examples_per_client = f.max_examples;
  absl::StatusOr<privacy::DpMode> dp_mode = privacy::ParseDpMode(f.dp);
  if (!dp_mode.ok()) return UsageError("--dp", dp_mode.status().message());
  if (*dp_mode != privacy::DpMode::kNone) {
    privacy::DpSettings dp;
    dp.mode = *dp_mode;
    dp.noise_multiplier = f.noise_multiplier;
    dp.delta = f.delta;
    if (f.target_epsilon > 0) dp.target_epsilon = f.target_epsilon;
    if (f.adaptive_clip_quantile > 0) dp.adaptive_clip_quantile = f.adaptive_clip_quantile;
    dp.adaptive_clip_learning_rate = f.adaptive_clip_lr;
    if (f.dp_dropout_tolerance.has_value()) dp.dropout_tolerance = *f.dp_dropout_tolerance;
    // The one validation of DP settings (RoundCoordinator::Create runs it again), now, before
    // anything is loaded, in the flags' words.
    privacy::DpRoundShape shape;
    shape.clients_per_round = f.clients_per_round;
    shape.population = f.dp_population;
    shape.clip_norm = f.clip_norm;
    if (f.secagg != "none") shape.secure_aggregation_modulus_bits = f.secagg_modulus_bits;
    absl::Status valid = privacy::ValidateDpSettings(dp, shape);
    if (valid.ok())
      valid = ValidateDpPopulation(f.dp_population, f.clients_per_round, f.over_select);
    if (!valid.ok()) {
      cli::FieldFlags flags = cli::DpFieldFlags("--dp-population");
      flags.push_back({"over_select", "--over-select"});
      const cli::FlagError error = cli::InFlags(valid, flags);
      return UsageError(error.flag.empty() ? "--dp" : error.flag, error.message);
    }
    options.dp = dp;
    options.population = f.dp_population;
    options.dp_noise_seed = f.dp_noise_seed;
  } else {
    for (const char* flag :
         {"--target-epsilon", "--adaptive-clip-quantile", "--dp-dropout-tolerance",
          "--dp-noise-seed", "--allow-privacy-rollback"}) {
      if (app.count(flag) > 0) return UsageError(flag, "needs --dp central or distributed");
    }
  }
  {
    absl::StatusOr<aggregation::AggregatorSpec> aggregator =
        aggregation::ParseAggregatorSpec(f.aggregator);
    if (!aggregator.ok()) return UsageError("--aggregator", aggregator.status().message());
    if (aggregator->kind != aggregation::AggregatorKind::kMean &&
        (f.secagg != "none" || *dp_mode != privacy::DpMode::kNone)) {
      return UsageError("--aggregator",
                        absl::StrCat(f.aggregator,
                                     " needs every update in the clear: not with --secagg or --dp "
                                     "(their rounds aggregate by mean)"));
    }
    options.aggregator = *aggregator;
  }
  if (f.secagg != "none") {
    absl::StatusOr<secagg::Variant> variant = secagg::ParseVariant(f.secagg);
    if (!variant.ok()) return UsageError("--secagg", variant.status().message());
    if (!(f.clip_norm > 0)) {
      return UsageError("--clip-norm",
                        "secure aggregation needs a clip norm > 0 (the fixed-point range of the "
                        "masked values is derived from it)");
    }
    SecureAggregationSettings secure;
    secure.variant = *variant;
    // The masked sum must hold every round size's worth of weight-capped values at a fine enough
    // step: without --secagg-modulus-bits, the smallest modulus (from 32 bits) that does.
    const int64_t round_size = OverSelectedTarget(f.clients_per_round, f.over_select);
    const int64_t weight_cap = f.max_examples;
    if (*dp_mode != privacy::DpMode::kNone) {
      // DP's unit-weight encoding (privacy/dp_setup.h) is sized for the modulus, not the other
      // way round: 32 bits unless the user says otherwise; RoundCoordinator::Create refuses one
      // it does not fit.
    } else if (app.count("--secagg-modulus-bits") == 0) {
      absl::StatusOr<int> bits =
          secagg::SmallestModulusBits(32, round_size, f.clip_norm, weight_cap);
      if (!bits.ok()) {
        return UsageError("--max-examples",
                          absl::StrCat(bits.status().message(),
                                       " (even a 64-bit modulus is too small: lower --max-examples "
                                       "or --clients-per-round, or raise --clip-norm)"));
      }
      f.secagg_modulus_bits = *bits;
    } else if (absl::Status fits = secagg::ChooseEncoding(f.secagg_modulus_bits, round_size,
                                                          f.clip_norm, weight_cap)
                                       .status();
               !fits.ok()) {
      return UsageError("--secagg-modulus-bits",
                        absl::StrCat(fits.message(),
                                     " (raise --secagg-modulus-bits or leave it "
                                     "out to derive it, or lower --max-examples "
                                     "or --clients-per-round)"));
    }
    secure.modulus_bits = f.secagg_modulus_bits;
    secure.phase_timeout = absl::Seconds(f.secagg_phase_timeout);
    secure.design_dropout_rate = f.secagg_design_dropout;
    secure.corrupt_fraction = f.secagg_corrupt_fraction;
    options.secure_aggregation = secure;
  }

  std::optional<CheckpointStore> checkpoints;
  if (!f.checkpoint_dir.empty()) {
    auto opened = CheckpointStore::Open(f.checkpoint_dir);
    if (!opened.ok()) return UsageError("--checkpoint-dir", opened.status().message());
    checkpoints = std::move(*opened);
  } else if (f.allow_privacy_rollback) {
    return UsageError("--allow-privacy-rollback", "needs --checkpoint-dir (the ledger is there)");
  }
  // DP with checkpoints: the privacy ledger beside them (server/privacy_ledger.h).
  std::optional<PrivacyLedger> ledger;
  if (checkpoints && options.dp.has_value()) {
    const std::string path =
        (std::filesystem::path(f.checkpoint_dir) / std::string(kPrivacyLedgerFileName)).string();
    auto opened = PrivacyLedger::Open(path);
    if (!opened.ok()) {
      spdlog::error("{}", std::string(opened.status().message()));
      return 1;
    }
    ledger = std::move(*opened);
    if (ledger->torn_tail_bytes() > 0) {
      spdlog::warn(
          "{}: dropped a torn last record ({} bytes; a crash mid-append, before that "
          "round was acknowledged)",
          path, ledger->torn_tail_bytes());
    }
  }
  std::ofstream metrics;
  if (!f.metrics_out.empty()) {
    // Appends: a resumed run continues the same file.
    metrics.open(f.metrics_out, std::ios::app);
    if (!metrics) return UsageError("--metrics-out", "cannot open " + f.metrics_out);
  }
  std::ofstream participation;
  if (!f.participation_out.empty()) {
    participation.open(f.participation_out, std::ios::app);
    if (!participation) {
      return UsageError("--participation-out", "cannot open " + f.participation_out);
    }
  }

  CoordinatorHooks hooks;
  std::shared_ptr<models::Model> eval_model = *model;
  if (eval_set) {
    hooks.evaluate =
        [&](absl::Span<const float> params) -> absl::StatusOr<std::pair<double, double>> {
      FEDKIT_RETURN_IF_ERROR(models::AssignParameters(params, *eval_model));
      FEDKIT_ASSIGN_OR_RETURN(auto sums,
                              models::EvaluateRange(*eval_model, *eval_set, 0, eval_set->size()));
      return std::make_pair(sums.accuracy(), sums.mean_loss());
    };
  }
  // Prometheus metrics (--metrics-listen): events feed these; the endpoint starts below.
  std::unique_ptr<monitoring::CoordinatorMetrics> prometheus_metrics;
  if (!f.metrics_listen.empty()) {
    prometheus_metrics =
        std::make_unique<monitoring::CoordinatorMetrics>(std::make_shared<prometheus::Registry>());
    hooks.secagg_phase_closed = [&](int64_t, const SecAggPhaseStats& p) {
      prometheus_metrics->SecAggPhaseClosed(p.phase, p.duration, p.clients_in, p.clients_out);
    };
  }
  if (checkpoints) {
    hooks.save_checkpoint = [&](const v1::Checkpoint& c) {
      const absl::Time started = absl::Now();
      absl::Status written = checkpoints->Write(c);
      if (prometheus_metrics)
        prometheus_metrics->CheckpointWritten(absl::Now() - started, written.ok());
      return written;
    };
  }
  if (ledger) {
    hooks.privacy_released = [&](const PrivacyLedgerRecord& r) { return ledger->Append(r); };
  }
  hooks.assignment_declined = [](const v1::DeclineRequest& d) {
    spdlog::info("{} declined its round {} assignment ({})", d.client_id(), d.round(),
                 absl::AsciiStrToLower(v1::DeclineRequest::Reason_Name(d.reason())));
  };
  hooks.log = [](const std::string& line) { spdlog::warn("{}", line); };
  if (participation.is_open()) {
    hooks.round_participation = [&](const RoundParticipation& p) {
      participation << ParticipationToJson(p) << "\n" << std::flush;
    };
  }
  // The metrics' elapsed_seconds: wall time since the first round this process committed started
  // (as fedkit-sim's, from the first round's start).
  std::optional<absl::Time> first_round_started;
  hooks.round_committed = [&](const RoundOutcome& r) {
    const absl::Time committed = absl::Now();
    if (!first_round_started.has_value())
      first_round_started = committed - absl::Seconds(r.seconds);
    nlohmann::json line = {
        {"round", r.round},
        {"elapsed_seconds", absl::ToDoubleSeconds(committed - *first_round_started)},
        {"participants", r.participants},
        {"examples", r.examples},
        {"train_loss", r.train_loss},
        {"seconds", r.seconds},
        {"upload_bytes", r.upload_bytes},
        {"download_bytes", r.download_bytes}};
    if (r.accuracy) {
      line["accuracy"] = *r.accuracy;
      line["loss"] = *r.loss;
    }
    std::string privacy;
    if (r.epsilon) {
      line["epsilon"] = *r.epsilon;
      line["delta"] = f.delta;
      privacy = absl::StrFormat("  epsilon %.4f (delta %g)", *r.epsilon, f.delta);
    }
    // The names fedkit-sim's --metrics-out uses.
    if (r.clip_norm) {
      line["clip_norm"] = *r.clip_norm;
      privacy += absl::StrFormat("  clip %.4g", *r.clip_norm);
    }
    if (r.unclipped_fraction) line["unclipped_fraction"] = *r.unclipped_fraction;
    // FedBuff (fedkit-sim's names).
    std::string staleness;
    if (r.staleness_mean) {
      line["staleness_mean"] = *r.staleness_mean;
      line["staleness_max"] = *r.staleness_max;
      line["assigned"] = r.assigned;
      staleness = absl::StrFormat("  staleness %.2f (max %d)", *r.staleness_mean, *r.staleness_max);
    }
    std::cout << absl::StrFormat("round %4d  participants %d  accuracy %s  %.2fs%s%s\n", r.round,
                                 r.participants,
                                 r.accuracy ? absl::StrFormat("%.4f", *r.accuracy) : "-", r.seconds,
                                 privacy, staleness)
              << std::flush;
    if (metrics.is_open()) metrics << line.dump() << "\n" << std::flush;
    if (prometheus_metrics) {
      prometheus_metrics->RoundCommitted({.round = r.round,
                                          .participants = r.participants,
                                          .assigned = r.assigned,
                                          .seconds = r.seconds,
                                          .accuracy = r.accuracy,
                                          .loss = r.loss});
    }
  };

  cli::FieldFlags field_flags = cli::DpFieldFlags("--dp-population");
  field_flags.push_back({"over_select", "--over-select"});
  field_flags.push_back({"allow_privacy_rollback", "--allow-privacy-rollback"});
  field_flags.push_back({"aggregator", "--aggregator"});
  field_flags.push_back({"fedbuff", "--algorithm fedbuff"});
  field_flags.push_back({"secure_aggregation", "--secagg"});
  field_flags.push_back({"dp", "--dp"});
  field_flags.push_back({"buffer_size", "--buffer-size"});
  field_flags.push_back({"concurrency", "--concurrency"});
  field_flags.push_back({"staleness", "--staleness"});
  auto coordinator = RoundCoordinator::Create(options, models::LayoutOf(**model),
                                              models::FlattenParameters(**model), hooks);
  if (!coordinator.ok()) {
    const cli::FlagError error = cli::InFlags(coordinator.status(), field_flags);
    std::cerr << "fedkit-coordinator: " << (error.flag.empty() ? "" : error.flag + ": ")
              << error.message << "\n";
    return 2;
  }
  // What one client can do to a round under these options (no clip norm, a large weight cap).
  const cli::FieldFlags influence_flags = {{"clip_norm", "--clip-norm"},
                                           {"max_examples_per_client", "--max-examples"}};
  for (const std::string& warning : SingleClientInfluenceWarnings(options)) {
    spdlog::warn("{}", cli::InFlags(absl::UnknownError(warning), influence_flags).message);
  }
  if (checkpoints) {
    std::string skipped;
    auto newest = checkpoints->LoadNewest(&skipped);
    if (!skipped.empty()) spdlog::warn("skipped damaged checkpoints:\n{}", skipped);
    if (!newest.ok()) {
      spdlog::error("{}", std::string(newest.status().message()));
      return 1;
    }
    if (newest->has_value()) {
      absl::Status restored = (*coordinator)->Restore(**newest);
      if (!restored.ok()) {
        spdlog::error("cannot resume from {}: {}", f.checkpoint_dir,
                      std::string(restored.message()));
        return 1;
      }
      spdlog::info("resumed after round {}", (*newest)->rounds_completed());
    }
  }
  if (ledger) {
    // A checkpoint older than the ledger's last release (or none) would re-run released rounds.
    absl::Status resumed =
        (*coordinator)->ResumePrivacyLedger(ledger->records(), f.allow_privacy_rollback);
    if (!resumed.ok()) {
      spdlog::error("{}: {}", ledger->path(), cli::InFlags(resumed, field_flags).message);
      return 1;
    }
  }

  std::unique_ptr<monitoring::MetricsEndpoint> metrics_endpoint;
  if (prometheus_metrics) {
    RoundCoordinator* const c = coordinator->get();
    auto endpoint = monitoring::MetricsEndpoint::Create(
        f.metrics_listen,
        {prometheus_metrics->registry(),
         std::make_shared<monitoring::StatusCollector>([c] { return c->Status(absl::Now()); }),
         std::make_shared<monitoring::ProcessCollector>()});
    if (!endpoint.ok()) return UsageError("--metrics-listen", endpoint.status().message());
    metrics_endpoint = *std::move(endpoint);
    spdlog::info("Prometheus metrics on port {} (/metrics)", metrics_endpoint->port());
  }

  std::shared_ptr<grpc::ServerCredentials> credentials;
  if (f.insecure) {
    credentials = grpc::InsecureServerCredentials();
  } else {
    auto cert = ReadFile(f.tls_cert);
    if (!cert.ok()) return UsageError("--tls-cert", cert.status().message());
    auto key = ReadFile(f.tls_key);
    if (!key.ok()) return UsageError("--tls-key", key.status().message());
    grpc::SslServerCredentialsOptions ssl;
    ssl.pem_key_cert_pairs.push_back({*key, *cert});
    if (!f.tls_client_ca.empty()) {
      auto ca = ReadFile(f.tls_client_ca);
      if (!ca.ok()) return UsageError("--tls-client-ca", ca.status().message());
      ssl.pem_root_certs = *ca;
      ssl.client_certificate_request = GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY;
    }
    credentials = grpc::SslServerCredentials(ssl);
  }

  CoordinatorServiceOptions service_options;
  service_options.max_concurrent_transfers = f.max_transfers;
  service_options.max_streams = f.max_streams;
  service_options.stream_idle_timeout = absl::Seconds(f.stream_idle_timeout);
  service_options.max_stream_duration = absl::Seconds(f.max_stream_seconds);
  service_options.caller.max_ids_per_identity = f.max_ids_per_identity;
  service_options.caller.check_ins_per_second = f.checkin_rate;
  service_options.caller.check_in_burst = f.checkin_burst;
  service_options.caller.max_streams_per_identity = f.max_streams_per_identity;
  if (prometheus_metrics) {
    service_options.update_processed = [&](absl::string_view kind, absl::Duration took,
                                           bool accepted) {
      prometheus_metrics->UpdateProcessed(kind, took, accepted);
    };
  }
  CoordinatorService service(coordinator->get(), std::move(auth), service_options, artifact.get());
  grpc::EnableDefaultHealthCheckService(true);
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort(f.listen, credentials, &port);
  builder.RegisterService(&service);
  builder.SetMaxReceiveMessageSize(8 << 20);  // chunks are 1 MiB; refuse anything much larger
  // Memory flat in the fleet: without BDP probing each stream's HTTP/2 flow-control window stays
  // at gRPC's 64 KiB default, so a device whose upload waits for a transfer slot (--max-transfers)
  // can push only that much ahead. With probing, loopback windows grow to megabytes and 1,000
  // waiting uploads held ~370 MiB of read buffers (heaptrack, tests/coordinator_load_test.cc).
  builder.AddChannelArgument(GRPC_ARG_HTTP2_BDP_PROBE, 0);
  // Every RPC in progress holds a gRPC thread (a transfer waiting for its slot too); past
  // --max-threads gRPC answers RESOURCE_EXHAUSTED, which devices retry with backoff.
  grpc::ResourceQuota quota("fedkit-coordinator");
  if (f.max_threads > 0) quota.SetMaxThreads(static_cast<int>(f.max_threads));
  if (f.grpc_memory_mb > 0) quota.Resize(static_cast<size_t>(f.grpc_memory_mb) << 20);
  if (f.max_threads > 0 || f.grpc_memory_mb > 0) builder.SetResourceQuota(quota);
  // Connections that go quiet are closed, and no connection may open unbounded streams.
  builder.AddChannelArgument(GRPC_ARG_MAX_CONCURRENT_STREAMS, 64);
  builder.AddChannelArgument(GRPC_ARG_MAX_CONNECTION_IDLE_MS, 5 * 60 * 1000);
  // A waiting upload may push at most this much ahead of the transfer slot it waits for.
  builder.AddChannelArgument(GRPC_ARG_HTTP2_STREAM_LOOKAHEAD_BYTES, 16 * 1024);
  builder.SetMaxSendMessageSize(8 << 20);
  if (prometheus_metrics) {
    std::vector<std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>> creators;
    creators.push_back(
        std::make_unique<monitoring::RpcMetricsInterceptorFactory>(prometheus_metrics.get()));
    builder.experimental().SetInterceptorCreators(std::move(creators));
  }
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (!server || port == 0) {
    return UsageError("--listen", "cannot listen on " + f.listen);
  }
  spdlog::info(
      "{}",
      absl::StrFormat(
          "serving on port %d (%s%s), model %s (%d parameters), %d rounds of %s", port,
          f.insecure ? "plaintext" : "TLS", f.tls_client_ca.empty() ? "" : ", mutual", f.model,
          (*coordinator)->model_size(), f.rounds,
          options.fedbuff.has_value()
              ? absl::StrFormat("%d uploads (FedBuff%s: %d devices at once, staleness %s)",
                                f.fedbuff.settings.buffer_size,
                                options.secure_aggregation.has_value()
                                    ? ", each buffer a secure aggregation cohort"
                                    : "",
                                f.fedbuff.settings.concurrency,
                                aggregation::FormatStalenessWeighting(f.fedbuff.settings.staleness))
              : absl::StrCat(f.clients_per_round)));
  if (artifact != nullptr) {
    spdlog::info(
        "{}",
        absl::StrFormat(
            "serving the model artifact sha256:%s (%d bytes), %s", artifact->artifact().sha256(),
            artifact->artifact().size_bytes(),
            artifact->is_signed()
                ? absl::StrCat("signed by key ", artifact->artifact().key_fingerprint())
                : std::string("UNSIGNED: devices load it only if they allow unsigned artifacts")));
  }

  // --http: the live dashboard (dashboard/dashboard_server.h), serving GetStatus until Run returns.
  std::unique_ptr<dashboard::DashboardServer> dashboard_server;
  if (!f.http.empty()) {
    RoundCoordinator* const c = coordinator->get();
    auto started = dashboard::DashboardServer::Create({.listen = f.http},
                                                      [c] { return c->Status(absl::Now()); });
    if (!started.ok()) return UsageError("--http", started.status().message());
    dashboard_server = *std::move(started);
    spdlog::info("dashboard on {}", dashboard_server->url());
  }

  // SIGTERM / SIGINT: a graceful stop. No round starts; a commit or unmasking in progress
  // finishes; the round in progress is abandoned; a checkpoint of what is committed is written;
  // exit 0. A second signal while draining does not interrupt it (SIGKILL does; every committed
  // round is durable anyway).
  absl::Notification shutdown;
  std::atomic<int> exit_code{0};
  std::atomic<int> stop_signal{0};
  std::thread signal_thread([&] {
    char byte = 0;
    while (read(stop_signal_pipe[0], &byte, 1) < 0 && errno == EINTR) {
    }
    const int sig = static_cast<unsigned char>(byte);  // 0: woken by the ticker, no signal
    if (sig != 0 && !shutdown.HasBeenNotified()) {
      stop_signal = sig;
      shutdown.Notify();
    }
  });

  std::thread ticker([&] {
    std::optional<absl::Time> finished_at;
    // While no round can start, say every 30 s what is missing (a shrunken fleet is visible).
    absl::Time waiting_logged = absl::Now();
    while (!shutdown.WaitForNotificationWithTimeout(absl::Milliseconds(100))) {
      const absl::Time now = absl::Now();
      absl::Status tick = (*coordinator)->Tick(now);
      if (!tick.ok()) {
        spdlog::error("stopping: {}", std::string(tick.message()));
        exit_code = 1;
        break;
      }
      if (now - waiting_logged >= absl::Seconds(30)) {
        waiting_logged = now;
        const std::string waiting = (*coordinator)->WaitingFor(now);
        if (absl::StartsWith(waiting, "clients:")) {
          spdlog::info("waiting for {}", waiting);
        }
      }
      if ((*coordinator)->finished()) {
        if (!finished_at) finished_at = absl::Now();
        if (absl::Now() - *finished_at >= absl::Seconds(f.linger)) break;
      }
    }
    if (!shutdown.HasBeenNotified()) shutdown.Notify();
    // Wake the signal thread so it can be joined.
    const char wake = 0;
    (void)!write(stop_signal_pipe[1], &wake, 1);
  });
  ticker.join();
  signal_thread.join();
  if (const int sig = stop_signal.load(); sig != 0) {
    spdlog::info("{}: stopping after the commit in progress, if any", strsignal(sig));
    absl::StatusOr<int64_t> drained = (*coordinator)->Drain();
    if (drained.ok()) {
      spdlog::info("stopped with {} rounds committed{}", *drained,
                   checkpoints ? absl::StrCat(", checkpoint in ", f.checkpoint_dir)
                               : std::string(" (no --checkpoint-dir: a restart begins anew)"));
    } else {
      spdlog::error("stopping: {}", std::string(drained.status().message()));
      exit_code = 1;
    }
  }
  server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));

  if (const std::string reason = (*coordinator)->stop_reason(); !reason.empty()) {
    spdlog::info("{}", reason);
  }
  if ((*coordinator)->finished() && !f.model_out.empty()) {
    std::vector<float> params = (*coordinator)->global_parameters();
    absl::Status saved = models::AssignParameters(params, **model);
    if (saved.ok()) saved = models::SaveModel(**model, f.model_out);
    if (!saved.ok()) {
      spdlog::error("{}", std::string(saved.message()));
      return 1;
    }
    spdlog::info("wrote final model to {}", f.model_out);
  }
  // Stopped by a signal and drained: a clean, resumable stop.
  if (exit_code == 0 && !(*coordinator)->finished() && stop_signal.load() == 0) exit_code = 1;
  return exit_code;
}

}  // namespace
}  // namespace fedkit::server

int main(int argc, char** argv) { return fedkit::server::Run(argc, argv); }
