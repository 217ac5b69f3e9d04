// SPDX-License-Identifier: Apache-2.0
#include "kube_router/k8s/http_client.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include "kube_router/k8s/chunked.h"
#include "kube_router/k8s/dns.h"
#include "kube_router/k8s/gzip.h"

namespace kr::k8s {
namespace {

using Clock = std::chrono::steady_clock;
constexpr size_t kMaxHeaderBytes = 64 * 1024;

std::string Lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::tolower(c); });
  return s;
}

std::string OpenSslError() {
  unsigned long e = ERR_get_error();
  if (e == 0) return "unknown TLS error";
  char buf[256];
  ERR_error_string_n(e, buf, sizeof buf);
  ERR_clear_error();
  return buf;
}

// Waits for `events` on fd until the deadline, checking *cancel every 100 ms.
Status WaitFd(int fd, short events, Clock::time_point deadline, const std::atomic<bool>* cancel) {
  for (;;) {
    if (cancel && cancel->load()) return Status::Error("cancelled");
    auto now = Clock::now();
    if (now >= deadline) return Status::Error("timed out");
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - now).count();
    pollfd p{fd, events, 0};
    int r = ::poll(&p, 1, static_cast<int>(std::min<int64_t>(left, 100)));
    if (r > 0) return Status::Ok();
    if (r < 0 && errno != EINTR) return Status::Error(std::string("poll: ") + strerror(errno));
  }
}

