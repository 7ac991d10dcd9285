#include "dicom/dcmtk/association.h"

#include <dcmtk/dcmdata/dcdeftag.h>
#include <dcmtk/dcmdata/dcuid.h>
#include <dcmtk/dcmdata/dcxfer.h>
#include <dcmtk/dcmnet/dimse.h>

#include <cstring>
#include <vector>

#include "crypto/pki.h"
#include "dicom/dcmtk/dataset_io.h"
#include "service/prefetch.h"
#include "dicom/dcmtk/raw_store.h"
#include "dicom/dcmtk/store_scu.h"

namespace bastion::dicom {
namespace {

// DIMSE statuses (PS3.7 Annex C, PS3.4).
constexpr uint16_t kSuccess = 0x0000, kPending = 0xFF00, kCancel = 0xFE00, kNotAuthorized = 0x0124,
                   kOutOfResources = 0xA700, kCannotUnderstand = 0xC000, kDuplicateDifferent = 0xC010,
                   kIdentifierMismatch = 0xA900, kMoveDestinationUnknown = 0xA801, kSubOpsFailed = 0xB000,
                   kProcessingFailure = 0x0110, kUnableToProcess = 0xC001;

bool isOneOf(const char* uid, std::initializer_list<const char*> list) {
  for (const char* u : list)
    if (std::strcmp(uid, u) == 0) return true;
  return false;
}

bool isQueryRetrieveSyntax(const char* as) {
  return isOneOf(as, {UID_FINDPatientRootQueryRetrieveInformationModel, UID_FINDStudyRootQueryRetrieveInformationModel,
                      UID_GETPatientRootQueryRetrieveInformationModel, UID_GETStudyRootQueryRetrieveInformationModel,
                      UID_MOVEPatientRootQueryRetrieveInformationModel,
                      UID_MOVEStudyRootQueryRetrieveInformationModel});
}

void negotiate(T_ASC_Parameters* params) {
  const int n = ASC_countPresentationContexts(params);
  for (int i = 0; i < n; ++i) {
    T_ASC_PresentationContext pc;
    if (ASC_getPresentationContext(params, i, &pc).bad()) continue;
    const bool storage = dcmIsaStorageSOPClassUID(pc.abstractSyntax, ESSC_All);
    const bool service = std::strcmp(pc.abstractSyntax, UID_VerificationSOPClass) == 0 ||
                         isQueryRetrieveSyntax(pc.abstractSyntax);
    if (!storage && !service) {
      ASC_refusePresentationContext(params, pc.presentationContextID, ASC_P_ABSTRACTSYNTAXNOTSUPPORTED);
      continue;
    }
    const char* chosen = nullptr;
    if (storage) {
      // An SCU only proposes syntaxes it can produce; taking a compressed one
      // first means compressed images are stored exactly as the modality made
      // them, never decompressed and recompressed on the way.
      for (int t = 0; t < pc.transferSyntaxCount && !chosen; ++t)
        if (isEncapsulatedSyntax(pc.proposedTransferSyntaxes[t])) chosen = pc.proposedTransferSyntaxes[t];
      for (const char* want : {UID_LittleEndianExplicitTransferSyntax, UID_LittleEndianImplicitTransferSyntax,
                               UID_BigEndianExplicitTransferSyntax, UID_DeflatedExplicitVRLittleEndianTransferSyntax})
        for (int t = 0; t < pc.transferSyntaxCount && !chosen; ++t)
          if (std::strcmp(pc.proposedTransferSyntaxes[t], want) == 0) chosen = want;
    } else {
      for (const char* want : {UID_LittleEndianExplicitTransferSyntax, UID_LittleEndianImplicitTransferSyntax})
        for (int t = 0; t < pc.transferSyntaxCount && !chosen; ++t)
          if (std::strcmp(pc.proposedTransferSyntaxes[t], want) == 0) chosen = want;
    }
    if (!chosen) {
      ASC_refusePresentationContext(params, pc.presentationContextID, ASC_P_TRANSFERSYNTAXESNOTSUPPORTED);
      continue;
    }
    // Storage contexts proposed with the SCP role are for C-GET sub-operations.
    T_ASC_SC_ROLE role = ASC_SC_ROLE_DEFAULT;
    if (storage && (pc.proposedRole == ASC_SC_ROLE_SCP || pc.proposedRole == ASC_SC_ROLE_SCUSCP))
      role = pc.proposedRole;
    ASC_acceptPresentationContext(params, pc.presentationContextID, chosen, role);
  }
}

std::string acceptedSyntax(T_ASC_Association* assoc, T_ASC_PresentationContextID id, std::string* abstract) {
  T_ASC_PresentationContext pc;
  if (ASC_findAcceptedPresentationContext(assoc->params, id, &pc).bad()) return {};
  if (abstract) *abstract = pc.abstractSyntax;
  return pc.acceptedTransferSyntax;
}

uint16_t storeStatusFor(const Status& s) {
  switch (s.code()) {
    case StatusCode::kOk: return kSuccess;
    case StatusCode::kPermissionDenied: return kNotAuthorized;
    case StatusCode::kInvalidArgument: return kCannotUnderstand;
    case StatusCode::kResourceExhausted: return kOutOfResources;
    case StatusCode::kAlreadyExists: return kDuplicateDifferent;
    default: return kProcessingFailure;
  }
}

class Session {
 public:
  Session(T_ASC_Association* assoc, const AssociationConfig& cfg, Services& s, const CallContext& ctx)
      : assoc_(assoc), cfg_(cfg), s_(s), ctx_(ctx) {
    scan_limits_.max_depth = cfg.limits.max_sequence_depth;
    scan_limits_.max_items = cfg.limits.max_items_per_sequence;
    scan_limits_.max_inflated = cfg.limits.max_object_size;
  }

