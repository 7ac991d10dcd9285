// Content negotiation for WADO-RS (PS3.18 8.7): which transfer syntaxes a
// client accepts for DICOM parts and for frames, from its Accept header, and
// how each stored object is then delivered. Value types only: unit-tested
// without a server.
#pragma once

#include <map>
#include <string>
#include <string_view>

#include "bastion/common/status.h"

namespace bastion::web {

inline constexpr const char* kExplicitLittle = "1.2.840.10008.1.2.1";

struct SyntaxChoice {
  bool acceptable = false;      // some range matched the resource at all
  bool any = false;             // transfer-syntax=* : every stored syntax as is
  bool default_syntax = false;  // no transfer-syntax given: the default (Explicit VR Little Endian)
  // Syntaxes named explicitly (or implied by an image/* frame media type),
  // each with the media type its parts carry.
  std::map<std::string, std::string> syntaxes;
};

// For study/series/instance retrieval (parts of type application/dicom).
// An empty header accepts the default.
StatusOr<SyntaxChoice> acceptedDicomSyntaxes(std::string_view accept);
// For frames: application/octet-stream (with an optional transfer-syntax),
// or the compressed media types (image/jpeg, image/jls, image/jp2,
// image/dicom-rle) standing for their syntaxes.
StatusOr<SyntaxChoice> acceptedFrameSyntaxes(std::string_view accept);

enum class Delivery {
  kAsStored,   // the stored bytes
  kTranscode,  // decoded / re-encoded to Explicit VR Little Endian
  kRefuse,     // nothing acceptable: 406
};
// For one stored object of `stored_ts`. With the default syntax requested,
// lossy compressed objects go as stored (PS3.18 8.7.3.5.2: the default does
// not apply to pixel data the server holds only in lossy form), and so do
// compressed objects no codec here can decode (documented in
// docs/dicomweb.md); objects in other syntaxes are transcoded.
Delivery chooseDicomDelivery(const SyntaxChoice& choice, const std::string& stored_ts, bool can_transcode);
// For frames of an object in `stored_ts`: native frames are always raw
// pixels; compressed ones go as stored when their syntax is accepted,
// decoded when raw pixels are (and a codec can), else refused.
Delivery chooseFrameDelivery(const SyntaxChoice& choice, const std::string& stored_ts, bool can_decode);

bool isLossySyntax(std::string_view ts);

}  // namespace bastion::web
