#include "vm/proxy/proxy_world.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <regex>
#include <sstream>
#include <stdexcept>
#include <thread>

#include "lib/binaries.h"
#include "lib/files.h"
#include "lib/kubeconfig.h"
#include "lib/probe_socket.h"

namespace kr::testing {
namespace {

using namespace std::chrono_literals;

void Must(const Result<std::string>& r, const std::string& what) {
  if (!r.ok()) throw std::runtime_error(what + ": " + r.error());
}

std::string Quote(const std::string& s) { return "\"" + s + "\""; }

std::string NamespaceOf(const std::string& key) { return key.substr(0, key.find('/')); }
std::string NameOf(const std::string& key) { return key.substr(key.find('/') + 1); }

std::vector<std::string> Words(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  for (std::string w; in >> w;) out.push_back(w);
  return out;
}

// The collection path of a kind in a namespace.
Result<std::string> CollectionPath(const std::string& kind, const std::string& ns) {
  if (kind == "Service" || kind == "service") return "/api/v1/namespaces/" + ns + "/services";
  if (kind == "Pod" || kind == "pod") return "/api/v1/namespaces/" + ns + "/pods";
  if (kind == "EndpointSlice" || kind == "endpointslice") {
    return "/apis/discovery.k8s.io/v1/namespaces/" + ns + "/endpointslices";
  }
  return Status::Error("no API path for kind " + kind);
}

// "Service", "EndpointSlice", "Pod" whatever the spelling ("service", "endpointslice").
std::string CanonicalKind(const std::string& kind) {
  if (kind == "service" || kind == "services") return "Service";
  if (kind == "endpointslice" || kind == "endpointslices") return "EndpointSlice";
  if (kind == "pod" || kind == "pods") return "Pod";
  return kind;
}

// "Kind/namespace/name" of one of our JSON objects (kind first, metadata with namespace then
// name, as ServiceJson/SliceJson write them); "" when it does not look like one.
std::string ObjectKey(const std::string& json) {
  std::smatch kind, meta;
  if (!std::regex_search(json, kind, std::regex(R"re("kind":"([A-Za-z]+)")re")) ||
      !std::regex_search(json, meta, std::regex(R"re("namespace":"([^"]+)","name":"([^"]+)")re"))) {
    return "";
  }
  return CanonicalKind(kind[1].str()) + "/" + meta[1].str() + "/" + meta[2].str();
}

constexpr size_t kMaxApiResponse = 4 << 20;
constexpr auto kApiDeadline = 20s;

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
  // kubectl's first start in the guest reads its ~50 MB binary over 9p and initialises the Go
  // runtime: tens of seconds of emulation. A client-only run while the namespaces are built pays
  // that beside the set-up; the warm-up in Start() then only does API discovery.
  if (options_.kubectl) {
    preload_ = std::thread([] {
      (void)Exec({"kubectl", "version", "--client"}, "", ExecOptions{.timeout = 180s});
    });
  }
  net_ = std::make_unique<PodNetwork>(options_.prefix, options_.dual_stack);
  for (int i = 0; i < options_.nodes; ++i) net_->AddNode("node" + std::to_string(i));
  client_ = std::make_unique<Netns>(options_.prefix + "c");
  net_->AttachExternalClient(0, *client_, "kr-client", options_.dual_stack);
  for (int i = 1; i < options_.nodes; ++i) {
    const std::string via = "10.70." + std::to_string(i) + ".1";
    Must(NodeNs(i).Sh("ip route add 192.0.2.0/24 via " + via), "route to the client");
    if (options_.dual_stack) {
      Must(NodeNs(i).Sh("ip -6 route add fd00:192::/64 via fd00:70:" + std::to_string(i) + "::1"),
           "IPv6 route to the client");
    }
  }
  Stamp("namespaces built");
}

ProxyWorld::~ProxyWorld() {
  if (preload_.joinable()) preload_.join();
  agents_.clear();
  api_.reset();
}

PodNetwork::Pod& ProxyWorld::AddPod(int node, const std::string& key) {
  pod_keys_.push_back(key);
  PodNetwork::Pod& pod = net_->AddPod(node, key);
  // kube-router's CNI conf has "hairpinMode": true, so the bridge plugin turns hairpin on for
  // every pod's port. Hairpin Services need it: with br_netfilter the un-SNATed reply of a pod
  // talking to itself through a VIP is bridged straight back out of the port it came in on.
  Must(ExecChecked({"ip", "-n", NodeNs(node).name(), "link", "set", pod.host_link, "type",
                    "bridge_slave", "hairpin", "on"}),
       "hairpin on " + pod.host_link);
  return pod;
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
    manifests << R"(,{"apiVersion":"v1","kind":"Pod","metadata":{"namespace":)"
              << Quote(NamespaceOf(key)) << R"(,"name":)" << Quote(NameOf(key))
              << R"(,"labels":{"app":)" << Quote(NameOf(key)) << R"(}},"spec":{"nodeName":)"
              << Quote(net_->nodes()[pod.node].name) << R"(,"terminationGracePeriodSeconds":)"
              << (options_.grace_periods.count(key) ? options_.grace_periods.at(key) : 30)
              << R"(,"containers":[{"name":"c","image":"none"}]},)"
              << R"("status":{"phase":"Running","hostIP":)" << Quote(NodeIp(pod.node))
              << R"(,"podIP":)" << Quote(pod.ip) << R"(,"podIPs":[)" << ips << "]}}";
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
  const std::string config = ReadFile(kubeconfig_hub_);
  auto server = ParseKubeconfigServer(config);
  if (!server) throw std::runtime_error("no server URL in kubeconfig: " + config);
  api_url_ = server->url;
  api_port_ = server->port;
  Stamp("fake-apiserver up");
  for (int i = 0; i < options_.nodes; ++i) {
    std::string node_config = config;
    if (i > 0) {
      node_config = KubeconfigWithServerHost(config, "10.70." + std::to_string(i) + ".1");
    }
    std::ofstream(dir() + "/kubeconfig-" + NodeName(i)) << node_config;
    agents_.push_back(nullptr);
    if (options_.start_agents) StartAgent(i);
  }
  Stamp("agents started");
  if (!options_.kubectl) return;
  if (preload_.joinable()) preload_.join();
  Stamp("kubectl loaded");
  // kubectl's first run in the emulated guest (API discovery, a cold cache) takes tens of
  // seconds; pay it here, not inside a test's first change (the agents start meanwhile).
  auto warm = Kubectl("get nodes");
  if (!warm.ok()) throw std::runtime_error("kubectl cannot reach fake-apiserver: " + warm.error());
  Stamp("kubectl warm");
}

void ProxyWorld::Stamp(const std::string& what) const {
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - born_).count();
  std::fprintf(stderr, "[+%.1fs] %s\n", s, what.c_str());
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
  if (node < static_cast<int>(options_.node_flags.size())) {
    for (const auto& f : options_.node_flags[node]) argv.push_back(f);
  }
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
  std::vector<std::string> argv = Words("kubectl " + args);
  // Started from a thread inside node 0: no `ip netns exec` and shell in front of it.
  ScopedNetns inside(NodeNs(0).name());
  auto r =
      Exec(argv, input, ExecOptions{.timeout = 180s, .env = {{"KUBECONFIG", kubeconfig_hub_}}});
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
  // An object this world wrote before is replaced at once: one kubectl run, not two.
  const std::string key = ObjectKey(json);
  if (!key.empty() && written_.count(key) > 0) {
    auto replaced = Kubectl("replace --validate=false -f -", json);
    return replaced.ok() ? Status::Ok() : replaced.status();
  }
  if (!key.empty()) written_.insert(key);
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
  written_.erase(CanonicalKind(kind) + "/" + ns + "/" + name);
  auto r = Kubectl("delete " + kind + " -n " + ns + " " + name);
  return r.ok() ? Status::Ok() : r.status();
}

