#include "web/http/accept.h"

#include <cstdlib>

namespace bastion::web {

StatusOr<std::vector<MediaRange>> parseAccept(std::string_view header, size_t max_ranges) {
  if (header.size() > 8192) return invalidArgument("Accept header too long");
  std::vector<MediaRange> out;
  size_t start = 0;
  bool quoted = false;
  for (size_t i = 0; i <= header.size(); ++i) {
    const char c = i < header.size() ? header[i] : ',';
    if (quoted) {
      if (c == '\\' && i + 1 < header.size()) ++i;
      else if (c == '"') quoted = false;
      continue;
    }
    if (c == '"') {
      quoted = true;
      continue;
    }
    if (c != ',') continue;
    std::string_view item = header.substr(start, i - start);
    start = i + 1;
    while (!item.empty() && (item.front() == ' ' || item.front() == '\t')) item.remove_prefix(1);
    while (!item.empty() && (item.back() == ' ' || item.back() == '\t')) item.remove_suffix(1);
    if (item.empty()) continue;  // "a, , b" is allowed (RFC 9110 5.6.1)
    if (out.size() >= max_ranges) return invalidArgument("too many media ranges in Accept");
    ASSIGN_OR_RETURN(MediaType media, parseMediaType(item));
    if (media.type.find('/') == std::string::npos) return invalidArgument("a media range needs type/subtype");
    MediaRange range{std::move(media), 1.0};
    if (auto q = range.media.params.find("q"); q != range.media.params.end()) {
      const std::string& v = q->second;
      char* end = nullptr;
      const double value = v.empty() || v.size() > 5 ? -1 : std::strtod(v.c_str(), &end);
      if (end != v.c_str() + v.size() || !(value >= 0.0 && value <= 1.0))
        return invalidArgument("q must be between 0 and 1");
      range.q = value;
      range.media.params.erase(q);
    }
    out.push_back(std::move(range));
  }
  if (quoted) return invalidArgument("unterminated quoted string in Accept");
  return out;
}

}  // namespace bastion::web
