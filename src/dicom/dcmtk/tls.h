// TLS for DICOM (PS3.15 B.12 / BCP 195): TLS 1.2 and 1.3 only, TLS 1.2
// suites limited to the four ECDHE AES-GCM suites, groups X25519/P-256/P-384,
// peer certificates required and verified against the configured CA.
#pragma once

#include <dcmtk/dcmtls/tlslayer.h>

#include <memory>
#include <string>

#include "bastion/common/status.h"

namespace bastion::dicom {

// The server's transport layer. DCMTK takes an accepted socket from the
// process-wide dcmExternalSocketHandle; it reads that global just before it
// calls createConnection(), and the TLS handshake and the A-ASSOCIATE-RQ
// follow. This layer runs a per-thread hook at that moment, so the server can
// hold a lock only for the hand-off and let handshakes run concurrently.
// Its TLS connections read ahead (up to 64 kB per read(), several records).
class HandoffTlsLayer : public DcmTLSTransportLayer {
 public:
  using DcmTLSTransportLayer::DcmTLSTransportLayer;
  DcmTransportConnection* createConnection(DcmNativeSocketType socket, OFBool secure) override;
  // Set by the thread about to call ASC_receiveAssociation; cleared by the hook.
  static thread_local void (*on_create)(void* arg);
  static thread_local void* on_create_arg;
};

// `acceptor`: server side (client certificate required); else requestor
// (server certificate verified). cert/key identify us; ca verifies the peer.
StatusOr<std::unique_ptr<DcmTLSTransportLayer>> makeTlsLayer(bool acceptor, const std::string& ca,
                                                             const std::string& cert, const std::string& key);

}  // namespace bastion::dicom
