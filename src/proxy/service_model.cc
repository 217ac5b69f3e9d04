#include "kube_router/proxy/service_model.h"

#include <algorithm>

namespace kr::proxy {
namespace {

const char* ProtocolName(netlink::IpvsProtocol p) {
  switch (p) {
    case netlink::IpvsProtocol::kTcp:
      return "TCP";
    case netlink::IpvsProtocol::kUdp:
      return "UDP";
    case netlink::IpvsProtocol::kSctp:
      return "SCTP";
  }
  return "?";
}

bool IdLess(const netlink::IpvsDestination& a, const netlink::IpvsDestination& b) {
  return IdOf(a) < IdOf(b);
}

std::string HostPort(const IpAddress& ip, uint16_t port) {
  std::string host = ip.is_v6() ? "[" + ip.ToString() + "]" : ip.ToString();
  return host + ":" + std::to_string(port);
}

}  // namespace

std::string ServicePortKey::ToString() const {
  return port_name.empty() ? service.ToString() : service.ToString() + ":" + port_name;
}

const char* VipRoleName(VipRole role) {
  switch (role) {
    case VipRole::kClusterIp:
      return "ClusterIP";
    case VipRole::kNodePort:
      return "NodePort";
    case VipRole::kExternalIp:
      return "ExternalIP";
    case VipRole::kLoadBalancer:
      return "LoadBalancer";
  }
  return "?";
}

VirtualServiceId VirtualServiceId::Of(const netlink::IpvsService& s) {
  if (s.fwmark != 0) {
    // The kernel reports fwmark services with the zero address of their family.
    IpAddress zero = s.address.is_v6() ? IpAddress::V6({}) : IpAddress::V4(0);
    return {zero, netlink::IpvsProtocol::kTcp, 0, s.fwmark};
  }
  return {s.address, s.protocol, s.port, 0};
}

std::string VirtualServiceId::ToString() const {
  if (fwmark != 0) {
    return "FWM " + std::to_string(fwmark) + (address.is_v6() ? " IPv6" : " IPv4");
  }
  return std::string(ProtocolName(protocol)) + " " + HostPort(address, port);
}

std::string DestinationId::ToString() const { return HostPort(address, port); }

Destinations Destinations::FromUnsorted(std::vector<netlink::IpvsDestination> items) {
  std::stable_sort(items.begin(), items.end(), IdLess);
  items.erase(std::unique(items.begin(), items.end(),
                          [](const auto& a, const auto& b) { return IdOf(a) == IdOf(b); }),
              items.end());
  items.shrink_to_fit();
  Destinations out;
  out.items_ = std::move(items);
  return out;
}

Destinations::const_iterator Destinations::find(const DestinationId& id) const {
  auto it = std::lower_bound(items_.begin(), items_.end(), id,
                             [](const auto& d, const DestinationId& key) { return IdOf(d) < key; });
  return it != items_.end() && IdOf(*it) == id ? it : items_.end();
}

void Destinations::Put(const netlink::IpvsDestination& destination) {
  const DestinationId id = IdOf(destination);
  // Appending is the common case (a plan adds a service's destinations in order).
  if (items_.empty() || IdOf(items_.back()) < id) {
    items_.push_back(destination);
    return;
  }
  auto it = std::lower_bound(items_.begin(), items_.end(), destination, IdLess);
  if (it != items_.end() && IdOf(*it) == id) {
    *it = destination;
  } else {
    items_.insert(it, destination);
  }
}

void Destinations::Erase(const DestinationId& id) {
  auto it = find(id);
  if (it != items_.end()) items_.erase(it);
}

void Destinations::Compact() {
  if (items_.capacity() - items_.size() > items_.size() / 4) items_.shrink_to_fit();
}

}  // namespace kr::proxy
