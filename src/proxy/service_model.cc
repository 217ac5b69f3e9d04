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
  Destinations out;
  if (!items.empty()) {
    items.shrink_to_fit();
    out.items_ = std::make_shared<Items>(std::move(items));
  }
  return out;
}

const Destinations::Items& Destinations::items() const {
  static const Items kEmpty;
  return items_ ? *items_ : kEmpty;
}

Destinations::Items& Destinations::Mutable() {
  if (!items_) {
    items_ = std::make_shared<Items>();
  } else if (items_.use_count() > 1) {
    items_ = std::make_shared<Items>(*items_);
  }
  return *items_;
}

Destinations::const_iterator Destinations::find(const DestinationId& id) const {
  const Items& all = items();
  auto it = std::lower_bound(all.begin(), all.end(), id,
                             [](const auto& d, const DestinationId& key) { return IdOf(d) < key; });
  return it != all.end() && IdOf(*it) == id ? it : all.end();
}

void Destinations::Put(const netlink::IpvsDestination& destination) {
  const DestinationId id = IdOf(destination);
  Items& all = Mutable();
  // Appending is the common case (a plan adds a service's destinations in order).
  if (all.empty() || IdOf(all.back()) < id) {
    all.push_back(destination);
    return;
  }
  auto it = std::lower_bound(all.begin(), all.end(), destination, IdLess);
  if (it != all.end() && IdOf(*it) == id) {
    *it = destination;
  } else {
    all.insert(it, destination);
  }
}

void Destinations::Erase(const DestinationId& id) {
  auto found = find(id);
  if (found == end()) return;
  const auto offset = found - begin();  // Mutable() may clone: the iterator would be stale
  Items& all = Mutable();
  all.erase(all.begin() + offset);
  if (all.empty()) items_.reset();
}

void Destinations::Compact() {
  if (!items_) return;
  if (items_->empty()) {
    items_.reset();
  } else if (items_->capacity() - items_->size() > items_->size() / 4) {
    items_->shrink_to_fit();  // (shared or not: the content stays the same)
  }
}

}  // namespace kr::proxy
