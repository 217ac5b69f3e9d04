// The agent's HTTPS client and credentials against fake-apiserver over TLS: CA verification,
// tls-server-name, client certificates, bearer tokens, a 401 followed by token rotation, basic
// rejection of a wrong CA, and exec credential plugins. Certificates are made per test with the
// openssl CLI.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <spdlog/sinks/ringbuffer_sink.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include "fake_apiserver_fixture.h"
#include "kube_router/base/exec.h"
#include "kube_router/k8s/api_client.h"
#include "kube_router/k8s/client_config.h"
#include "kube_router/k8s/watcher.h"
#include "lib/free_port.h"

namespace kr::k8s::tls_auth_test {
namespace {

using kr::k8s::testing::RecordingSink;
using kr::k8s::testing::WatcherHarness;
using kr::k8s::testing::WriteFile;
using kr::testing::WaitFor;
using namespace std::chrono_literals;

// ca.pem/ca.key, server.pem/server.key (SAN IP:127.0.0.1 and DNS:kubernetes.local),
// client.pem/client.key signed by the CA, and other-ca.pem (an unrelated CA).
void MakeCertificates(const std::string& dir) {
  std::string script = "set -e; cd '" + dir + R"(';
    ec='-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes'
    openssl req -x509 $ec -keyout ca.key -out ca.pem -days 2 -subj /CN=test-ca 2>/dev/null
    openssl req -x509 $ec -keyout other-ca.key -out other-ca.pem -days 2 -subj /CN=other 2>/dev/null
    openssl req $ec -keyout server.key -out server.csr -subj /CN=apiserver 2>/dev/null
    printf 'subjectAltName=IP:127.0.0.1,DNS:kubernetes.local\n' > server.ext
    openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 \
      -extfile server.ext -out server.pem 2>/dev/null
    openssl req $ec -keyout client.key -out client.csr -subj /CN=kube-router 2>/dev/null
    openssl x509 -req -in client.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 \
      -out client.pem 2>/dev/null
  )";
  auto r = Exec({"sh", "-c", script});
  ASSERT_TRUE(r.ok()) << r.error();
  ASSERT_EQ(r->exit_code, 0) << r->err;
}

std::string Kubeconfig(const std::string& server, const std::string& cluster_extra,
                       const std::string& user) {
  return "apiVersion: v1\nkind: Config\ncurrent-context: c\n"
         "contexts: [{name: c, context: {cluster: k, user: u}}]\n"
         "clusters:\n- name: k\n  cluster:\n    server: " +
         server + "\n" + cluster_extra + "users:\n- name: u\n  user:\n" + user;
}

struct TlsHarness : WatcherHarness {
  // `client_ca`: require client certificates signed by ca.pem; `token`: accept this bearer token.
  TlsHarness(bool client_ca, const std::string& token, const std::string& basic = "") {
    MakeCertificates(dir.path());
    std::vector<std::string> extra;
    if (!basic.empty()) extra = {"--basic-auth", basic};
    if (client_ca) extra.insert(extra.end(), {"--client-ca", dir.path() + "/ca.pem"});
    if (!token.empty()) extra.insert(extra.end(), {"--token", token});
    WriteFile(dir.path() + "/ns.yaml", "apiVersion: v1\nkind: Namespace\nmetadata: {name: demo}\n");
    std::vector<std::string> args = {"--tls-cert",  dir.path() + "/server.pem",
                                     "--tls-key",   dir.path() + "/server.key",
                                     "--manifests", dir.path() + "/ns.yaml"};
    args.insert(args.end(), extra.begin(), extra.end());
    StartServer(args);
  }
  std::string WriteKubeconfig(const std::string& cluster_extra, const std::string& user) {
    std::string path = dir.path() + "/agent-kubeconfig";
    WriteFile(path, Kubeconfig(server->url(), cluster_extra, user));
    return path;
  }
  // Namespaces only, through `kubeconfig`.
  Status Start(const std::string& kubeconfig, std::chrono::milliseconds timeout = 30s) {
    ConnectionOptions opts;
    opts.kubeconfig = kubeconfig;
    return StartWatcher(opts, {ResourceKind::kNamespace}, timeout);
  }
};

std::string CaLine(const TlsHarness& h) {
  return "    certificate-authority: " + h.dir.path() + "/ca.pem\n";
}

TEST(TlsAuthTest, ClientCertificateAuthentication) {
  TlsHarness h(/*client_ca=*/true, "");
  std::string d = h.dir.path();
  // Without a credential the server answers 401 and the cache cannot sync.
  {
    auto cfg = LoadClientConfig({.kubeconfig = h.WriteKubeconfig(CaLine(h), "    {}\n")});
    ASSERT_TRUE(cfg.ok()) << cfg.error();
    auto client = ApiClient::Create(*cfg);
    ASSERT_TRUE(client.ok()) << client.error();
    auto res = (*client)->Request("GET", "/api/v1/namespaces");
    ASSERT_TRUE(res.ok()) << res.error();
    EXPECT_EQ(res->status, 401);
  }
  std::string kc =
      h.WriteKubeconfig(CaLine(h), "    client-certificate: " + d +
                                       "/client.pem\n    client-key: " + d + "/client.key\n");
  ASSERT_TRUE(h.Start(kc).ok()) << h.server->Log();
  EXPECT_TRUE(h.cluster->namespaces.Get("demo"));
}

TEST(TlsAuthTest, BearerTokenAndServerNameOverride) {
  TlsHarness h(false, "s3cret-token");
  // The certificate names kubernetes.local and 127.0.0.1; tls-server-name picks the name.
  std::string kc = h.WriteKubeconfig(CaLine(h) + "    tls-server-name: kubernetes.local\n",
                                     "    token: s3cret-token\n");
  ASSERT_TRUE(h.Start(kc).ok()) << h.server->Log();
  EXPECT_TRUE(h.cluster->namespaces.Get("demo"));
}

TEST(TlsAuthTest, WrongCaOrWrongNameIsRejected) {
  TlsHarness h(false, "");
  for (const auto& extra : {"    certificate-authority: " + h.dir.path() + "/other-ca.pem\n",
                            CaLine(h) + "    tls-server-name: not-the-server.local\n"}) {
    SCOPED_TRACE(extra);
    auto cfg = LoadClientConfig({.kubeconfig = h.WriteKubeconfig(extra, "    {}\n")});
    ASSERT_TRUE(cfg.ok()) << cfg.error();
    auto client = ApiClient::Create(*cfg);
    ASSERT_TRUE(client.ok()) << client.error();
    auto res = (*client)->Request("GET", "/api/v1/namespaces");
    ASSERT_FALSE(res.ok());
    EXPECT_NE(res.error().find("certificate"), std::string::npos) << res.error();
  }
  // insecure-skip-tls-verify accepts it.
  auto cfg = LoadClientConfig(
      {.kubeconfig = h.WriteKubeconfig("    insecure-skip-tls-verify: true\n", "    {}\n")});
  ASSERT_TRUE(cfg.ok()) << cfg.error();
  auto res = (*ApiClient::Create(*cfg))->Request("GET", "/api/v1/namespaces");
  ASSERT_TRUE(res.ok()) << res.error();
  EXPECT_EQ(res->status, 200);
}

// Log lines while it lives (the informer threads log too, so a thread-safe sink).
class CapturedLog {
 public:
  CapturedLog()
      : previous_(spdlog::default_logger()),
        sink_(std::make_shared<spdlog::sinks::ringbuffer_sink_mt>(1000)) {
    spdlog::set_default_logger(std::make_shared<spdlog::logger>("test", sink_));
  }
  ~CapturedLog() { spdlog::set_default_logger(previous_); }
  std::vector<std::string> Lines(const std::string& needle) const {
    std::vector<std::string> out;
    for (const auto& line : sink_->last_formatted())
      if (line.find(needle) != std::string::npos) out.push_back(line);
    return out;
  }

