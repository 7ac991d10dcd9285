// DcmtkRenderer: web::InstanceRenderer on DCMTK (DICOM JSON, bulk data,
// rendering through dcmimage with the JPEG and PNG plugins).
#pragma once

#include "web/dicomweb/renderer.h"

namespace bastion::dicom {

class DcmtkRenderer final : public web::InstanceRenderer {
 public:
  StatusOr<std::string> metadata(ByteView part10, size_t bulk_threshold, const std::string& bulk_prefix) override;
  StatusOr<Bytes> bulk(ByteView part10, uint32_t tag) override;
  StatusOr<Bytes> render(ByteView part10, int frame, bool png, int max_side) override;
  StatusOr<std::vector<Bytes>> frames(ByteView part10, const std::vector<int>& numbers, std::string& ts_out) override;
};

}  // namespace bastion::dicom
