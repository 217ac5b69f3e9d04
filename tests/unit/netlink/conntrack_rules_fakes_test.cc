// The value types and fakes of Conntrack, RuleTable and PodNetns.
#include <gtest/gtest.h>

#include "kube_router/netlink/fakes.h"

namespace kr::netlink::conntrack_rules_fakes_test {
namespace {

IpAddress A(const char* text) { return *IpAddress::Parse(text); }

ConntrackFlow Udp(const char* client, uint16_t client_port, const char* vip, uint16_t port,
                  const char* backend, uint16_t backend_port) {
  ConntrackFlow f;
  f.protocol = ip_protocol::kUdp;
  f.original = {A(client), A(vip), client_port, port};
  f.reply = {A(backend), A(client), backend_port, client_port};
  return f;
}

TEST(ConntrackFilterTest, MatchesEveryFieldThatIsSet) {
  ConntrackFlow flow = Udp("192.0.2.9", 5000, "10.96.0.10", 53, "10.244.1.5", 5353);
  ConntrackFilter f;
  f.reply_source = A("10.244.1.5");
  EXPECT_TRUE(f.Matches(flow));
  f.original_destination = A("10.96.0.10");
  f.original_destination_port = 53;
  f.reply_source_port = 5353;
  EXPECT_TRUE(f.Matches(flow));
  EXPECT_EQ(f.ToString(), "udp v4 dst 10.96.0.10 dport 53 reply-src 10.244.1.5 reply-sport 5353");

  ConntrackFilter other = f;
  other.original_destination_port = 54;
  EXPECT_FALSE(other.Matches(flow));
  other = f;
  other.reply_source = A("10.244.1.6");
  EXPECT_FALSE(other.Matches(flow));
  other = f;
  other.protocol = ip_protocol::kSctp;
  EXPECT_FALSE(other.Matches(flow)) << "protocol";
  other = f;
  other.family = IpAddress::Family::kV6;
  EXPECT_FALSE(other.Matches(flow)) << "family";
  EXPECT_EQ(flow.ToString(),
            "udp 192.0.2.9:5000->10.96.0.10:53 reply 10.244.1.5:5353->192.0.2.9:5000");
}

TEST(FakeConntrackTest, DeletesOnlyMatchingFlowsAndRefusesWideFilters) {
  FakeConntrack ct;
  ct.Seed(Udp("192.0.2.9", 5000, "10.96.0.10", 53, "10.244.1.5", 53));
  ct.Seed(Udp("192.0.2.9", 5001, "10.96.0.10", 53, "10.244.2.5", 53));
  ConntrackFlow v6 = Udp("192.0.2.9", 5000, "10.96.0.10", 53, "10.244.1.5", 53);
  v6.original = {A("fd00::9"), A("fd00:96::10"), 5000, 53};
  v6.reply = {A("fd00:244::5"), A("fd00::9"), 53, 5000};
  ct.Seed(v6);

  ConntrackFilter wide;
  EXPECT_FALSE(ct.Delete({wide}).ok()) << "a filter without any field would flush";
  EXPECT_EQ(ct.flows().size(), 3u);

  ConntrackFilter gone;
  gone.original_destination = A("10.96.0.10");
  gone.reply_source = A("10.244.1.5");
  auto deleted = ct.Delete({gone});
  ASSERT_TRUE(deleted.ok()) << deleted.error();
  EXPECT_EQ(*deleted, 1u);
  auto v4 = ct.List(IpAddress::Family::kV4);
  ASSERT_TRUE(v4.ok());
  ASSERT_EQ(v4->size(), 1u);
  EXPECT_EQ(v4->front().reply.source, A("10.244.2.5"));
  EXPECT_EQ(ct.List(IpAddress::Family::kV6)->size(), 1u);

  ct.failures().FailNext(FakeConntrack::Op::kDelete);
  EXPECT_FALSE(ct.Delete({gone}).ok());
}

TEST(FakeRuleTableTest, AddListDeleteByIdentityAndProtocol) {
  FakeRuleTable rules;
  Rule dsr;
  dsr.priority = 32764;
  dsr.table = kKubeRouterDsrTable;
  dsr.fwmark = 0x2a;
  ASSERT_TRUE(rules.Add(dsr).ok());
  EXPECT_FALSE(rules.Add(dsr).ok()) << "duplicate";
  Rule foreign = dsr;
  foreign.protocol = 4;  // static, someone else's
  ASSERT_TRUE(rules.Add(foreign).ok()) << "differs by protocol";
  Rule v6 = dsr;
  v6.family = IpAddress::Family::kV6;
  v6.from = *IpPrefix::Parse("fd00::/64");
  ASSERT_TRUE(rules.Add(v6).ok());
  Rule wrong_family = dsr;
  wrong_family.from = *IpPrefix::Parse("fd00::/64");
  EXPECT_FALSE(rules.Add(wrong_family).ok());

  EXPECT_EQ(rules.List(IpAddress::Family::kV4, kKubeRouterRouteProtocol)->size(), 1u);
  EXPECT_EQ(rules.List(IpAddress::Family::kV4, std::nullopt)->size(), 2u);
  EXPECT_EQ(rules.List(IpAddress::Family::kV6, std::nullopt)->size(), 1u);
  ASSERT_TRUE(rules.Delete(dsr).ok());
  EXPECT_FALSE(rules.Delete(dsr).ok()) << "already gone";
  EXPECT_EQ(rules.rules().size(), 2u);
  EXPECT_EQ(dsr.ToString(), "v4 pref 32764 fwmark 0x2a/0xffffffff lookup 78 proto 17");
}

TEST(FakePodNetnsTest, RunsWorkForKnownPodsOnly) {
  FakePodNetns pods;
  pods.AddPod(A("10.244.1.5"), "net1");
  std::string seen;
  EXPECT_TRUE(pods.RunInPodNetns(A("10.244.1.5"),
                                 [&](const PodNetnsContext& c) {
                                   seen = c.device;
                                   return Status::Ok();
                                 })
                  .ok());
  EXPECT_EQ(seen, "net1");
  Status missing = pods.RunInPodNetns(A("10.244.1.6"), [](const PodNetnsContext&) {
    ADD_FAILURE() << "must not run";
    return Status::Ok();
  });
  EXPECT_FALSE(missing.ok());
  EXPECT_NE(missing.message().find("10.244.1.6"), std::string::npos);
  EXPECT_EQ(pods.entered().size(), 1u);
}

}  // namespace
}  // namespace kr::netlink::conntrack_rules_fakes_test
