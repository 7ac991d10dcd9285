// AuditLog: where every security-relevant event leaves a record, allowed or
// denied. The archive's implementation (audit/audit_store.h) chains, signs
// and encrypts; the PHI fields below (patient, query) are never written in
// plaintext.
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
  // PHI, encrypted at rest; the patient ID is also searchable by keyed token.
  std::string patient_id;       // the patient concerned, if known
  std::string patient_name;     // idem, DICOM PN
  std::string query;            // the query keys of a find/QIDO (JSON or query string)
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
