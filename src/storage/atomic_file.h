// Durable file primitives: temp + fsync + rename + directory fsync, the way
// LevelDB's SetCurrentFile does it. Paths here are built by our own code only.
#pragma once

#include <cstdint>
#include <span>
#include <string>

#include "bastion/common/bytes.h"
#include "bastion/common/status.h"

namespace bastion::storage {

// fsync() the directory itself, so a rename or create inside it is durable.
Status syncDirectory(const std::string& dir);
// Creates `dir` (and parents) with mode 0700 if missing; fsyncs each parent
// whose entry list changed.
Status ensureDirectory(const std::string& dir);
// Writes `data` to `path` atomically and durably (readers see the old or the
// new content, never a mix). `mode` applies to a newly created file.
Status writeFileAtomic(const std::string& path, ByteView data, int mode = 0600);
// Writes a new file; kAlreadyExists if `path` exists (never overwrites).
Status writeNewFile(const std::string& path, ByteView data, int mode = 0600);
StatusOr<Bytes> readFile(const std::string& path, size_t max_size);

// internalError("<what>: <text of errno>"), for a system call that just failed.
Status errnoStatus(const std::string& what);

// All of `data` written at the file position (writeAll) or at offset `at`
// (writeAllAt), through short writes and EINTR. Errors read "<what>: <errno text>".
Status writeAll(int fd, ByteView data, const std::string& what);
Status writeAllAt(int fd, ByteView data, uint64_t at, const std::string& what);
// One pread at `at` (retried on EINTR): the count read, 0 at the end.
StatusOr<size_t> readAt(int fd, uint64_t at, std::span<uint8_t> out, const std::string& what);

}  // namespace bastion::storage
