#include "dicom/dcmtk/renderer.h"

#include <dcmtk/config/osconfig.h>  // first, as DCMTK requires
#include <dcmtk/dcmdata/dcdeftag.h>
#include <dcmtk/dcmdata/dcjson.h>
#include <dcmtk/dcmdata/dcpixel.h>
#include <dcmtk/dcmdata/dcpixseq.h>
#include <dcmtk/dcmdata/dcpxitem.h>
#include <dcmtk/dcmdata/dcxfer.h>
#include <dcmtk/dcmimgle/dcmimage.h>
// The plugins need dcmimage.h first.
#include <dcmtk/dcmimage/dipipng.h>
#include <dcmtk/dcmimage/diregist.h>  // colour images
#include <dcmtk/dcmjpeg/dipijpeg.h>

#include <cstdio>
#include <cstdlib>
#include <set>
#include <sstream>

#include "bastion/service/archive.h"
#include "dicom/dcmtk/dataset_io.h"

namespace bastion::dicom {
namespace {

bool isBinary(DcmEVR vr) {
  switch (vr) {
    case EVR_OB:
    case EVR_OW:
    case EVR_OF:
    case EVR_OD:
    case EVR_OL:
    case EVR_OV:
    case EVR_UN:
    case EVR_ox:
    case EVR_px:
      return true;
    default:
      return false;
  }
}

std::string hexTag(const DcmTagKey& t) {
  char b[9];
  std::snprintf(b, sizeof b, "%04X%04X", t.getGroup(), t.getElement());
  return b;
}

// Compact DICOM JSON with BulkDataURIs for the chosen tags.
class BulkJson final : public DcmJsonFormatCompact {
 public:
  BulkJson(std::set<DcmTagKey> tags, std::string prefix)
      : DcmJsonFormatCompact(OFFalse), tags_(std::move(tags)), prefix_(std::move(prefix)) {}
  OFBool asBulkDataURI(const DcmTagKey& tag, OFString& uri) override {
    if (!tags_.count(tag)) return OFFalse;
    uri = (prefix_ + "/" + hexTag(tag)).c_str();
    return OFTrue;
  }

 private:
  std::set<DcmTagKey> tags_;
  std::string prefix_;
};

// Writes through a memory FILE* (the plugins take C streams).
class MemoryFile {
 public:
  MemoryFile() : f_(open_memstream(&buf_, &len_)) {}
  ~MemoryFile() {
    if (f_) std::fclose(f_);
    std::free(buf_);
  }
  FILE* get() { return f_; }
  Bytes take() {
    std::fclose(f_);
    f_ = nullptr;
    return Bytes(reinterpret_cast<uint8_t*>(buf_), reinterpret_cast<uint8_t*>(buf_) + len_);
  }

