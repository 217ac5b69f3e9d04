#include "kube_router/proxy/ipvs_plan.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace kr::proxy::ipvs_plan_test {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;
using Op = IpvsChange::Op;

IpAddress Ip(const std::string& t) { return *IpAddress::Parse(t); }

VirtualService Vs(const std::string& vip, uint16_t port, std::vector<std::string> dests,
                  const std::string& sched = "rr", uint32_t weight = 1) {
  VirtualService vs;
  vs.service.address = Ip(vip);
  vs.service.port = port;
  vs.service.scheduler = sched;
  for (const auto& d : dests) {
    netlink::IpvsDestination dest;
    dest.address = Ip(d);
    dest.port = 8080;
    dest.weight = weight;
    vs.destinations.Put(dest);
  }
  return vs;
}

ProxyImage Image(std::vector<VirtualService> services, std::vector<std::string> vips) {
  ProxyImage image;
  for (auto& vs : services) image.services[vs.id()] = vs;
  for (const auto& v : vips) image.vips.insert(Ip(v));
  return image;
}

netlink::IpvsDestination Dest(const std::string& ip, uint16_t port, uint32_t weight = 1) {
  netlink::IpvsDestination d;
  d.address = Ip(ip);
  d.port = port;
  d.weight = weight;
  return d;
}

std::vector<std::string> Listed(const Destinations& dests) {
  std::vector<std::string> out;
  for (const auto& d : dests) out.push_back(IdOf(d).ToString() + " w" + std::to_string(d.weight));
  return out;
}

// The flat destination set keeps the map's semantics: sorted by (address, port), one per
// identity, a put replaces, lookups by identity.
TEST(DestinationsTest, SortedUniqueByIdentityLikeAMap) {
  Destinations d = Destinations::FromUnsorted({Dest("10.0.0.3", 80), Dest("10.0.0.1", 81),
                                               Dest("10.0.0.1", 80, 5), Dest("10.0.0.1", 80, 7)});
  EXPECT_THAT(Listed(d), ElementsAre("10.0.0.1:80 w5", "10.0.0.1:81 w1", "10.0.0.3:80 w1"));
  d.Put(Dest("10.0.0.2", 80));     // in the middle
  d.Put(Dest("10.0.0.9", 80));     // at the end
  d.Put(Dest("10.0.0.1", 81, 0));  // replaces
  d.Put(Dest("10.0.0.0", 80));     // at the front
  EXPECT_THAT(Listed(d), ElementsAre("10.0.0.0:80 w1", "10.0.0.1:80 w5", "10.0.0.1:81 w0",
                                     "10.0.0.2:80 w1", "10.0.0.3:80 w1", "10.0.0.9:80 w1"));
  EXPECT_TRUE(d.contains({Ip("10.0.0.2"), 80}));
  EXPECT_FALSE(d.contains({Ip("10.0.0.2"), 81}));
  EXPECT_EQ(d.find({Ip("10.0.0.1"), 81})->weight, 0u);
  d.Erase({Ip("10.0.0.2"), 80});
  d.Erase({Ip("10.0.0.2"), 80});  // absent: nothing
  EXPECT_EQ(d.size(), 5u);
  EXPECT_FALSE(d.contains({Ip("10.0.0.2"), 80}));
  Destinations same;
  for (const char* ip : {"10.0.0.9", "10.0.0.3", "10.0.0.0"}) same.Put(Dest(ip, 80));
  same.Put(Dest("10.0.0.1", 81, 0));
  same.Put(Dest("10.0.0.1", 80, 5));
  same.Compact();
  EXPECT_EQ(same, d);  // equality does not depend on the order of the puts
}

