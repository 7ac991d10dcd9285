// Fuzz target for the identity parsers: JWT verification (against a fixed
// JWKS whose key signed the corpus's valid token), JWKS documents, password
// normalisation and the permission/scope lists of roles and tokens.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "auth/jwt.h"
#include "auth/password.h"
#include "bastion/auth/permissions.h"

namespace {

constexpr std::string_view kJwks =
    R"({"keys": [{"kty": "EC", "crv": "P-256", "kid": "fuzz-1", "x": "wXX9JLQmsyLLclHe-_DXKmCvZEGnGCSsn9l3SuRin-I",)"
    R"( "y": "82hqbAlObnVv5MUSe-1XUIo4w46mGOnbFg6k6VKaMdI"}]})";

class EpochClock final : public bastion::Clock {
 public:
  std::chrono::system_clock::time_point now() const override {
    return std::chrono::system_clock::time_point(std::chrono::seconds(1800000000));
  }
};

const bastion::auth::JwtVerifier& verifier() {
  static EpochClock clock;
  static bastion::auth::JwtVerifier v(*bastion::auth::JwksKeySet::parse(kJwks),
                                      {"https://idp.test", {"bastion"}, std::chrono::seconds(60)}, clock);
  return v;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view in(reinterpret_cast<const char*>(data), size);
  (void)verifier().verify(in).ok();
  (void)bastion::auth::JwksKeySet::parse(in).ok();
  (void)bastion::auth::normalizePassword(in).ok();
  (void)bastion::parsePermissions(in).ok();
  (void)bastion::parseScopeRules(in).ok();
  return 0;
}
