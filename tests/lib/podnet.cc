#include "lib/podnet.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <stdexcept>

#include "lib/probe_socket.h"

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

// Every `ip` command of one namespace in one process (`ip -n NS -batch -`): under an emulated
// CPU (the vm tier) each process start costs a lot, and `ip netns exec` + `sh` + N `ip` runs
// were most of a world's set-up time. Stops at the first failing line.
void IpBatch(const Netns& ns, const std::vector<std::string>& lines, const std::string& what) {
  std::string input;
  for (const auto& line : lines) input += line + "\n";
  Must(ExecChecked({"ip", "-n", ns.name(), "-batch", "-"}, input), what + " (" + ns.name() + ")");
}

using Sysctl = std::pair<const char*, const char*>;

// Writes sysctls of a namespace from this process (/proc/sys/net opened by a thread inside the
// namespace belongs to it): no process at all.
void WriteSysctls(const Netns& ns, const std::vector<Sysctl>& settings) {
  ScopedNetns inside(ns.name());
  for (const auto& [key, value] : settings) {
    std::string path = "/proc/sys/" + std::string(key);
    for (size_t i = 10; i < path.size(); ++i) {
      if (path[i] == '.') path[i] = '/';
    }
    int fd = open(path.c_str(), O_WRONLY | O_CLOEXEC);
    const size_t length = std::strlen(value);
    const bool ok = fd >= 0 && write(fd, value, length) == static_cast<ssize_t>(length);
    if (fd >= 0) close(fd);
    if (!ok) throw std::runtime_error("cannot set " + std::string(key) + " in " + ns.name());
  }
}

// IPv6 on, duplicate address detection off (addresses are usable at once), for interfaces
// created in the namespace from now on.
const std::vector<Sysctl> kIpv6Sysctls = {{"net.ipv6.conf.all.disable_ipv6", "0"},
                                          {"net.ipv6.conf.default.disable_ipv6", "0"},
                                          {"net.ipv6.conf.all.accept_dad", "0"},
                                          {"net.ipv6.conf.default.accept_dad", "0"}};

