#include "crypto/aead.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/kdf.h>
#include <openssl/sha.h>

#include <cstdio>
#include <cstdlib>

namespace bastion::crypto {
namespace {

[[noreturn]] void fatal(const char* what) {
  std::fprintf(stderr, "fatal: OpenSSL %s failed\n", what);
  std::abort();
}

// One cipher context per thread, reused across calls.
EVP_CIPHER_CTX* threadCtx() {
  struct Holder {
    EVP_CIPHER_CTX* ctx = EVP_CIPHER_CTX_new();
    ~Holder() { EVP_CIPHER_CTX_free(ctx); }
  };
  thread_local Holder holder;
  if (holder.ctx == nullptr) fatal("EVP_CIPHER_CTX_new");
  return holder.ctx;
}

}  // namespace

void gcmSeal(const Key256& key, const uint8_t nonce[kGcmNonce], ByteView ad, ByteView plain, Bytes& out) {
  EVP_CIPHER_CTX* ctx = threadCtx();
  int len = 0;
  if (EVP_EncryptInit_ex(ctx, EVP_aes_256_gcm(), nullptr, key.data(), nonce) != 1) fatal("EncryptInit");
  if (!ad.empty() && EVP_EncryptUpdate(ctx, nullptr, &len, ad.data(), static_cast<int>(ad.size())) != 1)
    fatal("EncryptUpdate(ad)");
  const size_t base = out.size();
  out.resize(base + plain.size() + kGcmTag);
  if (!plain.empty() &&
      EVP_EncryptUpdate(ctx, out.data() + base, &len, plain.data(), static_cast<int>(plain.size())) != 1)
    fatal("EncryptUpdate");
  if (EVP_EncryptFinal_ex(ctx, out.data() + base + plain.size(), &len) != 1) fatal("EncryptFinal");
  if (EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, kGcmTag, out.data() + base + plain.size()) != 1)
    fatal("GET_TAG");
}

Status gcmOpen(const Key256& key, const uint8_t nonce[kGcmNonce], ByteView ad, ByteView sealed, Bytes& out) {
  if (sealed.size() < kGcmTag) return dataLoss("ciphertext shorter than its tag");
  const size_t n = sealed.size() - kGcmTag;
  EVP_CIPHER_CTX* ctx = threadCtx();
  int len = 0;
  if (EVP_DecryptInit_ex(ctx, EVP_aes_256_gcm(), nullptr, key.data(), nonce) != 1) fatal("DecryptInit");
  if (!ad.empty() && EVP_DecryptUpdate(ctx, nullptr, &len, ad.data(), static_cast<int>(ad.size())) != 1)
    fatal("DecryptUpdate(ad)");
  out.resize(n);
  if (n > 0 && EVP_DecryptUpdate(ctx, out.data(), &len, sealed.data(), static_cast<int>(n)) != 1)
    fatal("DecryptUpdate");
  uint8_t tag[kGcmTag];
  std::copy(sealed.end() - kGcmTag, sealed.end(), tag);
  if (EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, kGcmTag, tag) != 1) fatal("SET_TAG");
  if (EVP_DecryptFinal_ex(ctx, out.data() + n, &len) != 1) {
    OPENSSL_cleanse(out.data(), out.size());
    out.clear();
    return dataLoss("authentication tag mismatch");
  }
  return okStatus();
}

Digest sha256(ByteView data) {
  Digest d;
  SHA256(data.data(), data.size(), d.data());
  return d;
}

Digest hmacSha256(const Key256& key, ByteView data) {
  Digest d;
  unsigned int len = 0;
  if (HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()), data.data(), data.size(), d.data(), &len) ==
      nullptr)
    fatal("HMAC");
  return d;
}

Key256 hkdfSha256(ByteView ikm, std::string_view label) {
  Key256 out;
  EVP_PKEY_CTX* pctx = EVP_PKEY_CTX_new_id(EVP_PKEY_HKDF, nullptr);
  size_t outlen = out.size();
  static const uint8_t kSalt[] = "bastion-kdf-v1";
  if (pctx == nullptr || EVP_PKEY_derive_init(pctx) <= 0 || EVP_PKEY_CTX_set_hkdf_md(pctx, EVP_sha256()) <= 0 ||
      EVP_PKEY_CTX_set1_hkdf_salt(pctx, kSalt, sizeof kSalt - 1) <= 0 ||
      EVP_PKEY_CTX_set1_hkdf_key(pctx, ikm.data(), static_cast<int>(ikm.size())) <= 0 ||
      EVP_PKEY_CTX_add1_hkdf_info(pctx, reinterpret_cast<const uint8_t*>(label.data()),
                                  static_cast<int>(label.size())) <= 0 ||
      EVP_PKEY_derive(pctx, out.data(), &outlen) <= 0)
    fatal("HKDF");
  EVP_PKEY_CTX_free(pctx);
  return out;
}

struct Sha256::Impl {
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  ~Impl() { EVP_MD_CTX_free(ctx); }
};
Sha256::Sha256() : impl_(std::make_unique<Impl>()) {
  if (impl_->ctx == nullptr || EVP_DigestInit_ex(impl_->ctx, EVP_sha256(), nullptr) != 1) fatal("DigestInit");
}
Sha256::~Sha256() = default;
void Sha256::update(ByteView data) {
  if (EVP_DigestUpdate(impl_->ctx, data.data(), data.size()) != 1) fatal("DigestUpdate");
}
Digest Sha256::finish() {
  Digest d;
  unsigned int len = 0;
  if (EVP_DigestFinal_ex(impl_->ctx, d.data(), &len) != 1) fatal("DigestFinal");
  return d;
}

bool equalConstantTime(ByteView a, ByteView b) {
  return a.size() == b.size() && CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

}  // namespace bastion::crypto
