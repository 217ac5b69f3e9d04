// Test helpers: a fake-apiserver process on loopback (port 0), an event recorder, and the
// harness the watcher tests share (server, caches, events, watcher).
#pragma once

#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "kube_router/k8s/store.h"
#include "kube_router/k8s/watcher.h"
#include "kube_router/net/http_client.h"
#include "lib/binaries.h"
#include "lib/files.h"
#include "lib/kubeconfig.h"
#include "lib/netns.h"

namespace kr::k8s::testing {

inline void WriteFile(const std::string& path, const std::string& content) {
  std::ofstream out(path);
  out << content;
}

// Runs build/fake-apiserver with `args` plus --listen 127.0.0.1:0 and --kubeconfig-out; waits
// until it serves.
class FakeApiServer {
 public:
  FakeApiServer(const std::string& dir, std::vector<std::string> args) : dir_(dir) {
    kubeconfig_ = dir + "/kubeconfig";
    std::vector<std::string> argv = {kr::testing::kFakeApiServerBinary, "--listen", "127.0.0.1:0",
                                     "--kubeconfig-out", kubeconfig_};
    argv.insert(argv.end(), args.begin(), args.end());
    process_ = std::make_unique<kr::testing::Process>(argv, dir + "/fake-apiserver.log");
    bool up = kr::testing::WaitFor(
        [&] { return std::filesystem::exists(kubeconfig_) || !process_->Running(); },
        std::chrono::seconds(20));
    EXPECT_TRUE(up && std::filesystem::exists(kubeconfig_)) << process_->Log();
    auto server = kr::testing::ParseKubeconfigServer(kr::testing::ReadFile(kubeconfig_));
    if (server) url_ = server->url;
    net::TlsOptions tls;
    tls.insecure_skip_verify = true;  // the control client only drives faults and changes
    if (!url_.empty()) {
      auto c = net::HttpClient::Create(url_, tls);
      if (c.ok()) control_ = *c;
    }
  }

  const std::string& kubeconfig() const { return kubeconfig_; }
  const std::string& url() const { return url_; }
  std::string Log() const { return process_->Log(); }

  // A request with optional bearer token; returns the status (-1 on transport failure).
  int Call(const std::string& method, const std::string& path, const std::string& body = "",
           const std::string& content_type = "application/json", std::string* out = nullptr,
           const std::string& token = "") {
    if (!control_) return -1;
    net::HttpRequest req;
    req.method = method;
    req.path = path;
    req.body = body;
    if (!body.empty()) req.headers.emplace_back("Content-Type", content_type);
    if (!token.empty()) req.headers.emplace_back("Authorization", "Bearer " + token);
    auto res = control_->Do(req, std::chrono::seconds(10));
    if (!res.ok()) return -1;
    if (out) *out = res->body;
    return res->status;
  }
  int Fault(const std::string& path_and_query, const std::string& body = "") {
    return Call("POST", "/_fake/" + path_and_query, body, "text/plain");
  }
  int MergePatch(const std::string& path, const nlohmann::json& patch,
                 const std::string& token = "") {
    return Call("PATCH", path, patch.dump(), "application/merge-patch+json", nullptr, token);
  }
  int Create(const std::string& collection, const nlohmann::json& obj,
             const std::string& token = "") {
    return Call("POST", collection, obj.dump(), "application/json", nullptr, token);
  }
  int Delete(const std::string& path, const std::string& token = "") {
    return Call("DELETE", path, "", "application/json", nullptr, token);
  }
  // The watch streams the server holds open now, by kind ("Pod": 1, ...); empty when it cannot
  // be asked.
  std::map<std::string, int> OpenWatches() {
    std::string body;
    if (Call("GET", "/_fake/watches", "", "", &body) != 200) return {};
    auto j = nlohmann::json::parse(body, nullptr, false);
    if (!j.is_object() || !j["open"].is_object()) return {};
    return j["open"].get<std::map<std::string, int>>();
  }
  // Recent API request lines recorded by the server.
  std::vector<std::string> Requests() {
    std::string body;
    if (Call("GET", "/_fake/requests", "", "", &body) != 200) return {};
    auto j = nlohmann::json::parse(body, nullptr, false);
    if (!j.is_object()) return {};
    return j["recent"].get<std::vector<std::string>>();
  }

 private:
  std::string dir_;
  std::string kubeconfig_;
  std::string url_;
  std::unique_ptr<kr::testing::Process> process_;
  std::shared_ptr<net::HttpClient> control_;
};

class RecordingSink : public EventSink {
 public:
  void Post(const Event& e) override {
    std::lock_guard lock(mu_);
    events_.push_back(e);
  }
  std::vector<Event> Events() {
    std::lock_guard lock(mu_);
    return events_;
  }
  size_t Count(EventType type, const std::string& key) {
    std::lock_guard lock(mu_);
    size_t n = 0;
    for (const auto& e : events_)
      if (e.type == type && e.key == key) ++n;
    return n;
  }

 private:
  std::mutex mu_;
  std::vector<Event> events_;
};

// Every kind the agent can watch.
inline const std::vector<ResourceKind> kAllKinds = {
    ResourceKind::kService, ResourceKind::kEndpointSlice, ResourceKind::kPod,
    ResourceKind::kNode,    ResourceKind::kNamespace,     ResourceKind::kNetworkPolicy};

// A temporary directory for fake-apiserver, the caches a watcher fills and the events it posts.
// Tests derive from it and start the server in their constructor; the watcher is stopped
// before anything else goes.
struct WatcherHarness {
  kr::testing::TempDir dir;
  std::unique_ptr<FakeApiServer> server;
  std::unique_ptr<Cluster> cluster = MakeCluster();
  RecordingSink sink;
  std::unique_ptr<Watcher> watcher;

  WatcherHarness() = default;
  WatcherHarness(const WatcherHarness&) = delete;
  WatcherHarness& operator=(const WatcherHarness&) = delete;
  ~WatcherHarness() {
    if (watcher) watcher->Stop();
  }

  void StartServer(const std::vector<std::string>& args) {
    server = std::make_unique<FakeApiServer>(dir.path(), args);
  }
  // Starts a watcher of `kinds` (on the server's kubeconfig unless `opts` names one) and waits
  // for its first sync and then for the server to hold a watch of every kind open. Synced means
  // the lists are in; the watches follow. A fault a test injects after this reaches the open
  // watches (drop-watches, ...), or the next request and not a first watch (fail?...).
  Status StartWatcher(ConnectionOptions opts = {},
                      const std::vector<ResourceKind>& kinds = kAllKinds,
                      std::chrono::milliseconds timeout = std::chrono::seconds(30)) {
    if (opts.kubeconfig.empty()) opts.kubeconfig = server->kubeconfig();
    auto w = Watcher::Start(opts, kinds, cluster.get(), &sink);
    if (!w.ok()) return w.status();
    watcher = std::move(*w);
    if (Status synced = watcher->WaitForSync(timeout); !synced.ok()) return synced;
    std::map<std::string, int> open;
    auto all_open = [&] {
      open = server->OpenWatches();
      for (ResourceKind kind : kinds) {
        if (open[ResourceKindName(kind)] < 1) return false;
      }
      return true;
    };
    if (!kr::testing::WaitFor(all_open, timeout)) {
      std::string have;
      for (const auto& [kind, n] : open) have += " " + kind + "=" + std::to_string(n);
      return Status::Error("synced, but the server does not hold a watch of every kind open:" +
                           (have.empty() ? std::string(" none") : have));
    }
    return Status::Ok();
  }
};

}  // namespace kr::k8s::testing
