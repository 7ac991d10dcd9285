// The stored form of an audit event and the cryptography around it:
//   - PHI (patient ID/name, query keys) sealed with AES-256-GCM, bound to the
//     record's position; the patient ID also as a keyed token for search;
//   - the hash chain: each record's hash covers its position, every field
//     as stored and the previous record's hash; a keyed MAC of that hash;
//   - checkpoints: (position, hash, time) signed with the archive's Ed25519
//     key, so that a rewritten chain does not verify either.
// All keys are derived from the Keyring (KEK); an auditor verifies with the
// public key alone.
#pragma once

#include <array>
#include <string>

#include "bastion/audit/audit_log.h"
#include "bastion/common/bytes.h"
#include "bastion/crypto/keyring.h"

namespace bastion::audit {

using PublicKey = std::array<uint8_t, 32>;

struct AuditKeys {
  Key256 phi;         // seals the PHI of each record
  Key256 token;       // keyed patient tokens (search without decrypting)
  Key256 mac;         // per-record MAC: only the archive can write a record it will sign
  Key256 note;        // seals events kept as notes with stored objects (AuditLog::noteFor)
  PublicKey sign_public;
  std::array<uint8_t, 64> sign_secret;
  static AuditKeys derive(const Keyring& keyring);
};

// A record as the store keeps it. `phi` is nonce || ciphertext || tag, or
// empty when the event has no PHI; `patient_token` is empty without a patient.
struct StoredRecord {
  int64_t seq = 0;
  int64_t time_us = 0;  // microseconds since the epoch, UTC
  std::string action, outcome, severity, actor, user, source, cert, study, rule, detail;
  int64_t count = 0;
  Bytes patient_token;
  Bytes phi;
  Bytes prev;  // hash of record seq-1 (32 zero bytes for the first)
  Bytes hash;  // recordHash() of this record
  Bytes mac;   // recordMac(): HMAC-SHA256 of `hash` under the archive's MAC key
};

// Longest value kept for one field; longer values are cut (and marked), so a
// hostile 1 MB name costs the store a bounded amount.
inline constexpr size_t kMaxFieldBytes = 4096;
inline constexpr size_t kMaxQueryBytes = 65536;

// Builds the stored record of `event` at position `seq` after `prev`.
StoredRecord sealRecord(const AuditEvent& event, int64_t seq, ByteView prev, const AuditKeys& keys, Random& random);
// The event back, PHI decrypted. kDataLoss if the sealed PHI does not open.
StatusOr<AuditEvent> openRecord(const StoredRecord& record, const AuditKeys& keys);
// An event as a note (AuditLog::noteFor): every field as JSON (each cut
// like a record's), sealed under keys.note with AES-256-GCM and bound to the
// id of the object it is kept with.
Bytes sealNote(const AuditEvent& event, std::string_view object_id, const AuditKeys& keys, Random& random);
// The event back; kDataLoss if the note does not open for this object.
StatusOr<AuditEvent> openNote(ByteView note, std::string_view object_id, const AuditKeys& keys);
// SHA-256 over prev, position and every field, each length-prefixed.
Bytes recordHash(const StoredRecord& record);
// HMAC-SHA256 of the record's hash under keys.mac. Anyone can recompute a
// SHA-256 chain; only the archive can produce these, so a tail rewritten by
// someone without the KEK is never signed and fails verification with the key.
Bytes recordMac(const StoredRecord& record, const AuditKeys& keys);
// The search token of a patient ID (empty ID -> empty token).
Bytes patientToken(const AuditKeys& keys, std::string_view patient_id);

// A signed statement "record `seq` has hash `hash`". Checkpoints are chained
// (each names the previous one) and carry the cadence in force, so that
// deleting one, or all of them, shows: verify requires a checkpoint at least
// every `every` records.
struct Checkpoint {
  int64_t seq = 0;
  Bytes hash;
  int64_t time_us = 0;
  int64_t prev_seq = 0;  // the previous checkpoint's position (0 for the first)
  int64_t every = 0;     // the cadence: records between checkpoints at most
  Bytes signature;       // Ed25519 over the label and every field above
  // One line: "bastion-audit-checkpoint-v2 <seq> <hash hex> <time_us> <prev_seq> <every> <signature hex>".
  std::string toLine() const;
  static StatusOr<Checkpoint> parse(std::string_view line);
};

Checkpoint signCheckpoint(int64_t seq, ByteView hash, int64_t time_us, int64_t prev_seq, int64_t every,
                          const AuditKeys& keys);
bool checkpointValid(const Checkpoint& cp, const PublicKey& key);

std::string base64(ByteView data);

// A time as stored: microseconds since the epoch, UTC.
inline int64_t toMicros(std::chrono::system_clock::time_point t) {
  return std::chrono::duration_cast<std::chrono::microseconds>(t.time_since_epoch()).count();
}

}  // namespace bastion::audit
