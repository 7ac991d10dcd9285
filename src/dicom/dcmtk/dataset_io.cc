#include "dicom/dcmtk/dataset_io.h"

#include <dcmtk/dcmdata/dcdeftag.h>
#include <dcmtk/dcmdata/dcfilefo.h>
#include <dcmtk/dcmdata/dcmetinf.h>
#include <dcmtk/dcmdata/dcistrmb.h>
#include <dcmtk/dcmdata/dcxfer.h>

namespace bastion::dicom {

offile_off_t MemorySink::write(const void* buf, offile_off_t len) {
  const auto n = static_cast<size_t>(len);
  if (overflowed_ || bytes_.size() + n > cap_) {
    overflowed_ = true;
    Bytes().swap(bytes_);  // release what we held: the object is refused anyway
  } else {
    const auto* p = static_cast<const uint8_t*>(buf);
    bytes_.insert(bytes_.end(), p, p + n);
    if (tap_) tap_(ByteView(p, n));
  }
  return len;
}

StatusOr<std::unique_ptr<DcmDataset>> parseDataset(ByteView data, const std::string& ts_uid,
                                                   const ScanLimits& limits) {
  ASSIGN_OR_RETURN(Encoding enc, encodingOf(ts_uid));
  ASSIGN_OR_RETURN(ScanResult scan, scanDataset(data, enc, limits));
  (void)scan;
  DcmXfer xfer(ts_uid.c_str());
  DcmInputBufferStream in;
  in.setBuffer(data.data(), static_cast<offile_off_t>(data.size()));
  in.setEos();
  auto ds = std::make_unique<DcmDataset>();
  ds->transferInit();
  OFCondition c = ds->read(in, xfer.getXfer());
  ds->transferEnd();
  if (c.bad()) return invalidArgument(std::string("cannot parse data set: ") + c.text());
  return ds;
}

StatusOr<std::unique_ptr<DcmDataset>> parseStoredObject(ByteView part10, std::string& ts_uid) {
  DcmInputBufferStream in;
  in.setBuffer(part10.data(), static_cast<offile_off_t>(part10.size()));
  in.setEos();
  DcmFileFormat ff;
  ff.transferInit();
  OFCondition c = ff.read(in, EXS_Unknown);
  ff.transferEnd();
  if (c.bad()) return internalError(std::string("cannot parse stored object: ") + c.text());
  OFString ts;
  ff.getMetaInfo()->findAndGetOFString(DCM_TransferSyntaxUID, ts);
  ts_uid = ts.c_str();
  return std::unique_ptr<DcmDataset>(ff.getAndRemoveDataset());
}

StatusOr<Query> queryFromIdentifier(DcmDataset& id) {
  Query q;
  OFString level;
  if (id.findAndGetOFString(DCM_QueryRetrieveLevel, level).bad()) return invalidArgument("no QueryRetrieveLevel");
  if (level == "PATIENT") q.level = QueryLevel::kPatient;
  else if (level == "STUDY") q.level = QueryLevel::kStudy;
  else if (level == "SERIES") q.level = QueryLevel::kSeries;
  else if (level == "IMAGE") q.level = QueryLevel::kImage;
  else return invalidArgument("unknown QueryRetrieveLevel");
  for (unsigned long i = 0; i < id.card(); ++i) {
    DcmElement* e = id.getElement(i);
    const DcmTagKey key = e->getTag();
    if (key == DCM_QueryRetrieveLevel || key == DCM_SpecificCharacterSet || e->ident() == EVR_SQ) continue;
    OFString v;
    e->getOFStringArray(v);
    q.keys[static_cast<uint32_t>(key.getGroup()) << 16 | key.getElement()] = v.c_str();
  }
  return q;
}

std::unique_ptr<DcmDataset> responseIdentifier(DcmDataset& request, const QueryRow& row) {
  auto out = std::make_unique<DcmDataset>();
  for (unsigned long i = 0; i < request.card(); ++i) {
    DcmElement* e = request.getElement(i);
    const DcmTagKey key = e->getTag();
    if (key.getGroup() % 2 == 1) continue;  // private keys are not supported
    if (e->ident() == EVR_SQ) {
      out->insertEmptyElement(DcmTag(key));
      continue;
    }
    if (key == DCM_QueryRetrieveLevel) {
      OFString v;
      e->getOFStringArray(v);
      out->putAndInsertOFStringArray(key, v);
      continue;
    }
    auto it = row.find(static_cast<uint32_t>(key.getGroup()) << 16 | key.getElement());
    if (it == row.end() || it->second.empty()) out->insertEmptyElement(DcmTag(key));
    else out->putAndInsertOFStringArray(key, OFString(it->second.c_str()));
  }
  auto cs = row.find(tag::kSpecificCharacterSet);
  if (cs != row.end() && !cs->second.empty()) out->putAndInsertOFStringArray(DCM_SpecificCharacterSet, cs->second.c_str());
  return out;
}

}  // namespace bastion::dicom
