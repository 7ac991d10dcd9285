// JWT access-token verification against a locally configured JWKS (OIDC
// identity providers such as Keycloak or Entra ID). Security-critical
// (checklist R11/R28): the accepted algorithm is fixed by the key, never by
// the token; keys are never fetched or taken from the token itself.
//
// Accepted: compact JWS signed with RS256 (RSA >= 2048 bits, PKCS#1 v1.5),
// ES256 (P-256, raw r||s) or EdDSA (Ed25519). Everything else is refused,
// including "none", HS*, PS*, ES384 and JWE.
#pragma once

#include <chrono>
#include <cstddef>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "bastion/common/clock.h"
#include "bastion/common/status.h"

namespace bastion::auth {

struct JwtConfig {
  std::string issuer;                  // required exact match of "iss"; empty refuses every token
  std::vector<std::string> audiences;  // "aud" (string or array) must contain one; empty refuses every token
  std::chrono::seconds leeway{60};     // clock skew allowed on exp/nbf/iat; clamped to [0, 300]
  size_t max_token_bytes = 8192;
};

// An immutable set of public verification keys. Cheap to copy (keys are
// shared); safe to use from several threads at once.
class JwksKeySet {
 public:
  // Parses a JWKS document {"keys":[...]}. Supported: kty RSA (n, e; modulus
  // 2048..8192 bits, e odd and > 2^16), EC crv P-256 (x, y of 32 bytes; the
  // point must be valid on the curve), OKP crv Ed25519 (x of 32 bytes).
  // Skipped (not an error): "use" other than "sig", "key_ops" without
  // "verify", unknown kty, other curves, and an "alg" member naming an
  // algorithm we do not accept (e.g. PS256, RSA-OAEP). Errors
  // (kInvalidArgument): malformed JSON or members, duplicate JSON member
  // names, private or secret members ("d", "p", "q", "dp", "dq", "qi", "oth",
  // "k") on any key, a usable key without a string "kid", two usable keys
  // with the same kid, an "alg" member contradicting the key type, a weak or
  // invalid key, more than 100 keys, or no usable key at all.
  static StatusOr<JwksKeySet> parse(std::string_view json);
  // Reads `path` (at most 1 MiB) and parses it.
  static StatusOr<JwksKeySet> load(const std::string& path);

  // Number of usable keys.
  size_t size() const { return keys_.size(); }
  // The kids of the usable keys, in document order (for startup logging).
  std::vector<std::string> kids() const;

  struct Key;  // opaque; defined in jwt.cc

 private:
  friend class JwtVerifier;
  JwksKeySet() = default;
  const Key* find(std::string_view kid) const;

  std::vector<std::shared_ptr<const Key>> keys_;
};

class JwtVerifier {
 public:
  // `clock` must outlive the verifier.
  JwtVerifier(JwksKeySet keys, JwtConfig config, const Clock& clock);

  // Verifies a compact JWS (without any "Bearer " prefix). On success returns
  // the whole payload object (all claims, unmodified); the caller maps "sub"
  // and any role claims to a Principal. Otherwise kUnauthenticated with a
  // short fixed reason that never contains token content. Enforces: exactly
  // three strict base64url segments (no padding, canonical trailing bits),
  // size <= max_token_bytes; header "alg" in {RS256, ES256, EdDSA} and equal
  // to the algorithm of the key selected by exact "kid" match; no "jku",
  // "x5u", "jwk", "x5c", "crit", "b64", "enc" or "zip" header; "typ", if
  // present, JWT or at+jwt (optionally "application/", any case); header and
  // payload JSON objects without duplicate member names or nesting deeper
  // than 16 levels (the same JSON rules apply to the JWKS); numeric "exp"
  // required (now < exp + leeway); numeric "nbf" (now >= nbf - leeway) and
  // "iat" (iat <= now + leeway) checked when present; "iss" equal to the
  // configured issuer; "aud" string or array of strings containing a
  // configured audience. Thread-safe.
  StatusOr<nlohmann::json> verify(std::string_view token) const;

 private:
  JwksKeySet keys_;
  JwtConfig config_;
  const Clock* clock_;
};

}  // namespace bastion::auth
