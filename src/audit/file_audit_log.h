// FileAuditLog: one JSON object per line in an append-only file (mode 0600).
// Concurrent appends share fdatasync calls (group sync).
#pragma once

#include <condition_variable>
#include <mutex>
#include <string>

#include "bastion/audit/audit_log.h"

namespace bastion::audit {

class FileAuditLog final : public AuditLog {
 public:
  static StatusOr<std::unique_ptr<FileAuditLog>> open(const std::string& path);
  ~FileAuditLog() override;
  Status append(const AuditEvent& event) override;

 private:
  explicit FileAuditLog(int fd) : fd_(fd) {}
  int fd_;
  std::mutex mu_;
  std::condition_variable cv_;
  uint64_t written_ = 0;  // events written (guarded by mu_)
  uint64_t synced_ = 0;   // events known durable (guarded by mu_)
  bool syncing_ = false;  // a thread is in fdatasync (guarded by mu_)
};

// The JSON line for an event (no trailing newline). Control characters
// are escaped, so a value cannot forge a second record.
std::string formatEvent(const AuditEvent& event);

}  // namespace bastion::audit
