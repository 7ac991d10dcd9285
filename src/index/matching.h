// DICOM attribute matching (PS3.4 C.2.2.2) on plain values, shared by the
// index implementations for the attributes they cannot match in SQL.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace bastion::index {

// Wildcard match: '*' any run, '?' one character. With `ignore_case`,
// ASCII letters compare case-insensitively (PN matching).
bool wildcardMatch(std::string_view pattern, std::string_view value, bool ignore_case);
bool hasWildcard(std::string_view pattern);
// Range matching for DA/TM/DT: "A-B", "A-", "-B", or a single value.
bool rangeMatch(std::string_view pattern, std::string_view value);
// Splits a '\'-separated multi-value (UID lists).
std::vector<std::string> splitValues(std::string_view v);
// Uppercases ASCII letters (PN normalisation for tokens).
std::string upperAscii(std::string_view v);
// Matches one key with the DICOM rules for its kind.
enum class MatchKind { kText, kPersonName, kRange, kUidList };
bool matchValue(MatchKind kind, std::string_view pattern, std::string_view value);

}  // namespace bastion::index
