// SyslogForwarder: sends the audit trail to one collector as DICOM audit
// messages (PS3.15 A.5) in RFC 5424 syslog over TLS (RFC 5425, mutual TLS),
// store-and-forward.
//
// The audit store is the buffer: the forwarder keeps a delivery cursor in it
// and reads what follows. RFC 5425 has no acknowledgement, so a batch counts
// as delivered only once the collector's TCP acknowledged every byte and the
// connection then stayed healthy for `confirm_after` (a collector that goes
// away with data unread resets the connection at once), or when the
// collector closed cleanly after acknowledging everything (a clean close
// means it read all it received). A connection that fails otherwise is
// re-opened and everything unconfirmed is sent again: delivery is
// at-least-once, and each message carries its record's position as
// [meta sequenceId] so a collector can drop a repeat.
// An outage or a refused certificate loses nothing; when the backlog passes
// `alert_backlog` a security alert is appended to the trail (once per
// crossing), and a connection failure is recorded once per outage. The
// sending thread runs at a lower CPU priority (nice 10) than the requests.
#pragma once

#include <atomic>
#include <condition_variable>
#include <mutex>
#include <string>
#include <thread>

#include "audit/audit_store.h"
#include "audit/dicom_message.h"

namespace bastion::audit {

struct SyslogCollector {
  std::string host;  // address or name; verified against the certificate
  int port = 6514;
  std::string ca_file;    // CA that signed the collector's certificate
  std::string cert_file;  // Bastion's client certificate
  std::string key_file;
  int64_t alert_backlog = 100000;
  std::string destination() const { return "syslog:" + host + ":" + std::to_string(port); }
};

struct ForwarderTiming {
  std::chrono::milliseconds confirm_after{250};
  std::chrono::milliseconds retry{1000};
  // After a wake-up, wait this long for more records: one batch, one TLS
  // write and one read of the store for many records under load.
  std::chrono::milliseconds coalesce{25};
};

class SyslogForwarder {
 public:
  SyslogForwarder(AuditStore& store, SyslogCollector collector, AuditSource source, ForwarderTiming timing = {});
  ~SyslogForwarder();  // stop(std::chrono::seconds(0))
  void start();
  // Tells the forwarder records up to `head` exist (AuditStore::onCommit).
  void wake();
  // Sends what remains and waits up to `drain` for it to be confirmed, then stops.
  void stop(std::chrono::milliseconds drain);
  int64_t confirmed() const { return confirmed_.load(); }

 private:
  void run();
  struct Connection;
  AuditStore& store_;
  SyslogCollector collector_;
  AuditSource source_;
  ForwarderTiming timing_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool woken_ = false;     // guarded by mu_
  bool stopping_ = false;  // guarded by mu_
  std::chrono::steady_clock::time_point drain_deadline_;
  std::atomic<int64_t> confirmed_{0};
  std::thread thread_;
};

// One RFC 5424 message (no framing): PRI (facility 10, severity 5 on success,
// 4 otherwise), version 1, timestamp, host, "bastion", pid, MSGID
// "IHE+RFC-3881", [meta sequenceId] (the record's position, 1..2^31-1), then
// the XML after a UTF-8 BOM (RFC 5424 6.4).
std::string syslogMessage(const AuditEntry& entry, const AuditSource& source);

}  // namespace bastion::audit
