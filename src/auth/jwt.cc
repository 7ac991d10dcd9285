#include "auth/jwt.h"

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>
#include <openssl/rsa.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <fstream>
#include <optional>
#include <set>

#include "bastion/common/bytes.h"

namespace bastion::auth {
namespace {

using nlohmann::json;

template <auto F>
struct Deleter {
  template <typename T>
  void operator()(T* p) const {
    F(p);
  }
};
template <typename T, auto F>
using Ptr = std::unique_ptr<T, Deleter<F>>;

enum class Alg { kRs256, kEs256, kEdDsa };

}  // namespace

struct JwksKeySet::Key {
  std::string kid;
  Alg alg;  // the only algorithm this key verifies; fixed by kty/crv (and any JWK "alg")
  Ptr<EVP_PKEY, EVP_PKEY_free> pkey;
};

namespace {

constexpr size_t kMaxJwksBytes = 1 << 20;
constexpr size_t kMaxKeys = 100;
constexpr int kMaxJsonDepth = 16;

std::optional<Alg> algFromName(std::string_view name) {
  if (name == "RS256") return Alg::kRs256;
  if (name == "ES256") return Alg::kEs256;
  if (name == "EdDSA") return Alg::kEdDsa;
  return std::nullopt;
}

int b64Value(char c) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '-') return 62;
  if (c == '_') return 63;
  return -1;
}

// Strict base64url (RFC 7515 §2): URL alphabet only, no padding, no
// whitespace, and the unused trailing bits must be zero (one encoding per value).
bool b64urlDecode(std::string_view in, std::string& out) {
  out.clear();
  if (in.size() % 4 == 1) return false;
  out.reserve(in.size() / 4 * 3 + 2);
  uint32_t acc = 0;
  int bits = 0;
  for (char c : in) {
    const int v = b64Value(c);
    if (v < 0) return false;
    acc = ((acc << 6) | static_cast<uint32_t>(v)) & 0xffffu;
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out.push_back(static_cast<char>((acc >> bits) & 0xffu));
    }
  }
  return (acc & ((1u << bits) - 1u)) == 0;
}

// Parses JSON, refusing duplicate member names at any level (RFC 7515 §5.2
// allows either; refusing removes any parser-differential ambiguity) and
// nesting deeper than kMaxJsonDepth. Returns a discarded value on failure.
json parseStrict(std::string_view text) {
  std::vector<std::set<std::string>> seen;
  bool bad = false;
  auto cb = [&](int depth, json::parse_event_t event, json& parsed) {
    if (depth > kMaxJsonDepth) bad = true;
    if (event == json::parse_event_t::object_start) {
      seen.emplace_back();
    } else if (event == json::parse_event_t::object_end) {
      if (!seen.empty()) seen.pop_back();
    } else if (event == json::parse_event_t::key && parsed.is_string()) {
      if (seen.empty() || !seen.back().insert(parsed.get<std::string>()).second) bad = true;
    }
    return true;
  };
  json j = json::parse(text.begin(), text.end(), cb, /*allow_exceptions=*/false);
  if (bad) return json(json::value_t::discarded);
  return j;
}

const std::string* stringMember(const json& obj, const char* name) {
  auto it = obj.find(name);
  return it != obj.end() && it->is_string() ? &it->get_ref<const std::string&>() : nullptr;
}

bool equalsIgnoreCase(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::tolower(static_cast<unsigned char>(x)) == std::tolower(static_cast<unsigned char>(y));
         });
}

// Decodes a required, non-empty base64url member of a JWK.
bool jwkBytes(const json& jwk, const char* name, std::string& out) {
  const std::string* s = stringMember(jwk, name);
  return s != nullptr && b64urlDecode(*s, out) && !out.empty();
}

Ptr<BIGNUM, BN_free> toBignum(const std::string& b) {
  return Ptr<BIGNUM, BN_free>(
      BN_bin2bn(reinterpret_cast<const unsigned char*>(b.data()), static_cast<int>(b.size()), nullptr));
}

