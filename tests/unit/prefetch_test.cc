#include "service/prefetch.h"

#include <gtest/gtest.h>

#include <atomic>

namespace bastion {
namespace {

TEST(Prefetcher, ReturnsResultsInOrderIncludingErrors) {
  Prefetcher p(5, [](size_t i) -> StatusOr<Bytes> {
    if (i == 2) return dataLoss("tampered");
    return Bytes(i + 1, static_cast<uint8_t>(i));
  });
  for (size_t i = 0; i < 5; ++i) {
    auto r = p.next();
    if (i == 2) {
      EXPECT_EQ(r.status().code(), StatusCode::kDataLoss);
    } else {
      ASSERT_TRUE(r.ok());
      EXPECT_EQ(r->size(), i + 1);
    }
  }
}

TEST(Prefetcher, ReadsAtMostDepthAheadAndStopsEarly) {
  std::atomic<size_t> reads{0};
  {
    Prefetcher p(1000, [&](size_t) -> StatusOr<Bytes> {
      ++reads;
      return Bytes(1);
    }, 2);
    ASSERT_TRUE(p.next().ok());
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    EXPECT_LE(reads.load(), 4u);  // one consumed, two queued, at most one in flight
  }  // destroyed with 997 unread: joins without reading them
  EXPECT_LE(reads.load(), 4u);
}

}  // namespace
}  // namespace bastion
