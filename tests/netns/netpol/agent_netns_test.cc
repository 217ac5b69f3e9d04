// The REAL kube-router binary, firewall only, in each node namespace against fake-apiserver:
// the upstream e2e scenarios driven through the API (create, patch, delete), verified with
// real TCP and UDP traffic between pod namespaces, under iptables-nft and iptables-legacy.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "lib/binaries.h"
#include "lib/files.h"
#include "lib/kubeconfig.h"
#include "lib/netns.h"
#include "lib/podnet.h"
#include "xyz_world.h"

namespace kr::netpol {
namespace {

using namespace std::chrono_literals;
using kr::testing::PodNetwork;
using kr::testing::Process;
using kr::testing::Proto;
using kr::testing::TempDir;
using kr::testing::WaitFor;
using testing::NameOf;
using testing::NsOf;
using testing::XyzPodKeys;

using kr::testing::kAgentBinary;
using kr::testing::kFakeApiServerBinary;
constexpr auto kVerdictDeadline = 20s;

std::string NamespaceJson(const std::string& ns) {
  return R"({"apiVersion":"v1","kind":"Namespace","metadata":{"name":")" + ns +
         R"(","labels":{"ns":")" + ns + R"("}}})";
}

std::string NodeJson(const std::string& name, const std::string& pod_cidr,
                     const std::string& pod_cidr6) {
  std::string cidrs = "\"" + pod_cidr + "\"" + (pod_cidr6.empty() ? "" : ",\"" + pod_cidr6 + "\"");
  return R"({"apiVersion":"v1","kind":"Node","metadata":{"name":")" + name +
         R"("},"spec":{"podCIDR":")" + pod_cidr + R"(","podCIDRs":[)" + cidrs + "]}}";
}

std::string PodJson(const std::string& key, const std::string& node, const std::string& ip,
                    const std::string& ip6 = "") {
  std::string ips = R"({"ip":")" + ip + "\"}" + (ip6.empty() ? "" : R"(,{"ip":")" + ip6 + "\"}");
  return R"({"apiVersion":"v1","kind":"Pod","metadata":{"namespace":")" + NsOf(key) +
         R"(","name":")" + NameOf(key) + R"(","labels":{"pod":")" + NameOf(key) +
         R"("}},"spec":{"nodeName":")" + node +
         R"(","containers":[{"name":"c","image":"none","ports":[)"
         R"({"name":"serve-80-tcp","containerPort":80,"protocol":"TCP"},)"
         R"({"name":"serve-81-tcp","containerPort":81,"protocol":"TCP"},)"
         R"({"name":"serve-80-udp","containerPort":80,"protocol":"UDP"},)"
         R"({"name":"serve-81-udp","containerPort":81,"protocol":"UDP"}]}]},)"
         R"("status":{"phase":"Running","podIP":")" +
         ip + R"(","podIPs":[)" + ips + "]}}";
}

