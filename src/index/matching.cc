#include "index/matching.h"

#include <algorithm>

namespace bastion::index {

bool hasWildcard(std::string_view p) { return p.find_first_of("*?") != std::string_view::npos; }

std::string upperAscii(std::string_view v) {
  std::string s(v);
  for (char& c : s)
    if (c >= 'a' && c <= 'z') c = static_cast<char>(c - 'a' + 'A');
  return s;
}

bool wildcardMatch(std::string_view pattern, std::string_view value, bool ignore_case) {
  auto eq = [&](char a, char b) {
    if (ignore_case) {
      if (a >= 'a' && a <= 'z') a = static_cast<char>(a - 'a' + 'A');
      if (b >= 'a' && b <= 'z') b = static_cast<char>(b - 'a' + 'A');
    }
    return a == b;
  };
  // Iterative glob with single backtrack point: linear in practice, no recursion.
  size_t p = 0, v = 0, star = std::string_view::npos, mark = 0;
  while (v < value.size()) {
    if (p < pattern.size() && (pattern[p] == '?' || (pattern[p] != '*' && eq(pattern[p], value[v])))) {
      ++p;
      ++v;
    } else if (p < pattern.size() && pattern[p] == '*') {
      star = p++;
      mark = v;
    } else if (star != std::string_view::npos) {
      p = star + 1;
      v = ++mark;
    } else {
      return false;
    }
  }
  while (p < pattern.size() && pattern[p] == '*') ++p;
  return p == pattern.size();
}

bool rangeMatch(std::string_view pattern, std::string_view value) {
  const size_t dash = pattern.find('-');
  if (dash == std::string_view::npos) return value == pattern;
  if (value.empty()) return false;
  std::string_view lo = pattern.substr(0, dash), hi = pattern.substr(dash + 1);
  if (!lo.empty() && value < lo) return false;
  if (!hi.empty() && value.substr(0, std::min(value.size(), hi.size())) > hi) return false;
  return true;
}

std::vector<std::string> splitValues(std::string_view v) {
  std::vector<std::string> out;
  size_t start = 0;
  while (true) {
    size_t bs = v.find('\\', start);
    std::string_view part = v.substr(start, bs == std::string_view::npos ? std::string_view::npos : bs - start);
    while (!part.empty() && part.back() == ' ') part.remove_suffix(1);
    while (!part.empty() && part.front() == ' ') part.remove_prefix(1);
    if (!part.empty()) out.emplace_back(part);
    if (bs == std::string_view::npos) break;
    start = bs + 1;
  }
  return out;
}

bool matchValue(MatchKind kind, std::string_view pattern, std::string_view value) {
  if (pattern.empty() || pattern == "*") return true;
  switch (kind) {
    case MatchKind::kRange: return rangeMatch(pattern, value);
    case MatchKind::kUidList: {
      auto uids = splitValues(pattern);
      return std::find(uids.begin(), uids.end(), value) != uids.end();
    }
    case MatchKind::kPersonName: return wildcardMatch(pattern, value, true);
    case MatchKind::kText: return wildcardMatch(pattern, value, false);
  }
  return false;
}

}  // namespace bastion::index
