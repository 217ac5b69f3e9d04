// The service proxy (kube-router's NetworkServicesController, --run-service-proxy): Kubernetes
// Services on IPVS, with their VIPs on kube-dummy-if.
//
// Incremental: OnUpdate notes which Services an event touched; Sync(kRequested) rebuilds only
// those (desired_state.h), diffs them against the image of what this controller programmed
// (ipvs_plan.h) and writes only the difference. Sync(kStartup/kPeriodic) rebuilds everything,
// reads back what the kernel holds of ours and repairs drift; on a restart that adopts the
// existing state and writes nothing when nothing changed. IPVS is never flushed.
// Sync(kPeriodic) does the same verification in steps of ProxyConfig::verify_step_items and asks
// the runner for another sync after each; events are served between the steps, and a virtual
// service an event wrote after the kernel was read is not judged by that read.
//
// Ownership: ours are kube-dummy-if (and so every address on it), the IPVS services on those
// addresses, the NodePort services (a local address and a port in --service-node-port-range)
// and whatever this process programmed. Services inside --excluded-cidrs and fwmark services
// (the DSR extension's) are never read as ours, so never changed or removed.
//
// Threading: everything runs on the runner's thread except the drain ticker, which only calls
// the runner's sync requester.
#pragma once

#include <atomic>
#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "kube_router/k8s/store.h"
#include "kube_router/metrics/registry.h"
#include "kube_router/netlink/ipvs.h"
#include "kube_router/netlink/links.h"
#include "kube_router/netlink/route_table.h"
#include "kube_router/proxy/desired_state.h"
#include "kube_router/proxy/ipvs_plan.h"
#include "kube_router/proxy/proxy_config.h"
#include "kube_router/runtime/controller.h"

namespace kr::proxy {

// The kernel interfaces the controller writes; all must outlive it.
struct ProxyDataplane {
  netlink::Ipvs* ipvs = nullptr;
  netlink::Links* links = nullptr;
  netlink::RouteTable* routes = nullptr;
};

// What the other proxy pieces see after every successful sync. A full sync shows everything; an
// event sync shows only what it touched, so every piece costs O(change), not O(cluster), and
// keeps its own state for the rest.
struct ProxySnapshot {
  // Full sync: every non-skipped Service. Event sync: only the changed ones that still exist
  // (a changed name missing here was deleted or is now skipped).
  const std::map<ServiceName, DesiredService>* services = nullptr;
  std::set<ServiceName> changed;  // rebuilt by this sync (all of them on a full sync)
  bool full = false;              // startup/periodic: reconcile everything
  const NodeFacts* node = nullptr;
  // Full sync: the whole programmed image. Event sync: only the virtual services in `touched`
  // that are programmed (and the VIPs it compared).
  const ProxyImage* programmed = nullptr;
  // Event sync: the virtual services this sync compared or whose destinations the drain queue
  // changed (a touched id missing from `programmed` is gone). Empty on a full sync.
  std::set<VirtualServiceId> touched;
  size_t ipvs_services = 0;  // IPVS services the proxy now programs (all of them)
  // How long the IPVS part of this sync took; for the full apply that ends a periodic
  // verification, its steps' summed time.
  double sync_seconds = 0;
  // A Sync that is one step of a periodic verification (the events it served, or the step's
  // own work): not a whole sync, so not timed as one (the verification is, at its end).
  bool step = false;
};

// A piece that plugs into the controller: the VIP firewall, masquerade and hairpin rules,
// healthCheckNodePort servers, per-service metrics, UDP/SCTP conntrack cleanup, DSR. Called on
// the controller's thread; an error fails the sync (retried) but never blocks other Services.
class ProxyExtension {
 public:
  virtual ~ProxyExtension() = default;
  virtual std::string Name() const = 0;
  virtual Status Init() { return Status::Ok(); }
  virtual Status Apply(const ProxySnapshot& snapshot) = 0;
  // A real server was deleted from a virtual service (not: set to weight 0 for draining).
  virtual void OnDestinationRemoved(const netlink::IpvsService& service,
                                    const netlink::IpvsDestination& destination) {
    (void)service;
    (void)destination;
  }
  // True when this extension programs the DSR virtual services (DesiredVirtualService::dsr);
  // without one, DSR services are programmed as ordinary masquerading ones.
  virtual bool HandlesDsr() const { return false; }
  virtual Result<std::vector<std::string>> Cleanup() { return std::vector<std::string>{}; }
};

// Where the last completed full sync (startup, repair or periodic verification) spent its time.
// A periodic verification runs in steps with events served between them: the stage times are
// summed over its steps, `wall_seconds` spans its first step's start to its last step's end.
struct FullSyncStats {
  double rebuild_seconds = 0;     // BuildService of every Service, claims
  double read_seconds = 0;        // the kernel dumps: addresses, routes, services, destinations
  double diff_seconds = 0;        // Diff()
  double write_seconds = 0;       // ApplyPlan(): the repairs (nothing when nothing drifted)
  double extensions_seconds = 0;  // the extensions' full apply
  double wall_seconds = 0;
  double busy_seconds = 0;          // the steps' time summed (without the waits between them)
  double longest_step_seconds = 0;  // the longest an event could wait behind this sync
  std::string longest_step_phases;  // the phases that step worked in ("compare", "read VIPs")
  int steps = 0;
  size_t services = 0;          // Services rebuilt
  size_t virtual_services = 0;  // virtual services compared with the kernel
  size_t repairs = 0;           // IPVS changes and VIP adds/removals it wrote
  size_t largest_plan = 0;      // the most IPVS changes one plan of it held (a chunk's)
};

class NetworkServicesController : public Controller {
 public:
  using Clock = std::function<std::chrono::steady_clock::time_point()>;

