// bastion_scu -- a thin DICOM SCU for Bastion's integration tests (pytest).
//
// DCMTK 3.6.7's findscu/getscu/movescu cannot send a User Identity sub-item (PS3.7 D.3.3.7) and getscu/movescu
// have no TLS. This tool does C-ECHO, C-FIND, C-GET, C-MOVE and C-STORE over TCP or TLS (with a client
// certificate) with an optional user identity, on DCMTK's own DcmSCU/dcmnet/dcmtls. It reports what the server
// answered, one fact per line on stdout, and decides nothing. DCMTK's log goes to stderr (ERROR unless --verbose).
//
//   bastion_scu --host H --port P --aet CALLING --aec CALLED [--tls --ca CA.pem [--cert C.pem --key K.pem]]
//               [--user U [--password PW] | --jwt FILE] [--pos-response] [--timeout S] [--verbose]
//               echo
//             | find --root study|patient --level PATIENT|STUDY|SERIES|IMAGE -k gggg,eeee=value ...
//             | get  --root ... --level ... -k ... [--out DIR]
//             | move --root ... --level ... -k ... --dest AE
//             | store FILE...
//   -k takes gggg,eeee or a dictionary keyword; the value may be empty ("-k 0010,0010=" or "-k 0010,0010").
// Output: ASSOCIATION accepted | ASSOCIATION rejected result=R source=S reason=N | ASSOCIATION failed <text>
//   IDENTITY-RESPONSE present len=N | IDENTITY-RESPONSE absent        (with --pos-response, if accepted)
//   MATCH {"ggggeeee": "value", ...}  (find, per pending response; no sequences; bytes that are not UTF-8 as \u00XX)
//   RECEIVED <sop-instance-uid>       (get, per C-STORE sub-operation; each is answered with Success)
//   STATUS 0xSSSS                     (echo, find: the final response)
//   STATUS 0xSSSS completed=N failed=N warning=N   (get, move: the final response; -1 = count not in it)
//   STORE <path> STATUS 0xSSSS
//   FAILED <text> | STORE <path> FAILED <text>      (the operation got no response)
//   ASSOCIATION released | ASSOCIATION aborted | ASSOCIATION aborted by peer
// Exit: 0 accepted and every operation got a response (whatever its status), 1 usage, 2 rejected, 3 otherwise.

#include "dcmtk/config/osconfig.h"
#include "dcmtk/dcmdata/dctk.h"
#include "dcmtk/dcmnet/dcmtrans.h"
#include "dcmtk/dcmnet/scu.h"
#include "dcmtk/dcmtls/tlslayer.h"
#include "dcmtk/oflog/oflog.h"

#include <unistd.h>

#include <cctype>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iterator>
#include <memory>
#include <set>
#include <string>
#include <vector>

// DCMTK 3.6.7 leaks the certificate that DcmTLSTransportLayer::setCertificateFile() parses; libcrypto has no frame
// pointers, so LeakSanitizer (the only reader of this hook) cannot see that caller and is told about libcrypto.
// Otherwise every sanitizer-built run with --cert would fail. This tool makes no OpenSSL calls of its own.
extern "C" const char* __lsan_default_suppressions() { return "leak:libcrypto.so\n"; }

