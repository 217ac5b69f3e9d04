// Benchmark (root, not a ctest test): 100,000 IPv4 prefixes sent by our speaker to GoBGP,
// then the same 100,000 received from that GoBGP by BIRD 2 (the baseline) and by our speaker,
// in the same run. Prints prefixes/s, the RSS growth of each receiver (ours: this process; BIRD:
// its daemon, read from /proc/<pid>/status before its session is enabled and after it holds
// the table) and the ratios to BIRD. `--receive-only` skips the BIRD send baseline.
//
// Topology: namespace "gobgp" in the middle, one veth each to "src" (our feeding speaker,
// 10.0.2.1), "us" (our receiving speaker, 10.0.0.1) and "bird" (10.0.1.3). Receivers connect
// only after GoBGP holds the whole table, so each figure is a full initial table transfer.
// (`gobgp mrt inject` would avoid the feeder, but GoBGP 3.10 silently ignored our dumps.)
#include <fcntl.h>
#include <sched.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>
#include <thread>

#include "kube_router/bgp/speaker.h"
#include "lib/netns.h"

namespace {

using namespace std::chrono_literals;
using kr::IpAddress;
using kr::IpPrefix;
using kr::testing::Netns;
using kr::testing::Process;
using kr::testing::TempDir;
using kr::testing::WaitFor;
using Clock = std::chrono::steady_clock;

constexpr uint32_t kPrefixes = 100000;

long RssKb(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind("VmRSS:", 0) == 0) return std::stol(line.substr(6));
  return -1;
}

std::string Out(const kr::Result<kr::ExecResult>& r) { return r.ok() ? r->out : ""; }

// Runs `fn` with the calling thread inside `ns`; threads it starts stay there.
void InNetns(const Netns& ns, const std::function<void()>& fn) {
  int self = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
  int target = open(("/var/run/netns/" + ns.name()).c_str(), O_RDONLY | O_CLOEXEC);
  if (setns(target, CLONE_NEWNET) != 0) throw std::runtime_error("setns");
  fn();
  if (setns(self, CLONE_NEWNET) != 0) throw std::runtime_error("setns back");
  close(self);
  close(target);
}

bool Check(bool ok, const std::string& what) {
  if (!ok) std::cerr << "bench: " << what << "\n";
  return ok;
}

kr::bgp::GlobalConfig SpeakerConfig(uint32_t asn, const char* router_id) {
  kr::bgp::GlobalConfig g;
  g.local_asn = asn;
  g.router_id = *IpAddress::Parse(router_id);
  return g;
}

kr::bgp::PeerConfig GobgpPeer(const char* address) {
  kr::bgp::PeerConfig peer;
  peer.address = *IpAddress::Parse(address);
  peer.remote_asn = 64513;
  return peer;
}

