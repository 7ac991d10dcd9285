#include "storage/atomic_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>

namespace bastion::storage {
namespace {

// write() (at < 0) or pwrite() at `at` until all of `data` is written.
Status writeLoop(int fd, ByteView data, int64_t at, const std::string& what) {
  size_t done = 0;
  while (done < data.size()) {
    const ssize_t n = at < 0 ? ::write(fd, data.data() + done, data.size() - done)
                             : ::pwrite(fd, data.data() + done, data.size() - done,
                                        static_cast<off_t>(at) + static_cast<off_t>(done));
    if (n < 0) {
      if (errno == EINTR) continue;
      return errnoStatus(what);
    }
    done += static_cast<size_t>(n);
  }
  return okStatus();
}

Status writeAndSync(const std::string& path, ByteView data, int flags, int mode) {
  int fd = ::open(path.c_str(), flags | O_WRONLY | O_CLOEXEC, mode);
  if (fd < 0) {
    if (errno == EEXIST) return alreadyExists(path + " exists");
    return errnoStatus("open " + path);
  }
  Status s = writeAll(fd, data, "write " + path);
  if (s.ok() && ::fsync(fd) != 0) s = errnoStatus("fsync " + path);
  ::close(fd);
  return s;
}

}  // namespace

Status syncDirectory(const std::string& dir) {
  int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return errnoStatus("open dir " + dir);
  int rc = ::fsync(fd);
  ::close(fd);
  if (rc != 0) return errnoStatus("fsync dir " + dir);
  return okStatus();
}

Status ensureDirectory(const std::string& dir) {
  struct stat st {};
  if (::stat(dir.c_str(), &st) == 0) {
    if (!S_ISDIR(st.st_mode)) return invalidArgument(dir + " is not a directory");
    return okStatus();
  }
  const std::string parent = std::filesystem::path(dir).parent_path().string();
  if (!parent.empty() && parent != dir) RETURN_IF_ERROR(ensureDirectory(parent));
  if (::mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST) return errnoStatus("mkdir " + dir);
  if (!parent.empty()) RETURN_IF_ERROR(syncDirectory(parent));
  return okStatus();
}

Status writeFileAtomic(const std::string& path, ByteView data, int mode) {
  const std::string tmp = path + ".tmp";
  ::unlink(tmp.c_str());
  RETURN_IF_ERROR(writeAndSync(tmp, data, O_CREAT | O_EXCL, mode));
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    Status s = errnoStatus("rename " + tmp);
    ::unlink(tmp.c_str());
    return s;
  }
  std::string dir = std::filesystem::path(path).parent_path().string();
  return syncDirectory(dir.empty() ? "." : dir);
}

Status writeNewFile(const std::string& path, ByteView data, int mode) {
  RETURN_IF_ERROR(writeAndSync(path, data, O_CREAT | O_EXCL, mode));
  std::string dir = std::filesystem::path(path).parent_path().string();
  return syncDirectory(dir.empty() ? "." : dir);
}

StatusOr<Bytes> readFile(const std::string& path, size_t max_size) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOENT) return notFound(path + " not found");
    return errnoStatus("open " + path);
  }
  Bytes out;
  uint8_t buf[65536];
  while (true) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0) {
      if (errno == EINTR) continue;
      ::close(fd);
      return errnoStatus("read " + path);
    }
    if (n == 0) break;
    if (out.size() + static_cast<size_t>(n) > max_size) {
      ::close(fd);
      return resourceExhausted(path + " too large");
    }
    out.insert(out.end(), buf, buf + n);
  }
  ::close(fd);
  return out;
}

Status errnoStatus(const std::string& what) { return internalError(what + ": " + std::strerror(errno)); }

Status writeAll(int fd, ByteView data, const std::string& what) { return writeLoop(fd, data, -1, what); }

Status writeAllAt(int fd, ByteView data, uint64_t at, const std::string& what) {
  return writeLoop(fd, data, static_cast<int64_t>(at), what);
}

StatusOr<size_t> readAt(int fd, uint64_t at, std::span<uint8_t> out, const std::string& what) {
  while (true) {
    const ssize_t n = ::pread(fd, out.data(), out.size(), static_cast<off_t>(at));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return errnoStatus(what);
    return static_cast<size_t>(n);
  }
}

}  // namespace bastion::storage