namespace {

// DcmSCU keeps its T_ASC_Parameters private (not protected) and has no user-identity setter. Names in an
// explicit instantiation are exempt from access checking ([temp.spec.general]/6), so this one hands out a
// pointer to that member. It is used between initNetwork() (which creates it) and the end of the association.
using ParamsMember = T_ASC_Parameters* DcmSCU::*;
ParamsMember scuParamsMember();
template <ParamsMember P>
struct ParamsAccess {
  friend ParamsMember scuParamsMember() { return P; }
};
template struct ParamsAccess<&DcmSCU::m_params>;

struct Options {
  std::string host, aet, aec, ca, cert, key, user, password, jwtFile, out, dest, root = "study", level, command;
  int port = 0, timeout = 30;
  bool tls = false, hasPassword = false, posResponse = false, verbose = false;
  std::vector<std::pair<std::string, std::string>> keys;  // as given: tag, value
  std::vector<std::string> files;
};

struct Final {  // the final (non-pending) response of an operation
  bool received = false;
  Uint16 status = 0;
  long completed = -1, failed = -1, warning = -1;
};

[[noreturn]] void usage(const std::string& why) {
  std::fprintf(stderr, "bastion_scu: %s (syntax: see tests/tools/bastion_scu.cc)\n", why.c_str());
  std::exit(1);
}

std::string oneLine(std::string s) {
  for (char& c : s)
    if (c == '\n' || c == '\r') c = ' ';
  return s;
}

std::string printable(std::string s) {  // for UIDs that came from the server
  for (char& c : s)
    if (c < 0x21 || c > 0x7E || c == '/') c = '_';
  return s.empty() ? "_" : s;
}

// Length of the well-formed UTF-8 sequence at s[i] (no overlong forms, surrogates or code points past U+10FFFF).
size_t utf8Length(const std::string& s, size_t i) {
  const unsigned char c = s[i];
  const size_t n = c < 0x80 ? 1 : c >= 0xC2 && c <= 0xDF ? 2 : (c & 0xF0) == 0xE0 ? 3 : c >= 0xF0 && c <= 0xF4 ? 4 : 0;
  if (n == 0 || i + n > s.size()) return 0;
  unsigned long cp = c & (0xFF >> (n == 1 ? 0 : n + 1));
  for (size_t k = 1; k < n; ++k) {
    if ((s[i + k] & 0xC0) != 0x80) return 0;
    cp = cp << 6 | (s[i + k] & 0x3F);
  }
  if (n == 3 && (cp < 0x800 || (cp >= 0xD800 && cp <= 0xDFFF))) return 0;
  return n == 4 && (cp < 0x10000 || cp > 0x10FFFF) ? 0 : n;
}

std::string jsonString(const std::string& s) {
  std::string r = "\"";
  for (size_t i = 0, n = 0; i < s.size(); i += n) {
    const unsigned char c = s[i];
    n = utf8Length(s, i);
    if (n > 1 || (n == 1 && c >= 0x20 && c != '"' && c != '\\')) {
      r.append(s, i, n);
    } else {  // quote, backslash, control character, or a byte that is not UTF-8
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\u%04x", c);
      r += buf;
      n = 1;
    }
  }
  return r + "\"";
}

std::string datasetJson(DcmDataset& ds) {
  std::string r;
  for (unsigned long i = 0; i < ds.card(); ++i) {
    DcmElement* e = ds.getElement(i);
    if (e == nullptr || e->ident() == EVR_SQ) continue;
    OFString value;
    if (e->getOFStringArray(value).bad()) value.clear();
    char tag[9];
    std::snprintf(tag, sizeof tag, "%04X%04X", e->getGTag(), e->getETag());
    r += (r.empty() ? "" : ", ") + jsonString(tag) + ": " + jsonString(value.c_str());
  }
  return "{" + r + "}";
}

class BastionScu : public DcmSCU {
 public:
  using DcmSCU::useSecureConnection;
  std::string outDir;  // C-GET: where received instances are written ("" = received and dropped)

  T_ASC_Parameters* params() { return this->*scuParamsMember(); }