class AgentE2E : public ::testing::TestWithParam<const char*> {
 protected:
  void SetUp() override {
    ASSERT_TRUE(kr::testing::IsRoot()) << "netns tests need root";
    ASSERT_TRUE(std::filesystem::exists(kAgentBinary)) << kAgentBinary;
    net_ = std::make_unique<PodNetwork>("npa", DualStack());
    testing::BuildXyz(*net_);
    AddPodsOutsideTheApi();
    auto& hub = net_->nodes()[0];

    std::filesystem::create_directories(dir_.path() + "/manifests");
    std::ofstream manifests(dir_.path() + "/manifests/world.json");
    manifests << R"({"apiVersion":"v1","kind":"List","items":[)";
    bool first = true;
    for (const auto& ns : testing::kXyzNamespaces) {
      manifests << (first ? "" : ",") << NamespaceJson(ns);
      first = false;
    }
    for (const auto& node : net_->nodes()) {
      manifests << "," << NodeJson(node.name, node.pod_cidr, node.pod_cidr6);
    }
    for (const auto& key : XyzPodKeys()) {
      manifests << ","
                << PodJson(key, net_->nodes()[testing::XyzNode(key)].name, net_->pod(key).ip,
                           net_->pod(key).ip6);
    }
    manifests << "]}";
    manifests.close();

    std::string kubeconfig = dir_.path() + "/kubeconfig";
    api_ = std::make_unique<Process>(hub.ns->Wrap(ApiServerArgs(kubeconfig)),
                                     dir_.path() + "/apiserver.log");
    ASSERT_TRUE(WaitFor([&] { return std::filesystem::exists(kubeconfig); }, 30s)) << api_->Log();
    std::string config = kr::testing::ReadFile(kubeconfig);
    auto server = kr::testing::ParseKubeconfigServer(config);
    ASSERT_TRUE(server.has_value()) << config;
    api_url_ = server->url;

    for (size_t i = 0; i < net_->nodes().size(); ++i) {
      auto& node = net_->nodes()[i];
      // Node 1 reaches the API server over its link to node 0.
      std::string node_config = config;
      if (i > 0) {
        node_config =
            kr::testing::KubeconfigWithServerHost(config, "10.70." + std::to_string(i) + ".1");
      }
      std::string path = dir_.path() + "/kubeconfig-" + node.name;
      std::ofstream(path) << node_config;
      ASSERT_TRUE(node.ns->Sh("sysctl -qw net.bridge.bridge-nf-call-iptables=0").ok());
      std::vector<std::string> argv = {kAgentBinary,
                                       "--run-firewall=true",
                                       "--run-service-proxy=false",
                                       "--run-router=false",
                                       "--kubeconfig",
                                       path,
                                       "--hostname-override",
                                       node.name,
                                       std::string("--iptables-mode=") + GetParam(),
                                       "--health-port=0",
                                       "--iptables-sync-period=5m"};
      for (const auto& flag : ExtraFlags()) argv.push_back(flag);
      agents_.push_back(std::make_unique<Process>(node.ns->Wrap(argv),
                                                  dir_.path() + "/agent-" + node.name + ".log"));
    }
    // Both agents have synced once when their pods' chains exist.
    for (size_t i = 0; i < net_->nodes().size(); ++i) {
      auto& node = net_->nodes()[i];
      std::string save = std::string("iptables-") + GetParam() + "-save -t filter";
      bool synced = WaitFor(
          [&] {
            auto rules = node.ns->Sh(save);
            return rules.ok() && rules->find("-A KUBE-ROUTER-FORWARD") != std::string::npos &&
                   rules->find("KUBE-POD-FW-") != std::string::npos;
          },
          60s);
      ASSERT_TRUE(synced) << agents_[i]->Log();
      EXPECT_EQ(*node.ns->Sh("cat /proc/sys/net/bridge/bridge-nf-call-iptables"), "1\n");
    }
  }

  // For variants: more agent flags, and pods that exist in the network before the API knows them.
  virtual std::vector<std::string> ExtraFlags() const { return {}; }
  virtual std::vector<std::string> ApiServerArgs(const std::string& kubeconfig) const {
    return {kFakeApiServerBinary,       "--listen",         "0.0.0.0:0", "--manifests",
            dir_.path() + "/manifests", "--kubeconfig-out", kubeconfig};
  }
  virtual bool DualStack() const { return false; }
  virtual void AddPodsOutsideTheApi() {}

  void TearDown() override {
    if (HasFailure()) {
      for (auto& a : agents_) std::cerr << "---- agent log\n" << a->Log();
    }
    agents_.clear();
    api_.reset();
    net_.reset();
  }

  // One API request from node 0's namespace (where the API server listens).
  void Api(const std::string& method, const std::string& path, const std::string& body = "",
           const std::string& type = "application/json") {
    auto r =
        net_->nodes()[0].ns->Run({"curl", "-sS", "-f", "-X", method, "-H", "Content-Type: " + type,
                                  "--data-binary", "@-", api_url_ + path},
                                 body);
    ASSERT_TRUE(r.ok() && r->exit_code == 0)
        << method << " " << path << ": " << (r.ok() ? r->err + r->out : r.error());
  }

  void CreatePolicy(const std::string& ns, const std::string& json) {
    Api("POST", "/apis/networking.k8s.io/v1/namespaces/" + ns + "/networkpolicies", json);
  }
  void DeletePolicy(const std::string& ns, const std::string& name) {
    Api("DELETE", "/apis/networking.k8s.io/v1/namespaces/" + ns + "/networkpolicies/" + name);
  }

