// The TLS policy every Bastion listener and client applies (DICOM and HTTPS):
// TLS 1.2 and 1.3 only, the four ECDHE AES-GCM suites of DICOM PS3.15 B.12
// (BCP 195) for TLS 1.2, server preference, no renegotiation, compression
// or session tickets.
#pragma once

#include <openssl/ssl.h>

namespace bastion::crypto {

inline constexpr const char* kTls12Suites =
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384";
inline constexpr const char* kTls13Suites = "TLS_AES_256_GCM_SHA384:TLS_AES_128_GCM_SHA256:TLS_CHACHA20_POLY1305_SHA256";
inline constexpr const char* kTlsGroups = "X25519:P-256:P-384";

// Applies the policy to `ctx`; false if OpenSSL refused a setting.
inline bool applyTlsPolicy(SSL_CTX* ctx) {
  if (SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) != 1 ||
      SSL_CTX_set_max_proto_version(ctx, TLS1_3_VERSION) != 1 || SSL_CTX_set_cipher_list(ctx, kTls12Suites) != 1 ||
      SSL_CTX_set_ciphersuites(ctx, kTls13Suites) != 1 || SSL_CTX_set1_groups_list(ctx, kTlsGroups) != 1)
    return false;
  SSL_CTX_set_options(ctx, SSL_OP_CIPHER_SERVER_PREFERENCE | SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION |
                               SSL_OP_NO_TICKET);
  return true;
}

}  // namespace bastion::crypto