  // Sends one C-ECHO/C-FIND/C-GET/C-MOVE request on pc and reads until a non-pending response arrives.
  // (DcmSCU's own versions do not tell the C-ECHO status, nor which sub-operation counts were present.)
  OFCondition exchange(T_DIMSE_Command cmd, const char* sopClass, T_ASC_PresentationContextID pc,
                       DcmDataset* keys, const std::string& dest, Final& fin) {
    T_DIMSE_Message rq;
    std::memset(&rq, 0, sizeof rq);
    rq.CommandField = cmd;
    const Uint16 id = messageId_++;
    const T_DIMSE_DataSetType data = keys ? DIMSE_DATASET_PRESENT : DIMSE_DATASET_NULL;
    char* affected = rq.msg.CEchoRQ.AffectedSOPClassUID;
    if (cmd == DIMSE_C_ECHO_RQ) {
      rq.msg.CEchoRQ = {id, {}, DIMSE_DATASET_NULL};
    } else if (cmd == DIMSE_C_FIND_RQ) {
      rq.msg.CFindRQ = {id, {}, DIMSE_PRIORITY_MEDIUM, data};
      affected = rq.msg.CFindRQ.AffectedSOPClassUID;
    } else if (cmd == DIMSE_C_GET_RQ) {
      rq.msg.CGetRQ = {id, {}, DIMSE_PRIORITY_MEDIUM, data};
      affected = rq.msg.CGetRQ.AffectedSOPClassUID;
    } else {
      rq.msg.CMoveRQ = {id, {}, DIMSE_PRIORITY_MEDIUM, data, {}};
      affected = rq.msg.CMoveRQ.AffectedSOPClassUID;
      OFStandard::strlcpy(rq.msg.CMoveRQ.MoveDestination, dest.c_str(), sizeof(DIC_AE));
    }
    OFStandard::strlcpy(affected, sopClass, sizeof(DIC_UI));
    OFCondition cond = sendDIMSEMessage(pc, &rq, keys);
    while (cond.good()) {
      T_DIMSE_Message rsp;
      std::memset(&rsp, 0, sizeof rsp);
      T_ASC_PresentationContextID rpc = 0;
      DcmDataset* detail = nullptr;
      cond = receiveDIMSECommand(&rpc, &rsp, &detail);
      delete detail;
      if (cond.bad()) break;
      if (cmd == DIMSE_C_GET_RQ && rsp.CommandField == DIMSE_C_STORE_RQ) {
        cond = storeSubOperation(rpc, rsp.msg.CStoreRQ);
        continue;
      }
      Uint16 status = 0;
      T_DIMSE_DataSetType type = DIMSE_DATASET_NULL;
      if (cmd == DIMSE_C_ECHO_RQ && rsp.CommandField == DIMSE_C_ECHO_RSP)
        status = rsp.msg.CEchoRSP.DimseStatus, type = rsp.msg.CEchoRSP.DataSetType;
      else if (cmd == DIMSE_C_FIND_RQ && rsp.CommandField == DIMSE_C_FIND_RSP)
        status = rsp.msg.CFindRSP.DimseStatus, type = rsp.msg.CFindRSP.DataSetType;
      else if (cmd == DIMSE_C_GET_RQ && rsp.CommandField == DIMSE_C_GET_RSP)
        status = counts(rsp.msg.CGetRSP, fin), type = rsp.msg.CGetRSP.DataSetType;
      else if (cmd == DIMSE_C_MOVE_RQ && rsp.CommandField == DIMSE_C_MOVE_RSP)
        status = counts(rsp.msg.CMoveRSP, fin), type = rsp.msg.CMoveRSP.DataSetType;
      else
        return makeOFCondition(0, 1, OF_error, "unexpected DIMSE command from the server");
      DcmDataset* dataset = nullptr;
      if (type != DIMSE_DATASET_NULL && (cond = receiveDIMSEDataset(&rpc, &dataset)).bad()) break;
      if (cmd == DIMSE_C_FIND_RQ && DICOM_PENDING_STATUS(status) && dataset != nullptr)
        std::printf("MATCH %s\n", datasetJson(*dataset).c_str());
      delete dataset;  // for C-GET/C-MOVE: a Failed SOP Instance UID List, not reported
      if (!DICOM_PENDING_STATUS(status)) {
        fin.received = true;
        fin.status = status;
        break;
      }
    }
    return cond;
  }

