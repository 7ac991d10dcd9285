#include "web/dicomweb/dicomweb_service.h"

#include <charconv>
#include <nlohmann/json.hpp>

#include "audit/dicom_message.h"

#include "crypto/aead.h"
#include "dicom/parse/dicom_scanner.h"
#include "service/prefetch.h"
#include "web/dicomweb/negotiation.h"
#include "web/dicomweb/ordered_jobs.h"
#include "web/dicomweb/qido.h"
#include "web/http/multipart.h"
#include "web/http/query_string.h"

namespace bastion::web {
namespace {

constexpr const char* kCookie = "__Host-bastion-session";
// WADO-RS streams objects larger than this segment by segment, in chunks of kStreamChunk.
constexpr uint64_t kStreamObjectsAbove = 8ull << 20;
constexpr size_t kStreamChunk = 256 << 10;
// Version of the DICOM JSON that /metadata caches: change it when that output changes.
constexpr std::string_view kMetadataFormat = "dicom-json-v1|";
// STOW-RS parts being stored while the body is still read: at most this many bytes.
constexpr uint64_t kStowBytesInFlight = 64ull << 20;

Response json(int status, const nlohmann::json& body, const char* type = "application/json") {
  Response r;
  r.status = status;
  r.body = body.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  r.set("Content-Type", type);
  return r;
}

Response error(int status, const std::string& message) { return json(status, {{"error", message}}); }

int httpStatusFor(const Status& s) {
  switch (s.code()) {
    case StatusCode::kUnauthenticated:
      return 401;
    case StatusCode::kPermissionDenied:
      return 403;
    case StatusCode::kInvalidArgument:
      return 400;
    case StatusCode::kNotFound:
      return 404;
    case StatusCode::kResourceExhausted:
      return 429;
    default:
      return 500;
  }
}

std::vector<std::string> splitPath(const std::string& path) {
  std::vector<std::string> out;
  size_t start = 1;
  while (start <= path.size()) {
    size_t slash = path.find('/', start);
    if (slash == std::string::npos) slash = path.size();
    out.push_back(path.substr(start, slash - start));
    start = slash + 1;
  }
  if (!out.empty() && out.back().empty()) out.pop_back();  // trailing '/'
  return out;
}

// A frame number (1-999999) or nothing.
std::optional<int> frameNumber(const std::string& s) {
  if (s.empty() || s.size() > 6 || s.find_first_not_of("0123456789") != std::string::npos) return std::nullopt;
  return std::stoi(s);
}

std::string cookieValue(const std::string& header, const std::string& name) {
  size_t pos = 0;
  while (pos < header.size()) {
    size_t end = header.find(';', pos);
    if (end == std::string::npos) end = header.size();
    std::string part = header.substr(pos, end - pos);
    while (!part.empty() && part.front() == ' ') part.erase(0, 1);
    if (part.rfind(name + "=", 0) == 0) return part.substr(name.size() + 1);
    pos = end + 1;
  }
  return {};
}

std::string randomHex(size_t bytes) {
  Bytes b(bytes);
  Random::system().fill(b);
  return toHex(b);
}

// FailureReason (0008,1197) for a refused STOW-RS instance (PS3.4 B.2.3).
int failureReasonFor(const Status& s) {
  switch (s.code()) {
    case StatusCode::kPermissionDenied:
      return 0x0124;
    case StatusCode::kResourceExhausted:
      return 0xA700;
    case StatusCode::kAlreadyExists:
      return 0xC010;
    case StatusCode::kInvalidArgument:
      return 0xC000;
    default:
      return 0x0110;
  }
}

}  // namespace

std::string csrfTokenFor(const std::string& session_token) {
  return toHex(crypto::sha256(asBytes("bastion-csrf-v1:" + session_token))).substr(0, 40);
}

bool DicomWebService::authenticate(Request& req, CallContext& ctx, Response& refusal) {
  ctx.peer_address = req.peer_address;
  const Origin from{req.peer_address, "", ""};
  const std::string authz = req.header("authorization");
  StatusOr<Principal> p = unauthenticated("authentication required");
  bool cookie = false;
  if (authz.rfind("Bearer ", 0) == 0) {
    const std::string tok = authz.substr(7);
    if (tok.rfind("bat_", 0) == 0)
      p = auth_.apiToken(tok, from);
    else if (std::count(tok.begin(), tok.end(), '.') == 2)
      p = auth_.jwt(tok, from);
    else
      p = unauthenticated("unrecognised bearer token");
  } else if (!authz.empty()) {
    p = unauthenticated("unsupported authorization scheme");
  } else if (const std::string sess = cookieValue(req.header("cookie"), kCookie); !sess.empty()) {
    cookie = true;
    p = auth_.session(sess);
    // CSRF: state-changing requests with the cookie carry the session's token.
    if (p.ok() && req.method != "GET" && req.method != "HEAD" && req.method != "OPTIONS" &&
        req.header("x-csrf-token") != csrfTokenFor(sess))
      p = permissionDenied("missing or wrong CSRF token");
  }
  if (!p.ok()) {
    refusal = error(p.status().code() == StatusCode::kResourceExhausted  ? 429
                    : p.status().code() == StatusCode::kPermissionDenied ? 403
                                                                         : 401,
                    p.status().code() == StatusCode::kPermissionDenied ? p.status().message() : "unauthorized");
    if (refusal.status == 401) refusal.set("WWW-Authenticate", "Bearer realm=\"bastion\"");
    AuditEvent e = auditEventFor(ctx, clock_, "http-auth");
    e.outcome = "denied";
    e.detail = req.method + " " + req.path.substr(0, 64) + ": " + p.status().message() + (cookie ? " (cookie)" : "");
    e.rule = "deny:authentication";
    (void)audit_.append(e);
    return false;
  }
  ctx.principal = *p;
  if (cfg_.user_rate_per_s > 0) {
    const auto d = user_limiter_.admit(p->name, std::chrono::steady_clock::now());
    if (!d.allowed) {
      refusal = error(429, "too many requests");
      refusal.set("Retry-After", std::to_string(d.retryAfterSeconds()));
      if (d.first_refusal) {
        AuditEvent e = auditEventFor(ctx, clock_, "throttle");
        e.outcome = "denied";
        e.detail = "request rate over the per-user limit";
        e.rule = "deny:rate-limit";
        (void)audit_.append(e);
      }
      return false;
    }
  }
  return true;
}

Response DicomWebService::handle(Request& req) {
  const auto parts = splitPath(req.path);
  // Segments are percent-decoded one by one; none may hide a separator.
  std::vector<std::string> seg;
  for (const auto& s : parts) {
    auto d = decodePathSegment(s);
    if (!d.ok() || d->empty()) return error(400, "malformed path");
    seg.push_back(*d);
  }
  if (seg.size() == 2 && seg[0] == "api" && seg[1] == "login") {
    if (req.method != "POST") return error(405, "method not allowed");
    return login(req);
  }
  if (seg.size() == 2 && seg[0] == "api" && seg[1] == "logout") {
    if (req.method != "POST") return error(405, "method not allowed");
    return logout(req);
  }
  const bool api = !seg.empty() && (seg[0] == "api" || seg[0] == "dicom-web" || seg[0] == "wado");
  if (!api) return error(404, "not found");
  CallContext ctx;
  Response refusal;
  if (!authenticate(req, ctx, refusal)) return refusal;
  if (seg[0] == "api") {
    if (seg.size() == 2 && seg[1] == "session" && req.method == "GET") return session(req, ctx);
    if (seg.size() == 2 && seg[1] == "audit" && req.method == "GET" && trail_) return auditSearch(req, ctx);
    return error(404, "not found");
  }
  if (seg[0] == "wado") return req.method == "GET" ? wadoUri(req, ctx) : error(405, "method not allowed");
  // /dicom-web/...: the segment after studies/series/instances is a UID.
  const size_t n = seg.size();
  for (size_t i = 1; i + 1 < n; ++i)
    if ((seg[i] == "studies" || seg[i] == "series" || seg[i] == "instances") && !isValidUid(seg[i + 1]))
      return error(400, "invalid UID in path");
  auto is = [&](size_t i, const char* v) { return i < n && seg[i] == v; };
  const bool get = req.method == "GET", post = req.method == "POST";
  if (req.method == "OPTIONS" && n <= 2) return capabilities();
  if (n == 2 && is(1, "studies")) {
    if (get) return qido(req, ctx, QueryLevel::kStudy, "", "");
    if (post) return stow(req, ctx, "");
  } else if (n == 2 && is(1, "series") && get) {
    return qido(req, ctx, QueryLevel::kSeries, "", "");
  } else if (n == 2 && is(1, "instances") && get) {
    return qido(req, ctx, QueryLevel::kImage, "", "");
  } else if (n == 3 && is(1, "studies")) {
    if (get) return wado(req, ctx, QueryLevel::kStudy, seg[2], "", "");
    if (post) return stow(req, ctx, seg[2]);
    if (req.method == "DELETE") {
      auto removed = remove_.deleteStudy(ctx, seg[2]);
      if (removed.ok()) return json(200, {{"deleted_instances", *removed}});
      switch (removed.status().code()) {
        case StatusCode::kPermissionDenied:
          return error(403, "forbidden");
        case StatusCode::kNotFound:
          return error(404, "not found");
        case StatusCode::kUnavailable:
          return error(409, removed.status().message());
        default:
          return error(500, "delete failed");
      }
    }
  } else if (n == 4 && is(1, "studies") && get) {
    if (is(3, "series")) return qido(req, ctx, QueryLevel::kSeries, seg[2], "");
    if (is(3, "instances")) return qido(req, ctx, QueryLevel::kImage, seg[2], "");
    if (is(3, "metadata")) return metadata(ctx, QueryLevel::kStudy, seg[2], "", "");
  } else if (n == 5 && is(1, "studies") && is(3, "series") && get) {
    return wado(req, ctx, QueryLevel::kSeries, seg[2], seg[4], "");
  } else if (n == 6 && is(1, "studies") && is(3, "series") && get) {
    if (is(5, "instances")) return qido(req, ctx, QueryLevel::kImage, seg[2], seg[4]);
    if (is(5, "metadata")) return metadata(ctx, QueryLevel::kSeries, seg[2], seg[4], "");
  } else if (n == 7 && is(1, "studies") && is(3, "series") && is(5, "instances") && get) {
    return wado(req, ctx, QueryLevel::kImage, seg[2], seg[4], seg[6]);
  } else if (n == 8 && is(1, "studies") && is(3, "series") && is(5, "instances") && get) {
    if (is(7, "metadata")) return metadata(ctx, QueryLevel::kImage, seg[2], seg[4], seg[6]);
    if (is(7, "rendered")) return image(req, ctx, seg[2], seg[4], seg[6], 1, 0, "");
    if (is(7, "thumbnail")) return image(req, ctx, seg[2], seg[4], seg[6], 1, 128, "");
  } else if (n == 9 && is(1, "studies") && is(3, "series") && is(5, "instances") && is(7, "bulkdata") && get) {
    return bulkdata(ctx, seg[2], seg[4], seg[6], seg[8]);
  } else if (n == 9 && is(1, "studies") && is(3, "series") && is(5, "instances") && is(7, "frames") && get) {
    return frames(req, ctx, seg[2], seg[4], seg[6], seg[8]);
  } else if (n == 10 && is(1, "studies") && is(3, "series") && is(5, "instances") && is(7, "frames") &&
             (is(9, "rendered") || is(9, "thumbnail")) && get) {
    const auto frame = frameNumber(seg[8]);
    if (!frame) return error(400, "one frame number");
    return image(req, ctx, seg[2], seg[4], seg[6], *frame, is(9, "thumbnail") ? 128 : 0, "");
  } else {
    return error(404, "not found");
  }
  return error(n <= 10 ? 405 : 404, "method not allowed");
}

Response DicomWebService::login(Request& req) {
  Bytes body, chunk;
  while (true) {  // a small JSON object
    Status s = req.readBody(chunk, 4096);
    if (!s.ok()) return error(400, "unreadable body");
    if (chunk.empty()) break;
    body.insert(body.end(), chunk.begin(), chunk.end());
    if (body.size() > 8192) return error(413, "body too large");
  }
  auto j = nlohmann::json::parse(body.begin(), body.end(), nullptr, false);
  if (!j.is_object() || !j["username"].is_string() || !j["password"].is_string() || !j["code"].is_string())
    return error(400, "expected {\"username\", \"password\", \"code\"}");
  const Origin from{req.peer_address, "", ""};
  auto tok = auth_.login(j["username"].get<std::string>(), j["password"].get<std::string>(),
                         j["code"].get<std::string>(), from);
  if (!tok.ok()) {
    const int st = tok.status().code() == StatusCode::kResourceExhausted ? 429 : 401;
    return error(st, st == 429 ? "too many attempts; try again later" : "invalid credentials");
  }
  auto p = auth_.session(*tok);
  Response r = json(200, {{"user", p.ok() ? p->name : ""}, {"csrf_token", csrfTokenFor(*tok)}});
  r.set("Set-Cookie", std::string(kCookie) + "=" + *tok + "; Path=/; Secure; HttpOnly; SameSite=Strict");
  return r;
}

Response DicomWebService::logout(Request& req) {
  const std::string sess = cookieValue(req.header("cookie"), kCookie);
  if (!sess.empty() && req.header("x-csrf-token") == csrfTokenFor(sess)) {
    AuditEvent e = systemEvent(clock_.now(), "", "logout", "success");
    e.source_address = req.peer_address;
    if (auto p = auth_.session(sess); p.ok()) e.user = p->name;
    const Status s = auth_.logout(sess);
    if (!s.ok()) {
      e.outcome = "failure";
      e.detail = s.toString();
    }
    (void)audit_.append(e);
  }
  Response r = json(200, {{"logged_out", true}});
  r.set("Set-Cookie", std::string(kCookie) + "=; Path=/; Secure; HttpOnly; SameSite=Strict; Max-Age=0");
  return r;
}

// GET /api/audit?patient_id=&user=&node=&study=&action=&outcome=&source=&since=&until=&after=&limit=
// The auditor's search of the trail (JSON records, PHI decrypted); the
// search itself is recorded, its patient sealed like any other.
Response DicomWebService::auditSearch(Request& req, const CallContext& ctx) {
  AuditEvent e = auditEventFor(ctx, clock_, "audit-read");
  Decision d = auth_.policy().decide(ctx.principal, Action::kReadAudit, {}, clock_.now());
  // The trail names patients: someone restricted to de-identified data
  // does not read it, whatever else they hold.
  if (d.allowed && (ctx.principal.permissions & kPermDeidentified)) d = {false, "deny:deidentified-only:read_audit", {}};
  e.rule = d.rule;
  e.detail = "search via HTTPS";  // then the filters; the patient ID goes sealed into patient_id
  auto refuse = [&](int status, const std::string& outcome, const std::string& why) {
    e.outcome = outcome;
    e.detail += " (" + why + ")";
    (void)audit_.append(e);
    return error(status, why);
  };
  if (!d.allowed) return refuse(403, "denied", "forbidden");
  auto params = parseQueryString(req.query);
  if (!params.ok()) return refuse(400, "failure", params.status().message());
  audit::AuditFilter f;
  f.limit = 1000;
  for (const auto& [k, v] : *params) {
    if (k != "patient_id") e.detail += " " + k.substr(0, 32) + "=" + v.substr(0, 128);
    if (k == "patient_id") f.patient_id = e.patient_id = v;
    else if (k == "user") f.user = v;
    else if (k == "node") f.actor = v;
    else if (k == "study") f.study = v;
    else if (k == "action") f.action = v;
    else if (k == "outcome") f.outcome = v;
    else if (k == "source") f.source = v;
    else if (k == "since" || k == "until") {
      auto t = parseIsoTime(v);
      if (!t) return refuse(400, "failure", "bad time in " + k);
      (k == "since" ? f.since : f.until) = *t;
    } else if (k == "after" || k == "limit") {
      int64_t n = 0;
      const auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), n);
      if (ec != std::errc() || end != v.data() + v.size() || n < 0) return refuse(400, "failure", "bad number in " + k);
      if (k == "after") f.after_seq = n;
      else f.limit = static_cast<size_t>(std::clamp<int64_t>(n, 1, 1000));
    } else {
      return refuse(400, "failure", "unknown parameter " + k);
    }
  }
  nlohmann::json out = nlohmann::json::array();
  const Status s = trail_->search(f, [&](const audit::AuditEntry& entry) {
    out.push_back(audit::plainJson(entry));
    return true;
  });
  e.patient_id = f.patient_id;
  e.instance_count = static_cast<uint32_t>(out.size());
  e.outcome = s.ok() ? "success" : "failure";
  if (!s.ok()) e.detail += ": " + s.toString();
  if (!audit_.append(e).ok()) return error(503, "the audit trail cannot record this read");
  if (!s.ok()) return error(500, "audit search failed");
  return json(200, out);
}

