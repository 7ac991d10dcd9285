// HttpsServer: HTTP/1.1 over TLS on Boost.Beast, one thread per connection
// (like the DICOM listener), bounded everywhere: connection count, header
// size, body size, idle time. Request bodies are read in chunks through
// Request::readBody (never buffered whole by the server); responses are
// either a body in memory or a sequence of chunks written as they are
// produced (chunked transfer coding). Every response carries the security
// headers (HSTS, CSP, nosniff, no-store, frame denial, no referrer).
#pragma once

#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "bastion/common/bytes.h"
#include "bastion/common/status.h"

namespace bastion::web {

struct Request {
  std::string method;                          // "GET", "POST", ...
  std::string target;                          // path + query, as received
  std::string path;                            // before '?'
  std::string query;                           // after '?', raw
  std::map<std::string, std::string> headers;  // names lower-cased
  std::string peer_address;
  uint64_t content_length = 0;  // 0 if none/chunked
  bool has_body = false;
  // Reads up to `max` bytes of the body into `out` (cleared first); empty at
  // the end. kResourceExhausted over the body limit; kUnavailable on I/O errors.
  std::function<Status(Bytes& out, size_t max)> readBody;
  std::string header(const std::string& lower_name) const {
    auto it = headers.find(lower_name);
    return it == headers.end() ? std::string() : it->second;
  }
};

// One piece of a streamed body: `text`, `data` and `tail`, sent in that
// order as one chunk. `data` lets an object's bytes go out without a copy.
struct StreamChunk {
  std::string text;
  Bytes data;
  std::string tail;
  bool empty() const { return text.empty() && data.empty() && tail.empty(); }
};

struct Response {
  int status = 200;
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;
  // If set, the body is produced by calls to `stream` until it returns false;
  // each call fills `chunk` (given empty). An error after the first chunk
  // aborts the connection (the client sees a truncated response, never a
  // wrong one).
  std::function<StatusOr<bool>(StreamChunk& chunk)> stream;
  void set(const std::string& name, const std::string& value) { headers.emplace_back(name, value); }
};

using Handler = std::function<Response(Request&)>;

struct HttpsConfig {
  std::string address = "127.0.0.1";
  uint16_t port = 0;
  std::string cert, key;  // PEM
  size_t max_connections = 64;
  size_t max_header_bytes = 16384;
  uint64_t max_body_bytes = 4ull << 30;
  int idle_timeout_s = 30;
  // Requests per second and burst per source address (0: no limit). Over
  // the limit: 429 with Retry-After, and `on_throttled(peer)` once per
  // episode (for the audit trail).
  double rate_per_s = 0;
  double rate_burst = 0;
  std::function<void(const std::string& peer)> on_throttled;
};

class HttpsServer {
 public:
  HttpsServer(HttpsConfig config, Handler handler);
  ~HttpsServer();
  Status start();  // binds and starts accepting; port() is valid after
  void stop();     // closes the listener and every connection, joins threads
  uint16_t port() const { return port_; }

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
  uint16_t port_ = 0;
};

// Whose request-rate bucket a peer takes from: its IPv4 address, or its IPv6
// /64 (one host usually has a whole /64 to cycle through).
std::string rateLimitKey(const std::string& peer);

// The security headers every response carries (R30).
std::vector<std::pair<std::string, std::string>> securityHeaders();

}  // namespace bastion::web
