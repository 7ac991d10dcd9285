// A small private PKI for sites without their own: an ECDSA P-256 CA and
// certificates it issues, written as PEM files (keys with mode 0600).
#pragma once

#include <string>
#include <vector>

#include "bastion/common/status.h"

namespace bastion::crypto {

struct IssueRequest {
  std::string common_name;
  std::vector<std::string> dns_names;  // subjectAltName DNS entries
  std::vector<std::string> ip_addresses;
  bool server = true;  // serverAuth + clientAuth; false: clientAuth only
  int days = 825;
};

// Creates ca.key (0600) and ca.crt; kAlreadyExists if either exists.
Status createCa(const std::string& key_path, const std::string& cert_path, const std::string& common_name);
// Issues a certificate signed by the CA; kAlreadyExists if an output exists.
Status issueCertificate(const std::string& ca_key, const std::string& ca_cert, const IssueRequest& req,
                        const std::string& key_path, const std::string& cert_path);
// Lowercase hex SHA-256 of a certificate's DER encoding, from a PEM file or DER bytes.
StatusOr<std::string> certificateFingerprintFile(const std::string& pem_path);
std::string certificateFingerprintDer(const unsigned char* der, size_t len);

}  // namespace bastion::crypto
