// SPDX-License-Identifier: Apache-2.0
#include "resources.h"

namespace fake_apiserver {

namespace {

std::vector<ResourceType>& Resources() {
  static std::vector<ResourceType> all = {
      {"", "v1", "namespaces", "namespace", "Namespace", false, {"ns"}},
      {"", "v1", "nodes", "node", "Node", false, {"no"}},
      {"", "v1", "pods", "pod", "Pod", true, {"po"}},
      {"", "v1", "services", "service", "Service", true, {"svc"}},
      {"", "v1", "endpoints", "endpoints", "Endpoints", true, {"ep"}},
      {"discovery.k8s.io", "v1", "endpointslices", "endpointslice", "EndpointSlice", true, {}},
      {"networking.k8s.io",
       "v1",
       "networkpolicies",
       "networkpolicy",
       "NetworkPolicy",
       true,
       {"netpol"}},
      {"coordination.k8s.io", "v1", "leases", "lease", "Lease", true, {}},
  };
  return all;
}

}  // namespace

const std::vector<ResourceType>& AllResources() { return Resources(); }

void ServeNetworkPoliciesAsBeta() {
  for (auto& r : Resources()) {
    if (r.kind != "NetworkPolicy") continue;
    r.group = "extensions";
    r.version = "v1beta1";
  }
}

const ResourceType* FindByPath(const std::string& group, const std::string& version,
                               const std::string& plural) {
  for (const auto& r : AllResources()) {
    if (r.group == group && r.version == version && r.plural == plural) return &r;
  }
  return nullptr;
}

const ResourceType* FindByKind(const std::string& api_version, const std::string& kind) {
  for (const auto& r : AllResources()) {
    if (r.ApiVersion() == api_version && r.kind == kind) return &r;
  }
  return nullptr;
}

}  // namespace fake_apiserver
