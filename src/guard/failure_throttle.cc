#include "guard/failure_throttle.h"

namespace bastion::guard {

bool FailureThrottle::allowed(const std::string& source, Clock::time_point now) {
  std::lock_guard lock(mu_);
  auto it = entries_.find(source);
  return it == entries_.end() || now >= it->second.blocked_until;
}

bool FailureThrottle::recordFailure(const std::string& source, Clock::time_point now) {
  std::lock_guard lock(mu_);
  if (entries_.size() > 10000) prune(now);
  Entry& e = entries_[source];
  if (e.failures == 0 || now - e.first > limits_.window) {
    e.failures = 0;
    e.first = now;
  }
  if (++e.failures < limits_.max_failures || now < e.blocked_until) return false;
  e.blocked_until = now + limits_.block;
  e.failures = 0;
  return true;
}

void FailureThrottle::recordSuccess(const std::string& source) {
  std::lock_guard lock(mu_);
  auto it = entries_.find(source);
  if (it == entries_.end()) return;
  if (it->second.blocked_until == Clock::time_point()) entries_.erase(it);  // never blocked: forget it
  else it->second.failures = 0;                                          // keep a running block
}

size_t FailureThrottle::tracked() {
  std::lock_guard lock(mu_);
  return entries_.size();
}

void FailureThrottle::prune(Clock::time_point now) {
  for (auto it = entries_.begin(); it != entries_.end();) {
    const bool stale = now - it->second.first > limits_.window && now >= it->second.blocked_until;
    it = stale ? entries_.erase(it) : std::next(it);
  }
}

}  // namespace bastion::guard