// Copies share one vector until one of them changes: a change to a copy never shows in another.
TEST(DestinationsTest, CopiesShareUntilOneChanges) {
  Destinations a = Destinations::FromUnsorted({Dest("10.0.0.1", 80), Dest("10.0.0.2", 80)});
  Destinations b = a;
  Destinations c = a;
  EXPECT_TRUE(b.SharesWith(a));
  b.Put(Dest("10.0.0.3", 80));
  c.Erase({Ip("10.0.0.1"), 80});
  EXPECT_FALSE(b.SharesWith(a));
  EXPECT_FALSE(c.SharesWith(a));
  EXPECT_THAT(Listed(a), ElementsAre("10.0.0.1:80 w1", "10.0.0.2:80 w1"));
  EXPECT_THAT(Listed(b), ElementsAre("10.0.0.1:80 w1", "10.0.0.2:80 w1", "10.0.0.3:80 w1"));
  EXPECT_THAT(Listed(c), ElementsAre("10.0.0.2:80 w1"));
  Destinations d = a;
  d.Put(Dest("10.0.0.2", 80, 0));  // a replace is a change too
  EXPECT_EQ(a.find({Ip("10.0.0.2"), 80})->weight, 1u);
  EXPECT_EQ(d.find({Ip("10.0.0.2"), 80})->weight, 0u);
  c.Erase({Ip("10.0.0.2"), 80});
  EXPECT_TRUE(c.empty());
  EXPECT_EQ(c, Destinations());
}

// An element keeps every attribute the proxy writes or compares (identity, forwarding method,
// weight, and the thresholds a kernel read-back may carry), but not the kernel's connection
// counts: they are statistics, not state the proxy wants (the drain queue reads them fresh).
TEST(DestinationsTest, ElementsKeepEveryWritableAttributeButNotConnectionCounts) {
  netlink::IpvsDestination tunnel = Dest("10.0.0.2", 80, 7);
  tunnel.forward = netlink::IpvsForward::kTunnel;
  tunnel.active_connections = 3;
  tunnel.inactive_connections = 4;
  netlink::IpvsDestination route = Dest("fd00::1", 8080, 0);
  route.forward = netlink::IpvsForward::kRoute;
  Destinations d = Destinations::FromUnsorted({route, tunnel});
  ASSERT_EQ(d.size(), 2u);
  netlink::IpvsDestination kept = *d.find(IdOf(tunnel));
  EXPECT_EQ(kept.forward, netlink::IpvsForward::kTunnel);
  EXPECT_EQ(kept.weight, 7u);
  EXPECT_EQ(kept.active_connections + kept.inactive_connections, 0u);
  EXPECT_TRUE(kept.SameConfig(tunnel));
  EXPECT_EQ(*d.find(IdOf(route)), route);  // (fd00::1 sorts after 10.0.0.2)
  EXPECT_EQ(IdOf(*d.begin()), IdOf(tunnel));

  // Thresholds (only ever read back: the proxy never sets them) are kept per element, through
  // puts, erases, copies and a compaction, so a drifted one still differs from the wanted one.
  netlink::IpvsDestination limited = Dest("10.0.0.1", 80);
  limited.upper_threshold = 100;
  limited.lower_threshold = 10;
  Destinations read = d;
  read.Put(limited);
  Destinations wanted = d;
  wanted.Put(Dest("10.0.0.1", 80));
  EXPECT_FALSE(d.contains(IdOf(limited))) << "a put into a copy changed the original";
  EXPECT_NE(read, wanted);
  EXPECT_FALSE((*read.find(IdOf(limited))).SameConfig(*wanted.find(IdOf(limited))));
  EXPECT_EQ(*read.find(IdOf(limited)), limited);
  read.Put(Dest("10.0.0.0", 80));  // before it: its thresholds move with it
  read.Erase(IdOf(route));
  Destinations copy = read;
  copy.Compact();
  EXPECT_EQ(*copy.find(IdOf(limited)), limited);
  EXPECT_EQ(copy.find({Ip("10.0.0.0"), 80})->upper_threshold, 0u);
  EXPECT_EQ(copy.find(IdOf(tunnel))->weight, 7u);
  // Repaired (the wanted element put over it): equal to an image that never had thresholds.
  read.Put(Dest("10.0.0.1", 80));
  read.Compact();
  Destinations plain = Destinations::FromUnsorted({Dest("10.0.0.0", 80), Dest("10.0.0.1", 80)});
  plain.Put(tunnel);
  EXPECT_EQ(read, plain);
}

