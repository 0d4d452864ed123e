// Secure aggregation cost over the grid of Bonawitz et al. (CCS 2017, §7): n clients, d entries,
// a fraction of the clients dropping in one phase (by default the masked-input upload, the
// expensive case for the server: it must reconstruct each dropped client's masking key and expand
// the pairwise masks it shared with every survivor). Each configuration runs whole rounds through
// RunInMemoryRound (the real client and server state machines) sequentially on one core, checks
// the unmasked sum against the plain sum of the included inputs, and reports per-client compute,
// server compute and bytes sent per client for SecAgg (complete graph) and SecAgg+ (Bell et al.,
// CCS 2020: random Harary graph of degree k). The published figures of both papers that we could
// find are printed beside ours (PublishedFigures; their sources in kPublishedNotes).
//
// Timing: RunInMemoryRound's per-phase timers are wall clock, which on a shared machine includes
// time the bench spent waiting for its core. The bench therefore runs the round through its own
// sequential ParallelFor that also reads the thread's CPU clock around every client step and
// between phases (where the server's Handle/Close/Finish blocks run), and scales each wall-clock
// figure by the CPU/wall ratio of the stretch it was measured in. The reported times are these CPU
// estimates (single-core CPU seconds, as in the papers); the raw wall-clock figures are kept in the
// JSON, and the cpu/wall column shows how contended the round was (1.00 = it had its core).
//
// Output: a Markdown report (--out-md) and JSON (--out-json), both rewritten after every
// configuration so a long run leaves usable partial results. Progress goes to stderr.
#include <sys/resource.h>
#include <time.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <ctime>
#include <fstream>
#include <optional>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "CLI/CLI.hpp"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/string_view.h"
#include "absl/strings/strip.h"
#include "nlohmann/json.hpp"
#include "privacy/secagg/in_memory_round.h"
#include "privacy/secagg/prg.h"
#include "privacy/secagg/protocol.h"
#include "secagg_sources_hash.h"  // generated: FEDKIT_SECAGG_SOURCES_SHA256

namespace fedkit::secagg {
namespace {

using Json = nlohmann::json;

// ---- Published figures ----
// Only numbers read in the sources named in `source`; a cell the sources do not give is empty
// (printed "n/f", not found). Times in seconds. `client_bytes` is the bytes a client sends.
struct Published {
  Variant variant;
  int n;
  int64_t d;
  double dropout;
  std::optional<double> client_seconds;
  std::optional<double> server_seconds;
  std::optional<double> client_bytes;
  const char* source;
};

// What we could find (see kPublishedNotes, printed under the table). Bonawitz et al. (B17) measured
// a single-threaded Java prototype; the numbers below are the ones a secondary source (S1) states
// for their §7 evaluation, rounded as S1 gives them ("~2 seconds" etc.); we could not read the
// paper's own tables or figures, so no table or figure number is claimed. Nothing for SecAgg+:
// Bell et al. (B20) publish no measured running times for n <= 1000 that we could find.
const std::vector<Published>& PublishedFigures() {
  static const char* kS1 = "B17 §7, via S1";
  static const auto* figures = new std::vector<Published>{
      {Variant::kSecAgg, 500, 100000, 0.0, 0.849, 2.0, std::nullopt, kS1},
      {Variant::kSecAgg, 500, 100000, 0.1, std::nullopt, 62.0, std::nullopt, kS1},
      {Variant::kSecAgg, 500, 100000, 0.3, std::nullopt, 143.0, std::nullopt, kS1},
      {Variant::kSecAgg, 1000, 100000, 0.0, 1.699, std::nullopt, std::nullopt, kS1},
      {Variant::kSecAgg, 1000, 100000, 0.1, std::nullopt, 180.0, std::nullopt, kS1},
      {Variant::kSecAgg, 1000, 100000, 0.3, std::nullopt, 414.0, std::nullopt, kS1},
  };
  return *figures;
}

constexpr char kPublishedNotes[] = R"md(
### Published figures: sources and differences in setting

- **B17** = Bonawitz, Ivanov, Kreuter, Marcedone, McMahan, Patel, Ramage, Segal, Seth, "Practical
  Secure Aggregation for Privacy-Preserving Machine Learning", ACM CCS 2017, doi:10.1145/3133956.3133982
  (also IACR ePrint 2017/281). Through the search tool we could read only the beginning of the paper
  (transcriptions at vdocuments.us and vdocuments.net), not its evaluation tables or figures. The
  abstract's own figures are off our grid: 1.73x communication expansion over sending 16-bit values
  in the clear for 2^10 users and 2^20-entry vectors (read in the transcription), and 1.98x for 2^14
  users and 2^24 entries (the rest of that sentence, cut off in the transcription we saw, as quoted
  by other documents).
- **S1** = a paper summary ("Research Companion: Practical Secure Aggregation for Privacy-Preserving
  Machine Learning", a Markdown file in the public-code index; the tool did not name its repository)
  that restates B17's §7 results. The *paper* columns come from S1 and are secondary: S1 gives them as
  "~849 ms" / "~1699 ms" per client (500 / 1000 clients, 100K entries) and "~2 s" (500 clients, no
  dropouts), "~62 s" / "~180 s" (10% dropout, 500 / 1000 clients) and "~143 s" / "~414 s" (30%) for
  the server. We could not check them against B17's tables or figures, so no table or figure number
  is given. Everything else on the grid (d = 10K, n = 100, the server at 1000 clients without dropouts,
  bytes per client) is not found (n/f).
- **Setting of B17 (as S1 describes it):** Java, single-threaded, Intel Xeon E5-1650 v3 @ 3.50 GHz
  (Haswell, 2014), 32 GB RAM; ECDH on NIST P-256 with SHA-256, AES-GCM, AES-CTR as the PRG,
  Shamir sharing; 24-bit (3-byte) entries in the local simulations; dropouts injected after ShareKeys
  and before MaskedInputCollection, the point our `upload` drop phase models; server times include
  only the semi-honest protocol (no ConsistencyCheck round). **Ours:** C++20 with OpenSSL 3 (X25519,
  AES-256-GCM via HKDF-SHA-256 keys, AES-256-CTR PRG with AES-NI/VAES), one vCPU of the KVM guest
  described above, 32-bit (4-byte) entries by default, Shamir over GF(2^61 - 1), five limbs per 32-byte secret.
  The PRG expansion dominates both sides' costs, so a hardware-accelerated C++ PRG against a 2017
  Java one accounts for most of any gap; entry width changes bytes and PRG output per entry.
- **B20** = Bell, Bonawitz, Gascon, Lepoint, Raykova, "Secure Single-Server Aggregation with
  (Poly)Logarithmic Overhead", ACM CCS 2020, doi:10.1145/3372297.3417885 (ePrint 2020/704,
  arXiv:2009.07563). Only its abstract was readable (paperexplained.cn): the semi-honest protocol
  handles 10^9 clients at the per-client cost of B17 for 10^3 clients, and in the semi-malicious
  setting with 10^4 clients each client talks to 3% of the others while tolerating 5% corrupt clients
  and 5% dropouts. No measured SecAgg+ running times or bytes for n <= 1000 were found: all SecAgg+
  paper cells are n/f. Our SecAgg+ graph parameters follow B20's bounds (2^-40 security, 2^-20
  correctness; see `privacy/secagg/graph.h`), and the default corrupt fraction 0.05 is the one in
  B20's abstract example.
)md";

