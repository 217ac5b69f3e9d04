// Value-type helpers shared by the real adapters and the fakes.
#include <string>

#include "host_port.h"
#include "kube_router/base/hashed_name.h"
#include "kube_router/netlink/ipvs.h"
#include "kube_router/netlink/links.h"
#include "kube_router/netlink/route_table.h"
#include "kube_router/netlink/sysctl.h"

namespace kr::netlink {

std::string Route::ToString() const {
  std::string out;
  if (type == RouteType::kLocal) out += "local ";
  if (type == RouteType::kBlackhole) out += "blackhole ";
  out += destination.ToString();
  if (gateway) out += " via " + gateway->ToString();
  if (!device.empty()) out += " dev " + device;
  if (source) out += " src " + source->ToString();
  out += " table " + std::to_string(table) + " proto " + std::to_string(protocol);
  if (scope != Scope::kUniverse) out += " scope " + std::to_string(static_cast<int>(scope));
  if (metric != 0) out += " metric " + std::to_string(metric);
  if (onlink) out += " onlink";
  return out;
}

bool RouteFilter::Matches(const Route& route) const {
  if (family && route.destination.address().family() != *family) return false;
  if (table && route.table != *table) return false;
  if (protocol && route.protocol != *protocol) return false;
  if (device && route.device != *device) return false;
  return true;
}

namespace {
Status ApplySingle(RouteTable& table, RouteChange::Op op, const Route& route) {
  auto errors = table.Apply({RouteChange{op, route}});
  if (!errors.ok()) return errors.status();
  if (!errors->empty()) return Status::Error(route.ToString() + ": " + errors->front().message);
  return Status::Ok();
}
}  // namespace

Status RouteTable::Add(const Route& route) {
  return ApplySingle(*this, RouteChange::Op::kAdd, route);
}
Status RouteTable::Replace(const Route& route) {
  return ApplySingle(*this, RouteChange::Op::kReplace, route);
}
Status RouteTable::Delete(const Route& route) {
  return ApplySingle(*this, RouteChange::Op::kDelete, route);
}

std::string Address::ToString() const {
  return address.ToString() + "/" + std::to_string(prefix_length) + " dev " + device;
}

std::string FouPort::ToString() const {
  std::string text = kind == FouKind::kGue ? "gue" : "fou ipproto " + std::to_string(protocol);
  return text + " port " + std::to_string(port) +
         (family == IpAddress::Family::kV4 ? " (IPv4)" : " (IPv6)");
}

std::string OverlayTunnelName(const IpAddress& next_hop) {
  // The canonical address text keeps its separators: kube-router strips '.' and ':', so
  // 10.1.23.4 and 10.12.3.4 share a name there.
  return HashedName("tun-", {next_hop.ToString()}, 11);
}

namespace {
const char* ProtocolName(IpvsProtocol protocol) {
  switch (protocol) {
    case IpvsProtocol::kTcp:
      return "TCP";
    case IpvsProtocol::kUdp:
      return "UDP";
    case IpvsProtocol::kSctp:
      return "SCTP";
  }
  return "?";
}

}  // namespace

bool IpvsService::SameIdentity(const IpvsService& other) const {
  if (fwmark != 0 || other.fwmark != 0) {
    return fwmark == other.fwmark && address.family() == other.address.family();
  }
  return address == other.address && protocol == other.protocol && port == other.port;
}

std::string IpvsService::ToString() const {
  std::string out = fwmark != 0
                        ? "FWM " + std::to_string(fwmark) + (address.is_v6() ? " IPv6" : " IPv4")
                        : std::string(ProtocolName(protocol)) + " " + HostPortText(address, port);
  out += " " + scheduler;
  if (flags & ipvs_flags::kPersistent) out += " persistent " + std::to_string(timeout);
  return out;
}

bool IpvsDestination::SameConfig(const IpvsDestination& other) const {
  return SameIdentity(other) && forward == other.forward && weight == other.weight &&
         upper_threshold == other.upper_threshold && lower_threshold == other.lower_threshold;
}

std::string IpvsDestination::ToString() const {
  const char* method = forward == IpvsForward::kMasquerade ? "masq"
                       : forward == IpvsForward::kTunnel   ? "tunnel"
                                                           : "route";
  return HostPortText(address, port) + " " + method + " weight " + std::to_string(weight);
}

std::string SysctlPath(const std::string& key) {
  if (key.find('/') != std::string::npos) return key;
  std::string path = key;
  for (char& c : path) {
    if (c == '.') c = '/';
  }
  return path;
}

Result<std::vector<Links::AddressError>> Links::AddAddresses(
    const std::vector<Address>& addresses) {
  std::vector<AddressError> errors;
  for (size_t i = 0; i < addresses.size(); ++i) {
    if (Status s = AddAddress(addresses[i]); !s.ok()) errors.push_back({i, s.message()});
  }
  return errors;
}

Result<std::vector<IpvsWriteError>> Ipvs::Apply(const std::vector<IpvsWrite>& writes) {
  std::vector<IpvsWriteError> errors;
  for (size_t i = 0; i < writes.size(); ++i) {
    const IpvsWrite& w = writes[i];
    Status s;
    switch (w.op) {
      case IpvsWrite::Op::kAddService:
        s = AddService(w.service);
        break;
      case IpvsWrite::Op::kUpdateService:
        s = UpdateService(w.service);
        break;
      case IpvsWrite::Op::kDeleteService:
        s = DeleteService(w.service);
        break;
      case IpvsWrite::Op::kAddDestination:
        s = AddDestination(w.service, w.destination);
        break;
      case IpvsWrite::Op::kUpdateDestination:
        s = UpdateDestination(w.service, w.destination);
        break;
      case IpvsWrite::Op::kDeleteDestination:
        s = DeleteDestination(w.service, w.destination);
        break;
    }
    if (!s.ok()) errors.push_back({i, s.message()});
  }
  return errors;
}

}  // namespace kr::netlink
