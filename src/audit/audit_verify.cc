// verifyAuditStore: the offline proof of the trail (bastion audit verify).
#include <filesystem>
#include <map>

#include "audit/audit_db.h"
#include "audit/audit_store.h"

namespace bastion::audit {

StatusOr<VerifyReport> verifyAuditStore(const std::string& path, const PublicKey& key,
                                        const std::optional<Checkpoint>& exported, int64_t tail_every,
                                        const AuditKeys* mac_key) {
  if (!std::filesystem::exists(path)) return notFound("no audit trail at " + path);
  ASSIGN_OR_RETURN(auto db, index::Db::open(path, true, auditMigrations()));
  VerifyReport rep;
  auto fail = [&](int64_t seq, std::string why) {
    rep.ok = false;
    rep.bad_seq = seq;
    rep.problem = std::move(why);
    return rep;
  };
  if (Status t = refuseTriggers(*db); !t.ok()) return fail(0, t.message());

  // The checkpoints: each signed, each naming its predecessor, none further
  // from it than the cadence it states.
  std::map<int64_t, Checkpoint> cps;
  std::optional<VerifyReport> bad;
  int64_t prev_cp = 0;
  RETURN_IF_ERROR(forEachCheckpoint(*db, [&](const Checkpoint& cp) {
    if (bad) return okStatus();
    if (!checkpointValid(cp, key)) {
      bad = fail(cp.seq, "checkpoint signature does not verify");
    } else if (cp.prev_seq != prev_cp) {
      bad = fail(prev_cp + 1, "checkpoint chain broken after record " + std::to_string(prev_cp) +
                                  " (a checkpoint was deleted or inserted)");
    } else if (cp.seq - cp.prev_seq > cp.every) {
      bad = fail(cp.prev_seq + 1, "records " + std::to_string(cp.prev_seq + 1) + "-" + std::to_string(cp.seq) +
                                      " were never signed at the cadence (checkpoints deleted?)");
    }
    prev_cp = cp.seq;
    cps.emplace(cp.seq, cp);
    return okStatus();
  }));
  if (bad) return *bad;
  rep.checkpoints = static_cast<int64_t>(cps.size());
  if (exported && !checkpointValid(*exported, key))
    return fail(exported->seq, "the exported checkpoint's signature does not verify");

  // The records: contiguous, each linked to its predecessor, each hashing to
  // what it stores, and matching every checkpoint that names it.
  Bytes prev(32, 0);
  int64_t expected = 1;
  std::optional<VerifyReport> broken;
  RETURN_IF_ERROR(forEachRecord(*db, 0, INT64_MAX, [&](const StoredRecord& r) {
    if (r.seq != expected) {
      broken = fail(expected, "record missing (deleted, inserted or renumbered)");
    } else if (r.prev != prev) {
      broken = fail(r.seq, "record does not follow its predecessor (inserted, deleted or reordered)");
    } else if (recordHash(r) != r.hash) {
      broken = fail(r.seq, "record content altered");
    } else if (mac_key && recordMac(r, *mac_key) != r.mac) {
      broken = fail(r.seq, "record not written by this archive (MAC does not verify)");
    } else if (auto it = cps.find(r.seq); it != cps.end() && it->second.hash != r.hash) {
      broken = fail(r.seq, "record differs from its signed checkpoint");
    } else if (exported && exported->seq == r.seq && exported->hash != r.hash) {
      broken = fail(r.seq, "record differs from the exported checkpoint");
    }
    if (broken) return false;
    prev = r.hash;
    ++expected;
    ++rep.records;
    return true;
  }));
  if (broken) return *broken;
  if (rep.records == 0) return fail(1, "the trail is empty (a new, wiped or replaced store)");
  if (!cps.empty() && cps.rbegin()->first > rep.records)
    return fail(rep.records + 1, "trail truncated: a signed checkpoint names record " +
                                     std::to_string(cps.rbegin()->first));
  if (exported && exported->seq > rep.records)
    return fail(rep.records + 1, "trail truncated: the exported checkpoint names record " +
                                     std::to_string(exported->seq));
  rep.unsigned_tail = rep.records - prev_cp;
  const int64_t every = cps.empty() ? tail_every : cps.rbegin()->second.every;
  if (rep.unsigned_tail > every)
    return fail(prev_cp + 1, std::to_string(rep.unsigned_tail) + " records after the last checkpoint, more than the "
                                 "cadence of " + std::to_string(every) + " (checkpoints deleted?)");
  return rep;
}

}  // namespace bastion::audit