// One TCP (optionally TLS) connection with deadline-bounded I/O.
class Connection {
 public:
  Connection() = default;
  ~Connection() {
    if (ssl_) SSL_free(ssl_);
    if (fd_ >= 0) ::close(fd_);
  }
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  Status Connect(const IpAddress& ip, uint16_t port, Clock::time_point deadline,
                 const std::atomic<bool>* cancel) {
    sockaddr_storage ss{};
    socklen_t len;
    if (ip.is_v4()) {
      auto* a = reinterpret_cast<sockaddr_in*>(&ss);
      a->sin_family = AF_INET;
      a->sin_port = htons(port);
      std::memcpy(&a->sin_addr, ip.bytes().data(), 4);
      len = sizeof(sockaddr_in);
    } else {
      auto* a = reinterpret_cast<sockaddr_in6*>(&ss);
      a->sin6_family = AF_INET6;
      a->sin6_port = htons(port);
      std::memcpy(&a->sin6_addr, ip.bytes().data(), 16);
      len = sizeof(sockaddr_in6);
    }
    if (fd_ >= 0) ::close(fd_);  // a previous address that failed
    fd_ = ::socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd_ < 0) return Status::Error(std::string("socket: ") + strerror(errno));
    int one = 1;
    ::setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    // Dead-peer detection for long watches (client-go relies on HTTP/2 pings instead).
    ::setsockopt(fd_, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof one);
    int idle = 30, interval = 10, count = 3;
    ::setsockopt(fd_, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof idle);
    ::setsockopt(fd_, IPPROTO_TCP, TCP_KEEPINTVL, &interval, sizeof interval);
    ::setsockopt(fd_, IPPROTO_TCP, TCP_KEEPCNT, &count, sizeof count);
    if (::connect(fd_, reinterpret_cast<sockaddr*>(&ss), len) != 0) {
      if (errno != EINPROGRESS) return Status::Error(std::string("connect: ") + strerror(errno));
      if (auto s = WaitFd(fd_, POLLOUT, deadline, cancel); !s.ok()) return s.Context("connect");
      int err = 0;
      socklen_t elen = sizeof err;
      ::getsockopt(fd_, SOL_SOCKET, SO_ERROR, &err, &elen);
      if (err != 0) return Status::Error(std::string("connect: ") + strerror(err));
    }
    return Status::Ok();
  }

  Status StartTls(SSL_CTX* ctx, const std::string& server_name, bool verify,
                  Clock::time_point deadline, const std::atomic<bool>* cancel) {
    ssl_ = SSL_new(ctx);
    if (!ssl_) return Status::Error("TLS: " + OpenSslError());
    SSL_set_fd(ssl_, fd_);
    bool is_ip = IpAddress::Parse(server_name).has_value();
    if (!is_ip) SSL_set_tlsext_host_name(ssl_, server_name.c_str());
    if (verify) {
      X509_VERIFY_PARAM* param = SSL_get0_param(ssl_);
      int ok = is_ip ? X509_VERIFY_PARAM_set1_ip_asc(param, server_name.c_str())
                     : X509_VERIFY_PARAM_set1_host(param, server_name.c_str(), 0);
      if (ok != 1) return Status::Error("TLS: cannot set expected server name " + server_name);
    }
    for (;;) {
      ERR_clear_error();
      int r = SSL_connect(ssl_);
      if (r == 1) return Status::Ok();
      int err = SSL_get_error(ssl_, r);
      if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE) {
        auto s = WaitFd(fd_, err == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT, deadline, cancel);
        if (!s.ok()) return s.Context("TLS handshake");
        continue;
      }
      long verify_result = SSL_get_verify_result(ssl_);
      if (verify && verify_result != X509_V_OK)
        return Status::Error(std::string("TLS: server certificate rejected: ") +
                             X509_verify_cert_error_string(verify_result));
      return Status::Error("TLS handshake: " + OpenSslError());
    }
  }

  Status WriteAll(std::string_view data, Clock::time_point deadline,
                  const std::atomic<bool>* cancel) {
    while (!data.empty()) {
      ssize_t n;
      if (ssl_) {
        ERR_clear_error();
        int r = SSL_write(ssl_, data.data(), static_cast<int>(data.size()));
        if (r <= 0) {
          int err = SSL_get_error(ssl_, r);
          if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE) {
            auto s = WaitFd(fd_, err == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT, deadline, cancel);
            if (!s.ok()) return s.Context("write");
            continue;
          }
          return Status::Error("TLS write: " + OpenSslError());
        }
        n = r;
      } else {
        n = ::send(fd_, data.data(), data.size(), MSG_NOSIGNAL);
        if (n < 0) {
          if (errno == EAGAIN || errno == EINTR) {
            if (auto s = WaitFd(fd_, POLLOUT, deadline, cancel); !s.ok()) return s.Context("write");
            continue;
          }
          return Status::Error(std::string("write: ") + strerror(errno));
        }
      }
      data.remove_prefix(static_cast<size_t>(n));
    }
    return Status::Ok();
  }

  // Reads some bytes; 0 means the peer closed the connection.
  Result<size_t> Read(char* buf, size_t size, Clock::time_point deadline,
                      const std::atomic<bool>* cancel) {
    for (;;) {
      if (ssl_) {
        ERR_clear_error();
        int r = SSL_read(ssl_, buf, static_cast<int>(size));
        if (r > 0) return static_cast<size_t>(r);
        int err = SSL_get_error(ssl_, r);
        if (err == SSL_ERROR_ZERO_RETURN) return size_t{0};
        if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE) {
          auto s = WaitFd(fd_, err == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT, deadline, cancel);
          if (!s.ok()) return s.Context("read");
          continue;
        }
        // A peer closing without close_notify is an EOF for HTTP framing purposes.
        if (err == SSL_ERROR_SYSCALL && ERR_peek_error() == 0) return size_t{0};
        return Status::Error("TLS read: " + OpenSslError());
      }
      ssize_t n = ::recv(fd_, buf, size, 0);
      if (n >= 0) return static_cast<size_t>(n);
      if (errno == EAGAIN || errno == EINTR) {
        if (auto s = WaitFd(fd_, POLLIN, deadline, cancel); !s.ok()) return s.Context("read");
        continue;
      }
      return Status::Error(std::string("read: ") + strerror(errno));
    }
  }

 private:
  int fd_ = -1;
  SSL* ssl_ = nullptr;
};

