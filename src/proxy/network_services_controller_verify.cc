// The proxy controller's periodic verification (--ipvs-sync-period), in steps: rebuild every
// Service from the caches, read back what the kernel holds of ours, compare and repair, then
// the extensions' full apply. Each Sync takes one step of at most verify_step_items items after
// serving its events, so an event waits for one step, not for the whole verification.
//
// Every step costs O(its items): each kernel dump (addresses, local routes, IPVS services) is a
// step of its own that only copies what the kernel returned; sorting it into sets and comparing
// are chunks of later steps, each VIP and virtual service in order behind a cursor.
//
// A stale read never undoes an event: a dump is used in later steps, so every VIP and virtual
// service an event sync wrote after it is left out of the comparison (the next verification
// judges it); destinations are read in the step that compares them.
#include <algorithm>

#include "controller_kernel.h"
#include "kube_router/base/log.h"
#include "kube_router/proxy/network_services_controller.h"

namespace kr::proxy {
namespace {

using Steady = std::chrono::steady_clock;

double SecondsSince(Steady::time_point t) {
  return std::chrono::duration<double>(Steady::now() - t).count();
}

// A dump's share of a step's budget: one item per 8 objects it returned (a Service rebuilt or a
// virtual service compared costs about as much as 8 dumped objects), at least one.
constexpr size_t kRawPerItem = 8;
size_t DumpCost(size_t dumped) { return 1 + dumped / kRawPerItem; }

// The first key after `last` (the first of all without one), if any.
template <typename Container>
auto NextAfter(const Container& c, const auto& last)
    -> std::optional<typename Container::key_type> {
  auto it = last ? c.upper_bound(*last) : c.begin();
  if (it == c.end()) return std::nullopt;
  if constexpr (requires { it->first; }) {
    return it->first;
  } else {
    return *it;
  }
}

template <typename T>
void Earliest(std::optional<T>& next, const std::optional<T>& candidate) {
  if (candidate && (!next || *candidate < *next)) next = candidate;
}

template <typename T>
void Release(std::vector<T>& v) {
  std::vector<T>().swap(v);
}

}  // namespace

// A step's allowance: items, and time when configured (a Service rebuilt costs several times a
// virtual service compared); the first item is always taken, so every step makes progress.
class NetworkServicesController::StepBudget {
 public:
  StepBudget(size_t items, std::chrono::microseconds time)
      : items_(std::max<size_t>(1, items)),
        deadline_(time.count() > 0 ? Steady::now() + time : Steady::time_point::max()) {}
  bool left() const { return items_ > 0; }
  void Spend(size_t items = 1) {
    items_ -= std::min(items_, items);
    if (items_ > 0 && Steady::now() >= deadline_) items_ = 0;
  }

