#include "index/phi_codec.h"

#include "crypto/aead.h"

namespace bastion::index {

PhiCodec::PhiCodec(const Keyring& keyring, Random& random)
    : enc_key_(keyring.derive("index-phi-v1")), token_key_(keyring.derive("index-token-v1")), random_(random) {}

Bytes PhiCodec::seal(std::string_view row_identity, const std::vector<std::string>& fields) const {
  Bytes plain;
  for (const auto& f : fields) {
    const uint32_t n = static_cast<uint32_t>(f.size());
    for (int i = 0; i < 4; ++i) plain.push_back(static_cast<uint8_t>(n >> (8 * i)));
    plain.insert(plain.end(), f.begin(), f.end());
  }
  uint8_t nonce[crypto::kGcmNonce];
  random_.fill(nonce);
  Bytes out(nonce, nonce + sizeof nonce);
  crypto::gcmSeal(enc_key_, nonce, asBytes(row_identity), plain, out);
  return out;
}

StatusOr<std::vector<std::string>> PhiCodec::open(std::string_view row_identity, ByteView sealed) const {
  if (sealed.size() < crypto::kGcmNonce + crypto::kGcmTag) return dataLoss("index PHI field truncated");
  Bytes plain;
  RETURN_IF_ERROR(crypto::gcmOpen(enc_key_, sealed.data(), asBytes(row_identity),
                                  sealed.subspan(crypto::kGcmNonce), plain));
  std::vector<std::string> fields;
  size_t pos = 0;
  while (pos < plain.size()) {
    if (plain.size() - pos < 4) return dataLoss("index PHI field malformed");
    uint32_t n = 0;
    for (int i = 0; i < 4; ++i) n |= uint32_t{plain[pos + i]} << (8 * i);
    pos += 4;
    if (n > plain.size() - pos) return dataLoss("index PHI field malformed");
    fields.emplace_back(reinterpret_cast<const char*>(plain.data() + pos), n);
    pos += n;
  }
  return fields;
}

Bytes PhiCodec::token(std::string_view domain, std::string_view value) const {
  std::string input(domain);
  input.push_back('\0');
  input.append(value);
  auto d = crypto::hmacSha256(token_key_, asBytes(input));
  return Bytes(d.begin(), d.begin() + 16);
}

}  // namespace bastion::index
