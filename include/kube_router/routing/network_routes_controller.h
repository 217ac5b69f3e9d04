// NetworkRoutes controller (--run-router, kube-router pkg/controllers/routing): pod CIDRs over
// iBGP between nodes, service VIPs to external peers, learned routes into the kernel (proto 17,
// ipip/ip6tnl tunnels across subnets, optionally in FoU/GUE), pod egress masquerade, and the CNI
// config with kube-bridge.
//
// Threading: Init/OnUpdate/Sync/Cleanup/Shutdown run on the controller's own thread (the
// runner's), which is the only caller of the dataplane. The BGP speaker calls the policies and
// the best-path subscriber on its own thread; those touch only state behind `shared_mu_`.
// StatusJson() may be called from any thread.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "kube_router/base/mutex.h"
#include "kube_router/bgp/speaker.h"
#include "kube_router/k8s/store.h"
#include "kube_router/metrics/registry.h"
#include "kube_router/netfilter/ipset.h"
#include "kube_router/netfilter/iptables.h"
#include "kube_router/netlink/links.h"
#include "kube_router/netlink/route_table.h"
#include "kube_router/netlink/sysctl.h"
#include "kube_router/routing/bgp_plan.h"
#include "kube_router/routing/route_plan.h"
#include "kube_router/routing/routing_config.h"
#include "kube_router/runtime/controller.h"

namespace kr::routing {

// The kernel interfaces the controller drives; all must outlive it. `sysctl` may be null.
struct RoutingDataplane {
  netlink::RouteTable* routes = nullptr;
  netlink::Links* links = nullptr;
  netfilter::Iptables* iptables = nullptr;  // IPv4; only the nat table is touched
  netfilter::Ipset* ipset = nullptr;
  netlink::Sysctl* sysctl = nullptr;
  // IPv6 (ip6tables), for pod egress with --enable-ipv6; may be null (then no IPv6 egress).
  netfilter::Iptables* iptables6 = nullptr;
  // FoU receive ports (--overlay-encap=fou). May be null when FoU is never used: then ports of
  // ours are neither added nor cleaned up.
  netlink::FouPorts* fou = nullptr;
};

// Creates the speaker once the local node (and so the AS and router ID) is known.
using SpeakerFactory = std::function<std::unique_ptr<bgp::Speaker>(const bgp::GlobalConfig&)>;

class NetworkRoutesController : public Controller {
 public:
  // `cluster` and `metrics` must outlive the controller; `metrics` may be null.
  // `dataplane_owner`, if given, owns the adapters `dataplane` points to and is released
  // last (the agent's real adapters; tests keep their fakes themselves).
  NetworkRoutesController(RoutingConfig config, const k8s::Cluster* cluster,
                          RoutingDataplane dataplane, SpeakerFactory speaker_factory,
                          metrics::Registry* metrics,
                          std::shared_ptr<void> dataplane_owner = nullptr);
  ~NetworkRoutesController() override;

  std::string Name() const override { return "NetworkRoutes"; }
  // The routes sync period, or the shorter --injected-routes-sync-period: the periodic syncs in
  // between re-install the learned routes only (see Sync).
  std::chrono::milliseconds SyncPeriod() const override;
  std::vector<k8s::ResourceKind> WatchedKinds() const override;

  void SetSyncRequester(std::function<void()> request_sync) override;
  Status Init() override;
  bool OnUpdate(const k8s::Event& event) override;
  Status Sync(SyncReason reason) override;
  void Shutdown() override;
  Result<std::vector<std::string>> Cleanup() override;

  // Read-only status view: peers, advertised prefixes, installed routes and tunnels as JSON
  // (served over HTTP by the app, see src/app/endpoints.h).
  std::string StatusJson() const;

 private:
  // What the speaker-thread callbacks read; replaced as a whole by Sync.
  struct PolicyState {
    uint32_t local_asn = 0;
    NodeInfo self;
    std::map<IpPrefix, RouteKind> local_kinds;  // our originated prefixes
    std::set<IpAddress> external_peers;
    std::set<IpAddress> node_peers;  // iBGP peers (other nodes)
    ImportFilter import;
  };

