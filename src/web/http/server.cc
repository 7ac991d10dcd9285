#include "web/http/server.h"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <sys/socket.h>

#include <algorithm>
#include <array>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <condition_variable>

#include "crypto/tls_policy.h"
#include "guard/rate_limiter.h"
#include "web/http/tls_stream.h"

namespace bastion::web {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;

std::vector<std::pair<std::string, std::string>> securityHeaders() {
  return {{"Strict-Transport-Security", "max-age=63072000; includeSubDomains"},
          {"Content-Security-Policy", "default-src 'none'; frame-ancestors 'none'"},
          {"X-Content-Type-Options", "nosniff"},
          {"X-Frame-Options", "DENY"},
          {"Referrer-Policy", "no-referrer"},
          {"Cache-Control", "no-store"},
          {"Cross-Origin-Resource-Policy", "same-origin"}};
}

struct HttpsServer::Impl {
  HttpsConfig cfg;
  Handler handler;
  asio::io_context io;
  asio::ssl::context tls{asio::ssl::context::tls_server};
  std::unique_ptr<tcp::acceptor> acceptor;
  std::thread accept_thread;
  std::mutex mu;
  std::condition_variable idle_cv;
  std::map<int, tcp::socket*> open;  // native fd -> socket, guarded by mu
  size_t active = 0;                 // connection threads running, guarded by mu
  std::atomic<bool> stopping{false};
  std::unique_ptr<guard::RateLimiter> limiter;  // per source address, if configured

