// The codec worker (R20): `bastion codec-worker`, started by the archive's
// WorkerPool, decodes compressed pixel data (RLE, JPEG, JPEG-LS through
// DCMTK) inside a sandbox (isolation/sandbox.h); IsolatedRenderer is the
// archive's side. Nothing in the archive process decodes compressed pixels.
#pragma once

#include <cstdint>
#include <memory>

#include "isolation/worker_pool.h"
#include "web/dicomweb/renderer.h"

namespace bastion::dicom {

// Operations of the codec worker. Payload: the stored Part-10 object.
enum CodecOp : uint32_t {
  kCodecRender = 1,     // args {frame, png (0/1), max_side}; answer: the image
  kCodecFrames = 2,     // args: frame numbers; answer: per frame u64 length + the decoded bytes
  kCodecTranscode = 3,  // no args; answer: the Part-10 object in Explicit VR Little Endian
};

// Main of `bastion codec-worker`: registers the decoders, enters the
// sandbox and serves requests on stdin/stdout. Returns the exit status.
int runCodecWorker(uint64_t memory_mb);

// Splits a worker's kCodecFrames answer (per frame: u64 length, bytes) into
// exactly `count` frames of one size; kInternal for anything else. The
// worker is not trusted: this is a parser of hostile input (fuzzed).
StatusOr<std::vector<Bytes>> parseFramesAnswer(ByteView answer, size_t count);

// web::InstanceRenderer for the archive: DICOM JSON, bulk data, native
// frames, rendering and transcoding of uncompressed objects in process;
// anything that needs a decoder goes to the codec worker pool.
class IsolatedRenderer final : public web::InstanceRenderer {
 public:
  explicit IsolatedRenderer(isolation::WorkerPool& pool);
  ~IsolatedRenderer() override;
  StatusOr<std::string> metadata(ByteView part10, size_t bulk_threshold, const std::string& bulk_prefix) override;
  StatusOr<Bytes> bulk(ByteView part10, uint32_t tag) override;
  StatusOr<Bytes> render(ByteView part10, int frame, bool png, int max_side) override;
  StatusOr<std::vector<Bytes>> frames(ByteView part10, const std::vector<int>& numbers, bool decode,
                                      std::string& ts_out) override;
  StatusOr<Bytes> transcode(ByteView part10) override;
  bool canTranscode(const std::string& ts) const override;

 private:
  isolation::WorkerPool& pool_;
  std::unique_ptr<web::InstanceRenderer> local_;  // DcmtkRenderer without decoding
};

}  // namespace bastion::dicom
