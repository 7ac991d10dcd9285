// AuthService: accounts, passwords (NIST SP 800-63B), TOTP, recovery codes,
// sessions, API tokens, throttling, DICOM identities, grants, break-glass.
#include "bastion/auth/auth_service.h"

#include <gtest/gtest.h>

#include <mutex>

#include "auth/password.h"
#include "auth/totp.h"
#include "storage/atomic_file.h"
#include "test_util.h"

namespace bastion {
namespace {

using namespace std::chrono_literals;

using testing::RecordingAudit;

constexpr const char* kPassword = "tulip river lantern 42";
const Origin kHere{"10.0.0.5", "", ""};

class AuthServiceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    Key256 kek{};
    kek[0] = 7;
    keyring_ = makeKeyring(kek, random_);
    AuthConfig cfg;
    cfg.argon2_ops = 1;
    cfg.argon2_mem_kib = 1024;  // cheap for tests; the production default is 64 MiB
    cfg.lock_after = 10;
    cfg.lock_first = 60s;
    auto a = AuthService::open(dir_.path() + "/db.sqlite", *keyring_, random_, clock_, audit_, cfg);
    ASSERT_TRUE(a.ok()) << a.status().toString();
    auth_ = std::move(a).value();
  }

  // Creates and fully enrols `name`; returns its TOTP secret.
  Bytes enrolled(const std::string& name, std::vector<std::string> roles = {"radiologist"},
                 const std::string& site = "north") {
    auto otp = auth_->addUser({name, roles, site, "", {}}, "test");
    EXPECT_TRUE(otp.ok()) << otp.status().toString();
    auto e = auth_->beginEnrolment(name, *otp, kPassword, kHere);
    EXPECT_TRUE(e.ok() && e->has_value()) << e.status().toString();
    Bytes secret;
    EXPECT_TRUE(decodeBase32((*e)->secret_base32, secret));
    auto codes = auth_->confirmEnrolment(name, auth::totpCode(secret, clock_.now()), kHere);
    EXPECT_TRUE(codes.ok()) << codes.status().toString();
    if (codes.ok()) recovery_ = *codes;
    clock_.advance(30s);  // the enrolment code's step is spent
    return secret;
  }

  static bool decodeBase32(const std::string& s, Bytes& out) {
    uint32_t buffer = 0;
    int bits = 0;
    for (char c : s) {
      int v = c >= 'A' && c <= 'Z' ? c - 'A' : c >= '2' && c <= '7' ? c - '2' + 26 : -1;
      if (v < 0) return false;
      buffer = (buffer << 5) | static_cast<uint32_t>(v);
      bits += 5;
      if (bits >= 8) {
        out.push_back(static_cast<uint8_t>(buffer >> (bits - 8)));
        bits -= 8;
      }
    }
    return true;
  }

  std::string code(const Bytes& secret) { return auth::totpCode(secret, clock_.now()); }

  testing::TempDir dir_;
  testing::FakeRandom random_;
  testing::ManualClock clock_;
  RecordingAudit audit_;
  std::unique_ptr<Keyring> keyring_;
  std::unique_ptr<AuthService> auth_;
  std::vector<std::string> recovery_;
};

