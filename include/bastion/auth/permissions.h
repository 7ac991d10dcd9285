// Permissions: what a principal may do, as bits. Roles (data in the
// `role` table) are named sets of permissions plus a scope rule.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "bastion/common/status.h"

namespace bastion {

enum Permission : uint32_t {
  kPermEcho = 1u << 0,
  kPermStore = 1u << 1,
  kPermFind = 1u << 2,
  kPermGet = 1u << 3,
  kPermMove = 1u << 4,
  kPermManageUsers = 1u << 5,   // accounts, roles, grants
  kPermManageNodes = 1u << 6,   // DICOM node registry
  kPermManageConfig = 1u << 7,  // configuration, keys
  kPermReadAudit = 1u << 8,     // the audit trail
  kPermEmergency = 1u << 9,     // break-glass: open a study outside one's scope, with a reason
  kPermDelete = 1u << 10,       // delete studies
  kPermDeidentified = 1u << 11, // restriction: may only see de-identified data
};

// "echo,store,find" <-> bits. kInvalidArgument on an unknown name.
// Names: echo store find get move manage_users manage_nodes manage_config
// read_audit emergency_access delete deidentified_only.
StatusOr<uint32_t> parsePermissions(std::string_view list);
std::string formatPermissions(uint32_t bits);

// Which studies a role may see (besides explicit grants, which always apply).
enum ScopeRule : uint32_t {
  kScopeAll = 1u << 0,        // every study
  kScopeSite = 1u << 1,       // studies of the principal's site
  kScopeReferring = 1u << 2,  // studies where the principal is the referring/requesting physician
};
// "site,referring" / "all" / "" (grants only) <-> bits.
StatusOr<uint32_t> parseScopeRules(std::string_view list);
std::string formatScopeRules(uint32_t bits);

}  // namespace bastion
