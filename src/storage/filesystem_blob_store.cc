#include "storage/filesystem_blob_store.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>

#include "storage/atomic_file.h"

namespace bastion::storage {
namespace {

constexpr size_t kWriteBuffer = 256 * 1024;

class FileWriter final : public BlobWriter {
 public:
  FileWriter(std::string id, std::string tmp, std::string final_dir, std::string final_path, int fd)
      : id_(std::move(id)), tmp_(std::move(tmp)), dir_(std::move(final_dir)), path_(std::move(final_path)), fd_(fd) {
    buf_.reserve(kWriteBuffer);
  }
  ~FileWriter() override {
    if (fd_ >= 0) ::close(fd_);
    if (!committed_) ::unlink(tmp_.c_str());
  }
  const std::string& id() const override { return id_; }

  Status append(ByteView data) override {
    if (fd_ < 0) return internalError("writer already closed");
    if (buf_.size() + data.size() > kWriteBuffer) {
      RETURN_IF_ERROR(flushBuffer());
      if (data.size() >= kWriteBuffer) return writeAll(fd_, data, "write");
    }
    buf_.insert(buf_.end(), data.begin(), data.end());
    return okStatus();
  }

  // Rename first, then make data and name durable: fdatasync commits the
  // filesystem journal that already holds the rename, so the directory fsync
  // that follows is nearly free. A crash before both syncs leaves at most an
  // unreferenced file, which nothing acknowledged and the next start removes.
  Status commit() override {
    if (fd_ < 0) return internalError("writer already closed");
    RETURN_IF_ERROR(flushBuffer());
    if (::rename(tmp_.c_str(), path_.c_str()) != 0) return errnoStatus("rename");
    committed_ = true;
    const int rc = ::fdatasync(fd_);
    ::close(fd_);
    fd_ = -1;
    if (rc != 0) {
      ::unlink(path_.c_str());
      return errnoStatus("fdatasync");
    }
    return syncDirectory(dir_);
  }

 private:
  Status flushBuffer() {
    Status s = writeAll(fd_, buf_, "write");
    buf_.clear();
    return s;
  }

  std::string id_, tmp_, dir_, path_;
  int fd_;
  bool committed_ = false;
  Bytes buf_;
};

class FileReader final : public BlobReader {
 public:
  FileReader(int fd, uint64_t size) : fd_(fd), size_(size) {}
  ~FileReader() override { ::close(fd_); }
  uint64_t size() const override { return size_; }
  StatusOr<size_t> read(uint64_t offset, std::span<uint8_t> out) override {
    if (offset >= size_ || out.empty()) return size_t{0};
    return readAt(fd_, offset, out, "pread");
  }

 private:
  int fd_;
  uint64_t size_;
};

}  // namespace

StatusOr<std::unique_ptr<FilesystemBlobStore>> FilesystemBlobStore::open(const std::string& root, Random& random) {
  RETURN_IF_ERROR(ensureDirectory(root + "/objects"));
  return std::unique_ptr<FilesystemBlobStore>(new FilesystemBlobStore(root, random));
}

Status FilesystemBlobStore::removeTempFiles() {
  std::error_code ec;
  for (auto it = std::filesystem::recursive_directory_iterator(root_ + "/objects", ec);
       !ec && it != std::filesystem::recursive_directory_iterator(); it.increment(ec)) {
    if (!it->is_regular_file() || it->path().extension() != ".tmp") continue;
    std::error_code rm;
    if (!std::filesystem::remove(it->path(), rm) && rm) return internalError("remove " + it->path().string() + ": " + rm.message());
  }
  if (ec) return internalError("list " + root_ + "/objects: " + ec.message());
  return okStatus();
}

std::string FilesystemBlobStore::pathFor(const std::string& id) const {
  return root_ + "/objects/" + id.substr(0, 2) + "/" + id.substr(2, 2) + "/" + id;
}

StatusOr<std::unique_ptr<BlobWriter>> FilesystemBlobStore::create() { return createWithId(newUuid(random_)); }

StatusOr<std::unique_ptr<BlobWriter>> FilesystemBlobStore::createWithId(const std::string& id) {
  if (!isCanonicalUuid(id)) return invalidArgument("not a blob id");
  std::string path = pathFor(id);
  std::string dir = std::filesystem::path(path).parent_path().string();
  // The temp file lives beside its final name: same directory, one rename,
  // and creations spread over the shard directories.
  RETURN_IF_ERROR(ensureDirectory(dir));
  std::string tmp = path + ".tmp";
  int fd = ::open(tmp.c_str(), O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0600);
  if (fd < 0) return errnoStatus("create temp blob");
  return std::unique_ptr<BlobWriter>(new FileWriter(id, tmp, dir, path, fd));
}

StatusOr<std::unique_ptr<BlobReader>> FilesystemBlobStore::open(const std::string& id) {
  if (!isCanonicalUuid(id)) return invalidArgument("not a blob id");
  std::string path = pathFor(id);
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOENT) return notFound("blob " + id + " not found");
    return errnoStatus("open blob");
  }
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    ::close(fd);
    return errnoStatus("fstat blob");
  }
  return std::unique_ptr<BlobReader>(new FileReader(fd, static_cast<uint64_t>(st.st_size)));
}

Status FilesystemBlobStore::remove(const std::string& id) {
  if (!isCanonicalUuid(id)) return invalidArgument("not a blob id");
  std::string path = pathFor(id);
  if (::unlink(path.c_str()) != 0) {
    if (errno == ENOENT) return notFound("blob " + id + " not found");
    return errnoStatus("unlink blob");
  }
  return syncDirectory(std::filesystem::path(path).parent_path().string());
}

Status FilesystemBlobStore::forEach(const std::function<void(const std::string& id)>& fn) {
  std::error_code ec;
  std::filesystem::recursive_directory_iterator it(root_ + "/objects", ec), end;
  if (ec) return internalError("cannot list blobs: " + ec.message());
  for (; it != end; it.increment(ec)) {
    if (ec) return internalError("cannot list blobs: " + ec.message());
    if (!it->is_regular_file()) continue;
    std::string name = it->path().filename().string();
    if (isCanonicalUuid(name)) fn(name);
  }
  return okStatus();
}

}  // namespace bastion::storage
