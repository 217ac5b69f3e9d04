#include "kube_router/net/http_server.h"

#include <httplib.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <mutex>
#include <thread>
#include <vector>

#include "kube_router/base/ip.h"
#include "kube_router/base/log.h"
#include "kube_router/base/unique_fd.h"
#include "kube_router/net/sockaddr.h"

namespace kr::net {
namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

// The gate wakes at least this often to enforce deadlines.
constexpr milliseconds kTick{100};
// accept() out of descriptors or memory: pause accepting, doubling up to the maximum.
constexpr milliseconds kFirstBackoff{10};
constexpr milliseconds kMaxBackoff{1000};
// Connections taken from the backlog per wake-up, so that the gate keeps serving its timers.
constexpr int kAcceptBurst = 64;

std::string Errno(const std::string& what) { return what + ": " + std::strerror(errno); }

bool OutOfResources(int err) {
  return err == EMFILE || err == ENFILE || err == ENOBUFS || err == ENOMEM;
}

// A connection as httplib sees it: reading the request ends `budget` after the worker took it,
// writing the response `budget` after its first byte (not per call, so a client trickling bytes
// cannot extend either), or when the server stops. The handler's own time between the two is
// not the client's doing and does not count: a /metrics render that takes seconds on a slow
// node (20,000 IPVS services) must still be delivered, not cut after it was paid for.
class DeadlineStream : public httplib::Stream {
 public:
  DeadlineStream(int fd, milliseconds budget, const std::atomic<bool>* stopping)
      : fd_(fd), budget_(budget), deadline_(Clock::now() + budget), stopping_(stopping) {}

  bool expired() const { return expired_; }

  bool is_readable() const override { return begin_ < end_ || Wait(POLLIN); }
  bool is_writable() const override { return Wait(POLLOUT); }
  ssize_t read(char* ptr, size_t size) override {
    if (begin_ == end_) {
      if (!Wait(POLLIN)) return -1;
      ssize_t n = recv(fd_, buffer_, sizeof(buffer_), MSG_DONTWAIT);
      if (n <= 0) return n;
      begin_ = 0;
      end_ = static_cast<size_t>(n);
    }
    size_t take = std::min(size, end_ - begin_);
    std::memcpy(ptr, buffer_ + begin_, take);
    begin_ += take;
    return static_cast<ssize_t>(take);
  }
  ssize_t write(const char* ptr, size_t size) override {
    if (!writing_) {
      writing_ = true;
      deadline_ = Clock::now() + budget_;
    }
    if (!Wait(POLLOUT)) return -1;
    return send(fd_, ptr, size, MSG_DONTWAIT | MSG_NOSIGNAL);
  }
  void get_remote_ip_and_port(std::string& ip, int& port) const override {
    Describe(getpeername, &ip, &port);
  }
  void get_local_ip_and_port(std::string& ip, int& port) const override {
    Describe(getsockname, &ip, &port);
  }
  socket_t socket() const override { return fd_; }

 private:
  // Waits for `events` in slices, so Stop() is noticed; false at the deadline.
  bool Wait(short events) const {
    while (!stopping_->load()) {
      auto left = std::chrono::duration_cast<milliseconds>(deadline_ - Clock::now());
      if (left.count() <= 0) {
        expired_ = true;
        return false;
      }
      pollfd p{fd_, events, 0};
      int n = poll(&p, 1, static_cast<int>(std::min(left, kTick).count()));
      if (n > 0) return true;
      if (n < 0 && errno != EINTR) return false;
    }
    return false;
  }
  void Describe(int (*name)(int, sockaddr*, socklen_t*), std::string* ip, int* port) const {
    SocketAddress address;
    address.length = sizeof(address.storage);
    if (name(fd_, address.get(), &address.length) != 0) return;
    if (auto parsed = FromSockaddr(address.get(), address.length)) {
      *ip = parsed->first.ToString();
      *port = parsed->second;
    }
  }

