// Policy: the single decision point for every request from every
// front-end (DIMSE, HTTP, CLI). decide() is a pure function of its inputs:
// roles, scopes and grants are data resolved into the Principal when it is
// authenticated, and the scope filter it returns is applied by the index
// inside the query. No front-end has access logic of its own.
#pragma once

#include <chrono>
#include <string>

#include "bastion/auth/permissions.h"
#include "bastion/auth/principal.h"
#include "bastion/index/index.h"

namespace bastion {

enum class Action {
  kEcho, kStore, kFind, kGet, kMove,        // DICOM services (and their DICOMweb twins)
  kManageUsers, kManageNodes, kManageConfig,
  kReadAudit, kEmergencyAccess, kDelete,
};
const char* actionName(Action a);

struct Resource {
  std::string study_uid;  // the study concerned, if the action names one
};

struct Decision {
  bool allowed = false;
  std::string rule;  // what decided, for the audit record, e.g. "deny:no-permission:get"
  StudyScope scope;  // for kFind/kGet/kMove/kDelete: the studies the index may touch
};

class Policy {
 public:
  // `now` is used for grant expiry in the returned scope.
  Decision decide(const Principal& who, Action action, const Resource& what,
                  std::chrono::system_clock::time_point now) const;
};

}  // namespace bastion
