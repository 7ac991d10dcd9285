// RateLimiter: token buckets per key.
#include "guard/rate_limiter.h"

#include <gtest/gtest.h>

namespace bastion::guard {
namespace {

using namespace std::chrono_literals;
using R = RateLimiter::Clock;

TEST(RateLimiter, AdmitsTheBurstThenTheRateAndSaysWhenToRetry) {
  RateLimiter r({10, 5, 1000});
  const R::time_point t0{};
  for (int i = 0; i < 5; ++i) EXPECT_TRUE(r.admit("10.0.0.1", t0).allowed) << i;
  auto refused = r.admit("10.0.0.1", t0);
  EXPECT_FALSE(refused.allowed);
  EXPECT_TRUE(refused.first_refusal);
  EXPECT_EQ(refused.retry_after, std::chrono::milliseconds(100));  // one token at 10/s
  EXPECT_FALSE(r.admit("10.0.0.1", t0 + 50ms).first_refusal);     // the same episode: audited once
  EXPECT_TRUE(r.admit("10.0.0.2", t0).allowed);                    // other keys unaffected
  EXPECT_TRUE(r.admit("10.0.0.1", t0 + 150ms).allowed);            // refilled one
  // Sustained: 10 per second, not more.
  int admitted = 0;
  for (int ms = 200; ms < 1200; ms += 10)
    if (r.admit("10.0.0.1", t0 + std::chrono::milliseconds(ms)).allowed) ++admitted;
  EXPECT_GE(admitted, 9);
  EXPECT_LE(admitted, 11);
}

TEST(RateLimiter, ForgetsIdleKeysAndStaysBounded) {
  RateLimiter r({100, 10, 50});
  const R::time_point t0{};
  for (int i = 0; i < 500; ++i) r.admit(std::string("k").append(std::to_string(i)), t0 + std::chrono::milliseconds(i));
  EXPECT_LE(r.tracked(), 50u);
  // A refused key keeps its state while it is active.
  for (int i = 0; i < 11; ++i) r.admit("busy", t0 + 600ms);
  EXPECT_FALSE(r.admit("busy", t0 + 600ms).allowed);
}

}  // namespace
}  // namespace bastion::guard
