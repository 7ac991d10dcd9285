// AuditLog: where every security-relevant event leaves a record, allowed or
// denied. The archive's implementation (audit/audit_store.h) chains, signs
// and encrypts; the PHI fields below (patient, query) are never written in
// plaintext.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>

#include "bastion/common/bytes.h"
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

  // For an event whose action writes an object durably anyway (a store):
  // noteFor() seals `event` into a note bound to that object's id, which the
  // caller makes durable together with the object (BlobWriter::attachNote);
  // appendNoted(event) then needs no sync of its own, because after a crash
  // the record is appended again from the note if it was lost. Without notes
  // (the default) noteFor() gives nullopt and appendNoted() is append().
  virtual std::optional<Bytes> noteFor(const AuditEvent& event, const std::string& object_id) {
    (void)event;
    (void)object_id;
    return std::nullopt;
  }
  virtual Status appendNoted(const AuditEvent& event) { return append(event); }
  // Makes every record appended so far durable (those of appendNoted()
  // included): before an action that would take away a note's object.
  virtual Status sync() { return okStatus(); }
};

}  // namespace bastion
