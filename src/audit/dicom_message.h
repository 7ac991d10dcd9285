// Renderings of audit records for the world outside the store:
//   - DICOM audit messages (PS3.15 A.5, event IDs 110100-110114 with their
//     DCM / RFC 3881 codes), the form syslog collectors receive;
//   - FHIR R4 AuditEvent resources shaped by IHE BALP;
//   - plain JSON, one object per record.
// Every value from outside (DICOM names, descriptions, queries) is escaped
// or base64-encoded: a value cannot end an element, forge a record or carry
// invalid UTF-8 into the output.
#pragma once

#include <string>

#include <nlohmann/json.hpp>

#include "audit/audit_store.h"

namespace bastion::audit {

// Who writes the trail (AuditSourceIdentification, the archive's participant).
struct AuditSource {
  std::string source_id = "BASTION";  // the archive's AE title
  std::string enterprise_site;         // optional
  std::string hostname;                // syslog HOSTNAME
};

struct Code {
  std::string code, system, text;
};

// How an event is classified in PS3.15 A.5.3.
struct EventCodes {
  Code event_id;                  // 110100-110114, DCM
  std::optional<Code> type;       // EventTypeCode, if the event has one
  char action = 'E';              // EventActionCode: C R U D E
  std::string requestor_role;     // RoleIDCode of the requestor (e.g. 110153), or ""
};
EventCodes classify(const AuditEvent& event);
// EventOutcomeIndicator: 0 success, 4 minor failure (denied), 8 serious failure.
int outcomeIndicator(const std::string& outcome);

std::string dicomAuditXml(const AuditEntry& entry, const AuditSource& source);
nlohmann::json fhirAuditEvent(const AuditEntry& entry, const AuditSource& source);
nlohmann::json plainJson(const AuditEntry& entry);

// Text made safe for XML character data and attribute values: markup
// escaped, invalid UTF-8 and characters XML 1.0 forbids replaced by U+FFFD,
// CR/LF/TAB as character references.
std::string xmlEscape(std::string_view text);

}  // namespace bastion::audit
