// Prefetcher: reads (decrypts and verifies) the next objects of a retrieval
// on a helper thread while the current one is on the wire, keeping at most
// `depth` objects in memory. Results come back in order. Used by one thread.
#pragma once

#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>

#include "bastion/common/bytes.h"
#include "bastion/common/status.h"

namespace bastion {

class Prefetcher {
 public:
  // Calls read(0), read(1), ... read(count - 1) on the helper thread.
  Prefetcher(size_t count, std::function<StatusOr<Bytes>(size_t)> read, size_t depth = 2)
      : count_(count), read_(std::move(read)), depth_(depth), worker_([this] { run(); }) {}
  ~Prefetcher() {
    {
      std::lock_guard lock(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    worker_.join();
  }
  Prefetcher(const Prefetcher&) = delete;
  Prefetcher& operator=(const Prefetcher&) = delete;

  // The next result, in order; waits for it. Call exactly `count` times.
  StatusOr<Bytes> next() {
    std::unique_lock lock(mu_);
    cv_.wait(lock, [&] { return !ready_.empty(); });
    StatusOr<Bytes> r = std::move(ready_.front());
    ready_.pop_front();
    cv_.notify_all();
    return r;
  }

 private:
  void run() {
    for (size_t i = 0; i < count_; ++i) {
      {
        std::unique_lock lock(mu_);
        cv_.wait(lock, [&] { return stop_ || ready_.size() < depth_; });
        if (stop_) return;
      }
      StatusOr<Bytes> r = read_(i);
      std::lock_guard lock(mu_);
      ready_.push_back(std::move(r));
      cv_.notify_all();
    }
  }

  const size_t count_;
  std::function<StatusOr<Bytes>(size_t)> read_;
  const size_t depth_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<StatusOr<Bytes>> ready_;  // guarded by mu_
  bool stop_ = false;                  // guarded by mu_
  std::thread worker_;                 // last: starts after the members above exist
};

}  // namespace bastion
