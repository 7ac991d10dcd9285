#include "audit/syslog_forwarder.h"

#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <linux/sockios.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <deque>
#include <fcntl.h>
#include <iostream>

#include "bastion/common/clock.h"
#include "crypto/tls_policy.h"

namespace bastion::audit {
namespace {

std::string sslErrors() {
  std::string out;
  while (unsigned long e = ERR_get_error()) {
    char buf[256];
    ERR_error_string_n(e, buf, sizeof buf);
    if (!out.empty()) out += "; ";
    out += buf;
  }
  return out.empty() ? "TLS error" : out;
}

// PRINTUSASCII without space, as RFC 5424 wants for HOSTNAME and friends.
std::string headerToken(const std::string& s, size_t max) {
  std::string out;
  for (char c : s) {
    if (c > 32 && c < 127) out += c;
    if (out.size() == max) break;
  }
  return out.empty() ? "-" : out;
}

}  // namespace

std::string syslogMessage(const AuditEntry& entry, const AuditSource& source) {
  const int severity = entry.event.outcome == "success" ? 5 : 4;
  std::string m;
  for (const std::string& part :
       {std::string("<") + std::to_string(10 * 8 + severity) + ">1 ", formatUtc(entry.event.time),
        std::string(" "), headerToken(source.hostname, 255), std::string(" bastion "), std::to_string(::getpid()),
        std::string(" IHE+RFC-3881 [meta sequenceId=\""), std::to_string((entry.seq - 1) % 2147483647 + 1),
        std::string("\"] \xEF\xBB\xBF"), dicomAuditXml(entry, source)})
    m.append(part);
  return m;
}

// One TLS connection to the collector; non-blocking after the handshake.
struct SyslogForwarder::Connection {
  SSL_CTX* ctx = nullptr;
  SSL* ssl = nullptr;
  int fd = -1;
  ~Connection() {
    if (ssl) {
      SSL_shutdown(ssl);
      SSL_free(ssl);
    }
    if (fd >= 0) ::close(fd);
    if (ctx) SSL_CTX_free(ctx);
  }

  static StatusOr<std::unique_ptr<Connection>> open(const SyslogCollector& c) {
    auto conn = std::make_unique<Connection>();
    conn->ctx = SSL_CTX_new(TLS_client_method());
    if (!conn->ctx || !crypto::applyTlsPolicy(conn->ctx)) return internalError("TLS context: " + sslErrors());
    if (SSL_CTX_load_verify_locations(conn->ctx, c.ca_file.c_str(), nullptr) != 1 ||
        SSL_CTX_use_certificate_chain_file(conn->ctx, c.cert_file.c_str()) != 1 ||
        SSL_CTX_use_PrivateKey_file(conn->ctx, c.key_file.c_str(), SSL_FILETYPE_PEM) != 1)
      return invalidArgument("syslog TLS credentials: " + sslErrors());
    SSL_CTX_set_verify(conn->ctx, SSL_VERIFY_PEER, nullptr);

    addrinfo hints{};
    hints.ai_socktype = SOCK_STREAM;
    addrinfo* res = nullptr;
    if (getaddrinfo(c.host.c_str(), std::to_string(c.port).c_str(), &hints, &res) != 0 || !res)
      return unavailable("cannot resolve syslog collector " + c.host);
    for (addrinfo* a = res; a; a = a->ai_next) {
      const int fd = ::socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol);
      if (fd < 0) continue;
      timeval tv{10, 0};
      setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
      setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
      if (::connect(fd, a->ai_addr, a->ai_addrlen) == 0) {
        conn->fd = fd;
        break;
      }
      ::close(fd);
    }
    freeaddrinfo(res);
    if (conn->fd < 0) return unavailable("cannot connect to syslog collector " + c.destination());
    const int one = 1;
    setsockopt(conn->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    conn->ssl = SSL_new(conn->ctx);
    SSL_set_fd(conn->ssl, conn->fd);
    // The collector's certificate must name the host we asked for.
    X509_VERIFY_PARAM* param = SSL_get0_param(conn->ssl);
    if (X509_VERIFY_PARAM_set1_ip_asc(param, c.host.c_str()) != 1) {
      SSL_set_tlsext_host_name(conn->ssl, c.host.c_str());
      X509_VERIFY_PARAM_set1_host(param, c.host.c_str(), 0);
    }
    if (SSL_connect(conn->ssl) != 1) {
      const long v = SSL_get_verify_result(conn->ssl);
      std::string why = v != X509_V_OK ? X509_verify_cert_error_string(v) : sslErrors();
      return unavailable("TLS handshake with syslog collector " + c.destination() + " failed: " + why);
    }
    ::fcntl(conn->fd, F_SETFL, ::fcntl(conn->fd, F_GETFL) | O_NONBLOCK);
    return conn;
  }

