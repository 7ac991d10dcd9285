// The DICOM nodes (modalities, workstations, move destinations) allowed to
// talk to Bastion, and what each may do. Thread-safe.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "bastion/auth/permissions.h"
#include "bastion/common/status.h"

namespace bastion {


struct DicomNode {
  std::string ae_title;
  std::string source_cidr;   // e.g. 10.1.2.0/24, 127.0.0.1/32, ::1/128
  std::string cert_sha256;   // lowercase hex SHA-256 of the client certificate (DER); empty: plaintext-only node
  uint32_t permissions = 0;  // Permission bits
  std::string move_host;     // as a C-MOVE destination; empty: not a destination
  uint16_t move_port = 0;
  std::string site = "main";  // organisation/site: studies it stores belong to it
  // What it may see: kScopeSite (its site's studies, the default) or kScopeAll.
  // Users acting through it see the intersection of their scope and this.
  uint32_t scope_rules = kScopeSite;
};

// True if `address` (textual IPv4/IPv6) lies within `cidr`. False on any parse error.
bool addressInCidr(std::string_view address, std::string_view cidr);
// True if `address` lies within any of `cidrs`.
bool addressInAnyCidr(std::string_view address, const std::vector<std::string>& cidrs);
// kInvalidArgument unless `cidr` is a valid "address/prefix" or bare address.
Status validateCidr(std::string_view cidr);
// DICOM AE title rules: 1-16 characters of the default repertoire, no backslash or control characters.
Status validateAeTitle(std::string_view ae);

class NodeRegistry {
 public:
  virtual ~NodeRegistry() = default;
  // kAlreadyExists if the AE title is taken; kInvalidArgument on bad fields.
  virtual Status add(const DicomNode& node) = 0;
  virtual Status remove(const std::string& ae_title) = 0;  // kNotFound if absent
  virtual StatusOr<std::vector<DicomNode>> list() = 0;
  virtual StatusOr<std::optional<DicomNode>> find(const std::string& ae_title) = 0;
};

}  // namespace bastion
