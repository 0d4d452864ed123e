#include "data/idx.h"

#include <unistd.h>
#include <zlib.h>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace fedkit::data {
namespace {

using ::testing::HasSubstr;

// A fresh directory per test, removed afterwards.
class IdxTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    dir_ = std::filesystem::temp_directory_path() /
           (std::string("fedkit_idx_test_") + info->name() + "_" + std::to_string(::getpid()));
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  std::string Path(const std::string& name) const { return (dir_ / name).string(); }

  std::filesystem::path dir_;
};

std::vector<uint8_t> IdxBytes(const std::vector<uint32_t>& dims, const std::vector<uint8_t>& data,
                              uint8_t type = 0x08) {
  std::vector<uint8_t> out = {0, 0, type, static_cast<uint8_t>(dims.size())};
  for (uint32_t d : dims) {
    for (int shift = 24; shift >= 0; shift -= 8) out.push_back(static_cast<uint8_t>(d >> shift));
  }
  out.insert(out.end(), data.begin(), data.end());
  return out;
}

void WritePlain(const std::string& path, const std::vector<uint8_t>& bytes) {
  std::ofstream f(path, std::ios::binary);
  f.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
  ASSERT_TRUE(f.good()) << path;
}

void WriteGzip(const std::string& path, const std::vector<uint8_t>& bytes) {
  gzFile gz = gzopen(path.c_str(), "wb");
  ASSERT_NE(gz, nullptr) << path;
  if (!bytes.empty()) {
    ASSERT_EQ(gzwrite(gz, bytes.data(), static_cast<unsigned>(bytes.size())),
              static_cast<int>(bytes.size()));
  }
  ASSERT_EQ(gzclose(gz), Z_OK);
}

std::vector<uint8_t> ReadAll(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return std::vector<uint8_t>(std::istreambuf_iterator<char>(f), {});
}

std::vector<uint8_t> Iota(size_t n, int mul = 1) {
  std::vector<uint8_t> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = static_cast<uint8_t>(i * mul);
  return v;
}

TEST_F(IdxTest, ReadsPlainFile) {
  const std::vector<uint8_t> data = Iota(2 * 3 * 4);
  WritePlain(Path("a.idx"), IdxBytes({2, 3, 4}, data));
  auto arr = ReadIdxFile(Path("a.idx"));
  ASSERT_TRUE(arr.ok()) << arr.status();
  EXPECT_EQ(arr->dims, (std::vector<int64_t>{2, 3, 4}));
  EXPECT_EQ(arr->data, data);
}

TEST_F(IdxTest, ReadsGzipFileRegardlessOfName) {
  const std::vector<uint8_t> data = Iota(3 * 300 * 7, 7);
  WriteGzip(Path("b.idx"), IdxBytes({3, 300, 7}, data));  // no .gz suffix on purpose
  auto arr = ReadIdxFile(Path("b.idx"));
  ASSERT_TRUE(arr.ok()) << arr.status();
  EXPECT_EQ(arr->dims, (std::vector<int64_t>{3, 300, 7}));
  EXPECT_EQ(arr->data, data);
}

TEST_F(IdxTest, ReadsEmptyArray) {
  WritePlain(Path("empty.idx"), IdxBytes({0}, {}));
  auto arr = ReadIdxFile(Path("empty.idx"));
  ASSERT_TRUE(arr.ok()) << arr.status();
  EXPECT_EQ(arr->dims, (std::vector<int64_t>{0}));
  EXPECT_TRUE(arr->data.empty());
}

