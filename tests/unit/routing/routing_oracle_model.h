// The randomized routing oracle's world and model (routing_oracle_test.cc drives the controller
// with them): a generator of flags, Nodes and BGP announcements from a seed, and an independent
// model of docs/routing.md that says which peers, advertisements, accepted paths, proto 17
// routes, tun-* tunnels and FoU ports the controller must end up with. The model calls none of
// the planners; it is written from the design note and kube-router's documented behaviour.
#pragma once

#include <algorithm>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "kube_router/base/hashed_name.h"
#include "kube_router/base/ip.h"
#include "kube_router/k8s/types.h"
#include "kube_router/netlink/route_table.h"
#include "kube_router/routing/network_routes_controller.h"

namespace kr::routing::oracle {

using Family = IpAddress::Family;

constexpr int kMaxNodes = 12;  // this node included
constexpr int kSubnets = 4;    // 0: this node's subnet; 1-3 elsewhere (3: a more specific route)
constexpr uint16_t kFouPort = 6080;

inline IpAddress Ip(const std::string& text) { return *IpAddress::Parse(text); }
inline IpPrefix Cidr(const std::string& text) { return *IpPrefix::Parse(text); }

// Addresses of the world: node i on subnet k is 10.0.k.(10+i) and fd00:0:0:k::(10+i).
inline IpAddress NodeAddress(Family family, int subnet, int host) {
  return family == Family::kV4
             ? Ip("10.0." + std::to_string(subnet) + "." + std::to_string(host))
             : Ip("fd00:0:0:" + std::to_string(subnet) + "::" + std::to_string(host));
}
inline IpPrefix PodCidr(Family family, int index) {
  return family == Family::kV4 ? Cidr("10.244." + std::to_string(index) + ".0/24")
                               : Cidr("fd01:0:0:" + std::to_string(index) + "::/64");
}
// Lower-precedence pod CIDR sources get these decoys: whoever reads the wrong source routes them.
inline IpPrefix DecoyCidr(Family family, int index) {
  return family == Family::kV4 ? Cidr("10.250." + std::to_string(index) + ".0/24")
                               : Cidr("fd09:0:0:" + std::to_string(index) + "::/64");
}
inline const IpAddress kTor4 = Ip("10.0.0.250");  // external peers (--peer-router-ips)
inline const IpAddress kTor6 = Ip("fd00::fa");
inline const IpAddress kStranger = Ip("10.0.0.99");  // announces without being configured

class Rng {
 public:
  explicit Rng(uint64_t seed) : engine_(seed) {}
  int Below(int n) { return static_cast<int>(engine_() % static_cast<uint64_t>(n)); }
  bool Chance(int percent) { return Below(100) < percent; }
  template <typename T>
  const T& Pick(const std::vector<T>& items) {
    return items[static_cast<size_t>(Below(static_cast<int>(items.size())))];
  }

 private:
  std::mt19937_64 engine_;
};

// One Node as generated: what goes into the API object.
struct WorldNode {
  int index = 0;  // host part 10+index, pod CIDR index
  int subnet = 0;
  std::optional<IpAddress> v4, v6;
  bool v4_internal = true, v6_internal = true;
  bool v6_listed_first = false;
  bool hostname_entry = false;
  // Pod CIDRs per source, in kube-router's precedence: annotation pod-cidr, annotation
  // pod-cidrs, spec.podCIDRs, spec.podCIDR. Single-valued sources hold at most one.
  std::vector<IpPrefix> sources[4];
  std::map<std::string, std::string> extra_annotations;  // read by kube-router, irrelevant here

  std::string Name() const { return "node-" + std::to_string(index); }