  int fd_;
  milliseconds budget_;
  Clock::time_point deadline_;  // of the reads until the first write, then of the writes
  bool writing_ = false;
  const std::atomic<bool>* stopping_;
  mutable bool expired_ = false;
  char buffer_[4096];
  size_t begin_ = 0;
  size_t end_ = 0;
};

// httplib's request parsing, routing hooks and response writing, over our stream.
class Engine : public httplib::Server {
 public:
  void Serve(httplib::Stream& stream) {
    std::string remote_ip, local_ip;
    int remote_port = 0, local_port = 0;
    stream.get_remote_ip_and_port(remote_ip, remote_port);
    stream.get_local_ip_and_port(local_ip, local_port);
    bool closed = false;
    process_request(stream, remote_ip, remote_port, local_ip, local_port,
                    /*close_connection=*/true, closed, nullptr);
  }
};

// Best effort: a canned answer to a connection we are about to close (never blocks).
void SendCanned(int fd, int status, const char* reason) {
  std::string text = "HTTP/1.1 " + std::to_string(status) + " " + reason +
                     "\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
  ssize_t ignored = send(fd, text.data(), text.size(), MSG_DONTWAIT | MSG_NOSIGNAL);
  (void)ignored;
}

// Binds a non-blocking listening TCP socket; "" listens on every IPv4 and IPv6 address (or
// IPv4 only when the kernel has no IPv6).
Result<UniqueFd> Listen(const std::string& address, uint16_t port) {
  std::string shown = address.empty() ? "*" : address;
  SocketAddress where;
  if (address.empty()) {
    where = ToSockaddr(*IpAddress::Parse("::"), port);
  } else {
    auto ip = IpAddress::Parse(address);
    if (!ip) return Status::Error("\"" + address + "\" is not an IP address");
    where = ToSockaddr(*ip, port);
  }
  UniqueFd fd(socket(where.family(), SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  if (!fd && address.empty() && errno == EAFNOSUPPORT) {
    where = ToSockaddr(IpAddress::V4(0), port);  // no IPv6 in this kernel
    fd.reset(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  }
  if (!fd) return Status::Error(Errno("socket"));
  int one = 1;
  int zero = 0;
  setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  if (where.family() == AF_INET6 && address.empty()) {
    setsockopt(fd.get(), IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof(zero));
  }
  if (bind(fd.get(), where.get(), where.length) != 0) {
    return Status::Error(Errno("bind " + shown + ":" + std::to_string(port)));
  }
  if (listen(fd.get(), 128) != 0) return Status::Error(Errno("listen"));
  return fd;
}

uint16_t BoundPort(int fd) {
  SocketAddress local;
  local.length = sizeof(local.storage);
  if (getsockname(fd, local.get(), &local.length) != 0) return 0;
  auto parsed = FromSockaddr(local.get(), local.length);
  return parsed ? parsed->second : 0;
}

}  // namespace

HeadScan ScanRequestHead(std::string_view bytes, size_t max_head_bytes) {
  std::string_view window = bytes.substr(0, std::min(bytes.size(), max_head_bytes));
  if (window.find("\r\n\r\n") != std::string_view::npos ||
      window.find("\n\n") != std::string_view::npos) {
    return HeadScan::kComplete;
  }
  return bytes.size() >= max_head_bytes ? HeadScan::kTooLarge : HeadScan::kIncomplete;
}

class HttpServer::Impl {
 public:
  Impl(UniqueFd listener, HttpRoutes routes, HttpServerLimits limits)
      : listener_(std::move(listener)),
        port_(BoundPort(listener_.get())),
        routes_(std::move(routes)),
        limits_(limits),
        peek_(limits.max_head_bytes + 1) {
    limits_.workers = std::max<size_t>(limits_.workers, 1);
    engine_.set_keep_alive_max_count(1);  // one request per connection
    engine_.set_read_timeout(1, 0);       // the head is already buffered when httplib reads
    engine_.set_write_timeout(2, 0);
    engine_.set_payload_max_length(0);  // no request bodies
    engine_.set_pre_routing_handler(
        [this](const httplib::Request& req, httplib::Response& res) { return Route(req, res); });
  }

  Status Start() {
    wake_.reset(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
    if (!wake_) return Status::Error(Errno("eventfd"));
    gate_ = std::thread([this] { GateLoop(); });
    for (size_t i = 0; i < limits_.workers; ++i) {
      workers_.emplace_back([this] { WorkerLoop(); });
    }
    return Status::Ok();
  }

  void Stop() {
    if (stopped_.exchange(true)) return;
    {
      std::lock_guard lock(mu_);
      stopping_ = true;
    }
    stopping_flag_ = true;
    uint64_t one = 1;
    ssize_t ignored = write(wake_.get(), &one, sizeof(one));
    (void)ignored;
    work_cv_.notify_all();
    if (gate_.joinable()) gate_.join();
    for (auto& worker : workers_) worker.join();
    workers_.clear();
    pending_.clear();
    std::lock_guard lock(mu_);
    queue_.clear();
    listener_.reset();  // frees the port for a restarted server
  }

  uint16_t port() const { return port_; }

  HttpServerStats stats() const {
    HttpServerStats s;
    s.served = served_;
    s.refused_per_source = refused_per_source_;
    s.refused_full = refused_full_;
    s.head_timeouts = head_timeouts_;
    s.evicted_for_room = evicted_for_room_;
    s.serve_timeouts = serve_timeouts_;
    s.accept_backoffs = accept_backoffs_;
    return s;
  }

  void Serve(int fd) {
    UniqueFd owned(fd);
    DeadlineStream stream(fd, limits_.serve_deadline, &stopping_flag_);
    engine_.Serve(stream);
    shutdown(fd, SHUT_RDWR);
  }

 private:
  // A connection whose request head has not fully arrived; owned by the gate thread.
  struct Pending {
    UniqueFd fd;
    std::string source;
    Clock::time_point deadline;
  };
  struct Queued {
    UniqueFd fd;
    std::string source;
  };

  httplib::Server::HandlerResponse Route(const httplib::Request& req, httplib::Response& res) {
    using httplib::Server;
    if (req.path.empty() || req.path[0] != '/') {
      res.status = 400;
      return Server::HandlerResponse::Handled;
    }
    auto it = routes_.find(req.path);
    if (it == routes_.end()) {
      res.status = 404;
      res.set_content("not found\n", "text/plain; charset=utf-8");
      return Server::HandlerResponse::Handled;
    }
    if (req.method != "GET" && req.method != "HEAD") {
      res.status = 405;
      res.set_header("Allow", "GET, HEAD");
      return Server::HandlerResponse::Handled;
    }
    HttpServerResponse answer = it->second();
    res.status = answer.status;
    // (Moved, not copied: a /metrics body at 10k Services is ~12 MiB.)
    res.set_content("", 0, answer.content_type);
    res.body = std::move(answer.body);
    return Server::HandlerResponse::Handled;
  }

  // Open-connection accounting (total and per source). A source over its cap is refused; when
  // the server is full, the oldest connection still waiting for its head makes room (a stalled
  // head must not keep a live client out). Gate thread only.
  bool Admit(const std::string& source) {
    bool full;
    {
      std::lock_guard lock(mu_);
      auto it = per_source_.find(source);
      if (it != per_source_.end() && it->second >= limits_.max_connections_per_source) {
        ++refused_per_source_;
        return false;
      }
      full = open_ >= limits_.max_connections;
    }
    if (full) {
      if (pending_.empty()) {  // everything open is being served: nothing stalled to evict
        ++refused_full_;
        return false;
      }
      Release(pending_.front().source);
      pending_.erase(pending_.begin());
      ++evicted_for_room_;
    }
    std::lock_guard lock(mu_);
    ++per_source_[source];
    ++open_;
    return true;
  }
  void ReleaseLocked(const std::string& source) {
    auto it = per_source_.find(source);
    if (it != per_source_.end() && --it->second == 0) per_source_.erase(it);
    --open_;
  }
  void Release(const std::string& source) {
    std::lock_guard lock(mu_);
    ReleaseLocked(source);
  }

  void GateLoop() {
    milliseconds backoff{0};
    Clock::time_point accept_paused_until{};
    std::vector<pollfd> fds;
    while (true) {
      Clock::time_point now = Clock::now();
      bool accepting = now >= accept_paused_until;
      fds.clear();
      fds.push_back({wake_.get(), POLLIN, 0});
      fds.push_back({accepting ? listener_.get() : -1, POLLIN, 0});
      for (const Pending& p : pending_) fds.push_back({p.fd.get(), POLLIN | POLLRDHUP, 0});
      milliseconds timeout = kTick;
      if (!accepting) {
        timeout =
            std::min(timeout, std::chrono::duration_cast<milliseconds>(accept_paused_until - now) +
                                  milliseconds(1));
      }
      int n = poll(fds.data(), fds.size(), static_cast<int>(timeout.count()));
      if (n < 0 && errno != EINTR) {
        KR_LOG_ERROR("http server :{}: {}", port_, Errno("poll"));
        std::this_thread::sleep_for(kTick);  // never spin
      }
      {
        std::lock_guard lock(mu_);
        if (stopping_) return;
      }
      now = Clock::now();
      if (n > 0) {
        // Pending connections first: accepting below appends to pending_.
        std::vector<Pending> still;
        for (size_t i = 0; i < pending_.size(); ++i) {
          short revents = fds[i + 2].revents;
          if (revents == 0) {
            still.push_back(std::move(pending_[i]));
          } else if (OnReadable(pending_[i], revents)) {
            still.push_back(std::move(pending_[i]));
          }
        }
        pending_ = std::move(still);
        if (fds[1].revents & POLLIN) {
          AcceptBurst(now, &backoff, &accept_paused_until);
        }
      }
      ExpireDeadlines(now);
    }
  }

  void AcceptBurst(Clock::time_point now, milliseconds* backoff, Clock::time_point* paused) {
    for (int i = 0; i < kAcceptBurst; ++i) {
      SocketAddress peer;
      peer.length = sizeof(peer.storage);
      UniqueFd conn(accept4(listener_.get(), peer.get(), &peer.length, SOCK_CLOEXEC));
      if (!conn) {
        int err = errno;
        if (err == EAGAIN || err == EWOULDBLOCK) return;
        if (err == EINTR || err == ECONNABORTED || err == EPROTO) continue;
        if (backoff->count() == 0) {
          KR_LOG_WARN("http server :{}: accept: {}; pausing accepts", port_, std::strerror(err));
        }
        *backoff = backoff->count() == 0 ? kFirstBackoff : std::min(*backoff * 2, kMaxBackoff);
        *paused = now + *backoff;
        if (OutOfResources(err)) ++accept_backoffs_;
        return;
      }
      *backoff = milliseconds(0);
      auto source_ip = FromSockaddr(peer.get(), peer.length);
      std::string source = source_ip ? source_ip->first.ToString() : "?";
      if (!Admit(source)) continue;  // closes conn
      pending_.push_back({std::move(conn), std::move(source), now + limits_.head_deadline});
    }
  }

  // Peeks at a readable pending connection; false when it left pending_ (dispatched/closed).
  bool OnReadable(Pending& p, short revents) {
    ssize_t n = recv(p.fd.get(), peek_.data(), peek_.size(), MSG_PEEK | MSG_DONTWAIT);
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) return true;
    if (n <= 0) {  // closed or failed before sending a head
      Release(p.source);
      return false;
    }
    size_t got = static_cast<size_t>(n);
    switch (ScanRequestHead(std::string_view(peek_.data(), got), limits_.max_head_bytes)) {
      case HeadScan::kComplete: {
        int one = 1;
        setsockopt(p.fd.get(), SOL_SOCKET, SO_RCVLOWAT, &one, sizeof(one));
        Dispatch(std::move(p));
        return false;
      }
      case HeadScan::kTooLarge:
        SendCanned(p.fd.get(), 431, "Request Header Fields Too Large");
        Release(p.source);
        return false;
      case HeadScan::kIncomplete:
        break;
    }
    if (revents & (POLLRDHUP | POLLHUP | POLLERR)) {  // no more bytes will come
      Release(p.source);
      return false;
    }
    // Wake again only when more bytes arrive (the peeked ones stay readable).
    int lowat = static_cast<int>(got + 1);
    setsockopt(p.fd.get(), SOL_SOCKET, SO_RCVLOWAT, &lowat, sizeof(lowat));
    return true;
  }

  void Dispatch(Pending p) {
    std::lock_guard lock(mu_);
    if (queue_.size() >= limits_.queue) {
      ++refused_full_;
      SendCanned(p.fd.get(), 503, "Service Unavailable");
      ReleaseLocked(p.source);
      return;
    }
    queue_.push_back({std::move(p.fd), std::move(p.source)});
    work_cv_.notify_one();
  }

  void ExpireDeadlines(Clock::time_point now) {
    auto expired = [&](const Pending& p) { return p.deadline <= now; };
    for (Pending& p : pending_) {
      if (expired(p)) {
        ++head_timeouts_;
        Release(p.source);
      }
    }
    std::erase_if(pending_, expired);
  }

  void WorkerLoop() {
    while (true) {
      Queued job;
      {
        std::unique_lock lock(mu_);
        work_cv_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
        if (stopping_) return;
        job = std::move(queue_.front());
        queue_.pop_front();
      }
      ++served_;
      DeadlineStream stream(job.fd.get(), limits_.serve_deadline, &stopping_flag_);
      engine_.Serve(stream);
      if (stream.expired()) ++serve_timeouts_;
      shutdown(job.fd.get(), SHUT_RDWR);
      job.fd.reset();
      Release(job.source);
    }
  }

  Engine engine_;
  UniqueFd listener_;
  uint16_t port_;
  HttpRoutes routes_;
  HttpServerLimits limits_;
  UniqueFd wake_;
  std::thread gate_;
  std::vector<std::thread> workers_;
  std::vector<Pending> pending_;  // gate thread only
  std::vector<char> peek_;        // gate thread only

  mutable std::mutex mu_;
  std::condition_variable work_cv_;
  bool stopping_ = false;                     // guarded by mu_
  std::deque<Queued> queue_;                  // guarded by mu_
  std::map<std::string, size_t> per_source_;  // guarded by mu_
  size_t open_ = 0;                           // guarded by mu_
  std::atomic<bool> stopped_{false};
  std::atomic<bool> stopping_flag_{false};  // for streams in progress

  std::atomic<uint64_t> served_{0};
  std::atomic<uint64_t> refused_per_source_{0};
  std::atomic<uint64_t> refused_full_{0};
  std::atomic<uint64_t> head_timeouts_{0};
  std::atomic<uint64_t> evicted_for_room_{0};
  std::atomic<uint64_t> serve_timeouts_{0};
  std::atomic<uint64_t> accept_backoffs_{0};
};

Result<std::unique_ptr<HttpServer>> HttpServer::Start(const std::string& address, uint16_t port,
                                                      HttpRoutes routes, HttpServerLimits limits) {
  auto listener = Listen(address, port);
  if (!listener) return listener.status();
  auto impl = std::make_unique<Impl>(std::move(*listener), std::move(routes), limits);
  if (Status s = impl->Start(); !s.ok()) return s;
  return std::unique_ptr<HttpServer>(new HttpServer(std::move(impl)));
}

HttpServer::HttpServer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
HttpServer::~HttpServer() { Stop(); }
uint16_t HttpServer::port() const { return impl_->port(); }
HttpServerStats HttpServer::stats() const { return impl_->stats(); }
void HttpServer::Stop() { impl_->Stop(); }
void HttpServer::ServeConnectionForTest(int fd) { impl_->Serve(fd); }

}  // namespace kr::net
