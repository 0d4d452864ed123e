#include "privacy/secagg/in_memory_round.h"

#include <algorithm>
#include <chrono>
#include <memory>
#include <mutex>
#include <utility>

#include "absl/strings/str_cat.h"
#include "core/status_macros.h"
#include "privacy/secagg/client.h"
#include "privacy/secagg/server.h"

namespace fedkit::secagg {
namespace {

using Clock = std::chrono::steady_clock;

double SecondsSince(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

// Collects one phase's outcome from parallel clients; the first error wins.
class PhaseErrors {
 public:
  void Record(absl::Status status) {
    if (status.ok()) return;
    std::lock_guard<std::mutex> lock(mu_);
    if (first_.ok()) first_ = std::move(status);
  }
  absl::Status status() const { return first_; }

 private:
  std::mutex mu_;
  absl::Status first_;
};

}  // namespace

absl::string_view ClientPhaseName(ClientPhase phase) {
  switch (phase) {
    case ClientPhase::kAdvertiseKeys:
      return "advertise";
    case ClientPhase::kShareKeys:
      return "share";
    case ClientPhase::kMaskedInput:
      return "upload";
    case ClientPhase::kUnmask:
      return "unmask";
  }
  return "?";
}

absl::StatusOr<ClientPhase> ParseClientPhase(absl::string_view name) {
  for (int p = 0; p < kNumClientPhases; ++p) {
    if (ClientPhaseName(static_cast<ClientPhase>(p)) == name) return static_cast<ClientPhase>(p);
  }
  return absl::InvalidArgumentError(
      absl::StrCat("unknown phase '", name, "' (advertise, share, upload, unmask)"));
}

void RunSequentially(int64_t n, const ParallelBody& body) {
  for (int64_t i = 0; i < n; ++i) body(0, i);
}

absl::StatusOr<InMemoryRoundResult> RunInMemoryRound(
    const ProtocolConfig& config,
    const std::function<absl::StatusOr<std::vector<uint64_t>>(int worker, int32_t i)>& input,
    const std::vector<std::optional<ClientPhase>>& drop_at, const ParallelFor& parallel_for) {
  const int n = config.num_clients;
  if (static_cast<int>(drop_at.size()) != n) {
    return absl::InvalidArgumentError(
        absl::StrCat("dropout schedule has ", drop_at.size(), " entries for ", n, " clients"));
  }
  FEDKIT_ASSIGN_OR_RETURN(std::unique_ptr<SecAggServer> server, SecAggServer::Create(config));
  std::vector<std::unique_ptr<SecAggClient>> clients(n);
  for (int32_t i = 0; i < n; ++i) {
    FEDKIT_ASSIGN_OR_RETURN(clients[i], SecAggClient::Create(config, i));
  }
  InMemoryRoundResult result;
  InMemoryRoundStats& stats = result.stats;
  std::vector<int64_t> bytes_sent(n, 0);
  std::vector<double> seconds(n);
  auto active = [&](int32_t i, ClientPhase phase) {
    return !drop_at[i].has_value() || static_cast<int>(*drop_at[i]) > static_cast<int>(phase);
  };
  auto add_times = [&](ClientPhase phase) {
    for (int32_t i = 0; i < n; ++i) {
      stats.client_seconds_total[static_cast<int>(phase)] += seconds[i];
      stats.client_seconds_max[static_cast<int>(phase)] =
          std::max(stats.client_seconds_max[static_cast<int>(phase)], seconds[i]);
    }
    std::fill(seconds.begin(), seconds.end(), 0.0);
  };
  auto finish_aborted = [&](absl::Status status) -> absl::StatusOr<InMemoryRoundResult> {
    if (!absl::IsAborted(status)) return status;
    result.status = std::move(status);
    result.culprits = server->culprits();
    return std::move(result);
  };
  // Server calls are timed as one block per phase (they are sequential).
  auto timed_server = [&](const std::function<absl::Status()>& body) {
    const auto start = Clock::now();
    absl::Status status = body();
    stats.server_seconds += SecondsSince(start);
    return status;
  };

  // Phase 0.
  std::vector<std::optional<AdvertiseKeysMessage>> adverts(n);
  PhaseErrors errors;
  parallel_for(n, [&](int worker, int64_t i) {
    if (!active(i, ClientPhase::kAdvertiseKeys)) return;
    const auto start = Clock::now();
    absl::StatusOr<AdvertiseKeysMessage> m = clients[i]->AdvertiseKeys();
    seconds[i] = SecondsSince(start);
    if (!m.ok()) return errors.Record(m.status());
    bytes_sent[i] += WireBytes(*m);
    adverts[i] = *std::move(m);
  });
  FEDKIT_RETURN_IF_ERROR(errors.status());
  add_times(ClientPhase::kAdvertiseKeys);
  absl::Status status = timed_server([&]() -> absl::Status {
    for (const auto& m : adverts) {
      if (m.has_value()) FEDKIT_RETURN_IF_ERROR(server->HandleAdvertiseKeys(*m));
    }
    return server->CloseAdvertiseKeys();
  });
  if (!status.ok()) return finish_aborted(status);

  // Phase 1.
  std::vector<std::optional<ShareKeysMessage>> share_messages(n);
  parallel_for(n, [&](int worker, int64_t i) {
    if (!active(i, ClientPhase::kShareKeys)) return;
    absl::StatusOr<KeyDirectory> directory = server->KeyDirectoryFor(i);
    if (!directory.ok()) return errors.Record(directory.status());
    const auto start = Clock::now();
    absl::StatusOr<ShareKeysMessage> m = clients[i]->ShareKeys(*directory);
    seconds[i] = SecondsSince(start);
    if (!m.ok()) return errors.Record(m.status());
    bytes_sent[i] += WireBytes(*m);
    share_messages[i] = *std::move(m);
  });
  FEDKIT_RETURN_IF_ERROR(errors.status());
  add_times(ClientPhase::kShareKeys);
  status = timed_server([&]() -> absl::Status {
    for (auto& m : share_messages) {
      if (m.has_value()) FEDKIT_RETURN_IF_ERROR(server->HandleShareKeys(*m));
      m.reset();
    }
    return server->CloseShareKeys();
  });
  if (!status.ok()) return finish_aborted(status);

  // Phase 2. Masked vectors go to the server as they are made, so at most a few are alive.
  std::mutex server_mu;
  parallel_for(n, [&](int worker, int64_t i) {
    if (!active(i, ClientPhase::kMaskedInput)) return;
    absl::StatusOr<ShareBundle> bundle;
    {
      std::lock_guard<std::mutex> lock(server_mu);
      bundle = server->ShareBundleFor(i);
    }
    if (!bundle.ok()) return errors.Record(bundle.status());
    absl::StatusOr<std::vector<uint64_t>> x = input(worker, static_cast<int32_t>(i));
    if (!x.ok()) return errors.Record(x.status());
    const auto start = Clock::now();
    absl::StatusOr<MaskedInputMessage> m = clients[i]->MaskInput(*bundle, *x);
    seconds[i] = SecondsSince(start);
    if (!m.ok()) return errors.Record(m.status());
    bytes_sent[i] += WireBytes(*m, config.modulus_bits);
    std::lock_guard<std::mutex> lock(server_mu);
    const auto server_start = Clock::now();
    errors.Record(server->HandleMaskedInput(*m));
    stats.server_seconds += SecondsSince(server_start);
  });
  FEDKIT_RETURN_IF_ERROR(errors.status());
  add_times(ClientPhase::kMaskedInput);
  status = timed_server([&] { return server->CloseMaskedInput(); });
  if (!status.ok()) return finish_aborted(status);

  // Phase 3.
  std::vector<std::optional<UnmaskResponse>> responses(n);
  parallel_for(n, [&](int worker, int64_t i) {
    if (!active(i, ClientPhase::kUnmask)) return;
    absl::StatusOr<UnmaskRequest> request = server->UnmaskRequestFor(i);
    if (!request.ok()) return errors.Record(request.status());
    const auto start = Clock::now();
    absl::StatusOr<UnmaskResponse> m = clients[i]->Unmask(*request);
    seconds[i] = SecondsSince(start);
    if (!m.ok()) return errors.Record(m.status());
    bytes_sent[i] += WireBytes(*m);
    responses[i] = *std::move(m);
  });
  FEDKIT_RETURN_IF_ERROR(errors.status());
  add_times(ClientPhase::kUnmask);
  result.included = server->masked_input_senders();
  absl::StatusOr<std::vector<uint64_t>> sum;
  status = timed_server([&]() -> absl::Status {
    for (const auto& m : responses) {
      if (m.has_value()) FEDKIT_RETURN_IF_ERROR(server->HandleUnmaskResponse(*m));
    }
    const auto start = Clock::now();
    sum = server->Finish();
    stats.server_finish_seconds = SecondsSince(start);
    return sum.status();
  });
  if (!status.ok()) return finish_aborted(status);
  result.sum = *std::move(sum);
  result.culprits = server->culprits();

  int64_t senders = 0;
  double total = 0;
  for (int64_t b : bytes_sent) {
    if (b == 0) continue;
    ++senders;
    total += static_cast<double>(b);
    stats.client_bytes_sent_max = std::max(stats.client_bytes_sent_max, b);
  }
  stats.client_bytes_sent_mean = senders > 0 ? total / static_cast<double>(senders) : 0.0;
  return result;
}

}  // namespace fedkit::secagg
