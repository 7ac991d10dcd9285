#include "auth/password.h"

#include <sodium.h>
#include <unicase.h>
#include <uninorm.h>
#include <unistr.h>

#include <cstdlib>
#include <fstream>
#include <sstream>

namespace bastion::auth {
namespace {

std::string lowerUnicode(const std::string& s) {
  size_t len = 0;
  uint8_t* out = u8_tolower(reinterpret_cast<const uint8_t*>(s.data()), s.size(), nullptr, UNINORM_NFKC, nullptr, &len);
  if (!out) return s;
  std::string r(reinterpret_cast<char*>(out), len);
  std::free(out);
  return r;
}

}  // namespace

StatusOr<std::string> normalizePassword(std::string_view utf8) {
  const auto* in = reinterpret_cast<const uint8_t*>(utf8.data());
  if (u8_check(in, utf8.size()) != nullptr) return invalidArgument("password is not valid UTF-8");
  size_t len = 0;
  uint8_t* out = u8_normalize(UNINORM_NFKC, in, utf8.size(), nullptr, &len);
  if (!out) return invalidArgument("password cannot be normalised");
  std::string r(reinterpret_cast<char*>(out), len);
  std::free(out);
  return r;
}

PasswordPolicy::PasswordPolicy(PasswordRules rules, std::unordered_set<std::string> blocklist)
    : rules_(rules) {
  if (sodium_init() < 0) std::abort();  // no safe way on without the library's RNG
  for (const auto& b : blocklist) blocklist_.insert(lowerUnicode(b));
  char out[crypto_pwhash_STRBYTES];
  const char fixed[] = "bastion-dummy-password-for-timing";
  if (crypto_pwhash_str_alg(out, fixed, sizeof fixed - 1, rules_.ops_limit, rules_.mem_limit,
                            crypto_pwhash_ALG_ARGON2ID13) != 0)
    std::abort();  // out of memory at start-up
  dummy_hash_ = out;
}

Status PasswordPolicy::loadBlocklist(const std::string& path, std::unordered_set<std::string>& out) {
  std::ifstream in(path);
  if (!in) return notFound("cannot read password blocklist " + path);
  std::stringstream text;
  text << in.rdbuf();
  parseBlocklist(text.str(), out);
  return okStatus();
}

void PasswordPolicy::parseBlocklist(std::string_view text, std::unordered_set<std::string>& out) {
  size_t start = 0;
  while (start < text.size()) {
    size_t nl = text.find('\n', start);
    if (nl == std::string_view::npos) nl = text.size();
    std::string_view line = text.substr(start, nl - start);
    start = nl + 1;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line.empty() || line[0] == '#') continue;
    auto n = normalizePassword(line);
    if (n.ok()) out.insert(*n);
  }
}

Status PasswordPolicy::check(std::string_view password, bool with_mfa,
                             const std::vector<std::string>& context) const {
  ASSIGN_OR_RETURN(std::string n, normalizePassword(password));
  const size_t chars = u8_mbsnlen(reinterpret_cast<const uint8_t*>(n.data()), n.size());
  const size_t min = with_mfa ? rules_.min_length_with_mfa : rules_.min_length_without_mfa;
  if (chars < min) return invalidArgument("password must have at least " + std::to_string(min) + " characters");
  if (chars > rules_.max_length)
    return invalidArgument("password must have at most " + std::to_string(rules_.max_length) + " characters");
  const std::string lower = lowerUnicode(n);
  if (blocklist_.count(lower)) return invalidArgument("password is too common (found in the list of breached passwords)");
  for (const auto& word : context)
    if (!word.empty() && lower == lowerUnicode(word)) return invalidArgument("password must not be the user name");
  return okStatus();
}

StatusOr<std::string> PasswordPolicy::hash(std::string_view password) const {
  ASSIGN_OR_RETURN(std::string n, normalizePassword(password));
  char out[crypto_pwhash_STRBYTES];
  if (crypto_pwhash_str_alg(out, n.data(), n.size(), rules_.ops_limit, rules_.mem_limit,
                            crypto_pwhash_ALG_ARGON2ID13) != 0)
    return resourceExhausted("password hashing ran out of memory");
  return std::string(out);
}

bool PasswordPolicy::verify(std::string_view password, const std::string& hash) const {
  auto n = normalizePassword(password);
  if (!n.ok() || hash.size() >= crypto_pwhash_STRBYTES) {
    dummyVerify("x");
    return false;
  }
  return crypto_pwhash_str_verify(hash.c_str(), n->data(), n->size()) == 0;
}

bool PasswordPolicy::needsRehash(const std::string& hash) const {
  return crypto_pwhash_str_needs_rehash(hash.c_str(), rules_.ops_limit, rules_.mem_limit) != 0;
}

void PasswordPolicy::dummyVerify(std::string_view password) const {
  const int r = crypto_pwhash_str_verify(dummy_hash_.c_str(), password.data(), password.size());
  static_cast<void>(r);
}

}  // namespace bastion::auth