Result<X509*> ReadCert(BIO* bio) {
  X509* cert = PEM_read_bio_X509(bio, nullptr, nullptr, nullptr);
  if (!cert) return Status::Error("no PEM certificate");
  return cert;
}

// Parses a status line and header block (without the final empty line).
Result<HttpResponse> ParseHead(std::string_view head) {
  HttpResponse res;
  size_t eol = head.find("\r\n");
  std::string_view status_line = head.substr(0, eol);
  if (status_line.substr(0, 7) != "HTTP/1." || status_line.size() < 12)
    return Status::Error("malformed HTTP status line");
  int code = 0;
  for (size_t i = 9; i < 12; ++i) {
    if (status_line[i] < '0' || status_line[i] > '9')
      return Status::Error("malformed HTTP status code");
    code = code * 10 + (status_line[i] - '0');
  }
  res.status = code;
  size_t pos = eol == std::string_view::npos ? head.size() : eol + 2;
  while (pos < head.size()) {
    size_t end = head.find("\r\n", pos);
    if (end == std::string_view::npos) end = head.size();
    std::string_view line = head.substr(pos, end - pos);
    pos = end + 2;
    size_t colon = line.find(':');
    if (colon == std::string_view::npos || colon == 0)
      return Status::Error("malformed HTTP header line");
    std::string name = Lower(std::string(line.substr(0, colon)));
    std::string_view value = line.substr(colon + 1);
    while (!value.empty() && (value.front() == ' ' || value.front() == '\t'))
      value.remove_prefix(1);
    while (!value.empty() && (value.back() == ' ' || value.back() == '\t')) value.remove_suffix(1);
    res.headers.emplace_back(std::move(name), std::string(value));
  }
  return res;
}

}  // namespace

struct HttpClient::TlsContext {
  SSL_CTX* ctx = nullptr;
  bool verify = true;
  ~TlsContext() {
    if (ctx) SSL_CTX_free(ctx);
  }
};

HttpClient::~HttpClient() = default;

std::string HttpResponse::Header(std::string_view name) const {
  for (const auto& [k, v] : headers)
    if (k == name) return v;
  return "";
}

Result<Url> ParseUrl(const std::string& text) {
  Url url;
  std::string_view rest = text;
  if (rest.rfind("https://", 0) == 0) {
    url.tls = true;
    url.port = 443;
    rest.remove_prefix(8);
  } else if (rest.rfind("http://", 0) == 0) {
    url.tls = false;
    url.port = 80;
    rest.remove_prefix(7);
  } else {
    return Status::Error("server URL must start with https:// or http://: '" + text + "'");
  }
  size_t slash = rest.find('/');
  std::string_view authority = rest.substr(0, slash);
  if (slash != std::string_view::npos) {
    url.base_path = std::string(rest.substr(slash));
    while (!url.base_path.empty() && url.base_path.back() == '/') url.base_path.pop_back();
  }
  std::string_view port_text;
  if (!authority.empty() && authority.front() == '[') {
    size_t close = authority.find(']');
    if (close == std::string_view::npos) return Status::Error("bad IPv6 literal in " + text);
    url.host = std::string(authority.substr(1, close - 1));
    std::string_view after = authority.substr(close + 1);
    if (!after.empty()) {
      if (after.front() != ':') return Status::Error("bad port in " + text);
      port_text = after.substr(1);
    }
  } else {
    size_t colon = authority.rfind(':');
    url.host = std::string(authority.substr(0, colon));
    if (colon != std::string_view::npos) port_text = authority.substr(colon + 1);
  }
  if (url.host.empty()) return Status::Error("no host in server URL '" + text + "'");
  if (!port_text.empty()) {
    unsigned port = 0;
    for (char c : port_text) {
      if (c < '0' || c > '9' || port > 65535) return Status::Error("bad port in " + text);
      port = port * 10 + static_cast<unsigned>(c - '0');
    }
    if (port == 0 || port > 65535) return Status::Error("bad port in " + text);
    url.port = static_cast<uint16_t>(port);
  }
  return url;
}

