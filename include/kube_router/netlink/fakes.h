// Stateful in-memory fakes of the netlink role interfaces, for controller unit tests. Each
// keeps a copy of "kernel" state that a test asserts on, follows the kernel's rules where a
// controller could notice the difference (duplicate adds fail, deletes of missing objects fail,
// IPv6 routes get metric 1024 by default, deleting a link drops its addresses), and can be
// told to fail a given operation on demand.
#pragma once

#include <cstdint>
#include <deque>
#include <initializer_list>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <tuple>
#include <vector>

#include "kube_router/netlink/conntrack.h"
#include "kube_router/netlink/ipvs.h"
#include "kube_router/netlink/links.h"
#include "kube_router/netlink/pod_netns.h"
#include "kube_router/netlink/route_table.h"
#include "kube_router/netlink/rule_table.h"
#include "kube_router/netlink/sysctl.h"

namespace kr::netlink {

// Queued one-shot failures per operation: FailNext(op) makes the next call of op fail with
// `message` (`times` calls in a row). Other operations are not affected. Every fake consults it
// once per call, so it also counts the calls per operation (tests prove "no writes" and "only
// what the event touched" with Calls()).
template <typename Op>
class FailureInjector {
 public:
  void FailNext(Op op, std::string message = "injected failure", int times = 1) {
    for (int i = 0; i < times; ++i) pending_[op].push_back(message);
  }
  // The error the current call of `op` must return, if one is queued (consumes it).
  std::optional<Status> Take(Op op) {
    ++calls_[op];
    auto it = pending_.find(op);
    if (it == pending_.end() || it->second.empty()) return std::nullopt;
    Status error = Status::Error(it->second.front());
    it->second.pop_front();
    return error;
  }
  void Clear() { pending_.clear(); }

  // Calls of these operations since the fake was made or ResetCalls().
  int Calls(std::initializer_list<Op> ops) const {
    int n = 0;
    for (Op op : ops) {
      if (auto it = calls_.find(op); it != calls_.end()) n += it->second;
    }
    return n;
  }
  void ResetCalls() { calls_.clear(); }

 private:
  std::map<Op, std::deque<std::string>> pending_;
  std::map<Op, int> calls_;
};

class FakeLinks;

class FakeRouteTable : public RouteTable {
 public:
  enum class Op { kList, kApply };

  // With `links`, adds and replaces over a device the fake does not know fail ("No such
  // device"), and routes added over a link go when that link is deleted (or deleted and made
  // again under the same name), as in the kernel.
  explicit FakeRouteTable(const FakeLinks* links = nullptr) : links_(links) {}

  Result<std::vector<Route>> List(const RouteFilter& filter) override;
  Result<std::vector<RouteChangeError>> Apply(const std::vector<RouteChange>& changes) override;

  FailureInjector<Op>& failures() { return failures_; }
  const FailureInjector<Op>& failures() const { return failures_; }
  // Every change to `destination` is refused (until cleared), in every later batch.
  void RejectDestination(const IpPrefix& destination, std::string message = "injected refusal");
  void ClearRejections() { rejected_.clear(); }

  // Test access to the state.
  const std::vector<Route>& routes() const {
    Prune();
    return routes_;
  }
  std::vector<Route> RoutesWithProtocol(uint8_t protocol) const;
  // Puts a route in place as if someone else (or the kernel) had added it.
  void Seed(const Route& route);
  size_t apply_calls() const { return apply_calls_; }
  // Route changes received by Apply (every batch, accepted or not).
  size_t applied_changes() const { return applied_changes_; }
  void ResetCounts() {
    apply_calls_ = applied_changes_ = 0;
    failures_.ResetCalls();
  }

 private:
  Status ApplyOne(const RouteChange& change);
  // Forgets the routes whose link is gone (see the constructor).
  void Prune() const;
  int LinkIndex(const std::string& device) const;

  const FakeLinks* links_;
  mutable std::vector<Route> routes_;
  // Per route: the index of its link when it was added; -1 when not tracked (seeded).
  mutable std::vector<int> link_index_;
  std::map<IpPrefix, std::string> rejected_;
  FailureInjector<Op> failures_;
  size_t apply_calls_ = 0;
  size_t applied_changes_ = 0;
};

class FakeLinks : public Links {
 public:
  enum class Op {
    kList,
    kGet,
    kCreateTunnel,
    kCreateBridge,
    kCreateDummy,
    kDelete,
    kSetUp,
    kSetMtu,
    kListAddresses,
    kAddAddress,
    kDeleteAddress,
    kAddAddresses,  // a batch; its addresses are counted as kAddAddress too
  };
  // The operations that write to the kernel.
  static constexpr std::initializer_list<Op> kWrites = {
      Op::kCreateTunnel, Op::kCreateBridge, Op::kCreateDummy, Op::kDelete,
      Op::kSetUp,        Op::kSetMtu,       Op::kAddAddress,  Op::kDeleteAddress};

