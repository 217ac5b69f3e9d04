#include "kube_router/proxy/extensions.h"

#include <algorithm>
#include <iterator>
#include <optional>
#include <set>
#include <span>

#include "kube_router/base/log.h"
#include "kube_router/k8s/node_pod_cidrs.h"
#include "kube_router/proxy/kernel_settings.h"
#include "kube_router/proxy/owned_lists.h"
#include "kube_router/proxy/proxy_firewall.h"

namespace kr::proxy {
namespace {

template <typename T>
std::vector<T> SortedUnique(std::vector<T> items) {
  std::sort(items.begin(), items.end());
  items.erase(std::unique(items.begin(), items.end()), items.end());
  return items;
}

// Entries wanted by several Services, counted. Set() records a Service's entries; Commit() takes
// what changed against each one's last entries, applies that to the counts and reports the
// entries that became wanted by someone or stopped being wanted by anyone, so an event costs
// O(its Services' entries) plus, when it changed more than a few, one pass over the counts and
// the lists. The counts are a sorted vector of (entry, count): ~24 B an entry instead of a ~64 B
// map node; the per-Service lists an OwnedLists (docs/memory.md).
template <typename Entry>
class CountedEntries {
 public:
  void Set(const ServiceName& owner, std::vector<Entry> entries) {
    entries = SortedUnique(std::move(entries));
    staged_.emplace_back(owner, std::move(entries));
  }
  // Applies the changes of the Set() calls since the last Commit(): `added` gets the entries
  // nobody wanted before and someone wants now, `removed` those nobody wants any more.
  void Commit(std::vector<Entry>& added, std::vector<Entry>& removed) {
    OwnedLists<Entry>::LastPerOwner(staged_);
    auto delta = std::back_inserter(pending_);
    auto gone = [](const Entry& e) { return std::pair<Entry, int>{e, -1}; };
    auto fresh = [](const Entry& e) { return std::pair<Entry, int>{e, 1}; };
    std::vector<Entry> diff;
    for (const auto& [owner, entries] : staged_) {
      const std::span<const Entry> old = by_owner_.Get(owner);
      diff.clear();
      std::set_difference(old.begin(), old.end(), entries.begin(), entries.end(),
                          std::back_inserter(diff));
      std::transform(diff.begin(), diff.end(), delta, gone);
      diff.clear();
      std::set_difference(entries.begin(), entries.end(), old.begin(), old.end(),
                          std::back_inserter(diff));
      std::transform(diff.begin(), diff.end(), delta, fresh);
    }
    by_owner_.Replace(std::move(staged_));
    staged_ = {};
    auto by_entry = [](const auto& a, const auto& b) { return a.first < b.first; };
    std::sort(pending_.begin(), pending_.end(), by_entry);
    // Net change per entry (an entry one Service dropped and another took is no change).
    std::vector<std::pair<Entry, int>> net;
    for (const auto& [entry, d] : pending_) {
      if (!net.empty() && net.back().first == entry) {
        net.back().second += d;
      } else {
        net.emplace_back(entry, d);
      }
    }
    pending_.clear();
    pending_.shrink_to_fit();
    std::erase_if(net, [](const auto& e) { return e.second == 0; });
    auto report = [&](const Entry& entry, int before, int after) {
      if (before == 0 && after > 0) added.push_back(entry);
      if (before > 0 && after == 0) removed.push_back(entry);
    };
    if (net.size() <= kInPlace) {
      // A few entries (an event): found and changed in place.
      for (const auto& [entry, d] : net) {
        auto c = std::lower_bound(counts_.begin(), counts_.end(), std::pair<Entry, int>{entry, 0},
                                  by_entry);
        const bool found = c != counts_.end() && c->first == entry;
        const int before = found ? c->second : 0;
        const int after = std::max(before + d, 0);
        report(entry, before, after);
        if (found && after == 0) {
          counts_.erase(c);
        } else if (found) {
          c->second = after;
        } else if (after > 0) {
          counts_.insert(c, {entry, after});
        }
      }
      return;
    }
    // Many (a full sync): one merge of the two sorted lists.
    std::vector<std::pair<Entry, int>> merged;
    merged.reserve(counts_.size() + net.size());
    auto c = counts_.begin();
    for (const auto& [entry, d] : net) {
      for (; c != counts_.end() && c->first < entry; ++c) merged.push_back(*c);
      const bool found = c != counts_.end() && c->first == entry;
      const int before = found ? c->second : 0;
      const int after = std::max(before + d, 0);
      report(entry, before, after);
      if (after > 0) merged.emplace_back(entry, after);
      if (found) ++c;
    }
    merged.insert(merged.end(), c, counts_.end());
    merged.shrink_to_fit();
    counts_ = std::move(merged);
  }
  void Clear() {
    by_owner_.Clear();
    counts_.clear();
    pending_.clear();
    staged_.clear();
  }

