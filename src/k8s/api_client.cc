// SPDX-License-Identifier: Apache-2.0
#include "kube_router/k8s/api_client.h"

#include <ctime>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "kube_router/base/base64.h"
#include "kube_router/base/exec.h"
#include "kube_router/base/log.h"

namespace kr::k8s {
namespace {

using Clock = std::chrono::steady_clock;
// client-go's cached token file source re-reads at most once a minute.
constexpr auto kTokenFileMaxAge = std::chrono::minutes(1);
// An ExecCredential is a few KiB (a token, or a certificate and key).
constexpr size_t kExecPluginMaxOutput = 1u << 20;

std::string Trim(std::string s) {
  while (!s.empty() && isspace(static_cast<unsigned char>(s.back()))) s.pop_back();
  size_t i = 0;
  while (i < s.size() && isspace(static_cast<unsigned char>(s[i]))) ++i;
  return s.substr(i);
}

// RFC 3339 "2006-01-02T15:04:05Z" (fraction and offsets accepted) -> seconds since epoch.
std::optional<time_t> ParseRfc3339(const std::string& s) {
  std::tm tm{};
  int consumed = 0;
  // Every conversion has a width of at most 4 digits, so none can overflow an int.
  // NOLINTNEXTLINE(cert-err34-c)
  if (sscanf(s.c_str(), "%4d-%2d-%2dT%2d:%2d:%2d%n", &tm.tm_year, &tm.tm_mon, &tm.tm_mday,
             &tm.tm_hour, &tm.tm_min, &tm.tm_sec, &consumed) != 6)
    return std::nullopt;
  tm.tm_year -= 1900;
  tm.tm_mon -= 1;
  time_t t = timegm(&tm);
  const char* rest = s.c_str() + consumed;
  if (*rest == '.')
    while (*++rest >= '0' && *rest <= '9') {
    }
  if (*rest == '+' || *rest == '-') {
    int hh = 0, mm = 0;
    if (sscanf(rest + 1, "%2d:%2d", &hh, &mm) != 2) return std::nullopt;  // NOLINT(cert-err34-c)
    int offset = (hh * 60 + mm) * 60;
    t += (*rest == '+') ? -offset : offset;
  }
  return t;
}

std::string UserAgent() { return std::string("kube-router/") + KR_VERSION + " (linux/amd64)"; }

}  // namespace

Result<std::shared_ptr<ApiClient>> ApiClient::Create(const ClientConfig& config) {
  std::shared_ptr<ApiClient> client(new ApiClient(config));
  std::lock_guard lock(client->mu_);
  if (auto s = client->RefreshLocked(); !s.ok()) return s;
  return client;
}

void ApiClient::InvalidateCredentials() {
  std::lock_guard lock(mu_);
  credentials_valid_ = false;
}

Status ApiClient::RefreshLocked() {
  std::string where = config_.source;
  std::string cert = config_.client_cert_pem, key = config_.client_key_pem;
  authorization_.clear();
  credentials_expire_ = Clock::time_point::max();
  if (!config_.token.empty()) {
    authorization_ = "Bearer " + config_.token;
  } else if (!config_.token_file.empty()) {
    std::ifstream in(config_.token_file);
    std::stringstream ss;
    ss << in.rdbuf();
    if (!in) return Status::Error(where + ": cannot read token file " + config_.token_file);
    authorization_ = "Bearer " + Trim(ss.str());
    credentials_expire_ = Clock::now() + kTokenFileMaxAge;
  } else if (!config_.username.empty()) {
    authorization_ = "Basic " + Base64Encode(config_.username + ":" + config_.password);
  } else if (config_.exec) {
    const ExecConfig& e = *config_.exec;
    nlohmann::json info = {{"apiVersion", e.api_version},
                           {"kind", "ExecCredential"},
                           {"spec", {{"interactive", false}}}};
    if (e.provide_cluster_info) {
      info["spec"]["cluster"] = {{"server", config_.server},
                                 {"tls-server-name", config_.tls_server_name},
                                 {"insecure-skip-tls-verify", config_.insecure_skip_tls_verify}};
    }
    // The plugin's argv goes to it as an argv, and its environment through the spawn's envp:
    // nothing is re-parsed (an argument containing '=' or starting with '-' stays an argument).
    ExecOptions run_options;
    run_options.timeout = e.timeout;
    run_options.cancel = e.cancel;
    run_options.max_output = kExecPluginMaxOutput;
    run_options.env = e.env;
    run_options.env.emplace_back("KUBERNETES_EXEC_INFO", info.dump());
    std::string command = e.command;
    if (command.find('/') != std::string::npos && command[0] != '/')
      command = e.working_dir + "/" + command;
    std::vector<std::string> argv = {command};
    argv.insert(argv.end(), e.args.begin(), e.args.end());
    auto run = Exec(argv, "", run_options);
    std::string ew = where + ": exec credential plugin " + e.command;
    if (!run.ok()) return Status::Error(ew + ": " + run.error());
    if (run->exit_code != 0)
      return Status::Error(ew + ": exited with code " + std::to_string(run->exit_code));
    nlohmann::json out = nlohmann::json::parse(run->out, nullptr, false);
    if (out.is_discarded() || !out.is_object() || out.value("kind", "") != "ExecCredential")
      return Status::Error(ew + ": output is not an ExecCredential");
    if (out.value("apiVersion", "") != e.api_version)
      return Status::Error(ew + ": output apiVersion does not match " + e.api_version);
    auto status = out.find("status");
    if (status == out.end() || !status->is_object())
      return Status::Error(ew + ": ExecCredential has no status");
    std::string token = status->value("token", "");
    std::string c = status->value("clientCertificateData", "");
    std::string k = status->value("clientKeyData", "");
    if (c.empty() != k.empty())
      return Status::Error(ew + ": clientCertificateData and clientKeyData must come together");
    if (token.empty() && c.empty()) return Status::Error(ew + ": ExecCredential has no credential");
    if (!token.empty()) authorization_ = "Bearer " + token;
    if (!c.empty()) {
      cert = c;
      key = k;
    }
    std::string expiry = status->value("expirationTimestamp", "");
    if (!expiry.empty()) {
      auto t = ParseRfc3339(expiry);
      if (!t) return Status::Error(ew + ": bad expirationTimestamp");
      auto left = std::chrono::seconds(*t - std::time(nullptr));
      credentials_expire_ = Clock::now() + std::max(left, std::chrono::seconds(0));
    }
  }
  if (!http_ || cert != exec_cert_pem_ || key != exec_key_pem_) {
    net::TlsOptions tls;
    tls.ca_pem = config_.ca_pem;
    tls.insecure_skip_verify = config_.insecure_skip_tls_verify;
    tls.server_name = config_.tls_server_name;
    tls.client_cert_pem = cert;
    tls.client_key_pem = key;
    auto http = HttpClient::Create(config_.server, tls);
    if (!http.ok()) return http.status().Context(where);
    http_ = *http;
    exec_cert_pem_ = cert;
    exec_key_pem_ = key;
  }
  credentials_valid_ = true;
  return Status::Ok();
}

Result<ApiClient::Prepared> ApiClient::Prepare(const std::string& method, const std::string& path) {
  std::lock_guard lock(mu_);
  if (!credentials_valid_ || Clock::now() >= credentials_expire_) {
    if (auto s = RefreshLocked(); !s.ok()) {
      // Keep the previous credentials (if any) rather than going unauthenticated.
      if (!http_) return s;
      KR_LOG_WARN("refreshing API credentials failed, keeping the previous ones: {}", s.message());
      credentials_valid_ = true;
      credentials_expire_ = Clock::now() + std::chrono::seconds(10);
    }
  }
  Prepared p;
  p.http = http_;
  p.request.method = method;
  p.request.path = path;
  p.request.headers.emplace_back("Accept", "application/json");
  p.request.headers.emplace_back("User-Agent", UserAgent());
  if (!authorization_.empty()) p.request.headers.emplace_back("Authorization", authorization_);
  return p;
}

Result<HttpResponse> ApiClient::Request(const std::string& method, const std::string& path,
                                        const std::string& body, const std::string& content_type,
                                        std::chrono::milliseconds timeout,
                                        const std::atomic<bool>* cancel) {
  for (int attempt = 0;; ++attempt) {
    auto prepared = Prepare(method, path);
    if (!prepared.ok()) return prepared.status();
    if (!body.empty()) {
      prepared->request.body = body;
      prepared->request.headers.emplace_back("Content-Type", content_type);
    }
    auto res = prepared->http->Do(prepared->request, timeout, cancel);
    if (res.ok() && res->status == 401 && attempt == 0) {
      InvalidateCredentials();  // rotated token or expired exec credential: retry once
      continue;
    }
    return res;
  }
}

Result<HttpResponse> ApiClient::Stream(const std::string& path,
                                       const std::function<bool(const HttpResponse&)>& on_head,
                                       const std::function<bool(std::string_view)>& on_body,
                                       std::chrono::milliseconds idle_timeout,
                                       const std::atomic<bool>* cancel) {
  auto prepared = Prepare("GET", path);
  if (!prepared.ok()) return prepared.status();
  auto res = prepared->http->Stream(prepared->request, on_head, on_body, idle_timeout, cancel);
  if (res.ok() && res->status == 401) InvalidateCredentials();
  return res;
}

}  // namespace kr::k8s
