// OrderedJobs: runs the jobs of one request (e.g. the parts of a STOW-RS
// body) on a shared thread pool, so that their durable writes overlap and
// group-commit, while the request's thread keeps parsing. Results come back
// in submission order. Memory is bounded: submit() waits while more than
// `max_bytes` of submitted data is still being processed. The destructor
// waits for every job, so jobs may refer to the request's state.
#pragma once

#include <boost/asio/post.hpp>
#include <boost/asio/thread_pool.hpp>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <vector>

#include "bastion/common/bytes.h"

namespace bastion::web {

template <typename Result>
class OrderedJobs {
 public:
  // `failed` is the result of a job that throws.
  OrderedJobs(boost::asio::thread_pool& pool, uint64_t max_bytes, Result failed)
      : pool_(pool), max_bytes_(max_bytes), failed_(std::move(failed)) {}
  ~OrderedJobs() { waitAll(); }
  OrderedJobs(const OrderedJobs&) = delete;
  OrderedJobs& operator=(const OrderedJobs&) = delete;

  // Runs `job(data)` on the pool. A job larger than max_bytes runs once
  // nothing else is in flight.
  void submit(Bytes data, std::function<Result(ByteView)> job) {
    const uint64_t size = data.size();
    size_t slot = 0;
    {
      std::unique_lock lock(mu_);
      cv_.wait(lock, [&] { return inflight_bytes_ == 0 || inflight_bytes_ + size <= max_bytes_; });
      inflight_bytes_ += size;
      ++inflight_jobs_;
      slot = results_.size();
      results_.emplace_back();
    }
    auto owned = std::make_shared<Bytes>(std::move(data));
    boost::asio::post(pool_, [this, slot, size, owned, job = std::move(job)] {
      std::optional<Result> r;
      try {
        r.emplace(job(*owned));
      } catch (...) {
        r.emplace(failed_);  // a job must not take the pool thread down, nor leave the request waiting
      }
      owned->clear();
      std::lock_guard lock(mu_);
      results_[slot] = std::move(r);
      inflight_bytes_ -= size;
      --inflight_jobs_;
      cv_.notify_all();
    });
  }

  // Waits for every job; the results in submission order.
  std::vector<Result> results() {
    waitAll();
    std::vector<Result> out;
    std::lock_guard lock(mu_);
    for (auto& r : results_) out.push_back(std::move(*r));
    results_.clear();
    return out;
  }

 private:
  void waitAll() {
    std::unique_lock lock(mu_);
    cv_.wait(lock, [&] { return inflight_jobs_ == 0; });
  }

  boost::asio::thread_pool& pool_;
  const uint64_t max_bytes_;
  const Result failed_;
  std::mutex mu_;
  std::condition_variable cv_;
  uint64_t inflight_bytes_ = 0;                // guarded by mu_
  size_t inflight_jobs_ = 0;                   // guarded by mu_
  std::vector<std::optional<Result>> results_;  // guarded by mu_
};

}  // namespace bastion::web
