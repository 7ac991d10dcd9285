// RateLimiter: a token bucket per key (a source address, a user), for
// request-rate limits on the HTTPS API. Each key may make `burst` requests
// at once and `per_second` on average; beyond that, admit() says no and how
// long until the next request would be admitted. Thread-safe; time is
// injected; memory is bounded (full buckets are forgotten, and at most
// `max_keys` keys are tracked: over that, the oldest idle ones go first).
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <map>
#include <mutex>
#include <string>

namespace bastion::guard {

class RateLimiter {
 public:
  using Clock = std::chrono::steady_clock;
  struct Limits {
    double per_second = 1000;
    double burst = 2000;
    size_t max_keys = 100000;
  };
  explicit RateLimiter(Limits limits) : limits_(limits) {}

  struct Decision {
    bool allowed = true;
    std::chrono::milliseconds retry_after{0};  // when refused
    bool first_refusal = false;  // the first refusal of this key since it was last admitted (audit once)
    // For an HTTP Retry-After header: whole seconds, at least 1.
    int64_t retryAfterSeconds() const { return std::max<int64_t>(1, (retry_after.count() + 999) / 1000); }
  };
  // Takes one token from `key`'s bucket if it has one.
  Decision admit(const std::string& key, Clock::time_point now);
  size_t tracked();

 private:
  struct Bucket {
    double tokens;
    Clock::time_point updated;
    bool refusing = false;
  };
  void prune(Clock::time_point now);

  const Limits limits_;
  std::mutex mu_;
  std::map<std::string, Bucket> buckets_;  // guarded by mu_
};

}  // namespace bastion::guard
