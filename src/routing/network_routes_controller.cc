#include "kube_router/routing/network_routes_controller.h"

#include <algorithm>
#include <chrono>
#include <nlohmann/json.hpp>

#include "kube_router/base/log.h"
#include "kube_router/routing/cni_config.h"
#include "kube_router/routing/pod_egress.h"

namespace kr::routing {
namespace {

constexpr char kMetricPeerInfo[] = "kube_router_bgp_peer_info";
constexpr char kMetricAdsSent[] = "kube_router_controller_bgp_advertisements_sent";
constexpr char kMetricAdsReceived[] = "kube_router_controller_bgp_advertisements_received";
constexpr char kMetricImportRejected[] = "kube_router_bgp_import_rejected_total";
constexpr char kMetricRoutesSyncTime[] = "kube_router_controller_routes_sync_time";
constexpr char kMetricPeersSyncTime[] = "kube_router_controller_bgp_internal_peers_sync_time";
constexpr char kMetricRoutesSynced[] = "kube_router_host_routes_synced";
constexpr char kMetricRoutesAdded[] = "kube_router_host_routes_added";
constexpr char kMetricRoutesRemoved[] = "kube_router_host_routes_removed";

bgp::PeerConfig ToPeerConfig(const PeerSpec& spec, const RoutingConfig& config) {
  bgp::PeerConfig peer;
  peer.address = spec.address;
  peer.remote_asn = spec.asn;
  peer.password = spec.password;
  peer.port = spec.port;
  peer.multihop_ttl = spec.multihop_ttl;
  peer.route_reflector_client = spec.route_reflector_client;
  peer.local_address = spec.local_address;
  peer.hold_time_s = static_cast<uint16_t>(config.hold_time.count());
  peer.max_prefixes = config.max_prefixes_per_peer;
  peer.description = spec.external ? "external" : "node " + spec.node_name;
  return peer;
}

std::string PeerType(const PeerSpec& spec) { return spec.external ? "external" : "internal"; }

template <typename Duration>
double Seconds(Duration d) {
  return std::chrono::duration<double>(d).count();
}

}  // namespace

NetworkRoutesController::NetworkRoutesController(RoutingConfig config, const k8s::Cluster* cluster,
                                                 RoutingDataplane dataplane,
                                                 SpeakerFactory speaker_factory,
                                                 metrics::Registry* metrics,
                                                 std::shared_ptr<void> dataplane_owner)
    : dataplane_owner_(std::move(dataplane_owner)),
      config_(std::move(config)),
      cluster_(cluster),
      dataplane_(dataplane),
      speaker_factory_(std::move(speaker_factory)),
      metrics_(metrics) {
  if (!metrics_) {
    own_metrics_ = std::make_unique<metrics::Registry>();
    metrics_ = own_metrics_.get();
  }
  policy_ = std::make_shared<PolicyState>();
}

NetworkRoutesController::~NetworkRoutesController() {
  if (speaker_) speaker_->Stop(config_.graceful_restart);
}

std::vector<k8s::ResourceKind> NetworkRoutesController::WatchedKinds() const {
  return {k8s::ResourceKind::kNode, k8s::ResourceKind::kService, k8s::ResourceKind::kEndpointSlice};
}

void NetworkRoutesController::SetSyncRequester(std::function<void()> request_sync) {
  request_sync_ = std::move(request_sync);
}

Status NetworkRoutesController::Init() {
  if (dataplane_.sysctl) {
    // Pods on other nodes are reached by forwarding; bridged pod traffic must see iptables
    // (pod egress masquerade, network policy).
    for (const auto& [key, value] : std::vector<std::pair<std::string, std::string>>{
             {"net.ipv4.ip_forward", "1"}, {"net.bridge.bridge-nf-call-iptables", "1"}}) {
      if (auto status = dataplane_.sysctl->Set(key, value); !status.ok()) {
        KR_LOG_WARN("routing: cannot set {}={}: {}", key, value, status.message());
      }
    }
  }
  return Status::Ok();
}

bool NetworkRoutesController::OnUpdate(const k8s::Event& event) {
  // Nodes change peers, routes and ipsets; services and slices change the VIPs we advertise
  // and the VIPs we refuse to import.
  const bool relevant = event.kind == k8s::ResourceKind::kNode ||
                        event.kind == k8s::ResourceKind::kService ||
                        event.kind == k8s::ResourceKind::kEndpointSlice;
  if (relevant) full_sync_pending_ = true;
  return relevant;
}

void NetworkRoutesController::LogNodeProblems(const std::string& node,
                                              const std::vector<std::string>& problems) {
  auto& last = node_problems_[node];
  if (last == problems) return;  // logged once per change, not every sync
  for (const auto& problem : problems) KR_LOG_WARN("routing: {}", problem);
  last = problems;
}

Status NetworkRoutesController::Sync(SyncReason reason) {
  // A requested sync with no API event since the last good full sync was asked for by a learned
  // or withdrawn path: only the kernel routes and tunnels can be out of date. Everything else
  // (startup, periodic repair, API events, after a failure) reconciles in full.
  if (reason == SyncReason::kRequested && !full_sync_pending_ && synced_self_) {
    return SyncRoutesOnly();
  }
  Status status = FullSync(reason);
  full_sync_pending_ = !status.ok();
  return status;
}

Status NetworkRoutesController::SyncRoutesOnly() {
  const auto started = std::chrono::steady_clock::now();
  const auto main_routes =
      dataplane_.routes->List({synced_self_->ip->family(), netlink::kMainTable, std::nullopt, {}});
  Status status = SyncKernelRoutes(*synced_self_, main_routes, synced_node_addresses_);
  UpdatePeerMetrics();  // the status view lists the installed routes
  metrics_
      ->GetHistogram(kMetricRoutesSyncTime, "Time it took for the routing controller to sync",
                     metrics::Registry::DefaultBuckets())
      .Observe(Seconds(std::chrono::steady_clock::now() - started));
  if (!status.ok()) return Status::Error("routing sync (routes only): " + status.message());
  KR_VLOG(2, "routing: routes-only sync done: {} routes", installed_routes_.size());
  return Status::Ok();
}

Status NetworkRoutesController::FullSync(SyncReason reason) {
  const auto started = std::chrono::steady_clock::now();
  synced_self_.reset();
  std::vector<NodeInfo> nodes;      // nodes we route to (those with a pod CIDR)
  std::vector<NodeInfo> all_nodes;  // every node: their addresses are never masqueraded
  std::optional<NodeInfo> self;
  std::set<std::string> present;
  ++node_list_reads_;
  for (const auto& node : cluster_->nodes.List()) {
    ParsedNode parsed = ParseNode(*node);
    LogNodeProblems(parsed.info.name, parsed.problems);
    present.insert(parsed.info.name);
    if (parsed.info.name == config_.node_name) self = parsed.info;
    all_nodes.push_back(parsed.info);
    if (parsed.info.pod_cidrs.empty() && parsed.info.name != config_.node_name) {
      LogNodeProblems(parsed.info.name + "/podcidr",
                      {"node " + parsed.info.name + " has no pod CIDR; skipped"});
      continue;
    }
    nodes.push_back(std::move(parsed.info));
  }
  std::erase_if(node_problems_, [&](const auto& entry) {
    return !present.count(entry.first.substr(0, entry.first.find('/')));
  });
  if (!self)
    return Status::Error("routing: this node (" + config_.node_name + ") is not in the API");
  if (!self->ip) return Status::Error("routing: node " + self->name + " has no usable address");

  auto local_asn = LocalAsn(config_, *self);
  if (!local_asn) return local_asn.status();
  if (auto status = EnsureSpeaker(*self, *local_asn); !status.ok()) return status;
  synced_self_ = *self;

  const auto services = cluster_->services.List();
  const auto slices = cluster_->endpoint_slices.List();
  std::vector<Advertisement> ads = PlanPodCidrAdvertisements(*self);
  if (self->pod_cidrs.empty()) {
    LogNodeProblems(self->name + "/podcidr",
                    {"node " + self->name + " (this node) has no pod CIDR: nothing to advertise"});
  }
  for (auto& ad : PlanServiceAdvertisements(config_, *self, services, slices)) {
    ads.push_back(std::move(ad));
  }

  // Policies before paths and peers, so nothing is ever exported under an old policy.
  const auto peers_started = std::chrono::steady_clock::now();
  std::vector<PeerSpec> peers = PlanInternalPeers(config_, *self, *local_asn, nodes);
  std::vector<PeerSpec> external = PlanExternalPeers(config_, *self);
  auto policy = std::make_shared<PolicyState>();
  policy->local_asn = *local_asn;
  policy->self = *self;
  for (const auto& ad : ads) policy->local_kinds[ad.prefix] = ad.kind;
  for (const auto& peer : external) policy->external_peers.insert(peer.address);
  for (const auto& peer : peers) policy->node_peers.insert(peer.address);
  policy->import.service_vips = AllServiceVips(services);
  policy->import.reject = self->custom_import_reject;
  policy->import.service_ranges = config_.service_ranges;
  // Every node's addresses and pod CIDRs (nodes without a pod CIDR included).
  std::set<IpAddress> node_addresses;
  std::map<std::string, const NodeInfo*> by_name;
  for (const auto& info : all_nodes) by_name[info.name] = &info;
  ++node_list_reads_;
  for (const auto& node : cluster_->nodes.List()) {
    std::set<IpAddress> addresses;
    for (const auto& address : node->addresses) {
      if (auto ip = IpAddress::Parse(address.address)) addresses.insert(*ip);
    }
    node_addresses.insert(addresses.begin(), addresses.end());
    if (auto info = by_name.find(node->meta.name); info != by_name.end()) {
      for (const auto& cidr : info->second->pod_cidrs) {
        policy->import.pod_cidr_owners[cidr] = addresses;
      }
    }
  }
  policy->import.node_addresses = node_addresses;
  synced_node_addresses_ = node_addresses;  // where routes-only syncs may build tunnels to
  // This node's directly connected subnets (one route dump, shared with the kernel sync).
  const auto main_routes =
      dataplane_.routes->List({self->ip->family(), netlink::kMainTable, std::nullopt, {}});
  if (main_routes) {
    for (const auto& route : *main_routes) {
      if (route.protocol != kRouteProtocol && route.type == netlink::RouteType::kUnicast &&
          !route.gateway && route.destination.length() > 0) {
        policy->import.node_subnets.push_back(route.destination);
      }
    }
  }
  bool policy_changed;
  {
    std::lock_guard lock(shared_mu_);
    policy_changed = policy_->local_kinds != policy->local_kinds ||
                     policy_->external_peers != policy->external_peers ||
                     policy_->node_peers != policy->node_peers ||
                     !(policy_->import == policy->import) ||
                     policy_->self.communities != policy->self.communities ||
                     policy_->self.prepend != policy->self.prepend ||
                     policy_->self.rr_server_cluster_id != policy->self.rr_server_cluster_id;
    policy_ = policy;
  }
  if (policy_changed) speaker_->ReapplyPolicies();

  for (auto& peer : external) peers.push_back(std::move(peer));
  SyncPeers(peers);
  metrics_
      ->GetHistogram(kMetricPeersSyncTime, "Time it took to sync internal BGP peers",
                     metrics::Registry::DefaultBuckets())
      .Observe(Seconds(std::chrono::steady_clock::now() - peers_started));
  SyncAdvertisements(ads);

  // Kernel side: each part is independent, so one failing does not stop the others.
  std::vector<std::string> errors;
  auto collect = [&](Status status) {
    if (!status.ok()) errors.push_back(status.message());
  };
  collect(SyncKernelRoutes(*self, main_routes, node_addresses));
  collect(SyncPodEgress(all_nodes));
  if (config_.enable_cni) collect(SyncCni(*self));
  UpdatePeerMetrics();

  metrics_
      ->GetHistogram(kMetricRoutesSyncTime, "Time it took for the routing controller to sync",
                     metrics::Registry::DefaultBuckets())
      .Observe(Seconds(std::chrono::steady_clock::now() - started));
  if (!errors.empty()) {
    std::string joined;
    for (const auto& e : errors) joined += (joined.empty() ? "" : "; ") + e;
    return Status::Error("routing sync: " + joined);
  }
  KR_VLOG(2, "routing: sync ({}) done: {} peers, {} advertised, {} routes",
          reason == SyncReason::kPeriodic ? "periodic" : "requested", peers_.size(),
          advertised_.size(), installed_routes_.size());
  return Status::Ok();
}

Status NetworkRoutesController::EnsureSpeaker(const NodeInfo& self, uint32_t local_asn) {
  bgp::GlobalConfig global;
  global.local_asn = local_asn;
  if (config_.router_id) {
    global.router_id = *config_.router_id;
  } else if (config_.generate_router_id) {
    // FNV-1a (32 bit) over the node address text, rendered as an IPv4 router ID.
    uint32_t hash = 2166136261u;
    for (char c : self.ip->ToString()) hash = (hash ^ static_cast<uint8_t>(c)) * 16777619u;
    global.router_id = IpAddress::V4(hash == 0 ? 1 : hash);
  } else if (self.ip->is_v4()) {
    global.router_id = *self.ip;
  } else {
    return Status::Error("routing: node " + self.name +
                         " has an IPv6 address only; --router-id is required");
  }
  global.listen_port = config_.bgp_port;
  global.listen_addresses = {*self.ip};
  global.hold_time_s = static_cast<uint16_t>(config_.hold_time.count());
  global.graceful_restart = config_.graceful_restart;
  if (self.rr_server_cluster_id) global.cluster_id = IpAddress::V4(*self.rr_server_cluster_id);

  auto same = [](const bgp::GlobalConfig& a, const bgp::GlobalConfig& b) {
    return a.local_asn == b.local_asn && a.router_id == b.router_id &&
           a.listen_port == b.listen_port && a.listen_addresses == b.listen_addresses &&
           a.cluster_id == b.cluster_id;
  };
  if (speaker_ && speaker_config_ && same(*speaker_config_, global)) return Status::Ok();
  if (speaker_) {
    KR_LOG_INFO("routing: BGP identity changed (AS {}, router ID {}); restarting the speaker",
                global.local_asn, global.router_id.ToString());
    speaker_->Stop(false);
    speaker_.reset();
    peers_.clear();
    advertised_.clear();
    std::lock_guard lock(shared_mu_);
    learned_.clear();
  }
  auto speaker = speaker_factory_(global);
  if (!speaker) return Status::Error("routing: no BGP speaker");
  speaker->SetImportPolicy(
      [this](const bgp::PeerConfig& from, bgp::Route& route) { return ImportRoute(from, route); });
  speaker->SetExportPolicy(
      [this](const bgp::PeerConfig& to, bgp::Route& route) { return ExportRoute(to, route); });
  speaker->SubscribeBestPaths([this](const bgp::BestPathChange& change) { OnBestPath(change); });
  if (auto status = speaker->Start(); !status.ok()) {
    return status.Context("routing: starting the BGP speaker");
  }
  KR_LOG_INFO("routing: BGP speaker started: AS {}, router ID {}, port {}", global.local_asn,
              global.router_id.ToString(), global.listen_port);
  speaker_ = std::move(speaker);
  speaker_config_ = global;
  return Status::Ok();
}

bgp::PolicyVerdict NetworkRoutesController::ImportRoute(const bgp::PeerConfig& from,
                                                        const bgp::Route& route) {
  std::shared_ptr<const PolicyState> policy;
  {
    std::lock_guard lock(shared_mu_);
    policy = policy_;
  }
  const bool node_peer = policy->node_peers.count(from.address) > 0;
  const ImportVerdict verdict =
      DecideImport(policy->import, node_peer, route.prefix, route.next_hop);
  if (verdict == ImportVerdict::kAccept) return bgp::PolicyVerdict::kAccept;
  bool first;
  {
    std::lock_guard lock(shared_mu_);
    first = import_rejects_[{from.address, verdict}]++ == 0;
  }
  if (first) {
    // Once per peer and reason; the rest is counted in the metric.
    KR_LOG_WARN("routing: refusing routes from BGP peer {} ({}): {}, e.g. {} via {}",
                from.address.ToString(), node_peer ? "node" : "external",
                ImportVerdictName(verdict), route.prefix.ToString(), route.next_hop.ToString());
  }
  metrics_
      ->GetCounter(kMetricImportRejected, "BGP routes refused by the import policy",
                   {{"peer", from.address.ToString()}, {"reason", ImportVerdictName(verdict)}})
      .Inc();
  return bgp::PolicyVerdict::kReject;
}

bgp::PolicyVerdict NetworkRoutesController::ExportRoute(const bgp::PeerConfig& to,
                                                        bgp::Route& route) const {
  std::shared_ptr<const PolicyState> policy;
  {
    std::lock_guard lock(shared_mu_);
    policy = policy_;
  }
  PeerSpec peer;
  peer.address = to.address;
  peer.asn = to.remote_asn;
  peer.external = policy->external_peers.count(to.address) > 0;
  if (!route.local()) {
    // Routes learned from other nodes go on only by reflection (we are an RR server) and
    // only inside the cluster; external routers get each node's own announcements.
    return !peer.external && policy->self.rr_server_cluster_id ? bgp::PolicyVerdict::kAccept
                                                               : bgp::PolicyVerdict::kReject;
  }
  auto kind = policy->local_kinds.find(route.prefix);
  if (kind == policy->local_kinds.end()) return bgp::PolicyVerdict::kReject;
  ExportDecision decision = DecideExport(config_, policy->self, peer, kind->second);
  if (!decision.accept) return bgp::PolicyVerdict::kReject;
  for (uint32_t community : decision.communities) {
    auto& list = route.attributes.communities;
    if (std::find(list.begin(), list.end(), community) == list.end()) list.push_back(community);
  }
  if (decision.prepend) {
    if (!route.attributes.as_path) route.attributes.as_path = bgp::AsPath{};
    route.attributes.as_path->Prepend(decision.prepend->asn, decision.prepend->repeat);
  }
  if (decision.next_hop_self && to.local_address) {
    route.next_hop = *to.local_address;
    route.attributes.next_hop = *to.local_address;
  }
  return bgp::PolicyVerdict::kAccept;
}

void NetworkRoutesController::OnBestPath(const bgp::BestPathChange& change) {
  {
    std::lock_guard lock(shared_mu_);
    if (change.best && !change.best->local()) {
      learned_[change.prefix] = LearnedPath{change.prefix, change.best->next_hop};
    } else {
      learned_.erase(change.prefix);
    }
  }
  if (change.best && !change.best->local()) {
    metrics_->GetCounter(kMetricAdsReceived, "Total number of BGP advertisements received").Inc();
  }
  if (request_sync_) request_sync_();
}

void NetworkRoutesController::SyncPeers(const std::vector<PeerSpec>& desired) {
  std::map<IpAddress, PeerSpec> want;
  for (const auto& peer : desired) {
    if (!want.emplace(peer.address, peer).second) {
      KR_LOG_WARN("routing: peer {} is configured twice; using the first", peer.address.ToString());
    }
  }
  for (auto it = peers_.begin(); it != peers_.end();) {
    if (want.count(it->first)) {
      ++it;
      continue;
    }
    KR_LOG_INFO("routing: removing BGP peer {} ({})", it->first.ToString(), PeerType(it->second));
    speaker_->RemovePeer(it->first);
    if (auto series = peer_info_series_.find(it->first); series != peer_info_series_.end()) {
      metrics_->RemoveSeries(kMetricPeerInfo, series->second);
      peer_info_series_.erase(series);
    }
    it = peers_.erase(it);
  }
  for (const auto& [address, peer] : want) {
    auto current = peers_.find(address);
    if (current != peers_.end() && current->second == peer) continue;
    if (current == peers_.end()) {
      KR_LOG_INFO("routing: adding BGP peer {} AS {} ({})", address.ToString(), peer.asn,
                  PeerType(peer));
      speaker_->AddPeer(ToPeerConfig(peer, config_));
    } else {
      KR_LOG_INFO("routing: updating BGP peer {} AS {} ({})", address.ToString(), peer.asn,
                  PeerType(peer));
      speaker_->UpdatePeer(ToPeerConfig(peer, config_));
    }
    peers_[address] = peer;
  }
}

void NetworkRoutesController::SyncAdvertisements(const std::vector<Advertisement>& desired) {
  std::map<IpPrefix, Advertisement> want;
  for (const auto& ad : desired) want.emplace(ad.prefix, ad);
  metrics::Registry& sent = *metrics_;
  const char* help = "Total number of BGP advertisements sent";
  for (auto it = advertised_.begin(); it != advertised_.end();) {
    if (want.count(it->first)) {
      ++it;
      continue;
    }
    KR_LOG_INFO("routing: withdrawing {} ({})", it->first.ToString(),
                RouteKindName(it->second.kind));
    speaker_->WithdrawPath(it->first);
    if (it->second.kind != RouteKind::kPodCidr) {
      sent.GetCounter(kMetricAdsSent, help, {{"type", "withdraw-vip"}}).Inc();
    }
    it = advertised_.erase(it);
  }
  for (const auto& [prefix, ad] : want) {
    auto current = advertised_.find(prefix);
    if (current != advertised_.end() && current->second == ad) continue;
    bgp::LocalPath path;
    path.prefix = ad.prefix;
    path.next_hop = ad.next_hop;
    KR_LOG_INFO("routing: advertising {} ({}) next hop {}", prefix.ToString(),
                RouteKindName(ad.kind), ad.next_hop.ToString());
    speaker_->AddPath(path);
    sent.GetCounter(kMetricAdsSent, help,
                    {{"type", ad.kind == RouteKind::kPodCidr ? "pod-route" : "advertise-vip"}})
        .Inc();
    advertised_[prefix] = ad;
  }
}

Status NetworkRoutesController::SyncKernelRoutes(
    const NodeInfo& self, const Result<std::vector<netlink::Route>>& main_routes,
    const std::set<IpAddress>& node_addresses) {
  std::vector<LearnedPath> paths;
  {
    std::lock_guard lock(shared_mu_);
    for (const auto& [prefix, path] : learned_) paths.push_back(path);
  }
  if (!main_routes) return main_routes.status().Context("listing kernel routes");
  std::vector<UnderlayRoute> underlay;
  std::vector<netlink::Route> ours;
  for (const auto& route : *main_routes) {
    if (route.protocol == kRouteProtocol) {
      ours.push_back(route);
    } else if (route.type == netlink::RouteType::kUnicast) {
      underlay.push_back({route.destination, route.gateway});
    }
  }
  RoutePlan plan = PlanRoutes(config_, *self.ip, self.pod_cidrs, paths, underlay, node_addresses);
  for (const auto& skipped : plan.skipped) KR_VLOG(1, "routing: not routing {}", skipped);
  for (const auto& collision : plan.name_collisions) {
    KR_LOG_ERROR("routing: not routing {}", collision);
  }

  // Tunnels first: a route through a tunnel needs the link to exist and be up.
  Status tunnel_status = SyncTunnels(plan.tunnels);

  std::vector<netlink::Route> want;
  for (const auto& route : plan.routes) want.push_back(ToKernelRoute(route));
  KernelRouteDiff diff = DiffKernelRoutes(want, ours);
  const auto& changes = diff.changes;
  std::string refused;
  if (!changes.empty()) {
    auto result = dataplane_.routes->Apply(changes);
    if (!result) return result.status().Context("programming routes");
    for (const auto& error : *result) {
      refused += (refused.empty() ? "" : "; ") + changes[error.index].route.ToString() + ": " +
                 error.message;
    }
    for (const auto& change : changes) {
      KR_VLOG(1, "routing: {} {}",
              change.op == netlink::RouteChange::Op::kDelete ? "deleted" : "installed",
              change.route.ToString());
    }
  }
  metrics_->GetCounter(kMetricRoutesAdded, "Total number of routes added to the host")
      .Inc(diff.replaced);
  metrics_->GetCounter(kMetricRoutesRemoved, "Total number of routes removed from the host")
      .Inc(diff.deleted);
  metrics_->GetGauge(kMetricRoutesSynced, "Number of learned routes installed on the host")
      .Set(static_cast<double>(want.size()));
  installed_routes_ = want;
  if (!tunnel_status.ok()) return tunnel_status;
  if (!refused.empty()) return Status::Error("kernel refused routes: " + refused);
  return Status::Ok();
}

Status NetworkRoutesController::SyncTunnels(const std::vector<DesiredTunnel>& desired) {
  auto links = dataplane_.links->List();
  if (!links) return links.status().Context("listing links");
  std::map<std::string, netlink::Link> existing;
  for (const auto& link : *links) {
    if (IsOurTunnelName(link.name) && (link.kind == "ipip" || link.kind == "ip6tnl")) {
      existing.emplace(link.name, link);
    }
  }
  std::vector<std::string> errors;
  for (const auto& tunnel : desired) {
    auto it = existing.find(tunnel.name);
    bool create = it == existing.end();
    if (!create &&
        (it->second.tunnel_local != tunnel.local || it->second.tunnel_remote != tunnel.remote)) {
      KR_LOG_INFO("routing: tunnel {} has other end points; recreating", tunnel.name);
      if (auto status = dataplane_.links->Delete(tunnel.name); !status.ok()) {
        errors.push_back(status.message());
        continue;
      }
      create = true;
    }
    if (create) {
      netlink::TunnelSpec spec{tunnel.name, tunnel.local, tunnel.remote, 0, 0};
      if (auto status = dataplane_.links->CreateTunnel(spec); !status.ok()) {
        errors.push_back("creating tunnel " + tunnel.name + ": " + status.message());
        continue;
      }
      KR_LOG_INFO("routing: created tunnel {} to {}", tunnel.name, tunnel.remote.ToString());
    }
    if (create || !it->second.up) {
      if (auto status = dataplane_.links->SetUp(tunnel.name, true); !status.ok()) {
        errors.push_back("bringing up " + tunnel.name + ": " + status.message());
      }
    }
  }
  for (const auto& [name, link] : existing) {
    bool wanted = std::any_of(desired.begin(), desired.end(),
                              [&](const DesiredTunnel& t) { return t.name == name; });
    if (wanted) continue;
    if (auto status = dataplane_.links->Delete(name); !status.ok()) {
      errors.push_back("deleting tunnel " + name + ": " + status.message());
    } else {
      KR_LOG_INFO("routing: deleted tunnel {}", name);
    }
  }
  installed_tunnels_ = desired;
  if (!errors.empty()) {
    std::string joined;
    for (const auto& e : errors) joined += (joined.empty() ? "" : "; ") + e;
    return Status::Error(joined);
  }
  return Status::Ok();
}

Status NetworkRoutesController::SyncPodEgress(const std::vector<NodeInfo>& nodes) {
  if (!dataplane_.ipset || !dataplane_.iptables) return Status::Ok();
  auto sets = dataplane_.ipset->List();
  if (!sets) return sets.status().Context("listing ipsets");
  netfilter::IpsetUpdate set_update = PlanSetUpdate(DesiredEgressSets(nodes), *sets);
  if (!set_update.empty()) {
    if (auto status = dataplane_.ipset->Apply(set_update); !status.ok()) {
      return status.Context("updating the pod/node ipsets");
    }
  }
  auto nat = dataplane_.iptables->Save("nat");
  if (!nat) return nat.status().Context("reading the nat table");
  netfilter::TableUpdate update = PlanPodEgress(*nat, config_.enable_pod_egress);
  if (!update.empty()) {
    if (auto status = dataplane_.iptables->Apply(update); !status.ok()) {
      return status.Context("updating the pod egress masquerade");
    }
    KR_LOG_INFO("routing: pod egress masquerade {}",
                config_.enable_pod_egress ? "installed" : "removed");
  }
  return Status::Ok();
}

Result<uint32_t> NetworkRoutesController::NodeMtu(const NodeInfo& self) {
  auto addresses = dataplane_.links->ListAddresses("");
  if (!addresses) return addresses.status();
  for (const auto& address : *addresses) {
    if (address.address != *self.ip) continue;
    auto link = dataplane_.links->Get(address.device);
    if (!link) return link.status();
    if (*link && (*link)->mtu > 0) return (*link)->mtu;
  }
  return Status::Error("no interface holds the node address " + self.ip->ToString());
}

void NetworkRoutesController::UpdatePeerMetrics() {
  std::vector<bgp::PeerStatus> statuses = speaker_->Peers();
  nlohmann::json peers = nlohmann::json::array();
  for (const auto& status : statuses) {
    auto spec = peers_.find(status.config.address);
    const std::string type = spec != peers_.end() ? PeerType(spec->second) : std::string("unknown");
    metrics::LabelSet labels = {{"address", status.config.address.ToString()},
                                {"type", type},
                                {"asn", std::to_string(status.config.remote_asn)},
                                {"state", bgp::PeerStateName(status.state)}};
    auto& current = peer_info_series_[status.config.address];
    if (current != labels) {
      if (!current.empty()) metrics_->RemoveSeries(kMetricPeerInfo, current);
      current = labels;
    }
    metrics_->GetGauge(kMetricPeerInfo, "BGP peer information", labels).Set(1);
    peers.push_back({{"address", status.config.address.ToString()},
                     {"asn", status.config.remote_asn},
                     {"type", type},
                     {"state", bgp::PeerStateName(status.state)},
                     {"uptime_seconds", status.uptime.count()},
                     {"prefixes_received", status.prefixes_received},
                     {"prefixes_sent", status.prefixes_sent},
                     {"last_error", status.last_error}});
  }
  nlohmann::json advertised = nlohmann::json::array();
  for (const auto& [prefix, ad] : advertised_) {
    advertised.push_back({{"prefix", prefix.ToString()},
                          {"next_hop", ad.next_hop.ToString()},
                          {"kind", RouteKindName(ad.kind)}});
  }
  nlohmann::json routes = nlohmann::json::array();
  for (const auto& route : installed_routes_) routes.push_back(route.ToString());
  nlohmann::json tunnels = nlohmann::json::array();
  for (const auto& tunnel : installed_tunnels_) {
    tunnels.push_back({{"name", tunnel.name},
                       {"local", tunnel.local.ToString()},
                       {"remote", tunnel.remote.ToString()}});
  }
  nlohmann::json view = {
      {"node", config_.node_name},
      {"local_asn", speaker_config_ ? speaker_config_->local_asn : 0},
      {"router_id", speaker_config_ ? speaker_config_->router_id.ToString() : ""},
      {"peers", peers},
      {"advertised", advertised},
      {"routes", routes},
      {"tunnels", tunnels}};
  std::lock_guard lock(shared_mu_);
  status_json_ = view.dump(2);
}

std::string NetworkRoutesController::StatusJson() const {
  std::lock_guard lock(shared_mu_);
  return status_json_;
}

Result<std::vector<std::string>> NetworkRoutesController::Cleanup() {
  std::vector<std::string> removed;
  std::vector<std::string> errors;
  // Routes with our protocol, in every family; nobody else's.
  for (auto family : {IpAddress::Family::kV4, IpAddress::Family::kV6}) {
    auto routes = dataplane_.routes->List({family, std::nullopt, kRouteProtocol, {}});
    if (!routes) {
      errors.push_back(routes.error());
      continue;
    }
    std::vector<netlink::RouteChange> changes;
    for (const auto& route : *routes) changes.push_back({netlink::RouteChange::Op::kDelete, route});
    if (changes.empty()) continue;
    auto result = dataplane_.routes->Apply(changes);
    if (!result) {
      errors.push_back(result.error());
      continue;
    }
    for (size_t i = 0; i < changes.size(); ++i) {
      bool refused = std::any_of(result->begin(), result->end(),
                                 [&](const netlink::RouteChangeError& e) { return e.index == i; });
      if (!refused) removed.push_back("route " + changes[i].route.ToString());
    }
  }
  if (auto links = dataplane_.links->List(); links) {
    for (const auto& link : *links) {
      if (!IsOurTunnelName(link.name) || (link.kind != "ipip" && link.kind != "ip6tnl")) continue;
      if (auto status = dataplane_.links->Delete(link.name); status.ok()) {
        removed.push_back("tunnel " + link.name);
      } else {
        errors.push_back(status.message());
      }
    }
  } else {
    errors.push_back(links.error());
  }
  if (dataplane_.iptables) {
    if (auto nat = dataplane_.iptables->Save("nat"); nat) {
      auto update = PlanPodEgress(*nat, /*enabled=*/false);
      if (!update.empty()) {
        if (auto status = dataplane_.iptables->Apply(update); status.ok()) {
          removed.push_back(std::string("nat chain ") + kPodEgressChain + " and its jump");
        } else {
          errors.push_back(status.message());
        }
      }
    } else {
      errors.push_back(nat.error());
    }
  }
  if (dataplane_.ipset) {
    // Only our two sets, never every set on the host (kube-router's Cleanup destroys all).
    if (auto names = dataplane_.ipset->ListNames(); names) {
      netfilter::IpsetUpdate update;
      for (const auto& name : *names) {
        if (name == kPodSubnetsSet || name == kNodeIpsSet) update.destroy.push_back(name);
      }
      if (!update.empty()) {
        if (auto status = dataplane_.ipset->Apply(update); status.ok()) {
          for (const auto& name : update.destroy) removed.push_back("ipset " + name);
        } else {
          errors.push_back(status.message());
        }
      }
    } else {
      errors.push_back(names.error());
    }
  }
  if (auto addresses = dataplane_.links->ListAddresses(kBridgeName); addresses) {
    for (const auto& address : *addresses) {
      // The kernel's own link-local address stays; ours are the gateway addresses.
      if (address.scope != netlink::Scope::kUniverse) continue;
      if (auto status = dataplane_.links->DeleteAddress(address); status.ok()) {
        removed.push_back("address " + address.ToString());
      } else {
        errors.push_back(status.message());
      }
    }
  }
  if (!errors.empty()) {
    std::string joined;
    for (const auto& e : errors) joined += (joined.empty() ? "" : "; ") + e;
    return Status::Error("routing cleanup: " + joined);
  }
  return removed;
}

void NetworkRoutesController::Shutdown() {
  if (!speaker_) return;
  speaker_->Stop(config_.graceful_restart);
  speaker_.reset();
}

std::function<std::string()> StatusViewSource(Controller* controller) {
  auto* routes = dynamic_cast<NetworkRoutesController*>(controller);
  if (!routes) return nullptr;
  return [routes] { return routes->StatusJson(); };
}

}  // namespace kr::routing
