#include "bastion/service/archive.h"
#include "crypto/aead.h"

namespace bastion {
Status QueryService::find(const CallContext& ctx, const Query& query,
                          const std::function<bool(const QueryRow&)>& emit) {
  AuditEvent e{d_.clock.now(), ctx.calling_ae, ctx.peer_address, ctx.cert_sha256, "find", studyUidOf(query), 0,
               "success", ""};
  Status s;
  if (!(ctx.permissions & kPermFind)) {
    s = permissionDenied("node may not query");
  } else {
    Query bounded = query;
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

StatusOr<std::vector<InstanceLocation>> RetrieveService::select(const CallContext& ctx, const std::string& action,
                                                                const Query& query) {
  const uint32_t need = action == "move" ? kPermMove : kPermGet;
  if (!(ctx.permissions & need)) {
    audit(ctx, action, studyUidOf(query), 0, "denied", "node may not " + action);
    return permissionDenied("node may not " + action);
  }
  auto r = d_.index.instancesFor(query);
  if (!r.ok()) audit(ctx, action, studyUidOf(query), 0, "failure", r.status().toString());
  return r;
}

StatusOr<Bytes> RetrieveService::read(const InstanceLocation& loc) {
  ASSIGN_OR_RETURN(auto reader, d_.blobs.open(loc.blob_id));
  ASSIGN_OR_RETURN(Bytes data, readAll(*reader, d_.limits.max_object_size + (1 << 20)));
  if (toHex(crypto::sha256(data)) != loc.sha256_hex) return dataLoss("object " + loc.blob_id + " digest mismatch");
  return data;
}

void RetrieveService::audit(const CallContext& ctx, const std::string& action, const std::string& study_uid,
                            uint32_t count, const std::string& outcome, const std::string& detail) {
  Status s = d_.audit.append(
      {d_.clock.now(), ctx.calling_ae, ctx.peer_address, ctx.cert_sha256, action, study_uid, count, outcome, detail});
  (void)s;
}

}  // namespace bastion