  void run() {
    while (true) {
      T_DIMSE_Message msg;
      T_ASC_PresentationContextID pres = 0;
      OFCondition c = DIMSE_receiveCommand(assoc_, DIMSE_NONBLOCKING, cfg_.idle_timeout_s, &pres, &msg, nullptr);
      if (c == DUL_PEERREQUESTEDRELEASE) {
        ASC_acknowledgeRelease(assoc_);
        return;
      }
      if (c == DUL_PEERABORTEDASSOCIATION) return;
      if (c.bad()) {
        ASC_abortAssociation(assoc_);
        return;
      }
      bool ok = true;
      switch (msg.CommandField) {
        case DIMSE_C_ECHO_RQ: ok = echo(pres, msg.msg.CEchoRQ); break;
        case DIMSE_C_STORE_RQ: ok = store(pres, msg.msg.CStoreRQ); break;
        case DIMSE_C_FIND_RQ: ok = find(pres, msg.msg.CFindRQ); break;
        case DIMSE_C_GET_RQ: ok = get(pres, msg.msg.CGetRQ); break;
        case DIMSE_C_MOVE_RQ: ok = move(pres, msg.msg.CMoveRQ); break;
        case DIMSE_C_CANCEL_RQ: break;  // nothing outstanding to cancel
        default: ok = false;           // unsupported command: abort
      }
      if (!ok) {
        ASC_abortAssociation(assoc_);
        return;
      }
    }
  }

 private:
  bool echo(T_ASC_PresentationContextID pres, T_DIMSE_C_EchoRQ& rq) {
    const Decision d = s_.auth.policy().decide(ctx_.principal, Action::kEcho, {}, s_.clock.now());
    AuditEvent e = auditEventFor(ctx_, s_.clock, "echo");
    e.outcome = d.allowed ? "success" : "denied";
    e.rule = d.rule;
    (void)s_.audit.append(e);
    return DIMSE_sendEchoResponse(assoc_, pres, &rq, d.allowed ? kSuccess : kNotAuthorized, nullptr).good();
  }

