// SPDX-License-Identifier: Apache-2.0
// What kube-apiserver's Service REST storage allocates: ClusterIPs from the service range(s)
// (one per family, as spec.ipFamilyPolicy asks) and NodePorts from the node-port range for
// NodePort/LoadBalancer ports. Taken or out-of-range values are refused with the 422 Invalid
// Status kube-apiserver sends; a Service's values are freed when it is deleted or no longer uses
// them. Not thread-safe: ObjectStore calls it under its own lock.
#pragma once

#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <string>
#include <vector>

namespace fake_apiserver {

struct ApiError;

struct ServiceRanges {
  std::vector<std::string> cluster_ip_cidrs;  // one or two CIDRs (one per family)
  int node_port_first = 30000, node_port_last = 32767;
};

// Parses "--service-cluster-ip-range 10.96.0.0/12[,fd00:96::/108]" and
// "--service-node-port-range 30000-32767"; empty error string on success.
std::string ParseServiceRanges(const std::string& cidrs, const std::string& ports,
                               ServiceRanges* out);

class ServiceAllocator {
 public:
  // `ranges` must have passed ParseServiceRanges.
  explicit ServiceAllocator(const ServiceRanges& ranges);

  // Fills spec.clusterIP(s)/ipFamilies/ipFamilyPolicy and missing nodePorts of `service` and
  // reserves them (keeping what `old`, the stored object on an update, already holds). On error
  // nothing changes and the 422 Status to send is returned.
  std::optional<ApiError> Admit(nlohmann::json* service, const nlohmann::json* old);
  // A stored object (manifest) whose values are reserved as far as possible, never refused:
  // a conflicting or out-of-range value is kept in the object but not reserved.
  void Restore(nlohmann::json* service);
  // Frees everything `service` holds.
  void Release(const nlohmann::json& service);

  size_t AllocatedIps() const;
  size_t AllocatedNodePorts() const { return node_ports_.size(); }

 private:
  using U128 = unsigned __int128;
  struct Range {
    bool v6 = false;
    U128 base = 0;  // network address
    U128 size = 0;  // addresses in the range, capped (see .cc)
    std::string text;
    std::set<U128> used;
  };
  Range* RangeFor(bool v6);
  bool InRange(const Range& r, U128 a) const { return a > r.base && a < r.base + r.size; }
  std::optional<U128> FirstFree(const Range& r) const;

  std::vector<Range> ranges_;
  int port_first_, port_last_;
  std::set<int> node_ports_;  // a node port is taken for TCP/UDP/SCTP alike
};

}  // namespace fake_apiserver
