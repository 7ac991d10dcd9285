// Fuzz target for the HTTP-side parsers: media types (Content-Type, Accept
// and WADO-RS negotiation),
// multipart/related bodies fed in uneven chunks, query strings and their
// QIDO-RS interpretation, percent-decoded path segments.
// Input: first line = Content-Type, rest = body; the body is also parsed as a query string.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "web/dicomweb/negotiation.h"
#include "web/dicomweb/qido.h"
#include "web/http/accept.h"
#include "web/http/multipart.h"
#include "web/http/query_string.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace bastion;
  using namespace bastion::web;
  std::string_view in(reinterpret_cast<const char*>(data), size);
  const size_t nl = in.find('\n');
  const std::string_view ct = in.substr(0, nl), body = nl == std::string_view::npos ? "" : in.substr(nl + 1);
  auto mt = parseMediaType(ct);
  const std::string boundary = mt.ok() && mt->params.count("boundary") ? mt->params.at("boundary") : "b";
  size_t total = 0;
  MultipartParser parser(boundary, {50, 1024, 4096},
                         {[](const std::map<std::string, std::string>&) { return okStatus(); },
                          [&](ByteView d) {
                            total += d.size();
                            return okStatus();
                          },
                          [] { return okStatus(); }});
  // Uneven chunks: 1, 2, 3, ... bytes, so delimiters straddle every boundary.
  size_t pos = 0, step = 1;
  while (pos < body.size()) {
    const size_t n = std::min(step++, body.size() - pos);
    if (!parser.feed(ByteView(reinterpret_cast<const uint8_t*>(body.data() + pos), n)).ok()) break;
    pos += n;
  }
  (void)parser.finish().ok();
  if (total > body.size()) __builtin_trap();  // data out never exceeds data in
  auto params = parseQueryString(body);
  if (params.ok()) {
    for (auto level : {QueryLevel::kStudy, QueryLevel::kSeries, QueryLevel::kImage})
      (void)parseQido(level, "1.2", "", *params, 100).ok();
  }
  (void)decodePathSegment(ct).ok();
  // The first line as an Accept header, through WADO-RS negotiation.
  if (auto ranges = parseAccept(ct); ranges.ok()) {
    for (const auto& r : *ranges)
      if (!(r.q >= 0 && r.q <= 1)) __builtin_trap();
  }
  for (auto choice : {acceptedDicomSyntaxes(ct), acceptedFrameSyntaxes(ct)}) {
    if (!choice.ok()) continue;
    for (const char* ts : {"1.2.840.10008.1.2", "1.2.840.10008.1.2.5", "1.2.840.10008.1.2.4.50"}) {
      (void)chooseDicomDelivery(*choice, ts, true);
      (void)chooseFrameDelivery(*choice, ts, false);
    }
  }
  return 0;
}
