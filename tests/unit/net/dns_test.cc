// Name resolution without NSS (net/dns.h): the hosts file first; the DNS stub: a query answered by
// a one-name server on loopback (through a CNAME with compression pointers), resolv.conf parsing,
// malformed responses.
#include "kube_router/net/dns.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <fstream>
#include <thread>

#include "lib/netns.h"

namespace kr::net {
namespace {

using namespace std::chrono_literals;

void WriteResolvConf(const std::string& path, const std::string& text) {
  std::ofstream out(path);
  out << text;
}

// Hosts file first, then (only for names not in it) the nameservers.
TEST(ResolveHostTest, UsesHostsFileFirst) {
  kr::testing::TempDir dir;
  std::string hosts = dir.path() + "/hosts";
  {
    std::ofstream out(hosts);
    out << "# comment\n192.0.2.5 api.example  API2 # trailing\nfd00::5 api.example\n";
  }
  auto r = ResolveHost("api.example", hosts);
  ASSERT_TRUE(r.ok()) << r.error();
  ASSERT_EQ(r->size(), 2u);
  EXPECT_EQ((*r)[0].ToString(), "192.0.2.5");
  EXPECT_EQ(ResolveHost("api2", hosts)->at(0).ToString(), "192.0.2.5");
  EXPECT_EQ(ResolveHost("198.51.100.1", hosts)->at(0).ToString(), "198.51.100.1");
  EXPECT_TRUE(ResolveHost("localhost", hosts).ok());
  WriteResolvConf(dir.path() + "/resolv.conf", "");  // no nameserver: no query leaves the host
  auto missing = ResolveHost("nowhere.example", hosts, dir.path() + "/resolv.conf");
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.error().find("nowhere.example"), std::string::npos);
}

// A one-name DNS server on 127.0.0.1: A queries for api.example get a CNAME (with a
// compression pointer) and an A record; AAAA queries get NXDOMAIN.
class FakeDnsServer {
 public:
  FakeDnsServer() {
    fd_ = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a);
    socklen_t len = sizeof a;
    getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len);
    port_ = ntohs(a.sin_port);
    thread_ = std::thread([this] { Serve(); });
  }
  ~FakeDnsServer() {
    stop_ = true;
    thread_.join();
    close(fd_);
  }
  uint16_t port() const { return port_; }

 private:
  void Serve() {
    while (!stop_) {
      pollfd p{fd_, POLLIN, 0};
      if (poll(&p, 1, 50) <= 0) continue;
      char buf[512];
      sockaddr_in from{};
      socklen_t flen = sizeof from;
      ssize_t n = recvfrom(fd_, buf, sizeof buf, 0, reinterpret_cast<sockaddr*>(&from), &flen);
      if (n < 12) continue;
      std::string q(buf, static_cast<size_t>(n));
      uint16_t qtype = static_cast<uint16_t>((uint8_t(q[n - 4]) << 8) | uint8_t(q[n - 3]));
      std::string r = q;
      r[2] = static_cast<char>(0x81);
      r[3] = static_cast<char>(qtype == 1 ? 0x80 : 0x83);  // NXDOMAIN for AAAA
      if (qtype == 1) {
        r[7] = 2;  // two answers
        // CNAME api.example -> x.api.example (pointer to the question name at offset 12)
        r += std::string("\xc0\x0c\x00\x05\x00\x01\x00\x00\x00\x3c\x00\x04\x01x\xc0\x0c", 16);
        // A record for x.api.example (pointer to the CNAME target at offset n+12)
        r += static_cast<char>(0xc0);
        r += static_cast<char>(n + 12);
        r += std::string("\x00\x01\x00\x01\x00\x00\x00\x3c\x00\x04\xc0\x00\x02\x4d", 14);
      }
      sendto(fd_, r.data(), r.size(), 0, reinterpret_cast<sockaddr*>(&from), flen);
    }
  }
  int fd_;
  uint16_t port_ = 0;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

TEST(DnsTest, QueriesTheNameserverWhenNotInHostsFile) {
  FakeDnsServer dns;
  auto ip = IpAddress::Parse("127.0.0.1");
  auto r = QueryDns("api.example", {*ip}, dns.port(), 2000ms);
  ASSERT_TRUE(r.ok()) << r.error();
  ASSERT_EQ(r->size(), 1u);
  EXPECT_EQ((*r)[0].ToString(), "192.0.2.77");
}

TEST(DnsTest, ReadsNameserversAndRejectsMalformedResponses) {
  kr::testing::TempDir dir;
  WriteResolvConf(dir.path() + "/resolv.conf",
                  "search example\nnameserver 192.0.2.53\nnameserver fe80::1%eth0\noptions x\n");
  auto servers = ReadNameservers(dir.path() + "/resolv.conf");
  ASSERT_EQ(servers.size(), 2u);
  EXPECT_EQ(servers[0].ToString(), "192.0.2.53");
  std::string q = BuildDnsQuery("a.example", 7, 1);
  EXPECT_FALSE(ParseDnsResponse(q, 7).ok());  // a query, not a response
  std::string r = q;
  r[2] = static_cast<char>(0x81);
  r[3] = static_cast<char>(0x80);
  EXPECT_FALSE(ParseDnsResponse(r, 8).ok());  // another transaction
  r[7] = 1;                                   // claims an answer that is not there
  EXPECT_FALSE(ParseDnsResponse(r, 7).ok());
  r += std::string("\xc0\x0c\x00\x01\x00\x01\x00\x00\x00\x3c\x00\x04\x0a\x00\x00", 15);
  EXPECT_FALSE(ParseDnsResponse(r, 7).ok());  // truncated address
  r += '\x01';
  auto ok = ParseDnsResponse(r, 7);
  ASSERT_TRUE(ok.ok()) << ok.error();
  EXPECT_EQ(ok->at(0).ToString(), "10.0.0.1");
}

}  // namespace
}  // namespace kr::net
