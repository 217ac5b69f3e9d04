#include "kube_router/proxy/network_services_controller.h"

#include <algorithm>
#include <cctype>
#include <condition_variable>
#include <cstdio>
#include <ctime>
#include <mutex>

#include "controller_kernel.h"
#include "kube_router/base/log.h"

namespace kr::proxy {
namespace {

using detail::NameFromKey;

using Op = IpvsChange::Op;

constexpr char kMetricServices[] = "kube_router_controller_ipvs_services";
constexpr char kMetricLatency[] = "kube_router_controller_network_programming_duration_seconds";

template <typename T>
std::shared_ptr<const T> As(const k8s::AnyObject& object) {
  auto* p = std::get_if<std::shared_ptr<const T>>(&object);
  return p ? *p : nullptr;
}

std::vector<double> LatencyBuckets() {
  return {0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120};
}

// Calls `visit` with each Service an event of the proxy's concerns (a Service, or a slice's
// Service before and after the change) and the slice it came through (null for a Service).
template <typename Visit>
void ForEachServiceOf(const k8s::Event& event, Visit visit) {
  if (event.kind == k8s::ResourceKind::kService) {
    visit(NameFromKey(event.key), nullptr);
    return;
  }
  if (event.kind != k8s::ResourceKind::kEndpointSlice) return;
  for (const auto& object : {event.old_object, event.new_object}) {
    auto slice = As<k8s::EndpointSlice>(object);
    if (slice && !slice->service_name.empty()) {
      visit(ServiceName{slice->meta.namespace_, slice->service_name}, slice.get());
    }
  }
}

}  // namespace

std::optional<std::chrono::system_clock::time_point> ParseRfc3339(const std::string& text) {
  std::tm tm{};
  int consumed = 0;
  // Every conversion has a width of at most 4 digits, so none can overflow an int.
  // NOLINTNEXTLINE(cert-err34-c)
  if (std::sscanf(text.c_str(), "%4d-%2d-%2dT%2d:%2d:%2d%n", &tm.tm_year, &tm.tm_mon, &tm.tm_mday,
                  &tm.tm_hour, &tm.tm_min, &tm.tm_sec, &consumed) != 6) {
    return std::nullopt;
  }
  std::string rest = text.substr(static_cast<size_t>(consumed));
  double fraction = 0;
  if (!rest.empty() && rest[0] == '.') {
    size_t end = 1;
    while (end < rest.size() && std::isdigit(static_cast<unsigned char>(rest[end]))) ++end;
    fraction = std::stod("0" + rest.substr(0, end));
    rest = rest.substr(end);
  }
  if (rest != "Z") return std::nullopt;
  tm.tm_year -= 1900;
  tm.tm_mon -= 1;
  time_t seconds = timegm(&tm);
  if (seconds == -1) return std::nullopt;
  return std::chrono::system_clock::from_time_t(seconds) +
         std::chrono::duration_cast<std::chrono::system_clock::duration>(
             std::chrono::duration<double>(fraction));
}

NetworkServicesController::NetworkServicesController(ProxyConfig config,
                                                     const k8s::Cluster* cluster,
                                                     ProxyDataplane dataplane,
                                                     metrics::Registry* metrics,
                                                     std::shared_ptr<void> dataplane_owner)
    : dataplane_owner_(std::move(dataplane_owner)),
      config_(std::move(config)),
      cluster_(cluster),
      dataplane_(dataplane),
      metrics_(metrics),
      clock_([] { return std::chrono::steady_clock::now(); }) {
  if (!metrics_) {
    own_metrics_ = std::make_unique<metrics::Registry>();
    metrics_ = own_metrics_.get();
  }
}

NetworkServicesController::~NetworkServicesController() { Shutdown(); }

std::vector<k8s::ResourceKind> NetworkServicesController::WatchedKinds() const {
  std::vector<k8s::ResourceKind> kinds = {
      k8s::ResourceKind::kService, k8s::ResourceKind::kEndpointSlice, k8s::ResourceKind::kNode};
  // Pods only for their terminationGracePeriodSeconds and for DSR's local pod IPs (a large
  // cache otherwise not needed).
  if (config_.graceful_termination || dsr_extension_) kinds.push_back(k8s::ResourceKind::kPod);
  return kinds;
}

void NetworkServicesController::SetSyncRequester(std::function<void()> request_sync) {
  request_sync_ = std::move(request_sync);
}

void NetworkServicesController::AddExtension(std::unique_ptr<ProxyExtension> extension) {
  if (extension->HandlesDsr()) dsr_extension_ = true;
  extensions_.push_back(std::move(extension));
}

Status NetworkServicesController::Init() {
  const auto& t = config_.timeouts;
  if (t.tcp != 0 || t.tcp_fin != 0 || t.udp != 0) {
    if (auto s = dataplane_.ipvs->SetTimeouts(t); !s.ok()) {
      return s.Context("service proxy: set IPVS timeouts (--service-*-timeout)");
    }
  }
  for (auto& extension : extensions_) {
    if (auto s = extension->Init(); !s.ok())
      return s.Context("service proxy: " + extension->Name());
  }
  // Drains and --nodeport-bindon-all-ip address changes are looked at between syncs.
  if (request_sync_ && !ticker_.joinable()) {
    ticker_ = std::jthread([this](std::stop_token stop) {
      std::mutex mu;
      std::condition_variable_any cv;
      while (!stop.stop_requested()) {
        std::unique_lock lock(mu);
        cv.wait_for(lock, stop, config_.tick, [] { return false; });
        if (stop.stop_requested()) break;
        if (wants_tick_.load()) request_sync_();
      }
    });
  }
  return Status::Ok();
}

void NetworkServicesController::Shutdown() {
  if (ticker_.joinable()) {
    ticker_.request_stop();
    ticker_.join();
  }
}

bool NetworkServicesController::OnUpdate(const k8s::Event& event) {
  const auto now = std::chrono::system_clock::now();
  // Without a trigger time the change counts from when it reached the runner, so the time it
  // waited in the inbox behind a sync is part of its latency (a direct call: from now).
  auto received = now;
  if (event.arrived != std::chrono::steady_clock::time_point{}) {
    auto waited = std::chrono::steady_clock::now() - event.arrived;
    if (waited > std::chrono::steady_clock::duration::zero()) {
      received -= std::chrono::duration_cast<std::chrono::system_clock::duration>(waited);
    }
  }
  auto note = [&](const ServiceName& name, std::chrono::system_clock::time_point when) {
    touched_.insert(name);
    auto [it, inserted] = change_times_.emplace(name, when);
    if (!inserted && when < it->second) it->second = when;  // the oldest pending change counts
  };
  switch (event.kind) {
    case k8s::ResourceKind::kService:
    case k8s::ResourceKind::kEndpointSlice: {
      bool any = false;
      ForEachServiceOf(event, [&](const ServiceName& name, const k8s::EndpointSlice* slice) {
        auto when = received;
        if (slice) {
          auto it = slice->meta.annotations.find(kAnnotationLastChangeTriggerTime);
          if (it != slice->meta.annotations.end()) {
            if (auto t = ParseRfc3339(it->second); t && *t <= now) when = *t;
          }
        }
        note(name, when);
        any = true;
      });
      return any;
    }
    case k8s::ResourceKind::kNode: {
      auto a = As<k8s::Node>(event.old_object);
      auto b = As<k8s::Node>(event.new_object);
      const k8s::Node* any = b ? b.get() : a.get();
      return any != nullptr && any->meta.name == config_.node_name;
    }
    default:
      return false;  // Pods are read from the cache when a drain starts
  }
}

Status NetworkServicesController::RefreshNode() {
  auto node = cluster_->nodes.Get(config_.node_name);
  if (!node) {
    return Status::Error("service proxy: this node (" + config_.node_name +
                         ") is not in the API (yet)");
  }
  NodeFacts facts = NodeFactsFromNode(*node);
  if (config_.nodeport_bindon_all_ip) {
    facts.bind_all = true;
    auto links = dataplane_.links->List();
    if (!links.ok()) return links.status().Context("service proxy: list links");
    auto addresses = dataplane_.links->ListAddresses("");
    if (!addresses.ok()) return addresses.status().Context("service proxy: list addresses");
    std::set<std::string> eligible;
    for (const auto& link : *links) {
      if (NodePortLinkEligible(link.name)) eligible.insert(link.name);
    }
    std::set<IpAddress> all;
    for (const auto& a : *addresses) {
      if (eligible.contains(a.device)) all.insert(a.address);
    }
    facts.all_addresses.assign(all.begin(), all.end());
  }
  if (!(facts == node_)) {
    // Every NodePort and VIP route may change: rebuild every Service.
    for (const auto& key : cluster_->services.Keys()) touched_.insert(NameFromKey(key));
    for (const auto& [name, svc] : services_) touched_.insert(name);
    node_ = std::move(facts);
  }
  return Status::Ok();
}

void NetworkServicesController::LogProblems(const ServiceName& name,
                                            const std::vector<std::string>& problems) {
  auto& logged = logged_problems_[name];
  for (const auto& p : problems) {
    if (std::find(logged.begin(), logged.end(), p) == logged.end()) KR_LOG_WARN("{}", p);
  }
  logged = problems;  // a problem that goes away and comes back is logged again
  if (logged.empty()) logged_problems_.erase(name);
}

const VirtualService* NetworkServicesController::WantedIn(const DesiredService& service,
                                                          const VirtualServiceId& id) {
  for (const auto& d : service.virtual_services) {
    if (d.vs.id() == id) return &d.vs;
  }
  return nullptr;
}

std::vector<IpAddress> NetworkServicesController::VipsOf(const DesiredService& service) const {
  std::vector<IpAddress> vips(service.vips.begin(), service.vips.end());
  for (const auto& d : service.virtual_services) {
    // Without a DSR extension a DSR VIP goes on kube-dummy-if like any external IP.
    if (d.dsr && !dsr_extension_) vips.push_back(d.vs.service.address);
  }
  std::sort(vips.begin(), vips.end());
  vips.erase(std::unique(vips.begin(), vips.end()), vips.end());
  return vips;
}

void NetworkServicesController::Unclaim(const ServiceName& name, DiffScope& scope) {
  auto it = services_.find(name);
  if (it == services_.end()) return;
  // (Erased last: the wanted entries point into it until they are released.)
  const DesiredService& old = it->second;
  for (const auto& d : old.virtual_services) {
    if (d.dsr && dsr_extension_) continue;
    VirtualServiceId id = d.vs.id();
    scope.services.insert(id);
    auto wanted = desired_.services.find(id);
    if (wanted == desired_.services.end()) continue;  // (a second port with the same id: done)
    if (wanted->second.owner != &old) {
      vs_waiting_.erase({id, name});
      continue;
    }
    // The next Service by name that wants it takes it over: the entry points into that one's
    // DesiredService from now on (nothing may point into `old` once it is erased).
    auto next = vs_waiting_.lower_bound({id, ServiceName{}});
    if (next != vs_waiting_.end() && next->first == id) {
      const DesiredService& heir = services_.at(next->second);
      wanted->second = {&heir, WantedIn(heir, id)};
      vs_waiting_.erase(next);
    } else {
      desired_.services.erase(wanted);
    }
  }
  for (const auto& vip : VipsOf(old)) {
    scope.vips.insert(vip);
    auto claims = desired_.vips.find(vip);
    if (claims != desired_.vips.end() && --claims->second == 0) desired_.vips.erase(claims);
  }
  services_.erase(it);
}

void NetworkServicesController::Claim(const DesiredService& service, DiffScope& scope) {
  const ServiceName& name = service.name;
  for (const auto& vip : VipsOf(service)) {
    scope.vips.insert(vip);
    ++desired_.vips[vip];
  }
  for (const auto& d : service.virtual_services) {
    if (d.dsr && dsr_extension_) continue;
    VirtualServiceId id = d.vs.id();
    scope.services.insert(id);
    auto [wanted, inserted] = desired_.services.try_emplace(id);
    if (inserted) {
      wanted->second = {&service, WantedIn(service, id)};
    } else if (wanted->second.owner != &service) {
      const ServiceName& holder = wanted->second.owner->name;
      if (name < holder) {  // the first by name wins, stably
        vs_waiting_.emplace(id, holder);
        wanted->second = {&service, WantedIn(service, id)};
      } else {
        vs_waiting_.emplace(id, name);
        KR_LOG_WARN("service {}: IPVS service {} is also wanted by {}; {} keeps it",
                    name.ToString(), id.ToString(), holder.ToString(), holder.ToString());
      }
    }
  }
}

void NetworkServicesController::Rebuild(const ServiceName& name, DiffScope& scope) {
  Unclaim(name, scope);
  auto svc = cluster_->services.Get(name.ToString());
  if (!svc) {
    LogProblems(name, {});
    return;
  }
  auto slices = cluster_->endpoint_slices.ByIndex(k8s::kIndexServiceName, name.ToString());
  DesiredService built = BuildService(*svc, slices, node_, config_);
  LogProblems(name, built.problems());
  if (!built.skipped().empty()) {
    spdlog::debug("service proxy: {} skipped: {}", name.ToString(), built.skipped());
    return;
  }
  auto [it, inserted] = services_.emplace(name, std::move(built));
  Claim(it->second, scope);
}

Status NetworkServicesController::Sync(SyncReason reason) {
  const auto started = std::chrono::steady_clock::now();
  // kPeriodic on a trusted image is not a full read: this sync's events, then one step of the
  // verification (network_services_controller_verify.cc).
  const bool full = reason == SyncReason::kStartup || !programmed_valid_;
  // Before the first cache read (the node's): the pending events posted until now are read. A
  // full sync rebuilds every Service from the caches and OnUpdate only notes names (and when
  // they changed): the events it read need not rebuild their Services again.
  if (full) MarkFullRead();
  if (auto s = RefreshNode(); !s.ok()) return s;
  if (full) verify_.reset();
  std::set<ServiceName> changed = touched_;
  std::set<VirtualServiceId> touched;
  Status status = full ? FullSync() : IncrementalSync(touched);
  if (status.ok()) status = RunDrains(touched);
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  if (status.ok()) {
    const auto extensions_started = std::chrono::steady_clock::now();
    // A sync during a verification is one of its steps: timed with it, not on its own.
    const bool step = !full && (reason == SyncReason::kPeriodic || verify_ != nullptr);
    status = RunExtensions(full, changed, touched, seconds, step);
    if (full) {
      const auto now = std::chrono::steady_clock::now();
      last_full_sync_.extensions_seconds =
          std::chrono::duration<double>(now - extensions_started).count();
      last_full_sync_.wall_seconds = last_full_sync_.longest_step_seconds =
          std::chrono::duration<double>(now - started).count();
    }
  }
  if (status.ok()) RecordLatency();
  if (status.ok() && !full && (reason == SyncReason::kPeriodic || verify_)) {
    status = VerifyStep();
    // The next step comes with the next sync; the runner serves the inbox before it.
    if (verify_ && request_sync_) request_sync_();
  }
  metrics_->GetGauge(kMetricServices, "Number of IPVS services the service proxy programmed.")
      .Set(static_cast<double>(programmed_.services.size()));
  UpdateTicker();
  return status;
}

Status NetworkServicesController::IncrementalSync(std::set<VirtualServiceId>& touched) {
  DiffScope scope;
  std::set<ServiceName> names;
  names.swap(touched_);
  for (const auto& name : names) Rebuild(name, scope);
  ProxyPlan plan = DiffWanted(desired_, programmed_, &scope, {config_.graceful_termination});
  // A verification under way must not judge these by its older kernel read.
  if (verify_) {
    verify_->written.insert(scope.services.begin(), scope.services.end());
    verify_->written_vips.insert(scope.vips.begin(), scope.vips.end());
  }
  Status status = ApplyPlan(plan);
  if (!status.ok()) {
    programmed_valid_ = false;  // the kernel may hold part of it: the next sync reads it back
    return status;
  }
  TrackDrains(plan, &scope);
  ShareWithDesired(&scope);
  touched.insert(scope.services.begin(), scope.services.end());
  return Status::Ok();
}

Status NetworkServicesController::FullSync() {
  using Clock = std::chrono::steady_clock;
  auto seconds_since = [](Clock::time_point t) {
    return std::chrono::duration<double>(Clock::now() - t).count();
  };
  FullSyncStats stats;
  stats.steps = 1;
  auto t = Clock::now();
  touched_.clear();
  desired_ = WantedImage{};  // (before the Services it points into)
  vs_waiting_.clear();
  services_.clear();
  DiffScope ignored;
  std::set<ServiceName> names;
  for (const auto& key : cluster_->services.Keys()) names.insert(NameFromKey(key));
  for (const auto& name : names) Rebuild(name, ignored);
  std::erase_if(logged_problems_, [&](const auto& e) { return !names.contains(e.first); });
  stats.rebuild_seconds = seconds_since(t);
  stats.services = names.size();

  t = Clock::now();
  auto actual = ReadKernel(false);
  stats.read_seconds = seconds_since(t);
  if (!actual.ok()) {
    programmed_valid_ = false;
    return actual.status();
  }
  programmed_ = std::move(*actual);
  stats.virtual_services = programmed_.services.size();
  Status status = RepairInChunks(stats);
  programmed_valid_ = status.ok();
  if (status.ok()) {
    // Drains of virtual services neither image has any more (no chunk compared them).
    std::erase_if(drains_, [&](const auto& entry) {
      const VirtualServiceId& id = entry.first.first;
      return !desired_.services.contains(id) && !programmed_.services.contains(id);
    });
    last_full_sync_ = stats;
    ++full_syncs_;
  }
  return status;
}

Status NetworkServicesController::RepairInChunks(FullSyncStats& stats) {
  using Clock = std::chrono::steady_clock;
  const PlanOptions options{config_.graceful_termination};
  const size_t chunk_size = std::max<size_t>(1, config_.full_sync_chunk);
  // Every VIP of either image goes into the first chunk's scope; its removals are held back
  // for the last chunk (after the services on them are gone), as in one plan.
  DiffScope scope;
  for (const auto& [vip, claims] : desired_.vips) scope.vips.insert(vip);
  scope.vips.insert(programmed_.vips.begin(), programmed_.vips.end());
  scope.vips.insert(programmed_.vips_without_route.begin(), programmed_.vips_without_route.end());
  std::vector<IpAddress> delete_vips;
  size_t changes = 0, add_vips = 0;
  Status first_error;
  // The ids of both images in order (a chunk's writes insert and erase only its own ids, so
  // the cursors stay valid).
  auto want = desired_.services.begin();
  auto have = programmed_.services.begin();
  for (bool first = true;; first = false) {
    while (scope.services.size() < chunk_size &&
           (want != desired_.services.end() || have != programmed_.services.end())) {
      if (have == programmed_.services.end() ||
          (want != desired_.services.end() && want->first < have->first)) {
        scope.services.insert(want++->first);
      } else if (want == desired_.services.end() || have->first < want->first) {
        scope.services.insert(have++->first);
      } else {
        scope.services.insert(want->first);
        ++want;
        ++have;
      }
    }
    const bool last = want == desired_.services.end() && have == programmed_.services.end();
    const auto t = Clock::now();
    ProxyPlan plan = DiffWanted(desired_, programmed_, &scope, options);
    stats.diff_seconds += std::chrono::duration<double>(Clock::now() - t).count();
    if (first) delete_vips = std::move(plan.delete_vips);
    plan.delete_vips.clear();
    if (last) plan.delete_vips.swap(delete_vips);  // (cleared above: delete_vips ends empty)
    changes += plan.ipvs.size();
    add_vips += plan.add_vips.size();
    stats.largest_plan = std::max(stats.largest_plan, plan.ipvs.size());
    Status status = ApplyTimed(plan, stats, false);
    if (status.ok()) {
      TrackDrains(plan, &scope);
      ShareWithDesired(&scope);
    } else if (first_error.ok()) {
      first_error = status;
    }
    if (last) {
      if (changes + add_vips + plan.delete_vips.size() > 0) {
        KR_LOG_INFO("service proxy: {} IPVS change(s), {} VIP(s) to add, {} to remove", changes,
                    add_vips, plan.delete_vips.size());
      }
      return first_error;
    }
    scope = DiffScope{};
  }
}

void NetworkServicesController::ShareWithDesired(const DiffScope* scope) {
  // The same programming: identities, scheduler, flags, and each destination's writable
  // attributes (the connection counts a kernel read-back carries are not part of it).
  auto same = [](const VirtualService& have, const VirtualService& want) {
    if (!(have.service == want.service) || have.destinations.size() != want.destinations.size()) {
      return false;
    }
    auto w = want.destinations.begin();
    for (const auto& h : have.destinations) {
      if (!(IdOf(h) == IdOf(*w)) || !h.SameConfig(*w)) return false;
      ++w;
    }
    return true;
  };
  auto share = [&](VirtualService& have) {
    auto want = desired_.services.find(have.id());
    if (want == desired_.services.end()) return;
    const VirtualService& wanted = *want->second.vs;
    if (have.destinations.SharesWith(wanted.destinations) || !same(have, wanted)) return;
    have.destinations = wanted.destinations;
  };
  if (scope == nullptr) {
    for (auto& [id, have] : programmed_.services) share(have);
    return;
  }
  for (const auto& id : scope->services) {
    if (auto it = programmed_.services.find(id); it != programmed_.services.end()) {
      share(it->second);
    }
  }
}

Status NetworkServicesController::RunExtensions(bool full, const std::set<ServiceName>& changed,
                                                const std::set<VirtualServiceId>& touched,
                                                double sync_seconds, bool step) {
  if (extensions_.empty()) return Status::Ok();
  ProxySnapshot snapshot;
  snapshot.full = full;
  snapshot.step = step;
  snapshot.node = &node_;
  snapshot.ipvs_services = programmed_.services.size();
  snapshot.sync_seconds = sync_seconds;
  // An event sync shows only what it touched: the pieces cannot rebuild from every Service.
  std::map<ServiceName, DesiredService> changed_services;
  ProxyImage touched_image;
  if (full) {
    snapshot.services = &services_;
    snapshot.programmed = &programmed_;
    for (const auto& [name, svc] : services_) snapshot.changed.insert(name);
  } else {
    snapshot.changed = changed;
    snapshot.touched = touched;
    for (const auto& name : changed) {
      if (auto it = services_.find(name); it != services_.end()) changed_services.insert(*it);
    }
    for (const auto& id : touched) {
      if (auto it = programmed_.services.find(id); it != programmed_.services.end()) {
        touched_image.services.insert(*it);
      }
    }
    snapshot.services = &changed_services;
    snapshot.programmed = &touched_image;
  }
  Status first_error;
  for (auto& e : extensions_) {
    if (auto s = e->Apply(snapshot); !s.ok() && first_error.ok()) {
      first_error = s.Context("service proxy: " + e->Name());
    }
  }
  return first_error;
}

metrics::Histogram& NetworkServicesController::LatencyHistogram() {
  return metrics_->GetHistogram(
      kMetricLatency,
      "Time from a Service or EndpointSlice change (the slice's last-change-trigger-time, else "
      "when the event arrived) until the kernel was programmed, in seconds.",
      LatencyBuckets());
}

void NetworkServicesController::OnEventsAbsorbed(const std::vector<k8s::Event>& absorbed,
                                                 std::chrono::steady_clock::time_point programmed) {
  // One observation per Service, from its oldest change, as an event sync observes it. No
  // trigger times here: at start-up they are the objects' old changes, not this agent's work.
  std::map<ServiceName, std::chrono::steady_clock::time_point> arrived;
  for (const auto& event : absorbed) {
    ForEachServiceOf(event, [&](const ServiceName& name, const k8s::EndpointSlice*) {
      auto [it, inserted] = arrived.emplace(name, event.arrived);
      if (!inserted && event.arrived < it->second) it->second = event.arrived;
    });
  }
  if (arrived.empty()) return;
  auto& histogram = LatencyHistogram();
  for (const auto& [name, when] : arrived) {
    histogram.Observe(std::chrono::duration<double>(programmed - when).count());
  }
}

void NetworkServicesController::RecordLatency() {
  if (change_times_.empty()) return;
  auto& histogram = LatencyHistogram();
  const auto now = std::chrono::system_clock::now();
  for (const auto& [name, when] : change_times_) {
    histogram.Observe(std::chrono::duration<double>(now - when).count());
  }
  change_times_.clear();
}

void NetworkServicesController::UpdateTicker() {
  wants_tick_.store(!drains_.empty() || config_.nodeport_bindon_all_ip);
}

}  // namespace kr::proxy
