#include "web/dicomweb/qido.h"

#include <cstdio>

namespace bastion::web {
namespace {

struct Attribute {
  uint32_t tag;
  const char* keyword;
  const char* vr;
};

// Attributes the index stores or computes (see SqliteIndex::query).
constexpr Attribute kAttributes[] = {
    {0x00080005, "SpecificCharacterSet", "CS"},
    {0x00080016, "SOPClassUID", "UI"},
    {0x00080018, "SOPInstanceUID", "UI"},
    {0x00080020, "StudyDate", "DA"},
    {0x00080030, "StudyTime", "TM"},
    {0x00080050, "AccessionNumber", "SH"},
    {0x00080060, "Modality", "CS"},
    {0x00080061, "ModalitiesInStudy", "CS"},
    {0x00080090, "ReferringPhysicianName", "PN"},
    {0x00081030, "StudyDescription", "LO"},
    {0x0008103E, "SeriesDescription", "LO"},
    {0x00100010, "PatientName", "PN"},
    {0x00100020, "PatientID", "LO"},
    {0x00100021, "IssuerOfPatientID", "LO"},
    {0x00100030, "PatientBirthDate", "DA"},
    {0x00100040, "PatientSex", "CS"},
    {0x00101000, "OtherPatientIDs", "LO"},
    {0x0020000D, "StudyInstanceUID", "UI"},
    {0x0020000E, "SeriesInstanceUID", "UI"},
    {0x00200010, "StudyID", "SH"},
    {0x00200011, "SeriesNumber", "IS"},
    {0x00200013, "InstanceNumber", "IS"},
    {0x00201200, "NumberOfPatientRelatedStudies", "IS"},
    {0x00201202, "NumberOfPatientRelatedSeries", "IS"},
    {0x00201204, "NumberOfPatientRelatedInstances", "IS"},
    {0x00201206, "NumberOfStudyRelatedSeries", "IS"},
    {0x00201208, "NumberOfStudyRelatedInstances", "IS"},
    {0x00201209, "NumberOfSeriesRelatedInstances", "IS"},
};

// Which attributes may be matching keys at each level (QIDO also allows
// keys of the levels above).
int levelOf(uint32_t tag) {
  switch (tag) {
    case 0x00100010:
    case 0x00100020:
    case 0x00100021:
    case 0x00100030:
    case 0x00100040:
    case 0x00101000:
      return 0;
    case 0x0020000E:
    case 0x00080060:
    case 0x00200011:
    case 0x0008103E:
      return 2;
    case 0x00080018:
    case 0x00080016:
    case 0x00200013:
      return 3;
    default:
      return 1;
  }
}

}  // namespace

std::string tagHex(uint32_t tag) {
  char b[9];
  std::snprintf(b, sizeof b, "%08X", tag);
  return b;
}

uint32_t tagFromKey(std::string_view key) {
  for (const auto& a : kAttributes)
    if (key == a.keyword) return a.tag;
  if (key.size() == 8) {
    uint32_t t = 0;
    for (char c : key) {
      int v = c >= '0' && c <= '9'   ? c - '0'
              : c >= 'A' && c <= 'F' ? c - 'A' + 10
              : c >= 'a' && c <= 'f' ? c - 'a' + 10
                                     : -1;
      if (v < 0) return 0;
      t = t << 4 | static_cast<uint32_t>(v);
    }
    for (const auto& a : kAttributes)
      if (a.tag == t) return t;
  }
  return 0;
}

const char* vrOf(uint32_t tag) {
  for (const auto& a : kAttributes)
    if (a.tag == tag) return a.vr;
  return "";
}

StatusOr<QidoRequest> parseQido(QueryLevel level, const std::string& study_uid, const std::string& series_uid,
                                const QueryParams& params, size_t max_limit) {
  QidoRequest r;
  r.query.level = level;
  r.query.limit = max_limit;
  const int lv = static_cast<int>(level);
  for (const auto& [k, v] : params) {
    if (k == "limit" || k == "offset") {
      if (v.empty() || v.size() > 9 || v.find_first_not_of("0123456789") != std::string::npos)
        return invalidArgument(k + " must be a non-negative number");
      const size_t n = std::stoul(v);
      if (k == "limit")
        r.query.limit = std::min(n == 0 ? max_limit : n, max_limit);
      else
        r.offset = n;
    } else if (k == "includefield") {
      // Every attribute the index holds is returned (within scope), so
      // includefield only has to name attributes that exist or be "all".
      size_t start = 0;
      while (start <= v.size()) {
        size_t comma = v.find(',', start);
        if (comma == std::string::npos) comma = v.size();
        const std::string f = v.substr(start, comma - start);
        if (!f.empty() && f != "all" && tagFromKey(f) == 0) return invalidArgument("unknown includefield " + f);
        start = comma + 1;
      }
    } else if (k == "fuzzymatching") {
      if (v != "false") return invalidArgument("fuzzy matching is not supported");
    } else {
      const uint32_t tag = tagFromKey(k);
      if (tag == 0) return invalidArgument("unsupported matching key " + k.substr(0, 64));
      if (levelOf(tag) > lv) return invalidArgument(k + " is not a key at this level");
      if (r.query.keys.count(tag)) return invalidArgument("repeated matching key " + k);
      r.query.keys[tag] = v;
    }
  }
  if (!study_uid.empty()) r.query.keys[0x0020000D] = study_uid;
  if (!series_uid.empty()) r.query.keys[0x0020000E] = series_uid;
  return r;
}

nlohmann::json toDicomJson(const QueryRow& row, QueryLevel level, const std::string& base_url) {
  nlohmann::json out = nlohmann::json::object();
  for (const auto& [tag, value] : row) {
    const std::string vr = vrOf(tag);
    if (vr.empty()) continue;
    if (levelOf(tag) > static_cast<int>(level)) continue;
    nlohmann::json attr = {{"vr", vr}};
    if (!value.empty()) {
      nlohmann::json values = nlohmann::json::array();
      size_t start = 0;
      while (start <= value.size()) {  // multi-valued attributes are '\'-separated
        size_t bs = value.find('\\', start);
        if (bs == std::string::npos) bs = value.size();
        std::string v = value.substr(start, bs - start);
        if (vr == "PN")
          values.push_back({{"Alphabetic", v}});
        else if (vr == "IS" && !v.empty() && v.find_first_not_of("0123456789-+ ") == std::string::npos)
          values.push_back(std::stoll(v));
        else
          values.push_back(v);
        start = bs + 1;
      }
      attr["Value"] = values;
    }
    out[tagHex(tag)] = attr;
  }
  auto uid = [&](uint32_t t) {
    auto it = row.find(t);
    return it == row.end() ? std::string() : it->second;
  };
  std::string url = base_url + "/studies/" + uid(0x0020000D);
  if (level >= QueryLevel::kSeries) url += "/series/" + uid(0x0020000E);
  if (level == QueryLevel::kImage) url += "/instances/" + uid(0x00080018);
  if (level != QueryLevel::kPatient) out["00081190"] = {{"vr", "UR"}, {"Value", {url}}};
  return out;
}

}  // namespace bastion::web
