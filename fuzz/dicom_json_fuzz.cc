// Fuzz target for what DICOMweb writes from a stored object: the DICOM JSON
// model (DCMTK's writer with Bastion's BulkDataURI choice), bulk data, native
// frames and transcoding, in the archive process (no decoder). The input is a
// Part-10 file; like the store path, only what DicomScanner accepts reaches
// DCMTK. Oracle: the JSON must be well-formed (nlohmann::json parses it) and
// frames never exceed the pixel data. The input is also fed to the parser of
// a codec worker's frames answer.
#include <cstddef>
#include <cstdint>
#include <nlohmann/json.hpp>

#include "dicom/dcmtk/codec_worker.h"
#include "dicom/dcmtk/renderer.h"
#include "dicom/parse/dicom_scanner.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace bastion;
  const ByteView file(data, size);
  // The same bytes as a codec worker's frames answer (hostile: the worker is not trusted).
  for (size_t count : {size_t{1}, size_t{2}, size_t{7}}) {
    auto frames = dicom::parseFramesAnswer(file, count);
    if (frames.ok() && frames->size() != count) __builtin_trap();
  }
  auto p10 = dicom::parsePart10(file);
  if (!p10.ok() || p10->dataset_offset > size) return 0;
  auto enc = dicom::encodingOf(p10->transfer_syntax);
  if (!enc.ok()) return 0;
  dicom::ScanLimits limits;
  limits.max_inflated = 8u << 20;
  auto scan = dicom::scanDataset(file.subspan(p10->dataset_offset), *enc, limits);
  if (!scan.ok()) return 0;
  dicom::DcmtkRenderer renderer(false);
  auto json = renderer.metadata(file, 64, "/dicom-web/studies/1/series/2/instances/3/bulkdata");
  if (json.ok() && !nlohmann::json::accept(*json)) __builtin_trap();
  (void)renderer.bulk(file, 0x7FE00010).ok();
  std::string ts;
  auto frames = renderer.frames(file, {1, 2}, false, ts);
  if (frames.ok())
    for (const auto& f : *frames)
      if (f.size() > size) __builtin_trap();
  (void)renderer.transcode(file).ok();
  return 0;
}
