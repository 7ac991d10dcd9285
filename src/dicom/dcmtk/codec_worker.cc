#include "dicom/dcmtk/codec_worker.h"

#include <dcmtk/config/osconfig.h>  // first, as DCMTK requires
#include <dcmtk/dcmdata/dcdict.h>
#include <dcmtk/dcmdata/dcrledrg.h>
#include <dcmtk/dcmdata/dcxfer.h>
#include <dcmtk/dcmjpeg/djdecode.h>
#include <dcmtk/dcmjpls/djdecode.h>
#include <dcmtk/oflog/oflog.h>

#include <cstring>
#include <ctime>
#include <iostream>

#include "dicom/dcmtk/renderer.h"
#include "dicom/parse/dicom_scanner.h"
#include "isolation/sandbox.h"

namespace bastion::dicom {
namespace {

// Decoded data is bounded: no codec here expands an object by more than this
// (a worker claiming more is a protocol error, not an allocation).
uint64_t answerBound(ByteView part10) { return 64 * uint64_t{part10.size()} + (64ull << 20); }

void putU64(Bytes& out, uint64_t v) {
  const size_t at = out.size();
  out.resize(at + sizeof v);
  std::memcpy(out.data() + at, &v, sizeof v);
}

Status handle(DcmtkRenderer& r, uint32_t op, std::span<const uint32_t> args, ByteView payload, Bytes& out) {
  switch (op) {
    case kCodecRender: {
      if (args.size() != 3) return invalidArgument("render takes 3 arguments");
      ASSIGN_OR_RETURN(out, r.render(payload, static_cast<int>(args[0]), args[1] != 0, static_cast<int>(args[2])));
      return okStatus();
    }
    case kCodecFrames: {
      std::vector<int> numbers(args.begin(), args.end());
      std::string ts;
      ASSIGN_OR_RETURN(auto frames, r.frames(payload, numbers, true, ts));
      for (const auto& f : frames) {
        putU64(out, f.size());
        out.insert(out.end(), f.begin(), f.end());
      }
      return okStatus();
    }
    case kCodecTranscode: {
      ASSIGN_OR_RETURN(out, r.transcode(payload));
      return okStatus();
    }
    default:
      return invalidArgument("unknown codec operation");
  }
}

// What the archive's side checks before asking: the object's stored syntax.
StatusOr<std::string> syntaxOf(ByteView part10) {
  ASSIGN_OR_RETURN(Part10 p, parsePart10(part10));
  return p.transfer_syntax;
}

}  // namespace

int runCodecWorker(uint64_t memory_mb) {
  // Everything that reads files or configuration happens before the sandbox.
  OFLog::configure(OFLogger::FATAL_LOG_LEVEL);
  // Local time without /etc/localtime (the PNG writer stamps a time).
  ::setenv("TZ", "UTC0", 1);
  ::tzset();
  if (!dcmDataDict.isDictionaryLoaded()) {
    std::cerr << "codec-worker: no DICOM dictionary\n";
    return 2;
  }
  DcmRLEDecoderRegistration::registerCodecs();
  DJDecoderRegistration::registerCodecs();
  DJLSDecoderRegistration::registerCodecs();
  Status s = isolation::enterSandbox({memory_mb << 20, 600});
  if (!s.ok()) {
    std::cerr << "codec-worker: " << s.toString() << "\n";
    return 2;
  }
  DcmtkRenderer renderer(true);
  return isolation::serveRequests(
      [&renderer](uint32_t op, std::span<const uint32_t> args, ByteView payload, Bytes& out) {
        return handle(renderer, op, args, payload, out);
      },
      uint64_t{4} << 30);
}

IsolatedRenderer::IsolatedRenderer(isolation::WorkerPool& pool)
    : pool_(pool), local_(std::make_unique<DcmtkRenderer>(false)) {}
IsolatedRenderer::~IsolatedRenderer() = default;

StatusOr<std::string> IsolatedRenderer::metadata(ByteView part10, size_t bulk_threshold,
                                                 const std::string& bulk_prefix) {
  return local_->metadata(part10, bulk_threshold, bulk_prefix);
}

StatusOr<Bytes> IsolatedRenderer::bulk(ByteView part10, uint32_t tag) { return local_->bulk(part10, tag); }

bool IsolatedRenderer::canTranscode(const std::string& ts) const {
  return isEncapsulatedSyntax(ts) ? isDecodableSyntax(ts) : local_->canTranscode(ts);
}

StatusOr<Bytes> IsolatedRenderer::render(ByteView part10, int frame, bool png, int max_side) {
  ASSIGN_OR_RETURN(std::string ts, syntaxOf(part10));
  if (!isEncapsulatedSyntax(ts)) return local_->render(part10, frame, png, max_side);
  if (!isDecodableSyntax(ts)) return invalidArgument("cannot decode transfer syntax " + ts);
  if (frame < 1) return invalidArgument("frame numbers start at 1");
  const uint32_t args[] = {static_cast<uint32_t>(frame), png ? 1u : 0u, static_cast<uint32_t>(std::max(0, max_side))};
  return pool_.call(kCodecRender, args, part10, answerBound(part10));
}

StatusOr<std::vector<Bytes>> IsolatedRenderer::frames(ByteView part10, const std::vector<int>& numbers, bool decode,
                                                      std::string& ts_out) {
  ASSIGN_OR_RETURN(ts_out, syntaxOf(part10));
  if (!decode || !isEncapsulatedSyntax(ts_out)) return local_->frames(part10, numbers, decode, ts_out);
  if (!isDecodableSyntax(ts_out)) return invalidArgument("cannot decode transfer syntax " + ts_out);
  std::vector<uint32_t> args;
  for (int n : numbers) {
    if (n < 1) return notFound(std::string("no frame ").append(std::to_string(n)));
    args.push_back(static_cast<uint32_t>(n));
  }
  ASSIGN_OR_RETURN(Bytes answer, pool_.call(kCodecFrames, args, part10, answerBound(part10)));
  return parseFramesAnswer(answer, numbers.size());
}

StatusOr<std::vector<Bytes>> parseFramesAnswer(ByteView answer, size_t count) {
  std::vector<Bytes> out;
  size_t at = 0;
  while (at < answer.size()) {
    uint64_t len = 0;
    if (answer.size() - at < sizeof len || out.size() >= count)
      return internalError("malformed answer from the codec worker");
    std::memcpy(&len, answer.data() + at, sizeof len);
    at += sizeof len;
    if (len > answer.size() - at) return internalError("malformed answer from the codec worker");
    out.emplace_back(answer.begin() + static_cast<std::ptrdiff_t>(at),
                     answer.begin() + static_cast<std::ptrdiff_t>(at + len));
    at += len;
  }
  if (out.size() != count) return internalError("malformed answer from the codec worker");
  for (const auto& f : out)  // decoded frames of one object all have one size
    if (f.size() != out[0].size()) return internalError("malformed answer from the codec worker");
  return out;
}

StatusOr<Bytes> IsolatedRenderer::transcode(ByteView part10) {
  ASSIGN_OR_RETURN(std::string ts, syntaxOf(part10));
  if (!isEncapsulatedSyntax(ts)) return local_->transcode(part10);
  if (!isDecodableSyntax(ts)) return invalidArgument("cannot decode transfer syntax " + ts);
  ASSIGN_OR_RETURN(Bytes answer, pool_.call(kCodecTranscode, {}, part10, answerBound(part10)));
  // The worker's object must be the one it was given, in the syntax asked for.
  ASSIGN_OR_RETURN(Part10 in, parsePart10(part10));
  auto out = parsePart10(answer);
  if (!out.ok() || out->media_sop_instance != in.media_sop_instance || out->transfer_syntax != "1.2.840.10008.1.2.1")
    return internalError("the codec worker answered with another object");
  return answer;
}

}  // namespace bastion::dicom
