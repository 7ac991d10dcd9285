// WorkerPool: runs risky work (image codecs, R20) in separate, sandboxed
// processes and talks to them over a socket pair each. A worker that crashes, exceeds its
// memory limit, tries a forbidden system call or overruns the deadline costs
// the one request it was serving: the pool kills it (SIGKILL), reaps it and
// starts a fresh one for the next request. The archive never shares memory
// with a worker and never trusts what one sends beyond its framing.
//
// Wire format (both directions, native byte order: same machine, same binary):
//   request:  u32 op, u32 arg count N, u64 payload length L, N x u32 args, L bytes
//   response: u32 status code (StatusCode), u64 length L, L bytes
//             (the result, or the error message when the code is not kOk)
//
// Thread-safety: call() may be made from any thread; at most `workers`
// requests run at once, the others wait for a free worker.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <span>
#include <string>
#include <vector>

#include "bastion/common/bytes.h"
#include "bastion/common/status.h"

namespace bastion::isolation {

struct WorkerPoolOptions {
  std::string executable;          // the program to run (the bastion binary itself)
  std::vector<std::string> args;   // its arguments, e.g. {"codec-worker", "--memory-mb", "2048"}
  size_t workers = 2;              // at most this many processes, started on demand
  std::chrono::milliseconds deadline{30000};  // per request, from send to the last byte of the answer
  uint64_t max_response = 2ull << 30;          // a longer answer is a protocol error
  // Then the worker is replaced: bounds leaks, its lifetime CPU limit, and how
  // long a worker subverted by one object could watch later requests.
  uint32_t requests_per_worker = 100;
};

class WorkerPool {
 public:
  explicit WorkerPool(WorkerPoolOptions options) : options_(std::move(options)) {}
  ~WorkerPool();
  WorkerPool(const WorkerPool&) = delete;
  WorkerPool& operator=(const WorkerPool&) = delete;

  // Sends one request and returns the worker's answer. The worker's own
  // failures come back with the code and message it sent. A worker that
  // dies, breaks the framing or misses the deadline is killed, and the call
  // fails with kInternal ("worker failed: the worker closed its output
  // (killed by signal 31)", "... timed out ..."); a worker that cannot be started gives kUnavailable.
  // An answer longer than `max_answer` bytes (or options.max_response) is a
  // protocol error. A worker's error answer keeps its code only if it is
  // kInvalidArgument, kNotFound or kResourceExhausted (else kInternal), and
  // its message is cut to 200 printable characters.
  StatusOr<Bytes> call(uint32_t op, std::span<const uint32_t> args, ByteView payload,
                       uint64_t max_answer = UINT64_MAX);

  // How many workers were killed or died since the pool was made (for
  // tests and monitoring).
  uint64_t failures() const;

 private:
  struct Worker {
    pid_t pid = -1;
    int fd = -1;  // our end of the socket pair that is its stdin and stdout
    uint32_t served = 0;
  };
  StatusOr<Worker> spawn();
  // Kills and reaps; returns how it ended ("exit status 3", "killed by signal 9").
  static std::string stop(Worker& w, bool kill_first);
  // One request and its answer: a failed Status means the exchange broke;
  // otherwise `answer` holds the worker's status and `body` its bytes.
  Status exchange(Worker& w, uint32_t op, std::span<const uint32_t> args, ByteView payload, uint64_t max_answer,
                  Status& answer, Bytes& body);

  const WorkerPoolOptions options_;
  mutable std::mutex mu_;
  std::condition_variable free_cv_;
  std::vector<Worker> idle_;  // guarded by mu_
  size_t running_ = 0;        // workers alive (idle or busy), guarded by mu_
  uint64_t failures_ = 0;     // guarded by mu_
};

}  // namespace bastion::isolation