 private:
  char* buf_ = nullptr;
  size_t len_ = 0;
  FILE* f_;
};

// Where each frame's fragments are, as [first, end) item indices of the
// pixel sequence (item 0 is the Basic Offset Table): all fragments for a
// single frame; the offset table when it has one entry per frame; one
// fragment per frame; or, for JPEG, JPEG-LS and JPEG 2000 streams, a new
// frame at each fragment that starts with a start-of-image marker.
StatusOr<std::vector<std::pair<Uint32, Uint32>>> frameFragments(DcmPixelSequence& seq, Uint32 count) {
  const Uint32 items = static_cast<Uint32>(seq.card());
  if (items < 2) return invalidArgument("no fragments");
  if (count > items - 1) return invalidArgument("more frames than fragments");  // also bounds 4 * count below
  std::vector<Uint32> starts;
  DcmPixelItem* table = nullptr;
  if (count == 1) {
    starts.push_back(1);
  } else if (seq.getItem(table, 0).good() && table && table->getLength() == 4 * uint64_t{count}) {
    Uint8* raw = nullptr;
    if (table->getUint8Array(raw).bad() || !raw) return internalError("cannot read the offset table");
    std::vector<uint32_t> offsets(count);  // little endian, as encapsulated data sets are
    for (Uint32 i = 0; i < count; ++i)
      offsets[i] = uint32_t{raw[4 * i]} | uint32_t{raw[4 * i + 1]} << 8 | uint32_t{raw[4 * i + 2]} << 16 |
                   uint32_t{raw[4 * i + 3]} << 24;
    // Offsets count bytes from the first fragment's item tag: 8 + length per item.
    uint64_t pos = 0;
    Uint32 next = 0;
    for (Uint32 i = 1; i < items && next < count; ++i) {
      DcmPixelItem* item = nullptr;
      if (seq.getItem(item, i).bad() || !item) return internalError("cannot read a fragment");
      if (offsets[next] == pos) {
        starts.push_back(i);
        ++next;
      } else if (offsets[next] < pos) {
        return invalidArgument("the offset table does not point at fragments");
      }
      pos += 8 + uint64_t{item->getLength()};
    }
  } else if (items - 1 == count) {
    for (Uint32 i = 1; i < items; ++i) starts.push_back(i);
  } else {
    for (Uint32 i = 1; i < items; ++i) {
      DcmPixelItem* item = nullptr;
      Uint8* data = nullptr;
      if (seq.getItem(item, i).bad() || !item || item->getUint8Array(data).bad())
        return internalError("cannot read a fragment");
      if (data && item->getLength() >= 2 && data[0] == 0xFF && (data[1] == 0xD8 || data[1] == 0x4F))
        starts.push_back(i);
    }
  }
  if (starts.size() != count || starts[0] != 1) return invalidArgument("cannot tell which fragments make each frame");
  std::vector<std::pair<Uint32, Uint32>> out;
  for (Uint32 f = 0; f < count; ++f) out.emplace_back(starts[f], f + 1 < count ? starts[f + 1] : items);
  return out;
}

}  // namespace

StatusOr<std::string> DcmtkRenderer::metadata(ByteView part10, size_t bulk_threshold, const std::string& prefix) {
  std::string ts;
  ASSIGN_OR_RETURN(auto ds, parseStoredObject(part10, ts));
  std::set<DcmTagKey> bulk;
  for (unsigned long i = 0; i < ds->card(); ++i) {
    DcmElement* e = ds->getElement(i);
    if (e && (isBinary(e->getVR()) || e->getTag() == DCM_PixelData) &&
        (e->getLength() > bulk_threshold || e->getLength() == DCM_UndefinedLength))
      bulk.insert(e->getTag());
  }
  BulkJson format(std::move(bulk), prefix);
  std::ostringstream out;
  if (ds->writeJsonExt(out, format, OFTrue, OFFalse).bad()) return internalError("cannot write DICOM JSON");
  return out.str();
}

StatusOr<Bytes> DcmtkRenderer::bulk(ByteView part10, uint32_t tag) {
  std::string ts;
  ASSIGN_OR_RETURN(auto ds, parseStoredObject(part10, ts));
  DcmElement* e = nullptr;
  const DcmTagKey key(static_cast<Uint16>(tag >> 16), static_cast<Uint16>(tag & 0xFFFF));
  if (ds->findAndGetElement(key, e).bad() || !e) return notFound("no such element");
  if (key == DCM_PixelData && DcmXfer(ts.c_str()).isEncapsulated())
    return invalidArgument("compressed pixel data is served as frames in its own syntax");
  if (!isBinary(e->getVR()) && key != DCM_PixelData) return invalidArgument("not a bulk data element");
  Uint8* data = nullptr;
  if (e->getUint8Array(data).bad() || (!data && e->getLength() > 0)) return internalError("cannot read the value");
  return Bytes(data, data + e->getLength());
}

bool isDecodableSyntax(const std::string& ts) {
  static const std::set<std::string> kDecodable = {
      "1.2.840.10008.1.2.5",     // RLE Lossless
      "1.2.840.10008.1.2.4.50",  // JPEG Baseline
      "1.2.840.10008.1.2.4.51",  // JPEG Extended
      "1.2.840.10008.1.2.4.57",  // JPEG Lossless
      "1.2.840.10008.1.2.4.70",  // JPEG Lossless SV1
      "1.2.840.10008.1.2.4.80",  // JPEG-LS Lossless
      "1.2.840.10008.1.2.4.81",  // JPEG-LS Near-Lossless
  };
  return kDecodable.count(ts) > 0;
}

bool DcmtkRenderer::canTranscode(const std::string& ts) const {
  // The same test of "compressed" as everywhere else (dicom_scanner), and a
  // native syntax the scanner knows how to read.
  if (!isEncapsulatedSyntax(ts)) return encodingOf(ts).ok();
  return decode_ && isDecodableSyntax(ts);
}

StatusOr<Bytes> DcmtkRenderer::transcode(ByteView part10) {
  std::string ts;
  ASSIGN_OR_RETURN(auto ds, parseStoredObject(part10, ts));
  if (!canTranscode(ts)) return invalidArgument("cannot decode transfer syntax " + ts);
  if (ds->chooseRepresentation(EXS_LittleEndianExplicit, nullptr).bad() ||
      !ds->canWriteXfer(EXS_LittleEndianExplicit))
    return invalidArgument("cannot decode this object's pixel data (" + ts + ")");
  OFString sop_class, sop_uid;
  ds->findAndGetOFString(DCM_SOPClassUID, sop_class);
  ds->findAndGetOFString(DCM_SOPInstanceUID, sop_uid);
  Bytes encoded;
  MemoryOutputStream out(uint64_t{4} << 30, encoded);
  ds->transferInit();
  const OFCondition c = ds->write(out, EXS_LittleEndianExplicit, EET_ExplicitLength, nullptr);
  ds->transferEnd();
  if (c.bad() || out.overflowed()) return internalError(std::string("cannot encode: ") + c.text());
  return buildPart10(sop_class.c_str(), sop_uid.c_str(), "1.2.840.10008.1.2.1", kImplementationUid,
                     kImplementationVersion, encoded);
}

StatusOr<Bytes> DcmtkRenderer::render(ByteView part10, int frame, bool png, int max_side) {
  std::string ts;
  ASSIGN_OR_RETURN(auto ds, parseStoredObject(part10, ts));
  DcmXfer xfer(ts.c_str());
  if (xfer.isEncapsulated() && !canTranscode(ts))
    return invalidArgument("cannot decode transfer syntax " + ts);
  if (frame < 1) return invalidArgument("frame numbers start at 1");
  DicomImage image(ds.get(), xfer.getXfer(), CIF_UsePartialAccessToPixelData, static_cast<unsigned long>(frame - 1), 1);
  if (image.getStatus() != EIS_Normal)
    return invalidArgument(std::string("cannot render: ") + DicomImage::getString(image.getStatus()));
  if (image.isMonochrome() && !(image.getWindowCount() > 0 && image.setWindow(0))) image.setMinMaxWindow();
  std::unique_ptr<DicomImage> scaled;
  DicomImage* out = &image;
  const unsigned long w = image.getWidth(), h = image.getHeight();
  if (max_side > 0 && (w > static_cast<unsigned long>(max_side) || h > static_cast<unsigned long>(max_side))) {
    const bool wide = w >= h;
    scaled.reset(image.createScaledImage(wide ? max_side : 0UL, wide ? 0UL : max_side, 1 /* interpolate */, 1));
    if (!scaled || scaled->getStatus() != EIS_Normal) return internalError("cannot scale the image");
    out = scaled.get();
  }
  MemoryFile file;
  if (!file.get()) return internalError("out of memory");
  int ok = 0;
  if (png) {
    DiPNGPlugin plugin;
    ok = out->writePluginFormat(&plugin, file.get(), 0);
  } else {
    DiJPEGPlugin plugin;
    plugin.setQuality(90);
    ok = out->writePluginFormat(&plugin, file.get(), 0);
  }
  if (!ok) return internalError("cannot encode the rendered image");
  return file.take();
}

StatusOr<std::vector<Bytes>> DcmtkRenderer::frames(ByteView part10, const std::vector<int>& numbers, bool decode,
                                                   std::string& ts_out) {
  ASSIGN_OR_RETURN(auto ds, parseStoredObject(part10, ts_out));
  DcmElement* e = nullptr;
  if (ds->findAndGetElement(DCM_PixelData, e).bad() || !e) return notFound("no pixel data");
  auto* pixels = static_cast<DcmPixelData*>(e);
  Sint32 count = 1;
  if (ds->findAndGetSint32(DCM_NumberOfFrames, count).bad() || count < 1) count = 1;
  for (int n : numbers)
    if (n < 1 || n > count) return notFound("no frame " + std::to_string(n));
  std::vector<Bytes> out;
  DcmXfer xfer(ts_out.c_str());
  if (!xfer.isEncapsulated()) {
    Uint16 rows = 0, cols = 0, spp = 1, bits = 0;
    ds->findAndGetUint16(DCM_Rows, rows);
    ds->findAndGetUint16(DCM_Columns, cols);
    ds->findAndGetUint16(DCM_SamplesPerPixel, spp);
    ds->findAndGetUint16(DCM_BitsAllocated, bits);
    OFString photometric;
    ds->findAndGetOFString(DCM_PhotometricInterpretation, photometric);
    // YBR_FULL_422 / YBR_PARTIAL_422 native data: 2 samples per pixel, not 3.
    if (spp == 3 && (photometric == "YBR_FULL_422" || photometric == "YBR_PARTIAL_422")) spp = 2;
    const uint64_t frame_bytes = (uint64_t{rows} * cols * spp * bits + 7) / 8;
    // Big endian data sets: DCMTK keeps values in local byte order once parsed.
    Uint8* data = nullptr;
    if (pixels->getUint8Array(data).bad() || !data) return internalError("cannot read pixel data");
    for (int n : numbers) {
      const uint64_t start = frame_bytes * static_cast<uint64_t>(n - 1);
      if (frame_bytes == 0 || start + frame_bytes > pixels->getLength())
        return invalidArgument("pixel data shorter than its frames");
      out.emplace_back(data + start, data + start + frame_bytes);
    }
    return out;
  }
  E_TransferSyntax rep = EXS_Unknown;
  const DcmRepresentationParameter* param = nullptr;
  pixels->getOriginalRepresentationKey(rep, param);
  DcmPixelSequence* seq = nullptr;
  if (pixels->getEncapsulatedRepresentation(rep, param, seq).bad() || !seq) return internalError("no fragments");
  ASSIGN_OR_RETURN(auto spans, frameFragments(*seq, static_cast<Uint32>(count)));
  if (decode) {
    if (!canTranscode(ts_out)) return invalidArgument("cannot decode transfer syntax " + ts_out);
    Uint32 frame_size = 0;
    if (pixels->getUncompressedFrameSize(ds.get(), frame_size).bad() || frame_size == 0)
      return invalidArgument("cannot size the decoded frames");
    for (int n : numbers) {
      Bytes frame(frame_size);
      Uint32 start_fragment = spans[static_cast<size_t>(n - 1)].first;
      OFString colour_model;
      const OFCondition c = pixels->getUncompressedFrame(ds.get(), static_cast<Uint32>(n - 1), start_fragment,
                                                         frame.data(), frame_size, colour_model);
      if (c.bad()) return invalidArgument(std::string("cannot decode frame ") + std::to_string(n) + ": " + c.text());
      out.push_back(std::move(frame));
    }
    return out;
  }
  for (int n : numbers) {
    const auto [first, end] = spans[static_cast<size_t>(n - 1)];
    Bytes frame;
    for (Uint32 i = first; i < end; ++i) {
      DcmPixelItem* item = nullptr;
      Uint8* data = nullptr;
      if (seq->getItem(item, i).bad() || !item || item->getUint8Array(data).bad())
        return internalError("cannot read a fragment");
      if (data) frame.insert(frame.end(), data, data + item->getLength());
    }
    out.push_back(std::move(frame));
  }
  return out;
}

}  // namespace bastion::dicom
