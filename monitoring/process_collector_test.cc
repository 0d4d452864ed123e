#include "monitoring/process_collector.h"

#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "prometheus/text_serializer.h"

namespace fedkit::monitoring {
namespace {

using ::testing::HasSubstr;

TEST(ProcessCollectorTest, ParsesAStatLineWhoseCommandHasSpacesAndParentheses) {
  // Fields from proc(5): utime 14 = 250, stime 15 = 50, num_threads 20 = 7, starttime 22 = 1000,
  // vsize 23 = 4096000, rss 24 = 300.
  const std::string stat =
      "4242 (fedkit (x) y) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 7 0 1000 "
      "4096000 300 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0\n";
  auto p = ParseProcStat(stat, /*ticks_per_second=*/100, /*page_bytes=*/4096,
                         /*boot_time_seconds=*/1'700'000'000);
  ASSERT_TRUE(p.has_value());
  EXPECT_DOUBLE_EQ(p->cpu_seconds, 3.0);
  EXPECT_DOUBLE_EQ(p->threads, 7);
  EXPECT_DOUBLE_EQ(p->start_time_seconds, 1'700'000'010);
  EXPECT_DOUBLE_EQ(p->virtual_bytes, 4096000);
  EXPECT_DOUBLE_EQ(p->resident_bytes, 300 * 4096);
}

TEST(ProcessCollectorTest, RefusesWhatIsNotAStatLine) {
  EXPECT_FALSE(ParseProcStat("", 100, 4096, 0).has_value());
  EXPECT_FALSE(ParseProcStat("12 (short) S 1 2", 100, 4096, 0).has_value());
  EXPECT_FALSE(ParseProcStat("12 (x) S 1 2 3 4 5 6 7 8 9 10 a b", 100, 4096, 0).has_value());
}

TEST(ProcessCollectorTest, ThisProcessHasMemoryThreadsAndFiles) {
  const std::string text = prometheus::TextSerializer().Serialize(ProcessCollector().Collect());
  EXPECT_THAT(text, HasSubstr("# TYPE process_cpu_seconds_total counter"));
  EXPECT_THAT(text, HasSubstr("process_resident_memory_bytes "));
  EXPECT_THAT(text, HasSubstr("process_open_fds "));
  EXPECT_THAT(text, HasSubstr("process_max_fds "));
  EXPECT_THAT(text, HasSubstr("process_start_time_seconds "));
  for (const auto& family : ProcessCollector().Collect()) {
    if (family.name == "process_resident_memory_bytes") {
      EXPECT_GT(family.metric.at(0).gauge.value, 1 << 20);
    }
    if (family.name == "process_threads") {
      EXPECT_GE(family.metric.at(0).gauge.value, 1);
    }
  }
}

}  // namespace
}  // namespace fedkit::monitoring
