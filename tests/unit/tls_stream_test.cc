// TlsStream against a plain OpenSSL client over a socket pair: what it
// delivers, and how a connection's end reads (the HTTPS server tells a
// client's orderly close from a cut one by these codes).
#include "web/http/tls_stream.h"

#include <gtest/gtest.h>
#include <openssl/ssl.h>
#include <pthread.h>
#include <sys/socket.h>
#include <unistd.h>

#include <boost/asio/error.hpp>
#include <boost/asio/ssl/error.hpp>
#include <csignal>
#include <thread>
#include <vector>

#include "crypto/pki.h"
#include "crypto/tls_policy.h"
#include "test_util.h"

namespace bastion::web {
namespace {

namespace asio = boost::asio;

class TlsStreamTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const std::string d = dir_.path();
    ASSERT_TRUE(crypto::createCa(d + "/ca.key", d + "/ca.crt", "Test CA").ok());
    ASSERT_TRUE(crypto::issueCertificate(d + "/ca.key", d + "/ca.crt", {"localhost", {"localhost"}, {}, true, 1},
                                         d + "/s.key", d + "/s.crt")
                    .ok());
    server_ctx_ = SSL_CTX_new(TLS_server_method());
    ASSERT_EQ(SSL_CTX_use_certificate_chain_file(server_ctx_, (d + "/s.crt").c_str()), 1);
    ASSERT_EQ(SSL_CTX_use_PrivateKey_file(server_ctx_, (d + "/s.key").c_str(), SSL_FILETYPE_PEM), 1);
    ASSERT_TRUE(crypto::applyTlsPolicy(server_ctx_));
    client_ctx_ = SSL_CTX_new(TLS_client_method());
    ASSERT_EQ(SSL_CTX_load_verify_locations(client_ctx_, (d + "/ca.crt").c_str(), nullptr), 1);
    SSL_CTX_set_verify(client_ctx_, SSL_VERIFY_PEER, nullptr);
    ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM, 0, fds_), 0);
    // A stream that waits for bytes that never come fails the test instead of hanging it.
    const timeval tv{10, 0};
    for (int fd : fds_) {
      ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
      ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    }
    client_ = SSL_new(client_ctx_);
    SSL_set_fd(client_, fds_[1]);
  }
  void TearDown() override {
    if (server_.joinable()) server_.join();
    SSL_free(client_);
    SSL_CTX_free(client_ctx_);
    SSL_CTX_free(server_ctx_);
    ::close(fds_[0]);
    if (fds_[1] >= 0) ::close(fds_[1]);
  }
  // Runs `server` on a thread with SIGPIPE blocked (as the HTTPS server's
  // connection threads run), while the client handshakes on this one.
  // finish() joins it (TearDown too, should an assertion return early).
  void serve(std::function<void(TlsStream&)> server) {
    server_ = std::thread([this, server] {
      sigset_t pipe;
      sigemptyset(&pipe);
      sigaddset(&pipe, SIGPIPE);
      pthread_sigmask(SIG_BLOCK, &pipe, nullptr);
      TlsStream s(server_ctx_, fds_[0]);
      s.handshake(handshake_);
      if (!handshake_) server(s);
    });
  }
  void finish() {
    server_.join();
    EXPECT_FALSE(handshake_) << handshake_.message();
  }
  Bytes clientRead(size_t n) {
    Bytes got(n);
    size_t at = 0;
    while (at < n) {
      size_t k = 0;
      if (SSL_read_ex(client_, got.data() + at, n - at, &k) != 1) break;
      at += k;
    }
    got.resize(at);
    return got;
  }

  testing::TempDir dir_;
  SSL_CTX* server_ctx_ = nullptr;
  SSL_CTX* client_ctx_ = nullptr;
  SSL* client_ = nullptr;
  int fds_[2] = {-1, -1};
  std::thread server_;
  boost::beast::error_code handshake_;
};

Bytes pattern(size_t n) {
  Bytes b(n);
  for (size_t i = 0; i < n; ++i) b[i] = static_cast<uint8_t>(i * 131 + i / 7);
  return b;
}