// Builds the public key from its JWK members (OSSL_PARAM_BLD + EVP_PKEY_fromdata), then runs OpenSSL's
// public-key validation (EC: on the curve, coordinates in range, correct order; RSA: SP 800-56B checks).
StatusOr<Ptr<EVP_PKEY, EVP_PKEY_free>> publicKey(Alg alg, const json& jwk) {
  const bool rsa = alg == Alg::kRs256;
  std::string a, b, point;
  if (!jwkBytes(jwk, rsa ? "n" : "x", a) || (alg != Alg::kEdDsa && !jwkBytes(jwk, rsa ? "e" : "y", b)))
    return invalidArgument(rsa ? "RSA key needs base64url n and e" : "key needs base64url x (and y)");
  Ptr<OSSL_PARAM_BLD, OSSL_PARAM_BLD_free> bld(OSSL_PARAM_BLD_new());
  Ptr<BIGNUM, BN_free> n, e;  // must outlive bld's use of them
  const char* type = "ED25519";
  bool pushed = false;
  if (rsa) {
    type = "RSA";
    n = toBignum(a);
    e = toBignum(b);
    if (!n || !e) return internalError("BN_bin2bn failed");
    if (BN_num_bits(n.get()) < 2048 || BN_num_bits(n.get()) > 8192)
      return invalidArgument("RSA modulus must be 2048..8192 bits");
    // OpenSSL's own check accepts any odd e > 1 outside FIPS mode; require the FIPS 186 range.
    if (!BN_is_odd(e.get()) || BN_num_bits(e.get()) < 17 || BN_num_bits(e.get()) > 256)
      return invalidArgument("RSA exponent must be odd and in (2^16, 2^256)");
    pushed = bld && OSSL_PARAM_BLD_push_BN(bld.get(), OSSL_PKEY_PARAM_RSA_N, n.get()) == 1 &&
             OSSL_PARAM_BLD_push_BN(bld.get(), OSSL_PKEY_PARAM_RSA_E, e.get()) == 1;
  } else if (alg == Alg::kEs256) {
    type = "EC";
    if (a.size() != 32 || b.size() != 32) return invalidArgument("P-256 key needs 32-byte x and y");
    point = '\x04' + a + b;  // SEC 1 uncompressed point
    pushed = bld && OSSL_PARAM_BLD_push_utf8_string(bld.get(), OSSL_PKEY_PARAM_GROUP_NAME, "prime256v1", 0) == 1 &&
             OSSL_PARAM_BLD_push_octet_string(bld.get(), OSSL_PKEY_PARAM_PUB_KEY, point.data(), point.size()) == 1;
  } else {
    if (a.size() != 32) return invalidArgument("Ed25519 key needs a 32-byte x");
    pushed = bld && OSSL_PARAM_BLD_push_octet_string(bld.get(), OSSL_PKEY_PARAM_PUB_KEY, a.data(), a.size()) == 1;
  }
  if (!pushed) return internalError("OSSL_PARAM_BLD failed");
  Ptr<OSSL_PARAM, OSSL_PARAM_free> params(OSSL_PARAM_BLD_to_param(bld.get()));
  Ptr<EVP_PKEY_CTX, EVP_PKEY_CTX_free> ctx(EVP_PKEY_CTX_new_from_name(nullptr, type, nullptr));
  EVP_PKEY* raw = nullptr;
  const bool imported = params && ctx && EVP_PKEY_fromdata_init(ctx.get()) == 1 &&
                        EVP_PKEY_fromdata(ctx.get(), &raw, EVP_PKEY_PUBLIC_KEY, params.get()) == 1;
  Ptr<EVP_PKEY, EVP_PKEY_free> pkey(raw);
  Ptr<EVP_PKEY_CTX, EVP_PKEY_CTX_free> check(imported ? EVP_PKEY_CTX_new_from_pkey(nullptr, raw, nullptr) : nullptr);
  const bool valid = check && EVP_PKEY_public_check(check.get()) == 1;
  ERR_clear_error();
  if (!valid) return invalidArgument(std::string("invalid ") + type + " public key");
  return pkey;
}

