// A pod network in network namespaces for root-only tests: one namespace per node holding a
// `kube-bridge` (the pod CIDR's gateway address), one namespace per pod joined to its node's
// bridge by a veth pair, and nodes joined to each other by veth links with routes to each
// other's pod CIDRs. Traffic never leaves these namespaces. A dual-stack network gives every
// node and pod an IPv6 address as well (DAD off, routes for both families).
#pragma once

#include <atomic>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "lib/netns.h"

namespace kr::testing {

// Moves the calling thread into a network namespace until destruction. Programs the thread
// starts (posix_spawn, fork) and /proc/sys/net opened by it belong to that namespace.
class ScopedNetns {
 public:
  explicit ScopedNetns(const std::string& netns_name);
  ~ScopedNetns();
  ScopedNetns(const ScopedNetns&) = delete;
  ScopedNetns& operator=(const ScopedNetns&) = delete;

 private:
  int original_fd_ = -1;
};

// kSctp needs a kernel with SCTP sockets (the vm tier's guest; not the host): where SCTP
// sockets cannot be opened, Serve throws and Probe reports "not answered".
enum class Proto { kTcp, kUdp, kSctp };

// "tcp", "udp", "sctp" (for messages).
inline const char* ProtoName(Proto proto) {
  switch (proto) {
    case Proto::kTcp:
      return "tcp";
    case Proto::kUdp:
      return "udp";
    case Proto::kSctp:
      return "sctp";
  }
  return "?";
}

class PodNetwork {
 public:
  struct Node {
    std::string name;
    std::unique_ptr<Netns> ns;
    std::string pod_cidr;   // "10.71.N.0/24"
    std::string gateway;    // "10.71.N.1" on kube-bridge
    std::string node_ip;    // "10.70.0.(N+1)" on the inter-node link
    std::string pod_cidr6;  // dual-stack only: "fd00:10::/64", "fd00:10:0:N::/64"
    std::string gateway6;   // dual-stack only: "<pod_cidr6 prefix>1" on kube-bridge
    int next_host = 2;
  };
  struct Pod {
    std::string name;  // "namespace/name"
    int node = 0;
    std::unique_ptr<Netns> ns;
    std::string ip;
    // Dual-stack only: "<pod_cidr6 prefix><host in hex>00", so every pod owns its own /120.
    std::string ip6;
    std::string host_link;  // the node's end of the pod's veth (a kube-bridge port)
  };

  // `prefix` names the namespaces (keep it short, e.g. "np").
  explicit PodNetwork(std::string prefix, bool dual_stack = false);
  ~PodNetwork();

  // Adds node number nodes().size(); nodes are joined in a star around node 0. Nodes send every
  // ICMP error (no rate limit), so each rejected probe fails at once, however many there are.
  Node& AddNode(const std::string& name);
  Pod& AddPod(int node, const std::string& name);
  // An external client (a namespace the caller made) on its own veth link to node `node`: the
  // node's side, named `node_link`, holds kExternalNodeIp/24, the client's eth0
  // kExternalClientIp/24 with a default route via the node. With `ipv6` also
  // kExternalNodeIp6/64 and kExternalClientIp6/64 (DAD off) and an IPv6 default route.
  void AttachExternalClient(int node, const Netns& client, const std::string& node_link = "kr-ext",
                            bool ipv6 = false);
  static constexpr const char* kExternalNodeIp = "192.0.2.1";
  static constexpr const char* kExternalClientIp = "192.0.2.9";
  static constexpr const char* kExternalNodeIp6 = "fd00:192::1";
  static constexpr const char* kExternalClientIp6 = "fd00:192::9";
  // Listens on `port` inside the pod: a TCP connection, an SCTP association or a UDP datagram
  // is answered with "pong" (by a thread of the test process; its sockets live in the pod's
  // namespace). A dual-stack pod listens on its IPv4 and its IPv6 address.
  void Serve(const std::string& pod, int port, Proto proto);
  // True when `from` gets "pong" from ip:port within `timeout_ms` (a socket opened inside the
  // pod's namespace). A rejected probe fails at once (SCTP: after its first INIT retransmission,
  // ~0.1 s, see podnet.cc); a dropped one after the timeout. `ip` may be IPv4 or IPv6.
  bool Probe(const std::string& from, const std::string& ip, int port, Proto proto,
             int timeout_ms = 2000) const;

  std::vector<Node>& nodes() { return nodes_; }
  Pod& pod(const std::string& name) { return pods_.at(name); }
  const Pod& pod(const std::string& name) const { return pods_.at(name); }

 private:
  std::string prefix_;
  bool dual_stack_ = false;
  std::vector<Node> nodes_;
  std::map<std::string, Pod> pods_;
  void ServeLoop();

  std::vector<int> listen_fds_;  // TCP and SCTP listeners, UDP sockets; served by server_thread_
  std::vector<bool> listen_is_stream_;  // TCP or SCTP: accept, answer, close
  int wake_pipe_[2] = {-1, -1};
  std::thread server_thread_;
};

}  // namespace kr::testing
