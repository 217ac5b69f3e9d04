// SPDX-License-Identifier: Apache-2.0
// kube-router: pkg/cmd/kube-router.go uses clientcmd.BuildConfigFromFlags(--master,
// --kubeconfig) and rest.InClusterConfig(); this reproduces their rules.
#include "kube_router/k8s/client_config.h"

#include <yaml-cpp/yaml.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "kube_router/base/base64.h"

namespace kr::k8s {
namespace {

Result<std::string> ReadWholeFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return Status::Error("cannot read " + path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string Resolve(const std::string& dir, const std::string& path) {
  if (path.empty() || path[0] == '/') return path;
  return (std::filesystem::path(dir) / path).string();
}

// A named entry of clusters/users/contexts: its inner map, or an error naming what is wrong.
Result<YAML::Node> FindNamed(const YAML::Node& root, const char* list, const char* inner,
                             const std::string& name, const std::string& where) {
  YAML::Node seq = root[list];
  if (seq && !seq.IsSequence()) return Status::Error(where + ": " + list + ": not a list");
  if (seq) {
    for (const auto& item : seq) {
      if (!item.IsMap() || !item["name"] || item["name"].as<std::string>() != name) continue;
      YAML::Node body = item[inner];
      if (!body) return YAML::Node(YAML::NodeType::Map);
      if (!body.IsMap())
        return Status::Error(where + ": " + list + "[name=" + name + "]." + inner + ": not a map");
      return body;
    }
  }
  return Status::Error(where + ": " + list + ": no entry named '" + name + "'");
}

std::string Str(const YAML::Node& map, const char* key) {
  YAML::Node v = map[key];
  return v && v.IsScalar() ? v.as<std::string>() : "";
}

// Inline `<field>-data` (base64) wins over the file `<field>`.
Result<std::string> PemField(const YAML::Node& map, const std::string& field,
                             const std::string& dir, const std::string& where) {
  std::string data = Str(map, (field + "-data").c_str());
  if (!data.empty()) {
    auto decoded = Base64Decode(data);
    if (!decoded) return Status::Error(where + "." + field + "-data: invalid base64");
    return *decoded;
  }
  std::string file = Str(map, field.c_str());
  if (file.empty()) return std::string();
  auto content = ReadWholeFile(Resolve(dir, file));
  if (!content.ok()) return Status::Error(where + "." + field + ": " + content.error());
  return content;
}

Result<ClientConfig> ParseKubeconfigYaml(const YAML::Node& root, const std::string& path,
                                         const std::string& master) {
  std::string where = "kubeconfig " + path;
  if (!root.IsMap()) return Status::Error(where + ": not a YAML map");
  std::string dir = std::filesystem::path(path).parent_path().string();
  std::string context_name = Str(root, "current-context");
  if (context_name.empty()) return Status::Error(where + ": current-context: not set");
  auto context = FindNamed(root, "contexts", "context", context_name, where);
  if (!context.ok()) return context.status();
  std::string cluster_name = Str(*context, "cluster");
  std::string user_name = Str(*context, "user");

  ClientConfig cfg;
  cfg.source = where;
  std::string cw = where + ": clusters[name=" + cluster_name + "].cluster";
  auto cluster = FindNamed(root, "clusters", "cluster", cluster_name, where);
  if (!cluster.ok()) return cluster.status();
  cfg.server = master.empty() ? Str(*cluster, "server") : master;
  if (cfg.server.empty()) return Status::Error(cw + ".server: not set");
  cfg.tls_server_name = Str(*cluster, "tls-server-name");
  std::string insecure = Str(*cluster, "insecure-skip-tls-verify");
  cfg.insecure_skip_tls_verify = insecure == "true";
  auto ca = PemField(*cluster, "certificate-authority", dir, cw);
  if (!ca.ok()) return ca.status();
  cfg.ca_pem = *ca;
  if (cfg.insecure_skip_tls_verify && !cfg.ca_pem.empty())
    return Status::Error(cw + ": certificate-authority and insecure-skip-tls-verify are both set");

  if (user_name.empty()) return cfg;
  std::string uw = where + ": users[name=" + user_name + "].user";
  auto user = FindNamed(root, "users", "user", user_name, where);
  if (!user.ok()) return user.status();
  auto cert = PemField(*user, "client-certificate", dir, uw);
  if (!cert.ok()) return cert.status();
  auto key = PemField(*user, "client-key", dir, uw);
  if (!key.ok()) return key.status();
  if (cert->empty() != key->empty())
    return Status::Error(uw + ": client-certificate and client-key must be given together");
  cfg.client_cert_pem = *cert;
  cfg.client_key_pem = *key;
  cfg.token = Str(*user, "token");
  std::string token_file = Str(*user, "tokenFile");
  if (!token_file.empty()) cfg.token_file = Resolve(dir, token_file);
  if (cfg.token.empty() && !cfg.token_file.empty()) {
    auto t = ReadWholeFile(cfg.token_file);
    if (!t.ok()) return Status::Error(uw + ".tokenFile: " + t.error());
  }
  cfg.username = Str(*user, "username");
  cfg.password = Str(*user, "password");
  if (!cfg.username.empty() && (!cfg.token.empty() || !cfg.token_file.empty()))
    return Status::Error(uw + ": username/password or bearer token may be set, but not both");
  if (YAML::Node exec = (*user)["exec"]) {
    std::string ew = uw + ".exec";
    if (!exec.IsMap()) return Status::Error(ew + ": not a map");
    ExecConfig e;
    e.command = Str(exec, "command");
    if (e.command.empty()) return Status::Error(ew + ".command: not set");
    e.api_version = Str(exec, "apiVersion");
    if (e.api_version != "client.authentication.k8s.io/v1" &&
        e.api_version != "client.authentication.k8s.io/v1beta1")
      return Status::Error(ew + ".apiVersion: '" + e.api_version +
                           "' is not client.authentication.k8s.io/v1 or /v1beta1");
    if (YAML::Node args = exec["args"]) {
      if (!args.IsSequence()) return Status::Error(ew + ".args: not a list");
      for (const auto& a : args) e.args.push_back(a.as<std::string>());
    }
    if (YAML::Node env = exec["env"]) {
      if (!env.IsSequence()) return Status::Error(ew + ".env: not a list");
      for (const auto& v : env) {
        if (!v.IsMap() || !v["name"]) return Status::Error(ew + ".env: entry without name");
        e.env.emplace_back(Str(v, "name"), Str(v, "value"));
      }
    }
    e.provide_cluster_info = Str(exec, "provideClusterInfo") == "true";
    e.working_dir = dir;
    // client-go runs the plugin only when no other credential is configured.
    bool has_other = !cfg.token.empty() || !cfg.token_file.empty() || !cfg.username.empty() ||
                     !cfg.client_cert_pem.empty();
    if (!has_other) cfg.exec = std::move(e);
  }
  // client-go applies credentials only to TLS connections (IsConfigTransportTLS).
  if (cfg.server.rfind("https://", 0) != 0) {
    cfg.token.clear();
    cfg.token_file.clear();
    cfg.username.clear();
    cfg.password.clear();
    cfg.client_cert_pem.clear();
    cfg.client_key_pem.clear();
    cfg.exec.reset();
  }
  return cfg;
}

}  // namespace

EnvLookup ProcessEnv() {
  return [](const std::string& name) -> std::optional<std::string> {
    const char* v = std::getenv(name.c_str());
    if (!v) return std::nullopt;
    return std::string(v);
  };
}

Result<ClientConfig> ParseKubeconfig(const std::string& yaml_text, const std::string& path,
                                     const std::string& master) {
  try {
    return ParseKubeconfigYaml(YAML::Load(yaml_text), path, master);
  } catch (const YAML::Exception& e) {
    return Status::Error("kubeconfig " + path + ": invalid YAML: " + e.what());
  }
}

Result<ClientConfig> LoadClientConfig(const ConnectionOptions& options, const EnvLookup& env) {
  if (!options.kubeconfig.empty()) {
    auto text = ReadWholeFile(options.kubeconfig);
    if (!text.ok()) return Status::Error("kubeconfig " + options.kubeconfig + ": cannot read file");
    auto cfg = ParseKubeconfig(*text, options.kubeconfig, options.master);
    if (cfg.ok() && cfg->exec) {
      cfg->exec->timeout = options.exec_plugin_timeout;
      cfg->exec->cancel = options.cancel;
    }
    return cfg;
  }
  std::string dir = options.service_account_dir;
  ClientConfig cfg;
  cfg.token_file = dir + "/token";
  std::string ca_file = dir + "/ca.crt";
  if (!options.master.empty()) {
    // kube-router fakes the in-cluster env to reach here: service account files are optional.
    cfg.source = "--master " + options.master;
    cfg.server = options.master;
    if (!ReadWholeFile(cfg.token_file).ok()) cfg.token_file.clear();
    if (auto ca = ReadWholeFile(ca_file); ca.ok()) cfg.ca_pem = *ca;
    if (cfg.server.rfind("https://", 0) != 0) cfg.token_file.clear();
    return cfg;
  }
  cfg.source = "in-cluster config";
  auto host = env("KUBERNETES_SERVICE_HOST");
  auto port = env("KUBERNETES_SERVICE_PORT");
  if (!host || !port || host->empty() || port->empty())
    return Status::Error(
        "no --kubeconfig or --master given, and not running in a cluster: "
        "KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT must be set");
  std::string h = host->find(':') != std::string::npos ? "[" + *host + "]" : *host;
  cfg.server = "https://" + h + ":" + *port;
  if (!ReadWholeFile(cfg.token_file).ok())
    return Status::Error("in-cluster config: cannot read service account token " + cfg.token_file);
  // client-go only logs an unreadable CA and falls back to the system roots.
  if (auto ca = ReadWholeFile(ca_file); ca.ok()) cfg.ca_pem = *ca;
  return cfg;
}

}  // namespace kr::k8s
