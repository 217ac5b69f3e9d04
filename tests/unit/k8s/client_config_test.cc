#include "kube_router/k8s/client_config.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <map>

#include "fake_apiserver_fixture.h"
#include "lib/netns.h"

namespace kr::k8s::client_config_test {
namespace {

using kr::k8s::testing::WriteFile;
using kr::testing::TempDir;

std::string Kubeconfig(const std::string& cluster, const std::string& user,
                       const std::string& context = "ctx") {
  return "apiVersion: v1\nkind: Config\ncurrent-context: " + context +
         "\ncontexts:\n- name: ctx\n  context: {cluster: c1, user: u1}\n"
         "clusters:\n- name: c1\n  cluster:\n" +
         cluster + "users:\n- name: u1\n  user:\n" + user;
}

Result<ClientConfig> Load(const TempDir& dir, const std::string& text,
                          const std::string& master = "") {
  std::string path = dir.path() + "/config";
  WriteFile(path, text);
  ConnectionOptions opts;
  opts.kubeconfig = path;
  opts.master = master;
  return LoadClientConfig(opts);
}

TEST(ClientConfigTest, TokenAndInlineCa) {
  TempDir dir;
  auto cfg = Load(dir, Kubeconfig("    server: https://192.0.2.1:6443\n"
                                  "    certificate-authority-data: Q0EgUEVN\n"
                                  "    tls-server-name: kubernetes.local\n",
                                  "    token: abc\n"));
  ASSERT_TRUE(cfg.ok()) << cfg.error();
  EXPECT_EQ(cfg->server, "https://192.0.2.1:6443");
  EXPECT_EQ(cfg->ca_pem, "CA PEM");
  EXPECT_EQ(cfg->tls_server_name, "kubernetes.local");
  EXPECT_EQ(cfg->token, "abc");
  EXPECT_FALSE(cfg->insecure_skip_tls_verify);
}

TEST(ClientConfigTest, RelativeFilesResolveAgainstTheKubeconfigDirectory) {
  TempDir dir;
  std::filesystem::create_directories(dir.path() + "/pki");
  WriteFile(dir.path() + "/pki/ca.pem", "the ca");
  WriteFile(dir.path() + "/pki/c.pem", "the cert");
  WriteFile(dir.path() + "/pki/c.key", "the key");
  WriteFile(dir.path() + "/pki/token", "tok\n");
  auto cfg =
      Load(dir, Kubeconfig("    server: https://h:1\n    certificate-authority: pki/ca.pem\n",
                           "    client-certificate: pki/c.pem\n"
                           "    client-key: pki/c.key\n"
                           "    tokenFile: pki/token\n"));
  ASSERT_TRUE(cfg.ok()) << cfg.error();
  EXPECT_EQ(cfg->ca_pem, "the ca");
  EXPECT_EQ(cfg->client_cert_pem, "the cert");
  EXPECT_EQ(cfg->client_key_pem, "the key");
  EXPECT_EQ(cfg->token_file, dir.path() + "/pki/token");
}

TEST(ClientConfigTest, BasicAuthExecAndMasterOverride) {
  TempDir dir;
  auto basic = Load(dir,
                    Kubeconfig("    server: https://h:1\n    insecure-skip-tls-verify: true\n",
                               "    username: admin\n    password: pw\n"),
                    "https://198.51.100.7:6443");
  ASSERT_TRUE(basic.ok()) << basic.error();
  EXPECT_EQ(basic->server, "https://198.51.100.7:6443");
  EXPECT_TRUE(basic->insecure_skip_tls_verify);
  EXPECT_EQ(basic->username, "admin");
  EXPECT_EQ(basic->password, "pw");

  auto exec = Load(dir, Kubeconfig("    server: https://h:1\n",
                                   "    exec:\n      apiVersion: client.authentication.k8s.io/v1\n"
                                   "      command: ./plugin\n      args: [get, token]\n"
                                   "      env: [{name: A, value: b}]\n"
                                   "      provideClusterInfo: true\n"
                                   "      interactiveMode: Never\n"));
  ASSERT_TRUE(exec.ok()) << exec.error();
  ASSERT_TRUE(exec->exec.has_value());
  EXPECT_EQ(exec->exec->command, "./plugin");
  EXPECT_EQ(exec->exec->args, (std::vector<std::string>{"get", "token"}));
  EXPECT_EQ(exec->exec->env.at(0).first, "A");
  EXPECT_TRUE(exec->exec->provide_cluster_info);
  EXPECT_EQ(exec->exec->working_dir, dir.path());

  // client-go skips the exec plugin when another credential is configured.
  auto both = Load(dir, Kubeconfig("    server: https://h:1\n",
                                   "    token: t\n    exec:\n"
                                   "      apiVersion: client.authentication.k8s.io/v1beta1\n"
                                   "      command: plugin\n"));
  ASSERT_TRUE(both.ok()) << both.error();
  EXPECT_FALSE(both->exec.has_value());
}

TEST(ClientConfigTest, CredentialsAreOnlyUsedOverTls) {
  TempDir dir;
  auto cfg = Load(dir, Kubeconfig("    server: http://127.0.0.1:8080\n", "    token: secret\n"));
  ASSERT_TRUE(cfg.ok()) << cfg.error();
  EXPECT_TRUE(cfg->token.empty());
}

TEST(ClientConfigTest, ErrorsNameTheFileAndField) {
  TempDir dir;
  struct Case {
    const char* name;
    std::string text;
    const char* want;
  } cases[] = {
      {"bad yaml", "clusters: [", "invalid YAML"},
      {"no current context", "apiVersion: v1\nkind: Config\n", "current-context"},
      {"unknown context", Kubeconfig("    server: https://h:1\n", "    token: t\n", "other"),
       "contexts: no entry named 'other'"},
      {"no server", Kubeconfig("    insecure-skip-tls-verify: true\n", "    token: t\n"),
       "clusters[name=c1].cluster.server"},
      {"unreadable CA",
       Kubeconfig("    server: https://h:1\n    certificate-authority: nope.pem\n",
                  "    token: t\n"),
       "certificate-authority: cannot read"},
      {"bad base64",
       Kubeconfig("    server: https://h:1\n    certificate-authority-data: '***'\n",
                  "    token: t\n"),
       "certificate-authority-data: invalid base64"},
      {"cert without key",
       Kubeconfig("    server: https://h:1\n", "    client-certificate-data: Q0EgUEVN\n"),
       "client-certificate and client-key"},
      {"token and basic",
       Kubeconfig("    server: https://h:1\n", "    token: t\n    username: u\n    password: p\n"),
       "may be set, but not both"},
      {"unreadable token file", Kubeconfig("    server: https://h:1\n", "    tokenFile: missing\n"),
       "users[name=u1].user.tokenFile"},
      {"exec api version",
       Kubeconfig("    server: https://h:1\n", "    exec: {command: x, apiVersion: v9}\n"),
       "exec.apiVersion"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    auto cfg = Load(dir, c.text);
    ASSERT_FALSE(cfg.ok());
    EXPECT_NE(cfg.error().find(dir.path() + "/config"), std::string::npos) << cfg.error();
    EXPECT_NE(cfg.error().find(c.want), std::string::npos) << cfg.error();
    EXPECT_EQ(cfg.error().find("secret"), std::string::npos);
  }
  ConnectionOptions missing;
  missing.kubeconfig = dir.path() + "/does-not-exist";
  auto cfg = LoadClientConfig(missing);
  ASSERT_FALSE(cfg.ok());
  EXPECT_NE(cfg.error().find("does-not-exist"), std::string::npos);
}

TEST(ClientConfigTest, InClusterConfig) {
  TempDir dir;
  WriteFile(dir.path() + "/token", "sa-token");
  WriteFile(dir.path() + "/ca.crt", "cluster ca");
  std::map<std::string, std::string> env = {{"KUBERNETES_SERVICE_HOST", "fd00::1"},
                                            {"KUBERNETES_SERVICE_PORT", "443"}};
  EnvLookup lookup = [&](const std::string& k) -> std::optional<std::string> {
    auto it = env.find(k);
    if (it == env.end()) return std::nullopt;
    return it->second;
  };
  ConnectionOptions opts;
  opts.service_account_dir = dir.path();
  auto cfg = LoadClientConfig(opts, lookup);
  ASSERT_TRUE(cfg.ok()) << cfg.error();
  EXPECT_EQ(cfg->server, "https://[fd00::1]:443");
  EXPECT_EQ(cfg->token_file, dir.path() + "/token");
  EXPECT_EQ(cfg->ca_pem, "cluster ca");

  // --master alone: that server, service account credentials when present.
  opts.master = "https://192.0.2.10:6443";
  cfg = LoadClientConfig(opts, lookup);
  ASSERT_TRUE(cfg.ok()) << cfg.error();
  EXPECT_EQ(cfg->server, "https://192.0.2.10:6443");
  EXPECT_EQ(cfg->token_file, dir.path() + "/token");
  opts.master.clear();

  env.clear();
  cfg = LoadClientConfig(opts, lookup);
  ASSERT_FALSE(cfg.ok());
  EXPECT_NE(cfg.error().find("KUBERNETES_SERVICE_HOST"), std::string::npos);

  env = {{"KUBERNETES_SERVICE_HOST", "10.96.0.1"}, {"KUBERNETES_SERVICE_PORT", "443"}};
  std::filesystem::remove(dir.path() + "/token");
  cfg = LoadClientConfig(opts, lookup);
  ASSERT_FALSE(cfg.ok());
  EXPECT_NE(cfg.error().find(dir.path() + "/token"), std::string::npos);
}

}  // namespace
}  // namespace kr::k8s::client_config_test
