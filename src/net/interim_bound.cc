// SPDX-License-Identifier: Apache-2.0
#include "interim_bound.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <climits>

#include "kube_router/net/sockaddr.h"

namespace kr::net {
namespace {

using std::chrono::milliseconds;

milliseconds ToMs(time_t sec, time_t usec) { return milliseconds(sec * 1000 + usec / 1000); }

bool WaitFor(int fd, short events, milliseconds timeout) {
  pollfd p{fd, events, 0};
  int r;
  do {
    r = ::poll(&p, 1, static_cast<int>(std::max<int64_t>(timeout.count(), 0)));
  } while (r < 0 && errno == EINTR);
  return r > 0;
}

// Passes everything through, and looks at the lines before the final response's status line:
// "HTTP/1.x 1nn ..." starts an interim response. Headers and bodies are not looked at.
class InterimCountingStream : public httplib::Stream {
 public:
  InterimCountingStream(httplib::Stream& inner, InterimCount* count)
      : inner_(inner), count_(count) {}

  bool is_readable() const override { return inner_.is_readable(); }
  bool is_writable() const override { return inner_.is_writable(); }
  ssize_t read(char* ptr, size_t size) override {
    if (count_->exceeded) return -1;
    ssize_t n = inner_.read(ptr, size);
    if (n > 0 && !final_seen_) Watch(ptr, static_cast<size_t>(n));
    return count_->exceeded ? -1 : n;
  }
  ssize_t write(const char* ptr, size_t size) override { return inner_.write(ptr, size); }
  void get_remote_ip_and_port(std::string& ip, int& port) const override {
    inner_.get_remote_ip_and_port(ip, port);
  }
  void get_local_ip_and_port(std::string& ip, int& port) const override {
    inner_.get_local_ip_and_port(ip, port);
  }
  socket_t socket() const override { return inner_.socket(); }

 private:
  void Watch(const char* p, size_t n) {
    for (size_t i = 0; i < n && !final_seen_; ++i) {
      if (p[i] != '\n') {
        if (line_.size() < 12) line_ += p[i];
        continue;
      }
      if (line_.rfind("HTTP/", 0) == 0) {
        if (line_.size() > 9 && line_[9] == '1') {
          if (++count_->seen > kMaxInterimResponses) count_->exceeded = true;
        } else {
          final_seen_ = true;
        }
      }
      line_.clear();
    }
  }

  httplib::Stream& inner_;
  InterimCount* count_;
  std::string line_;  // the start of the current line
  bool final_seen_ = false;
};

// A TLS connection as an httplib stream (httplib's own is internal to its library): waits for
// the socket within the timeouts, retries what OpenSSL asks to retry.
class TlsStream : public httplib::Stream {
 public:
  TlsStream(socket_t sock, SSL* ssl, milliseconds read_timeout, milliseconds write_timeout)
      : sock_(sock), ssl_(ssl), read_timeout_(read_timeout), write_timeout_(write_timeout) {
    // A non-application record (a TLS 1.3 ticket) returns WANT_READ rather than blocking.
    SSL_clear_mode(ssl, SSL_MODE_AUTO_RETRY);
  }

  bool is_readable() const override {
    return SSL_pending(ssl_) > 0 || WaitFor(sock_, POLLIN, read_timeout_);
  }
  bool is_writable() const override { return WaitFor(sock_, POLLOUT, write_timeout_); }
  ssize_t read(char* ptr, size_t size) override {
    int len = static_cast<int>(std::min<size_t>(size, INT_MAX));
    for (int retries = 0; retries < 1000; ++retries) {
      if (SSL_pending(ssl_) <= 0 && !WaitFor(sock_, POLLIN, read_timeout_)) return -1;
      int n = SSL_read(ssl_, ptr, len);
      if (n > 0) return n;
      int err = SSL_get_error(ssl_, n);
      if (err == SSL_ERROR_WANT_WRITE && WaitFor(sock_, POLLOUT, write_timeout_)) continue;
      if (err != SSL_ERROR_WANT_READ) return n;  // 0: closed; < 0: failed
    }
    return -1;
  }
  ssize_t write(const char* ptr, size_t size) override {
    int len = static_cast<int>(std::min<size_t>(size, INT_MAX));
    for (int retries = 0; retries < 1000; ++retries) {
      if (!WaitFor(sock_, POLLOUT, write_timeout_)) return -1;
      int n = SSL_write(ssl_, ptr, len);
      if (n > 0) return n;
      int err = SSL_get_error(ssl_, n);
      if (err == SSL_ERROR_WANT_READ && WaitFor(sock_, POLLIN, read_timeout_)) continue;
      if (err != SSL_ERROR_WANT_WRITE) return -1;
    }
    return -1;
  }
  void get_remote_ip_and_port(std::string& ip, int& port) const override {
    Address(getpeername, ip, port);
  }
  void get_local_ip_and_port(std::string& ip, int& port) const override {
    Address(getsockname, ip, port);
  }
  socket_t socket() const override { return sock_; }