  std::shared_ptr<const k8s::Node> ToApi() const {
    auto node = std::make_shared<k8s::Node>();
    node->meta.name = Name();
    std::vector<k8s::NodeAddress> addresses;
    if (hostname_entry) addresses.push_back({"Hostname", Name()});
    auto add = [&](const std::optional<IpAddress>& ip, bool internal) {
      if (ip) addresses.push_back({internal ? "InternalIP" : "ExternalIP", ip->ToString()});
    };
    if (v6_listed_first) {
      add(v6, v6_internal);
      add(v4, v4_internal);
    } else {
      add(v4, v4_internal);
      add(v6, v6_internal);
    }
    node->addresses = addresses;
    auto join = [](const std::vector<IpPrefix>& cidrs) {
      std::string out;
      for (const auto& cidr : cidrs) out += (out.empty() ? "" : ",") + cidr.ToString();
      return out;
    };
    if (!sources[0].empty()) node->meta.annotations[k8s::kAnnotationPodCidr] = join(sources[0]);
    if (!sources[1].empty()) node->meta.annotations[k8s::kAnnotationPodCidrs] = join(sources[1]);
    for (const auto& cidr : sources[2]) node->pod_cidrs.push_back(cidr.ToString());
    if (!sources[3].empty()) node->pod_cidr = sources[3][0].ToString();
    for (const auto& [key, value] : extra_annotations) node->meta.annotations[key] = value;
    return node;
  }

  std::vector<IpAddress> RawAddresses() const {
    std::vector<IpAddress> out;
    if (v4) out.push_back(*v4);
    if (v6) out.push_back(*v6);
    return out;
  }
};

// The model's view of a node after --enable-ipv4/--enable-ipv6 (docs/routing.md, Dual stack).
struct ModelNode {
  std::string name;
  std::optional<IpAddress> session;  // primary address, moved to the other family if disabled
  std::optional<IpAddress> v4, v6;   // per enabled family
  std::vector<IpPrefix> pod_cidrs;   // routable: enabled family and an address in it
  std::vector<IpAddress> raw;        // every address of the Node object

  std::optional<IpAddress> Of(Family family) const { return family == Family::kV4 ? v4 : v6; }
};

struct Config {
  bool ipv4 = true, ipv6 = false;
  bool overlay = true;
  bool full = false;  // --overlay-type=full
  bool fou = false;   // --overlay-encap=fou
  bool default4 = true, default6 = true, specific = false;

  bool Enabled(Family family) const { return family == Family::kV4 ? ipv4 : ipv6; }
};

inline ModelNode Model(const Config& config, const WorldNode& world) {
  ModelNode node;
  node.name = world.Name();
  node.raw = world.RawAddresses();
  // The primary address: the first InternalIP in the list, else the first ExternalIP.
  std::vector<std::pair<IpAddress, bool>> listed;  // address, internal
  auto list = [&](const std::optional<IpAddress>& ip, bool internal) {
    if (ip) listed.push_back({*ip, internal});
  };
  if (world.v6_listed_first) {
    list(world.v6, world.v6_internal);
    list(world.v4, world.v4_internal);
  } else {
    list(world.v4, world.v4_internal);
    list(world.v6, world.v6_internal);
  }
  std::optional<IpAddress> primary;
  for (bool internal : {true, false}) {
    for (const auto& [ip, is_internal] : listed) {
      if (!primary && is_internal == internal) primary = ip;
    }
  }
  if (config.ipv4) node.v4 = world.v4;
  if (config.ipv6) node.v6 = world.v6;
  if (primary) {
    node.session = config.Enabled(primary->family())
                       ? primary
                       : node.Of(primary->is_v4() ? Family::kV6 : Family::kV4);
  }
  // Pod CIDRs: the first source that has any, narrowed to what can be routed.
  for (const auto& source : world.sources) {
    if (source.empty()) continue;
    for (const auto& cidr : source) {
      const Family family = cidr.address().family();
      if (config.Enabled(family) && node.Of(family)) node.pod_cidrs.push_back(cidr);
    }
    break;
  }
  return node;
}

// What the controller should have produced, rendered as sorted text for readable diffs.
struct Expected {
  std::set<std::string> peers;
  std::set<std::string> advertised;
  std::set<std::string> rib;
  std::set<std::string> routes;
  std::set<std::string> tunnels;
  std::set<std::string> fou_ports;
};

// How often each branch of the model was exercised over a run: a walk that stops reaching one
// (a generator change, a too small default) fails instead of passing vacuously.
struct Coverage {
  int direct = 0, tunnel4 = 0, tunnel6 = 0, gateway = 0, unroutable = 0, fou = 0, refused = 0;
  int withdrawn = 0, peer_gone = 0, states = 0;

