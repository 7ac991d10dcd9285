// Fuzz target for DicomScanner and the Part-10 meta parser: the first byte
// picks the encoding, the rest is the data set. Must never crash, hang or
// allocate proportionally to a declared length.
#include <cstddef>
#include <cstdint>

#include "dicom/parse/dicom_scanner.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace bastion::dicom;
  if (size == 0) return 0;
  static const Encoding kEncodings[] = {Encoding::kImplicitLittle, Encoding::kExplicitLittle, Encoding::kExplicitBig,
                                        Encoding::kDeflatedExplicitLittle};
  ScanLimits limits;
  limits.max_inflated = 8u << 20;
  const bastion::ByteView body(data + 1, size - 1);
  auto r = scanDataset(body, kEncodings[data[0] % 4], limits);
  (void)r;
  auto p = parsePart10(body);
  if (p.ok() && p->dataset_offset <= body.size()) {
    auto enc = encodingOf(p->transfer_syntax);
    if (enc.ok()) (void)scanDataset(body.subspan(p->dataset_offset), *enc, limits).ok();
  }
  return 0;
}
