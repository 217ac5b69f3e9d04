// The service test helpers (answer servers and clients) between pods of a dual-stack pod network.
#include "lib/answer_server.h"

#include <gtest/gtest.h>

#include <chrono>

#include "kube_router/base/exec.h"
#include "lib/netns.h"
#include "lib/podnet.h"

namespace kr::testing {
namespace {

using namespace std::chrono_literals;

class AnswerServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(IsRoot());
    net_.AddNode("n0");
    net_.AddNode("n1");
    net_.AddPod(0, "default/a");
    net_.AddPod(1, "default/b");
  }
  const std::string& Ns(const std::string& pod) { return net_.pod(pod).ns->name(); }
  PodNetwork net_{"kras", /*dual_stack=*/true};
};

TEST_F(AnswerServerTest, ServersSayWhoTheyAreAndWhoCalledOverEveryKindAndFamily) {
  AnswerServer tcp(Ns("default/a"), "pod-a", 8080, AnswerServer::Kind::kTcp);
  AnswerServer udp(Ns("default/a"), "pod-a", 5353, AnswerServer::Kind::kUdp);
  AnswerServer http(Ns("default/a"), "pod-a", 8081, AnswerServer::Kind::kHttp);
  const std::string a = net_.pod("default/a").ip;
  const std::string a6 = net_.pod("default/a").ip6;
  const std::string b = net_.pod("default/b").ip;
  const std::string b6 = net_.pod("default/b").ip6;

  for (const auto& [ip, client] : {std::pair{a, b}, std::pair{a6, b6}}) {
    Answer t = Ask(Ns("default/b"), ip, 8080, Proto::kTcp);
    ASSERT_TRUE(t.ok()) << ip << ": " << t.ToString();
    EXPECT_EQ(t.name, "pod-a");
    EXPECT_EQ(t.client_ip, client);
    Answer u = Ask(Ns("default/b"), ip, 5353, Proto::kUdp, 2000ms, 40000);
    ASSERT_TRUE(u.ok()) << ip << ": " << u.ToString();
    EXPECT_EQ(u.client_ip, client);
    EXPECT_EQ(u.client_port, 40000) << "the fixed source port reached the server";
    Answer h = HttpGet(Ns("default/b"), ip, 8081);
    ASSERT_TRUE(h.ok()) << ip << ": " << h.ToString();
    EXPECT_EQ(h.name, "pod-a");
    EXPECT_EQ(h.client_ip, client);
  }
}

TEST_F(AnswerServerTest, TcpOrHttpAnswersCurlAndRawClientsAlike) {
  AnswerServer both(Ns("default/a"), "pod-a", 8082, AnswerServer::Kind::kTcpOrHttp);
  const std::string a = net_.pod("default/a").ip;
  const std::string b = net_.pod("default/b").ip;
  Answer h = HttpGet(Ns("default/b"), a, 8082);
  ASSERT_TRUE(h.ok()) << h.ToString();
  EXPECT_EQ(h.name, "pod-a");
  EXPECT_EQ(h.client_ip, b);
  // A client that waits for the server to speak is greeted after the silence...
  TcpHolder holder(Ns("default/b"), a, 8082);
  ASSERT_TRUE(holder.greeting().ok()) << holder.greeting().ToString();
  EXPECT_EQ(holder.greeting().name, "pod-a");
  EXPECT_TRUE(holder.Alive());
  // ...and one that speaks first (not HTTP) is greeted, then echoed.
  auto nc =
      Exec({"ip", "netns", "exec", Ns("default/b"), "socat", "-T2", "-", "TCP:" + a + ":8082"},
           "hello\n");
  ASSERT_TRUE(nc.ok()) << nc.error();
  EXPECT_EQ(nc->out.rfind("pod-a " + b + " ", 0), 0u) << nc->out;
  EXPECT_NE(nc->out.find("\nhello\n"), std::string::npos) << nc->out;
}

TEST_F(AnswerServerTest, RefusedIsToldApartFromTimeoutAndFast) {
  const std::string a = net_.pod("default/a").ip;
  auto start = std::chrono::steady_clock::now();
  Answer tcp = Ask(Ns("default/b"), a, 9999, Proto::kTcp);
  Answer udp = Ask(Ns("default/b"), a, 9999, Proto::kUdp);
  EXPECT_EQ(tcp.outcome, Answer::Outcome::kRefused) << tcp.ToString();
  EXPECT_EQ(udp.outcome, Answer::Outcome::kRefused) << udp.ToString();
  EXPECT_LT(std::chrono::steady_clock::now() - start, 1500ms) << "refusals come at once";

  ASSERT_TRUE(net_.pod("default/a").ns->Sh("iptables -A INPUT -p tcp --dport 9998 -j DROP").ok());
  Answer dropped = Ask(Ns("default/b"), a, 9998, Proto::kTcp, 300ms);
  EXPECT_EQ(dropped.outcome, Answer::Outcome::kTimeout) << dropped.ToString();
}

// How long an ask that must be answered waits: the other helpers' 2 s (the client's default 1 s
// timed out once under an ASan run beside a guest benchmark).
constexpr std::chrono::milliseconds kAnswerWait{2000};

TEST_F(AnswerServerTest, FixedPortClientAndLongLivedConnection) {
  const std::string a = net_.pod("default/a").ip;
  FixedPortUdpClient client(Ns("default/b"), 41000);
  {
    AnswerServer udp(Ns("default/a"), "pod-a", 5353, AnswerServer::Kind::kUdp);
    for (int i = 0; i < 3; ++i) {
      Answer u = client.Ask(a, 5353, kAnswerWait);
      ASSERT_TRUE(u.ok()) << u.ToString();
      EXPECT_EQ(u.client_port, 41000);
    }
  }
  Answer gone = client.Ask(a, 5353, 500ms);
  EXPECT_FALSE(gone.ok()) << "the server is gone: " << gone.ToString();
  AnswerServer again(Ns("default/a"), "pod-a2", 5353, AnswerServer::Kind::kUdp);
  Answer back = client.Ask(a, 5353, kAnswerWait);
  ASSERT_TRUE(back.ok()) << back.ToString();
  EXPECT_EQ(back.name, "pod-a2");

  auto server =
      std::make_unique<AnswerServer>(Ns("default/a"), "pod-a", 8080, AnswerServer::Kind::kTcp);
  TcpHolder held(Ns("default/b"), a, 8080);
  ASSERT_TRUE(held.greeting().ok()) << held.greeting().ToString();
  EXPECT_EQ(held.greeting().name, "pod-a");
  EXPECT_TRUE(held.Alive());
  EXPECT_TRUE(held.Alive()) << "still the same connection";
  server.reset();  // closes every held connection
  EXPECT_FALSE(held.Alive(500ms));
}

}  // namespace
}  // namespace kr::testing