TEST_F(IdxTest, MissingFileIsNotFoundAndNamesPath) {
  const std::string path = Path("does-not-exist.idx");
  auto arr = ReadIdxFile(path);
  EXPECT_EQ(arr.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(arr.status().message(), HasSubstr(path));
}

TEST_F(IdxTest, DirectoryIsErrorNamingPath) {
  auto arr = ReadIdxFile(dir_.string());
  ASSERT_FALSE(arr.ok());
  EXPECT_THAT(arr.status().message(), HasSubstr(dir_.string()));
}

TEST_F(IdxTest, BadMagicIsDataLoss) {
  std::vector<uint8_t> bytes = IdxBytes({4}, Iota(4));
  bytes[0] = 0x12;
  WritePlain(Path("magic.idx"), bytes);
  auto arr = ReadIdxFile(Path("magic.idx"));
  EXPECT_EQ(arr.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(arr.status().message(), HasSubstr(Path("magic.idx")));
}

TEST_F(IdxTest, EmptyFileIsDataLoss) {
  WritePlain(Path("zero.idx"), {});
  auto arr = ReadIdxFile(Path("zero.idx"));
  EXPECT_EQ(arr.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(arr.status().message(), HasSubstr(Path("zero.idx")));
}

TEST_F(IdxTest, UnsupportedTypeCodeIsInvalidArgument) {
  // 0x0D = float32, valid IDX but not what (Fashion-)MNIST uses.
  WritePlain(Path("float.idx"), IdxBytes({1}, {0, 0, 0, 0}, 0x0D));
  auto arr = ReadIdxFile(Path("float.idx"));
  EXPECT_EQ(arr.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(arr.status().message(), HasSubstr(Path("float.idx")));
  EXPECT_THAT(arr.status().message(), HasSubstr("0x0d"));
}

TEST_F(IdxTest, ZeroDimensionCountIsDataLoss) {
  WritePlain(Path("nodims.idx"), {0, 0, 0x08, 0});
  EXPECT_EQ(ReadIdxFile(Path("nodims.idx")).status().code(), absl::StatusCode::kDataLoss);
}

TEST_F(IdxTest, TruncatedHeaderIsDataLoss) {
  std::vector<uint8_t> bytes = IdxBytes({10, 10}, Iota(100));
  bytes.resize(6);  // cut inside the first dimension
  WritePlain(Path("hdr.idx"), bytes);
  auto arr = ReadIdxFile(Path("hdr.idx"));
  EXPECT_EQ(arr.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(arr.status().message(), HasSubstr(Path("hdr.idx")));
}

TEST_F(IdxTest, TruncatedDataIsDataLoss) {
  std::vector<uint8_t> bytes = IdxBytes({10, 10}, Iota(100));
  bytes.pop_back();
  WritePlain(Path("short.idx"), bytes);
  auto arr = ReadIdxFile(Path("short.idx"));
  EXPECT_EQ(arr.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(arr.status().message(), HasSubstr(Path("short.idx")));
}

TEST_F(IdxTest, TrailingDataIsDataLoss) {
  std::vector<uint8_t> bytes = IdxBytes({10}, Iota(10));
  bytes.push_back(42);
  WritePlain(Path("long.idx"), bytes);
  EXPECT_EQ(ReadIdxFile(Path("long.idx")).status().code(), absl::StatusCode::kDataLoss);
}

TEST_F(IdxTest, TruncatedGzipDataIsDataLoss) {
  // Header claims more data than the (intact) gzip stream holds.
  std::vector<uint8_t> bytes = IdxBytes({10, 10}, Iota(100));
  bytes.resize(bytes.size() - 10);
  WriteGzip(Path("short.gz"), bytes);
  auto arr = ReadIdxFile(Path("short.gz"));
  EXPECT_EQ(arr.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(arr.status().message(), HasSubstr(Path("short.gz")));
}

TEST_F(IdxTest, TruncatedGzipStreamIsDataLoss) {
  // Incompressible-ish payload so the compressed stream is long enough to cut at many places.
  std::vector<uint8_t> data(4000);
  uint32_t x = 12345;
  for (auto& b : data) {
    x = x * 1664525u + 1013904223u;
    b = static_cast<uint8_t>(x >> 24);
  }
  WriteGzip(Path("full.gz"), IdxBytes({4000}, data));
  const std::vector<uint8_t> gz = ReadAll(Path("full.gz"));
  ASSERT_GT(gz.size(), 100u);
  ASSERT_TRUE(ReadIdxFile(Path("full.gz")).ok());
  // Cut inside the gzip header, the deflate body, and the CRC/length trailer.
  for (size_t keep : {size_t{5}, size_t{30}, gz.size() / 2, gz.size() - 9, gz.size() - 1}) {
    std::vector<uint8_t> cut(gz.begin(), gz.begin() + static_cast<std::ptrdiff_t>(keep));
    WritePlain(Path("cut.gz"), cut);
    auto arr = ReadIdxFile(Path("cut.gz"));
    EXPECT_EQ(arr.status().code(), absl::StatusCode::kDataLoss) << "keep=" << keep;
    EXPECT_THAT(arr.status().message(), HasSubstr(Path("cut.gz"))) << "keep=" << keep;
  }
}

TEST_F(IdxTest, CorruptGzipCrcIsDataLoss) {
  WriteGzip(Path("crc.gz"), IdxBytes({100}, Iota(100)));
  std::vector<uint8_t> gz = ReadAll(Path("crc.gz"));
  gz[gz.size() - 8] ^= 0xff;  // first CRC32 byte of the trailer
  WritePlain(Path("crc.gz"), gz);
  EXPECT_EQ(ReadIdxFile(Path("crc.gz")).status().code(), absl::StatusCode::kDataLoss);
}

TEST_F(IdxTest, AbsurdDimensionsAreRefusedBeforeAllocating) {
  // 60000 x 60000 x 60000 bytes would be ~2e14; the file itself is tiny.
  WritePlain(Path("huge.idx"), IdxBytes({60000, 60000, 60000}, Iota(16)));
  auto arr = ReadIdxFile(Path("huge.idx"));
  EXPECT_EQ(arr.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(arr.status().message(), HasSubstr(Path("huge.idx")));

  // Same through gzip, where the file size cannot be used as a check.
  WriteGzip(Path("huge.gz"), IdxBytes({0xffffffffu, 0xffffffffu}, Iota(16)));
  auto gz = ReadIdxFile(Path("huge.gz"));
  EXPECT_EQ(gz.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(gz.status().message(), HasSubstr(Path("huge.gz")));
}

TEST_F(IdxTest, DimsDisagreeingWithFileSizeAreDataLoss) {
  // Below the 1 GiB cap, but far more than the file holds.
  WritePlain(Path("liar.idx"), IdxBytes({1000, 1000, 100}, Iota(16)));
  auto arr = ReadIdxFile(Path("liar.idx"));
  EXPECT_EQ(arr.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(arr.status().message(), HasSubstr(Path("liar.idx")));

  WriteGzip(Path("liar.gz"), IdxBytes({1000, 1000, 100}, Iota(16)));
  EXPECT_EQ(ReadIdxFile(Path("liar.gz")).status().code(), absl::StatusCode::kDataLoss);
}

// Writes a fake Fashion-MNIST split with `n_images` 28x28 images and the given labels.
void WriteFakeSplit(const std::filesystem::path& dir, const std::string& prefix, int n_images,
                    const std::vector<uint8_t>& labels, bool gzip) {
  std::vector<uint8_t> pixels(static_cast<size_t>(n_images) * 28 * 28);
  for (size_t i = 0; i < pixels.size(); ++i) pixels[i] = static_cast<uint8_t>(i % 256);
  const std::string images = (dir / (prefix + "-images-idx3-ubyte")).string();
  const std::string label_file = (dir / (prefix + "-labels-idx1-ubyte")).string();
  const auto image_bytes = IdxBytes({static_cast<uint32_t>(n_images), 28, 28}, pixels);
  const auto label_bytes = IdxBytes({static_cast<uint32_t>(labels.size())}, labels);
  if (gzip) {
    WriteGzip(images + ".gz", image_bytes);
    WriteGzip(label_file + ".gz", label_bytes);
  } else {
    WritePlain(images, image_bytes);
    WritePlain(label_file, label_bytes);
  }
}

TEST_F(IdxTest, LoadsFakeFashionMnist) {
  WriteFakeSplit(dir_, "train", 5, {0, 1, 9, 3, 4}, /*gzip=*/true);
  WriteFakeSplit(dir_, "t10k", 2, {7, 8}, /*gzip=*/false);

  DatasetInfo info;
  auto train = LoadFashionMnist(dir_.string(), Split::kTrain, &info);
  ASSERT_TRUE(train.ok()) << train.status();
  EXPECT_EQ(info.feature_shape, (std::vector<int64_t>{1, 28, 28}));
  EXPECT_EQ(info.num_classes, 10);
  EXPECT_EQ(info.feature_dim(), 784);
  EXPECT_EQ(train->size(), 5);
  EXPECT_EQ(train->feature_dim, 784);
  ASSERT_EQ(train->features.size(), 5u * 784);
  EXPECT_EQ(train->labels, (std::vector<int64_t>{0, 1, 9, 3, 4}));
  for (size_t i = 0; i < train->features.size(); ++i) {
    ASSERT_GE(train->features[i], 0.0f);
    ASSERT_LE(train->features[i], 1.0f);
    ASSERT_FLOAT_EQ(train->features[i], static_cast<float>(i % 256) / 255.0f) << i;
  }
  EXPECT_FLOAT_EQ(train->features[255], 1.0f);

  auto test = LoadFashionMnist(dir_.string(), Split::kTest);
  ASSERT_TRUE(test.ok()) << test.status();
  EXPECT_EQ(test->labels, (std::vector<int64_t>{7, 8}));
}

TEST_F(IdxTest, FashionMnistLabelOutOfRangeIsError) {
  WriteFakeSplit(dir_, "train", 5, {0, 1, 12, 3, 4}, /*gzip=*/false);
  auto train = LoadFashionMnist(dir_.string(), Split::kTrain);
  ASSERT_FALSE(train.ok());
  EXPECT_THAT(train.status().message(), HasSubstr("12"));
  EXPECT_THAT(train.status().message(), HasSubstr("train-labels-idx1-ubyte"));
}

TEST_F(IdxTest, FashionMnistCountMismatchIsError) {
  WriteFakeSplit(dir_, "train", 5, {0, 1, 2, 3}, /*gzip=*/false);
  auto train = LoadFashionMnist(dir_.string(), Split::kTrain);
  ASSERT_FALSE(train.ok());
  EXPECT_THAT(train.status().message(), HasSubstr("train-images-idx3-ubyte"));
}

TEST_F(IdxTest, FashionMnistWrongImageShapeIsError) {
  const std::string images = (dir_ / "train-images-idx3-ubyte").string();
  WritePlain(images, IdxBytes({2, 27, 28}, std::vector<uint8_t>(2 * 27 * 28)));
  WritePlain((dir_ / "train-labels-idx1-ubyte").string(), IdxBytes({2}, {0, 1}));
  auto train = LoadFashionMnist(dir_.string(), Split::kTrain);
  ASSERT_FALSE(train.ok());
  EXPECT_THAT(train.status().message(), HasSubstr(images));
}

TEST_F(IdxTest, FashionMnistMissingDirNamesPath) {
  const std::string missing = (dir_ / "nowhere").string();
  auto train = LoadFashionMnist(missing, Split::kTrain);
  EXPECT_EQ(train.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(train.status().message(), HasSubstr(missing));
}

TEST(IdxRealDataTest, LoadsRealFashionMnist) {
  if (!std::filesystem::exists(std::string(kDefaultFashionMnistDir) +
                               "/train-labels-idx1-ubyte.gz") &&
      !std::filesystem::exists(std::string(kDefaultFashionMnistDir) + "/train-labels-idx1-ubyte")) {
    GTEST_SKIP() << "Fashion-MNIST not installed at " << kDefaultFashionMnistDir;
  }
  auto train = LoadFashionMnist(kDefaultFashionMnistDir, Split::kTrain);
  ASSERT_TRUE(train.ok()) << train.status();
  auto test = LoadFashionMnist(kDefaultFashionMnistDir, Split::kTest);
  ASSERT_TRUE(test.ok()) << test.status();
  EXPECT_EQ(train->size(), 60000);
  EXPECT_EQ(test->size(), 10000);
  EXPECT_EQ(train->features.size(), 60000u * 784);
  std::vector<int64_t> counts(10, 0);
  for (int64_t label : train->labels) {
    ASSERT_GE(label, 0);
    ASSERT_LT(label, 10);
    ++counts[static_cast<size_t>(label)];
  }
  for (int64_t label : test->labels) {
    ASSERT_GE(label, 0);
    ASSERT_LT(label, 10);
  }
  EXPECT_EQ(counts, std::vector<int64_t>(10, 6000));
}

}  // namespace
}  // namespace fedkit::data
