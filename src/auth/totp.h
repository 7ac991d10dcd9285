// TOTP second factor (RFC 6238 via liboath): 30-second steps, 6 digits,
// a window of one step either side, and each time step accepted at most
// once per user (the caller stores the last accepted step).
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

#include "bastion/common/bytes.h"
#include "bastion/common/clock.h"
#include "bastion/common/status.h"

namespace bastion::auth {

inline constexpr unsigned kTotpStepSeconds = 30;
inline constexpr size_t kTotpSecretBytes = 20;  // 160 bits, as RFC 4226 recommends

// A new random secret.
Bytes newTotpSecret(Random& random);
std::string base32(ByteView secret);
// otpauth://totp/ISSUER:ACCOUNT?secret=...&issuer=...&algorithm=SHA1&digits=6&period=30
std::string otpauthUri(const std::string& issuer, const std::string& account, ByteView secret);
// A QR code of `text` drawn with Unicode half blocks for a terminal (dark on light).
StatusOr<std::string> terminalQr(const std::string& text);

// Checks `code` (6 digits) at `now` against `secret`. On success returns the
// matching time step, which must be greater than `last_step` (a code is
// accepted once; an older one never again). kUnauthenticated otherwise.
StatusOr<uint64_t> verifyTotp(ByteView secret, std::string_view code, std::chrono::system_clock::time_point now,
                              uint64_t last_step);
// The code for `now` (tests and enrolment self-checks).
std::string totpCode(ByteView secret, std::chrono::system_clock::time_point now);

}  // namespace bastion::auth
