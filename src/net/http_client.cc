// SPDX-License-Identifier: Apache-2.0
#include "kube_router/net/http_client.h"

#include <httplib.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <signal.h>

#include <algorithm>
#include <condition_variable>
#include <fstream>
#include <mutex>
#include <sstream>
#include <thread>

#include "interim_bound.h"
#include "kube_router/net/dns.h"
#include "kube_router/net/gzip.h"

namespace kr::net {
namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

// Limits on what an API server (or whatever answers in its place) can make the agent hold
// (issue 16 item 6).
// The response head must be complete this long after the request started, whatever the idle
// timeout (a server that trickles 1xx lines or header bytes cannot hold a request forever).
constexpr milliseconds kHeadDeadline{30000};
// A whole (non-streamed) response body, after decoding. List pages are a few MiB.
constexpr size_t kMaxWholeBody = size_t{128} << 20;
// Inflated bytes per compressed byte over a response; JSON compresses 5-30x. Checked once the
// inflated total passes kRatioGrace, so small bodies are never refused.
constexpr uint64_t kMaxInflationRatio = 200;
constexpr uint64_t kRatioGrace = uint64_t{4} << 20;
// How often the watchdog looks at cancellation and the head deadline.
constexpr milliseconds kWatchdogTick{100};

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

// Verifies the server's chain against only the configured CA (httplib would also load the
// system roots into its context; a kubeconfig CA replaces them, as in client-go).
int VerifyAgainstConfiguredRoots(X509_STORE_CTX* ctx, void* arg) {
  auto* roots = static_cast<X509_STORE*>(arg);
  X509_STORE_CTX* ours = X509_STORE_CTX_new();
  if (!ours) return 0;
  int ok = X509_STORE_CTX_init(ours, roots, X509_STORE_CTX_get0_cert(ctx),
                               X509_STORE_CTX_get0_untrusted(ctx)) == 1 &&
           X509_verify_cert(ours) == 1;
  X509_STORE_CTX_set_error(ctx, ok ? X509_V_OK : X509_STORE_CTX_get_error(ours));
  X509_STORE_CTX_free(ours);
  return ok ? 1 : 0;
}

// OpenSSL writes to the socket with write(), which raises SIGPIPE when the server has gone.
// The agent ignores SIGPIPE, but a library must not depend on that: the signal is blocked on
// this thread for the exchange and a pending one consumed.
class SigpipeBlock {
 public:
  SigpipeBlock() {
    sigemptyset(&pipe_);
    sigaddset(&pipe_, SIGPIPE);
    sigset_t pending;
    sigpending(&pending);
    was_pending_ = sigismember(&pending, SIGPIPE) == 1;
    pthread_sigmask(SIG_BLOCK, &pipe_, &saved_);
  }
  ~SigpipeBlock() {
    sigset_t pending;
    sigpending(&pending);
    if (!was_pending_ && sigismember(&pending, SIGPIPE) == 1) {
      timespec zero{0, 0};
      sigtimedwait(&pipe_, nullptr, &zero);
    }
    pthread_sigmask(SIG_SETMASK, &saved_, nullptr);
  }
  SigpipeBlock(const SigpipeBlock&) = delete;
  SigpipeBlock& operator=(const SigpipeBlock&) = delete;

 private:
  sigset_t pipe_;
  sigset_t saved_;
  bool was_pending_ = false;
};

}  // namespace

