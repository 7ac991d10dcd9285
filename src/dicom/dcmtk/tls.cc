#include "dicom/dcmtk/tls.h"

#include <openssl/ssl.h>

#include "crypto/tls_policy.h"

namespace bastion::dicom {

thread_local void (*HandoffTlsLayer::on_create)(void*) = nullptr;
thread_local void* HandoffTlsLayer::on_create_arg = nullptr;

DcmTransportConnection* HandoffTlsLayer::createConnection(DcmNativeSocketType socket, OFBool secure) {
  if (on_create) {
    auto fn = on_create;
    on_create = nullptr;
    fn(on_create_arg);
  }
  return DcmTLSTransportLayer::createConnection(socket, secure);
}

StatusOr<std::unique_ptr<DcmTLSTransportLayer>> makeTlsLayer(bool acceptor, const std::string& ca,
                                                             const std::string& cert, const std::string& key) {
  std::unique_ptr<DcmTLSTransportLayer> layer;
  if (acceptor) layer = std::make_unique<HandoffTlsLayer>(NET_ACCEPTOR, nullptr, OFTrue);
  else layer = std::make_unique<DcmTLSTransportLayer>(NET_REQUESTOR, nullptr, OFTrue);
  if (layer->setTLSProfile(TSP_Profile_BCP195_ND).bad() || layer->activateCipherSuites().bad())
    return internalError("cannot initialise the DICOM TLS profile");
  if (layer->setPrivateKeyFile(key.c_str(), DCF_Filetype_PEM).bad())
    return invalidArgument("cannot load TLS private key " + key);
  if (layer->setCertificateFile(cert.c_str(), DCF_Filetype_PEM).bad())
    return invalidArgument("cannot load TLS certificate " + cert);
  if (!layer->checkPrivateKeyMatchesCertificate()) return invalidArgument("TLS key does not match certificate");
  if (layer->addTrustedCertificateFile(ca.c_str(), DCF_Filetype_PEM).bad())
    return invalidArgument("cannot load TLS CA " + ca);
  layer->setCertificateVerification(DCV_requireCertificate);

  // DCMTK 3.6.7's BCP 195 profile also offers DHE suites; pin ours instead.
  SSL_CTX* ctx = layer->getNativeHandle();
  if (!crypto::applyTlsPolicy(ctx)) return internalError("cannot restrict TLS protocol versions or suites");
  return layer;
}

}  // namespace bastion::dicom