  std::string ToString() const {
    return std::to_string(states) + " states checked: routes direct " + std::to_string(direct) +
           ", ipip " + std::to_string(tunnel4) + ", ip6tnl " + std::to_string(tunnel6) +
           ", via gateway " + std::to_string(gateway) + "; unroutable paths " +
           std::to_string(unroutable) + ", FoU ports " + std::to_string(fou) +
           ", refused announcements " + std::to_string(refused) + ", withdrawals " +
           std::to_string(withdrawn) + ", paths gone with their peer " + std::to_string(peer_gone);
  }
};

inline std::string Join(const std::set<std::string>& items) {
  std::string out;
  for (const auto& item : items) out += "    " + item + "\n";
  return out.empty() ? "    (none)\n" : out;
}

// A learned path as the speaker should hold it.
struct RibEntry {
  IpAddress from;
  IpAddress next_hop;
};

// One BGP announcement: `from` announces `prefix` with `next_hop`.
struct Announcement {
  IpAddress from;
  IpPrefix prefix;
  IpAddress next_hop;
};

// The generated world (flags, underlay, Nodes, what the speaker holds) and the model's view of
// it. The test applies every change it draws to the controller's cache or speaker as well.
class World {
 public:
  explicit World(uint64_t seed) : rng_(seed) {}

  Rng& rng() { return rng_; }
  const Config& config() const { return config_; }
  std::map<std::string, WorldNode>& nodes() { return world_; }
  std::map<IpPrefix, RibEntry>& rib() { return rib_; }

  // --- the generator ---
  // Draws the flags, this node (node-0 on subnet 0) and 0-11 other nodes.
  void Generate() {
    config_.ipv4 = rng_.Chance(85);
    config_.ipv6 = !config_.ipv4 || rng_.Chance(60);
    config_.overlay = rng_.Chance(85);
    config_.full = rng_.Chance(35);
    config_.fou = rng_.Chance(40);
    config_.default4 = rng_.Chance(80);
    config_.default6 = rng_.Chance(60);
    config_.specific = rng_.Chance(40);

    // This node: node-0 on subnet 0, with an address in at least one enabled family.
    WorldNode self;
    const int family_mode = rng_.Below(3);  // 0 v4, 1 v6, 2 both
    if (family_mode != 1 || (!config_.ipv6)) self.v4 = NodeAddress(Family::kV4, 0, 10);
    if (family_mode != 0 || (!config_.ipv4)) self.v6 = NodeAddress(Family::kV6, 0, 10);
    self.v4_internal = rng_.Chance(80);
    self.v6_internal = rng_.Chance(80);
    self.v6_listed_first = rng_.Chance(30);
    RandomPodCidrs(self, 0);
    world_[self.Name()] = self;

    const int others = rng_.Below(kMaxNodes);  // 1-12 nodes in all
    for (int i = 0; i < others; ++i) AddRandomNode();
  }

  // The flags the agent runs with.
  RoutingConfig Flags() const {
    RoutingConfig routing;
    routing.node_name = SelfName();
    routing.enable_ipv4 = config_.ipv4;
    routing.enable_ipv6 = config_.ipv6;
    routing.enable_overlay = config_.overlay;
    routing.overlay_type = config_.full ? OverlayType::kFull : OverlayType::kSubnet;
    routing.overlay_encap = config_.fou ? OverlayEncap::kFou : OverlayEncap::kIpip;
    routing.overlay_encap_port = kFouPort;
    routing.router_id = Ip("10.255.255.1");  // an IPv6-only node needs one
    routing.enable_pod_egress = false;
    routing.enable_cni = false;
    for (const auto& tor : {kTor4, kTor6}) {
      PeerSpec peer;
      peer.address = tor;
      peer.asn = 65001;
      peer.external = true;
      routing.global_peers.push_back(peer);
    }
    return routing;
  }

