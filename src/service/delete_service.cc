#include "bastion/service/archive.h"

namespace bastion {

StatusOr<uint32_t> DeleteService::deleteStudy(const CallContext& ctx, const std::string& study_uid) {
  AuditEvent e = auditEventFor(ctx, d_.clock, "delete");
  e.study_uid = study_uid;
  if (auto p = d_.index.patientOfStudy(study_uid); p.ok()) {  // named before the rows go
    e.patient_id = p->id;
    e.patient_name = p->name;
  }
  const Decision d = d_.policy.decide(ctx.principal, Action::kDelete, {study_uid}, d_.clock.now());
  e.rule = d.rule;
  auto finish = [&](StatusOr<uint32_t> r) {
    e.outcome = r.ok() ? "success" : r.status().code() == StatusCode::kPermissionDenied ? "denied" : "failure";
    e.severity = "high";
    if (r.ok()) e.instance_count = *r;
    else e.detail = r.status().toString();
    Status audited = d_.audit.append(e);
    if (r.ok() && !audited.ok()) return StatusOr<uint32_t>(audited);
    return r;
  };
  if (!d.allowed) return finish(permissionDenied("not permitted to delete"));
  if (!isValidUid(study_uid)) return finish(invalidArgument("invalid Study Instance UID"));
  auto received = d_.index.studyReceived(study_uid);
  if (!received.ok()) return finish(received.status());
  const int64_t now = std::chrono::duration_cast<std::chrono::seconds>(d_.clock.now().time_since_epoch()).count();
  if (retention_days_ > 0 && *received > 0 && now - *received < int64_t{retention_days_} * 86400)
    return finish(unavailable("study is under retention (" + std::to_string(retention_days_) + " days)"));
  // The rows and records of recent stores may still rest on their notes: a
  // crash after this delete must not bring them back (docs/audit.md).
  if (Status settled = before_delete_ ? before_delete_() : d_.audit.sync(); !settled.ok()) return finish(settled);
  auto removed = d_.index.deleteStudy(study_uid);
  if (!removed.ok()) return finish(removed.status());
  for (const auto& loc : *removed) (void)d_.blobs.remove(loc.blob_id);  // leftovers: swept at start-up
  return finish(static_cast<uint32_t>(removed->size()));
}

}  // namespace bastion