 private:
  Uint16 messageId_ = 1;

  template <class Rsp>  // T_DIMSE_C_GetRSP or T_DIMSE_C_MoveRSP: same fields, same flag values
  static Uint16 counts(const Rsp& r, Final& fin) {
    fin.completed = (r.opts & O_GET_NUMBEROFCOMPLETEDSUBOPERATIONS) ? r.NumberOfCompletedSubOperations : -1;
    fin.failed = (r.opts & O_GET_NUMBEROFFAILEDSUBOPERATIONS) ? r.NumberOfFailedSubOperations : -1;
    fin.warning = (r.opts & O_GET_NUMBEROFWARNINGSUBOPERATIONS) ? r.NumberOfWarningSubOperations : -1;
    return r.DimseStatus;
  }

  // A C-GET sub-operation: the instance is written as received (streamed from the network into a Part-10 file
  // in the negotiated transfer syntax) or dropped, and answered with Success.
  OFCondition storeSubOperation(T_ASC_PresentationContextID pc, T_DIMSE_C_StoreRQ& rq) {
    const std::string uid = printable(rq.AffectedSOPInstanceUID);
    OFCondition cond = outDir.empty() ? ignoreSTORERequest(pc, rq)
                                      : handleSTORERequestFile(&pc, (outDir + "/" + uid + ".dcm").c_str(), &rq);
    if (cond.bad()) return cond;
    std::printf("RECEIVED %s\n", uid.c_str());
    return sendSTOREResponse(pc, STATUS_Success, rq);
  }
};

const char* const kExplicit = UID_LittleEndianExplicitTransferSyntax;
const char* const kCompressed[] = {UID_JPEGProcess1TransferSyntax,   UID_JPEGProcess14SV1TransferSyntax,
                                   UID_JPEGLSLosslessTransferSyntax, UID_JPEG2000LosslessOnlyTransferSyntax,
                                   UID_JPEG2000TransferSyntax,       UID_RLELosslessTransferSyntax};
// C-GET storage SOP classes (SCP role). Image classes also get one context per compressed syntax above; all
// together this stays under the 128 presentation contexts an association can carry.
const char* const kImageClasses[] = {
    UID_CTImageStorage, UID_EnhancedCTImageStorage, UID_MRImageStorage, UID_EnhancedMRImageStorage,
    UID_ComputedRadiographyImageStorage, UID_DigitalXRayImageStorageForPresentation,
    UID_DigitalXRayImageStorageForProcessing, UID_DigitalMammographyXRayImageStorageForPresentation,
    UID_UltrasoundImageStorage, UID_UltrasoundMultiframeImageStorage, UID_SecondaryCaptureImageStorage,
    UID_XRayAngiographicImageStorage, UID_NuclearMedicineImageStorage, UID_PositronEmissionTomographyImageStorage};
const char* const kOtherClasses[] = {
    UID_XRayRadiofluoroscopicImageStorage, UID_DigitalMammographyXRayImageStorageForProcessing,
    UID_MultiframeGrayscaleByteSecondaryCaptureImageStorage, UID_MultiframeGrayscaleWordSecondaryCaptureImageStorage,
    UID_MultiframeTrueColorSecondaryCaptureImageStorage, UID_VLPhotographicImageStorage, UID_RTImageStorage,
    UID_RTDoseStorage, UID_RTStructureSetStorage, UID_RTPlanStorage, UID_SegmentationStorage, UID_BasicTextSRStorage,
    UID_EnhancedSRStorage, UID_ComprehensiveSRStorage, UID_KeyObjectSelectionDocumentStorage,
    UID_GrayscaleSoftcopyPresentationStateStorage, UID_EncapsulatedPDFStorage};

OFList<OFString> syntaxes(std::initializer_list<const char*> uids) {
  OFList<OFString> l;
  for (const char* u : uids) l.push_back(u);
  return l;
}

std::pair<std::string, std::string> splitKey(const std::string& k) {  // "tag=value", "tag=" or "tag"
  const size_t eq = k.find('=');
  return {k.substr(0, eq), eq == std::string::npos ? "" : k.substr(eq + 1)};
}

Options parse(int argc, char** argv) {
  Options o;
  auto value = [&](int& i) -> std::string {
    if (i + 1 >= argc) usage(std::string("missing value for ") + argv[i]);
    return argv[++i];
  };
  auto number = [&](int& i, long max) {
    const std::string s = value(i);
    char* end = nullptr;
    const long n = std::strtol(s.c_str(), &end, 10);
    if (s.empty() || *end != '\0' || n < 1 || n > max) usage("bad number " + s);
    return static_cast<int>(n);
  };
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--host") o.host = value(i);
    else if (a == "--port") o.port = number(i, 65535);
    else if (a == "--aet") o.aet = value(i);
    else if (a == "--aec") o.aec = value(i);
    else if (a == "--tls") o.tls = true;
    else if (a == "--ca") o.ca = value(i);
    else if (a == "--cert") o.cert = value(i);
    else if (a == "--key") o.key = value(i);
    else if (a == "--user") o.user = value(i);
    else if (a == "--password") o.password = value(i), o.hasPassword = true;
    else if (a == "--jwt") o.jwtFile = value(i);
    else if (a == "--pos-response") o.posResponse = true;
    else if (a == "--timeout") o.timeout = number(i, 3600);
    else if (a == "--verbose") o.verbose = true;
    else if (a == "--root") o.root = value(i);
    else if (a == "--level") o.level = value(i);
    else if (a == "--out") o.out = value(i);
    else if (a == "--dest") o.dest = value(i);
    else if (a == "-k") o.keys.push_back(splitKey(value(i)));
    else if (a.size() > 1 && a[0] == '-') usage("unknown option " + a);
    else if (o.command.empty()) o.command = a;
    else if (o.command == "store") o.files.push_back(a);
    else usage("unexpected argument " + a);
  }
  const bool query = o.command == "find" || o.command == "get" || o.command == "move";
  if (o.host.empty() || o.port == 0 || o.aet.empty() || o.aec.empty()) usage("--host, --port, --aet, --aec needed");
  if (o.tls == o.ca.empty() || o.cert.empty() != o.key.empty() || (!o.tls && !o.cert.empty()))
    usage("TLS takes --tls --ca CA, and optionally both --cert and --key");
  if (!o.user.empty() && !o.jwtFile.empty()) usage("--user and --jwt exclude each other");
  if ((o.hasPassword && o.user.empty()) || (o.posResponse && o.user.empty() && o.jwtFile.empty()))
    usage("--password needs --user; --pos-response needs --user or --jwt");
  if (!query && o.command != "echo" && o.command != "store") usage("the command is echo, find, get, move or store");
  if (query && (o.level.empty() || (o.root != "study" && o.root != "patient"))) usage("--level, --root study|patient");
  if ((o.command == "move") == o.dest.empty()) usage("--dest AE goes with move");
  if ((o.command == "store") == o.files.empty()) usage("store takes files");
  if (!o.out.empty() && (o.command != "get" || access(o.out.c_str(), W_OK) != 0)) usage("--out: get, writable DIR");
  return o;
}