  // Receives the data set that follows a command into memory (bounded).
  // Returns false if the association must be aborted.
  // Each piece also goes to `ingest`, if given, as it arrives.
  bool receiveData(T_ASC_PresentationContextID pres, uint64_t cap, Bytes& out, bool& overflow,
                   StoreService::Ingest* ingest = nullptr) {
    MemorySink::Tap tap;
    if (ingest) tap = [ingest](ByteView piece) { ingest->append(piece); };
    MemoryOutputStream stream(cap, out, std::move(tap));
    T_ASC_PresentationContextID data_pres = pres;
    OFCondition c =
        DIMSE_receiveDataSetInFile(assoc_, DIMSE_NONBLOCKING, cfg_.idle_timeout_s, &data_pres, &stream, nullptr, nullptr);
    if (c.bad() || data_pres != pres) {
      AuditEvent e = auditEventFor(ctx_, s_.clock, "association");
      e.outcome = "failure";
      e.detail = std::string("aborted while receiving a data set: ") +
                 (c.bad() ? c.text() : "presentation context changed");
      (void)s_.audit.append(e);
      return false;
    }
    overflow = stream.overflowed();
    return true;
  }

  bool store(T_ASC_PresentationContextID pres, T_DIMSE_C_StoreRQ& rq) {
    T_DIMSE_C_StoreRSP rsp{};
    rsp.MessageIDBeingRespondedTo = rq.MessageID;
    OFStandard::strlcpy(rsp.AffectedSOPClassUID, rq.AffectedSOPClassUID, sizeof rsp.AffectedSOPClassUID);
    OFStandard::strlcpy(rsp.AffectedSOPInstanceUID, rq.AffectedSOPInstanceUID, sizeof rsp.AffectedSOPInstanceUID);
    rsp.opts = O_STORE_AFFECTEDSOPCLASSUID | O_STORE_AFFECTEDSOPINSTANCEUID;
    rsp.DataSetType = DIMSE_DATASET_NULL;
    if (rq.DataSetType == DIMSE_DATASET_NULL) {
      rsp.DimseStatus = kCannotUnderstand;
    } else {
      Bytes& data = recv_;  // reused across C-STOREs of this association
      bool overflow = false;
      std::string abstract;
      const std::string ts = acceptedSyntax(assoc_, pres, &abstract);
      // Digest and encryption run while the data set arrives.
      auto ingest =
          s_.store.beginStore(ctx_, {ts, rq.AffectedSOPClassUID, rq.AffectedSOPInstanceUID, {}, ""}, last_size_);
      if (!receiveData(pres, cfg_.limits.max_object_size, data, overflow, ingest.get())) return false;
      Status s;
      if (overflow) {
        s = resourceExhausted("object larger than the limit");
        AuditEvent e = auditEventFor(ctx_, s_.clock, "store");
        e.instance_count = 1;
        e.outcome = "failure";
        e.detail = s.toString();
        (void)s_.audit.append(e);
      } else {
        auto r = s_.store.finishStore(ctx_, {ts, rq.AffectedSOPClassUID, rq.AffectedSOPInstanceUID, data, ""},
                                      std::move(ingest));
        s = r.status();
        last_size_ = data.size();
      }
      rsp.DimseStatus = storeStatusFor(s);
      if (data.capacity() > kKeepBuffer) Bytes().swap(data);  // do not hold a huge buffer for the session
    }
    return DIMSE_sendStoreResponse(assoc_, pres, &rq, &rsp, nullptr).good();
  }

  struct Identifier {
    std::unique_ptr<DcmDataset> dataset;
    StatusOr<Query> query = invalidArgument("malformed identifier");
  };

  // Receives, checks and parses a query/retrieve identifier. Returns false
  // if the association must be aborted; `id.query` is an error for a
  // malformed identifier (answered with A900).
  bool readIdentifier(T_ASC_PresentationContextID pres, Identifier& id) {
    Bytes data;
    bool overflow = false;
    if (!receiveData(pres, 1 << 20, data, overflow)) return false;
    if (overflow) return true;
    auto ds = parseDataset(data, acceptedSyntax(assoc_, pres, nullptr), scan_limits_);
    if (!ds.ok()) return true;
    id.dataset = std::move(ds).value();
    id.query = queryFromIdentifier(*id.dataset);
    return true;
  }

