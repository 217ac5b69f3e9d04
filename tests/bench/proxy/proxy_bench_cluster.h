// The cluster both proxy benchmarks program: Service i (ClusterIP 10.96.0.1 + i, port 80 →
// targetPort 8080, and with `ports` 2 also 443 → 8443 as in the guest's agent_memory_bench) with
// one EndpointSlice of 10 endpoints (10.128.0.1 + 10 i + j); the change rounds move an endpoint
// to 10.160.0.1 + r. One definition so that the guest bench
// (proxy_bench) and the host event-path bench (proxy_event_bench) measure the same objects.
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>

#include <cstdint>
#include <string>
#include <vector>

namespace kr::testing::proxy_bench {

inline constexpr int kEndpointsPerService = 10;
inline constexpr int kPort = 80;
inline constexpr int kTargetPort = 8080;

inline std::string V4(uint32_t host) {
  char text[INET_ADDRSTRLEN];
  uint32_t net = htonl(host);
  inet_ntop(AF_INET, &net, text, sizeof(text));
  return text;
}
inline std::string Vip(int i) { return V4(0x0a600001u + static_cast<uint32_t>(i)); }
inline std::string EndpointIp(int i, int j) {
  return V4(0x0a800001u + static_cast<uint32_t>(i * kEndpointsPerService + j));
}
inline std::string ReplacementIp(int round) {
  return V4(0x0aa00001u + static_cast<uint32_t>(round));
}

inline std::string ServiceJson(int i, int ports = 1) {
  return R"({"apiVersion":"v1","kind":"Service","metadata":{"namespace":"default","name":"s)" +
         std::to_string(i) + R"("},"spec":{"clusterIP":")" + Vip(i) + R"(","clusterIPs":[")" +
         Vip(i) + R"("],"ports":[{"name":"http","port":80,"protocol":"TCP","targetPort":8080})" +
         (ports > 1 ? R"(,{"name":"https","port":443,"protocol":"TCP","targetPort":8443})" : "") +
         "]}}";
}

// Ready endpoints on another node, as an EndpointSlice's "endpoints" array.
inline std::string EndpointsJson(const std::vector<std::string>& ips) {
  std::string out = "[";
  for (size_t j = 0; j < ips.size(); ++j) {
    out +=
        (j ? "," : "") + std::string(R"({"addresses":[")") + ips[j] +
        R"("],"nodeName":"other","conditions":{"ready":true,"serving":true,"terminating":false}})";
  }
  return out + "]";
}

inline std::vector<std::string> Endpoints(int i) {
  std::vector<std::string> ips;
  for (int j = 0; j < kEndpointsPerService; ++j) ips.push_back(EndpointIp(i, j));
  return ips;
}

inline std::string SliceJson(int i, int ports = 1) {
  return R"({"apiVersion":"discovery.k8s.io/v1","kind":"EndpointSlice","metadata":{"namespace":"default","name":"s)" +
         std::to_string(i) + R"(-1","labels":{"kubernetes.io/service-name":"s)" +
         std::to_string(i) + R"("}},"addressType":"IPv4","endpoints":)" +
         EndpointsJson(Endpoints(i)) + R"(,"ports":[{"name":"http","port":8080,"protocol":"TCP"})" +
         (ports > 1 ? R"(,{"name":"https","port":8443,"protocol":"TCP"})" : "") + "]}";
}

// The node (node0, InternalIP 192.0.2.1; pod CIDR 10.71.0.0/24 when `with_pod_cidr`) and the
// first `services` Services (`ports` each: 1 or 2) with their slices, as one List manifest for
// fake-apiserver.
inline std::string ClusterManifest(int services, bool with_pod_cidr, int ports = 1) {
  std::string out = R"({"apiVersion":"v1","kind":"List","items":[)";
  out +=
      with_pod_cidr
          ? R"({"apiVersion":"v1","kind":"Node","metadata":{"name":"node0"},"spec":{"podCIDR":"10.71.0.0/24","podCIDRs":["10.71.0.0/24"]},"status":{"addresses":[{"type":"InternalIP","address":"192.0.2.1"}]}})"
          : R"({"apiVersion":"v1","kind":"Node","metadata":{"name":"node0"},"status":{"addresses":[{"type":"InternalIP","address":"192.0.2.1"}]}})";
  for (int i = 0; i < services; ++i) {
    out += "," + ServiceJson(i, ports) + "," + SliceJson(i, ports);
  }
  return out + "]}";
}

}  // namespace kr::testing::proxy_bench