std::string ProxyWorld::Ipvsadm(int node, const std::string& args) {
  std::vector<std::string> argv = Words("ipvsadm " + args);
  ScopedNetns inside(NodeNs(node).name());  // one process, not ip netns exec + sh + ipvsadm
  auto out = ExecChecked(argv);
  return out.ok() ? *out : "ipvsadm failed: " + out.error();
}

bool ProxyWorld::WaitIpvs(int node, const std::string& wanted, bool present,
                          std::chrono::milliseconds timeout) {
  // Every look is a process start, which on the one emulated CPU competes with the agent being
  // waited for: look every 100 ms, not every 20.
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (true) {
    if ((Ipvsadm(node).find(wanted) != std::string::npos) == present) return true;
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(100ms);
  }
}

Result<std::pair<int, std::string>> ProxyWorld::ApiRequest(const std::string& method,
                                                           const std::string& path,
                                                           const std::string& body) {
  return LoopbackHttp(0, api_port_, method, path, body);
}

Result<std::string> ProxyWorld::Metrics(int node, int port) {
  auto r = LoopbackHttp(node, port, "GET", "/metrics", "");
  if (!r.ok()) return r.status();
  if (r->first != 200) return Status::Error("/metrics: HTTP " + std::to_string(r->first));
  return r->second;
}