const Published* FindPublished(Variant variant, int n, int64_t d, double dropout) {
  for (const Published& p : PublishedFigures()) {
    if (p.variant == variant && p.n == n && p.d == d && std::abs(p.dropout - dropout) < 1e-9) {
      return &p;
    }
  }
  return nullptr;
}

// ---- Measurement ----
struct Options {
  std::vector<int> n = {100, 500, 1000};
  std::vector<int64_t> d = {10000, 100000};
  std::vector<double> dropout = {0.0, 0.1, 0.3};
  std::vector<std::string> variants = {"secagg", "secagg+"};
  std::string drop_phase = "upload";
  int modulus_bits = 32;
  double corrupt_fraction = 0.05;
  double min_design_dropout = 0.1;
  int repetitions = 1;
  uint64_t seed = 1;
  std::string out_md;
  std::string out_json;
  std::string command;
};

// Facts about the run printed in the reports' header.
struct RunInfo {
  std::string command;
  std::string generated;  // date
  std::string lscpu;      // lscpu | head -20
  std::string nproc;
  std::string secagg_sha256;  // of the privacy/secagg sources the binary was built from
  double elapsed = 0.0;       // bench wall seconds
  bool complete = false;
};

struct ConfigResult {
  Variant variant;
  int n = 0;
  int64_t d = 0;
  double dropout = 0.0;
  double design_dropout = 0.0;  // dropout rate the SecAgg+ graph was sized for
  int dropped = 0;
  int k = 0;
  int t = 0;
  int included = 0;
  // Means over repetitions.
  double client_total_mean = 0.0;  // per client: sum over phases of the per-phase mean
  double client_phase_mean[kNumClientPhases] = {};
  double client_phase_max[kNumClientPhases] = {};
  double server_seconds = 0.0;
  double server_finish_seconds = 0.0;
  // The same, as RunInMemoryRound's wall-clock timers measured them.
  double client_total_mean_wall = 0.0;
  double client_upload_mean_wall = 0.0;
  double server_seconds_wall = 0.0;
  double server_finish_seconds_wall = 0.0;
  double bytes_mean = 0.0;
  double bytes_max = 0.0;
  double round_wall_seconds = 0.0;
  double round_cpu_seconds = 0.0;
  int64_t peak_rss_kib = 0;  // process-wide high-water mark after this configuration
  std::vector<double> rep_client_total;
  std::vector<double> rep_server_seconds;
};

double ClockSeconds(clockid_t clock) {
  timespec ts;
  clock_gettime(clock, &ts);
  return static_cast<double>(ts.tv_sec) + 1e-9 * static_cast<double>(ts.tv_nsec);
}

// Thread CPU and wall time at one instant (the round runs on this thread only).
struct Instant {
  double cpu = 0.0;
  double wall = 0.0;
  static Instant Now() {
    return Instant{ClockSeconds(CLOCK_THREAD_CPUTIME_ID), ClockSeconds(CLOCK_MONOTONIC)};
  }
};

// A sequential ParallelFor (like RunSequentially) that records, for each of the round's
// parallel_for calls (one per client phase), the CPU and wall time of the client steps, and the CPU
// and wall time of the stretches between calls and after the last one (where the server's
// Handle/Close/Finish blocks run).
class CpuAccountingParallelFor {
 public:
  struct Stretch {
    double cpu = 0.0;
    double wall = 0.0;
    double Ratio() const { return wall > 0 ? std::min(1.0, cpu / wall) : 1.0; }
  };

  void Start() { last_ = Instant::Now(); }
  void Stop() { Close(Instant::Now()); }

  ParallelFor Function() {
    return [this](int64_t n, const ParallelBody& body) {
      Close(Instant::Now());
      Stretch steps;
      for (int64_t i = 0; i < n; ++i) {
        const Instant start = Instant::Now();
        body(0, i);
        const Instant end = Instant::Now();
        steps.cpu += end.cpu - start.cpu;
        steps.wall += end.wall - start.wall;
      }
      phases_.push_back(steps);
      last_ = Instant::Now();
    };
  }

  // phases()[p]: the client steps of phase p. gaps()[0] is setup (before phase 0), gaps()[p] for
  // p >= 1 the server blocks after phase p - 1; the last gap is after the last phase.
  const std::vector<Stretch>& phases() const { return phases_; }
  const std::vector<Stretch>& gaps() const { return gaps_; }

 private:
  void Close(const Instant& now) { gaps_.push_back({now.cpu - last_.cpu, now.wall - last_.wall}); }

  Instant last_;
  std::vector<Stretch> phases_;
  std::vector<Stretch> gaps_;
};

int64_t PeakRssKib() {
  rusage usage;
  getrusage(RUSAGE_SELF, &usage);
  return usage.ru_maxrss;
}

