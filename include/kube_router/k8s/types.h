// Plain C++ models of the Kubernetes objects the controllers read, holding only the fields
// kube-router uses (see shared reference kubernetes-api.md §1.9). Decoders fill them; nothing
// here knows about JSON.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "kube_router/k8s/labels.h"

namespace kr::k8s {

// Every cached object is paid for on every node (docs/memory.md), so these types hold only what
// a controller reads; the decoders type-check the fields they drop (docs/k8s.md lists them). A
// controller that starts reading a dropped field adds it back here and in decode.cc.
struct ObjectMeta {
  std::string name;
  std::string namespace_;  // empty for cluster-scoped objects
  std::string resource_version;
  SharedLabels labels;  // one copy per distinct set (docs/memory.md)
  Labels annotations;
  bool being_deleted = false;  // deletionTimestamp is set

  // "namespace/name", or "name" for cluster-scoped objects: the store key.
  std::string Key() const { return namespace_.empty() ? name : namespace_ + "/" + name; }
};

// intstr.IntOrString: a number or a name (named ports, targetPort).
struct IntOrString {
  bool is_string = false;
  int32_t number = 0;
  std::string text;
  bool operator==(const IntOrString&) const = default;
};

struct LabelSelectorRequirement {
  std::string key;
  std::string op;  // In, NotIn, Exists, DoesNotExist (anything else is invalid)
  std::vector<std::string> values;
  bool operator==(const LabelSelectorRequirement&) const = default;
};

struct LabelSelector {
  Labels match_labels;
  std::vector<LabelSelectorRequirement> match_expressions;
  bool operator==(const LabelSelector&) const = default;
};

// ---- core/v1 Service ----
struct ServicePort {
  std::string name;
  std::string protocol = "TCP";
  int32_t port = 0;  // (targetPort is not kept: the proxy takes ports from EndpointSlices)
  int32_t node_port = 0;
};

struct LoadBalancerIngress {
  std::string ip;
  std::string hostname;
  std::string ip_mode;  // "VIP", "Proxy" (the proxy ignores Proxy), or empty
};

struct Service {
  ObjectMeta meta;
  std::string type = "ClusterIP";        // ClusterIP, NodePort, LoadBalancer, ExternalName
  std::string cluster_ip;                // "None" for headless
  std::vector<std::string> cluster_ips;  // (the families are read from these addresses)
  std::vector<ServicePort> ports;
  std::vector<std::string> external_ips;
  std::string session_affinity = "None";  // None, ClientIP
  int32_t session_affinity_timeout_seconds = 10800;
  std::string external_traffic_policy = "Cluster";  // Cluster, Local
  std::string internal_traffic_policy = "Cluster";
  int32_t health_check_node_port = 0;
  std::vector<LoadBalancerIngress> load_balancer_ingress;  // status.loadBalancer.ingress
};

// ---- discovery.k8s.io/v1 EndpointSlice ----
struct Endpoint {
  std::vector<std::string> addresses;
  bool ready = true;  // a missing `ready` condition means ready
  bool serving = true;
  bool terminating = false;
  std::string node_name;
};

struct EndpointPort {
  std::string name;
  std::optional<int32_t> port;
  std::string protocol = "TCP";
};

struct EndpointSlice {
  ObjectMeta meta;
  std::string address_type = "IPv4";  // IPv4, IPv6, FQDN
  std::string service_name;           // label kubernetes.io/service-name
  std::vector<Endpoint> endpoints;
  std::vector<EndpointPort> ports;
};

// ---- core/v1 Node ----
struct NodeAddress {
  std::string type;  // InternalIP, ExternalIP, Hostname
  std::string address;
};

struct Node {
  ObjectMeta meta;
  std::string pod_cidr;
  std::vector<std::string> pod_cidrs;
  std::vector<NodeAddress> addresses;
};

// ---- core/v1 Pod ----
struct ContainerPort {
  std::string name;
  int32_t container_port = 0;
  std::string protocol = "TCP";
};

struct Pod {
  ObjectMeta meta;
  std::string node_name;
  bool host_network = false;
  std::vector<ContainerPort> container_ports;  // all containers' ports, in order
  std::string pod_ip;
  std::vector<std::string> pod_ips;
  std::string phase;  // Pending, Running, Succeeded, Failed, Unknown
  // spec.terminationGracePeriodSeconds (the proxy's graceful termination); nullopt if absent.
  std::optional<int64_t> termination_grace_period_seconds;
};

// ---- core/v1 Namespace ----
struct Namespace {
  ObjectMeta meta;
};

// ---- networking.k8s.io/v1 NetworkPolicy ----
struct IpBlock {
  std::string cidr;
  std::vector<std::string> except;
};

struct NetworkPolicyPeer {
  std::optional<LabelSelector> pod_selector;        // nil vs {} matters
  std::optional<LabelSelector> namespace_selector;  // nil = the policy's namespace
  std::optional<IpBlock> ip_block;
};

struct NetworkPolicyPort {
  std::string protocol = "TCP";
  std::optional<IntOrString> port;  // absent = all ports
  std::optional<int32_t> end_port;
};

struct NetworkPolicyRule {
  std::vector<NetworkPolicyPeer> peers;  // from (ingress) / to (egress); empty = everyone
  std::vector<NetworkPolicyPort> ports;  // empty = all ports
};

struct NetworkPolicy {
  ObjectMeta meta;
  LabelSelector pod_selector;
  // Defaulted by the decoder when absent: Ingress, plus Egress iff egress rules are present.
  bool policy_ingress = true;
  bool policy_egress = false;
  std::vector<NetworkPolicyRule> ingress;
  std::vector<NetworkPolicyRule> egress;
};

// ---- events delivered to controllers ----
enum class ResourceKind { kService, kEndpointSlice, kPod, kNode, kNamespace, kNetworkPolicy };
enum class EventType { kAdded, kUpdated, kDeleted };

const char* ResourceKindName(ResourceKind kind);

using AnyObject = std::variant<std::monostate, std::shared_ptr<const Service>,
                               std::shared_ptr<const EndpointSlice>, std::shared_ptr<const Pod>,
                               std::shared_ptr<const Node>, std::shared_ptr<const Namespace>,
                               std::shared_ptr<const NetworkPolicy>>;

// One change in a cache. `old_object` is empty for kAdded, `new_object` for kDeleted.
struct Event {
  ResourceKind kind = ResourceKind::kPod;
  EventType type = EventType::kAdded;
  std::string key;
  AnyObject old_object;
  AnyObject new_object;
  // When the change reached the controller's runner (its inbox stamps it at the first push; a
  // coalesced event keeps its first arrival). Zero where no runner delivered it. The service
  // proxy measures an event's programming latency from it when the object has no trigger time.
  std::chrono::steady_clock::time_point arrived{};
};

}  // namespace kr::k8s

namespace kr::k8s {

// Where informers deliver events. Post must not block on slow consumers (each controller
// queues into its own inbox).
class EventSink {
 public:
  virtual ~EventSink() = default;
  virtual void Post(const Event& event) = 0;
};

}  // namespace kr::k8s
