// Outbound C-STORE association to a registered C-MOVE destination, always
// over TLS: the destination's certificate is verified against the CA and,
// when the node records one, pinned to its SHA-256 fingerprint.
#pragma once

#include <dcmtk/dcmnet/assoc.h>

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "bastion/service/node_registry.h"
#include "dicom/dcmtk/association.h"

class DcmTLSTransportLayer;

namespace bastion::dicom {

class ScuAssociation {
 public:
  ScuAssociation(T_ASC_Network* net, T_ASC_Association* assoc, std::unique_ptr<DcmTLSTransportLayer> tls);
  ~ScuAssociation();  // releases the association
  T_ASC_Association* assoc() { return assoc_; }

 private:
  T_ASC_Network* net_;
  T_ASC_Association* assoc_;
  std::unique_ptr<DcmTLSTransportLayer> tls_;
};

// `contexts`: (SOP class, stored transfer syntax) pairs to propose.
StatusOr<std::unique_ptr<ScuAssociation>> openStoreAssociation(
    const AssociationConfig& cfg, const DicomNode& dest, const std::vector<std::pair<std::string, std::string>>& contexts);

}  // namespace bastion::dicom