 private:
  std::shared_ptr<spdlog::logger> previous_;
  std::shared_ptr<spdlog::sinks::ringbuffer_sink_mt> sink_;
};

// Finding 10: a kubeconfig that turns certificate verification off is said so once, as a
// warning naming the file, when the connection starts; a verifying one says nothing of it.
TEST(TlsAuthTest, InsecureSkipTlsVerifyIsWarnedAtStartAndOnlyThen) {
  TlsHarness h(false, "");
  {
    CapturedLog log;
    ASSERT_TRUE(h.Start(h.WriteKubeconfig(CaLine(h), "    {}\n")).ok()) << h.server->Log();
    h.watcher->Stop();
    h.watcher.reset();
    EXPECT_TRUE(log.Lines("insecure").empty()) << log.Lines("insecure").front();
    EXPECT_EQ(log.Lines("API server").size(), 1u);  // the capture did see the start-up
  }
  CapturedLog log;
  std::string kubeconfig = h.WriteKubeconfig("    insecure-skip-tls-verify: true\n", "    {}\n");
  ASSERT_TRUE(h.Start(kubeconfig).ok()) << h.server->Log();
  auto lines = log.Lines("insecure-skip-tls-verify");
  ASSERT_EQ(lines.size(), 1u);
  EXPECT_NE(lines[0].find("[warning]"), std::string::npos) << lines[0];
  EXPECT_NE(lines[0].find(kubeconfig), std::string::npos) << lines[0];
  EXPECT_NE(lines[0].find("not verified"), std::string::npos) << lines[0];
}

// The bound on interim responses holds over TLS too (the agent's real connection): a server
// (socat with the test CA's certificate) answers n "100 Continue" before a 200.
TEST(TlsAuthTest, InterimResponsesAreBoundedByCountOverTls) {
  kr::testing::TempDir dir;
  MakeCertificates(dir.path());
  net::TlsOptions tls;
  tls.ca_pem = kr::testing::ReadFile(dir.path() + "/ca.pem");
  for (int n : {16, 17}) {
    SCOPED_TRACE(std::to_string(n) + " interim responses");
    std::string answer;
    for (int i = 0; i < n; ++i) answer += "HTTP/1.1 100 Continue\r\n\r\n";
    answer += "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok";
    WriteFile(dir.path() + "/answer", answer);
    int port = kr::testing::FreeLoopbackPort();
    kr::testing::Process server({"socat",
                                 "OPENSSL-LISTEN:" + std::to_string(port) +
                                     ",bind=127.0.0.1,reuseaddr,verify=0,cert=" + dir.path() +
                                     "/server.pem,key=" + dir.path() + "/server.key",
                                 "SYSTEM:head -c 1 >/dev/null; cat " + dir.path() + "/answer"},
                                dir.path() + "/socat.log");
    ASSERT_TRUE(WaitFor(
        [&] {
          return Exec({"sh", "-c", "ss -ltn | grep -q '127.0.0.1:" + std::to_string(port) + " '"})
                     ->exit_code == 0;
        },
        10s));
    auto client = net::HttpClient::Create("https://127.0.0.1:" + std::to_string(port), tls);
    ASSERT_TRUE(client.ok()) << client.error();
    auto res = (*client)->Do(net::HttpRequest{"GET", "/api/v1/pods", {}, ""}, 10s);
    if (n <= 16) {
      ASSERT_TRUE(res.ok()) << res.error() << server.Log();
      EXPECT_EQ(res->status, 200);
      EXPECT_EQ(res->body, "ok");
    } else {
      ASSERT_FALSE(res.ok());
      EXPECT_NE(res.error().find("more than 16 informational"), std::string::npos) << res.error();
    }
  }
}

TEST(TlsAuthTest, TokenFileRotationAfter401) {
  TlsHarness h(false, "token-one");
  std::string token_file = h.dir.path() + "/token";
  WriteFile(token_file, "token-one\n");
  std::string kc = h.WriteKubeconfig(CaLine(h), "    tokenFile: " + token_file + "\n");
  ASSERT_TRUE(h.Start(kc).ok()) << h.server->Log();
  // The server rotates: the old token now gets 401; the new one is in the file.
  WriteFile(token_file, "token-two\n");
  ASSERT_EQ(h.server->Fault("token", "token-two"), 200);
  ASSERT_EQ(h.server->Fault("drop-watches"), 200);
  ASSERT_EQ(h.server->Create("/api/v1/namespaces", {{"metadata", {{"name", "after-rotation"}}}},
                             "token-two"),
            201);
  EXPECT_TRUE(WaitFor([&] { return h.cluster->namespaces.Get("after-rotation") != nullptr; }, 30s));
}

TEST(TlsAuthTest, ExecCredentialPlugin) {
  TlsHarness h(false, "from-plugin");
  std::string plugin = h.dir.path() + "/plugin.sh";
  // The plugin checks it got KUBERNETES_EXEC_INFO and its configured env.
  WriteFile(plugin, R"(#!/bin/sh
case "$KUBERNETES_EXEC_INFO" in *ExecCredential*) ;; *) exit 3 ;; esac
[ "$PLUGIN_MODE" = test ] || exit 4
echo '{"apiVersion":"client.authentication.k8s.io/v1","kind":"ExecCredential","status":{"token":"from-plugin","expirationTimestamp":"2099-01-01T00:00:00Z"}}'
)");
  chmod(plugin.c_str(), 0755);
  std::string kc =
      h.WriteKubeconfig(CaLine(h),
                        "    exec:\n      apiVersion: client.authentication.k8s.io/v1\n"
                        "      command: ./plugin.sh\n      interactiveMode: Never\n"
                        "      env: [{name: PLUGIN_MODE, value: test}]\n");
  ASSERT_TRUE(h.Start(kc).ok()) << h.server->Log();
  EXPECT_TRUE(h.cluster->namespaces.Get("demo"));

  // A failing plugin is a start-up error naming the plugin.
  WriteFile(plugin, "#!/bin/sh\nexit 7\n");
  ConnectionOptions opts{.kubeconfig = kc};
  RecordingSink sink;
  auto cluster = MakeCluster();
  auto w = Watcher::Start(opts, {ResourceKind::kNamespace}, cluster.get(), &sink);
  ASSERT_FALSE(w.ok());
  EXPECT_NE(w.error().find("plugin.sh"), std::string::npos) << w.error();
  EXPECT_NE(w.error().find("exited with code 7"), std::string::npos) << w.error();
}

TEST(TlsAuthTest, BasicAuth) {
  TlsHarness h(false, "", "admin:pw");
  for (const auto& [password, want] : {std::pair{"pw", 200}, std::pair{"wrong", 401}}) {
    auto cfg = LoadClientConfig(
        {.kubeconfig = h.WriteKubeconfig(
             CaLine(h), std::string("    username: admin\n    password: ") + password + "\n")});
    ASSERT_TRUE(cfg.ok()) << cfg.error();
    auto client = ApiClient::Create(*cfg);
    ASSERT_TRUE(client.ok()) << client.error();
    auto res = (*client)->Request("GET", "/api/v1/namespaces");
    ASSERT_TRUE(res.ok()) << res.error();
    EXPECT_EQ(res->status, want) << password;
  }
}

}  // namespace
}  // namespace kr::k8s::tls_auth_test
