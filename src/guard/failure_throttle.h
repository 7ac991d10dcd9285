// FailureThrottle: per-source-address accounting of failed association
// attempts (unknown AE titles, wrong certificates, failed handshakes). After
// `max_failures` within `window`, the address is refused for `block` — AE
// titles are not credentials, and guessing them must not be cheap. A success
// clears the address's count. Thread-safe; time is injected.
#pragma once

#include <chrono>
#include <map>
#include <mutex>
#include <string>

namespace bastion::guard {

class FailureThrottle {
 public:
  using Clock = std::chrono::steady_clock;
  struct Limits {
    int max_failures = 20;
    std::chrono::seconds window{60};
    std::chrono::seconds block{60};
  };
  explicit FailureThrottle(Limits limits) : limits_(limits) {}

  // False while `source` is blocked.
  bool allowed(const std::string& source, Clock::time_point now);
  // Counts a failure; returns true if this failure started a block.
  bool recordFailure(const std::string& source, Clock::time_point now);
  void recordSuccess(const std::string& source);
  // Number of sources tracked (bounded: entries older than the window are dropped).
  size_t tracked();

 private:
  struct Entry {
    int failures = 0;
    Clock::time_point first;
    Clock::time_point blocked_until;
  };
  void prune(Clock::time_point now);

  Limits limits_;
  std::mutex mu_;
  std::map<std::string, Entry> entries_;  // guarded by mu_
};

}  // namespace bastion::guard
