#include "auth/totp.h"

#include <liboath/oath.h>
#include <qrencode.h>

#include <cstdlib>
#include <mutex>

namespace bastion::auth {
namespace {

void initOath() {
  static std::once_flag once;
  std::call_once(once, [] { oath_init(); });
}

std::string uriEscape(const std::string& s) {
  static const char* hex = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : s) {
    if (std::isalnum(c) || c == '-' || c == '.' || c == '_' || c == '~') {
      out += static_cast<char>(c);
    } else {
      out += '%';
      out += hex[c >> 4];
      out += hex[c & 15];
    }
  }
  return out;
}

time_t unixSeconds(std::chrono::system_clock::time_point t) {
  return static_cast<time_t>(std::chrono::duration_cast<std::chrono::seconds>(t.time_since_epoch()).count());
}

}  // namespace

Bytes newTotpSecret(Random& random) {
  Bytes s(kTotpSecretBytes);
  random.fill(s);
  return s;
}

std::string base32(ByteView secret) {
  initOath();
  char* out = nullptr;
  size_t len = 0;
  if (oath_base32_encode(reinterpret_cast<const char*>(secret.data()), secret.size(), &out, &len) != OATH_OK)
    return {};
  std::string r(out, len);
  std::free(out);
  while (!r.empty() && r.back() == '=') r.pop_back();
  return r;
}

std::string otpauthUri(const std::string& issuer, const std::string& account, ByteView secret) {
  return "otpauth://totp/" + uriEscape(issuer) + ":" + uriEscape(account) + "?secret=" + base32(secret) +
         "&issuer=" + uriEscape(issuer) + "&algorithm=SHA1&digits=6&period=" + std::to_string(kTotpStepSeconds);
}

StatusOr<std::string> terminalQr(const std::string& text) {
  QRcode* qr = QRcode_encodeString(text.c_str(), 0, QR_ECLEVEL_M, QR_MODE_8, 1);
  if (!qr) return internalError("cannot encode the QR code");
  const int w = qr->width, quiet = 2, size = w + 2 * quiet;
  auto dark = [&](int x, int y) {
    x -= quiet, y -= quiet;
    return x >= 0 && y >= 0 && x < w && y < w && (qr->data[y * w + x] & 1);
  };
  std::string out;
  // Two modules per character cell: upper and lower half blocks, light background.
  for (int y = 0; y < size; y += 2) {
    for (int x = 0; x < size; ++x) {
      const bool top = dark(x, y), bottom = y + 1 < size && dark(x, y + 1);
      out += top && bottom ? " " : top ? "\u2584" : bottom ? "\u2580" : "\u2588";
    }
    out += '\n';
  }
  QRcode_free(qr);
  return out;
}

StatusOr<uint64_t> verifyTotp(ByteView secret, std::string_view code, std::chrono::system_clock::time_point now,
                              uint64_t last_step) {
  initOath();
  if (code.size() != 6) return unauthenticated("invalid second factor");
  for (char c : code)
    if (c < '0' || c > '9') return unauthenticated("invalid second factor");
  const std::string otp(code);
  int pos = 0;
  uint64_t counter = 0;
  const int r = oath_totp_validate4(reinterpret_cast<const char*>(secret.data()), secret.size(), unixSeconds(now),
                                    kTotpStepSeconds, 0, 1, &pos, &counter, 0, otp.c_str());
  if (r < 0) return unauthenticated("invalid second factor");
  if (counter <= last_step) return unauthenticated("second factor already used");
  return counter;
}

std::string totpCode(ByteView secret, std::chrono::system_clock::time_point now) {
  initOath();
  char out[7] = {};
  if (oath_totp_generate(reinterpret_cast<const char*>(secret.data()), secret.size(), unixSeconds(now),
                         kTotpStepSeconds, 0, 6, out) != OATH_OK)
    return {};
  return out;
}

}  // namespace bastion::auth
