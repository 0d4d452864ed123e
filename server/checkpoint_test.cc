#include "server/checkpoint.h"

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <string>
#include <system_error>
#include <vector>

#include "gmock/gmock.h"
#include "google/protobuf/util/message_differencer.h"
#include "gtest/gtest.h"

namespace fedkit::server {
namespace {

namespace fs = std::filesystem;
using ::google::protobuf::util::MessageDifferencer;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Not;
using ::testing::UnorderedElementsAre;

// A fresh, empty directory path (not yet created) unique to this test and process.
std::string UniqueDir() {
  static std::atomic<int> counter{0};
  const testing::TestInfo* info = testing::UnitTest::GetInstance()->current_test_info();
  std::string name = std::string(info->test_suite_name()) + "_" + info->name();
  std::replace(name.begin(), name.end(), '/', '_');
  fs::path dir =
      fs::path(testing::TempDir()) /
      ("fedkit_ckpt_" + name + "_" + std::to_string(::getpid()) + "_" + std::to_string(counter++));
  std::error_code ec;
  fs::remove_all(dir, ec);
  return dir.string();
}

// Removes the directory when the test ends.
class ScopedDir {
 public:
  ScopedDir() : path_(UniqueDir()) {}
  ~ScopedDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  const std::string& path() const { return path_; }
  std::string File(const std::string& name) const { return (fs::path(path_) / name).string(); }

