// SPDX-License-Identifier: Apache-2.0
// An HTTP client on cpp-httplib (the Kubernetes API client's transport): one connection per request
// (`Connection: close`), TLS 1.2+ with CA verification (only the configured CA when one is
// given), SNI and host/IP checks, client certificates, deadlines, cancellation, and streaming
// of bodies for watches. Host names resolve by net::ResolveHost (/etc/hosts, then a direct
// DNS query, net/dns.h), and the address is handed to httplib: the agent performs no NSS lookups (a
// static glibc binary cannot load NSS modules). Limits (issue 16 item 6): the response head must be
// complete within 30 s (or the idle timeout, if shorter); a whole response body is at most 128 MiB
// after decoding; a gzip body may inflate at most 200x (beyond its first 4 MiB); header lines and
// counts are bounded by httplib; 100 Continue is skipped within the head deadline, other 1xx
// answers are errors. An HttpClient is immutable after Create and may be used from many threads at
// once.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "kube_router/base/ip.h"
#include "kube_router/base/status.h"

namespace kr::net {

struct Url {
  bool tls = true;
  std::string host;  // without brackets for IPv6
  uint16_t port = 443;
  std::string base_path;  // "" or "/prefix" (a server URL may carry a path)
};
// http(s)://host[:port][/path]; IPv6 literals in brackets.
Result<Url> ParseUrl(const std::string& url);

struct TlsOptions {
  std::string ca_pem;  // empty: the system's default roots
  bool insecure_skip_verify = false;
  std::string server_name;      // expected name in the certificate (and SNI); default: URL host
  std::string client_cert_pem;  // certificate (chain) presented to the server, with its key
  std::string client_key_pem;
};

struct HttpResponse {
  int status = 0;
  std::vector<std::pair<std::string, std::string>> headers;  // names lower-cased
  std::string body;
  // First value of a header (name in lower case), "" if absent.
  std::string Header(std::string_view name) const;
};

struct HttpRequest {
  std::string method = "GET";
  std::string path = "/";  // with query string; the URL's base path is prepended
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;
};

class HttpClient {
 public:
  ~HttpClient();
  // Fails on a malformed URL or unusable TLS material (naming which).
  static Result<std::shared_ptr<HttpClient>> Create(const std::string& url, const TlsOptions& tls);

  // Sends the request and reads the whole response. Fails on connection, TLS or protocol
  // errors, when `timeout` passes, or when *cancel becomes true (checked every 100 ms).
  Result<HttpResponse> Do(const HttpRequest& request, std::chrono::milliseconds timeout,
                          const std::atomic<bool>* cancel = nullptr) const;

  // For long responses (watches): `on_head` gets status and headers (returning false ends the
  // exchange), then `on_body` gets the decoded body bytes as they arrive (returning false ends
  // it). Requests carry `Accept-Encoding: gzip` unless the caller sets Accept-Encoding; a body
  // with `Content-Encoding: gzip` is inflated as it streams (gzip.h), and a corrupt or
  // truncated one fails the request. Ends ok at the end of the body; fails on errors, cancellation,
  // or when no byte arrives for `idle_timeout`. The returned response has status and headers, no
  // body.
  Result<HttpResponse> Stream(const HttpRequest& request,
                              const std::function<bool(const HttpResponse&)>& on_head,
                              const std::function<bool(std::string_view)>& on_body,
                              std::chrono::milliseconds idle_timeout,
                              const std::atomic<bool>* cancel = nullptr) const;

  const Url& url() const { return url_; }

 private:
  HttpClient() = default;
  struct TlsContext;
  using Clock = std::chrono::steady_clock;

  // Do and Stream: tries each resolved address until one connects.
  Result<HttpResponse> Exchange(const HttpRequest& request,
                                const std::function<bool(const HttpResponse&)>& on_head,
                                const std::function<bool(std::string_view)>& on_body,
                                std::chrono::milliseconds idle_timeout,
                                std::optional<Clock::time_point> total_deadline, size_t max_body,
                                const std::atomic<bool>* cancel) const;
  Result<HttpResponse> ExchangeWith(const IpAddress& ip, const HttpRequest& request,
                                    const std::function<bool(const HttpResponse&)>& on_head,
                                    const std::function<bool(std::string_view)>& on_body,
                                    std::chrono::milliseconds idle_timeout,
                                    std::optional<Clock::time_point> total_deadline,
                                    size_t max_body, const std::atomic<bool>* cancel,
                                    bool* connected) const;

  Url url_;
  std::unique_ptr<TlsContext> tls_;
  std::string server_name_;
};

}  // namespace kr::net