uint64_t SplitMix(uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

// round(rate * n) clients, chosen uniformly with a seeded partial Fisher-Yates shuffle.
std::vector<std::optional<ClientPhase>> DropSchedule(int n, double rate, ClientPhase phase,
                                                     uint64_t seed, int* dropped) {
  const int count = static_cast<int>(std::lround(rate * n));
  std::vector<int> order(n);
  for (int i = 0; i < n; ++i) order[i] = i;
  std::mt19937_64 gen(seed);
  for (int i = 0; i < count; ++i) {
    std::uniform_int_distribution<int> pick(i, n - 1);
    std::swap(order[i], order[pick(gen)]);
  }
  std::vector<std::optional<ClientPhase>> drop_at(n);
  for (int i = 0; i < count; ++i) drop_at[order[i]] = phase;
  *dropped = count;
  return drop_at;
}

absl::StatusOr<ConfigResult> RunConfig(const Options& options, Variant variant, int n, int64_t d,
                                       double dropout, ClientPhase drop_phase) {
  ConfigResult r;
  r.variant = variant;
  r.n = n;
  r.d = d;
  r.dropout = dropout;
  // The SecAgg+ graph must tolerate the dropouts injected; a deployment would never size it for
  // zero dropout, so the design rate is never below --min-design-dropout (which also gives 0% and
  // 10% the same graph, isolating the cost of the dropouts themselves).
  r.design_dropout = std::max(dropout, options.min_design_dropout);
  const uint64_t mask = ModulusMask(options.modulus_bits);
  const int reps = options.repetitions;
  for (int rep = 0; rep < reps; ++rep) {
    absl::StatusOr<ProtocolConfig> config = MakeProtocolConfig(
        variant, n, d, options.modulus_bits, r.design_dropout, options.corrupt_fraction);
    if (!config.ok()) return config.status();
    r.k = config->degree;
    r.t = config->threshold;
    const uint64_t rep_seed =
        SplitMix(options.seed ^ SplitMix(static_cast<uint64_t>(n) * 1000003 + d) ^
                 SplitMix(static_cast<uint64_t>(std::lround(dropout * 1000)) + 7919 * rep +
                          (variant == Variant::kSecAggPlus ? 104729 : 0)));
    const std::vector<std::optional<ClientPhase>> drop_at =
        DropSchedule(n, dropout, drop_phase, rep_seed, &r.dropped);

    // Inputs are drawn when the round asks for them (only for clients reaching the upload), and
    // their plain sum is kept to check the unmasked result: memory stays O(d) besides the round.
    std::vector<uint64_t> expected(d, 0);
    auto input = [&](int worker, int32_t i) -> absl::StatusOr<std::vector<uint64_t>> {
      std::mt19937_64 gen(SplitMix(rep_seed + 0x51ed270b + static_cast<uint64_t>(i)));
      std::vector<uint64_t> x(d);
      for (int64_t j = 0; j < d; ++j) {
        x[j] = gen() & mask;
        expected[j] = (expected[j] + x[j]) & mask;
      }
      return x;
    };

    CpuAccountingParallelFor accounting;
    const Instant start = Instant::Now();
    accounting.Start();
    absl::StatusOr<InMemoryRoundResult> result =
        RunInMemoryRound(*config, input, drop_at, accounting.Function());
    accounting.Stop();
    const Instant end = Instant::Now();
    const double cpu = end.cpu - start.cpu;
    const double wall = end.wall - start.wall;
    if (!result.ok()) return result.status();
    if (!result->status.ok()) return result->status;
    const auto& phases = accounting.phases();
    const auto& gaps = accounting.gaps();
    if (phases.size() != kNumClientPhases || gaps.size() != kNumClientPhases + 1) {
      return absl::InternalError(absl::StrCat("expected ", kNumClientPhases,
                                              " client phases in the round, saw ", phases.size()));
    }
    if (result->sum != expected) {
      return absl::InternalError(absl::StrCat("unmasked sum differs from the plain sum (n=", n,
                                              ", d=", d, ", dropout=", dropout, ")"));
    }
    r.included = static_cast<int>(result->included.size());

    // Clients active in each phase: everyone up to the drop phase, the survivors after it.
    const InMemoryRoundStats& s = result->stats;
    // CPU estimates: each wall-clock figure times the CPU/wall ratio of the stretch it fell in.
    double client_total = 0.0;
    double client_total_wall = 0.0;
    for (int p = 0; p < kNumClientPhases; ++p) {
      const int active = p < static_cast<int>(drop_phase) ? n : n - r.dropped;
      const double ratio = phases[p].Ratio();
      const double mean_wall = active > 0 ? s.client_seconds_total[p] / active : 0.0;
      client_total += mean_wall * ratio;
      client_total_wall += mean_wall;
      r.client_phase_mean[p] += mean_wall * ratio / reps;
      r.client_phase_max[p] = std::max(r.client_phase_max[p], s.client_seconds_max[p] * ratio);
      if (p == static_cast<int>(ClientPhase::kMaskedInput)) {
        r.client_upload_mean_wall += mean_wall / reps;
      }
    }
    // Server: its blocks between and after the phases are the gaps after setup (measured
    // directly); the rest of its wall time ran inside the upload steps (HandleMaskedInput).
    double gap_cpu = 0.0;
    double gap_wall = 0.0;
    for (size_t g = 1; g < gaps.size(); ++g) {
      gap_cpu += gaps[g].cpu;
      gap_wall += gaps[g].wall;
    }
    const double in_upload_wall = std::max(0.0, s.server_seconds - gap_wall);
    const double server_cpu =
        gap_cpu + in_upload_wall * phases[static_cast<int>(ClientPhase::kMaskedInput)].Ratio();
    const double finish_cpu = s.server_finish_seconds * gaps.back().Ratio();
    r.client_total_mean += client_total / reps;
    r.client_total_mean_wall += client_total_wall / reps;
    r.rep_client_total.push_back(client_total);
    r.server_seconds += server_cpu / reps;
    r.server_seconds_wall += s.server_seconds / reps;
    r.rep_server_seconds.push_back(server_cpu);
    r.server_finish_seconds += finish_cpu / reps;
    r.server_finish_seconds_wall += s.server_finish_seconds / reps;
    r.bytes_mean += s.client_bytes_sent_mean / reps;
    r.bytes_max = std::max(r.bytes_max, static_cast<double>(s.client_bytes_sent_max));
    r.round_wall_seconds += wall / reps;
    r.round_cpu_seconds += cpu / reps;
  }
  r.peak_rss_kib = PeakRssKib();
  return r;
}

// ---- Output ----
std::string Shell(const char* command) {
  std::string out;
  if (FILE* pipe = popen(command, "r")) {
    char buffer[512];
    while (fgets(buffer, sizeof(buffer), pipe) != nullptr) out += buffer;
    pclose(pipe);
  }
  while (!out.empty() && out.back() == '\n') out.pop_back();
  return out;
}

std::string UtcNow() {
  std::time_t now = std::time(nullptr);
  char buffer[64];
  std::strftime(buffer, sizeof(buffer), "%Y-%m-%d %H:%M:%S UTC", std::gmtime(&now));
  return buffer;
}

std::string Seconds(double s) {
  if (s >= 100) return absl::StrFormat("%.0f s", s);
  if (s >= 1) return absl::StrFormat("%.2f s", s);
  if (s >= 1e-3) return absl::StrFormat("%.1f ms", s * 1e3);
  return absl::StrFormat("%.0f us", s * 1e6);
}

std::string Bytes(double b) {
  if (b >= 1e6) return absl::StrFormat("%.2f MB", b / 1e6);
  if (b >= 1e3) return absl::StrFormat("%.1f kB", b / 1e3);
  return absl::StrFormat("%.0f B", b);
}

std::string Ratio(double a, double b) {
  if (b <= 0) return "-";
  const double r = a / b;
  return r >= 10 ? absl::StrFormat("%.0fx", r) : absl::StrFormat("%.1fx", r);
}

std::string Percent(double rate) { return absl::StrFormat("%.0f%%", rate * 100); }

std::string Optional(const std::optional<double>& v, std::string (*format)(double)) {
  return v.has_value() ? format(*v) : "n/f";
}

Json ToJson(const ConfigResult& r, const Options& options) {
  Json j;
  j["variant"] = std::string(VariantName(r.variant));
  j["n"] = r.n;
  j["d"] = r.d;
  j["dropout"] = r.dropout;
  j["dropped"] = r.dropped;
  j["design_dropout"] = r.variant == Variant::kSecAggPlus ? Json(r.design_dropout) : Json();
  j["k"] = r.k;
  j["t"] = r.t;
  j["included"] = r.included;
  j["client_seconds_mean_total"] = r.client_total_mean;
  Json phases = Json::object();
  for (int p = 0; p < kNumClientPhases; ++p) {
    const std::string name(ClientPhaseName(static_cast<ClientPhase>(p)));
    phases[name] = {{"mean", r.client_phase_mean[p]}, {"max", r.client_phase_max[p]}};
  }
  j["client_seconds_by_phase"] = phases;
  j["server_seconds"] = r.server_seconds;
  j["server_finish_seconds"] = r.server_finish_seconds;
  j["wall_clock"] = {{"client_seconds_mean_total", r.client_total_mean_wall},
                     {"client_seconds_mean_upload", r.client_upload_mean_wall},
                     {"server_seconds", r.server_seconds_wall},
                     {"server_finish_seconds", r.server_finish_seconds_wall}};
  j["client_bytes_sent_mean"] = r.bytes_mean;
  j["client_bytes_sent_max"] = r.bytes_max;
  const double plain = static_cast<double>(r.d) * ((options.modulus_bits + 7) / 8);
  j["expansion_max_bytes_over_plain"] = r.bytes_max / plain;
  j["round_wall_seconds"] = r.round_wall_seconds;
  j["round_cpu_seconds"] = r.round_cpu_seconds;
  j["peak_rss_kib"] = r.peak_rss_kib;
  j["repetitions_client_seconds_total"] = r.rep_client_total;
  j["repetitions_server_seconds"] = r.rep_server_seconds;
  if (const Published* p = FindPublished(r.variant, r.n, r.d, r.dropout)) {
    Json pub;
    pub["client_seconds"] = p->client_seconds ? Json(*p->client_seconds) : Json();
    pub["server_seconds"] = p->server_seconds ? Json(*p->server_seconds) : Json();
    pub["client_bytes"] = p->client_bytes ? Json(*p->client_bytes) : Json();
    pub["source"] = p->source;
    j["published"] = pub;
  }
  return j;
}

const ConfigResult* Find(const std::vector<ConfigResult>& results, Variant v, int n, int64_t d,
                         double dropout) {
  for (const ConfigResult& r : results) {
    if (r.variant == v && r.n == n && r.d == d && std::abs(r.dropout - dropout) < 1e-9) return &r;
  }
  return nullptr;
}

// Sentences derived from the results (so a regenerated report stays consistent with its table).
// upload_drops_only: the dropped clients went silent in the upload phase.
std::string Observations(const std::vector<ConfigResult>& results, bool upload_drops_only) {
  std::ostringstream out;
  std::vector<int> ns;
  std::vector<int64_t> ds;
  std::vector<double> drops;
  for (const ConfigResult& r : results) {
    if (std::find(ns.begin(), ns.end(), r.n) == ns.end()) ns.push_back(r.n);
    if (std::find(ds.begin(), ds.end(), r.d) == ds.end()) ds.push_back(r.d);
    if (std::find(drops.begin(), drops.end(), r.dropout) == drops.end()) {
      drops.push_back(r.dropout);
    }
  }
  std::sort(ns.begin(), ns.end());
  std::sort(ds.begin(), ds.end());
  std::sort(drops.begin(), drops.end());
  if (ns.empty()) return "";
  const int n_lo = ns.front();
  const int n_hi = ns.back();
  const double drop_lo = drops.front();
  const double drop_hi = drops.back();

  out << "\n### What the numbers show (derived from the table)\n\n";
  // Client cost against n.
  for (int64_t d : ds) {
    for (Variant v : {Variant::kSecAgg, Variant::kSecAggPlus}) {
      const ConfigResult* lo = Find(results, v, n_lo, d, drop_lo);
      const ConfigResult* hi = Find(results, v, n_hi, d, drop_lo);
      if (lo == nullptr || hi == nullptr || n_lo == n_hi) continue;
      out << "- " << VariantName(v) << ", d = " << d << ", " << Percent(drop_lo)
          << " dropout: going from n = " << n_lo << " to " << n_hi
          << " multiplies the per-client cost by "
          << Ratio(hi->client_total_mean, lo->client_total_mean) << " ("
          << Seconds(lo->client_total_mean) << " -> " << Seconds(hi->client_total_mean)
          << ") and bytes sent by " << Ratio(hi->bytes_max, lo->bytes_max) << ", while k goes "
          << lo->k << " -> " << hi->k << " (" << Ratio(hi->k, lo->k) << ").\n";
    }
  }
  // PRG throughput seen in the upload phase: (k + 1) expansions of d entries.
  for (const ConfigResult& r : results) {
    if (r.variant != Variant::kSecAgg || r.n != n_hi || r.d != ds.back() || r.dropout != drop_lo) {
      continue;
    }
    const double per_entry = r.client_phase_mean[static_cast<int>(ClientPhase::kMaskedInput)] /
                             (static_cast<double>(r.k + 1) * static_cast<double>(r.d));
    out << "- The upload phase is dominated by mask expansion: at n = " << r.n << ", d = " << r.d
        << " a client expands k + 1 = " << r.k + 1 << " masks in "
        << Seconds(r.client_phase_mean[static_cast<int>(ClientPhase::kMaskedInput)]) << ", "
        << absl::StrFormat("%.2f", per_entry * 1e9)
        << " ns per mask entry (including the key agreement per neighbour).\n";
  }
  // Server cost against dropout.
  for (int64_t d : ds) {
    for (int n : ns) {
      for (Variant v : {Variant::kSecAgg, Variant::kSecAggPlus}) {
        const ConfigResult* lo = Find(results, v, n, d, drop_lo);
        const ConfigResult* hi = Find(results, v, n, d, drop_hi);
        if (lo == nullptr || hi == nullptr || drop_lo == drop_hi) continue;
        if (n != n_hi || d != ds.back()) continue;
        out << "- Server, " << VariantName(v) << ", n = " << n << ", d = " << d << ": "
            << Seconds(lo->server_seconds) << " at " << Percent(drop_lo) << " dropout, "
            << Seconds(hi->server_seconds) << " at " << Percent(drop_hi) << " ("
            << Ratio(hi->server_seconds, lo->server_seconds) << "); the unmasking step is "
            << Seconds(hi->server_finish_seconds) << " of it: each of the " << hi->dropped
            << " dropped clients costs one mask expansion per surviving neighbour ("
            << (v == Variant::kSecAgg ? "" : "at most ") << hi->dropped << " x "
            << (v == Variant::kSecAgg ? n - hi->dropped : hi->k) << " expansions of d entries).\n";
      }
    }
  }
  // Against the published figures.
  std::ostringstream published;
  for (const ConfigResult& r : results) {
    const Published* p = FindPublished(r.variant, r.n, r.d, r.dropout);
    if (p == nullptr) continue;
    published << " n = " << r.n << ", d = " << r.d << ", " << Percent(r.dropout) << ":";
    if (p->client_seconds) {
      published << " client " << Seconds(*p->client_seconds) << " vs ours "
                << Seconds(r.client_total_mean) << " ("
                << Ratio(*p->client_seconds, r.client_total_mean) << ")";
    }
    if (p->server_seconds) {
      published << (p->client_seconds ? "," : "") << " server " << Seconds(*p->server_seconds)
                << " vs ours " << Seconds(r.server_seconds) << " ("
                << Ratio(*p->server_seconds, r.server_seconds) << ")";
    }
    published << ";";
  }
  if (!published.str().empty()) {
    out << "- Published (B17 via S1; see the notes) over ours, same n, d and dropout:"
        << absl::StripSuffix(published.str(), ";") << " (ratios are published / ours).\n";
  }
  // Growth with n, published and ours, where both have two values of n.
  std::ostringstream growth;
  for (const Published& a : PublishedFigures()) {
    for (const Published& b : PublishedFigures()) {
      if (a.variant != b.variant || a.d != b.d || a.dropout != b.dropout || a.n >= b.n) continue;
      const ConfigResult* ra = Find(results, a.variant, a.n, a.d, a.dropout);
      const ConfigResult* rb = Find(results, b.variant, b.n, b.d, b.dropout);
      if (ra == nullptr || rb == nullptr) continue;
      if (a.client_seconds && b.client_seconds) {
        growth << " client at " << Percent(a.dropout) << ": published "
               << Ratio(*b.client_seconds, *a.client_seconds) << ", ours "
               << Ratio(rb->client_total_mean, ra->client_total_mean) << ";";
      }
      if (a.server_seconds && b.server_seconds) {
        growth << " server at " << Percent(a.dropout) << ": published "
               << Ratio(*b.server_seconds, *a.server_seconds) << ", ours "
               << Ratio(rb->server_seconds, ra->server_seconds) << " (dropped x surviving "
               << "clients grows "
               << Ratio(rb->dropped * (b.n - rb->dropped), ra->dropped * (a.n - ra->dropped))
               << ");";
      }
    }
  }
  if (!growth.str().empty()) {
    out << "- Growth from the smaller to the larger published n, published against ours:"
        << absl::StripSuffix(growth.str(), ";") << ".\n";
  }
  // Run-to-run noise: with dropouts in the upload phase a surviving client does the same work
  // whatever the dropout rate (it masks with every neighbour that shared keys), so rows that differ
  // only in dropout and have the same k should show the same client time.
  double worst_spread = 1.0;
  const ConfigResult* worst_lo = nullptr;
  const ConfigResult* worst_hi = nullptr;
  for (const ConfigResult& a : results) {
    for (const ConfigResult& b : results) {
      if (a.variant != b.variant || a.n != b.n || a.d != b.d || a.k != b.k) continue;
      if (upload_drops_only && b.client_total_mean > 0 &&
          a.client_total_mean / b.client_total_mean > worst_spread) {
        worst_spread = a.client_total_mean / b.client_total_mean;
        worst_hi = &a;
        worst_lo = &b;
      }
    }
  }
  if (worst_lo != nullptr) {
    out << "- Noise: rows that differ only in dropout (same k) should show the same client cost; "
           "the largest spread is "
        << Ratio(worst_hi->client_total_mean, worst_lo->client_total_mean) << " ("
        << VariantName(worst_hi->variant) << ", n = " << worst_hi->n << ", d = " << worst_hi->d
        << ": " << Seconds(worst_lo->client_total_mean) << " at " << Percent(worst_lo->dropout)
        << " vs " << Seconds(worst_hi->client_total_mean) << " at " << Percent(worst_hi->dropout)
        << "). Single rounds on a shared VM: read differences of that size as noise "
           "(--repetitions averages rounds).\n";
  }
  // Memory.
  const ConfigResult* biggest = nullptr;
  for (const ConfigResult& r : results) {
    if (biggest == nullptr || r.peak_rss_kib > biggest->peak_rss_kib) biggest = &r;
  }
  if (biggest != nullptr) {
    out << "- Peak resident memory of the bench process: "
        << absl::StrFormat("%.2f GiB", static_cast<double>(biggest->peak_rss_kib) / (1 << 20))
        << ", first reached by " << VariantName(biggest->variant) << " at n = " << biggest->n
        << ", d = " << biggest->d
        << ". Masked vectors are summed as they arrive, so d costs O(d) here; what grows with n is "
           "the state the in-memory round keeps for all n clients at once (each client's peers' "
           "keys, held shares and share keys, and the server's copy of every encrypted share: "
           "O(n k) in all).\n";
  }
  return out.str();
}

std::string Markdown(const Options& options, const RunInfo& info,
                     const std::vector<ConfigResult>& results) {
  std::ostringstream md;
  md << "# Secure aggregation benchmark (SecAgg / SecAgg+)\n\n";
  md << "Generated by `bench/secagg_bench.cc`"
     << (info.complete ? "" : " (**partial: still running**)") << " on " << info.generated
     << "; bench wall time " << Seconds(info.elapsed) << ".\n\n";
  md << "Command:\n\n```\n" << info.command << "\n```\n\n";
  md << "Library: `privacy/secagg` sources (tests excluded) with SHA-256 `" << info.secagg_sha256
     << "` (see `bench/secagg_sources_hash.cmake`).\n\n";
  md << "Regenerate: `scripts/bench.sh secagg` (runs the grid again); after changing the "
        "published figures or the report format, re-render without running: "
        "`fedkit_secagg_bench --render-from results/secagg_bench.json --out-md "
        "results/secagg_bench.md --out-json results/secagg_bench.json`.\n\n";
  md << "Machine (`lscpu | head -20`; `nproc` = " << info.nproc << "):\n\n```\n"
     << info.lscpu << "\n```\n\n";
  md << "Setting: one round per repetition (" << options.repetitions
     << " repetition(s), means reported) through `RunInMemoryRound` with sequential execution "
        "(one core; clients and server take turns), inputs uniform in Z_2^"
     << options.modulus_bits << " (" << (options.modulus_bits + 7) / 8
     << " bytes per entry on the wire); dropped clients are chosen at random and go silent in "
        "the `"
     << options.drop_phase
     << "` phase. Every round's unmasked sum is checked against the plain sum. SecAgg: complete "
        "graph, k = n - 1, t = floor(n/2) + 1. SecAgg+: `MakeProtocolConfig` with corrupt "
        "fraction "
     << options.corrupt_fraction << " and design dropout rate max(injected dropout, "
     << options.min_design_dropout
     << ") (the graph must tolerate the dropouts injected, and no deployment sizes it for zero "
        "dropout), 2^-40 security and 2^-20 correctness failure (`SecAggPlusParameters`).\n\n";
  md << "Times are single-core CPU seconds: the round's wall-clock timers scaled by the thread "
        "CPU / wall ratio of the stretch each was measured in (client steps of each phase, the "
        "server blocks between and after them), so that other load on the shared machine does "
        "not inflate them; the JSON also keeps the raw wall-clock figures.\n\n";
  md << "Columns: *client* = mean per-client compute over the whole round (for each phase the "
        "mean over the clients that ran it, summed: the cost of a client that completes the "
        "round); *upload* = of which the masked-input phase (decrypting the shares it holds, one "
        "key agreement and one PRG expansion of d entries per neighbour); *server* = server "
        "compute over all phases, *finish* = of which the final unmasking (Shamir reconstruction "
        "and mask expansion); *bytes/client* = mean bytes sent per client (over every client "
        "that sent anything, dropped ones included), *max* = the largest (a client that "
        "completed); *cpu/wall* = thread CPU over wall time for the whole round (1.00: it had a "
        "core to itself; lower: it waited for one, and the CPU correction above mattered). "
        "Published columns: see the "
        "notes below the table; n/f = not found in the sources we could read.\n\n";
  md << "| variant | n | d | drop | k | t | client | upload | server | finish | bytes/client | max "
        "| cpu/wall | paper client | paper server | paper bytes/client | paper source |\n";
  md << "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|\n";
  for (const ConfigResult& r : results) {
    const Published* p = FindPublished(r.variant, r.n, r.d, r.dropout);
    md << "| " << VariantName(r.variant) << " | " << r.n << " | " << r.d << " | "
       << Percent(r.dropout) << " | " << r.k << " | " << r.t << " | "
       << Seconds(r.client_total_mean) << " | "
       << Seconds(r.client_phase_mean[static_cast<int>(ClientPhase::kMaskedInput)]) << " | "
       << Seconds(r.server_seconds) << " | " << Seconds(r.server_finish_seconds) << " | "
       << Bytes(r.bytes_mean) << " | " << Bytes(r.bytes_max) << " | "
       << absl::StrFormat("%.2f", r.round_cpu_seconds / std::max(r.round_wall_seconds, 1e-12))
       << " | " << (p ? Optional(p->client_seconds, Seconds) : "n/f") << " | "
       << (p ? Optional(p->server_seconds, Seconds) : "n/f") << " | "
       << (p ? Optional(p->client_bytes, Bytes) : "n/f") << " | " << (p ? p->source : "n/f")
       << " |\n";
  }

  // SecAgg / SecAgg+ ratios where both ran.
  std::ostringstream ratios;
  for (const ConfigResult& a : results) {
    if (a.variant != Variant::kSecAgg) continue;
    const ConfigResult* b = Find(results, Variant::kSecAggPlus, a.n, a.d, a.dropout);
    if (b == nullptr) continue;
    ratios << "| " << a.n << " | " << a.d << " | " << Percent(a.dropout) << " | " << a.k << " / "
           << b->k << " | " << Ratio(a.client_total_mean, b->client_total_mean) << " | "
           << Ratio(a.server_seconds, b->server_seconds) << " | "
           << Ratio(a.bytes_max, b->bytes_max) << " |\n";
  }
  if (!ratios.str().empty()) {
    md << "\nSecAgg / SecAgg+ (same n, d, dropout):\n\n";
    md << "| n | d | drop | k (SecAgg / SecAgg+) | client | server | bytes (max) |\n";
    md << "|---:|---:|---:|---|---:|---:|---:|\n" << ratios.str();
  }
  md << Observations(results, options.drop_phase == "upload");
  md << kPublishedNotes;
  return md.str();
}

Json JsonReport(const Options& options, const RunInfo& info,
                const std::vector<ConfigResult>& results) {
  Json j;
  j["generated"] = info.generated;
  j["complete"] = info.complete;
  j["command"] = info.command;
  j["bench_wall_seconds"] = info.elapsed;
  j["machine"] = {{"lscpu_head", info.lscpu}, {"nproc", info.nproc}};
  j["secagg_sources_sha256"] = info.secagg_sha256;
  j["setting"] = {{"modulus_bits", options.modulus_bits},
                  {"drop_phase", options.drop_phase},
                  {"corrupt_fraction", options.corrupt_fraction},
                  {"min_design_dropout", options.min_design_dropout},
                  {"repetitions", options.repetitions},
                  {"seed", options.seed},
                  {"execution", "sequential (one core)"}};
  Json rows = Json::array();
  for (const ConfigResult& r : results) rows.push_back(ToJson(r, options));
  j["results"] = rows;
  return j;
}

absl::Status WriteFile(const std::string& path, const std::string& text) {
  if (path.empty()) return absl::OkStatus();
  std::ofstream out(path, std::ios::trunc);
  out << text;
  out.close();
  if (!out) return absl::InternalError(absl::StrCat("cannot write ", path));
  return absl::OkStatus();
}

absl::Status WriteReports(const Options& options, const RunInfo& info,
                          const std::vector<ConfigResult>& results) {
  absl::Status md = WriteFile(options.out_md, Markdown(options, info, results));
  if (!md.ok()) return md;
  return WriteFile(options.out_json, JsonReport(options, info, results).dump(2) + "\n");
}

// Reads back what ToJson / JsonReport wrote (for --render-from).
absl::StatusOr<ConfigResult> FromJson(const Json& j) {
  ConfigResult r;
  absl::StatusOr<Variant> variant = ParseVariant(j.at("variant").get<std::string>());
  if (!variant.ok()) return variant.status();
  r.variant = *variant;
  r.n = j.at("n").get<int>();
  r.d = j.at("d").get<int64_t>();
  r.dropout = j.at("dropout").get<double>();
  r.dropped = j.at("dropped").get<int>();
  r.design_dropout =
      j.at("design_dropout").is_null() ? r.dropout : j.at("design_dropout").get<double>();
  r.k = j.at("k").get<int>();
  r.t = j.at("t").get<int>();
  r.included = j.at("included").get<int>();
  r.client_total_mean = j.at("client_seconds_mean_total").get<double>();
  for (int p = 0; p < kNumClientPhases; ++p) {
    const Json& phase = j.at("client_seconds_by_phase")
                            .at(std::string(ClientPhaseName(static_cast<ClientPhase>(p))));
    r.client_phase_mean[p] = phase.at("mean").get<double>();
    r.client_phase_max[p] = phase.at("max").get<double>();
  }
  r.server_seconds = j.at("server_seconds").get<double>();
  r.server_finish_seconds = j.at("server_finish_seconds").get<double>();
  const Json& wall = j.at("wall_clock");
  r.client_total_mean_wall = wall.at("client_seconds_mean_total").get<double>();
  r.client_upload_mean_wall = wall.at("client_seconds_mean_upload").get<double>();
  r.server_seconds_wall = wall.at("server_seconds").get<double>();
  r.server_finish_seconds_wall = wall.at("server_finish_seconds").get<double>();
  r.bytes_mean = j.at("client_bytes_sent_mean").get<double>();
  r.bytes_max = j.at("client_bytes_sent_max").get<double>();
  r.round_wall_seconds = j.at("round_wall_seconds").get<double>();
  r.round_cpu_seconds = j.at("round_cpu_seconds").get<double>();
  r.peak_rss_kib = j.at("peak_rss_kib").get<int64_t>();
  r.rep_client_total = j.at("repetitions_client_seconds_total").get<std::vector<double>>();
  r.rep_server_seconds = j.at("repetitions_server_seconds").get<std::vector<double>>();
  return r;
}

// Re-renders the reports from a JSON report (e.g. after the published figures changed), without
// running anything: the setting, header facts and results all come from the file.
absl::Status RenderFrom(const std::string& path, Options options) {
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot read ", path));
  Json j;
  try {
    j = Json::parse(in);
    RunInfo info;
    info.command = j.at("command").get<std::string>();
    info.generated = j.at("generated").get<std::string>();
    info.lscpu = j.at("machine").at("lscpu_head").get<std::string>();
    info.nproc = j.at("machine").at("nproc").get<std::string>();
    info.secagg_sha256 = j.value("secagg_sources_sha256", std::string("unknown"));
    info.elapsed = j.at("bench_wall_seconds").get<double>();
    info.complete = j.at("complete").get<bool>();
    const Json& setting = j.at("setting");
    options.modulus_bits = setting.at("modulus_bits").get<int>();
    options.drop_phase = setting.at("drop_phase").get<std::string>();
    options.corrupt_fraction = setting.at("corrupt_fraction").get<double>();
    options.min_design_dropout = setting.at("min_design_dropout").get<double>();
    options.repetitions = setting.at("repetitions").get<int>();
    options.seed = setting.at("seed").get<uint64_t>();
    std::vector<ConfigResult> results;
    for (const Json& row : j.at("results")) {
      absl::StatusOr<ConfigResult> r = FromJson(row);
      if (!r.ok()) return r.status();
      results.push_back(*std::move(r));
    }
    return WriteReports(options, info, results);
  } catch (const Json::exception& e) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": ", e.what()));
  }
}