  // Waits until one probe shows the new verdict (the agents got the change), then checks
  // the whole matrix.
  void ExpectEventually(const std::string& from, const std::string& to, bool allowed) {
    auto start = std::chrono::steady_clock::now();
    bool ok = WaitFor(
        [&] { return net_->Probe(from, net_->pod(to).ip, 80, Proto::kTcp, 300) == allowed; },
        kVerdictDeadline);
    EXPECT_TRUE(ok) << from << " -> " << to << " never became " << (allowed ? "allowed" : "denied");
    auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                  std::chrono::steady_clock::now() - start)
                  .count();
    std::cout << "verdict " << from << " -> " << to << " after " << ms << " ms\n";
  }

  void ExpectMatrix(int port, Proto proto, const testing::Reachability& allowed) {
    std::string mismatches = testing::MatrixMismatches(*net_, port, proto, allowed);
    EXPECT_TRUE(mismatches.empty()) << "mismatches:\n" << mismatches;
  }

  TempDir dir_;
  std::unique_ptr<PodNetwork> net_;
  std::unique_ptr<Process> api_;
  std::vector<std::unique_ptr<Process>> agents_;
  std::string api_url_;
};

TEST_P(AgentE2E, DefaultDenyThenNamespaceAndPodLabelChangesThenDeletion) {
  ExpectMatrix(80, Proto::kTcp, [](auto&, auto&) { return true; });

  // Deny all ingress to x, except from namespaces labelled allowed=yes and pods role=client.
  CreatePolicy("x", R"({"apiVersion":"networking.k8s.io/v1","kind":"NetworkPolicy",
    "metadata":{"name":"deny-but","namespace":"x"},
    "spec":{"podSelector":{},"policyTypes":["Ingress"],
            "ingress":[{"from":[{"namespaceSelector":{"matchLabels":{"allowed":"yes"}}}]},
                       {"from":[{"podSelector":{"matchExpressions":
                                 [{"key":"role","operator":"In","values":["client"]}]}}]}]}})");
  ExpectEventually("z/a", "x/a", false);
  ExpectMatrix(80, Proto::kTcp, [](auto&, auto& to) { return NsOf(to) != "x"; });
  ExpectMatrix(81, Proto::kUdp, [](auto&, auto& to) { return NsOf(to) != "x"; });

  Api("PATCH", "/api/v1/namespaces/z", R"({"metadata":{"labels":{"allowed":"yes"}}})",
      "application/merge-patch+json");
  ExpectEventually("z/a", "x/a", true);
  ExpectMatrix(80, Proto::kTcp,
               [](auto& from, auto& to) { return NsOf(to) != "x" || NsOf(from) == "z"; });

  Api("PATCH", "/api/v1/namespaces/x/pods/b", R"({"metadata":{"labels":{"role":"client"}}})",
      "application/merge-patch+json");
  ExpectEventually("x/b", "x/a", true);
  ExpectMatrix(80, Proto::kTcp, [](auto& from, auto& to) {
    return NsOf(to) != "x" || NsOf(from) == "z" || from == "x/b";
  });

  DeletePolicy("x", "deny-but");
  ExpectEventually("y/a", "x/a", true);
  ExpectMatrix(80, Proto::kTcp, [](auto&, auto&) { return true; });
}

