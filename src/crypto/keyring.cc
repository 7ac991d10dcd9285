#include "bastion/crypto/keyring.h"

#include <openssl/crypto.h>
#include <sys/stat.h>

#include <cstring>

#include "crypto/aead.h"
#include "storage/atomic_file.h"

namespace bastion {
namespace {

constexpr std::string_view kKeyFileHeader = "bastion-kek-v1 ";

class FileKeyring final : public Keyring {
 public:
  FileKeyring(const Key256& kek, Random& random) : kek_(kek), random_(random) {
    wrap_key_ = crypto::hkdfSha256(kek_, "data-key-wrap");
  }
  ~FileKeyring() override {
    OPENSSL_cleanse(kek_.data(), kek_.size());
    OPENSSL_cleanse(wrap_key_.data(), wrap_key_.size());
  }

  Bytes wrap(const Key256& data_key, ByteView context) const override {
    uint8_t nonce[crypto::kGcmNonce];
    random_.fill(nonce);
    Bytes out(nonce, nonce + sizeof nonce);
    crypto::gcmSeal(wrap_key_, nonce, context, data_key, out);
    return out;
  }

  StatusOr<Key256> unwrap(ByteView wrapped, ByteView context) const override {
    if (wrapped.size() != crypto::kGcmNonce + 32 + crypto::kGcmTag) return dataLoss("wrapped key has wrong size");
    Bytes plain;
    RETURN_IF_ERROR(crypto::gcmOpen(wrap_key_, wrapped.data(), context, wrapped.subspan(crypto::kGcmNonce), plain));
    Key256 key;
    std::memcpy(key.data(), plain.data(), key.size());
    OPENSSL_cleanse(plain.data(), plain.size());
    return key;
  }

  Key256 derive(std::string_view label) const override { return crypto::hkdfSha256(kek_, label); }

 private:
  Key256 kek_;
  Key256 wrap_key_;
  Random& random_;
};

}  // namespace

std::unique_ptr<Keyring> makeKeyring(const Key256& kek, Random& random) {
  return std::make_unique<FileKeyring>(kek, random);
}

Status createKeyFile(const std::string& path, Random& random) {
  Key256 kek;
  random.fill(kek);
  std::string text = std::string(kKeyFileHeader) + toHex(kek) + "\n";
  OPENSSL_cleanse(kek.data(), kek.size());
  Status s = storage::writeNewFile(path, asBytes(text), 0600);
  OPENSSL_cleanse(text.data(), text.size());
  return s;
}

StatusOr<std::unique_ptr<Keyring>> loadFileKeyring(const std::string& path, Random& random) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return notFound("key file " + path + " not found");
  if ((st.st_mode & 077) != 0) return permissionDenied("key file " + path + " must have mode 0600");
  ASSIGN_OR_RETURN(Bytes raw, storage::readFile(path, 4096));
  std::string_view text = asChars(raw);
  while (!text.empty() && (text.back() == '\n' || text.back() == '\r')) text.remove_suffix(1);
  if (text.substr(0, kKeyFileHeader.size()) != kKeyFileHeader) return invalidArgument("not a Bastion key file");
  Bytes kek;
  if (!fromHex(text.substr(kKeyFileHeader.size()), kek) || kek.size() != 32)
    return invalidArgument("key file is corrupt");
  Key256 key;
  std::memcpy(key.data(), kek.data(), 32);
  OPENSSL_cleanse(kek.data(), kek.size());
  OPENSSL_cleanse(raw.data(), raw.size());
  auto ring = makeKeyring(key, random);
  OPENSSL_cleanse(key.data(), key.size());
  return ring;
}

}  // namespace bastion