// The query identifier: Query/Retrieve Level, then each -k in order (a later one replaces an earlier one).
DcmDataset buildKeys(const Options& o) {
  DcmDataset ds;
  ds.putAndInsertString(DCM_QueryRetrieveLevel, o.level.c_str());
  for (const auto& [name, val] : o.keys) {
    unsigned int g = 0, e = 0;
    char extra = 0;
    DcmTag tag;
    if (std::sscanf(name.c_str(), "%x,%x%c", &g, &e, &extra) == 2 && g <= 0xFFFF && e <= 0xFFFF)
      tag = DcmTag(static_cast<Uint16>(g), static_cast<Uint16>(e));
    else if (DcmTag::findTagFromName(name.c_str(), tag).bad())
      usage("bad key " + name);
    if (ds.putAndInsertString(tag, val.c_str()).bad()) usage("cannot set " + name + " (VR " + tag.getVRName() + ")");
  }
  return ds;
}

struct StoreFile {
  std::string path, sopClass, xfer;
};

std::vector<StoreFile> inspectFiles(const std::vector<std::string>& paths) {
  std::vector<StoreFile> r;
  for (const auto& p : paths) {
    DcmFileFormat ff;
    OFString sopClass;
    if (ff.loadFile(p.c_str(), EXS_Unknown, EGL_noChange, 4096).bad() ||
        ff.getDataset()->findAndGetOFString(DCM_SOPClassUID, sopClass).bad())
      usage("not a readable DICOM file with a SOP Class UID: " + p);
    r.push_back({p, sopClass.c_str(), DcmXfer(ff.getDataset()->getOriginalXfer()).getXferID()});
  }
  return r;
}

