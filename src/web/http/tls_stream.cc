#include "web/http/tls_stream.h"

#include <openssl/bio.h>
#include <openssl/err.h>

#include <algorithm>
#include <boost/asio/error.hpp>
#include <boost/asio/ssl/error.hpp>
#include <cerrno>

namespace bastion::web {

namespace asio = boost::asio;
using boost::beast::error_code;

namespace {
// Before an SSL_* call the thread's error queue must be empty (SSL_get_error
// reads it). It almost always is, and ERR_clear_error() costs more than the
// look: it was 3 % of the server's CPU under STOW-RS, called once per record.
void clearErrors() {
  if (ERR_peek_error() != 0) ERR_clear_error();
}
}  // namespace

TlsStream::TlsStream(SSL_CTX* ctx, int fd) : fd_(fd) {
  ssl_ = SSL_new(ctx);
  if (ssl_ == nullptr) return;
  BIO* rbio = BIO_new_socket(fd, BIO_NOCLOSE);
  BIO* sock = BIO_new_socket(fd, BIO_NOCLOSE);
  BIO* buffered = BIO_new(BIO_f_buffer());
  if (rbio == nullptr || sock == nullptr || buffered == nullptr ||
      BIO_set_write_buffer_size(buffered, kWriteBuffer) != 1) {
    BIO_free(rbio);
    BIO_free(sock);
    BIO_free(buffered);
    SSL_free(ssl_);
    ssl_ = nullptr;
    return;
  }
  SSL_set_bio(ssl_, rbio, BIO_push(buffered, sock));  // the SSL owns both chains now
  SSL_set_default_read_buffer_len(ssl_, kReadBuffer);
  SSL_set_read_ahead(ssl_, 1);
}

TlsStream::~TlsStream() { SSL_free(ssl_); }

error_code TlsStream::failure(int ret) {
  const error_code ec = classify(ret);
  // After anything but the peer's close_notify the connection is done for:
  // no close_notify of ours (OpenSSL forbids it after a fatal error, and a
  // client that stopped reading would hold the thread for another timeout).
  if (ec != asio::error::eof) broken_ = true;
  return ec;
}

error_code TlsStream::classify(int ret) {
  const int saved_errno = errno;  // zeroed before each call
  const int err = SSL_get_error(ssl_, ret);
  const unsigned long lib = ERR_peek_last_error();
  ERR_clear_error();
  switch (err) {
    case SSL_ERROR_ZERO_RETURN:
      return asio::error::eof;
    case SSL_ERROR_WANT_READ:
    case SSL_ERROR_WANT_WRITE:  // a blocking socket only says so when it timed out
      return asio::error::timed_out;
    case SSL_ERROR_SYSCALL:
      if (saved_errno == EAGAIN || saved_errno == EWOULDBLOCK) return asio::error::timed_out;
      if (lib == 0 && saved_errno == 0) return asio::ssl::error::stream_truncated;
      if (saved_errno != 0) return {saved_errno, boost::system::system_category()};
      break;
    case SSL_ERROR_SSL:
      if (ERR_GET_LIB(lib) == ERR_LIB_SSL && ERR_GET_REASON(lib) == SSL_R_UNEXPECTED_EOF_WHILE_READING)
        return asio::ssl::error::stream_truncated;
      break;
    default:
      break;
  }
  return {static_cast<int>(lib != 0 ? lib : 1), asio::error::get_ssl_category()};
}

void TlsStream::handshake(error_code& ec) {
  if (ssl_ == nullptr) {
    ec = asio::error::no_memory;
    return;
  }
  clearErrors();
  errno = 0;
  const int r = SSL_accept(ssl_);
  ec = r == 1 ? error_code() : failure(r);
}

void TlsStream::shutdown(error_code& ec) {
  if (broken_ || ssl_ == nullptr) {
    ec = asio::error::shut_down;
    return;
  }
  clearErrors();
  errno = 0;
  const int r = SSL_shutdown(ssl_);  // 0: sent, the peer's not yet read; enough before a close
  ec = r >= 0 ? error_code() : failure(r);
  if (!ec) flush(ec);
}

size_t TlsStream::readSome(void* data, size_t size, error_code& ec) {
  clearErrors();
  errno = 0;
  size_t n = 0;
  const int r = SSL_read_ex(ssl_, data, size, &n);
  ec = r == 1 ? error_code() : failure(r);
  return ec ? 0 : n;
}

void TlsStream::writeAll(const void* data, size_t size, error_code& ec) {
  const auto* p = static_cast<const unsigned char*>(data);
  while (size > 0) {
    clearErrors();
    errno = 0;
    size_t n = 0;
    const int r = SSL_write_ex(ssl_, p, size, &n);
    if (r != 1) {
      ec = failure(r);
      return;
    }
    p += n;
    size -= n;
  }
  ec = {};
}

void TlsStream::stage(const unsigned char* p, size_t n, error_code& ec) {
  if (!staged_.empty()) {
    const size_t take = std::min(n, kRecord - staged_.size());
    staged_.append(reinterpret_cast<const char*>(p), take);
    p += take;
    n -= take;
    if (staged_.size() < kRecord) return;
    writeStaged(ec);
    if (ec) return;
  }
  const size_t whole = n - n % kRecord;
  if (whole > 0) writeAll(p, whole, ec);
  if (!ec) staged_.append(reinterpret_cast<const char*>(p + whole), n - whole);
}

void TlsStream::writeStaged(error_code& ec) {
  if (!staged_.empty()) writeAll(staged_.data(), staged_.size(), ec);
  staged_.clear();
}

void TlsStream::flush(error_code& ec) {
  errno = 0;
  if (BIO_flush(SSL_get_wbio(ssl_)) == 1) {
    ec = {};
    return;
  }
  broken_ = true;
  ec = errno == EAGAIN || errno == EWOULDBLOCK ? error_code(asio::error::timed_out)
       : errno != 0                            ? error_code(errno, boost::system::system_category())
                                               : error_code(asio::error::broken_pipe);
}

}  // namespace bastion::web
