#include "kube_router/http/server.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <system_error>

#include "kube_router/base/ip.h"
#include "kube_router/base/log.h"

namespace kr::http {
namespace {

using Clock = std::chrono::steady_clock;

// A request head larger than this is refused: our paths are short and we take no bodies.
constexpr size_t kMaxHeadBytes = 8192;
// A client gets this long to send its request and read the answer; a stalled client cannot
// hold a connection thread for longer.
constexpr auto kConnectionDeadline = std::chrono::seconds(5);
// More concurrent connections than this are closed at once, so a flood cannot exhaust threads.
constexpr int kMaxConnections = 32;

const char* ReasonPhrase(int status) {
  switch (status) {
    case 200:
      return "OK";
    case 400:
      return "Bad Request";
    case 404:
      return "Not Found";
    case 405:
      return "Method Not Allowed";
    case 408:
      return "Request Timeout";
    case 431:
      return "Request Header Fields Too Large";
    case 500:
      return "Internal Server Error";
    case 503:
      return "Service Unavailable";
  }
  return "Unknown";
}

std::string Errno(const std::string& what) { return what + ": " + std::strerror(errno); }

int MillisLeft(Clock::time_point deadline) {
  auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
  return left.count() < 0 ? 0 : static_cast<int>(left.count());
}

// Waits until `fd` is ready for `events` or the deadline passes.
bool WaitReady(int fd, short events, Clock::time_point deadline) {
  while (true) {
    pollfd p{fd, events, 0};
    int n = poll(&p, 1, MillisLeft(deadline));
    if (n > 0) return true;
    if (n == 0) return false;
    if (errno != EINTR) return false;
  }
}

// Reads until the blank line that ends the request head. nullopt-like empty result on
// timeout or close; `too_large` is set when the head exceeds kMaxHeadBytes.
std::string ReadHead(int fd, Clock::time_point deadline, bool* complete, bool* too_large) {
  std::string head;
  *complete = false;
  *too_large = false;
  char buf[1024];
  while (head.find("\r\n\r\n") == std::string::npos && head.find("\n\n") == std::string::npos) {
    if (head.size() > kMaxHeadBytes) {
      *too_large = true;
      return head;
    }
    if (!WaitReady(fd, POLLIN, deadline)) return head;
    ssize_t n = recv(fd, buf, sizeof(buf), 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return head;
    head.append(buf, static_cast<size_t>(n));
  }
  *complete = true;
  return head;
}

void WriteAll(int fd, const std::string& data, Clock::time_point deadline) {
  size_t sent = 0;
  while (sent < data.size()) {
    if (!WaitReady(fd, POLLOUT, deadline)) return;
    ssize_t n = send(fd, data.data() + sent, data.size() - sent, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;
    sent += static_cast<size_t>(n);
  }
}

// Binds a listening TCP socket; "" listens on every IPv4 and IPv6 address (or IPv4 only when
// the kernel has no IPv6).
Result<int> Listen(const std::string& address, uint16_t port) {
  sockaddr_storage storage{};
  socklen_t len = 0;
  int family = AF_INET6;
  std::string shown = address.empty() ? "*" : address;
  if (address.empty()) {
    auto* a6 = reinterpret_cast<sockaddr_in6*>(&storage);
    a6->sin6_family = AF_INET6;
    a6->sin6_addr = in6addr_any;
    a6->sin6_port = htons(port);
    len = sizeof(*a6);
  } else {
    auto ip = IpAddress::Parse(address);
    if (!ip) return Status::Error("\"" + address + "\" is not an IP address");
    if (ip->is_v4()) {
      auto* a4 = reinterpret_cast<sockaddr_in*>(&storage);
      a4->sin_family = AF_INET;
      a4->sin_addr.s_addr = htonl(ip->v4_host_order());
      a4->sin_port = htons(port);
      len = sizeof(*a4);
      family = AF_INET;
    } else {
      auto* a6 = reinterpret_cast<sockaddr_in6*>(&storage);
      a6->sin6_family = AF_INET6;
      std::memcpy(&a6->sin6_addr, ip->bytes().data(), 16);
      a6->sin6_port = htons(port);
      len = sizeof(*a6);
    }
  }
  int fd = socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0 && address.empty() && errno == EAFNOSUPPORT) {
    // No IPv6 in this kernel: all IPv4 addresses instead.
    auto* a4 = reinterpret_cast<sockaddr_in*>(&storage);
    *a4 = sockaddr_in{};
    a4->sin_family = AF_INET;
    a4->sin_addr.s_addr = htonl(INADDR_ANY);
    a4->sin_port = htons(port);
    len = sizeof(*a4);
    family = AF_INET;
    fd = socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  }
  if (fd < 0) return Status::Error(Errno("socket"));
  int one = 1;
  int zero = 0;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  if (family == AF_INET6 && address.empty()) {
    setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof(zero));
  }
  if (bind(fd, reinterpret_cast<sockaddr*>(&storage), len) != 0) {
    Status s = Status::Error(Errno("bind " + shown + ":" + std::to_string(port)));
    close(fd);
    return s;
  }
  if (listen(fd, 64) != 0) {
    Status s = Status::Error(Errno("listen"));
    close(fd);
    return s;
  }
  return fd;
}

uint16_t BoundPort(int fd) {
  sockaddr_storage storage{};
  socklen_t len = sizeof(storage);
  if (getsockname(fd, reinterpret_cast<sockaddr*>(&storage), &len) != 0) return 0;
  if (storage.ss_family == AF_INET) {
    return ntohs(reinterpret_cast<sockaddr_in*>(&storage)->sin_port);
  }
  return ntohs(reinterpret_cast<sockaddr_in6*>(&storage)->sin6_port);
}

}  // namespace

Result<RequestLine> ParseRequestLine(const std::string& head) {
  size_t eol = head.find('\n');
  std::string line = head.substr(0, eol);
  if (!line.empty() && line.back() == '\r') line.pop_back();
  size_t sp1 = line.find(' ');
  size_t sp2 = sp1 == std::string::npos ? sp1 : line.find(' ', sp1 + 1);
  if (sp1 == 0 || sp2 == std::string::npos || line.find(' ', sp2 + 1) != std::string::npos) {
    return Status::Error("malformed request line");
  }
  RequestLine r;
  r.method = line.substr(0, sp1);
  std::string target = line.substr(sp1 + 1, sp2 - sp1 - 1);
  std::string version = line.substr(sp2 + 1);
  if (version != "HTTP/1.1" && version != "HTTP/1.0") {
    return Status::Error("unsupported protocol version");
  }
  for (char c : r.method) {
    if (c < 'A' || c > 'Z') return Status::Error("malformed method");
  }
  if (target.empty() || target[0] != '/') return Status::Error("target is not a path");
  r.path = target.substr(0, target.find('?'));
  return r;
}

std::string FormatResponse(const Response& response, bool include_body) {
  std::string out =
      "HTTP/1.1 " + std::to_string(response.status) + " " + ReasonPhrase(response.status) + "\r\n";
  out += "Content-Type: " + response.content_type + "\r\n";
  out += "Content-Length: " + std::to_string(response.body.size()) + "\r\n";
  if (response.status == 405) out += "Allow: GET, HEAD\r\n";
  out += "Connection: close\r\n\r\n";
  if (include_body) out += response.body;
  return out;
}

Result<std::unique_ptr<Server>> Server::Start(const std::string& address, uint16_t port,
                                              Routes routes) {
  auto fd = Listen(address, port);
  if (!fd) return fd.status();
  std::unique_ptr<Server> server(new Server(*fd, BoundPort(*fd), std::move(routes)));
  if (pipe2(server->wake_pipe_, O_CLOEXEC) != 0) return Status::Error(Errno("pipe"));
  server->acceptor_ = std::thread([s = server.get()] { s->AcceptLoop(); });
  return server;
}

Server::Server(int listen_fd, uint16_t port, Routes routes)
    : listen_fd_(listen_fd), port_(port), routes_(std::move(routes)) {}

Server::~Server() {
  Stop();
  for (int fd : wake_pipe_)
    if (fd >= 0) close(fd);
  if (listen_fd_ >= 0) close(listen_fd_);
}

void Server::Stop() {
  if (stopped_.exchange(true)) return;
  if (wake_pipe_[1] >= 0) {
    char c = 'x';
    (void)!write(wake_pipe_[1], &c, 1);
  }
  if (acceptor_.joinable()) acceptor_.join();
  if (listen_fd_ >= 0) close(listen_fd_);  // frees the port for a restarted server
  listen_fd_ = -1;
  std::unique_lock lock(mu_);
  idle_.wait(lock, [this] { return active_connections_ == 0; });
}

void Server::AcceptLoop() {
  while (!stopped_) {
    pollfd fds[2] = {{listen_fd_, POLLIN, 0}, {wake_pipe_[0], POLLIN, 0}};
    int n = poll(fds, 2, -1);
    if (n < 0) {
      if (errno == EINTR) continue;
      KR_LOG_ERROR("http: poll failed: {}", std::strerror(errno));
      return;
    }
    if (fds[1].revents) return;
    if (!(fds[0].revents & POLLIN)) continue;
    int fd = accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
    if (fd < 0) continue;  // the client went away, or a transient resource shortage
    {
      std::lock_guard lock(mu_);
      if (active_connections_ >= kMaxConnections) {
        close(fd);
        continue;
      }
      ++active_connections_;
    }
    auto done = [this, fd] {
      close(fd);
      std::lock_guard lock(mu_);
      if (--active_connections_ == 0) idle_.notify_all();
    };
    try {
      // Detached, but Stop() waits until every connection thread has finished with us.
      std::thread([this, fd, done] {
        Serve(fd);
        done();
      }).detach();
    } catch (const std::system_error& e) {
      KR_LOG_WARN("http: cannot start a connection thread: {}", e.what());
      done();
    }
  }
}

void Server::Serve(int fd) {
  auto deadline = Clock::now() + kConnectionDeadline;
  bool complete = false;
  bool too_large = false;
  std::string head = ReadHead(fd, deadline, &complete, &too_large);
  Response response;
  bool include_body = true;
  if (too_large) {
    response = {431, "text/plain; charset=utf-8", "request head too large\n"};
  } else if (!complete) {
    if (head.empty()) return;  // connected and left, or sent nothing in time
    response = {408, "text/plain; charset=utf-8", "request incomplete\n"};
  } else if (auto line = ParseRequestLine(head); !line) {
    response = {400, "text/plain; charset=utf-8", line.error() + "\n"};
  } else if (line->method != "GET" && line->method != "HEAD") {
    response = {405, "text/plain; charset=utf-8", "only GET and HEAD\n"};
  } else if (auto route = routes_.find(line->path); route == routes_.end()) {
    response = {404, "text/plain; charset=utf-8", "not found\n"};
  } else {
    include_body = line->method == "GET";
    response = route->second();
  }
  WriteAll(fd, FormatResponse(response, include_body), deadline);
}

}  // namespace kr::http