  bool find(T_ASC_PresentationContextID pres, T_DIMSE_C_FindRQ& rq) {
    T_DIMSE_C_FindRSP rsp{};
    rsp.MessageIDBeingRespondedTo = rq.MessageID;
    OFStandard::strlcpy(rsp.AffectedSOPClassUID, rq.AffectedSOPClassUID, sizeof rsp.AffectedSOPClassUID);
    rsp.opts = O_FIND_AFFECTEDSOPCLASSUID;
    rsp.DataSetType = DIMSE_DATASET_NULL;
    Identifier id;
    if (!readIdentifier(pres, id)) return false;
    if (!id.query.ok()) {
      rsp.DimseStatus = kIdentifierMismatch;
      return DIMSE_sendFindResponse(assoc_, pres, &rq, &rsp, nullptr, nullptr).good();
    }
    bool send_ok = true, cancelled = false;
    Status s = s_.query.find(ctx_, *id.query, [&](const QueryRow& row) {
      auto out = responseIdentifier(*id.dataset, row);
      T_DIMSE_C_FindRSP pending = rsp;
      pending.DimseStatus = kPending;
      pending.DataSetType = DIMSE_DATASET_PRESENT;
      send_ok = DIMSE_sendFindResponse(assoc_, pres, &rq, &pending, out.get(), nullptr).good();
      if (send_ok && DIMSE_checkForCancelRQ(assoc_, pres, rq.MessageID).good()) cancelled = true;
      return send_ok && !cancelled;
    });
    if (!send_ok) return false;
    rsp.DimseStatus = cancelled ? kCancel
                      : s.ok()  ? kSuccess
                      : s.code() == StatusCode::kPermissionDenied ? kNotAuthorized
                                                                  : kUnableToProcess;
    return DIMSE_sendFindResponse(assoc_, pres, &rq, &rsp, nullptr, nullptr).good();
  }

  // Sends one stored instance as a C-STORE sub-operation on `target`.
  // Returns the sub-operation's DIMSE status (or a failure code).
  uint16_t sendInstance(T_ASC_Association* target, const InstanceLocation& loc, StatusOr<Bytes> bytes) {
    if (!bytes.ok()) {
      s_.retrieve.audit(ctx_, "integrity", loc.study_uid, 1, "failure", bytes.status().toString());
      return kProcessingFailure;
    }
    const uint16_t message_id = target->nextMsgID++;
    // In the stored syntax the object goes out bit for bit as it was received.
    // (DCMTK's lookup by syntax may fall back to another context: check.)
    T_ASC_PresentationContextID same =
        ASC_findAcceptedPresentationContextID(target, loc.sop_class_uid.c_str(), loc.transfer_syntax.c_str());
    if (same != 0 && acceptedSyntax(target, same, nullptr) != loc.transfer_syntax) same = 0;
    if (same != 0) {
      auto p10 = parsePart10(*bytes);
      if (!p10.ok()) return kProcessingFailure;
      RawStoreRequest req{same, message_id, loc.sop_class_uid, loc.sop_uid, move_originator_, move_originator_id_,
                          ByteView(*bytes).subspan(p10->dataset_offset)};
      const uint16_t st = sendStoreRaw(target, req, cfg_.idle_timeout_s);
      return st == 0xFFFF ? kProcessingFailure : st;
    }
    // Otherwise DCMTK converts between the syntaxes it can (uncompressed ones).
    const T_ASC_PresentationContextID pid = ASC_findAcceptedPresentationContextID(target, loc.sop_class_uid.c_str());
    if (pid == 0) return kUnableToProcess;
    std::string ts;
    auto ds = parseStoredObject(*bytes, ts);
    if (!ds.ok()) return kProcessingFailure;
    T_ASC_PresentationContext pc;
    ASC_findAcceptedPresentationContext(target->params, pid, &pc);
    DcmXfer want(pc.acceptedTransferSyntax);
    if ((*ds)->chooseRepresentation(want.getXfer(), nullptr).bad() || !(*ds)->canWriteXfer(want.getXfer()))
      return kUnableToProcess;
    T_DIMSE_C_StoreRQ req{};
    req.MessageID = message_id;
    OFStandard::strlcpy(req.AffectedSOPClassUID, loc.sop_class_uid.c_str(), sizeof req.AffectedSOPClassUID);
    OFStandard::strlcpy(req.AffectedSOPInstanceUID, loc.sop_uid.c_str(), sizeof req.AffectedSOPInstanceUID);
    req.DataSetType = DIMSE_DATASET_PRESENT;
    req.Priority = DIMSE_PRIORITY_MEDIUM;
    if (!move_originator_.empty()) {
      OFStandard::strlcpy(req.MoveOriginatorApplicationEntityTitle, move_originator_.c_str(),
                          sizeof req.MoveOriginatorApplicationEntityTitle);
      req.MoveOriginatorID = move_originator_id_;
      req.opts = O_STORE_MOVEORIGINATORAETITLE | O_STORE_MOVEORIGINATORID;
    }
    T_DIMSE_C_StoreRSP rsp{};
    DcmDataset* detail = nullptr;
    OFCondition c = DIMSE_storeUser(target, pid, &req, nullptr, ds->get(), nullptr, nullptr, DIMSE_NONBLOCKING,
                                    cfg_.idle_timeout_s, &rsp, &detail);
    delete detail;
    if (c.bad()) return kProcessingFailure;
    return rsp.DimseStatus;
  }