int Run(bool receive_only) {
  if (!kr::testing::IsRoot()) {
    std::cerr << "bench: needs root (network namespaces)\n";
    return 2;
  }
  TempDir dir;
  Netns us("krbench-us"), mid("krbench-gobgp"), bird_ns("krbench-bird"), src("krbench-src");
  auto link = [&](const Netns& a, const char* a_if, const char* a_ip, const Netns& b,
                  const char* b_if, const char* b_ip) {
    return a.Sh(std::string("ip link add ") + a_if + " type veth peer name " + b_if + " netns " +
                b.name() + " && ip addr add " + a_ip + " dev " + a_if + " && ip link set " + a_if +
                " up")
               .ok() &&
           b.Sh(std::string("ip addr add ") + b_ip + " dev " + b_if + " && ip link set " + b_if +
                " up")
               .ok();
  };
  if (!link(us, "v0", "10.0.0.1/24", mid, "v1", "10.0.0.2/24") ||
      !link(bird_ns, "v3", "10.0.1.3/24", mid, "v2", "10.0.1.2/24") ||
      !link(src, "v5", "10.0.2.1/24", mid, "v4", "10.0.2.2/24")) {
    std::cerr << "bench: topology setup failed\n";
    return 1;
  }
  const std::string toml = dir.path() + "/gobgpd.toml";
  std::ofstream(toml) << R"([global.config]
  as = 64513
  router-id = "10.0.0.2"
[[neighbors]]
  [neighbors.config]
    neighbor-address = "10.0.2.1"
    peer-as = 64600
  [neighbors.transport.config]
    passive-mode = true
[[neighbors]]
  [neighbors.config]
    neighbor-address = "10.0.0.1"
    peer-as = 64512
  [neighbors.transport.config]
    passive-mode = true
[[neighbors]]
  [neighbors.config]
    neighbor-address = "10.0.1.3"
    peer-as = 64514
  [neighbors.transport.config]
    passive-mode = true
)";
  Process gobgpd(mid.Wrap({"gobgpd", "-p", "-f", toml, "--pprof-disable", "-l", "warn"}),
                 dir.path() + "/gobgpd.log");
  auto gobgp = [&](const std::string& args) { return Out(mid.Run({"sh", "-c", "gobgp " + args})); };
  if (!Check(WaitFor([&] { return gobgp("global").find("AS") != std::string::npos; }, 10s),
             "gobgpd did not start"))
    return 1;

  // ---- ours sends 100,000 to GoBGP ----
  long rss_start = RssKb(getpid());
  std::unique_ptr<kr::bgp::Speaker> feeder;
  InNetns(src, [&] {
    feeder = kr::bgp::NewSpeaker(SpeakerConfig(64600, "10.0.2.1"));
    if (!feeder->Start().ok()) throw std::runtime_error("feeder start");
  });
  for (uint32_t i = 0; i < kPrefixes; ++i) {
    kr::bgp::LocalPath p;
    p.prefix = IpPrefix(IpAddress::V4(0x14000000u + (i << 8)), 24);
    feeder->AddPath(p);
  }
  feeder->Peers();  // every AddPath has been applied once this returns
  long rss_feeder = RssKb(getpid());
  auto send_start = Clock::now();
  feeder->AddPeer(GobgpPeer("10.0.2.2"));
  auto accepted_from = [&](const std::string& neighbor) {
    std::string s = gobgp("neighbor " + neighbor);
    auto pos = s.find("Accepted:");
    return pos == std::string::npos ? 0L : std::stol(s.substr(pos + 9));
  };
  if (!Check(WaitFor([&] { return accepted_from("10.0.2.1") >= kPrefixes; }, 300s),
             "GoBGP did not receive the feeder's table"))
    return 1;
  double send_seconds = std::chrono::duration<double>(Clock::now() - send_start).count();

  // ---- baseline: BIRD receives the table from GoBGP ----
  const std::string bird_conf = dir.path() + "/bird.conf";
  std::ofstream(bird_conf) << R"(router id 10.0.1.3;
