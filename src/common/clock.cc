#include "bastion/common/clock.h"

#include <openssl/rand.h>

#include <cstdio>
#include <cstdlib>
#include <cctype>
#include <ctime>
#include <iomanip>
#include <sstream>

namespace bastion {
namespace {

class SystemClock final : public Clock {
 public:
  std::chrono::system_clock::time_point now() const override { return std::chrono::system_clock::now(); }
};

class SystemRandom final : public Random {
 public:
  void fill(std::span<uint8_t> out) override {
    if (out.empty()) return;
    if (RAND_bytes(out.data(), static_cast<int>(out.size())) != 1) {
      std::fputs("fatal: system CSPRNG failed\n", stderr);
      std::abort();
    }
  }
};

}  // namespace

const Clock& Clock::system() {
  static const SystemClock clock;
  return clock;
}

Random& Random::system() {
  static SystemRandom random;
  return random;
}

std::string formatUtc(std::chrono::system_clock::time_point t) {
  const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(t.time_since_epoch()).count();
  std::time_t secs = static_cast<std::time_t>(ms / 1000);
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char buf[96];
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1,
                tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, static_cast<int>(ms % 1000));
  return buf;
}

std::string newUuid(Random& random) {
  uint8_t b[16];
  random.fill(b);
  b[6] = static_cast<uint8_t>((b[6] & 0x0f) | 0x40);
  b[8] = static_cast<uint8_t>((b[8] & 0x3f) | 0x80);
  static const char* kHex = "0123456789abcdef";
  std::string s;
  s.reserve(36);
  for (int i = 0; i < 16; ++i) {
    if (i == 4 || i == 6 || i == 8 || i == 10) s.push_back('-');
    s.push_back(kHex[b[i] >> 4]);
    s.push_back(kHex[b[i] & 15]);
  }
  return s;
}

bool isCanonicalUuid(std::string_view s) {
  if (s.size() != 36) return false;
  for (size_t i = 0; i < s.size(); ++i) {
    const char c = s[i];
    if (i == 8 || i == 13 || i == 18 || i == 23) {
      if (c != '-') return false;
    } else if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) {
      return false;
    }
  }
  return true;
}

std::optional<std::chrono::system_clock::time_point> parseIsoTime(const std::string& s) {
  std::tm tm{};
  std::istringstream in(s);
  in >> std::get_time(&tm, s.size() > 10 ? "%Y-%m-%dT%H:%M:%S" : "%Y-%m-%d");
  if (in.fail()) return std::nullopt;
  std::string rest;
  std::getline(in, rest);
  int offset_s = 0;
  const auto digits = [&](size_t i) { return std::isdigit(static_cast<unsigned char>(rest[i])) != 0; };
  if (rest.size() == 6 && (rest[0] == '+' || rest[0] == '-') && rest[3] == ':' && digits(1) && digits(2) &&
      digits(4) && digits(5)) {
    offset_s = (std::stoi(rest.substr(1, 2)) * 3600 + std::stoi(rest.substr(4, 2)) * 60) * (rest[0] == '-' ? -1 : 1);
  } else if (!(rest.empty() || rest == "Z")) {
    return std::nullopt;
  }
  return std::chrono::system_clock::from_time_t(::timegm(&tm)) - std::chrono::seconds(offset_s);
}

}  // namespace bastion