  // The underlay in the main table: connected subnets of both families, default routes and a
  // more specific route to subnet 3 as the seed says.
  std::vector<netlink::Route> UnderlayRoutes() const {
    std::vector<netlink::Route> out;
    auto add = [&](const std::string& dst, std::optional<std::string> via) {
      netlink::Route route;
      route.destination = Cidr(dst);
      route.device = "eth0";
      if (via) {
        route.gateway = Ip(*via);
        route.protocol = netlink::kProtocolBoot;
      } else {
        route.protocol = netlink::kProtocolKernel;
        route.scope = netlink::Scope::kLink;
      }
      if (!route.destination.is_v4()) route.metric = 1024;
      out.push_back(route);
    };
    add("10.0.0.0/24", std::nullopt);
    add("fd00::/64", std::nullopt);
    if (config_.default4) add("0.0.0.0/0", "10.0.0.254");
    if (config_.default6) add("::/0", "fd00::fe");
    if (config_.specific) {
      add("10.0.3.0/24", "10.0.0.253");
      add("fd00:0:0:3::/64", "fd00::fd");
    }
    return out;
  }

  void RandomPodCidrs(WorldNode& node, int index) {
    for (auto& source : node.sources) source.clear();
    std::vector<IpPrefix> cidrs;
    const int mode = rng_.Below(10);  // 0 none, 1-4 v4, 5-6 v6, 7-9 both
    if (mode >= 1 && mode <= 4) cidrs = {PodCidr(Family::kV4, index)};
    if (mode == 5 || mode == 6) cidrs = {PodCidr(Family::kV6, index)};
    if (mode >= 7) {
      cidrs = {PodCidr(Family::kV4, index), PodCidr(Family::kV6, index)};
      if (rng_.Chance(30)) std::swap(cidrs[0], cidrs[1]);
    }
    if (cidrs.empty()) return;
    // The source that holds them (single-valued ones hold the first only); lower-precedence
    // sources sometimes hold decoys.
    const int source = rng_.Below(4);
    node.sources[source] = cidrs;
    if (source == 0 || source == 3) node.sources[source].resize(1);
    for (int lower = source + 1; lower < 4; ++lower) {
      if (!rng_.Chance(30)) continue;
      node.sources[lower] = {DecoyCidr(cidrs[0].address().family(), index)};
    }
  }

  void RandomizeNode(WorldNode& node) {
    node.subnet = rng_.Below(kSubnets);
    const int family_mode = rng_.Below(10);  // 0-4 v4, 5-6 v6, 7-9 both
    node.v4.reset();
    node.v6.reset();
    if (family_mode <= 4 || family_mode >= 7)
      node.v4 = NodeAddress(Family::kV4, node.subnet, 10 + node.index);
    if (family_mode >= 5) node.v6 = NodeAddress(Family::kV6, node.subnet, 10 + node.index);
    node.v4_internal = rng_.Chance(75);
    node.v6_internal = rng_.Chance(75);
    node.v6_listed_first = rng_.Chance(30);
    node.hostname_entry = rng_.Chance(30);
    RandomPodCidrs(node, node.index);
    node.extra_annotations.clear();
    if (rng_.Chance(20))
      node.extra_annotations[kAnnotationNodeAsn] = rng_.Chance(50) ? "x" : "65010";
    if (rng_.Chance(20)) node.extra_annotations[kAnnotationCommunities] = "no-export,bogus";
  }

