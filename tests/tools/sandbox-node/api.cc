// SPDX-License-Identifier: Apache-2.0
#include "api.h"

#include <chrono>

#include "kube_router/k8s/client_config.h"

namespace sandbox {

kr::Result<std::unique_ptr<Api>> Api::FromKubeconfig(const std::string& path) {
  kr::k8s::ConnectionOptions options;
  options.kubeconfig = path;
  auto config = kr::k8s::LoadClientConfig(options);
  if (!config.ok()) return config.status();
  kr::net::TlsOptions tls;
  tls.ca_pem = config->ca_pem;
  tls.insecure_skip_verify = config->insecure_skip_tls_verify;
  tls.server_name = config->tls_server_name;
  tls.client_cert_pem = config->client_cert_pem;
  tls.client_key_pem = config->client_key_pem;
  auto http = kr::net::HttpClient::Create(config->server, tls);
  if (!http.ok()) return http.status();
  auto api = std::unique_ptr<Api>(new Api());
  api->http_ = *http;
  api->token_ = config->token;
  return api;
}

kr::Result<Reply> Api::Call(const std::string& method, const std::string& path, const json& body,
                            const std::string& content_type) {
  kr::net::HttpRequest request;
  request.method = method;
  request.path = path;
  request.headers.emplace_back("Accept", "application/json");
  if (!token_.empty()) request.headers.emplace_back("Authorization", "Bearer " + token_);
  if (!body.is_null()) {
    request.body = body.dump();
    request.headers.emplace_back("Content-Type", content_type);
  }
  auto response = http_->Do(request, std::chrono::seconds(10));
  if (!response.ok()) return kr::Status::Error(method + " " + path + ": " + response.error());
  Reply reply;
  reply.status = response->status;
  reply.body = json::parse(response->body, nullptr, false);
  if (reply.body.is_discarded()) reply.body = nullptr;
  return reply;
}

kr::Result<json> Api::List(const std::string& path) {
  auto reply = Call("GET", path);
  if (!reply.ok()) return reply.status();
  if (reply->status != 200 || !reply->body.is_object() || !reply->body["items"].is_array())
    return kr::Status::Error("GET " + path + ": HTTP " + std::to_string(reply->status));
  return reply->body["items"];
}

}  // namespace sandbox
