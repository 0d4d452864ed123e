// Fuzz target: the coordinator's checkpoint files (server/checkpoint.h: framing, checksum, the
// fedkit.v1.Checkpoint payload) and what a restart does with what they hold
// (RoundCoordinator::Restore, then a check-in and a status). The file is the fuzzer's bytes as
// they are, a well-framed file around the fuzzer's payload (so the checksum does not stop
// everything at the header), or the checkpoint a coordinator of the same configuration really
// wrote after one round, edited at the byte level and framed again. Configurations: the four
// server optimizers, with or without central DP and adaptive clipping.
// Checked beyond the sanitizers: a restored coordinator's model is finite.
#include <unistd.h>
#include <zlib.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "fuzz/fuzz_input.h"
#include "fuzz/quiet_protobuf.h"
#include "server/checkpoint.h"
#include "server/round_coordinator.h"

namespace fedkit::fuzz {
namespace {

const absl::Time kStart = absl::FromUnixSeconds(5'000'000);

server::CoordinatorOptions Options(FuzzInput& in) {
  server::CoordinatorOptions o;
  o.model_name = "tiny";
  o.rounds = 3;
  o.clients_per_round = 1;
  o.min_clients = 1;
  o.plan.set_clip_norm(1.0);
  o.plan.set_run_seed(7);
  o.server_optimizer.kind = static_cast<aggregation::ServerOptimizerOptions::Kind>(in.Int(0, 3));
  const int dp = static_cast<int>(in.Int(0, 2));
  if (dp > 0) {
    privacy::DpSettings settings;
    settings.mode = privacy::DpMode::kCentral;
    settings.noise_multiplier = 0.8;
    if (dp == 2) {
      settings.adaptive_clip_quantile = 0.5;
      settings.noise_multiplier = 0.05;  // below sigma_b * 2 = 0.1 with one client per round
    }
    o.dp = settings;
    o.population = 1;  // under DP a round starts only with the whole population waiting
    o.dp_noise_seed = 42;
  }
  return o;
}

std::unique_ptr<server::RoundCoordinator> Make(const server::CoordinatorOptions& options,
                                               server::CoordinatorHooks hooks = {}) {
  ParameterLayout layout;
  layout.Append("w", {2});
  auto made = server::RoundCoordinator::Create(options, layout, {0.5f, -0.5f}, std::move(hooks));
  if (!made.ok()) {
    std::fprintf(stderr, "checkpoint_fuzz: %s\n", made.status().ToString().c_str());
    std::abort();  // the configurations above are valid
  }
  return *std::move(made);
}

// The checkpoint this configuration writes after its first round.
std::string WrittenCheckpoint(const server::CoordinatorOptions& options) {
  std::string written;
  server::CoordinatorHooks hooks;
  hooks.save_checkpoint = [&written](const v1::Checkpoint& checkpoint) {
    written = checkpoint.SerializeAsString();
    return absl::OkStatus();
  };
  std::unique_ptr<server::RoundCoordinator> coordinator = Make(options, std::move(hooks));
  if (coordinator == nullptr) std::abort();
  v1::CheckInRequest check_in;
  check_in.set_client_id("device-0");
  check_in.set_api_version(1);
  absl::StatusOr<v1::CheckInResponse> response = coordinator->CheckIn(check_in, kStart);
  if (!response.ok() || !response->has_assignment()) {
    std::fprintf(
        stderr, "checkpoint_fuzz: no assignment: %s\n",
        response.ok() ? response->DebugString().c_str() : response.status().ToString().c_str());
    std::abort();
  }
  v1::UpdateHeader header;
  header.set_client_id("device-0");
  header.set_assignment_id(response->assignment().assignment_id());
  header.set_round(1);
  header.set_num_examples(10);
  header.set_total_size(2);
  header.set_train_loss(0.5);
  if (response->assignment().report_unclipped()) header.set_unclipped(true);
  const std::vector<float> delta = {0.1f, -0.2f};
  absl::StatusOr<v1::UploadResponse> submitted = coordinator->SubmitUpdate(header, delta, kStart);
  if (!submitted.ok() || written.empty()) {
    std::fprintf(stderr, "checkpoint_fuzz: the first round failed: %s\n",
                 submitted.status().ToString().c_str());
    std::abort();
  }
  return written;
}

std::string Framed(const std::string& payload) {
  std::string file = "FKCK";
  auto put = [&file](uint64_t value, int bytes) {
    for (int i = 0; i < bytes; ++i) file.push_back(static_cast<char>((value >> (8 * i)) & 0xff));
  };
  put(1, 4);
  put(payload.size(), 8);
  put(crc32_z(crc32_z(0L, Z_NULL, 0), reinterpret_cast<const Bytef*>(payload.data()),
              payload.size()),
      4);
  return file + payload;
}

const std::string& Directory() {
  static const std::string* directory = [] {
    const char* tmp = std::getenv("FEDKIT_FUZZ_TMPDIR");
    auto* path = new std::string(std::string(tmp != nullptr ? tmp : "/dev/shm") +
                                 "/fedkit-fuzz-checkpoint-" + std::to_string(::getpid()));
    return path;
  }();
  return *directory;
}

void Run(FuzzInput& in) {
  const int mode = static_cast<int>(in.Int(0, 2));
  const int64_t rounds_in_name = in.Int(0, 3);
  const server::CoordinatorOptions options = Options(in);
  std::string file;
  if (mode == 0) {
    file = in.Rest();
  } else if (mode == 1) {
    file = Framed(in.Rest());
  } else {
    file = Framed(in.Edit(WrittenCheckpoint(options)));
  }
  std::filesystem::remove_all(Directory());
  std::filesystem::create_directories(Directory());
  char name[64];
  std::snprintf(name, sizeof(name), "/checkpoint-%08lld.pb",
                static_cast<long long>(rounds_in_name));
  std::ofstream(Directory() + name, std::ios::binary) << file;

  absl::StatusOr<server::CheckpointStore> store = server::CheckpointStore::Open(Directory());
  if (!store.ok()) std::abort();
  std::string skipped;
  absl::StatusOr<std::optional<v1::Checkpoint>> loaded = store->LoadNewest(&skipped);
  if (!loaded.ok() || !loaded->has_value()) return;
  std::unique_ptr<server::RoundCoordinator> coordinator = Make(options);
  if (coordinator == nullptr) std::abort();
  if (!coordinator->Restore(**loaded).ok()) return;
  for (float value : coordinator->global_parameters()) {
    if (!std::isfinite(value)) std::abort();  // a restored model must be usable
  }
  v1::CheckInRequest check_in;
  check_in.set_client_id("device-0");
  check_in.set_api_version(1);
  (void)coordinator->CheckIn(check_in, kStart);
  (void)coordinator->Status(kStart);
}

}  // namespace
}  // namespace fedkit::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  fedkit::fuzz::FuzzInput in(data, size);
  fedkit::fuzz::Run(in);
  return 0;
}
