// SqliteAuthService: grants of studies and patients, and break-glass.
#include "auth/sqlite_auth_service.h"
#include "bastion/service/archive.h"

namespace bastion::auth {

// ---- grants -------------------------------------------------------------
StatusOr<int64_t> SqliteAuthService::addGrant(const std::string& grantee, const std::string& study_uid,
                                              const std::string& patient_id, const std::string& issuer,
                                              Seconds lifetime, const std::string& reason, const std::string& by) {
  return insertGrant(grantee, study_uid, patient_id, issuer, lifetime, "grant", reason, by);
}

Status SqliteAuthService::removeGrant(int64_t id, const std::string& by) {
  std::lock_guard lock(mu_);
  ASSIGN_OR_RETURN(Stmt st, db_->prepare("DELETE FROM access_grant WHERE pk = ?"));
  Status s = st.bind(1, id).run();
  if (s.ok() && sqlite3_changes(db_->raw()) == 0) s = notFound("no grant " + std::to_string(id));
  auditAdmin("grant-remove", "", by, s, "id=" + std::to_string(id));
  return s;
}

StatusOr<std::vector<GrantInfo>> SqliteAuthService::listGrants(bool emergency_only) {
  std::lock_guard lock(mu_);
  ASSIGN_OR_RETURN(Stmt st, db_->prepare("SELECT pk, grantee, COALESCE(study_uid, ''), kind, reason, granted_by, "
                                         "patient_key IS NOT NULL, created, expires FROM access_grant "
                                         "WHERE ? = 0 OR kind = 'emergency' ORDER BY pk"));
  st.bind(1, int64_t{emergency_only});
  std::vector<GrantInfo> out;
  while (true) {
    ASSIGN_OR_RETURN(bool row, st.step());
    if (!row) break;
    out.push_back(
        {st.i64(0), st.text(1), st.text(2), st.text(3), st.text(4), st.text(5), st.i64(6) != 0, st.i64(7), st.i64(8)});
  }
  st.reset();
  return out;
}

StatusOr<GrantInfo> SqliteAuthService::breakGlass(const Principal& who, const std::string& study_uid,
                                                  const std::string& reason, const Origin& from) {
  const Decision d = policy_.decide(who, Action::kEmergencyAccess, {study_uid}, clock_.now());
  Status s = d.allowed ? okStatus() : permissionDenied("emergency access not permitted");
  if (s.ok() && reason.size() < 10)
    s = invalidArgument("state the reason for emergency access (10 characters or more)");
  if (s.ok() && study_uid.empty()) s = invalidArgument("name the study");
  AuditEvent e = event("break-glass", who.name, from, s, "reason: " + reason);
  e.study_uid = study_uid;
  e.rule = d.rule;
  e.severity = "high";
  Status audited = audit_.append(e);
  RETURN_IF_ERROR(s);
  if (!audited.ok()) return unavailable("emergency access needs its audit record: " + audited.message());
  ASSIGN_OR_RETURN(int64_t id,
                   insertGrant("user:" + who.name, study_uid, "", "", cfg_.break_glass, "emergency", reason, who.name));
  ASSIGN_OR_RETURN(auto all, listGrants(true));
  for (auto& g : all)
    if (g.id == id) return g;
  return internalError("emergency grant vanished");
}

StatusOr<int64_t> SqliteAuthService::insertGrant(const std::string& grantee, const std::string& study_uid,
                                                 const std::string& patient_id, const std::string& issuer,
                                                 Seconds lifetime, const std::string& kind, const std::string& reason,
                                                 const std::string& by) {
  const auto colon = grantee.find(':');
  const std::string type = colon == std::string::npos ? "" : grantee.substr(0, colon);
  if ((type != "user" && type != "group" && type != "node") || colon + 1 >= grantee.size())
    return invalidArgument("grantee must be user:NAME, group:NAME or node:AE");
  std::string subject = grantee;
  if (type == "user" && grantee.rfind("user:oidc:", 0) != 0) {  // local user names are case-insensitive
    ASSIGN_OR_RETURN(std::string n, normalizeUsername(grantee.substr(colon + 1)));
    subject = "user:" + n;
  }
  if (study_uid.empty() == patient_id.empty()) return invalidArgument("grant either a study or a patient");
  if (!study_uid.empty() && !isValidUid(study_uid)) return invalidArgument("invalid Study Instance UID");
  const int64_t now = nowUnix();
  std::lock_guard lock(mu_);
  ASSIGN_OR_RETURN(Stmt st, db_->prepare("INSERT INTO access_grant(grantee, study_uid, patient_key, kind, reason, "
                                         "granted_by, created, expires) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"));
  st.bind(1, subject);
  if (!study_uid.empty()) st.bind(2, study_uid);
  if (!patient_id.empty()) st.bind(3, ByteView(phi_.token("pkey", patient_id + '\\' + issuer)));
  Status s = st.bind(4, kind)
                 .bind(5, reason)
                 .bind(6, by)
                 .bind(7, now)
                 .bind(8, lifetime.count() ? now + lifetime.count() : 0)
                 .run();
  const int64_t id = db_->lastInsertId();
  AuditEvent e = event(kind == "emergency" ? "break-glass-grant" : "grant-add", by, {}, s,
                       grantee + (patient_id.empty() ? " study" : " patient") + " id=" + std::to_string(id));
  e.study_uid = study_uid;
  (void)audit_.append(e);
  RETURN_IF_ERROR(s);
  return id;
}

}  // namespace bastion::auth