  enum class State { kOpen, kClosedCleanly, kBroken };
  // Whether the collector is still there. Consumes whatever it sent (TLS
  // records such as session tickets, a close_notify).
  State state() {
    if (socketError()) return State::kBroken;
    pollfd p{fd, POLLIN | POLLRDHUP, 0};
    if (::poll(&p, 1, 0) < 0) return errno == EINTR ? State::kOpen : State::kBroken;
    if (p.revents & (POLLERR | POLLNVAL)) return State::kBroken;
    if (p.revents & (POLLIN | POLLRDHUP | POLLHUP)) {
      char buf[4096];
      for (;;) {
        const int n = SSL_read(ssl, buf, sizeof buf);
        if (n > 0) continue;
        const int err = SSL_get_error(ssl, n);
        if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE)
          return (p.revents & (POLLRDHUP | POLLHUP)) ? State::kBroken : State::kOpen;  // EOF without close_notify
        if (err == SSL_ERROR_ZERO_RETURN) return State::kClosedCleanly;  // close_notify, nothing less
        return State::kBroken;
      }
    }
    return State::kOpen;
  }
  // A reset (or other error) reported on the socket.
  bool socketError() {
    int e = 0;
    socklen_t len = sizeof e;
    return ::getsockopt(fd, SOL_SOCKET, SO_ERROR, &e, &len) != 0 || e != 0;
  }
  // Bytes sent but not yet acknowledged by the collector's TCP.
  int unacknowledged() {
    int n = 0;
    return ::ioctl(fd, SIOCOUTQ, &n) == 0 ? n : 1;
  }
  // After a clean close by the collector: true if everything sent was
  // acknowledged and nothing was reset. A collector closes cleanly only
  // after reading all it received (unread data turns the close into a
  // reset), so then every byte was read.
  bool everythingRead() {
    for (int i = 0; i < 20; ++i) {
      if (socketError()) return false;
      if (unacknowledged() == 0) return !socketError();
      ::usleep(10000);
    }
    return false;
  }

  Status write(const std::string& data) {
    size_t done = 0;
    while (done < data.size()) {
      size_t n = 0;
      if (SSL_write_ex(ssl, data.data() + done, data.size() - done, &n) == 1) {
        done += n;
        continue;
      }
      const int err = SSL_get_error(ssl, 0);
      if (err != SSL_ERROR_WANT_WRITE && err != SSL_ERROR_WANT_READ) return unavailable("syslog write failed");
      pollfd p{fd, static_cast<short>(err == SSL_ERROR_WANT_WRITE ? POLLOUT : POLLIN), 0};
      if (::poll(&p, 1, 10000) <= 0) return unavailable("syslog write timed out");
    }
    return okStatus();
  }
};

SyslogForwarder::SyslogForwarder(AuditStore& store, SyslogCollector collector, AuditSource source,
                                 ForwarderTiming timing)
    : store_(store), collector_(std::move(collector)), source_(std::move(source)), timing_(timing) {}

SyslogForwarder::~SyslogForwarder() { stop(std::chrono::milliseconds(0)); }

void SyslogForwarder::start() {
  auto c = store_.cursor(collector_.destination());
  confirmed_ = c.ok() ? *c : 0;
  thread_ = std::thread([this] { run(); });
}

void SyslogForwarder::wake() {
  {
    std::lock_guard lock(mu_);
    woken_ = true;
  }
  cv_.notify_all();
}

void SyslogForwarder::stop(std::chrono::milliseconds drain) {
  {
    std::lock_guard lock(mu_);
    if (!thread_.joinable()) return;
    stopping_ = true;
    drain_deadline_ = std::chrono::steady_clock::now() + drain;
  }
  cv_.notify_all();
  thread_.join();
}

