// The Accept header (RFC 9110 12.5.1): a list of media ranges with
// parameters and quality values, bounded for hostile input.
#pragma once

#include <string_view>
#include <vector>

#include "web/http/multipart.h"  // MediaType

namespace bastion::web {

struct MediaRange {
  MediaType media;  // type lower-cased ("multipart/related", "*/*"); params unquoted, without q
  double q = 1.0;   // 0..1; 0 means "not acceptable"
};

// Splits on commas outside quoted strings. kInvalidArgument for a malformed
// range, a q outside 0..1, more than `max_ranges` ranges or over 8 KiB.
// An empty header gives an empty list (the caller's default applies).
StatusOr<std::vector<MediaRange>> parseAccept(std::string_view header, size_t max_ranges = 64);

}  // namespace bastion::web