Response DicomWebService::session(Request&, const CallContext& ctx) {
  const Principal& p = ctx.principal;
  return json(200, {{"user", p.name},
                    {"roles", p.roles},
                    {"site", p.site},
                    {"method", p.auth_method},
                    {"permissions", formatPermissions(p.permissions)}});
}

Response DicomWebService::qido(Request& req, const CallContext& ctx, QueryLevel level, const std::string& study,
                               const std::string& series) {
  auto params = parseQueryString(req.query);
  if (!params.ok()) return error(400, params.status().message());
  auto q = parseQido(level, study, series, *params, cfg_.max_qido_results);
  if (!q.ok()) return error(400, q.status().message());
  if (q->offset > 1000000) return error(400, "offset too large");
  Query query = q->query;
  query.limit = q->query.limit + q->offset;  // the service applies the limit; the offset is skipped here
  nlohmann::json out = nlohmann::json::array();
  size_t seen = 0;
  const std::string base = cfg_.base_url + "/dicom-web";
  Status s = query_.find(ctx, query, [&](const QueryRow& row) {
    if (seen++ >= q->offset) out.push_back(toDicomJson(row, level, base));
    return true;
  });
  if (!s.ok()) return error(httpStatusFor(s), s.code() == StatusCode::kPermissionDenied ? "forbidden" : "query failed");
  return json(200, out, "application/dicom+json");
}

