// tests/lib/kubeconfig.h: the server URL read back from a kubeconfig (hand-written variants and
// the one the real fake-apiserver writes), and the kubeconfig re-pointed at another host.
#include "lib/kubeconfig.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>

#include "lib/binaries.h"
#include "lib/files.h"
#include "lib/netns.h"

namespace kr::testing {
namespace {

std::string Kubeconfig(const std::string& server_line) {
  return "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n" + server_line +
         "\n    tls-server-name: other:1\nusers:\n- name: fake\n  user: {}\n";
}

TEST(KubeconfigTest, ReadsTheServerUrlHostAndPort) {
  struct Case {
    std::string line, url, host;
    int port;
  };
  for (const Case& c : std::vector<Case>{
           {"    server: http://127.0.0.1:41823", "http://127.0.0.1:41823", "127.0.0.1", 41823},
           {"    server: \"https://10.70.0.1:6443\"", "https://10.70.0.1:6443", "10.70.0.1", 6443},
           {"    server: 'http://[::1]:8080/prefix'", "http://[::1]:8080/prefix", "::1", 8080},
           {"    server:   https://api.example:443", "https://api.example:443", "api.example", 443},
       }) {
    auto server = ParseKubeconfigServer(Kubeconfig(c.line));
    ASSERT_TRUE(server.has_value()) << c.line;
    EXPECT_EQ(server->url, c.url);
    EXPECT_EQ(server->host, c.host);
    EXPECT_EQ(server->port, c.port);
  }
  // Flow style, as some tests write their own kubeconfigs.
  auto flow = ParseKubeconfigServer("clusters: [{name: k, cluster: {server: 'http://h:1'}}]");
  ASSERT_TRUE(flow.has_value());
  EXPECT_EQ(flow->port, 1);
}

TEST(KubeconfigTest, NoServerWithAPortIsNone) {
  for (const char* line : {"    server: http://127.0.0.1", "    server: 127.0.0.1:80",
                           "    server: http://127.0.0.1:99999", "    server: http://:80",
                           "    server: http://h:80x", "    my-server: http://h:80"}) {
    EXPECT_FALSE(ParseKubeconfigServer(Kubeconfig(line)).has_value()) << line;
  }
  EXPECT_FALSE(ParseKubeconfigServer("").has_value());
}

TEST(KubeconfigTest, AnotherHostReplacesOnlyTheServersHost) {
  const std::string config =
      Kubeconfig("    server: http://127.0.0.1:41823") + "# 127.0.0.1 stays here\n";
  const std::string moved = KubeconfigWithServerHost(config, "10.70.1.1");
  EXPECT_EQ(moved, Kubeconfig("    server: http://10.70.1.1:41823") + "# 127.0.0.1 stays here\n");
  EXPECT_EQ(KubeconfigWithServerHost(Kubeconfig("    server: 'https://[::1]:6443/x'"), "fd00::1"),
            Kubeconfig("    server: 'https://[fd00::1]:6443/x'"));
  EXPECT_EQ(KubeconfigWithServerHost("no server here", "10.0.0.1"), "no server here");
}

// What fake-apiserver writes names the port it serves on.
TEST(KubeconfigTest, FakeApiServersKubeconfigNamesWhereItServes) {
  TempDir dir;
  const std::string path = dir.path() + "/kubeconfig";
  Process api({kFakeApiServerBinary, "--listen", "127.0.0.1:0", "--kubeconfig-out", path},
              dir.path() + "/apiserver.log");
  ASSERT_TRUE(WaitFor([&] { return std::filesystem::exists(path) || !api.Running(); },
                      std::chrono::seconds(60)))
      << api.Log();
  auto server = ParseKubeconfigServer(ReadFile(path));
  ASSERT_TRUE(server.has_value()) << ReadFile(path);
  EXPECT_EQ(server->url, "http://127.0.0.1:" + std::to_string(server->port));
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  ASSERT_GE(fd, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(server->port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  const std::string request = "GET /api HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
  bool sent = connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0 &&
              send(fd, request.data(), request.size(), MSG_NOSIGNAL) ==
                  static_cast<ssize_t>(request.size());
  char head[12] = {};
  ssize_t n = sent ? recv(fd, head, sizeof head, MSG_WAITALL) : -1;
  close(fd);
  ASSERT_TRUE(sent) << api.Log();
  EXPECT_EQ(std::string(head, n > 0 ? static_cast<size_t>(n) : 0), "HTTP/1.1 200");
}

}  // namespace
}  // namespace kr::testing