  struct Counts {
    uint16_t remaining = 0, completed = 0, failed = 0, warning = 0;
  };

  // Shared C-GET / C-MOVE loop: sends each instance on `target` and reports
  // progress through `pending(counts)`. Returns false if the requester's
  // association broke.
  template <typename Pending>
  bool transfer(T_ASC_Association* target, const std::vector<InstanceLocation>& list, Counts& n, Pending pending) {
    // The next objects are decrypted and verified while this one is sent.
    Prefetcher objects(list.size(), [&](size_t i) { return s_.retrieve.read(list[i]); });
    for (size_t i = 0; i < list.size(); ++i) {
      const uint16_t st = sendInstance(target, list[i], objects.next());
      n.remaining = static_cast<uint16_t>(std::min<size_t>(list.size() - i - 1, 65535));
      if (st == kSuccess) ++n.completed;
      else if ((st & 0xF000) == 0xB000) ++n.warning;
      else ++n.failed;
      if (n.remaining > 0 && !pending(n)) return false;
    }
    return true;
  }


  uint16_t finalStatus(const Counts& n) { return n.failed || n.warning ? kSubOpsFailed : kSuccess; }

  // Sub-operation counts in a C-GET or C-MOVE response (same fields, own flags).
  template <typename Rsp>
  static void setCounts(Rsp& r, const Counts& c, bool with_remaining, unsigned remaining_flag, unsigned other_flags) {
    r.NumberOfCompletedSubOperations = c.completed;
    r.NumberOfFailedSubOperations = c.failed;
    r.NumberOfWarningSubOperations = c.warning;
    r.opts |= other_flags;
    if (with_remaining) {
      r.NumberOfRemainingSubOperations = c.remaining;
      r.opts |= remaining_flag;
    }
  }
  static constexpr unsigned kGetCounts =
      O_GET_NUMBEROFCOMPLETEDSUBOPERATIONS | O_GET_NUMBEROFFAILEDSUBOPERATIONS | O_GET_NUMBEROFWARNINGSUBOPERATIONS;
  static constexpr unsigned kMoveCounts = O_MOVE_NUMBEROFCOMPLETEDSUBOPERATIONS |
                                          O_MOVE_NUMBEROFFAILEDSUBOPERATIONS | O_MOVE_NUMBEROFWARNINGSUBOPERATIONS;

