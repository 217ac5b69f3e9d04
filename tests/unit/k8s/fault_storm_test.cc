// API fault storm: the informers of all six kinds against fake-apiserver over TLS with a
// bearer token read from a file, while seeded random rounds mix object changes with every fault
// the server can inject: 410 as a watch ERROR event and as an HTTP status, watches cut
// mid-stream, lists and watches cut mid-body, 429 with Retry-After, 500s, a restart with reset
// resource versions, the token rotated on disk. After every round each cache must equal a
// fresh list of the server (every key at the same resourceVersion), and the process must not
// keep growing (memory, descriptors, threads) nor hammer the server.
//
// KR_STORM_SEED=N reproduces a run (the seed is printed; CI uses a fixed one);
// KR_STORM_ROUNDS=N runs longer (the default, each fault once, takes under a minute).
#include <dirent.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <random>
#include <set>

#include "fake_apiserver_fixture.h"
#include "kube_router/base/exec.h"
#include "kube_router/base/sanitizers.h"
#include "kube_router/k8s/watcher.h"

namespace kr::k8s {
namespace {

using kr::k8s::testing::WatcherHarness;
using kr::k8s::testing::WriteFile;
using kr::testing::WaitFor;
using nlohmann::json;
using namespace std::chrono_literals;

constexpr uint64_t kCiSeed = 16;
constexpr uint64_t kCiRounds = 8;  // every fault once

uint64_t EnvOr(const char* name, uint64_t fallback) {
  const char* v = std::getenv(name);
  return v && *v ? std::strtoull(v, nullptr, 10) : fallback;
}

#if KR_ASAN()
extern "C" size_t __sanitizer_get_current_allocated_bytes();
#endif

// What the process holds: its RSS, or under AddressSanitizer the heap still allocated. ASan keeps
// freed memory in its quarantine (up to 256 MiB), so there RSS grows with every byte the test's
// own polling allocates and frees, and says nothing about what the informers keep.
long MemoryKiB() {
#if KR_ASAN()
  return static_cast<long>(__sanitizer_get_current_allocated_bytes() / 1024);
#else
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::strtol(line.c_str() + 6, nullptr, 10);
  }
  return 0;
#endif
}

// Entries of a /proc/self directory (descriptors, threads), "." and ".." excluded.
int CountEntries(const char* dir) {
  DIR* d = opendir(dir);
  if (!d) return -1;
  int n = 0;
  while (dirent* e = readdir(d)) n += e->d_name[0] != '.';
  closedir(d);
  return n - 1;  // the descriptor opendir itself holds (for /proc/self/fd); harmless for task
}

constexpr char kWorld[] = R"(apiVersion: v1
kind: Namespace
metadata: {name: demo}
---
apiVersion: v1
kind: Node
metadata: {name: node1}
spec: {podCIDR: 10.244.1.0/24}
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: demo}
spec: {clusterIP: 10.96.0.10, selector: {app: web}, ports: [{port: 80}]}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: web-abc, namespace: demo, labels: {kubernetes.io/service-name: web}}
addressType: IPv4
endpoints: [{addresses: [10.244.1.5]}]
ports: [{name: "", port: 80}]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: deny, namespace: demo}
spec: {podSelector: {}}
)";

// One object of every kind, by path: the restart round touches them all (see there).
const char* const kOnePerKind[] = {
    "/api/v1/namespaces/demo",
    "/api/v1/nodes/node1",
    "/api/v1/namespaces/demo/services/web",
    "/apis/discovery.k8s.io/v1/namespaces/demo/endpointslices/web-abc",
    "/apis/networking.k8s.io/v1/namespaces/demo/networkpolicies/deny",
};

