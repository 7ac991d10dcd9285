#include <algorithm>
#include <cstdio>
#include <nlohmann/json.hpp>

#include "bastion/service/archive.h"

namespace bastion {

AuditEvent auditEventFor(const CallContext& ctx, const Clock& clock, const std::string& action) {
  AuditEvent e;
  e.time = clock.now();
  e.actor_ae = ctx.calling_ae;
  e.source_address = ctx.peer_address;
  e.cert_sha256 = ctx.cert_sha256;
  e.action = action;
  if (ctx.principal.kind == Principal::Kind::kUser) e.user = ctx.principal.name;
  return e;
}

namespace {

// The patient an event concerns, from its study, for the audit record.
void nameThePatient(Index& index, AuditEvent& e) {
  if (!e.patient_id.empty() || e.study_uid.empty() || e.study_uid.find('\\') != std::string::npos) return;
  auto p = index.patientOfStudy(e.study_uid);
  if (!p.ok()) return;
  e.patient_id = p->id;
  e.patient_name = p->name;
}

// The query keys as JSON ({"00100020": "ID1", ...}) for the audit record.
std::string queryKeysJson(const Query& q) {
  nlohmann::json j = nlohmann::json::object();
  char tag[9];
  for (const auto& [t, v] : q.keys) {
    std::snprintf(tag, sizeof tag, "%08X", static_cast<unsigned>(t));
    j[tag] = v;
  }
  return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

bool isSingleValue(const std::string& v) { return !v.empty() && v.find_first_of("*?\\") == std::string::npos; }

}  // namespace

Status QueryService::find(const CallContext& ctx, const Query& query,
                          const std::function<bool(const QueryRow&)>& emit) {
  AuditEvent e = auditEventFor(ctx, d_.clock, "find");
  e.study_uid = studyUidOf(query);
  e.query = queryKeysJson(query);
  if (auto pid = query.keys.find(0x00100020); pid != query.keys.end() && isSingleValue(pid->second))
    e.patient_id = pid->second;
  nameThePatient(d_.index, e);
  e.outcome = "success";
  const Decision d = d_.policy.decide(ctx.principal, Action::kFind, {e.study_uid}, d_.clock.now());
  e.rule = d.rule;
  Status s;
  if (!d.allowed) {
    s = permissionDenied("not permitted to query");
  } else {
    Query bounded = query;
    bounded.scope = d.scope;  // applied inside the index query
    if (bounded.limit == 0 || bounded.limit > d_.limits.max_query_results) bounded.limit = d_.limits.max_query_results;
    s = d_.index.query(bounded, [&](const QueryRow& row) {
      ++e.instance_count;
      return emit(row);
    });
  }
  if (!s.ok()) {
    e.outcome = s.code() == StatusCode::kPermissionDenied ? "denied" : "failure";
    e.detail = s.toString();
  }
  Status audited = d_.audit.append(e);
  if (!s.ok()) return s;
  return audited;
}

StatusOr<RetrieveService::Selection> RetrieveService::select(const CallContext& ctx, const std::string& action,
                                                            const Query& query) {
  const Decision d = d_.policy.decide(ctx.principal, action == "move" ? Action::kMove : Action::kGet,
                                      {studyUidOf(query)}, d_.clock.now());
  if (!d.allowed) {
    audit(ctx, action, studyUidOf(query), 0, "denied", "not permitted to " + action, d.rule);
    return permissionDenied("not permitted to " + action);
  }
  Query scoped = query;
  scoped.scope = d.scope;
  auto r = d_.index.instancesFor(scoped);
  if (!r.ok()) {
    audit(ctx, action, studyUidOf(query), 0, "failure", r.status().toString(), d.rule);
  } else if (r->empty()) {
    // Nothing visible matches: the same answer whether the study does not
    // exist or lies outside the caller's scope (no trace of either).
    audit(ctx, action, studyUidOf(query), 0, "denied", "no instance in scope matches", d.rule);
    return permissionDenied("no instance you may retrieve matches");
  }
  if (!r.ok()) return r.status();
  return Selection{std::move(r).value(), d.rule};
}

// Retrieval checks what binds an object to its row (checkObjectIdentity) and
// lets AES-GCM authenticate every byte (DecryptingReader); the SHA-256 of the
// whole object is recomputed by `bastion verify`, not on every read. Against
// an attacker the digest added nothing here: it sits next to the blob id in
// the same row, so whoever can point a row at another object can change its
// digest too, while neither can forge an object GCM accepts.
StatusOr<Bytes> RetrieveService::read(const InstanceLocation& loc) {
  ASSIGN_OR_RETURN(auto reader, d_.blobs.open(loc.blob_id));
  ASSIGN_OR_RETURN(Bytes data, readAll(*reader, d_.limits.max_object_size + (1 << 20)));
  RETURN_IF_ERROR(checkObjectIdentity(data, loc));
  return data;
}

namespace {

constexpr uint64_t kIdentityHead = 4096;  // bytes read to check an object's file meta

// Streams an object whose identity openStream() has checked.
class CheckedStream final : public RetrieveService::ObjectStream {
 public:
  CheckedStream(std::unique_ptr<BlobReader> reader, std::string id) : reader_(std::move(reader)), id_(std::move(id)) {}
  uint64_t size() const override { return reader_->size(); }
  StatusOr<size_t> read(std::span<uint8_t> out) override {
    if (done_) return size_t{0};
    ASSIGN_OR_RETURN(size_t n, reader_->read(offset_, out));
    if (n == 0) {
      if (offset_ != reader_->size()) return dataLoss("object " + id_ + " shorter than recorded");
      done_ = true;
      return size_t{0};
    }
    offset_ += n;
    return n;
  }

 private:
  std::unique_ptr<BlobReader> reader_;
  const std::string id_;
  uint64_t offset_ = 0;
  bool done_ = false;
};

}  // namespace

StatusOr<std::unique_ptr<RetrieveService::ObjectStream>> RetrieveService::openStream(const InstanceLocation& loc) {
  ASSIGN_OR_RETURN(auto reader, d_.blobs.open(loc.blob_id));
  if (reader->size() > d_.limits.max_object_size + (1 << 20)) return resourceExhausted("object over the size limit");
  // The file meta Bastion writes is a few hundred bytes; its first segment
  // stays decrypted in the reader for the stream's first read.
  Bytes head(static_cast<size_t>(std::min<uint64_t>(reader->size(), kIdentityHead)));
  size_t got = 0;
  while (got < head.size()) {
    ASSIGN_OR_RETURN(size_t n, reader->read(got, std::span<uint8_t>(head).subspan(got)));
    if (n == 0) return dataLoss("object " + loc.blob_id + " shorter than recorded");
    got += n;
  }
  RETURN_IF_ERROR(checkObjectIdentity(head, loc));
  return std::unique_ptr<ObjectStream>(std::make_unique<CheckedStream>(std::move(reader), loc.blob_id));
}

void RetrieveService::audit(const CallContext& ctx, const std::string& action, const std::string& study_uid,
                            uint32_t count, const std::string& outcome, const std::string& detail,
                            const std::string& rule) {
  AuditEvent e = auditEventFor(ctx, d_.clock, action);
  e.study_uid = study_uid;
  e.instance_count = count;
  e.outcome = outcome;
  e.detail = detail;
  e.rule = rule;
  nameThePatient(d_.index, e);
  (void)d_.audit.append(e);
}

}  // namespace bastion
