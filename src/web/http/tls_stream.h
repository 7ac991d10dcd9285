// TlsStream: one blocking TLS connection over a connected socket, for Beast's
// synchronous reads and writes (it is a SyncReadStream and SyncWriteStream).
//
// Unlike asio::ssl::stream, which moves every record through a 17 kB memory
// BIO pair and a send() or recv() of its own, OpenSSL works on the socket:
//  - it reads ahead, up to 64 kB of records per read() (a 16 kB record
//    otherwise costs two: its header, then its body);
//  - it writes through a buffer (BIO_f_buffer) that every write_some flushes
//    before returning: a response body leaves in 64 kB write()s (four
//    records each, as measured with Debian 12's OpenSSL 3.0) instead of one
//    send() per 16 kB record, so the client wakes a quarter as often.
// Nothing is held back between calls: when write_some returns, what it was
// given is on the socket.
//
// Timeouts are the socket's (SO_RCVTIMEO / SO_SNDTIMEO): a read or write that
// times out fails. The socket stays the caller's (not closed here); the
// thread using the stream must not die of SIGPIPE (the server blocks it in
// its connection threads).
#pragma once

#include <openssl/ssl.h>

#include <boost/asio/buffer.hpp>
#include <boost/beast/core/error.hpp>
#include <boost/system/system_error.hpp>
#include <string>

namespace bastion::web {

class TlsStream {
 public:
  // `ctx` must outlive the stream; `fd` is a connected, blocking socket.
  TlsStream(SSL_CTX* ctx, int fd);
  ~TlsStream();
  TlsStream(const TlsStream&) = delete;
  TlsStream& operator=(const TlsStream&) = delete;

  int fd() const { return fd_; }
  // The server side of the handshake.
  void handshake(boost::beast::error_code& ec);
  // Sends close_notify (and does not wait for the peer's); nothing after a
  // failure other than the peer's own close_notify (asio::error::shut_down).
  void shutdown(boost::beast::error_code& ec);

  // Reads at least one byte into the first non-empty buffer. At the peer's
  // close_notify: asio::error::eof; at a close without it:
  // asio::ssl::error::stream_truncated.
  template <typename MutableBufferSequence>
  size_t read_some(const MutableBufferSequence& buffers, boost::beast::error_code& ec) {
    for (auto it = boost::asio::buffer_sequence_begin(buffers); it != boost::asio::buffer_sequence_end(buffers); ++it) {
      const boost::asio::mutable_buffer b = *it;
      if (b.size() > 0) return readSome(b.data(), b.size(), ec);
    }
    ec = {};
    return 0;
  }
  template <typename MutableBufferSequence>
  size_t read_some(const MutableBufferSequence& buffers) {
    boost::beast::error_code ec;
    const size_t n = read_some(buffers, ec);
    if (ec) throw boost::system::system_error(ec);
    return n;
  }

  // Writes all of `buffers` and flushes (returns their total size), or fails
  // (0). The buffers are cut into full 16 kB records whatever their sizes:
  // small ones (a chunk's size line, a part's headers) share a record with
  // what follows instead of costing one each (and the client two recv()s).
  template <typename ConstBufferSequence>
  size_t write_some(const ConstBufferSequence& buffers, boost::beast::error_code& ec) {
    size_t total = 0;
    ec = {};
    for (auto it = boost::asio::buffer_sequence_begin(buffers); it != boost::asio::buffer_sequence_end(buffers) && !ec;
         ++it) {
      const boost::asio::const_buffer b = *it;
      stage(static_cast<const unsigned char*>(b.data()), b.size(), ec);
      total += b.size();
    }
    if (!ec) writeStaged(ec);
    if (!ec) flush(ec);
    return ec ? 0 : total;
  }
  template <typename ConstBufferSequence>
  size_t write_some(const ConstBufferSequence& buffers) {
    boost::beast::error_code ec;
    const size_t n = write_some(buffers, ec);
    if (ec) throw boost::system::system_error(ec);
    return n;
  }

  static constexpr int kReadBuffer = 64 * 1024;
  static constexpr long kWriteBuffer = 128 * 1024;
  static constexpr size_t kRecord = 16384;  // TLS's largest record payload

 private:
  size_t readSome(void* data, size_t size, boost::beast::error_code& ec);
  void writeAll(const void* data, size_t size, boost::beast::error_code& ec);
  // Writes whole records of `data` and keeps the rest in staged_, after
  // completing a record begun there; writeStaged() writes what is left.
  void stage(const unsigned char* data, size_t size, boost::beast::error_code& ec);
  void writeStaged(boost::beast::error_code& ec);
  void flush(boost::beast::error_code& ec);
  // The error of a failed SSL_* call that returned `ret` (errno zeroed
  // before the call); marks the connection broken unless it is the peer's
  // close_notify.
  boost::beast::error_code failure(int ret);
  boost::beast::error_code classify(int ret);

  const int fd_;
  SSL* ssl_ = nullptr;
  bool broken_ = false;
  std::string staged_;  // less than one record
};

}  // namespace bastion::web
