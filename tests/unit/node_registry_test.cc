#include <gtest/gtest.h>

#include "bastion/service/node_registry.h"

namespace bastion {
namespace {

TEST(NodeRegistry, CidrMatching) {
  EXPECT_TRUE(addressInCidr("127.0.0.1", "127.0.0.1/32"));
  EXPECT_FALSE(addressInCidr("127.0.0.2", "127.0.0.1/32"));
  EXPECT_TRUE(addressInCidr("10.1.2.3", "10.1.0.0/16"));
  EXPECT_FALSE(addressInCidr("10.2.2.3", "10.1.0.0/16"));
  EXPECT_TRUE(addressInCidr("::1", "::1/128"));
  EXPECT_TRUE(addressInCidr("::ffff:127.0.0.1", "127.0.0.0/8"));
  EXPECT_FALSE(addressInCidr("::1", "127.0.0.1/32"));
  EXPECT_TRUE(addressInCidr("1.2.3.4", "0.0.0.0/0"));
  EXPECT_FALSE(addressInCidr("not-an-ip", "0.0.0.0/0"));
  EXPECT_TRUE(addressInAnyCidr("10.1.2.3", {"192.168.0.0/16", "10.0.0.0/8"}));
  EXPECT_FALSE(addressInAnyCidr("10.1.2.3", {"192.168.0.0/16"}));
  EXPECT_FALSE(addressInAnyCidr("10.1.2.3", {}));
  EXPECT_FALSE(validateCidr("10.0.0.0/33").ok());
  EXPECT_FALSE(validateCidr("example.org").ok());
}

TEST(NodeRegistry, PermissionsRoundTrip) {
  auto p = parsePermissions("echo,store,move");
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(*p, kPermEcho | kPermStore | kPermMove);
  EXPECT_EQ(formatPermissions(*p), "echo,store,move");
  EXPECT_FALSE(parsePermissions("echo,admin").ok());
}

TEST(NodeRegistry, AeTitleRules) {
  EXPECT_TRUE(validateAeTitle("CT_SCANNER_1").ok());
  EXPECT_FALSE(validateAeTitle("").ok());
  EXPECT_FALSE(validateAeTitle("ABCDEFGHIJKLMNOPQ").ok());
  EXPECT_FALSE(validateAeTitle("A\\B").ok());
  EXPECT_FALSE(validateAeTitle("    ").ok());
}

}  // namespace
}  // namespace bastion