Response DicomWebService::stow(Request& req, const CallContext& ctx, const std::string& study) {
  auto mt = parseMediaType(req.header("content-type"));
  if (!mt.ok() || mt->type != "multipart/related" || !mt->params.count("boundary"))
    return error(415, "expected multipart/related with a boundary");
  if (mt->params.count("type") && mt->params["type"] != "application/dicom")
    return error(415, "only application/dicom parts are accepted");
  if (!req.header("content-encoding").empty() && req.header("content-encoding") != "identity")
    return error(415, "content encodings are not accepted");
  nlohmann::json referenced = nlohmann::json::array(), failed = nlohmann::json::array();
  Bytes part;
  bool oversize = false, part_ok = true;
  const std::string base = cfg_.base_url + "/dicom-web";
  // Each part goes through the C-STORE path on the store pool while the
  // next one is parsed: their durable writes overlap and group-commit. The
  // response lists them in the order they came.
  struct Outcome {
    bool stored;
    nlohmann::json item;
  };
  OrderedJobs<Outcome> jobs(store_pool_, kStowBytesInFlight,
                            {false, {{"00081197", {{"vr", "US"}, {"Value", {0x0110}}}}}});
  auto finish = [&]() -> Status {
    // The next part is probably as large: one allocation instead of doublings and their copies.
    const size_t next = static_cast<size_t>(std::min<uint64_t>(part.size(), cfg_.max_object_size));
    const Status early = !part_ok   ? invalidArgument("part is not application/dicom")
                         : oversize ? resourceExhausted("instance over the size limit")
                                    : okStatus();
    jobs.submit(std::move(part), [this, &ctx, &study, &base, early](ByteView file) -> Outcome {
      auto p10 = dicom::parsePart10(file);
      StoreService::StoredUids uids;
      const Status s = early.ok() ? store_.storeFile(ctx, file, study, &uids).status() : early;
      const std::string cls = !uids.sop_class.empty() ? uids.sop_class : p10.ok() ? p10->media_sop_class : "";
      const std::string inst = !uids.sop.empty() ? uids.sop : p10.ok() ? p10->media_sop_instance : "";
      nlohmann::json item = {{"00081150", {{"vr", "UI"}, {"Value", {cls}}}},
                             {"00081155", {{"vr", "UI"}, {"Value", {inst}}}}};
      if (s.ok()) {
        item["00081190"] = {
            {"vr", "UR"},
            {"Value", {base + "/studies/" + uids.study + "/series/" + uids.series + "/instances/" + uids.sop}}};
      } else {
        item["00081197"] = {{"vr", "US"}, {"Value", {failureReasonFor(s)}}};
      }
      return {s.ok(), std::move(item)};
    });
    part = Bytes();
    part.reserve(next);
    oversize = false;
    return okStatus();
  };
  MultipartParser parser(mt->params["boundary"], {cfg_.max_parts, 16384, 65536},
                         {[&](const std::map<std::string, std::string>& h) {
                            auto it = h.find("content-type");
                            auto pt =
                                it == h.end() ? StatusOr<MediaType>(invalidArgument("")) : parseMediaType(it->second);
                            part_ok = pt.ok() && pt->type == "application/dicom";
                            return okStatus();
                          },
                          [&](ByteView d) {
                            if (part.size() + d.size() > cfg_.max_object_size)
                              oversize = true;
                            else
                              part.insert(part.end(), d.begin(), d.end());
                            return okStatus();
                          },
                          finish});
  Bytes chunk;
  while (true) {
    Status s = req.readBody(chunk, 1 << 16);
    if (!s.ok()) return error(s.code() == StatusCode::kResourceExhausted ? 413 : 400, s.message());
    if (chunk.empty()) break;
    s = parser.feed(chunk);
    if (!s.ok()) return error(s.code() == StatusCode::kResourceExhausted ? 413 : 400, s.message());
  }
  if (Status s = parser.finish(); !s.ok()) return error(400, s.message());
  for (auto& o : jobs.results()) (o.stored ? referenced : failed).push_back(std::move(o.item));
  nlohmann::json out = nlohmann::json::object();
  if (!referenced.empty()) out["00081199"] = {{"vr", "SQ"}, {"Value", referenced}};
  if (!failed.empty()) out["00081198"] = {{"vr", "SQ"}, {"Value", failed}};
  if (!study.empty()) out["00081190"] = {{"vr", "UR"}, {"Value", {base + "/studies/" + study}}};
  const int status = failed.empty() ? 200 : referenced.empty() ? 409 : 202;
  return json(status, out, "application/dicom+json");
}

