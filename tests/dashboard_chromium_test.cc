// The dashboard (dashboard/dashboard_server.h) in a real browser: headless Chromium (Debian's
// `chromium`) loads the page, runs its JavaScript for a few seconds of virtual time and prints the
// DOM, which these tests read back through the page's data-field / data-col attributes.
//   - PageShowsEveryFieldOfTheStatus: a DashboardServer with a fixed GetStatusResponse (DP, secure
//     aggregation, refusals, declines): every value is shown, and the page polls (a counter the
//     source bumps on each call is shown past its first value).
//   - PageSaysConnectionLostWhenPollingFails: the source fails after its first answer.
//   - CoordinatorRunMatchesGetStatus: fedkit-coordinator --http with four fedkit-client processes
//     (plaintext, logreg). Two of them go silent at round 6's upload, so the run holds at round 6
//     with 5 rounds committed; the page's values are compared with GetStatus over gRPC, and a
//     screenshot is taken (results/dashboard.png with FEDKIT_WRITE_RESULTS=1, else a temp dir).
//   - HttpFlagErrorsNameTheFlag: a malformed or taken --http address stops the coordinator with
//     exit code 2 and a message naming --http.
// Every test is skipped when /usr/bin/chromium is missing (scripts/install-deps.sh installs it).
#include <grpcpp/grpcpp.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <regex>
#include <string>
#include <tuple>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "dashboard/dashboard_server.h"
#include "fedkit/v1/coordinator.grpc.pb.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/subprocess.h"