protocol device { }
protocol bgp gobgp {
  local 10.0.1.3 as 64514;
  neighbor 10.0.1.2 as 64513;
  disabled;
  ipv4 { import all; export none; };
}
)";
  const std::string bird_sock = dir.path() + "/bird.ctl";
  double bird_seconds = 0;
  long bird_rss_before = 0, bird_rss = 0;
  {
    // The session starts disabled so the daemon's own footprint is measured first.
    Process bird(bird_ns.Wrap({"bird", "-f", "-c", bird_conf, "-s", bird_sock}),
                 dir.path() + "/bird.log");
    auto birdc = [&](const std::string& cmd) {
      return Out(kr::Exec({"birdc", "-s", bird_sock, cmd}));
    };
    if (!Check(
            WaitFor([&] { return birdc("show status").find("Daemon is up") != std::string::npos; },
                    30s),
            "BIRD did not start"))
      return 1;
    bird_rss_before = RssKb(bird.pid());
    auto start = Clock::now();
    birdc("enable gobgp");
    auto bird_count = [&] {
      std::string s = birdc("show route count");
      auto pos = s.find(" of ");
      if (pos == std::string::npos) return 0L;
      auto begin = s.rfind('\n', pos);
      return std::stol(s.substr(begin == std::string::npos ? 0 : begin + 1, pos));
    };
    if (!Check(WaitFor([&] { return bird_count() >= kPrefixes; }, 300s), "BIRD incomplete"))
      return 1;
    bird_seconds = std::chrono::duration<double>(Clock::now() - start).count();
    bird_rss = RssKb(bird.pid());
  }

  // ---- ours receives the same table from GoBGP ----
  long rss_before = RssKb(getpid());
  std::unique_ptr<kr::bgp::Speaker> receiver;
  auto start = Clock::now();
  InNetns(us, [&] {
    receiver = kr::bgp::NewSpeaker(SpeakerConfig(64512, "10.0.0.1"));
    if (!receiver->Start().ok()) throw std::runtime_error("receiver start");
  });
  receiver->AddPeer(GobgpPeer("10.0.0.2"));
  auto received = [&] {
    auto peers = receiver->Peers();
    return peers.empty() ? 0UL : peers[0].prefixes_received;
  };
  if (!Check(WaitFor([&] { return received() >= kPrefixes; }, 300s), "speaker incomplete"))
    return 1;
  double our_seconds = std::chrono::duration<double>(Clock::now() - start).count();
  long rss_after = RssKb(getpid());

  std::printf("send %u prefixes to GoBGP (connect + initial table, until GoBGP accepted all):\n",
              kPrefixes);
  std::printf("  kube-router : %7.2f s  %9.0f prefixes/s  RSS +%ld KiB for the table\n",
              send_seconds, kPrefixes / send_seconds, rss_feeder - rss_start);
  const long our_growth = rss_after - rss_before, bird_growth = bird_rss - bird_rss_before;
  const double our_rate = kPrefixes / our_seconds, bird_rate = kPrefixes / bird_seconds;
  std::printf("receive %u prefixes from GoBGP (connect + initial table):\n", kPrefixes);
  std::printf(
      "  BIRD 2      : %7.2f s  %9.0f prefixes/s  RSS %ld -> %ld KiB, growth %ld KiB"
      " (%.0f B/prefix)\n",
      bird_seconds, bird_rate, bird_rss_before, bird_rss, bird_growth,
      bird_growth * 1024.0 / kPrefixes);
  std::printf(
      "  kube-router : %7.2f s  %9.0f prefixes/s  RSS %ld -> %ld KiB, growth %ld KiB"
      " (%.0f B/prefix)\n",
      our_seconds, our_rate, rss_before, rss_after, our_growth, our_growth * 1024.0 / kPrefixes);
  std::printf("  RSS growth ours / BIRD: %.2f (target <= 1)\n",
              static_cast<double>(our_growth) / static_cast<double>(bird_growth));
  std::printf("  receive rate ours / BIRD: %.2f (target >= 1)\n", our_rate / bird_rate);
  std::printf("  (receive times include polling: birdc every 20 ms, Peers() every 20 ms)\n");
  receiver->Stop();
  if (receive_only) return 0;

  // ---- baseline for sending: BIRD feeds the same 100,000 to GoBGP from the same address ----
  feeder->Stop();
  if (!Check(WaitFor([&] { return accepted_from("10.0.2.1") == 0; }, 60s),
             "GoBGP kept the feeder's routes"))
    return 1;
  const std::string feeder_conf = dir.path() + "/bird-feeder.conf";
  {
    std::ofstream conf(feeder_conf);
    conf << "router id 10.0.2.1;\nprotocol device { }\nprotocol static s4 { ipv4;\n";
    for (uint32_t i = 0; i < kPrefixes; ++i) {
      uint32_t net = 0x14000000u + (i << 8);
      conf << "route " << (net >> 24) << '.' << ((net >> 16) & 255) << '.' << ((net >> 8) & 255)
           << ".0/24 blackhole;\n";
    }
    conf << "}\nprotocol bgp gobgp { local 10.0.2.1 as 64600; neighbor 10.0.2.2 as 64513;\n"
            "  ipv4 { import none; export all; }; }\n";
  }
  auto bird_send_start = Clock::now();
  Process bird_feeder(src.Wrap({"bird", "-f", "-c", feeder_conf, "-s", dir.path() + "/feeder.ctl"}),
                      dir.path() + "/bird-feeder.log");
  if (!Check(WaitFor([&] { return accepted_from("10.0.2.1") >= kPrefixes; }, 300s),
             "GoBGP did not receive BIRD's table"))
    return 1;
  double bird_send_seconds = std::chrono::duration<double>(Clock::now() - bird_send_start).count();
  std::printf(
      "send baseline: BIRD 2 (config load + connect + initial table): %.2f s  %.0f "
      "prefixes/s  RSS %ld KiB\n",
      bird_send_seconds, kPrefixes / bird_send_seconds, RssKb(bird_feeder.pid()));
  std::printf("  send ratio BIRD time / our time: %.2f\n", bird_send_seconds / send_seconds);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return Run(argc > 1 && std::string(argv[1]) == "--receive-only");
  } catch (const std::exception& e) {
    std::cerr << "bench: " << e.what() << "\n";
    return 1;
  }
}