void DicomWebService::auditFailure(const CallContext& ctx, const char* action, const std::string& study,
                                   uint32_t count, const Status& s, const std::string& rule) {
  retrieve_.audit(ctx, s.code() == StatusCode::kDataLoss ? "integrity" : action, study, count, "failure",
                  s.toString(), rule);
}

Response DicomWebService::wado(Request& req, const CallContext& ctx, QueryLevel level, const std::string& study,
                               const std::string& series, const std::string& instance) {
  auto choice = acceptedDicomSyntaxes(req.header("accept"));
  if (!choice.ok()) return error(400, choice.status().message());
  if (!choice->acceptable)
    return error(406, "this resource is served as multipart/related; type=\"application/dicom\"");
  Query q;
  q.level = level;
  q.keys[0x0020000D] = study;
  if (!series.empty()) q.keys[0x0020000E] = series;
  if (!instance.empty()) q.keys[0x00080018] = instance;
  auto sel = retrieve_.select(ctx, "wado", q);
  if (!sel.ok()) {
    // Not authorised and not found look the same: no trace of other studies.
    return sel.status().code() == StatusCode::kPermissionDenied ? error(404, "not found")
                                                                : error(500, "retrieve failed");
  }
  // Each object as stored, or transcoded to Explicit VR Little Endian; if
  // any cannot be given in an accepted syntax, nothing is sent.
  auto transcode = std::make_shared<std::vector<bool>>();
  for (const auto& loc : sel->instances) {
    const Delivery d = chooseDicomDelivery(*choice, loc.transfer_syntax, renderer_.canTranscode(loc.transfer_syntax));
    if (d == Delivery::kRefuse) {
      retrieve_.audit(ctx, "wado", study, 0, "failure", "not acceptable: stored as " + loc.transfer_syntax, sel->rule);
      return error(406, "an instance is stored as " + loc.transfer_syntax +
                            ", which cannot be given in the accepted transfer syntaxes");
    }
    transcode->push_back(d == Delivery::kTranscode);
  }
  const std::string boundary = "bastion-" + randomHex(16);
  auto list = std::make_shared<std::vector<InstanceLocation>>(std::move(sel->instances));
  // Large objects sent as stored are streamed segment by segment (each
  // authenticated as it is read, its identity checked first); the others
  // are read whole, decrypted, verified (and transcoded) by the prefetcher
  // while the previous one is on the wire.
  auto streamed = std::make_shared<std::vector<bool>>();
  for (size_t i = 0; i < list->size(); ++i)
    streamed->push_back(!(*transcode)[i] && (*list)[i].size > kStreamObjectsAbove);
  auto fetch = std::make_shared<Prefetcher>(list->size(), [this, list, transcode, streamed](size_t i) -> StatusOr<Bytes> {
    if ((*streamed)[i]) return Bytes();
    ASSIGN_OR_RETURN(Bytes stored, retrieve_.read((*list)[i]));
    if (!(*transcode)[i]) return stored;
    return renderer_.transcode(stored);
  });
  const std::string rule = sel->rule;
  // The first object is ready before the status line goes out, so that a
  // single instance that fails gets a real error status; a later one can
  // only abort the response (the client sees it truncated, never wrong).
  auto first = std::make_shared<StatusOr<Bytes>>(list->empty() ? StatusOr<Bytes>(Bytes()) : fetch->next());
  if (!first->ok()) {
    const Status s = first->status();
    auditFailure(ctx, "wado", study, 0, s, rule);
    switch (s.code()) {
      case StatusCode::kDataLoss:
        return error(500, "stored object failed verification");
      case StatusCode::kInvalidArgument:
        return error(406, s.message());
      case StatusCode::kUnavailable:
        return error(503, "decoder unavailable, try again");
      default:
        return error(500, "retrieve failed");
    }
  }
  struct State {
    size_t next = 0;
    uint32_t sent = 0;
    std::unique_ptr<RetrieveService::ObjectStream> current;  // the object being streamed, if any
  };
  auto st = std::make_shared<State>();
  Response r;
  r.set("Content-Type", "multipart/related; type=\"application/dicom\"; boundary=" + boundary);
  r.stream = [this, ctx, list, st, fetch, first, boundary, study, rule, transcode,
              streamed](StreamChunk& chunk) -> StatusOr<bool> {
    const auto fail = [&](const Status& s, const std::string& study_uid) {
      auditFailure(ctx, "wado", study_uid, st->sent, s, rule);
      return s;
    };
    if (st->current) {
      chunk.data.resize(kStreamChunk);
      auto n = st->current->read(chunk.data);
      if (!n.ok()) return fail(n.status(), (*list)[st->next - 1].study_uid);
      chunk.data.resize(*n);
      if (*n == 0) {
        chunk.text = "\r\n";
        st->current.reset();
        ++st->sent;
      }
      return true;
    }
    if (st->next >= list->size()) {
      chunk.text = "--" + boundary + "--\r\n";
      retrieve_.audit(ctx, "wado", study, st->sent, "success", "", rule);
      return false;
    }
    const size_t i = st->next++;
    const InstanceLocation& loc = (*list)[i];
    auto bytes = i == 0 ? std::move(*first) : fetch->next();
    if (!bytes.ok()) return fail(bytes.status(), loc.study_uid);
    uint64_t length = bytes->size();
    if ((*streamed)[i]) {
      auto opened = retrieve_.openStream(loc);
      if (!opened.ok()) return fail(opened.status(), loc.study_uid);
      st->current = std::move(opened).value();
      length = st->current->size();
    }
    chunk.text = "--" + boundary + "\r\nContent-Type: application/dicom; transfer-syntax=" +
                 ((*transcode)[i] ? std::string(kExplicitLittle) : loc.transfer_syntax) +
                 "\r\nContent-Length: " + std::to_string(length) + "\r\n\r\n";
    if (st->current) return true;
    chunk.data = std::move(bytes).value();
    chunk.tail = "\r\n";
    ++st->sent;
    return true;
  };
  return r;
}

