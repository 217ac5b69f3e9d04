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

PodNetwork::PodNetwork(std::string prefix) : prefix_(std::move(prefix)) {
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

namespace {

sockaddr_in Address(const std::string& ip, int port) {
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  if (inet_pton(AF_INET, ip.c_str(), &addr.sin_addr) != 1) {
    throw std::runtime_error("bad IPv4 address " + ip);
  }
  return addr;
}

// Waits for `events` on fd until the deadline; false on timeout.
bool WaitFd(int fd, short events, std::chrono::steady_clock::time_point deadline) {
  while (true) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) return false;
    pollfd p{fd, events, 0};
    int r = poll(&p, 1, static_cast<int>(left.count()));
    if (r > 0) return true;
    if (r < 0 && errno != EINTR) return false;
  }
}

}  // namespace

void PodNetwork::Serve(const std::string& pod_name, int port, Proto proto) {
  Pod& pod = pods_.at(pod_name);
  if (server_thread_.joinable()) throw std::runtime_error("Serve after the first Probe");
  ScopedNetns inside(pod.ns->name());
  int fd = socket(AF_INET, (proto == Proto::kTcp ? SOCK_STREAM : SOCK_DGRAM) | SOCK_CLOEXEC, 0);
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  sockaddr_in addr = Address(pod.ip, port);
  if (fd < 0 || bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
      (proto == Proto::kTcp && listen(fd, 64) != 0)) {
    if (fd >= 0) close(fd);
    throw std::runtime_error("cannot serve " + pod_name + ":" + std::to_string(port));
  }
  listen_fds_.push_back(fd);
  listen_is_tcp_.push_back(proto == Proto::kTcp);
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
      if (listen_is_tcp_[i]) {
        int conn = accept4(fds[i].fd, nullptr, nullptr, SOCK_CLOEXEC);
        if (conn >= 0) {
          (void)!send(conn, "pong\n", 5, MSG_NOSIGNAL);
          close(conn);
        }
      } else {
        char buf[64];
        sockaddr_in peer{};
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
  int fd;
  {
    ScopedNetns inside(pod.ns->name());
    fd =
        socket(AF_INET,
               (proto == Proto::kTcp ? SOCK_STREAM : SOCK_DGRAM) | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  }
  if (fd < 0) return false;
  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  sockaddr_in addr = Address(ip, port);
  bool answered = false;
  int rc = connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
  if (rc == 0 || errno == EINPROGRESS) {
    if (proto == Proto::kUdp) (void)!send(fd, "ping\n", 5, 0);
    // A rejected probe wakes poll with an error (ECONNREFUSED / EHOSTUNREACH) at once.
    if (WaitFd(fd, POLLIN, deadline)) {
      char buf[16];
      ssize_t n = recv(fd, buf, sizeof(buf), 0);
      answered = n >= 4 && std::string(buf, 4) == "pong";
    }
  }
  close(fd);
  return answered;
}

}  // namespace kr::testing