  // `cluster` and the dataplane must outlive the controller; `metrics` may be null.
  // `dataplane_owner`, if given, owns the adapters and is released last.
  NetworkServicesController(ProxyConfig config, const k8s::Cluster* cluster,
                            ProxyDataplane dataplane, metrics::Registry* metrics,
                            std::shared_ptr<void> dataplane_owner = nullptr);
  ~NetworkServicesController() override;

  std::string Name() const override { return "NetworkServices"; }
  std::chrono::milliseconds SyncPeriod() const override { return config_.sync_period; }
  std::vector<k8s::ResourceKind> WatchedKinds() const override;

  void SetSyncRequester(std::function<void()> request_sync) override;
  Status Init() override;
  bool OnUpdate(const k8s::Event& event) override;
  // A full sync's absorbed Service and slice events: each Service's latency histogram
  // observation, from its oldest absorbed event's arrival to the end of that sync.
  void OnEventsAbsorbed(const std::vector<k8s::Event>& absorbed,
                        std::chrono::steady_clock::time_point programmed) override;
  Status Sync(SyncReason reason) override;
  // While a periodic verification is under way: each Sync is one of its steps.
  bool SyncContinues() const override { return verify_ != nullptr; }
  void Shutdown() override;
  Result<std::vector<std::string>> Cleanup() override;

  // Before Init. Extensions run in the order added.
  void AddExtension(std::unique_ptr<ProxyExtension> extension);
  // Tests: a fake clock for the drain deadlines.
  void SetClock(Clock clock) { clock_ = std::move(clock); }

  // Introspection for tests and the status of the other pieces.
  const ProxyImage& programmed() const { return programmed_; }
  const std::map<ServiceName, DesiredService>& services() const { return services_; }
  // What the Services want (pointers into services()).
  const WantedImage& desired() const { return desired_; }
  size_t draining() const { return drains_.size(); }
  // The last completed full sync and how many have completed; whether a periodic verification
  // is under way (its next step comes with the next sync).
  const FullSyncStats& last_full_sync() const { return last_full_sync_; }
  uint64_t full_syncs() const { return full_syncs_; }
  bool verifying() const { return verify_ != nullptr; }

