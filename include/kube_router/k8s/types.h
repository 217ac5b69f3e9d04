// Plain C++ models of the Kubernetes objects the controllers read, holding only the fields
// kube-router uses (see shared reference kubernetes-api.md §1.9). Decoders fill them; nothing
// here knows about JSON.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <iterator>
#include <map>
#include <memory>
#include <optional>
#include <ostream>
#include <stdexcept>
#include <string>
#include <string_view>
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
  // (deletionTimestamp is not kept: no controller reads it, and a bool after the map was 8 B of
  // padding in every cached object.)

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

// A list of addresses in one string (docs/memory.md, "Compact endpoints"): an endpoint's
// addresses, a Service's cluster IPs. One IPv4 address fits std::string's inline buffer, so the
// common endpoint or single-stack Service allocates nothing for them (a std::vector<std::string>
// was 24 B plus a 48 B heap chunk per list). Reads as a range of std::string_view; holds any
// list of strings without a NUL character (the decoder rejects those: an address is an IP or a
// DNS name).
class AddressList {
 public:
  class iterator {
   public:
    using iterator_category = std::forward_iterator_tag;
    using value_type = std::string_view;
    using difference_type = std::ptrdiff_t;
    using pointer = void;
    using reference = std::string_view;

    iterator() = default;
    std::string_view operator*() const { return text_.substr(pos_, Length()); }
    iterator& operator++() {
      if (all_empty_) {
        ++pos_;
      } else {
        pos_ += Length() + 1;
      }
      return *this;
    }
    iterator operator++(int) {
      iterator old = *this;
      ++*this;
      return old;
    }
    friend bool operator==(const iterator& a, const iterator& b) { return a.pos_ == b.pos_; }

   private:
    friend class AddressList;
    iterator(std::string_view text, size_t pos, bool all_empty)
        : text_(text), pos_(pos), all_empty_(all_empty) {}
    size_t Length() const {
      if (all_empty_) return 0;
      size_t end = text_.find('\0', pos_);
      return (end == std::string_view::npos ? text_.size() : end) - pos_;
    }
    std::string_view text_;
    size_t pos_ = 0;
    bool all_empty_ = false;  // the text is N NULs: N empty addresses
  };

  AddressList() = default;
  // Throw std::invalid_argument for an address with a NUL character.
  AddressList(std::initializer_list<std::string_view> addresses) {
    Assign(addresses.begin(), addresses.end());
  }
  explicit AddressList(const std::vector<std::string>& addresses) {
    Assign(addresses.begin(), addresses.end());
  }

  iterator begin() const { return {text_, 0, AllEmpty()}; }
  iterator end() const {
    // One past the last address: the text's size plus the separator it would have (none for
    // an empty list, and the all-empty form has no separators).
    return {text_, text_.empty() || AllEmpty() ? text_.size() : text_.size() + 1, AllEmpty()};
  }
  bool empty() const { return text_.empty(); }
  size_t size() const {
    if (text_.empty()) return 0;
    if (AllEmpty()) return text_.size();
    return static_cast<size_t>(std::count(text_.begin(), text_.end(), '\0')) + 1;
  }
  bool contains(std::string_view address) const {
    return std::find(begin(), end(), address) != end();
  }
  std::vector<std::string> ToVector() const { return {begin(), end()}; }
  // The encoded form (tests: what it allocates).
  const std::string& text() const { return text_; }

  friend bool operator==(const AddressList&, const AddressList&) = default;
  friend bool operator==(const AddressList& a, const std::vector<std::string>& b) {
    return std::equal(a.begin(), a.end(), b.begin(), b.end());
  }
  friend std::ostream& operator<<(std::ostream& os, const AddressList& a) {
    os << "[";
    const char* sep = "";
    for (std::string_view address : a) {
      os << sep << '"' << address << '"';
      sep = ", ";
    }
    return os << "]";
  }

