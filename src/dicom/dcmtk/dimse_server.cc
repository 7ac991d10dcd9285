#include "dicom/dcmtk/dimse_server.h"

#include <arpa/inet.h>
#include <dcmtk/dcmnet/dcmtrans.h>
#include <dcmtk/dcmnet/dimse.h>
#include <dcmtk/dcmnet/dul.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>

#include "bastion/service/node_registry.h"
#include "dicom/dcmtk/tls.h"

namespace bastion::dicom {
namespace {

StatusOr<int> bindListener(const std::string& address, uint16_t port, uint16_t& bound) {
  sockaddr_storage ss{};
  socklen_t len = 0;
  auto* v4 = reinterpret_cast<sockaddr_in*>(&ss);
  auto* v6 = reinterpret_cast<sockaddr_in6*>(&ss);
  if (inet_pton(AF_INET, address.c_str(), &v4->sin_addr) == 1) {
    v4->sin_family = AF_INET;
    v4->sin_port = htons(port);
    len = sizeof *v4;
  } else if (inet_pton(AF_INET6, address.c_str(), &v6->sin6_addr) == 1) {
    v6->sin6_family = AF_INET6;
    v6->sin6_port = htons(port);
    len = sizeof *v6;
  } else {
    return invalidArgument("listen address is not an IP address: " + address);
  }
  int fd = ::socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return internalError(std::string("socket: ") + std::strerror(errno));
  int one = 1;
  ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (ss.ss_family == AF_INET6) ::setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
  if (::bind(fd, reinterpret_cast<sockaddr*>(&ss), len) != 0 || ::listen(fd, 128) != 0) {
    Status s = unavailable("cannot listen on " + address + ":" + std::to_string(port) + ": " + std::strerror(errno));
    ::close(fd);
    return s;
  }
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len);
  bound = ntohs(ss.ss_family == AF_INET ? v4->sin_port : v6->sin6_port);
  return fd;
}

}  // namespace

DimseServer::~DimseServer() { stop(); }

Status DimseServer::start() {
  // Numeric peer addresses only (no reverse DNS), bounded socket waits.
  dcmDisableGethostbyaddr.set(OFTrue);
  dcmSocketReceiveTimeout.set(cfg_.assoc.artim_timeout_s);
  dcmSocketSendTimeout.set(cfg_.assoc.idle_timeout_s);
  dcmMaxOutgoingPDUSize.set(cfg_.assoc.max_pdu);
  ASSIGN_OR_RETURN(tls_fd_, bindListener(cfg_.tls_address, cfg_.tls_port, tls_port_));
  if (cfg_.plain_enabled) {
    ASSIGN_OR_RETURN(plain_fd_, bindListener(cfg_.plain_address, cfg_.plain_port, plain_port_));
  }
  ASSIGN_OR_RETURN(tls_, makeTlsLayer(true, cfg_.assoc.ca, cfg_.assoc.cert, cfg_.assoc.key));
  // With an external socket handle set, DCMTK creates no listener of its own.
  dcmExternalSocketHandle.set(tls_fd_);
  OFCondition c = ASC_initializeNetwork(NET_ACCEPTOR, 0, cfg_.assoc.artim_timeout_s, &net_);
  dcmExternalSocketHandle.set(DCMNET_INVALID_SOCKET);
  if (c.bad()) return internalError(std::string("cannot initialise DICOM network: ") + c.text());
  if (ASC_setTransportLayer(net_, tls_.get(), 0).bad()) return internalError("cannot set the TLS layer");
  acceptor_ = std::thread([this] { acceptLoop(); });
  watchdog_ = std::thread([this] { watchdogLoop(); });
  return okStatus();
}