 private:
  static constexpr size_t kInPlace = 16;
  OwnedLists<Entry> by_owner_;                  // per Service its entries, sorted, unique
  typename OwnedLists<Entry>::Batch staged_;    // Set()'s lists since the last Commit()
  std::vector<std::pair<Entry, int>> counts_;   // sorted by entry, counts > 0
  std::vector<std::pair<Entry, int>> pending_;  // Commit()'s changes: (entry, +1 or -1)
};

class FirewallExtension : public ProxyExtension {
 public:
  FirewallExtension(const ProxyConfig& config, FirewallDeps deps)
      : config_(config),
        deps_(deps),
        firewall_(deps.iptables_v4, deps.iptables_v6, deps.ipset),
        settings_(deps.sysctl, nullptr) {}

  std::string Name() const override { return "firewall"; }

  Status Apply(const ProxySnapshot& snapshot) override {
    // The node's addresses are dumped on full syncs and when the node's facts change; an event
    // sync reuses the local-IP links' addresses of the last dump. The dump holds every VIP on
    // kube-dummy-if: at 10k Services, one per event cost ~270 ms of a TCG guest's event sync.
    std::vector<netlink::Address> listed;
    if (snapshot.full || !seeded_ || !listed_for_ || !(*listed_for_ == *snapshot.node)) {
      auto addresses = deps_.links->ListAddresses("");
      if (!addresses.ok()) return addresses.status().Context("list addresses");
      listed = std::move(*addresses);
      local_addresses_.clear();
      for (const auto& a : listed) {
        if (IsLocalIpsLink(a.device)) local_addresses_.push_back(a);
      }
      listed_for_ = *snapshot.node;
    }
    const std::vector<netlink::Address>* addresses = &local_addresses_;
    std::vector<IpPrefix> pod_cidrs;
    if (auto node = deps_.cluster->nodes.Get(config_.node_name)) {
      pod_cidrs = k8s::PodCidrsOfNode(*node).cidrs;
    }
    Status status;
    if (snapshot.full || !seeded_) {  // (the controller's first sync is always full)
      // Everything, verified against the kernel; the per-Service counts start over.
      services_.Clear();
      hairpin_.Clear();
      for (const auto& [name, svc] : *snapshot.services) {
        auto c = FirewallContributionOf(svc, *snapshot.programmed, config_);
        services_.Set(name, std::move(c.services));
        hairpin_.Set(name, std::move(c.hairpin));
      }
      {
        std::vector<VipPort> ignored_services;
        std::vector<HairpinRule> ignored_hairpin;
        services_.Commit(ignored_services, ignored_services);
        hairpin_.Commit(ignored_hairpin, ignored_hairpin);
      }
      status = firewall_.Sync(FirewallInputOf(snapshot, config_, *addresses, pod_cidrs), true);
      // The counts hold every Service now, whether or not the write went through: the firewall
      // keeps the input and repairs from the kernel on its next call after a failure.
      seeded_ = true;
    } else {
      // Only the changed Services: their entries in, their old ones out.
      FirewallChange change;
      for (const auto& name : snapshot.changed) {
        FirewallContribution c;
        if (auto it = snapshot.services->find(name); it != snapshot.services->end()) {
          c = FirewallContributionOf(it->second, *snapshot.programmed, config_);
        }
        services_.Set(name, std::move(c.services));
        hairpin_.Set(name, std::move(c.hairpin));
      }
      services_.Commit(change.add_services, change.remove_services);
      hairpin_.Commit(change.add_hairpin, change.remove_hairpin);
      FirewallInput node =
          FirewallInputOf(ProxySnapshot{.node = snapshot.node}, config_, *addresses, pod_cidrs);
      change.local_ips = std::move(node.local_ips);
      change.node_ips = std::move(node.node_ips);
      change.pod_cidrs = std::move(node.pod_cidrs);
      status = firewall_.Update(change);
    }
    if (snapshot.full && deps_.sysctl) {
      KernelSettingsInput settings;
      for (const auto& [name, svc] : *snapshot.services) {
        for (const auto& vs : svc.virtual_services) {
          if (vs.dsr && vs.vs.service.scheduler == "mh") settings.sloppy_tcp = true;
        }
      }
      settings.rp_filter_interfaces = {netlink::kKubeBridgeName, netlink::kKubeDummyName};
      if (auto ip = snapshot.node->NodeIp(false)) {
        for (const auto& a : listed) {  // a full sync always dumps
          if (a.address == *ip) settings.rp_filter_interfaces.push_back(a.device);
        }
      }
      Status s = settings_.Apply(settings);
      if (status.ok()) status = s.Context("kernel settings");
    }
    return status;
  }

