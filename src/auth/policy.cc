#include "bastion/auth/policy.h"

#include <cctype>

namespace bastion {

const char* actionName(Action a) {
  switch (a) {
    case Action::kEcho: return "echo";
    case Action::kStore: return "store";
    case Action::kFind: return "find";
    case Action::kGet: return "get";
    case Action::kMove: return "move";
    case Action::kManageUsers: return "manage_users";
    case Action::kManageNodes: return "manage_nodes";
    case Action::kManageConfig: return "manage_config";
    case Action::kReadAudit: return "read_audit";
    case Action::kEmergencyAccess: return "emergency_access";
    case Action::kDelete: return "delete";
  }
  return "unknown";
}

std::vector<std::string> Principal::grantees() const {
  std::vector<std::string> out;
  if (kind == Kind::kUser) {
    out.push_back("user:" + name);
    for (const auto& g : groups) out.push_back("group:" + g);
  } else if (kind == Kind::kNode) {
    out.push_back("node:" + name);
  }
  return out;
}

std::string normalizePersonName(std::string_view pn) {
  std::string s;
  s.reserve(pn.size());
  for (char c : pn) s += static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  while (!s.empty() && (s.back() == '^' || s.back() == ' ' || s.back() == '=')) s.pop_back();
  size_t start = 0;
  while (start < s.size() && s[start] == ' ') ++start;
  return s.substr(start);
}

namespace {

uint32_t permissionFor(Action a) {
  switch (a) {
    case Action::kEcho: return kPermEcho;
    case Action::kStore: return kPermStore;
    case Action::kFind: return kPermFind;
    case Action::kGet: return kPermGet;
    case Action::kMove: return kPermMove;
    case Action::kManageUsers: return kPermManageUsers;
    case Action::kManageNodes: return kPermManageNodes;
    case Action::kManageConfig: return kPermManageConfig;
    case Action::kReadAudit: return kPermReadAudit;
    case Action::kEmergencyAccess: return kPermEmergency;
    case Action::kDelete: return kPermDelete;
  }
  return 0;
}

bool readsImages(Action a) {
  return a == Action::kFind || a == Action::kGet || a == Action::kMove || a == Action::kDelete;
}

Decision deny(std::string rule) {
  Decision d;
  d.rule = "deny:" + std::move(rule);
  return d;
}

}  // namespace

Decision Policy::decide(const Principal& who, Action action, const Resource& what,
                        std::chrono::system_clock::time_point now) const {
  if (!who.authenticated()) return deny("unauthenticated");
  const uint32_t need = permissionFor(action);
  if (!(who.permissions & need)) return deny(std::string("no-permission:") + actionName(action));
  if (readsImages(action) && (who.permissions & kPermDeidentified))
    return deny("deidentified-only");  // de-identified views do not exist yet: no identified data at all
  Decision d;
  d.allowed = true;
  if (!readsImages(action)) {
    d.rule = std::string("allow:permission:") + actionName(action);
    return d;
  }
  StudyScope& s = d.scope;
  if (!who.restrict_site.empty()) s.restrict_sites.push_back(who.restrict_site);
  // Deletion is an administrative act on any study (permission-gated, audited).
  if (action == Action::kDelete) {
    s.all = true;
    d.rule = "allow:permission:delete";
    return d;
  }
  if (who.scope_rules & kScopeAll) {
    s.all = true;
    d.rule = std::string("allow:scope-all:") + actionName(action) + (who.restrict_site.empty() ? "" : "+node-site");
    return d;
  }
  std::string rule = std::string("allow:scope:") + actionName(action) + ":grants";
  if ((who.scope_rules & kScopeSite) && !who.site.empty()) {
    s.sites.push_back(who.site);
    rule += "+site";
  }
  if ((who.scope_rules & kScopeReferring) && !who.physician_name.empty()) {
    s.physician_names.push_back(normalizePersonName(who.physician_name));
    rule += "+referring";
  }
  if (!who.restrict_site.empty()) rule += "+node-site";
  s.grantees = who.grantees();
  s.now_unix = std::chrono::duration_cast<std::chrono::seconds>(now.time_since_epoch()).count();
  d.rule = std::move(rule);
  return d;
}

}  // namespace bastion
