// A two-namespace topology for BGP interop tests: our speaker runs in-process inside namespace
// "us" (10.0.0.1, fd00::1), a real BIRD 2 or GoBGP runs inside namespace "peer" (10.0.0.2,
// fd00::2), joined by a veth pair. Everything is removed when the fixture is destroyed.
#pragma once

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sched.h>
#include <unistd.h>

#include <cctype>
#include <chrono>
#include <fstream>
#include <functional>
#include <memory>
#include <string>

#include "kube_router/bgp/speaker.h"
#include "lib/netns.h"

namespace kr::bgp::testing {

using namespace std::chrono_literals;
using kr::testing::Netns;
using kr::testing::Process;
using kr::testing::TempDir;
using kr::testing::WaitFor;

inline IpAddress Ip(const char* s) { return *IpAddress::Parse(s); }
inline IpPrefix Pfx(const char* s) { return *IpPrefix::Parse(s); }

// Runs `fn` with the calling thread inside `ns`; threads it starts stay there.
inline void InNetns(const Netns& ns, const std::function<void()>& fn) {
  int self = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
  int target = open(("/var/run/netns/" + ns.name()).c_str(), O_RDONLY | O_CLOEXEC);
  ASSERT_GE(self, 0);
  ASSERT_GE(target, 0);
  ASSERT_EQ(setns(target, CLONE_NEWNET), 0);
  fn();
  EXPECT_EQ(setns(self, CLONE_NEWNET), 0);
  close(self);
  close(target);
}

inline void WriteFile(const std::string& path, const std::string& text) {
  std::ofstream(path) << text;
}

class InteropTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(kr::testing::IsRoot()) << "the netns tier runs as root";
    us_ = std::make_unique<Netns>("krbgp-us");
    peer_ = std::make_unique<Netns>("krbgp-pe");
    auto r = us_->Sh("ip link add v0 type veth peer name v1 netns " + peer_->name() +
                     " && ip addr add 10.0.0.1/24 dev v0 && ip addr add fd00::1/64 dev v0 nodad"
                     " && ip link set v0 up");
    ASSERT_TRUE(r.ok()) << r.error();
    r = peer_->Sh(
        "ip addr add 10.0.0.2/24 dev v1 && ip addr add fd00::2/64 dev v1 nodad && ip link set v1 "
        "up");
    ASSERT_TRUE(r.ok()) << r.error();
  }

  void TearDown() override {
    if (speaker_) speaker_->Stop();
    speaker_.reset();
    gobgpd_.reset();
    bird_.reset();
    peer_.reset();
    us_.reset();
  }

  GlobalConfig Global(uint32_t asn) {
    GlobalConfig g;
    g.local_asn = asn;
    g.router_id = Ip("10.0.0.1");
    g.hold_time_s = 3;
    g.connect_retry_s = 1;
    return g;
  }

  void StartSpeaker(const GlobalConfig& g) {
    InNetns(*us_, [&] {
      speaker_ = NewSpeaker(g);
      Status s = speaker_->Start();
      ASSERT_TRUE(s.ok()) << s.message();
    });
  }

  // ---- BIRD ----
  void StartBird(const std::string& protocols) {
    bird_sock_ = dir_.path() + "/bird.ctl";
    const std::string conf = dir_.path() + "/bird.conf";
    WriteFile(conf, "router id 10.0.0.2;\nprotocol device { }\n" + protocols);
    bird_ = std::make_unique<Process>(
        peer_->Wrap({"bird", "-f", "-c", conf, "-s", bird_sock_, "-P", dir_.path() + "/bird.pid"}),
        dir_.path() + "/bird.log");
    ASSERT_TRUE(WaitFor(
        [&] { return Birdc("show status").find("Daemon is up") != std::string::npos; }, 10s))
        << bird_->Log();
  }
  std::string Birdc(const std::string& command) {
    auto r = Exec({"birdc", "-s", bird_sock_, command});
    return r.ok() ? r->out : "";
  }
  bool BirdEstablished(const std::string& protocol) {
    return Birdc("show protocols " + protocol).find("Established") != std::string::npos;
  }

  // ---- GoBGP ----
  void StartGobgp(const std::string& toml) {
    const std::string conf = dir_.path() + "/gobgpd.toml";
    WriteFile(conf, toml);
    gobgpd_ = std::make_unique<Process>(peer_->Wrap({"gobgpd", "-p", "-f", conf, "--api-hosts",
                                                     "127.0.0.1:50051", "--pprof-disable"}),
                                        dir_.path() + "/gobgpd.log");
    ASSERT_TRUE(WaitFor([&] { return Gobgp("global").find("AS") != std::string::npos; }, 10s))
        << gobgpd_->Log();
  }
  std::string Gobgp(const std::string& args) {
    auto r = peer_->Run({"sh", "-c", "gobgp -u 127.0.0.1 -p 50051 " + args});
    return r.ok() ? r->out + r->err : "";
  }
  bool GobgpEstablished() {
    std::string out = Gobgp("neighbor 10.0.0.1");
    for (auto& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return out.find("bgp state = established") != std::string::npos;
  }

  // ---- our side ----
  std::optional<PeerStatus> OurPeer(const char* address) {
    for (auto& p : speaker_->Peers())
      if (p.config.address == Ip(address)) return p;
    return std::nullopt;
  }
  bool Established(const char* address = "10.0.0.2") {
    auto p = OurPeer(address);
    return p && p->state == PeerState::kEstablished;
  }
  std::optional<Route> BestPath(const char* prefix) {
    for (auto& r : speaker_->BestPaths())
      if (r.prefix == Pfx(prefix)) return r;
    return std::nullopt;
  }

  PeerConfig PeerTo(uint32_t asn) {
    PeerConfig p;
    p.address = Ip("10.0.0.2");
    p.remote_asn = asn;
    return p;
  }

  TempDir dir_;
  std::unique_ptr<Netns> us_, peer_;
  std::unique_ptr<Speaker> speaker_;
  std::unique_ptr<Process> bird_, gobgpd_;
  std::string bird_sock_;
};

// A GoBGP configuration with one neighbour (us at 10.0.0.1).
inline std::string GobgpConfig(uint32_t asn, uint32_t peer_asn, const std::string& neighbor_extra,
                               bool graceful_restart = false) {
  std::string t = "[global.config]\n  as = " + std::to_string(asn) +
                  "\n  router-id = \"10.0.0.2\"\n  local-address-list = [\"10.0.0.2\"]\n"
                  "[[neighbors]]\n  [neighbors.config]\n    neighbor-address = \"10.0.0.1\"\n"
                  "    peer-as = " +
                  std::to_string(peer_asn) + "\n" + neighbor_extra +
                  "  [neighbors.timers.config]\n    hold-time = 3\n    keepalive-interval = 1\n"
                  "    connect-retry = 1\n";
  if (graceful_restart) {
    t += "  [neighbors.graceful-restart.config]\n    enabled = true\n    restart-time = 30\n";
  }
  t += "  [[neighbors.afi-safis]]\n    [neighbors.afi-safis.config]\n"
       "      afi-safi-name = \"ipv4-unicast\"\n";
  if (graceful_restart) {
    t += "    [neighbors.afi-safis.mp-graceful-restart.config]\n      enabled = true\n";
  }
  t += "  [[neighbors.afi-safis]]\n    [neighbors.afi-safis.config]\n"
       "      afi-safi-name = \"ipv6-unicast\"\n";
  return t;
}

}  // namespace kr::bgp::testing