  Result<std::vector<std::string>> Cleanup() override {
    // ProxyFirewall::Cleanup does not list what it removed; it is idempotent.
    if (auto s = firewall_.Cleanup(); !s.ok()) return s;
    return std::vector<std::string>{};
  }

 private:
  const ProxyConfig config_;
  FirewallDeps deps_;
  ProxyFirewall firewall_;
  KernelSettings settings_;
  bool seeded_ = false;  // the counts below hold every Service (a full sync ran)
  std::vector<netlink::Address> local_addresses_;  // of the last dump, on local-IP links only
  std::optional<NodeFacts> listed_for_;            // the node's facts at that dump
  CountedEntries<VipPort> services_;
  CountedEntries<HairpinRule> hairpin_;
};

class HealthCheckExtension : public ProxyExtension {
 public:
  explicit HealthCheckExtension(const std::string& address) : servers_(address) {}
  ~HealthCheckExtension() override { servers_.StopAll(); }
  std::string Name() const override { return "health check servers"; }
  Status Apply(const ProxySnapshot& snapshot) override {
    if (snapshot.full) return servers_.Sync(HealthChecksOf(snapshot));
    std::vector<HealthCheckService> upserts;
    std::vector<std::pair<std::string, std::string>> removed;
    for (const auto& name : snapshot.changed) {
      auto it = snapshot.services->find(name);
      auto check = it == snapshot.services->end() ? std::nullopt : HealthCheckOf(it->second);
      if (check) {
        upserts.push_back(*check);
      } else {
        removed.emplace_back(name.namespace_, name.name);
      }
    }
    return servers_.Update(upserts, removed);
  }

