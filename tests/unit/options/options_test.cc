#include "kube_router/options/options.h"

#include <gtest/gtest.h>

#include <regex>

#include "lib/help_flags.h"

namespace kr {
namespace {

using std::chrono::milliseconds;

Result<Options> Parse(std::vector<std::string> args) {
  std::vector<const char*> argv{"kube-router"};
  for (const auto& a : args) argv.push_back(a.c_str());
  return ParseOptions(static_cast<int>(argv.size()), argv.data());
}

TEST(Options, DefaultsMatchKubeRouter) {
  auto o = Parse({});
  ASSERT_TRUE(o.ok()) << o.error();
  EXPECT_TRUE(o->run_router);
  EXPECT_TRUE(o->run_firewall);
  EXPECT_TRUE(o->run_service_proxy);
  EXPECT_TRUE(o->enable_overlay);
  EXPECT_TRUE(o->enable_pod_egress);
  EXPECT_TRUE(o->nodes_full_mesh);
  EXPECT_FALSE(o->cleanup_config);
  EXPECT_EQ(o->config_sync_period, milliseconds(60'000));
  EXPECT_EQ(o->iptables_sync_period, milliseconds(60'000));
  EXPECT_EQ(o->ipvs_sync_period, milliseconds(60'000));
  EXPECT_EQ(o->routes_sync_period, milliseconds(60'000));
  EXPECT_EQ(o->cache_sync_timeout, milliseconds(60'000));
  EXPECT_EQ(o->bgp_holdtime, milliseconds(90'000));
  EXPECT_EQ(o->health_port, 20244);
  EXPECT_EQ(o->metrics_port, 0);
  EXPECT_EQ(o->metrics_path, "/metrics");
  EXPECT_EQ(o->bgp_port, 179u);
  ASSERT_EQ(o->service_cluster_ip_range.size(), 1u);
  EXPECT_EQ(o->service_cluster_ip_range[0].ToString(), "10.96.0.0/12");
  EXPECT_EQ(o->node_port_range_first, 30000);
  EXPECT_EQ(o->node_port_range_last, 32767);
}

TEST(Options, BooleansGoStyle) {
  auto o = Parse({"--masquerade-all", "--run-router=false", "--run-firewall=0",
                  "--enable-overlay=F", "--hairpin-mode=true"});
  ASSERT_TRUE(o.ok()) << o.error();
  EXPECT_TRUE(o->masquerade_all);
  EXPECT_FALSE(o->run_router);
  EXPECT_FALSE(o->run_firewall);
  EXPECT_FALSE(o->enable_overlay);
  EXPECT_TRUE(o->hairpin_mode);
  // The last occurrence wins.
  auto twice = Parse({"--run-router=false", "--run-router"});
  ASSERT_TRUE(twice.ok());
  EXPECT_TRUE(twice->run_router);
}

TEST(Options, ValuesBothSeparatedAndWithEquals) {
  auto o = Parse({"--kubeconfig", "/tmp/kc", "--master=https://1.2.3.4:6443",
                  "--iptables-sync-period", "300ms", "--routes-sync-period=2h22m", "-v", "3",
                  "--cluster-asn=65001", "--health-port=0", "--metrics-port", "9090"});
  ASSERT_TRUE(o.ok()) << o.error();
  EXPECT_EQ(o->kubeconfig, "/tmp/kc");
  EXPECT_EQ(o->master, "https://1.2.3.4:6443");
  EXPECT_EQ(o->iptables_sync_period, milliseconds(300));
  EXPECT_EQ(o->routes_sync_period, milliseconds((2 * 3600 + 22 * 60) * 1000));
  EXPECT_EQ(o->verbosity, 3);
  EXPECT_EQ(o->cluster_asn, 65001u);
  EXPECT_EQ(o->health_port, 0);
  EXPECT_EQ(o->metrics_port, 9090);
}

// pflag accepts a short flag's value as "-v=10", "-v 10" and "-v10".
TEST(Options, ShortFlagWithEqualsLikePflag) {
  for (const std::vector<std::string>& args :
       {std::vector<std::string>{"-v=10"}, {"-v", "10"}, {"-v10"}, {"--v=10"}}) {
    auto o = Parse(args);
    ASSERT_TRUE(o.ok()) << args[0] << ": " << o.error();
    EXPECT_EQ(o->verbosity, 10) << args[0];
  }
  auto bad = Parse({"-v=eleven"});
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.error().find("--v"), std::string::npos) << bad.error();
  EXPECT_NE(bad.error().find("\"eleven\""), std::string::npos) << bad.error();
  // After "--" nothing is a flag, so nothing is rewritten.
  EXPECT_FALSE(Parse({"--", "-v=3"}).ok());
}

TEST(Options, SlicesCommaSeparatedAndRepeated) {
  auto o = Parse({"--peer-router-ips=10.0.0.1,10.0.0.2", "--peer-router-ips", "fd00::3",
                  "--peer-router-asns=65001,65002", "--peer-router-asns=65003",
                  "--peer-router-passwords=,c2VjcmV0,", "--excluded-cidrs=10.1.0.0/16",
                  "--excluded-cidrs=10.2.0.0/16,fd00::/64"});
  ASSERT_TRUE(o.ok()) << o.error();
  ASSERT_EQ(o->peer_router_ips.size(), 3u);
  EXPECT_EQ(o->peer_router_ips[2].ToString(), "fd00::3");
  EXPECT_EQ(o->peer_router_asns, (std::vector<uint32_t>{65001, 65002, 65003}));
  EXPECT_EQ(o->peer_router_passwords, (std::vector<std::string>{"", "c2VjcmV0", ""}));
  ASSERT_EQ(o->excluded_cidrs.size(), 3u);
  EXPECT_EQ(o->excluded_cidrs[2].ToString(), "fd00::/64");
}

// Every rejection is one line that names the flag.
TEST(Options, BadValuesNameTheFlag) {
  struct Case {
    std::vector<std::string> args;
    std::string flag;
  };
  const Case cases[] = {
      {{"--run-router=maybe"}, "--run-router"},
      {{"--iptables-sync-period=5"}, "--iptables-sync-period"},
      {{"--routes-sync-period=0s"}, "--routes-sync-period"},
      {{"--ipvs-sync-period=-1m"}, "--ipvs-sync-period"},
      {{"--cache-sync-timeout", "soon"}, "--cache-sync-timeout"},
      {{"--health-port=70000"}, "--health-port"},
      {{"--metrics-port=-1"}, "--metrics-port"},
      {{"--cluster-asn=abc"}, "--cluster-asn"},
      {{"--cluster-asn=100"}, "--cluster-asn"},
      {{"--peer-router-ips=10.0.0.300"}, "--peer-router-ips"},
      {{"--peer-router-ips=10.0.0.1", "--peer-router-asns=65001,65002"}, "--peer-router-asns"},
      {{"--peer-router-ips=10.0.0.1"}, "--peer-router-asns"},
      {{"--excluded-cidrs=10.0.0.1"}, "--excluded-cidrs"},
      {{"--service-cluster-ip-range=10.0.0.0/8,10.1.0.0/16"}, "--service-cluster-ip-range"},
      {{"--service-node-port-range=40000-30000"}, "--service-node-port-range"},
      {{"--overlay-type=mesh"}, "--overlay-type"},
      {{"--iptables-mode=xtables"}, "--iptables-mode"},
      {{"--bgp-holdtime=1s"}, "--bgp-holdtime"},
      {{"--router-id=fd00::1"}, "--router-id"},
      {{"--peer-router-multihop-ttl=256"}, "--peer-router-multihop-ttl"},
      {{"-v", "x"}, "--v"},
      {{"--kubeconfig"}, "--kubeconfig"},
      {{"--no-such-flag"}, "--no-such-flag"},
      {{"--no-such-flag=1"}, "--no-such-flag"},
  };
  for (const Case& c : cases) {
    std::string joined;
    for (const auto& a : c.args) joined += a + " ";
    SCOPED_TRACE(joined);
    auto o = Parse(c.args);
    ASSERT_FALSE(o.ok());
    EXPECT_NE(o.error().find(c.flag), std::string::npos) << o.error();
    EXPECT_EQ(o.error().find('\n'), std::string::npos) << o.error();
  }
}

TEST(Options, PositionalArgumentsAreRejected) {
  for (const std::vector<std::string>& args :
       {std::vector<std::string>{"extra"}, {"--run-router", "extra"}, {"--", "x"}}) {
    auto o = Parse(args);
    ASSERT_FALSE(o.ok());
    EXPECT_NE(o.error().find("unexpected argument"), std::string::npos) << o.error();
  }
}

TEST(Options, HelpAndVersionAreFlags) {
  auto h = Parse({"-h"});
  ASSERT_TRUE(h.ok());
  EXPECT_TRUE(h->help);
  auto v = Parse({"--version"});
  ASSERT_TRUE(v.ok());
  EXPECT_TRUE(v->version);
  auto sv = Parse({"-V"});
  ASSERT_TRUE(sv.ok());
  EXPECT_TRUE(sv->version);
}

TEST(Options, HelpListsEveryFlagWithItsDefault) {
  std::string help = HelpText("kube-router");
  testing::ExpectHelpListsEveryFlagWithItsDefault(help);
}

// Ours: the beta namespace annotation is honoured only on request, so a stale annotation never
// changes a cluster on the v1 semantics.
TEST(Options, BetaNamespaceIsolationIsOptIn) {
  auto o = Parse({});
  ASSERT_TRUE(o.ok()) << o.error();
  EXPECT_FALSE(o->netpol_beta_namespace_isolation);
  auto on = Parse({"--netpol-beta-namespace-isolation"});
  ASSERT_TRUE(on.ok()) << on.error();
  EXPECT_TRUE(on->netpol_beta_namespace_isolation);
}

TEST(Options, NoControllerEnabledIsAnError) {
  auto o = Parse({"--run-router=false", "--run-firewall=false", "--run-service-proxy=false"});
  ASSERT_TRUE(o.ok());
  Status s = ValidateForRun(*o);
  EXPECT_FALSE(s.ok());
  EXPECT_NE(s.message().find("--run-"), std::string::npos);
  auto one = Parse({"--run-router=false", "--run-service-proxy=false"});
  ASSERT_TRUE(one.ok());
  EXPECT_TRUE(ValidateForRun(*one).ok());
}

// Issue 16 item 10: the status view is unauthenticated; loopback unless explicitly asked, and
// --help says what the flags do.
TEST(Options, StatusViewIsLoopbackUnlessAllowed) {
  for (const char* address : {"127.0.0.1", "127.0.0.53", "::1"}) {
    auto o = Parse({"--gobgp-admin-address", address});
    ASSERT_TRUE(o.ok());
    EXPECT_TRUE(ValidateForRun(*o).ok()) << address;
  }
  for (const char* address : {"0.0.0.0", "10.0.0.1", "::"}) {
    auto o = Parse({"--gobgp-admin-address", address});
    ASSERT_TRUE(o.ok());
    Status s = ValidateForRun(*o);
    EXPECT_FALSE(s.ok()) << address;
    EXPECT_NE(s.message().find("--gobgp-admin-allow-remote"), std::string::npos) << s.message();
    auto allowed = Parse({"--gobgp-admin-address", address, "--gobgp-admin-allow-remote"});
    ASSERT_TRUE(allowed.ok());
    EXPECT_TRUE(ValidateForRun(*allowed).ok()) << address;
    // Off (port 0) or without the router, the address does not matter.
    auto off = Parse({"--gobgp-admin-address", address, "--gobgp-admin-port=0"});
    ASSERT_TRUE(off.ok());
    EXPECT_TRUE(ValidateForRun(*off).ok()) << address;
  }
  auto bad = Parse({"--gobgp-admin-address", "localhost"});
  ASSERT_TRUE(bad.ok());
  EXPECT_FALSE(ValidateForRun(*bad).ok());
  std::string help = HelpText("kube-router");
  EXPECT_EQ(help.find("gRPC admin API (not available"), std::string::npos) << help;
  EXPECT_NE(help.find("read-only routing status view"), std::string::npos) << help;
}

}  // namespace
}  // namespace kr
