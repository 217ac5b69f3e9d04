#include "lib/agent_bench.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "lib/files.h"
#include "lib/kubeconfig.h"
#include "lib/podnet.h"  // ScopedNetns

namespace kr::testing {

std::string StartFakeApiServer(const Netns& netns, const std::string& dir,
                               const std::string& manifests_json, const std::string& binary,
                               std::chrono::seconds timeout, FakeApiServer& out) {
  std::filesystem::create_directories(dir + "/manifests");
  std::ofstream(dir + "/manifests/cluster.json") << manifests_json;
  out.kubeconfig = dir + "/kubeconfig";
  out.process = std::make_unique<Process>(
      netns.Wrap({binary, "--listen", "127.0.0.1:0", "--manifests", dir + "/manifests",
                  "--kubeconfig-out", out.kubeconfig}),
      dir + "/apiserver.log");
  if (!WaitFor([&] { return std::filesystem::exists(out.kubeconfig); }, timeout)) {
    return "fake-apiserver did not start: " + out.process->Log();
  }
  auto server = ParseKubeconfigServer(ReadFile(out.kubeconfig));
  if (!server) return "no server URL in " + out.kubeconfig;
  out.port = server->port;
  return "";
}

HttpAnswer HttpExchange(const Netns& netns, int port, const std::string& request, size_t max_answer,
                        std::chrono::milliseconds deadline) {
  using Clock = std::chrono::steady_clock;
  const auto until = Clock::now() + deadline;
  HttpAnswer answer;
  int fd = -1;
  int socket_errno = 0;
  {
    ScopedNetns inside(netns.name());
    fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    socket_errno = errno;
  }
  if (fd < 0) {
    answer.error = std::string("socket: ") + std::strerror(socket_errno);
    return answer;
  }
  // connect and send block at most this long (on Linux SO_SNDTIMEO bounds connect too); the
  // reads below wait with poll up to what is left of the deadline.
  const auto whole = std::chrono::duration_cast<std::chrono::microseconds>(deadline);
  timeval send_timeout{.tv_sec = static_cast<time_t>(whole.count() / 1000000),
                       .tv_usec = static_cast<suseconds_t>(whole.count() % 1000000)};
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &send_timeout, sizeof(send_timeout));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    answer.error = std::string("connect: ") + std::strerror(errno);
  } else if (send(fd, request.data(), request.size(), MSG_NOSIGNAL) !=
             static_cast<ssize_t>(request.size())) {
    answer.error = std::string("send: ") + std::strerror(errno);
  }
  std::vector<char> buf(1 << 16);
  while (answer.error.empty()) {
    // Rounded up, and a poll that ends early goes round again: no error before the deadline.
    const auto left = std::chrono::ceil<std::chrono::milliseconds>(until - Clock::now()).count();
    pollfd readable{.fd = fd, .events = POLLIN, .revents = 0};
    const int ready = left > 0 ? poll(&readable, 1, static_cast<int>(left)) : 0;
    if (ready < 0 && errno == EINTR) continue;
    if (ready == 0 && Clock::now() < until) continue;
    if (ready == 0) {
      answer.error = "no complete answer within " + std::to_string(deadline.count()) + " ms (" +
                     std::to_string(answer.raw.size()) + " bytes so far)";
    } else if (ready < 0) {
      answer.error = std::string("poll: ") + std::strerror(errno);
    } else {
      const ssize_t n = recv(fd, buf.data(), buf.size(), 0);
      if (n == 0) break;  // the server closed: the answer is complete
      if (n < 0) {
        if (errno == EINTR) continue;
        answer.error = std::string("recv: ") + std::strerror(errno);
      } else if (answer.raw.size() + static_cast<size_t>(n) > max_answer) {
        answer.error = "answer larger than " + std::to_string(max_answer) + " bytes";
      } else {
        answer.raw.append(buf.data(), static_cast<size_t>(n));
      }
    }
  }
  close(fd);
  return answer;
}

