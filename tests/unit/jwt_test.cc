#include "auth/jwt.h"

#include <gtest/gtest.h>
#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>

#include <fstream>
#include <memory>

#include "test_util.h"

namespace bastion::auth {
namespace {

using nlohmann::json;

constexpr int64_t kNow = 1800000000;  // testing::FixedClock
const char* kIssuer = "https://idp.example.org/realms/hospital";

// ---- test-only JOSE helpers (encoding, keys, signing) ----

std::string b64url(std::string_view in) {
  static const char* kAlphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  std::string out;
  uint32_t acc = 0;
  int bits = 0;
  for (unsigned char c : in) {
    acc = (acc << 8) | c;
    bits += 8;
    while (bits >= 6) {
      bits -= 6;
      out.push_back(kAlphabet[(acc >> bits) & 63]);
    }
  }
  if (bits > 0) out.push_back(kAlphabet[(acc << (6 - bits)) & 63]);
  return out;
}

struct PkeyFree {
  void operator()(EVP_PKEY* p) const { EVP_PKEY_free(p); }
};
using PkeyPtr = std::unique_ptr<EVP_PKEY, PkeyFree>;

std::string bnParam(EVP_PKEY* pkey, const char* name, int pad = 0) {
  BIGNUM* bn = nullptr;
  EXPECT_EQ(EVP_PKEY_get_bn_param(pkey, name, &bn), 1);
  std::string out(pad > 0 ? static_cast<size_t>(pad) : static_cast<size_t>(BN_num_bytes(bn)), '\0');
  BN_bn2binpad(bn, reinterpret_cast<unsigned char*>(out.data()), static_cast<int>(out.size()));
  BN_free(bn);
  return out;
}

json rsaJwk(EVP_PKEY* k, const std::string& kid) {
  return {{"kty", "RSA"},
          {"kid", kid},
          {"use", "sig"},
          {"alg", "RS256"},
          {"n", b64url(bnParam(k, OSSL_PKEY_PARAM_RSA_N))},
          {"e", b64url(bnParam(k, OSSL_PKEY_PARAM_RSA_E))}};
}
json ecJwk(EVP_PKEY* k, const std::string& kid) {
  return {{"kty", "EC"},
          {"kid", kid},
          {"crv", "P-256"},
          {"x", b64url(bnParam(k, OSSL_PKEY_PARAM_EC_PUB_X, 32))},
          {"y", b64url(bnParam(k, OSSL_PKEY_PARAM_EC_PUB_Y, 32))}};
}
json edJwk(EVP_PKEY* k, const std::string& kid) {
  std::string x(32, '\0');
  size_t len = x.size();
  EXPECT_EQ(EVP_PKEY_get_raw_public_key(k, reinterpret_cast<unsigned char*>(x.data()), &len), 1);
  return {{"kty", "OKP"}, {"kid", kid}, {"crv", "Ed25519"}, {"x", b64url(x)}};
}

// Signs `input` the JOSE way for `alg` (ES256 output converted to raw r||s).
std::string sign(EVP_PKEY* key, const std::string& alg, std::string_view input) {
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  const EVP_MD* md = alg == "EdDSA" ? nullptr : EVP_sha256();
  EXPECT_EQ(EVP_DigestSignInit(ctx, nullptr, md, nullptr, key), 1);
  size_t len = 0;
  const auto* in = reinterpret_cast<const unsigned char*>(input.data());
  EXPECT_EQ(EVP_DigestSign(ctx, nullptr, &len, in, input.size()), 1);
  std::string sig(len, '\0');
  EXPECT_EQ(EVP_DigestSign(ctx, reinterpret_cast<unsigned char*>(sig.data()), &len, in, input.size()), 1);
  sig.resize(len);
  EVP_MD_CTX_free(ctx);
  if (alg != "ES256") return sig;
  const auto* p = reinterpret_cast<const unsigned char*>(sig.data());
  ECDSA_SIG* es = d2i_ECDSA_SIG(nullptr, &p, static_cast<long>(sig.size()));
  std::string raw(64, '\0');
  BN_bn2binpad(ECDSA_SIG_get0_r(es), reinterpret_cast<unsigned char*>(raw.data()), 32);
  BN_bn2binpad(ECDSA_SIG_get0_s(es), reinterpret_cast<unsigned char*>(raw.data()) + 32, 32);
  ECDSA_SIG_free(es);
  return raw;
}

struct Keys {
  PkeyPtr rsa{EVP_PKEY_Q_keygen(nullptr, nullptr, "RSA", size_t{2048})};
  PkeyPtr rsa_other{EVP_PKEY_Q_keygen(nullptr, nullptr, "RSA", size_t{2048})};
  PkeyPtr ec{EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-256")};
  PkeyPtr ed{EVP_PKEY_Q_keygen(nullptr, nullptr, "ED25519")};
};
const Keys& keys() {
  static const Keys k;
  return k;
}

json standardJwks() {
  return {{"keys", json::array({rsaJwk(keys().rsa.get(), "rsa-1"), ecJwk(keys().ec.get(), "ec-1"),
                                edJwk(keys().ed.get(), "ed-1")})}};
}

json header(const std::string& alg, const std::string& kid) { return {{"alg", alg}, {"kid", kid}, {"typ", "JWT"}}; }
json claims() {
  return {{"iss", kIssuer}, {"aud", "bastion"}, {"sub", "alice"}, {"exp", kNow + 300}, {"iat", kNow - 10}};
}

// header.payload.signature from already-serialised parts.
std::string tokenFromText(const std::string& header_text, const std::string& payload_text, EVP_PKEY* key,
                          const std::string& alg) {
  const std::string input = b64url(header_text) + "." + b64url(payload_text);
  return input + "." + b64url(sign(key, alg, input));
}
std::string token(const json& h, const json& p, EVP_PKEY* key) {
  return tokenFromText(h.dump(), p.dump(), key, h["alg"].get<std::string>());
}
std::string rs256(const json& p) { return token(header("RS256", "rsa-1"), p, keys().rsa.get()); }

class JwtTest : public ::testing::Test {
 protected:
  JwtTest() : verifier_(makeVerifier(standardJwks())) {}

