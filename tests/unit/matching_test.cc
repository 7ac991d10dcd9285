#include "index/matching.h"

#include <gtest/gtest.h>

namespace bastion::index {
namespace {

TEST(Matching, Wildcards) {
  EXPECT_TRUE(wildcardMatch("SMI*", "SMITH^JOHN", false));
  EXPECT_TRUE(wildcardMatch("*TH^*", "SMITH^JOHN", false));
  EXPECT_TRUE(wildcardMatch("SM?TH*", "SMITH", false));
  EXPECT_FALSE(wildcardMatch("SM?TH", "SMTH", false));
  EXPECT_FALSE(wildcardMatch("smi*", "SMITH", false));
  EXPECT_TRUE(wildcardMatch("smi*", "SMITH", true));
  EXPECT_TRUE(wildcardMatch("*", "", false));
  // Pathological pattern stays linear-ish (no exponential backtracking).
  EXPECT_FALSE(wildcardMatch("*a*a*a*a*a*a*a*a*b", std::string(5000, 'a'), false));
}

TEST(Matching, Ranges) {
  EXPECT_TRUE(rangeMatch("20200101-20201231", "20200615"));
  EXPECT_FALSE(rangeMatch("20200101-20201231", "20210101"));
  EXPECT_TRUE(rangeMatch("-20200101", "19991231"));
  EXPECT_TRUE(rangeMatch("20200101-", "20991231"));
  EXPECT_TRUE(rangeMatch("1000-1200", "120059"));
  EXPECT_FALSE(rangeMatch("20200101-", ""));
  EXPECT_TRUE(rangeMatch("20200101", "20200101"));
}

TEST(Matching, UidLists) {
  EXPECT_TRUE(matchValue(MatchKind::kUidList, "1.2\\1.3", "1.3"));
  EXPECT_FALSE(matchValue(MatchKind::kUidList, "1.2\\1.3", "1.4"));
  EXPECT_EQ(splitValues("a\\ b \\\\c").size(), 3u);
}

}  // namespace
}  // namespace bastion::index
