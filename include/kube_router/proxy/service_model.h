// Value types of the service proxy: what one Kubernetes Service asks the kernel for (IPVS
// virtual services with their real servers, VIPs on kube-dummy-if) and the facts the other proxy
// pieces (firewall, health checks, metrics, DSR) need. Plain values, no kernel handles.
#pragma once

#include <chrono>
#include <compare>
#include <cstddef>
#include <cstdint>
#include <iterator>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "kube_router/base/ip.h"
#include "kube_router/netlink/ipvs.h"

namespace kr::proxy {

// Annotations and labels, spelled as kube-router reads them.
inline constexpr char kAnnotationScheduler[] = "kube-router.io/service.scheduler";
inline constexpr char kAnnotationSchedFlags[] = "kube-router.io/service.schedflags";
inline constexpr char kAnnotationDsr[] = "kube-router.io/service.dsr";
inline constexpr char kAnnotationLocal[] = "kube-router.io/service.local";
inline constexpr char kAnnotationSkipLbIps[] = "kube-router.io/service.skiplbips";
inline constexpr char kAnnotationHairpin[] = "kube-router.io/service.hairpin";
inline constexpr char kAnnotationHairpinExternalIps[] =
    "kube-router.io/service.hairpin.externalips";
inline constexpr char kLabelServiceProxyName[] = "service.kubernetes.io/service-proxy-name";
inline constexpr char kLabelHeadless[] = "service.kubernetes.io/headless";
inline constexpr char kAnnotationLastChangeTriggerTime[] =
    "endpoints.kubernetes.io/last-change-trigger-time";
inline constexpr char kProxyName[] = "kube-router";

// What a Service is called in logs and maps: namespace and name, compared as a pair.
struct ServiceName {
  std::string namespace_;
  std::string name;
  auto operator<=>(const ServiceName&) const = default;
  std::string ToString() const { return namespace_ + "/" + name; }
};

// Why a virtual service exists.
enum class VipRole : uint8_t { kClusterIp, kNodePort, kExternalIp, kLoadBalancer };
const char* VipRoleName(VipRole role);

// Identity of an IPVS virtual service in the kernel: (address, protocol, port), or a firewall
// mark when fwmark != 0 (DSR; then only the address family counts).
struct VirtualServiceId {
  IpAddress address;
  netlink::IpvsProtocol protocol = netlink::IpvsProtocol::kTcp;
  uint16_t port = 0;
  uint32_t fwmark = 0;

  static VirtualServiceId Of(const netlink::IpvsService& service);
  auto operator<=>(const VirtualServiceId&) const = default;
  std::string ToString() const;  // "TCP 10.96.0.1:80", "[fd00::1]:53 UDP"-style, "FWM 17"
};

// Identity of a real server within one virtual service.
struct DestinationId {
  IpAddress address;
  uint16_t port = 0;
  auto operator<=>(const DestinationId&) const = default;
  std::string ToString() const;
};

// The real servers of one virtual service, sorted by identity (address, port), one per
// identity. A flat vector, not a map: the proxy keeps two images of every destination (the
// Service's, which the desired image points at, and the programmed image), 200,000 of each at
// 10k Services with two ports, and a map node costs 112 B of heap (docs/memory.md). Copies share
// the vector until one of them changes (copy on write), so the images hold one vector between
// them for a virtual service programmed as wanted. Not for sharing across threads.
//
// An element holds only what the proxy programs: identity, forwarding method and weight, 24 B
// where a netlink::IpvsDestination is 44. Its connection counts are not kept (they are kernel
// statistics; the drain queue asks the kernel for them). The proxy never sets thresholds, so
// they take no room either: a kernel read-back that has them keeps them in a side vector of its
// own, so that they still differ from the wanted ones and get repaired. Readers see
// netlink::IpvsDestination values (the iterator builds them).
class Destinations {
  struct Items;

