// The cluster the real-binary benchmarks build in fake-apiserver (tests/bench/agent,
// tests/bench/netpol): namespaces labelled by team, pods labelled by app and role, the
// NetworkPolicy shape of issue 14 (netpol_bench's: ingress from role=client pods on TCP 80 and
// from one team's namespaces on the named port http, every fourth policy also egress to a CIDR),
// and the agent's command line. One definition, so both benchmarks measure the same policies.
#pragma once

#include <string>
#include <vector>

namespace kr::testing {

// A Namespace labelled team=<team> (and kubernetes.io/metadata.name, as the API server does).
std::string BenchNamespaceJson(const std::string& name, const std::string& team);

struct BenchPod {
  std::string namespace_;
  std::string name;
  std::string node;
  std::string ip;
  std::string app;   // label app
  std::string role;  // label role (client or server)
  // What a Deployment's pod also carries and no controller reads (a uid, a pod-template-hash
  // label, an annotation, hostIP, terminationGracePeriodSeconds, an image): the memory
  // benchmark decodes it as a real cluster's, the latency benchmark keeps its pods lean.
  bool full_metadata = false;
  std::string host_ip;  // with full_metadata
  int serial = 0;       // with full_metadata: makes the uid unique
};
// Its containers expose http (TCP 8080) and dns (UDP 53).
std::string BenchPodJson(const BenchPod& pod);

// Policy `name` in `namespace_` selecting app=<app>: ingress from role=client pods on TCP 80
// and from the namespaces labelled team=<team> on the named port http; with `egress` also
// egress to 192.0.2.0/24 except 192.0.2.128/25.
std::string BenchPolicyJson(const std::string& namespace_, const std::string& name,
                            const std::string& app, const std::string& team, bool egress);

// The netpol benchmarks' cluster (netpol_bench in-process, netpol_agent_bench through the real
// agent): namespaces ns<n> of pods pod<p> labelled app<p % kNetpolBenchPoliciesPerNamespace>
// (role client when p is odd; every kNetpolBenchLocalEvery-th on the measured node), and
// policies policy<i> selecting app<i>.
inline constexpr int kNetpolBenchNamespaces = 50;
inline constexpr int kNetpolBenchPodsPerNamespace = 100;     // 5,000 pods
inline constexpr int kNetpolBenchPoliciesPerNamespace = 20;  // 1,000 policies
inline constexpr int kNetpolBenchLocalEvery = 10;            // 500 pods on the measured node
// Pod `pod` of namespace `ns`: 10.80.x.y, unique over the cluster.
std::string NetpolBenchPodIp(int ns, int pod);
// Policy i of namespace ns (BenchPolicyJson): admits the namespaces of team t<i % teams>, and
// every fourth also has egress.
std::string NetpolBenchPolicyJson(int ns, int i, int teams);

// A v1 List of `items` (JSON objects): what StartFakeApiServer serves.
std::string BenchListJson(const std::vector<std::string>& items);

// The agent's command line in the benchmarks: `binary` against `kubeconfig` as node `node`,
// only the controllers asked for, no health port, periodic syncs an hour apart (the figures
// are the first sync's and the events'), then `extra` flags.
struct BenchAgent {
  std::string binary;
  std::string kubeconfig;
  std::string node;
  bool firewall = true;
  bool router = false;
  bool service_proxy = false;
  std::vector<std::string> extra;
};
std::vector<std::string> BenchAgentArgv(const BenchAgent& agent);

}  // namespace kr::testing
