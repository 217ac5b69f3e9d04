// The scripted peer for our speaker's netns tests: the test itself speaks BGP over TCP (with
// our codec) so it can do what real daemons will not do on demand: send malformed UPDATEs,
// cross two connection attempts, restart at an exact moment, hold back its End-of-RIB or stop
// reading. Shared by the scripted_*_test.cc files (one per theme).
#pragma once

#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>

#include <fstream>
#include <functional>
#include <string>
#include <vector>

#include "interop_fixture.h"
#include "kube_router/bgp/codec.h"

namespace kr::bgp::testing {

class ScriptedPeer {
 public:
  ~ScriptedPeer() { Close(); }
  void Close() {
    if (fd_ >= 0) close(fd_);
    fd_ = -1;
    buf_.clear();
  }
  // `rcvbuf` > 0 shrinks the receive buffer (and so the TCP window) before connecting.
  bool Connect(const char* local, const char* remote, uint16_t port, int rcvbuf = 0) {
    Close();
    fd_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (rcvbuf > 0) setsockopt(fd_, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));
    if (ttl > 0) setsockopt(fd_, IPPROTO_IP, IP_TTL, &ttl, sizeof(ttl));
    if (min_ttl > 0) setsockopt(fd_, IPPROTO_IP, IP_MINTTL, &min_ttl, sizeof(min_ttl));
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(Ip(local).v4_host_order());
    if (bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0) return false;
    a.sin_addr.s_addr = htonl(Ip(remote).v4_host_order());
    a.sin_port = htons(port);
    return connect(fd_, reinterpret_cast<sockaddr*>(&a), sizeof(a)) == 0;
  }
  void Adopt(int fd) {
    Close();
    fd_ = fd;
  }
  void SendBytes(const std::vector<uint8_t>& b) {
    ASSERT_EQ(send(fd_, b.data(), b.size(), MSG_NOSIGNAL), static_cast<ssize_t>(b.size()));
  }
  void Send(const Message& m) { SendBytes(Encode(m, codec)); }
  // For floods that may meet a closed connection: false once the peer is gone.
  bool TrySend(const std::vector<uint8_t>& b) {
    return send(fd_, b.data(), b.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(b.size());
  }
  // The next message, or nullopt on timeout or EOF.
  std::optional<Message> Receive(std::chrono::milliseconds timeout = 5s) {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    while (true) {
      auto frame = FrameLength(buf_);
      if (auto* len = std::get_if<size_t>(&frame); len && *len && *len <= buf_.size()) {
        last_raw.assign(buf_.begin(), buf_.begin() + static_cast<long>(*len));
        auto r = Decode(std::span<const uint8_t>(buf_).first(*len), codec);
        buf_.erase(buf_.begin(), buf_.begin() + static_cast<long>(*len));
        if (auto* m = std::get_if<Message>(&r)) return *m;
        return std::nullopt;
      }
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0) return std::nullopt;
      pollfd p{fd_, POLLIN, 0};
      if (poll(&p, 1, static_cast<int>(left.count())) <= 0) continue;
      uint8_t chunk[4096];
      ssize_t n = read(fd_, chunk, sizeof(chunk));
      if (n <= 0) return std::nullopt;
      buf_.insert(buf_.end(), chunk, chunk + n);
    }
  }
  // Skips everything up to the next NOTIFICATION.
  std::optional<NotificationMessage> ReceiveNotification(std::chrono::milliseconds timeout = 5s) {
    while (auto m = Receive(timeout))
      if (auto* n = std::get_if<NotificationMessage>(&*m)) return *n;
    return std::nullopt;
  }
  // Skips KEEPALIVEs.
  std::optional<Message> ReceiveNonKeepalive(std::chrono::milliseconds timeout = 5s) {
    while (auto m = Receive(timeout))
      if (!std::holds_alternative<KeepaliveMessage>(*m)) return m;
    return std::nullopt;
  }

  // Skips everything up to the next UPDATE.
  std::optional<UpdateMessage> ReceiveUpdate(std::chrono::milliseconds timeout = 5s) {
    while (auto m = Receive(timeout))
      if (auto* u = std::get_if<UpdateMessage>(&*m)) return *u;
    return std::nullopt;
  }

  CodecOptions codec;             // what this peer negotiated
  int ttl = 0;                    // IP_TTL of our segments (0: the system default)
  int min_ttl = 0;                // IP_MINTTL: drop segments arriving with a lower TTL
  std::vector<uint8_t> last_raw;  // bytes of the last message received

 private:
  int fd_ = -1;
  std::vector<uint8_t> buf_;
};

// The scripted peer's OPEN: AS 64513 (the external peer at 127.0.0.2) unless `asn` says other.
inline OpenMessage PeerOpen(const char* id, bool graceful_restart, uint32_t asn = 64513) {
  OpenMessage o;
  o.my_as = static_cast<uint16_t>(asn);
  o.hold_time_s = 30;
  o.bgp_id = Ip(id);
  o.caps.multiprotocol = {kIpv4Unicast};
  o.caps.four_octet_asn = asn;
  if (graceful_restart)
    o.caps.graceful_restart = GracefulRestartCap{false, 30, {{kIpv4Unicast, true}}};
  return o;
}

inline UpdateMessage Announce(std::vector<IpPrefix> nlri) {
  UpdateMessage u;
  u.attrs.origin = Origin::kIgp;
  u.attrs.as_path = AsPath{{{AsSegmentType::kSequence, {64513}}}};
  u.attrs.next_hop = Ip("127.0.0.2");
  u.nlri = std::move(nlri);
  return u;
}

