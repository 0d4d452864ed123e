#include "server/encoded_model_cache.h"

#include <memory>
#include <thread>
#include <vector>

#include "gtest/gtest.h"

namespace fedkit::server {
namespace {

using compression::DownloadEncoding;

std::shared_ptr<const std::vector<float>> Model(float value, int n = 3000) {
  return std::make_shared<const std::vector<float>>(static_cast<size_t>(n), value);
}

TEST(EncodedModelCacheTest, Float32ServesTheModelItself) {
  EncodedModelCache cache(DownloadEncoding::kFloat32);
  const EncodedModelCache::Entry entry = cache.Get(Model(1.0f));
  EXPECT_EQ(entry.encoding, DownloadEncoding::kFloat32);
  EXPECT_EQ(entry.bytes, nullptr);
  EXPECT_TRUE(entry.fallback.ok());
}

TEST(EncodedModelCacheTest, EncodesEachModelOnceAndSharesTheBytes) {
  EncodedModelCache cache(DownloadEncoding::kQuantize8);
  auto model = Model(0.25f);
  const EncodedModelCache::Entry first = cache.Get(model);
  ASSERT_NE(first.bytes, nullptr);
  EXPECT_TRUE(first.first);
  EXPECT_EQ(first.encoding, DownloadEncoding::kQuantize8);
  EXPECT_EQ(*first.bytes, *compression::EncodeDownload(DownloadEncoding::kQuantize8, *model));
  const EncodedModelCache::Entry again = cache.Get(model);
  EXPECT_FALSE(again.first);
  EXPECT_EQ(again.bytes, first.bytes);  // the same buffer, not a copy
  // The next round's model (equal values, another object) is encoded afresh.
  const EncodedModelCache::Entry next = cache.Get(Model(0.25f));
  EXPECT_TRUE(next.first);
  EXPECT_NE(next.bytes, first.bytes);
}

TEST(EncodedModelCacheTest, AModelFloat16CannotHoldIsServedInFloat32WithTheReason) {
  EncodedModelCache cache(DownloadEncoding::kFloat16);
  std::vector<float> values(100, 1.0f);
  values[42] = 70000.0f;
  auto model = std::make_shared<const std::vector<float>>(values);
  const EncodedModelCache::Entry entry = cache.Get(model);
  EXPECT_EQ(entry.encoding, DownloadEncoding::kFloat32);
  EXPECT_EQ(entry.bytes, nullptr);
  EXPECT_EQ(entry.fallback.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(entry.fallback.message().find("65504"), absl::string_view::npos);
  EXPECT_TRUE(entry.first);
  EXPECT_FALSE(cache.Get(model).first);  // logged once
  // A model it can hold is encoded again.
  EXPECT_EQ(cache.Get(Model(2.0f, 100)).encoding, DownloadEncoding::kFloat16);
}

TEST(EncodedModelCacheTest, ConcurrentDownloadsEncodeOnce) {
  EncodedModelCache cache(DownloadEncoding::kFloat16);
  auto model = Model(0.5f, 100000);
  std::vector<EncodedModelCache::Entry> entries(8);
  std::vector<std::thread> threads;
  for (size_t i = 0; i < entries.size(); ++i) {
    threads.emplace_back([&, i] { entries[i] = cache.Get(model); });
  }
  for (std::thread& t : threads) t.join();
  int first = 0;
  for (const auto& e : entries) {
    first += e.first ? 1 : 0;
    EXPECT_EQ(e.bytes, entries[0].bytes);
  }
  EXPECT_EQ(first, 1);
}

}  // namespace
}  // namespace fedkit::server
