// fedkit-sim: federated training of a population of virtual clients in one process.
#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <limits>
#include <optional>
#include <string>
#include <thread>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "aggregation/robust.h"
#include "cli/fedbuff_flags.h"
#include "cli/flag_errors.h"
#include "cli/yaml_config.h"
#include "compression/download_codec.h"
#include "compression/secagg_compression.h"
#include "data/federated_dataset.h"
#include "data/idx.h"
#include "models/compute_threads.h"
#include "models/flat_params.h"
#include "models/tensor_file.h"
#include "models/torchscript_model.h"
#include "server/participation.h"
#include "simulation/algorithm.h"
#include "simulation/attack.h"
#include "simulation/fedbuff_simulator.h"
#include "simulation/metrics_writer.h"
#include "simulation/plot_runner.h"
#include "simulation/progress_bar.h"
#include "simulation/simulator.h"
#ifdef FEDKIT_WITH_MPI
#include "simulation/mpi_collective.h"
#endif

namespace fedkit::simulation {
namespace {

struct Flags {
  std::string dataset = "fmnist";
  std::string data_dir = data::kDefaultFashionMnistDir;
  std::string partition;  // default: iid for fmnist, natural for synthetic
  int64_t clients = 100;
  int64_t synthetic_eval_clients = 1000;
  std::string server_optimizer = "sgd";
  secagg::SecureAggregationSettings secure_aggregation;  // used with --secagg other than none
  double max_client_weight = 0;
  std::string secagg = "none";
  std::string compression = "none";
  std::string download_compression = "float32";
  std::string aggregator = "mean";
  std::string attack = "none";
  std::string algorithm = "fedavg";
  std::string dp = "none";
  double adaptive_clip_quantile = 0;  // the three are unset unless given
  double target_epsilon = 0;
  double dp_dropout_tolerance = 0;
  double round_deadline = 0;  // 0 = none
  std::string dropout_phase = "any";
  std::vector<std::string> drop_clients;
  std::string client_ids;
  std::string replay_participation;
  std::string metrics_out;
  std::string model_out;
  std::string plot;
  std::string progress = "auto";
  bool eval_clients_local = false;
  ClientEvaluationOptions client_evaluation;  // used with --eval-clients-local
  SimulationOptions sim;
  cli::FedBuffFlags fedbuff;
};

// Prints "fedkit-sim: --flag: message" and returns the CLI's usage exit status.
int UsageError(const std::string& flag, absl::string_view message) {
  std::cerr << "fedkit-sim: " << flag << ": " << message << "\n";
  return 2;
}

// `collective`: null for one process; under mpirun every rank runs this, and only rank 0 prints
// rounds and writes the metrics and the model.
int Run(int argc, char** argv, Collective* collective) {
  const bool lead = collective == nullptr || collective->rank() == 0;
  Flags f;
  f.sim.threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  CLI::App app("Federated learning simulation of many virtual clients in one process",
               "fedkit-sim");
  // A flag given twice (say in a script and again by hand) takes the last value, as most CLIs do.
  app.option_defaults()->always_capture_default()->multi_option_policy(
      CLI::MultiOptionPolicy::TakeLast);
  app.add_option("--dataset", f.dataset,
                 "fmnist | synthetic:ALPHA,BETA | leaf:PATH | tensors:PATH");
  app.add_option("--data-dir", f.data_dir, "Directory of the Fashion-MNIST IDX files");
  app.add_option("--model", f.sim.model,
                 "logreg | mlp | cnn | seed, or a TorchScript file (PATH.pt)");
  CLI::Option* clients_option =
      app.add_option("--clients", f.clients,
                     "Population size (leaf, tensors: the first N clients; unset = all)")
          ->check(cli::Positive());
  CLI::Option* clients_per_round =
      app.add_option("--clients-per-round", f.sim.clients_per_round, "Clients sampled per round")
          ->check(cli::Positive());
  app.add_option("--algorithm", f.algorithm,
                 absl::StrCat(AlgorithmNames(),
                              ": FedAvg (FedProx with --prox-mu), SCAFFOLD (control variates), "
                              "FedNova (updates normalized by their step counts), FedBuff "
                              "(buffered asynchronous aggregation: --concurrency clients train at "
                              "once, the server commits every --buffer-size uploads; a round is "
                              "a commit); SCAFFOLD, FedNova and FedBuff in plain rounds only"));
  cli::AddFedBuffFlags(app, "clients training at once (C), at most --clients", &f.fedbuff);
  app.add_option("--rounds", f.sim.rounds, "Number of rounds")->check(cli::Positive());
  app.add_option("--local-epochs", f.sim.plan.local_epochs, "Local epochs per round")
      ->check(cli::Positive());
  app.add_option("--batch-size", f.sim.plan.batch_size, "Local minibatch size")
      ->check(cli::Positive());
  app.add_option("--client-lr", f.sim.plan.learning_rate, "Client SGD learning rate")
      ->check(cli::Positive());
  app.add_option("--client-momentum", f.sim.plan.momentum, "Client SGD momentum")
      ->check(cli::BelowOne());
  app.add_option("--prox-mu", f.sim.plan.prox_mu, "FedProx proximal weight (0 = FedAvg)")
      ->check(cli::NonNegative());
  app.add_option("--control-variates-dir", f.sim.algorithm.control_variates_dir,
                 "SCAFFOLD: keep the clients' control variates in this (empty or new) directory, "
                 "one file per client seen, instead of in memory");
  app.add_option("--max-steps", f.sim.plan.max_steps,
                 "Compute budget per round: local training stops after this many minibatch steps "
                 "(0 = no limit); --device-speeds' virtual time counts the steps run")
      ->check(cli::NonNegative());
  app.add_option("--client-batching", f.sim.client_batching,
                 "Train up to N of a round's clients together on each thread (stacked parameters, "
                 "batched kernels; each client still trains on its own data): faster for small "
                 "models, equal to one-by-one training up to float rounding, so not bit-identical "
                 "to devices. 0 = off. Registered models, plain fedavg rounds")
      ->check(cli::NonNegative());
  app.add_option("--server-optimizer", f.server_optimizer, "sgd | adam | yogi | adagrad");
  app.add_option("--server-lr", f.sim.server_optimizer.learning_rate, "Server learning rate")
      ->check(cli::Positive());
  app.add_option("--server-momentum", f.sim.server_optimizer.momentum, "Server SGD momentum")
      ->check(cli::BelowOne());
  app.add_option("--server-beta1", f.sim.server_optimizer.beta1,
                 "Adaptive server optimizers' beta1")
      ->check(cli::BelowOne());
  app.add_option("--server-beta2", f.sim.server_optimizer.beta2, "Adam/Yogi beta2")
      ->check(cli::BelowOne());
  app.add_option("--server-tau", f.sim.server_optimizer.tau, "Adaptive server optimizers' tau")
      ->check(cli::Positive());
  app.add_option("--partition", f.partition,
                 "iid | dirichlet:ALPHA | shards:S | labels:K | quantity:BETA | noise:SIGMA "
                 "(fmnist; default iid) | natural (synthetic, leaf, tensors)");
  app.add_option("--clip-norm", f.sim.plan.clip_norm, "L2 clip of each client delta (0 = off)")
      ->check(cli::NonNegative());
  app.add_option("--max-client-weight", f.max_client_weight,
                 "Cap on a client's FedAvg weight (its example count), rounded up to an integer; "
                 "0 = none (a client reporting over 2^20 examples is refused)")
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
                 "median | trimmed-mean:BETA | krum:F | multi-krum:F,M | norm-bound:C");
  app.add_option("--attack", f.attack,
                 "Attackers' uploads: none | sign-flip | scale:S | label-flip | noise:SIGMA "
                 "(plain rounds only)");
  app.add_option("--attack-fraction", f.sim.attack_fraction,
                 "Fraction of the population that attacks (a fixed subset drawn from --seed)")
      ->check(cli::BelowOne());
  app.add_option("--secagg", f.secagg,
                 "Secure aggregation: none | secagg (Bonawitz et al.) | secagg+ (Bell et al.)");
  app.add_option("--secagg-modulus-bits", f.secure_aggregation.modulus_bits,
                 "Secure aggregation: values are summed modulo 2^BITS")
      ->check(CLI::Range(8, 64));
  app.add_option("--secagg-design-dropout", f.secure_aggregation.design_dropout_rate,
                 "SecAgg+: dropout rate the graph is sized to survive")
      ->check(cli::BelowOne());
  app.add_option("--secagg-corrupt-fraction", f.secure_aggregation.corrupt_fraction,
                 "SecAgg+: fraction of clients assumed to collude with the server")
      ->check(cli::BelowOne());
  app.add_option("--dropout", f.sim.dropout.rate,
                 "Probability that a sampled client goes silent during the round")
      ->check(cli::BelowOne());
  app.add_option("--dropout-phase", f.dropout_phase,
                 "Where dropouts happen: advertise | share | upload | unmask | any");
  app.add_option("--drop-clients", f.drop_clients,
                 "Fault injection: CLIENT@PHASE,... clients that always go silent in that phase")
      ->delimiter(',');
  app.add_option(
      "--device-speeds", f.sim.system.device_speeds,
      "System heterogeneity in virtual time: lognormal:MEDIAN,SIGMA (seconds per "
      "example) | two-speed:SECONDS,FRACTION,SLOWDOWN (a fraction of the devices "
      "SLOWDOWN times slower) | trace:FILE (CSV seconds_per_example,fixed_seconds; client i takes "
      "line i mod lines)");
  app.add_option("--round-deadline", f.round_deadline,
                 "Virtual seconds a round waits; later clients are stragglers (0 = none)")
      ->check(cli::NonNegative());
  app.add_option("--over-select", f.sim.system.over_select,
                 "Sample ceil(K * (1 + F)) clients and keep the first K to finish (FedBuff "
                 "with --secagg: cohorts of that size)")
      ->check(CLI::Range(0.0, 10.0));
  app.add_option("--dp", f.dp,
                 "User-level DP-FedAvg: none | central (server adds Gaussian noise) | distributed "
                 "(clients add discrete Gaussian noise under --secagg)");
  app.add_option("--noise-multiplier", f.sim.dp.noise_multiplier,
                 "DP: noise stddev on the sum of clipped updates / clip norm (z)")
      ->check(cli::NonNegative());
  // Options that are unset unless given (Simulator::Create checks their ranges).
  CLI::Option* adaptive_quantile =
      app.add_option("--adaptive-clip-quantile", f.adaptive_clip_quantile,
                     "DP: adapt the clip to this quantile of the update norms (Andrew et al.); "
                     "--clip-norm is the initial clip")
          ->default_str("off");
  app.add_option("--adaptive-clip-lr", f.sim.dp.adaptive_clip_learning_rate,
                 "DP: adaptive clipping's learning rate (geometric update)")
      ->check(cli::NonNegative());
  CLI::Option* target_epsilon =
      app.add_option("--target-epsilon", f.target_epsilon,
                     "DP: stop before a round that would take epsilon above this")
          ->default_str("none");
  app.add_option("--delta", f.sim.dp.delta, "DP: the delta of the reported (epsilon, delta)");
  CLI::Option* dp_dropout_tolerance =
      app.add_option("--dp-dropout-tolerance", f.dp_dropout_tolerance,
                     "Distributed DP: fraction of sampled clients that may drop with the noise "
                     "still sufficient")
          ->default_str("from --dropout: its binomial 1e-3 upper tail");
  app.add_option("--client-ids", f.client_ids,
                 "File of the clients' ids, one per line, line i for client i (as fedkit-client "
                 "--client-id with --client-index i); rounds sample from the sorted ids as the "
                 "coordinator does. Default: client-%06d of the index");
  app.add_option("--replay-participation", f.replay_participation,
                 "Replay a coordinator run (its --participation-out file): each round samples "
                 "from the recorded pool, checks that it picked the devices the coordinator "
                 "assigned, and aggregates those the coordinator aggregated");
  app.add_option("--seed", f.sim.seed, "Seed of everything random");
  app.add_option("--threads", f.sim.threads, "Worker threads (results do not depend on it)")
      ->check(cli::Positive());
  app.add_option("--eval-every", f.sim.eval_every,
                 "Evaluate every N rounds (and after the last); 0 = only after the last")
      ->check(cli::NonNegative());
  app.add_option("--eval-clients", f.synthetic_eval_clients,
                 "Synthetic: evaluate on the test split of this many clients")
      ->check(cli::Positive());
  app.add_flag("--eval-clients-local", f.eval_clients_local,
               "Per-client evaluation at every evaluated round: the global model's accuracy on "
               "each client's own held-out examples (mean, p10/p50/p90, worst decile in the "
               "metrics). Fashion-MNIST clients hold out --local-eval-fraction of their examples "
               "and then train on the rest only; data with per-client test examples (synthetic, "
               "leaf, tensors without test_x) uses those instead");
  CLI::Option* local_eval_fraction =
      app.add_option("--local-eval-fraction", f.client_evaluation.local_eval_fraction,
                     "With --eval-clients-local: the share of each client's examples held out "
                     "(seeded per client), in (0, 1)");
  CLI::Option* local_eval_clients =
      app.add_option("--local-eval-clients", f.client_evaluation.local_eval_clients,
                     "With --eval-clients-local: evaluate this many clients, drawn once from "
                     "--seed (0 = all)")
          ->check(cli::NonNegative());
  CLI::Option* finetune_steps =
      app.add_option("--eval-finetune-steps", f.client_evaluation.finetune_steps,
                     "With --eval-clients-local: also each client's accuracy after this many "
                     "local SGD steps (--client-lr, --batch-size, --client-momentum) from the "
                     "global model on its training examples (personalization); 0 = off")
          ->check(cli::NonNegative());
  app.add_option("--metrics-out", f.metrics_out, "JSON Lines file, one object per evaluated round");
  app.add_option("--model-out", f.model_out, "Write the final global model here (torch::save)");
  app.add_option(
      "--plot", f.plot,
      "At the end, plot accuracy and loss against round (and with --eval-clients-local a "
      "histogram of the clients' accuracies) into this .png or .svg file "
      "(runs fedkit-plot, found beside fedkit-sim or on PATH)");
  app.add_option("--progress", f.progress,
                 "Progress bar on stderr: auto (when stderr is a terminal) | on | off");
  cli::AddYamlConfigOption(app);
  if (int code = cli::ParseCommandLine(app, argc, argv); code >= 0) return code;