  void AddRandomNode() {
    std::vector<int> free;
    for (int i = 1; i < kMaxNodes; ++i) {
      if (!world_.count("node-" + std::to_string(i))) free.push_back(i);
    }
    if (free.empty()) return;
    WorldNode node;
    node.index = rng_.Pick(free);
    RandomizeNode(node);
    world_[node.Name()] = node;
  }

  std::vector<std::string> OtherNodes() const {
    std::vector<std::string> out;
    for (const auto& [name, node] : world_) {
      if (name != SelfName()) out.push_back(name);
    }
    return out;
  }
  static std::string SelfName() { return "node-0"; }

  // Next hops to announce: on and off this node's subnet, unreachable, of nodes that are gone or
  // never were, and every node's addresses.
  std::vector<IpAddress> Candidates() {
    std::vector<IpAddress> out = {Ip("10.0.0.200"), Ip("fd00::c8"),      Ip("192.168.77.1"),
                                  Ip("fd03::1"),    Ip("10.0.2.77"),     Ip("fd00:0:0:2::4d"),
                                  Ip("10.0.3.78"),  Ip("fd00:0:0:3::4e")};
    // Addresses of nodes that are gone, or never were.
    const int host = 10 + 1 + rng_.Below(kMaxNodes - 1);
    const int subnet = rng_.Below(kSubnets);
    out.push_back(NodeAddress(Family::kV4, subnet, host));
    out.push_back(NodeAddress(Family::kV6, subnet, host));
    for (const auto& [name, node] : world_) {
      for (const auto& ip : node.RawAddresses()) out.push_back(ip);
    }
    return out;
  }

  // A random announcement: a node announcing one of its pod CIDRs (also ones it cannot be routed
  // to), over its session, with its own address of the prefix's family, sometimes of the other
  // family or another node's; or an external router (configured or not) announcing anything with
  // any next hop. Empty when the drawn node has no address.
  std::optional<Announcement> RandomAnnouncement() {
    const auto others = OtherNodes();
    const int kind = rng_.Below(10);
    std::optional<IpAddress> from;
    IpPrefix prefix;
    IpAddress next_hop;
    if (kind < 6 && !others.empty()) {
      // A node announces one of its pod CIDRs (also ones it cannot be routed to), over its
      // session, with its own address of the prefix's family; sometimes of the other family,
      // sometimes another node's address.
      const WorldNode& node = world_[rng_.Pick(others)];
      const ModelNode model = Model(config_, node);
      std::vector<IpPrefix> cidrs;
      for (const auto& source : node.sources)
        cidrs.insert(cidrs.end(), source.begin(), source.end());
      if (cidrs.empty()) cidrs.push_back(PodCidr(Family::kV4, node.index));
      prefix = rng_.Pick(cidrs);
      const auto raw = node.RawAddresses();
      if (raw.empty()) return std::nullopt;
      from = model.session ? *model.session : raw[0];
      const Family family = prefix.address().family();
      const auto own = family == Family::kV4 ? node.v4 : node.v6;
      const int variant = rng_.Below(10);
      if (variant < 7 && own) {
        next_hop = *own;
      } else if (variant < 9) {
        next_hop = rng_.Pick(raw);
      } else {
        next_hop = rng_.Pick(Candidates());
      }
    } else {
      // An external router (configured or not) announces anything with any next hop.
      from = rng_.Pick(std::vector<IpAddress>{kTor4, kTor6, kStranger});
      const int x = rng_.Below(4);
      const std::vector<IpPrefix> prefixes = {Cidr("172.16." + std::to_string(x) + ".0/24"),
                                              Cidr("fd02:0:0:" + std::to_string(x) + "::/64"),
                                              PodCidr(Family::kV4, rng_.Below(kMaxNodes)),
                                              PodCidr(Family::kV6, rng_.Below(kMaxNodes))};
      prefix = rng_.Pick(prefixes);
      next_hop = rng_.Pick(Candidates());
    }
    return Announcement{*from, prefix, next_hop};
  }

