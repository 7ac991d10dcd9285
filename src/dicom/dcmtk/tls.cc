#include "dicom/dcmtk/tls.h"

#include <dcmtk/dcmtls/tlstrans.h>
#include <openssl/ssl.h>

#include "crypto/tls_policy.h"

namespace bastion::dicom {

thread_local void (*HandoffTlsLayer::on_create)(void*) = nullptr;
thread_local void* HandoffTlsLayer::on_create_arg = nullptr;

namespace {

// A TLS connection that reads ahead: each read() takes up to kReadBuffer
// bytes (several TLS records) instead of two calls per record (its header,
// then its body). DCMTK asks SSL_pending() whether data is waiting before it
// polls the socket; that count leaves out records read ahead but not yet
// decrypted, so this connection asks SSL_has_pending() first.
class ReadAheadTlsConnection final : public DcmTLSConnection {
 public:
  static constexpr int kReadBuffer = 64 * 1024;
  ReadAheadTlsConnection(DcmNativeSocketType socket, SSL* ssl) : DcmTLSConnection(socket, ssl), ssl_(ssl) {}
  OFBool networkDataAvailable(int timeout) override {
    // close() frees the SSL object and then forgets the socket: no socket, no SSL.
    if (getSocket() != -1 && SSL_has_pending(ssl_) == 1) return OFTrue;
    return DcmTLSConnection::networkDataAvailable(timeout);
  }

 private:
  SSL* ssl_;  // owned by DcmTLSConnection
};

}  // namespace

DcmTransportConnection* HandoffTlsLayer::createConnection(DcmNativeSocketType socket, OFBool secure) {
  if (on_create) {
    auto fn = on_create;
    on_create = nullptr;
    fn(on_create_arg);
  }
  if (!secure) return DcmTLSTransportLayer::createConnection(socket, secure);
  SSL* ssl = SSL_new(getNativeHandle());
  if (ssl == nullptr) return nullptr;
  SSL_set_fd(ssl, socket);
  SSL_set_default_read_buffer_len(ssl, ReadAheadTlsConnection::kReadBuffer);
  SSL_set_read_ahead(ssl, 1);
  return new ReadAheadTlsConnection(socket, ssl);
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
