// multipart/related bodies (RFC 2046, RFC 2387) for STOW-RS, parsed as they
// stream in: the caller feeds chunks as they arrive and gets each part's
// headers and data through callbacks, so no more than one part (bounded by
// the caller) is ever held. Hostile input gets an error, never unbounded
// memory: limits on part count, header size and preamble size.
#pragma once

#include <functional>
#include <map>
#include <string>
#include <string_view>

#include "bastion/common/bytes.h"
#include "bastion/common/status.h"

namespace bastion::web {

// A media type with its parameters: `multipart/related; type="application/dicom"; boundary=x`.
// Type and parameter names are lower-cased; values are unquoted (quoted or not, viewers send both).
struct MediaType {
  std::string type;  // "multipart/related"
  std::map<std::string, std::string> params;
};
StatusOr<MediaType> parseMediaType(std::string_view text);

class MultipartParser {
 public:
  struct Limits {
    size_t max_parts = 10000;
    size_t max_header_bytes = 16384;    // headers of one part
    size_t max_preamble_bytes = 65536;  // before the first delimiter
  };
  struct Callbacks {
    // A part starts; header names lower-cased. Return an error to stop.
    std::function<Status(const std::map<std::string, std::string>& headers)> begin;
    std::function<Status(ByteView data)> data;  // a piece of the current part's body
    std::function<Status()> end;                // the current part is complete
  };
  // `boundary`: 1-70 characters (RFC 2046); otherwise every feed() fails.
  MultipartParser(std::string boundary, Limits limits, Callbacks callbacks);

  // Consumes the next bytes of the body. After an error, every call fails.
  Status feed(ByteView chunk);
  // The body ended: OK only if the closing delimiter was seen.
  Status finish();
  size_t parts() const { return parts_; }

 private:
  enum class State { kPreamble, kAfterDelimiter, kHeaders, kBody, kEpilogue, kFailed };
  Status fail(Status s);
  Status step(bool& progressed);
  // feed() inside a part's body with at most a delimiter's length held back:
  // the body is passed on from the chunk itself, not copied into buf_ first.
  Status feedBody(std::string_view chunk);
  Status parseHeaders(std::string_view block);

  std::string delimiter_;  // "\r\n--" + boundary
  Limits limits_;
  Callbacks cb_;
  State state_ = State::kPreamble;
  std::string buf_;  // unconsumed input
  size_t parts_ = 0;
  size_t seen_ = 0;  // bytes consumed before the first delimiter
  Status error_;
};

}  // namespace bastion::web
