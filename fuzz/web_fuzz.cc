// Fuzz target for the HTTP-side parsers: media types (Content-Type, Accept
// and WADO-RS negotiation),
// multipart/related bodies fed in uneven chunks, query strings and their
// QIDO-RS interpretation, percent-decoded path segments.
// Input: first line = Content-Type, rest = body; the body is also parsed as a query string.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

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
  // The same body whole and in uneven chunks (1, 2, 3, ... bytes, so that
  // delimiters straddle every boundary, and 64-byte ones): the parts must be
  // the same whenever both parses succeed, and data out never exceeds data in.
  struct Parsed {
    bool ok = true;
    std::vector<std::string> parts;  // headers, then the part's data
    std::string current;
    size_t total = 0;
  };
  auto parse = [&](size_t first, size_t growth) {
    Parsed out;
    MultipartParser parser(boundary, {50, 1024, 4096},
                           {[&](const std::map<std::string, std::string>& headers) {
                              out.current.clear();
                              for (const auto& [k, v] : headers) out.current += k + ": " + v + "\n";
                              out.current += "\n";
                              return okStatus();
                            },
                            [&](ByteView d) {
                              out.total += d.size();
                              out.current.append(reinterpret_cast<const char*>(d.data()), d.size());
                              return okStatus();
                            },
                            [&] {
                              out.parts.push_back(out.current);
                              return okStatus();
                            }});
    size_t pos = 0, step = first;
    while (out.ok && pos < body.size()) {
      const size_t n = std::min(step, body.size() - pos);
      step += growth;
      out.ok = parser.feed(ByteView(reinterpret_cast<const uint8_t*>(body.data() + pos), n)).ok();
      pos += n;
    }
    out.ok = out.ok && parser.finish().ok();
    if (out.total > body.size()) __builtin_trap();
    return out;
  };
  const Parsed whole = parse(body.size() + 1, 0), uneven = parse(1, 1), even = parse(64, 0);
  for (const Parsed* p : {&uneven, &even})
    if (whole.ok && p->ok && whole.parts != p->parts) __builtin_trap();
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
