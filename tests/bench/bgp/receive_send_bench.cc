// Benchmark (root, not a ctest test): 100,000 IPv4 prefixes sent by our speaker to GoBGP,
// then the same 100,000 received from that GoBGP by BIRD 2 (the baseline) and by our speaker,
// in the same run; then BIRD sends them to GoBGP (the send baseline), to a second BIRD and to a
// second speaker of ours. Prints prefixes/s, the RSS growth of each receiver (ours: this
// process; BIRD: its daemon, read from /proc/<pid>/status before its session is enabled and
// after it holds the table) and the ratios to BIRD. `--receive-only` stops after the receipt
// from GoBGP.
//
// Topology: namespace "gobgp" in the middle, one veth each to "src" (our feeding speaker, later
// the feeding BIRD, 10.0.2.1), "us" (our receiving speaker, 10.0.0.1) and "bird" (10.0.1.3);
// "src" also has a veth to "us" (10.0.3.1-2) and one to "bird" (10.0.4.1-2) for the receipt
// from BIRD. Receivers connect only after the sender holds the whole table, so each figure is
// a full initial table transfer. (`gobgp mrt inject` would avoid the feeder, but GoBGP 3.10
// silently ignored our dumps.)
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
      !link(src, "v5", "10.0.2.1/24", mid, "v4", "10.0.2.2/24") ||
      !link(src, "v6", "10.0.3.1/24", us, "v7", "10.0.3.2/24") ||
      !link(src, "v8", "10.0.4.1/24", bird_ns, "v9", "10.0.4.2/24")) {
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
  // The receiving BIRD starts with its session disabled, so the daemon's own footprint is
  // measured first; then `birdc enable` and the time until it holds the table.
  struct Receipt {
    double seconds = 0;
    long rss_before = 0, rss_after = 0;
  };
  auto bird_receives = [&](const std::string& conf, const std::string& name,
                           const std::string& protocol) -> std::optional<Receipt> {
    const std::string sock = dir.path() + "/" + name + ".ctl";
    Process bird(bird_ns.Wrap({"bird", "-f", "-c", conf, "-s", sock}),
                 dir.path() + "/" + name + ".log");
    auto birdc = [&](const std::string& cmd) { return Out(kr::Exec({"birdc", "-s", sock, cmd})); };
    if (!Check(
            WaitFor([&] { return birdc("show status").find("Daemon is up") != std::string::npos; },
                    30s),
            "BIRD did not start"))
      return std::nullopt;
    Receipt r;
    r.rss_before = RssKb(bird.pid());
    auto start = Clock::now();
    birdc("enable " + protocol);
    auto bird_count = [&] {
      std::string s = birdc("show route count");
      auto pos = s.find(" of ");
      if (pos == std::string::npos) return 0L;
      auto begin = s.rfind('\n', pos);
      return std::stol(s.substr(begin == std::string::npos ? 0 : begin + 1, pos));
    };
    if (!Check(WaitFor([&] { return bird_count() >= kPrefixes; }, 300s), "BIRD incomplete"))
      return std::nullopt;
    r.seconds = std::chrono::duration<double>(Clock::now() - start).count();
    r.rss_after = RssKb(bird.pid());
    return r;
  };
  // Our receiving speaker: the growth of this process while it takes the table.
  auto we_receive = [&](const Netns& ns, const kr::bgp::GlobalConfig& config,
                        const kr::bgp::PeerConfig& peer,
                        std::unique_ptr<kr::bgp::Speaker>& speaker) -> std::optional<Receipt> {
    Receipt r;
    r.rss_before = RssKb(getpid());
    auto start = Clock::now();
    InNetns(ns, [&] {
      speaker = kr::bgp::NewSpeaker(config);
      if (!speaker->Start().ok()) throw std::runtime_error("receiver start");
    });
    speaker->AddPeer(peer);
    auto received = [&] {
      auto peers = speaker->Peers();
      return peers.empty() ? 0UL : peers[0].prefixes_received;
    };
    if (!Check(WaitFor([&] { return received() >= kPrefixes; }, 300s), "speaker incomplete"))
      return std::nullopt;
    r.seconds = std::chrono::duration<double>(Clock::now() - start).count();
    r.rss_after = RssKb(getpid());
    return r;
  };
  auto report = [&](const char* from, const Receipt& bird, const Receipt& ours) {
    const long our_growth = ours.rss_after - ours.rss_before;
    const long bird_growth = bird.rss_after - bird.rss_before;
    const double our_rate = kPrefixes / ours.seconds, bird_rate = kPrefixes / bird.seconds;
    std::printf("receive %u prefixes from %s (connect + initial table):\n", kPrefixes, from);
    std::printf(
        "  BIRD 2      : %7.2f s  %9.0f prefixes/s  RSS %ld -> %ld KiB, growth %ld KiB"
        " (%.0f B/prefix)\n",
        bird.seconds, bird_rate, bird.rss_before, bird.rss_after, bird_growth,
        bird_growth * 1024.0 / kPrefixes);
    std::printf(
        "  kube-router : %7.2f s  %9.0f prefixes/s  RSS %ld -> %ld KiB, growth %ld KiB"
        " (%.0f B/prefix)\n",
        ours.seconds, our_rate, ours.rss_before, ours.rss_after, our_growth,
        our_growth * 1024.0 / kPrefixes);
    std::printf("  RSS growth ours / BIRD: %.2f (target <= 1)\n",
                static_cast<double>(our_growth) / static_cast<double>(bird_growth));
    std::printf("  receive rate ours / BIRD: %.2f (target >= 1)\n", our_rate / bird_rate);
    std::printf("  (receive times include polling: birdc every 20 ms, Peers() every 20 ms)\n");
  };
  auto bird_from_gobgp = bird_receives(bird_conf, "bird", "gobgp");
  if (!bird_from_gobgp) return 1;

  // ---- ours receives the same table from GoBGP ----
  std::unique_ptr<kr::bgp::Speaker> receiver;
  auto ours_from_gobgp =
      we_receive(us, SpeakerConfig(64512, "10.0.0.1"), GobgpPeer("10.0.0.2"), receiver);
  if (!ours_from_gobgp) return 1;
  std::printf("send %u prefixes to GoBGP (connect + initial table, until GoBGP accepted all):\n",
              kPrefixes);
  std::printf("  kube-router : %7.2f s  %9.0f prefixes/s  RSS +%ld KiB for the table\n",
              send_seconds, kPrefixes / send_seconds, rss_feeder - rss_start);
  report("GoBGP", *bird_from_gobgp, *ours_from_gobgp);
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
            "  ipv4 { import none; export all; }; }\n"
            // The same table from BIRD, to a second BIRD and to a second speaker of ours.
            "protocol bgp to_bird { local 10.0.4.1 as 64600; neighbor 10.0.4.2 as 64514;\n"
            "  ipv4 { import none; export all; }; }\n"
            "protocol bgp to_ours { local 10.0.3.1 as 64600; neighbor 10.0.3.2 as 64512;\n"
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

  // ---- both receive the table from BIRD ----
  const std::string bird2_conf = dir.path() + "/bird2.conf";
  std::ofstream(bird2_conf) << R"(router id 10.0.4.2;
protocol device { }
protocol bgp feeder {
  local 10.0.4.2 as 64514;
  neighbor 10.0.4.1 as 64600;
  disabled;
  ipv4 { import all; export none; };
}
)";
  auto bird_from_bird = bird_receives(bird2_conf, "bird2", "feeder");
  if (!bird_from_bird) return 1;
  kr::bgp::GlobalConfig config = SpeakerConfig(64512, "10.0.3.2");
  config.disable_listen = true;
  kr::bgp::PeerConfig bird_peer;
  bird_peer.address = *IpAddress::Parse("10.0.3.1");
  bird_peer.remote_asn = 64600;
  bird_peer.local_address = *IpAddress::Parse("10.0.3.2");
  std::unique_ptr<kr::bgp::Speaker> receiver2;
  auto ours_from_bird = we_receive(us, config, bird_peer, receiver2);
  if (!ours_from_bird) return 1;
  report("BIRD", *bird_from_bird, *ours_from_bird);
  receiver2->Stop();
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
