#include "guard/rate_limiter.h"

#include <algorithm>
#include <vector>
#include <cmath>

namespace bastion::guard {

RateLimiter::Decision RateLimiter::admit(const std::string& key, Clock::time_point now) {
  std::lock_guard lock(mu_);
  auto it = buckets_.find(key);
  if (it == buckets_.end()) {
    if (buckets_.size() >= limits_.max_keys) prune(now);
    it = buckets_.emplace(key, Bucket{limits_.burst, now}).first;
  }
  Bucket& b = it->second;
  const double elapsed = std::chrono::duration<double>(now - b.updated).count();
  if (elapsed > 0) {
    b.tokens = std::min(limits_.burst, b.tokens + elapsed * limits_.per_second);
    b.updated = now;
  }
  Decision d;
  if (b.tokens >= 1.0) {
    b.tokens -= 1.0;
    b.refusing = false;
    return d;
  }
  d.allowed = false;
  d.first_refusal = !b.refusing;
  b.refusing = true;
  const double wait_s = (1.0 - b.tokens) / limits_.per_second;
  d.retry_after = std::chrono::milliseconds(static_cast<int64_t>(std::ceil(wait_s * 1000)));
  return d;
}

size_t RateLimiter::tracked() {
  std::lock_guard lock(mu_);
  return buckets_.size();
}

void RateLimiter::prune(Clock::time_point now) {
  // Buckets that have refilled are indistinguishable from new ones.
  const auto refill = std::chrono::duration<double>(limits_.burst / limits_.per_second);
  for (auto it = buckets_.begin(); it != buckets_.end();) {
    if (now - it->second.updated >= refill) it = buckets_.erase(it);
    else ++it;
  }
  // Still full of active keys: drop the least recently used half.
  if (buckets_.size() >= limits_.max_keys) {
    std::vector<std::pair<Clock::time_point, std::string>> ages;
    for (const auto& [k, b] : buckets_) ages.emplace_back(b.updated, k);
    std::nth_element(ages.begin(), ages.begin() + static_cast<std::ptrdiff_t>(ages.size() / 2), ages.end());
    for (size_t i = 0; i < ages.size() / 2; ++i) buckets_.erase(ages[i].second);
  }
}

}  // namespace bastion::guard
