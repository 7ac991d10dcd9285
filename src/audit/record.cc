#include "audit/record.h"

#include <sodium.h>

#include <charconv>
#include <cstring>
#include <nlohmann/json.hpp>

#include "crypto/aead.h"

namespace bastion::audit {
namespace {

constexpr std::string_view kCheckpointLabel = "bastion-audit-checkpoint-v2";

std::string cut(const std::string& s, size_t max) {
  if (s.size() <= max) return s;
  return s.substr(0, max) + "...[" + std::to_string(s.size() - max) + " bytes cut]";
}

void putU64(Bytes& out, uint64_t v) {
  for (int i = 7; i >= 0; --i) out.push_back(static_cast<uint8_t>(v >> (8 * i)));
}

void putField(Bytes& out, ByteView v) {
  putU64(out, v.size());
  out.insert(out.end(), v.begin(), v.end());
}

Bytes phiAd(int64_t seq) {
  Bytes ad(asBytes("bastion-audit-phi-v1").begin(), asBytes("bastion-audit-phi-v1").end());
  putU64(ad, static_cast<uint64_t>(seq));
  return ad;
}

Bytes checkpointMessage(const Checkpoint& cp) {
  Bytes m(kCheckpointLabel.begin(), kCheckpointLabel.end());
  putU64(m, static_cast<uint64_t>(cp.seq));
  putField(m, cp.hash);
  putU64(m, static_cast<uint64_t>(cp.time_us));
  putU64(m, static_cast<uint64_t>(cp.prev_seq));
  putU64(m, static_cast<uint64_t>(cp.every));
  return m;
}

}  // namespace

AuditKeys AuditKeys::derive(const Keyring& keyring) {
  if (sodium_init() < 0) std::abort();  // libsodium cannot run: nothing is safe
  AuditKeys k;
  k.phi = keyring.derive("bastion-audit-phi-v1");
  k.token = keyring.derive("bastion-audit-patient-token-v1");
  k.mac = keyring.derive("bastion-audit-record-mac-v1");
  k.note = keyring.derive("bastion-audit-note-v1");
  const Key256 seed = keyring.derive("bastion-audit-ed25519-v1");
  crypto_sign_seed_keypair(k.sign_public.data(), k.sign_secret.data(), seed.data());
  return k;
}

Bytes patientToken(const AuditKeys& keys, std::string_view patient_id) {
  if (patient_id.empty()) return {};
  const auto mac = crypto::hmacSha256(keys.token, asBytes(patient_id));
  return Bytes(mac.begin(), mac.begin() + 16);
}

StoredRecord sealRecord(const AuditEvent& e, int64_t seq, ByteView prev, const AuditKeys& keys, Random& random) {
  StoredRecord r;
  r.seq = seq;
  r.time_us = toMicros(e.time);
  r.action = cut(e.action, 64);
  r.outcome = cut(e.outcome, 64);
  r.severity = cut(e.severity, 64);
  r.actor = cut(e.actor_ae, 256);
  r.user = cut(e.user, 256);
  r.source = cut(e.source_address, 256);
  r.cert = cut(e.cert_sha256, 128);
  r.study = cut(e.study_uid, 128);
  r.rule = cut(e.rule, 256);
  r.detail = cut(e.detail, kMaxFieldBytes);
  r.count = e.instance_count;
  const std::string pid = cut(e.patient_id, 256);
  r.patient_token = patientToken(keys, pid);
  if (!pid.empty() || !e.patient_name.empty() || !e.query.empty()) {
    nlohmann::json j;
    j["id"] = pid;
    j["name"] = cut(e.patient_name, kMaxFieldBytes);
    j["query"] = cut(e.query, kMaxQueryBytes);
    const std::string plain = j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    r.phi.resize(crypto::kGcmNonce);
    random.fill(r.phi);
    Bytes nonce(r.phi);
    crypto::gcmSeal(keys.phi, nonce.data(), phiAd(seq), asBytes(plain), r.phi);
  }
  r.prev.assign(prev.begin(), prev.end());
  r.hash = recordHash(r);
  r.mac = recordMac(r, keys);
  return r;
}

namespace {
Bytes noteAd(std::string_view object_id) {
  constexpr std::string_view kLabel = "bastion-audit-note-v1";
  Bytes ad(kLabel.size() + object_id.size());
  std::copy(kLabel.begin(), kLabel.end(), ad.begin());
  std::copy(object_id.begin(), object_id.end(), ad.begin() + static_cast<std::ptrdiff_t>(kLabel.size()));
  return ad;
}
}  // namespace

Bytes sealNote(const AuditEvent& e, std::string_view object_id, const AuditKeys& keys, Random& random) {
  const nlohmann::json j = {{"time_us", toMicros(e.time)},
                            {"action", cut(e.action, 64)},
                            {"outcome", cut(e.outcome, 64)},
                            {"severity", cut(e.severity, 64)},
                            {"actor", cut(e.actor_ae, 256)},
                            {"user", cut(e.user, 256)},
                            {"source", cut(e.source_address, 256)},
                            {"cert", cut(e.cert_sha256, 128)},
                            {"study", cut(e.study_uid, 128)},
                            {"rule", cut(e.rule, 256)},
                            {"detail", cut(e.detail, kMaxFieldBytes)},
                            {"count", e.instance_count},
                            {"patient_id", cut(e.patient_id, 256)},
                            {"patient_name", cut(e.patient_name, kMaxFieldBytes)},
                            {"query", cut(e.query, kMaxFieldBytes)}};
  const std::string plain = j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  Bytes out(crypto::kGcmNonce);
  random.fill(out);
  const Bytes nonce(out);
  crypto::gcmSeal(keys.note, nonce.data(), noteAd(object_id), asBytes(plain), out);
  return out;
}

StatusOr<AuditEvent> openNote(ByteView note, std::string_view object_id, const AuditKeys& keys) {
  if (note.size() < crypto::kGcmNonce + crypto::kGcmTag) return dataLoss("audit note truncated");
  Bytes plain;
  RETURN_IF_ERROR(crypto::gcmOpen(keys.note, note.data(), noteAd(object_id), note.subspan(crypto::kGcmNonce), plain));
  const auto j = nlohmann::json::parse(asChars(plain), nullptr, false);
  if (!j.is_object()) return dataLoss("audit note malformed");
  AuditEvent e;
  e.time = std::chrono::system_clock::time_point(std::chrono::microseconds(j.value("time_us", int64_t{0})));
  e.action = j.value("action", "");
  e.outcome = j.value("outcome", "");
  e.severity = j.value("severity", "");
  e.actor_ae = j.value("actor", "");
  e.user = j.value("user", "");
  e.source_address = j.value("source", "");
  e.cert_sha256 = j.value("cert", "");
  e.study_uid = j.value("study", "");
  e.rule = j.value("rule", "");
  e.detail = j.value("detail", "");
  e.instance_count = j.value("count", uint32_t{0});
  e.patient_id = j.value("patient_id", "");
  e.patient_name = j.value("patient_name", "");
  e.query = j.value("query", "");
  return e;
}

Bytes recordMac(const StoredRecord& r, const AuditKeys& keys) {
  const auto m = crypto::hmacSha256(keys.mac, r.hash);
  return Bytes(m.begin(), m.end());
}

StatusOr<AuditEvent> openRecord(const StoredRecord& r, const AuditKeys& keys) {
  AuditEvent e;
  e.time = std::chrono::system_clock::time_point(std::chrono::microseconds(r.time_us));
  e.action = r.action;
  e.outcome = r.outcome;
  e.severity = r.severity;
  e.actor_ae = r.actor;
  e.user = r.user;
  e.source_address = r.source;
  e.cert_sha256 = r.cert;
  e.study_uid = r.study;
  e.rule = r.rule;
  e.detail = r.detail;
  e.instance_count = static_cast<uint32_t>(r.count);
  if (!r.phi.empty()) {
    if (r.phi.size() < crypto::kGcmNonce + crypto::kGcmTag) return dataLoss("audit record PHI truncated");
    Bytes plain;
    RETURN_IF_ERROR(crypto::gcmOpen(keys.phi, r.phi.data(), phiAd(r.seq),
                                    ByteView(r.phi).subspan(crypto::kGcmNonce), plain));
    const auto j = nlohmann::json::parse(asChars(plain), nullptr, false);
    if (!j.is_object()) return dataLoss("audit record PHI malformed");
    e.patient_id = j.value("id", "");
    e.patient_name = j.value("name", "");
    e.query = j.value("query", "");
  }
  return e;
}

Bytes recordHash(const StoredRecord& r) {
  Bytes m;
  m.reserve(512 + r.detail.size() + r.phi.size());
  const std::string_view label = "bastion-audit-record-v1";
  m.insert(m.end(), label.begin(), label.end());
  putField(m, r.prev);
  putU64(m, static_cast<uint64_t>(r.seq));
  putU64(m, static_cast<uint64_t>(r.time_us));
  for (const std::string* s : {&r.action, &r.outcome, &r.severity, &r.actor, &r.user, &r.source, &r.cert, &r.study,
                               &r.rule, &r.detail})
    putField(m, asBytes(*s));
  putU64(m, static_cast<uint64_t>(r.count));
  putField(m, r.patient_token);
  putField(m, r.phi);
  const auto d = crypto::sha256(m);
  return Bytes(d.begin(), d.end());
}

Checkpoint signCheckpoint(int64_t seq, ByteView hash, int64_t time_us, int64_t prev_seq, int64_t every,
                          const AuditKeys& keys) {
  Checkpoint cp;
  cp.seq = seq;
  cp.hash.assign(hash.begin(), hash.end());
  cp.time_us = time_us;
  cp.prev_seq = prev_seq;
  cp.every = every;
  const Bytes m = checkpointMessage(cp);
  cp.signature.resize(crypto_sign_BYTES);
  crypto_sign_detached(cp.signature.data(), nullptr, m.data(), m.size(), keys.sign_secret.data());
  return cp;
}

bool checkpointValid(const Checkpoint& cp, const PublicKey& key) {
  if (cp.signature.size() != crypto_sign_BYTES || cp.hash.size() != 32 || cp.seq < 1 || cp.prev_seq < 0 ||
      cp.prev_seq >= cp.seq || cp.every < 1)
    return false;
  const Bytes m = checkpointMessage(cp);
  return crypto_sign_verify_detached(cp.signature.data(), m.data(), m.size(), key.data()) == 0;
}

std::string Checkpoint::toLine() const {
  return std::string(kCheckpointLabel) + " " + std::to_string(seq) + " " + toHex(hash) + " " +
         std::to_string(time_us) + " " + std::to_string(prev_seq) + " " + std::to_string(every) + " " +
         toHex(signature);
}

StatusOr<Checkpoint> Checkpoint::parse(std::string_view line) {
  std::vector<std::string> parts;
  size_t start = 0;
  while (start <= line.size()) {
    const size_t sp = line.find(' ', start);
    parts.emplace_back(line.substr(start, sp == std::string_view::npos ? std::string_view::npos : sp - start));
    if (sp == std::string_view::npos) break;
    start = sp + 1;
  }
  Checkpoint cp;
  if (parts.size() != 7 || parts[0] != kCheckpointLabel || !fromHex(parts[2], cp.hash) ||
      !fromHex(parts[6], cp.signature))
    return invalidArgument("not a Bastion audit checkpoint line");
  for (auto [text, out] : {std::pair{&parts[1], &cp.seq}, {&parts[3], &cp.time_us}, {&parts[4], &cp.prev_seq},
                           {&parts[5], &cp.every}}) {
    const auto [end, ec] = std::from_chars(text->data(), text->data() + text->size(), *out);
    if (ec != std::errc() || end != text->data() + text->size()) return invalidArgument("bad checkpoint number");
  }
  return cp;
}

std::string base64(ByteView data) {
  std::string out(sodium_base64_encoded_len(data.size(), sodium_base64_VARIANT_ORIGINAL), '\0');
  sodium_bin2base64(out.data(), out.size(), data.data(), data.size(), sodium_base64_VARIANT_ORIGINAL);
  out.resize(std::strlen(out.c_str()));
  return out;
}

}  // namespace bastion::audit
