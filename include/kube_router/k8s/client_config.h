// SPDX-License-Identifier: Apache-2.0
// Where the API server is and how to authenticate: from a kubeconfig file (--kubeconfig, with
// --master overriding its server), or the in-cluster service account. Follows client-go's
// clientcmd rules (see the shared reference kubernetes-api.md section 1.8). Errors name the
// file and the field; credentials never appear in messages.
#pragma once

#include <atomic>
#include <chrono>
#include <functional>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "kube_router/base/status.h"
#include "kube_router/k8s/watcher.h"

namespace kr::k8s {

// users[].user.exec: a credential plugin printing an ExecCredential.
struct ExecConfig {
  std::string command;
  std::vector<std::string> args;
  std::vector<std::pair<std::string, std::string>> env;
  std::string api_version;  // client.authentication.k8s.io/v1 or /v1beta1
  bool provide_cluster_info = false;
  std::string working_dir;  // the kubeconfig's directory: relative commands resolve there
  // From ConnectionOptions: a hung plugin is killed after `timeout` or once `*cancel` is set.
  std::chrono::milliseconds timeout = kDefaultExecPluginTimeout;
  const std::atomic<bool>* cancel = nullptr;
};

struct ClientConfig {
  std::string server;  // https://host:port[/path]
  std::string ca_pem;  // empty = system roots
  bool insecure_skip_tls_verify = false;
  std::string tls_server_name;
  std::string client_cert_pem;
  std::string client_key_pem;
  std::string token;
  std::string token_file;  // re-read at most once a minute and after a 401
  std::string username;
  std::string password;
  std::optional<ExecConfig> exec;
  std::string source;  // "kubeconfig /path" or "in-cluster config", for messages
};

// Looks up environment variables (injectable for tests).
using EnvLookup = std::function<std::optional<std::string>(const std::string&)>;
EnvLookup ProcessEnv();

// --kubeconfig given: that file only (with --master overriding the server). Only --master:
// that server plus the service account token and CA when present. Neither: in-cluster config
// from KUBERNETES_SERVICE_HOST/PORT and the service account directory.
Result<ClientConfig> LoadClientConfig(const ConnectionOptions& options,
                                      const EnvLookup& env = ProcessEnv());

// Parses kubeconfig YAML text; `path` is used for messages and to resolve relative paths.
Result<ClientConfig> ParseKubeconfig(const std::string& yaml_text, const std::string& path,
                                     const std::string& master_override);

}  // namespace kr::k8s