namespace fedkit {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;
using testing_util::PollUntil;
using testing_util::Scaled;
using testing_util::Subprocess;

constexpr char kChromium[] = "/usr/bin/chromium";

// A fresh directory for the running test.
fs::path TestDir() {
  const fs::path dir =
      fs::path(::testing::TempDir()) /
      ("fedkit_dashboard_" +
       std::string(::testing::UnitTest::GetInstance()->current_test_info()->name()));
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir;
}

std::string ReadAll(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

// Runs headless Chromium on `url` with a fresh profile under `dir` and `mode` (--dump-dom, or
// --screenshot=PATH); the page gets five seconds of virtual time (five polls) first. Returns its
// standard output, or nullopt (with a test failure) if it failed.
std::optional<std::string> RunChromium(const std::string& url, const std::string& mode,
                                       const fs::path& dir, const std::string& name) {
  const fs::path profile = dir / (name + "-profile");
  fs::create_directories(profile);
  const std::vector<std::string> flags = {kChromium,
                                          "--headless",
                                          "--no-sandbox",
                                          "--disable-gpu",
                                          "--disable-quic",
                                          "--no-first-run",
                                          "--disable-background-networking",
                                          "--disable-component-update",
                                          "--disable-sync",
                                          "--disable-dev-shm-usage",
                                          "--hide-scrollbars",
                                          "--force-device-scale-factor=1",
                                          "--window-size=1280,900",
                                          "--user-data-dir=" + profile.string(),
                                          "--virtual-time-budget=5000",
                                          mode,
                                          url};
  // Chromium logs to stderr (D-Bus noise in containers); the DOM goes to stdout on its own.
  std::string command = "exec";
  for (const std::string& flag : flags) command += " '" + flag + "'";
  command +=
      " >'" + (dir / (name + ".out")).string() + "' 2>'" + (dir / (name + ".log")).string() + "'";
  Subprocess chromium;
  if (!chromium.Start({"/bin/sh", "-c", command}, (dir / (name + ".sh.log")).string())) {
    ADD_FAILURE() << "cannot start " << kChromium;
    return std::nullopt;
  }
  std::optional<int> code;
  PollUntil([&] { return (code = chromium.WaitFor({})).has_value(); }, std::chrono::minutes(3));
  if (code != 0) {
    ADD_FAILURE() << kChromium << " exited with " << (code ? std::to_string(*code) : "nothing")
                  << ":\n"
                  << ReadAll(dir / (name + ".log"));
    return std::nullopt;
  }
  return ReadAll(dir / (name + ".out"));
}

std::string Unescape(std::string text) {
  return absl::StrReplaceAll(
      text, {{"&lt;", "<"}, {"&gt;", ">"}, {"&quot;", "\""}, {"&#39;", "'"}, {"&amp;", "&"}});
}

// The text of the element with data-field="name" (its first one), or nullopt.
std::optional<std::string> Field(const std::string& dom, const std::string& name) {
  std::smatch match;
  if (!std::regex_search(dom, match, std::regex("data-field=\"" + name + "\"[^>]*>([^<]*)<"))) {
    return std::nullopt;
  }
  return Unescape(match[1]);
}

double Number(const std::optional<std::string>& text) {
  double value = NAN;
  if (!text || !absl::SimpleAtod(*text, &value)) return NAN;
  return value;
}

// The rows of <tbody id="body_id">: the row's `key` attribute (data-round, data-reason,
// data-phase) -> data-col -> text.
using Rows = std::map<std::string, std::map<std::string, std::string>>;
Rows TableRows(const std::string& dom, const std::string& body_id, const std::string& key) {
  Rows rows;
  std::smatch body;
  if (!std::regex_search(dom, body,
                         std::regex("<tbody id=\"" + body_id + "\">([\\s\\S]*?)</tbody>"))) {
    return rows;
  }
  const std::string inside = body[1];
  const std::regex row("<tr " + key + "=\"([^\"]*)\">([\\s\\S]*?)</tr>");
  const std::regex cell("<td data-col=\"([^\"]*)\">([^<]*)</td>");
  for (auto r = std::sregex_iterator(inside.begin(), inside.end(), row);
       r != std::sregex_iterator(); ++r) {
    const std::string cells = (*r)[2];
    auto& columns = rows[Unescape((*r)[1])];
    for (auto c = std::sregex_iterator(cells.begin(), cells.end(), cell);
         c != std::sregex_iterator(); ++c) {
      columns[(*c)[1]] = Unescape((*c)[2]);
    }
  }
  return rows;
}

// The number of points the chart draws for `series`, or -1.
int ChartPoints(const std::string& dom, const std::string& series) {
  std::smatch match;
  if (!std::regex_search(dom, match,
                         std::regex("data-series=\"" + series + "\" data-points=\"(\\d+)\""))) {
    return -1;
  }
  return std::stoi(match[1]);
}

// A status with everything the page shows: DP, a secure aggregation round, refusals, declines.
v1::GetStatusResponse FullStatus() {
  v1::GetStatusResponse s;
  s.set_current_round(4);
  s.set_phase("secagg-upload");
  s.set_rounds_total(20);
  s.set_assigned(6);
  s.set_received(3);
  s.set_waiting_for("round 4: secure aggregation phase secagg-upload");
  for (int r = 1; r <= 3; ++r) {
    v1::RoundSummary* h = s.add_history();
    h->set_round(r);
    h->set_participants(6 - r % 2);
    h->set_assigned(6);
    h->set_accuracy(0.6 + 0.05 * r);
    h->set_loss(1.5 - 0.25 * r);
    h->set_train_loss(1.4 - 0.2 * r);
    h->set_seconds(2.0 + r);
    h->set_examples(1000 * r);
    h->set_epsilon(0.4 * r);
    if (r >= 2) {  // round 1 without device telemetry
      v1::TelemetryQuantiles* training = h->mutable_device_telemetry()->mutable_training_seconds();
      training->set_count(5);
      training->set_p50(1.25 * r);
      training->set_p90(3.5 * r);
    }
  }
  s.set_rounds_abandoned(2);
  s.set_epsilon(1.2);
  s.set_delta(1e-5);
  for (const auto& [phase, in, out] :
       {std::tuple<const char*, int, int>{"secagg-advertise", 6, 6}, {"secagg-share", 6, 5}}) {
    v1::SecAggPhaseSummary* p = s.add_secagg_phases();
    p->set_phase(phase);
    p->set_seconds(0.5);
    p->set_clients_in(in);
    p->set_clients_out(out);
  }
  (*s.mutable_refusals())["late"] = 3;
  (*s.mutable_refusals())["secagg_bad_share"] = 1;
  (*s.mutable_declines())["ARTIFACT_UNTRUSTED"] = 2;
  return s;
}

class DashboardChromiumTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!fs::exists(kChromium)) GTEST_SKIP() << kChromium << " is not installed";
    dir_ = TestDir();
  }
  fs::path dir_;
};