TEST(PasswordPolicyTest, Sp800_63bRules) {
  std::unordered_set<std::string> block;
  auth::PasswordPolicy::parseBlocklist("# comment\nPassword1!\nqwertyuiop\n", block);
  auth::PasswordPolicy p({8, 15, 256, 1, 1 << 20}, block);
  EXPECT_FALSE(p.check("Password1!", true, {}).ok());        // blocklist
  EXPECT_FALSE(p.check("PASSWORD1!", true, {}).ok());        // case-insensitively
  EXPECT_FALSE(p.check("ｑｗｅｒｔｙｕｉｏｐ", true, {}).ok());  // NFKC: full-width letters are the same password
  EXPECT_FALSE(p.check("abcdefg", true, {}).ok());           // 7 < 8 with MFA
  EXPECT_TRUE(p.check("abcdefgh", true, {}).ok());
  EXPECT_FALSE(p.check("abcdefghijklmn", false, {}).ok());   // 14 < 15 without MFA
  EXPECT_TRUE(p.check("abcdefghijklmno", false, {}).ok());
  EXPECT_TRUE(p.check("nocomposition", true, {}).ok());      // no composition rules
  std::string unicode;
  for (int i = 0; i < 64; ++i) unicode += "é";
  EXPECT_TRUE(p.check(unicode, true, {}).ok());              // 64 Unicode characters accepted
  EXPECT_FALSE(p.check(std::string(257, 'a'), true, {}).ok());
  EXPECT_FALSE(p.check("alice.smith", true, {"Alice.Smith"}).ok());
  EXPECT_FALSE(p.check("\xff\xfe bad utf8", true, {}).ok());
  // Hashes record their parameters; nothing is truncated.
  auto h = p.hash("correct horse battery");
  ASSERT_TRUE(h.ok());
  EXPECT_EQ(h->rfind("$argon2id$v=19$m=1024,t=1,p=1$", 0), 0u) << *h;
  EXPECT_TRUE(p.verify("correct horse battery", *h));
  EXPECT_FALSE(p.verify("correct horse batter", *h));
  EXPECT_FALSE(p.verify("correct horse battery!", *h));
  // Composed and decomposed forms of é are one password.
  auto h2 = p.hash("caf\xc3\xa9 au lait");
  EXPECT_TRUE(p.verify("cafe\xcc\x81 au lait", *h2));
  EXPECT_FALSE(p.needsRehash(*h));
  auth::PasswordPolicy stronger({8, 15, 256, 2, 1 << 20}, {});
  EXPECT_TRUE(stronger.needsRehash(*h));
}

TEST(TotpTest, Rfc6238Window) {
  Bytes secret(20, 0x31);
  const auto t = std::chrono::system_clock::time_point(std::chrono::seconds(1800000000));
  const std::string now = auth::totpCode(secret, t);
  ASSERT_EQ(now.size(), 6u);
  auto step = auth::verifyTotp(secret, now, t, 0);
  ASSERT_TRUE(step.ok());
  EXPECT_EQ(*step, 1800000000u / 30);
  EXPECT_FALSE(auth::verifyTotp(secret, now, t, *step).ok());                 // once
  EXPECT_TRUE(auth::verifyTotp(secret, auth::totpCode(secret, t - 30s), t, 0).ok());   // one step old
  EXPECT_FALSE(auth::verifyTotp(secret, auth::totpCode(secret, t - 90s), t, 0).ok());  // three steps old
  EXPECT_FALSE(auth::verifyTotp(secret, "12345a", t, 0).ok());
  auto qr = auth::terminalQr(auth::otpauthUri("Bastion", "alice", secret));
  ASSERT_TRUE(qr.ok());
  EXPECT_GT(qr->size(), 100u);
  EXPECT_EQ(auth::otpauthUri("Bastion", "a b", secret).rfind("otpauth://totp/Bastion:a%20b?secret=", 0), 0u);
}

TEST_F(AuthServiceTest, OneTimePasswordForcesEnrolment) {
  auto otp = auth_->addUser({"alice", {"radiologist"}, "north", "", {}}, "test");
  ASSERT_TRUE(otp.ok());
  EXPECT_GE(otp->size(), 20u);
  EXPECT_EQ(auth_->addUser({"Alice", {"radiologist"}, "north", "", {}}, "test").status().code(),
            StatusCode::kAlreadyExists);  // user names are case-insensitive
  EXPECT_EQ(auth_->addUser({"bob", {"no-such-role"}, "north", "", {}}, "test").status().code(),
            StatusCode::kInvalidArgument);
  // The one-time password opens nothing but enrolment.
  EXPECT_EQ(auth_->login("alice", *otp, "000000", kHere).status().code(), StatusCode::kPermissionDenied);
  EXPECT_FALSE(auth_->beginEnrolment("alice", *otp, "", kHere).ok());          // a new password is required
  EXPECT_FALSE(auth_->beginEnrolment("alice", *otp, "Password1!", kHere).ok());  // blocklisted
  auto e = auth_->beginEnrolment("alice", *otp, kPassword, kHere);
  ASSERT_TRUE(e.ok() && e->has_value());
  EXPECT_NE((*e)->otpauth_uri.find("secret=" + (*e)->secret_base32), std::string::npos);
  EXPECT_FALSE(auth_->confirmEnrolment("alice", "123456", kHere).ok());
  Bytes secret;
  ASSERT_TRUE(decodeBase32((*e)->secret_base32, secret));
  auto codes = auth_->confirmEnrolment("alice", code(secret), kHere);
  ASSERT_TRUE(codes.ok());
  EXPECT_EQ(codes->size(), 10u);
  EXPECT_FALSE(auth_->login("alice", *otp, code(secret), kHere).ok());  // the one-time password is gone
}

