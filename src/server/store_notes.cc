#include "server/store_notes.h"

#include <iostream>
#include <vector>

#include "service/store_note.h"

namespace bastion::server {

StatusOr<NoteRecovery> recoverFromNotes(storage::PackBlobStore& files, index::SqliteIndex& index,
                                        audit::AuditStore& audit) {
  ASSIGN_OR_RETURN(auto marks, audit.noteMarks());
  std::map<uint32_t, uint64_t> from, ends;
  for (const auto& [pack, mark] : marks) from[pack] = static_cast<uint64_t>(mark.offset);
  std::vector<storage::PackBlobStore::Note> notes;
  RETURN_IF_ERROR(files.forEachNote(from, ends, [&](const storage::PackBlobStore::Note& n) {
    notes.push_back(n);
    return okStatus();
  }));
  NoteRecovery done;
  for (const auto& n : notes) {
    auto note = decodeStoreNote(n.body);
    auto record = note && !note->index.empty() ? index.openNote(note->index, n.id)
                                               : StatusOr<InstanceRecord>(dataLoss("no index part"));
    if (!record.ok()) {
      std::cerr << "store notes: the note kept with object " << n.id << " does not open (" << record.status().toString()
                << "); skipped\n";
      continue;
    }
    // Only for an object still stored: a store whose index commit failed, or
    // that found its instance already stored, removed its object.
    auto object = files.open(n.id);
    if (!object.ok() && object.status().code() == StatusCode::kNotFound) continue;
    if (!object.ok()) return object.status();
    ASSIGN_OR_RETURN(auto held, index.findInstance(record->sop_uid));
    if (held && held->blob_id != n.id) continue;  // the instance lives in another object: this one is a leftover
    if (!held) {
      // Lost with the operating system (or never acknowledged: it is stored all the same).
      ASSIGN_OR_RETURN(PutResult put, index.putInstance(*record));
      if (put == PutResult::kInserted) ++done.instances;
    }
    if (note->audit.empty()) continue;
    auto mark = marks.find(n.pack);
    auto r = audit.appendFromNote(note->audit, n.id, mark == marks.end() ? 0 : mark->second.seq);
    if (!r.ok() && r.status().code() == StatusCode::kDataLoss) {
      std::cerr << "store notes: the audit part of the note kept with object " << n.id << " does not open ("
                << r.status().toString() << "); skipped\n";
      continue;
    }
    if (!r.ok()) return r.status();
    if (*r) ++done.records;
  }
  ASSIGN_OR_RETURN(int64_t head, audit.lastSeq());
  RETURN_IF_ERROR(audit.setNoteMarks(ends, head));
  RETURN_IF_ERROR(audit.sync());
  return done;
}

NoteSettler::NoteSettler(storage::PackBlobStore& files, index::SqliteIndex& index, audit::AuditStore& audit,
                         StoreService& store, std::chrono::milliseconds interval)
    : files_(files), index_(index), audit_(audit), store_(store), interval_(interval) {
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
  // those stores are done, their rows are in the index and their records
  // precede the marks in the trail's WAL.
  store_.awaitEarlierStores();
  std::map<uint32_t, uint64_t> changed;
  for (const auto& [pack, end] : ends)
    if (marked_[pack] < end) changed[pack] = end;
  if (!changed.empty()) {
    RETURN_IF_ERROR(index_.sync());  // before any mark says these rows need no note
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
      std::cerr << "store notes: cannot mark settled notes: " << s.toString() << " (retried)\n";
    lock.lock();
  }
  lock.unlock();
  (void)settle();  // the stores then close: the trail with a synced checkpoint
}

}  // namespace bastion::server