const char* queryModel(const Options& o) {
  const bool study = o.root == "study";
  if (o.command == "find")
    return study ? UID_FINDStudyRootQueryRetrieveInformationModel : UID_FINDPatientRootQueryRetrieveInformationModel;
  if (o.command == "get")
    return study ? UID_GETStudyRootQueryRetrieveInformationModel : UID_GETPatientRootQueryRetrieveInformationModel;
  return study ? UID_MOVEStudyRootQueryRetrieveInformationModel : UID_MOVEPatientRootQueryRetrieveInformationModel;
}

}  // namespace

int main(int argc, char** argv) {
  std::signal(SIGPIPE, SIG_IGN);
  std::setvbuf(stdout, nullptr, _IOLBF, 0);
  const Options o = parse(argc, argv);
  OFLog::configure(o.verbose ? OFLogger::DEBUG_LOG_LEVEL : OFLogger::ERROR_LOG_LEVEL);

  // Everything that can be a usage error is checked before connecting.
  std::string jwt;
  if (!o.jwtFile.empty()) {
    std::ifstream in(o.jwtFile, std::ios::binary);
    if (!in) usage("cannot read " + o.jwtFile);
    jwt.assign(std::istreambuf_iterator<char>(in), {});
    while (!jwt.empty() && std::isspace(static_cast<unsigned char>(jwt.back()))) jwt.pop_back();
  }
  if (jwt.size() > 65535 || o.user.size() > 65535 || o.password.size() > 65535) usage("identity field too long");
  const std::vector<StoreFile> files = o.command == "store" ? inspectFiles(o.files) : std::vector<StoreFile>();
  DcmDataset keys = buildKeys(o);
  const char* model = o.command == "echo" ? UID_VerificationSOPClass : queryModel(o);

  std::unique_ptr<DcmTLSTransportLayer> tls;  // declared before the SCU, whose network uses it until the end
  BastionScu scu;
  scu.setAETitle(o.aet.c_str());
  scu.setPeerAETitle(o.aec.c_str());
  scu.setPeerHostName(o.host.c_str());
  scu.setPeerPort(static_cast<Uint16>(o.port));
  scu.setConnectionTimeout(o.timeout);
  scu.setACSETimeout(o.timeout);
  scu.setDIMSETimeout(o.timeout);
  scu.setDIMSEBlockingMode(DIMSE_NONBLOCKING);
  dcmSocketSendTimeout.set(o.timeout);
  dcmSocketReceiveTimeout.set(o.timeout);  // also bounds the TLS handshake
  scu.setDatasetConversionMode(OFTrue);    // store: only ever between uncompressed transfer syntaxes
  scu.outDir = o.out;

  // Presentation contexts. store: per SOP class, one with Explicit VR LE and one per transfer syntax the files
  // have, each alone, so that the server can accept exactly the file's own syntax.
  const OFList<OFString> plain = syntaxes({kExplicit, UID_LittleEndianImplicitTransferSyntax});
  std::set<std::pair<std::string, std::string>> contexts;
  auto add = [&](const std::string& as, const OFList<OFString>& ts, const std::string& key, T_ASC_SC_ROLE role) {
    if (contexts.emplace(as, key).second) scu.addPresentationContext(as.c_str(), ts, role);
  };
  if (o.command != "store") add(model, plain, "plain", ASC_SC_ROLE_DEFAULT);
  for (const auto& f : files) {
    add(f.sopClass, syntaxes({f.xfer.c_str()}), f.xfer, ASC_SC_ROLE_DEFAULT);
    add(f.sopClass, syntaxes({kExplicit}), kExplicit, ASC_SC_ROLE_DEFAULT);
  }
  if (o.command == "get") {
    for (const char* sc : kImageClasses) {
      add(sc, plain, "plain", ASC_SC_ROLE_SCP);
      for (const char* ts : kCompressed) add(sc, syntaxes({ts}), ts, ASC_SC_ROLE_SCP);
    }
    for (const char* sc : kOtherClasses) add(sc, plain, "plain", ASC_SC_ROLE_SCP);
  }
  if (contexts.size() > 128) usage("too many SOP class / transfer syntax pairs for one association");

  OFCondition cond = scu.initNetwork();
  if (cond.good() && o.tls) {
    tls = std::make_unique<DcmTLSTransportLayer>(NET_REQUESTOR, nullptr, OFTrue);
    // DICOM's non-downgrading BCP 195 profile (TLS 1.2 or 1.3; its TLS 1.2 suites are RSA only) plus its two
    // ECDSA suites, so that a TLS-1.2-only server with an EC certificate is reachable too.
    if (tls->setTLSProfile(TSP_Profile_BCP195_ND).bad() ||
        tls->addCipherSuite("TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256").bad() ||
        tls->addCipherSuite("TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384").bad() || tls->activateCipherSuites().bad())
      usage("cannot set up the TLS profile");
    if (tls->addTrustedCertificateFile(o.ca.c_str(), DCF_Filetype_PEM).bad()) usage("cannot load CA " + o.ca);
    if (!o.cert.empty() && (tls->setPrivateKeyFile(o.key.c_str(), DCF_Filetype_PEM).bad() ||
                            tls->setCertificateFile(o.cert.c_str(), DCF_Filetype_PEM).bad() ||
                            !tls->checkPrivateKeyMatchesCertificate()))
      usage("cannot load the client certificate and key " + o.cert + ", " + o.key);
    tls->setCertificateVerification(DCV_requireCertificate);
    cond = scu.useSecureConnection(tls.get());
  }
  if (cond.good() && !o.user.empty())
    cond = o.hasPassword ? ASC_setIdentRQUserPassword(scu.params(), o.user.c_str(), o.password.c_str(), o.posResponse)
                         : ASC_setIdentRQUserOnly(scu.params(), o.user.c_str(), o.posResponse);
  else if (cond.good() && !o.jwtFile.empty())
    cond = ASC_setIdentRQJwt(scu.params(), jwt.data(), static_cast<Uint16>(jwt.size()), o.posResponse);
  if (cond.good()) cond = scu.negotiateAssociation();
  if (cond == DUL_ASSOCIATIONREJECTED) {
    T_ASC_RejectParameters rej;
    ASC_getRejectParameters(scu.params(), &rej);
    std::printf("ASSOCIATION rejected result=%d source=%d reason=%d\n", static_cast<int>(rej.result),
                static_cast<int>(rej.source), static_cast<int>(rej.reason) & 0xFF);  // the PS3.8 codes
    return 2;
  }
  if (!scu.isConnected()) {  // connection refused, TLS failure, timeout, abort, ...
    std::printf("ASSOCIATION failed %s\n", oneLine(cond.text()).c_str());
    return 3;
  }
  std::printf("ASSOCIATION accepted\n");  // perhaps without any usable presentation context: operations fail then
  if (o.posResponse) {
    UserIdentityNegotiationSubItemAC* ack = nullptr;  // present even when its response value is empty
    ASC_getUserIdentAC(scu.params(), &ack);
    char* buf = nullptr;
    unsigned short len = 0;
    ASC_getCopyOfIdentResponse(scu.params(), buf, len);
    delete[] buf;
    std::printf(ack ? "IDENTITY-RESPONSE present len=%u\n" : "IDENTITY-RESPONSE absent\n", unsigned{len});
  }

  // FAILED: nothing could be sent (no usable presentation context; the association is still released) or the
  // network failed (`broken`: the association is aborted).
  bool allAnswered = true;
  OFCondition broken = EC_Normal;
  for (const auto& f : files) {
    // The file's own transfer syntax; an uncompressed file may go as Explicit VR LE instead (DcmSCU converts).
    T_ASC_PresentationContextID pc = scu.findPresentationContextID(f.sopClass.c_str(), f.xfer.c_str());
    if (pc == 0 && !DcmXfer(f.xfer.c_str()).isEncapsulated()) pc = scu.findPresentationContextID(f.sopClass, kExplicit);
    Uint16 status = 0;
    if (pc == 0) {
      std::printf("STORE %s FAILED no accepted presentation context for %s in %s\n", f.path.c_str(),
                  f.sopClass.c_str(), f.xfer.c_str());
      allAnswered = false;
    } else if ((broken = scu.sendSTORERequest(pc, f.path.c_str(), nullptr, status)).good()) {
      std::printf("STORE %s STATUS 0x%04X\n", f.path.c_str(), status);
    } else {
      std::printf("STORE %s FAILED %s\n", f.path.c_str(), oneLine(broken.text()).c_str());
      allAnswered = false;
      break;
    }
  }
  if (o.command != "store") {
    const T_DIMSE_Command cmd = o.command == "echo"   ? DIMSE_C_ECHO_RQ
                                : o.command == "find" ? DIMSE_C_FIND_RQ
                                : o.command == "get"  ? DIMSE_C_GET_RQ
                                                      : DIMSE_C_MOVE_RQ;
    const T_ASC_PresentationContextID pc = scu.findPresentationContextID(model, "");
    Final fin;
    if (pc == 0) std::printf("FAILED no accepted presentation context for %s\n", model);
    else broken = scu.exchange(cmd, model, pc, cmd == DIMSE_C_ECHO_RQ ? nullptr : &keys, o.dest, fin);
    if (fin.received && (cmd == DIMSE_C_GET_RQ || cmd == DIMSE_C_MOVE_RQ))
      std::printf("STATUS 0x%04X completed=%ld failed=%ld warning=%ld\n", fin.status, fin.completed, fin.failed,
                  fin.warning);
    else if (fin.received)
      std::printf("STATUS 0x%04X\n", fin.status);
    if (broken.bad()) std::printf("FAILED %s\n", oneLine(broken.text()).c_str());
    allAnswered = fin.received && broken.good();
  }

  if (broken == DUL_PEERABORTEDASSOCIATION) {
    scu.closeAssociation(DCMSCU_PEER_ABORTED_ASSOCIATION);
    std::printf("ASSOCIATION aborted by peer\n");
    return 3;
  }
  if (broken.good()) scu.closeAssociation(DCMSCU_RELEASE_ASSOCIATION);  // leaves it connected if that failed
  if (scu.isConnected()) {
    scu.abortAssociation();  // release failed, or the conversation is in an unknown state (timeout, bad data)
    std::printf("ASSOCIATION aborted\n");
  } else {
    std::printf("ASSOCIATION released\n");
  }
  return allAnswered ? 0 : 3;
}