  std::map<std::string, ModelNode> ModelNodes() const {
    std::map<std::string, ModelNode> out;
    for (const auto& [name, node] : world_) out[name] = Model(config_, node);
    return out;
  }

  // Peers: one iBGP session per other node that has a routable pod CIDR, over the session
  // addresses when both are of one family; external peers of an enabled family this node has an
  // address in. address -> external.
  std::map<IpAddress, bool> ExpectedPeers() const {
    const auto nodes = ModelNodes();
    const ModelNode& self = nodes.at(SelfName());
    std::map<IpAddress, bool> peers;
    for (const auto& [name, node] : nodes) {
      if (name == SelfName() || node.pod_cidrs.empty() || !node.session || !self.session) continue;
      if (node.session->family() != self.session->family()) continue;
      peers[*node.session] = false;
    }
    for (const auto& tor : {kTor4, kTor6}) {
      if (config_.Enabled(tor.family()) && self.Of(tor.family())) peers[tor] = true;
    }
    return peers;
  }

  // Import: from a node peer only a node's routable pod CIDR with one of that node's addresses
  // as next hop; from anybody else what passes the generic checks (which every generated
  // prefix and next hop does).
  bool ExpectAccepted(const IpAddress& from, const IpPrefix& prefix, const IpAddress& next_hop) {
    auto peer = synced_peers_.find(from);
    if (peer == synced_peers_.end() || peer->second) return true;
    for (const auto& [name, node] : ModelNodes()) {
      const bool owns = std::count(node.pod_cidrs.begin(), node.pod_cidrs.end(), prefix) > 0;
      const bool its_address = std::count(node.raw.begin(), node.raw.end(), next_hop) > 0;
      if (owns && its_address) return true;
    }
    return false;
  }

  struct Underlay {
    bool connected = false;
    std::optional<IpAddress> gateway;
  };
  Underlay Reach(const IpAddress& ip) const {
    const bool v4 = ip.is_v4();
    if ((v4 ? Cidr("10.0.0.0/24") : Cidr("fd00::/64")).Contains(ip)) return {true, std::nullopt};
    if (config_.specific && (v4 ? Cidr("10.0.3.0/24") : Cidr("fd00:0:0:3::/64")).Contains(ip)) {
      return {false, v4 ? Ip("10.0.0.253") : Ip("fd00::fd")};
    }
    if (v4 ? config_.default4 : config_.default6) {
      return {false, v4 ? Ip("10.0.0.254") : Ip("fd00::fe")};
    }
    return {};
  }

  Expected Expect(Coverage* coverage) const {
    ++coverage->states;
    Expected expected;
    const auto nodes = ModelNodes();
    const ModelNode& self = nodes.at(SelfName());
    for (const auto& [address, external] : synced_peers_) {
      expected.peers.insert(address.ToString() + (external ? " external" : " node"));
    }
    for (const auto& cidr : self.pod_cidrs) {
      expected.advertised.insert(cidr.ToString() + " via " +
                                 self.Of(cidr.address().family())->ToString());
    }
    std::set<IpAddress> node_addresses;
    for (const auto& [name, node] : nodes) node_addresses.insert(node.raw.begin(), node.raw.end());
    std::set<Family> fou_families;
    for (const auto& [prefix, path] : rib_) {
      expected.rib.insert(prefix.ToString() + " via " + path.next_hop.ToString());
      const IpAddress& hop = path.next_hop;
      const Family family = hop.family();
      const auto own = self.Of(family);
      const std::string metric = prefix.is_v4() ? "" : " metric 1024";
      if (own == hop) continue;  // our own routes reflected back
      if (std::count(self.pod_cidrs.begin(), self.pod_cidrs.end(), prefix)) continue;
      if (prefix.address().family() != family || !own) {
        ++coverage->unroutable;
        continue;
      }
      const Underlay underlay = Reach(hop);
      const std::string dst = prefix.ToString();
      if (underlay.connected && !config_.full) {
        expected.routes.insert(dst + " via " + hop.ToString() + metric);
        ++coverage->direct;
      } else if (config_.overlay && node_addresses.count(hop)) {
        ++(family == Family::kV4 ? coverage->tunnel4 : coverage->tunnel6);
        const std::string tunnel = HashedName("tun-", {hop.ToString()}, 11);
        expected.routes.insert(dst + " dev " + tunnel + " src " + own->ToString() + metric);
        expected.tunnels.insert(tunnel + " " + (family == Family::kV4 ? "ipip " : "ip6tnl ") +
                                own->ToString() + " -> " + hop.ToString() +
                                (config_.fou ? " gue:" + std::to_string(kFouPort) : "") + " up");
        if (config_.fou) fou_families.insert(family);
      } else if (underlay.gateway) {
        expected.routes.insert(dst + " via " + underlay.gateway->ToString() + metric);
        ++coverage->gateway;
      } else if (underlay.connected) {
        expected.routes.insert(dst + " via " + hop.ToString() + metric);
        ++coverage->direct;
      } else {
        ++coverage->unroutable;
      }
    }
    coverage->fou += static_cast<int>(fou_families.size());
    for (Family family : fou_families) {
      expected.fou_ports.insert(std::string(family == Family::kV4 ? "ipv4" : "ipv6") + " gue " +
                                std::to_string(kFouPort));
    }
    return expected;
  }

