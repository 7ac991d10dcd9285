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

namespace {

// The part every Accept header shares: no header or a wildcard range means
// the default; every other range with q > 0 goes to `take`.
template <typename Take>
StatusOr<SyntaxChoice> acceptedSyntaxes(std::string_view accept, Take take) {
  ASSIGN_OR_RETURN(auto ranges, parseAccept(accept));
  SyntaxChoice c;
  if (ranges.empty()) c.acceptable = c.default_syntax = true;
  for (const auto& r : ranges) {
    if (r.q <= 0) continue;
    if (r.media.type == "*/*" || r.media.type == "multipart/*") c.acceptable = c.default_syntax = true;
    else take(r.media, c);
  }
  return c;
}

}  // namespace

StatusOr<SyntaxChoice> acceptedDicomSyntaxes(std::string_view accept) {
  return acceptedSyntaxes(accept, [](const MediaType& m, SyntaxChoice& c) {
    auto type = m.params.find("type");
    if ((m.type == "multipart/related" && (type == m.params.end() || type->second == "application/dicom")) ||
        m.type == "application/dicom")
      takeSyntax(m, "application/dicom", c);
  });
}

StatusOr<SyntaxChoice> acceptedFrameSyntaxes(std::string_view accept) {
  return acceptedSyntaxes(accept, [](const MediaType& m, SyntaxChoice& c) {
    if (m.type != "multipart/related") return;
    auto type = m.params.find("type");
    const std::string part = type == m.params.end() ? "application/octet-stream" : type->second;
    if (part == "application/octet-stream") {
      takeSyntax(m, part, c);
    } else if (auto media = frameMediaTypes().find(part); media != frameMediaTypes().end()) {
      c.acceptable = true;
      auto ts = m.params.find("transfer-syntax");
      for (const auto& uid : media->second)
        if (ts == m.params.end() || ts->second == uid) c.syntaxes.emplace(uid, part);
    }
  });
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
