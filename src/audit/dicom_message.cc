#include "audit/dicom_message.h"

#include <arpa/inet.h>

#include <array>

#include "bastion/common/clock.h"

namespace bastion::audit {
namespace {

constexpr const char* kDcm = "DCM";
constexpr const char* kLocal = "99BASTION";  // local coding scheme (PS3.16 8.2: "99" prefix)

Code dcm(const char* code, const char* text) { return {code, kDcm, text}; }

bool startsWith(const std::string& s, std::string_view p) { return s.compare(0, p.size(), p) == 0; }

bool isIpAddress(const std::string& s) {
  std::array<uint8_t, 16> buf{};
  return inet_pton(AF_INET, s.c_str(), buf.data()) == 1 || inet_pton(AF_INET6, s.c_str(), buf.data()) == 1;
}

// Appends the code point `cp` as UTF-8.
void putUtf8(std::string& out, uint32_t cp) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

// Decodes one UTF-8 sequence at s[i]; returns 0xFFFD (consuming one byte) if
// it is not valid, shortest-form UTF-8 of a scalar value.
uint32_t nextCodePoint(std::string_view s, size_t& i) {
  const auto b = [&](size_t k) { return static_cast<uint8_t>(s[k]); };
  const uint8_t c = b(i);
  size_t len = c < 0x80 ? 1 : (c & 0xE0) == 0xC0 ? 2 : (c & 0xF0) == 0xE0 ? 3 : (c & 0xF8) == 0xF0 ? 4 : 0;
  if (len == 0 || i + len > s.size()) {
    ++i;
    return 0xFFFD;
  }
  uint32_t cp = len == 1 ? c : len == 2 ? (c & 0x1F) : len == 3 ? (c & 0x0F) : (c & 0x07);
  for (size_t k = 1; k < len; ++k) {
    if ((b(i + k) & 0xC0) != 0x80) {
      ++i;
      return 0xFFFD;
    }
    cp = (cp << 6) | (b(i + k) & 0x3F);
  }
  static constexpr uint32_t kMin[] = {0, 0, 0x80, 0x800, 0x10000};
  if (cp < kMin[len] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) {
    ++i;
    return 0xFFFD;
  }
  i += len;
  return cp;
}

using Attrs = std::vector<std::pair<std::string, std::string>>;

class Xml {
 public:
  void open(const char* name, const Attrs& attrs, bool empty = false) {
    out_ += '<';
    out_ += name;
    for (const auto& [k, v] : attrs) {
      out_ += ' ';
      out_ += k;
      out_ += "=\"";
      out_ += xmlEscape(v);
      out_ += '"';
    }
    out_ += empty ? "/>" : ">";
  }
  void close(const char* name) {
    out_ += "</";
    out_ += name;
    out_ += '>';
  }
  void element(const char* name, const std::string& text) {
    open(name, {});
    out_ += xmlEscape(text);
    close(name);
  }
  void code(const char* name, const Code& c) {
    open(name, {{"csd-code", c.code}, {"codeSystemName", c.system}, {"originalText", c.text}}, true);
  }
  std::string take() { return std::move(out_); }

 private:
  std::string out_;
};

}  // namespace

std::string xmlEscape(std::string_view s) {
  std::string out;
  out.reserve(s.size() + 16);
  size_t i = 0;
  while (i < s.size()) {
    const uint32_t cp = nextCodePoint(s, i);
    switch (cp) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      case '\'': out += "&apos;"; break;
      case '\t': out += "&#9;"; break;
      case '\n': out += "&#10;"; break;
      case '\r': out += "&#13;"; break;
      default:
        // XML 1.0 Char: no other C0 control, no surrogates, no FFFE/FFFF.
        if (cp < 0x20 || cp == 0xFFFE || cp == 0xFFFF) {
          putUtf8(out, 0xFFFD);
        } else {
          putUtf8(out, cp);
        }
    }
  }
  return out;
}

int outcomeIndicator(const std::string& outcome) {
  if (outcome == "success") return 0;
  if (outcome == "denied") return 4;
  return 8;
}