// Raw 64-byte r||s (RFC 7518 §3.4) to the DER ECDSA-Sig-Value OpenSSL expects.
bool es256ToDer(std::string_view raw, std::vector<unsigned char>& der) {
  const auto* p = reinterpret_cast<const unsigned char*>(raw.data());
  Ptr<ECDSA_SIG, ECDSA_SIG_free> sig(ECDSA_SIG_new());
  BIGNUM* r = BN_bin2bn(p, 32, nullptr);
  BIGNUM* s = BN_bin2bn(p + 32, 32, nullptr);
  if (!sig || !r || !s || ECDSA_SIG_set0(sig.get(), r, s) != 1) {
    BN_free(r);
    BN_free(s);
    return false;
  }
  const int len = i2d_ECDSA_SIG(sig.get(), nullptr);
  if (len <= 0) return false;
  der.resize(static_cast<size_t>(len));
  unsigned char* out = der.data();
  return i2d_ECDSA_SIG(sig.get(), &out) == len;
}

// A usable key, nullptr for a key to skip, or an error for a malformed one.
StatusOr<std::shared_ptr<JwksKeySet::Key>> parseJwk(const json& jwk) {
  using Key = JwksKeySet::Key;
  const std::string* kty = stringMember(jwk, "kty");
  if (kty == nullptr) return invalidArgument("missing kty");
  if (auto use = jwk.find("use"); use != jwk.end()) {
    if (!use->is_string()) return invalidArgument("malformed use");
    if (*use != "sig") return std::shared_ptr<Key>();
  }
  if (auto ops = jwk.find("key_ops"); ops != jwk.end()) {
    if (!ops->is_array()) return invalidArgument("malformed key_ops");
    if (std::find(ops->begin(), ops->end(), json("verify")) == ops->end()) return std::shared_ptr<Key>();
  }
  std::optional<Alg> alg;
  const std::string* crv = stringMember(jwk, "crv");
  if (*kty == "RSA") alg = Alg::kRs256;
  if (*kty == "EC" && crv != nullptr && *crv == "P-256") alg = Alg::kEs256;
  if (*kty == "OKP" && crv != nullptr && *crv == "Ed25519") alg = Alg::kEdDsa;
  if (!alg) return std::shared_ptr<Key>();  // unknown kty or curve
  if (auto a = jwk.find("alg"); a != jwk.end()) {
    if (!a->is_string()) return invalidArgument("malformed alg");
    const auto named = algFromName(a->get_ref<const std::string&>());
    if (!named) return std::shared_ptr<Key>();  // meant for an algorithm we refuse
    if (*named != *alg) return invalidArgument("alg does not match the key type");
  }
  const std::string* kid = stringMember(jwk, "kid");
  if (kid == nullptr || kid->empty()) return invalidArgument("usable key without a kid");
  auto key = std::make_shared<Key>();
  key->kid = *kid;
  key->alg = *alg;
  ASSIGN_OR_RETURN(key->pkey, publicKey(*alg, jwk));
  return key;
}

// A NumericDate claim: absent (nullopt), or a finite JSON number.
StatusOr<std::optional<double>> timeClaim(const json& claims, const char* name) {
  auto it = claims.find(name);
  if (it == claims.end()) return std::optional<double>();
  if (!it->is_number() || !std::isfinite(it->get<double>())) return unauthenticated("invalid time claim");
  return std::optional<double>(it->get<double>());
}