TEST_F(DashboardChromiumTest, PageShowsEveryFieldOfTheStatus) {
  std::atomic<int> calls{0};
  auto server = dashboard::DashboardServer::Create({.listen = "127.0.0.1:0"}, [&calls] {
    v1::GetStatusResponse s = FullStatus();
    s.set_checked_in(++calls);  // shows which answer the page rendered last
    return s;
  });
  ASSERT_TRUE(server.ok()) << server.status();
  const std::optional<std::string> dom = RunChromium((*server)->url(), "--dump-dom", dir_, "dom");
  ASSERT_TRUE(dom.has_value());
  const v1::GetStatusResponse s = FullStatus();

  EXPECT_EQ(Field(*dom, "connection"), "live");
  EXPECT_EQ(Field(*dom, "phase"), s.phase());
  EXPECT_EQ(Field(*dom, "waiting_for"), s.waiting_for());
  EXPECT_EQ(Field(*dom, "current_round"), "4");
  EXPECT_EQ(Field(*dom, "rounds_total"), "20");
  EXPECT_EQ(Field(*dom, "rounds_committed"), "3");
  EXPECT_EQ(Field(*dom, "rounds_abandoned"), "2");
  EXPECT_EQ(Field(*dom, "assigned"), "6");
  EXPECT_EQ(Field(*dom, "received"), "3");
  // Polled and re-rendered: a later answer than the first is shown.
  const double checked_in = Number(Field(*dom, "checked_in"));
  EXPECT_GE(checked_in, 2);
  EXPECT_LE(checked_in, calls.load());
  EXPECT_EQ(Field(*dom, "epsilon"), "1.200");
  EXPECT_THAT(*dom, HasSubstr("<div class=\"card\" id=\"privacy\">"));
  EXPECT_EQ(Field(*dom, "delta"), "1e-5");
  EXPECT_EQ(Field(*dom, "last_accuracy"), "0.7500");
  EXPECT_EQ(Field(*dom, "last_loss"), "0.7500");
  EXPECT_EQ(Field(*dom, "secagg_current"), "secagg-upload");

  const Rows history = TableRows(*dom, "history", "data-round");
  ASSERT_EQ(history.size(), 3u) << *dom;
  for (const v1::RoundSummary& r : s.history()) {
    const auto& row = history.at(std::to_string(r.round()));
    EXPECT_EQ(row.at("participants"), std::to_string(r.participants()));
    EXPECT_EQ(row.at("assigned"), "6");
    EXPECT_EQ(row.at("dropouts"), std::to_string(6 - r.participants()));
    EXPECT_NEAR(Number(row.at("accuracy")), r.accuracy(), 5e-5);
    EXPECT_NEAR(Number(row.at("loss")), r.loss(), 5e-5);
    EXPECT_NEAR(Number(row.at("train_loss")), r.train_loss(), 5e-5);
    EXPECT_NEAR(Number(row.at("epsilon")), r.epsilon(), 5e-4);
    EXPECT_NEAR(Number(row.at("seconds")), r.seconds(), 5e-3);
    // The devices' training time, p50 / p90, or a dash without telemetry.
    char expected[64] = "–";
    if (r.has_device_telemetry()) {
      std::snprintf(expected, sizeof(expected), "%.2f / %.2f",
                    r.device_telemetry().training_seconds().p50(),
                    r.device_telemetry().training_seconds().p90());
    }
    EXPECT_EQ(row.at("device_training"), expected);
  }
  const Rows phases = TableRows(*dom, "secagg-phases", "data-phase");
  ASSERT_EQ(phases.size(), 2u) << *dom;
  EXPECT_EQ(phases.at("secagg-share").at("clients_in"), "6");
  EXPECT_EQ(phases.at("secagg-share").at("clients_out"), "5");
  EXPECT_EQ(phases.at("secagg-advertise").at("seconds"), "0.50");
  const Rows refusals = TableRows(*dom, "refusals", "data-reason");
  ASSERT_EQ(refusals.size(), 2u) << *dom;
  EXPECT_EQ(refusals.at("late").at("count"), "3");
  EXPECT_EQ(refusals.at("secagg_bad_share").at("count"), "1");
  EXPECT_EQ(TableRows(*dom, "declines", "data-reason").at("ARTIFACT_UNTRUSTED").at("count"), "2");

  EXPECT_EQ(ChartPoints(*dom, "accuracy"), 3);
  EXPECT_EQ(ChartPoints(*dom, "evaluation loss"), 3);
  EXPECT_EQ(ChartPoints(*dom, "training loss"), 3);
}

