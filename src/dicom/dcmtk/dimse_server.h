// DimseServer: the DICOM listeners. Sockets are bound by us to the explicit
// addresses of the configuration (DCMTK alone would bind every interface)
// and get TCP_NODELAY. Each accepted connection runs on its own thread: the
// TLS handshake, the association request and the DIMSE exchange, so a slow
// or silent peer holds only its own thread. Connections not yet associated
// are capped (globally and per source address) and closed when their ARTIM
// deadline passes, whatever they trickle in.
#pragma once

#include <atomic>
#include <chrono>
#include <map>
#include <set>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "dicom/dcmtk/association.h"
#include "dicom/dcmtk/tls.h"
#include "guard/failure_throttle.h"

namespace bastion::dicom {

struct ServerConfig {
  AssociationConfig assoc;
  std::string tls_address;
  uint16_t tls_port = 0;
  bool plain_enabled = false;
  std::string plain_address;
  uint16_t plain_port = 0;
  std::vector<std::string> plain_allow;
  int max_associations = 64;
  int max_associations_per_node = 16;
  guard::FailureThrottle::Limits throttle;
};

class DimseServer {
 public:
  DimseServer(ServerConfig cfg, Services services)
      : cfg_(std::move(cfg)), services_(services), throttle_(cfg_.throttle) {}
  ~DimseServer();
  // Binds the listeners and starts accepting. Ports chosen by the kernel
  // (port 0) are available from tlsPort()/plainPort() afterwards.
  Status start();
  // Stops accepting and waits (bounded) for running associations.
  void stop();
  uint16_t tlsPort() const { return tls_port_; }
  uint16_t plainPort() const { return plain_port_; }

 private:
  void acceptLoop();
  void watchdogLoop();
  void connection(uint64_t id, int fd, bool tls, const std::string& peer);
  void recordFailure(const std::string& peer);
  void auditRefusal(const std::string& peer, const std::string& action, const std::string& detail);
  // Registers a new connection (returns its id) or refuses it (returns 0).
  uint64_t admitConnection(int fd, bool tls, const std::string& peer);
  bool admit(const CallContext& ctx);
  void release(const CallContext& ctx);

  ServerConfig cfg_;
  Services services_;
  guard::FailureThrottle throttle_;  // failed associations per source address
  int tls_fd_ = -1, plain_fd_ = -1;
  uint16_t tls_port_ = 0, plain_port_ = 0;
  T_ASC_Network* net_ = nullptr;
  std::unique_ptr<DcmTLSTransportLayer> tls_;
  std::thread acceptor_, watchdog_;
  std::mutex handoff_mu_;  // held from setting dcmExternalSocketHandle until DCMTK has read it
  std::atomic<bool> stopping_{false};
  std::atomic<int> workers_{0};
  std::mutex mu_;
  int active_ = 0;                       // guarded by mu_
  std::map<std::string, int> per_node_;  // guarded by mu_
  std::map<uint64_t, int> open_fds_;     // connection id -> socket, guarded by mu_
  uint64_t next_connection_ = 0;         // guarded by mu_
  int pending_ = 0;                      // connections not yet associated, guarded by mu_
  std::map<std::string, int> pending_by_peer_;  // guarded by mu_
  std::map<int, std::chrono::steady_clock::time_point> deadlines_;  // ARTIM per pending fd, guarded by mu_
};

}  // namespace bastion::dicom
