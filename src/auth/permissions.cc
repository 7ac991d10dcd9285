#include "bastion/auth/permissions.h"

#include <utility>

namespace bastion {
namespace {

constexpr std::pair<uint32_t, const char*> kPermissionNames[] = {
    {kPermEcho, "echo"},
    {kPermStore, "store"},
    {kPermFind, "find"},
    {kPermGet, "get"},
    {kPermMove, "move"},
    {kPermManageUsers, "manage_users"},
    {kPermManageNodes, "manage_nodes"},
    {kPermManageConfig, "manage_config"},
    {kPermReadAudit, "read_audit"},
    {kPermEmergency, "emergency_access"},
    {kPermDelete, "delete"},
    {kPermDeidentified, "deidentified_only"},
};
constexpr std::pair<uint32_t, const char*> kScopeNames[] = {
    {kScopeAll, "all"}, {kScopeSite, "site"}, {kScopeReferring, "referring"}};

template <size_t N>
StatusOr<uint32_t> parseNames(std::string_view list, const std::pair<uint32_t, const char*> (&names)[N],
                              const char* what) {
  uint32_t bits = 0;
  size_t start = 0;
  while (start <= list.size()) {
    const size_t comma = list.find(',', start);
    const std::string_view p =
        list.substr(start, comma == std::string_view::npos ? std::string_view::npos : comma - start);
    bool known = p.empty();
    for (auto [bit, name] : names)
      if (p == name) bits |= bit, known = true;
    if (!known) return invalidArgument(std::string("unknown ") + what + " '" + std::string(p) + "'");
    if (comma == std::string_view::npos) break;
    start = comma + 1;
  }
  return bits;
}

template <size_t N>
std::string formatNames(uint32_t bits, const std::pair<uint32_t, const char*> (&names)[N]) {
  std::string s;
  for (auto [bit, name] : names) {
    if (!(bits & bit)) continue;
    if (!s.empty()) s += ',';
    s += name;
  }
  return s;
}

}  // namespace

StatusOr<uint32_t> parsePermissions(std::string_view list) { return parseNames(list, kPermissionNames, "permission"); }
std::string formatPermissions(uint32_t bits) { return formatNames(bits, kPermissionNames); }
StatusOr<uint32_t> parseScopeRules(std::string_view list) { return parseNames(list, kScopeNames, "scope"); }
std::string formatScopeRules(uint32_t bits) { return formatNames(bits, kScopeNames); }

}  // namespace bastion