TEST_F(AuthServiceTest, TotpCodeWorksOnceAndNotWhenOld) {
  const Bytes secret = enrolled("alice");
  const std::string c = code(secret);
  EXPECT_TRUE(auth_->login("alice", kPassword, c, kHere).ok());
  EXPECT_FALSE(auth_->login("alice", kPassword, c, kHere).ok());  // the same code again
  clock_.advance(30s);
  const std::string old = auth::totpCode(secret, clock_.now() - 90s);  // three steps old
  EXPECT_FALSE(auth_->login("alice", kPassword, old, kHere).ok());
  EXPECT_FALSE(auth_->login("alice", std::string(kPassword).substr(0, 10), code(secret), kHere).ok());  // truncated password
  EXPECT_TRUE(auth_->login("alice", kPassword, code(secret), kHere).ok());
}

TEST_F(AuthServiceTest, RecoveryCodeWorksOnce) {
  enrolled("alice");
  ASSERT_FALSE(recovery_.empty());
  EXPECT_TRUE(auth_->authenticate("alice", kPassword, recovery_[0], kHere).ok());
  EXPECT_FALSE(auth_->authenticate("alice", kPassword, recovery_[0], kHere).ok());
  EXPECT_TRUE(auth_->authenticate("alice", kPassword, recovery_[1], kHere).ok());
}

TEST_F(AuthServiceTest, UnknownUserAndWrongPasswordLookAlike) {
  enrolled("alice");
  auto a = auth_->authenticate("alice", "wrong password here", "123456", {"10.0.0.6", "", ""});
  auto b = auth_->authenticate("mallory", "wrong password here", "123456", {"10.0.0.7", "", ""});
  EXPECT_EQ(a.status().code(), b.status().code());
  EXPECT_EQ(a.status().message(), b.status().message());
}

TEST_F(AuthServiceTest, BruteForceIsThrottledAndTheUserGetsBackIn) {
  const Bytes secret = enrolled("alice");
  int checked = 0, throttled = 0;
  for (int i = 0; i < 150; ++i) {
    const Origin attacker{"203.0.113." + std::to_string(i % 3), "", ""};
    auto r = auth_->authenticate("alice", "guess number " + std::to_string(i), "123456", attacker);
    ASSERT_FALSE(r.ok());
    (r.status().code() == StatusCode::kResourceExhausted ? throttled : checked)++;
  }
  EXPECT_LT(checked, 100);  // throttled long before attempt 100
  EXPECT_GT(throttled, 50);
  auto info = auth_->showUser("alice");
  EXPECT_LT(info->failed_logins, 100);
  // During the lock even the right password is refused; after the cool-down,
  // from a clean address, it works.
  EXPECT_FALSE(auth_->authenticate("alice", kPassword, code(secret), {"10.9.9.9", "", ""}).ok());
  clock_.advance(61s);
  EXPECT_TRUE(auth_->authenticate("alice", kPassword, code(secret), {"10.9.9.9", "", ""}).ok());
  bool locked_audited = false;
  for (const auto& e : audit_.events) locked_audited |= e.severity == "high" && e.action == "login";
  EXPECT_TRUE(locked_audited);
}

TEST_F(AuthServiceTest, HardLimitLocksTheAttackersNetworkNotTheOwner) {
  const Bytes secret = enrolled("alice");
  for (int round = 0; round < 12; ++round) {
    for (int i = 0; i < 10; ++i)
      (void)auth_->authenticate("alice", "nope nope nope", "123456", {"198.51.100." + std::to_string(round), "", ""});
    clock_.advance(3601s);
  }
  EXPECT_GE(auth_->showUser("alice")->failed_logins, 100);
  // 100 consecutive failures from 198.51.100.0/24: that network can no longer
  // try this account, not even with the right password...
  auto r = auth_->authenticate("alice", kPassword, code(secret), {"198.51.100.77", "", ""});
  EXPECT_EQ(r.status().message(), "invalid credentials");
  // ...while the owner, elsewhere, gets in.
  clock_.advance(30s);
  EXPECT_TRUE(auth_->authenticate("alice", kPassword, code(secret), {"10.9.9.8", "", ""}).ok());
  EXPECT_EQ(auth_->showUser("alice")->failed_logins, 0);
  // An administrator's enable clears the network's lock as well.
  ASSERT_TRUE(auth_->setDisabled("alice", false, "admin").ok());
  clock_.advance(30s);
  EXPECT_TRUE(auth_->authenticate("alice", kPassword, code(secret), {"198.51.100.77", "", ""}).ok());
}