void SyslogForwarder::run() {
  // Export runs behind the requests: when the cores are saturated the
  // archive answers first and the records wait, durable, in the store (the
  // backlog alert says when that lasts).
  (void)::setpriority(PRIO_PROCESS, static_cast<id_t>(::gettid()), 10);
  using steady = std::chrono::steady_clock;
  std::unique_ptr<Connection> conn;
  int64_t sent = confirmed_;
  std::deque<std::pair<int64_t, steady::time_point>> in_flight;  // (last seq of a batch, when it was sent)
  bool outage_recorded = false, backlog_alerted = false;
  steady::time_point next_attempt{};
  const std::string dest = collector_.destination();

  auto record = [&](const std::string& action, const std::string& detail) {
    AuditEvent e = systemEvent(Clock::system().now(), "bastion", action, "failure", detail);
    e.severity = "high";
    std::cerr << "audit export: " << detail << "\n";
    (void)store_.append(e);
  };
  // The cursor is written at most every 2 s (and when stopping): each write
  // is a transaction that would otherwise compete with the audit writer. A
  // crash repeats at most those 2 s of records, never skips one.
  int64_t persisted = confirmed_;
  steady::time_point persisted_at = steady::now();
  auto persist = [&](bool now) {
    if (confirmed_ == persisted || (!now && steady::now() - persisted_at < std::chrono::seconds(2))) return;
    if (store_.setCursor(dest, confirmed_).ok()) persisted = confirmed_;
    persisted_at = steady::now();
  };
  auto drop = [&] {
    next_attempt = steady::now() + timing_.retry;  // no reconnect storm against a collector that hangs up
    conn.reset();
    in_flight.clear();
    sent = confirmed_;  // everything unconfirmed goes again
  };

  for (;;) {
    bool stopping;
    steady::time_point deadline;
    {
      std::unique_lock lock(mu_);
      cv_.wait_for(lock, std::chrono::milliseconds(100), [&] { return woken_ || stopping_; });
      if (woken_ && !stopping_) cv_.wait_for(lock, timing_.coalesce, [&] { return stopping_; });
      woken_ = false;
      stopping = stopping_;
      deadline = drain_deadline_;
    }
    const auto now = steady::now();
    // Durable records only: one committed without a sync may yet be lost and
    // its position taken by another (docs/audit.md, "Store records and notes").
    const int64_t last = std::max(sent, store_.durableSeq());
    persist(stopping);
    if (stopping && (confirmed_ >= last || now >= deadline)) break;

    if (conn) {
      const auto st = conn->state();
      if (st == Connection::State::kClosedCleanly && conn->everythingRead() && sent > confirmed_) {
        confirmed_ = sent;
      }
      if (st != Connection::State::kOpen) drop();
    }
    if (!conn && now >= next_attempt && sent < last) {
      auto c = Connection::open(collector_);
      if (c.ok()) {
        conn = std::move(c).value();
      } else {
        next_attempt = now + timing_.retry;
        if (!outage_recorded) {
          outage_recorded = true;
          record("audit-export-failure", c.status().message() + "; records are kept and will be sent");
        }
      }
    }
    if (conn && sent < last) {
      std::string frames;
      int64_t batch_last = sent;
      (void)store_.readAfter(sent, static_cast<size_t>(std::min<int64_t>(500, last - sent)), [&](const AuditEntry& e) {
        const std::string msg = syslogMessage(e, source_);
        frames += std::to_string(msg.size()) + " " + msg;  // RFC 5425 octet counting
        batch_last = e.seq;
      });
      if (batch_last > sent) {
        if (conn->write(frames).ok()) {
          sent = batch_last;
          in_flight.emplace_back(batch_last, steady::now());
        } else {
          drop();
        }
      }
    }
    // Confirm what was acknowledged and stayed on a healthy connection long enough.
    if (conn && conn->state() == Connection::State::kOpen && conn->unacknowledged() == 0) {
      int64_t confirm = confirmed_;
      const auto when = steady::now();
      while (!in_flight.empty() && in_flight.front().second + timing_.confirm_after <= when) {
        confirm = in_flight.front().first;
        in_flight.pop_front();
      }
      if (confirm > confirmed_) {
        confirmed_ = confirm;
        outage_recorded = false;  // the outage is over once a delivery is confirmed
      }
    }
    const int64_t backlog = last - confirmed_;
    if (!backlog_alerted && backlog > collector_.alert_backlog) {
      backlog_alerted = true;
      record("audit-export-backlog", std::to_string(backlog) + " audit records await delivery to " + dest);
    } else if (backlog_alerted && backlog <= collector_.alert_backlog / 2) {
      backlog_alerted = false;
    }
  }
}

}  // namespace bastion::audit