EventCodes classify(const AuditEvent& e) {
  const std::string& a = e.action;
  const auto alert = [](Code type) { return EventCodes{dcm("110113", "Security Alert"), std::move(type), 'E', ""}; };
  if (a == "start") return {dcm("110100", "Application Activity"), dcm("110120", "Application Start"), 'E', ""};
  if (a == "stop") return {dcm("110100", "Application Activity"), dcm("110121", "Application Stop"), 'E', ""};
  if (a == "logout" || a == "session-revoke")
    return {dcm("110114", "User Authentication"), dcm("110123", "Logout"), 'E', ""};
  if (a == "login" || a == "dicom-identity" || a == "jwt-auth" || a == "token-auth" || a == "http-auth" ||
      a == "session-issue")
    return {dcm("110114", "User Authentication"), dcm("110122", "Login"), 'E', ""};
  if (a == "find" || a == "qido") return {dcm("110112", "Query"), std::nullopt, 'E', "110153"};
  if (a == "store" || a == "stow") return {dcm("110104", "DICOM Instances Transferred"), std::nullopt, 'C', "110153"};
  if (a == "import") return {dcm("110107", "Import"), std::nullopt, 'C', "110155"};
  if (a == "export") return {dcm("110106", "Export"), std::nullopt, 'R', "110152"};
  if (a == "get" || a == "move" || a == "wado" || a == "wado-uri" || a == "wado-frames" || a == "wado-bulkdata")
    return {dcm("110104", "DICOM Instances Transferred"), std::nullopt, 'R', "110152"};
  if (startsWith(a, "wado-")) return {dcm("110103", "DICOM Instances Accessed"), std::nullopt, 'R', ""};
  if (a == "delete") return {dcm("110105", "DICOM Study Deleted"), std::nullopt, 'D', ""};
  if (startsWith(a, "audit-read")) return {dcm("110101", "Audit Log Used"), std::nullopt, 'R', ""};
  if (startsWith(a, "break-glass")) return alert(dcm("110127", "Emergency Override Started"));
  if (a == "role-set" || a == "user-roles") return alert(dcm("110136", "Security Roles Changed"));
  if (startsWith(a, "grant-")) return alert(dcm("110135", "Object Security Attributes Changed"));
  if (startsWith(a, "user-") || startsWith(a, "mfa-") || startsWith(a, "token-") || a == "enrol" ||
      a == "password-change")
    return alert(dcm("110137", "User Security Attributes Changed"));
  if (startsWith(a, "node-")) return alert(dcm("110128", "Network Configuration"));
  if (startsWith(a, "config") || startsWith(a, "key")) return alert(dcm("110129", "Security Configuration"));
  if (a == "association" || a == "echo") return alert(dcm("110126", "Node Authentication"));
  // Archive-specific alerts (integrity failures, export backlog, ...): a local code.
  return alert(Code{a, kLocal, a});
}