struct StormHarness : WatcherHarness {
  StormHarness() {
    std::string script = "set -e; cd '" + dir.path() + R"(';
      ec='-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes'
      openssl req -x509 $ec -keyout ca.key -out ca.pem -days 2 -subj /CN=storm-ca 2>/dev/null
      openssl req $ec -keyout server.key -out server.csr -subj /CN=apiserver 2>/dev/null
      printf 'subjectAltName=IP:127.0.0.1\n' > server.ext
      openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 \
        -extfile server.ext -out server.pem 2>/dev/null
    )";
    auto r = Exec({"sh", "-c", script});
    EXPECT_TRUE(r.ok() && r->exit_code == 0) << (r.ok() ? r->err : r.error());
    WriteFile(dir.path() + "/token", token + "\n");
    WriteFile(dir.path() + "/world.yaml", kWorld);
    StartServer({"--tls-cert", dir.path() + "/server.pem", "--tls-key", dir.path() + "/server.key",
                 "--token", token, "--manifests", dir.path() + "/world.yaml"});
    kubeconfig = dir.path() + "/agent-kubeconfig";
    WriteFile(kubeconfig,
              "apiVersion: v1\nkind: Config\ncurrent-context: c\n"
              "contexts: [{name: c, context: {cluster: k, user: u}}]\n"
              "clusters: [{name: k, cluster: {server: '" +
                  server->url() + "', certificate-authority: '" + dir.path() +
                  "/ca.pem'}}]\n"
                  "users: [{name: u, user: {tokenFile: '" +
                  dir.path() + "/token'}}]\n");
  }

  int Call(const std::string& method, const std::string& path, const json& body = nullptr,
           const std::string& content_type = "application/json", std::string* out = nullptr) {
    ++own_requests;
    return server->Call(method, path, body.is_null() ? "" : body.dump(), content_type, out, token);
  }
  int Patch(const std::string& path, const json& labels) {
    return Call("PATCH", path, {{"metadata", {{"labels", labels}}}},
                "application/merge-patch+json");
  }

  // key -> resourceVersion of a fresh list of the server. A list the injected faults answer
  // (the test's own requests count against them too) yields nullopt: ask again.
  std::optional<std::map<std::string, std::string>> ServerState(const std::string& collection) {
    std::string body;
    if (Call("GET", collection, nullptr, "", &body) != 200) return std::nullopt;
    json list = json::parse(body, nullptr, false);
    if (!list.is_object() || !list.contains("items")) return std::nullopt;
    std::map<std::string, std::string> state;
    for (const auto& item : list["items"]) {
      const auto& m = item["metadata"];
      std::string key = m.contains("namespace") ? m["namespace"].get<std::string>() + "/" : "";
      state[key + m["name"].get<std::string>()] = m["resourceVersion"].get<std::string>();
    }
    return state;
  }

  template <typename T>
  static std::map<std::string, std::string> CacheState(const Store<T>& store) {
    std::map<std::string, std::string> state;
    for (const auto& key : store.Keys()) {
      if (auto o = store.Get(key)) state[key] = o->meta.resource_version;
    }
    return state;
  }

  static std::string Describe(const std::map<std::string, std::string>& want,
                              const std::map<std::string, std::string>& have) {
    std::string out;
    for (const auto& [k, rv] : want) {
      auto it = have.find(k);
      if (it == have.end())
        out += " missing " + k + "@" + rv + ";";
      else if (it->second != rv)
        out += " stale " + k + "@" + it->second + " (server " + rv + ");";
    }
    for (const auto& [k, rv] : have)
      if (!want.count(k)) out += " deleted on the server but cached " + k + "@" + rv + ";";
    return out.substr(0, 600);
  }

  // Every cache equals a fresh list; otherwise `diff` says how the first differing one differs.
  bool Converged(std::string* diff) {
    struct Kind {
      const char* collection;
      std::function<std::map<std::string, std::string>()> cache;
    };
    const Kind kinds[] = {
        {"/api/v1/namespaces", [&] { return CacheState(cluster->namespaces); }},
        {"/api/v1/nodes", [&] { return CacheState(cluster->nodes); }},
        {"/api/v1/pods", [&] { return CacheState(cluster->pods); }},
        {"/api/v1/services", [&] { return CacheState(cluster->services); }},
        {"/apis/discovery.k8s.io/v1/endpointslices",
         [&] { return CacheState(cluster->endpoint_slices); }},
        {"/apis/networking.k8s.io/v1/networkpolicies",
         [&] { return CacheState(cluster->network_policies); }},
    };
    for (const auto& k : kinds) {
      auto want = ServerState(k.collection);
      if (!want) {
        *diff = std::string(k.collection) + ": the fresh list failed (injected fault)";
        return false;
      }
      auto have = k.cache();
      if (*want != have) {
        *diff = std::string(k.collection) + ":" + Describe(*want, have);
        return false;
      }
    }
    return true;
  }

  uint64_t RequestCount() {
    std::string body;
    if (server->Call("GET", "/_fake/requests", "", "", &body) != 200) return 0;
    auto j = json::parse(body, nullptr, false);
    return j.is_object() ? j.value("count", uint64_t{0}) : 0;
  }

  std::string token = "storm-token-0";
  std::string kubeconfig;
  // API requests the test made itself (changes, fresh lists): the server counts them too, and
  // how many fresh lists a convergence wait makes depends on how fast the machine is.
  uint64_t own_requests = 0;
};