  // Values whose syntax CLI11 cannot check.
  data::FederatedDatasetOptions data_options;
  absl::StatusOr<data::DatasetSpec> dataset = data::ParseDatasetSpec(f.dataset);
  if (!dataset.ok()) return UsageError("--dataset", dataset.status().message());
  data_options.dataset = *dataset;
  const bool from_file = dataset->kind == data::DatasetSpec::Kind::kLeaf ||
                         dataset->kind == data::DatasetSpec::Kind::kTensors;
  const bool natural = from_file || dataset->kind == data::DatasetSpec::Kind::kSynthetic;
  if (f.partition.empty()) f.partition = natural ? "natural" : "iid";
  // A LEAF or tensor file brings its population: all of it unless --clients is given (the real
  // count replaces this after loading; Simulator::Create checks --clients-per-round against it).
  const bool all_file_clients = from_file && clients_option->count() == 0;
  if (all_file_clients) f.clients = std::numeric_limits<int64_t>::max();
  absl::StatusOr<data::PartitionSpec> partition = data::ParsePartitionSpec(f.partition);
  if (!partition.ok()) return UsageError("--partition", partition.status().message());
  absl::StatusOr<Algorithm> algorithm = ParseAlgorithm(f.algorithm);
  if (!algorithm.ok()) return UsageError("--algorithm", algorithm.status().message());
  f.sim.algorithm.algorithm = *algorithm;
  absl::StatusOr<aggregation::ServerOptimizerOptions::Kind> optimizer =
      aggregation::ParseServerOptimizerKind(f.server_optimizer);
  if (!optimizer.ok()) return UsageError("--server-optimizer", optimizer.status().message());
  f.sim.server_optimizer.kind = *optimizer;
  const bool fedbuff = f.sim.algorithm.algorithm == Algorithm::kFedBuff;
  if (fedbuff) {
    if (clients_per_round->count() > 0) {
      return UsageError("--clients-per-round",
                        "not with --algorithm fedbuff: --concurrency clients train at once and "
                        "--buffer-size uploads make a commit");
    }
    if (collective != nullptr && collective->size() > 1) {
      return UsageError("--algorithm", "fedbuff runs in one process, not under mpirun yet");
    }
  }
  if (std::optional<cli::FlagError> error = cli::ResolveFedBuffFlags(fedbuff, &f.fedbuff)) {
    return UsageError(error->flag, error->message);
  }
  if (f.max_client_weight > 0) f.sim.max_client_weight = f.max_client_weight;
  if (f.round_deadline > 0) f.sim.system.deadline_seconds = f.round_deadline;
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
    f.sim.plan.compression = *spec;
  }
  {
    absl::StatusOr<compression::DownloadEncoding> encoding =
        compression::ParseDownloadEncoding(f.download_compression);
    if (!encoding.ok()) return UsageError("--download-compression", encoding.status().message());
    f.sim.download_encoding = *encoding;
  }
  {
    // Robust aggregators and attackers need every update in the clear: plain rounds only.
    const bool plain = f.secagg == "none" && f.dp == "none";
    absl::StatusOr<aggregation::AggregatorSpec> aggregator =
        aggregation::ParseAggregatorSpec(f.aggregator);
    if (!aggregator.ok()) return UsageError("--aggregator", aggregator.status().message());
    if (aggregator->kind != aggregation::AggregatorKind::kMean && !plain) {
      return UsageError("--aggregator",
                        absl::StrCat(f.aggregator,
                                     " needs every update in the clear: not with --secagg or --dp "
                                     "(their rounds aggregate by mean)"));
    }
    f.sim.aggregator = *aggregator;
    absl::StatusOr<AttackSpec> attack = ParseAttackSpec(f.attack);
    if (!attack.ok()) return UsageError("--attack", attack.status().message());
    if (attack->kind != AttackKind::kNone && !plain) {
      return UsageError("--attack", "attackers are simulated without --secagg and --dp only");
    }
    if (attack->kind == AttackKind::kNone && f.sim.attack_fraction > 0) {
      return UsageError("--attack-fraction", "needs --attack (what the attackers do)");
    }
    f.sim.attack = *attack;
  }
  if (f.secagg != "none") {
    absl::StatusOr<secagg::Variant> variant = secagg::ParseVariant(f.secagg);
    if (!variant.ok()) return UsageError("--secagg", variant.status().message());
    f.secure_aggregation.variant = *variant;
    f.sim.secure_aggregation = f.secure_aggregation;
    if (!(f.sim.plan.clip_norm > 0)) {
      return UsageError("--clip-norm",
                        "secure aggregation needs a clip norm > 0 (the fixed-point range of the "
                        "masked values is derived from it)");
    }
  }
  absl::StatusOr<DpMode> dp_mode = ParseDpMode(f.dp);
  if (!dp_mode.ok()) return UsageError("--dp", dp_mode.status().message());
  f.sim.dp.mode = *dp_mode;
  if (adaptive_quantile->count() > 0) {
    f.sim.dp.adaptive_clip_quantile = f.adaptive_clip_quantile;
  }
  if (target_epsilon->count() > 0) f.sim.dp.target_epsilon = f.target_epsilon;
  if (dp_dropout_tolerance->count() > 0) f.sim.dp.dropout_tolerance = f.dp_dropout_tolerance;
  for (const std::string& entry : f.drop_clients) {
    const size_t at = entry.find('@');
    int64_t client = -1;
    absl::StatusOr<secagg::ClientPhase> phase =
        at == std::string::npos ? absl::InvalidArgumentError("expected CLIENT@PHASE")
                                : secagg::ParseClientPhase(entry.substr(at + 1));
    if (!phase.ok() || !absl::SimpleAtoi(entry.substr(0, at), &client) || client < 0 ||
        client >= f.clients) {
      return UsageError(
          "--drop-clients",
          absl::StrCat("'", entry, "': expected CLIENT@PHASE with CLIENT in [0, ", f.clients,
                       ") and PHASE one of advertise, share, upload, "
                       "unmask"));
    }
    f.sim.dropout.forced[client] = *phase;
  }
  if (f.dropout_phase != "any") {
    absl::StatusOr<secagg::ClientPhase> phase = secagg::ParseClientPhase(f.dropout_phase);
    if (!phase.ok()) return UsageError("--dropout-phase", phase.status().message());
    f.sim.dropout.phase = *phase;
  }
  if (!f.client_ids.empty()) {
    std::ifstream in(f.client_ids);
    if (!in) return UsageError("--client-ids", "cannot read " + f.client_ids);
    for (std::string line; std::getline(in, line);) {
      if (!line.empty() && line.back() == '\r') line.pop_back();
      if (!line.empty()) f.sim.client_ids.push_back(line);
    }
    if (!all_file_clients && static_cast<int64_t>(f.sim.client_ids.size()) != f.clients) {
      return UsageError("--client-ids",
                        absl::StrFormat("%s has %d ids; --clients is %d", f.client_ids,
                                        f.sim.client_ids.size(), f.clients));
    }
  }
  if (!f.replay_participation.empty()) {
    absl::StatusOr<std::vector<server::RoundParticipation>> replay =
        server::ReadParticipationFile(f.replay_participation);
    if (!replay.ok()) return UsageError("--replay-participation", replay.status().message());
    f.sim.replay = *std::move(replay);
  }
  if (fedbuff && f.fedbuff.settings.concurrency > f.clients) {
    return UsageError("--concurrency", absl::StrFormat("%d is more than --clients %d",
                                                       f.fedbuff.settings.concurrency, f.clients));
  }
  if (!fedbuff && f.sim.clients_per_round > f.clients) {
    return UsageError("--clients-per-round", absl::StrFormat("%d is more than --clients %d",
                                                             f.sim.clients_per_round, f.clients));
  }
  if (!f.model_out.empty()) {  // checked on every rank: all fail alike
    const auto parent = std::filesystem::absolute(f.model_out).parent_path();
    if (!std::filesystem::is_directory(parent)) {
      return UsageError("--model-out", "directory " + parent.string() + " does not exist");
    }
  }
  if (!f.eval_clients_local) {
    for (CLI::Option* option : {local_eval_fraction, local_eval_clients, finetune_steps}) {
      if (option->count() > 0) {
        return UsageError(option->get_name(), "needs --eval-clients-local (per-client evaluation)");
      }
    }
  } else {
    const double fraction = f.client_evaluation.local_eval_fraction;
    if (!(fraction > 0 && fraction < 1)) {
      return UsageError("--local-eval-fraction",
                        absl::StrCat("must be in (0, 1) (the share of each client's examples held "
                                     "out), got ",
                                     fraction));
    }
    f.sim.client_evaluation = f.client_evaluation;
  }
  absl::StatusOr<ProgressMode> progress_mode = ParseProgressMode(f.progress);
  if (!progress_mode.ok()) return UsageError("--progress", progress_mode.status().message());
  // --plot: before the run, everything that could stop the picture being drawn at its end.
  std::string fedkit_plot;
  if (!f.plot.empty()) {
    if (absl::Status s = CheckPlotOutput(f.plot); !s.ok()) return UsageError("--plot", s.message());
  }
  if (!f.plot.empty() && lead) {
    const char* path_env = std::getenv("PATH");
    absl::StatusOr<std::string> found =
        FindFedkitPlot(OwnExecutableDirectory(), path_env != nullptr ? path_env : "");
    if (!found.ok()) return UsageError("--plot", found.status().message());
    fedkit_plot = *found;
    if (absl::Status s = RunProgram({fedkit_plot, "--check"}); !s.ok()) {
      return UsageError("--plot", absl::StrCat(s.message(),
                                               " (fedkit-plot needs /usr/bin/python3 with Debian's "
                                               "python3-matplotlib)"));
    }
  }

