#include "isolation/sandbox.h"

#include <seccomp.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <unistd.h>

#include <cerrno>
#include <new>
#include <vector>

#include "isolation/wire.h"

namespace bastion::isolation {
namespace {

// SIGSYS from the filter: say which call (async-signal-safe), then exit.
void onForbiddenSyscall(int, siginfo_t* info, void*) {
  char msg[80] = "bastion worker: forbidden system call ";
  size_t n = sizeof "bastion worker: forbidden system call " - 1;
  char digits[12];
  int d = 0;
  unsigned v = static_cast<unsigned>(info->si_syscall);
  do {
    digits[d++] = static_cast<char>('0' + v % 10);
    v /= 10;
  } while (v && d < 11);
  while (d > 0) msg[n++] = digits[--d];
  msg[n++] = '\n';
  (void)!::write(2, msg, n);
  ::_exit(kForbiddenSyscallExit);
}

Status setLimit(int resource, rlim_t value) {
  const rlimit r{value, value};
  if (::setrlimit(resource, &r) != 0) return internalError("cannot set a resource limit");
  return okStatus();
}

bool underSanitizer() {
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
  return true;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
  return true;
#else
  return false;
#endif
#else
  return false;
#endif
}

Status installFilter() {
  scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_TRAP);
  if (!ctx) return internalError("seccomp_init failed");
  int rc = 0;
  const auto allow = [&](int nr) {
    if (rc == 0) rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, nr, 0);
  };
  for (int nr : {SCMP_SYS(read), SCMP_SYS(write), SCMP_SYS(readv), SCMP_SYS(writev), SCMP_SYS(close),
                 SCMP_SYS(fstat), SCMP_SYS(newfstatat), SCMP_SYS(brk), SCMP_SYS(munmap),
                 SCMP_SYS(mremap), SCMP_SYS(madvise), SCMP_SYS(futex), SCMP_SYS(exit), SCMP_SYS(exit_group),
                 SCMP_SYS(rt_sigreturn), SCMP_SYS(rt_sigprocmask), SCMP_SYS(clock_gettime),
                 SCMP_SYS(gettimeofday), SCMP_SYS(getrandom), SCMP_SYS(sched_yield), SCMP_SYS(getpid),
                 SCMP_SYS(gettid)})
    allow(nr);
  // Argument conditions built as plain structs: libseccomp's SCMP_A* macros
  // are C compound literals, which clang refuses in C++.
  const auto arg = [](unsigned int n, scmp_compare op, scmp_datum_t a, scmp_datum_t b) {
    scmp_arg_cmp c{};
    c.arg = n;
    c.op = op;
    c.datum_a = a;
    c.datum_b = b;
    return c;
  };
  // abort() on a failed assertion: the worker may only signal itself.
  if (rc == 0)
    rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(tgkill), 1,
                          arg(0, SCMP_CMP_EQ, static_cast<scmp_datum_t>(::getpid()), 0));
  // Memory, but never executable memory.
  for (int nr : {SCMP_SYS(mmap), SCMP_SYS(mprotect)})
    if (rc == 0) rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, nr, 1, arg(2, SCMP_CMP_MASKED_EQ, PROT_EXEC, 0));
  if (underSanitizer()) {
    // The sanitizer runtimes' own housekeeping (UBSan probes memory through
    // a pipe in its vptr checks); sanitizer builds are for tests only.
    for (int nr : {SCMP_SYS(sigaltstack), SCMP_SYS(nanosleep), SCMP_SYS(clock_nanosleep), SCMP_SYS(prctl),
                   SCMP_SYS(sched_getaffinity), SCMP_SYS(rt_sigaction), SCMP_SYS(pipe), SCMP_SYS(pipe2)})
      allow(nr);
  }
  if (rc == 0) rc = seccomp_load(ctx);  // also sets no_new_privs (SCMP_FLTATR_CTL_NNP)
  seccomp_release(ctx);
  if (rc != 0) return internalError("cannot install the seccomp filter");
  return okStatus();
}

bool readFully(int fd, void* data, size_t len, bool& eof_at_start) {
  auto* p = static_cast<uint8_t*>(data);
  size_t got = 0;
  while (got < len) {
    const ssize_t n = ::read(fd, p + got, len - got);
    if (n == 0) {
      eof_at_start = got == 0;
      return false;
    }
    if (n < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    got += static_cast<size_t>(n);
  }
  return true;
}

bool writeFully(int fd, const void* data, size_t len) {
  const auto* p = static_cast<const uint8_t*>(data);
  while (len > 0) {
    const ssize_t n = ::write(fd, p, len);
    if (n < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    p += n;
    len -= static_cast<size_t>(n);
  }
  return true;
}

}  // namespace

Status enterSandbox(const SandboxLimits& limits) {
  if (::close_range(3, ~0U, 0) != 0) return internalError("cannot close inherited descriptors");
  // No PR_SET_PDEATHSIG: it follows the parent *thread*, and the pool
  // spawns from request threads that end. A worker whose archive is gone
  // reads the end of its input and exits, or dies writing (SIGPIPE).
  RETURN_IF_ERROR(setLimit(RLIMIT_CORE, 0));
  RETURN_IF_ERROR(setLimit(RLIMIT_FSIZE, 0));  // stderr is /dev/null; no file may grow
  RETURN_IF_ERROR(setLimit(RLIMIT_NOFILE, 8));
  RETURN_IF_ERROR(setLimit(RLIMIT_CPU, limits.cpu_seconds));
  if (!underSanitizer()) RETURN_IF_ERROR(setLimit(RLIMIT_AS, limits.memory_bytes));
  struct sigaction sa {};
  sa.sa_sigaction = onForbiddenSyscall;
  sa.sa_flags = SA_SIGINFO;
  sigemptyset(&sa.sa_mask);
  if (::sigaction(SIGSYS, &sa, nullptr) != 0) return internalError("cannot handle SIGSYS");
  ::signal(SIGPIPE, SIG_DFL);
  return installFilter();
}

int serveRequests(const RequestHandler& handler, uint64_t max_request) {
  for (;;) {
    RequestHeader h{};
    bool eof = false;
    if (!readFully(0, &h, sizeof h, eof)) return eof ? 0 : 3;
    if (h.nargs > kMaxArgs || h.length > max_request) return 3;
    std::vector<uint32_t> args(h.nargs);
    Bytes payload;
    Bytes out;
    Status s;
    try {
      payload.resize(h.length);
    } catch (const std::bad_alloc&) {
      return 3;  // the rest of the request cannot be read: end the worker
    }
    try {
      if (!readFully(0, args.data(), args.size() * sizeof(uint32_t), eof) ||
          !readFully(0, payload.data(), payload.size(), eof))
        return 3;
      s = handler(h.op, args, payload, out);
    } catch (const std::bad_alloc&) {
      s = resourceExhausted("the worker ran out of memory");
    } catch (...) {
      s = internalError("the worker failed");
    }
    Bytes().swap(payload);
    const std::string& message = s.message();
    ResponseHeader r{static_cast<uint32_t>(s.code()), 0, s.ok() ? out.size() : message.size()};
    if (!writeFully(1, &r, sizeof r)) return 3;
    if (s.ok() ? !writeFully(1, out.data(), out.size()) : !writeFully(1, message.data(), message.size())) return 3;
  }
}

}  // namespace bastion::isolation
