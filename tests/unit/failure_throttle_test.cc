#include "guard/failure_throttle.h"

#include <gtest/gtest.h>

namespace bastion::guard {
namespace {

using namespace std::chrono_literals;
using C = FailureThrottle::Clock;

TEST(FailureThrottle, BlocksAfterMaxFailuresWithinWindowThenRecovers) {
  FailureThrottle t({3, 60s, 30s});
  const C::time_point t0{};
  EXPECT_FALSE(t.recordFailure("10.0.0.1", t0 + 1s));
  EXPECT_FALSE(t.recordFailure("10.0.0.1", t0 + 2s));
  EXPECT_TRUE(t.allowed("10.0.0.1", t0 + 2s));
  EXPECT_TRUE(t.recordFailure("10.0.0.1", t0 + 3s));
  EXPECT_FALSE(t.allowed("10.0.0.1", t0 + 4s));
  EXPECT_TRUE(t.allowed("10.0.0.2", t0 + 4s));  // other sources unaffected
  EXPECT_TRUE(t.allowed("10.0.0.1", t0 + 34s));
}

TEST(FailureThrottle, FailuresOutsideTheWindowDoNotAccumulate) {
  FailureThrottle t({3, 10s, 30s});
  const C::time_point t0{};
  EXPECT_FALSE(t.recordFailure("a", t0));
  EXPECT_FALSE(t.recordFailure("a", t0 + 5s));
  EXPECT_FALSE(t.recordFailure("a", t0 + 20s));  // window restarted
  EXPECT_FALSE(t.recordFailure("a", t0 + 21s));
  EXPECT_TRUE(t.allowed("a", t0 + 21s));
}

TEST(FailureThrottle, SuccessClearsTheCount) {
  FailureThrottle t({3, 60s, 30s});
  const C::time_point t0{};
  t.recordFailure("a", t0);
  t.recordFailure("a", t0 + 1s);
  t.recordSuccess("a");
  EXPECT_FALSE(t.recordFailure("a", t0 + 2s));
  EXPECT_FALSE(t.recordFailure("a", t0 + 3s));
  EXPECT_TRUE(t.allowed("a", t0 + 3s));
}

TEST(FailureThrottle, MemoryStaysBoundedUnderManySources) {
  FailureThrottle t({3, 1s, 1s});
  const C::time_point t0{};
  for (int i = 0; i < 30000; ++i) t.recordFailure("src" + std::to_string(i), t0 + std::chrono::milliseconds(i));
  EXPECT_LT(t.tracked(), 12000u);
}

}  // namespace
}  // namespace bastion::guard

