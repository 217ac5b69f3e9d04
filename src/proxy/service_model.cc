#include "kube_router/proxy/service_model.h"

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

}  // namespace kr::proxy
