#include "isolation/worker_pool.h"

#include "isolation/wire.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

extern char** environ;

namespace bastion::isolation {
namespace {

using Clock = std::chrono::steady_clock;

int msLeft(Clock::time_point deadline) {
  const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
  return left <= 0 ? 0 : static_cast<int>(std::min<int64_t>(left, 60000));
}

// Waits for `events` on fd until the deadline; false on timeout or error.
bool waitFor(int fd, short events, Clock::time_point deadline) {
  for (;;) {
    pollfd p{fd, events, 0};
    const int n = ::poll(&p, 1, msLeft(deadline));
    if (n > 0) return true;
    if (n == 0) return false;
    if (errno != EINTR) return false;
  }
}

Status writeAll(int fd, const void* data, size_t len, Clock::time_point deadline) {
  const auto* p = static_cast<const uint8_t*>(data);
  while (len > 0) {
    if (!waitFor(fd, POLLOUT, deadline)) return internalError("timed out sending to the worker");
    // Non-blocking: a worker that stops reading cannot hold us past the deadline.
    const ssize_t n = ::send(fd, p, std::min<size_t>(len, 1 << 20), MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n < 0) {
      if (errno == EINTR || errno == EAGAIN) continue;
      return internalError(std::string("cannot send to the worker: ") + std::strerror(errno));
    }
    p += n;
    len -= static_cast<size_t>(n);
  }
  return okStatus();
}

Status readAll(int fd, void* data, size_t len, Clock::time_point deadline) {
  auto* p = static_cast<uint8_t*>(data);
  while (len > 0) {
    if (!waitFor(fd, POLLIN, deadline)) return internalError("timed out waiting for the worker");
    const ssize_t n = ::read(fd, p, std::min<size_t>(len, 1 << 20));
    if (n == 0) return internalError("the worker closed its output");
    if (n < 0) {
      if (errno == EINTR || errno == EAGAIN) continue;
      return internalError(std::string("cannot read from the worker: ") + std::strerror(errno));
    }
    p += n;
    len -= static_cast<size_t>(n);
  }
  return okStatus();
}

// A worker's own error, as far as the archive believes it: only the codes a
// decoder can honestly report (anything else, e.g. a claimed integrity
// failure, becomes kInternal), and a short printable message.
Status workerError(StatusCode code, const Bytes& message) {
  std::string text;
  for (uint8_t c : message) {
    if (text.size() >= 200) break;
    text.push_back(c >= 0x20 && c < 0x7F ? static_cast<char>(c) : '?');
  }
  const bool honest = code == StatusCode::kInvalidArgument || code == StatusCode::kNotFound ||
                      code == StatusCode::kResourceExhausted;
  return Status(honest ? code : StatusCode::kInternal, text);
}

}  // namespace

WorkerPool::~WorkerPool() {
  std::lock_guard<std::mutex> lock(mu_);
  for (auto& w : idle_) stop(w, false);
  idle_.clear();
}

uint64_t WorkerPool::failures() const {
  std::lock_guard<std::mutex> lock(mu_);
  return failures_;
}

StatusOr<WorkerPool::Worker> WorkerPool::spawn() {
  // One socket pair: the worker's stdin and stdout are its end; ours is
  // written with MSG_NOSIGNAL, so a dead worker is an error, not a SIGPIPE.
  int sv[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0)
    return unavailable("cannot create a socket pair for a worker");
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, sv[1], 0);
  posix_spawn_file_actions_adddup2(&fa, sv[1], 1);
  // Not the archive's log: a worker has nothing to say that the pool does not
  // learn from its exit status (90: a forbidden system call).
  posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);
  // Nothing else of the archive's (sockets, databases, keys) reaches the worker.
  posix_spawn_file_actions_addclosefrom_np(&fa, 3);
  std::vector<char*> argv;
  argv.push_back(const_cast<char*>(options_.executable.c_str()));
  for (const auto& a : options_.args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  pid_t pid = -1;
  const int rc = ::posix_spawn(&pid, options_.executable.c_str(), &fa, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  ::close(sv[1]);
  if (rc != 0) {
    ::close(sv[0]);
    return unavailable(std::string("cannot start a worker: ") + std::strerror(rc));
  }
  return Worker{pid, sv[0], 0};
}

std::string WorkerPool::stop(Worker& w, bool kill_first) {
  if (w.fd >= 0) ::close(w.fd);
  w.fd = -1;
  if (w.pid <= 0) return "not running";
  int status = 0;
  pid_t r = ::waitpid(w.pid, &status, WNOHANG);  // already gone: say how it ended
  if (r == 0 && kill_first) {
    ::kill(w.pid, SIGKILL);
    r = ::waitpid(w.pid, &status, 0);
  }
  // Closing its input ends a healthy worker; give it a second, then kill.
  for (int i = 0; r == 0 && i < 200; ++i) {
    ::usleep(5000);
    r = ::waitpid(w.pid, &status, WNOHANG);
  }
  if (r == 0) {
    ::kill(w.pid, SIGKILL);
    r = ::waitpid(w.pid, &status, 0);
  }
  w.pid = -1;
  if (r < 0) return "gone";
  if (WIFSIGNALED(status)) return std::string("killed by signal ").append(std::to_string(WTERMSIG(status)));
  return std::string("exit status ").append(std::to_string(WEXITSTATUS(status)));
}

Status WorkerPool::exchange(Worker& w, uint32_t op, std::span<const uint32_t> args, ByteView payload,
                            uint64_t max_answer, Status& answer, Bytes& body) {
  const auto deadline = Clock::now() + options_.deadline;
  if (args.size() > kMaxArgs) return invalidArgument("too many arguments for a worker");
  const RequestHeader h{op, static_cast<uint32_t>(args.size()), payload.size()};
  RETURN_IF_ERROR(writeAll(w.fd, &h, sizeof h, deadline));
  RETURN_IF_ERROR(writeAll(w.fd, args.data(), args.size_bytes(), deadline));
  RETURN_IF_ERROR(writeAll(w.fd, payload.data(), payload.size(), deadline));
  ResponseHeader r{};
  RETURN_IF_ERROR(readAll(w.fd, &r, sizeof r, deadline));
  if (r.length > max_answer || r.code > static_cast<uint32_t>(StatusCode::kInternal))
    return internalError("the worker broke the protocol");
  body.resize(r.length);
  RETURN_IF_ERROR(readAll(w.fd, body.data(), body.size(), deadline));
  if (r.code != 0) answer = workerError(static_cast<StatusCode>(r.code), body);
  return okStatus();
}

StatusOr<Bytes> WorkerPool::call(uint32_t op, std::span<const uint32_t> args, ByteView payload,
                                 uint64_t max_answer) {
  Worker w;
  {
    std::unique_lock<std::mutex> lock(mu_);
    free_cv_.wait(lock, [&] { return !idle_.empty() || running_ < options_.workers; });
    if (!idle_.empty()) {
      w = idle_.back();
      idle_.pop_back();
    } else {
      ++running_;
    }
  }
  if (w.pid <= 0) {
    auto started = spawn();
    if (!started.ok()) {
      std::lock_guard<std::mutex> lock(mu_);
      --running_;
      free_cv_.notify_one();
      return started.status();
    }
    w = *started;
  }
  Status answer;
  Bytes body;
  // The exchange failing (not the worker's own error answer) means the
  // worker is dead or suspect; either way it is replaced after enough requests.
  const Status io = exchange(w, op, args, payload, std::min(max_answer, options_.max_response), answer, body);
  const bool failed = !io.ok();
  std::string how;
  if (failed || ++w.served >= options_.requests_per_worker) how = stop(w, failed);
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (w.pid > 0) {
      idle_.push_back(w);
    } else {
      --running_;
    }
    if (failed) ++failures_;
    free_cv_.notify_one();
  }
  if (failed) return internalError("worker failed: " + io.message() + " (" + how + ")");
  if (!answer.ok()) return answer;
  return body;
}

}  // namespace bastion::isolation
