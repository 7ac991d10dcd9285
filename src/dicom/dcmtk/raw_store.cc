#include "dicom/dcmtk/raw_store.h"

#include <dcmtk/dcmnet/dimse.h>
#include <dcmtk/dcmnet/dul.h>

#include <algorithm>

namespace bastion::dicom {
namespace {

// Command set elements are implicit VR little endian (PS3.7 6.3.1).
void element(Bytes& out, uint16_t elem, ByteView value) {
  const uint8_t head[8] = {0, 0, static_cast<uint8_t>(elem), static_cast<uint8_t>(elem >> 8),
                           static_cast<uint8_t>(value.size()), static_cast<uint8_t>(value.size() >> 8),
                           static_cast<uint8_t>(value.size() >> 16), static_cast<uint8_t>(value.size() >> 24)};
  out.insert(out.end(), head, head + 8);
  out.insert(out.end(), value.begin(), value.end());
}
void uid(Bytes& out, uint16_t elem, std::string v) {
  if (v.size() % 2) v.push_back('\0');
  element(out, elem, asBytes(v));
}
void us(Bytes& out, uint16_t elem, uint16_t v) {
  const uint8_t b[2] = {static_cast<uint8_t>(v), static_cast<uint8_t>(v >> 8)};
  element(out, elem, ByteView(b, 2));
}

Bytes storeCommand(const RawStoreRequest& r) {
  Bytes body;
  uid(body, 0x0002, r.sop_class_uid);
  us(body, 0x0100, 0x0001);  // C-STORE-RQ
  us(body, 0x0110, r.message_id);
  us(body, 0x0700, 0x0000);  // medium priority
  us(body, 0x0800, 0x0000);  // a data set follows
  uid(body, 0x1000, r.sop_instance_uid);
  if (!r.move_originator_ae.empty()) {
    std::string ae = r.move_originator_ae;
    if (ae.size() % 2) ae.push_back(' ');
    element(body, 0x1030, asBytes(ae));
    us(body, 0x1031, r.move_originator_id);
  }
  Bytes cmd;
  const uint32_t len = static_cast<uint32_t>(body.size());
  const uint8_t l[4] = {static_cast<uint8_t>(len), static_cast<uint8_t>(len >> 8), static_cast<uint8_t>(len >> 16),
                        static_cast<uint8_t>(len >> 24)};
  element(cmd, 0x0000, ByteView(l, 4));
  cmd.insert(cmd.end(), body.begin(), body.end());
  return cmd;
}

bool writeFragments(T_ASC_Association* assoc, T_ASC_PresentationContextID pres, DUL_DATAPDV type, ByteView data) {
  const size_t max = std::max<unsigned long>(assoc->sendPDVLength, 1024) & ~size_t{1};
  size_t pos = 0;
  do {
    const size_t n = std::min(max, data.size() - pos);
    DUL_PDV pdv;
    pdv.fragmentLength = n;
    pdv.presentationContextID = pres;
    pdv.pdvType = type;
    pdv.lastPDV = pos + n == data.size() ? OFTrue : OFFalse;
    pdv.data = const_cast<uint8_t*>(data.data() + pos);
    DUL_PDVLIST list{};
    list.count = 1;
    list.pdv = &pdv;
    if (DUL_WritePDVs(&assoc->DULassociation, &list).bad()) return false;
    pos += n;
  } while (pos < data.size());
  return true;
}

}  // namespace

uint16_t sendStoreRaw(T_ASC_Association* assoc, const RawStoreRequest& req, int timeout_s) {
  const Bytes cmd = storeCommand(req);
  if (!writeFragments(assoc, req.pres, DUL_COMMANDPDV, cmd)) return 0xFFFF;
  if (!writeFragments(assoc, req.pres, DUL_DATASETPDV, req.dataset)) return 0xFFFF;
  T_DIMSE_Message rsp;
  T_ASC_PresentationContextID pres = 0;
  OFCondition c = DIMSE_receiveCommand(assoc, DIMSE_NONBLOCKING, timeout_s, &pres, &rsp, nullptr);
  if (c.bad() || rsp.CommandField != DIMSE_C_STORE_RSP ||
      rsp.msg.CStoreRSP.MessageIDBeingRespondedTo != req.message_id)
    return 0xFFFF;
  return rsp.msg.CStoreRSP.DimseStatus;
}

}  // namespace bastion::dicom