int Main(int argc, char** argv) {
  Options options;
  CLI::App app{"Secure aggregation (SecAgg / SecAgg+) cost over n, d and dropout"};
  app.add_option("--n", options.n, "numbers of clients")->delimiter(',');
  app.add_option("--d", options.d, "vector lengths")->delimiter(',');
  app.add_option("--dropout", options.dropout, "dropout fractions in [0, 1)")->delimiter(',');
  app.add_option("--variant", options.variants, "secagg, secagg+")->delimiter(',');
  app.add_option("--drop-phase", options.drop_phase,
                 "phase in which dropped clients go silent: advertise, share, upload, unmask")
      ->capture_default_str();
  app.add_option("--modulus-bits", options.modulus_bits, "inputs and masks in Z_2^bits")
      ->capture_default_str();
  app.add_option("--corrupt-fraction", options.corrupt_fraction,
                 "SecAgg+ graph: fraction of clients colluding with the server")
      ->capture_default_str();
  app.add_option("--min-design-dropout", options.min_design_dropout,
                 "SecAgg+ graph is sized for max(injected dropout, this)")
      ->capture_default_str();
  app.add_option("--repetitions", options.repetitions, "rounds per configuration (means reported)")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  app.add_option("--seed", options.seed, "seed of the inputs and of the dropout choice")
      ->capture_default_str();
  app.add_option("--out-md", options.out_md, "Markdown report path");
  app.add_option("--out-json", options.out_json, "JSON report path");
  std::string render_from;
  app.add_option("--render-from", render_from,
                 "rewrite --out-md/--out-json from this JSON report instead of running (picks up "
                 "changes to the published figures or the report format)");
  CLI11_PARSE(app, argc, argv);
  std::vector<std::string> words(argv, argv + argc);
  options.command = absl::StrJoin(words, " ");
  if (!render_from.empty()) {
    absl::Status status = RenderFrom(render_from, options);
    if (!status.ok()) {
      std::fprintf(stderr, "secagg_bench: %s\n", std::string(status.message()).c_str());
      return 1;
    }
    return 0;
  }

  absl::StatusOr<ClientPhase> drop_phase = ParseClientPhase(options.drop_phase);
  if (!drop_phase.ok()) {
    std::fprintf(stderr, "secagg_bench: %s\n", std::string(drop_phase.status().message()).c_str());
    return 2;
  }
  std::vector<Variant> variants;
  for (const std::string& name : options.variants) {
    absl::StatusOr<Variant> v = ParseVariant(name);
    if (!v.ok()) {
      std::fprintf(stderr, "secagg_bench: %s\n", std::string(v.status().message()).c_str());
      return 2;
    }
    variants.push_back(*v);
  }

  const auto start = std::chrono::steady_clock::now();
  auto elapsed = [&] {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  };
  RunInfo info;
  info.command = options.command;
  info.lscpu = Shell("lscpu 2>/dev/null | head -20");
  info.nproc = Shell("nproc 2>/dev/null");
  info.secagg_sha256 = FEDKIT_SECAGG_SOURCES_SHA256;
  std::vector<ConfigResult> results;
  const size_t total =
      options.n.size() * options.d.size() * options.dropout.size() * variants.size();
  // Cheap configurations first: d, then n, so the report fills in early.
  for (int64_t d : options.d) {
    for (int n : options.n) {
      for (double dropout : options.dropout) {
        for (Variant variant : variants) {
          std::fprintf(stderr, "[%7.0fs] %zu/%zu %s n=%d d=%lld dropout=%g ...\n", elapsed(),
                       results.size() + 1, total, std::string(VariantName(variant)).c_str(), n,
                       static_cast<long long>(d), dropout);
          std::fflush(stderr);
          absl::StatusOr<ConfigResult> r = RunConfig(options, variant, n, d, dropout, *drop_phase);
          if (!r.ok()) {
            std::fprintf(stderr, "secagg_bench: %s\n", std::string(r.status().message()).c_str());
            return 1;
          }
          std::fprintf(stderr,
                       "[%7.0fs]   k=%d t=%d client %.4f s (upload %.4f s) server %.3f s (finish "
                       "%.3f s) bytes %.0f cpu/wall %.2f rss %.0f MiB\n",
                       elapsed(), r->k, r->t, r->client_total_mean,
                       r->client_phase_mean[static_cast<int>(ClientPhase::kMaskedInput)],
                       r->server_seconds, r->server_finish_seconds, r->bytes_mean,
                       r->round_cpu_seconds / std::max(r->round_wall_seconds, 1e-12),
                       static_cast<double>(r->peak_rss_kib) / 1024);
          std::fflush(stderr);
          results.push_back(*std::move(r));
          info.generated = UtcNow();
          info.elapsed = elapsed();
          absl::Status written = WriteReports(options, info, results);
          if (!written.ok()) {
            std::fprintf(stderr, "secagg_bench: %s\n", std::string(written.message()).c_str());
            return 1;
          }
        }
      }
    }
  }
  info.generated = UtcNow();
  info.elapsed = elapsed();
  info.complete = true;
  absl::Status written = WriteReports(options, info, results);
  if (!written.ok()) {
    std::fprintf(stderr, "secagg_bench: %s\n", std::string(written.message()).c_str());
    return 1;
  }
  std::fprintf(stderr, "[%7.0fs] done\n", elapsed());
  return 0;
}

}  // namespace
}  // namespace fedkit::secagg

int main(int argc, char** argv) { return fedkit::secagg::Main(argc, argv); }
