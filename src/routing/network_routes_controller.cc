// The controller's core: what happens when (Sync, full or routes only), the speaker, the BGP
// policies, peers and advertisements. The kernel side is in kernel_sync.cc, --cleanup-config in
// cleanup.cc, metrics and the status view in status.cc, the CNI part in cni.cc.
#include "kube_router/routing/network_routes_controller.h"

#include <algorithm>
#include <chrono>

#include "controller_metrics.h"
#include "kube_router/base/log.h"

namespace kr::routing {
namespace {

// `directly_connected`: the peer is on one of this node's connected subnets (GTSM applies).
bgp::PeerConfig ToPeerConfig(const PeerSpec& spec, const RoutingConfig& config,
                             bool directly_connected) {
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
  peer.ttl_security = config.ttl_security && directly_connected && spec.multihop_ttl == 0;
  peer.description = spec.external ? "external" : "node " + spec.node_name;
  return peer;
}

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
    std::vector<std::pair<std::string, std::string>> settings = {
        {"net.ipv4.ip_forward", "1"}, {"net.bridge.bridge-nf-call-iptables", "1"}};
    if (config_.enable_ipv6) {
      settings.insert(settings.end(), {{"net.ipv6.conf.all.disable_ipv6", "0"},
                                       {"net.ipv6.conf.all.forwarding", "1"},
                                       {"net.bridge.bridge-nf-call-ip6tables", "1"}});
    }
    for (const auto& [key, value] : settings) {
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

std::chrono::milliseconds NetworkRoutesController::SyncPeriod() const {
  const auto injected = config_.injected_routes_sync_period;
  if (injected.count() > 0 && injected < config_.routes_sync_period) return injected;
  return config_.routes_sync_period;
}

Status NetworkRoutesController::Sync(SyncReason reason) {
  // A requested sync with no API event since the last good full sync was asked for by a learned
  // or withdrawn path: only the kernel routes and tunnels can be out of date. Everything else
  // (startup, periodic repair, API events, after a failure) reconciles in full.
  if (reason == SyncReason::kRequested && !full_sync_pending_ && synced_self_) {
    return SyncRoutesOnly();
  }
  // A periodic tick of the shorter --injected-routes-sync-period re-installs the learned
  // routes (kube-router's RouteSync); the full repair still runs every routes_sync_period
  // (half a tick of slack, so timer jitter never pushes it a whole tick late).
  if (reason == SyncReason::kPeriodic && !full_sync_pending_ && synced_self_ &&
      SyncPeriod() < config_.routes_sync_period &&
      std::chrono::steady_clock::now() - last_full_sync_ + SyncPeriod() / 2 <
          config_.routes_sync_period) {
    return SyncRoutesOnly();
  }
  Status status = FullSync(reason);
  full_sync_pending_ = !status.ok();
  if (status.ok()) last_full_sync_ = std::chrono::steady_clock::now();
  return status;
}

Result<std::vector<netlink::Route>> NetworkRoutesController::ListMainRoutes(
    const NodeInfo& self) const {
  std::vector<netlink::Route> all;
  for (const auto& address : {self.ipv4, self.ipv6}) {
    if (!address) continue;
    auto routes =
        dataplane_.routes->List({address->family(), netlink::kMainTable, std::nullopt, {}});
    if (!routes) return routes.status();
    all.insert(all.end(), std::make_move_iterator(routes->begin()),
               std::make_move_iterator(routes->end()));
  }
  return all;
}

Status NetworkRoutesController::SyncRoutesOnly() {
  const auto started = std::chrono::steady_clock::now();
  const auto main_routes = ListMainRoutes(*synced_self_);
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
  // Before the first cache read: a full sync reads every node, Service and slice, and OnUpdate
  // only asks for one. A routes-only sync lists no Node and must not mark.
  MarkFullRead();
  synced_self_.reset();
  std::vector<NodeInfo> nodes;      // nodes we route to (those with a pod CIDR)
  std::vector<NodeInfo> all_nodes;  // every node: their addresses are never masqueraded
  std::optional<NodeInfo> self;
  std::set<std::string> present;
  // Every node's addresses and pod CIDRs (nodes without a pod CIDR included), for the import
  // filter and the tunnels: from the same, single read of the Node list.
  std::set<IpAddress> node_addresses;
  std::map<IpPrefix, std::set<IpAddress>> pod_cidr_owners;
  for (const auto& node : cluster_->nodes.List()) {
    ParsedNode parsed = ParseNode(*node);
    // Pod CIDRs the node cannot be routed to in their family are left out of everything.
    auto family_problems = ApplyFamilies(config_, parsed.info);
    parsed.problems.insert(parsed.problems.end(), family_problems.begin(), family_problems.end());
    LogNodeProblems(parsed.info.name, parsed.problems);
    present.insert(parsed.info.name);
    std::set<IpAddress> addresses;
    for (const auto& address : node->addresses) {
      if (auto ip = IpAddress::Parse(address.address)) addresses.insert(*ip);
    }
    node_addresses.insert(addresses.begin(), addresses.end());
    for (const auto& cidr : parsed.info.pod_cidrs) pod_cidr_owners[cidr] = addresses;
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
  std::vector<std::string> peer_problems;
  std::vector<PeerSpec> external = PlanExternalPeers(config_, *self, &peer_problems);
  LogNodeProblems(self->name + "/peers", peer_problems);
  auto policy = std::make_shared<PolicyState>();
  policy->local_asn = *local_asn;
  policy->self = *self;
  for (const auto& ad : ads) policy->local_kinds[ad.prefix] = ad.kind;
  for (const auto& peer : external) policy->external_peers.insert(peer.address);
  for (const auto& peer : peers) policy->node_peers.insert(peer.address);
  policy->import.service_vips = AllServiceVips(services);
  policy->import.reject = self->custom_import_reject;
  policy->import.service_ranges = config_.service_ranges;
  policy->import.pod_cidr_owners = std::move(pod_cidr_owners);
  policy->import.node_addresses = node_addresses;
  synced_node_addresses_ = node_addresses;  // where routes-only syncs may build tunnels to
  // This node's directly connected subnets (one route dump, shared with the kernel sync).
  const auto main_routes = ListMainRoutes(*self);
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
    MutexLock lock(shared_mu_);
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
  // Both families' addresses: an external IPv6 peer connects to the IPv6 one.
  global.listen_addresses = {*self.ip};
  for (const auto& address : {self.ipv4, self.ipv6}) {
    if (address && *address != *self.ip) global.listen_addresses.push_back(*address);
  }
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
    MutexLock lock(shared_mu_);
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
    MutexLock lock(shared_mu_);
    policy = policy_;
  }
  const bool node_peer = policy->node_peers.count(from.address) > 0;
  const ImportVerdict verdict =
      DecideImport(policy->import, node_peer, route.prefix, route.next_hop);
  if (verdict == ImportVerdict::kAccept) return bgp::PolicyVerdict::kAccept;
  bool first;
  {
    MutexLock lock(shared_mu_);
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
    MutexLock lock(shared_mu_);
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
  // Next-hop-self only in the session's family: an IPv6 route over an IPv4 session keeps the
  // node's IPv6 address (a next hop must be of the prefix's family).
  if (decision.next_hop_self && to.local_address &&
      to.local_address->family() == route.prefix.address().family()) {
    route.next_hop = *to.local_address;
    route.attributes.next_hop = *to.local_address;
  }
  return bgp::PolicyVerdict::kAccept;
}

void NetworkRoutesController::OnBestPath(const bgp::BestPathChange& change) {
  {
    MutexLock lock(shared_mu_);
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

bool NetworkRoutesController::OnConnectedSubnet(const IpAddress& address) const {
  MutexLock lock(shared_mu_);
  for (const auto& subnet : policy_->import.node_subnets) {
    if (subnet.Contains(address)) return true;
  }
  return false;
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
      speaker_->AddPeer(ToPeerConfig(peer, config_, OnConnectedSubnet(peer.address)));
    } else {
      KR_LOG_INFO("routing: updating BGP peer {} AS {} ({})", address.ToString(), peer.asn,
                  PeerType(peer));
      speaker_->UpdatePeer(ToPeerConfig(peer, config_, OnConnectedSubnet(peer.address)));
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

void NetworkRoutesController::Shutdown() {
  if (!speaker_) return;
  speaker_->Stop(config_.graceful_restart);
  speaker_.reset();
}

}  // namespace kr::routing
