#include "crypto/pki.h"

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>
#include <sys/stat.h>

#include <cstdio>
#include <memory>

#include "bastion/common/bytes.h"
#include "crypto/aead.h"
#include "storage/atomic_file.h"

namespace bastion::crypto {
namespace {

struct Free {
  void operator()(EVP_PKEY* p) const { EVP_PKEY_free(p); }
  void operator()(X509* p) const { X509_free(p); }
  void operator()(BIO* p) const { BIO_free(p); }
};
template <typename T>
using Ptr = std::unique_ptr<T, Free>;

Ptr<EVP_PKEY> newKey() { return Ptr<EVP_PKEY>(EVP_EC_gen("P-256")); }

bool exists(const std::string& p) {
  struct stat st {};
  return ::stat(p.c_str(), &st) == 0;
}

std::string pemOf(EVP_PKEY* key) {
  Ptr<BIO> bio(BIO_new(BIO_s_mem()));
  PEM_write_bio_PrivateKey(bio.get(), key, nullptr, nullptr, 0, nullptr, nullptr);
  char* data = nullptr;
  long n = BIO_get_mem_data(bio.get(), &data);
  return std::string(data, static_cast<size_t>(n));
}
std::string pemOf(X509* cert) {
  Ptr<BIO> bio(BIO_new(BIO_s_mem()));
  PEM_write_bio_X509(bio.get(), cert);
  char* data = nullptr;
  long n = BIO_get_mem_data(bio.get(), &data);
  return std::string(data, static_cast<size_t>(n));
}

void addExt(X509* cert, X509* issuer, int nid, const std::string& value) {
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, issuer, cert, nullptr, nullptr, 0);
  X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &ctx, nid, value.c_str());
  if (ext) {
    X509_add_ext(cert, ext, -1);
    X509_EXTENSION_free(ext);
  }
}

Ptr<X509> makeCert(EVP_PKEY* subject_key, const std::string& cn, X509* issuer, EVP_PKEY* issuer_key, int days) {
  Ptr<X509> cert(X509_new());
  X509_set_version(cert.get(), 2);
  unsigned char serial[16];
  RAND_bytes(serial, sizeof serial);
  serial[0] &= 0x7f;
  BIGNUM* bn = BN_bin2bn(serial, sizeof serial, nullptr);
  BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(cert.get()));
  BN_free(bn);
  X509_gmtime_adj(X509_getm_notBefore(cert.get()), -300);
  X509_gmtime_adj(X509_getm_notAfter(cert.get()), static_cast<long>(days) * 86400);
  X509_set_pubkey(cert.get(), subject_key);
  X509_NAME* name = X509_get_subject_name(cert.get());
  X509_NAME_add_entry_by_txt(name, "O", MBSTRING_ASC, reinterpret_cast<const unsigned char*>("Bastion PACS"), -1,
                             -1, 0);
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8, reinterpret_cast<const unsigned char*>(cn.c_str()), -1, -1,
                             0);
  X509_set_issuer_name(cert.get(), issuer ? X509_get_subject_name(issuer) : name);
  (void)issuer_key;
  return cert;
}

StatusOr<Ptr<EVP_PKEY>> loadKey(const std::string& path) {
  FILE* f = std::fopen(path.c_str(), "r");
  if (!f) return notFound("cannot open " + path);
  Ptr<EVP_PKEY> key(PEM_read_PrivateKey(f, nullptr, nullptr, nullptr));
  std::fclose(f);
  if (!key) return invalidArgument("cannot parse private key " + path);
  return key;
}
StatusOr<Ptr<X509>> loadCert(const std::string& path) {
  FILE* f = std::fopen(path.c_str(), "r");
  if (!f) return notFound("cannot open " + path);
  Ptr<X509> cert(PEM_read_X509(f, nullptr, nullptr, nullptr));
  std::fclose(f);
  if (!cert) return invalidArgument("cannot parse certificate " + path);
  return cert;
}

}  // namespace

Status createCa(const std::string& key_path, const std::string& cert_path, const std::string& cn) {
  if (exists(key_path) || exists(cert_path)) return alreadyExists("CA files already exist");
  auto key = newKey();
  if (!key) return internalError("EC key generation failed");
  auto cert = makeCert(key.get(), cn, nullptr, key.get(), 3650);
  addExt(cert.get(), cert.get(), NID_basic_constraints, "critical,CA:TRUE,pathlen:0");
  addExt(cert.get(), cert.get(), NID_key_usage, "critical,keyCertSign,cRLSign");
  addExt(cert.get(), cert.get(), NID_subject_key_identifier, "hash");
  if (X509_sign(cert.get(), key.get(), EVP_sha256()) <= 0) return internalError("CA signing failed");
  RETURN_IF_ERROR(storage::writeNewFile(key_path, asBytes(pemOf(key.get())), 0600));
  return storage::writeNewFile(cert_path, asBytes(pemOf(cert.get())), 0644);
}

Status issueCertificate(const std::string& ca_key_path, const std::string& ca_cert_path, const IssueRequest& req,
                        const std::string& key_path, const std::string& cert_path) {
  if (exists(key_path) || exists(cert_path)) return alreadyExists(cert_path + " or its key already exists");
  ASSIGN_OR_RETURN(auto ca_key, loadKey(ca_key_path));
  ASSIGN_OR_RETURN(auto ca_cert, loadCert(ca_cert_path));
  auto key = newKey();
  if (!key) return internalError("EC key generation failed");
  auto cert = makeCert(key.get(), req.common_name, ca_cert.get(), ca_key.get(), req.days);
  addExt(cert.get(), ca_cert.get(), NID_basic_constraints, "critical,CA:FALSE");
  addExt(cert.get(), ca_cert.get(), NID_key_usage, "critical,digitalSignature,keyAgreement");
  addExt(cert.get(), ca_cert.get(), NID_ext_key_usage, req.server ? "serverAuth,clientAuth" : "clientAuth");
  addExt(cert.get(), ca_cert.get(), NID_authority_key_identifier, "keyid");
  std::string san;
  for (const auto& d : req.dns_names) san += (san.empty() ? "DNS:" : ",DNS:") + d;
  for (const auto& ip : req.ip_addresses) san += (san.empty() ? "IP:" : ",IP:") + ip;
  if (!san.empty()) addExt(cert.get(), ca_cert.get(), NID_subject_alt_name, san);
  if (X509_sign(cert.get(), ca_key.get(), EVP_sha256()) <= 0) return internalError("certificate signing failed");
  RETURN_IF_ERROR(storage::writeNewFile(key_path, asBytes(pemOf(key.get())), 0600));
  return storage::writeNewFile(cert_path, asBytes(pemOf(cert.get())), 0644);
}

std::string certificateFingerprintDer(const unsigned char* der, size_t len) {
  return toHex(sha256(ByteView(der, len)));
}

StatusOr<std::string> certificateFingerprintFile(const std::string& pem_path) {
  ASSIGN_OR_RETURN(auto cert, loadCert(pem_path));
  unsigned char* der = nullptr;
  int len = i2d_X509(cert.get(), &der);
  if (len <= 0) return internalError("cannot encode certificate");
  std::string fp = certificateFingerprintDer(der, static_cast<size_t>(len));
  OPENSSL_free(der);
  return fp;
}

}  // namespace bastion::crypto