std::optional<Response> DicomWebService::readOne(const CallContext& ctx, const char* action, const std::string& study,
                                                 const std::string& series, const std::string& instance,
                                                 OneInstance& out) {
  Query q;
  q.level = QueryLevel::kImage;
  q.keys = {{0x0020000D, study}, {0x00080018, instance}};
  if (!series.empty()) q.keys[0x0020000E] = series;
  auto sel = retrieve_.select(ctx, action, q);
  // Not authorised and not found look the same: no trace of other studies.
  if (!sel.ok() && sel.status().code() != StatusCode::kPermissionDenied) return error(500, "retrieve failed");
  if (!sel.ok() || sel->instances.size() != 1) return error(404, "not found");
  auto bytes = retrieve_.read(sel->instances[0]);
  if (!bytes.ok()) {
    auditFailure(ctx, action, study, 0, bytes.status(), sel->rule);
    return error(500, bytes.status().code() == StatusCode::kDataLoss ? "stored object failed verification"
                                                                      : "retrieve failed");
  }
  out = {std::move(bytes).value(), sel->rule, sel->instances[0].transfer_syntax};
  return std::nullopt;
}

Response DicomWebService::metadata(const CallContext& ctx, QueryLevel level, const std::string& study,
                                   const std::string& series, const std::string& instance) {
  Query q;
  q.level = level;
  q.keys[0x0020000D] = study;
  if (!series.empty()) q.keys[0x0020000E] = series;
  if (!instance.empty()) q.keys[0x00080018] = instance;
  auto sel = retrieve_.select(ctx, "wado-metadata", q);
  if (!sel.ok())
    return sel.status().code() == StatusCode::kPermissionDenied ? error(404, "not found")
                                                                : error(500, "retrieve failed");
  auto list = std::make_shared<std::vector<InstanceLocation>>(std::move(sel->instances));
  // Each instance's JSON comes from the index's cache when it has it for
  // this bulk data URI prefix; the others are made from the stored objects
  // (read and verified by the prefetcher) and cached at the end.
  const std::string base = cfg_.base_url + "/dicom-web", rule = sel->rule;
  // The cache context: the JSON's format version and its bulk data URI prefix.
  std::vector<std::pair<std::string, std::string>> wanted;
  for (const auto& loc : *list)
    wanted.emplace_back(loc.sop_uid, std::string(kMetadataFormat) + base + "/studies/" + loc.study_uid +
                                         "/series/" + loc.series_uid + "/instances/" + loc.sop_uid + "/bulkdata");
  auto cached = retrieve_.cachedMetadata(wanted);
  auto hits = std::make_shared<std::vector<std::optional<std::string>>>(
      cached.ok() ? std::move(cached).value() : std::vector<std::optional<std::string>>(list->size()));
  auto misses = std::make_shared<std::vector<size_t>>();
  for (size_t i = 0; i < list->size(); ++i)
    if (!(*hits)[i]) misses->push_back(i);
  auto fetch = std::make_shared<std::unique_ptr<Prefetcher>>();
  auto fresh = std::make_shared<std::vector<Index::CachedMetadata>>();
  auto next = std::make_shared<size_t>(0);
  auto contexts = std::make_shared<decltype(wanted)>(std::move(wanted));
  Response r;
  r.set("Content-Type", "application/dicom+json");
  r.stream = [this, ctx, list, next, fetch, hits, misses, fresh, contexts, study,
              rule](StreamChunk& out) -> StatusOr<bool> {
    std::string& chunk = out.text;
    if (*next >= list->size()) {
      chunk = list->empty() ? "[]" : "]";
      (void)retrieve_.cacheMetadata(*fresh);  // derived data: a failure only costs the next request
      retrieve_.audit(ctx, "wado-metadata", study, static_cast<uint32_t>(list->size()), "success", "", rule);
      return false;
    }
    const size_t i = (*next)++;
    chunk = i == 0 ? "[" : ",";
    if (auto& hit = (*hits)[i]) {
      chunk += *hit;
      hit.reset();
      return true;
    }
    if (!*fetch)
      *fetch = std::make_unique<Prefetcher>(misses->size(), [this, list, misses](size_t k) {
        return retrieve_.read((*list)[(*misses)[k]]);
      });
    auto bytes = (*fetch)->next();
    if (!bytes.ok()) {
      auditFailure(ctx, "wado-metadata", (*list)[i].study_uid, 0, bytes.status(), rule);
      return bytes.status();
    }
    const std::string& context = (*contexts)[i].second;
    ASSIGN_OR_RETURN(std::string obj, renderer_.metadata(*bytes, 1024, context.substr(kMetadataFormat.size())));
    chunk += obj;
    fresh->push_back({(*list)[i].sop_uid, context, std::move(obj)});
    return true;
  };
  return r;
}