 private:
  std::string path_;
};

v1::Checkpoint MakeCheckpoint(int64_t rounds, int num_parameters = 16) {
  v1::Checkpoint checkpoint;
  checkpoint.set_format_version(1);
  checkpoint.set_rounds_completed(rounds);
  checkpoint.set_model_name("mlp");
  auto* entry = checkpoint.mutable_layout()->add_entries();
  entry->set_name("fc.weight");
  entry->add_shape(num_parameters);
  for (int i = 0; i < num_parameters; ++i) {
    checkpoint.add_global_parameters(static_cast<float>(rounds) + 0.25f * static_cast<float>(i));
  }
  checkpoint.set_server_optimizer("fedadam");
  checkpoint.add_server_optimizer_state(0.5 * static_cast<double>(rounds));
  checkpoint.set_run_seed(42);
  for (int64_t r = 1; r <= rounds; ++r) {
    auto* record = checkpoint.add_history();
    record->set_round(r);
    record->set_participants(10);
    record->set_accuracy(0.1 * static_cast<double>(r));
  }
  return checkpoint;
}

std::string ReadAll(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

void WriteAll(const std::string& path, const std::string& contents) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(contents.data(), static_cast<std::streamsize>(contents.size()));
  ASSERT_TRUE(out.good()) << path;
}

std::vector<std::string> FileNames(const std::string& dir) {
  std::vector<std::string> names;
  for (const auto& entry : fs::directory_iterator(dir)) {
    names.push_back(entry.path().filename().string());
  }
  return names;
}

CheckpointStore OpenOrDie(const std::string& dir) {
  absl::StatusOr<CheckpointStore> store = CheckpointStore::Open(dir);
  EXPECT_TRUE(store.ok()) << store.status();
  return *std::move(store);
}

TEST(CheckpointStoreTest, RoundTrip) {
  ScopedDir dir;
  CheckpointStore store = OpenOrDie(dir.path());
  const v1::Checkpoint written = MakeCheckpoint(7);
  ASSERT_TRUE(store.Write(written).ok());

  EXPECT_THAT(FileNames(dir.path()), UnorderedElementsAre("checkpoint-00000007.pb"));
  EXPECT_EQ(ReadAll(dir.File("checkpoint-00000007.pb")).substr(0, 4), "FKCK");

  std::string skipped = "stale contents";
  absl::StatusOr<std::optional<v1::Checkpoint>> loaded = store.LoadNewest(&skipped);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  ASSERT_TRUE(loaded->has_value());
  EXPECT_TRUE(MessageDifferencer::Equals(**loaded, written));
  EXPECT_EQ((*loaded)->SerializeAsString(), written.SerializeAsString());
  EXPECT_THAT(skipped, IsEmpty());
}

TEST(CheckpointStoreTest, NewestWins) {
  ScopedDir dir;
  CheckpointStore store = OpenOrDie(dir.path());
  for (int64_t rounds : {1, 3, 2}) ASSERT_TRUE(store.Write(MakeCheckpoint(rounds), 10).ok());
  auto loaded = store.LoadNewest();
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  ASSERT_TRUE(loaded->has_value());
  EXPECT_EQ((*loaded)->rounds_completed(), 3);
  EXPECT_TRUE(MessageDifferencer::Equals(**loaded, MakeCheckpoint(3)));
}

TEST(CheckpointStoreTest, RewritingSameRoundReplacesIt) {
  ScopedDir dir;
  CheckpointStore store = OpenOrDie(dir.path());
  ASSERT_TRUE(store.Write(MakeCheckpoint(4, 8)).ok());
  ASSERT_TRUE(store.Write(MakeCheckpoint(4, 32)).ok());
  EXPECT_THAT(FileNames(dir.path()), UnorderedElementsAre("checkpoint-00000004.pb"));
  auto loaded = store.LoadNewest();
  ASSERT_TRUE(loaded.ok() && loaded->has_value());
  EXPECT_EQ((*loaded)->global_parameters_size(), 32);
}

TEST(CheckpointStoreTest, KeepPrunesOlderCheckpoints) {
  ScopedDir dir;
  CheckpointStore store = OpenOrDie(dir.path());
  for (int64_t rounds = 1; rounds <= 5; ++rounds) {
    ASSERT_TRUE(store.Write(MakeCheckpoint(rounds), /*keep=*/2).ok());
  }
  EXPECT_THAT(FileNames(dir.path()),
              UnorderedElementsAre("checkpoint-00000004.pb", "checkpoint-00000005.pb"));
  auto loaded = store.LoadNewest();
  ASSERT_TRUE(loaded.ok() && loaded->has_value());
  EXPECT_EQ((*loaded)->rounds_completed(), 5);
}

TEST(CheckpointStoreTest, DefaultKeepIsThree) {
  ScopedDir dir;
  CheckpointStore store = OpenOrDie(dir.path());
  for (int64_t rounds = 1; rounds <= 5; ++rounds)
    ASSERT_TRUE(store.Write(MakeCheckpoint(rounds)).ok());
  EXPECT_THAT(FileNames(dir.path()),
              UnorderedElementsAre("checkpoint-00000003.pb", "checkpoint-00000004.pb",
                                   "checkpoint-00000005.pb"));
}

TEST(CheckpointStoreTest, NeverDeletesTheCheckpointJustWritten) {
  ScopedDir dir;
  CheckpointStore store = OpenOrDie(dir.path());
  ASSERT_TRUE(store.Write(MakeCheckpoint(10), 1).ok());
  ASSERT_TRUE(store.Write(MakeCheckpoint(3), 1).ok());  // older than what is on disk
  EXPECT_THAT(FileNames(dir.path()),
              UnorderedElementsAre("checkpoint-00000003.pb", "checkpoint-00000010.pb"));
  ASSERT_TRUE(store.Write(MakeCheckpoint(11), 0).ok());  // keep < 1 still keeps the new one
  EXPECT_THAT(FileNames(dir.path()), UnorderedElementsAre("checkpoint-00000011.pb"));
}

TEST(CheckpointStoreTest, EmptyDirectoryHasNoCheckpoint) {
  ScopedDir dir;
  CheckpointStore store = OpenOrDie(dir.path());
  std::string skipped;
  auto loaded = store.LoadNewest(&skipped);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_FALSE(loaded->has_value());
  EXPECT_THAT(skipped, IsEmpty());
}

TEST(CheckpointStoreTest, OpenCreatesMissingDirectories) {
  ScopedDir dir;
  const std::string nested = dir.File("a/b/c");
  ASSERT_FALSE(fs::exists(nested));
  absl::StatusOr<CheckpointStore> store = CheckpointStore::Open(nested);
  ASSERT_TRUE(store.ok()) << store.status();
  EXPECT_TRUE(fs::is_directory(nested));
  EXPECT_EQ(store->directory(), nested);
  EXPECT_TRUE(store->Write(MakeCheckpoint(1)).ok());
  EXPECT_TRUE(fs::exists(fs::path(nested) / "checkpoint-00000001.pb"));
}

TEST(CheckpointStoreTest, OpenOnRegularFileFailsNamingIt) {
  ScopedDir dir;
  fs::create_directories(dir.path());
  const std::string file = dir.File("not_a_dir");
  WriteAll(file, "hello");
  absl::StatusOr<CheckpointStore> store = CheckpointStore::Open(file);
  ASSERT_FALSE(store.ok());
  EXPECT_THAT(store.status().message(), HasSubstr(file));

  // A path *through* a regular file fails too, and names the path.
  const std::string below = file + "/sub";
  store = CheckpointStore::Open(below);
  ASSERT_FALSE(store.ok());
  EXPECT_THAT(store.status().message(), HasSubstr(below));
}

TEST(CheckpointStoreTest, OpenRejectsEmptyPath) {
  EXPECT_EQ(CheckpointStore::Open("").status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(CheckpointStoreTest, WriteRejectsNegativeRounds) {
  ScopedDir dir;
  CheckpointStore store = OpenOrDie(dir.path());
  EXPECT_EQ(store.Write(MakeCheckpoint(-1)).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(FileNames(dir.path()), IsEmpty());
}

TEST(CheckpointStoreTest, ErrorsNameTheDirectoryWhenItVanishes) {
  ScopedDir dir;
  CheckpointStore store = OpenOrDie(dir.path());
  fs::remove_all(dir.path());
  absl::Status written = store.Write(MakeCheckpoint(1));
  ASSERT_FALSE(written.ok());
  EXPECT_THAT(written.message(), HasSubstr(dir.path()));
  auto loaded = store.LoadNewest();
  ASSERT_FALSE(loaded.ok());
  EXPECT_THAT(loaded.status().message(), HasSubstr(dir.path()));
}

// --- Corruption: the newest file is damaged in some way; the previous one must be used. ---

struct Corruption {
  std::string name;
  std::function<std::string(std::string)> apply;  // good file contents -> damaged contents
  std::string reason;                             // expected substring of the skip reason
};

class CorruptionTest : public testing::TestWithParam<Corruption> {};

TEST_P(CorruptionTest, FallsBackToPreviousGoodCheckpoint) {
  ScopedDir dir;
  CheckpointStore store = OpenOrDie(dir.path());
  const v1::Checkpoint good = MakeCheckpoint(1);
  ASSERT_TRUE(store.Write(good).ok());
  ASSERT_TRUE(store.Write(MakeCheckpoint(2)).ok());

  const std::string newest = dir.File("checkpoint-00000002.pb");
  const std::string original = ReadAll(newest);
  ASSERT_GT(original.size(), 20u);
  const std::string damaged = GetParam().apply(original);
  ASSERT_NE(damaged, original);
  WriteAll(newest, damaged);

  std::string skipped;
  auto loaded = store.LoadNewest(&skipped);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  ASSERT_TRUE(loaded->has_value());
  EXPECT_TRUE(MessageDifferencer::Equals(**loaded, good));
  EXPECT_THAT(skipped, HasSubstr("checkpoint-00000002.pb"));
  EXPECT_THAT(skipped, HasSubstr(GetParam().reason));
  EXPECT_THAT(skipped, Not(HasSubstr("checkpoint-00000001.pb")));
}

std::string FlipByte(std::string s, size_t index) {
  if (index >= s.size()) {
    ADD_FAILURE() << "index " << index << " out of range for " << s.size() << " bytes";
    return s;
  }
  s[index] = static_cast<char>(s[index] ^ 0x5a);
  return s;
}

INSTANTIATE_TEST_SUITE_P(
    Damage, CorruptionTest,
    testing::Values(
        Corruption{"TruncatedPayload", [](std::string s) { return s.substr(0, s.size() / 2); },
                   "does not match"},
        Corruption{"TruncatedHeader", [](std::string s) { return s.substr(0, 10); },
                   "truncated header"},
        Corruption{"ZeroLength", [](std::string) { return std::string(); }, "empty"},
        Corruption{"FlippedPayloadByte",
                   [](std::string s) {
                     const size_t index = s.size() - 3;
                     return FlipByte(std::move(s), index);
                   },
                   "checksum mismatch"},
        Corruption{"FlippedFirstPayloadByte",
                   [](std::string s) { return FlipByte(std::move(s), 20); }, "checksum mismatch"},
        Corruption{"FlippedChecksum", [](std::string s) { return FlipByte(std::move(s), 17); },
                   "checksum mismatch"},
        Corruption{"BadMagic", [](std::string s) { return FlipByte(std::move(s), 0); },
                   "bad magic"},
        Corruption{"UnknownVersion", [](std::string s) { return FlipByte(std::move(s), 4); },
                   "unsupported framing version"},
        Corruption{"HugeLength", [](std::string s) { return FlipByte(std::move(s), 15); },
                   "does not match file size"},
        Corruption{"TrailingGarbage", [](std::string s) { return s + "junk"; },
                   "does not match file size"},
        Corruption{"NotACheckpointAtAll",
                   [](std::string) { return std::string("this is some text, not a checkpoint\n"); },
                   "bad magic"}),
    [](const testing::TestParamInfo<Corruption>& info) { return info.param.name; });

TEST(CheckpointStoreTest, AllDamagedYieldsNulloptAndReportsEach) {
  ScopedDir dir;
  CheckpointStore store = OpenOrDie(dir.path());
  ASSERT_TRUE(store.Write(MakeCheckpoint(1)).ok());
  ASSERT_TRUE(store.Write(MakeCheckpoint(2)).ok());
  WriteAll(dir.File("checkpoint-00000001.pb"), "");
  WriteAll(dir.File("checkpoint-00000002.pb"), "FKCK");
  std::string skipped;
  auto loaded = store.LoadNewest(&skipped);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_FALSE(loaded->has_value());
  EXPECT_THAT(skipped, HasSubstr("checkpoint-00000001.pb: "));
  EXPECT_THAT(skipped, HasSubstr("checkpoint-00000002.pb: "));
  EXPECT_EQ(std::count(skipped.begin(), skipped.end(), '\n'), 2);
}

TEST(CheckpointStoreTest, FileWhoseContentsDisagreeWithItsNameIsSkipped) {
  ScopedDir dir;
  CheckpointStore store = OpenOrDie(dir.path());
  ASSERT_TRUE(store.Write(MakeCheckpoint(1)).ok());
  ASSERT_TRUE(store.Write(MakeCheckpoint(2)).ok());
  fs::copy_file(dir.File("checkpoint-00000001.pb"), dir.File("checkpoint-00000005.pb"));
  std::string skipped;
  auto loaded = store.LoadNewest(&skipped);
  ASSERT_TRUE(loaded.ok() && loaded->has_value());
  EXPECT_EQ((*loaded)->rounds_completed(), 2);
  EXPECT_THAT(skipped, HasSubstr("checkpoint-00000005.pb: rounds_completed 1"));
}

// --- Crash simulation and unrelated files. ---

TEST(CheckpointStoreTest, StrayTempFileIsIgnoredThenRemovedByNextWrite) {
  ScopedDir dir;
  CheckpointStore store = OpenOrDie(dir.path());
  ASSERT_TRUE(store.Write(MakeCheckpoint(1)).ok());
  ASSERT_TRUE(store.Write(MakeCheckpoint(2)).ok());
  // What a crash between write() and rename() leaves behind: a partial file under a temp name.
  const std::string full = ReadAll(dir.File("checkpoint-00000002.pb"));
  const std::string stray = dir.File(".checkpoint-00000003.pb.tmp-99999");
  WriteAll(stray, full.substr(0, full.size() / 2));

  std::string skipped;
  auto loaded = store.LoadNewest(&skipped);
  ASSERT_TRUE(loaded.ok() && loaded->has_value());
  EXPECT_EQ((*loaded)->rounds_completed(), 2);
  EXPECT_THAT(skipped, IsEmpty());
  EXPECT_TRUE(fs::exists(stray)) << "LoadNewest must not modify the directory";

  ASSERT_TRUE(store.Write(MakeCheckpoint(3)).ok());
  EXPECT_FALSE(fs::exists(stray));
  EXPECT_THAT(FileNames(dir.path()),
              UnorderedElementsAre("checkpoint-00000001.pb", "checkpoint-00000002.pb",
                                   "checkpoint-00000003.pb"));
  loaded = store.LoadNewest();
  ASSERT_TRUE(loaded.ok() && loaded->has_value());
  EXPECT_EQ((*loaded)->rounds_completed(), 3);
}

TEST(CheckpointStoreTest, UnrelatedFilesAreIgnoredAndKept) {
  ScopedDir dir;
  CheckpointStore store = OpenOrDie(dir.path());
  ASSERT_TRUE(store.Write(MakeCheckpoint(2)).ok());
  const std::vector<std::string> unrelated = {"notes.txt", "checkpoint-abc.pb", "checkpoint-9.pb",
                                              "checkpoint-00000009.pb.bak", "checkpoint-00000009"};
  for (const std::string& name : unrelated) WriteAll(dir.File(name), "garbage");
  fs::create_directory(dir.File("checkpoint-00000010.pb"));  // a directory, not a checkpoint

  std::string skipped;
  auto loaded = store.LoadNewest(&skipped);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  ASSERT_TRUE(loaded->has_value());
  EXPECT_EQ((*loaded)->rounds_completed(), 2);
  EXPECT_THAT(skipped, IsEmpty());

  ASSERT_TRUE(store.Write(MakeCheckpoint(3), /*keep=*/1).ok());
  for (const std::string& name : unrelated) EXPECT_TRUE(fs::exists(dir.File(name))) << name;
  EXPECT_TRUE(fs::is_directory(dir.File("checkpoint-00000010.pb")));
  EXPECT_FALSE(fs::exists(dir.File("checkpoint-00000002.pb")));
}

TEST(CheckpointStoreTest, LargeCheckpointRoundTrips) {
  ScopedDir dir;
  CheckpointStore store = OpenOrDie(dir.path());
  constexpr int kParameters = 2'000'000;  // ~8 MB of floats
  const v1::Checkpoint written = MakeCheckpoint(12, kParameters);
  ASSERT_TRUE(store.Write(written).ok());
  EXPECT_GT(fs::file_size(dir.File("checkpoint-00000012.pb")), size_t{8'000'000});

  auto loaded = store.LoadNewest();
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  ASSERT_TRUE(loaded->has_value());
  ASSERT_EQ((*loaded)->global_parameters_size(), kParameters);
  EXPECT_EQ((*loaded)->global_parameters(kParameters - 1),
            written.global_parameters(kParameters - 1));
  EXPECT_EQ((*loaded)->SerializeAsString(), written.SerializeAsString());
}

}  // namespace
}  // namespace fedkit::server