  Result<std::vector<Link>> List() override;
  Result<std::optional<Link>> Get(const std::string& name) override;
  Status CreateTunnel(const TunnelSpec& spec) override;
  Status CreateBridge(const std::string& name, uint32_t mtu) override;
  Status CreateDummy(const std::string& name) override;
  Status Delete(const std::string& name) override;
  Status SetUp(const std::string& name, bool up) override;
  Status SetMtu(const std::string& name, uint32_t mtu) override;
  Result<std::vector<Address>> ListAddresses(const std::string& device) override;
  Status AddAddress(const Address& address) override;
  Status DeleteAddress(const Address& address) override;
  // One call of the default (one AddAddress at a time), counted as kAddAddresses.
  Result<std::vector<AddressError>> AddAddresses(const std::vector<Address>& addresses) override;

  FailureInjector<Op>& failures() { return failures_; }
  const FailureInjector<Op>& failures() const { return failures_; }
  // Adds a link as if it existed before the agent (e.g. "eth0"); its index is assigned.
  void Seed(Link link);
  bool Has(const std::string& name) const { return links_.count(name) > 0; }
  const std::map<std::string, Link>& links() const { return links_; }
  const std::vector<Address>& addresses() const { return addresses_; }

 private:
  Status Create(Link link);
  Link* Find(const std::string& name);

  std::map<std::string, Link> links_;
  std::vector<Address> addresses_;
  int next_index_ = 1;
  FailureInjector<Op> failures_;
};

// FoU ports as the kernel keeps them: one per (family, port); adding an existing one fails.
class FakeFouPorts : public FouPorts {
 public:
  enum class Op { kList, kAdd, kDelete };
  static constexpr std::initializer_list<Op> kWrites = {Op::kAdd, Op::kDelete};

  Result<std::vector<FouPort>> List() override;
  Status Add(const FouPort& port) override;
  Status Delete(const FouPort& port) override;

  FailureInjector<Op>& failures() { return failures_; }
  // A port as if someone else (or an earlier run) had added it.
  void Seed(const FouPort& port) { ports_[{port.family, port.port}] = port; }
  std::vector<FouPort> ports() const;

 private:
  std::map<std::pair<IpAddress::Family, uint16_t>, FouPort> ports_;
  FailureInjector<Op> failures_;
};

class FakeIpvs : public Ipvs {
 public:
  enum class Op {
    kListServices,
    kListServiceStats,
    kAddService,
    kUpdateService,
    kDeleteService,
    kListDestinations,
    kAddDestination,
    kUpdateDestination,
    kDeleteDestination,
    kFlush,
    kSetTimeouts,
    kApply,  // a batch; its writes are counted as their own operations too
  };
  // The operations that write to the kernel.
  static constexpr std::initializer_list<Op> kWrites = {
      Op::kAddService,        Op::kUpdateService,     Op::kDeleteService, Op::kAddDestination,
      Op::kUpdateDestination, Op::kDeleteDestination, Op::kFlush,         Op::kSetTimeouts};

  Result<std::vector<IpvsService>> ListServices() override;
  Result<std::vector<IpvsServiceStats>> ListServiceStats() override;
  Status AddService(const IpvsService& service) override;
  Status UpdateService(const IpvsService& service) override;
  Status DeleteService(const IpvsService& service) override;
  Result<std::vector<IpvsDestination>> ListDestinations(const IpvsService& service) override;
  Status AddDestination(const IpvsService& service, const IpvsDestination& dest) override;
  Status UpdateDestination(const IpvsService& service, const IpvsDestination& dest) override;
  Status DeleteDestination(const IpvsService& service, const IpvsDestination& dest) override;
  Status Flush() override;
  Status SetTimeouts(const IpvsTimeouts& timeouts) override;
  // One call of the default (one write at a time), counted as kApply.
  Result<std::vector<IpvsWriteError>> Apply(const std::vector<IpvsWrite>& writes) override;