  data_options.data_dir = f.data_dir;
  data_options.num_clients = all_file_clients ? 0 : f.clients;
  data_options.partition = *partition;
  data_options.seed = f.sim.seed;
  data_options.synthetic_eval_clients = f.synthetic_eval_clients;

  std::unique_ptr<MetricsWriter> metrics;
  std::string metrics_path = f.metrics_out;
  // --plot without --metrics-out: the metrics go to a temporary file, removed once plotted (or
  // when the run fails; kept, and named, when only the plot fails).
  bool keep_temporary_metrics = false;
  std::string temporary_metrics;
  absl::Cleanup remove_temporary_metrics = [&] {
    if (!temporary_metrics.empty() && !keep_temporary_metrics) {
      std::error_code ignored;
      std::filesystem::remove(temporary_metrics, ignored);
    }
  };
  if (metrics_path.empty() && !f.plot.empty() && lead) {
    std::string name =
        (std::filesystem::temp_directory_path() / "fedkit-sim-metrics-XXXXXX.jsonl").string();
    const int fd = mkstemps(name.data(), 6);
    if (fd < 0) {
      return UsageError("--plot", absl::StrCat("cannot create a temporary metrics file ", name,
                                               ": ", std::strerror(errno)));
    }
    close(fd);
    temporary_metrics = metrics_path = name;
  }
  if (!metrics_path.empty() && lead) {
    auto opened = MetricsWriter::Open(metrics_path);
    if (!opened.ok()) {
      return UsageError(f.metrics_out.empty() ? "--plot" : "--metrics-out",
                        opened.status().message());
    }
    metrics = std::move(*opened);
  }