Result<std::vector<IpAddress>> ResolveHost(const std::string& host, const std::string& hosts_file,
                                           const std::string& resolv_conf) {
  if (auto ip = IpAddress::Parse(host)) return std::vector<IpAddress>{*ip};
  std::vector<IpAddress> out;
  std::ifstream in(hosts_file);
  std::string line;
  std::string want = Lower(host);
  while (std::getline(in, line)) {
    line = line.substr(0, line.find('#'));
    std::istringstream fields(line);
    std::string addr, name;
    if (!(fields >> addr)) continue;
    auto ip = IpAddress::Parse(addr);
    if (!ip) continue;
    while (fields >> name) {
      if (Lower(name) == want && std::find(out.begin(), out.end(), *ip) == out.end())
        out.push_back(*ip);
    }
  }
  if (out.empty() && want == "localhost") {
    out.push_back(*IpAddress::Parse("127.0.0.1"));
    out.push_back(*IpAddress::Parse("::1"));
  }
  if (!out.empty()) return out;
  // Not a local name: ask the nameservers directly (no NSS in a static binary).
  auto dns = QueryDns(host, ReadNameservers(resolv_conf));
  if (!dns.ok())
    return Status::Error(dns.error() + " (and not in " + hosts_file +
                         "); use an IP address in the server URL or add the name to " + hosts_file);
  return dns;
}

