// One DICOM association, from A-ASSOCIATE-RQ to release: authenticates the
// peer against the node registry, negotiates presentation contexts, and
// turns DIMSE messages into service calls. Holds no business rules.
#pragma once

#include <dcmtk/dcmnet/assoc.h>

#include <functional>
#include <string>

#include "bastion/auth/auth_service.h"
#include "bastion/service/archive.h"

namespace bastion::dicom {

struct AssociationConfig {
  std::string ae_title;
  std::string ca, cert, key;  // for outbound C-MOVE associations
  int idle_timeout_s = 120;
  int artim_timeout_s = 10;
  uint32_t max_pdu = 131072;
  ArchiveLimits limits;
};

struct Services {
  StoreService& store;
  QueryService& query;
  RetrieveService& retrieve;
  NodeRegistry& nodes;
  AuthService& auth;
  AuditLog& audit;
  const Clock& clock;
};

// Decides whether an association may proceed; fills `ctx` on success.
// `tls`: the association came over the TLS listener. The node must be
// registered (AE title, address, certificate). A User Identity sub-item
// (PS3.7 D.3.3.7) is verified by `auth`, refused on plaintext; the
// association's principal is then that user restricted to the node's
// permissions. Without one, the node acts with its own permissions.
Status authenticateAssociation(T_ASC_Association* assoc, bool tls, const AssociationConfig& cfg,
                               const std::vector<std::string>& plain_allow, NodeRegistry& nodes, AuthService& auth,
                               CallContext& ctx, T_ASC_RejectParameters& reject);

// Negotiates, then serves DIMSE until release/abort/timeout. Owns `assoc`
// (drops and destroys it). `admit` is called with the authenticated context
// and returns false to refuse (association limits). Returns the outcome of
// authentication: kUnauthenticated if the peer's identity was refused,
// kResourceExhausted if a limit refused it, OK if it was served.
Status serveAssociation(T_ASC_Association* assoc, bool tls, const AssociationConfig& cfg,
                      const std::vector<std::string>& plain_allow, Services& services,
                      const std::function<bool(const CallContext&)>& admit,
                      const std::function<void(const CallContext&)>& release);

}  // namespace bastion::dicom