  models::UseSingleThreadedCompute();
  absl::StatusOr<std::unique_ptr<data::FederatedDataset>> federated =
      models::MakeFederatedDatasetWithTensors(data_options);
  if (!federated.ok()) {
    std::cerr << "fedkit-sim: " << federated.status().message() << "\n";
    return 1;
  }
  f.clients = (*federated)->num_clients();
  std::unique_ptr<RoundRunner> runner;
  if (fedbuff) {
    absl::StatusOr<std::unique_ptr<FedBuffSimulator>> fedbuff_sim =
        FedBuffSimulator::Create(f.sim, f.fedbuff.settings, federated->get());
    if (!fedbuff_sim.ok()) {
      const cli::FieldFlags flags = {{"secure_aggregation", "--secagg"},
                                     {"mode", "--dp"},
                                     {"plan.compression", "--compression"},
                                     {"download_encoding", "--download-compression"},
                                     {"aggregator", "--aggregator"},
                                     {"attack", "--attack"},
                                     {"dropout", "--dropout"},
                                     {"replay", "--replay-participation"},
                                     {"control_variates_dir", "--control-variates-dir"},
                                     {"client_ids", "--client-ids"},
                                     {"deadline_seconds", "--round-deadline"},
                                     {"over_select", "--over-select"},
                                     {"algorithm", "--algorithm"},
                                     {"concurrency", "--concurrency"},
                                     {"buffer_size", "--buffer-size"},
                                     {"max_client_weight", "--max-client-weight"},
                                     {"local_eval_fraction", "--local-eval-fraction"},
                                     {"local_eval_clients", "--local-eval-clients"},
                                     {"finetune_steps", "--eval-finetune-steps"},
                                     {"client_batching", "--client-batching"}};
      const cli::FlagError error = cli::InFlags(fedbuff_sim.status(), flags);
      if (!error.flag.empty()) return UsageError(error.flag, error.message);
      std::cerr << "fedkit-sim: " << error.message << "\n";
      return 2;
    }
    if (lead) {
      std::cerr << absl::StrFormat(
          "fedkit-sim: %s, %d clients (%s), FedBuff: %d training at once, commit every %d "
          "uploads, staleness weight %s, model %s (%d parameters), %d threads, BLAS %s\n",
          f.dataset, f.clients, f.partition, f.fedbuff.settings.concurrency,
          f.fedbuff.settings.buffer_size,
          aggregation::FormatStalenessWeighting(f.fedbuff.settings.staleness), f.sim.model,
          (*fedbuff_sim)->global_parameters().size(), f.sim.threads, models::BlasDescription());
    }
    runner = *std::move(fedbuff_sim);
  } else {
    absl::StatusOr<std::unique_ptr<Simulator>> sim =
        Simulator::Create(f.sim, federated->get(), collective);
    if (!sim.ok()) {
      cli::FieldFlags flags = cli::DpFieldFlags("--clients");
      flags.emplace_back("max_client_weight", "--max-client-weight");
      flags.emplace_back("client_ids", "--client-ids");
      flags.emplace_back("replay", "--replay-participation");
      flags.emplace_back("aggregator", "--aggregator");
      flags.emplace_back("attack", "--attack");
      flags.emplace_back("attack_fraction", "--attack-fraction");
      flags.emplace_back("local_eval_fraction", "--local-eval-fraction");
      flags.emplace_back("local_eval_clients", "--local-eval-clients");
      flags.emplace_back("finetune_steps", "--eval-finetune-steps");
      flags.emplace_back("algorithm", "--algorithm");
      flags.emplace_back("control_variates_dir", "--control-variates-dir");
      flags.emplace_back("plan.compression", "--compression");
      flags.emplace_back("prox_mu", "--prox-mu");
      flags.emplace_back("client_batching", "--client-batching");
      const cli::FlagError error = cli::InFlags(sim.status(), flags);
      if (!error.flag.empty()) return UsageError(error.flag, error.message);
      std::cerr << "fedkit-sim: " << error.message << "\n";
      return 2;
    }
    if (lead) {
      std::cerr << absl::StrFormat(
          "fedkit-sim: %s, %d clients (%s), %d per round, model %s (%d parameters), %d threads%s, "
          "BLAS %s\n",
          f.dataset, f.clients, f.partition, f.sim.clients_per_round, f.sim.model,
          (*sim)->global_parameters().size(), f.sim.threads,
          collective != nullptr ? absl::StrFormat(" x %d MPI processes", collective->size()) : "",
          models::BlasDescription());
      if (f.sim.algorithm.algorithm != Algorithm::kFedAvg) {
        std::cerr << absl::StrFormat(
            "fedkit-sim: algorithm %s%s\n", AlgorithmName(f.sim.algorithm.algorithm),
            f.sim.algorithm.control_variates_dir.empty()
                ? ""
                : ", control variates in " + f.sim.algorithm.control_variates_dir);
      }
      if (f.sim.client_batching > 0) {
        std::cerr << absl::StrFormat(
            "fedkit-sim: client batching: up to %d clients trained together per thread (equal to "
            "one-by-one training up to float rounding)\n",
            f.sim.client_batching);
      }
      if (f.sim.aggregator.kind != aggregation::AggregatorKind::kMean ||
          f.sim.attack.kind != AttackKind::kNone) {
        std::cerr << absl::StrFormat("fedkit-sim: aggregator %s, attack %s by %d of %d clients\n",
                                     aggregation::FormatAggregatorSpec(f.sim.aggregator),
                                     FormatAttackSpec(f.sim.attack), (*sim)->attackers().size(),
                                     f.clients);
      }
    }
    if (const std::optional<PrivacySetup>& dp = (*sim)->privacy_setup(); dp.has_value() && lead) {
      std::string detail = absl::StrFormat(
          "fedkit-sim: DP %s: noise multiplier %g (accounted %.6g), update noise %.6g x clip, "
          "q %g, delta %g, clip %s %g",
          f.dp, f.sim.dp.noise_multiplier, dp->accounting_noise_multiplier,
          dp->value_noise_multiplier, dp->sampling_rate, f.sim.dp.delta,
          f.sim.dp.adaptive_clip_quantile ? "adaptive from" : "fixed", f.sim.plan.clip_norm);
      if (f.sim.dp.adaptive_clip_quantile) {
        detail += absl::StrFormat(" to quantile %g (count noise %.4g)",
                                  *f.sim.dp.adaptive_clip_quantile, dp->clipped_count_stddev);
      }
      if (dp->encoding.has_value() && f.sim.dp.mode == DpMode::kDistributed) {
        detail += absl::StrFormat(
            "; per-client discrete Gaussian variance %.6g (scaled clip %.6g), sized for >= %d "
            "survivors of %d",
            dp->encoding->local_variance.ToDouble(), dp->encoding->scaled_clip,
            dp->encoding->min_surviving_clients, f.sim.clients_per_round);
        if (dp->encoding->with_count) {
          detail += absl::StrFormat(", count noise %.4g", dp->encoding->count_noise_stddev);
        }
      }
      std::cerr << detail << "\n";
    }
    runner = *std::move(sim);
  }
  if (const auto& c = f.sim.client_evaluation; c.has_value() && lead) {
    std::cerr << absl::StrFormat(
        "fedkit-sim: per-client evaluation of %s on %s%s\n",
        c->local_eval_clients > 0 ? absl::StrFormat("%d sampled clients", c->local_eval_clients)
                                  : absl::StrFormat("all %d clients", f.clients),
        (*federated)->has_client_test_examples()
            ? std::string("each client's own test examples")
            : absl::StrFormat("a held-out %g%% of each client's examples (trained on the rest)",
                              100 * c->local_eval_fraction),
        c->finetune_steps > 0
            ? absl::StrFormat(", also after %d local fine-tuning steps", c->finetune_steps)
            : "");
  }