 private:
  HealthCheckServers servers_;
};

// No state of its own: ServiceMetrics keeps each Service's targets and who labels a key.
// DSR targets are named by the marks of the DSR extension's plan (`dsr`, null without one).
class MetricsExtension : public ProxyExtension {
 public:
  MetricsExtension(metrics::Registry& registry, netlink::Ipvs& ipvs,
                   std::shared_ptr<const DsrMarks> dsr)
      : metrics_(registry, ipvs), dsr_(std::move(dsr)) {}
  std::string Name() const override { return "service metrics"; }
  Status Apply(const ProxySnapshot& snapshot) override {
    const auto* marks = dsr_ ? &dsr_->marks : nullptr;
    if (snapshot.full) {
      auto all = MetricTargetsOf(snapshot, marks);
      with_dsr_.clear();
      for (const auto& [name, targets] : all) Remember(name, targets);
      metrics_.SetAll(std::move(all));
    } else {
      // Only the changed Services (a key two Services want keeps the first one's labels).
      ServiceMetrics::Batch changed;
      changed.reserve(snapshot.changed.size());
      for (const auto& name : snapshot.changed) {
        auto it = snapshot.services->find(name);
        auto targets = it == snapshot.services->end()
                           ? std::vector<MetricTarget>{}
                           : MetricTargetsOfService(it->second, *snapshot.programmed, marks);
        with_dsr_.erase(name);
        Remember(name, targets);
        changed.emplace_back(name, std::move(targets));
      }
      metrics_.SetServices(std::move(changed));
      // Collision probing may have moved the mark of an unchanged Service's DSR VIP.
      if (dsr_ && dsr_->generation != generation_) {
        ServiceMetrics::Batch remarked;  // one batch, as the changed Services above
        for (auto& [name, targets] : with_dsr_) {
          std::vector<MetricTarget> now;
          for (MetricTarget t : targets) {
            if (t.fwmark != 0) {
              auto m = marks->find({t.vip, static_cast<uint8_t>(t.protocol), t.port});
              if (m == marks->end()) continue;  // no longer planned
              t.fwmark = m->second;
            }
            now.push_back(t);
          }
          targets = now;
          remarked.emplace_back(name, std::move(now));
        }
        metrics_.SetServices(std::move(remarked));
      }
    }
    if (dsr_) generation_ = dsr_->generation;
    // A verification step is not a sync: the verification is timed once, at its end.
    if (!snapshot.step) metrics_.ObserveSync(snapshot.sync_seconds, snapshot.ipvs_services);
    return Status::Ok();
  }

 private:
  // Keeps a copy of the targets of the (few) Services with a DSR target, to re-mark them.
  void Remember(const ServiceName& name, const std::vector<MetricTarget>& targets) {
    if (std::any_of(targets.begin(), targets.end(),
                    [](const MetricTarget& t) { return t.fwmark != 0; })) {
      with_dsr_[name] = targets;
    }
  }

  ServiceMetrics metrics_;
  std::shared_ptr<const DsrMarks> dsr_;
  uint64_t generation_ = 0;
  std::map<ServiceName, std::vector<MetricTarget>> with_dsr_;
};

class ConntrackExtension : public ProxyExtension {
 public:
  explicit ConntrackExtension(netlink::Conntrack* conntrack) : conntrack_(conntrack) {}
  std::string Name() const override { return "conntrack cleanup"; }
  void OnDestinationRemoved(const netlink::IpvsService& service,
                            const netlink::IpvsDestination& destination) override {
    removed_.push_back({service, destination});
  }
  Status Apply(const ProxySnapshot& snapshot) override {
    std::map<VirtualServiceId, ConntrackCleanupItem> items;
    for (const auto& [service, dest] : removed_) {
      auto item = ConntrackItemOf(service, dest, *snapshot.node);
      if (!item) continue;
      auto [it, inserted] = items.emplace(VirtualServiceId::Of(service), *item);
      if (!inserted) it->second.gone_backends.push_back(dest.address);
    }
    removed_.clear();
    // A UDP/SCTP port that had no backend and now has one: the flows the kernel answered
    // itself meanwhile would keep the client's packets away from the new backend.
    for (const auto& [id, vs] : snapshot.programmed->services) {
      if (id.protocol == netlink::IpvsProtocol::kTcp || id.fwmark != 0) continue;
      bool has = !vs.destinations.empty();
      auto [it, inserted] = had_backends_.emplace(id, has);
      bool had = inserted ? snapshot.full : it->second;  // a new service: empty until now
      it->second = has;
      if (has && !had) {
        auto item = ConntrackItemOf(vs.service, *vs.destinations.begin(), *snapshot.node);
        if (!item) continue;
        item->gone_backends.clear();
        item->first_backend_arrived = true;
        items.emplace(id, *item);
      }
    }
    if (snapshot.full) {
      std::erase_if(had_backends_, [&](const auto& e) {
        return !snapshot.programmed->services.contains(e.first);
      });
    } else {
      // An event sync shows only the touched services: forget those that are gone.
      for (const auto& id : snapshot.touched) {
        if (!snapshot.programmed->services.contains(id)) had_backends_.erase(id);
      }
    }
    if (items.empty() || !conntrack_) return Status::Ok();
    std::vector<ConntrackCleanupItem> list;
    for (auto& [id, item] : items) list.push_back(std::move(item));
    auto deleted = CleanupConntrack(*conntrack_, list);
    // Stale flows only live until they expire: log, never fail the sync for it.
    if (!deleted.ok()) {
      KR_LOG_WARN("service proxy: conntrack cleanup: {}", deleted.error());
    } else if (*deleted > 0) {
      KR_LOG_INFO("service proxy: deleted {} stale conntrack flow(s)", *deleted);
    }
    return Status::Ok();
  }

