#include "kube_router/proxy/network_services_controller.h"

#include <algorithm>
#include <cctype>
#include <condition_variable>
#include <cstdio>
#include <ctime>
#include <mutex>

#include "kube_router/base/log.h"

namespace kr::proxy {
namespace {

bool IsIpv6LinkLocal(const IpAddress& address) {
  static const IpPrefix kLinkLocal = *IpPrefix::Parse("fe80::/10");
  return address.is_v6() && kLinkLocal.Contains(address);
}

using netlink::IpvsDestination;
using netlink::IpvsService;
using Op = IpvsChange::Op;

constexpr char kMetricServices[] = "kube_router_controller_ipvs_services";
constexpr char kMetricLatency[] = "kube_router_controller_network_programming_duration_seconds";

template <typename T>
std::shared_ptr<const T> As(const k8s::AnyObject& object) {
  auto* p = std::get_if<std::shared_ptr<const T>>(&object);
  return p ? *p : nullptr;
}

bool IsExists(const Status& s) { return s.message().find("exists") != std::string::npos; }
bool IsMissing(const Status& s) {
  const std::string& m = s.message();
  return m.find("No such") != std::string::npos || m.find("not found") != std::string::npos ||
         m.find("Cannot assign") != std::string::npos || m.find("no such") != std::string::npos;
}

ServiceName NameFromKey(const std::string& key) {
  auto slash = key.find('/');
  if (slash == std::string::npos) return {"", key};
  return {key.substr(0, slash), key.substr(slash + 1)};
}

int HostBits(const IpAddress& ip) { return ip.is_v6() ? 128 : 32; }

netlink::Route VipRoute(const IpAddress& vip, const IpAddress& source) {
  netlink::Route r;
  r.destination = IpPrefix(vip, HostBits(vip));
  r.device = netlink::kKubeDummyName;
  r.source = source;
  r.table = netlink::kLocalTable;
  r.protocol = netlink::kProtocolKernel;  // as kube-router (and the kernel's own local routes)
  r.scope = netlink::Scope::kHost;
  r.type = netlink::RouteType::kLocal;
  return r;
}

netlink::IpvsWrite WriteOf(const IpvsChange& change) {
  using W = netlink::IpvsWrite::Op;
  W op = W::kAddService;
  switch (change.op) {
    case Op::kAddService:
      op = W::kAddService;
      break;
    case Op::kUpdateService:
      op = W::kUpdateService;
      break;
    case Op::kDeleteService:
      op = W::kDeleteService;
      break;
    case Op::kAddDestination:
      op = W::kAddDestination;
      break;
    case Op::kUpdateDestination:
    case Op::kDrainDestination:
      op = W::kUpdateDestination;
      break;
    case Op::kDeleteDestination:
      op = W::kDeleteDestination;
      break;
  }
  return {op, change.service, change.destination};
}

std::vector<double> LatencyBuckets() {
  return {0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120};
}

}  // namespace

std::optional<std::chrono::system_clock::time_point> ParseRfc3339(const std::string& text) {
  std::tm tm{};
  int consumed = 0;
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
  auto note = [&](const ServiceName& name, std::chrono::system_clock::time_point when) {
    touched_.insert(name);
    auto [it, inserted] = change_times_.emplace(name, when);
    if (!inserted && when < it->second) it->second = when;  // the oldest pending change counts
  };
  switch (event.kind) {
    case k8s::ResourceKind::kService:
      note(NameFromKey(event.key), now);
      return true;
    case k8s::ResourceKind::kEndpointSlice: {
      bool any = false;
      for (const auto& object : {event.old_object, event.new_object}) {
        auto slice = As<k8s::EndpointSlice>(object);
        if (!slice || slice->service_name.empty()) continue;
        auto when = now;
        auto it = slice->meta.annotations.find(kAnnotationLastChangeTriggerTime);
        if (it != slice->meta.annotations.end()) {
          if (auto t = ParseRfc3339(it->second); t && *t <= now) when = *t;
        }
        note({slice->meta.namespace_, slice->service_name}, when);
        any = true;
      }
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

void NetworkServicesController::RefreshDesiredEntry(const VirtualServiceId& id) {
  auto claims = vs_claims_.find(id);
  if (claims == vs_claims_.end() || claims->second.empty()) {
    vs_claims_.erase(id);
    desired_.services.erase(id);
    return;
  }
  const ServiceName& owner = *claims->second.begin();  // the first by name wins, stably
  const auto& vss = services_.at(owner).virtual_services;
  for (const auto& d : vss) {
    if (d.vs.id() == id) {
      desired_.services[id] = d.vs;
      return;
    }
  }
}

void NetworkServicesController::Unclaim(const ServiceName& name, DiffScope& scope) {
  auto it = services_.find(name);
  if (it == services_.end()) return;
  DesiredService old = std::move(it->second);
  services_.erase(it);
  for (const auto& d : old.virtual_services) {
    if (d.dsr && dsr_extension_) continue;
    VirtualServiceId id = d.vs.id();
    scope.services.insert(id);
    vs_claims_[id].erase(name);
    RefreshDesiredEntry(id);
    if (d.dsr) {
      // Without a DSR extension the VIP went on kube-dummy-if like any external IP.
      scope.vips.insert(d.vs.service.address);
      auto& claims = vip_claims_[d.vs.service.address];
      claims.erase(name);
      if (claims.empty()) {
        vip_claims_.erase(d.vs.service.address);
        desired_.vips.erase(d.vs.service.address);
      }
    }
  }
  for (const auto& vip : old.vips) {
    scope.vips.insert(vip);
    auto& claims = vip_claims_[vip];
    claims.erase(name);
    if (claims.empty()) {
      vip_claims_.erase(vip);
      desired_.vips.erase(vip);
    }
  }
}

void NetworkServicesController::Claim(const DesiredService& service, DiffScope& scope) {
  const ServiceName& name = service.name;
  auto claim_vip = [&](const IpAddress& vip) {
    scope.vips.insert(vip);
    vip_claims_[vip].insert(name);
    desired_.vips.insert(vip);
  };
  for (const auto& vip : service.vips) claim_vip(vip);
  for (const auto& d : service.virtual_services) {
    if (d.dsr && dsr_extension_) continue;
    if (d.dsr) claim_vip(d.vs.service.address);
    VirtualServiceId id = d.vs.id();
    scope.services.insert(id);
    auto& claims = vs_claims_[id];
    claims.insert(name);
    if (claims.size() > 1 && *claims.begin() != name) {
      KR_LOG_WARN("service {}: IPVS service {} is also wanted by {}; {} keeps it", name.ToString(),
                  id.ToString(), claims.begin()->ToString(), claims.begin()->ToString());
    }
    RefreshDesiredEntry(id);
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
  LogProblems(name, built.problems);
  if (!built.skipped.empty()) {
    spdlog::debug("service proxy: {} skipped: {}", name.ToString(), built.skipped);
    return;
  }
  auto [it, inserted] = services_.emplace(name, std::move(built));
  Claim(it->second, scope);
}

Status NetworkServicesController::Sync(SyncReason reason) {
  const auto started = std::chrono::steady_clock::now();
  if (auto s = RefreshNode(); !s.ok()) return s;
  bool full = reason != SyncReason::kRequested || !programmed_valid_;
  std::set<ServiceName> changed = touched_;
  std::set<VirtualServiceId> touched;
  Status status = full ? FullSync() : IncrementalSync(touched);
  if (status.ok()) status = RunDrains(touched);
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  if (status.ok()) status = RunExtensions(full, changed, touched, seconds);
  if (status.ok()) RecordLatency();
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
  ProxyPlan plan = Diff(desired_, programmed_, &scope, {config_.graceful_termination});
  Status status = ApplyPlan(plan);
  if (!status.ok()) {
    programmed_valid_ = false;  // the kernel may hold part of it: the next sync reads it back
    return status;
  }
  TrackDrains(plan, &scope);
  touched.insert(scope.services.begin(), scope.services.end());
  return Status::Ok();
}

Status NetworkServicesController::FullSync() {
  touched_.clear();
  services_.clear();
  desired_ = ProxyImage{};
  vs_claims_.clear();
  vip_claims_.clear();
  DiffScope ignored;
  std::set<ServiceName> names;
  for (const auto& key : cluster_->services.Keys()) names.insert(NameFromKey(key));
  for (const auto& name : names) Rebuild(name, ignored);
  std::erase_if(logged_problems_, [&](const auto& e) { return !names.contains(e.first); });

  auto actual = ReadKernel(false);
  if (!actual.ok()) {
    programmed_valid_ = false;
    return actual.status();
  }
  programmed_ = std::move(*actual);
  ProxyPlan plan = Diff(desired_, programmed_, nullptr, {config_.graceful_termination});
  if (!plan.empty()) {
    KR_LOG_INFO("service proxy: {} IPVS change(s), {} VIP(s) to add, {} to remove",
                plan.ipvs.size(), plan.add_vips.size(), plan.delete_vips.size());
  }
  Status status = ApplyPlan(plan);
  programmed_valid_ = status.ok();
  if (status.ok()) TrackDrains(plan, nullptr);
  return status;
}

Result<ProxyImage> NetworkServicesController::ReadKernel(bool for_cleanup) {
  ProxyImage image;
  auto addresses = dataplane_.links->ListAddresses("");
  if (!addresses.ok()) return addresses.status().Context("service proxy: list addresses");
  std::set<IpAddress> on_dummy, local;
  for (const auto& a : *addresses) {
    // The kernel gives every IPv6-enabled link its own fe80::/64 address; on kube-dummy-if it
    // is not a VIP of ours, and deleting it fails, which would fail every sync.
    if (a.device == netlink::kKubeDummyName && IsIpv6LinkLocal(a.address)) continue;
    (a.device == netlink::kKubeDummyName ? on_dummy : local).insert(a.address);
  }
  if (!on_dummy.empty()) {
    netlink::RouteFilter filter;
    filter.table = netlink::kLocalTable;
    filter.device = netlink::kKubeDummyName;
    auto routes = dataplane_.routes->List(filter);
    if (!routes.ok()) return routes.status().Context("service proxy: list local routes");
    std::map<IpAddress, std::vector<netlink::Route>> by_vip;
    for (const auto& r : *routes) {
      if (r.destination.length() == HostBits(r.destination.address())) {
        by_vip[r.destination.address()].push_back(r);
      }
    }
    for (const IpAddress& vip : on_dummy) {
      auto source = node_.NodeIp(vip.is_v6());
      const auto& rs = by_vip[vip];
      bool good = !rs.empty() && std::all_of(rs.begin(), rs.end(), [&](const netlink::Route& r) {
        return r.type == netlink::RouteType::kLocal && (!source || r.source == source);
      });
      (good && !for_cleanup ? image.vips : image.vips_without_route).insert(vip);
    }
  }

  auto services = dataplane_.ipvs->ListServices();
  if (!services.ok()) return services.status().Context("service proxy: list IPVS services");
  for (const IpvsService& s : *services) {
    if (s.fwmark != 0) continue;  // DSR's (or someone else's) fwmark services
    bool excluded = std::any_of(config_.excluded_cidrs.begin(), config_.excluded_cidrs.end(),
                                [&](const IpPrefix& p) { return p.Contains(s.address); });
    if (excluded) continue;
    VirtualServiceId id = VirtualServiceId::Of(s);
    bool node_port = local.contains(s.address) && s.port >= config_.node_port_first &&
                     s.port <= config_.node_port_last;
    bool ours = on_dummy.contains(s.address) || node_port || desired_.services.contains(id) ||
                programmed_.services.contains(id);
    if (!ours) continue;
    VirtualService vs;
    vs.service = s;
    auto dests = dataplane_.ipvs->ListDestinations(s);
    if (!dests.ok()) return dests.status().Context("service proxy: list destinations");
    for (const auto& d : *dests) vs.destinations[{d.address, d.port}] = d;
    image.services[id] = std::move(vs);
  }
  return image;
}

Status NetworkServicesController::EnsureDummyLink() {
  auto link = dataplane_.links->Get(netlink::kKubeDummyName);
  if (!link.ok()) return link.status().Context("service proxy: look up kube-dummy-if");
  if (!link->has_value()) {
    if (auto s = dataplane_.links->CreateDummy(netlink::kKubeDummyName); !s.ok() && !IsExists(s)) {
      return s.Context("service proxy: create kube-dummy-if");
    }
    KR_LOG_INFO("service proxy: created {}", netlink::kKubeDummyName);
  } else if ((*link)->up) {
    return Status::Ok();
  }
  return dataplane_.links->SetUp(netlink::kKubeDummyName, true)
      .Context("service proxy: bring kube-dummy-if up");
}

Status NetworkServicesController::AddVips(const std::vector<IpAddress>& vips) {
  if (vips.empty()) return Status::Ok();
  if (auto s = EnsureDummyLink(); !s.ok()) return s;
  std::vector<netlink::RouteChange> changes;
  std::vector<IpAddress> routed;
  Status first_error;
  for (const IpAddress& vip : vips) {
    netlink::Address address{netlink::kKubeDummyName, vip, HostBits(vip), netlink::Scope::kLink};
    if (auto s = dataplane_.links->AddAddress(address); !s.ok() && !IsExists(s)) {
      if (first_error.ok()) first_error = s.Context("add VIP " + vip.ToString());
      continue;
    }
    auto source = node_.NodeIp(vip.is_v6());
    if (!source) {
      // No node IP of that family: the kernel's own local route stays (source = the VIP).
      routed.push_back(vip);
      continue;
    }
    changes.push_back({netlink::RouteChange::Op::kReplace, VipRoute(vip, *source)});
    routed.push_back(vip);
  }
  if (!changes.empty()) {
    auto refused = dataplane_.routes->Apply(changes);
    if (!refused.ok()) return refused.status().Context("service proxy: VIP routes");
    for (const auto& e : *refused) {
      if (first_error.ok()) {
        first_error =
            Status::Error("VIP route " + changes[e.index].route.ToString() + ": " + e.message);
      }
      std::erase(routed, changes[e.index].route.destination.address());
    }
  }
  // IPv6: the kernel's own local route to the VIP (no source) would win over ours (#1698).
  std::vector<netlink::RouteChange> stale;
  bool any_v6 =
      std::any_of(routed.begin(), routed.end(), [](const IpAddress& ip) { return ip.is_v6(); });
  if (any_v6 && node_.ipv6) {
    netlink::RouteFilter filter;
    filter.table = netlink::kLocalTable;
    filter.family = IpAddress::Family::kV6;
    auto routes = dataplane_.routes->List(filter);
    if (!routes.ok()) return routes.status().Context("service proxy: list IPv6 local routes");
    std::set<IpAddress> v6(routed.begin(), routed.end());
    for (const auto& r : *routes) {
      if (r.destination.length() == 128 && v6.contains(r.destination.address()) &&
          r.source != node_.ipv6) {
        stale.push_back({netlink::RouteChange::Op::kDelete, r});
      }
    }
    if (!stale.empty()) (void)dataplane_.routes->Apply(stale);
  }
  for (const IpAddress& vip : routed) {
    programmed_.vips.insert(vip);
    programmed_.vips_without_route.erase(vip);
  }
  return first_error.Context("service proxy");
}

Status NetworkServicesController::DeleteVips(const std::vector<IpAddress>& vips) {
  Status first_error;
  for (const IpAddress& vip : vips) {
    if (auto source = node_.NodeIp(vip.is_v6())) {
      // The kernel drops the route with the address; the fake (and an old kernel) may not.
      (void)dataplane_.routes->Delete(VipRoute(vip, *source));
    }
    netlink::Address address{netlink::kKubeDummyName, vip, HostBits(vip), netlink::Scope::kLink};
    if (auto s = dataplane_.links->DeleteAddress(address); !s.ok() && !IsMissing(s)) {
      if (first_error.ok()) first_error = s.Context("service proxy: remove VIP " + vip.ToString());
      continue;
    }
    programmed_.vips.erase(vip);
    programmed_.vips_without_route.erase(vip);
  }
  return first_error;
}

Status NetworkServicesController::ApplyPlan(const ProxyPlan& plan) {
  Status first_error = AddVips(plan.add_vips);
  auto& ipvs = *dataplane_.ipvs;
  // All IPVS changes in one batch (few round trips: a cold start of 10k services is not 110k
  // request/ack pairs); a refused write is retried or accepted one by one below.
  std::vector<netlink::IpvsWrite> writes;
  writes.reserve(plan.ipvs.size());
  for (const IpvsChange& change : plan.ipvs) writes.push_back(WriteOf(change));
  auto refused = ipvs.Apply(writes);
  if (!refused.ok()) return refused.status().Context("service proxy");
  auto error = refused->begin();
  for (size_t i = 0; i < plan.ipvs.size(); ++i) {
    const IpvsChange& change = plan.ipvs[i];
    Status s;
    if (error != refused->end() && error->index == i) {
      s = Status::Error(error++->message);
      switch (change.op) {
        case Op::kAddService:
          if (IsExists(s)) s = ipvs.UpdateService(change.service);  // drift: made by someone
          break;
        case Op::kAddDestination:
          if (IsExists(s)) s = ipvs.UpdateDestination(change.service, change.destination);
          break;
        case Op::kDeleteService:
        case Op::kDeleteDestination:
          if (IsMissing(s)) s = Status::Ok();
          break;
        default:
          break;
      }
    }
    if (!s.ok()) {
      if (first_error.ok()) {
        first_error =
            s.Context("service proxy: " + VirtualServiceId::Of(change.service).ToString());
      }
      continue;
    }
    if (change.op == Op::kDeleteService) {
      auto it = programmed_.services.find(VirtualServiceId::Of(change.service));
      if (it != programmed_.services.end()) {
        for (const auto& [id, dest] : it->second.destinations) {
          for (auto& e : extensions_) e->OnDestinationRemoved(change.service, dest);
        }
      }
    } else if (change.op == Op::kDeleteDestination) {
      for (auto& e : extensions_) e->OnDestinationRemoved(change.service, change.destination);
    }
    ApplyChange(change, programmed_);
  }
  Status deleted = DeleteVips(plan.delete_vips);
  if (first_error.ok()) first_error = deleted;
  return first_error;
}

std::chrono::milliseconds NetworkServicesController::GracePeriodOf(const IpAddress& ip) const {
  for (const auto& pod : cluster_->pods.ByIndex(k8s::kIndexPodIp, ip.ToString())) {
    if (pod->termination_grace_period_seconds && *pod->termination_grace_period_seconds >= 0) {
      return std::chrono::seconds(*pod->termination_grace_period_seconds);
    }
  }
  return config_.graceful_period;
}

void NetworkServicesController::TrackDrains(const ProxyPlan& plan, const DiffScope* scope) {
  // Entries of the compared services that the plan no longer drains: the endpoint came back,
  // or its service went away.
  std::erase_if(drains_, [&](const auto& entry) {
    bool in_scope = !scope || scope->services.contains(entry.first.first);
    return in_scope && !plan.draining.contains(entry.first);
  });
  const auto now = clock_();
  for (const auto& key : plan.draining) {
    if (drains_.contains(key)) continue;
    auto vs = programmed_.services.find(key.first);
    if (vs == programmed_.services.end()) continue;
    auto dest = vs->second.destinations.find(key.second);
    if (dest == vs->second.destinations.end()) continue;
    drains_[key] = {vs->second.service, dest->second, now + GracePeriodOf(key.second.address)};
  }
}

Status NetworkServicesController::RunDrains(std::set<VirtualServiceId>& touched) {
  if (drains_.empty()) return Status::Ok();
  const auto now = clock_();
  std::map<VirtualServiceId, std::vector<DrainKey>> by_service;
  for (const auto& [key, drain] : drains_) by_service[key.first].push_back(key);
  Status first_error;
  for (const auto& [id, keys] : by_service) {
    const IpvsService service = drains_.at(keys.front()).service;
    auto dests = dataplane_.ipvs->ListDestinations(service);
    if (!dests.ok()) {
      if (IsMissing(dests.status())) {
        for (const auto& key : keys) drains_.erase(key);
        continue;
      }
      if (first_error.ok()) first_error = dests.status().Context("service proxy: drain");
      continue;
    }
    for (const auto& key : keys) {
      auto it = std::find_if(dests->begin(), dests->end(), [&](const IpvsDestination& d) {
        return d.address == key.second.address && d.port == key.second.port;
      });
      if (it == dests->end()) {
        drains_.erase(key);
        continue;
      }
      bool drained = it->active_connections + it->inactive_connections == 0;
      if (!drained && now < drains_.at(key).deadline) continue;
      Status s = dataplane_.ipvs->DeleteDestination(service, *it);
      if (!s.ok() && !IsMissing(s)) {
        if (first_error.ok()) first_error = s.Context("service proxy: drain " + id.ToString());
        continue;
      }
      KR_LOG_INFO("service proxy: {} removed from {} ({})", key.second.ToString(), id.ToString(),
                  drained ? "no connections left" : "grace period over");
      ApplyChange({Op::kDeleteDestination, service, *it}, programmed_);
      touched.insert(id);
      for (auto& e : extensions_) e->OnDestinationRemoved(service, *it);
      drains_.erase(key);
    }
  }
  return first_error;
}

Status NetworkServicesController::RunExtensions(bool full, const std::set<ServiceName>& changed,
                                                const std::set<VirtualServiceId>& touched,
                                                double sync_seconds) {
  if (extensions_.empty()) return Status::Ok();
  ProxySnapshot snapshot;
  snapshot.full = full;
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

void NetworkServicesController::RecordLatency() {
  if (change_times_.empty()) return;
  auto& histogram = metrics_->GetHistogram(
      kMetricLatency,
      "Time from a Service or EndpointSlice change (the slice's last-change-trigger-time, else "
      "when the event arrived) until the kernel was programmed, in seconds.",
      LatencyBuckets());
  const auto now = std::chrono::system_clock::now();
  for (const auto& [name, when] : change_times_) {
    histogram.Observe(std::chrono::duration<double>(now - when).count());
  }
  change_times_.clear();
}

void NetworkServicesController::UpdateTicker() {
  wants_tick_.store(!drains_.empty() || config_.nodeport_bindon_all_ip);
}

Result<std::vector<std::string>> NetworkServicesController::Cleanup() {
  std::vector<std::string> removed;
  Status first_error;
  for (auto& e : extensions_) {
    auto r = e->Cleanup();
    if (!r.ok()) {
      if (first_error.ok()) first_error = r.status().Context(e->Name());
      continue;
    }
    removed.insert(removed.end(), r->begin(), r->end());
  }
  auto image = ReadKernel(true);
  if (!image.ok()) return image.status();
  for (const auto& [id, vs] : image->services) {
    Status s = dataplane_.ipvs->DeleteService(vs.service);
    if (!s.ok() && !IsMissing(s)) {
      if (first_error.ok()) first_error = s.Context("delete IPVS service " + id.ToString());
      continue;
    }
    removed.push_back("IPVS service " + id.ToString());
  }
  auto link = dataplane_.links->Get(netlink::kKubeDummyName);
  if (!link.ok()) return link.status();
  if (link->has_value()) {
    // The kernel drops these with the link; deleting them first keeps an older kernel (and the
    // fakes) from holding routes to a device that is gone.
    netlink::RouteFilter filter;
    filter.table = netlink::kLocalTable;
    filter.device = netlink::kKubeDummyName;
    if (auto routes = dataplane_.routes->List(filter); routes.ok()) {
      std::vector<netlink::RouteChange> deletes;
      for (const auto& r : *routes) deletes.push_back({netlink::RouteChange::Op::kDelete, r});
      if (!deletes.empty()) (void)dataplane_.routes->Apply(deletes);
    }
    if (auto s = dataplane_.links->Delete(netlink::kKubeDummyName); !s.ok()) {
      if (first_error.ok()) first_error = s.Context("delete kube-dummy-if");
    } else {
      removed.push_back(std::string("link ") + netlink::kKubeDummyName + " (with " +
                        std::to_string(image->vips.size() + image->vips_without_route.size()) +
                        " VIPs)");
    }
  }
  programmed_ = ProxyImage{};
  programmed_valid_ = false;
  drains_.clear();
  if (!first_error.ok()) return first_error;
  return removed;
}

}  // namespace kr::proxy
