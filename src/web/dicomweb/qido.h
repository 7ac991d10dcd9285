// QIDO-RS (PS3.18 10.6): query parameters -> the archive's Query, and
// QueryRows -> the DICOM JSON model (PS3.18 F.2). The attributes are those
// the index knows; an unknown matching key is an error (400), never ignored.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>

#include "bastion/index/index.h"
#include "web/http/query_string.h"

namespace bastion::web {

struct QidoRequest {
  Query query;
  size_t offset = 0;
};

// `level` from the route; `study_uid`/`series_uid` from the path ("" if
// absent). `max_limit` caps `limit` (and applies when none is given).
StatusOr<QidoRequest> parseQido(QueryLevel level, const std::string& study_uid, const std::string& series_uid,
                                const QueryParams& params, size_t max_limit);

// 8 upper-case hex digits of a tag, as DICOM JSON names attributes.
std::string tagHex(uint32_t tag);
// A keyword (PatientName) or 8 hex digits (00100010) -> tag; 0 if unknown.
uint32_t tagFromKey(std::string_view key);
// The VR the DICOM JSON model gives an attribute the index returns ("" if unknown).
const char* vrOf(uint32_t tag);

// One match as a DICOM JSON object. `base_url` builds RetrieveURL (0008,1190).
nlohmann::json toDicomJson(const QueryRow& row, QueryLevel level, const std::string& base_url);

}  // namespace bastion::web
