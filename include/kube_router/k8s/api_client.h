// SPDX-License-Identifier: Apache-2.0
// An authenticated connection to the API server: the HTTP client plus credentials (bearer
// token, token file re-read at most once a minute and after a 401, basic auth, client
// certificates, exec credential plugins). Thread-safe; informers and controllers share one.
#pragma once

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>

#include "kube_router/base/status.h"
#include "kube_router/k8s/client_config.h"
#include "kube_router/net/http_client.h"

namespace kr::k8s {

// Requests and answers are the net module's HTTP client types (informers and writes read them).
using net::HttpClient;
using net::HttpRequest;
using net::HttpResponse;

class ApiClient {
 public:
  // Fails on unusable TLS material or a credential that cannot be obtained (token file
  // unreadable, exec plugin failing), naming the source.
  static Result<std::shared_ptr<ApiClient>> Create(const ClientConfig& config);

  // One request (path with query, e.g. "/api/v1/nodes/n1"). A 401 answer refreshes the
  // credentials and retries once. HTTP error statuses are not errors: check status.
  Result<HttpResponse> Request(const std::string& method, const std::string& path,
                               const std::string& body = "",
                               const std::string& content_type = "application/json",
                               std::chrono::milliseconds timeout = std::chrono::seconds(60),
                               const std::atomic<bool>* cancel = nullptr);

  // A streaming GET (watch). On a 401 head the credentials are refreshed for the next call.
  Result<HttpResponse> Stream(const std::string& path,
                              const std::function<bool(const HttpResponse&)>& on_head,
                              const std::function<bool(std::string_view)>& on_body,
                              std::chrono::milliseconds idle_timeout,
                              const std::atomic<bool>* cancel);

  // Forces the next request to re-read the token file / re-run the exec plugin.
  void InvalidateCredentials();

  const ClientConfig& config() const { return config_; }

 private:
  explicit ApiClient(ClientConfig config) : config_(std::move(config)) {}
  struct Prepared {
    std::shared_ptr<HttpClient> http;
    HttpRequest request;
  };
  Result<Prepared> Prepare(const std::string& method, const std::string& path);
  Status RefreshLocked();  // caller holds mu_

  ClientConfig config_;
  std::mutex mu_;
  std::shared_ptr<HttpClient> http_;
  std::string authorization_;  // header value, "" for none
  std::chrono::steady_clock::time_point credentials_expire_;
  bool credentials_valid_ = false;
  std::string exec_cert_pem_, exec_key_pem_;
};

}  // namespace kr::k8s
