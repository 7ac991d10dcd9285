#include "audit/file_audit_log.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <nlohmann/json.hpp>

#include "bastion/common/clock.h"

namespace bastion::audit {

std::string formatEvent(const AuditEvent& e) {
  nlohmann::json j;
  j["time"] = formatUtc(e.time);
  j["actor"] = e.actor_ae;
  j["source"] = e.source_address;
  if (!e.cert_sha256.empty()) j["cert_sha256"] = e.cert_sha256;
  j["action"] = e.action;
  if (!e.study_uid.empty()) j["study"] = e.study_uid;
  if (e.instance_count) j["instances"] = e.instance_count;
  j["outcome"] = e.outcome;
  if (!e.detail.empty()) j["detail"] = e.detail;
  if (!e.user.empty()) j["user"] = e.user;
  if (!e.rule.empty()) j["rule"] = e.rule;
  if (!e.severity.empty()) j["severity"] = e.severity;
  // Replace invalid UTF-8 rather than throwing: a hostile value must not
  // break the record.
  return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

StatusOr<std::unique_ptr<FileAuditLog>> FileAuditLog::open(const std::string& path) {
  int fd = ::open(path.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0) return internalError("cannot open audit log " + path + ": " + std::strerror(errno));
  return std::unique_ptr<FileAuditLog>(new FileAuditLog(fd));
}

FileAuditLog::~FileAuditLog() { ::close(fd_); }

Status FileAuditLog::append(const AuditEvent& event) {
  std::string line = formatEvent(event) + "\n";
  std::unique_lock lock(mu_);
  // One write() per record under the lock: records never interleave.
  size_t done = 0;
  while (done < line.size()) {
    ssize_t n = ::write(fd_, line.data() + done, line.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return internalError(std::string("audit write failed: ") + std::strerror(errno));
    done += static_cast<size_t>(n);
  }
  const uint64_t mine = ++written_;
  while (synced_ < mine) {
    if (!syncing_) {
      syncing_ = true;
      const uint64_t target = written_;
      lock.unlock();
      const int rc = ::fdatasync(fd_);
      lock.lock();
      syncing_ = false;
      if (rc == 0) synced_ = std::max(synced_, target);
      cv_.notify_all();
      if (rc != 0) return internalError("audit fdatasync failed");
    } else {
      cv_.wait(lock);
    }
  }
  return okStatus();
}

}  // namespace bastion::audit