TEST_P(AgentE2E, EgressToCidrWithExceptNamedPortsAndEndPort) {
  // x/a may only talk to node 1's pods (z), except z/b, on the named port serve-81-tcp.
  std::string z_cidr = net_->nodes()[1].pod_cidr;
  std::string z_b = net_->pod("z/b").ip + "/32";
  CreatePolicy("x", R"({"apiVersion":"networking.k8s.io/v1","kind":"NetworkPolicy",
    "metadata":{"name":"egress","namespace":"x"},
    "spec":{"podSelector":{"matchLabels":{"pod":"a"}},"policyTypes":["Egress"],
            "egress":[{"to":[{"ipBlock":{"cidr":")" +
                        z_cidr + R"(","except":[")" + z_b +
                        R"("]}}],
                       "ports":[{"protocol":"TCP","port":81}]}]}})");
  ExpectEventually("x/a", "y/a", false);
  for (const auto& to : XyzPodKeys()) {
    if (to == "x/a") continue;
    bool to_z = NsOf(to) == "z" && to != "z/b";
    EXPECT_EQ(net_->Probe("x/a", net_->pod(to).ip, 81, Proto::kTcp), to_z) << to;
    EXPECT_FALSE(net_->Probe("x/a", net_->pod(to).ip, 80, Proto::kTcp)) << to;
  }
  // Others are not affected.
  ExpectMatrix(80, Proto::kTcp, [](auto& from, auto&) { return from != "x/a"; });

  // Ingress to y/* on a named port and on an endPort range (UDP 80-81).
  CreatePolicy("y", R"({"apiVersion":"networking.k8s.io/v1","kind":"NetworkPolicy",
    "metadata":{"name":"ports","namespace":"y"},
    "spec":{"podSelector":{},"policyTypes":["Ingress"],
            "ingress":[{"ports":[{"protocol":"TCP","port":"serve-81-tcp"},
                                 {"protocol":"UDP","port":80,"endPort":81}]}]}})");
  ExpectEventually("z/a", "y/a", false);
  EXPECT_TRUE(net_->Probe("z/a", net_->pod("y/a").ip, 81, Proto::kTcp));
  EXPECT_TRUE(net_->Probe("x/b", net_->pod("y/b").ip, 81, Proto::kUdp));
  EXPECT_TRUE(net_->Probe("z/c", net_->pod("y/c").ip, 80, Proto::kUdp));
  EXPECT_FALSE(net_->Probe("x/b", net_->pod("y/c").ip, 80, Proto::kTcp));
}

INSTANTIATE_TEST_SUITE_P(Backends, AgentE2E, ::testing::Values("nft", "legacy"),
                         [](const auto& info) { return std::string(info.param); });

// --netpol-default-deny through the real binary: the agent reads its Node's pod CIDR from the
// API server, and a pod that runs before its Pod object reaches the agent is closed until then.
class AgentDefaultDenyE2E : public AgentE2E {
 protected:
  std::vector<std::string> ExtraFlags() const override { return {"--netpol-default-deny=true"}; }
  void AddPodsOutsideTheApi() override {
    net_->AddPod(0, "x/late");
    net_->Serve("x/late", 80, Proto::kTcp);
  }
};

TEST_P(AgentDefaultDenyE2E, APodIsClosedUntilTheAgentHasItsPodObject) {
  // The tail of the chains guards node 0's pod CIDR with the local-pods set.
  std::string save = std::string("iptables-") + GetParam() + "-save -t filter";
  auto rules = net_->nodes()[0].ns->Sh(save);
  ASSERT_TRUE(rules.ok());
  EXPECT_NE(rules->find("-A KUBE-NWPLCY-TAIL -s " + net_->nodes()[0].pod_cidr), std::string::npos)
      << *rules;
  EXPECT_TRUE(net_->nodes()[0].ns->Sh("ipset list -n kube-router-local-pods").ok());

  EXPECT_FALSE(net_->Probe("x/a", net_->pod("x/late").ip, 80, Proto::kTcp));
  EXPECT_FALSE(net_->Probe("z/a", net_->pod("x/late").ip, 80, Proto::kTcp));
  EXPECT_FALSE(net_->Probe("x/late", net_->pod("y/a").ip, 80, Proto::kTcp, 500));
  ExpectMatrix(80, Proto::kTcp, [](auto&, auto&) { return true; });  // known pods are open

  Api("POST", "/api/v1/namespaces/x/pods",
      PodJson("x/late", net_->nodes()[0].name, net_->pod("x/late").ip));
  ExpectEventually("z/a", "x/late", true);
  EXPECT_TRUE(net_->Probe("x/a", net_->pod("x/late").ip, 80, Proto::kTcp));
  EXPECT_TRUE(net_->Probe("x/late", net_->pod("y/a").ip, 80, Proto::kTcp));
}

INSTANTIATE_TEST_SUITE_P(Backends, AgentDefaultDenyE2E, ::testing::Values("nft", "legacy"),
                         [](const auto& info) { return std::string(info.param); });

