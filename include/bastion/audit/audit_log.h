// AuditLog: where every service call leaves a record, allowed or denied.
// This is the append-only first version; a later one chains and signs.
// Records carry no PHI: actors, addresses, actions, study UIDs, outcomes.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

#include "bastion/common/status.h"

namespace bastion {

struct AuditEvent {
  std::chrono::system_clock::time_point time;
  std::string actor_ae;         // calling AE title (DIMSE) or user name
  std::string source_address;   // peer IP address
  std::string cert_sha256;      // client certificate fingerprint, if any
  std::string action;           // "association", "echo", "store", "find", "get", "move", "verify", ...
  std::string study_uid;        // the study concerned, if one
  uint32_t instance_count = 0;
  std::string outcome;          // "success", "failure", "denied"
  std::string detail;           // reason for failure/denial; never PHI
  std::string user;             // the user acting (DICOM user identity, login), if any
  std::string rule;             // the Policy rule that decided, e.g. "deny:no-permission:get"
  std::string severity;         // "" (normal) or "high" (break-glass, lock-outs)
};

// An event of the archive itself (start, stop, verify, CLI actions).
inline AuditEvent systemEvent(std::chrono::system_clock::time_point time, std::string actor, std::string action,
                              std::string outcome, std::string detail = "", uint32_t count = 0) {
  AuditEvent e;
  e.time = time;
  e.actor_ae = std::move(actor);
  e.action = std::move(action);
  e.outcome = std::move(outcome);
  e.detail = std::move(detail);
  e.instance_count = count;
  return e;
}

class AuditLog {
 public:
  virtual ~AuditLog() = default;
  // Appends the event; returns once it is durable. Thread-safe.
  virtual Status append(const AuditEvent& event) = 0;
};

}  // namespace bastion