 private:
  // Addresses joined by NULs, sized exactly; a list of N empty addresses (which would join to
  // N-1 NULs, and to "" for one, the empty list's form) is N NULs instead. Any other list has a
  // character that is not a NUL, so the two forms never meet.
  template <typename It>
  void Assign(It first, It last) {
    size_t bytes = 0, count = 0;
    bool all_empty = true;
    for (It it = first; it != last; ++it) {
      std::string_view a(*it);
      if (a.find('\0') != std::string_view::npos) {
        throw std::invalid_argument("an address with a NUL character");
      }
      bytes += a.size();
      all_empty = all_empty && a.empty();
      ++count;
    }
    if (count == 0 || all_empty) {
      text_ = std::string(count, '\0');
      return;
    }
    // Constructed at its size (reserve() on an empty string may double the request); the NULs
    // between the addresses are the constructor's.
    std::string text(bytes + count - 1, '\0');
    size_t at = 0;
    for (It it = first; it != last; ++it) {
      std::string_view a(*it);
      text.replace(at, a.size(), a);
      at += a.size() + 1;
    }
    text_ = std::move(text);
  }
  bool AllEmpty() const {
    return !text_.empty() && text_.find_first_not_of('\0') == std::string::npos;
  }

  std::string text_;
};

using EndpointAddresses = AddressList;  // an endpoint's addresses

// ---- core/v1 Service ----
// The short strings that repeat across objects (enum-like fields, port names, node names) are
// SharedStrings from StringPool::Default(): 16 B, not 32 (docs/memory.md, "Compact endpoints").
struct ServicePort {
  SharedString name;
  SharedString protocol = "TCP";
  int32_t port = 0;  // (targetPort is not kept: the proxy takes ports from EndpointSlices)
  int32_t node_port = 0;
};

struct LoadBalancerIngress {
  std::string ip;       // (hostname is type-checked, not kept: no controller reads it)
  std::string ip_mode;  // "VIP", "Proxy" (the proxy ignores Proxy), or empty
};

struct Service {
  ObjectMeta meta;
  SharedString type = "ClusterIP";  // ClusterIP, NodePort, LoadBalancer, ExternalName
  // spec.clusterIPs, or spec.clusterIP alone where the server sent no clusterIPs (the API server
  // keeps clusterIP equal to clusterIPs[0]): "None" for headless. The families are read from
  // these addresses. One string, not a vector beside a copy of the first (docs/memory.md).
  AddressList cluster_ips;
  std::vector<ServicePort> ports;
  std::vector<std::string> external_ips;
  SharedString session_affinity = "None";  // None, ClientIP
  int32_t session_affinity_timeout_seconds = 10800;
  SharedString external_traffic_policy = "Cluster";  // Cluster, Local
  SharedString internal_traffic_policy = "Cluster";
  int32_t health_check_node_port = 0;
  std::vector<LoadBalancerIngress> load_balancer_ingress;  // status.loadBalancer.ingress

  // spec.clusterIP: the first cluster IP, or empty.
  std::string_view cluster_ip() const {
    return cluster_ips.empty() ? std::string_view() : *cluster_ips.begin();
  }
};

// ---- discovery.k8s.io/v1 EndpointSlice ----
// 56 B (it was 64 B plus a 48 B chunk for the addresses vector, plus a chunk for a node name
// over 15 characters): the node name is shared through StringPool::Default(), the conditions
// are bits.
struct Endpoint {
  EndpointAddresses addresses;
  SharedString node_name;
  bool ready : 1 = true;  // a missing `ready` condition means ready
  bool serving : 1 = true;
  bool terminating : 1 = false;
};

struct EndpointPort {
  SharedString name;
  std::optional<int32_t> port;
  SharedString protocol = "TCP";
};

struct EndpointSlice {
  ObjectMeta meta;
  SharedString address_type = "IPv4";  // IPv4, IPv6, FQDN
  std::string service_name;            // label kubernetes.io/service-name
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
// The node name, the phase and the ports' names and protocols are SharedStrings from
// StringPool::Default(), as a Service's (a port 40 B, not 72; docs/memory.md).
struct ContainerPort {
  SharedString name;
  int32_t container_port = 0;
  SharedString protocol = "TCP";
};

struct Pod {
  ObjectMeta meta;
  SharedString node_name;
  bool host_network = false;
  std::vector<ContainerPort> container_ports;  // all containers' ports, in order
  // status.podIPs, or status.podIP alone where the server sent no podIPs (podIP is podIPs[0]):
  // one compact list, as a Service's cluster IPs.
  AddressList pod_ips;
  SharedString phase;  // Pending, Running, Succeeded, Failed, Unknown
  // spec.terminationGracePeriodSeconds (the proxy's graceful termination); nullopt if absent.
  std::optional<int64_t> termination_grace_period_seconds;

  // status.podIP: the first pod IP, or empty.
  std::string_view pod_ip() const {
    return pod_ips.empty() ? std::string_view() : *pod_ips.begin();
  }
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
