// DcmtkRenderer: web::InstanceRenderer on DCMTK (DICOM JSON, bulk data,
// rendering through dcmimage with the JPEG and PNG plugins, transcoding).
// In the archive process it is built without decoding (decode = false) and
// refuses compressed pixel data with kInvalidArgument: the codec worker
// (codec_worker.h), a sandboxed process, builds it with decoding on.
#pragma once

#include "web/dicomweb/renderer.h"

namespace bastion::dicom {

class DcmtkRenderer final : public web::InstanceRenderer {
 public:
  explicit DcmtkRenderer(bool decode = false) : decode_(decode) {}
  StatusOr<std::string> metadata(ByteView part10, size_t bulk_threshold, const std::string& bulk_prefix) override;
  StatusOr<Bytes> bulk(ByteView part10, uint32_t tag) override;
  StatusOr<Bytes> render(ByteView part10, int frame, bool png, int max_side) override;
  StatusOr<std::vector<Bytes>> frames(ByteView part10, const std::vector<int>& numbers, bool decode,
                                      std::string& ts_out) override;
  StatusOr<Bytes> transcode(ByteView part10) override;
  bool canTranscode(const std::string& ts) const override;

 private:
  const bool decode_;
};

// The compressed syntaxes DCMTK 3.6.7 can decode (RLE, JPEG baseline,
// extended and lossless, JPEG-LS); not JPEG 2000.
bool isDecodableSyntax(const std::string& ts);

}  // namespace bastion::dicom
