#include "dicom/dcmtk/store_scu.h"

#include <dcmtk/dcmdata/dcuid.h>
#include <dcmtk/dcmnet/diutil.h>

#include <set>

#include "crypto/pki.h"
#include "dicom/dcmtk/tls.h"

namespace bastion::dicom {

ScuAssociation::ScuAssociation(T_ASC_Network* net, T_ASC_Association* assoc, std::unique_ptr<DcmTLSTransportLayer> tls)
    : net_(net), assoc_(assoc), tls_(std::move(tls)) {}

ScuAssociation::~ScuAssociation() {
  if (assoc_) {
    if (ASC_releaseAssociation(assoc_).bad()) ASC_abortAssociation(assoc_);
    ASC_destroyAssociation(&assoc_);
  }
  ASC_dropNetwork(&net_);
}

StatusOr<std::unique_ptr<ScuAssociation>> openStoreAssociation(
    const AssociationConfig& cfg, const DicomNode& dest,
    const std::vector<std::pair<std::string, std::string>>& contexts) {
  ASSIGN_OR_RETURN(auto tls, makeTlsLayer(false, cfg.ca, cfg.cert, cfg.key));
  T_ASC_Network* net = nullptr;
  if (ASC_initializeNetwork(NET_REQUESTOR, 0, cfg.artim_timeout_s, &net).bad())
    return internalError("cannot initialise the network");
  if (ASC_setTransportLayer(net, tls.get(), 0).bad()) {
    ASC_dropNetwork(&net);
    return internalError("cannot set the TLS layer");
  }
  T_ASC_Parameters* params = nullptr;
  ASC_createAssociationParameters(&params, cfg.max_pdu);
  ASC_setAPTitles(params, cfg.ae_title.c_str(), dest.ae_title.c_str(), nullptr);
  ASC_setTransportLayerType(params, OFTrue);
  const std::string peer = dest.move_host + ":" + std::to_string(dest.move_port);
  ASC_setPresentationAddresses(params, "localhost", peer.c_str());
  std::set<std::pair<std::string, std::string>> unique(contexts.begin(), contexts.end());
  T_ASC_PresentationContextID id = 1;
  for (const auto& [sop_class, ts] : unique) {
    if (id > 253) break;
    std::vector<const char*> syntaxes{ts.c_str()};
    for (const char* u : {UID_LittleEndianExplicitTransferSyntax, UID_LittleEndianImplicitTransferSyntax})
      if (ts != u) syntaxes.push_back(u);
    ASC_addPresentationContext(params, id, sop_class.c_str(), syntaxes.data(), static_cast<int>(syntaxes.size()));
    id = static_cast<T_ASC_PresentationContextID>(id + 2);
  }
  T_ASC_Association* assoc = nullptr;
  dcmConnectionTimeout.set(cfg.artim_timeout_s);
  OFCondition c = ASC_requestAssociation(net, params, &assoc);
  if (c.bad()) {
    if (assoc) ASC_destroyAssociation(&assoc);
    else ASC_destroyAssociationParameters(&params);
    ASC_dropNetwork(&net);
    return unavailable(std::string("move destination refused the association: ") + c.text());
  }
  auto scu = std::make_unique<ScuAssociation>(net, assoc, std::move(tls));
  if (!dest.cert_sha256.empty()) {
    const unsigned long len = ASC_getPeerCertificateLength(assoc);
    std::vector<unsigned char> der(len);
    if (len == 0 || ASC_getPeerCertificate(assoc, der.data(), len) != len ||
        crypto::certificateFingerprintDer(der.data(), der.size()) != dest.cert_sha256)
      return permissionDenied("move destination presented an unexpected certificate");
  }
  return scu;
}

}  // namespace bastion::dicom
