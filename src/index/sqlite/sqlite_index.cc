#include "index/sqlite/sqlite_index.h"

#include <variant>

#include <nlohmann/json.hpp>

#include "bastion/auth/principal.h"
#include "dicom/parse/dicom_scanner.h"
#include "index/matching.h"

namespace bastion::index {
namespace tg = dicom::tag;
namespace {

constexpr uint32_t kNumPatientStudies = 0x00201200, kNumPatientSeries = 0x00201202,
                   kNumPatientInstances = 0x00201204, kNumStudySeries = 0x00201206,
                   kNumStudyInstances = 0x00201208, kNumSeriesInstances = 0x00201209,
                   kModalitiesInStudy = 0x00080061;
constexpr size_t kMaxUidList = 1000;

// Patient PHI field order in the sealed blob.
enum PatientField { kPfName, kPfId, kPfIssuer, kPfBirth, kPfSex, kPfOtherIds, kPfCharset, kPfCount };
// Study PHI field order.
enum StudyField { kSfAccession, kSfReferring, kSfStudyId, kSfCount };

std::string patientIdentity(ByteView pkey) { return "patient:" + toHex(pkey); }
std::string studyIdentity(std::string_view uid) { return "study:" + std::string(uid); }

std::vector<std::string> prefixes(std::string_view v) {
  std::vector<std::string> out;
  for (size_t n = 1; n <= std::min(v.size(), PhiCodec::kMaxPrefix); ++n) out.emplace_back(v.substr(0, n));
  return out;
}

// The literal text before the first wildcard, or the whole value.
std::string_view literalPrefix(std::string_view p) { return p.substr(0, p.find_first_of("*?")); }

using Param = std::variant<std::string, Bytes, int64_t>;

struct Plan {
  std::string where;
  std::vector<Param> params;
  // Matches that need the decrypted value: (field index, kind, pattern).
  std::vector<std::tuple<int, MatchKind, std::string>> patient_checks, study_checks;
  bool impossible = false;  // a key that can match nothing (e.g. oversize UID list)

