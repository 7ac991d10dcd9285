// Bit-exact C-STORE sub-operations: the stored data set bytes go out as
// they were received, in P-DATA fragments, without being parsed or
// re-encoded by DCMTK (which would, e.g., drop Data Set Trailing Padding or
// change the VR of encapsulated pixel data). Digital signatures survive.
#pragma once

#include <dcmtk/dcmnet/assoc.h>

#include <string>

#include "bastion/common/bytes.h"

namespace bastion::dicom {

struct RawStoreRequest {
  T_ASC_PresentationContextID pres = 0;
  uint16_t message_id = 0;
  std::string sop_class_uid, sop_instance_uid;
  std::string move_originator_ae;  // C-MOVE sub-operations only
  uint16_t move_originator_id = 0;
  ByteView dataset;                // encoded in the context's transfer syntax
};

// Sends the C-STORE-RQ and waits (at most `timeout_s`) for its response.
// Returns the response's DIMSE status, or 0xFFFF if the exchange failed
// (the association should then be considered broken).
uint16_t sendStoreRaw(T_ASC_Association* assoc, const RawStoreRequest& req, int timeout_s);

}  // namespace bastion::dicom