Result<std::pair<int, std::string>> ProxyWorld::LoopbackHttp(int node, int port,
                                                             const std::string& method,
                                                             const std::string& path,
                                                             const std::string& body) {
  const auto deadline = std::chrono::steady_clock::now() + kApiDeadline;
  int fd;
  {
    ScopedNetns inside(NodeNs(node).name());
    fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  }
  if (fd < 0) return Status::Error("socket failed");
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  const std::string request = method + " " + path +
                              " HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                              "Content-Length: " +
                              std::to_string(body.size()) + "\r\nConnection: close\r\n\r\n" + body;
  std::string response;
  bool sent = false;
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0 || errno == EINPROGRESS) {
    size_t off = 0;
    while (off < request.size() && PollUntil(fd, POLLOUT, deadline) != 0) {
      ssize_t n = send(fd, request.data() + off, request.size() - off, MSG_NOSIGNAL);
      if (n < 0 && errno != EAGAIN && errno != EINTR) break;
      if (n > 0) off += static_cast<size_t>(n);
    }
    sent = off == request.size();
  }
  while (sent && response.size() < kMaxApiResponse && PollUntil(fd, POLLIN, deadline) != 0) {
    char buf[4096];
    ssize_t n = recv(fd, buf, sizeof(buf), 0);
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) continue;
    if (n <= 0) break;
    response.append(buf, static_cast<size_t>(n));
  }
  close(fd);
  int code = 0;
  if (std::sscanf(response.c_str(), "HTTP/1.%*d %d", &code) != 1) {
    return Status::Error(method + " " + path + ": no HTTP answer (" + response.substr(0, 80) + ")");
  }
  const size_t head_end = response.find("\r\n\r\n");
  return std::make_pair(code, head_end == std::string::npos ? "" : response.substr(head_end + 4));
}

Status ProxyWorld::Apply(const std::string& json) {
  std::smatch kind, meta;
  if (!std::regex_search(json, kind, std::regex(R"re("kind":"([A-Za-z]+)")re")) ||
      !std::regex_search(json, meta, std::regex(R"re("namespace":"([^"]+)","name":"([^"]+)")re"))) {
    return Status::Error("Apply: no kind/namespace/name in " + json.substr(0, 120));
  }
  written_.insert(ObjectKey(json));
  auto collection = CollectionPath(kind[1].str(), meta[1].str());
  if (!collection.ok()) return collection.status();
  auto created = ApiRequest("POST", *collection, json);
  if (!created.ok()) return created.status();
  if (created->first == 201) return Status::Ok();
  if (created->first != 409) {
    return Status::Error("POST " + *collection + ": " + std::to_string(created->first) + " " +
                         created->second);
  }
  auto replaced = ApiRequest("PUT", *collection + "/" + meta[2].str(), json);
  if (!replaced.ok()) return replaced.status();
  if (replaced->first == 200) return Status::Ok();
  return Status::Error("PUT " + *collection + "/" + meta[2].str() + ": " +
                       std::to_string(replaced->first) + " " + replaced->second);
}

Status ProxyWorld::Remove(const std::string& kind, const std::string& ns, const std::string& name) {
  written_.erase(CanonicalKind(kind) + "/" + ns + "/" + name);
  auto collection = CollectionPath(kind, ns);
  if (!collection.ok()) return collection.status();
  auto deleted = ApiRequest("DELETE", *collection + "/" + name, "");
  if (!deleted.ok()) return deleted.status();
  if (deleted->first == 200) return Status::Ok();
  return Status::Error("DELETE " + *collection + "/" + name + ": " +
                       std::to_string(deleted->first) + " " + deleted->second);
}

}  // namespace kr::testing