 private:
  size_t items_;
  const Steady::time_point deadline_;
};

const char* NetworkServicesController::PhaseName(Verify::Phase phase) {
  switch (phase) {
    case Verify::Phase::kRebuild:
      return "rebuild";
    case Verify::Phase::kForget:
      return "forget";
    case Verify::Phase::kReadAddresses:
      return "read addresses";
    case Verify::Phase::kReadRoutes:
      return "read routes";
    case Verify::Phase::kSortVips:
      return "sort VIPs";
    case Verify::Phase::kCompareVips:
      return "compare VIPs";
    case Verify::Phase::kReadServices:
      return "read services";
    case Verify::Phase::kSortServices:
      return "sort services";
    case Verify::Phase::kCompare:
      return "compare";
    case Verify::Phase::kExtensions:
      return "extensions";
  }
  return "?";
}

Status NetworkServicesController::ApplyTimed(const ProxyPlan& plan, FullSyncStats& stats,
                                             bool log) {
  if (log && !plan.empty()) {
    KR_LOG_INFO("service proxy: {} IPVS change(s), {} VIP(s) to add, {} to remove",
                plan.ipvs.size(), plan.add_vips.size(), plan.delete_vips.size());
  }
  const auto t = Steady::now();
  Status status = ApplyPlan(plan);
  stats.write_seconds += SecondsSince(t);
  stats.repairs += plan.ipvs.size() + plan.add_vips.size() + plan.delete_vips.size();
  return status;
}

Status NetworkServicesController::RepairScope(const DiffScope& scope, FullSyncStats& stats) {
  const auto t = Steady::now();
  ProxyPlan plan = DiffWanted(desired_, programmed_, &scope, {config_.graceful_termination});
  stats.diff_seconds += SecondsSince(t);
  Status status = ApplyTimed(plan, stats);
  if (!status.ok()) {
    programmed_valid_ = false;  // the kernel may hold part of it: the next sync reads it back
    return status;
  }
  TrackDrains(plan, &scope);
  ShareWithDesired(&scope);
  return Status::Ok();
}

Status NetworkServicesController::CompareWithKernel(const std::vector<VirtualServiceId>& ids,
                                                    const KernelServices& listed,
                                                    FullSyncStats& stats) {
  const auto t = Steady::now();
  DiffScope scope;
  for (const VirtualServiceId& id : ids) {
    scope.services.insert(id);
    auto it = listed.find(id);
    if (it == listed.end()) {
      programmed_.services.erase(id);  // not in the kernel: the diff adds it if wanted
      continue;
    }
    auto dests = dataplane_.ipvs->ListDestinations(it->second);
    if (!dests.ok()) {
      if (detail::IsMissing(dests.status())) {  // gone since the dump (not by us: not written)
        programmed_.services.erase(id);
        continue;
      }
      programmed_valid_ = false;
      return dests.status().Context("service proxy: list destinations");
    }
    VirtualService vs;
    vs.service = it->second;
    vs.destinations = Destinations::FromUnsorted(std::move(*dests));
    programmed_.services[id] = std::move(vs);
  }
  stats.read_seconds += SecondsSince(t);
  stats.virtual_services += ids.size();
  return RepairScope(scope, stats);
}

Result<bool> NetworkServicesController::VerifyRebuild(Verify& v, StepBudget& budget) {
  // A Service whose build changed (a missed event) is written from the image, as an event
  // would be; the comparison later checks it against the kernel.
  const auto t = Steady::now();
  DiffScope scope;
  bool done = false;
  if (v.phase == Verify::Phase::kRebuild) {
    for (; budget.left() && v.next_key < v.keys.size(); budget.Spend()) {
      Rebuild(detail::NameFromKey(v.keys[v.next_key++]), scope);
      ++v.stats.services;
    }
    done = v.next_key == v.keys.size();
  } else {  // kForget: Services built earlier whose deletion was not seen
    auto it = v.last_forgotten ? services_.upper_bound(*v.last_forgotten) : services_.begin();
    std::vector<ServiceName> gone;
    for (; budget.left() && it != services_.end(); ++it, budget.Spend()) {
      v.last_forgotten = it->first;
      if (!cluster_->services.Get(it->first.ToString())) gone.push_back(it->first);
    }
    for (const auto& name : gone) Rebuild(name, scope);
    done = it == services_.end();
  }
  v.stats.rebuild_seconds += SecondsSince(t);
  if (auto s = RepairScope(scope, v.stats); !s.ok()) return s;
  return done;
}

Result<bool> NetworkServicesController::VerifyRead(Verify& v, StepBudget& budget) {
  // One dump per step, kept raw: sorting it in is left to the next steps.
  const auto t = Steady::now();
  size_t dumped = 0;
  Status status;
  switch (v.phase) {
    case Verify::Phase::kReadAddresses: {
      auto addresses = dataplane_.links->ListAddresses("");
      if (!addresses.ok()) {
        status = addresses.status().Context("service proxy: list addresses");
        break;
      }
      v.addresses = std::move(*addresses);
      dumped = v.addresses.size();
      v.written_vips.clear();  // from now on an event's VIP is newer than this read
      break;
    }
    case Verify::Phase::kReadRoutes: {
      auto routes = dataplane_.routes->List(LocalRoutesFilter());
      if (!routes.ok()) {
        status = routes.status().Context("service proxy: list local routes");
        break;
      }
      v.routes = std::move(*routes);
      dumped = v.routes.size();
      break;
    }
    default: {
      auto services = dataplane_.ipvs->ListServices();
      if (!services.ok()) {
        status = services.status().Context("service proxy: list IPVS services");
        break;
      }
      v.dump = std::move(*services);
      dumped = v.dump.size();
      v.written.clear();  // from now on an event's virtual service is newer than this read
      break;
    }
  }
  v.stats.read_seconds += SecondsSince(t);
  budget.Spend(DumpCost(dumped));
  if (!status.ok()) return status;
  v.next_raw = 0;
  return true;
}

bool NetworkServicesController::VerifySort(Verify& v, StepBudget& budget) {
  const auto t = Steady::now();
  const bool vips = v.phase == Verify::Phase::kSortVips;
  const size_t total = vips ? v.addresses.size() + v.routes.size() : v.dump.size();
  for (; budget.left() && v.next_raw < total; budget.Spend()) {
    for (size_t k = 0; k < kRawPerItem && v.next_raw < total; ++k, ++v.next_raw) {
      if (!vips) {
        const netlink::IpvsService& s = v.dump[v.next_raw];
        if (Listable(s)) v.services.emplace(VirtualServiceId::Of(s), s);
      } else if (v.next_raw < v.addresses.size()) {
        NoteAddress(v.addresses[v.next_raw], v.vips);
      } else {
        NoteRoute(v.routes[v.next_raw - v.addresses.size()], v.vips);
      }
    }
  }
  const bool done = v.next_raw == total;
  if (done && vips) {
    Release(v.addresses);
    Release(v.routes);
  } else if (done) {
    Release(v.dump);
  }
  v.stats.read_seconds += SecondsSince(t);
  return done;
}

Result<bool> NetworkServicesController::VerifyCompareVips(Verify& v, StepBudget& budget) {
  // The next VIPs in order from the read, the wanted and the programmed image; the image takes
  // the read's answer for each, then the diff repairs them.
  DiffScope scope;
  while (budget.left()) {
    std::optional<IpAddress> next = NextAfter(desired_.vips, v.last_vip);
    for (const auto* set : {&v.vips.on_dummy, &programmed_.vips, &programmed_.vips_without_route}) {
      Earliest(next, NextAfter(*set, v.last_vip));
    }
    if (!next) break;
    v.last_vip = next;
    if (v.written_vips.contains(*next)) continue;  // an event wrote it after the read
    programmed_.vips.erase(*next);
    programmed_.vips_without_route.erase(*next);
    if (v.vips.on_dummy.contains(*next)) {
      (v.vips.Routed(*next) ? programmed_.vips : programmed_.vips_without_route).insert(*next);
    }
    scope.vips.insert(*next);
    budget.Spend();
  }
  if (auto s = RepairScope(scope, v.stats); !s.ok()) return s;
  return budget.left();  // stopped for want of VIPs, not of budget
}

Result<bool> NetworkServicesController::VerifyCompare(Verify& v, StepBudget& budget) {
  // The next ids in order from the dump, the wanted and the programmed image: a cursor, since
  // events change the images between steps.
  std::vector<VirtualServiceId> ids;
  while (budget.left()) {
    std::optional<VirtualServiceId> next;
    Earliest(next, NextAfter(v.services, v.last_compared));
    Earliest(next, NextAfter(desired_.services, v.last_compared));
    Earliest(next, NextAfter(programmed_.services, v.last_compared));
    if (!next) break;
    v.last_compared = next;
    if (v.written.contains(*next)) continue;  // an event wrote it after the dump
    budget.Spend();
    auto listed = v.services.find(*next);
    // Only in the kernel and not ours (a foreign service, DSR's own): left alone.
    if (listed != v.services.end() && !Ours(listed->second, v.vips)) continue;
    ids.push_back(*next);
  }
  if (auto s = CompareWithKernel(ids, v.services, v.stats); !s.ok()) return s;
  return budget.left();  // stopped for want of ids, not of budget
}

Status NetworkServicesController::VerifyStep() {
  const auto step_started = Steady::now();
  if (!verify_) {
    verify_ = std::make_unique<Verify>();
    verify_->started = step_started;
    verify_->keys = cluster_->services.Keys();
  }
  Verify& v = *verify_;
  FullSyncStats& stats = v.stats;
  using Phase = Verify::Phase;
  StepBudget budget(config_.verify_step_items, config_.verify_step_time);
  const Phase first_phase = v.phase;
  bool done = false;
  Status status;
  while (status.ok() && budget.left() && !done) {
    switch (v.phase) {
      case Phase::kRebuild:
      case Phase::kForget: {
        auto phase_done = VerifyRebuild(v, budget);
        if (!phase_done.ok()) {
          status = phase_done.status();
        } else if (*phase_done) {
          v.phase = v.phase == Phase::kRebuild ? Phase::kForget : Phase::kReadAddresses;
        }
        break;
      }
      case Phase::kReadAddresses:
      case Phase::kReadRoutes:
      case Phase::kReadServices: {
        auto read = VerifyRead(v, budget);
        if (!read.ok()) {
          status = read.status();
        } else {
          v.phase = v.phase == Phase::kReadAddresses ? Phase::kReadRoutes
                    : v.phase == Phase::kReadRoutes  ? Phase::kSortVips
                                                     : Phase::kSortServices;
        }
        break;
      }
      case Phase::kSortVips:
      case Phase::kSortServices:
        if (VerifySort(v, budget)) {
          v.phase = v.phase == Phase::kSortVips ? Phase::kCompareVips : Phase::kCompare;
        }
        break;
      case Phase::kCompareVips: {
        auto phase_done = VerifyCompareVips(v, budget);
        if (!phase_done.ok()) {
          status = phase_done.status();
        } else if (*phase_done) {
          v.phase = Phase::kReadServices;
        }
        break;
      }
      case Phase::kCompare: {
        auto phase_done = VerifyCompare(v, budget);
        if (!phase_done.ok()) {
          status = phase_done.status();
        } else if (*phase_done) {
          v.phase = Phase::kExtensions;
        }
        break;
      }
      case Phase::kExtensions: {
        const auto t = Steady::now();
        status = RunExtensions(true, {}, {}, stats.busy_seconds + SecondsSince(step_started));
        stats.extensions_seconds += SecondsSince(t);
        done = true;
        break;
      }
    }
  }
  ++stats.steps;
  const double took = SecondsSince(step_started);
  stats.busy_seconds += took;
  if (took > stats.longest_step_seconds) {
    stats.longest_step_seconds = took;
    stats.longest_step_phases = PhaseName(first_phase);
    if (v.phase != first_phase) stats.longest_step_phases += std::string("..") + PhaseName(v.phase);
  }
  if (!status.ok()) {
    verify_.reset();  // the next periodic sync starts over (a failed write: a full sync)
    return status;
  }
  if (done) {
    stats.wall_seconds = SecondsSince(v.started);
    KR_VLOG(1,
            "service proxy: periodic verification of {} Services, {} virtual services in {} "
            "steps ({:.0f} ms, longest step {:.1f} ms): {} repair(s)",
            stats.services, stats.virtual_services, stats.steps, stats.wall_seconds * 1e3,
            stats.longest_step_seconds * 1e3, stats.repairs);
    last_full_sync_ = stats;
    ++full_syncs_;
    verify_.reset();
  }
  return Status::Ok();
}

}  // namespace kr::proxy
