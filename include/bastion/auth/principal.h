// Principal: who is acting, after authentication. Built by the identity
// store (users) or the node registry (DICOM nodes); front-ends never edit
// permissions themselves.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace bastion {

struct Principal {
  enum class Kind { kNone, kNode, kUser };
  Kind kind = Kind::kNone;
  std::string name;                 // user name, or the node's AE title
  std::string auth_method;          // "certificate", "password+totp", "api-token", "jwt", "session", "local"
  std::vector<std::string> roles;   // role names, for the audit record
  uint32_t permissions = 0;         // effective Permission bits (user's ∩ node's when both apply)
  uint32_t scope_rules = 0;         // ScopeRule bits, union over the roles
  std::string site;                 // organisation/site the principal belongs to
  std::string physician_name;       // DICOM PN this user appears as in Referring/Requesting Physician
  std::vector<std::string> groups;  // for group grants
  std::string via_node;             // the DICOM node a user came through, if any
  std::string restrict_site;        // if set: only this site's studies (the node's scope), whatever else admits

  bool authenticated() const { return kind != Kind::kNone; }
  // Grant subjects this principal matches: "user:NAME", "group:G", "node:AE".
  std::vector<std::string> grantees() const;
};

// Normalises a DICOM person name for scope matching: upper case, trailing
// '^' and spaces removed ("Smith^John^^" -> "SMITH^JOHN").
std::string normalizePersonName(std::string_view pn);

}  // namespace bastion
