#include <algorithm>

#include "bastion/service/archive.h"
#include "crypto/aead.h"
#include "dicom/parse/dicom_scanner.h"
#include "service/store_note.h"

namespace bastion {
namespace tg = dicom::tag;
namespace {

std::string value(const dicom::ScanResult& s, uint32_t t) {
  auto it = s.values.find(t);
  return it == s.values.end() ? std::string() : it->second;
}

uint64_t number(const dicom::ScanResult& s, uint32_t t, uint64_t fallback) {
  std::string v = value(s, t);
  if (v.empty() || v.size() > 12) return fallback;
  uint64_t n = 0;
  for (char c : v) {
    if (c < '0' || c > '9') return fallback;
    n = n * 10 + static_cast<uint64_t>(c - '0');
  }
  return n;
}

// Image pixel module sanity and the decompression-bomb guard: the declared
// size is computed in 64 bits and capped before anything is allocated.
Status checkPixels(const dicom::ScanResult& s, bool encapsulated_ts, const ArchiveLimits& limits) {
  const bool has_geometry = s.values.count(tg::kRows) || s.values.count(tg::kColumns);
  if (!has_geometry && !s.pixel.present) return okStatus();
  const uint64_t rows = number(s, tg::kRows, 0), cols = number(s, tg::kColumns, 0);
  const uint64_t spp = number(s, tg::kSamplesPerPixel, 1), bits = number(s, tg::kBitsAllocated, 0);
  const uint64_t stored = number(s, tg::kBitsStored, bits), high = number(s, tg::kHighBit, stored ? stored - 1 : 0);
  const uint64_t frames = number(s, tg::kNumberOfFrames, 1);
  if (!s.pixel.present) return okStatus();
  if (rows == 0 || cols == 0) return invalidArgument("image with zero rows or columns");
  if (spp == 0 || spp > 4) return invalidArgument("SamplesPerPixel out of range");
  if (bits == 0 || bits > 64 || (bits != 1 && bits % 8 != 0)) return invalidArgument("BitsAllocated out of range");
  if (stored > bits || high >= bits) return invalidArgument("BitsStored/HighBit inconsistent with BitsAllocated");
  if (frames == 0 || frames > 1000000) return invalidArgument("NumberOfFrames out of range");
  // rows, cols < 2^16, spp <= 4, bits <= 64, frames <= 10^6: no overflow in 64 bits.
  // YBR_FULL_422 / YBR_PARTIAL_422 native data: two chroma samples per two pixels
  // (PS3.3 C.7.6.3.1.2), so 2 samples per pixel instead of 3.
  const std::string photometric = value(s, tg::kPhotometricInterpretation);
  const bool subsampled = spp == 3 && !encapsulated_ts && (photometric == "YBR_FULL_422" || photometric == "YBR_PARTIAL_422");
  const uint64_t declared_bits = rows * cols * (subsampled ? 2 : spp) * bits * frames;
  const uint64_t declared = (declared_bits + 7) / 8;
  if (declared > limits.max_pixel_bytes) return resourceExhausted("declared pixel data exceeds the limit");
  if (!encapsulated_ts && !s.pixel.encapsulated && s.pixel.length < declared)
    return invalidArgument("pixel data shorter than its declared geometry");
  return okStatus();
}

}  // namespace

StatusOr<PutResult> StoreService::store(const CallContext& ctx, const StoreRequest& req) {
  return storeAudited(ctx, req, nullptr);
}

StoreService::Ingest::Ingest() = default;
StoreService::Ingest::~Ingest() = default;

void StoreService::Ingest::append(ByteView piece) {
  if (!status_.ok()) return;
  bytes_ += piece.size();
  sha_->update(piece);
  status_ = writer_->append(piece);
}

std::unique_ptr<StoreService::Ingest> StoreService::beginStore(const CallContext& ctx, const StoreRequest& head,
                                                               uint64_t size_hint) {
  if (!isValidUid(head.transfer_syntax) || !isValidUid(head.sop_class_uid) || !isValidUid(head.sop_instance_uid))
    return nullptr;
  if (!d_.policy.decide(ctx.principal, Action::kStore, {}, d_.clock.now()).allowed) return nullptr;
  auto writer = d_.blobs.create();
  if (!writer.ok()) return nullptr;
  std::unique_ptr<Ingest> in(new Ingest());
  in->meta_ = buildPart10(head.sop_class_uid, head.sop_instance_uid, head.transfer_syntax, d_.implementation_uid,
                          d_.implementation_version, {});
  in->sha_ = std::make_unique<crypto::Sha256>();
  in->sha_->update(in->meta_);
  in->writer_ = std::move(*writer);
  in->writer_->expect(in->meta_.size() + std::min(size_hint, d_.limits.max_object_size));
  in->status_ = in->writer_->append(in->meta_);
  return in;
}

StatusOr<PutResult> StoreService::finishStore(const CallContext& ctx, const StoreRequest& req,
                                              std::unique_ptr<Ingest> ingest) {
  return storeAudited(ctx, req, nullptr, ingest.get());
}

void StoreService::awaitEarlierStores() {
  std::unique_lock lock(flight_mu_);
  const uint64_t before = ++epoch_;
  flight_cv_.wait(lock, [&] { return in_flight_.empty() || in_flight_.begin()->first >= before; });
}

StatusOr<PutResult> StoreService::storeAudited(const CallContext& ctx, const StoreRequest& req, StoredUids* stored,
                                               Ingest* pre) {
  uint64_t epoch = 0;
  {
    std::lock_guard lock(flight_mu_);
    epoch = epoch_;
    ++in_flight_[epoch];
  }
  struct Landed {
    StoreService& s;
    uint64_t epoch;
    ~Landed() {
      std::lock_guard lock(s.flight_mu_);
      if (--s.in_flight_[epoch] == 0) {
        s.in_flight_.erase(epoch);
        s.flight_cv_.notify_all();
      }
    }
  } landed{*this, epoch};

  AuditEvent e = auditEventFor(ctx, d_.clock, "store");
  const Decision d = d_.policy.decide(ctx.principal, Action::kStore, {}, d_.clock.now());
  e.instance_count = 1;
  e.rule = d.rule;
  bool noted = false;
  auto result = d.allowed ? storeChecked(ctx, req, e, stored, noted, pre)
                          : StatusOr<PutResult>(permissionDenied("not permitted to store"));
  if (noted) {
    // Inserted, with this success record kept as a durable note next to the
    // object: the trail's copy needs no sync of its own.
    Status audited = d_.audit.appendNoted(e);
    if (!audited.ok()) audited = d_.audit.append(e);  // once more, synced: the marks would pass its note
    if (!audited.ok()) return audited;                // no success without its audit record
    return result;
  }
  e.time = d_.clock.now();
  e.outcome = "success";
  if (!result.ok()) {
    e.outcome = result.status().code() == StatusCode::kPermissionDenied ? "denied" : "failure";
    e.detail = result.status().toString();
  } else if (*result == PutResult::kAlreadyStored) {
    e.detail = "identical instance already stored";
  }
  Status audited = d_.audit.append(e);
  if (!audited.ok() && result.ok()) return audited;  // no success without its audit record
  return result;
}

StatusOr<PutResult> StoreService::storeFile(const CallContext& ctx, ByteView file,
                                            const std::string& required_study_uid, StoredUids* stored) {
  auto p10 = dicom::parsePart10(file);
  if (!p10.ok()) {
    AuditEvent e = auditEventFor(ctx, d_.clock, "store");
    e.instance_count = 1;
    e.outcome = "failure";
    e.detail = p10.status().toString();
    (void)d_.audit.append(e);
    return p10.status();
  }
  StoreRequest req{p10->transfer_syntax, p10->media_sop_class, p10->media_sop_instance,
                   file.subspan(p10->dataset_offset), required_study_uid};
  return storeAudited(ctx, req, stored);
}

StatusOr<PutResult> StoreService::storeChecked(const CallContext& ctx, const StoreRequest& req, AuditEvent& audit,
                                               StoredUids* stored, bool& noted, Ingest* pre) {
  if (req.dataset.size() > d_.limits.max_object_size) return resourceExhausted("object larger than the limit");
  if (!isValidUid(req.transfer_syntax)) return invalidArgument("invalid transfer syntax UID");
  ASSIGN_OR_RETURN(dicom::Encoding enc, dicom::encodingOf(req.transfer_syntax));
  dicom::ScanLimits limits;
  limits.max_depth = d_.limits.max_sequence_depth;
  limits.max_items = d_.limits.max_items_per_sequence;
  limits.max_inflated = d_.limits.max_object_size;
  ASSIGN_OR_RETURN(dicom::ScanResult scan, dicom::scanDataset(req.dataset, enc, limits));

  InstanceRecord r;
  r.sop_uid = value(scan, tg::kSopInstanceUid);
  r.sop_class_uid = value(scan, tg::kSopClassUid);
  r.study_uid = value(scan, tg::kStudyInstanceUid);
  r.series_uid = value(scan, tg::kSeriesInstanceUid);
  for (const auto* uid : {&r.sop_uid, &r.sop_class_uid, &r.study_uid, &r.series_uid})
    if (!isValidUid(*uid)) return invalidArgument("missing or invalid UID in data set");
  if (!req.sop_instance_uid.empty() && req.sop_instance_uid != r.sop_uid)
    return invalidArgument("SOP Instance UID differs from the request");
  if (!req.sop_class_uid.empty() && req.sop_class_uid != r.sop_class_uid)
    return invalidArgument("SOP Class UID differs from the request");
  audit.study_uid = r.study_uid;
  audit.patient_id = value(scan, tg::kPatientId);
  audit.patient_name = value(scan, tg::kPatientName);
  if (stored) *stored = {r.study_uid, r.series_uid, r.sop_uid, r.sop_class_uid};
  if (!req.required_study_uid.empty() && req.required_study_uid != r.study_uid)
    return invalidArgument("instance does not belong to the study of the request");
  RETURN_IF_ERROR(checkPixels(scan, dicom::isEncapsulatedSyntax(req.transfer_syntax), d_.limits));

  r.patient_id = value(scan, tg::kPatientId);
  r.patient_name = value(scan, tg::kPatientName);
  r.issuer_of_patient_id = value(scan, tg::kIssuerOfPatientId);
  r.patient_birth_date = value(scan, tg::kPatientBirthDate);
  r.patient_sex = value(scan, tg::kPatientSex);
  r.other_patient_ids = value(scan, tg::kOtherPatientIds);
  r.study_date = value(scan, tg::kStudyDate);
  r.study_time = value(scan, tg::kStudyTime);
  r.accession_number = value(scan, tg::kAccessionNumber);
  r.referring_physician = value(scan, tg::kReferringPhysicianName);
  r.requesting_physician = value(scan, tg::kRequestingPhysician);
  r.site = ctx.principal.site;
  r.received = std::chrono::duration_cast<std::chrono::seconds>(d_.clock.now().time_since_epoch()).count();
  r.study_description = value(scan, tg::kStudyDescription);
  r.study_id = value(scan, tg::kStudyId);
  r.modality = value(scan, tg::kModality);
  r.series_number = value(scan, tg::kSeriesNumber);
  r.series_description = value(scan, tg::kSeriesDescription);
  r.instance_number = value(scan, tg::kInstanceNumber);
  r.specific_character_set = value(scan, tg::kSpecificCharacterSet);
  r.transfer_syntax = req.transfer_syntax;

  const Bytes meta = buildPart10(r.sop_class_uid, r.sop_uid, r.transfer_syntax, d_.implementation_uid,
                                 d_.implementation_version, {});
  // What arrived through `pre` counts only if it is exactly this object.
  const bool streamed =
      pre && pre->status_.ok() && pre->writer_ && pre->bytes_ == req.dataset.size() && pre->meta_ == meta;
  crypto::Digest digest;
  if (streamed) {
    digest = pre->sha_->finish();
  } else {
    crypto::Sha256 sha;
    sha.update(meta);
    sha.update(req.dataset);
    digest = sha.finish();
  }
  r.sha256_hex = toHex(digest);
  r.size = meta.size() + req.dataset.size();

  // Fast path for repeats: no blob is written for an instance we hold.
  ASSIGN_OR_RETURN(auto existing, d_.index.findInstance(r.sop_uid));
  if (existing) {
    if (existing->sha256_hex == r.sha256_hex) return PutResult::kAlreadyStored;
    return alreadyExists("SOP Instance UID already stored with different content; not overwritten");
  }

  std::unique_ptr<BlobWriter> writer;
  if (streamed) {
    writer = std::move(pre->writer_);
  } else {
    ASSIGN_OR_RETURN(writer, d_.blobs.create());
  }
  audit.time = d_.clock.now();
  audit.outcome = "success";  // what the note says; it counts only if the instance is inserted
  audit.detail = "object " + writer->id();  // names this store's record uniquely (recovery looks for it)
  r.blob_id = writer->id();
  std::optional<Bytes> index_note = d_.index.noteFor(r), audit_note = d_.audit.noteFor(audit, writer->id());
  const bool with_note =
      (index_note || audit_note) &&
      writer->attachNote(encodeStoreNote({index_note.value_or(Bytes()), audit_note.value_or(Bytes())}));
  if (!streamed) {
    writer->expect(meta.size() + req.dataset.size());
    RETURN_IF_ERROR(writer->append(meta));
    RETURN_IF_ERROR(writer->append(req.dataset));
  }
  RETURN_IF_ERROR(writer->commit());
  auto put = with_note && index_note ? d_.index.putInstanceNoted(r) : d_.index.putInstance(r);
  if (!put.ok() || *put == PutResult::kAlreadyStored) (void)d_.blobs.remove(r.blob_id);  // its note then counts for nothing
  noted = with_note && audit_note && put.ok() && *put == PutResult::kInserted;
  return put;
}

}  // namespace bastion