TEST_F(AuthServiceTest, MfaResetNeedsTheNewOneTimePassword) {
  enrolled("alice");
  auto otp = auth_->resetMfa("alice", "admin");
  ASSERT_TRUE(otp.ok());
  // The old password alone cannot enrol a new factor any more.
  EXPECT_FALSE(auth_->beginEnrolment("alice", kPassword, "another good passphrase", kHere).ok());
  auto e = auth_->beginEnrolment("alice", *otp, "another good passphrase", kHere);
  ASSERT_TRUE(e.ok() && e->has_value());
}

TEST_F(AuthServiceTest, EnrolmentCodeGuessingIsThrottled) {
  auto otp = auth_->addUser({"carol", {"radiologist"}, "north", "", {}}, "test");
  ASSERT_TRUE(auth_->beginEnrolment("carol", *otp, kPassword, kHere).ok());
  int refused = 0;
  for (int i = 0; i < 30; ++i)
    if (auth_->confirmEnrolment("carol", "000000", kHere).status().code() == StatusCode::kResourceExhausted)
      ++refused;
  EXPECT_GT(refused, 15);
}

TEST_F(AuthServiceTest, SessionsExpireAndAreRevoked) {
  const Bytes secret = enrolled("alice");
  auto tok = auth_->login("alice", kPassword, code(secret), kHere);
  ASSERT_TRUE(tok.ok());
  EXPECT_EQ(tok->size(), 4u + 64u);  // 256 bits
  auto p = auth_->session(*tok);
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p->name, "alice");
  EXPECT_TRUE(p->permissions & kPermFind);
  clock_.advance(29min);
  EXPECT_TRUE(auth_->session(*tok).ok());  // activity resets the idle timer
  clock_.advance(31min);
  EXPECT_FALSE(auth_->session(*tok).ok());  // idle
  clock_.advance(30s);
  auto t2 = auth_->login("alice", kPassword, code(secret), kHere);
  for (int i = 0; i < 26; ++i) {  // active all along, but 12 h is the absolute limit
    clock_.advance(29min);
    if (i < 24) {
      EXPECT_TRUE(auth_->session(*t2).ok()) << i;
    }
  }
  EXPECT_FALSE(auth_->session(*t2).ok());
  auto t3 = auth_->login("alice", kPassword, code(secret), kHere);
  ASSERT_TRUE(auth_->logout(*t3).ok());
  EXPECT_FALSE(auth_->session(*t3).ok());
  clock_.advance(30s);
  auto t4 = auth_->login("alice", kPassword, code(secret), kHere);
  ASSERT_TRUE(auth_->setDisabled("alice", true, "admin").ok());
  EXPECT_FALSE(auth_->session(*t4).ok());
  ASSERT_TRUE(auth_->setDisabled("alice", false, "admin").ok());
  clock_.advance(30s);
  auto t5 = auth_->login("alice", kPassword, code(secret), kHere);
  clock_.advance(30s);
  ASSERT_TRUE(auth_->changePassword("alice", kPassword, code(secret), "a brand new passphrase", kHere).ok());
  EXPECT_FALSE(auth_->session(*t5).ok());
}

