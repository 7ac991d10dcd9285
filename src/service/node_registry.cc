#include "bastion/service/node_registry.h"

#include <arpa/inet.h>

#include <cstring>

namespace bastion {

namespace {
struct Net {
  int family = 0;
  uint8_t addr[16] = {};
  int prefix = 0;
};
bool parseAddress(std::string_view text, Net& n) {
  std::string s(text);
  if (inet_pton(AF_INET, s.c_str(), n.addr) == 1) {
    n.family = AF_INET;
    return true;
  }
  if (inet_pton(AF_INET6, s.c_str(), n.addr) == 1) {
    n.family = AF_INET6;
    // IPv4-mapped IPv6 (::ffff:a.b.c.d) compares as IPv4.
    static const uint8_t kMapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    if (std::memcmp(n.addr, kMapped, 12) == 0) {
      std::memmove(n.addr, n.addr + 12, 4);
      n.family = AF_INET;
    }
    return true;
  }
  return false;
}
bool parseCidr(std::string_view cidr, Net& n) {
  size_t slash = cidr.find('/');
  if (!parseAddress(cidr.substr(0, slash), n)) return false;
  const int max = n.family == AF_INET ? 32 : 128;
  if (slash == std::string_view::npos) {
    n.prefix = max;
    return true;
  }
  std::string_view p = cidr.substr(slash + 1);
  if (p.empty() || p.size() > 3) return false;
  int v = 0;
  for (char c : p) {
    if (c < '0' || c > '9') return false;
    v = v * 10 + (c - '0');
  }
  if (v > max) return false;
  n.prefix = v;
  return true;
}
}  // namespace

Status validateCidr(std::string_view cidr) {
  Net n;
  return parseCidr(cidr, n) ? okStatus() : invalidArgument("not an address or CIDR: " + std::string(cidr));
}

bool addressInCidr(std::string_view address, std::string_view cidr) {
  Net a, c;
  if (!parseAddress(address, a) || !parseCidr(cidr, c) || a.family != c.family) return false;
  int bits = c.prefix;
  for (int i = 0; bits > 0; ++i, bits -= 8) {
    const uint8_t mask = bits >= 8 ? 0xff : static_cast<uint8_t>(0xff << (8 - bits));
    if ((a.addr[i] & mask) != (c.addr[i] & mask)) return false;
  }
  return true;
}

bool addressInAnyCidr(std::string_view address, const std::vector<std::string>& cidrs) {
  for (const auto& cidr : cidrs)
    if (addressInCidr(address, cidr)) return true;
  return false;
}

Status validateAeTitle(std::string_view ae) {
  if (ae.empty() || ae.size() > 16) return invalidArgument("AE title must be 1-16 characters");
  for (char c : ae)
    if (c < 0x20 || c > 0x7e || c == '\\') return invalidArgument("AE title has a forbidden character");
  if (ae.find_first_not_of(' ') == std::string_view::npos) return invalidArgument("AE title is blank");
  return okStatus();
}

}  // namespace bastion