// TLS material parsed once at Create and applied to each connection's context.
struct HttpClient::TlsContext {
  bool verify = true;
  X509_STORE* roots = nullptr;  // nullptr: the system's default roots
  X509* leaf = nullptr;
  std::vector<X509*> chain;  // intermediates sent after the leaf
  EVP_PKEY* key = nullptr;
  ~TlsContext() {
    if (roots) X509_STORE_free(roots);
    if (leaf) X509_free(leaf);
    for (X509* c : chain) X509_free(c);
    if (key) EVP_PKEY_free(key);
  }
  // Configures one connection's SSL_CTX (httplib's).
  void Apply(SSL_CTX* ctx) const {
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    if (roots) SSL_CTX_set_cert_verify_callback(ctx, VerifyAgainstConfiguredRoots, roots);
    if (leaf) {
      SSL_CTX_use_certificate(ctx, leaf);
      for (X509* c : chain) SSL_CTX_add1_chain_cert(ctx, c);
      SSL_CTX_use_PrivateKey(ctx, key);
    }
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

Result<std::shared_ptr<HttpClient>> HttpClient::Create(const std::string& url_text,
                                                       const TlsOptions& tls) {
  auto url = ParseUrl(url_text);
  if (!url.ok()) return url.status();
  std::shared_ptr<HttpClient> client(new HttpClient());
  client->url_ = *url;
  client->server_name_ = tls.server_name.empty() ? url->host : tls.server_name;
  if (!url->tls) return client;

  auto ctx = std::make_unique<TlsContext>();
  ctx->verify = !tls.insecure_skip_verify;
  if (ctx->verify && !tls.ca_pem.empty()) {
    ctx->roots = X509_STORE_new();
    BIO* bio = BIO_new_mem_buf(tls.ca_pem.data(), static_cast<int>(tls.ca_pem.size()));
    int count = 0;
    while (X509* cert = PEM_read_bio_X509(bio, nullptr, nullptr, nullptr)) {
      X509_STORE_add_cert(ctx->roots, cert);
      X509_free(cert);
      ++count;
    }
    BIO_free(bio);
    ERR_clear_error();  // the loop ends on a "no start line" error
    if (count == 0) return Status::Error("certificate authority: no PEM certificate found");
  }
  if (!tls.client_cert_pem.empty() || !tls.client_key_pem.empty()) {
    if (tls.client_cert_pem.empty() || tls.client_key_pem.empty())
      return Status::Error("client certificate and key must be given together");
    BIO* bio =
        BIO_new_mem_buf(tls.client_cert_pem.data(), static_cast<int>(tls.client_cert_pem.size()));
    ctx->leaf = PEM_read_bio_X509(bio, nullptr, nullptr, nullptr);
    if (!ctx->leaf) {
      BIO_free(bio);
      ERR_clear_error();
      return Status::Error("client certificate: no PEM certificate found");
    }
    while (X509* extra = PEM_read_bio_X509(bio, nullptr, nullptr, nullptr))
      ctx->chain.push_back(extra);
    ERR_clear_error();
    BIO_free(bio);
    bio = BIO_new_mem_buf(tls.client_key_pem.data(), static_cast<int>(tls.client_key_pem.size()));
    ctx->key = PEM_read_bio_PrivateKey(bio, nullptr, nullptr, nullptr);
    BIO_free(bio);
    if (!ctx->key) {
      ERR_clear_error();
      return Status::Error("client key: no PEM private key found");
    }
    if (X509_check_private_key(ctx->leaf, ctx->key) != 1) {
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
  auto head = Exchange(
      request, [](const HttpResponse&) { return true; },
      [&](std::string_view chunk) {
        body.append(chunk);
        return true;
      },
      timeout, Clock::now() + timeout, kMaxWholeBody, cancel);
  if (!head.ok()) return head.status();
  head->body = std::move(body);
  return head;
}

Result<HttpResponse> HttpClient::Stream(const HttpRequest& request,
                                        const std::function<bool(const HttpResponse&)>& on_head,
                                        const std::function<bool(std::string_view)>& on_body,
                                        std::chrono::milliseconds idle_timeout,
                                        const std::atomic<bool>* cancel) const {
  return Exchange(request, on_head, on_body, idle_timeout, std::nullopt, 0, cancel);
}

Result<HttpResponse> HttpClient::Exchange(const HttpRequest& request,
                                          const std::function<bool(const HttpResponse&)>& on_head,
                                          const std::function<bool(std::string_view)>& on_body,
                                          std::chrono::milliseconds idle_timeout,
                                          std::optional<Clock::time_point> total_deadline,
                                          size_t max_body, const std::atomic<bool>* cancel) const {
  auto addresses = net::ResolveHost(url_.host);
  if (!addresses.ok()) return addresses.status();
  std::string where = url_.host + ":" + std::to_string(url_.port);
  Status last = Status::Error("no address");
  for (const IpAddress& ip : *addresses) {
    bool connected = false;
    auto result = ExchangeWith(ip, request, on_head, on_body, idle_timeout, total_deadline,
                               max_body, cancel, &connected);
    if (result.ok() || connected) {
      if (!result.ok()) return result.status().Context(where);
      return result;
    }
    last = result.status();  // not connected: the next address may work
  }
  return last.Context(where);
}

Result<HttpResponse> HttpClient::ExchangeWith(
    const IpAddress& ip, const HttpRequest& request,
    const std::function<bool(const HttpResponse&)>& on_head,
    const std::function<bool(std::string_view)>& on_body, std::chrono::milliseconds idle_timeout,
    std::optional<Clock::time_point> total_deadline, size_t max_body,
    const std::atomic<bool>* cancel, bool* connected) const {
  SigpipeBlock no_sigpipe;
  // One client (and connection) per exchange: watches run for minutes on several threads.
  InterimCount interim;  // 1xx responses before the answer, bounded by count
  std::unique_ptr<InterimBoundedClient> client;
  // TLS: the name in the certificate (and SNI) may differ from the URL host; httplib connects
  // to the address mapped to it below (no NSS lookups in a static binary).
  const std::string& name = tls_ ? server_name_ : url_.host;
  client = std::make_unique<InterimBoundedClient>(name, url_.port, tls_ != nullptr, &interim);
  if (tls_) {
    tls_->Apply(client->ssl_context());
    client->enable_server_certificate_verification(tls_->verify);
  }
  client->set_hostname_addr_map({{name, ip.ToString()}});
  auto timeout = idle_timeout;
  if (total_deadline) {
    timeout =
        std::min(timeout, std::chrono::duration_cast<milliseconds>(*total_deadline - Clock::now()));
  }
  timeout = std::max(timeout, milliseconds(1));
  client->set_connection_timeout(timeout);
  client->set_read_timeout(idle_timeout);
  client->set_write_timeout(timeout);
  client->set_keep_alive(false);
  client->set_follow_location(false);
  client->set_decompress(false);  // inflated below, with limits

  httplib::Request req;
  req.method = request.method;
  req.path = url_.base_path + request.path;
  std::string host = url_.host.find(':') != std::string::npos ? "[" + url_.host + "]" : url_.host;
  req.set_header("Host", host + ":" + std::to_string(url_.port));
  bool accept_encoding_set = false;
  for (const auto& [k, v] : request.headers) {
    req.set_header(k, v);
    if (Lower(k) == "accept-encoding") accept_encoding_set = true;
  }
  // Bodies with Content-Encoding: gzip are inflated below, as Go's transport does.
  if (!accept_encoding_set) req.set_header("Accept-Encoding", "gzip");
  req.body = request.body;
  if (request.body.empty() &&
      (request.method == "POST" || request.method == "PUT" || request.method == "PATCH")) {
    req.set_header("Content-Length", "0");
  }

  // Shared with the watchdog thread.
  std::mutex mu;
  std::condition_variable finished_cv;
  bool finished = false;
  std::atomic<bool> head_seen{false};
  std::string stopped_by;  // guarded by mu: why the watchdog ended the exchange

  HttpResponse head;
  std::unique_ptr<GzipDecoder> gzip;
  std::string inflated;
  uint64_t raw_bytes = 0, body_bytes = 0;
  Status failure;  // our own reason to abort (limits, gzip, informational answers)
  bool caller_stopped = false;

  req.response_handler = [&](const httplib::Response& r) {
    head_seen = true;
    *connected = true;
    if (r.status < 200) {
      // httplib skips 100 Continue itself (at most kMaxInterimResponses of them, counted
      // by interim_bound.h, and within the head deadline); any other
      // informational status as a final answer is a protocol error.
      failure = Status::Error("unexpected informational response " + std::to_string(r.status));
      return false;
    }
    head.status = r.status;
    for (const auto& [k, v] : r.headers) head.headers.emplace_back(Lower(k), v);
    if (Lower(r.get_header_value("Content-Encoding")) == "gzip") {
      gzip = std::make_unique<GzipDecoder>();
    }
    if (!on_head(head)) {
      caller_stopped = true;
      return false;
    }
    return true;
  };
  req.content_receiver = [&](const char* data, size_t size, uint64_t, uint64_t) {
    std::string_view bytes(data, size);
    raw_bytes += size;
    if (gzip) {
      inflated.clear();
      if (Status s = gzip->Feed(bytes, &inflated); !s.ok()) {
        failure = s;
        return false;
      }
      bytes = inflated;
      if (body_bytes + bytes.size() > kRatioGrace &&
          body_bytes + bytes.size() > raw_bytes * kMaxInflationRatio) {
        failure =
            Status::Error("gzip: body inflates more than " + std::to_string(kMaxInflationRatio) +
                          "x (" + std::to_string(raw_bytes) + " compressed bytes); refused");
        return false;
      }
    }
    body_bytes += bytes.size();
    if (max_body != 0 && body_bytes > max_body) {
      failure =
          Status::Error("response body over " + std::to_string(max_body >> 20) + " MiB; refused");
      return false;
    }
    if (bytes.empty()) return true;
    if (!on_body(bytes)) {
      caller_stopped = true;
      return false;
    }
    return true;
  };

  auto head_deadline = Clock::now() + std::min(kHeadDeadline, idle_timeout);
  std::thread watchdog([&] {
    std::unique_lock lock(mu);
    while (!finished) {
      finished_cv.wait_for(lock, kWatchdogTick);
      if (finished) break;
      const char* reason = nullptr;
      auto now = Clock::now();
      if (cancel && cancel->load()) {
        reason = "cancelled";
      } else if (!head_seen && now >= head_deadline) {
        reason = "no complete response head in time";
      } else if (total_deadline && now >= *total_deadline) {
        reason = "timed out reading the response";
      }
      if (reason) {
        stopped_by = reason;
        client->stop();  // shuts the socket down; send() returns
        break;
      }
    }
  });
  httplib::Response res;
  httplib::Error error = httplib::Error::Success;
  bool ok = client->send(req, res, error);
  {
    std::lock_guard lock(mu);
    finished = true;
  }
  finished_cv.notify_all();
  watchdog.join();

  if (!failure.ok()) return failure;
  if (interim.exceeded) {
    *connected = true;
    return Status::Error("more than " + std::to_string(kMaxInterimResponses) +
                         " informational (1xx) responses before the answer; refused");
  }
  if (caller_stopped) return head;
  if (!stopped_by.empty()) return Status::Error(stopped_by);
  if (!ok) {
    switch (error) {
      case httplib::Error::Connection:
        return Status::Error("connect to " + ip.ToString() + " failed");
      case httplib::Error::SSLServerVerification:
        *connected = true;
        return Status::Error(
            "TLS: server certificate verification failed: " +
            std::string(X509_verify_cert_error_string(client->get_openssl_verify_result())));
      case httplib::Error::SSLServerHostnameVerification:
        *connected = true;
        return Status::Error("TLS: server certificate is not valid for " + server_name_);
      case httplib::Error::SSLConnection:
        *connected = true;
        return Status::Error("TLS handshake failed: " + OpenSslError());
      default:
        *connected = *connected || head_seen;
        return Status::Error(head_seen ? "connection failed in the middle of the response body"
                                       : "request failed: " + httplib::to_string(error));
    }
  }
  *connected = true;
  if (!head_seen) {  // httplib answered without calling the handler (no body, e.g. HEAD)
    head.status = res.status;
    for (const auto& [k, v] : res.headers) head.headers.emplace_back(Lower(k), v);
  }
  if (gzip && !gzip->done() && body_bytes + raw_bytes > 0)
    return Status::Error("gzip: compressed body ends before the end of the stream");
  return head;
}

}  // namespace kr::net