  void acceptLoop();
  void serve(tcp::socket socket);
  bool handleOne(TlsStream& stream, beast::flat_buffer& buf, const std::string& peer);
};

namespace {

// Writes a complete response; false if the connection broke.
template <typename Stream>
bool writeResponse(Stream& stream, Response& r, unsigned version, bool keep_alive) {
  beast::error_code ec;
  if (!r.stream) {
    http::response<http::string_body> res{static_cast<http::status>(r.status), version};
    for (const auto& [k, v] : securityHeaders()) res.set(k, v);
    for (const auto& [k, v] : r.headers) res.set(k, v);
    res.body() = std::move(r.body);
    res.keep_alive(keep_alive);
    res.prepare_payload();
    http::write(stream, res, ec);
    return !ec;
  }
  http::response<http::empty_body> res{static_cast<http::status>(r.status), version};
  for (const auto& [k, v] : securityHeaders()) res.set(k, v);
  for (const auto& [k, v] : r.headers) res.set(k, v);
  res.keep_alive(keep_alive);
  res.chunked(true);
  http::response_serializer<http::empty_body> sr{res};
  http::write_header(stream, sr, ec);
  if (ec) return false;
  StreamChunk chunk;
  while (true) {
    chunk.text.clear();
    chunk.data.clear();
    chunk.tail.clear();
    auto more = r.stream(chunk);
    if (!more.ok()) return false;  // abort: the client sees a truncated chunked body
    if (!chunk.empty()) {
      const std::array<asio::const_buffer, 3> parts{asio::buffer(chunk.text), asio::buffer(chunk.data),
                                                    asio::buffer(chunk.tail)};
      asio::write(stream, http::make_chunk(parts), ec);
      if (ec) return false;
    }
    if (!*more) break;
  }
  asio::write(stream, http::make_chunk_last(), ec);
  return !ec;
}

}  // namespace

std::string rateLimitKey(const std::string& peer) {
  beast::error_code ec;
  const auto a = asio::ip::make_address(peer, ec);
  if (ec || !a.is_v6() || a.to_v6().is_v4_mapped()) return peer;
  auto bytes = a.to_v6().to_bytes();
  std::fill(bytes.begin() + 8, bytes.end(), 0);
  return asio::ip::address_v6(bytes).to_string() + "/64";
}

namespace {

// Before closing after an error, reads (and drops) what the client is still
// sending, for a second and at most 1 MiB, so that it gets to read our
// response instead of a reset ("lingering close").
void linger(TlsStream& stream) {
  const int fd = stream.fd();
  timeval tv{1, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  char buf[16384];
  size_t total = 0;
  beast::error_code ec;
  while (total < (1u << 20)) {
    const size_t n = stream.read_some(asio::buffer(buf), ec);
    if (ec || n == 0) break;
    total += n;
  }
}

}  // namespace

HttpsServer::HttpsServer(HttpsConfig config, Handler handler) : impl_(std::make_unique<Impl>()) {
  impl_->cfg = std::move(config);
  impl_->handler = std::move(handler);
  if (impl_->cfg.rate_per_s > 0)
    impl_->limiter = std::make_unique<guard::RateLimiter>(guard::RateLimiter::Limits{
        impl_->cfg.rate_per_s, std::max(1.0, impl_->cfg.rate_burst), 100000});
}

HttpsServer::~HttpsServer() { stop(); }

Status HttpsServer::start() {
  Impl& m = *impl_;
  beast::error_code ec;
  m.tls.use_certificate_chain_file(m.cfg.cert, ec);
  if (!ec) m.tls.use_private_key_file(m.cfg.key, asio::ssl::context::pem, ec);
  if (ec) return invalidArgument("cannot load the HTTPS certificate or key: " + ec.message());
  if (!crypto::applyTlsPolicy(m.tls.native_handle())) return internalError("cannot apply the TLS policy");
  asio::ip::address addr = asio::ip::make_address(m.cfg.address, ec);
  if (ec) return invalidArgument("bad HTTPS listen address " + m.cfg.address);
  m.acceptor = std::make_unique<tcp::acceptor>(m.io);
  tcp::endpoint ep(addr, m.cfg.port);
  m.acceptor->open(ep.protocol(), ec);
  if (!ec) m.acceptor->set_option(asio::socket_base::reuse_address(true), ec);
  if (!ec) m.acceptor->bind(ep, ec);
  if (!ec) m.acceptor->listen(128, ec);
  if (ec)
    return unavailable("cannot listen on " + m.cfg.address + ":" + std::to_string(m.cfg.port) + ": " + ec.message());
  port_ = m.acceptor->local_endpoint().port();
  m.accept_thread = std::thread([&m] { m.acceptLoop(); });
  return okStatus();
}

void HttpsServer::stop() {
  Impl& m = *impl_;
  if (m.stopping.exchange(true)) return;
  if (m.acceptor) {
    ::shutdown(m.acceptor->native_handle(), SHUT_RDWR);
    beast::error_code ec;
    m.acceptor->close(ec);
  }
  if (m.accept_thread.joinable()) m.accept_thread.join();
  std::unique_lock lock(m.mu);
  for (auto& [fd, sock] : m.open) ::shutdown(fd, SHUT_RDWR);
  m.idle_cv.wait(lock, [&] { return m.active == 0; });
}

void HttpsServer::Impl::acceptLoop() {
  while (!stopping) {
    tcp::socket socket(io);
    beast::error_code ec;
    acceptor->accept(socket, ec);
    if (ec) {
      if (stopping) return;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
      continue;
    }
    std::unique_lock lock(mu);
    if (active >= cfg.max_connections) {
      socket.close(ec);  // over the connection limit
      continue;
    }
    ++active;
    std::thread([this, s = std::move(socket)]() mutable {
      // A client gone mid-response makes OpenSSL's write() raise SIGPIPE: an
      // error for this connection, not the end of the process.
      sigset_t pipe;
      sigemptyset(&pipe);
      sigaddset(&pipe, SIGPIPE);
      pthread_sigmask(SIG_BLOCK, &pipe, nullptr);
      serve(std::move(s));
    }).detach();
  }
}

void HttpsServer::Impl::serve(tcp::socket socket) {
  const int fd = socket.native_handle();
  {
    std::lock_guard lock(mu);
    open[fd] = &socket;
  }
  timeval tv{cfg.idle_timeout_s, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  beast::error_code ec;
  const std::string peer = socket.remote_endpoint(ec).address().to_string();
  {
    TlsStream stream(tls.native_handle(), fd);
    stream.handshake(ec);
    if (!ec && !stopping) {
      beast::flat_buffer buf;
      while (!stopping && handleOne(stream, buf, peer)) {
      }
      stream.shutdown(ec);
    }
  }
  socket.close(ec);
  std::lock_guard lock(mu);
  open.erase(fd);
  if (--active == 0) idle_cv.notify_all();
}

bool HttpsServer::Impl::handleOne(TlsStream& stream, beast::flat_buffer& buf, const std::string& peer) {
  beast::error_code ec;
  http::request_parser<http::buffer_body> parser;
  parser.header_limit(static_cast<std::uint32_t>(cfg.max_header_bytes));
  parser.body_limit(cfg.max_body_bytes);
  http::read_header(stream, buf, parser, ec);
  if (ec == http::error::end_of_stream || ec == asio::error::eof || ec == asio::ssl::error::stream_truncated)
    return false;
  if (ec) {
    Response bad{ec == http::error::header_limit ? 431 : 400, {}, "malformed request\n", {}};
    bad.set("Content-Type", "text/plain");
    if (writeResponse(stream, bad, 11, false)) linger(stream);
    return false;
  }
  auto& h = parser.get();
  Request req;
  req.method = std::string(h.method_string());
  req.target = std::string(h.target());
  const size_t q = req.target.find('?');
  req.path = req.target.substr(0, q);
  req.query = q == std::string::npos ? "" : req.target.substr(q + 1);
  req.peer_address = peer;
  for (const auto& f : h) {
    std::string name(f.name_string());
    for (char& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    std::string& slot = req.headers[name];
    slot += (slot.empty() ? "" : ", ") + std::string(f.value());
  }
  req.has_body = !parser.is_done();
  if (auto cl = parser.content_length()) req.content_length = *cl;
  bool body_failed = false;
  req.readBody = [&](Bytes& out, size_t max) -> Status {
    if (parser.is_done() || body_failed) {
      out.clear();
      return okStatus();
    }
    out.resize(std::max<size_t>(max, 1));  // zero-fills only what the last read did not use
    parser.get().body().data = out.data();
    parser.get().body().size = out.size();
    http::read(stream, buf, parser, ec);
    if (ec == http::error::need_buffer) ec = {};
    if (ec) {
      body_failed = true;
      out.clear();
      if (ec == http::error::body_limit) return resourceExhausted("request body over the limit");
      return unavailable("request body: " + ec.message());
    }
    out.resize(out.size() - parser.get().body().size);
    return okStatus();
  };
  Response res;
  const auto admitted =
      limiter ? limiter->admit(rateLimitKey(peer), std::chrono::steady_clock::now()) : guard::RateLimiter::Decision{};
  if (!admitted.allowed) {
    res = {429, {}, "{\"error\":\"too many requests\"}\n", {}};
    res.set("Content-Type", "application/json");
    res.set("Retry-After", std::to_string(admitted.retryAfterSeconds()));
    if (admitted.first_refusal && cfg.on_throttled) cfg.on_throttled(peer);
  } else {
    res = handler(req);
  }
  // Drain what the handler left unread (bounded), or close the connection.
  bool keep = h.keep_alive() && !body_failed;
  Bytes sink;
  for (int i = 0; keep && !parser.is_done() && i < 64; ++i)
    if (!req.readBody(sink, 65536).ok() || sink.empty()) break;
  keep = keep && parser.is_done();
  const bool written = writeResponse(stream, res, h.version(), keep);
  if (written && !keep && !parser.is_done()) linger(stream);
  return written && keep;
}

}  // namespace bastion::web