 private:
  struct Drain {
    netlink::IpvsService service;
    netlink::IpvsDestination destination;
    std::chrono::steady_clock::time_point deadline;
  };
  using DrainKey = std::pair<VirtualServiceId, DestinationId>;
  // What the address and route dumps found: VIPs of ours (with or without a good local route)
  // and the node's other local addresses (NodePorts on them are ours).
  struct KernelVips {
    std::set<IpAddress> vips, vips_without_route, on_dummy, local;
    // Per VIP with a host route on kube-dummy-if: whether every such route is our local route
    // with the node IP as source.
    std::map<IpAddress, bool> route_good;
    size_t dumped = 0;  // addresses and routes the dumps returned
    bool Routed(const IpAddress& vip) const;
  };
  using KernelServices = std::map<VirtualServiceId, netlink::IpvsService>;
  // A periodic verification in progress (Sync(kPeriodic) starts it, every later Sync takes a
  // step of it after serving its events). Cursors, not copies: a step costs O(its items). Each
  // kernel dump is a step of its own; what it returned is sorted and compared a chunk per step.
  struct Verify {
    enum class Phase {
      kRebuild,        // rebuild the Services of the caches (cursor over `keys`)
      kForget,         // drop built Services the caches no longer have
      kReadAddresses,  // the address dump (raw)
      kReadRoutes,     // the local-table routes of kube-dummy-if (raw)
      kSortVips,       // the raw dumps into `vips`, a chunk per step
      kCompareVips,    // the VIPs in order (cursor), repaired a chunk per step
      kReadServices,   // the IPVS service dump (raw)
      kSortServices,   // into `services`, a chunk per step
      kCompare,        // the virtual services in order, each one's destinations read now
      kExtensions,     // the extensions' full apply
    };
    Phase phase = Phase::kRebuild;
    std::vector<std::string> keys;  // the Services in the caches when it started
    size_t next_key = 0;
    std::optional<ServiceName> last_forgotten;  // kForget: built Services gone from the caches
    // The raw dumps and how far they are sorted in.
    std::vector<netlink::Address> addresses;
    std::vector<netlink::Route> routes;
    std::vector<netlink::IpvsService> dump;
    size_t next_raw = 0;
    KernelVips vips;
    std::optional<IpAddress> last_vip;
    // VIPs event syncs wrote after the address dump: not judged by it.
    std::set<IpAddress> written_vips;
    KernelServices services;  // the listable services of the dump (ours decided when compared)
    std::optional<VirtualServiceId> last_compared;
    // Virtual services event syncs wrote after the service dump: not judged by it.
    std::set<VirtualServiceId> written;
    std::chrono::steady_clock::time_point started;
    FullSyncStats stats;
  };
  static const char* PhaseName(Verify::Phase phase);

  Status RefreshNode();
  // Rebuilds one Service from the caches and updates the aggregated desired image; the ids
  // and VIPs it had or has now go into `scope`.
  void Rebuild(const ServiceName& name, DiffScope& scope);
  void Unclaim(const ServiceName& name, DiffScope& scope);
  void Claim(const DesiredService& service, DiffScope& scope);
  // The VIPs a Service puts on kube-dummy-if, each once (its DSR VIPs too without a DSR
  // extension).
  std::vector<IpAddress> VipsOf(const DesiredService& service) const;
  // The first of `service`'s virtual services with that id (what a wanted entry points at).
  static const VirtualService* WantedIn(const DesiredService& service, const VirtualServiceId& id);
  void LogProblems(const ServiceName& name, const std::vector<std::string>& problems);
  Status FullSync();
  // The ids it compared go into `touched`.
  Status IncrementalSync(std::set<VirtualServiceId>& touched);
  // One step of the periodic verification (starting it when none is under way).
  Status VerifyStep();
  // One phase's work within the step's budget; true when the phase is complete.
  class StepBudget;
  Result<bool> VerifyRebuild(Verify& v, StepBudget& budget);
  Result<bool> VerifyCompare(Verify& v, StepBudget& budget);
  Result<bool> VerifyRead(Verify& v, StepBudget& budget);
  bool VerifySort(Verify& v, StepBudget& budget);
  Result<bool> VerifyCompareVips(Verify& v, StepBudget& budget);
  // Compares the virtual services `ids` with the kernel (their destinations read now) and
  // repairs them; `listed` is the kernel's service dump.
  Status CompareWithKernel(const std::vector<VirtualServiceId>& ids, const KernelServices& listed,
                           FullSyncStats& stats);
  // Diff within `scope`, apply, follow the drains; a failed write distrusts the image.
  Status RepairScope(const DiffScope& scope, FullSyncStats& stats);
  // `log`: the plan's size is logged (not for a chunk of a full sync: it logs the total).
  Status ApplyTimed(const ProxyPlan& plan, FullSyncStats& stats, bool log = true);
  // A full sync's diff and writes, a chunk of at most ProxyConfig::full_sync_chunk virtual
  // services at a time: its plan and write batch hold one chunk, not every virtual service.
  Status RepairInChunks(FullSyncStats& stats);
  Result<KernelVips> ReadKernelVips(bool for_cleanup);
  static void NoteAddress(const netlink::Address& address, KernelVips& read);
  void NoteRoute(const netlink::Route& route, KernelVips& read) const;
  static netlink::RouteFilter LocalRoutesFilter();
  // Not a fwmark service, not inside --excluded-cidrs.
  bool Listable(const netlink::IpvsService& service) const;
  // On kube-dummy-if, a NodePort of a local address, or wanted or programmed by us.
  bool Ours(const netlink::IpvsService& service, const KernelVips& vips) const;
  // `dumped`: how many services the dump returned (ours or not).
  Result<KernelServices> ReadKernelServices(const KernelVips& vips, size_t& dumped);
  Result<ProxyImage> ReadKernel(bool for_cleanup);
  Status ApplyPlan(const ProxyPlan& plan);
  // After a successful apply: a programmed virtual service that matches the desired one takes
  // the desired one's destinations (one shared vector instead of two; docs/memory.md). Only
  // the ids in `scope` (all when null).
  void ShareWithDesired(const DiffScope* scope);
  Status AddVips(const std::vector<IpAddress>& vips);
  Status DeleteVips(const std::vector<IpAddress>& vips);
  Status EnsureDummyLink();
  void TrackDrains(const ProxyPlan& plan, const DiffScope* scope);
  // Deletes drained destinations; the virtual services it changed go into `touched`.
  Status RunDrains(std::set<VirtualServiceId>& touched);
  std::chrono::milliseconds GracePeriodOf(const IpAddress& endpoint) const;
  Status RunExtensions(bool full, const std::set<ServiceName>& changed,
                       const std::set<VirtualServiceId>& touched, double sync_seconds,
                       bool step = false);
  metrics::Histogram& LatencyHistogram();
  void RecordLatency();
  void UpdateTicker();