  JwtVerifier makeVerifier(const json& jwks, JwtConfig config = defaultConfig()) {
    auto set = JwksKeySet::parse(jwks.dump());
    EXPECT_TRUE(set.ok()) << set.status().toString();
    return JwtVerifier(std::move(set).value(), std::move(config), clock_);
  }
  static JwtConfig defaultConfig() {
    JwtConfig c;
    c.issuer = kIssuer;
    c.audiences = {"bastion", "bastion-web"};
    return c;
  }
  void expectAccepted(const std::string& t) {
    auto r = verifier_.verify(t);
    ASSERT_TRUE(r.ok()) << r.status().toString();
    EXPECT_EQ((*r)["sub"], "alice");
  }
  void expectRejected(const std::string& t, const std::string& reason) { expectRejectedBy(verifier_, t, reason); }
  static void expectRejectedBy(const JwtVerifier& v, const std::string& t, const std::string& reason) {
    auto r = v.verify(t);
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.status().code(), StatusCode::kUnauthenticated);
    EXPECT_NE(r.status().message().find(reason), std::string::npos) << r.status().message();
  }

  testing::FixedClock clock_;
  JwtVerifier verifier_;
};

// ---- accepted tokens ----

TEST_F(JwtTest, ValidRs256Es256EdDsaAccepted) {
  expectAccepted(rs256(claims()));
  expectAccepted(token(header("ES256", "ec-1"), claims(), keys().ec.get()));
  expectAccepted(token(header("EdDSA", "ed-1"), claims(), keys().ed.get()));
}

TEST_F(JwtTest, ReturnsAllClaims) {
  json p = claims();
  p["realm_access"] = {{"roles", {"radiologist"}}};
  auto r = verifier_.verify(rs256(p));
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(*r, p);
}

TEST_F(JwtTest, TypVariantsAcceptedOthersRefused) {
  for (const char* typ : {"JWT", "jwt", "at+jwt", "application/at+jwt", "Application/JWT"}) {
    json h = header("RS256", "rsa-1");
    h["typ"] = typ;
    expectAccepted(token(h, claims(), keys().rsa.get()));
  }
  json h = header("RS256", "rsa-1");
  h.erase("typ");
  expectAccepted(token(h, claims(), keys().rsa.get()));
  for (const json& typ : {json("JOSE"), json("application/"), json("id_token+jwt"), json(1)}) {
    h["typ"] = typ;
    expectRejected(token(h, claims(), keys().rsa.get()), "unsupported token type");
  }
}

// ---- time claims ----

TEST_F(JwtTest, ExpiredRefused) {
  json p = claims();
  p["exp"] = kNow - 61;
  expectRejected(rs256(p), "expired");
  p["exp"] = kNow - 60;  // exactly at exp + leeway
  expectRejected(rs256(p), "expired");
}

TEST_F(JwtTest, ExpiredWithinLeewayAccepted) {
  json p = claims();
  p["exp"] = kNow - 59;
  expectAccepted(rs256(p));
  p["exp"] = static_cast<double>(kNow) - 59.5;  // NumericDate may be fractional
  expectAccepted(rs256(p));
}

TEST_F(JwtTest, NbfInFutureRefusedWithinLeewayAccepted) {
  json p = claims();
  p["nbf"] = kNow + 61;
  expectRejected(rs256(p), "not yet valid");
  p["nbf"] = kNow + 60;
  expectAccepted(rs256(p));
}

TEST_F(JwtTest, IatInFutureRefusedWithinLeewayAccepted) {
  json p = claims();
  p["iat"] = kNow + 61;
  expectRejected(rs256(p), "issued in the future");
  p["iat"] = kNow + 60;
  expectAccepted(rs256(p));
}

TEST_F(JwtTest, ExpRequiredAndTimeClaimsMustBeNumeric) {
  json p = claims();
  p.erase("exp");
  expectRejected(rs256(p), "no expiry");
  p = claims();
  p["exp"] = std::to_string(kNow + 300);
  expectRejected(rs256(p), "invalid time claim");
  p = claims();
  p["exp"] = true;
  expectRejected(rs256(p), "invalid time claim");
  p = claims();
  p["nbf"] = std::to_string(kNow - 10);
  expectRejected(rs256(p), "invalid time claim");
  p = claims();
  p["iat"] = nullptr;
  expectRejected(rs256(p), "invalid time claim");
}

TEST_F(JwtTest, LeewayIsClampedTo300Seconds) {
  JwtConfig c = defaultConfig();
  c.leeway = std::chrono::hours(24);
  JwtVerifier v = makeVerifier(standardJwks(), c);
  json p = claims();
  p["exp"] = kNow - 299;
  EXPECT_TRUE(v.verify(rs256(p)).ok());
  p["exp"] = kNow - 301;
  expectRejectedBy(v, rs256(p), "expired");
}

// ---- issuer and audience ----

TEST_F(JwtTest, WrongOrMissingIssuerRefused) {
  json p = claims();
  p["iss"] = std::string(kIssuer) + "/";
  expectRejected(rs256(p), "issuer mismatch");
  p["iss"] = "https://evil.example.org/realms/hospital";
  expectRejected(rs256(p), "issuer mismatch");
  p.erase("iss");
  expectRejected(rs256(p), "issuer mismatch");
}

TEST_F(JwtTest, WrongOrMissingAudienceRefused) {
  json p = claims();
  p["aud"] = "account";
  expectRejected(rs256(p), "audience mismatch");
  p["aud"] = json::array({"account", "other"});
  expectRejected(rs256(p), "audience mismatch");
  p["aud"] = json::array();
  expectRejected(rs256(p), "audience mismatch");
  p["aud"] = json::array({"bastion", 7});  // array of strings only
  expectRejected(rs256(p), "audience mismatch");
  p.erase("aud");
  expectRejected(rs256(p), "audience mismatch");
}

TEST_F(JwtTest, AudienceArrayContainingConfiguredAudienceAccepted) {
  json p = claims();
  p["aud"] = json::array({"account", "bastion-web"});
  expectAccepted(rs256(p));
}

TEST_F(JwtTest, UnconfiguredVerifierRefusesEverything) {
  JwtConfig c = defaultConfig();
  c.issuer.clear();
  json p = claims();
  p["iss"] = "";
  expectRejectedBy(makeVerifier(standardJwks(), c), rs256(p), "not configured");
  c = defaultConfig();
  c.audiences.clear();
  expectRejectedBy(makeVerifier(standardJwks(), c), rs256(claims()), "not configured");
}

// ---- algorithm confusion ----

TEST_F(JwtTest, AlgNoneRefused) {
  const std::string input = b64url(header("none", "rsa-1").dump()) + "." + b64url(claims().dump());
  expectRejected(input + ".", "algorithm not allowed");
  json h = header("RS256", "rsa-1");
  h.erase("alg");
  expectRejected(b64url(h.dump()) + "." + b64url(claims().dump()) + ".", "algorithm not allowed");
}

TEST_F(JwtTest, Hs256WithRsaPublicKeyAsSecretRefused) {
  BIO* bio = BIO_new(BIO_s_mem());
  ASSERT_EQ(PEM_write_bio_PUBKEY(bio, keys().rsa.get()), 1);
  char* pem = nullptr;
  const long pem_len = BIO_get_mem_data(bio, &pem);
  const std::string input = b64url(header("HS256", "rsa-1").dump()) + "." + b64url(claims().dump());
  unsigned char mac[32];
  unsigned int mac_len = 0;
  HMAC(EVP_sha256(), pem, static_cast<int>(pem_len), reinterpret_cast<const unsigned char*>(input.data()), input.size(),
       mac, &mac_len);
  BIO_free(bio);
  expectRejected(input + "." + b64url(std::string(reinterpret_cast<char*>(mac), mac_len)), "algorithm not allowed");
}

TEST_F(JwtTest, OtherAlgorithmsRefused) {
  for (const char* alg : {"HS256", "HS512", "PS256", "RS384", "RS512", "ES384", "ES512", "Ed25519", "rs256", ""}) {
    json h = header(alg, "rsa-1");
    expectRejected(tokenFromText(h.dump(), claims().dump(), keys().rsa.get(), "RS256"), "algorithm not allowed");
  }
  json h = header("RS256", "rsa-1");
  h["alg"] = json::array({"RS256"});
  expectRejected(tokenFromText(h.dump(), claims().dump(), keys().rsa.get(), "RS256"), "algorithm not allowed");
}

TEST_F(JwtTest, AlgKeyTypeMismatchRefused) {
  // ES256 claimed, the kid selects the RSA key.
  expectRejected(token(header("ES256", "rsa-1"), claims(), keys().ec.get()), "does not match key");
  expectRejected(token(header("EdDSA", "ec-1"), claims(), keys().ed.get()), "does not match key");
  expectRejected(token(header("RS256", "ed-1"), claims(), keys().rsa.get()), "does not match key");
}

TEST_F(JwtTest, KeyWhoseJwkAlgWeRefuseIsNotUsable) {
  json jwks = standardJwks();
  json ps = rsaJwk(keys().rsa_other.get(), "ps-1");
  ps["alg"] = "PS256";
  jwks["keys"].push_back(ps);
  auto set = JwksKeySet::parse(jwks.dump());
  ASSERT_TRUE(set.ok());
  EXPECT_EQ(set->size(), 3u);
  JwtVerifier v(std::move(set).value(), defaultConfig(), clock_);
  expectRejectedBy(v, token(header("RS256", "ps-1"), claims(), keys().rsa_other.get()), "unknown key id");
}

// ---- key selection ----

TEST_F(JwtTest, UnknownOrMissingKidRefused) {
  expectRejected(token(header("RS256", "rsa-2"), claims(), keys().rsa.get()), "unknown key id");
  expectRejected(token(header("RS256", "RSA-1"), claims(), keys().rsa.get()), "unknown key id");
  expectRejected(token(header("RS256", "rsa-1 "), claims(), keys().rsa.get()), "unknown key id");
  expectRejected(token(header("RS256", ""), claims(), keys().rsa.get()), "unknown key id");
  json h = header("RS256", "rsa-1");
  h.erase("kid");
  expectRejected(token(h, claims(), keys().rsa.get()), "missing key id");
  h["kid"] = 1;
  expectRejected(token(h, claims(), keys().rsa.get()), "missing key id");
}

TEST_F(JwtTest, KidInjectionStringsJustFailToMatch) {
  for (const char* kid : {"../../etc/passwd", "rsa-1' OR '1'='1", "/dev/null", "https://evil.example/jwks.json",
                          "rsa-1\n", "<script>x</script>"}) {
    auto r = verifier_.verify(token(header("RS256", kid), claims(), keys().rsa.get()));
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.status().message(), "unknown key id");  // and no token content echoed
  }
}

TEST_F(JwtTest, EmbeddedOrRemoteKeyHeadersRefused) {
  const json jwk = rsaJwk(keys().rsa.get(), "rsa-1");
  const std::pair<const char*, json> members[] = {{"jku", "https://evil.example/jwks.json"},
                                                  {"x5u", "https://evil.example/cert.pem"},
                                                  {"jwk", jwk},
                                                  {"x5c", json::array({"MIIB"})},
                                                  {"crit", json::array({"exp"})},
                                                  {"b64", false}};
  for (const auto& [name, value] : members) {
    json h = header("RS256", "rsa-1");
    h[name] = value;
    expectRejected(token(h, claims(), keys().rsa.get()), "header member not allowed");
  }
  json h = header("RS256", "rsa-1");
  h["x5t"] = "thumbprint";  // Entra ID sends x5t; a thumbprint is harmless
  expectAccepted(token(h, claims(), keys().rsa.get()));
}

TEST_F(JwtTest, DuplicateJsonMembersRefused) {
  const std::string claims_text = claims().dump();
  expectRejected(tokenFromText(R"({"alg":"none","kid":"rsa-1","alg":"RS256"})", claims_text, keys().rsa.get(), "RS256"),
                 "malformed token header");
  std::string dup = claims_text;
  dup.insert(1, R"("iss":"https://evil.example",)");
  expectRejected(tokenFromText(header("RS256", "rsa-1").dump(), dup, keys().rsa.get(), "RS256"),
                 "malformed token payload");
}

TEST_F(JwtTest, HeaderAndPayloadMustBeJsonObjects) {
  expectRejected(tokenFromText("[]", claims().dump(), keys().rsa.get(), "RS256"), "malformed token header");
  expectRejected(tokenFromText("{", claims().dump(), keys().rsa.get(), "RS256"), "malformed token header");
  const std::string h = header("RS256", "rsa-1").dump();
  expectRejected(tokenFromText(h, "\"alice\"", keys().rsa.get(), "RS256"), "malformed token payload");
  expectRejected(tokenFromText(h, "{\"exp\":", keys().rsa.get(), "RS256"), "malformed token payload");
}

// ---- signature ----

TEST_F(JwtTest, TamperedPayloadRefused) {
  const std::string t = rs256(claims());
  json p = claims();
  p["sub"] = "admin";
  const size_t d1 = t.find('.'), d2 = t.rfind('.');
  expectRejected(t.substr(0, d1 + 1) + b64url(p.dump()) + t.substr(d2), "signature verification failed");
  const std::string e = token(header("ES256", "ec-1"), claims(), keys().ec.get());
  expectRejected(e.substr(0, e.find('.') + 1) + b64url(p.dump()) + e.substr(e.rfind('.')),
                 "signature verification failed");
}

TEST_F(JwtTest, TamperedSignatureRefused) {
  for (const std::string& t : {rs256(claims()), token(header("ES256", "ec-1"), claims(), keys().ec.get()),
                               token(header("EdDSA", "ed-1"), claims(), keys().ed.get())}) {
    std::string bad = t;
    const size_t pos = t.rfind('.') + 5;
    bad[pos] = bad[pos] == 'A' ? 'B' : 'A';
    expectRejected(bad, "signature verification failed");
  }
}

TEST_F(JwtTest, SignatureByAnotherKeyRefused) {
  expectRejected(token(header("RS256", "rsa-1"), claims(), keys().rsa_other.get()), "signature verification failed");
}

TEST_F(JwtTest, Es256SignatureMustBeRaw64Bytes) {
  const std::string input = b64url(header("ES256", "ec-1").dump()) + "." + b64url(claims().dump());
  const std::string raw = sign(keys().ec.get(), "ES256", input);
  expectAccepted(input + "." + b64url(raw));
  expectRejected(input + "." + b64url(raw + std::string(1, '\0')), "malformed signature");
  expectRejected(input + "." + b64url(raw.substr(0, 63)), "malformed signature");
  expectRejected(input + ".", "malformed signature");
  // The DER form OpenSSL produces is not a JOSE signature.
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  size_t len = 80;
  std::string der(len, '\0');
  ASSERT_EQ(EVP_DigestSignInit(ctx, nullptr, EVP_sha256(), nullptr, keys().ec.get()), 1);
  ASSERT_EQ(EVP_DigestSign(ctx, reinterpret_cast<unsigned char*>(der.data()), &len,
                           reinterpret_cast<const unsigned char*>(input.data()), input.size()),
            1);
  EVP_MD_CTX_free(ctx);
  der.resize(len);
  expectRejected(input + "." + b64url(der), "malformed signature");
  // CVE-2022-21449 ("psychic signatures"): r = s = 0.
  expectRejected(input + "." + b64url(std::string(64, '\0')), "signature verification failed");
}

TEST_F(JwtTest, EmptyRsaSignatureRefused) {
  const std::string t = rs256(claims());
  expectRejected(t.substr(0, t.rfind('.') + 1), "signature verification failed");
}

// ---- framing and encoding ----

TEST_F(JwtTest, JweRefused) {
  expectRejected(b64url(R"({"alg":"RSA-OAEP","enc":"A256GCM","kid":"rsa-1"})") + ".AAAA.AAAA.AAAA.AAAA", "JWE");
}

TEST_F(JwtTest, WrongSegmentCountRefused) {
  const std::string t = rs256(claims());
  expectRejected(t.substr(0, t.rfind('.')), "malformed token");
  expectRejected(t + ".", "malformed token");
  expectRejected("", "empty");
  expectRejected("..", "malformed token");
}

TEST_F(JwtTest, PaddingRefused) {
  // Grow a claim until the payload segment length is not a multiple of 4, so base64 would pad it.
  json p = claims();
  std::string t = rs256(p);
  while ((t.rfind('.') - t.find('.') - 1) % 4 == 0) {
    p["x"] = p.value("x", "") + "x";
    t = rs256(p);
  }
  expectAccepted(t);
  const size_t d1 = t.find('.'), d2 = t.rfind('.');
  expectRejected(t.substr(0, d2) + std::string(4 - (d2 - d1 - 1) % 4, '=') + t.substr(d2), "malformed token encoding");
  // RS256 signatures are 256 bytes: 342 characters, which standard base64 pads with "==".
  expectRejected(t + "==", "malformed token encoding");
}

TEST_F(JwtTest, NonUrlAlphabetAndWhitespaceRefused) {
  const std::string t = rs256(claims());
  for (const char* bad : {"+", "/", " ", "\n", "%"}) {
    std::string m = t;
    m.insert(t.find('.') + 3, bad);
    m.erase(t.find('.') + 4, 1);  // keep the length
    expectRejected(m, "malformed token encoding");
  }
}

TEST_F(JwtTest, NonCanonicalTrailingBitsRefused) {
  // ES256: 64 bytes -> 86 characters, the last of which carries 4 unused bits.
  const std::string t = token(header("ES256", "ec-1"), claims(), keys().ec.get());
  const std::string alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  const int last = static_cast<int>(alphabet.find(t.back()));
  ASSERT_EQ(last & 15, 0);
  std::string m = t;
  m.back() = alphabet[static_cast<size_t>(last | 1)];  // same bytes to a lenient decoder
  expectRejected(m, "malformed token encoding");
}

TEST_F(JwtTest, OversizeTokenRefused) {
  json p = claims();
  p["pad"] = std::string(8000, 'a');
  const std::string big = rs256(p);
  ASSERT_GT(big.size(), 8192u);
  expectRejected(big, "too large");
  JwtConfig c = defaultConfig();
  c.max_token_bytes = 64 * 1024;
  EXPECT_TRUE(makeVerifier(standardJwks(), c).verify(big).ok());
}

// ---- JWKS parsing ----

TEST(JwksKeySet, ParsesSupportedKeysAndSkipsOthers) {
  json jwks = standardJwks();
  jwks["keys"].push_back({{"kty", "oct-ish"}, {"kid", "x"}});
  jwks["keys"].push_back({{"kty", "EC"}, {"kid", "p384"}, {"crv", "P-384"}, {"x", "AA"}, {"y", "AA"}});
  json enc = rsaJwk(keys().rsa_other.get(), "enc-1");
  enc["use"] = "enc";
  enc.erase("alg");
  jwks["keys"].push_back(enc);
  json wrap = rsaJwk(keys().rsa_other.get(), "wrap-1");
  wrap.erase("use");
  wrap["key_ops"] = json::array({"wrapKey"});
  jwks["keys"].push_back(wrap);
  json with_x5c = rsaJwk(keys().rsa_other.get(), "rsa-2");
  with_x5c["x5c"] = json::array({"MIIB"});  // ignored; n and e are used
  jwks["keys"].push_back(with_x5c);
  auto set = JwksKeySet::parse(jwks.dump());
  ASSERT_TRUE(set.ok()) << set.status().toString();
  EXPECT_EQ(set->size(), 4u);
  EXPECT_EQ(set->kids(), (std::vector<std::string>{"rsa-1", "ec-1", "ed-1", "rsa-2"}));
}

void expectInvalidJwks(const json& jwks, const std::string& reason) {
  auto set = JwksKeySet::parse(jwks.dump());
  ASSERT_FALSE(set.ok());
  EXPECT_EQ(set.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(set.status().message().find(reason), std::string::npos) << set.status().message();
}

TEST(JwksKeySet, PrivateKeyMaterialRejectsTheWholeSet) {
  for (const char* member : {"d", "p", "q", "dp", "dq", "qi"}) {
    json jwks = standardJwks();
    jwks["keys"][0][member] = "AQAB";
    expectInvalidJwks(jwks, "private key material");
  }
  json jwks = standardJwks();
  jwks["keys"][1]["d"] = "AQAB";
  expectInvalidJwks(jwks, "private key material");
  jwks = standardJwks();
  jwks["keys"].push_back({{"kty", "oct"}, {"kid", "hmac"}, {"k", "c2VjcmV0"}});
  expectInvalidJwks(jwks, "private key material");
}

TEST(JwksKeySet, Rsa1024Rejected) {
  PkeyPtr weak(EVP_PKEY_Q_keygen(nullptr, nullptr, "RSA", size_t{1024}));
  json jwks = standardJwks();
  jwks["keys"].push_back(rsaJwk(weak.get(), "weak"));
  expectInvalidJwks(jwks, "2048");
}

TEST(JwksKeySet, RsaSmallExponentRejected) {
  json jwk = rsaJwk(keys().rsa_other.get(), "e3");
  jwk["e"] = b64url(std::string(1, '\x03'));
  expectInvalidJwks({{"keys", json::array({jwk})}}, "exponent");
  jwk["e"] = b64url(std::string("\x01\x00\x00", 3));  // 65536: even
  expectInvalidJwks({{"keys", json::array({jwk})}}, "exponent");
}

TEST(JwksKeySet, RsaModulusFailingOpenSslPublicCheckRejected) {
  json jwk = rsaJwk(keys().rsa_other.get(), "even");
  std::string n = bnParam(keys().rsa_other.get(), OSSL_PKEY_PARAM_RSA_N);
  n.back() = static_cast<char>(n.back() & ~1);  // an even modulus imports, but is not an RSA modulus
  jwk["n"] = b64url(n);
  expectInvalidJwks({{"keys", json::array({jwk})}}, "invalid RSA public key");
}

TEST(JwksKeySet, EcPointNotOnCurveRejected) {
  json jwk = ecJwk(keys().ec.get(), "bad");
  std::string y = bnParam(keys().ec.get(), OSSL_PKEY_PARAM_EC_PUB_Y, 32);
  y[31] = static_cast<char>(y[31] ^ 1);
  jwk["y"] = b64url(y);
  expectInvalidJwks({{"keys", json::array({jwk})}}, "invalid EC public key");
  jwk["y"] = b64url(y.substr(1));  // short coordinate
  expectInvalidJwks({{"keys", json::array({jwk})}}, "32-byte");
}

TEST(JwksKeySet, MalformedOrUnusableRejected) {
  expectInvalidJwks(json::array(), "not a JSON object");
  expectInvalidJwks(json::object(), "keys");
  expectInvalidJwks({{"keys", json::array()}}, "no usable signing key");
  expectInvalidJwks({{"keys", json::array({{{"kty", "oct-ish"}, {"kid", "x"}}})}}, "no usable signing key");
  expectInvalidJwks({{"keys", json::array({1})}}, "not an object");
  json jwk = edJwk(keys().ed.get(), "ed");
  jwk.erase("kid");
  expectInvalidJwks({{"keys", json::array({jwk})}}, "kid");
  jwk["kid"] = "ed";
  jwk["alg"] = "RS256";  // contradicts the key type
  expectInvalidJwks({{"keys", json::array({jwk})}}, "alg does not match");
  jwk.erase("alg");
  jwk["x"] = "AAAA+/==";
  expectInvalidJwks({{"keys", json::array({jwk})}}, "base64url");
  jwk["x"] = b64url(std::string(31, 'x'));
  expectInvalidJwks({{"keys", json::array({jwk})}}, "32-byte x");
  json dup = standardJwks();
  dup["keys"].push_back(ecJwk(keys().ec.get(), "rsa-1"));
  expectInvalidJwks(dup, "duplicate kid");
  EXPECT_FALSE(JwksKeySet::parse(R"({"keys":[],"keys":[)" + edJwk(keys().ed.get(), "ed").dump() + "]}").ok());
  EXPECT_FALSE(JwksKeySet::parse("{\"keys\":[").ok());
  EXPECT_FALSE(JwksKeySet::parse("").ok());
}

TEST(JwksKeySet, LoadFromFile) {
  testing::TempDir dir;
  const std::string path = dir.path() + "/jwks.json";
  std::ofstream(path) << standardJwks().dump(2);
  auto set = JwksKeySet::load(path);
  ASSERT_TRUE(set.ok()) << set.status().toString();
  EXPECT_EQ(set->size(), 3u);
  EXPECT_FALSE(JwksKeySet::load(dir.path() + "/missing.json").ok());
  const std::string big = dir.path() + "/big.json";
  std::string text = standardJwks().dump();
  text.insert(text.size() - 1, ",\"pad\":\"" + std::string(1 << 20, 'x') + "\"");
  std::ofstream(big) << text;
  auto too_big = JwksKeySet::load(big);
  ASSERT_FALSE(too_big.ok());
  EXPECT_NE(too_big.status().message().find("1 MiB"), std::string::npos);
}

}  // namespace
}  // namespace bastion::auth
