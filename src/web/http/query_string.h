// URL query strings ("a=1&b=x%20y") and percent-decoded paths, bounded.
#pragma once

#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "bastion/common/status.h"

namespace bastion::web {

using QueryParams = std::vector<std::pair<std::string, std::string>>;

// Splits and percent-decodes (also '+' -> ' '). kInvalidArgument on a bad
// escape, a NUL byte, more than `max_params` parameters or over `max_bytes`.
StatusOr<QueryParams> parseQueryString(std::string_view qs, size_t max_params = 200, size_t max_bytes = 8192);
// Percent-decodes one path segment ('+' stays '+'); refuses NUL, '/' and '\'.
StatusOr<std::string> decodePathSegment(std::string_view s);

}  // namespace bastion::web
