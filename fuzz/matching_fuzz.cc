// Fuzz target for the query-value parsers: wildcard and range matching,
// UID lists, CIDR and permission lists. Input: pattern NUL value.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "bastion/service/node_registry.h"
#include "index/matching.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view in(reinterpret_cast<const char*>(data), size);
  const size_t nul = in.find('\0');
  std::string_view pattern = in.substr(0, nul), value = nul == std::string_view::npos ? "" : in.substr(nul + 1);
  using namespace bastion::index;
  (void)wildcardMatch(pattern, value, true);
  (void)rangeMatch(pattern, value);
  (void)splitValues(pattern);
  (void)bastion::addressInCidr(value, pattern);
  (void)bastion::parsePermissions(pattern).ok();
  (void)bastion::validateAeTitle(pattern).ok();
  return 0;
}