std::vector<std::string> Ops(const ProxyPlan& plan) {
  std::vector<std::string> out;
  for (const auto& c : plan.ipvs) {
    const char* names[] = {"add-svc",     "update-svc", "del-svc",   "add-dest",
                           "update-dest", "del-dest",   "drain-dest"};
    std::string line = std::string(names[static_cast<int>(c.op)]) + " " +
                       VirtualServiceId::Of(c.service).ToString();
    if (c.op >= Op::kAddDestination) {
      line += " " + DestinationId{c.destination.address, c.destination.port}.ToString() + " w" +
              std::to_string(c.destination.weight);
    }
    out.push_back(line);
  }
  return out;
}

TEST(IpvsPlanTest, EqualImagesNeedNothing) {
  auto image = Image({Vs("10.96.0.1", 80, {"10.1.0.1", "10.1.0.2"})}, {"10.96.0.1"});
  EXPECT_TRUE(Diff(image, image, nullptr, {}).empty());
  EXPECT_TRUE(Diff(image, image, nullptr, {true}).empty());
}

TEST(IpvsPlanTest, ColdStartAddsVipsServicesThenDestinations) {
  auto desired = Image({Vs("10.96.0.1", 80, {"10.1.0.1"})}, {"10.96.0.1"});
  auto plan = Diff(desired, {}, nullptr, {});
  EXPECT_THAT(plan.add_vips, ElementsAre(Ip("10.96.0.1")));
  EXPECT_THAT(Ops(plan), ElementsAre("add-svc TCP 10.96.0.1:80",
                                     "add-dest TCP 10.96.0.1:80 "
                                     "10.1.0.1:8080 w1"));
  EXPECT_THAT(plan.delete_vips, IsEmpty());
}

TEST(IpvsPlanTest, EndpointChangeTouchesOnlyThatDestination) {
  auto actual =
      Image({Vs("10.96.0.1", 80, {"10.1.0.1", "10.1.0.2"}), Vs("10.96.0.2", 80, {"10.1.0.3"})},
            {"10.96.0.1", "10.96.0.2"});
  auto desired =
      Image({Vs("10.96.0.1", 80, {"10.1.0.1", "10.1.0.9"}), Vs("10.96.0.2", 80, {"10.1.0.3"})},
            {"10.96.0.1", "10.96.0.2"});
  auto plan = Diff(desired, actual, nullptr, {});
  EXPECT_THAT(Ops(plan), ElementsAre("add-dest TCP 10.96.0.1:80 10.1.0.9:8080 w1",
                                     "del-dest TCP 10.96.0.1:80 10.1.0.2:8080 w1"));
  EXPECT_TRUE(plan.add_vips.empty() && plan.delete_vips.empty());
}

TEST(IpvsPlanTest, SchedulerAndAffinityChangeInPlace) {
  auto actual = Image({Vs("10.96.0.1", 80, {"10.1.0.1"}, "rr")}, {"10.96.0.1"});
  auto want = Vs("10.96.0.1", 80, {"10.1.0.1"}, "sh");
  want.service.flags = netlink::ipvs_flags::kPersistent;
  want.service.timeout = 10;
  auto plan = Diff(Image({want}, {"10.96.0.1"}), actual, nullptr, {});
  EXPECT_THAT(Ops(plan), ElementsAre("update-svc TCP 10.96.0.1:80"));
  EXPECT_EQ(plan.ipvs[0].service.timeout, 10u);
}

TEST(IpvsPlanTest, RemovedServiceGoesAfterItsVipIsNoLongerWanted) {
  auto actual = Image({Vs("10.96.0.1", 80, {"10.1.0.1"})}, {"10.96.0.1"});
  auto plan = Diff({}, actual, nullptr, {});
  EXPECT_THAT(Ops(plan), ElementsAre("del-svc TCP 10.96.0.1:80"));
  EXPECT_THAT(plan.delete_vips, ElementsAre(Ip("10.96.0.1")));
}

