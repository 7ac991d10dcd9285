// Conversions between DCMTK objects and Bastion's value types. Bytes from a
// peer are always checked by DicomScanner before DCMTK parses them.
#pragma once

#include <dcmtk/dcmdata/dcdatset.h>
#include <dcmtk/dcmdata/dcostrma.h>

#include <functional>
#include <memory>

#include "bastion/common/bytes.h"
#include "bastion/index/index.h"
#include "dicom/parse/dicom_scanner.h"

namespace bastion::dicom {

// A DcmOutputStream that collects a received data set into the caller's
// buffer (cleared first, capacity kept, so a session reuses its memory), up
// to `cap` bytes; beyond that it keeps accepting (so the DIMSE exchange can
// end with a proper failure status) but discards and flags overflow. Each
// piece kept is also shown to `tap`, if given, as it arrives.
class MemorySink : public DcmConsumer {
 public:
  using Tap = std::function<void(ByteView)>;
  MemorySink(uint64_t cap, Bytes& buffer, Tap tap = nullptr) : cap_(cap), bytes_(buffer), tap_(std::move(tap)) {
    bytes_.clear();
  }
  OFBool good() const override { return OFTrue; }
  OFCondition status() const override { return EC_Normal; }
  OFBool isFlushed() const override { return OFTrue; }
  offile_off_t avail() const override { return offile_off_t{1} << 30; }
  offile_off_t write(const void* buf, offile_off_t len) override;
  void flush() override {}
  bool overflowed() const { return overflowed_; }

 private:
  uint64_t cap_;
  bool overflowed_ = false;
  Bytes& bytes_;
  Tap tap_;
};

struct MemorySinkHolder {
  MemorySinkHolder(uint64_t cap, Bytes& buffer, MemorySink::Tap tap) : sink(cap, buffer, std::move(tap)) {}
  MemorySink sink;
};

class MemoryOutputStream : private MemorySinkHolder, public DcmOutputStream {
 public:
  MemoryOutputStream(uint64_t cap, Bytes& buffer, MemorySink::Tap tap = nullptr)
      : MemorySinkHolder(cap, buffer, std::move(tap)), DcmOutputStream(&sink) {}
  bool overflowed() const { return sink.overflowed(); }
};

// Parses bytes (a data set in `ts_uid`) after checking them with the scanner.
StatusOr<std::unique_ptr<DcmDataset>> parseDataset(ByteView data, const std::string& ts_uid,
                                                   const ScanLimits& limits);
// Parses a stored Part-10 object into a data set (trusted: our own bytes).
StatusOr<std::unique_ptr<DcmDataset>> parseStoredObject(ByteView part10, std::string& ts_uid);

// The Query an identifier asks for. kInvalidArgument for a missing or
// unknown QueryRetrieveLevel.
StatusOr<Query> queryFromIdentifier(DcmDataset& identifier);
// A response identifier: every key of the request, filled from `row`.
std::unique_ptr<DcmDataset> responseIdentifier(DcmDataset& request, const QueryRow& row);

}  // namespace bastion::dicom