std::string dicomAuditXml(const AuditEntry& entry, const AuditSource& src) {
  const AuditEvent& e = entry.event;
  const EventCodes c = classify(e);
  Xml x;
  x.open("AuditMessage", {});
  x.open("EventIdentification", {{"EventActionCode", std::string(1, c.action)},
                                 {"EventDateTime", formatUtc(e.time)},
                                 {"EventOutcomeIndicator", std::to_string(outcomeIndicator(e.outcome))}});
  x.code("EventID", c.event_id);
  if (c.type) x.code("EventTypeCode", *c.type);
  std::string description = e.detail;
  if (!e.rule.empty()) description += (description.empty() ? "" : "; ") + std::string("rule ") + e.rule;
  if (!description.empty()) x.element("EventOutcomeDescription", description);
  x.close("EventIdentification");

  // The requestor: a user (with the node as alternative ID) or a node.
  const std::string requestor = !e.user.empty() ? e.user : !e.actor_ae.empty() ? e.actor_ae : src.source_id;
  Attrs attrs{{"UserID", requestor}};
  if (!e.user.empty() && !e.actor_ae.empty() && e.actor_ae != e.user) attrs.emplace_back("AlternativeUserID", e.actor_ae);
  attrs.emplace_back("UserIsRequestor", "true");
  if (!e.source_address.empty()) {
    attrs.emplace_back("NetworkAccessPointID", e.source_address);
    attrs.emplace_back("NetworkAccessPointTypeCode", isIpAddress(e.source_address) ? "2" : "1");
  }
  const bool role = !c.requestor_role.empty();
  x.open("ActiveParticipant", attrs, !role);
  if (role) {
    x.code("RoleIDCode", c.requestor_role == "110153"   ? dcm("110153", "Source Role ID")
                         : c.requestor_role == "110152" ? dcm("110152", "Destination Role ID")
                                                        : dcm("110155", "Source Media"));
    x.close("ActiveParticipant");
  }
  // The archive itself.
  x.open("ActiveParticipant", {{"UserID", src.source_id}, {"UserIsRequestor", "false"}});
  x.code("RoleIDCode", c.requestor_role == "110153"   ? dcm("110152", "Destination Role ID")
                       : c.requestor_role == "110152" ? dcm("110153", "Source Role ID")
                                                      : dcm("110150", "Application"));
  x.close("ActiveParticipant");

  Attrs source{{"AuditSourceID", src.source_id}};
  if (!src.enterprise_site.empty()) source.insert(source.begin(), {"AuditEnterpriseSiteID", src.enterprise_site});
  x.open("AuditSourceIdentification", source);
  x.code("AuditSourceTypeCode", Code{"4", kDcm, "Application Server Process"});
  x.close("AuditSourceIdentification");

  if (!e.patient_id.empty()) {
    x.open("ParticipantObjectIdentification",
           {{"ParticipantObjectID", e.patient_id}, {"ParticipantObjectTypeCode", "1"},
            {"ParticipantObjectTypeCodeRole", "1"}});
    x.code("ParticipantObjectIDTypeCode", Code{"2", "RFC-3881", "Patient Number"});
    x.element("ParticipantObjectName", e.patient_name);  // the schema wants a Name (or a Query)
    x.close("ParticipantObjectIdentification");
  }
  if (!e.study_uid.empty()) {
    x.open("ParticipantObjectIdentification",
           {{"ParticipantObjectID", e.study_uid}, {"ParticipantObjectTypeCode", "2"},
            {"ParticipantObjectTypeCodeRole", "3"}});
    x.code("ParticipantObjectIDTypeCode", dcm("110180", "Study Instance UID"));
    x.element("ParticipantObjectName", e.study_uid);
    if (e.instance_count) {
      x.open("ParticipantObjectDescription", {});
      x.open("SOPClass", {{"NumberOfInstances", std::to_string(e.instance_count)}}, true);
      x.close("ParticipantObjectDescription");
    }
    x.close("ParticipantObjectIdentification");
  }
  if (c.event_id.code == "110112") {
    // The query itself, base64 (PS3.15 A.5.3.10): never parsed by a reader.
    // DIMSE queries are recorded as their keys in JSON, QIDO-RS as its query
    // string; the TransferSyntax detail is the one the standard requires.
    x.open("ParticipantObjectIdentification",
           {{"ParticipantObjectID", "1.2.840.10008.5.1.4.1.2.2.1"}, {"ParticipantObjectTypeCode", "2"},
            {"ParticipantObjectTypeCodeRole", "3"}});
    x.code("ParticipantObjectIDTypeCode", dcm("110181", "SOP Class UID"));
    x.element("ParticipantObjectQuery", base64(asBytes(e.query)));
    x.open("ParticipantObjectDetail", {{"type", "TransferSyntax"}, {"value", base64(asBytes("1.2.840.10008.1.2.1"))}},
           true);
    x.close("ParticipantObjectIdentification");
  }
  if (c.event_id.code == "110101") {
    x.open("ParticipantObjectIdentification",
           {{"ParticipantObjectID", "urn:bastion:audit-trail:" + src.source_id}, {"ParticipantObjectTypeCode", "2"},
            {"ParticipantObjectTypeCodeRole", "13"}});
    x.code("ParticipantObjectIDTypeCode", Code{"12", "RFC-3881", "URI"});
    x.element("ParticipantObjectName", "Security Audit Log");
    x.close("ParticipantObjectIdentification");
  }
  x.close("AuditMessage");
  return x.take();
}