json Pod(const std::string& name, int n) {
  return {
      {"metadata", {{"name", name}, {"namespace", "demo"}, {"labels", {{"n", std::to_string(n)}}}}},
      {"spec", {{"nodeName", "node1"}}},
      {"status", {{"podIP", "10.244." + std::to_string(n % 250) + ".1"}}}};
}

enum Fault {
  k410InStream,
  k410AsHttpStatus,
  kWatchCut,
  kListAndWatchCut,
  k429RetryAfter,
  k500s,
  kRestartResetRvs,
  kTokenRotated,
  kFaultCount
};
const char* const kFaultNames[] = {"410 in-stream",
                                   "410 as HTTP status",
                                   "watches cut",
                                   "lists and watches cut mid-body",
                                   "429 with Retry-After",
                                   "500s",
                                   "restart with reset resource versions",
                                   "token rotated on disk"};

TEST(FaultStormTest, CachesConvergeToTheServerAfterEveryFault) {
  const uint64_t seed = EnvOr("KR_STORM_SEED", kCiSeed);
  const uint64_t rounds = EnvOr("KR_STORM_ROUNDS", kCiRounds);
  std::cout << "fault storm: KR_STORM_SEED=" << seed << " KR_STORM_ROUNDS=" << rounds << std::endl;
  std::mt19937_64 rng(seed);
  auto pick = [&](int n) { return static_cast<int>(rng() % static_cast<uint64_t>(n)); };

  StormHarness h;
  std::set<std::string> pods;
  int serial = 0;
  for (int i = 0; i < 30; ++i) {
    std::string name = "pod-" + std::to_string(serial++);
    ASSERT_EQ(h.Call("POST", "/api/v1/namespaces/demo/pods", Pod(name, serial)), 201);
    pods.insert(name);
  }
  ConnectionOptions opts;
  opts.kubeconfig = h.kubeconfig;
  opts.list_page_size = 7;  // lists take several pages, so a cut can land between them
  // client-go's backoff (0.8 s doubling to 30 s, reset after 2 min without failures), ten times
  // faster: a storm of a fault every few seconds would otherwise spend minutes in the cap.
  opts.retry_backoff = {80ms, 3000ms, 12000ms};
  ASSERT_TRUE(h.StartWatcher(opts).ok()) << h.server->Log();

  auto churn = [&] {
    for (int i = 0, n = 1 + pick(8); i < n; ++i) {
      int what = pick(3);
      if (what == 0 || pods.size() < 10) {
        std::string name = "pod-" + std::to_string(serial++);
        EXPECT_EQ(h.Call("POST", "/api/v1/namespaces/demo/pods", Pod(name, serial)), 201);
        pods.insert(name);
      } else {
        auto it = std::next(pods.begin(), pick(static_cast<int>(pods.size())));
        if (what == 1) {
          EXPECT_EQ(h.Call("DELETE", "/api/v1/namespaces/demo/pods/" + *it), 200);
          pods.erase(it);
        } else {
          EXPECT_EQ(
              h.Patch("/api/v1/namespaces/demo/pods/" + *it, {{"n", std::to_string(serial++)}}),
              200);
        }
      }
    }
  };
  auto converge = [&](const std::string& when) {
    std::string diff;
    // Six fresh lists over TLS a poll: every 200 ms, not every 20 (most of the test's CPU).
    bool ok = WaitFor([&] { return h.Converged(&diff); }, 45s, 200ms);
    EXPECT_TRUE(ok) << when << ": " << diff << " (KR_STORM_SEED=" << seed << ")";
    return ok;
  };

  std::vector<Fault> order;
  for (int f = 0; f < kFaultCount; ++f) order.push_back(static_cast<Fault>(f));
  // A restarted server answers an RV it has not reached after this wait (the real one waits
  // 3 s for its watch cache); short, so that rounds stay short.
  ASSERT_EQ(h.server->Fault("settings", R"({"tooLargeWaitMs":200})"), 200);
  long memory_after_warmup = 0;
  int fds_after_warmup = 0, threads_after_warmup = 0;
  uint64_t requests_before = h.RequestCount(), own_before = h.own_requests;
  for (uint64_t round = 0; round < rounds; ++round) {
    // Every fault once per kFaultCount rounds, in a seeded order.
    if (round % kFaultCount == 0) std::shuffle(order.begin(), order.end(), rng);
    Fault fault = order[round % kFaultCount];
    std::string what = "round " + std::to_string(round) + ": " + kFaultNames[fault];
    std::cout << "fault storm: " << what << std::endl;
    SCOPED_TRACE(what);
    churn();
    switch (fault) {
      case k410InStream:
        ASSERT_EQ(h.server->Fault("expire-watches"), 200);
        break;
      case k410AsHttpStatus:
        ASSERT_EQ(h.server->Fault("settings", R"({"goneAsHttpStatus":true})"), 200);
        ASSERT_EQ(h.server->Fault("compact"), 200);
        ASSERT_EQ(h.server->Fault("drop-watches"), 200);
        break;
      case kWatchCut:
        ASSERT_EQ(h.server->Fault("drop-watches"), 200);
        break;
      case kListAndWatchCut:
        // Open watches end with a 410 and the relists (and their re-watches) that follow are
        // cut after the first bytes of their bodies.
        ASSERT_EQ(
            h.server->Fault("fail?count=" + std::to_string(2 + pick(8)) + "&code=0&match=GET%20"),
            200);
        ASSERT_EQ(h.server->Fault("expire-watches"), 200);
        break;
      case k429RetryAfter:
        ASSERT_EQ(h.server->Fault("fail?count=" + std::to_string(2 + pick(4)) +
                                  "&code=429&retryAfter=1&match=GET%20"),
                  200);
        ASSERT_EQ(h.server->Fault("drop-watches"), 200);
        break;
      case k500s:
        ASSERT_EQ(
            h.server->Fault("fail?count=" + std::to_string(3 + pick(8)) + "&code=500&match=GET%20"),
            200);
        ASSERT_EQ(h.server->Fault("drop-watches"), 200);
        break;
      case kRestartResetRvs: {
        // A client cannot tell a restarted server's history from the old one when the new
        // counter reaches the RV it resumes from (client-go cannot either; real restores bump
        // the revision). Make every informer hold an RV well beyond what the restarted server
        // counts to: bump the counter, then touch one object of every kind.
        for (int i = 0; i < 20; ++i) {
          ASSERT_EQ(h.Patch("/api/v1/namespaces/demo/pods/" + *pods.begin(),
                            {{"bump", std::to_string(i)}}),
                    200);
        }
        for (const char* path : kOnePerKind)
          ASSERT_EQ(h.Patch(path, {{"touched", std::to_string(round)}}), 200);
        if (!converge("before the restart")) return;
        ASSERT_EQ(h.server->Fault("restart"), 200);
        break;
      }
      case kTokenRotated: {
        // kubelet rewrites the projected token; the server accepts only the new one.
        h.token = "storm-token-" + std::to_string(round + 1);
        WriteFile(h.dir.path() + "/token.new", h.token + "\n");
        std::rename((h.dir.path() + "/token.new").c_str(), (h.dir.path() + "/token").c_str());
        ASSERT_EQ(h.server->Fault("token", h.token), 200);
        ASSERT_EQ(h.server->Fault("drop-watches"), 200);
        break;
      }
      case kFaultCount:
        break;
    }
    churn();
    if (!converge("after the fault")) return;
    ASSERT_EQ(h.server->Fault("settings", R"({"goneAsHttpStatus":false})"), 200);
    ASSERT_EQ(h.server->Fault("fail?count=0"), 200);
    if (round == 1) {
      memory_after_warmup = MemoryKiB();
      fds_after_warmup = CountEntries("/proc/self/fd");
      threads_after_warmup = CountEntries("/proc/self/task");
    }
  }
  // Retries back off: a round costs a few requests per informer, not a loop of them.
  auto own = static_cast<int64_t>(h.own_requests - own_before);
  auto requests = static_cast<int64_t>(h.RequestCount() - requests_before) - own;
  std::cout << "fault storm: " << requests << " API requests by the informers (and " << own
            << " by the test) in " << rounds << " rounds" << std::endl;
  EXPECT_LT(requests, 200 * static_cast<int64_t>(rounds)) << "a retry loop hammers the server";
  if (rounds >= 3) {
    long growth = MemoryKiB() - memory_after_warmup;
    int fds = CountEntries("/proc/self/fd"), threads = CountEntries("/proc/self/task");
    std::cout << "fault storm: memory growth after warm-up " << growth << " KiB, descriptors "
              << fds_after_warmup << " -> " << fds << ", threads " << threads_after_warmup << " -> "
              << threads << std::endl;
    EXPECT_LT(growth, 32 * 1024) << "the informers keep growing under faults";
    // Six informers hold at most one connection (and one watchdog thread) each.
    EXPECT_LE(fds, fds_after_warmup + 8) << "descriptors leak under faults";
    EXPECT_LE(threads, threads_after_warmup + 8) << "threads leak under faults";
  }
}

}  // namespace
}  // namespace kr::k8s
