// SPDX-License-Identifier: Apache-2.0
// kube-router: pkg/controllers/lballoc (UpdateStatus in RetryOnConflict, leader election on
// Lease kube-router-lballoc); client-go tools/leaderelection/leaderelection.go.
#include "kube_router/k8s/writes.h"

#include <ctime>
#include <random>

#include "kube_router/base/log.h"

namespace kr::k8s {
namespace {

using Clock = std::chrono::steady_clock;
using nlohmann::json;

// metav1.MicroTime: RFC 3339 with microseconds, UTC.
std::string MicroTimeNow() {
  timespec ts{};
  clock_gettime(CLOCK_REALTIME, &ts);
  std::tm tm{};
  gmtime_r(&ts.tv_sec, &tm);
  char buf[64];
  size_t n = std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &tm);
  std::snprintf(buf + n, sizeof buf - n, ".%06ldZ", ts.tv_nsec / 1000);
  return buf;
}

std::string Message(const HttpResponse& res) {
  json j = json::parse(res.body, nullptr, false);
  if (j.is_object() && j.contains("message") && j["message"].is_string())
    return j["message"].get<std::string>();
  return "HTTP " + std::to_string(res.status);
}

}  // namespace

Status UpdateServiceStatus(ApiClient& client, const std::string& ns, const std::string& name,
                           const std::function<bool(json& service)>& mutate) {
  std::string path = "/api/v1/namespaces/" + ns + "/services/" + name;
  std::mt19937 rng(std::random_device{}());
  std::uniform_real_distribution<double> jitter(0.0, 0.1);
  for (int attempt = 0; attempt < 5; ++attempt) {
    if (attempt > 0)
      std::this_thread::sleep_for(std::chrono::microseconds(
          static_cast<int64_t>(10000 * (1.0 + jitter(rng)))));  // DefaultRetry: 10 ms, 10 %
    auto got = client.Request("GET", path);
    if (!got.ok()) return got.status().Context("GET service " + ns + "/" + name);
    if (got->status != 200)
      return Status::Error("GET service " + ns + "/" + name + ": " + Message(*got));
    json svc = json::parse(got->body, nullptr, false);
    if (!svc.is_object()) return Status::Error("GET service " + ns + "/" + name + ": not JSON");
    if (!mutate(svc)) return Status::Ok();
    auto put = client.Request("PUT", path + "/status", svc.dump());
    if (!put.ok()) return put.status().Context("update status of service " + ns + "/" + name);
    if (put->status == 200) return Status::Ok();
    if (put->status != 409)
      return Status::Error("update status of service " + ns + "/" + name + ": " + Message(*put));
  }
  return Status::Error("update status of service " + ns + "/" + name +
                       ": still conflicting after 5 attempts");
}

LeaderElector::LeaderElector(std::shared_ptr<ApiClient> client, LeaderElectionConfig config,
                             std::function<void()> on_started_leading,
                             std::function<void()> on_stopped_leading)
    : client_(std::move(client)),
      config_(std::move(config)),
      on_started_(std::move(on_started_leading)),
      on_stopped_(std::move(on_stopped_leading)) {}

LeaderElector::~LeaderElector() { Stop(); }

void LeaderElector::Start() {
  thread_ = std::thread([this] { Run(); });
}