 public:
  // A random-access position whose elements are netlink::IpvsDestination values (built on
  // access: `const auto& d : destinations` binds to the value, `it->weight` works).
  class const_iterator {
   public:
    using iterator_category = std::input_iterator_tag;
    using value_type = netlink::IpvsDestination;
    using difference_type = std::ptrdiff_t;
    using reference = netlink::IpvsDestination;
    struct pointer {
      netlink::IpvsDestination value;
      const netlink::IpvsDestination* operator->() const { return &value; }
    };

    const_iterator() = default;
    netlink::IpvsDestination operator*() const;
    pointer operator->() const { return {**this}; }
    const_iterator& operator++() {
      ++index_;
      return *this;
    }
    const_iterator operator++(int) {
      const_iterator before = *this;
      ++index_;
      return before;
    }
    const_iterator& operator--() {
      --index_;
      return *this;
    }
    const_iterator operator+(difference_type n) const { return {items_, index_ + n}; }
    difference_type operator-(const const_iterator& other) const { return index_ - other.index_; }
    bool operator==(const const_iterator& other) const { return index_ == other.index_; }

   private:
    friend class Destinations;
    const_iterator(const Items* items, difference_type index) : items_(items), index_(index) {}
    const Items* items_ = nullptr;
    difference_type index_ = 0;
  };

  Destinations() = default;
  // From any order; of several with one identity the first is kept.
  static Destinations FromUnsorted(std::vector<netlink::IpvsDestination> items);

  const_iterator begin() const { return {items_.get(), 0}; }
  const_iterator end() const { return {items_.get(), static_cast<std::ptrdiff_t>(size())}; }
  size_t size() const;
  bool empty() const { return size() == 0; }
  const_iterator find(const DestinationId& id) const;
  bool contains(const DestinationId& id) const { return find(id) != end(); }
  // Inserts, or replaces the one with the same identity (connection counts are not kept).
  void Put(const netlink::IpvsDestination& destination);
  // Removes the one with that identity (none: nothing).
  void Erase(const DestinationId& id);
  // Gives spare capacity back when it is more than a quarter (Put grows by doubling).
  void Compact();

  // Every element's identity, forwarding method, weight and thresholds equal.
  bool operator==(const Destinations& other) const;
  // Whether this and `other` hold one vector (tests, the controller's sharing).
  bool SharesWith(const Destinations& other) const { return items_ && items_ == other.items_; }

 private:
  // One destination as kept: 17 B of address, then the forwarding method, port and weight.
  struct Entry {
    IpAddress address;
    uint8_t forward = 0;  // netlink::IpvsForward
    uint16_t port = 0;
    uint32_t weight = 0;
    bool operator==(const Entry&) const = default;
    DestinationId id() const { return {address, port}; }
  };
  struct Thresholds {
    uint32_t upper = 0;
    uint32_t lower = 0;
    bool operator==(const Thresholds&) const = default;
  };
  struct Items {
    std::vector<Entry> entries;
    // One per entry once any entry has thresholds (a kernel read-back only); null until then.
    std::unique_ptr<std::vector<Thresholds>> thresholds;

    Items() = default;
    Items(const Items& other);
    Items& operator=(const Items&) = delete;
    Thresholds ThresholdsAt(size_t i) const { return thresholds ? (*thresholds)[i] : Thresholds{}; }
    netlink::IpvsDestination At(size_t i) const;
  };
  static Entry Pack(const netlink::IpvsDestination& d);
  Items& Mutable();                                // this copy's own items (cloned when shared)
  size_t Position(const DestinationId& id) const;  // the first not ordered before `id`
  std::shared_ptr<Items> items_;                   // null: empty
};

inline DestinationId IdOf(const netlink::IpvsDestination& d) { return {d.address, d.port}; }

// One IPVS virtual service with its real servers, as wanted or as programmed.
struct VirtualService {
  netlink::IpvsService service;  // identity plus scheduler, flags, persistence timeout
  Destinations destinations;