  // The bar is on stderr and the round lines on stdout, often the same terminal: the bar is
  // erased before any other line is printed and drawn again after it.
  std::optional<ProgressBar> bar;
  if (lead && ProgressEnabled(*progress_mode, isatty(STDERR_FILENO) == 1)) {
    bar.emplace(std::cerr, STDERR_FILENO);
  }
  ProgressState progress{.rounds_total = f.sim.rounds};
  if (bar) bar->Update(progress);
  for (int r = 0; r < f.sim.rounds; ++r) {
    absl::StatusOr<RoundResult> round = runner->RunRound();
    if (!round.ok() && runner->privacy_budget_exhausted()) {
      if (bar) bar->Clear();
      if (lead) {
        std::cout << "fedkit-sim: privacy budget: " << round.status().message() << "\n"
                  << std::flush;
      }
      break;
    }
    if (!round.ok()) {
      if (bar) bar->Clear();
      std::cerr << "fedkit-sim: round " << r + 1 << ": " << round.status() << "\n";
      return 1;
    }
    progress.rounds_done = round->round;
    progress.elapsed_seconds = round->elapsed_seconds;
    if (lead && !round->aborted.empty() && !round->eval) {
      if (bar) bar->Clear();
      std::cerr << "round " << round->round << " aborted: " << round->aborted << "\n";
    }
    if (round->eval) {
      if (bar) bar->Clear();
      progress.last_accuracy = round->eval->accuracy();
      progress.last_accuracy_round = round->round;
      std::string extra;
      if (round->dropped > 0) extra += absl::StrFormat("  dropped %d", round->dropped);
      if (round->staleness_mean) {
        extra +=
            absl::StrFormat("  staleness %.2f (max %d)  virtual %.1fs", *round->staleness_mean,
                            round->staleness_max, round->virtual_elapsed_seconds.value_or(0.0));
      } else if (round->virtual_seconds) {
        extra += absl::StrFormat("  contributors %d  stragglers %d  virtual %.1fs",
                                 round->contributors, round->stragglers, *round->virtual_seconds);
      }
      if (round->secure_aggregation) {
        extra += absl::StrFormat(
            "  secagg survivors %d (k=%d t=%d)", round->secure_aggregation->survivors,
            round->secure_aggregation->degree, round->secure_aggregation->threshold);
      }
      if (round->epsilon) {
        extra += std::isfinite(*round->epsilon) ? absl::StrFormat("  epsilon %.4f", *round->epsilon)
                                                : std::string("  epsilon inf");
      }
      if (round->clip_norm && f.sim.dp.adaptive_clip_quantile) {
        extra += absl::StrFormat("  clip %.4g", *round->clip_norm);
      }
      if (f.sim.plan.compression.method != compression::CompressionMethod::kNone) {
        extra += absl::StrFormat("  upload %.1f KB", round->upload_bytes / 1024.0);
      }
      if (f.sim.download_encoding != compression::DownloadEncoding::kFloat32) {
        extra += absl::StrFormat("  download %.1f KB", round->download_bytes / 1024.0);
      }
      if (round->attackers) {
        extra += absl::StrFormat("  attackers %d", *round->attackers);
        if (round->refused > 0) extra += absl::StrFormat("  refused %d", round->refused);
      }
      if (round->client_eval) {
        const ClientAccuracySummary& c = round->client_eval->summary;
        extra += absl::StrFormat("  clients p10/p50/p90 %.4f/%.4f/%.4f", c.p10, c.p50, c.p90);
        if (const auto& t = round->client_eval->finetuned_summary; t.has_value()) {
          extra += absl::StrFormat("  fine-tuned %.4f/%.4f/%.4f", t->p10, t->p50, t->p90);
        }
      }
      if (!round->aborted.empty()) extra += "  ABORTED: " + round->aborted;
      std::cout << absl::StrFormat(
                       "round %4d  accuracy %.4f  loss %.4f  participants %d  train_loss %.4f  "
                       "%.2fs%s\n",
                       round->round, round->eval->accuracy(), round->eval->mean_loss(),
                       round->participants, round->train_loss, round->seconds, extra)
                << std::flush;
      if (metrics) {
        if (absl::Status s = metrics->Append(*round); !s.ok()) {
          if (bar) bar->Clear();
          std::cerr << "fedkit-sim: " << s.message() << "\n";
          return 1;
        }
      }
    }
    if (bar) bar->Update(progress);
  }
  if (bar) bar->Finish(progress);
  if (!f.model_out.empty() && lead) {
    auto model = runner->GlobalModel();
    absl::Status saved = model.ok() ? models::SaveModel(**model, f.model_out) : model.status();
    if (!saved.ok()) {
      std::cerr << "fedkit-sim: " << saved.message() << "\n";
      return 1;
    }
    std::cerr << "fedkit-sim: wrote final model to " << f.model_out << "\n";
  }
  if (!f.plot.empty() && lead) {
    const std::string title = absl::StrFormat(
        "fedkit-sim: %s, %d clients (%s), %s, model %s", f.dataset, f.clients, f.partition,
        fedbuff ? absl::StrFormat("FedBuff C=%d K=%d", f.fedbuff.settings.concurrency,
                                  f.fedbuff.settings.buffer_size)
                : absl::StrFormat("%d per round", f.sim.clients_per_round),
        f.sim.model);
    metrics.reset();  // every line is flushed already; closed before another process reads it
    if (absl::Status s = RunProgram(PlotCommand(fedkit_plot, metrics_path, f.plot, title));
        !s.ok()) {
      keep_temporary_metrics = true;
      std::cerr << "fedkit-sim: --plot: " << s.message()
                << (temporary_metrics.empty() ? ""
                                              : "; the run's metrics are in " + temporary_metrics)
                << "\n";
      return 1;
    }
    std::cerr << "fedkit-sim: wrote plot to " << f.plot << "\n";
  }
  return 0;
}

}  // namespace
}  // namespace fedkit::simulation

int main(int argc, char** argv) {
#ifdef FEDKIT_WITH_MPI
  if (fedkit::simulation::LaunchedByMpirun()) {
    auto mpi = fedkit::simulation::MpiCollective::Init(&argc, &argv);
    if (!mpi.ok()) {
      std::cerr << "fedkit-sim: " << mpi.status().message() << "\n";
      return 1;
    }
    return fedkit::simulation::Run(argc, argv, mpi->get());  // MPI_Finalize after Run returns
  }
#endif
  return fedkit::simulation::Run(argc, argv, nullptr);
}