TEST(IpvsPlanTest, ScopeLimitsWhatIsCompared) {
  auto actual = Image({Vs("10.96.0.1", 80, {"10.1.0.1"}), Vs("10.96.0.2", 80, {})},
                      {"10.96.0.1", "10.96.0.2"});
  auto desired = Image({Vs("10.96.0.1", 80, {"10.1.0.2"})}, {"10.96.0.1"});
  DiffScope scope;
  scope.services.insert(Vs("10.96.0.1", 80, {}).id());
  auto plan = Diff(desired, actual, &scope, {});
  // 10.96.0.2 differs too, but was not touched: left alone.
  EXPECT_THAT(Ops(plan), ElementsAre("add-dest TCP 10.96.0.1:80 10.1.0.2:8080 w1",
                                     "del-dest TCP 10.96.0.1:80 10.1.0.1:8080 w1"));
  EXPECT_THAT(plan.delete_vips, IsEmpty());
}

TEST(IpvsPlanTest, GracefulDrainsInsteadOfDeletingAndCancelsWhenTheEndpointReturns) {
  auto actual = Image({Vs("10.96.0.1", 80, {"10.1.0.1", "10.1.0.2"})}, {"10.96.0.1"});
  auto desired = Image({Vs("10.96.0.1", 80, {"10.1.0.1"})}, {"10.96.0.1"});
  auto plan = Diff(desired, actual, nullptr, {true});
  EXPECT_THAT(Ops(plan), ElementsAre("drain-dest TCP 10.96.0.1:80 10.1.0.2:8080 w0"));
  ASSERT_EQ(plan.draining.size(), 1u);
  EXPECT_EQ(plan.draining.begin()->second.address, Ip("10.1.0.2"));

  // Already at weight 0: nothing to write, still draining.
  ProxyImage drained = actual;
  ApplyToImage(plan, drained);
  auto again = Diff(desired, drained, nullptr, {true});
  EXPECT_THAT(Ops(again), IsEmpty());
  EXPECT_EQ(again.draining.size(), 1u);

  // The endpoint comes back: weight 1 again, no longer draining.
  auto back = Diff(actual, drained, nullptr, {true});
  EXPECT_THAT(Ops(back), ElementsAre("update-dest TCP 10.96.0.1:80 10.1.0.2:8080 w1"));
  EXPECT_THAT(back.draining, IsEmpty());
}

TEST(IpvsPlanTest, VipWithoutItsRouteIsRepairedOrRemoved) {
  ProxyImage actual;
  actual.vips_without_route.insert(Ip("10.96.0.1"));
  actual.vips_without_route.insert(Ip("10.96.0.2"));
  auto desired = Image({}, {"10.96.0.1"});
  auto plan = Diff(desired, actual, nullptr, {});
  EXPECT_THAT(plan.add_vips, ElementsAre(Ip("10.96.0.1")));
  EXPECT_THAT(plan.delete_vips, ElementsAre(Ip("10.96.0.2")));
}

TEST(IpvsPlanTest, ApplyingThePlanMakesTheImagesEqual) {
  auto actual = Image(
      {Vs("10.96.0.1", 80, {"10.1.0.1", "10.1.0.2"}, "rr"), Vs("10.96.0.3", 53, {"10.1.0.5"})},
      {"10.96.0.1", "10.96.0.3"});
  auto desired = Image(
      {Vs("10.96.0.1", 80, {"10.1.0.2", "10.1.0.3"}, "lc"), Vs("10.96.0.4", 80, {"10.1.0.7"})},
      {"10.96.0.1", "10.96.0.4"});
  auto plan = Diff(desired, actual, nullptr, {});
  ApplyToImage(plan, actual);
  EXPECT_EQ(actual, desired);
  EXPECT_TRUE(Diff(desired, actual, nullptr, {}).empty());
}

}  // namespace
}  // namespace kr::proxy::ipvs_plan_test
