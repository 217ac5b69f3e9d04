#include "lib/agent_bench.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>

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

bool HttpRequest(const Netns& netns, int port, const std::string& method, const std::string& path,
                 const std::string& content_type, const std::string& body) {
  int fd = -1;
  {
    ScopedNetns inside(netns.name());
    fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  }
  if (fd < 0) return false;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  const std::string request =
      method + " " + path + " HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: " + content_type +
      "\r\nContent-Length: " + std::to_string(body.size()) + "\r\nConnection: close\r\n\r\n" + body;
  bool ok = connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0 &&
            send(fd, request.data(), request.size(), MSG_NOSIGNAL) ==
                static_cast<ssize_t>(request.size());
  std::string answer;
  char buf[4096];
  ssize_t n = 0;
  // Bounded: the answer to a PATCH is one object.
  while (ok && answer.size() < (1u << 20) && (n = recv(fd, buf, sizeof(buf), 0)) > 0) {
    answer.append(buf, static_cast<size_t>(n));
  }
  close(fd);
  return ok && answer.rfind("HTTP/1.1 2", 0) == 0;
}

long ProcStatusKib(pid_t pid, const char* field) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  for (std::string line; std::getline(in, line);) {
    if (line.rfind(field, 0) == 0) return std::stol(line.substr(std::strlen(field)));
  }
  return -1;
}

double Percentile(std::vector<double> values, double p) {
  if (values.empty()) return 0;
  std::sort(values.begin(), values.end());
  size_t i = static_cast<size_t>(p * static_cast<double>(values.size() - 1) + 0.5);
  return values[std::min(i, values.size() - 1)];
}

}  // namespace kr::testing