namespace {
constexpr const char* kDcmSystem = "http://dicom.nema.org/resources/ontology/DCM";
nlohmann::json coding(const Code& c) {
  return {{"system", c.system == kDcm ? std::string(kDcmSystem) : "urn:bastion:" + c.system},
          {"code", c.code},
          {"display", c.text}};
}
}  // namespace

nlohmann::json fhirAuditEvent(const AuditEntry& entry, const AuditSource& src) {
  const AuditEvent& e = entry.event;
  const EventCodes c = classify(e);
  nlohmann::json j{{"resourceType", "AuditEvent"},
                   {"id", "bastion-" + std::to_string(entry.seq)},
                   {"type", coding(c.event_id)},
                   {"action", std::string(1, c.action)},
                   {"recorded", formatUtc(e.time)},
                   {"outcome", std::to_string(outcomeIndicator(e.outcome))}};
  if (c.type) j["subtype"] = nlohmann::json::array({coding(*c.type)});
  std::string description = e.detail;
  if (!e.rule.empty()) description += (description.empty() ? "" : "; ") + std::string("rule ") + e.rule;
  if (!description.empty()) j["outcomeDesc"] = description;
  nlohmann::json requestor{{"requestor", true},
                           {"who", {{"identifier", {{"value", !e.user.empty() ? e.user : e.actor_ae}}}}}};
  if (!e.user.empty() && !e.actor_ae.empty()) requestor["altId"] = e.actor_ae;
  if (!e.source_address.empty())
    requestor["network"] = {{"address", e.source_address}, {"type", isIpAddress(e.source_address) ? "2" : "1"}};
  if (!e.user.empty())
    requestor["type"] = {{"coding", {{{"system", "http://terminology.hl7.org/CodeSystem/extra-security-role-type"},
                                      {"code", "humanuser"}}}}};
  j["agent"] = nlohmann::json::array(
      {requestor, {{"requestor", false}, {"who", {{"display", src.source_id}}}}});
  j["source"] = {{"observer", {{"display", src.source_id}}},
                 {"type", {{{"system", "http://terminology.hl7.org/CodeSystem/security-source-type"},
                            {"code", "4"},
                            {"display", "Application Server"}}}}};
  if (!src.enterprise_site.empty()) j["source"]["site"] = src.enterprise_site;
  auto entities = nlohmann::json::array();
  if (!e.patient_id.empty()) {
    nlohmann::json p{{"what", {{"identifier", {{"value", e.patient_id}}}}},
                     {"type", {{"system", "http://terminology.hl7.org/CodeSystem/audit-entity-type"}, {"code", "1"}}},
                     {"role", {{"system", "http://terminology.hl7.org/CodeSystem/object-role"}, {"code", "1"}}}};
    if (!e.patient_name.empty()) p["name"] = e.patient_name;
    entities.push_back(p);
  }
  if (!e.study_uid.empty()) {
    nlohmann::json st{{"what", {{"identifier", {{"system", "urn:dicom:uid"}, {"value", "urn:oid:" + e.study_uid}}}}},
                      {"type", {{"system", "http://terminology.hl7.org/CodeSystem/audit-entity-type"}, {"code", "2"}}},
                      {"role", {{"system", "http://terminology.hl7.org/CodeSystem/object-role"}, {"code", "3"}}}};
    if (e.instance_count) st["description"] = std::to_string(e.instance_count) + " instance(s)";
    entities.push_back(st);
  }
  if (!e.query.empty())
    entities.push_back({{"type", {{"system", "http://terminology.hl7.org/CodeSystem/audit-entity-type"}, {"code", "2"}}},
                        {"role", {{"system", "http://terminology.hl7.org/CodeSystem/object-role"}, {"code", "24"}}},
                        {"query", base64(asBytes(e.query))}});
  if (!entities.empty()) j["entity"] = entities;
  return j;
}

nlohmann::json plainJson(const AuditEntry& entry) {
  const AuditEvent& e = entry.event;
  nlohmann::json j;
  j["seq"] = entry.seq;
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
  if (!e.patient_id.empty()) j["patient_id"] = e.patient_id;
  if (!e.patient_name.empty()) j["patient_name"] = e.patient_name;
  if (!e.query.empty()) j["query"] = e.query;
  return j;
}

}  // namespace bastion::audit
