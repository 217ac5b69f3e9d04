// The benchmarks' HTTP helper against servers in a namespace of the test's own: a hung server
// fails the request within its deadline instead of hanging the benchmark.
#include "lib/agent_bench.h"

#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include "lib/netns.h"
#include "lib/podnet.h"  // ScopedNetns

namespace kr::testing {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

// A TCP socket listening on 127.0.0.1 (an ephemeral port) inside `netns`, closed on destruction.
class Listener {
 public:
  explicit Listener(const Netns& netns) {
    ScopedNetns inside(netns.name());
    fd_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof(addr);
    if (fd_ < 0 || bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
        listen(fd_, 4) != 0 || getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
      return;
    }
    port_ = ntohs(addr.sin_port);
  }
  ~Listener() {
    if (fd_ >= 0) close(fd_);
  }
  Listener(const Listener&) = delete;
  Listener& operator=(const Listener&) = delete;
  int fd() const { return fd_; }
  int port() const { return port_; }

 private:
  int fd_ = -1;
  int port_ = 0;
};

// Accepts one connection, reads the request's head, writes `answer`, then ends its side and
// reads until the client closes (closing with unread request bytes would reset the connection).
void AnswerOnce(int listen_fd, const std::string& answer) {
  const int fd = accept4(listen_fd, nullptr, nullptr, SOCK_CLOEXEC);
  if (fd < 0) return;
  std::string request;
  char buf[1024];
  ssize_t n = 0;
  while (request.find("\r\n\r\n") == std::string::npos && (n = recv(fd, buf, sizeof(buf), 0)) > 0) {
    request.append(buf, static_cast<size_t>(n));
  }
  (void)send(fd, answer.data(), answer.size(), MSG_NOSIGNAL);
  shutdown(fd, SHUT_WR);
  while (recv(fd, buf, sizeof(buf), 0) > 0) {
  }
  close(fd);
}

TEST(HttpRequest, A2xxAnswerIsSuccessAndAnotherIsNot) {
  Netns ns("krhttp");
  Listener listener(ns);
  ASSERT_GT(listener.port(), 0);
  std::thread server([&] {
    AnswerOnce(listener.fd(), "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}");
    AnswerOnce(listener.fd(), "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n");
  });
  EXPECT_TRUE(HttpRequest(ns, listener.port(), "PATCH", "/api/v1/nodes/n0",
                          "application/merge-patch+json", "{}", 60s));
  EXPECT_FALSE(HttpRequest(ns, listener.port(), "GET", "/missing", "text/plain", "", 60s));
  server.join();
}

// The server takes the connection and the request (the kernel's backlog does) but never
// answers: the exchange ends at its deadline with an error that says so.
TEST(HttpRequest, AServerThatNeverAnswersFailsAtTheDeadline) {
  Netns ns("krhttp");
  Listener listener(ns);
  ASSERT_GT(listener.port(), 0);
  const auto started = Clock::now();
  HttpAnswer answer = HttpExchange(
      ns, listener.port(), "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
      1024, 500ms);
  const auto took = Clock::now() - started;
  EXPECT_FALSE(answer.ok());
  EXPECT_NE(answer.error.find("no complete answer within 500 ms"), std::string::npos)
      << answer.error;
  EXPECT_GE(took, 500ms);
  EXPECT_LT(took, 30s) << "the deadline did not bound the read";
  EXPECT_FALSE(HttpRequest(ns, listener.port(), "GET", "/healthz", "text/plain", "", 500ms));
}

// More than the bound is an error, not a truncated success.
TEST(HttpRequest, AnAnswerOverTheBoundIsAnError) {
  Netns ns("krhttp");
  Listener listener(ns);
  ASSERT_GT(listener.port(), 0);
  std::thread server(
      [&] { AnswerOnce(listener.fd(), "HTTP/1.1 200 OK\r\n\r\n" + std::string(4096, 'x')); });
  HttpAnswer answer =
      HttpExchange(ns, listener.port(),
                   "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n", 1024, 60s);
  server.join();
  EXPECT_EQ(answer.error, "answer larger than 1024 bytes");
}

// Mappings as the kernel prints them in /proc/<pid>/smaps (fields cut to what is read, plus two
// that look like numbers): the agent's binary, the main arena, another arena at a 64 MiB
// boundary with its PROT_NONE reserve, two thread stacks above their guard pages, a block above
// the mmap threshold, a shared library and the main stack.
TEST(ResidentByMapping, SortsEachMappingByWhatItHolds) {
  const std::string smaps =
      "55d0a0000000-55d0a0400000 r-xp 00000000 08:01 1234                       "
      "/opt/kr/kube-router\n"
      "Size:               4096 kB\nRss:                3000 kB\nAnonHugePages:         0 kB\n"
      "55d0a0400000-55d0a0410000 rw-p 00400000 08:01 1234                       "
      "/opt/kr/kube-router\n"
      "Rss:                  64 kB\n"
      "55d0a1000000-55d0a5000000 rw-p 00000000 00:00 0                          [heap]\n"
      "Rss:               20000 kB\n"
      "7f0004000000-7f0004a00000 rw-p 00000000 00:00 0 \n"
      "Rss:               10000 kB\n"
      "7f0004a00000-7f0008000000 ---p 00000000 00:00 0 \n"
      "Rss:                   0 kB\n"
      "7f0010000000-7f0010001000 ---p 00000000 00:00 0 \n"
      "Rss:                   0 kB\n"
      "7f0010001000-7f0010800000 rw-p 00000000 00:00 0 \n"
      "Rss:                  24 kB\n"
      "7f0010800000-7f0010801000 ---p 00000000 00:00 0 \n"
      "Rss:                   0 kB\n"
      "7f0010801000-7f0011000000 rw-p 00000000 00:00 0 \n"
      "Rss:                  16 kB\nVmFlags: rd wr mr mw me ac sd\n"
      "7f0020001000-7f0022001000 rw-p 00000000 00:00 0 \n"
      "Rss:                8192 kB\n"
      "7f0030000000-7f0030200000 r-xp 00000000 08:01 99                         "
      "/usr/lib/libc.so.6\n"
      "Rss:                 900 kB\n"
      "7ffd00000000-7ffd00021000 rw-p 00000000 00:00 0                          [stack]\n"
      "Rss:                  40 kB\n";
  ResidentByMapping r = ParseSmaps(smaps, "/opt/kr/kube-router");
  EXPECT_EQ(r.binary_kib, 3064);
  EXPECT_EQ(r.brk_heap_kib, 20000);
  EXPECT_EQ(r.arenas_kib, 10000);
  EXPECT_EQ(r.stacks_kib, 80);
  EXPECT_EQ(r.thread_stacks, 2);
  EXPECT_EQ(r.other_anon_kib, 8192);
  EXPECT_EQ(r.other_kib, 900);
  EXPECT_EQ(r.total_kib(), 3064 + 20000 + 10000 + 80 + 8192 + 900);
}

// This process's own mappings: they add up to its RSS (within what moved between the two reads)
// and name its binary, its heap and this thread's stack.
TEST(ResidentByMapping, ThisProcessAddsUpToItsRss) {
  std::vector<char> touched(8 << 20, 1);  // 8 MiB resident: above the mmap threshold
  ResidentByMapping r = ReadResidentByMapping(getpid());
  const long rss = ProcStatusKib(getpid(), "VmRSS:");
  EXPECT_GT(r.binary_kib, 0);
  EXPECT_GE(r.other_anon_kib + r.brk_heap_kib + r.arenas_kib, 8 << 10);
  EXPECT_GT(r.stacks_kib, 0);
  EXPECT_NEAR(static_cast<double>(r.total_kib()), static_cast<double>(rss), rss * 0.05);
  EXPECT_EQ(touched.back(), 1);
}

}  // namespace
}  // namespace kr::testing
