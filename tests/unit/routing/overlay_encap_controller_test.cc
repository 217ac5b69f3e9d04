// The routes controller with --overlay-encap (ipip, fou): GUE ports and tunnels over the fakes.
#include <gtest/gtest.h>

#include <algorithm>
#include <string>
#include <vector>

#include "kube_router/routing/cni_config.h"
#include "kube_router/routing/network_routes_controller.h"
#include "unit/routing/routes_controller_fixture.h"

// In the fixture's namespace: its helpers (Ip, Cidr) need no using-declarations.
namespace kr::routing::testing {
namespace {

const netlink::FouPort kGue4{IpAddress::Family::kV4, 5555, netlink::FouKind::kGue, 0};
// Somebody else's: a plain FoU port for IPIP on another port.
const netlink::FouPort kForeign{IpAddress::Family::kV4, 7777, netlink::FouKind::kDirect, 4};

class OverlayEncapControllerTest : public RoutesControllerTest {
 protected:
  // A fresh agent with `encap` (as after a restart with other flags) that learns n3's CIDR.
  void RunWith(OverlayEncap encap) {
    controller_.reset();
    config_.overlay_encap = encap;
    SyncOk();
    speaker_->Announce(Ip("198.51.100.3"), Cidr("10.1.3.0/24"), Ip("198.51.100.3"));
    SyncOk();
  }
  const netlink::Link& Tunnel() { return links_.links().at(TunnelName(Ip("198.51.100.3"))); }
};

TEST_F(OverlayEncapControllerTest, FouOpensTheGuePortAndEncapsulatesTheTunnels) {
  fou_.Seed(kForeign);
  RunWith(OverlayEncap::kFou);
  EXPECT_EQ(fou_.ports(), (std::vector<netlink::FouPort>{kGue4, kForeign}));
  EXPECT_EQ(Tunnel().kind, "ipip");
  EXPECT_EQ(Tunnel().tunnel_encap, (netlink::TunnelEncap{netlink::TunnelEncapType::kGue, 0, 5555}));
  EXPECT_TRUE(Tunnel().up);
  EXPECT_EQ(OurRoutes(), (std::vector<std::string>{"10.1.3.0/24 dev " + Tunnel().name}));
  // Steady state: the next sync writes nothing.
  fou_.failures().ResetCalls();
  links_.failures().ResetCalls();
  SyncOk(SyncReason::kPeriodic);
  EXPECT_EQ(fou_.failures().Calls(netlink::FakeFouPorts::kWrites), 0);
  EXPECT_EQ(links_.failures().Calls(netlink::FakeLinks::kWrites), 0);
}

TEST_F(OverlayEncapControllerTest, SwitchingEncapRecreatesTunnelsAndRemovesOnlyOurPort) {
  fou_.Seed(kForeign);
  RunWith(OverlayEncap::kFou);
  RunWith(OverlayEncap::kIpip);
  EXPECT_EQ(Tunnel().tunnel_encap, netlink::TunnelEncap{});
  EXPECT_EQ(fou_.ports(), (std::vector<netlink::FouPort>{kForeign}));
  RunWith(OverlayEncap::kFou);
  EXPECT_EQ(Tunnel().tunnel_encap.type, netlink::TunnelEncapType::kGue);
  EXPECT_EQ(fou_.ports(), (std::vector<netlink::FouPort>{kGue4, kForeign}));
}

TEST_F(OverlayEncapControllerTest, TheLastTunnelGoneClosesThePort) {
  RunWith(OverlayEncap::kFou);
  ASSERT_EQ(fou_.ports().size(), 1u);
  speaker_->Withdraw(Cidr("10.1.3.0/24"));
  SyncOk();
  EXPECT_TRUE(Tunnels().empty());
  EXPECT_TRUE(fou_.ports().empty());
}

TEST_F(OverlayEncapControllerTest, AForeignPortOnOurNumberIsReportedAndLeftAlone) {
  netlink::FouPort direct{IpAddress::Family::kV4, 5555, netlink::FouKind::kDirect, 4};
  fou_.Seed(direct);
  config_.overlay_encap = OverlayEncap::kFou;
  SyncOk();
  speaker_->Announce(Ip("198.51.100.3"), Cidr("10.1.3.0/24"), Ip("198.51.100.3"));
  Status status = Controller().Sync(SyncReason::kRequested);
  ASSERT_FALSE(status.ok());
  EXPECT_NE(status.message().find("FoU port 5555 is taken by a foreign fou ipproto 4 port 5555"),
            std::string::npos)
      << status.message();
  EXPECT_EQ(fou_.ports(), (std::vector<netlink::FouPort>{direct}));
  // The rest of the kernel sync still happened.
  EXPECT_EQ(OurRoutes(), (std::vector<std::string>{"10.1.3.0/24 dev " + Tunnel().name}));
}

TEST_F(OverlayEncapControllerTest, AFailedPortAddIsRetried) {
  fou_.failures().FailNext(netlink::FakeFouPorts::Op::kAdd, "modprobe fou: not found");
  config_.overlay_encap = OverlayEncap::kFou;
  SyncOk();
  speaker_->Announce(Ip("198.51.100.3"), Cidr("10.1.3.0/24"), Ip("198.51.100.3"));
  Status status = Controller().Sync(SyncReason::kRequested);
  EXPECT_NE(status.message().find("modprobe fou"), std::string::npos) << status.message();
  SyncOk();
  EXPECT_EQ(fou_.ports(), (std::vector<netlink::FouPort>{kGue4}));
}

TEST_F(OverlayEncapControllerTest, CleanupRemovesTunnelsAndOurFouPortsOfBothFamilies) {
  fou_.Seed(kForeign);
  RunWith(OverlayEncap::kFou);
  controller_->Shutdown();
  // As an IPv6 tunnel's port would be (a sync without IPv6 tunnels closes it).
  fou_.Seed({IpAddress::Family::kV6, 5555, netlink::FouKind::kGue, 0});
  auto removed = Controller().Cleanup();
  ASSERT_TRUE(removed.ok()) << removed.error();
  EXPECT_FALSE(links_.Has(TunnelName(Ip("198.51.100.3"))));
  EXPECT_EQ(fou_.ports(), (std::vector<netlink::FouPort>{kForeign}));
  EXPECT_NE(std::find(removed->begin(), removed->end(), "FoU gue port 5555 (IPv6)"),
            removed->end());
}

TEST_F(OverlayEncapControllerTest, FouMtuLeavesRoomForUdpAndGue) {
  config_.overlay_encap = OverlayEncap::kFou;
  SyncOk();
  EXPECT_EQ(links_.links().at(kBridgeName).mtu, 1500u - 32u);
}

}  // namespace
}  // namespace kr::routing::testing