  void auditTransfer(const char* action, const Query& q, const Counts& n, const std::string& note,
                     const std::string& rule) {
    s_.retrieve.audit(ctx_, action, studyUidOf(q), n.completed, n.failed ? "failure" : "success",
                      n.failed ? std::to_string(n.failed) + " sub-operations failed " + note : note, rule);
  }

  bool get(T_ASC_PresentationContextID pres, T_DIMSE_C_GetRQ& rq) {
    T_DIMSE_C_GetRSP rsp{};
    rsp.MessageIDBeingRespondedTo = rq.MessageID;
    OFStandard::strlcpy(rsp.AffectedSOPClassUID, rq.AffectedSOPClassUID, sizeof rsp.AffectedSOPClassUID);
    rsp.opts = O_GET_AFFECTEDSOPCLASSUID;
    rsp.DataSetType = DIMSE_DATASET_NULL;
    auto respond = [&](T_DIMSE_C_GetRSP& r) { return DIMSE_sendGetResponse(assoc_, pres, &rq, &r, nullptr, nullptr).good(); };
    Identifier id;
    if (!readIdentifier(pres, id)) return false;
    if (!id.query.ok()) {
      rsp.DimseStatus = kIdentifierMismatch;
      return respond(rsp);
    }
    auto list = s_.retrieve.select(ctx_, "get", *id.query);
    if (!list.ok()) {
      rsp.DimseStatus = list.status().code() == StatusCode::kPermissionDenied ? kNotAuthorized : kUnableToProcess;
      return respond(rsp);
    }
    Counts n;
    const bool alive = transfer(assoc_, list->instances, n, [&](const Counts& c) {
      T_DIMSE_C_GetRSP p = rsp;
      p.DimseStatus = kPending;
      setCounts(p, c, true, O_GET_NUMBEROFREMAININGSUBOPERATIONS, kGetCounts);
      return respond(p);
    });
    auditTransfer("get", *id.query, n, "", list->rule);
    if (!alive) return false;
    rsp.DimseStatus = finalStatus(n);
    setCounts(rsp, n, false, 0, kGetCounts);
    return respond(rsp);
  }

  bool move(T_ASC_PresentationContextID pres, T_DIMSE_C_MoveRQ& rq) {
    T_DIMSE_C_MoveRSP rsp{};
    rsp.MessageIDBeingRespondedTo = rq.MessageID;
    OFStandard::strlcpy(rsp.AffectedSOPClassUID, rq.AffectedSOPClassUID, sizeof rsp.AffectedSOPClassUID);
    rsp.opts = O_MOVE_AFFECTEDSOPCLASSUID;
    rsp.DataSetType = DIMSE_DATASET_NULL;
    auto respond = [&](T_DIMSE_C_MoveRSP& r) {
      return DIMSE_sendMoveResponse(assoc_, pres, &rq, &r, nullptr, nullptr).good();
    };
    Identifier id;
    if (!readIdentifier(pres, id)) return false;
    if (!id.query.ok()) {
      rsp.DimseStatus = kIdentifierMismatch;
      return respond(rsp);
    }
    const Query& q = *id.query;
    // Only registered destinations, and only if the requester may move.
    auto dest = s_.nodes.find(rq.MoveDestination);
    if (!dest.ok() || !dest->has_value() || (*dest)->move_host.empty() || (*dest)->move_port == 0) {
      s_.retrieve.audit(ctx_, "move", studyUidOf(q), 0, "denied", "move destination unknown",
                        "deny:move-destination-unknown");
      rsp.DimseStatus = kMoveDestinationUnknown;
      return respond(rsp);
    }
    auto list = s_.retrieve.select(ctx_, "move", q);
    if (!list.ok()) {
      rsp.DimseStatus = list.status().code() == StatusCode::kPermissionDenied ? kNotAuthorized : kUnableToProcess;
      return respond(rsp);
    }
    Counts n;
    bool alive = true;
    if (!list->instances.empty()) {
      std::vector<std::pair<std::string, std::string>> contexts;
      for (const auto& l : list->instances) contexts.emplace_back(l.sop_class_uid, l.transfer_syntax);
      auto sub = openStoreAssociation(cfg_, **dest, contexts);
      if (!sub.ok()) {
        s_.retrieve.audit(ctx_, "move", studyUidOf(q), 0, "failure", sub.status().toString());
        rsp.DimseStatus = kUnableToProcess;
        return respond(rsp);
      }
      move_originator_ = ctx_.calling_ae;
      move_originator_id_ = rq.MessageID;
      alive = transfer((*sub)->assoc(), list->instances, n, [&](const Counts& c) {
        T_DIMSE_C_MoveRSP p = rsp;
        p.DimseStatus = kPending;
        setCounts(p, c, true, O_MOVE_NUMBEROFREMAININGSUBOPERATIONS, kMoveCounts);
        return respond(p);
      });
      move_originator_.clear();
    }
    auditTransfer("move", q, n, "to " + std::string(rq.MoveDestination), list->rule);
    if (!alive) return false;
    rsp.DimseStatus = finalStatus(n);
    setCounts(rsp, n, false, 0, kMoveCounts);
    return respond(rsp);
  }

