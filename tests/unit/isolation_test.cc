// WorkerPool against stand-in workers (/bin/cat echoes a request back as a
// well-formed answer; sleep never answers; false dies at once), and the
// sandbox's filter in a forked child.
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <csignal>
#include <cstdlib>
#include <fstream>
#include <thread>

#include <gtest/gtest.h>

#include "isolation/sandbox.h"
#include "isolation/worker_pool.h"

namespace bastion::isolation {
namespace {

WorkerPoolOptions options(const char* exe, std::vector<std::string> args = {}) {
  WorkerPoolOptions o;
  o.executable = exe;
  o.args = std::move(args);
  o.workers = 2;
  o.deadline = std::chrono::milliseconds(500);
  return o;
}

// With op 0 and no arguments a request header reads as an OK answer of the
// payload's length: cat answers with the payload itself.
TEST(WorkerPool, CarriesRequestsAndAnswersAndReusesWorkers) {
  WorkerPool pool(options("/bin/cat"));
  for (int i = 0; i < 20; ++i) {
    const std::string text =
        std::string("payload ").append(std::to_string(i)).append(static_cast<size_t>(i) * 5000, 'x');
    auto answer = pool.call(0, {}, asBytes(text));
    ASSERT_TRUE(answer.ok()) << answer.status().toString();
    EXPECT_EQ(std::string(answer->begin(), answer->end()), text);
  }
  EXPECT_EQ(pool.failures(), 0u);
}

// Through cat, the request's op comes back as the answer's status code.
TEST(WorkerPool, AWorkerCannotClaimAnIntegrityFailureNorSendLongMessages) {
  WorkerPool pool(options("/bin/cat"));
  auto claimed = pool.call(static_cast<uint32_t>(StatusCode::kDataLoss), {}, asBytes("segment\x01tampered"));
  ASSERT_FALSE(claimed.ok());
  EXPECT_EQ(claimed.status().code(), StatusCode::kInternal);
  EXPECT_EQ(claimed.status().message(), "segment?tampered");
  auto honest = pool.call(static_cast<uint32_t>(StatusCode::kInvalidArgument), {}, asBytes(std::string(5000, 'x')));
  ASSERT_FALSE(honest.ok());
  EXPECT_EQ(honest.status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(honest.status().message().size(), 200u);
  EXPECT_EQ(pool.failures(), 0u);  // an error answer is not a broken worker
}

TEST(WorkerPool, AnAnswerOverItsBoundIsAProtocolError) {
  WorkerPool pool(options("/bin/cat"));
  auto answer = pool.call(0, {}, asBytes(std::string(100, 'x')), 10);
  ASSERT_FALSE(answer.ok());
  EXPECT_NE(answer.status().message().find("broke the protocol"), std::string::npos) << answer.status().message();
  EXPECT_EQ(pool.failures(), 1u);
  EXPECT_TRUE(pool.call(0, {}, asBytes("next"), 10).ok());  // a fresh worker
}

TEST(WorkerPool, ServesConcurrentCallersWithAtMostItsWorkers) {
  WorkerPool pool(options("/bin/cat"));
  std::vector<std::thread> threads;
  std::atomic<int> good{0};
  for (int t = 0; t < 6; ++t)
    threads.emplace_back([&pool, &good, t] {
      for (int i = 0; i < 10; ++i) {
        const std::string text(static_cast<size_t>(70000 + t * 10 + i), static_cast<char>('a' + t));
        auto answer = pool.call(0, {}, asBytes(text));
        if (answer.ok() && std::string(answer->begin(), answer->end()) == text) ++good;
      }
    });
  for (auto& th : threads) th.join();
  EXPECT_EQ(good.load(), 60);
}

TEST(WorkerPool, KillsAWorkerThatMissesTheDeadline) {
  WorkerPool pool(options("/bin/sleep", {"30"}));
  const auto start = std::chrono::steady_clock::now();
  auto answer = pool.call(0, {}, asBytes("x"));
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(5));
  ASSERT_FALSE(answer.ok());
  EXPECT_EQ(answer.status().code(), StatusCode::kInternal);
  EXPECT_NE(answer.status().message().find("timed out"), std::string::npos) << answer.status().message();
  EXPECT_NE(answer.status().message().find("killed by signal 9"), std::string::npos) << answer.status().message();
  EXPECT_EQ(pool.failures(), 1u);
}

TEST(WorkerPool, ReportsAWorkerThatDiesAndStartsAnother) {
  WorkerPool pool(options("/bin/false"));
  for (int i = 0; i < 3; ++i) {
    auto answer = pool.call(0, {}, asBytes("x"));
    ASSERT_FALSE(answer.ok());
    EXPECT_NE(answer.status().message().find("exit status 1"), std::string::npos) << answer.status().message();
  }
  EXPECT_EQ(pool.failures(), 3u);
}

TEST(WorkerPool, AMissingExecutableIsUnavailableNotACrash) {
  WorkerPool pool(options("/nonexistent/worker"));
  auto answer = pool.call(0, {}, asBytes("x"));
  ASSERT_FALSE(answer.ok());
}

// The child's address space when it starts: a child forked from this test
// process inherits what earlier tests' threads reserved (stacks, malloc
// arenas), which a worker started by posix_spawn never has.
uint64_t addressSpaceBytes() {
  std::ifstream statm("/proc/self/statm");
  uint64_t pages = 0;
  statm >> pages;
  return pages * static_cast<uint64_t>(::sysconf(_SC_PAGESIZE));
}

// Runs `body` in a forked child after enterSandbox (512 MiB of address space
// beyond what it inherited); returns its wait status.
template <typename F>
int inSandbox(F body) {
  const pid_t pid = ::fork();
  if (pid == 0) {
    if (!enterSandbox({addressSpaceBytes() + (512ull << 20), 10}).ok()) ::_exit(2);
    ::_exit(body());
  }
  int status = 0;
  ::waitpid(pid, &status, 0);
  return status;
}

TEST(Sandbox, AllowsMemoryAndTheOpenDescriptors) {
  const int status = inSandbox([] {
    std::vector<char> big(64 << 20, 'x');  // mmap-backed
    const ssize_t n = ::write(2, "", 0);
    return big[12345] == 'x' && n == 0 ? 0 : 1;
  });
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0);
}

TEST(Sandbox, EndsAWorkerThatOpensAFile) {
  const int status = inSandbox([] { return ::open("/etc/hostname", O_RDONLY) >= 0 ? 0 : 1; });
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), kForbiddenSyscallExit);
}

TEST(Sandbox, EndsAWorkerThatOpensASocketOrForks) {
  int status = inSandbox([] { return ::socket(AF_INET, SOCK_STREAM, 0) >= 0 ? 0 : 1; });
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), kForbiddenSyscallExit);
  // The raw system call: ThreadSanitizer's fork() interceptor would hold its
  // locks across the trapped call.
  status = inSandbox([] { return ::syscall(SYS_clone, SIGCHLD, 0, 0, 0, 0) >= 0 ? 0 : 1; });
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), kForbiddenSyscallExit);
}

TEST(Sandbox, RefusesExecutableMemory) {
  const int status = inSandbox([] {
    void* p = ::mmap(nullptr, 4096, PROT_READ | PROT_WRITE | PROT_EXEC, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    return p != MAP_FAILED ? 0 : 1;
  });
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), kForbiddenSyscallExit);
}

}  // namespace
}  // namespace bastion::isolation
