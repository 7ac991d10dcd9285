// The HTTPS API: the login API (/api/login, /api/logout, /api/session) and
// DICOMweb (/dicom-web: QIDO-RS, STOW-RS, WADO-RS) on the same services,
// index and Policy as DIMSE. Authentication: bearer tokens (personal API
// tokens, OIDC access tokens) or the session cookie, with a CSRF token on
// state-changing requests made with the cookie. No access logic here: the
// services ask the Policy.
#pragma once

#include "audit/audit_store.h"
#include "guard/rate_limiter.h"

#include <algorithm>
#include <boost/asio/thread_pool.hpp>
#include <optional>
#include <thread>
#include <string>

#include "bastion/auth/auth_service.h"
#include "bastion/service/archive.h"
#include "web/dicomweb/renderer.h"
#include "web/http/server.h"

namespace bastion::web {

struct DicomWebConfig {
  std::string base_url;            // e.g. https://pacs.example:8443 (RetrieveURLs); "" = relative
  size_t max_qido_results = 1000;  // cap on limit
  uint64_t max_object_size = 1ull << 30;
  size_t max_parts = 10000;
  bool secure_cookie = true;
  double user_rate_per_s = 0;  // requests per second and burst per authenticated user (0: no limit)
  double user_rate_burst = 0;
};

class DicomWebService {
 public:
  DicomWebService(DicomWebConfig cfg, AuthService& auth, StoreService& store, QueryService& query,
                  RetrieveService& retrieve, DeleteService& remove, AuditLog& audit, const Clock& clock,
                  InstanceRenderer& renderer)
      : cfg_(std::move(cfg)),
        auth_(auth),
        store_(store),
        query_(query),
        retrieve_(retrieve),
        remove_(remove),
        audit_(audit),
        clock_(clock),
        renderer_(renderer),
        user_limiter_(guard::RateLimiter::Limits{cfg_.user_rate_per_s, std::max(1.0, cfg_.user_rate_burst), 100000}) {}
  Response handle(Request& req);
  // Enables GET /api/audit (search of the audit trail, read_audit permission).
  void setAuditTrail(audit::AuditStore* trail) { trail_ = trail; }

 private:
  Response auditSearch(Request& req, const CallContext& ctx);
  Response login(Request& req);
  Response logout(Request& req);
  Response session(Request& req, const CallContext& ctx);
  audit::AuditStore* trail_ = nullptr;
  Response qido(Request& req, const CallContext& ctx, QueryLevel level, const std::string& study,
                const std::string& series);
  Response stow(Request& req, const CallContext& ctx, const std::string& study);
  Response wado(Request& req, const CallContext& ctx, QueryLevel level, const std::string& study,
                const std::string& series, const std::string& instance);
  Response metadata(const CallContext& ctx, QueryLevel level, const std::string& study, const std::string& series,
                    const std::string& instance);
  // The one instance a path names, if the caller may see it, decrypted and
  // verified (an integrity failure is audited). Otherwise the response to send.
  struct OneInstance {
    Bytes bytes;
    std::string rule;             // the Policy rule that allowed it
    std::string transfer_syntax;  // as the index recorded it at ingest
  };
  std::optional<Response> readOne(const CallContext& ctx, const char* action, const std::string& study,
                                  const std::string& series, const std::string& instance, OneInstance& out);
  // One instance as an image (rendered/thumbnail, also WADO-URI), or its bulk data.
  Response image(Request& req, const CallContext& ctx, const std::string& study, const std::string& series,
                 const std::string& instance, int frame, int max_side, const std::string& forced_type);
  Response bulkdata(const CallContext& ctx, const std::string& study, const std::string& series,
                    const std::string& instance, const std::string& tag);
  Response wadoUri(Request& req, const CallContext& ctx);
  Response frames(Request& req, const CallContext& ctx, const std::string& study, const std::string& series,
                  const std::string& instance, const std::string& list);
  Response capabilities();
  // Records a failed retrieval: as an integrity failure (DICOM Security Alert)
  // when stored data failed verification, else under `action`.
  void auditFailure(const CallContext& ctx, const char* action, const std::string& study, uint32_t count,
                    const Status& s, const std::string& rule);
  // The caller's context, or an error response (401/403) in `refusal`.
  bool authenticate(Request& req, CallContext& ctx, Response& refusal);

  DicomWebConfig cfg_;
  AuthService& auth_;
  StoreService& store_;
  QueryService& query_;
  RetrieveService& retrieve_;
  DeleteService& remove_;
  AuditLog& audit_;
  const Clock& clock_;
  InstanceRenderer& renderer_;
  guard::RateLimiter user_limiter_;  // used when cfg_.user_rate_per_s > 0
  // Stores STOW-RS parts concurrently (their fsyncs overlap and group-commit).
  boost::asio::thread_pool store_pool_{std::max(16u, 8 * std::thread::hardware_concurrency())};
};

// The CSRF token bound to a session token (sent with the login response,
// required as X-CSRF-Token with the cookie on POST/PUT/DELETE).
std::string csrfTokenFor(const std::string& session_token);

}  // namespace bastion::web