  T_ASC_Association* assoc_;
  const AssociationConfig& cfg_;
  Services& s_;
  CallContext ctx_;
  ScanLimits scan_limits_;
  static constexpr size_t kKeepBuffer = 64u << 20;
  Bytes recv_;                   // receive buffer, reused across C-STOREs
  uint64_t last_size_ = 0;       // of the last data set stored: the guess for the next one
  std::string move_originator_;  // set while C-MOVE sub-operations run
  uint16_t move_originator_id_ = 0;
};

}  // namespace

namespace {

std::string identityField(UserIdentityNegotiationSubItemRQ* rq, bool primary) {
  char* buf = nullptr;
  Uint16 len = 0;
  if (primary) rq->getPrimField(buf, len);
  else rq->getSecField(buf, len);
  std::string out = buf ? std::string(buf, len) : std::string();
  delete[] buf;
  return out;
}

// Verifies a User Identity sub-item, if the requestor sent one.
Status authenticateUser(T_ASC_Association* assoc, bool tls, const DicomNode& node, AuthService& auth,
                        CallContext& ctx, T_ASC_RejectParameters& reject) {
  UserIdentityNegotiationSubItemRQ* rq = nullptr;
  ASC_getUserIdentRQ(assoc->params, &rq);
  if (!rq) return okStatus();
  // Refusals of an identity come from the ACSE provider (PS3.7 D.3.3.7.1).
  reject = {ASC_RESULT_REJECTEDPERMANENT, ASC_SOURCE_SERVICEPROVIDER_ACSE_RELATED, ASC_REASON_SP_ACSE_NOREASON};
  if (!tls) return unauthenticated("user identity refused on a plaintext listener");
  const int type = static_cast<int>(rq->getIdentityType());
  auto user = auth.dicomIdentity(type, identityField(rq, true), identityField(rq, false),
                                 Origin{ctx.peer_address, ctx.calling_ae, ctx.cert_sha256});
  if (!user.ok()) return unauthenticated("user identity refused: " + user.status().message());
  ctx.principal = AuthService::throughNode(*user, node);
  if (rq->isPosResponseRequested()) {
    // The positive response (sub-item 59H). Types 2 and 5 carry an empty
    // server response. (DCMTK 3.6.7 declares ASC_setIdentAC but does not export it.)
    auto* ac = new UserIdentityNegotiationSubItemAC();
    ac->setServerResponse("", 0);
    delete assoc->params->DULparams.ackUserIdentNeg;
    assoc->params->DULparams.ackUserIdentNeg = ac;
  }
  return okStatus();
}

}  // namespace

Status authenticateAssociation(T_ASC_Association* assoc, bool tls, const AssociationConfig& cfg,
                               const std::vector<std::string>& plain_allow, NodeRegistry& nodes, AuthService& auth,
                               CallContext& ctx, T_ASC_RejectParameters& reject) {
  reject = {ASC_RESULT_REJECTEDPERMANENT, ASC_SOURCE_SERVICEUSER, ASC_REASON_SU_NOREASON};
  const auto& dul = assoc->params->DULparams;
  ctx.calling_ae = dul.callingAPTitle;
  ctx.peer_address = dul.callingPresentationAddress;
  if (std::string(dul.calledAPTitle) != cfg.ae_title) {
    reject.reason = ASC_REASON_SU_CALLEDAETITLENOTRECOGNIZED;
    return unauthenticated("called AE title not recognised");
  }
  if (!tls) {
    if (!addressInAnyCidr(ctx.peer_address, plain_allow)) return unauthenticated("address not allowed on the plaintext listener");
  } else {
    const unsigned long len = ASC_getPeerCertificateLength(assoc);
    std::vector<unsigned char> der(len);
    if (len == 0 || ASC_getPeerCertificate(assoc, der.data(), len) != len)
      return unauthenticated("no client certificate");
    ctx.cert_sha256 = crypto::certificateFingerprintDer(der.data(), der.size());
  }
  auto node = nodes.find(ctx.calling_ae);
  if (!node.ok()) return node.status();
  if (!node->has_value()) {
    reject.reason = ASC_REASON_SU_CALLINGAETITLENOTRECOGNIZED;
    return unauthenticated("calling AE title not registered");
  }
  const DicomNode& n = **node;
  if (!addressInCidr(ctx.peer_address, n.source_cidr)) return unauthenticated("node connected from a wrong address");
  if (tls && n.cert_sha256 != ctx.cert_sha256) return unauthenticated("client certificate does not match the node");
  if (!tls && !n.cert_sha256.empty()) return unauthenticated("node is registered for TLS only");
  ctx.principal = auth.nodePrincipal(n);
  return authenticateUser(assoc, tls, n, auth, ctx, reject);
}

Status serveAssociation(T_ASC_Association* assoc, bool tls, const AssociationConfig& cfg,
                      const std::vector<std::string>& plain_allow, Services& services,
                      const std::function<bool(const CallContext&)>& admit,
                      const std::function<void(const CallContext&)>& release) {
  CallContext ctx;
  T_ASC_RejectParameters reject;
  Status auth = authenticateAssociation(assoc, tls, cfg, plain_allow, services.nodes, services.auth, ctx, reject);
  bool admitted = false;
  if (auth.ok()) {
    admitted = admit(ctx);
    if (!admitted) {
      reject = {ASC_RESULT_REJECTEDTRANSIENT, ASC_SOURCE_SERVICEPROVIDER_PRESENTATION_RELATED,
                ASC_REASON_SP_PRES_LOCALLIMITEXCEEDED};
      auth = resourceExhausted("association limit reached");
    }
  }
  AuditEvent e = auditEventFor(ctx, services.clock, "association");
  e.outcome = auth.ok() ? "success" : "denied";
  e.detail = auth.ok() ? ctx.principal.auth_method : auth.toString();
  e.rule = auth.ok() ? "allow:authenticated:" + ctx.principal.auth_method
                     : auth.code() == StatusCode::kResourceExhausted ? "deny:association-limit" : "deny:authentication";
  (void)services.audit.append(e);
  if (!auth.ok()) {
    ASC_rejectAssociation(assoc, &reject);
  } else {
    negotiate(assoc->params);
    if (ASC_acknowledgeAssociation(assoc).good()) {
      Session session(assoc, cfg, services, ctx);
      session.run();
    }
  }
  if (admitted) release(ctx);
  ASC_dropSCPAssociation(assoc, 1);
  ASC_destroyAssociation(&assoc);
  return auth;
}

}  // namespace bastion::dicom