TEST_F(TlsStreamTest, CarriesLargeWritesBothWaysAndReadsAnOrderlyCloseAsEof) {
  const Bytes request = pattern(300000), response = pattern(1 << 20);
  Bytes received;
  boost::beast::error_code end;
  size_t written = 0;
  serve([&](TlsStream& s) {
    boost::beast::error_code ec;
    uint8_t buf[70000];
    while (received.size() < request.size()) {
      const size_t n = s.read_some(asio::buffer(buf), ec);
      if (ec) return;
      received.insert(received.end(), buf, buf + n);
    }
    // Two buffers in one call, as a chunked body's header and data come.
    const std::array<asio::const_buffer, 2> parts{asio::buffer(response.data(), 1000),
                                                  asio::buffer(response.data() + 1000, response.size() - 1000)};
    written = s.write_some(parts, ec);
    s.read_some(asio::buffer(buf), end);
  });
  ASSERT_EQ(SSL_connect(client_), 1);
  size_t sent = 0;
  ASSERT_EQ(SSL_write_ex(client_, request.data(), request.size(), &sent), 1);
  EXPECT_EQ(clientRead(response.size()), response);  // all of it, flushed when write_some returned
  SSL_shutdown(client_);
  finish();
  EXPECT_EQ(received, request);
  EXPECT_EQ(written, response.size());
  EXPECT_EQ(end, asio::error::eof);
}

// Small buffers share a record with what follows: the client's first read
// (at most one record) is a full record, not the 10-byte piece.
TEST_F(TlsStreamTest, SmallPiecesShareFullRecords) {
  const Bytes body = pattern(40000);
  serve([&](TlsStream& s) {
    boost::beast::error_code ec;
    const std::array<asio::const_buffer, 3> parts{asio::buffer(body.data(), 10), asio::buffer(body.data() + 10, 20),
                                                  asio::buffer(body.data() + 30, body.size() - 30)};
    s.write_some(parts, ec);
  });
  ASSERT_EQ(SSL_connect(client_), 1);
  Bytes buf(1 << 16), got;
  std::vector<size_t> reads;
  while (got.size() < body.size()) {
    size_t n = 0;
    if (SSL_read_ex(client_, buf.data(), buf.size(), &n) != 1) break;
    reads.push_back(n);
    got.insert(got.end(), buf.begin(), buf.begin() + static_cast<long>(n));
  }
  finish();
  EXPECT_EQ(got, body);
  EXPECT_EQ(reads, (std::vector<size_t>{16384, 16384, 40000 - 2 * 16384}));
}

TEST_F(TlsStreamTest, AConnectionCutWithoutCloseNotifyReadsAsTruncated) {
  boost::beast::error_code end;
  serve([&](TlsStream& s) {
    uint8_t buf[100];
    s.read_some(asio::buffer(buf), end);
  });
  ASSERT_EQ(SSL_connect(client_), 1);
  ::shutdown(fds_[1], SHUT_RDWR);
  finish();
  EXPECT_EQ(end, asio::ssl::error::stream_truncated);
}

TEST_F(TlsStreamTest, WritingToAClientThatLeftFailsInsteadOfKillingTheProcess) {
  boost::beast::error_code first, later;
  serve([&](TlsStream& s) {
    uint8_t buf[100];
    s.read_some(asio::buffer(buf), first);
    const Bytes big = pattern(1 << 20);
    for (int i = 0; i < 8 && !later; ++i) s.write_some(asio::buffer(big), later);
  });
  ASSERT_EQ(SSL_connect(client_), 1);
  size_t sent = 0;
  ASSERT_EQ(SSL_write_ex(client_, "x", 1, &sent), 1);
  ::close(fds_[1]);
  fds_[1] = -1;
  finish();
  EXPECT_FALSE(first);
  EXPECT_TRUE(later);  // EPIPE or a reset: an error code, and this test still runs
}

}  // namespace
}  // namespace bastion::web