 private:
  netlink::Conntrack* conntrack_;
  std::vector<std::pair<netlink::IpvsService, netlink::IpvsDestination>> removed_;
  std::map<VirtualServiceId, bool> had_backends_;
};

class DsrExtension : public ProxyExtension {
 public:
  DsrExtension(DsrDataplane dataplane, netlink::Links* links, const k8s::Cluster* cluster,
               std::string node_name, std::shared_ptr<DsrMarks> marks)
      : applier_(std::move(dataplane)),
        links_(links),
        cluster_(cluster),
        node_name_(std::move(node_name)),
        marks_(std::move(marks)) {}
  std::string Name() const override { return "DSR"; }
  bool HandlesDsr() const override { return true; }

  Status Apply(const ProxySnapshot& snapshot) override {
    // The DSR inputs per Service, kept across event syncs (which show only the changed ones).
    if (snapshot.full) inputs_.clear();
    bool relevant = snapshot.full || !applied_once_ || dirty_;
    for (const auto& name : snapshot.changed) {
      std::vector<DsrServiceInput> inputs;
      if (auto it = snapshot.services->find(name); it != snapshot.services->end()) {
        inputs = DsrInputsOfService(it->second);
      }
      auto old = inputs_.find(name);
      relevant = relevant || !inputs.empty() || old != inputs_.end();
      if (old != inputs_.end()) inputs_.erase(old);
      if (!inputs.empty()) inputs_[name] = std::move(inputs);
    }
    if (!relevant) return Status::Ok();
    std::vector<DsrServiceInput> all;
    for (const auto& [name, inputs] : inputs_) all.insert(all.end(), inputs.begin(), inputs.end());
    DsrPlan plan = BuildDsrPlan(all, Mtu());
    if (marks_ && marks_->marks != plan.marks) {
      marks_->marks = plan.marks;
      ++marks_->generation;
    }
    std::set<std::string> problems(plan.problems.begin(), plan.problems.end());
    for (const auto& p : problems) {
      if (!logged_.contains(p)) KR_LOG_WARN("service proxy: DSR: {}", p);
    }
    logged_ = std::move(problems);
    Status status = applier_.Apply(plan, applied_once_ ? std::vector<IpAddress>{} : LocalPods());
    dirty_ = !status.ok();  // retried by the next sync whatever it changed
    if (status.ok()) applied_once_ = true;
    return status;
  }

  Result<std::vector<std::string>> Cleanup() override { return applier_.Cleanup(LocalPods()); }

 private:
  uint32_t Mtu() {
    auto bridge = links_->Get(netlink::kKubeBridgeName);
    if (bridge.ok() && bridge->has_value() && (*bridge)->mtu != 0) return (*bridge)->mtu;
    return 1500;
  }
  std::vector<IpAddress> LocalPods() {
    std::vector<IpAddress> out;
    for (const auto& pod : cluster_->pods.ByIndex(k8s::kIndexNodeName, node_name_)) {
      if (pod->host_network) continue;
      for (const auto& text : pod->pod_ips) {
        if (auto ip = IpAddress::Parse(text)) out.push_back(*ip);
      }
    }
    return out;
  }

