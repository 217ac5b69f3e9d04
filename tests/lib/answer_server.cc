#include "lib/answer_server.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <map>
#include <sstream>
#include <stdexcept>
#include <string_view>

#include "lib/probe_socket.h"

namespace kr::testing {
namespace {

constexpr size_t kMaxConnections = 64;
constexpr size_t kMaxRequest = 4096;

using Clock = std::chrono::steady_clock;

struct Sockaddr {
  sockaddr_storage storage{};
  socklen_t length = 0;
  sockaddr* get() { return reinterpret_cast<sockaddr*>(&storage); }
  int family() const { return storage.ss_family; }
};

Sockaddr MakeAddress(const std::string& ip, int port) {
  Sockaddr a;
  if (ip.find(':') != std::string::npos) {
    auto* in6 = reinterpret_cast<sockaddr_in6*>(&a.storage);
    in6->sin6_family = AF_INET6;
    in6->sin6_port = htons(static_cast<uint16_t>(port));
    if (inet_pton(AF_INET6, ip.c_str(), &in6->sin6_addr) != 1)
      throw std::runtime_error("bad ip " + ip);
    a.length = sizeof(sockaddr_in6);
  } else {
    auto* in = reinterpret_cast<sockaddr_in*>(&a.storage);
    in->sin_family = AF_INET;
    in->sin_port = htons(static_cast<uint16_t>(port));
    if (inet_pton(AF_INET, ip.c_str(), &in->sin_addr) != 1)
      throw std::runtime_error("bad ip " + ip);
    a.length = sizeof(sockaddr_in);
  }
  return a;
}

// "ip port" of a peer; IPv4-mapped IPv6 addresses are shown as IPv4.
std::string PeerText(const sockaddr_storage& peer) {
  char text[INET6_ADDRSTRLEN] = {};
  int port = 0;
  if (peer.ss_family == AF_INET) {
    const auto* in = reinterpret_cast<const sockaddr_in*>(&peer);
    inet_ntop(AF_INET, &in->sin_addr, text, sizeof(text));
    port = ntohs(in->sin_port);
  } else if (peer.ss_family == AF_INET6) {
    const auto* in6 = reinterpret_cast<const sockaddr_in6*>(&peer);
    inet_ntop(AF_INET6, &in6->sin6_addr, text, sizeof(text));
    port = ntohs(in6->sin6_port);
  }
  std::string ip = text;
  if (ip.rfind("::ffff:", 0) == 0 && ip.find('.') != std::string::npos) ip = ip.substr(7);
  return ip + " " + std::to_string(port);
}

int TypeOf(AnswerServer::Kind kind) {
  return kind == AnswerServer::Kind::kUdp ? SOCK_DGRAM : SOCK_STREAM;
}
int ProtocolOf(AnswerServer::Kind kind) {
  return kind == AnswerServer::Kind::kSctp ? IPPROTO_SCTP : 0;
}

Answer Failure(int error) {
  Answer a;
  a.outcome = error == ECONNREFUSED ? Answer::Outcome::kRefused : Answer::Outcome::kError;
  a.error = std::strerror(error);
  return a;
}

Answer Timeout() {
  Answer a;
  a.outcome = Answer::Outcome::kTimeout;
  a.error = "timed out";
  return a;
}

Answer Parse(const std::string& line) {
  Answer a;
  std::istringstream in(line);
  if (in >> a.name >> a.client_ip >> a.client_port) {
    a.outcome = Answer::Outcome::kAnswered;
  } else {
    a.error = "unexpected answer '" + line + "'";
  }
  return a;
}

// Reads until `stop` (empty: never) is in the data, the peer closes, or the deadline.
// `error` is set on a socket error.
std::string ReadUntil(int fd, const std::string& stop, Clock::time_point deadline, int& error,
                      bool& timed_out) {
  std::string data;
  error = 0;
  timed_out = false;
  while (data.size() < kMaxRequest && (stop.empty() || data.find(stop) == std::string::npos)) {
    short ev = PollUntil(fd, POLLIN, deadline);
    if (ev == 0) {
      timed_out = true;
      break;
    }
    char buf[512];
    ssize_t n = recv(fd, buf, sizeof(buf), 0);
    if (n < 0) {
      if (errno == EAGAIN || errno == EINTR) continue;
      error = errno;
      break;
    }
    if (n == 0) break;
    data.append(buf, static_cast<size_t>(n));
  }
  return data;
}

// A non-blocking socket of `proto` made inside `netns`, optionally bound to a source port,
// connected (or connecting) to ip:port. Returns -errno on failure.
int ConnectFrom(const std::string& netns, const std::string& ip, int port, Proto proto,
                int source_port, Clock::time_point deadline, int& error) {
  Sockaddr to = MakeAddress(ip, port);
  int fd;
  {
    ScopedNetns inside(netns);
    fd = socket(to.family(),
                (proto == Proto::kUdp ? SOCK_DGRAM : SOCK_STREAM) | SOCK_CLOEXEC | SOCK_NONBLOCK,
                proto == Proto::kSctp ? IPPROTO_SCTP : 0);
  }
  if (fd < 0) {
    error = errno;
    return -1;
  }
  if (proto == Proto::kSctp) PrepareSctpProbe(fd, to.family());
  if (proto == Proto::kTcp && to.family() == AF_INET6) {
    int one = 1;
    setsockopt(fd, IPPROTO_IPV6, IPV6_RECVERR, &one, sizeof(one));
  }
  if (source_port != 0) {
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    Sockaddr from = MakeAddress(to.family() == AF_INET6 ? "::" : "0.0.0.0", source_port);
    if (bind(fd, from.get(), from.length) != 0) {
      error = errno;
      close(fd);
      return -1;
    }
  }
  if (connect(fd, to.get(), to.length) != 0 && errno != EINPROGRESS) {
    error = errno;
    close(fd);
    return -1;
  }
  if (proto != Proto::kUdp) {
    short ev = PollUntil(fd, POLLOUT, deadline);
    int so_error = 0;
    socklen_t len = sizeof(so_error);
    getsockopt(fd, SOL_SOCKET, SO_ERROR, &so_error, &len);
    if (ev == 0 || so_error != 0) {
      error = ev == 0 ? ETIMEDOUT : so_error;
      close(fd);
      return -1;
    }
  }
  error = 0;
  return fd;
}

Answer ReadGreeting(int fd, Clock::time_point deadline) {
  int error = 0;
  bool timed_out = false;
  std::string line = ReadUntil(fd, "\n", deadline, error, timed_out);
  if (error != 0) return Failure(error);
  if (line.find('\n') == std::string::npos) return timed_out ? Timeout() : Failure(ECONNRESET);
  return Parse(line.substr(0, line.find('\n')));
}

}  // namespace

AnswerServer::Kind ToKind(Proto proto) {
  switch (proto) {
    case Proto::kTcp:
      return AnswerServer::Kind::kTcp;
    case Proto::kUdp:
      return AnswerServer::Kind::kUdp;
    case Proto::kSctp:
      return AnswerServer::Kind::kSctp;
  }
  return AnswerServer::Kind::kTcp;
}

std::string Answer::ToString() const {
  switch (outcome) {
    case Outcome::kAnswered:
      return "answered by " + name + " (client " + client_ip + ":" + std::to_string(client_port) +
             ")";
    case Outcome::kRefused:
      return "refused";
    case Outcome::kTimeout:
      return "timed out";
    case Outcome::kError:
      return "error: " + error;
  }
  return "?";
}

AnswerServer::AnswerServer(const std::string& netns, std::string name, int port, Kind kind)
    : name_(std::move(name)), kind_(kind) {
  if (pipe2(wake_, O_CLOEXEC) != 0) throw std::runtime_error("pipe2 failed");
  {
    ScopedNetns inside(netns);
    listen_fd_ = socket(AF_INET6, TypeOf(kind) | SOCK_CLOEXEC | SOCK_NONBLOCK, ProtocolOf(kind));
  }
  int zero = 0;
  int one = 1;
  Sockaddr any = MakeAddress("::", port);
  if (listen_fd_ < 0 ||
      setsockopt(listen_fd_, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof(zero)) != 0 ||
      setsockopt(listen_fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0 ||
      bind(listen_fd_, any.get(), any.length) != 0 ||
      (TypeOf(kind) == SOCK_STREAM && listen(listen_fd_, 128) != 0)) {
    std::string why = std::strerror(errno);
    if (listen_fd_ >= 0) close(listen_fd_);
    close(wake_[0]);
    close(wake_[1]);
    throw std::runtime_error("cannot serve " + name_ + " on port " + std::to_string(port) + " in " +
                             netns + ": " + why);
  }
  thread_ = std::thread([this] { Loop(); });
}

AnswerServer::~AnswerServer() {
  (void)!write(wake_[1], "x", 1);
  if (thread_.joinable()) thread_.join();
  close(listen_fd_);
  close(wake_[0]);
  close(wake_[1]);
}

void AnswerServer::Loop() {
  struct Conn {
    int fd;
    std::string peer;
    std::string request;  // HTTP: the head read so far
    Kind mode;            // kTcpOrHttp until the client's first bytes or silence decide
    Clock::time_point accepted;
  };
  constexpr auto kSilence = std::chrono::milliseconds(300);
  auto greet = [&](const Conn& c) {
    std::string line = name_ + " " + c.peer + "\n";
    (void)!send(c.fd, line.data(), line.size(), MSG_NOSIGNAL);
  };
  std::vector<Conn> conns;
  auto drop = [&](size_t i) {
    close(conns[i].fd);
    conns.erase(conns.begin() + static_cast<long>(i));
  };
  while (true) {
    std::vector<pollfd> fds{{wake_[0], POLLIN, 0}, {listen_fd_, POLLIN, 0}};
    for (const Conn& c : conns) fds.push_back({c.fd, POLLIN, 0});
    int timeout_ms = -1;  // undecided connections wake us when their silence ends
    for (const Conn& c : conns) {
      if (c.mode != Kind::kTcpOrHttp) continue;
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(c.accepted + kSilence -
                                                                        Clock::now());
      int ms = static_cast<int>(std::max<int64_t>(0, left.count()));
      timeout_ms = timeout_ms < 0 ? ms : std::min(timeout_ms, ms);
    }
    if (poll(fds.data(), fds.size(), timeout_ms) < 0) {
      if (errno == EINTR) continue;
      break;
    }
    if (fds[0].revents) break;
    for (Conn& c : conns) {
      if (c.mode == Kind::kTcpOrHttp && Clock::now() >= c.accepted + kSilence) {
        c.mode = Kind::kTcp;
        greet(c);
      }
    }
    // Connections first (indexes shift when one is dropped: walk backwards).
    for (size_t i = conns.size(); i-- > 0;) {
      if (!fds[i + 2].revents) continue;
      char buf[1024];
      ssize_t n = recv(conns[i].fd, buf, sizeof(buf), MSG_DONTWAIT);
      if (n <= 0) {
        if (n < 0 && (errno == EAGAIN || errno == EINTR)) continue;
        drop(i);
        continue;
      }
      if (conns[i].mode == Kind::kTcpOrHttp) {
        static const char* const kMethods[] = {"GET ",     "HEAD ",  "POST ",    "PUT ",  "DELETE ",
                                               "OPTIONS ", "PATCH ", "CONNECT ", "TRACE "};
        std::string_view first(buf, static_cast<size_t>(n));
        bool http = false;
        for (const char* m : kMethods) http = http || first.rfind(m, 0) == 0;
        conns[i].mode = http ? Kind::kHttp : Kind::kTcp;
        if (!http) greet(conns[i]);
      }
      if (conns[i].mode != Kind::kHttp) {
        (void)!send(conns[i].fd, buf, static_cast<size_t>(n), MSG_NOSIGNAL);  // echo
        continue;
      }
      conns[i].request.append(buf, static_cast<size_t>(n));
      if (conns[i].request.find("\r\n\r\n") != std::string::npos ||
          conns[i].request.size() > kMaxRequest) {
        std::string body = name_ + " " + conns[i].peer + "\n";
        std::string response = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: " +
                               std::to_string(body.size()) + "\r\nConnection: close\r\n\r\n" + body;
        (void)!send(conns[i].fd, response.data(), response.size(), MSG_NOSIGNAL);
        drop(i);
      }
    }
    if (!fds[1].revents) continue;
    sockaddr_storage peer{};
    socklen_t len = sizeof(peer);
    if (kind_ == Kind::kUdp) {
      char buf[512];
      ssize_t n = recvfrom(listen_fd_, buf, sizeof(buf), MSG_DONTWAIT,
                           reinterpret_cast<sockaddr*>(&peer), &len);
      if (n >= 0) {
        std::string line = name_ + " " + PeerText(peer) + "\n";
        (void)!sendto(listen_fd_, line.data(), line.size(), 0, reinterpret_cast<sockaddr*>(&peer),
                      len);
      }
      continue;
    }
    int fd = accept4(listen_fd_, reinterpret_cast<sockaddr*>(&peer), &len, SOCK_CLOEXEC);
    if (fd < 0) continue;
    if (conns.size() >= kMaxConnections) drop(0);
    Conn c{fd, PeerText(peer), {}, kind_, Clock::now()};
    if (kind_ != Kind::kHttp && kind_ != Kind::kTcpOrHttp) greet(c);
    conns.push_back(std::move(c));
  }
  for (const Conn& c : conns) close(c.fd);
}

Answer Ask(const std::string& netns, const std::string& ip, int port, Proto proto,
           std::chrono::milliseconds timeout, int source_port) {
  auto deadline = Clock::now() + timeout;
  int error = 0;
  int fd = ConnectFrom(netns, ip, port, proto, source_port, deadline, error);
  if (fd < 0) return error == ETIMEDOUT ? Timeout() : Failure(error);
  if (proto == Proto::kUdp) (void)!send(fd, "?\n", 2, 0);
  Answer a = ReadGreeting(fd, deadline);
  close(fd);
  return a;
}

Answer HttpGet(const std::string& netns, const std::string& ip, int port,
               std::chrono::milliseconds timeout) {
  auto deadline = Clock::now() + timeout;
  int error = 0;
  int fd = ConnectFrom(netns, ip, port, Proto::kTcp, 0, deadline, error);
  if (fd < 0) return error == ETIMEDOUT ? Timeout() : Failure(error);
  const std::string host = ip.find(':') != std::string::npos ? "[" + ip + "]" : ip;
  std::string request = "GET / HTTP/1.1\r\nHost: " + host + "\r\nConnection: close\r\n\r\n";
  (void)!send(fd, request.data(), request.size(), MSG_NOSIGNAL);
  bool timed_out = false;
  std::string response = ReadUntil(fd, "", deadline, error, timed_out);
  close(fd);
  if (error != 0) return Failure(error);
  size_t body = response.find("\r\n\r\n");
  if (response.rfind("HTTP/1.1 200", 0) != 0 || body == std::string::npos) {
    return timed_out ? Timeout() : Parse("bad HTTP response: " + response.substr(0, 80));
  }
  std::string line = response.substr(body + 4);
  return Parse(line.substr(0, line.find('\n')));
}

FixedPortUdpClient::FixedPortUdpClient(const std::string& netns, int source_port, bool ipv6) {
  {
    ScopedNetns inside(netns);
    fd_ = socket(ipv6 ? AF_INET6 : AF_INET, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  }
  int one = 1;
  Sockaddr from = MakeAddress(ipv6 ? "::" : "0.0.0.0", source_port);
  if (fd_ < 0 || setsockopt(fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0 ||
      bind(fd_, from.get(), from.length) != 0) {
    if (fd_ >= 0) close(fd_);
    throw std::runtime_error("cannot bind UDP source port " + std::to_string(source_port));
  }
}

FixedPortUdpClient::~FixedPortUdpClient() { close(fd_); }

Answer FixedPortUdpClient::Ask(const std::string& ip, int port, std::chrono::milliseconds timeout) {
  auto deadline = Clock::now() + timeout;
  Sockaddr to = MakeAddress(ip, port);
  // Drain late answers of an earlier request so they are not taken for this one.
  char stale[512];
  while (recv(fd_, stale, sizeof(stale), MSG_DONTWAIT) > 0) {
  }
  if (connect(fd_, to.get(), to.length) != 0) return Failure(errno);
  if (send(fd_, "?\n", 2, 0) < 0) return Failure(errno);
  return ReadGreeting(fd_, deadline);
}

TcpHolder::TcpHolder(const std::string& netns, const std::string& ip, int port,
                     std::chrono::milliseconds timeout) {
  auto deadline = Clock::now() + timeout;
  int error = 0;
  fd_ = ConnectFrom(netns, ip, port, Proto::kTcp, 0, deadline, error);
  if (fd_ < 0) {
    greeting_ = error == ETIMEDOUT ? Timeout() : Failure(error);
    return;
  }
  greeting_ = ReadGreeting(fd_, deadline);
}

TcpHolder::~TcpHolder() {
  if (fd_ >= 0) close(fd_);
}

bool TcpHolder::Alive(std::chrono::milliseconds timeout) {
  if (fd_ < 0 || !greeting_.ok()) return false;
  auto deadline = Clock::now() + timeout;
  std::string line = "ping" + std::to_string(++counter_) + "\n";
  if (send(fd_, line.data(), line.size(), MSG_NOSIGNAL) < 0) return false;
  int error = 0;
  bool timed_out = false;
  std::string echo = ReadUntil(fd_, "\n", deadline, error, timed_out);
  return error == 0 && echo == line;
}

}  // namespace kr::testing
