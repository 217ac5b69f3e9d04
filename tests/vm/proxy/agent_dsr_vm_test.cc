// proxy_agent_vm_test (fixture and world: agent_vm_fixture.h): DSR through the agents (the
// kernel pieces alone: dsr_vm_test.cc in proxy_kernel_vm_test).
#include <gtest/gtest.h>

#include <chrono>
#include <cstdlib>
#include <map>
#include <regex>
#include <string>

#include "vm/proxy/agent_vm_fixture.h"

namespace kr::testing::agent_vm {
namespace {

// The DSR counters a scrape of node0 (the director) must show rising with the traffic: the
// replies leave the pods' nodes directly, so only the inbound side and the connections count.
constexpr const char* kDsrCounters[] = {"kube_router_service_total_connections",
                                        "kube_router_service_packets_in",
                                        "kube_router_service_bytes_in"};

// The value of `family`'s series for the DSR Service `name` at `vip` in node0's scrape; -1 when
// the scrape fails or lacks it.
double DsrSample(ProxyWorld& world, const char* family, const char* name, const char* vip,
                 std::string* scrape) {
  const std::string series = std::string("\n") + family +
                             "{port=\"8080\",protocol=\"tcp\",service_name=\"" + name +
                             "\",service_vip=\"" + vip + "\",svc_namespace=\"default\"} ";
  auto out = world.Metrics(0, kMetricsPort);
  *scrape = out.ok() ? *out : out.error();
  const size_t at = out.ok() ? out->find(series) : std::string::npos;
  if (at == std::string::npos) return -1;
  return std::strtod(out->c_str() + at + series.size(), nullptr);
}

// DSR (kube-router.io/service.dsr=tunnel) through the agents. node0 is the director for both
// external IPs: a fwmark service with an IPIP real server and no VIP on the node; the agent of the
// endpoint's node puts the VIP inside the pod; the pod answers the outside client from the VIP
// itself and sees the client's own address. For b1 the reply leaves node1 straight back (node0's
// IPVS never sees it). Without the annotation all of it goes.
TEST_F(ProxyAgentVmTest, DsrPodsAnswerTheOutsideClientFromTheVip) {
  struct Case {
    const char* name;
    const char* vip;
    const char* cluster_ip;
    const char* pod;
  };
  const Case cases[] = {{"dsr-local", "203.0.113.21", "10.96.1.21", kA0},
                        {"dsr-remote", "203.0.113.22", "10.96.1.22", kB1}};
  auto spec = [](const Case& c) {
    return R"({"clusterIP":)" + Q(c.cluster_ip) + R"(,"clusterIPs":[)" + Q(c.cluster_ip) +
           R"(],"externalIPs":[)" + Q(c.vip) +
           R"(],"ports":[{"name":"t","port":8080,"protocol":"TCP","targetPort":8080}]})";
  };
  for (const Case& c : cases) {
    ASSERT_OK(
        world_->Apply(ServiceJson(c.name, spec(c), R"({"kube-router.io/service.dsr":"tunnel"})")));
    ASSERT_OK(world_->Apply(SliceJson("default", std::string(c.name) + "-1", c.name, "IPv4",
                                      {Ep(c.pod)}, {{"t", 8080, "TCP"}})));
  }
  auto routes = Exec({"ip", "-n", world_->ClientNs(), "route", "replace", "203.0.113.0/24", "via",
                      PodNetwork::kExternalNodeIp});
  ASSERT_TRUE(routes.ok() && routes->exit_code == 0);
  // Each case's DSR counters before its traffic (the series exist once the fwmark service does).
  std::map<std::string, double> before;
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    const auto& pod = world_->net().pod(c.pod);
    std::string escaped = pod.ip;
    for (size_t at = escaped.find('.'); at != std::string::npos; at = escaped.find('.', at + 2)) {
      escaped.insert(at, "\\");
    }
    const std::regex tunnel("-> " + escaped + ":8080 +Tunnel");
    ASSERT_TRUE(WaitFor([&] { return std::regex_search(world_->Ipvsadm(0), tunnel); }, kProgrammed))
        << world_->Ipvsadm(0);
    std::string in_pod;
    EXPECT_TRUE(WaitFor(
        [&] {
          auto out = pod.ns->Sh("ip -d addr show kube-tunnel-if 2>&1 || true");
          in_pod = out.ok() ? *out : out.error();
          return in_pod.find(std::string("inet ") + c.vip + "/32") != std::string::npos;
        },
        kProgrammed))
        << "the VIP inside the pod: " << in_pod;
    for (const char* family : kDsrCounters) {
      std::string scrape;
      double& value = before[std::string(c.name) + " " + family];
      EXPECT_TRUE(
          WaitFor([&] { return (value = DsrSample(*world_, family, c.name, c.vip, &scrape)) >= 0; },
                  kProgrammed))
          << family << " of " << c.name << " not in:\n"
          << scrape.substr(0, 4000);
    }
    Answer a;
    EXPECT_TRUE(WaitAnswer(world_->ClientNs(), c.vip, 8080, Proto::kTcp, {Name(c.pod)}, &a))
        << a.ToString();
    EXPECT_EQ(a.client_ip, ProxyWorld::kClientIp) << "no NAT on the way in";
    TcpHolder held(world_->ClientNs(), c.vip, 8080, kAskTimeout);
    EXPECT_TRUE(held.Alive(kAskTimeout)) << "a long-lived DSR connection echoes";
  }
  auto shown = world_->Ipvsadm(0);
  EXPECT_NE(shown.find("FWM"), std::string::npos) << shown;
  // node0's scrape names each fwmark service by its Service and DSR VIP (the mark its plan gave)
  // and counts the traffic above: at least WaitAnswer's and the held connection, and their
  // inbound packets and bytes.
  for (const Case& c : cases) {
    for (const char* family : kDsrCounters) {
      const double was = before[std::string(c.name) + " " + family];
      const double want = was + (family == kDsrCounters[0] ? 2 : 1);
      std::string scrape;
      double now = -1;
      EXPECT_TRUE(WaitFor(
          [&] { return (now = DsrSample(*world_, family, c.name, c.vip, &scrape)) >= want; },
          kProgrammed))
          << family << " of " << c.name << " was " << was << " before the traffic, now " << now
          << "; scrape:\n"
          << scrape.substr(0, 4000);
    }
  }
  auto node_addresses = world_->NodeNs(0).Sh("ip addr show");
  ASSERT_TRUE(node_addresses.ok());
  EXPECT_EQ(node_addresses->find("203.0.113.21"), std::string::npos) << "the director has no VIP";

  // The annotation goes: no fwmark service, no tunnel in the pods, the external IPs served as
  // ordinary (masquerading) services again.
  for (const Case& c : cases) ASSERT_OK(world_->Apply(ServiceJson(c.name, spec(c))));
  EXPECT_TRUE(world_->WaitIpvs(0, "FWM", false)) << world_->Ipvsadm(0);
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    const auto& pod = world_->net().pod(c.pod);
    EXPECT_TRUE(
        WaitFor([&] { return !pod.ns->Sh("ip link show kube-tunnel-if").ok(); }, kProgrammed))
        << "the tunnel link left the pod";
    EXPECT_TRUE(WaitAnswer(world_->ClientNs(), c.vip, 8080, Proto::kTcp, {Name(c.pod)}));
  }
}

}  // namespace
}  // namespace kr::testing::agent_vm
