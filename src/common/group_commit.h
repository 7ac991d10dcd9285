// GroupCommit: callers that arrive while a commit is running are committed
// together by the next one (one transaction, one fsync), on one of their own
// threads: the first caller still waiting leads the next batch. Nobody else
// is woken until their batch is done, and then only they are (no herd, no
// hand-off to a writer thread).
//
//   GroupCommit<Pending> group;
//   group.submit(p, [&](std::vector<Pending*>& batch) { /* BEGIN ... COMMIT */ });
#pragma once

#include <condition_variable>
#include <cstddef>
#include <deque>
#include <memory>
#include <mutex>
#include <vector>

namespace bastion {

template <typename T>
class GroupCommit {
 public:
  explicit GroupCommit(size_t max_batch = 2048) : max_batch_(max_batch > 0 ? max_batch : 1) {}
  GroupCommit(const GroupCommit&) = delete;
  GroupCommit& operator=(const GroupCommit&) = delete;

  // Queues `item` and returns once a `commit(batch)` whose batch held it has
  // returned. `commit` (void(std::vector<T*>&)) runs on one caller's thread
  // at a time, never alongside exclusive(). If it throws, the exception
  // reaches the leader only: the others return as if committed, so an item's
  // outcome should start as a failure that commit() overwrites.
  template <typename Commit>
  void submit(T& item, Commit&& commit) {
    auto w = std::make_shared<Waiter>(&item);
    std::unique_lock lock(mu_);
    if (!lead(lock, w)) return;
    std::vector<std::shared_ptr<Waiter>> waiters;
    std::vector<T*> batch;
    takeBatch(waiters, batch);
    lock.unlock();
    Finish finish{*this, lock, waiters};
    commit(batch);
  }

  // Callers waiting for a batch (for tests and metrics).
  size_t waiting() {
    std::lock_guard lock(mu_);
    return queue_.size();
  }

  // Runs fn() alone, after everything queued before this call and before
  // anything queued after it. Returns what fn returns.
  template <typename Fn>
  auto exclusive(Fn&& fn) {
    auto w = std::make_shared<Waiter>(nullptr);
    std::unique_lock lock(mu_);
    lead(lock, w);
    queue_.pop_front();
    lock.unlock();
    std::vector<std::shared_ptr<Waiter>> none;
    Finish finish{*this, lock, none};
    return fn();
  }

 private:
  struct Waiter {
    explicit Waiter(T* i) : item(i) {}
    T* const item;  // nullptr: an exclusive() caller
    std::condition_variable cv;
    bool done = false, lead = false;
  };
  // Wakes the batch's callers and hands the lead on, also when commit throws.
  // The wake-ups come after the unlock (a woken caller does not block on the
  // mutex at once); the shared_ptrs keep each condition variable alive until then.
  struct Finish {
    GroupCommit& g;
    std::unique_lock<std::mutex>& lock;
    std::vector<std::shared_ptr<Waiter>>& waiters;
    ~Finish() {
      lock.lock();
      for (auto& o : waiters) o->done = true;
      std::shared_ptr<Waiter> next;
      if (g.queue_.empty()) {
        g.active_ = false;
      } else {
        next = g.queue_.front();
        next->lead = true;
      }
      lock.unlock();
      for (auto& o : waiters) o->cv.notify_one();  // the leader's own included: harmless
      if (next) next->cv.notify_one();
    }
  };

  // Moves the leader and the callers behind it (up to an exclusive() caller
  // or max_batch_) out of the queue. Out of memory here would leave the queue
  // without a leader for good: noexcept turns that into a crash.
  void takeBatch(std::vector<std::shared_ptr<Waiter>>& waiters, std::vector<T*>& batch) noexcept {
    while (!queue_.empty() && queue_.front()->item && batch.size() < max_batch_) {
      waiters.push_back(queue_.front());
      batch.push_back(queue_.front()->item);
      queue_.pop_front();
    }
  }

  // Queues `w`; false once another caller's batch committed it, true when
  // `w` leads (it is then at the front of the queue).
  bool lead(std::unique_lock<std::mutex>& lock, const std::shared_ptr<Waiter>& w) {
    queue_.push_back(w);
    if (active_) {
      w->cv.wait(lock, [&] { return w->done || w->lead; });
      return !w->done;
    }
    active_ = true;  // idle: the queue held nobody before `w`
    return true;
  }

  const size_t max_batch_;
  std::mutex mu_;
  std::deque<std::shared_ptr<Waiter>> queue_;  // waiting callers; the front one leads next
  bool active_ = false;        // a batch or an exclusive() runs; false => queue_ empty
};

}  // namespace bastion
