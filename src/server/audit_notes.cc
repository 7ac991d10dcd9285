#include "server/audit_notes.h"

#include <iostream>
#include <set>
#include <vector>

namespace bastion::server {

StatusOr<size_t> recoverAuditNotes(storage::PackBlobStore& files, Index& index, audit::AuditStore& audit) {
  ASSIGN_OR_RETURN(auto marks, audit.noteMarks());
  std::map<uint32_t, uint64_t> from, ends;
  for (const auto& [pack, mark] : marks) from[pack] = static_cast<uint64_t>(mark.offset);
  std::vector<storage::PackBlobStore::Note> notes;
  RETURN_IF_ERROR(files.forEachNote(from, ends, [&](const storage::PackBlobStore::Note& n) {
    notes.push_back(n);
    return okStatus();
  }));
  size_t appended = 0;
  if (!notes.empty()) {
    // A note counts only for an object the index names: a store that stopped
    // before its index commit was never acknowledged (its blob goes at start-up).
    std::set<std::string> indexed;
    for (const auto& n : notes) indexed.insert(n.id);
    std::set<std::string> found;
    RETURN_IF_ERROR(index.forEachInstance([&](const InstanceLocation& l) {
      if (indexed.count(l.blob_id)) found.insert(l.blob_id);
    }));
    for (const auto& n : notes) {
      if (!found.count(n.id)) continue;
      auto mark = marks.find(n.pack);
      auto r = audit.appendFromNote(n.body, n.id, mark == marks.end() ? 0 : mark->second.seq);
      if (!r.ok() && r.status().code() == StatusCode::kDataLoss) {
        std::cerr << "audit: the note kept with object " << n.id << " does not open (" << r.status().toString()
                  << "); skipped\n";
        continue;
      }
      if (!r.ok()) return r.status();
      if (*r) ++appended;
    }
  }
  ASSIGN_OR_RETURN(int64_t head, audit.lastSeq());
  RETURN_IF_ERROR(audit.setNoteMarks(ends, head));
  RETURN_IF_ERROR(audit.sync());
  return appended;
}

NoteSettler::NoteSettler(storage::PackBlobStore& files, audit::AuditStore& audit, StoreService& store,
                         std::chrono::milliseconds interval)
    : files_(files), audit_(audit), store_(store), interval_(interval) {
  thread_ = std::thread([this] { run(); });
}

NoteSettler::~NoteSettler() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  thread_.join();
}

Status NoteSettler::settle() {
  std::lock_guard round(round_mu_);
  // The head first: the record of every note after the ends below comes later.
  ASSIGN_OR_RETURN(int64_t head, audit_.lastSeq());
  std::map<uint32_t, uint64_t> ends = files_.committedEnds();
  // Every note before these ends belongs to a store begun before now; once
  // those stores are done, their records precede the marks in the WAL.
  store_.awaitEarlierStores();
  std::map<uint32_t, uint64_t> changed;
  for (const auto& [pack, end] : ends)
    if (marked_[pack] < end) changed[pack] = end;
  if (!changed.empty()) {
    RETURN_IF_ERROR(audit_.setNoteMarks(changed, head));
    for (const auto& [pack, end] : changed) marked_[pack] = end;
  }
  // Records committed without a sync become durable within a round, and
  // only then may they be exported.
  ASSIGN_OR_RETURN(int64_t now, audit_.lastSeq());
  if (now > audit_.durableSeq() || !changed.empty()) RETURN_IF_ERROR(audit_.sync());
  return okStatus();
}

void NoteSettler::run() {
  std::unique_lock lock(mu_);
  while (!cv_.wait_for(lock, interval_, [&] { return stopping_; })) {
    lock.unlock();
    if (Status s = settle(); !s.ok())
      std::cerr << "audit: cannot mark settled notes: " << s.toString() << " (retried)\n";
    lock.lock();
  }
  lock.unlock();
  (void)settle();  // the store's closing checkpoint then makes these marks durable
}

}  // namespace bastion::server