Status checkSignature(const JwksKeySet::Key& key, std::string_view signing_input, std::string_view sig) {
  std::vector<unsigned char> der;
  if (key.alg == Alg::kEs256) {
    if (sig.size() != 64 || !es256ToDer(sig, der)) return unauthenticated("malformed signature");
    sig = {reinterpret_cast<const char*>(der.data()), der.size()};
  }
  const EVP_MD* md = key.alg == Alg::kEdDsa ? nullptr : EVP_sha256();
  Ptr<EVP_MD_CTX, EVP_MD_CTX_free> ctx(EVP_MD_CTX_new());
  EVP_PKEY_CTX* pctx = nullptr;
  const bool ok =
      ctx && EVP_DigestVerifyInit(ctx.get(), &pctx, md, nullptr, key.pkey.get()) == 1 &&
      (key.alg != Alg::kRs256 || EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PADDING) == 1) &&
      EVP_DigestVerify(ctx.get(), reinterpret_cast<const unsigned char*>(sig.data()), sig.size(),
                       reinterpret_cast<const unsigned char*>(signing_input.data()), signing_input.size()) == 1;
  ERR_clear_error();
  return ok ? okStatus() : unauthenticated("signature verification failed");
}

Status checkHeader(const json& header) {
  if (!header.is_object()) return unauthenticated("malformed token header");
  for (const char* refused : {"jku", "x5u", "jwk", "x5c", "crit", "b64", "enc", "zip"}) {
    if (header.contains(refused)) return unauthenticated("token header member not allowed");
  }
  if (auto typ = header.find("typ"); typ != header.end()) {
    std::string_view t = typ->is_string() ? std::string_view(typ->get_ref<const std::string&>()) : "";
    if (t.size() > 12 && equalsIgnoreCase(t.substr(0, 12), "application/")) t.remove_prefix(12);
    if (!equalsIgnoreCase(t, "JWT") && !equalsIgnoreCase(t, "at+jwt")) return unauthenticated("unsupported token type");
  }
  return okStatus();
}

}  // namespace

StatusOr<JwksKeySet> JwksKeySet::parse(std::string_view text) {
  if (text.size() > kMaxJwksBytes) return invalidArgument("JWKS: larger than 1 MiB");
  const json doc = parseStrict(text);
  if (!doc.is_object()) return invalidArgument("JWKS: not a JSON object (or duplicate member names)");
  auto keys = doc.find("keys");
  if (keys == doc.end() || !keys->is_array()) return invalidArgument("JWKS: missing \"keys\" array");
  if (keys->size() > kMaxKeys) return invalidArgument("JWKS: too many keys");
  JwksKeySet set;
  size_t index = 0;
  for (const json& jwk : *keys) {
    const std::string where = "JWKS key #" + std::to_string(index++) + ": ";
    if (!jwk.is_object()) return invalidArgument(where + "not an object");
    for (const char* secret : {"d", "p", "q", "dp", "dq", "qi", "oth", "k"}) {
      if (jwk.contains(secret)) return invalidArgument(where + "contains private key material");
    }
    auto key = parseJwk(jwk);
    if (!key.ok()) return invalidArgument(where + key.status().message());
    if (*key == nullptr) continue;
    if (set.find((*key)->kid) != nullptr) return invalidArgument(where + "duplicate kid");
    set.keys_.push_back(std::move(*key));
  }
  if (set.keys_.empty()) return invalidArgument("JWKS: no usable signing key");
  return set;
}

StatusOr<JwksKeySet> JwksKeySet::load(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return invalidArgument("JWKS: cannot open " + path);
  std::string text(kMaxJwksBytes + 1, '\0');
  in.read(text.data(), static_cast<std::streamsize>(text.size()));
  if (in.bad()) return invalidArgument("JWKS: cannot read " + path);
  text.resize(static_cast<size_t>(in.gcount()));
  if (text.size() > kMaxJwksBytes) return invalidArgument("JWKS: " + path + " is larger than 1 MiB");
  return parse(text);
}

std::vector<std::string> JwksKeySet::kids() const {
  std::vector<std::string> out;
  for (const auto& k : keys_) out.push_back(k->kid);
  return out;
}