void DimseServer::stop() {
  if (stopping_.exchange(true)) return;
  if (acceptor_.joinable()) acceptor_.join();
  if (watchdog_.joinable()) watchdog_.join();
  {
    // Wake every connection blocked on its peer; each then ends normally.
    std::lock_guard lock(mu_);
    for (const auto& [id, fd] : open_fds_) ::shutdown(fd, SHUT_RDWR);
  }
  for (int i = 0; i < 300 && workers_.load() > 0; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  if (tls_fd_ >= 0) ::close(tls_fd_);
  if (plain_fd_ >= 0) ::close(plain_fd_);
  if (workers_.load() == 0 && net_) ASC_dropNetwork(&net_);
}

namespace {
std::string peerOf(int fd) {
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  char buf[INET6_ADDRSTRLEN] = "";
  if (::getpeername(fd, reinterpret_cast<sockaddr*>(&ss), &len) != 0) return "";
  if (ss.ss_family == AF_INET)
    inet_ntop(AF_INET, &reinterpret_cast<sockaddr_in*>(&ss)->sin_addr, buf, sizeof buf);
  else if (ss.ss_family == AF_INET6)
    inet_ntop(AF_INET6, &reinterpret_cast<sockaddr_in6*>(&ss)->sin6_addr, buf, sizeof buf);
  return buf;
}
}  // namespace

void DimseServer::acceptLoop() {
  while (!stopping_.load()) {
    pollfd fds[2] = {{tls_fd_, POLLIN, 0}, {plain_fd_, POLLIN, 0}};
    const int n = ::poll(fds, plain_fd_ >= 0 ? 2 : 1, 200);
    if (n <= 0) continue;
    for (int i = 0; i < 2; ++i) {
      if (fds[i].fd < 0 || !(fds[i].revents & POLLIN)) continue;
      int fd = ::accept4(fds[i].fd, nullptr, nullptr, SOCK_CLOEXEC);
      if (fd < 0) continue;
      int one = 1;
      ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
      const bool tls = i == 0;
      const std::string peer = peerOf(fd);
      const uint64_t id = admitConnection(fd, tls, peer);
      if (id == 0) {
        ::close(fd);
        continue;
      }
      ++workers_;
      std::thread([this, id, fd, tls, peer] {
        connection(id, fd, tls, peer);
        --workers_;
      }).detach();
    }
  }
}

uint64_t DimseServer::admitConnection(int fd, bool tls, const std::string& peer) {
  std::string refused;
  if (!throttle_.allowed(peer, std::chrono::steady_clock::now()))
    refused = "source blocked after repeated failed associations";
  if (refused.empty() && !tls && !addressInAnyCidr(peer, cfg_.plain_allow))
    refused = "address not allowed on the plaintext listener";
  {
    std::lock_guard lock(mu_);
    if (refused.empty() && (pending_ >= cfg_.max_associations || pending_by_peer_[peer] >= cfg_.max_associations_per_node))
      refused = "too many connections awaiting association";
    if (refused.empty()) {
      ++pending_;
      ++pending_by_peer_[peer];
      const uint64_t id = ++next_connection_;
      open_fds_[id] = fd;
      deadlines_[fd] = std::chrono::steady_clock::now() + std::chrono::seconds(cfg_.assoc.artim_timeout_s);
      return id;
    }
    if (pending_by_peer_[peer] == 0) pending_by_peer_.erase(peer);
  }
  auditRefusal(peer, "association", refused);
  return 0;
}

void DimseServer::watchdogLoop() {
  while (!stopping_.load()) {
    std::this_thread::sleep_for(std::chrono::milliseconds(250));
    const auto now = std::chrono::steady_clock::now();
    std::lock_guard lock(mu_);
    for (auto& [fd, deadline] : deadlines_) {
      if (now < deadline) continue;
      ::shutdown(fd, SHUT_RDWR);  // the blocked handshake or request read returns
      deadline = std::chrono::steady_clock::time_point::max();
    }
  }
}

void DimseServer::connection(uint64_t id, int fd, bool tls, const std::string& peer) {
  // The hand-off: DCMTK takes the socket from a process-wide global, read
  // just before HandoffTlsLayer::createConnection() runs our hook, which
  // releases the lock. Handshake and A-ASSOCIATE-RQ run unlocked, bounded by
  // the socket timeout and the watchdog's ARTIM deadline.
  T_ASC_Network* net = nullptr;
  T_ASC_Association* assoc = nullptr;
  OFCondition c;
  {
    std::unique_lock handoff(handoff_mu_);
    dcmExternalSocketHandle.set(fd);
    c = ASC_initializeNetwork(NET_ACCEPTOR, 0, cfg_.assoc.artim_timeout_s, &net);
    if (c.good()) c = ASC_setTransportLayer(net, tls_.get(), 0);
    if (c.good()) {
      HandoffTlsLayer::on_create = [](void* lock) { static_cast<std::unique_lock<std::mutex>*>(lock)->unlock(); };
      HandoffTlsLayer::on_create_arg = &handoff;
      c = ASC_receiveAssociation(net, &assoc, static_cast<long>(cfg_.assoc.max_pdu), nullptr, nullptr,
                                 tls ? OFTrue : OFFalse, DUL_NOBLOCK, cfg_.assoc.artim_timeout_s);
      HandoffTlsLayer::on_create = nullptr;
    }
    if (handoff.owns_lock()) dcmExternalSocketHandle.set(DCMNET_INVALID_SOCKET);
  }
  {
    std::lock_guard lock(mu_);
    deadlines_.erase(fd);
    --pending_;
    if (--pending_by_peer_[peer] == 0) pending_by_peer_.erase(peer);
  }
  if (c.bad()) {
    auditRefusal(peer, "association", std::string("connection refused before association: ") + c.text());
    recordFailure(peer);
    std::lock_guard lock(mu_);
    open_fds_.erase(id);
    if (assoc) {
      ASC_dropAssociation(assoc);
      ASC_destroyAssociation(&assoc);
    } else {
      ::close(fd);
    }
  } else {
    Status auth = serveAssociation(assoc, tls, cfg_.assoc, cfg_.plain_allow, services_,
                                   [this](const CallContext& ctx) { return admit(ctx); },
                                   [this](const CallContext& ctx) { release(ctx); });
    if (auth.ok()) throttle_.recordSuccess(peer);
    else if (auth.code() == StatusCode::kUnauthenticated) recordFailure(peer);
    std::lock_guard lock(mu_);
    open_fds_.erase(id);
  }
  if (net) ASC_dropNetwork(&net);
}

void DimseServer::auditRefusal(const std::string& peer, const std::string& action, const std::string& detail) {
  AuditEvent e;
  e.time = services_.clock.now();
  e.source_address = peer;
  e.action = action;
  e.outcome = "denied";
  e.detail = detail;
  (void)services_.audit.append(e);
}

void DimseServer::recordFailure(const std::string& peer) {
  if (throttle_.recordFailure(peer, std::chrono::steady_clock::now()))
    auditRefusal(peer, "throttle", "source blocked after repeated failed associations");
}

bool DimseServer::admit(const CallContext& ctx) {
  std::lock_guard lock(mu_);
  if (active_ >= cfg_.max_associations || per_node_[ctx.calling_ae] >= cfg_.max_associations_per_node) return false;
  ++active_;
  ++per_node_[ctx.calling_ae];
  return true;
}

void DimseServer::release(const CallContext& ctx) {
  std::lock_guard lock(mu_);
  --active_;
  if (--per_node_[ctx.calling_ae] == 0) per_node_.erase(ctx.calling_ae);
}

}  // namespace bastion::dicom
