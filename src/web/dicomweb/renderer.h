// What DICOMweb needs from a DICOM toolkit, as an interface (the web
// front-end includes no DCMTK; src/dicom/dcmtk/renderer implements it).
#pragma once

#include <string>

#include "bastion/common/bytes.h"
#include "bastion/common/status.h"

namespace bastion::web {

class InstanceRenderer {
 public:
  virtual ~InstanceRenderer() = default;
  // The DICOM JSON model (one object) of a stored Part-10 object. Binary
  // values (OB, OW, OF, OD, OL, OV, UN) over `bulk_threshold` bytes are given as
  // BulkDataURI = `bulk_prefix` + "/" + 8 hex digits of the tag.
  virtual StatusOr<std::string> metadata(ByteView part10, size_t bulk_threshold, const std::string& bulk_prefix) = 0;
  // The value of a top-level binary element; kNotFound if absent,
  // kInvalidArgument for encapsulated (compressed) pixel data.
  virtual StatusOr<Bytes> bulk(ByteView part10, uint32_t tag) = 0;
  // Frames (1-based numbers). Native pixel data is cut into frames. For
  // encapsulated (compressed) syntaxes: with `decode`, each frame decoded to
  // native pixels (little endian, as Explicit VR Little Endian would hold
  // them); without, each frame's compressed bytes (its fragments joined).
  // `ts_out` receives the stored syntax. kNotFound for a frame that does not
  // exist; kInvalidArgument for a syntax that cannot be decoded.
  virtual StatusOr<std::vector<Bytes>> frames(ByteView part10, const std::vector<int>& numbers, bool decode,
                                              std::string& ts_out) = 0;
  // Frame `frame` (1-based) as the image a viewer shows: the data set's first
  // window (or min-max), JPEG or PNG, scaled so that its longer side is at most
  // `max_side` (0: full size). Compressed pixel data is decoded (in the codec
  // worker, R20); kInvalidArgument for a syntax that cannot be decoded.
  virtual StatusOr<Bytes> render(ByteView part10, int frame, bool png, int max_side) = 0;
  // The object re-encoded as Explicit VR Little Endian (compressed pixel data
  // decoded), a Part-10 file; kInvalidArgument for a syntax that cannot be
  // decoded (e.g. JPEG 2000, which DCMTK 3.6.7 has no decoder for).
  virtual StatusOr<Bytes> transcode(ByteView part10) = 0;
  // Whether transcode() can turn an object stored in `ts` into Explicit VR
  // Little Endian.
  virtual bool canTranscode(const std::string& ts) const = 0;
};

}  // namespace bastion::web