TEST_F(AuthServiceTest, ApiTokensAreScopedExpiringRevocable) {
  enrolled("alice");
  EXPECT_EQ(auth_->createApiToken("alice", "x", kPermFind | kPermManageUsers, 24h, "t").status().code(),
            StatusCode::kPermissionDenied);  // more than the user has
  auto tok = auth_->createApiToken("alice", "viewer script", kPermFind, 24h, "t");
  ASSERT_TRUE(tok.ok());
  auto p = auth_->apiToken(*tok, kHere);
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p->permissions, static_cast<uint32_t>(kPermFind));
  EXPECT_FALSE(auth_->apiToken(*tok + "0", kHere).ok());
  // The same token as a DICOM passcode of that user, and only of that user.
  EXPECT_TRUE(auth_->dicomIdentity(2, "alice", *tok, kHere).ok());
  EXPECT_FALSE(auth_->dicomIdentity(2, "bob", *tok, kHere).ok());
  auto list = auth_->listApiTokens("alice");
  ASSERT_EQ(list->size(), 1u);
  ASSERT_TRUE(auth_->revokeApiToken(list->front().id, "t").ok());
  EXPECT_FALSE(auth_->apiToken(*tok, kHere).ok());
  auto t2 = auth_->createApiToken("alice", "short", kPermFind, 1h, "t");
  clock_.advance(2h);
  EXPECT_FALSE(auth_->apiToken(*t2, kHere).ok());
}

TEST_F(AuthServiceTest, DicomIdentityTypes) {
  const Bytes secret = enrolled("alice");
  EXPECT_TRUE(auth_->dicomIdentity(2, "alice", std::string(kPassword) + code(secret), kHere).ok());
  clock_.advance(30s);
  EXPECT_FALSE(auth_->dicomIdentity(2, "alice", kPassword, kHere).ok());  // no second factor
  EXPECT_FALSE(auth_->dicomIdentity(1, "alice", "", kHere).ok());          // user name alone proves nothing
  EXPECT_FALSE(auth_->dicomIdentity(3, "ticket", "", kHere).ok());
  EXPECT_FALSE(auth_->dicomIdentity(5, "a.b.c", "", kHere).ok());           // no identity provider configured
}

TEST_F(AuthServiceTest, DatabaseHoldsNothingReversible) {
  const Bytes secret = enrolled("alice");
  auto tok = auth_->createApiToken("alice", "x", kPermFind, 24h, "t");
  auto session = auth_->login("alice", kPassword, code(secret), kHere);
  ASSERT_TRUE(tok.ok() && session.ok());
  auth_.reset();
  std::string dump;
  for (const char* f : {"/db.sqlite", "/db.sqlite-wal"}) {
    auto b = storage::readFile(dir_.path() + f, 1 << 26);
    if (b.ok()) dump += std::string(asChars(*b));
  }
  ASSERT_FALSE(dump.empty());
  std::string b32;
  for (char c : auth::base32(secret)) b32 += c;
  for (const std::string& needle : {std::string(kPassword), b32, std::string(asChars(secret)), *tok, *session,
                                    recovery_[0], recovery_[0].substr(0, 4) + recovery_[0].substr(5, 4)})
    EXPECT_EQ(dump.find(needle), std::string::npos) << needle;
}

TEST_F(AuthServiceTest, BreakGlassNeedsPermissionAndReasonAndExpires) {
  enrolled("alice", {"radiologist"});
  enrolled("erin", {"radiologist", "emergency"});
  auto alice = auth_->principalFor("alice");
  auto erin = auth_->principalFor("erin");
  EXPECT_EQ(auth_->breakGlass(*alice, "1.2.3", "patient crashing in ER", kHere).status().code(),
            StatusCode::kPermissionDenied);
  EXPECT_EQ(auth_->breakGlass(*erin, "1.2.3", "why", kHere).status().code(), StatusCode::kInvalidArgument);
  auto g = auth_->breakGlass(*erin, "1.2.3", "patient crashing in ER", kHere);
  ASSERT_TRUE(g.ok()) << g.status().toString();
  EXPECT_EQ(g->kind, "emergency");
  EXPECT_EQ(g->expires - g->created, 4 * 3600);
  auto listed = auth_->listGrants(true);
  ASSERT_EQ(listed->size(), 1u);
  EXPECT_EQ(listed->front().grantee, "user:erin");
  int high = 0;
  for (const auto& e : audit_.events)
    if (e.action == "break-glass" && e.severity == "high") ++high;
  EXPECT_EQ(high, 3);  // refused, refused, granted: all loud
  // The scope the Policy hands out includes the grant only while it lasts.
  const Decision d = auth_->policy().decide(*erin, Action::kFind, {}, clock_.now());
  EXPECT_EQ(d.scope.grantees, std::vector<std::string>{"user:erin"});
}

}  // namespace
}  // namespace bastion
