#include "web/dicomweb/negotiation.h"

#include <set>

#include "dicom/parse/dicom_scanner.h"
#include "web/http/accept.h"

namespace bastion::web {
namespace {

// Compressed frame media types (PS3.18 Table 8.7.3-2) and their syntaxes.
const std::map<std::string, std::set<std::string>>& frameMediaTypes() {
  static const std::map<std::string, std::set<std::string>> kTypes = {
      {"image/jpeg",
       {"1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.51", "1.2.840.10008.1.2.4.57", "1.2.840.10008.1.2.4.70"}},
      {"image/jls", {"1.2.840.10008.1.2.4.80", "1.2.840.10008.1.2.4.81"}},
      {"image/jp2", {"1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.4.91"}},
      {"image/jpx", {"1.2.840.10008.1.2.4.92", "1.2.840.10008.1.2.4.93"}},
      {"image/dicom-rle", {"1.2.840.10008.1.2.5"}},
  };
  return kTypes;
}

// Applies one range's transfer-syntax parameter for parts of `part_type`.
void takeSyntax(const MediaType& m, const std::string& part_type, SyntaxChoice& c) {
  c.acceptable = true;
  auto ts = m.params.find("transfer-syntax");
  if (ts == m.params.end()) c.default_syntax = true;
  else if (ts->second == "*") c.any = true;
  else c.syntaxes.emplace(ts->second, part_type);
}

bool isNative(std::string_view ts) { return !dicom::isEncapsulatedSyntax(ts); }

}  // namespace

bool isLossySyntax(std::string_view ts) {
  static const std::set<std::string, std::less<>> kLossy = {
      "1.2.840.10008.1.2.4.50",  "1.2.840.10008.1.2.4.51",  "1.2.840.10008.1.2.4.81",  "1.2.840.10008.1.2.4.91",
      "1.2.840.10008.1.2.4.93",  "1.2.840.10008.1.2.4.100", "1.2.840.10008.1.2.4.101", "1.2.840.10008.1.2.4.102",
      "1.2.840.10008.1.2.4.103", "1.2.840.10008.1.2.4.104", "1.2.840.10008.1.2.4.105", "1.2.840.10008.1.2.4.106",
      "1.2.840.10008.1.2.4.203"};
  return kLossy.count(ts) > 0;
}

StatusOr<SyntaxChoice> acceptedDicomSyntaxes(std::string_view accept) {
  ASSIGN_OR_RETURN(auto ranges, parseAccept(accept));
  SyntaxChoice c;
  if (ranges.empty()) {
    c.acceptable = c.default_syntax = true;
    return c;
  }
  for (const auto& r : ranges) {
    if (r.q <= 0) continue;
    const std::string& t = r.media.type;
    if (t == "*/*" || t == "multipart/*") {
      c.acceptable = c.default_syntax = true;
    } else if (t == "multipart/related") {
      auto type = r.media.params.find("type");
      if (type == r.media.params.end() || type->second == "application/dicom")
        takeSyntax(r.media, "application/dicom", c);
    } else if (t == "application/dicom") {
      takeSyntax(r.media, "application/dicom", c);
    }
  }
  return c;
}

StatusOr<SyntaxChoice> acceptedFrameSyntaxes(std::string_view accept) {
  ASSIGN_OR_RETURN(auto ranges, parseAccept(accept));
  SyntaxChoice c;
  if (ranges.empty()) {
    c.acceptable = c.default_syntax = true;
    return c;
  }
  for (const auto& r : ranges) {
    if (r.q <= 0) continue;
    const std::string& t = r.media.type;
    if (t == "*/*" || t == "multipart/*") {
      c.acceptable = c.default_syntax = true;
      continue;
    }
    if (t != "multipart/related") continue;
    auto type = r.media.params.find("type");
    const std::string part = type == r.media.params.end() ? "application/octet-stream" : type->second;
    if (part == "application/octet-stream") {
      takeSyntax(r.media, part, c);
    } else if (auto m = frameMediaTypes().find(part); m != frameMediaTypes().end()) {
      c.acceptable = true;
      auto ts = r.media.params.find("transfer-syntax");
      for (const auto& uid : m->second)
        if (ts == r.media.params.end() || ts->second == uid) c.syntaxes.emplace(uid, part);
    }
  }
  return c;
}

Delivery chooseDicomDelivery(const SyntaxChoice& c, const std::string& stored, bool can_transcode) {
  if (!c.acceptable) return Delivery::kRefuse;
  if (c.any || c.syntaxes.count(stored)) return Delivery::kAsStored;
  const bool want_explicit = c.default_syntax || c.syntaxes.count(kExplicitLittle);
  if (!want_explicit) return Delivery::kRefuse;
  if (stored == kExplicitLittle) return Delivery::kAsStored;
  if (c.default_syntax && isLossySyntax(stored)) return Delivery::kAsStored;
  if (can_transcode) return Delivery::kTranscode;
  if (c.default_syntax && !isNative(stored)) return Delivery::kAsStored;
  return Delivery::kRefuse;
}

Delivery chooseFrameDelivery(const SyntaxChoice& c, const std::string& stored, bool can_decode) {
  if (!c.acceptable) return Delivery::kRefuse;
  const bool raw = c.default_syntax || c.syntaxes.count(kExplicitLittle);
  if (isNative(stored)) return raw || c.any ? Delivery::kAsStored : Delivery::kRefuse;
  if (c.any || c.syntaxes.count(stored)) return Delivery::kAsStored;
  if (raw && can_decode) return Delivery::kTranscode;
  return Delivery::kRefuse;
}

}  // namespace bastion::web