class ScriptedPeerTest : public InteropTest {
 protected:
  void StartOurs(bool graceful_restart, bool passive, uint16_t peer_port = 179,
                 uint32_t local_asn = 64512) {
    GlobalConfig g = Global(local_asn);
    g.listen_addresses = {Ip("127.0.0.1")};
    g.graceful_restart = graceful_restart;
    if (tweak_) tweak_(g);
    StartSpeaker(g);
    PeerConfig p;
    p.address = Ip("127.0.0.2");
    p.remote_asn = 64513;
    p.passive = passive;
    p.port = peer_port;
    if (peer_tweak_) peer_tweak_(p);
    speaker_->AddPeer(p);
    // Connections from a peer the speaker does not know yet are refused; Peers() answers
    // only after the AddPeer task ran.
    ASSERT_TRUE(OurPeer("127.0.0.2").has_value());
  }
  // A second, passive peer (127.0.0.3 and up), known to the speaker when this returns.
  void AddPassivePeer(const char* address, uint32_t asn) {
    PeerConfig p;
    p.address = Ip(address);
    p.remote_asn = asn;
    p.passive = true;
    speaker_->AddPeer(p);
    ASSERT_TRUE(OurPeer(address).has_value());
  }
  // Connects, exchanges OPEN and KEEPALIVE, and waits for Established.
  void Handshake(ScriptedPeer& peer, const OpenMessage& open, OpenMessage* theirs = nullptr,
                 int rcvbuf = 0, const char* from = "127.0.0.2") {
    InNetns(*us_, [&] {
      ASSERT_TRUE(WaitFor([&] { return peer.Connect(from, "127.0.0.1", 179, rcvbuf); }, 5s));
    });
    peer.Send(open);
    auto m = peer.Receive();
    ASSERT_TRUE(m && std::holds_alternative<OpenMessage>(*m));
    if (theirs) *theirs = std::get<OpenMessage>(*m);
    peer.Send(KeepaliveMessage{});
    ASSERT_TRUE(WaitFor([&] { return Established(from); }, 5s));
  }
  // Small kernel socket buffers in our namespace, so output a peer does not read piles up in
  // the speaker's own queue within a few hundred kilobytes instead of megabytes.
  void SmallSocketBuffers() {
    auto r = us_->Sh("sysctl -qw net.ipv4.tcp_wmem='4096 16384 65536'");
    ASSERT_TRUE(r.ok()) << r.error();
  }
  // `count` local paths, each with its own community so that each is its own UPDATE.
  void OriginateDistinctPaths(int count) {
    for (int i = 0; i < count; ++i) {
      LocalPath path;
      path.prefix = *IpPrefix::Parse("10." + std::to_string(100 + i / 256) + "." +
                                     std::to_string(i % 256) + ".0/24");
      path.communities = {Community(1, static_cast<uint16_t>(i))};
      speaker_->AddPath(path);
    }
    ASSERT_TRUE(
        WaitFor([&] { return speaker_->BestPaths().size() == static_cast<size_t>(count); }, 10s));
  }
  // Reads UPDATEs until the IPv4 End-of-RIB; returns the prefixes announced before it.
  static std::optional<size_t> ReadTable(ScriptedPeer& peer) {
    size_t prefixes = 0;
    while (auto u = peer.ReceiveUpdate()) {
      if (u->EndOfRib()) return prefixes;
      prefixes += u->nlri.size();
    }
    return std::nullopt;
  }
  std::function<void(GlobalConfig&)> tweak_;     // applied to our config by StartOurs
  std::function<void(PeerConfig&)> peer_tweak_;  // applied to the 127.0.0.2 peer by StartOurs
};

// Resident set size of this process (the speaker runs in it).
inline size_t RssBytes() {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::stoul(line.substr(6)) * 1024;
  }
  return 0;
}

// ---- raw UPDATEs ----

inline std::vector<uint8_t> FromHex(std::string hex) {
  std::erase(hex, ' ');
  std::vector<uint8_t> out;
  for (size_t i = 0; i + 1 < hex.size(); i += 2)
    out.push_back(static_cast<uint8_t>(std::stoul(hex.substr(i, 2), nullptr, 16)));
  return out;
}

inline const std::string kMarkerHex = "ffffffffffffffffffffffffffffffff";

// An UPDATE around raw withdrawn / attribute / NLRI bytes (hex), lengths computed.
inline std::vector<uint8_t> WireUpdate(const std::string& withdrawn, const std::string& attrs,
                                       const std::string& nlri) {
  auto w = FromHex(withdrawn), a = FromHex(attrs), n = FromHex(nlri);
  std::vector<uint8_t> out = FromHex(kMarkerHex);
  size_t len = kHeaderSize + 4 + w.size() + a.size() + n.size();
  out.insert(out.end(), {static_cast<uint8_t>(len >> 8), static_cast<uint8_t>(len), 2,
                         static_cast<uint8_t>(w.size() >> 8), static_cast<uint8_t>(w.size())});
  out.insert(out.end(), w.begin(), w.end());
  out.insert(out.end(), {static_cast<uint8_t>(a.size() >> 8), static_cast<uint8_t>(a.size())});
  out.insert(out.end(), a.begin(), a.end());
  out.insert(out.end(), n.begin(), n.end());
  return out;
}

enum class Outcome { kReset, kWithdraw, kDiscard };
struct WireCase {
  const char* name;
  bool ibgp;                   // sent by the internal peer (127.0.0.3) instead of the external
  std::vector<uint8_t> bytes;  // the whole message
  Outcome outcome;
  uint8_t code = 0, subcode = 0;  // for kReset
};

}  // namespace kr::bgp::testing