  // Everything: nodes, speaker, policies, peers, advertisements, kernel routes, pod egress, CNI.
  Status FullSync(SyncReason reason);
  // A learned or withdrawn path: kernel routes and tunnels only (no ipset/iptables, no Nodes).
  Status SyncRoutesOnly();
  Status EnsureSpeaker(const NodeInfo& self, uint32_t local_asn);
  void SyncPeers(const std::vector<PeerSpec>& desired);
  bool OnConnectedSubnet(const IpAddress& address) const;
  void SyncAdvertisements(const std::vector<Advertisement>& desired);
  Status SyncKernelRoutes(const NodeInfo& self,
                          const Result<std::vector<netlink::Route>>& main_routes,
                          const std::set<IpAddress>& node_addresses);
  // The main table's routes of every enabled family (one dump per family).
  Result<std::vector<netlink::Route>> ListMainRoutes(const NodeInfo& self) const;
  Status SyncPodEgress(const std::vector<NodeInfo>& nodes);
  Status SyncPodEgressFamily(const std::vector<NodeInfo>& nodes, netfilter::Iptables& iptables,
                             bool enabled);
  Status SyncCni(const NodeInfo& self);
  void UpdatePeerMetrics();
  void LogNodeProblems(const std::string& node, const std::vector<std::string>& problems);
  Result<uint32_t> NodeMtu(const NodeInfo& self);

  bgp::PolicyVerdict ExportRoute(const bgp::PeerConfig& to, bgp::Route& route) const;
  bgp::PolicyVerdict ImportRoute(const bgp::PeerConfig& from, const bgp::Route& route);
  void OnBestPath(const bgp::BestPathChange& change);

  std::shared_ptr<void> dataplane_owner_;  // first member: destroyed last
  const RoutingConfig config_;
  const k8s::Cluster* cluster_;
  RoutingDataplane dataplane_;
  SpeakerFactory speaker_factory_;
  metrics::Registry* metrics_;
  std::unique_ptr<metrics::Registry> own_metrics_;  // when none was given

  // Controller-thread state.
  std::unique_ptr<bgp::Speaker> speaker_;
  std::optional<bgp::GlobalConfig> speaker_config_;
  std::map<IpAddress, PeerSpec> peers_;                            // configured on the speaker
  std::map<IpPrefix, Advertisement> advertised_;                   // originated on the speaker
  std::map<std::string, std::vector<std::string>> node_problems_;  // last logged per node
  std::map<IpAddress, metrics::LabelSet> peer_info_series_;        // current bgp_peer_info labels
  std::vector<netlink::Route> installed_routes_;
  std::vector<DesiredTunnel> installed_tunnels_;
  std::set<std::string> logged_skips_;  // unroutable paths already logged
  // Set by an API event and by a failed full sync; the next requested sync is then full.
  bool full_sync_pending_ = true;
  std::chrono::steady_clock::time_point last_full_sync_;  // when the last good full sync ended
  std::optional<NodeInfo> synced_self_;                   // this node as the last full sync saw it
  std::set<IpAddress> synced_node_addresses_;             // every node's addresses, ditto

  // Shared with the speaker thread and StatusJson().
  mutable Mutex shared_mu_;
  std::shared_ptr<const PolicyState> policy_ KR_GUARDED_BY(shared_mu_);
  std::map<IpPrefix, LearnedPath> learned_ KR_GUARDED_BY(shared_mu_);
  std::function<void()> request_sync_;  // set before Init
  std::string status_json_ KR_GUARDED_BY(shared_mu_) = "{}";
  // Import rejections per peer and reason (each pair logged once).
  std::map<std::pair<IpAddress, ImportVerdict>, uint64_t> import_rejects_ KR_GUARDED_BY(shared_mu_);
};

// The status view's JSON source when `controller` is the routes controller (the app serves it
// on --gobgp-admin-address:--gobgp-admin-port), else nullptr. Valid while the controller is.
std::function<std::string()> StatusViewSource(Controller* controller);

}  // namespace kr::routing