  FailureInjector<Op>& failures() { return failures_; }
  const FailureInjector<Op>& failures() const { return failures_; }
  // Sets the connection counts ListDestinations reports for a destination (graceful
  // termination tests).
  Status SetConnections(const IpvsService& service, const IpvsDestination& dest, uint32_t active,
                        uint32_t inactive);
  // Sets the counters ListServiceStats reports for a service (new services start at zero).
  Status SetStats(const IpvsService& service, const IpvsStats& stats);
  const IpvsTimeouts& timeouts() const { return timeouts_; }
  size_t service_count() const { return services_.size(); }

 private:
  struct Entry {
    IpvsService service;
    std::vector<IpvsDestination> destinations;
    IpvsStats stats;
  };
  Entry* Find(const IpvsService& service);
  // What SameIdentity compares: fwmark and family, or address, protocol and port.
  using Identity = std::tuple<uint32_t, bool, IpAddress, int, uint16_t>;
  static Identity IdentityOf(const IpvsService& service);
  void Reindex();

  std::vector<Entry> services_;  // in the order they were added, as the kernel lists them
  // Position in services_ by identity: a lookup is not a scan (benchmarks program 10k services).
  std::map<Identity, size_t> index_;
  IpvsTimeouts timeouts_;
  FailureInjector<Op> failures_;
};

class FakeSysctl : public Sysctl {
 public:
  enum class Op { kGet, kSet };

  // Only seeded keys exist (as /proc/sys has a fixed set of files): Get and Set of any other
  // key fail.
  Result<std::string> Get(const std::string& key) override;
  Status Set(const std::string& key, const std::string& value) override;

  void Seed(const std::string& key, const std::string& value);
  FailureInjector<Op>& failures() { return failures_; }
  const FailureInjector<Op>& failures() const { return failures_; }
  // Keys written through Set, in order (a key set twice appears twice).
  const std::vector<std::string>& writes() const { return writes_; }

 private:
  std::map<std::string, std::string> values_;  // by SysctlPath(key)
  std::vector<std::string> writes_;
  FailureInjector<Op> failures_;
};

// Conntrack flows in memory. Seed flows as traffic would have made them; Delete follows the
// real adapter's contract (refuses a filter that is not Narrow()).
class FakeConntrack : public Conntrack {
 public:
  enum class Op { kList, kDelete };

  Result<std::vector<ConntrackFlow>> List(IpAddress::Family family) override;
  Result<size_t> Delete(const std::vector<ConntrackFilter>& filters) override;

  FailureInjector<Op>& failures() { return failures_; }
  const FailureInjector<Op>& failures() const { return failures_; }
  void Seed(const ConntrackFlow& flow) { flows_.push_back(flow); }
  const std::vector<ConntrackFlow>& flows() const { return flows_; }
  // Every filter Delete was called with, in order (to check that a change deletes nothing).
  const std::vector<ConntrackFilter>& delete_filters() const { return delete_filters_; }

 private:
  std::vector<ConntrackFlow> flows_;
  std::vector<ConntrackFilter> delete_filters_;
  FailureInjector<Op> failures_;
};

// Policy-routing rules in memory, both families; the kernel's default rules are not seeded
// (Seed them when a test needs them).
class FakeRuleTable : public RuleTable {
 public:
  enum class Op { kList, kAdd, kDelete };

  Result<std::vector<Rule>> List(IpAddress::Family family,
                                 std::optional<uint8_t> protocol) override;
  Status Add(const Rule& rule) override;
  Status Delete(const Rule& rule) override;

  FailureInjector<Op>& failures() { return failures_; }
  const FailureInjector<Op>& failures() const { return failures_; }
  void Seed(const Rule& rule) { rules_.push_back(rule); }
  const std::vector<Rule>& rules() const { return rules_; }

 private:
  std::vector<Rule> rules_;
  FailureInjector<Op> failures_;
};

// Pod namespaces by IP: the work runs on the calling thread (it may use other fakes to stand
// for the pod's links), told the seeded device name.
class FakePodNetns : public PodNetns {
 public:
  Status RunInPodNetns(const IpAddress& pod_ip, const PodNetnsWork& work) override;

  void AddPod(const IpAddress& pod_ip, std::string device = "eth0") {
    devices_[pod_ip] = std::move(device);
  }
  void RemovePod(const IpAddress& pod_ip) { devices_.erase(pod_ip); }
  // The pod IPs work was run for, in order.
  const std::vector<IpAddress>& entered() const { return entered_; }

 private:
  std::map<IpAddress, std::string> devices_;
  std::vector<IpAddress> entered_;
};

}  // namespace kr::netlink
