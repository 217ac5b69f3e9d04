// The proxy controller's periodic verification (--ipvs-sync-period), in steps: rebuild every
// Service from the caches, read back what the kernel holds of ours, compare and repair, then
// the extensions' full apply. Each Sync takes one step of at most verify_step_items items after
// serving its events, so an event waits for one step, not for the whole verification.
//
// A stale read never undoes an event: the service dump is taken in one step and used in later
// ones, so every virtual service an event sync wrote after it is left out of the comparison
// (the next verification judges it); destinations are read in the step that compares them.
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
size_t DumpCost(size_t dumped) { return 1 + dumped / 8; }

}  // namespace

Status NetworkServicesController::ApplyTimed(const ProxyPlan& plan, FullSyncStats& stats) {
  if (!plan.empty()) {
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
  ProxyPlan plan = Diff(desired_, programmed_, &scope, {config_.graceful_termination});
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

Result<bool> NetworkServicesController::VerifyRebuild(Verify& v, size_t& budget) {
  // A Service whose build changed (a missed event) is written from the image, as an event
  // would be; the comparison later checks it against the kernel.
  const auto t = Steady::now();
  DiffScope scope;
  bool done = false;
  if (v.phase == Verify::Phase::kRebuild) {
    for (; budget > 0 && v.next_key < v.keys.size(); --budget) {
      Rebuild(detail::NameFromKey(v.keys[v.next_key++]), scope);
      ++v.stats.services;
    }
    done = v.next_key == v.keys.size();
  } else {  // kForget: Services built earlier whose deletion was not seen
    auto it = v.last_forgotten ? services_.upper_bound(*v.last_forgotten) : services_.begin();
    std::vector<ServiceName> gone;
    for (; budget > 0 && it != services_.end(); ++it, --budget) {
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

Result<bool> NetworkServicesController::VerifyCompare(Verify& v, size_t& budget) {
  // The next ids in order from the dump, the wanted and the programmed image: a cursor, since
  // events change the images between steps.
  auto next_after = [&](const auto& map) -> std::optional<VirtualServiceId> {
    auto it = v.last_compared ? map.upper_bound(*v.last_compared) : map.begin();
    if (it == map.end()) return std::nullopt;
    return it->first;
  };
  std::vector<VirtualServiceId> ids;
  while (budget > 0) {
    std::optional<VirtualServiceId> next;
    for (auto candidate : {next_after(v.services), next_after(desired_.services),
                           next_after(programmed_.services)}) {
      if (candidate && (!next || *candidate < *next)) next = candidate;
    }
    if (!next) break;
    v.last_compared = next;
    if (v.written.contains(*next)) continue;  // an event wrote it after the dump
    ids.push_back(*next);
    --budget;
  }
  if (auto s = CompareWithKernel(ids, v.services, v.stats); !s.ok()) return s;
  return budget > 0;  // stopped for want of ids, not of budget
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
  size_t budget = std::max<size_t>(1, config_.verify_step_items);
  bool done = false;
  Status status;
  while (status.ok() && budget > 0 && !done) {
    switch (v.phase) {
      case Phase::kRebuild:
      case Phase::kForget: {
        auto phase_done = VerifyRebuild(v, budget);
        if (!phase_done.ok()) {
          status = phase_done.status();
        } else if (*phase_done) {
          v.phase = v.phase == Phase::kRebuild ? Phase::kForget : Phase::kReadVips;
        }
        break;
      }
      case Phase::kReadVips: {
        // The VIPs and their routes are compared in the step of their read (no event between).
        auto t = Steady::now();
        auto vips = ReadKernelVips(false);
        stats.read_seconds += SecondsSince(t);
        budget -= std::min(budget, DumpCost(vips.ok() ? vips->dumped : 0));
        if (!vips.ok()) {
          status = vips.status();
          break;
        }
        DiffScope scope;
        for (const auto* set :
             {&vips->vips, &vips->vips_without_route, &desired_.vips, &programmed_.vips}) {
          scope.vips.insert(set->begin(), set->end());
        }
        programmed_.vips = vips->vips;
        programmed_.vips_without_route = vips->vips_without_route;
        status = RepairScope(scope, stats);
        v.vips = std::move(*vips);
        v.phase = Phase::kReadServices;
        break;
      }
      case Phase::kReadServices: {
        auto t = Steady::now();
        size_t dumped = 0;
        auto services = ReadKernelServices(v.vips, dumped);
        stats.read_seconds += SecondsSince(t);
        budget -= std::min(budget, DumpCost(dumped));
        if (!services.ok()) {
          status = services.status();
          break;
        }
        v.services = std::move(*services);
        v.vips = KernelVips{};
        v.phase = Phase::kCompare;
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
        status = RunExtensions(true, {}, {}, SecondsSince(step_started));
        stats.extensions_seconds += SecondsSince(t);
        done = true;
        break;
      }
    }
  }
  ++stats.steps;
  stats.longest_step_seconds = std::max(stats.longest_step_seconds, SecondsSince(step_started));
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