TEST_F(DashboardChromiumTest, PageSaysConnectionLostWhenPollingFails) {
  std::atomic<int> calls{0};
  auto server = dashboard::DashboardServer::Create(
      {.listen = "127.0.0.1:0"}, [&calls]() -> absl::StatusOr<v1::GetStatusResponse> {
        if (++calls == 1) return FullStatus();
        return absl::UnavailableError("coordinator stopping");
      });
  ASSERT_TRUE(server.ok()) << server.status();
  const std::optional<std::string> dom = RunChromium((*server)->url(), "--dump-dom", dir_, "dom");
  ASSERT_TRUE(dom.has_value());
  ASSERT_GE(calls.load(), 2);
  const std::optional<std::string> connection = Field(*dom, "connection");
  ASSERT_TRUE(connection.has_value()) << *dom;
  EXPECT_THAT(*connection, HasSubstr("connection lost"));
  EXPECT_THAT(*connection, HasSubstr("503"));
  EXPECT_THAT(*connection, HasSubstr("coordinator stopping"));
  EXPECT_THAT(*dom, HasSubstr("<body class=\"stale\">"));
  // What was last known stays on the page.
  EXPECT_EQ(Field(*dom, "current_round"), "4");
}

class DashboardCoordinatorTest : public DashboardChromiumTest {
 protected:
  std::string Path(const std::string& name) const { return (dir_ / name).string(); }

  // fedkit-coordinator, plaintext on an ephemeral gRPC port, the dashboard on `http`, tiny rounds.
  std::vector<std::string> CoordinatorArgv(const std::string& http) const {
    return {FEDKIT_COORDINATOR_BINARY,
            "--listen",
            "127.0.0.1:0",
            "--insecure",
            "--http",
            http,
            "--model",
            "logreg",
            "--rounds",
            "10",
            "--clients-per-round",
            "3",
            "--over-select",
            "0.3",  // 4 assigned: one update a round comes late
            "--round-timeout",
            "3600",
            "--eval-data",
            "/usr/share/datasets/fashion-mnist",
            "--retry-interval",
            "0.2",
            "--seed",
            "5",
            "--local-epochs",
            "1",
            "--batch-size",
            "50",
            "--client-lr",
            "0.05",
            "--linger",
            "0"};
  }

  v1::GetStatusResponse Status(int port) {
    auto stub = v1::Coordinator::NewStub(grpc::CreateChannel("127.0.0.1:" + std::to_string(port),
                                                             grpc::InsecureChannelCredentials()));
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + Scaled(std::chrono::seconds(30)));
    v1::GetStatusResponse status;
    const grpc::Status rpc = stub->GetStatus(&context, v1::GetStatusRequest(), &status);
    EXPECT_TRUE(rpc.ok()) << rpc.error_message();
    return status;
  }
};

// The first match of `pattern`'s group 1 in the process's output, polled until it appears or the
// process exits.
std::string WaitForLine(Subprocess& process, const std::string& pattern) {
  const std::regex re(pattern);
  std::smatch match;
  std::string found;
  PollUntil(
      [&] {
        const std::string out = process.Output();
        if (std::regex_search(out, match, re)) {
          found = match[1];
          return true;
        }
        return process.WaitFor({}).has_value();
      },
      std::chrono::seconds(90));
  return found;
}

