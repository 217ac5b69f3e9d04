// In-memory fakes; the comments name the kernel behaviour each rule mirrors.
#include "kube_router/netlink/fakes.h"

#include <algorithm>

namespace kr::netlink {
namespace {

// The kernel identifies a route by table, destination and metric (TOS unused).
bool SameRouteIdentity(const Route& a, const Route& b) {
  return a.table == b.table && a.destination == b.destination && a.metric == b.metric;
}

// IPv6 routes added with metric 0 get IP6_RT_PRIO_USER (1024).
Route AsKernelStores(Route route) {
  if (route.destination.address().is_v6() && route.metric == 0) route.metric = 1024;
  return route;
}

}  // namespace

int FakeRouteTable::LinkIndex(const std::string& device) const {
  if (links_ == nullptr || device.empty()) return -1;
  auto it = links_->links().find(device);
  return it == links_->links().end() ? 0 : it->second.index;
}

void FakeRouteTable::Prune() const {
  for (size_t i = 0; i < routes_.size();) {
    if (link_index_[i] >= 0 && LinkIndex(routes_[i].device) != link_index_[i]) {
      routes_.erase(routes_.begin() + static_cast<std::ptrdiff_t>(i));
      link_index_.erase(link_index_.begin() + static_cast<std::ptrdiff_t>(i));
    } else {
      ++i;
    }
  }
}

Result<std::vector<Route>> FakeRouteTable::List(const RouteFilter& filter) {
  if (auto error = failures_.Take(Op::kList)) return *error;
  Prune();
  std::vector<Route> out;
  for (const Route& route : routes_) {
    if (filter.Matches(route)) out.push_back(route);
  }
  return out;
}

Result<std::vector<RouteChangeError>> FakeRouteTable::Apply(
    const std::vector<RouteChange>& changes) {
  ++apply_calls_;
  applied_changes_ += changes.size();
  if (auto error = failures_.Take(Op::kApply)) return *error;
  Prune();
  std::vector<RouteChangeError> errors;
  for (size_t i = 0; i < changes.size(); ++i) {
    Status status = ApplyOne(changes[i]);
    if (!status.ok()) errors.push_back({i, status.message()});
  }
  return errors;
}

Status FakeRouteTable::ApplyOne(const RouteChange& change) {
  if (auto it = rejected_.find(change.route.destination); it != rejected_.end()) {
    return Status::Error(it->second);
  }
  const Route route = AsKernelStores(change.route);
  auto existing = std::find_if(routes_.begin(), routes_.end(),
                               [&](const Route& r) { return SameRouteIdentity(r, route); });
  if (change.op == RouteChange::Op::kDelete) {
    // A delete names the protocol and type it expects, so another owner's route survives.
    if (existing == routes_.end() || existing->protocol != route.protocol ||
        existing->type != route.type) {
      return Status::Error("No such process");  // ESRCH, as the kernel answers
    }
    link_index_.erase(link_index_.begin() + (existing - routes_.begin()));
    routes_.erase(existing);
    return Status::Ok();
  }
  if (links_ != nullptr && !route.device.empty() && !links_->Has(route.device)) {
    return Status::Error("No such device");
  }
  if (route.gateway && route.gateway->family() != route.destination.address().family()) {
    return Status::Error("gateway family differs from destination family");
  }
  if (existing != routes_.end()) {
    if (change.op == RouteChange::Op::kAdd) return Status::Error("File exists");
    *existing = route;
    link_index_[existing - routes_.begin()] = LinkIndex(route.device);
    return Status::Ok();
  }
  routes_.push_back(route);
  link_index_.push_back(LinkIndex(route.device));
  return Status::Ok();
}

void FakeRouteTable::RejectDestination(const IpPrefix& destination, std::string message) {
  rejected_[destination] = std::move(message);
}

std::vector<Route> FakeRouteTable::RoutesWithProtocol(uint8_t protocol) const {
  Prune();
  std::vector<Route> out;
  for (const Route& route : routes_) {
    if (route.protocol == protocol) out.push_back(route);
  }
  return out;
}

void FakeRouteTable::Seed(const Route& route) {
  Route stored = AsKernelStores(route);
  auto existing = std::find_if(routes_.begin(), routes_.end(),
                               [&](const Route& r) { return SameRouteIdentity(r, stored); });
  if (existing != routes_.end()) {
    *existing = stored;
    link_index_[existing - routes_.begin()] = -1;
  } else {
    routes_.push_back(stored);
    link_index_.push_back(-1);
  }
}

// ---- FakeLinks ----

Result<std::vector<Link>> FakeLinks::List() {
  if (auto error = failures_.Take(Op::kList)) return *error;
  std::vector<Link> out;
  for (const auto& [name, link] : links_) out.push_back(link);
  std::sort(out.begin(), out.end(), [](const Link& a, const Link& b) { return a.index < b.index; });
  return out;
}

Result<std::optional<Link>> FakeLinks::Get(const std::string& name) {
  if (auto error = failures_.Take(Op::kGet)) return *error;
  auto it = links_.find(name);
  if (it == links_.end()) return std::optional<Link>();
  return std::optional<Link>(it->second);
}

Link* FakeLinks::Find(const std::string& name) {
  auto it = links_.find(name);
  return it == links_.end() ? nullptr : &it->second;
}

Status FakeLinks::Create(Link link) {
  // IFNAMSIZ is 16 including the terminating NUL.
  if (link.name.empty() || link.name.size() > 15) {
    return Status::Error("invalid link name '" + link.name + "'");
  }
  if (Has(link.name)) return Status::Error("File exists");
  link.index = next_index_++;
  links_[link.name] = std::move(link);
  return Status::Ok();
}

Status FakeLinks::CreateTunnel(const TunnelSpec& spec) {
  if (auto error = failures_.Take(Op::kCreateTunnel)) return *error;
  if (spec.local.family() != spec.remote.family()) {
    return Status::Error("tunnel " + spec.name + ": local and remote families differ");
  }
  Link link;
  link.name = spec.name;
  link.kind = spec.local.is_v4() ? "ipip" : "ip6tnl";
  // Default MTU as the kernel derives it from a 1500-byte underlay (UDP and GUE headers
  // included when encapsulated).
  uint32_t encap = spec.encap.type == TunnelEncapType::kNone  ? 0
                   : spec.encap.type == TunnelEncapType::kGue ? 12
                                                              : 8;
  link.mtu = spec.mtu != 0 ? spec.mtu : (spec.local.is_v4() ? 1480 : 1452) - encap;
  link.tunnel_local = spec.local;
  link.tunnel_remote = spec.remote;
  link.tunnel_encap = spec.encap;
  return Create(std::move(link));
}

Result<std::vector<FouPort>> FakeFouPorts::List() {
  if (auto error = failures_.Take(Op::kList)) return *error;
  return ports();
}

std::vector<FouPort> FakeFouPorts::ports() const {
  std::vector<FouPort> out;
  for (const auto& [key, port] : ports_) out.push_back(port);
  return out;
}

Status FakeFouPorts::Add(const FouPort& port) {
  if (auto error = failures_.Take(Op::kAdd)) return *error;
  if (port.port == 0) return Status::Error("Invalid argument");
  if (!ports_.try_emplace({port.family, port.port}, port).second) {
    return Status::Error("File exists");
  }
  return Status::Ok();
}

Status FakeFouPorts::Delete(const FouPort& port) {
  if (auto error = failures_.Take(Op::kDelete)) return *error;
  if (ports_.erase({port.family, port.port}) == 0)
    return Status::Error("No such file or directory");
  return Status::Ok();
}

Status FakeLinks::CreateBridge(const std::string& name, uint32_t mtu) {
  if (auto error = failures_.Take(Op::kCreateBridge)) return *error;
  Link link;
  link.name = name;
  link.kind = "bridge";
  link.mtu = mtu != 0 ? mtu : 1500;
  return Create(std::move(link));
}

Status FakeLinks::CreateDummy(const std::string& name) {
  if (auto error = failures_.Take(Op::kCreateDummy)) return *error;
  Link link;
  link.name = name;
  link.kind = "dummy";
  link.mtu = 1500;
  return Create(std::move(link));
}

Status FakeLinks::Delete(const std::string& name) {
  if (auto error = failures_.Take(Op::kDelete)) return *error;
  if (links_.erase(name) == 0) return Status::Error("Cannot find device \"" + name + "\"");
  // The kernel drops a link's addresses with it.
  std::erase_if(addresses_, [&](const Address& a) { return a.device == name; });
  return Status::Ok();
}

Status FakeLinks::SetUp(const std::string& name, bool up) {
  if (auto error = failures_.Take(Op::kSetUp)) return *error;
  Link* link = Find(name);
  if (link == nullptr) return Status::Error("Cannot find device \"" + name + "\"");
  link->up = up;
  return Status::Ok();
}

Status FakeLinks::SetMtu(const std::string& name, uint32_t mtu) {
  if (auto error = failures_.Take(Op::kSetMtu)) return *error;
  Link* link = Find(name);
  if (link == nullptr) return Status::Error("Cannot find device \"" + name + "\"");
  if (mtu < 68) return Status::Error("Invalid argument");  // below the IPv4 minimum
  link->mtu = mtu;
  return Status::Ok();
}

Result<std::vector<Address>> FakeLinks::ListAddresses(const std::string& device) {
  if (auto error = failures_.Take(Op::kListAddresses)) return *error;
  std::vector<Address> out;
  for (const Address& a : addresses_) {
    if (device.empty() || a.device == device) out.push_back(a);
  }
  return out;
}

Status FakeLinks::AddAddress(const Address& address) {
  if (auto error = failures_.Take(Op::kAddAddress)) return *error;
  if (!Has(address.device)) return Status::Error("Cannot find device \"" + address.device + "\"");
  if (address.prefix_length < 0 || address.prefix_length > address.address.bit_length()) {
    return Status::Error("invalid prefix length for " + address.ToString());
  }
  for (const Address& a : addresses_) {
    if (a.device == address.device && a.address == address.address) {
      return Status::Error("File exists");
    }
  }
  addresses_.push_back(address);
  return Status::Ok();
}

Result<std::vector<Links::AddressError>> FakeLinks::AddAddresses(
    const std::vector<Address>& addresses) {
  if (auto error = failures_.Take(Op::kAddAddresses)) return *error;
  return Links::AddAddresses(addresses);
}

Status FakeLinks::DeleteAddress(const Address& address) {
  if (auto error = failures_.Take(Op::kDeleteAddress)) return *error;
  auto erased = std::erase_if(addresses_, [&](const Address& a) {
    return a.device == address.device && a.address == address.address &&
           a.prefix_length == address.prefix_length;
  });
  if (erased == 0) return Status::Error("Cannot assign requested address");  // EADDRNOTAVAIL
  return Status::Ok();
}

void FakeLinks::Seed(Link link) {
  links_.erase(link.name);
  link.index = next_index_++;
  links_[link.name] = std::move(link);
}

// ---- FakeIpvs ----

FakeIpvs::Identity FakeIpvs::IdentityOf(const IpvsService& service) {
  if (service.fwmark != 0) return {service.fwmark, service.is_v6(), IpAddress(), 0, 0};
  return {0, false, service.address, static_cast<int>(service.protocol), service.port};
}

void FakeIpvs::Reindex() {
  index_.clear();
  for (size_t i = 0; i < services_.size(); ++i) index_[IdentityOf(services_[i].service)] = i;
}

FakeIpvs::Entry* FakeIpvs::Find(const IpvsService& service) {
  auto it = index_.find(IdentityOf(service));
  return it == index_.end() ? nullptr : &services_[it->second];
}

Result<std::vector<IpvsService>> FakeIpvs::ListServices() {
  if (auto error = failures_.Take(Op::kListServices)) return *error;
  std::vector<IpvsService> out;
  for (const Entry& entry : services_) out.push_back(entry.service);
  return out;
}

Result<std::vector<IpvsServiceStats>> FakeIpvs::ListServiceStats() {
  if (auto error = failures_.Take(Op::kListServiceStats)) return *error;
  std::vector<IpvsServiceStats> out;
  for (const Entry& entry : services_) out.push_back({entry.service, entry.stats});
  return out;
}

Status FakeIpvs::SetStats(const IpvsService& service, const IpvsStats& stats) {
  Entry* entry = Find(service);
  if (entry == nullptr) return Status::Error("no such service " + service.ToString());
  entry->stats = stats;
  return Status::Ok();
}

Status FakeIpvs::AddService(const IpvsService& service) {
  if (auto error = failures_.Take(Op::kAddService)) return *error;
  if (Find(service) != nullptr) return Status::Error("Object exists");
  if (service.scheduler.empty()) return Status::Error("No such file or directory");  // no scheduler
  services_.push_back({service, {}, {}});
  index_[IdentityOf(service)] = services_.size() - 1;
  return Status::Ok();
}

Status FakeIpvs::UpdateService(const IpvsService& service) {
  if (auto error = failures_.Take(Op::kUpdateService)) return *error;
  Entry* entry = Find(service);
  if (entry == nullptr) return Status::Error("No such process");
  entry->service = service;
  return Status::Ok();
}

Status FakeIpvs::DeleteService(const IpvsService& service) {
  if (auto error = failures_.Take(Op::kDeleteService)) return *error;
  auto erased =
      std::erase_if(services_, [&](const Entry& e) { return e.service.SameIdentity(service); });
  if (erased == 0) return Status::Error("No such process");
  Reindex();
  return Status::Ok();
}

Result<std::vector<IpvsDestination>> FakeIpvs::ListDestinations(const IpvsService& service) {
  if (auto error = failures_.Take(Op::kListDestinations)) return *error;
  Entry* entry = Find(service);
  if (entry == nullptr) return Status::Error("No such process");
  return entry->destinations;
}

Status FakeIpvs::AddDestination(const IpvsService& service, const IpvsDestination& dest) {
  if (auto error = failures_.Take(Op::kAddDestination)) return *error;
  Entry* entry = Find(service);
  if (entry == nullptr) return Status::Error("No such process");
  for (const IpvsDestination& d : entry->destinations) {
    if (d.SameIdentity(dest)) return Status::Error("Object exists");
  }
  IpvsDestination stored = dest;
  stored.active_connections = 0;
  stored.inactive_connections = 0;
  entry->destinations.push_back(stored);
  return Status::Ok();
}

Status FakeIpvs::UpdateDestination(const IpvsService& service, const IpvsDestination& dest) {
  if (auto error = failures_.Take(Op::kUpdateDestination)) return *error;
  Entry* entry = Find(service);
  if (entry == nullptr) return Status::Error("No such process");
  for (IpvsDestination& d : entry->destinations) {
    if (d.SameIdentity(dest)) {
      d.forward = dest.forward;
      d.weight = dest.weight;
      d.upper_threshold = dest.upper_threshold;
      d.lower_threshold = dest.lower_threshold;
      return Status::Ok();
    }
  }
  return Status::Error("No such file or directory");
}

Status FakeIpvs::DeleteDestination(const IpvsService& service, const IpvsDestination& dest) {
  if (auto error = failures_.Take(Op::kDeleteDestination)) return *error;
  Entry* entry = Find(service);
  if (entry == nullptr) return Status::Error("No such process");
  auto erased = std::erase_if(entry->destinations,
                              [&](const IpvsDestination& d) { return d.SameIdentity(dest); });
  if (erased == 0) return Status::Error("No such file or directory");
  return Status::Ok();
}

Status FakeIpvs::Flush() {
  if (auto error = failures_.Take(Op::kFlush)) return *error;
  services_.clear();
  index_.clear();
  return Status::Ok();
}

Status FakeIpvs::SetTimeouts(const IpvsTimeouts& timeouts) {
  if (auto error = failures_.Take(Op::kSetTimeouts)) return *error;
  // Zero keeps the current value, as in the kernel.
  if (timeouts.tcp != 0) timeouts_.tcp = timeouts.tcp;
  if (timeouts.tcp_fin != 0) timeouts_.tcp_fin = timeouts.tcp_fin;
  if (timeouts.udp != 0) timeouts_.udp = timeouts.udp;
  return Status::Ok();
}

Result<std::vector<IpvsWriteError>> FakeIpvs::Apply(const std::vector<IpvsWrite>& writes) {
  if (auto error = failures_.Take(Op::kApply)) return *error;
  return Ipvs::Apply(writes);
}

Status FakeIpvs::SetConnections(const IpvsService& service, const IpvsDestination& dest,
                                uint32_t active, uint32_t inactive) {
  Entry* entry = Find(service);
  if (entry == nullptr) return Status::Error("no such service " + service.ToString());
  for (IpvsDestination& d : entry->destinations) {
    if (d.SameIdentity(dest)) {
      d.active_connections = active;
      d.inactive_connections = inactive;
      return Status::Ok();
    }
  }
  return Status::Error("no such destination " + dest.ToString());
}

// ---- FakeSysctl ----

Result<std::string> FakeSysctl::Get(const std::string& key) {
  if (auto error = failures_.Take(Op::kGet)) return *error;
  auto it = values_.find(SysctlPath(key));
  if (it == values_.end()) return Status::Error("sysctl " + key + ": No such file or directory");
  return it->second;
}

Status FakeSysctl::Set(const std::string& key, const std::string& value) {
  if (auto error = failures_.Take(Op::kSet)) return *error;
  auto it = values_.find(SysctlPath(key));
  if (it == values_.end()) return Status::Error("sysctl " + key + ": No such file or directory");
  it->second = value;
  writes_.push_back(key);
  return Status::Ok();
}

void FakeSysctl::Seed(const std::string& key, const std::string& value) {
  values_[SysctlPath(key)] = value;
}

Result<std::vector<ConntrackFlow>> FakeConntrack::List(IpAddress::Family family) {
  if (auto error = failures_.Take(Op::kList)) return *error;
  std::vector<ConntrackFlow> out;
  for (const ConntrackFlow& flow : flows_) {
    if (flow.family() == family) out.push_back(flow);
  }
  return out;
}

Result<size_t> FakeConntrack::Delete(const std::vector<ConntrackFilter>& filters) {
  for (const ConntrackFilter& filter : filters) {
    if (!filter.Narrow())
      return Status::Error("refusing a conntrack filter that selects every flow");
  }
  if (auto error = failures_.Take(Op::kDelete)) return *error;
  delete_filters_.insert(delete_filters_.end(), filters.begin(), filters.end());
  const size_t before = flows_.size();
  std::erase_if(flows_, [&](const ConntrackFlow& flow) {
    return std::any_of(filters.begin(), filters.end(),
                       [&](const ConntrackFilter& f) { return f.Matches(flow); });
  });
  return before - flows_.size();
}

Result<std::vector<Rule>> FakeRuleTable::List(IpAddress::Family family,
                                              std::optional<uint8_t> protocol) {
  if (auto error = failures_.Take(Op::kList)) return *error;
  std::vector<Rule> out;
  for (const Rule& rule : rules_) {
    if (rule.family == family && (!protocol || rule.protocol == *protocol)) out.push_back(rule);
  }
  return out;
}

Status FakeRuleTable::Add(const Rule& rule) {
  if (auto error = failures_.Take(Op::kAdd)) return *error;
  if (rule.from && rule.from->address().family() != rule.family) {
    return Status::Error("add rule " + rule.ToString() + ": Address family mismatch");
  }
  if (std::find(rules_.begin(), rules_.end(), rule) != rules_.end()) {
    return Status::Error("add rule " + rule.ToString() + ": File exists");
  }
  rules_.push_back(rule);
  return Status::Ok();
}

Status FakeRuleTable::Delete(const Rule& rule) {
  if (auto error = failures_.Take(Op::kDelete)) return *error;
  auto it = std::find(rules_.begin(), rules_.end(), rule);
  if (it == rules_.end())
    return Status::Error("delete rule " + rule.ToString() + ": No such file or directory");
  rules_.erase(it);
  return Status::Ok();
}

Status FakePodNetns::RunInPodNetns(const IpAddress& pod_ip, const PodNetnsWork& work) {
  auto it = devices_.find(pod_ip);
  if (it == devices_.end()) {
    return Status::Error("pod " + pod_ip.ToString() +
                         " network namespace: no network namespace holds " + pod_ip.ToString());
  }
  entered_.push_back(pod_ip);
  return work(PodNetnsContext{it->second, "fake:" + pod_ip.ToString()});
}

}  // namespace kr::netlink