  void cond(const std::string& c) { where += (where.empty() ? " WHERE " : " AND ") + c; }
};

void bindAll(Stmt& st, const std::vector<Param>& params) {
  int i = 1;
  for (const auto& p : params) {
    if (std::holds_alternative<std::string>(p)) st.bind(i++, std::get<std::string>(p));
    else if (std::holds_alternative<int64_t>(p)) st.bind(i++, std::get<int64_t>(p));
    else st.bind(i++, ByteView(std::get<Bytes>(p)));
  }
}

// Adds "col = ?" / "col IN (...)" / range / wildcard conditions for a plain column.
void plainCond(Plan& plan, const std::string& col, MatchKind kind, const std::string& v) {
  if (v.empty() || v == "*") return;
  if (kind == MatchKind::kUidList) {
    auto uids = splitValues(v);
    if (uids.empty()) return;
    if (uids.size() > kMaxUidList) {
      plan.impossible = true;
      return;
    }
    std::string in;
    for (auto& u : uids) {
      in += in.empty() ? "?" : ",?";
      plan.params.emplace_back(u);
    }
    plan.cond(col + " IN (" + in + ")");
  } else if (kind == MatchKind::kRange && v.find('-') != std::string::npos) {
    const size_t dash = v.find('-');
    std::string lo = v.substr(0, dash), hi = v.substr(dash + 1);
    if (!lo.empty()) {
      plan.cond(col + " >= ?");
      plan.params.emplace_back(lo);
    }
    if (!hi.empty()) {
      // Inclusive on the upper bound's precision: "1200" covers "120059.99".
      plan.cond("substr(" + col + ", 1, " + std::to_string(hi.size()) + ") <= ?");
      plan.params.emplace_back(hi);
    }
    plan.cond(col + " <> ''");
  } else if (hasWildcard(v)) {
    plan.cond("dicom_match(?, " + col + ", " + (kind == MatchKind::kPersonName ? "1" : "0") + ")");
    plan.params.emplace_back(v);
  } else if (kind == MatchKind::kPersonName) {
    plan.cond("dicom_match(?, " + col + ", 1)");
    plan.params.emplace_back(v);
  } else {
    plan.cond(col + " = ?");
    plan.params.emplace_back(v);
  }
}

void dicomMatchFn(sqlite3_context* ctx, int, sqlite3_value** argv) {
  auto text = [](sqlite3_value* v) {
    const unsigned char* t = sqlite3_value_text(v);
    return std::string_view(t ? reinterpret_cast<const char*>(t) : "", static_cast<size_t>(sqlite3_value_bytes(v)));
  };
  sqlite3_result_int(ctx, wildcardMatch(text(argv[0]), text(argv[1]), sqlite3_value_int(argv[2]) != 0) ? 1 : 0);
}

}  // namespace

StatusOr<std::unique_ptr<SqliteIndex>> SqliteIndex::open(const std::string& path, const Keyring& keyring,
                                                         Random& random) {
  ASSIGN_OR_RETURN(auto writer, Db::open(path));
  ASSIGN_OR_RETURN(auto reader, Db::open(path, /*readonly=*/true));
  for (Db* db : {writer.get(), reader.get()})
    sqlite3_create_function(db->raw(), "dicom_match", 3, SQLITE_UTF8 | SQLITE_DETERMINISTIC, nullptr,
                            dicomMatchFn, nullptr, nullptr);
  return std::unique_ptr<SqliteIndex>(new SqliteIndex(std::move(writer), std::move(reader), keyring, random));
}

// ---- writes (group commit) -------------------------------------------------

StatusOr<PutResult> SqliteIndex::putInstance(const InstanceRecord& record) {
  Pending p{&record};
  return submit(p);
}

StatusOr<PutResult> SqliteIndex::putInstanceNoted(const InstanceRecord& record) {
  Pending p{&record, /*lazy=*/true};
  return submit(p);
}

namespace {
constexpr const char* kNoteVersion = "bastion-index-note-v1";
}  // namespace

std::optional<Bytes> SqliteIndex::noteFor(const InstanceRecord& r) {
  return phi_.seal(std::string(kNoteVersion) + ":" + r.blob_id,
                   {r.patient_id, r.patient_name, r.issuer_of_patient_id, r.patient_birth_date, r.patient_sex,
                    r.other_patient_ids, r.study_uid, r.study_date, r.study_time, r.accession_number,
                    r.referring_physician, r.study_description, r.study_id, r.requesting_physician, r.site,
                    std::to_string(r.received), r.series_uid, r.modality, r.series_number, r.series_description,
                    r.sop_uid, r.sop_class_uid, r.instance_number, r.transfer_syntax, r.specific_character_set,
                    std::to_string(r.size), r.sha256_hex});
}

StatusOr<InstanceRecord> SqliteIndex::openNote(ByteView note, const std::string& blob_id) const {
  ASSIGN_OR_RETURN(auto f, phi_.open(std::string(kNoteVersion) + ":" + blob_id, note));
  if (f.size() != 27) return dataLoss("index note malformed");
  InstanceRecord r;
  size_t i = 0;
  for (std::string* field : {&r.patient_id, &r.patient_name, &r.issuer_of_patient_id, &r.patient_birth_date,
                             &r.patient_sex, &r.other_patient_ids, &r.study_uid, &r.study_date, &r.study_time,
                             &r.accession_number, &r.referring_physician, &r.study_description, &r.study_id,
                             &r.requesting_physician, &r.site})
    *field = std::move(f[i++]);
  r.received = std::strtoll(f[i++].c_str(), nullptr, 10);
  for (std::string* field : {&r.series_uid, &r.modality, &r.series_number, &r.series_description, &r.sop_uid,
                             &r.sop_class_uid, &r.instance_number, &r.transfer_syntax, &r.specific_character_set})
    *field = std::move(f[i++]);
  r.size = std::strtoull(f[i++].c_str(), nullptr, 10);
  r.sha256_hex = std::move(f[i++]);
  r.blob_id = blob_id;
  return r;
}

Status SqliteIndex::sync() {
  return writes_.exclusive([&] { return writer_->syncFiles(); });
}

StatusOr<PutResult> SqliteIndex::submit(Pending& p) {
  writes_.submit(p, [this](std::vector<Pending*>& batch) {
    try {
      commitBatch(batch);
    } catch (...) {
      (void)writer_->exec("ROLLBACK");  // the next batch must not find a transaction open
      throw;
    }
  });
  return p.result;
}

void SqliteIndex::commitBatch(std::vector<Pending*>& batch) {
  // Only the batch's leader touches writer_ here (GroupCommit). Results are
  // published once COMMIT succeeded; until then each stays "not committed".
  bool lazy = true;
  for (const Pending* p : batch) lazy = lazy && p->lazy;
  Status s = writer_->setLazySync(lazy);
  if (s.ok()) s = writer_->exec("BEGIN IMMEDIATE");
  if (!s.ok()) {
    for (Pending* p : batch) p->result = s;
    return;
  }
  std::vector<StatusOr<PutResult>> results;
  results.reserve(batch.size());
  for (Pending* p : batch) {
    (void)writer_->exec("SAVEPOINT one");
    results.push_back(insertOne(*p->record));
    if (results.back().ok()) (void)writer_->exec("RELEASE one");
    else (void)writer_->exec("ROLLBACK TO one; RELEASE one");
  }
  s = writer_->exec("COMMIT");
  if (!s.ok()) {
    (void)writer_->exec("ROLLBACK");
    for (Pending* p : batch) p->result = s;
    return;
  }
  for (size_t i = 0; i < batch.size(); ++i) batch[i]->result = std::move(results[i]);
}

Status SqliteIndex::addTokens(const char* table, int64_t pk, const std::vector<Bytes>& tokens) {
  const std::string col = std::string(table) == "patient_token" ? "patient_pk" : "study_pk";
  ASSIGN_OR_RETURN(Stmt st, writer_->prepare("INSERT OR IGNORE INTO " + std::string(table) + "(token, " + col +
                                             ") VALUES (?, ?)"));
  for (const auto& t : tokens) RETURN_IF_ERROR(st.bind(1, ByteView(t)).bind(2, pk).run());
  return okStatus();
}

StatusOr<int64_t> SqliteIndex::upsertPatient(const InstanceRecord& r) {
  const std::string site = r.site.empty() ? std::string("main") : r.site;
  Bytes pkey = phi_.token("pkey", r.patient_id + '\\' + r.issuer_of_patient_id + '\\' + site);
  Bytes pid_key = phi_.token("pkey", r.patient_id + '\\' + r.issuer_of_patient_id);
  {
    ASSIGN_OR_RETURN(Stmt st, writer_->prepare("SELECT pk FROM patient WHERE pkey = ?"));
    st.bind(1, ByteView(pkey));
    ASSIGN_OR_RETURN(bool row, st.step());
    if (row) {
      int64_t pk = st.i64(0);
      st.reset();
      return pk;
    }
  }
  Bytes sealed = phi_.seal(patientIdentity(pkey), {r.patient_name, r.patient_id, r.issuer_of_patient_id,
                                                   r.patient_birth_date, r.patient_sex, r.other_patient_ids,
                                                   r.specific_character_set});
  ASSIGN_OR_RETURN(Stmt ins, writer_->prepare("INSERT INTO patient(pkey, phi, pid_key) VALUES (?, ?, ?)"));
  RETURN_IF_ERROR(ins.bind(1, ByteView(pkey)).bind(2, ByteView(sealed)).bind(3, ByteView(pid_key)).run());
  const int64_t pk = writer_->lastInsertId();
  std::vector<Bytes> tokens{phi_.token("pid", r.patient_id)};
  for (const auto& p : prefixes(r.patient_id)) tokens.push_back(phi_.token("pid*", p));
  const std::string name = upperAscii(r.patient_name);
  tokens.push_back(phi_.token("pn", name));
  for (const auto& p : prefixes(name)) tokens.push_back(phi_.token("pn*", p));
  RETURN_IF_ERROR(addTokens("patient_token", pk, tokens));
  return pk;
}

StatusOr<int64_t> SqliteIndex::findChild(const std::string& sql, const std::string& uid, int64_t parent,
                                         const char* conflict) {
  ASSIGN_OR_RETURN(Stmt st, writer_->prepare(sql));
  st.bind(1, uid);
  ASSIGN_OR_RETURN(bool row, st.step());
  if (!row) return int64_t{0};
  const int64_t pk = st.i64(0), owner = st.i64(1);
  st.reset();
  if (owner != parent) return invalidArgument(conflict);
  return pk;
}

StatusOr<int64_t> SqliteIndex::upsertStudy(const InstanceRecord& r, int64_t patient_pk) {
  ASSIGN_OR_RETURN(int64_t existing, findChild("SELECT pk, patient_pk FROM study WHERE study_uid = ?", r.study_uid,
                                                patient_pk, "study already belongs to another patient"));
  if (existing) return existing;
  Bytes sealed =
      phi_.seal(studyIdentity(r.study_uid), {r.accession_number, r.referring_physician, r.study_id});
  ASSIGN_OR_RETURN(Stmt ins, writer_->prepare("INSERT INTO study(patient_pk, study_uid, study_date, study_time, "
                                              "description, phi, site, received) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"));
  RETURN_IF_ERROR(ins.bind(1, patient_pk)
                      .bind(2, r.study_uid)
                      .bind(3, r.study_date)
                      .bind(4, r.study_time)
                      .bind(5, r.study_description)
                      .bind(6, ByteView(sealed))
                      .bind(7, r.site.empty() ? std::string("main") : r.site)
                      .bind(8, r.received)
                      .run());
  const int64_t pk = writer_->lastInsertId();
  std::vector<Bytes> tokens{phi_.token("acc", r.accession_number), phi_.token("ref", upperAscii(r.referring_physician))};
  // Scope tokens: the physicians this study is visible to (StudyScope::physician_names).
  for (const auto* pn : {&r.referring_physician, &r.requesting_physician})
    if (std::string n = normalizePersonName(*pn); !n.empty()) tokens.push_back(phi_.token("phys", n));
  RETURN_IF_ERROR(addTokens("study_token", pk, tokens));
  return pk;
}

StatusOr<int64_t> SqliteIndex::upsertSeries(const InstanceRecord& r, int64_t study_pk) {
  ASSIGN_OR_RETURN(int64_t existing, findChild("SELECT pk, study_pk FROM series WHERE series_uid = ?", r.series_uid,
                                                study_pk, "series already belongs to another study"));
  if (existing) return existing;
  ASSIGN_OR_RETURN(Stmt ins, writer_->prepare("INSERT INTO series(study_pk, series_uid, modality, series_number, "
                                              "description) VALUES (?, ?, ?, ?, ?)"));
  RETURN_IF_ERROR(ins.bind(1, study_pk)
                      .bind(2, r.series_uid)
                      .bind(3, r.modality)
                      .bind(4, r.series_number)
                      .bind(5, r.series_description)
                      .run());
  return writer_->lastInsertId();
}

StatusOr<PutResult> SqliteIndex::insertOne(const InstanceRecord& r) {
  {
    ASSIGN_OR_RETURN(Stmt st, writer_->prepare("SELECT sha256 FROM instance WHERE sop_uid = ?"));
    st.bind(1, r.sop_uid);
    ASSIGN_OR_RETURN(bool row, st.step());
    if (row) {
      const std::string sha = st.text(0);
      st.reset();
      if (sha == r.sha256_hex) return PutResult::kAlreadyStored;
      return alreadyExists("SOP Instance UID already stored with different content");
    }
  }
  ASSIGN_OR_RETURN(int64_t patient_pk, upsertPatient(r));
  ASSIGN_OR_RETURN(int64_t study_pk, upsertStudy(r, patient_pk));
  ASSIGN_OR_RETURN(int64_t series_pk, upsertSeries(r, study_pk));
  ASSIGN_OR_RETURN(Stmt ins, writer_->prepare("INSERT INTO instance(series_pk, sop_uid, sop_class_uid, "
                                              "instance_number, transfer_syntax, charset, blob_id, size, sha256) "
                                              "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"));
  RETURN_IF_ERROR(ins.bind(1, series_pk)
                      .bind(2, r.sop_uid)
                      .bind(3, r.sop_class_uid)
                      .bind(4, r.instance_number)
                      .bind(5, r.transfer_syntax)
                      .bind(6, r.specific_character_set)
                      .bind(7, r.blob_id)
                      .bind(8, static_cast<int64_t>(r.size))
                      .bind(9, r.sha256_hex)
                      .run());
  return PutResult::kInserted;
}

// ---- reads -----------------------------------------------------------------

namespace {

std::string jsonArray(const std::vector<std::string>& v) { return nlohmann::json(v).dump(); }

// The StudyScope condition on study alias `a` (appending its parameters),
// or "" when the scope admits every study. Constant SQL text whatever the
// scope holds, so prepared statements are reused.
std::string scopeCond(const StudyScope& sc, const std::string& a, std::vector<Param>& params, const PhiCodec& phi) {
  // A restriction (the node a user came through) is ANDed with what admits.
  std::string restrict;
  if (!sc.restrict_sites.empty()) {
    params.emplace_back(jsonArray(sc.restrict_sites));
    restrict = a;
    restrict += ".site IN (SELECT value FROM json_each(?))";
  }
  if (sc.all) return restrict;
  if (!restrict.empty()) restrict += " AND ";
  const std::string grantees = jsonArray(sc.grantees);
  // One site (the usual case) compares directly; more go through json_each.
  const bool one_site = sc.sites.size() == 1;
  if (one_site) params.emplace_back(sc.sites.front());
  else params.emplace_back(jsonArray(sc.sites));
  params.emplace_back(sc.physician_names.empty() ? Bytes() : phi.token("phys", sc.physician_names.front()));
  params.emplace_back(grantees);
  params.emplace_back(sc.now_unix);
  params.emplace_back(grantees);
  params.emplace_back(sc.now_unix);
  return "(" + restrict + "(" + a + (one_site ? ".site = ? OR " : ".site IN (SELECT value FROM json_each(?)) OR ") + a +
         ".pk IN (SELECT study_pk FROM study_token WHERE token = ?) OR " + a +
         ".study_uid IN (SELECT study_uid FROM access_grant WHERE grantee IN (SELECT value FROM json_each(?)) "
         "AND study_uid IS NOT NULL AND (expires = 0 OR expires > ?)) OR " + a +
         ".patient_pk IN (SELECT pp.pk FROM access_grant g JOIN patient pp ON pp.pid_key = g.patient_key "
         "WHERE g.grantee IN (SELECT value FROM json_each(?)) AND (g.expires = 0 OR g.expires > ?))))";
}

// " AND cond" or "".
std::string andScope(const StudyScope& sc, const std::string& a, std::vector<Param>& params, const PhiCodec& phi) {
  std::string c = scopeCond(sc, a, params, phi);
  return c.empty() ? c : " AND " + c;
}

// Builds the FROM/WHERE of a query at `level`; PHI keys become token lookups
// plus checks on decrypted values.
Plan planQuery(const Query& q, const PhiCodec& phi) {
  Plan plan;
  const QueryLevel lv = q.level;
  auto key = [&](uint32_t t) -> std::string {
    auto it = q.keys.find(t);
    return it == q.keys.end() ? std::string() : it->second;
  };
  // PatientID / PatientName: token for exact or literal prefix.
  auto tokenCond = [&](uint32_t t, const char* exact, const char* prefix, bool upper, int field, MatchKind kind) {
    std::string v = key(t);
    if (v.empty() || v == "*") return;
    if (upper) v = upperAscii(v);
    std::string_view lit = literalPrefix(v);
    if (!hasWildcard(v)) {
      plan.cond("p.pk IN (SELECT patient_pk FROM patient_token WHERE token = ?)");
      plan.params.emplace_back(phi.token(exact, v));
    } else if (!lit.empty()) {
      plan.cond("p.pk IN (SELECT patient_pk FROM patient_token WHERE token = ?)");
      plan.params.emplace_back(phi.token(prefix, lit.substr(0, PhiCodec::kMaxPrefix)));
    }
    plan.patient_checks.emplace_back(field, kind, v);
  };
  tokenCond(tg::kPatientId, "pid", "pid*", false, kPfId, MatchKind::kText);
  tokenCond(tg::kPatientName, "pn", "pn*", true, kPfName, MatchKind::kPersonName);
  for (auto [t, f, k] : {std::tuple{tg::kPatientBirthDate, kPfBirth, MatchKind::kRange},
                         std::tuple{tg::kPatientSex, kPfSex, MatchKind::kText},
                         std::tuple{tg::kIssuerOfPatientId, kPfIssuer, MatchKind::kText}}) {
    std::string v = key(t);
    if (!v.empty() && v != "*") plan.patient_checks.emplace_back(f, k, v);
  }
  if (lv == QueryLevel::kPatient) {
    std::vector<Param> sp;
    if (std::string c = scopeCond(q.scope, "s2", sp, phi); !c.empty()) {
      plan.cond("EXISTS (SELECT 1 FROM study s2 WHERE s2.patient_pk = p.pk AND " + c + ")");
      plan.params.insert(plan.params.end(), sp.begin(), sp.end());
    }
    return plan;
  }

  // Study level.
  {
    std::vector<Param> sp;
    if (std::string c = scopeCond(q.scope, "s", sp, phi); !c.empty()) {
      plan.cond(c);
      plan.params.insert(plan.params.end(), sp.begin(), sp.end());
    }
  }
  plainCond(plan, "s.study_uid", MatchKind::kUidList, key(tg::kStudyInstanceUid));
  plainCond(plan, "s.study_date", MatchKind::kRange, key(tg::kStudyDate));
  plainCond(plan, "s.study_time", MatchKind::kRange, key(tg::kStudyTime));
  plainCond(plan, "s.description", MatchKind::kText, key(tg::kStudyDescription));
  for (auto [t, dom, f, k] : {std::tuple{tg::kAccessionNumber, "acc", kSfAccession, MatchKind::kText},
                              std::tuple{tg::kReferringPhysicianName, "ref", kSfReferring, MatchKind::kPersonName}}) {
    std::string v = key(t);
    if (v.empty() || v == "*") continue;
    if (k == MatchKind::kPersonName) v = upperAscii(v);
    if (!hasWildcard(v)) {
      plan.cond("s.pk IN (SELECT study_pk FROM study_token WHERE token = ?)");
      plan.params.emplace_back(phi.token(dom, v));
    }
    plan.study_checks.emplace_back(f, k, v);
  }
  if (std::string v = key(tg::kStudyId); !v.empty() && v != "*")
    plan.study_checks.emplace_back(kSfStudyId, MatchKind::kText, v);
  if (std::string v = key(kModalitiesInStudy); !v.empty() && v != "*") {
    auto mods = splitValues(v);
    std::string conds;
    for (const auto& m : mods) {
      conds += conds.empty() ? "" : " OR ";
      conds += hasWildcard(m) ? "dicom_match(?, x.modality, 0)" : "x.modality = ?";
      plan.params.emplace_back(m);
    }
    if (!mods.empty()) plan.cond("EXISTS (SELECT 1 FROM series x WHERE x.study_pk = s.pk AND (" + conds + "))");
  }
  if (lv == QueryLevel::kStudy) return plan;

  plainCond(plan, "se.series_uid", MatchKind::kUidList, key(tg::kSeriesInstanceUid));
  plainCond(plan, "se.modality", MatchKind::kText, key(tg::kModality));
  plainCond(plan, "se.series_number", MatchKind::kText, key(tg::kSeriesNumber));
  plainCond(plan, "se.description", MatchKind::kText, key(tg::kSeriesDescription));
  if (lv == QueryLevel::kSeries) return plan;

  plainCond(plan, "i.sop_uid", MatchKind::kUidList, key(tg::kSopInstanceUid));
  plainCond(plan, "i.sop_class_uid", MatchKind::kUidList, key(tg::kSopClassUid));
  plainCond(plan, "i.instance_number", MatchKind::kText, key(tg::kInstanceNumber));
  return plan;
}

const char* fromClause(QueryLevel lv) {
  switch (lv) {
    case QueryLevel::kPatient: return " FROM patient p";
    case QueryLevel::kStudy: return " FROM study s JOIN patient p ON p.pk = s.patient_pk";
    case QueryLevel::kSeries:
      return " FROM series se JOIN study s ON s.pk = se.study_pk JOIN patient p ON p.pk = s.patient_pk";
    case QueryLevel::kImage:
      return " FROM instance i JOIN series se ON se.pk = i.series_pk JOIN study s ON s.pk = se.study_pk "
             "JOIN patient p ON p.pk = s.patient_pk";
  }
  return "";
}

bool checksPass(const std::vector<std::tuple<int, MatchKind, std::string>>& checks,
                const std::vector<std::string>& fields) {
  for (const auto& [field, kind, pattern] : checks) {
    const std::string value = static_cast<size_t>(field) < fields.size() ? fields[static_cast<size_t>(field)] : "";
    const std::string v = kind == MatchKind::kPersonName ? upperAscii(value) : value;
    if (!matchValue(kind, pattern, v)) return false;
  }
  return true;
}

}  // namespace

Status SqliteIndex::query(const Query& q, const std::function<bool(const QueryRow&)>& emit) {
  Plan plan = planQuery(q, phi_);
  if (plan.impossible) return invalidArgument("too many values in a UID list");
  // Patient-level counts include only the studies in scope: no trace of the others.
  std::vector<Param> params;
  std::string sql = "SELECT p.pkey, p.phi, (SELECT COUNT(*) FROM study x WHERE x.patient_pk = p.pk" +
                    andScope(q.scope, "x", params, phi_) +
                    "), (SELECT COUNT(*) FROM series x JOIN study y ON y.pk = x.study_pk WHERE y.patient_pk = p.pk" +
                    andScope(q.scope, "y", params, phi_) +
                    "), (SELECT COUNT(*) FROM instance x JOIN series y ON y.pk = x.series_pk JOIN study z ON "
                    "z.pk = y.study_pk WHERE z.patient_pk = p.pk" +
                    andScope(q.scope, "z", params, phi_) + ")";
  params.insert(params.end(), plan.params.begin(), plan.params.end());
  const QueryLevel lv = q.level;
  if (lv != QueryLevel::kPatient)
    sql += ", s.study_uid, s.study_date, s.study_time, s.description, s.phi, "
           "(SELECT COUNT(*) FROM series x WHERE x.study_pk = s.pk), "
           "(SELECT COUNT(*) FROM instance x JOIN series y ON y.pk = x.series_pk WHERE y.study_pk = s.pk), "
           "(SELECT group_concat(m, '\\') FROM (SELECT DISTINCT modality AS m FROM series x "
           "WHERE x.study_pk = s.pk AND modality <> '' ORDER BY m))";
  if (lv == QueryLevel::kSeries || lv == QueryLevel::kImage)
    sql += ", se.series_uid, se.modality, se.series_number, se.description, "
           "(SELECT COUNT(*) FROM instance x WHERE x.series_pk = se.pk)";
  if (lv == QueryLevel::kImage) sql += ", i.sop_uid, i.sop_class_uid, i.instance_number, i.charset";
  sql += fromClause(lv) + plan.where;
  sql += lv == QueryLevel::kPatient ? " ORDER BY p.pk"
         : lv == QueryLevel::kStudy ? " ORDER BY s.pk"
         : lv == QueryLevel::kSeries ? " ORDER BY se.pk"
                                     : " ORDER BY i.pk";

  std::lock_guard lock(read_mu_);
  ASSIGN_OR_RETURN(Stmt st, reader_->prepare(sql));
  bindAll(st, params);
  size_t emitted = 0;
  while (true) {
    ASSIGN_OR_RETURN(bool row, st.step());
    if (!row) break;
    const Bytes pkey = st.blob(0);
    auto pf = phi_.open(patientIdentity(pkey), st.blob(1));
    if (!pf.ok() || pf->size() < kPfCount) {
      st.reset();
      return dataLoss("index patient record failed authentication");
    }
    if (!checksPass(plan.patient_checks, *pf)) continue;
    QueryRow out;
    out[tg::kPatientName] = (*pf)[kPfName];
    out[tg::kPatientId] = (*pf)[kPfId];
    out[tg::kIssuerOfPatientId] = (*pf)[kPfIssuer];
    out[tg::kPatientBirthDate] = (*pf)[kPfBirth];
    out[tg::kPatientSex] = (*pf)[kPfSex];
    out[tg::kOtherPatientIds] = (*pf)[kPfOtherIds];
    out[tg::kSpecificCharacterSet] = (*pf)[kPfCharset];
    out[kNumPatientStudies] = std::to_string(st.i64(2));
    out[kNumPatientSeries] = std::to_string(st.i64(3));
    out[kNumPatientInstances] = std::to_string(st.i64(4));
    int c = 5;
    if (lv != QueryLevel::kPatient) {
      const std::string study_uid = st.text(c);
      auto sf = phi_.open(studyIdentity(study_uid), st.blob(c + 4));
      if (!sf.ok() || sf->size() < kSfCount) {
        st.reset();
        return dataLoss("index study record failed authentication");
      }
      if (!checksPass(plan.study_checks, *sf)) continue;
      out[tg::kStudyInstanceUid] = study_uid;
      out[tg::kStudyDate] = st.text(c + 1);
      out[tg::kStudyTime] = st.text(c + 2);
      out[tg::kStudyDescription] = st.text(c + 3);
      out[tg::kAccessionNumber] = (*sf)[kSfAccession];
      out[tg::kReferringPhysicianName] = (*sf)[kSfReferring];
      out[tg::kStudyId] = (*sf)[kSfStudyId];
      out[kNumStudySeries] = std::to_string(st.i64(c + 5));
      out[kNumStudyInstances] = std::to_string(st.i64(c + 6));
      out[kModalitiesInStudy] = st.text(c + 7);
      c += 8;
    }
    if (lv == QueryLevel::kSeries || lv == QueryLevel::kImage) {
      out[tg::kSeriesInstanceUid] = st.text(c);
      out[tg::kModality] = st.text(c + 1);
      out[tg::kSeriesNumber] = st.text(c + 2);
      out[tg::kSeriesDescription] = st.text(c + 3);
      out[kNumSeriesInstances] = std::to_string(st.i64(c + 4));
      c += 5;
    }
    if (lv == QueryLevel::kImage) {
      out[tg::kSopInstanceUid] = st.text(c);
      out[tg::kSopClassUid] = st.text(c + 1);
      out[tg::kInstanceNumber] = st.text(c + 2);
      if (!st.text(c + 3).empty()) out[tg::kSpecificCharacterSet] = st.text(c + 3);
    }
    ++emitted;
    if (!emit(out) || (q.limit && emitted >= q.limit)) break;
  }
  st.reset();
  return okStatus();
}

StatusOr<std::vector<InstanceLocation>> SqliteIndex::instancesFor(const Query& q) {
  Query image = q;
  image.level = QueryLevel::kImage;
  Plan plan = planQuery(image, phi_);
  if (plan.impossible) return invalidArgument("too many values in a UID list");
  const bool need_patient = !plan.patient_checks.empty();
  std::string sql = "SELECT s.study_uid, se.series_uid, i.sop_uid, i.sop_class_uid, i.transfer_syntax, "
                    "i.blob_id, i.sha256, i.size, p.pkey, p.phi" +
                    std::string(fromClause(QueryLevel::kImage)) + plan.where + " ORDER BY i.pk";
  std::vector<InstanceLocation> out;
  std::lock_guard lock(read_mu_);
  ASSIGN_OR_RETURN(Stmt st, reader_->prepare(sql));
  bindAll(st, plan.params);
  while (true) {
    ASSIGN_OR_RETURN(bool row, st.step());
    if (!row) break;
    if (need_patient) {
      auto pf = phi_.open(patientIdentity(st.blob(8)), st.blob(9));
      if (!pf.ok()) {
        st.reset();
        return dataLoss("index patient record failed authentication");
      }
      if (!checksPass(plan.patient_checks, *pf)) continue;
    }
    out.push_back({st.text(0), st.text(1), st.text(2), st.text(3), st.text(4), st.text(5), st.text(6),
                   static_cast<uint64_t>(st.i64(7))});
  }
  st.reset();
  return out;
}

StatusOr<std::optional<InstanceLocation>> SqliteIndex::findInstance(const std::string& sop_uid) {
  Query q;
  q.level = QueryLevel::kImage;
  q.keys[tg::kSopInstanceUid] = sop_uid;
  q.scope = StudyScope::everything();  // a lookup by UID for the services, not a user's query
  ASSIGN_OR_RETURN(auto v, instancesFor(q));
  if (v.empty()) return std::optional<InstanceLocation>();
  return std::optional<InstanceLocation>(v.front());
}

Status SqliteIndex::forEachInstance(const std::function<void(const InstanceLocation&)>& fn) {
  Query everything;
  everything.scope = StudyScope::everything();
  ASSIGN_OR_RETURN(auto all, instancesFor(everything));
  for (const auto& loc : all) fn(loc);
  return okStatus();
}

StatusOr<uint64_t> SqliteIndex::instanceCount() {
  std::lock_guard lock(read_mu_);
  ASSIGN_OR_RETURN(Stmt st, reader_->prepare("SELECT COUNT(*) FROM instance"));
  ASSIGN_OR_RETURN(bool row, st.step());
  uint64_t n = row ? static_cast<uint64_t>(st.i64(0)) : 0;
  st.reset();
  return n;
}

StatusOr<int64_t> SqliteIndex::studyReceived(const std::string& study_uid) {
  std::lock_guard lock(read_mu_);
  ASSIGN_OR_RETURN(Stmt st, reader_->prepare("SELECT received FROM study WHERE study_uid = ?"));
  st.bind(1, study_uid);
  ASSIGN_OR_RETURN(bool row, st.step());
  const int64_t v = row ? st.i64(0) : 0;
  st.reset();
  if (!row) return notFound("no such study");
  return v;
}

StatusOr<std::optional<std::string>> SqliteIndex::meta(const std::string& name) {
  std::lock_guard lock(read_mu_);
  ASSIGN_OR_RETURN(Stmt st, reader_->prepare("SELECT value FROM archive_meta WHERE name = ?"));
  st.bind(1, name);
  ASSIGN_OR_RETURN(bool row, st.step());
  std::optional<std::string> v;
  if (row) v = st.text(0);
  st.reset();
  return v;
}

Status SqliteIndex::setMeta(const std::string& name, const std::string& value) {
  return withWriter([&]() -> Status {
    ASSIGN_OR_RETURN(Stmt st, writer_->prepare("INSERT INTO archive_meta(name, value) VALUES (?, ?) "
                                               "ON CONFLICT(name) DO UPDATE SET value = excluded.value"));
    return st.bind(1, name).bind(2, value).run();
  });
}

StatusOr<Index::PatientRef> SqliteIndex::patientOfStudy(const std::string& study_uid) {
  std::lock_guard lock(read_mu_);
  ASSIGN_OR_RETURN(Stmt st, reader_->prepare(
                                "SELECT p.pkey, p.phi FROM study s JOIN patient p ON p.pk = s.patient_pk "
                                "WHERE s.study_uid = ?"));
  st.bind(1, study_uid);
  ASSIGN_OR_RETURN(bool row, st.step());
  if (!row) {
    st.reset();
    return notFound("no such study");
  }
  auto pf = phi_.open(patientIdentity(st.blob(0)), st.blob(1));
  st.reset();
  if (!pf.ok() || pf->size() < kPfCount) return dataLoss("index patient record failed authentication");
  return PatientRef{(*pf)[kPfId], (*pf)[kPfName]};
}

StatusOr<std::vector<InstanceLocation>> SqliteIndex::deleteStudy(const std::string& study_uid) {
  Query q;
  q.level = QueryLevel::kStudy;
  q.keys[tg::kStudyInstanceUid] = study_uid;
  q.scope = StudyScope::everything();
  ASSIGN_OR_RETURN(auto removed, instancesFor(q));
  if (removed.empty()) return notFound("no such study");
  Status written = withWriter([&]() -> Status {
    RETURN_IF_ERROR(writer_->exec("BEGIN IMMEDIATE"));
    Status s = [&]() -> Status {
      ASSIGN_OR_RETURN(Stmt find, writer_->prepare("SELECT pk, patient_pk FROM study WHERE study_uid = ?"));
      find.bind(1, study_uid);
      ASSIGN_OR_RETURN(bool row, find.step());
      if (!row) return notFound("no such study");
      const int64_t pk = find.i64(0), patient = find.i64(1);
      find.reset();
      for (const char* sql : {"DELETE FROM instance_metadata WHERE instance_pk IN (SELECT i.pk FROM instance i JOIN "
                              "series s ON i.series_pk = s.pk WHERE s.study_pk = ?)",
                              "DELETE FROM instance WHERE series_pk IN (SELECT pk FROM series WHERE study_pk = ?)",
                              "DELETE FROM series WHERE study_pk = ?", "DELETE FROM study_token WHERE study_pk = ?",
                              "DELETE FROM study WHERE pk = ?"}) {
        ASSIGN_OR_RETURN(Stmt st, writer_->prepare(sql));
        RETURN_IF_ERROR(st.bind(1, pk).run());
      }
      for (const char* sql : {"DELETE FROM patient_token WHERE patient_pk = ?1 AND NOT EXISTS "
                              "(SELECT 1 FROM study WHERE patient_pk = ?1)",
                              "DELETE FROM patient WHERE pk = ?1 AND NOT EXISTS (SELECT 1 FROM study WHERE patient_pk = ?1)"}) {
        ASSIGN_OR_RETURN(Stmt st, writer_->prepare(sql));
        RETURN_IF_ERROR(st.bind(1, patient).run());
      }
      return okStatus();
    }();
    if (!s.ok()) {
      (void)writer_->exec("ROLLBACK");
      return s;
    }
    return writer_->exec("COMMIT");
  });
  RETURN_IF_ERROR(written);
  return removed;
}

// ---- node registry ---------------------------------------------------------

Status SqliteIndex::add(const DicomNode& n) {
  RETURN_IF_ERROR(validateAeTitle(n.ae_title));
  RETURN_IF_ERROR(validateCidr(n.source_cidr));
  return withWriter([&]() -> Status {
  ASSIGN_OR_RETURN(Stmt st, writer_->prepare("INSERT INTO node(ae_title, source_cidr, cert_sha256, permissions, "
                                             "move_host, move_port, site, scope) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"));
  Status s = st.bind(1, n.ae_title)
                 .bind(2, n.source_cidr)
                 .bind(3, n.cert_sha256)
                 .bind(4, formatPermissions(n.permissions))
                 .bind(5, n.move_host)
                 .bind(6, int64_t{n.move_port})
                 .bind(7, n.site.empty() ? std::string("main") : n.site)
                 .bind(8, formatScopeRules(n.scope_rules))
                 .run();
  if (s.code() == StatusCode::kAlreadyExists) return alreadyExists("node " + n.ae_title + " already exists");
  return s;
  });
}

Status SqliteIndex::remove(const std::string& ae) {
  return withWriter([&]() -> Status {
    ASSIGN_OR_RETURN(Stmt st, writer_->prepare("DELETE FROM node WHERE ae_title = ?"));
    RETURN_IF_ERROR(st.bind(1, ae).run());
    if (sqlite3_changes(writer_->raw()) == 0) return notFound("no node " + ae);
    return okStatus();
  });
}

Status SqliteIndex::withWriter(const std::function<Status()>& fn) {
  return writes_.exclusive([&]() -> Status {
    RETURN_IF_ERROR(writer_->setLazySync(false));  // everything but noted instances commits synced
    return fn();
  });
}

StatusOr<std::vector<DicomNode>> SqliteIndex::list() {
  std::lock_guard lock(read_mu_);
  ASSIGN_OR_RETURN(Stmt st, reader_->prepare("SELECT ae_title, source_cidr, cert_sha256, permissions, move_host, "
                                             "move_port, site, scope FROM node ORDER BY ae_title"));
  std::vector<DicomNode> out;
  while (true) {
    ASSIGN_OR_RETURN(bool row, st.step());
    if (!row) break;
    DicomNode n{st.text(0), st.text(1), st.text(2), 0, st.text(4), static_cast<uint16_t>(st.i64(5))};
    auto perms = parsePermissions(st.text(3));
    n.permissions = perms.ok() ? *perms : 0;
    n.site = st.text(6);
    auto scope = parseScopeRules(st.text(7));
    n.scope_rules = scope.ok() ? *scope : kScopeSite;
    out.push_back(std::move(n));
  }
  st.reset();
  return out;
}

StatusOr<std::optional<DicomNode>> SqliteIndex::find(const std::string& ae) {
  ASSIGN_OR_RETURN(auto all, list());
  for (auto& n : all)
    if (n.ae_title == ae) return std::optional<DicomNode>(std::move(n));
  return std::optional<DicomNode>();
}

namespace {
std::string metadataIdentity(const std::string& sop_uid, const std::string& context) {
  return "instance-metadata|" + sop_uid + "|" + context;
}
}  // namespace

StatusOr<std::vector<std::optional<std::string>>> SqliteIndex::cachedMetadata(
    const std::vector<std::pair<std::string, std::string>>& wanted) {
  // The rows under the reader's lock; the decryption after, so that other
  // readers (QIDO) do not wait for it.
  std::vector<std::optional<Bytes>> sealed;
  sealed.reserve(wanted.size());
  {
    std::lock_guard lock(read_mu_);
    ASSIGN_OR_RETURN(Stmt st, reader_->prepare("SELECT m.sealed FROM instance_metadata m JOIN instance i "
                                               "ON i.pk = m.instance_pk WHERE i.sop_uid = ?"));
    for (const auto& w : wanted) {
      st.bind(1, w.first);
      ASSIGN_OR_RETURN(bool row, st.step());
      sealed.push_back(row ? std::optional<Bytes>(st.blob(0)) : std::nullopt);
      st.reset();
    }
  }
  std::vector<std::optional<std::string>> out(wanted.size());
  for (size_t i = 0; i < wanted.size(); ++i) {
    if (!sealed[i]) continue;
    auto fields = phi_.open(metadataIdentity(wanted[i].first, wanted[i].second), *sealed[i]);
    if (fields.ok() && fields->size() == 1) out[i] = std::move((*fields)[0]);
  }
  return out;
}

Status SqliteIndex::putCachedMetadata(const std::vector<CachedMetadata>& entries) {
  if (entries.empty()) return okStatus();
  return withWriter([&]() -> Status {
    RETURN_IF_ERROR(writer_->exec("BEGIN IMMEDIATE"));
    Status s = [&]() -> Status {
      ASSIGN_OR_RETURN(Stmt st, writer_->prepare("INSERT OR REPLACE INTO instance_metadata(instance_pk, sealed) "
                                                 "SELECT pk, ? FROM instance WHERE sop_uid = ?"));
      for (const auto& e : entries) {
        const Bytes sealed = phi_.seal(metadataIdentity(e.sop_uid, e.context), {e.json});
        st.bind(1, ByteView(sealed));
        st.bind(2, e.sop_uid);
        RETURN_IF_ERROR(st.run());
        st.reset();
      }
      return okStatus();
    }();
    if (!s.ok()) {
      (void)writer_->exec("ROLLBACK");
      return s;
    }
    return writer_->exec("COMMIT");
  });
}

}  // namespace bastion::index