  VirtualServiceId id() const { return VirtualServiceId::Of(service); }
  bool operator==(const VirtualService&) const = default;
};

// A virtual service some Service port wants, with where it came from.
struct DesiredVirtualService {
  VirtualService vs;
  // The Service port that wants it: its facts are DesiredService::ports[port_index]
  // (kube-router's serviceInfo key is the DesiredService's name and that port's name; not a
  // copy of the name per virtual service: docs/memory.md).
  uint32_t port_index = 0;
  VipRole role = VipRole::kClusterIp;
  // kube-router.io/service.dsr=tunnel on an external or LoadBalancer IP: a DSR applier
  // programs it (fwmark service, tunnel destinations); the plain IPVS path skips it.
  bool dsr = false;
};

// Facts about one Service port for the firewall, hairpin, health-check and metrics pieces.
struct ServicePortFacts {
  std::string port_name;  // of the DesiredService's Service ("" for an unnamed port)
  netlink::IpvsProtocol protocol = netlink::IpvsProtocol::kTcp;
  uint16_t port = 0;
  uint16_t node_port = 0;               // 0: none
  uint16_t health_check_node_port = 0;  // 0: none
  // (The Service's addresses are the DesiredService's: the same for every port.)
  std::vector<IpAddress> node_port_addresses;  // where the NodePort is programmed
  // Ready (not terminating) endpoints on this node, all families (healthCheckNodePort answer).
  std::vector<DestinationId> local_endpoints;
  bool external_local = false;  // externalTrafficPolicy Local or kube-router.io/service.local
  bool internal_local = false;  // internalTrafficPolicy Local
  bool hairpin = false;         // --hairpin-mode or kube-router.io/service.hairpin
  bool hairpin_external_ips = false;
  bool dsr = false;
};

// A Service build's problems and skip reason (DesiredService's), behind one pointer that is
// null while both are empty: almost every Service has neither, and a vector and a string in
// every Service were 56 B of 8 (docs/memory.md). A copy copies them.
class BuildNotes {
 public:
  BuildNotes() = default;
  BuildNotes(const BuildNotes& other);
  BuildNotes& operator=(const BuildNotes& other);
  BuildNotes(BuildNotes&&) noexcept = default;
  BuildNotes& operator=(BuildNotes&&) noexcept = default;
  ~BuildNotes() = default;

  const std::vector<std::string>& problems() const;
  const std::string& skipped() const;
  void AddProblem(std::string problem);
  // An empty reason: not skipped.
  void SetSkipped(std::string why);
  // Whether the pointer is set (tests): only while a problem or a reason is held.
  bool allocated() const { return notes_ != nullptr; }

 private:
  struct Notes {
    std::vector<std::string> problems;
    std::string skipped;
  };
  Notes& Mutable();
  std::unique_ptr<Notes> notes_;  // null: no problem, not skipped
};

// Everything one Service asks for. Problems name the Service and the bad field; each problem
// skips only its own item.
struct DesiredService {
  ServiceName name;
  std::vector<DesiredVirtualService> virtual_services;
  // Addresses for kube-dummy-if (cluster, external, LB IPs; not DSR), sorted, each once.
  std::vector<IpAddress> vips;
  // The Service's addresses, once (not a copy per port: docs/memory.md).
  std::vector<IpAddress> cluster_ips;        // enabled families only
  std::vector<IpAddress> external_ips;       // validated externalIPs
  std::vector<IpAddress> load_balancer_ips;  // validated ingress IPs (not ipMode Proxy)
  std::vector<ServicePortFacts> ports;
  BuildNotes notes;  // written by BuildService; read through problems() and skipped()

  const std::vector<std::string>& problems() const { return notes.problems(); }
  // Why the proxy ignores the Service ("headless", ...); empty if not.
  const std::string& skipped() const { return notes.skipped(); }
};

}  // namespace kr::proxy