  // After a full sync: the peers are the model's for the current Nodes, and the paths of peers
  // that are gone left the speaker. Returns how many paths went.
  int SyncPeers() {
    const auto peers = ExpectedPeers();
    int gone = 0;
    for (const auto& peer : synced_peers_) {
      // Not a structured binding: clang 14 (the ASan flavour) cannot capture one in a lambda.
      const auto& address = peer.first;
      if (peers.count(address)) continue;
      gone += static_cast<int>(
          std::erase_if(rib_, [&](const auto& entry) { return entry.second.from == address; }));
    }
    synced_peers_ = peers;
    return gone;
  }

  std::string Describe() const {
    std::string out = std::string("ipv4=") + (config_.ipv4 ? "on" : "off") +
                      " ipv6=" + (config_.ipv6 ? "on" : "off") +
                      " overlay=" + (config_.overlay ? (config_.full ? "full" : "subnet") : "off") +
                      " encap=" + (config_.fou ? "fou" : "ipip") +
                      " default4=" + (config_.default4 ? "y" : "n") +
                      " default6=" + (config_.default6 ? "y" : "n") +
                      " via-10.0.3=" + (config_.specific ? "y" : "n");
    for (const auto& [name, node] : world_) out += "\n    " + Describe(node);
    return out;
  }
  static std::string Describe(const WorldNode& node) {
    std::string out = node.Name() + " subnet " + std::to_string(node.subnet) + ":";
    if (node.v4)
      out += std::string(" ") + (node.v4_internal ? "int " : "ext ") + node.v4->ToString();
    if (node.v6)
      out += std::string(" ") + (node.v6_internal ? "int " : "ext ") + node.v6->ToString();
    if (node.v6_listed_first) out += " (v6 listed first)";
    static const char* kSources[] = {"pod-cidr", "pod-cidrs", "spec.podCIDRs", "spec.podCIDR"};
    for (int i = 0; i < 4; ++i) {
      if (node.sources[i].empty()) continue;
      out += std::string(" ") + kSources[i] + "=";
      for (const auto& cidr : node.sources[i]) out += cidr.ToString() + ",";
      out.pop_back();
    }
    for (const auto& [key, value] : node.extra_annotations) out += " " + key + "=" + value;
    return out;
  }

 private:
  Rng rng_;
  Config config_;
  std::map<std::string, WorldNode> world_;
  std::map<IpPrefix, RibEntry> rib_;        // what the speaker should hold
  std::map<IpAddress, bool> synced_peers_;  // the peers after the last full sync
};

}  // namespace kr::routing::oracle
