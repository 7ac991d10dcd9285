#include "web/http/query_string.h"

namespace bastion::web {
namespace {

int hexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

StatusOr<std::string> decode(std::string_view s, bool plus_is_space) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size(); ++i) {
    char c = s[i];
    if (c == '%') {
      if (i + 2 >= s.size()) return invalidArgument("truncated percent escape");
      const int hi = hexValue(s[i + 1]), lo = hexValue(s[i + 2]);
      if (hi < 0 || lo < 0) return invalidArgument("bad percent escape");
      c = static_cast<char>(hi * 16 + lo);
      i += 2;
    } else if (c == '+' && plus_is_space) {
      c = ' ';
    }
    if (c == '\0') return invalidArgument("NUL in URL");
    out += c;
  }
  return out;
}

}  // namespace

StatusOr<QueryParams> parseQueryString(std::string_view qs, size_t max_params, size_t max_bytes) {
  if (qs.size() > max_bytes) return invalidArgument("query string too long");
  QueryParams out;
  size_t start = 0;
  while (start <= qs.size()) {
    size_t amp = qs.find('&', start);
    if (amp == std::string_view::npos) amp = qs.size();
    const std::string_view pair = qs.substr(start, amp - start);
    start = amp + 1;
    if (pair.empty()) {
      if (amp == qs.size()) break;
      continue;
    }
    if (out.size() >= max_params) return invalidArgument("too many query parameters");
    const size_t eq = pair.find('=');
    ASSIGN_OR_RETURN(std::string k, decode(pair.substr(0, eq), true));
    std::string v;
    if (eq != std::string_view::npos) {
      ASSIGN_OR_RETURN(v, decode(pair.substr(eq + 1), true));
    }
    out.emplace_back(std::move(k), std::move(v));
    if (amp == qs.size()) break;
  }
  return out;
}

StatusOr<std::string> decodePathSegment(std::string_view s) {
  ASSIGN_OR_RETURN(std::string out, decode(s, false));
  if (out.find_first_of("/\\") != std::string::npos) return invalidArgument("separator in a path segment");
  return out;
}

}  // namespace bastion::web
