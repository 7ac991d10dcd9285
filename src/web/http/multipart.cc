#include "web/http/multipart.h"

#include <cctype>
#include <cstring>

namespace bastion::web {
namespace {

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

bool isToken(std::string_view s) {
  if (s.empty()) return false;
  for (unsigned char c : s)
    if (c <= 32 || c >= 127 ||
        std::string_view("()<>@,;:\\\"/[]?={}").find(static_cast<char>(c)) != std::string_view::npos)
      return false;
  return true;
}

ByteView view(const std::string& s, size_t n) { return ByteView(reinterpret_cast<const uint8_t*>(s.data()), n); }

}  // namespace

StatusOr<MediaType> parseMediaType(std::string_view text) {
  if (text.size() > 4096) return invalidArgument("media type too long");
  MediaType mt;
  size_t semi = text.find(';');
  std::string_view type = trim(text.substr(0, semi));
  const size_t slash = type.find('/');
  if (slash == std::string_view::npos || !isToken(type.substr(0, slash)) || !isToken(type.substr(slash + 1)))
    return invalidArgument("malformed media type");
  mt.type = lower(type);
  while (semi != std::string_view::npos) {
    std::string_view rest = text.substr(semi + 1);
    const size_t eq = rest.find('=');
    if (eq == std::string_view::npos) {
      if (trim(rest).empty()) break;  // a trailing ';'
      return invalidArgument("malformed media type parameter");
    }
    const std::string name = lower(trim(rest.substr(0, eq)));
    if (!isToken(name)) return invalidArgument("malformed media type parameter");
    std::string_view v = rest.substr(eq + 1);
    while (!v.empty() && (v.front() == ' ' || v.front() == '\t')) v.remove_prefix(1);
    std::string value;
    size_t used = 0;
    if (!v.empty() && v.front() == '"') {  // quoted-string with backslash escapes
      size_t i = 1;
      for (; i < v.size() && v[i] != '"'; ++i) {
        if (v[i] == '\\' && i + 1 < v.size()) ++i;
        value += v[i];
      }
      if (i >= v.size()) return invalidArgument("unterminated quoted parameter");
      used = i + 1;
    } else {
      used = std::min(v.find(';'), v.size());
      value = std::string(trim(v.substr(0, used)));
      if (!value.empty() && value.find_first_of(" \t\"") != std::string::npos)
        return invalidArgument("malformed media type parameter");
    }
    if (mt.params.count(name)) return invalidArgument("repeated media type parameter " + name);
    mt.params[name] = value;
    const std::string_view after = v.substr(used);
    const size_t next = after.find(';');
    if (!trim(after.substr(0, next)).empty()) return invalidArgument("malformed media type parameter");
    semi = next == std::string_view::npos ? std::string_view::npos
                                          : static_cast<size_t>(after.data() + next - text.data());
  }
  return mt;
}

MultipartParser::MultipartParser(std::string boundary, Limits limits, Callbacks callbacks)
    : delimiter_("\r\n--" + boundary), limits_(limits), cb_(std::move(callbacks)), buf_("\r\n") {
  bool ok = !boundary.empty() && boundary.size() <= 70 && boundary.back() != ' ';
  for (unsigned char c : boundary) ok = ok && c >= 32 && c < 127;
  if (!ok) {
    state_ = State::kFailed;
    error_ = invalidArgument("invalid multipart boundary");
  }
}

Status MultipartParser::fail(Status s) {
  state_ = State::kFailed;
  error_ = s;
  buf_.clear();
  return s;
}

Status MultipartParser::feed(ByteView chunk) {
  if (state_ == State::kFailed) return error_;
  if (state_ == State::kEpilogue) return okStatus();  // the epilogue is ignored
  const std::string_view c(reinterpret_cast<const char*>(chunk.data()), chunk.size());
  if (state_ == State::kBody && buf_.size() < delimiter_.size() && c.size() >= delimiter_.size()) {
    if (Status s = feedBody(c); !s.ok()) return fail(s);
    if (state_ == State::kBody) return okStatus();
  } else {
    buf_.append(c);
  }
  bool progressed = true;
  while (progressed && state_ != State::kFailed) {
    progressed = false;
    Status s = step(progressed);
    if (!s.ok()) return fail(s);
  }
  return state_ == State::kFailed ? error_ : okStatus();
}

Status MultipartParser::feedBody(std::string_view c) {
  const size_t dl = delimiter_.size();
  const ByteView chunk(reinterpret_cast<const uint8_t*>(c.data()), c.size());
  size_t rest = std::string_view::npos;  // where the chunk goes on after a delimiter
  if (!buf_.empty()) {
    const std::string joined = buf_ + std::string(c.substr(0, dl - 1));
    const size_t p = joined.find(delimiter_);
    if (p != std::string::npos && p < buf_.size()) {  // begins in the tail, ends in the chunk
      if (p && cb_.data) RETURN_IF_ERROR(cb_.data(view(buf_, p)));
      rest = p + dl - buf_.size();
    } else if (cb_.data) {
      RETURN_IF_ERROR(cb_.data(view(buf_, buf_.size())));
    }
  }
  if (rest == std::string_view::npos) {
    const void* hit = ::memmem(c.data(), c.size(), delimiter_.data(), dl);
    if (!hit) {
      const size_t n = c.size() - (dl - 1);  // the last dl-1 bytes may begin a delimiter
      if (cb_.data) RETURN_IF_ERROR(cb_.data(chunk.first(n)));
      buf_.assign(c.substr(n));
      return okStatus();
    }
    const size_t q = static_cast<size_t>(static_cast<const char*>(hit) - c.data());
    if (q && cb_.data) RETURN_IF_ERROR(cb_.data(chunk.first(q)));
    rest = q + dl;
  }
  if (cb_.end) RETURN_IF_ERROR(cb_.end());
  state_ = State::kAfterDelimiter;
  buf_.assign(c.substr(rest));
  return okStatus();
}

Status MultipartParser::finish() {
  if (state_ == State::kFailed) return error_;
  if (state_ != State::kEpilogue) return fail(invalidArgument("multipart body ends before its closing delimiter"));
  return okStatus();
}

Status MultipartParser::parseHeaders(std::string_view block) {
  std::map<std::string, std::string> headers;
  size_t start = 0;
  while (start < block.size()) {
    size_t eol = block.find("\r\n", start);
    if (eol == std::string_view::npos) eol = block.size();
    const std::string_view line = block.substr(start, eol - start);
    start = eol + 2;
    const size_t colon = line.find(':');
    if (colon == std::string_view::npos || !isToken(line.substr(0, colon)))
      return invalidArgument("malformed part header");
    headers[lower(line.substr(0, colon))] = std::string(trim(line.substr(colon + 1)));
  }
  return cb_.begin ? cb_.begin(headers) : okStatus();
}

Status MultipartParser::step(bool& progressed) {
  const size_t keep = delimiter_.size() - 1;  // a delimiter may straddle two chunks
  switch (state_) {
    case State::kPreamble: {
      const size_t pos = buf_.find(delimiter_);
      if (pos == std::string::npos) {
        if (buf_.size() > keep) {
          seen_ += buf_.size() - keep;
          buf_.erase(0, buf_.size() - keep);
        }
        if (seen_ > limits_.max_preamble_bytes) return invalidArgument("no multipart delimiter found");
        return okStatus();
      }
      buf_.erase(0, pos + delimiter_.size());
      state_ = State::kAfterDelimiter;
      progressed = true;
      return okStatus();
    }
    case State::kAfterDelimiter: {
      if (buf_.size() < 2) return okStatus();
      if (buf_.compare(0, 2, "--") == 0) {
        state_ = State::kEpilogue;
        buf_.clear();
        return okStatus();
      }
      size_t i = 0;
      while (i < buf_.size() && (buf_[i] == ' ' || buf_[i] == '\t')) ++i;  // transport padding
      if (i + 2 > buf_.size()) {
        if (buf_.size() > 256) return invalidArgument("malformed multipart delimiter line");
        return okStatus();
      }
      if (buf_.compare(i, 2, "\r\n") != 0) return invalidArgument("malformed multipart delimiter line");
      if (++parts_ > limits_.max_parts) return resourceExhausted("too many multipart parts");
      buf_.erase(0, i + 2);
      state_ = State::kHeaders;
      progressed = true;
      return okStatus();
    }
    case State::kHeaders: {
      size_t end = 0, skip = 0;
      if (buf_.size() >= 2 && buf_.compare(0, 2, "\r\n") == 0) {
        end = 0, skip = 2;  // no headers
      } else {
        const size_t pos = buf_.find("\r\n\r\n");
        if (pos == std::string::npos) {
          if (buf_.size() > limits_.max_header_bytes) return resourceExhausted("part headers too large");
          return okStatus();
        }
        end = pos, skip = pos + 4;
      }
      if (end > limits_.max_header_bytes) return resourceExhausted("part headers too large");
      RETURN_IF_ERROR(parseHeaders(std::string_view(buf_).substr(0, end)));
      buf_.erase(0, skip);
      state_ = State::kBody;
      progressed = true;
      return okStatus();
    }
    case State::kBody: {
      const size_t pos = buf_.find(delimiter_);
      if (pos == std::string::npos) {
        if (buf_.size() > keep) {
          const size_t n = buf_.size() - keep;
          if (cb_.data) RETURN_IF_ERROR(cb_.data(view(buf_, n)));
          buf_.erase(0, n);
        }
        return okStatus();
      }
      if (pos && cb_.data) RETURN_IF_ERROR(cb_.data(view(buf_, pos)));
      if (cb_.end) RETURN_IF_ERROR(cb_.end());
      buf_.erase(0, pos + delimiter_.size());
      state_ = State::kAfterDelimiter;
      progressed = true;
      return okStatus();
    }
    case State::kEpilogue:
    case State::kFailed:
      return okStatus();
  }
  return okStatus();
}

}  // namespace bastion::web