bool HttpRequest(const Netns& netns, int port, const std::string& method, const std::string& path,
                 const std::string& content_type, const std::string& body,
                 std::chrono::milliseconds deadline) {
  const std::string request =
      method + " " + path + " HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: " + content_type +
      "\r\nContent-Length: " + std::to_string(body.size()) + "\r\nConnection: close\r\n\r\n" + body;
  // Bounded: the answer to a PATCH is one object.
  const HttpAnswer answer = HttpExchange(netns, port, request, 1u << 20, deadline);
  if (answer.Status2xx()) return true;
  std::fprintf(
      stderr, "HttpRequest: %s %s on 127.0.0.1:%d in %s: %s\n", method.c_str(), path.c_str(), port,
      netns.name().c_str(),
      answer.ok() ? answer.raw.substr(0, answer.raw.find("\r\n")).c_str() : answer.error.c_str());
  return false;
}

long ProcStatusKib(pid_t pid, const char* field) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  for (std::string line; std::getline(in, line);) {
    if (line.rfind(field, 0) == 0) return std::stol(line.substr(std::strlen(field)));
  }
  return -1;
}

ResidentByMapping ParseSmaps(const std::string& smaps, const std::string& executable) {
  // glibc's non-main arenas are mapped HEAP_MAX_SIZE-aligned (64 MiB on 64-bit); a thread
  // stack is an anonymous mapping whose lowest page(s) are a PROT_NONE guard of its own.
  constexpr unsigned long kArenaAlignment = 64ul << 20;
  constexpr unsigned long kLargestGuard = 64ul << 10;
  ResidentByMapping out;
  long* current = nullptr;
  bool current_is_stack = false;
  unsigned long previous_end = 0;
  bool previous_was_guard = false;
  std::istringstream in(smaps);
  for (std::string line; std::getline(in, line);) {
    unsigned long start = 0, end = 0;
    char perms[8] = {};
    int path_at = 0;
    // A mapping's header: "start-end perms offset dev inode [path]".
    if (std::sscanf(line.c_str(), "%lx-%lx %7s %*s %*s %*s %n", &start, &end, perms, &path_at) >=
            3 &&
        path_at > 0 && line.find(':') > line.find(' ')) {
      std::string path = line.substr(static_cast<size_t>(path_at));
      while (!path.empty() && path.back() == ' ') path.pop_back();
      const bool anonymous = path.empty();
      const bool guard = anonymous && std::string(perms).rfind("---", 0) == 0;
      current_is_stack = false;
      if (!executable.empty() && path == executable) {
        current = &out.binary_kib;
      } else if (path == "[heap]") {
        current = &out.brk_heap_kib;
      } else if (path == "[stack]") {
        current = &out.stacks_kib;
      } else if (anonymous && !guard && start % kArenaAlignment == 0) {
        current = &out.arenas_kib;
      } else if (anonymous && !guard && previous_was_guard && previous_end == start) {
        current = &out.stacks_kib;
        current_is_stack = true;
      } else if (anonymous) {
        current = &out.other_anon_kib;
      } else {
        current = &out.other_kib;
      }
      previous_was_guard = guard && end - start <= kLargestGuard;
      previous_end = end;
      continue;
    }
    long kib = 0;
    if (current != nullptr && std::sscanf(line.c_str(), "Rss: %ld kB", &kib) == 1) {
      *current += kib;
      if (current_is_stack) ++out.thread_stacks;
    }
  }
  return out;
}

ResidentByMapping ReadResidentByMapping(pid_t pid) {
  const std::string proc = "/proc/" + std::to_string(pid);
  std::error_code error;
  const std::string executable = std::filesystem::read_symlink(proc + "/exe", error).string();
  std::ifstream in(proc + "/smaps");
  std::stringstream text;
  text << in.rdbuf();
  return ParseSmaps(text.str(), error ? "" : executable);
}

double Percentile(std::vector<double> values, double p) {
  if (values.empty()) return 0;
  std::sort(values.begin(), values.end());
  size_t i = static_cast<size_t>(p * static_cast<double>(values.size() - 1) + 0.5);
  return values[std::min(i, values.size() - 1)];
}

}  // namespace kr::testing
