// Builders for Services, EndpointSlices and Nodes in proxy unit tests.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "kube_router/k8s/types.h"
#include "kube_router/proxy/proxy_config.h"

namespace kr::proxy::testing {

inline IpAddress Ip(const std::string& text) { return *IpAddress::Parse(text); }

inline k8s::Service Svc(const std::string& name, const std::string& cluster_ip,
                        std::vector<k8s::ServicePort> ports, const std::string& ns = "default") {
  k8s::Service s;
  s.meta.name = name;
  s.meta.namespace_ = ns;
  s.cluster_ips = {cluster_ip};
  s.ports = std::move(ports);
  return s;
}

inline k8s::ServicePort Port(const std::string& name, int32_t port,
                             const std::string& protocol = "TCP", int32_t node_port = 0) {
  k8s::ServicePort p;
  p.name = name;
  p.port = port;
  p.protocol = protocol;
  p.node_port = node_port;
  return p;
}

struct Ep {
  std::string ip;
  std::string node = "node-b";
  bool ready = true;
  bool serving = true;
  bool terminating = false;
};

inline k8s::EndpointSlice Slice(const std::string& service, const std::string& slice_name,
                                std::vector<Ep> endpoints,
                                std::vector<std::pair<std::string, int32_t>> ports,
                                const std::string& ns = "default",
                                const std::string& type = "IPv4") {
  k8s::EndpointSlice s;
  s.meta.name = slice_name;
  s.meta.namespace_ = ns;
  s.meta.labels["kubernetes.io/service-name"] = service;
  s.service_name = service;
  s.address_type = type;
  for (const auto& e : endpoints) {
    k8s::Endpoint ep;
    ep.addresses = {e.ip};
    ep.node_name = e.node;
    ep.ready = e.ready;
    ep.serving = e.serving;
    ep.terminating = e.terminating;
    s.endpoints.push_back(ep);
  }
  for (const auto& [name, port] : ports) {
    k8s::EndpointPort p;
    p.name = name;
    p.port = port;
    s.ports.push_back(p);
  }
  return s;
}

inline k8s::Node NodeObj(const std::string& name, std::vector<std::string> internal_ips) {
  k8s::Node n;
  n.meta.name = name;
  for (const auto& ip : internal_ips) n.addresses.push_back({"InternalIP", ip});
  return n;
}

inline ProxyConfig Config(const std::string& node = "node-a") {
  ProxyConfig c;
  c.node_name = node;
  c.cluster_ip_ranges = {*IpPrefix::Parse("10.96.0.0/12"), *IpPrefix::Parse("fd00:96::/108")};
  c.external_ip_ranges = {*IpPrefix::Parse("198.51.100.0/24")};
  c.loadbalancer_ip_ranges = {*IpPrefix::Parse("203.0.113.0/24")};
  // Verification steps bounded by items only: how many a step takes must not depend on the
  // machine's speed (ASan, load).
  c.verify_step_time = std::chrono::microseconds(0);
  return c;
}

// An Added event of `kind` for `object` as an informer posts it.
template <typename T>
k8s::Event AddedEvent(k8s::ResourceKind kind, const std::string& key,
                      std::shared_ptr<const T> object) {
  k8s::Event e;
  e.kind = kind;
  e.type = k8s::EventType::kAdded;
  e.key = key;
  e.new_object = std::move(object);
  return e;
}

}  // namespace kr::proxy::testing
