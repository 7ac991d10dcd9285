// The worker side of WorkerPool: confinement and the request loop. A worker
// is started by the pool with its requests on stdin and its answers on
// stdout; it confines itself (enterSandbox) before reading any request.
#pragma once

#include <cstdint>
#include <functional>
#include <span>

#include "bastion/common/bytes.h"
#include "bastion/common/status.h"

namespace bastion::isolation {

struct SandboxLimits {
  uint64_t memory_bytes = 2ull << 30;  // RLIMIT_AS (not applied under the sanitizers, whose shadow memory needs more)
  uint32_t cpu_seconds = 600;          // RLIMIT_CPU over the worker's life (the pool also has a per-request deadline)
};

// The exit status of a worker that attempted a system call outside the
// allowlist (it writes the call's number to stderr first).
inline constexpr int kForbiddenSyscallExit = 90;

// Confines the calling process, which must be single-threaded and have done
// all its start-up (libraries loaded, dictionaries read): descriptors other
// than 0-2 closed, no new privileges, resource
// limits (memory, CPU, descriptors, no file growth, no core dumps), and a seccomp filter that
// allows reading and writing the open descriptors, memory management
// without executable mappings, time, and exit; any other system call
// (open, socket, fork, exec, ptrace...) ends the process.
Status enterSandbox(const SandboxLimits& limits);

// Handles one request: fills `out` on success; a failed Status is sent back
// as the answer (code and message).
using RequestHandler =
    std::function<Status(uint32_t op, std::span<const uint32_t> args, ByteView payload, Bytes& out)>;

// Serves requests from fd 0, answering on fd 1, until fd 0 reaches its end
// (returns 0) or the framing breaks (returns 3). A request longer than
// `max_request` bytes ends the worker (returns 3).
int serveRequests(const RequestHandler& handler, uint64_t max_request);

}  // namespace bastion::isolation