void LeaderElector::Stop() {
  {
    std::lock_guard lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

bool LeaderElector::Sleep(std::chrono::milliseconds d) {
  std::unique_lock lock(mu_);
  cv_.wait_for(lock, d, [this] { return stop_.load(); });
  return !stop_;
}

void LeaderElector::Run() {
  while (!stop_) {
    // Acquire: try every retry period until we hold the lease.
    while (!stop_ && !TryAcquireOrRenew()) Sleep(config_.retry_period);
    if (stop_) break;
    leader_ = true;
    KR_LOG_INFO("became leader of lease {}/{} as {}", config_.lease_namespace, config_.lease_name,
                config_.identity);
    if (on_started_) on_started_();
    // Renew every retry period; give up when no renewal succeeded within the renew deadline.
    auto last_renew = Clock::now();
    while (Sleep(config_.retry_period)) {
      if (TryAcquireOrRenew()) {
        last_renew = Clock::now();
      } else if (Clock::now() - last_renew > config_.renew_deadline) {
        break;
      }
    }
    if (stop_) Release();
    leader_ = false;
    KR_LOG_INFO("stopped leading lease {}/{}", config_.lease_namespace, config_.lease_name);
    if (on_stopped_) on_stopped_();
  }
}

bool LeaderElector::TryAcquireOrRenew() {
  std::string base =
      "/apis/coordination.k8s.io/v1/namespaces/" + config_.lease_namespace + "/leases";
  std::string path = base + "/" + config_.lease_name;
  std::string now = MicroTimeNow();
  int duration_s = static_cast<int>(
      std::chrono::duration_cast<std::chrono::seconds>(config_.lease_duration).count());
  auto got =
      client_->Request("GET", path, "", "application/json", std::chrono::seconds(10), &stop_);
  if (!got.ok()) return false;
  if (got->status == 404) {
    json lease = {
        {"apiVersion", "coordination.k8s.io/v1"},
        {"kind", "Lease"},
        {"metadata", {{"name", config_.lease_name}, {"namespace", config_.lease_namespace}}},
        {"spec",
         {{"holderIdentity", config_.identity},
          {"leaseDurationSeconds", duration_s},
          {"acquireTime", now},
          {"renewTime", now},
          {"leaseTransitions", 0}}}};
    auto created = client_->Request("POST", base, lease.dump());
    return created.ok() && created->status == 201;
  }
  if (got->status != 200) return false;
  json lease = json::parse(got->body, nullptr, false);
  if (!lease.is_object()) return false;
  json spec = lease.contains("spec") && lease["spec"].is_object() ? lease["spec"] : json::object();
  std::string holder = spec.value("holderIdentity", "");
  std::string record = spec.dump();
  if (record != observed_record_) {
    observed_record_ = record;
    observed_at_ = Clock::now();
  }
  int held_for_s = spec.contains("leaseDurationSeconds") && spec["leaseDurationSeconds"].is_number()
                       ? spec["leaseDurationSeconds"].get<int>()
                       : duration_s;
  bool ours = holder == config_.identity;
  if (!holder.empty() && !ours && Clock::now() < observed_at_ + std::chrono::seconds(held_for_s))
    return false;  // someone else holds an unexpired lease
  if (!ours) {
    spec["acquireTime"] = now;
    int transitions = spec.contains("leaseTransitions") && spec["leaseTransitions"].is_number()
                          ? spec["leaseTransitions"].get<int>()
                          : 0;
    spec["leaseTransitions"] = transitions + 1;  // client-go counts any change of holder
  }
  spec["holderIdentity"] = config_.identity;
  spec["leaseDurationSeconds"] = duration_s;
  spec["renewTime"] = now;
  lease["spec"] = spec;
  // The read resourceVersion makes the PUT fail with 409 if another candidate won the race.
  auto put = client_->Request("PUT", path, lease.dump());
  if (!put.ok() || put->status != 200) return false;
  observed_record_ = spec.dump();
  observed_at_ = Clock::now();
  return true;
}

void LeaderElector::Release() {
  std::string path = "/apis/coordination.k8s.io/v1/namespaces/" + config_.lease_namespace +
                     "/leases/" + config_.lease_name;
  auto got = client_->Request("GET", path);
  if (!got.ok() || got->status != 200) return;
  json lease = json::parse(got->body, nullptr, false);
  if (!lease.is_object() || !lease.contains("spec") ||
      lease["spec"].value("holderIdentity", "") != config_.identity)
    return;
  lease["spec"]["holderIdentity"] = "";
  lease["spec"]["leaseDurationSeconds"] = 1;
  lease["spec"]["renewTime"] = MicroTimeNow();
  auto put = client_->Request("PUT", path, lease.dump());
  if (!put.ok() || put->status != 200)
    KR_LOG_WARN("releasing lease {}/{} failed", config_.lease_namespace, config_.lease_name);
}

}  // namespace kr::k8s