  std::shared_ptr<void> dataplane_owner_;  // first member: destroyed last
  const ProxyConfig config_;
  const k8s::Cluster* cluster_;
  ProxyDataplane dataplane_;
  metrics::Registry* metrics_;
  std::unique_ptr<metrics::Registry> own_metrics_;
  std::vector<std::unique_ptr<ProxyExtension>> extensions_;
  bool dsr_extension_ = false;
  Clock clock_;

  NodeFacts node_;
  // Every built Service. An entry is never changed once claimed (Rebuild unclaims and erases it,
  // then emplaces the new build), so pointers into it stay valid while it is there.
  std::map<ServiceName, DesiredService> services_;
  // The desired image: per wanted virtual service, the Service that owns it (the first by name
  // that wants it) and a pointer to that Service's VirtualService in services_, not a copy
  // (docs/memory.md: the copies and a separate owner map were 2.6 MiB more at 20,000). Unclaim
  // moves or drops every entry pointing into a Service before erasing it; FullSync clears this
  // before services_. The other Services that want an id wait in vs_waiting_ (rare: a shared
  // external IP); a map of sets was 4.4 MiB at 10k Services.
  WantedImage desired_;
  // (desired_.vips counts how many Services want a VIP, each once: VipsOf.)
  std::set<std::pair<VirtualServiceId, ServiceName>> vs_waiting_;
  ProxyImage programmed_;
  bool programmed_valid_ = false;  // programmed_ matches the kernel (last sync succeeded)
  std::set<ServiceName> touched_;
  std::map<ServiceName, std::vector<std::string>> logged_problems_;
  std::map<DrainKey, Drain> drains_;
  // Per touched Service: when the API change happened (slice trigger time, else receipt).
  std::map<ServiceName, std::chrono::system_clock::time_point> change_times_;

  std::unique_ptr<Verify> verify_;  // a periodic verification under way
  FullSyncStats last_full_sync_;
  uint64_t full_syncs_ = 0;

  std::function<void()> request_sync_;
  std::atomic<bool> wants_tick_{false};
  std::jthread ticker_;
};

// Parses an RFC 3339 UTC time ("2026-12-06T05:17:17Z", optional fraction); nullopt if bad.
std::optional<std::chrono::system_clock::time_point> ParseRfc3339(const std::string& text);

}  // namespace kr::proxy
