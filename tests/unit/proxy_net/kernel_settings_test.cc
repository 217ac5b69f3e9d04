// Kernel settings of the service proxy over the stateful sysctl and IPVS fakes.
#include "kube_router/proxy/kernel_settings.h"

#include <gtest/gtest.h>

#include "kube_router/netlink/fakes.h"

namespace kr::proxy::kernel_settings_test {
namespace {

using netlink::FakeIpvs;
using netlink::FakeSysctl;

void SeedKernelDefaults(FakeSysctl& sysctl) {
  for (const char* key : {"net.ipv4.vs.conntrack", "net.ipv4.vs.expire_nodest_conn",
                          "net.ipv4.vs.expire_quiescent_template", "net.ipv4.vs.sloppy_tcp",
                          "net.ipv4.conf.all.arp_ignore", "net.ipv4.conf.all.arp_announce"}) {
    sysctl.Seed(key, "0");
  }
  sysctl.Seed("net.ipv4.vs.conn_reuse_mode", "1");
  sysctl.Seed("net/ipv4/conf/all/rp_filter", "1");
  sysctl.Seed("net/ipv4/conf/eth0.100/rp_filter", "1");  // a VLAN name holds a dot
  sysctl.Seed("net/ipv4/conf/kube-bridge/rp_filter", "0");
  sysctl.Seed("net/ipv4/conf/kube-dummy-if/rp_filter", "2");
}

std::string Get(FakeSysctl& sysctl, const std::string& key) { return *sysctl.Get(key); }

TEST(KernelSettings, WritesKubeRoutersValuesOnceAndLoosensOnlyStrictRpFilter) {
  FakeSysctl sysctl;
  FakeIpvs ipvs;
  SeedKernelDefaults(sysctl);
  KernelSettings settings(&sysctl, &ipvs);
  KernelSettingsInput input;
  input.kernel_release = "6.1.0-18-amd64";
  input.rp_filter_interfaces = {"kube-bridge", "kube-dummy-if", "eth0.100", "missing0"};
  ASSERT_TRUE(settings.Apply(input).ok());

  EXPECT_EQ(Get(sysctl, "net.ipv4.vs.conntrack"), "1");
  EXPECT_EQ(Get(sysctl, "net.ipv4.vs.expire_nodest_conn"), "1");
  EXPECT_EQ(Get(sysctl, "net.ipv4.vs.expire_quiescent_template"), "1");
  EXPECT_EQ(Get(sysctl, "net.ipv4.conf.all.arp_ignore"), "1");
  EXPECT_EQ(Get(sysctl, "net.ipv4.conf.all.arp_announce"), "2");
  EXPECT_EQ(Get(sysctl, "net.ipv4.vs.sloppy_tcp"), "0");
  EXPECT_EQ(Get(sysctl, "net.ipv4.vs.conn_reuse_mode"), "1");  // kept on >= 5.9 (parity.md)
  EXPECT_EQ(Get(sysctl, "net/ipv4/conf/all/rp_filter"), "2");
  EXPECT_EQ(Get(sysctl, "net/ipv4/conf/eth0.100/rp_filter"), "2");
  EXPECT_EQ(Get(sysctl, "net/ipv4/conf/kube-bridge/rp_filter"), "0");  // off stays off
  EXPECT_EQ(Get(sysctl, "net/ipv4/conf/kube-dummy-if/rp_filter"), "2");

  // Nothing differs the second time: no write at all.
  const size_t writes = sysctl.writes().size();
  ASSERT_TRUE(settings.Apply(input).ok());
  EXPECT_EQ(sysctl.writes().size(), writes);

  input.sloppy_tcp = true;  // a DSR service with mh appeared
  ASSERT_TRUE(settings.Apply(input).ok());
  EXPECT_EQ(Get(sysctl, "net.ipv4.vs.sloppy_tcp"), "1");
  EXPECT_EQ(sysctl.writes().size(), writes + 1);
}

TEST(KernelSettings, ConnReuseModeZeroOnlyBeforeLinux59) {
  EXPECT_TRUE(ConnReuseModeWanted("4.19.0-26-amd64"));
  EXPECT_TRUE(ConnReuseModeWanted("5.8.18"));
  EXPECT_FALSE(ConnReuseModeWanted("5.9.0"));
  EXPECT_FALSE(ConnReuseModeWanted("5.10.0-30-amd64"));
  EXPECT_FALSE(ConnReuseModeWanted("6.1.0-18-amd64"));
  EXPECT_TRUE(ConnReuseModeWanted("garbage"));  // unknown: kube-router's value
  FakeSysctl sysctl;
  SeedKernelDefaults(sysctl);
  KernelSettings settings(&sysctl, nullptr);
  KernelSettingsInput input;
  input.kernel_release = "5.4.0-150-generic";
  ASSERT_TRUE(settings.Apply(input).ok());
  EXPECT_EQ(Get(sysctl, "net.ipv4.vs.conn_reuse_mode"), "0");
}

TEST(KernelSettings, MissingKeysAreSkippedAndWriteErrorsReportedAfterTheRest) {
  FakeSysctl sysctl;  // IPVS not loaded: no net.ipv4.vs.* at all
  sysctl.Seed("net.ipv4.conf.all.arp_ignore", "0");
  sysctl.Seed("net.ipv4.conf.all.arp_announce", "0");
  sysctl.Seed("net/ipv4/conf/all/rp_filter", "1");
  KernelSettings settings(&sysctl, nullptr);
  KernelSettingsInput input;
  input.kernel_release = "6.1.0";
  ASSERT_TRUE(settings.Apply(input).ok());
  EXPECT_EQ(Get(sysctl, "net.ipv4.conf.all.arp_announce"), "2");

  sysctl.Seed("net.ipv4.conf.all.arp_ignore", "0");
  sysctl.failures().FailNext(FakeSysctl::Op::kSet);
  Status s = settings.Apply(input);
  EXPECT_FALSE(s.ok());
  EXPECT_NE(s.message().find("injected"), std::string::npos) << s.message();
  ASSERT_TRUE(settings.Apply(input).ok());  // retried
  EXPECT_EQ(Get(sysctl, "net.ipv4.conf.all.arp_ignore"), "1");
}

TEST(KernelSettings, IpvsTimeoutsAreSentWhenSetAndWhenTheyChange) {
  FakeSysctl sysctl;
  FakeIpvs ipvs;
  KernelSettings settings(&sysctl, &ipvs);
  KernelSettingsInput input;
  input.kernel_release = "6.1.0";
  ASSERT_TRUE(settings.Apply(input).ok());
  EXPECT_EQ(ipvs.timeouts().tcp, 0u);  // all zero: the kernel keeps 900/120/300

  input.timeouts = {3600, 0, 60};
  ipvs.failures().FailNext(FakeIpvs::Op::kSetTimeouts);
  EXPECT_FALSE(settings.Apply(input).ok());
  ASSERT_TRUE(settings.Apply(input).ok());
  EXPECT_EQ(ipvs.timeouts().tcp, 3600u);
  EXPECT_EQ(ipvs.timeouts().udp, 60u);
  // Unchanged: not sent again (an injected failure would show if it were).
  ipvs.failures().FailNext(FakeIpvs::Op::kSetTimeouts);
  ASSERT_TRUE(settings.Apply(input).ok());
  ipvs.failures().Clear();
  input.timeouts.tcp_fin = 30;
  ASSERT_TRUE(settings.Apply(input).ok());
  EXPECT_EQ(ipvs.timeouts().tcp_fin, 30u);
}

}  // namespace
}  // namespace kr::proxy::kernel_settings_test