// --netpol-beta-namespace-isolation through the real binary: the flag reaches the controller,
// the namespace annotation survives decoding, and an annotation-only namespace update makes the
// agent sync (kubectl annotate).
class AgentBetaIsolationE2E : public AgentE2E {
 protected:
  std::vector<std::string> ExtraFlags() const override {
    return {"--netpol-beta-namespace-isolation=true"};
  }
  void AnnotateX(const std::string& value_json) {
    Api("PATCH", "/api/v1/namespaces/x",
        R"({"metadata":{"annotations":{"net.beta.kubernetes.io/network-policy":)" + value_json +
            "}}}",
        "application/merge-patch+json");
  }
};

TEST_P(AgentBetaIsolationE2E, TheAnnotationIsolatesAndAPolicyOpens) {
  AnnotateX(R"("{\"ingress\":{\"isolation\":\"DefaultDeny\"}}")");
  ExpectEventually("z/a", "x/a", false);
  ExpectMatrix(80, Proto::kTcp, [](auto&, auto& to) { return NsOf(to) != "x"; });

  CreatePolicy("x", R"({"apiVersion":"networking.k8s.io/v1","kind":"NetworkPolicy",
    "metadata":{"name":"from-y","namespace":"x"},
    "spec":{"podSelector":{},"ingress":[{"from":[{"namespaceSelector":{"matchLabels":{"ns":"y"}}}]}]}})");
  ExpectEventually("y/a", "x/a", true);
  ExpectMatrix(80, Proto::kTcp,
               [](auto& from, auto& to) { return NsOf(to) != "x" || NsOf(from) == "y"; });
  DeletePolicy("x", "from-y");
  ExpectEventually("y/a", "x/a", false);

  AnnotateX("null");  // the annotation removed
  ExpectEventually("z/a", "x/a", true);
  ExpectMatrix(80, Proto::kTcp, [](auto&, auto&) { return true; });
}

// One backend: the netns in-process test covers both; this one proves the wiring.
INSTANTIATE_TEST_SUITE_P(Backends, AgentBetaIsolationE2E, ::testing::Values("nft"),
                         [](const auto& info) { return std::string(info.param); });

// An API server older than 1.7 (NetworkPolicies only under extensions/v1beta1), no flag: the
// agent falls back to the beta API and its semantics, as kube-router did there. Policies do not
// isolate; the namespace annotation does, and policies then let traffic in.
class AgentBetaApiE2E : public AgentBetaIsolationE2E {
 protected:
  std::vector<std::string> ExtraFlags() const override { return {}; }
  std::vector<std::string> ApiServerArgs(const std::string& kubeconfig) const override {
    auto args = AgentE2E::ApiServerArgs(kubeconfig);
    args.push_back("--beta-networkpolicies");
    return args;
  }
  void CreateBetaPolicy(const std::string& ns, const std::string& json) {
    Api("POST", "/apis/extensions/v1beta1/namespaces/" + ns + "/networkpolicies", json);
  }
  // Policy chains in node 0's filter table (beyond DEFAULT, COMMON and TAIL).
  int PolicyChains() {
    auto rules = net_->nodes()[0].ns->Sh(std::string("iptables-") + GetParam() + "-save -t filter");
    if (!rules.ok()) return -1;
    int n = 0;
    for (size_t at = rules->find(":KUBE-NWPLCY-"); at != std::string::npos;
         at = rules->find(":KUBE-NWPLCY-", at + 1)) {
      ++n;
    }
    return n - 3;
  }
};

