// A cluster inside one guest for the service proxy's end-to-end tests: node namespaces (a star
// around node 0, pods behind each node's kube-bridge, tests/lib/podnet.h), an external client
// namespace routed to the nodes, fake-apiserver in node 0, the REAL kube-router binary in every
// node namespace (proxy only unless told otherwise), and the real kubectl to change objects.
//
// Addresses: node 0 is 192.0.2.1 (fd00:192::1) on the client's link; node N>0 is 10.70.N.2
// (fd00:70:N::2) behind node 0; the client is 192.0.2.9 (fd00:192::9). Pods are 10.71.N.x
// (fd00:10:0:N::x00) as podnet makes them.
#pragma once

#include <chrono>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "kube_router/base/status.h"
#include "lib/netns.h"
#include "lib/podnet.h"

namespace kr::testing {

struct ProxyWorldOptions {
  std::string prefix = "kpw";  // namespace names
  int nodes = 2;
  bool dual_stack = false;
  // Extra agent flags for every node (e.g. "--hairpin-mode=true").
  std::vector<std::string> agent_flags;
  // Extra agent flags of one node (index = node), after agent_flags; kept across restarts.
  std::vector<std::vector<std::string>> node_flags;
  // terminationGracePeriodSeconds of a pod (by "namespace/name"); 30 when not listed.
  std::map<std::string, int> grace_periods;
  // False: no kubectl start-up and warm-up (a test that writes objects only with Apply/Remove
  // saves tens of seconds of emulated CPU).
  bool kubectl = true;
  // False: Start() leaves the agents to StartAgent (a test writes its objects first, so the
  // agents' first sync is a fresh start with them).
  bool start_agents = true;
};

// An endpoint of an EndpointSlice.
struct SliceEndpoint {
  std::string ip;
  std::string node;  // nodeName
  bool ready = true;
  bool serving = true;
  bool terminating = false;
};

struct SlicePort {
  std::string name;
  int port = 0;
  std::string protocol = "TCP";
};

// JSON of an EndpointSlice labelled for `service` (kubernetes.io/service-name).
std::string SliceJson(const std::string& ns, const std::string& name, const std::string& service,
                      const std::string& address_type, const std::vector<SliceEndpoint>& endpoints,
                      const std::vector<SlicePort>& ports);

class ProxyWorld {
 public:
  explicit ProxyWorld(ProxyWorldOptions options);
  ~ProxyWorld();

  // Pods are added before Start (the Pod objects go into the initial manifests).
  PodNetwork::Pod& AddPod(int node, const std::string& key);
  // Writes the manifests (nodes with their addresses and pod CIDRs, pods with their IPs),
  // starts fake-apiserver and one agent per node. Throws on failure.
  void Start();

  // kubectl inside node 0 against fake-apiserver; `input` goes to stdin ("-f -"). `args` are
  // split at spaces (no quoting).
  Result<std::string> Kubectl(const std::string& args, const std::string& input = "");
  // kubectl create (or replace, when it exists) of one JSON object.
  Status Put(const std::string& json);
  Status Delete(const std::string& kind, const std::string& ns, const std::string& name);
  // The same two straight over HTTP (POST, then PUT when it exists; DELETE), for changes where
  // kubectl is not the point: a kubectl run costs seconds of emulated CPU, a request
  // milliseconds. Kinds: Service, EndpointSlice, Pod.
  Status Apply(const std::string& json);
  Status Remove(const std::string& kind, const std::string& ns, const std::string& name);

  // Agents.
  void StartAgent(int node, const std::vector<std::string>& extra_flags = {});
  void StopAgent(int node, int signal);  // SIGKILL: a crash; SIGTERM: a clean stop
  std::string AgentLog(int node) const;
  Result<std::string> RunAgentOnce(int node, const std::vector<std::string>& flags);

  // Node namespaces and facts.
  Netns& NodeNs(int node) { return *net_->nodes()[node].ns; }
  const std::string& NodeName(int node) const { return net_->nodes()[node].name; }
  std::string NodeIp(int node) const;
  std::string NodeIp6(int node) const;
  const std::string& ClientNs() const { return client_->name(); }
  static constexpr const char* kClientIp = PodNetwork::kExternalClientIp;
  static constexpr const char* kClientIp6 = PodNetwork::kExternalClientIp6;
  PodNetwork& net() { return *net_; }
  const std::string& PodNs(const std::string& key) { return net_->pod(key).ns->name(); }
  const std::string& PodIp(const std::string& key) { return net_->pod(key).ip; }
  // The agent's /metrics text (127.0.0.1:port inside the node).
  Result<std::string> Metrics(int node, int port);
  // `ipvsadm -Ln` (or other arguments, split at spaces) in a node.
  std::string Ipvsadm(int node, const std::string& args = "-Ln");
  // Polls `ipvsadm -Ln` of `node` until `wanted` appears (or disappears when `present` is
  // false), up to `timeout`.
  bool WaitIpvs(int node, const std::string& wanted, bool present = true,
                std::chrono::milliseconds timeout = std::chrono::seconds(20));
  const std::string& dir() const { return dir_.path(); }
  // "[+12.3s] what" on stderr: where a run's time goes (seconds since the world was made).
  void Stamp(const std::string& what) const;
  const std::string& api_url() const { return api_url_; }

 private:
  Status PutOnce(const std::string& json);
  // One request to fake-apiserver from node 0; the status code and body.
  Result<std::pair<int, std::string>> ApiRequest(const std::string& method, const std::string& path,
                                                 const std::string& body);
  // One HTTP/1.1 request to 127.0.0.1:port inside a node, from a socket of this process (no
  // process start); bounded in time and size.
  Result<std::pair<int, std::string>> LoopbackHttp(int node, int port, const std::string& method,
                                                   const std::string& path,
                                                   const std::string& body);
  std::set<std::string> written_;  // "Kind/namespace/name" of the objects written so far
  std::vector<std::string> AgentArgv(int node, const std::vector<std::string>& extra) const;

  ProxyWorldOptions options_;
  TempDir dir_;
  std::unique_ptr<PodNetwork> net_;
  std::unique_ptr<Netns> client_;
  std::unique_ptr<Process> api_;
  std::vector<std::unique_ptr<Process>> agents_;
  std::vector<std::string> pod_keys_;
  std::string api_url_;
  std::string kubeconfig_hub_;
  int api_port_ = 0;
  std::thread preload_;  // the first kubectl start (see the constructor)
  std::chrono::steady_clock::time_point born_ = std::chrono::steady_clock::now();
};

}  // namespace kr::testing