// "fd00:10::" for node 0, "fd00:10:0:N::" otherwise (N in hex).
std::string PodPrefix6(int node) {
  char text[32];
  if (node == 0) return "fd00:10::";
  std::snprintf(text, sizeof(text), "fd00:10:0:%x::", node);
  return text;
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

PodNetwork::PodNetwork(std::string prefix, bool dual_stack)
    : prefix_(std::move(prefix)), dual_stack_(dual_stack) {
  if (pipe2(wake_pipe_, O_CLOEXEC) != 0) throw std::runtime_error("pipe2 failed");
}

PodNetwork::~PodNetwork() {
  if (server_thread_.joinable()) {
    (void)!write(wake_pipe_[1], "x", 1);
    server_thread_.join();
  }
  for (int fd : listen_fds_) close(fd);
  close(wake_pipe_[0]);
  close(wake_pipe_[1]);
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
  if (dual_stack_) {
    // Before kube-bridge exists, so that its link-local address skips DAD too: until that
    // address is usable the node sends no neighbour solicitation for forwarded packets.
    node.pod_cidr6 = PodPrefix6(index) + "/64";
    node.gateway6 = PodPrefix6(index) + "1";
    WriteSysctls(*node.ns, kIpv6Sysctls);
    WriteSysctls(*node.ns,
                 {{"net.ipv6.conf.all.forwarding", "1"}, {"net.ipv6.icmp.ratelimit", "0"}});
  }
  std::vector<std::string> bridge = {"link add kube-bridge type bridge", "link set kube-bridge up",
                                     "addr add " + node.gateway + "/24 dev kube-bridge"};
  if (dual_stack_) bridge.push_back("addr add " + node.gateway6 + "/64 dev kube-bridge nodad");
  IpBatch(*node.ns, bridge, "set up node " + name);
  WriteSysctls(*node.ns, {{"net.ipv4.ip_forward", "1"}, {"net.ipv4.icmp_ratelimit", "0"}});
  if (index > 0) {
    // Star topology: node 0 holds one link per other node.
    Node& hub = nodes_[0];
    std::string hub_if = "to-n" + std::to_string(index);
    MustRun({"ip", "link", "add", hub_if, "netns", hub.ns->name(), "type", "veth", "peer", "name",
             "to-n0", "netns", node.ns->name()});
    std::string link_net = "10.70." + std::to_string(index) + ".";
    std::vector<std::string> hub_side = {"addr add " + link_net + "1/24 dev " + hub_if,
                                         "link set " + hub_if + " up",
                                         "route add " + node.pod_cidr + " via " + link_net + "2"};
    std::vector<std::string> node_side = {"addr add " + link_net + "2/24 dev to-n0",
                                          "link set to-n0 up",
                                          "route add 10.71.0.0/16 via " + link_net + "1"};
    node.node_ip = link_net + "2";
    if (dual_stack_) {
      std::string link6 = "fd00:70:" + std::to_string(index) + "::";
      hub_side.push_back("addr add " + link6 + "1/64 dev " + hub_if + " nodad");
      hub_side.push_back("route add " + node.pod_cidr6 + " via " + link6 + "2");
      node_side.push_back("addr add " + link6 + "2/64 dev to-n0 nodad");
      node_side.push_back("route add fd00:10::/48 via " + link6 + "1");
    }
    IpBatch(*hub.ns, hub_side, "link hub to " + name);
    IpBatch(*node.ns, node_side, "link " + name + " to hub");
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
  if (dual_stack_) {
    char suffix[16];
    std::snprintf(suffix, sizeof(suffix), "%x00", host);
    pod.ip6 = PodPrefix6(node_index) + suffix;
    WriteSysctls(*pod.ns, kIpv6Sysctls);
  }
  std::string host_if = "veth" + std::to_string(host);
  pod.host_link = host_if;
  MustRun({"ip", "link", "add", host_if, "netns", node.ns->name(), "type", "veth", "peer", "name",
           "eth0", "netns", pod.ns->name()});
  IpBatch(*node.ns, {"link set " + host_if + " master kube-bridge", "link set " + host_if + " up"},
          "attach " + name);
  std::vector<std::string> pod_side = {"addr add " + pod.ip + "/24 dev eth0", "link set eth0 up",
                                       "route add default via " + node.gateway};
  if (dual_stack_) {
    pod_side.push_back("addr add " + pod.ip6 + "/64 dev eth0 nodad");
    pod_side.push_back("route add ::/0 via " + node.gateway6);
  }
  IpBatch(*pod.ns, pod_side, "address " + name);
  auto [it, inserted] = pods_.emplace(name, std::move(pod));
  return it->second;
}

void PodNetwork::AttachExternalClient(int node_index, const Netns& client,
                                      const std::string& node_link, bool ipv6) {
  const Netns& node = *nodes_.at(node_index).ns;
  if (ipv6) WriteSysctls(client, kIpv6Sysctls);
  MustRun({"ip", "link", "add", node_link, "netns", node.name(), "type", "veth", "peer", "name",
           "eth0", "netns", client.name()});
  std::vector<std::string> node_side = {
      "addr add " + std::string(kExternalNodeIp) + "/24 dev " + node_link,
      "link set " + node_link + " up"};
  std::vector<std::string> client_side = {
      "addr add " + std::string(kExternalClientIp) + "/24 dev eth0", "link set eth0 up",
      "route add default via " + std::string(kExternalNodeIp)};
  if (ipv6) {
    node_side.push_back("addr add " + std::string(kExternalNodeIp6) + "/64 dev " + node_link +
                        " nodad");
    client_side.push_back("addr add " + std::string(kExternalClientIp6) + "/64 dev eth0 nodad");
    client_side.push_back("route add ::/0 via " + std::string(kExternalNodeIp6));
  }
  IpBatch(node, node_side, "node side of the external client's link");
  IpBatch(client, client_side, "external client");
}

namespace {

// An IPv4 or IPv6 socket address (IPv6 when `ip` has a colon).
struct SocketAddress {
  sockaddr_storage storage{};
  socklen_t length = 0;
  int family() const { return storage.ss_family; }
  sockaddr* get() { return reinterpret_cast<sockaddr*>(&storage); }
};

SocketAddress Address(const std::string& ip, int port) {
  SocketAddress addr;
  if (ip.find(':') != std::string::npos) {
    auto* in6 = reinterpret_cast<sockaddr_in6*>(&addr.storage);
    in6->sin6_family = AF_INET6;
    in6->sin6_port = htons(static_cast<uint16_t>(port));
    if (inet_pton(AF_INET6, ip.c_str(), &in6->sin6_addr) != 1) {
      throw std::runtime_error("bad IPv6 address " + ip);
    }
    addr.length = sizeof(sockaddr_in6);
    return addr;
  }
  auto* in = reinterpret_cast<sockaddr_in*>(&addr.storage);
  in->sin_family = AF_INET;
  in->sin_port = htons(static_cast<uint16_t>(port));
  if (inet_pton(AF_INET, ip.c_str(), &in->sin_addr) != 1) {
    throw std::runtime_error("bad IPv4 address " + ip);
  }
  addr.length = sizeof(sockaddr_in);
  return addr;
}

// socket() type and protocol of a probe or server socket.
int SocketType(Proto proto) { return proto == Proto::kUdp ? SOCK_DGRAM : SOCK_STREAM; }
int SocketProtocol(Proto proto) { return proto == Proto::kSctp ? IPPROTO_SCTP : 0; }

}  // namespace

void PodNetwork::Serve(const std::string& pod_name, int port, Proto proto) {
  Pod& pod = pods_.at(pod_name);
  if (server_thread_.joinable()) throw std::runtime_error("Serve after the first Probe");
  ScopedNetns inside(pod.ns->name());
  for (const std::string& ip : {pod.ip, pod.ip6}) {
    if (ip.empty()) continue;
    SocketAddress addr = Address(ip, port);
    int fd = socket(addr.family(), SocketType(proto) | SOCK_CLOEXEC, SocketProtocol(proto));
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (fd < 0 || bind(fd, addr.get(), addr.length) != 0 ||
        (SocketType(proto) == SOCK_STREAM && listen(fd, 64) != 0)) {
      if (fd >= 0) close(fd);
      throw std::runtime_error("cannot serve " + pod_name + " " + ip + ":" + std::to_string(port));
    }
    listen_fds_.push_back(fd);
    listen_is_stream_.push_back(SocketType(proto) == SOCK_STREAM);
  }
}

void PodNetwork::ServeLoop() {
  std::vector<pollfd> fds;
  for (int fd : listen_fds_) fds.push_back({fd, POLLIN, 0});
  fds.push_back({wake_pipe_[0], POLLIN, 0});
  while (true) {
    if (poll(fds.data(), fds.size(), -1) < 0) {
      if (errno == EINTR) continue;
      return;
    }
    if (fds.back().revents) return;
    for (size_t i = 0; i + 1 < fds.size(); ++i) {
      if (!fds[i].revents) continue;
      if (listen_is_stream_[i]) {
        int conn = accept4(fds[i].fd, nullptr, nullptr, SOCK_CLOEXEC);
        if (conn >= 0) {
          (void)!send(conn, "pong\n", 5, MSG_NOSIGNAL);
          close(conn);
        }
      } else {
        char buf[64];
        sockaddr_storage peer{};
        socklen_t len = sizeof(peer);
        ssize_t n = recvfrom(fds[i].fd, buf, sizeof(buf), MSG_DONTWAIT,
                             reinterpret_cast<sockaddr*>(&peer), &len);
        if (n >= 0) {
          (void)!sendto(fds[i].fd, "pong\n", 5, 0, reinterpret_cast<sockaddr*>(&peer), len);
        }
      }
    }
  }
}

bool PodNetwork::Probe(const std::string& from, const std::string& ip, int port, Proto proto,
                       int timeout_ms) const {
  if (!server_thread_.joinable()) {
    // Lazily started so that every Serve() happens before the loop reads the socket list.
    const_cast<PodNetwork*>(this)->server_thread_ =
        std::thread([self = const_cast<PodNetwork*>(this)] { self->ServeLoop(); });
  }
  const Pod& pod = pods_.at(from);
  SocketAddress addr = Address(ip, port);
  int fd;
  {
    ScopedNetns inside(pod.ns->name());
    fd = socket(addr.family(), SocketType(proto) | SOCK_CLOEXEC | SOCK_NONBLOCK,
                SocketProtocol(proto));
  }
  if (fd < 0) return false;
  if (proto == Proto::kTcp && addr.family() == AF_INET6) {
    // A REJECT's ICMPv6 error for the SYN often arrives while connect() still holds the
    // socket, and TCP then keeps it as a soft error until the SYN is retransmitted (1 s).
    // With IPV6_RECVERR it is also queued on the socket, which wakes poll at once.
    int one = 1;
    setsockopt(fd, IPPROTO_IPV6, IPV6_RECVERR, &one, sizeof(one));
  }
  if (proto == Proto::kSctp) PrepareSctpProbe(fd, addr.family());
  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  bool answered = false;
  int rc = connect(fd, addr.get(), addr.length);
  if (rc == 0 || errno == EINPROGRESS) {
    if (proto == Proto::kUdp) (void)!send(fd, "ping\n", 5, 0);
    // A rejected probe wakes poll with an error (ECONNREFUSED / EHOSTUNREACH) at once (SCTP:
    // see PrepareSctpProbe). An SCTP association counts once the server's "pong" arrived on it.
    if (PollUntil(fd, POLLIN, deadline) != 0) {
      char buf[16];
      ssize_t n = recv(fd, buf, sizeof(buf), 0);
      answered = n >= 4 && std::string(buf, 4) == "pong";
    }
  }
  close(fd);
  return answered;
}

}  // namespace kr::testing