Response DicomWebService::image(Request& req, const CallContext& ctx, const std::string& study,
                                const std::string& series, const std::string& instance, int frame, int max_side,
                                const std::string& forced_type) {
  std::string type = forced_type;
  if (type.empty()) {
    const std::string accept = req.header("accept");
    const bool png = accept.find("image/png") != std::string::npos,
               jpeg = accept.find("image/jpeg") != std::string::npos;
    if (!accept.empty() && !png && !jpeg && accept.find("*/*") == std::string::npos &&
        accept.find("image/*") == std::string::npos)
      return error(406, "rendered images are image/jpeg or image/png");
    type = png && !jpeg ? "image/png" : "image/jpeg";
  }
  OneInstance one;
  if (auto refusal = readOne(ctx, "wado-rendered", study, series, instance, one)) return *refusal;
  auto img = renderer_.render(one.bytes, frame, type == "image/png", max_side);
  retrieve_.audit(ctx, "wado-rendered", study, img.ok() ? 1 : 0, img.ok() ? "success" : "failure",
                  img.ok() ? "" : img.status().message(), one.rule);
  if (!img.ok()) return error(img.status().code() == StatusCode::kInvalidArgument ? 406 : 500, img.status().message());
  Response r;
  r.set("Content-Type", type);
  r.body.assign(reinterpret_cast<const char*>(img->data()), img->size());
  return r;
}