TEST_P(AgentBetaApiE2E, PoliciesOnlyAllowAndTheAnnotationIsolates) {
  // y/a selected by a policy without rules, x/a by one admitting y: neither isolates anything.
  CreateBetaPolicy("y", R"({"apiVersion":"extensions/v1beta1","kind":"NetworkPolicy",
    "metadata":{"name":"deny-a","namespace":"y"},
    "spec":{"podSelector":{"matchLabels":{"pod":"a"}}}})");
  CreateBetaPolicy("x", R"({"apiVersion":"extensions/v1beta1","kind":"NetworkPolicy",
    "metadata":{"name":"from-y","namespace":"x"},
    "spec":{"podSelector":{"matchLabels":{"pod":"a"}},
            "ingress":[{"from":[{"podSelector":{}}]},
                       {"from":[{"namespaceSelector":{"matchLabels":{"ns":"y"}}}]}]}})");
  EXPECT_TRUE(kr::testing::WaitFor([&] { return PolicyChains() == 2; }, kVerdictDeadline))
      << PolicyChains();
  ExpectMatrix(80, Proto::kTcp, [](auto&, auto&) { return true; });

  AnnotateX(R"("{\"ingress\":{\"isolation\":\"DefaultDeny\"}}")");
  ExpectEventually("z/a", "x/a", false);
  // x/a admits y and x (its policy); x/b and x/c admit nobody; y/a stays open.
  ExpectMatrix(80, Proto::kTcp, [](auto& from, auto& to) {
    if (NsOf(to) != "x") return true;
    return to == "x/a" && NsOf(from) != "z";
  });

  AnnotateX("null");
  ExpectEventually("z/a", "x/a", true);
  ExpectMatrix(80, Proto::kTcp, [](auto&, auto&) { return true; });
}

INSTANTIATE_TEST_SUITE_P(Backends, AgentBetaApiE2E, ::testing::Values("nft"),
                         [](const auto& info) { return std::string(info.param); });

// The real binary with --enable-ipv6 on dual-stack pods: policies reach ip6tables and inet6 sets,
// decided by IPv6 traffic.
class AgentDualStackE2E : public AgentE2E {
 protected:
  bool DualStack() const override { return true; }
  std::vector<std::string> ExtraFlags() const override { return {"--enable-ipv6=true"}; }

  bool Probe6(const std::string& from, const std::string& to, int timeout_ms = 2000) {
    return net_->Probe(from, net_->pod(to).ip6, 80, Proto::kTcp, timeout_ms);
  }
};

TEST_P(AgentDualStackE2E, NamespaceSelectorPolicyOverIpv6) {
  // The IPv6 family is written in the same sync as IPv4, just after it.
  std::string save = std::string("ip6tables-") + GetParam() + "-save -t filter";
  std::string jump = "-d " + net_->pod("x/a").ip6 + "/128";
  EXPECT_TRUE(WaitFor(
      [&] {
        auto rules = net_->nodes()[0].ns->Sh(save);
        return rules.ok() && rules->find(jump) != std::string::npos;
      },
      kVerdictDeadline))
      << *net_->nodes()[0].ns->Sh(save);
  EXPECT_EQ(*net_->nodes()[0].ns->Sh("cat /proc/sys/net/bridge/bridge-nf-call-ip6tables"), "1\n");
  EXPECT_TRUE(Probe6("z/a", "x/a"));

  // Ingress to x only from namespace z (on the other node).
  CreatePolicy("x", R"({"apiVersion":"networking.k8s.io/v1","kind":"NetworkPolicy",
    "metadata":{"name":"from-z","namespace":"x"},
    "spec":{"podSelector":{},"policyTypes":["Ingress"],
            "ingress":[{"from":[{"namespaceSelector":{"matchLabels":{"ns":"z"}}}]}]}})");
  EXPECT_TRUE(WaitFor([&] { return !Probe6("y/a", "x/a", 300); }, kVerdictDeadline));
  for (const auto& from : XyzPodKeys()) {
    for (const auto& to : XyzPodKeys()) {
      if (from == to) continue;
      bool expected = NsOf(to) != "x" || NsOf(from) == "z";
      EXPECT_EQ(Probe6(from, to), expected) << from << " -> " << to << " over IPv6";
    }
  }
  auto sets = net_->nodes()[0].ns->Sh("ipset list -n");
  ASSERT_TRUE(sets.ok());
  EXPECT_NE(sets->find("inet6:KUBE-"), std::string::npos) << *sets;

  DeletePolicy("x", "from-z");
  EXPECT_TRUE(WaitFor([&] { return Probe6("y/a", "x/a", 300); }, kVerdictDeadline));
}

INSTANTIATE_TEST_SUITE_P(Backends, AgentDualStackE2E, ::testing::Values("nft", "legacy"),
                         [](const auto& info) { return std::string(info.param); });

}  // namespace
}  // namespace kr::netpol