  DsrApplier applier_;
  netlink::Links* links_;
  const k8s::Cluster* cluster_;
  std::string node_name_;
  bool applied_once_ = false;
  bool dirty_ = false;
  std::map<ServiceName, std::vector<DsrServiceInput>> inputs_;
  std::set<std::string> logged_;
  std::shared_ptr<DsrMarks> marks_;  // published for the metrics (may be null)
};

}  // namespace

std::vector<DsrServiceInput> DsrInputsOfService(const DesiredService& svc) {
  std::vector<DsrServiceInput> out;
  for (const auto& d : svc.virtual_services) {
    if (!d.dsr) continue;
    DsrServiceInput in;
    in.owner = svc.name.ToString();
    in.vip = d.vs.service.address;
    in.protocol = static_cast<uint8_t>(d.vs.service.protocol);
    in.port = d.vs.service.port;
    in.scheduler = d.vs.service.scheduler;
    in.flags = d.vs.service.flags;
    in.timeout = d.vs.service.timeout;
    std::set<IpAddress> local;
    if (d.port_index < svc.ports.size()) {
      for (const auto& ep : svc.ports[d.port_index].local_endpoints) local.insert(ep.address);
    }
    for (const auto& dest : d.vs.destinations) {
      in.endpoints.push_back(dest.address);
      if (local.contains(dest.address)) in.local_endpoints.push_back(dest.address);
    }
    out.push_back(std::move(in));
  }
  return out;
}

std::vector<DsrServiceInput> DsrInputsOf(const ProxySnapshot& snapshot) {
  std::vector<DsrServiceInput> out;
  for (const auto& [name, svc] : *snapshot.services) {
    auto inputs = DsrInputsOfService(svc);
    out.insert(out.end(), inputs.begin(), inputs.end());
  }
  return out;
}

FirewallContribution FirewallContributionOf(const DesiredService& svc, const ProxyImage& programmed,
                                            const ProxyConfig& config) {
  FirewallContribution out;
  for (const auto& d : svc.virtual_services) {
    if (!d.dsr && !programmed.services.contains(d.vs.id())) continue;
    out.services.push_back({d.vs.service.address, d.vs.service.protocol, d.vs.service.port});
  }
  for (const auto& port : svc.ports) {
    HairpinServicePort h;
    h.annotated = port.hairpin;  // the flag or the annotation (ExpandHairpin ORs the flag)
    h.external_ips_annotated = port.hairpin_external_ips;
    h.cluster_ips = svc.cluster_ips;
    h.external_ips = svc.external_ips;
    h.node_ips = port.node_port_addresses;
    h.port = port.port;
    h.node_port = port.node_port;
    for (const auto& ep : port.local_endpoints) h.local_endpoints.push_back(ep.address);
    for (const auto& rule : ExpandHairpin(h, config.hairpin_mode)) out.hairpin.push_back(rule);
  }
  return out;
}

FirewallInput FirewallInputOf(const ProxySnapshot& snapshot, const ProxyConfig& config,
                              const std::vector<netlink::Address>& addresses,
                              const std::vector<IpPrefix>& pod_cidrs) {
  FirewallInput input;
  input.permit_all = config.permit_all;
  input.masquerade_all = config.masquerade_all;
  std::set<IpAddress> local;
  for (const auto& a : addresses) {
    if (IsLocalIpsLink(a.device)) local.insert(a.address);
  }
  input.local_ips.assign(local.begin(), local.end());
  std::set<VipPort> services;
  std::set<HairpinRule> hairpin;
  if (snapshot.programmed != nullptr) {
    for (const auto& [id, vs] : snapshot.programmed->services) {
      if (id.fwmark != 0) continue;
      services.insert({id.address, id.protocol, id.port});
    }
  }
  if (snapshot.services != nullptr) {
    for (const auto& [name, svc] : *snapshot.services) {
      // Programmed ones are already in; this adds the DSR services and the hairpin rules.
      static const ProxyImage kNothingProgrammed;
      auto c = FirewallContributionOf(svc, kNothingProgrammed, config);
      services.insert(c.services.begin(), c.services.end());
      hairpin.insert(c.hairpin.begin(), c.hairpin.end());
    }
  }
  input.services.assign(services.begin(), services.end());
  input.hairpin.assign(hairpin.begin(), hairpin.end());
  for (bool v6 : {false, true}) {
    if (auto ip = snapshot.node->NodeIp(v6)) input.node_ips.push_back(*ip);
  }
  input.pod_cidrs = pod_cidrs;
  return input;
}

std::optional<HealthCheckService> HealthCheckOf(const DesiredService& svc) {
  uint16_t port = 0;
  std::set<IpAddress> local;
  for (const auto& p : svc.ports) {
    if (p.health_check_node_port != 0) port = p.health_check_node_port;
    for (const auto& ep : p.local_endpoints) local.insert(ep.address);
  }
  if (port == 0) return std::nullopt;
  return HealthCheckService{svc.name.namespace_, svc.name.name, port, local.size()};
}

std::vector<HealthCheckService> HealthChecksOf(const ProxySnapshot& snapshot) {
  std::vector<HealthCheckService> out;
  for (const auto& [name, svc] : *snapshot.services) {
    if (auto check = HealthCheckOf(svc)) out.push_back(*check);
  }
  return out;
}

std::vector<MetricTarget> MetricTargetsOfService(const DesiredService& svc,
                                                 const ProxyImage& programmed,
                                                 const std::map<DsrVipPort, uint32_t>* dsr_marks) {
  std::vector<MetricTarget> out;
  for (const auto& d : svc.virtual_services) {
    if (!d.dsr && !programmed.services.contains(d.vs.id())) continue;
    MetricTarget target = MetricTargetOf(d.vs.service);
    if (d.dsr && dsr_marks != nullptr) {
      // The kernel has a fwmark service for it: name it by the mark its DSR plan gave it.
      auto m = dsr_marks->find({target.vip, static_cast<uint8_t>(target.protocol), target.port});
      if (m == dsr_marks->end()) continue;  // the plan skipped it
      target.fwmark = m->second;
    }
    out.push_back(target);
  }
  return out;
}

std::map<ServiceName, std::vector<MetricTarget>> MetricTargetsOf(
    const ProxySnapshot& snapshot, const std::map<DsrVipPort, uint32_t>* dsr_marks) {
  std::map<ServiceName, std::vector<MetricTarget>> out;
  for (const auto& [name, svc] : *snapshot.services) {
    auto targets = MetricTargetsOfService(svc, *snapshot.programmed, dsr_marks);
    if (!targets.empty()) out.emplace_hint(out.end(), name, std::move(targets));
  }
  return out;
}

std::optional<ConntrackCleanupItem> ConntrackItemOf(const netlink::IpvsService& service,
                                                    const netlink::IpvsDestination& destination,
                                                    const NodeFacts& node) {
  if (service.fwmark != 0 || service.protocol == netlink::IpvsProtocol::kTcp) return std::nullopt;
  ConntrackCleanupItem item;
  item.protocol = service.protocol == netlink::IpvsProtocol::kUdp ? netlink::ip_protocol::kUdp
                                                                  : netlink::ip_protocol::kSctp;
  auto node_ports = node.NodePortAddresses(service.address.is_v6());
  if (std::find(node_ports.begin(), node_ports.end(), service.address) != node_ports.end()) {
    item.node_port = service.port;
  } else {
    item.service_ips = {service.address};
    item.port = service.port;
  }
  item.gone_backends = {destination.address};
  return item;
}

std::unique_ptr<ProxyExtension> MakeFirewallExtension(const ProxyConfig& config,
                                                      FirewallDeps deps) {
  return std::make_unique<FirewallExtension>(config, deps);
}

std::unique_ptr<ProxyExtension> MakeHealthCheckExtension(const std::string& address) {
  return std::make_unique<HealthCheckExtension>(address);
}

std::unique_ptr<ProxyExtension> MakeMetricsExtension(metrics::Registry& registry,
                                                     netlink::Ipvs& scrape_ipvs,
                                                     std::shared_ptr<const DsrMarks> dsr_marks) {
  return std::make_unique<MetricsExtension>(registry, scrape_ipvs, std::move(dsr_marks));
}

std::unique_ptr<ProxyExtension> MakeDsrExtension(DsrDataplane dataplane, netlink::Links* links,
                                                 const k8s::Cluster* cluster,
                                                 const std::string& node_name,
                                                 std::shared_ptr<DsrMarks> marks) {
  return std::make_unique<DsrExtension>(std::move(dataplane), links, cluster, node_name,
                                        std::move(marks));
}

std::unique_ptr<ProxyExtension> MakeConntrackExtension(netlink::Conntrack* conntrack) {
  return std::make_unique<ConntrackExtension>(conntrack);
}

}  // namespace kr::proxy