const JwksKeySet::Key* JwksKeySet::find(std::string_view kid) const {
  for (const auto& k : keys_) {
    if (k->kid == kid) return k.get();
  }
  return nullptr;
}

JwtVerifier::JwtVerifier(JwksKeySet keys, JwtConfig config, const Clock& clock)
    : keys_(std::move(keys)), config_(std::move(config)), clock_(&clock) {
  config_.leeway = std::clamp(config_.leeway, std::chrono::seconds(0), std::chrono::seconds(300));
}

StatusOr<nlohmann::json> JwtVerifier::verify(std::string_view token) const {
  if (config_.issuer.empty() || config_.audiences.empty()) return unauthenticated("verifier not configured");
  if (token.empty() || token.size() > config_.max_token_bytes) return unauthenticated("token too large or empty");
  const size_t dots = static_cast<size_t>(std::count(token.begin(), token.end(), '.'));
  if (dots == 4) return unauthenticated("encrypted tokens (JWE) are not accepted");
  if (dots != 2) return unauthenticated("malformed token");
  const size_t d1 = token.find('.'), d2 = token.find('.', d1 + 1);
  std::string header_text, payload_text, sig;
  if (!b64urlDecode(token.substr(0, d1), header_text) ||
      !b64urlDecode(token.substr(d1 + 1, d2 - d1 - 1), payload_text) || !b64urlDecode(token.substr(d2 + 1), sig))
    return unauthenticated("malformed token encoding");

  // Header: the algorithm is checked against an allowlist and then against the
  // key; the key comes only from the configured set.
  const json header = parseStrict(header_text);
  RETURN_IF_ERROR(checkHeader(header));
  const std::string* alg_name = stringMember(header, "alg");
  const std::optional<Alg> alg = alg_name ? algFromName(*alg_name) : std::nullopt;
  if (!alg) return unauthenticated("algorithm not allowed");
  const std::string* kid = stringMember(header, "kid");
  if (kid == nullptr) return unauthenticated("missing key id");
  const JwksKeySet::Key* key = keys_.find(*kid);
  if (key == nullptr) return unauthenticated("unknown key id");
  if (key->alg != *alg) return unauthenticated("algorithm does not match key");
  RETURN_IF_ERROR(checkSignature(*key, token.substr(0, d2), sig));

  // Claims, only after the signature has been checked.
  json claims = parseStrict(payload_text);
  if (!claims.is_object()) return unauthenticated("malformed token payload");
  const double now = std::chrono::duration<double>(clock_->now().time_since_epoch()).count();
  const double leeway = static_cast<double>(config_.leeway.count());
  ASSIGN_OR_RETURN(const std::optional<double> exp, timeClaim(claims, "exp"));
  ASSIGN_OR_RETURN(const std::optional<double> nbf, timeClaim(claims, "nbf"));
  ASSIGN_OR_RETURN(const std::optional<double> iat, timeClaim(claims, "iat"));
  if (!exp) return unauthenticated("token has no expiry");
  if (!(now < *exp + leeway)) return unauthenticated("token expired");
  if (nbf && now < *nbf - leeway) return unauthenticated("token not yet valid");
  if (iat && *iat > now + leeway) return unauthenticated("token issued in the future");
  const std::string* iss = stringMember(claims, "iss");
  if (iss == nullptr || *iss != config_.issuer) return unauthenticated("issuer mismatch");
  auto aud = claims.find("aud");
  if (aud == claims.end() || !(aud->is_string() || aud->is_array())) return unauthenticated("audience mismatch");
  bool aud_ok = false;
  for (const json& a : aud->is_array() ? *aud : json::array({*aud})) {
    if (!a.is_string()) return unauthenticated("audience mismatch");
    const auto& s = a.get_ref<const std::string&>();
    aud_ok = aud_ok || std::find(config_.audiences.begin(), config_.audiences.end(), s) != config_.audiences.end();
  }
  if (!aud_ok) return unauthenticated("audience mismatch");
  return claims;
}

}  // namespace bastion::auth