Response DicomWebService::bulkdata(const CallContext& ctx, const std::string& study, const std::string& series,
                                   const std::string& instance, const std::string& tag_hex) {
  if (tag_hex.size() != 8 || tag_hex.find_first_not_of("0123456789ABCDEFabcdef") != std::string::npos)
    return error(400, "bulk data is addressed by an 8-digit hexadecimal tag");
  const uint32_t tag = static_cast<uint32_t>(std::stoul(tag_hex, nullptr, 16));
  OneInstance one;
  if (auto refusal = readOne(ctx, "wado-bulkdata", study, series, instance, one)) return *refusal;
  auto value = renderer_.bulk(one.bytes, tag);
  retrieve_.audit(ctx, "wado-bulkdata", study, value.ok() ? 1 : 0, value.ok() ? "success" : "failure", tagHex(tag),
                  one.rule);
  if (!value.ok()) return error(value.status().code() == StatusCode::kNotFound ? 404 : 406, value.status().message());
  const std::string boundary = "bastion-" + randomHex(16);
  Response r;
  r.set("Content-Type", "multipart/related; type=\"application/octet-stream\"; boundary=" + boundary);
  r.body = "--" + boundary + "\r\nContent-Type: application/octet-stream\r\n\r\n";
  r.body.append(reinterpret_cast<const char*>(value->data()), value->size());
  r.body += "\r\n--" + boundary + "--\r\n";
  return r;
}

