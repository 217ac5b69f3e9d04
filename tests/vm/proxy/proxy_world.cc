#include "vm/proxy/proxy_world.h"

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>
#include <stdexcept>
#include <thread>

#include "lib/binaries.h"

namespace kr::testing {
namespace {

using namespace std::chrono_literals;

void Must(const Result<std::string>& r, const std::string& what) {
  if (!r.ok()) throw std::runtime_error(what + ": " + r.error());
}

std::string Quote(const std::string& s) { return "\"" + s + "\""; }

std::string NamespaceOf(const std::string& key) { return key.substr(0, key.find('/')); }
std::string NameOf(const std::string& key) { return key.substr(key.find('/') + 1); }

}  // namespace

std::string SliceJson(const std::string& ns, const std::string& name, const std::string& service,
                      const std::string& address_type, const std::vector<SliceEndpoint>& endpoints,
                      const std::vector<SlicePort>& ports) {
  std::string out = R"({"apiVersion":"discovery.k8s.io/v1","kind":"EndpointSlice","metadata":{)"
                    R"("namespace":)" +
                    Quote(ns) + R"(,"name":)" + Quote(name) +
                    R"(,"labels":{"kubernetes.io/service-name":)" + Quote(service) +
                    R"(}},"addressType":)" + Quote(address_type) + R"(,"endpoints":[)";
  for (size_t i = 0; i < endpoints.size(); ++i) {
    const SliceEndpoint& e = endpoints[i];
    out += (i ? "," : "") + std::string(R"({"addresses":[)") + Quote(e.ip) + R"(],"nodeName":)" +
           Quote(e.node) + R"(,"conditions":{"ready":)" + (e.ready ? "true" : "false") +
           R"(,"serving":)" + (e.serving ? "true" : "false") + R"(,"terminating":)" +
           (e.terminating ? "true" : "false") + "}}";
  }
  out += R"(],"ports":[)";
  for (size_t i = 0; i < ports.size(); ++i) {
    out += (i ? "," : "") + std::string(R"({"name":)") + Quote(ports[i].name) + R"(,"port":)" +
           std::to_string(ports[i].port) + R"(,"protocol":)" + Quote(ports[i].protocol) + "}";
  }
  return out + "]}";
}

ProxyWorld::ProxyWorld(ProxyWorldOptions options) : options_(std::move(options)) {
  net_ = std::make_unique<PodNetwork>(options_.prefix, options_.dual_stack);
  for (int i = 0; i < options_.nodes; ++i) net_->AddNode("node" + std::to_string(i));
  client_ = std::make_unique<Netns>(options_.prefix + "c");
  Netns& hub = *net_->nodes()[0].ns;
  Must(ExecChecked({"ip", "link", "add", "kr-client", "netns", hub.name(), "type", "veth", "peer",
                    "name", "eth0", "netns", client_->name()}),
       "client link");
  Must(hub.Sh("ip addr add 192.0.2.1/24 dev kr-client && ip link set kr-client up"), "hub side");
  Must(client_->Sh("ip addr add 192.0.2.9/24 dev eth0 && ip link set eth0 up && "
                   "ip route add default via 192.0.2.1"),
       "client side");
  if (options_.dual_stack) {
    Must(client_->Sh("sysctl -qw net.ipv6.conf.all.disable_ipv6=0 net.ipv6.conf.eth0.accept_dad=0"),
         "client IPv6");
    Must(hub.Sh("ip -6 addr add fd00:192::1/64 dev kr-client nodad"), "hub IPv6");
    Must(client_->Sh("ip -6 addr add fd00:192::9/64 dev eth0 nodad && "
                     "ip -6 route add default via fd00:192::1"),
         "client IPv6 route");
  }
  for (int i = 1; i < options_.nodes; ++i) {
    const std::string via = "10.70." + std::to_string(i) + ".1";
    Must(NodeNs(i).Sh("ip route add 192.0.2.0/24 via " + via), "route to the client");
    if (options_.dual_stack) {
      Must(NodeNs(i).Sh("ip -6 route add fd00:192::/64 via fd00:70:" + std::to_string(i) + "::1"),
           "IPv6 route to the client");
    }
  }
}

ProxyWorld::~ProxyWorld() {
  agents_.clear();
  api_.reset();
}

PodNetwork::Pod& ProxyWorld::AddPod(int node, const std::string& key) {
  pod_keys_.push_back(key);
  return net_->AddPod(node, key);
}

std::string ProxyWorld::NodeIp(int node) const {
  return node == 0 ? "192.0.2.1" : "10.70." + std::to_string(node) + ".2";
}

std::string ProxyWorld::NodeIp6(int node) const {
  return node == 0 ? "fd00:192::1" : "fd00:70:" + std::to_string(node) + "::2";
}

void ProxyWorld::Start() {
  std::filesystem::create_directories(dir() + "/manifests");
  std::ofstream manifests(dir() + "/manifests/world.json");
  manifests << R"({"apiVersion":"v1","kind":"List","items":[)";
  for (int i = 0; i < options_.nodes; ++i) {
    const auto& node = net_->nodes()[i];
    std::string cidrs =
        Quote(node.pod_cidr) + (options_.dual_stack ? "," + Quote(node.pod_cidr6) : "");
    std::string addresses = R"({"type":"InternalIP","address":)" + Quote(NodeIp(i)) + "}";
    if (options_.dual_stack) {
      addresses += R"(,{"type":"InternalIP","address":)" + Quote(NodeIp6(i)) + "}";
    }
    manifests << (i ? "," : "") << R"({"apiVersion":"v1","kind":"Node","metadata":{"name":)"
              << Quote(node.name) << R"(},"spec":{"podCIDR":)" << Quote(node.pod_cidr)
              << R"(,"podCIDRs":[)" << cidrs << R"(]},"status":{"addresses":[)" << addresses
              << "]}}";
  }
  for (const std::string& key : pod_keys_) {
    const auto& pod = net_->pod(key);
    std::string ips = R"({"ip":)" + Quote(pod.ip) + "}" +
                      (pod.ip6.empty() ? "" : R"(,{"ip":)" + Quote(pod.ip6) + "}");
    manifests
        << R"(,{"apiVersion":"v1","kind":"Pod","metadata":{"namespace":)" << Quote(NamespaceOf(key))
        << R"(,"name":)" << Quote(NameOf(key)) << R"(,"labels":{"app":)" << Quote(NameOf(key))
        << R"(}},"spec":{"nodeName":)" << Quote(net_->nodes()[pod.node].name)
        << R"(,"terminationGracePeriodSeconds":30,"containers":[{"name":"c","image":"none"}]},)"
        << R"("status":{"phase":"Running","hostIP":)" << Quote(NodeIp(pod.node)) << R"(,"podIP":)"
        << Quote(pod.ip) << R"(,"podIPs":[)" << ips << "]}}";
  }
  manifests << "]}";
  manifests.close();

  kubeconfig_hub_ = dir() + "/kubeconfig";
  api_ = std::make_unique<Process>(
      NodeNs(0).Wrap({kFakeApiServerBinary, "--listen", "0.0.0.0:0", "--manifests",
                      dir() + "/manifests", "--kubeconfig-out", kubeconfig_hub_}),
      dir() + "/apiserver.log");
  if (!WaitFor([&] { return std::filesystem::exists(kubeconfig_hub_); }, 60s)) {
    throw std::runtime_error("fake-apiserver did not start: " + api_->Log());
  }
  std::ifstream in(kubeconfig_hub_);
  std::stringstream text;
  text << in.rdbuf();
  const std::string config = text.str();
  std::smatch m;
  if (!std::regex_search(config, m, std::regex("127\\.0\\.0\\.1:([0-9]+)"))) {
    throw std::runtime_error("no port in kubeconfig: " + config);
  }
  api_url_ = "http://127.0.0.1:" + m[1].str();
  for (int i = 0; i < options_.nodes; ++i) {
    std::string node_config = config;
    if (i > 0) {
      node_config = std::regex_replace(config, std::regex("127\\.0\\.0\\.1"),
                                       "10.70." + std::to_string(i) + ".1");
    }
    std::ofstream(dir() + "/kubeconfig-" + NodeName(i)) << node_config;
    agents_.push_back(nullptr);
    StartAgent(i);
  }
  // kubectl's first run in the emulated guest (API discovery, a cold cache) takes tens of
  // seconds; pay it here, not inside a test's first change.
  auto warm = Kubectl("get nodes");
  if (!warm.ok()) throw std::runtime_error("kubectl cannot reach fake-apiserver: " + warm.error());
}

std::vector<std::string> ProxyWorld::AgentArgv(int node,
                                               const std::vector<std::string>& extra) const {
  // KR_PROXY_TEST_AGENT runs another build of the agent (e.g. a branch under test).
  const char* other = std::getenv("KR_PROXY_TEST_AGENT");
  std::vector<std::string> argv = {other != nullptr ? other : kAgentBinary,
                                   "--run-service-proxy=true",
                                   "--run-router=false",
                                   "--run-firewall=false",
                                   "--kubeconfig=" + dir() + "/kubeconfig-" + NodeName(node),
                                   "--hostname-override=" + NodeName(node),
                                   "--health-port=0",
                                   "--service-cluster-ip-range=10.96.0.0/16"};
  if (options_.dual_stack) {
    argv.push_back("--enable-ipv6=true");
    argv.push_back("--service-cluster-ip-range=fd00:96::/108");
  }
  for (const auto& f : options_.agent_flags) argv.push_back(f);
  for (const auto& f : extra) argv.push_back(f);
  return argv;
}

void ProxyWorld::StartAgent(int node, const std::vector<std::string>& extra_flags) {
  static int starts = 0;
  agents_.at(node).reset();
  agents_[node] = std::make_unique<Process>(
      NodeNs(node).Wrap(AgentArgv(node, extra_flags)),
      dir() + "/agent-" + NodeName(node) + "-" + std::to_string(starts++) + ".log");
}

void ProxyWorld::StopAgent(int node, int signal) {
  if (!agents_.at(node)) return;
  agents_[node]->Signal(signal);
  agents_[node]->Wait(20s);
}

std::string ProxyWorld::AgentLog(int node) const {
  return agents_.at(node) ? agents_[node]->Log() : "(agent not running)";
}

Result<std::string> ProxyWorld::RunAgentOnce(int node, const std::vector<std::string>& flags) {
  auto r = Exec(NodeNs(node).Wrap(AgentArgv(node, flags)), "", ExecOptions{.timeout = 120s});
  if (!r.ok()) return r.status();
  if (r->exit_code != 0) {
    return Status::Error("exit " + std::to_string(r->exit_code) + ": " + r->err);
  }
  return r->out + r->err;
}

Result<std::string> ProxyWorld::Kubectl(const std::string& args, const std::string& input) {
  auto r = Exec(NodeNs(0).Wrap({"sh", "-c", "kubectl " + args}), input,
                ExecOptions{.timeout = 180s, .env = {{"KUBECONFIG", kubeconfig_hub_}}});
  if (!r.ok()) return r.status();
  if (r->exit_code != 0) return Status::Error("kubectl " + args + ": " + r->err);
  return r->out;
}

Status ProxyWorld::Put(const std::string& json) {
  Status s = PutOnce(json);
  if (!s.ok()) std::fprintf(stderr, "Put failed: %s\n", s.message().c_str());
  return s;
}

Status ProxyWorld::PutOnce(const std::string& json) {
  auto created = Kubectl("create --validate=false -f -", json);
  if (created.ok()) return Status::Ok();
  if (created.error().find("AlreadyExists") == std::string::npos &&
      created.error().find("already exists") == std::string::npos) {
    return created.status();
  }
  auto replaced = Kubectl("replace --validate=false -f -", json);
  return replaced.ok() ? Status::Ok() : replaced.status();
}

Status ProxyWorld::Delete(const std::string& kind, const std::string& ns, const std::string& name) {
  auto r = Kubectl("delete " + kind + " -n " + ns + " " + name);
  return r.ok() ? Status::Ok() : r.status();
}

std::string ProxyWorld::Ipvsadm(int node, const std::string& args) {
  auto out = NodeNs(node).Sh("ipvsadm " + args);
  return out.ok() ? *out : "ipvsadm failed: " + out.error();
}

bool ProxyWorld::WaitIpvs(int node, const std::string& wanted, bool present,
                          std::chrono::milliseconds timeout) {
  return WaitFor([&] { return (Ipvsadm(node).find(wanted) != std::string::npos) == present; },
                 timeout);
}

}  // namespace kr::testing
