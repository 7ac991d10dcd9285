// Fuzz target for the audit renderers and the checkpoint line parser: any
// bytes in any field (names, descriptions, queries from DICOM or HTTP) must
// give exactly one well-formed XML document (checked with libxml2), one
// syslog line without CR/LF, and JSON that serialises; a checkpoint line is
// parsed or refused, never trusted without its signature.
#include <libxml/parser.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "audit/dicom_message.h"
#include "audit/syslog_forwarder.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view in(reinterpret_cast<const char*>(data), size);
  (void)bastion::audit::Checkpoint::parse(in);

  // Fields separated by 0x1F (unit separator).
  std::vector<std::string> f;
  size_t start = 0;
  for (size_t i = 0; i <= in.size(); ++i)
    if (i == in.size() || in[i] == '\x1f') {
      f.emplace_back(in.substr(start, i - start));
      start = i + 1;
    }
  f.resize(12);
  bastion::audit::AuditEntry entry;
  entry.seq = static_cast<int64_t>(size);
  auto& e = entry.event;
  e.time = std::chrono::system_clock::time_point(std::chrono::seconds(1800000000));
  e.action = f[0];
  e.outcome = f[1];
  e.actor_ae = f[2];
  e.user = f[3];
  e.source_address = f[4];
  e.study_uid = f[5];
  e.patient_id = f[6];
  e.patient_name = f[7];
  e.query = f[8];
  e.detail = f[9];
  e.rule = f[10];
  e.instance_count = static_cast<uint32_t>(f[11].size());
  const bastion::audit::AuditSource source{f[2].empty() ? "BASTION" : f[2], f[4], f[3]};

  const std::string xml = bastion::audit::dicomAuditXml(entry, source);
  xmlDocPtr doc = xmlReadMemory(xml.data(), static_cast<int>(xml.size()), "audit.xml", "UTF-8",
                                XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING);
  if (!doc) std::abort();  // not well-formed: a value escaped its element
  xmlFreeDoc(doc);
  const std::string line = bastion::audit::syslogMessage(entry, source);
  if (line.find_first_of("\r\n") != std::string::npos) std::abort();
  (void)bastion::audit::plainJson(entry).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  (void)bastion::audit::fhirAuditEvent(entry, source).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  return 0;
}
