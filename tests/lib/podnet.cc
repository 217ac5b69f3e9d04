#include "lib/podnet.h"

#include <fcntl.h>
#include <sched.h>
#include <unistd.h>

#include <stdexcept>

namespace kr::testing {
namespace {

void Must(const Result<std::string>& r, const std::string& what) {
  if (!r.ok()) throw std::runtime_error(what + ": " + r.error());
}

void MustRun(const std::vector<std::string>& argv) {
  std::string what;
  for (const auto& a : argv) what += a + " ";
  Must(ExecChecked(argv), what);
}

}  // namespace

ScopedNetns::ScopedNetns(const std::string& netns_name) {
  original_fd_ = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
  int target = open(("/var/run/netns/" + netns_name).c_str(), O_RDONLY | O_CLOEXEC);
  if (original_fd_ < 0 || target < 0 || setns(target, CLONE_NEWNET) != 0) {
    if (target >= 0) close(target);
    throw std::runtime_error("cannot enter netns " + netns_name);
  }
  close(target);
}

ScopedNetns::~ScopedNetns() {
  if (original_fd_ >= 0) {
    (void)setns(original_fd_, CLONE_NEWNET);
    close(original_fd_);
  }
}

PodNetwork::PodNetwork(std::string prefix) : prefix_(std::move(prefix)) {}

PodNetwork::~PodNetwork() {
  servers_.clear();  // before the namespaces go away
  pods_.clear();
  nodes_.clear();
}

PodNetwork::Node& PodNetwork::AddNode(const std::string& name) {
  int index = static_cast<int>(nodes_.size());
  Node node;
  node.name = name;
  node.ns = std::make_unique<Netns>(prefix_ + "n" + std::to_string(index));
  node.pod_cidr = "10.71." + std::to_string(index) + ".0/24";
  node.gateway = "10.71." + std::to_string(index) + ".1";
  node.node_ip = "10.70.0." + std::to_string(index + 1);
  Must(node.ns->Sh("ip link add kube-bridge type bridge && ip link set kube-bridge up && "
                   "ip addr add " +
                   node.gateway +
                   "/24 dev kube-bridge && "
                   "sysctl -qw net.ipv4.ip_forward=1"),
       "set up node " + name);
  if (index > 0) {
    // Star topology: node 0 holds one link per other node.
    Node& hub = nodes_[0];
    std::string hub_if = "to-n" + std::to_string(index);
    MustRun({"ip", "link", "add", hub_if, "netns", hub.ns->name(), "type", "veth", "peer", "name",
             "to-n0", "netns", node.ns->name()});
    std::string link_net = "10.70." + std::to_string(index) + ".";
    Must(hub.ns->Sh("ip addr add " + link_net + "1/24 dev " + hub_if + " && ip link set " + hub_if +
                    " up && ip route add " + node.pod_cidr + " via " + link_net + "2"),
         "link hub to " + name);
    Must(node.ns->Sh("ip addr add " + link_net +
                     "2/24 dev to-n0 && ip link set to-n0 up && "
                     "ip route add 10.71.0.0/16 via " +
                     link_net + "1"),
         "link " + name + " to hub");
    node.node_ip = link_net + "2";
  }
  nodes_.push_back(std::move(node));
  return nodes_.back();
}

PodNetwork::Pod& PodNetwork::AddPod(int node_index, const std::string& name) {
  Node& node = nodes_.at(node_index);
  Pod pod;
  pod.name = name;
  pod.node = node_index;
  pod.ns = std::make_unique<Netns>(prefix_ + "p");
  int host = node.next_host++;
  std::string base = node.pod_cidr.substr(0, node.pod_cidr.rfind('.') + 1);
  pod.ip = base + std::to_string(host);
  std::string host_if = "veth" + std::to_string(host);
  MustRun({"ip", "link", "add", host_if, "netns", node.ns->name(), "type", "veth", "peer", "name",
           "eth0", "netns", pod.ns->name()});
  Must(node.ns->Sh("ip link set " + host_if + " master kube-bridge && ip link set " + host_if +
                   " up"),
       "attach " + name);
  Must(pod.ns->Sh("ip addr add " + pod.ip +
                  "/24 dev eth0 && ip link set eth0 up && "
                  "ip route add default via " +
                  node.gateway),
       "address " + name);
  auto [it, inserted] = pods_.emplace(name, std::move(pod));
  return it->second;
}

void PodNetwork::Serve(const std::string& pod_name, int port, Proto proto) {
  Pod& pod = pods_.at(pod_name);
  std::string listen = proto == Proto::kTcp
                           ? "TCP-LISTEN:" + std::to_string(port) + ",fork,reuseaddr"
                           : "UDP-RECVFROM:" + std::to_string(port) + ",fork";
  std::string log = logs_.path() + "/server-" + std::to_string(servers_.size()) + ".log";
  servers_.push_back(
      std::make_unique<Process>(pod.ns->Wrap({"socat", listen, "SYSTEM:echo pong"}), log));
  // Ready when the socket is bound (ss shows it), polled rather than slept for.
  std::string check = std::string("ss -H -ln") + (proto == Proto::kTcp ? "t" : "u") +
                      " sport = :" + std::to_string(port) + " | grep -q .";
  if (!WaitFor([&] { return pod.ns->Sh(check).ok(); }, std::chrono::seconds(5))) {
    throw std::runtime_error("server on " + pod_name + ":" + std::to_string(port) +
                             " did not start");
  }
}

bool PodNetwork::Probe(const std::string& from, const std::string& ip, int port, Proto proto,
                       int timeout_ms) const {
  const Pod& pod = pods_.at(from);
  std::string seconds = std::to_string(timeout_ms / 1000.0);
  std::string address = (proto == Proto::kTcp ? "TCP:" : "UDP:") + ip + ":" + std::to_string(port) +
                        (proto == Proto::kTcp ? ",connect-timeout=" + seconds : "");
  // -t: how long to wait for the answer after our request is sent.
  auto r = pod.ns->Run({"socat", "-t", seconds, "-T", seconds, "-", address}, "ping\n");
  return r.ok() && r->exit_code == 0 && r->out.find("pong") != std::string::npos;
}

}  // namespace kr::testing