// WADO-URI (PS3.18 9): /wado?requestType=WADO&studyUID=..&seriesUID=..&objectUID=..[&contentType=..][&frameNumber=..]
Response DicomWebService::wadoUri(Request& req, const CallContext& ctx) {
  auto params = parseQueryString(req.query);
  if (!params.ok()) return error(400, params.status().message());
  std::map<std::string, std::string> p;
  for (const auto& [k, v] : *params) p[k] = v;
  if (p["requestType"] != "WADO") return error(400, "requestType=WADO is required");
  for (const char* k : {"studyUID", "seriesUID", "objectUID"})
    if (!isValidUid(p[k])) return error(400, std::string(k) + " is required and must be a UID");
  const std::string type = p.count("contentType") ? p["contentType"] : "image/jpeg";
  if (type == "application/dicom") {
    OneInstance one;
    if (auto refusal = readOne(ctx, "wado-uri", p["studyUID"], p["seriesUID"], p["objectUID"], one)) return *refusal;
    retrieve_.audit(ctx, "wado-uri", p["studyUID"], 1, "success", "", one.rule);
    Response r;
    r.set("Content-Type", "application/dicom");
    r.body.assign(reinterpret_cast<const char*>(one.bytes.data()), one.bytes.size());
    return r;
  }
  if (type != "image/jpeg" && type != "image/png")
    return error(406, "contentType: application/dicom, image/jpeg or image/png");
  const auto frame = p.count("frameNumber") ? frameNumber(p["frameNumber"]) : std::optional<int>(1);
  if (!frame) return error(400, "frameNumber is a number");
  return image(req, ctx, p["studyUID"], p["seriesUID"], p["objectUID"], *frame, 0, type);
}

Response DicomWebService::capabilities() {
  Response r = json(
      200, {{"server", "Bastion"},
            {"dicomweb",
             {{"qido-rs", {"studies", "series", "instances"}},
              {"stow-rs", {"multipart/related; type=application/dicom"}},
              {"wado-rs",
               {"study", "series", "instance", "metadata", "bulkdata", "frames", "rendered", "thumbnail",
                "frames/{n}/rendered"}},
              {"transcoding",
               {{"to", kExplicitLittle},
                {"decoders", {"RLE", "JPEG baseline/extended/lossless", "JPEG-LS"}},
                {"isolation", "sandboxed codec worker processes (seccomp, rlimits)"}}},
              {"wado-uri", {"application/dicom", "image/jpeg", "image/png"}}}},
            {"authentication", {"bearer api token", "bearer OIDC access token", "session cookie + CSRF"}},
            {"qido_max_results", cfg_.max_qido_results}});
  r.set("Allow", "GET, POST, OPTIONS");
  return r;
}

// WADO-RS frames (PS3.18 10.4.1.1.3): one part per frame. Native pixel
// data as application/octet-stream; compressed frames as stored when their
// syntax is accepted, decoded to native pixels (in the codec worker) when
// raw pixels are asked for.
Response DicomWebService::frames(Request& req, const CallContext& ctx, const std::string& study,
                                 const std::string& series, const std::string& instance, const std::string& list) {
  std::vector<int> numbers;
  size_t start = 0;
  while (start <= list.size()) {
    size_t comma = list.find(',', start);
    if (comma == std::string::npos) comma = list.size();
    const auto n = frameNumber(list.substr(start, comma - start));
    if (!n || numbers.size() >= 1000) return error(400, "frame list: comma-separated numbers");
    numbers.push_back(*n);
    start = comma + 1;
  }
  auto choice = acceptedFrameSyntaxes(req.header("accept"));
  if (!choice.ok()) return error(400, choice.status().message());
  OneInstance one;
  if (auto refusal = readOne(ctx, "wado-frames", study, series, instance, one)) return *refusal;
  const std::string& ts = one.transfer_syntax;
  const Delivery d = chooseFrameDelivery(*choice, ts, renderer_.canTranscode(ts));
  if (d == Delivery::kRefuse) {
    retrieve_.audit(ctx, "wado-frames", study, 0, "failure", "not acceptable", one.rule);
    return error(406, "frames are stored as " + ts + ", which cannot be given in the accepted types");
  }
  std::string ts_out;
  auto got = renderer_.frames(one.bytes, numbers, d == Delivery::kTranscode, ts_out);
  retrieve_.audit(ctx, "wado-frames", study, got.ok() ? static_cast<uint32_t>(got->size()) : 0,
                  got.ok() ? "success" : "failure", got.ok() ? "" : got.status().message(), one.rule);
  if (!got.ok())
    return error(got.status().code() == StatusCode::kNotFound          ? 404
                 : got.status().code() == StatusCode::kInvalidArgument ? 406
                                                                       : 500,
                 got.status().message());
  const bool raw = d == Delivery::kTranscode || !dicom::isEncapsulatedSyntax(ts);
  std::string part_type = "application/octet-stream; transfer-syntax=" + std::string(kExplicitLittle);
  if (!raw) {
    auto named = choice->syntaxes.find(ts);
    part_type = (named != choice->syntaxes.end() ? named->second : "application/octet-stream") +
                "; transfer-syntax=" + ts;
  }
  const std::string boundary = "bastion-" + randomHex(16);
  const std::string outer = raw || part_type.rfind("application/octet-stream", 0) == 0
                                ? "application/octet-stream"
                                : part_type.substr(0, part_type.find(';'));
  Response r;
  r.set("Content-Type", "multipart/related; type=\"" + outer + "\"; boundary=" + boundary);
  for (const auto& f : *got) {
    r.body += "--" + boundary + "\r\nContent-Type: " + part_type + "\r\n\r\n";
    r.body.append(reinterpret_cast<const char*>(f.data()), f.size());
    r.body += "\r\n";
  }
  r.body += "--" + boundary + "--\r\n";
  return r;
}

}  // namespace bastion::web
