// Resource bounds per listener, through the real binary (running_agent.h): idle and half-sent
// connections held against every listener while a normal client keeps getting answers.
#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>

#include "lib/binaries.h"
#include "lib/help_flags.h"
#include "lib/netns.h"
#include "lib/podnet.h"
#include "netns/app/running_agent.h"

namespace kr::app_netns {
namespace {

// ---- resource bounds per listener, through the real binary ----

// A /proc/<pid>/status field in KiB (VmRSS...), or a count of /proc/<pid>/fd entries.
long ProcStatusKiB(pid_t pid, const std::string& field) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind(field + ":", 0) == 0) return std::atol(line.c_str() + field.size() + 1);
  return -1;
}
long OpenFds(pid_t pid) {
  std::error_code ec;
  long n = 0;
  for (auto it = std::filesystem::directory_iterator("/proc/" + std::to_string(pid) + "/fd", ec);
       !ec && it != std::filesystem::directory_iterator(); it.increment(ec))
    ++n;
  return n;
}

// Connections opened from the test (inside the agent's namespace) and held open: from
// 127.0.0.<10+i/per_source>, each sending `partial` (a request head that never ends).
class HeldConnections {
 public:
  HeldConnections(const std::string& netns, const std::string& ip, int port, int count,
                  int per_source, const std::string& partial) {
    testing::ScopedNetns in(netns);
    for (int i = 0; i < count; ++i) {
      int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
      if (fd < 0) break;
      sockaddr_in src{}, dst{};
      src.sin_family = dst.sin_family = AF_INET;
      src.sin_addr.s_addr = htonl((127u << 24) | (10u + static_cast<unsigned>(i / per_source)));
      ::bind(fd, reinterpret_cast<sockaddr*>(&src), sizeof src);
      dst.sin_port = htons(static_cast<uint16_t>(port));
      inet_pton(AF_INET, ip.c_str(), &dst.sin_addr);
      ::connect(fd, reinterpret_cast<sockaddr*>(&dst), sizeof dst);
      pollfd p{fd, POLLOUT, 0};
      if (::poll(&p, 1, 200) == 1 && !(p.revents & (POLLERR | POLLHUP))) {
        ::send(fd, partial.data(), partial.size(), MSG_NOSIGNAL);
        ++connected_;
      }
      fds_.push_back(fd);
    }
  }
  ~HeldConnections() {
    for (int fd : fds_) ::close(fd);
  }
  int connected() const { return connected_; }

 private:
  std::vector<int> fds_;
  int connected_ = 0;
};

// Every listener of an agent running the firewall and the router (health, metrics, the routing
// status view, BGP) holds up against a crowd of idle, half-sent connections: a normal client
// keeps getting answers while they are held, and the agent's descriptors and memory stay
// bounded (the HTTP caps: 8 per source, 256 per listener; BGP closes non-peers at accept).
TEST_F(RunningAgent, EveryListenerKeepsAnsweringUnderIdleConnectionsWithBoundedResources) {
  rlimit nofile{};
  getrlimit(RLIMIT_NOFILE, &nofile);
  nofile.rlim_cur = nofile.rlim_max;
  setrlimit(RLIMIT_NOFILE, &nofile);
  // The router needs the Node's address on an interface of this node.
  ASSERT_TRUE(ns_->Sh("ip link add kr-node0 type veth peer name kr-node1 && ip addr add "
                      "10.0.0.1/24 dev kr-node0 "
                      "&& ip link set kr-node0 up && ip link set kr-node1 up")
                  .ok());
  // The router writes its CNI config: into the test's directory, never the host's.
  agent_ = std::make_unique<Process>(
      ns_->Wrap({"env", "KUBE_ROUTER_CNI_CONF_FILE=" + tmp_.path() + "/10-kuberouter.conflist",
                 kAgentBinary, "--kubeconfig=" + kubeconfig_, "--hostname-override=kr-test-node",
                 "--health-port=20244", "--metrics-port=20245", "--cache-sync-timeout=30s",
                 "--run-firewall=true", "--run-router=true", "--run-service-proxy=false",
                 "--iptables-sync-period=30s", "--routes-sync-period=30s"}),
      tmp_.path() + "/agent.log");
  ASSERT_TRUE(HealthBecomes(200)) << agent_->Log();
  ASSERT_TRUE(WaitFor([&] { return Sample(Metrics(), kPolicySyncs) >= 1; }, kDeadline))
      << agent_->Log();
  std::string bgp_ip;
  ASSERT_TRUE(WaitFor(
      [&] {
        auto ss = ns_->Sh("ss -Hltn 'sport = :179'");
        if (!ss.ok() || ss->empty()) return false;
        bgp_ip = ss->find("10.0.0.1:179") != std::string::npos ? "10.0.0.1" : "127.0.0.1";
        return true;
      },
      kDeadline))
      << agent_->Log();
  struct Listener {
    std::string name, ip;
    int port;
    std::string probe_url;  // a normal client's request; empty for BGP
    std::string partial;
  };
  const std::string head = "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ";
  const Listener listeners[] = {
      {"health", "127.0.0.1", 20244, "http://127.0.0.1:20244/healthz", head},
      {"metrics", "127.0.0.1", 20245, "http://127.0.0.1:20245/metrics", head},
      {"status view", "127.0.0.1", 50051, "http://127.0.0.1:50051/status", head},
      {"bgp", bgp_ip, 179, "", std::string(16, '\xff') + "\x00"},
  };
  pid_t pid = agent_->pid();
  // Warm every listener once, then take the baseline.
  for (const auto& l : listeners) {
    if (!l.probe_url.empty()) {
      ASSERT_EQ(Get(*ns_, l.probe_url).status, 200) << l.name;
    }
  }
  const long fds_before = OpenFds(pid);
  const long rss_before = ProcStatusKiB(pid, "VmRSS");
  for (const auto& l : listeners) {
    SCOPED_TRACE(l.name);
    {
      // 400 connections from 50 sources (8 each, the per-source cap).
      HeldConnections crowd(ns_->name(), l.ip, l.port, 400, 8, l.partial);
      EXPECT_GT(crowd.connected(), 0);
      for (int i = 0; i < 10; ++i) {
        if (!l.probe_url.empty()) {
          auto start = std::chrono::steady_clock::now();
          HttpAnswer a = Get(*ns_, l.probe_url);
          EXPECT_EQ(a.status, 200) << "probe " << i;
          EXPECT_LT(std::chrono::steady_clock::now() - start, 2s) << "probe " << i;
        }
        EXPECT_EQ(Get(*ns_, "http://127.0.0.1:20244/healthz").status, 200) << "health " << i;
      }
      long fds = OpenFds(pid);
      std::cout << l.name << ": " << crowd.connected() << " held, agent descriptors " << fds_before
                << " -> " << fds << "\n";
      EXPECT_LE(fds, fds_before + 256 + 16) << "more than the listener's cap held";
    }
    // Once they are gone, so are their descriptors.
    EXPECT_TRUE(WaitFor([&] { return OpenFds(pid) <= fds_before + 16; }, 15s))
        << OpenFds(pid) << " descriptors, " << fds_before << " before";
  }
  long rss_after = ProcStatusKiB(pid, "VmRSS");
  std::cout << "agent RSS " << rss_before << " -> " << rss_after << " KiB\n";
  EXPECT_LT(rss_after - rss_before, 32 * 1024) << "the agent kept memory for idle connections";
  EXPECT_TRUE(agent_->Running()) << agent_->Log();
}

}  // namespace
}  // namespace kr::app_netns