Result<std::shared_ptr<HttpClient>> HttpClient::Create(const std::string& url_text,
                                                       const TlsOptions& tls) {
  auto url = ParseUrl(url_text);
  if (!url.ok()) return url.status();
  std::shared_ptr<HttpClient> client(new HttpClient());
  client->url_ = *url;
  client->server_name_ = tls.server_name.empty() ? url->host : tls.server_name;
  if (!url->tls) return client;

  auto ctx = std::make_unique<TlsContext>();
  ctx->ctx = SSL_CTX_new(TLS_client_method());
  if (!ctx->ctx) return Status::Error("TLS: " + OpenSslError());
  SSL_CTX_set_min_proto_version(ctx->ctx, TLS1_2_VERSION);
  SSL_CTX_set_mode(ctx->ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
  ctx->verify = !tls.insecure_skip_verify;
  if (ctx->verify) {
    SSL_CTX_set_verify(ctx->ctx, SSL_VERIFY_PEER, nullptr);
    if (tls.ca_pem.empty()) {
      SSL_CTX_set_default_verify_paths(ctx->ctx);
    } else {
      X509_STORE* store = SSL_CTX_get_cert_store(ctx->ctx);
      BIO* bio = BIO_new_mem_buf(tls.ca_pem.data(), static_cast<int>(tls.ca_pem.size()));
      int count = 0;
      while (X509* cert = PEM_read_bio_X509(bio, nullptr, nullptr, nullptr)) {
        X509_STORE_add_cert(store, cert);
        X509_free(cert);
        ++count;
      }
      BIO_free(bio);
      ERR_clear_error();  // the loop ends on a "no start line" error
      if (count == 0) return Status::Error("certificate authority: no PEM certificate found");
    }
  } else {
    SSL_CTX_set_verify(ctx->ctx, SSL_VERIFY_NONE, nullptr);
  }
  if (!tls.client_cert_pem.empty() || !tls.client_key_pem.empty()) {
    if (tls.client_cert_pem.empty() || tls.client_key_pem.empty())
      return Status::Error("client certificate and key must be given together");
    BIO* bio =
        BIO_new_mem_buf(tls.client_cert_pem.data(), static_cast<int>(tls.client_cert_pem.size()));
    auto leaf = ReadCert(bio);
    if (!leaf.ok()) {
      BIO_free(bio);
      return Status::Error("client certificate: no PEM certificate found");
    }
    SSL_CTX_use_certificate(ctx->ctx, *leaf);
    X509_free(*leaf);
    // Intermediates following the leaf go out in the handshake too.
    while (X509* extra = PEM_read_bio_X509(bio, nullptr, nullptr, nullptr))
      SSL_CTX_add_extra_chain_cert(ctx->ctx, extra);  // takes ownership
    ERR_clear_error();
    BIO_free(bio);
    bio = BIO_new_mem_buf(tls.client_key_pem.data(), static_cast<int>(tls.client_key_pem.size()));
    EVP_PKEY* key = PEM_read_bio_PrivateKey(bio, nullptr, nullptr, nullptr);
    BIO_free(bio);
    if (!key) {
      ERR_clear_error();
      return Status::Error("client key: no PEM private key found");
    }
    int ok = SSL_CTX_use_PrivateKey(ctx->ctx, key);
    EVP_PKEY_free(key);
    if (ok != 1 || SSL_CTX_check_private_key(ctx->ctx) != 1) {
      ERR_clear_error();
      return Status::Error("client key does not match the client certificate");
    }
  }
  client->tls_ = std::move(ctx);
  return client;
}

Result<HttpResponse> HttpClient::Do(const HttpRequest& request, std::chrono::milliseconds timeout,
                                    const std::atomic<bool>* cancel) const {
  std::string body;
  auto deadline = Clock::now() + timeout;
  auto head = Stream(
      request, [](const HttpResponse&) { return true; },
      [&](std::string_view chunk) {
        body.append(chunk);
        return Clock::now() < deadline;
      },
      timeout, cancel);
  if (!head.ok()) return head.status();
  if (Clock::now() >= deadline) return Status::Error("timed out reading the response");
  head->body = std::move(body);
  return head;
}

Result<HttpResponse> HttpClient::Stream(const HttpRequest& request,
                                        const std::function<bool(const HttpResponse&)>& on_head,
                                        const std::function<bool(std::string_view)>& on_body,
                                        std::chrono::milliseconds idle_timeout,
                                        const std::atomic<bool>* cancel) const {
  auto addresses = ResolveHost(url_.host);
  if (!addresses.ok()) return addresses.status();
  auto deadline = [&] { return Clock::now() + idle_timeout; };
  Connection conn;
  Status connected = Status::Error("no address");
  for (const auto& ip : *addresses) {
    connected = conn.Connect(ip, url_.port, deadline(), cancel);
    if (connected.ok()) break;
  }
  std::string where = url_.host + ":" + std::to_string(url_.port);
  if (!connected.ok()) return connected.Context(where);
  if (tls_) {
    if (auto s = conn.StartTls(tls_->ctx, server_name_, tls_->verify, deadline(), cancel); !s.ok())
      return s.Context(where);
  }

  std::string out = request.method + " " + url_.base_path + request.path + " HTTP/1.1\r\n";
  std::string host_header =
      url_.host.find(':') != std::string::npos ? "[" + url_.host + "]" : url_.host;
  out += "Host: " + host_header + ":" + std::to_string(url_.port) + "\r\n";
  out += "Connection: close\r\n";
  bool accept_encoding_set = false;
  for (const auto& [k, v] : request.headers) {
    out += k + ": " + v + "\r\n";
    if (Lower(k) == "accept-encoding") accept_encoding_set = true;
  }
  // Bodies with Content-Encoding: gzip are inflated below, as Go's transport does.
  if (!accept_encoding_set) out += "Accept-Encoding: gzip\r\n";
  if (!request.body.empty() || request.method == "POST" || request.method == "PUT" ||
      request.method == "PATCH")
    out += "Content-Length: " + std::to_string(request.body.size()) + "\r\n";
  out += "\r\n";
  out += request.body;
  if (auto s = conn.WriteAll(out, deadline(), cancel); !s.ok()) return s.Context(where);

  // Head: read until the blank line.
  std::string buf;
  char chunk[16384];
  size_t head_end;
  HttpResponse head;
  for (;;) {
    for (;;) {
      head_end = buf.find("\r\n\r\n");
      if (head_end != std::string::npos) break;
      if (buf.size() > kMaxHeaderBytes) return Status::Error(where + ": HTTP header too large");
      auto n = conn.Read(chunk, sizeof chunk, deadline(), cancel);
      if (!n.ok()) return n.status().Context(where);
      if (*n == 0) return Status::Error(where + ": connection closed before the response");
      buf.append(chunk, *n);
    }
    auto parsed = ParseHead(std::string_view(buf).substr(0, head_end));
    if (!parsed.ok()) return parsed.status().Context(where);
    buf.erase(0, head_end + 4);
    head = std::move(*parsed);
    if (head.status >= 200 || head.status == 101) break;  // skip 100 Continue and friends
  }
  if (!on_head(head)) return head;

  bool no_body = request.method == "HEAD" || head.status == 204 || head.status == 304;
  if (no_body) return head;
  bool chunked = Lower(head.Header("transfer-encoding")).find("chunked") != std::string::npos;
  std::string length_text = head.Header("content-length");
  ChunkedDecoder decoder;
  std::string decoded;
  uint64_t remaining = 0;
  bool has_length = !chunked && !length_text.empty();
  if (has_length) {
    char* end = nullptr;
    remaining = std::strtoull(length_text.c_str(), &end, 10);
    if (!end || *end) return Status::Error(where + ": malformed Content-Length");
  }
  // Content-Encoding: gzip is undone as the bytes arrive (a watch is never buffered whole).
  std::unique_ptr<GzipDecoder> gzip;
  if (Lower(head.Header("content-encoding")) == "gzip") gzip = std::make_unique<GzipDecoder>();
  std::string inflated;
  bool caller_stopped = false;
  auto deliver = [&](std::string_view bytes, Status* error) -> bool {
    if (gzip) {
      inflated.clear();
      if (auto s = gzip->Feed(bytes, &inflated); !s.ok()) {
        *error = s.Context(where);
        return false;
      }
      bytes = inflated;
      if (bytes.empty()) return true;
    }
    if (!on_body(bytes)) caller_stopped = true;
    return !caller_stopped;
  };
  // At the end of the body: a gzip stream must be complete too.
  auto finish = [&]() -> Result<HttpResponse> {
    if (gzip && !caller_stopped && !gzip->done())
      return Status::Error(where + ": gzip: compressed body ends before the end of the stream");
    return head;
  };
  // Feeds bytes through the framing; returns false when the body (or the caller) is done.
  auto consume = [&](std::string_view bytes, Status* error) -> bool {
    if (chunked) {
      decoded.clear();
      if (auto s = decoder.Feed(bytes, &decoded); !s.ok()) {
        *error = s.Context(where);
        return false;
      }
      if (!decoded.empty() && !deliver(decoded, error)) return false;
      return !decoder.done();
    }
    if (has_length) {
      size_t n = static_cast<size_t>(std::min<uint64_t>(remaining, bytes.size()));
      remaining -= n;
      if (n > 0 && !deliver(bytes.substr(0, n), error)) return false;
      return remaining > 0;
    }
    return bytes.empty() || deliver(bytes, error);
  };
  Status error;
  if (has_length && remaining == 0) return head;
  if (!buf.empty() && !consume(buf, &error)) {
    if (!error.ok()) return error;
    return finish();
  }
  for (;;) {
    auto n = conn.Read(chunk, sizeof chunk, deadline(), cancel);
    if (!n.ok()) return n.status().Context(where);
    if (*n == 0) {
      if (chunked || (has_length && remaining > 0))
        return Status::Error(where + ": connection closed in the middle of the response body");
      return finish();  // body delimited by close
    }
    if (!consume(std::string_view(chunk, *n), &error)) {
      if (!error.ok()) return error;
      return finish();
    }
  }
}

}  // namespace kr::k8s
