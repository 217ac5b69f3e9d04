// SPDX-License-Identifier: Apache-2.0
// The controller-manager and scheduler parts of the sandbox node agent, as pure functions of
// the objects listed from the API server (main.cc applies what they return):
//  * pod CIDRs for Nodes (the node IPAM controller),
//  * a node for each new Pod (the scheduler; spec.nodeName set by the user is respected),
//  * the EndpointSlices of every Service with a selector (the EndpointSlice controller).
#pragma once

#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace sandbox {

using nlohmann::json;

// Node name -> pod CIDR for every Node without spec.podCIDR: the lowest /`node_bits` blocks of
// the IPv4 `cluster_cidr` that no Node holds yet. Nodes beyond the range get none (the caller
// logs them).
std::map<std::string, std::string> AssignPodCidrs(const json& nodes,
                                                  const std::string& cluster_cidr,
                                                  int node_bits = 24);

// "namespace/name" -> node for every Pod without spec.nodeName: the node with the fewest pods
// (already placed ones count), ties by node name.
std::map<std::string, std::string> PlacePods(const json& pods,
                                             const std::vector<std::string>& nodes);

// The label marking slices this agent manages (others are never touched).
inline constexpr char kManagedBy[] = "endpointslice.kubernetes.io/managed-by";
inline constexpr char kManagerName[] = "sandbox-node.kube-router.io";

// Every EndpointSlice the Services with selectors should have: per Service, one slice per
// address family and per set of resolved ports (a named targetPort is looked up in each pod's
// container ports, so pods resolving it differently land in different slices, as in
// Kubernetes). Endpoints are the matching pods with an IP, placed on a node and not finished;
// conditions follow the pod's Ready condition and deletionTimestamp. Names are
// "<service>-<family>-<8 hex digits of the port set>".
std::vector<json> DesiredSlices(const json& services, const json& pods);

}  // namespace sandbox