 private:
  void Address(int (*get)(int, sockaddr*, socklen_t*), std::string& ip, int& port) const {
    sockaddr_storage a{};
    socklen_t len = sizeof a;
    if (get(sock_, reinterpret_cast<sockaddr*>(&a), &len) != 0) return;
    auto address = FromSockaddr(reinterpret_cast<const sockaddr*>(&a), len);
    if (!address) {
      ip.clear();
      return;
    }
    ip = address->first.ToString();
    port = address->second;
  }

  socket_t sock_;
  SSL* ssl_;
  milliseconds read_timeout_, write_timeout_;
};

}  // namespace

InterimBoundedClient::InterimBoundedClient(const std::string& host, int port, bool tls,
                                           InterimCount* count)
    : ClientImpl(host, port), count_(count) {
  if (tls) ctx_ = SSL_CTX_new(TLS_client_method());
}

InterimBoundedClient::~InterimBoundedClient() {
  // httplib's destructor closes the socket through the base class's functions only.
  shutdown_ssl(socket_, false);
  if (ctx_) SSL_CTX_free(ctx_);
}

bool InterimBoundedClient::create_and_connect_socket(Socket& socket, httplib::Error& error) {
  if (!ClientImpl::create_and_connect_socket(socket, error)) return false;
  if (!ctx_) return true;
  if (Handshake(socket, error)) return true;
  shutdown_ssl(socket, false);
  shutdown_socket(socket);
  close_socket(socket);
  return false;
}

bool InterimBoundedClient::Handshake(Socket& socket, httplib::Error& error) {
  error = httplib::Error::SSLConnection;
  SSL* ssl = SSL_new(ctx_);
  if (!ssl) return false;
  socket.ssl = ssl;
  if (SSL_set_fd(ssl, socket.sock) != 1) return false;
  SSL_set_tlsext_host_name(ssl, host_.c_str());
  // Verified after the handshake (as httplib does), so that the result can be reported.
  SSL_set_verify(ssl, SSL_VERIFY_NONE, nullptr);
  // The system's roots unless the configured CA's verify callback replaces them (TlsContext).
  if (verify_) SSL_CTX_set_default_verify_paths(ctx_);
  auto deadline =
      std::chrono::steady_clock::now() + ToMs(connection_timeout_sec_, connection_timeout_usec_);
  for (;;) {
    int r = SSL_connect(ssl);
    if (r == 1) break;
    int err = SSL_get_error(ssl, r);
    auto left =
        std::chrono::duration_cast<milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left <= milliseconds(0)) return false;
    if (err == SSL_ERROR_WANT_READ && WaitFor(socket.sock, POLLIN, left)) continue;
    if (err == SSL_ERROR_WANT_WRITE && WaitFor(socket.sock, POLLOUT, left)) continue;
    return false;
  }
  if (!verify_) return true;
  verify_result_ = SSL_get_verify_result(ssl);
  X509* cert = SSL_get1_peer_certificate(ssl);
  if (verify_result_ != X509_V_OK || !cert) {
    if (cert) X509_free(cert);
    error = httplib::Error::SSLServerVerification;
    return false;
  }
  // The name in the certificate: an IP SAN for an address, a DNS name otherwise.
  bool name_ok = X509_check_ip_asc(cert, host_.c_str(), 0) == 1 ||
                 X509_check_host(cert, host_.c_str(), host_.size(), 0, nullptr) == 1;
  X509_free(cert);
  if (!name_ok) {
    error = httplib::Error::SSLServerHostnameVerification;
    return false;
  }
  return true;
}

void InterimBoundedClient::shutdown_ssl(Socket& socket, bool shutdown_gracefully) {
  if (!socket.ssl) return;
  if (shutdown_gracefully) SSL_shutdown(socket.ssl);
  SSL_free(socket.ssl);
  socket.ssl = nullptr;
}

bool InterimBoundedClient::process_socket(const Socket& socket,
                                          std::function<bool(httplib::Stream&)> callback) {
  if (socket.ssl) {
    TlsStream tls(socket.sock, socket.ssl, ToMs(read_timeout_sec_, read_timeout_usec_),
                  ToMs(write_timeout_sec_, write_timeout_usec_));
    InterimCountingStream counting(tls, count_);
    return callback(counting);
  }
  return httplib::detail::process_client_socket(socket.sock, read_timeout_sec_, read_timeout_usec_,
                                                write_timeout_sec_, write_timeout_usec_,
                                                [&](httplib::Stream& inner) {
                                                  InterimCountingStream counting(inner, count_);
                                                  return callback(counting);
                                                });
}

}  // namespace kr::net