TEST_F(DashboardCoordinatorTest, CoordinatorRunMatchesGetStatus) {
  constexpr int kClients = 4;
  constexpr int kHoldRound = 6;
  Subprocess coordinator;
  ASSERT_TRUE(coordinator.Start(CoordinatorArgv("127.0.0.1:0"), Path("coordinator.log")));
  const std::string grpc_port = WaitForLine(coordinator, "serving on port (\\d+)");
  const std::string http_port =
      WaitForLine(coordinator, "dashboard on http://127\\.0\\.0\\.1:(\\d+)/");
  ASSERT_FALSE(grpc_port.empty()) << coordinator.Output();
  ASSERT_FALSE(http_port.empty()) << coordinator.Output();
  const int port = std::stoi(grpc_port);
  const std::string url = "http://127.0.0.1:" + http_port + "/";

  std::vector<Subprocess> clients(kClients);
  for (int i = 0; i < kClients; ++i) {
    std::vector<std::string> argv = {FEDKIT_CLIENT_BINARY,
                                     "--server",
                                     "127.0.0.1:" + grpc_port,
                                     "--insecure",
                                     "--num-clients",
                                     std::to_string(kClients),
                                     "--client-index",
                                     std::to_string(i),
                                     "--partition",
                                     "iid",
                                     "--seed",
                                     "5",
                                     "--model",
                                     "logreg"};
    // Two devices freeze at round 6's upload: it cannot reach 3 updates and holds.
    if (i < 2) argv.insert(argv.end(), {"--go-silent", "upload@" + std::to_string(kHoldRound)});
    ASSERT_TRUE(clients[i].Start(argv, Path("client" + std::to_string(i) + ".log")));
  }
  v1::GetStatusResponse before;
  ASSERT_TRUE(PollUntil(
      [&] {
        before = Status(port);
        return (before.history_size() == kHoldRound - 1 && before.phase() == "training" &&
                before.received() == 2) ||
               coordinator.WaitFor({}).has_value();
      },
      std::chrono::minutes(5)))
      << before.DebugString() << coordinator.Output();
  ASSERT_EQ(before.history_size(), kHoldRound - 1) << coordinator.Output();

  const std::optional<std::string> dom = RunChromium(url, "--dump-dom", dir_, "dom");
  ASSERT_TRUE(dom.has_value());
  const v1::GetStatusResponse after = Status(port);

  // The run holds, but allow for a round committing between the calls: compare the rounds both
  // have, and counters within [before, after].
  EXPECT_EQ(Field(*dom, "connection"), "live");
  EXPECT_EQ(Field(*dom, "rounds_total"), "10");
  const double current = Number(Field(*dom, "current_round"));
  EXPECT_GE(current, before.current_round());
  EXPECT_LE(current, after.current_round());
  const double committed = Number(Field(*dom, "rounds_committed"));
  EXPECT_GE(committed, before.history_size());
  EXPECT_LE(committed, after.history_size());
  if (before.phase() == after.phase()) {
    EXPECT_EQ(Field(*dom, "phase"), before.phase());
  }
  if (before.received() == after.received()) {
    EXPECT_EQ(Field(*dom, "received"), std::to_string(before.received()));
  }
  if (before.assigned() == after.assigned()) {
    EXPECT_EQ(Field(*dom, "assigned"), std::to_string(before.assigned()));
  }
  EXPECT_EQ(Field(*dom, "epsilon"), "none");
  EXPECT_THAT(*dom, HasSubstr("<div class=\"card no-dp\" id=\"privacy\">"));

  const Rows history = TableRows(*dom, "history", "data-round");
  EXPECT_EQ(history.size(), static_cast<size_t>(committed)) << *dom;
  int compared = 0;
  for (const v1::RoundSummary& r : before.history()) {
    const auto row = history.find(std::to_string(r.round()));
    ASSERT_NE(row, history.end()) << "round " << r.round() << " is not in the table\n" << *dom;
    EXPECT_EQ(row->second.at("participants"), std::to_string(r.participants()));
    EXPECT_EQ(row->second.at("assigned"), std::to_string(r.assigned()));
    EXPECT_EQ(row->second.at("dropouts"), std::to_string(r.assigned() - r.participants()));
    EXPECT_NEAR(Number(row->second.at("accuracy")), r.accuracy(), 5e-5) << "round " << r.round();
    EXPECT_NEAR(Number(row->second.at("loss")), r.loss(), 5e-5) << "round " << r.round();
    EXPECT_NEAR(Number(row->second.at("seconds")), r.seconds(), 5e-3) << "round " << r.round();
    ++compared;
  }
  EXPECT_EQ(compared, kHoldRound - 1);
  // 3 of 4 assigned devices make each round; the 4th update comes late.
  EXPECT_EQ(before.history(0).participants(), 3);
  EXPECT_EQ(before.history(0).assigned(), 4);
  EXPECT_NEAR(Number(Field(*dom, "last_accuracy")), before.history().rbegin()->accuracy(), 5e-5);
  EXPECT_EQ(ChartPoints(*dom, "accuracy"), static_cast<int>(committed));
  const Rows refusals = TableRows(*dom, "refusals", "data-reason");
  for (const auto& [reason, count] : before.refusals()) {
    ASSERT_TRUE(refusals.count(reason)) << reason << "\n" << *dom;
    const double shown = Number(refusals.at(reason).at("count"));
    EXPECT_GE(shown, count) << reason;
    EXPECT_LE(shown, after.refusals().at(reason)) << reason;
  }

  // The screenshot of the run so far.
  const char* write_results = std::getenv("FEDKIT_WRITE_RESULTS");
  const fs::path png = write_results != nullptr && std::string(write_results) == "1"
                           ? fs::path(FEDKIT_SOURCE_DIR) / "results" / "dashboard.png"
                           : dir_ / "dashboard.png";
  fs::remove(png);
  ASSERT_TRUE(RunChromium(url, "--screenshot=" + png.string(), dir_, "screenshot").has_value());
  const std::string image = ReadAll(png);
  ASSERT_GT(image.size(), 24u) << png;
  EXPECT_EQ(image.substr(0, 8), std::string("\x89PNG\r\n\x1a\n", 8));
  auto big_endian = [&image](size_t at) {
    return (static_cast<uint32_t>(static_cast<uint8_t>(image[at])) << 24) |
           (static_cast<uint32_t>(static_cast<uint8_t>(image[at + 1])) << 16) |
           (static_cast<uint32_t>(static_cast<uint8_t>(image[at + 2])) << 8) |
           static_cast<uint32_t>(static_cast<uint8_t>(image[at + 3]));
  };
  EXPECT_EQ(big_endian(16), 1280u);  // IHDR width
  EXPECT_EQ(big_endian(20), 900u);   // IHDR height
  std::printf("dashboard screenshot: %s (%zu bytes), %d rounds committed\n", png.c_str(),
              image.size(), static_cast<int>(committed));
}

TEST_F(DashboardCoordinatorTest, HttpFlagErrorsNameTheFlag) {
  // A port already taken (by a dashboard of this test).
  auto taken = dashboard::DashboardServer::Create({.listen = "127.0.0.1:0"},
                                                  [] { return v1::GetStatusResponse(); });
  ASSERT_TRUE(taken.ok()) << taken.status();
  const std::string taken_address = "127.0.0.1:" + std::to_string((*taken)->port());
  for (const std::string& http : {std::string("127.0.0.1:99999"), taken_address}) {
    Subprocess coordinator;
    ASSERT_TRUE(coordinator.Start(CoordinatorArgv(http), Path("coordinator.log")));
    std::optional<int> code;
    PollUntil([&] { return (code = coordinator.WaitFor({})).has_value(); },
              std::chrono::minutes(2));
    EXPECT_EQ(code, 2) << coordinator.Output();
    EXPECT_THAT(coordinator.Output(), HasSubstr("fedkit-coordinator: --http: "));
    EXPECT_THAT(coordinator.Output(), HasSubstr(http));
  }
}

}  // namespace
}  // namespace fedkit
