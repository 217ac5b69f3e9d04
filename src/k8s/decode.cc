// SPDX-License-Identifier: Apache-2.0
#include "kube_router/k8s/decode.h"

#include <limits>
#include <nlohmann/json.hpp>

namespace kr::k8s {
namespace {

using nlohmann::json;

// Thrown only inside this file and turned into a Status at each public entry point, so the
// field walkers below stay readable (no error plumbing on every line).
struct DecodeError {
  std::string message;
};

[[noreturn]] void Fail(const std::string& path, const std::string& what) {
  throw DecodeError{path + ": " + what};
}

// A field, or nullptr when absent or null (null means "unset" in Kubernetes JSON).
const json* Field(const json& obj, const char* name) {
  if (!obj.is_object()) return nullptr;
  auto it = obj.find(name);
  if (it == obj.end() || it->is_null()) return nullptr;
  return &*it;
}

std::string Join(const std::string& path, const char* name) {
  return path.empty() ? name : path + "." + name;
}

const json* ObjectField(const json& obj, const char* name, const std::string& path) {
  const json* f = Field(obj, name);
  if (f && !f->is_object()) Fail(Join(path, name), "expected an object");
  return f;
}

const json* ArrayField(const json& obj, const char* name, const std::string& path) {
  const json* f = Field(obj, name);
  if (f && !f->is_array()) Fail(Join(path, name), "expected an array");
  return f;
}

std::string String(const json& obj, const char* name, const std::string& path,
                   const std::string& fallback = "") {
  const json* f = Field(obj, name);
  if (!f) return fallback;
  if (!f->is_string()) Fail(Join(path, name), "expected a string");
  auto s = f->get<std::string>();
  return s.empty() ? fallback : s;
}

bool Bool(const json& obj, const char* name, const std::string& path, bool fallback) {
  const json* f = Field(obj, name);
  if (!f) return fallback;
  if (!f->is_boolean()) Fail(Join(path, name), "expected a boolean");
  return f->get<bool>();
}

int32_t ToInt32(const json& v, const std::string& path) {
  if (!v.is_number_integer()) Fail(path, "expected an integer");
  if (v.is_number_unsigned()) {
    auto u = v.get<uint64_t>();
    if (u > static_cast<uint64_t>(std::numeric_limits<int32_t>::max())) Fail(path, "out of range");
    return static_cast<int32_t>(u);
  }
  auto i = v.get<int64_t>();
  if (i < std::numeric_limits<int32_t>::min() || i > std::numeric_limits<int32_t>::max())
    Fail(path, "out of range");
  return static_cast<int32_t>(i);
}

std::optional<int32_t> OptInt32(const json& obj, const char* name, const std::string& path) {
  const json* f = Field(obj, name);
  if (!f) return std::nullopt;
  return ToInt32(*f, Join(path, name));
}

std::optional<int64_t> OptInt64(const json& obj, const char* name, const std::string& path) {
  const json* f = Field(obj, name);
  if (!f) return std::nullopt;
  if (!f->is_number_integer()) Fail(Join(path, name), "expected an integer");
  if (f->is_number_unsigned() &&
      f->get<uint64_t>() > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
    Fail(Join(path, name), "out of range");
  }
  return f->get<int64_t>();
}

int32_t Int32(const json& obj, const char* name, const std::string& path, int32_t fallback = 0) {
  return OptInt32(obj, name, path).value_or(fallback);
}

std::vector<std::string> StringList(const json& obj, const char* name, const std::string& path) {
  std::vector<std::string> out;
  const json* f = ArrayField(obj, name, path);
  if (!f) return out;
  out.reserve(f->size());
  std::string p = Join(path, name);
  for (size_t i = 0; i < f->size(); ++i) {
    const json& v = (*f)[i];
    if (!v.is_string()) Fail(p + "[" + std::to_string(i) + "]", "expected a string");
    out.push_back(v.get<std::string>());
  }
  return out;
}

// Fails naming the address when it has a NUL character (an address is an IP or a DNS name; the
// compact form of types.h separates them by NULs).
void CheckAddress(const std::string& address, const std::string& path) {
  if (address.find('\0') != std::string::npos) {
    Fail(path, "expected an address without NUL characters");
  }
}

// A list of addresses in one string (types.h); path_of(i) names element i in a failure.
template <typename PathOf>
AddressList Addresses(const std::vector<std::string>& addresses, PathOf path_of) {
  for (size_t i = 0; i < addresses.size(); ++i) CheckAddress(addresses[i], path_of(i));
  return AddressList(addresses);
}

// `list`, or `single` alone where the list is empty: clusterIPs and clusterIP, podIPs and podIP.
// The API server keeps the single field equal to the list's first (one copy is kept: the list);
// a server from before dual-stack sends only the single one.
template <typename PathOf>
AddressList AddressesOr(const std::vector<std::string>& list, const std::string& single,
                        const std::string& single_path, PathOf path_of) {
  if (!list.empty() || single.empty()) return Addresses(list, path_of);
  CheckAddress(single, single_path);
  return AddressList{single};
}

std::string Index(const std::string& path, size_t i) {
  return path + "[" + std::to_string(i) + "]";
}

// Short strings that repeat across objects (types.h: enum-like fields, port and node names),
// one copy per distinct value.
SharedString Pooled(const std::string& text) { return StringPool::Default().Share(text); }

// Which entries of a string map are kept (every entry is still type-checked).
using KeyFilter = bool (*)(const std::string& key);
bool AnyKey(const std::string&) { return true; }

Labels StringMap(const json& obj, const char* name, const std::string& path,
                 KeyFilter keep = AnyKey) {
  Labels out;
  const json* f = ObjectField(obj, name, path);
  if (!f) return out;
  std::string p = Join(path, name);
  for (auto it = f->begin(); it != f->end(); ++it) {
    if (!it->is_string()) Fail(p + "[" + it.key() + "]", "expected a string");
    if (keep(it.key())) out[it.key()] = it->get<std::string>();
  }
  return out;
}

// kubectl apply stores the whole applied object in this annotation; no controller reads it,
// and it is often the largest part of an object (docs/memory.md).
constexpr char kLastApplied[] = "kubectl.kubernetes.io/last-applied-configuration";
bool NotLastApplied(const std::string& key) { return key != kLastApplied; }
bool NoKey(const std::string&) { return false; }

// What the controllers read of an EndpointSlice's labels and annotations (the service proxy:
// headless slices, the change-trigger time for its latency metric). The owning Service's label
// is kept once, as EndpointSlice::service_name, not a second time in the labels.
constexpr char kServiceNameLabel[] = "kubernetes.io/service-name";
bool SliceLabelRead(const std::string& key) { return key == "service.kubernetes.io/headless"; }
bool SliceAnnotationRead(const std::string& key) {
  return key == "endpoints.kubernetes.io/last-change-trigger-time";
}

// Which labels and annotations of an object kind are kept in the caches.
struct MetaFilter {
  KeyFilter labels = AnyKey;
  KeyFilter annotations = NotLastApplied;
};

// The length of an array field (0 when absent or not an array): decoders reserve exactly that,
// so a decoded object holds no spare vector capacity for as long as it is cached.
size_t ArraySize(const json& obj, const char* name) {
  const json* f = Field(obj, name);
  return f && f->is_array() ? f->size() : 0;
}

// Calls fn(element, element_path) for each object in an array field.
template <typename Fn>
void ForEachObject(const json& obj, const char* name, const std::string& path, Fn fn) {
  const json* f = ArrayField(obj, name, path);
  if (!f) return;
  std::string p = Join(path, name);
  for (size_t i = 0; i < f->size(); ++i) {
    std::string ep = p + "[" + std::to_string(i) + "]";
    if (!(*f)[i].is_object()) Fail(ep, "expected an object");
    fn((*f)[i], ep);
  }
}

IntOrString ToIntOrString(const json& v, const std::string& path) {
  IntOrString out;
  if (v.is_string()) {
    out.is_string = true;
    out.text = v.get<std::string>();
  } else {
    out.number = ToInt32(v, path);
  }
  return out;
}

std::optional<IntOrString> OptIntOrString(const json& obj, const char* name,
                                          const std::string& path) {
  const json* f = Field(obj, name);
  if (!f) return std::nullopt;
  return ToIntOrString(*f, Join(path, name));
}

ObjectMeta Meta(const json& obj, MetaFilter filter = {}) {
  if (!obj.is_object()) Fail("object", "expected a JSON object");
  const json* m = ObjectField(obj, "metadata", "");
  if (!m) Fail("metadata", "missing");
  ObjectMeta meta;
  meta.name = String(*m, "name", "metadata");
  if (meta.name.empty()) Fail("metadata.name", "missing");
  meta.namespace_ = String(*m, "namespace", "metadata");
  String(*m, "uid", "metadata");  // checked, not kept (as every dropped field: types.h)
  meta.resource_version = String(*m, "resourceVersion", "metadata");
  meta.labels = LabelSetPool::Default().Share(StringMap(*m, "labels", "metadata", filter.labels));
  meta.annotations = StringMap(*m, "annotations", "metadata", filter.annotations);
  // deletionTimestamp: not kept, and (as before) not checked: any value was accepted.
  return meta;
}

LabelSelector Selector(const json& sel, const std::string& path) {
  LabelSelector out;
  out.match_labels = StringMap(sel, "matchLabels", path);
  ForEachObject(sel, "matchExpressions", path, [&](const json& e, const std::string& p) {
    LabelSelectorRequirement r;
    r.key = String(e, "key", p);
    r.op = String(e, "operator", p);
    r.values = StringList(e, "values", p);
    out.match_expressions.push_back(std::move(r));
  });
  return out;
}

std::optional<LabelSelector> OptSelector(const json& obj, const char* name,
                                         const std::string& path) {
  const json* f = ObjectField(obj, name, path);
  if (!f) return std::nullopt;
  return Selector(*f, Join(path, name));
}

Service ServiceFrom(const json& obj) {
  Service s;
  s.meta = Meta(obj);
  static const json kEmpty = json::object();
  const json* spec = ObjectField(obj, "spec", "");
  const json& sp = spec ? *spec : kEmpty;
  s.type = Pooled(String(sp, "type", "spec", "ClusterIP"));
  s.cluster_ips =
      AddressesOr(StringList(sp, "clusterIPs", "spec"), String(sp, "clusterIP", "spec"),
                  "spec.clusterIP", [](size_t i) { return Index("spec.clusterIPs", i); });
  StringList(sp, "ipFamilies", "spec");
  String(sp, "ipFamilyPolicy", "spec");
  s.ports.reserve(ArraySize(sp, "ports"));
  ForEachObject(sp, "ports", "spec", [&](const json& p, const std::string& path) {
    ServicePort port;
    port.name = Pooled(String(p, "name", path));
    port.protocol = Pooled(String(p, "protocol", path, "TCP"));
    port.port = Int32(p, "port", path);
    OptIntOrString(p, "targetPort", path);
    port.node_port = Int32(p, "nodePort", path);
    s.ports.push_back(std::move(port));
  });
  StringMap(sp, "selector", "spec", NoKey);
  s.external_ips = StringList(sp, "externalIPs", "spec");
  String(sp, "loadBalancerIP", "spec");
  String(sp, "loadBalancerClass", "spec");
  StringList(sp, "loadBalancerSourceRanges", "spec");
  s.session_affinity = Pooled(String(sp, "sessionAffinity", "spec", "None"));
  if (const json* cfg = ObjectField(sp, "sessionAffinityConfig", "spec")) {
    if (const json* cip = ObjectField(*cfg, "clientIP", "spec.sessionAffinityConfig")) {
      s.session_affinity_timeout_seconds =
          Int32(*cip, "timeoutSeconds", "spec.sessionAffinityConfig.clientIP", 10800);
    }
  }
  s.external_traffic_policy = Pooled(String(sp, "externalTrafficPolicy", "spec", "Cluster"));
  s.internal_traffic_policy = Pooled(String(sp, "internalTrafficPolicy", "spec", "Cluster"));
  s.health_check_node_port = Int32(sp, "healthCheckNodePort", "spec");
  if (const json* status = ObjectField(obj, "status", "")) {
    if (const json* lb = ObjectField(*status, "loadBalancer", "status")) {
      ForEachObject(*lb, "ingress", "status.loadBalancer",
                    [&](const json& in, const std::string& path) {
                      LoadBalancerIngress ing;
                      ing.ip = String(in, "ip", path);
                      String(in, "hostname", path);  // checked, not kept
                      ing.ip_mode = String(in, "ipMode", path);
                      s.load_balancer_ingress.push_back(std::move(ing));
                    });
    }
  }
  return s;
}

EndpointSlice EndpointSliceFrom(const json& obj) {
  EndpointSlice s;
  s.meta = Meta(obj, MetaFilter{.labels = SliceLabelRead, .annotations = SliceAnnotationRead});
  // Meta() type-checked every label.
  if (const json* label = Field(*Field(obj, "metadata"), "labels")) {
    if (const json* name = Field(*label, kServiceNameLabel))
      s.service_name = name->get<std::string>();
  }
  s.address_type = Pooled(String(obj, "addressType", "", "IPv4"));
  s.endpoints.reserve(ArraySize(obj, "endpoints"));
  ForEachObject(obj, "endpoints", "", [&](const json& e, const std::string& path) {
    Endpoint ep;
    ep.addresses = Addresses(StringList(e, "addresses", path),
                             [&](size_t i) { return Index(Join(path, "addresses"), i); });
    if (const json* c = ObjectField(e, "conditions", path)) {
      std::string cp = Join(path, "conditions");
      ep.ready = Bool(*c, "ready", cp, true);  // nil ready means ready
      // nil serving means "same as ready" (discovery/v1 EndpointConditions docs).
      ep.serving = Bool(*c, "serving", cp, ep.ready);
      ep.terminating = Bool(*c, "terminating", cp, false);
    }
    // Interned: a cluster's 100,000 endpoints name its few hundred nodes (docs/memory.md).
    ep.node_name = Pooled(String(e, "nodeName", path));
    String(e, "zone", path);
    String(e, "hostname", path);
    s.endpoints.push_back(std::move(ep));
  });
  s.ports.reserve(ArraySize(obj, "ports"));
  ForEachObject(obj, "ports", "", [&](const json& p, const std::string& path) {
    EndpointPort port;
    port.name = Pooled(String(p, "name", path));
    port.port = OptInt32(p, "port", path);
    port.protocol = Pooled(String(p, "protocol", path, "TCP"));
    s.ports.push_back(std::move(port));
  });
  return s;
}

Pod PodFrom(const json& obj) {
  Pod p;
  p.meta = Meta(obj, MetaFilter{.annotations = NoKey});  // no controller reads pod annotations
  if (const json* spec = ObjectField(obj, "spec", "")) {
    p.node_name = Pooled(String(*spec, "nodeName", "spec"));
    p.host_network = Bool(*spec, "hostNetwork", "spec", false);
    if (auto grace = OptInt64(*spec, "terminationGracePeriodSeconds", "spec")) {
      p.termination_grace_period_seconds = *grace;
    }
    size_t ports = 0;
    if (const json* containers = Field(*spec, "containers"); containers && containers->is_array()) {
      for (const json& c : *containers) ports += ArraySize(c, "ports");
    }
    p.container_ports.reserve(ports);
    ForEachObject(*spec, "containers", "spec", [&](const json& c, const std::string& cpath) {
      ForEachObject(c, "ports", cpath, [&](const json& port, const std::string& path) {
        ContainerPort cp;
        cp.name = Pooled(String(port, "name", path));
        cp.container_port = Int32(port, "containerPort", path);
        cp.protocol = Pooled(String(port, "protocol", path, "TCP"));
        p.container_ports.push_back(std::move(cp));
      });
    });
  }
  if (const json* status = ObjectField(obj, "status", "")) {
    std::vector<std::string> pod_ips;
    pod_ips.reserve(ArraySize(*status, "podIPs"));
    ForEachObject(*status, "podIPs", "status", [&](const json& ip, const std::string& path) {
      pod_ips.push_back(String(ip, "ip", path));
    });
    p.pod_ips = AddressesOr(pod_ips, String(*status, "podIP", "status"), "status.podIP",
                            [](size_t i) { return Index("status.podIPs", i) + ".ip"; });
    String(*status, "hostIP", "status");
    p.phase = Pooled(String(*status, "phase", "status"));
  }
  return p;
}

Node NodeFrom(const json& obj) {
  Node n;
  n.meta = Meta(obj);
  n.meta.namespace_.clear();  // cluster-scoped: keyed by name alone
  if (const json* spec = ObjectField(obj, "spec", "")) {
    n.pod_cidr = String(*spec, "podCIDR", "spec");
    n.pod_cidrs = StringList(*spec, "podCIDRs", "spec");
    String(*spec, "providerID", "spec");
  }
  if (const json* status = ObjectField(obj, "status", "")) {
    n.addresses.reserve(ArraySize(*status, "addresses"));
    ForEachObject(*status, "addresses", "status", [&](const json& a, const std::string& path) {
      n.addresses.push_back(NodeAddress{String(a, "type", path), String(a, "address", path)});
    });
  }
  return n;
}

NetworkPolicyRule RuleFrom(const json& r, const char* peers_field, const std::string& path) {
  NetworkPolicyRule rule;
  ForEachObject(r, peers_field, path, [&](const json& peer, const std::string& pp) {
    NetworkPolicyPeer out;
    out.pod_selector = OptSelector(peer, "podSelector", pp);
    out.namespace_selector = OptSelector(peer, "namespaceSelector", pp);
    if (const json* block = ObjectField(peer, "ipBlock", pp)) {
      std::string bp = Join(pp, "ipBlock");
      out.ip_block = IpBlock{String(*block, "cidr", bp), StringList(*block, "except", bp)};
    }
    rule.peers.push_back(std::move(out));
  });
  ForEachObject(r, "ports", path, [&](const json& port, const std::string& pp) {
    NetworkPolicyPort out;
    out.protocol = String(port, "protocol", pp, "TCP");
    out.port = OptIntOrString(port, "port", pp);
    out.end_port = OptInt32(port, "endPort", pp);
    rule.ports.push_back(std::move(out));
  });
  return rule;
}

NetworkPolicy NetworkPolicyFrom(const json& obj) {
  NetworkPolicy np;
  np.meta = Meta(obj, MetaFilter{.annotations = NoKey});  // no controller reads them
  const json* spec = ObjectField(obj, "spec", "");
  if (!spec) return np;  // no spec: selects all pods, denies all ingress
  if (auto sel = OptSelector(*spec, "podSelector", "spec")) np.pod_selector = std::move(*sel);
  ForEachObject(*spec, "ingress", "spec", [&](const json& r, const std::string& path) {
    np.ingress.push_back(RuleFrom(r, "from", path));
  });
  ForEachObject(*spec, "egress", "spec", [&](const json& r, const std::string& path) {
    np.egress.push_back(RuleFrom(r, "to", path));
  });
  auto types = StringList(*spec, "policyTypes", "spec");
  if (types.empty()) {
    // API server defaulting: Ingress always, Egress only when egress rules exist.
    np.policy_ingress = true;
    np.policy_egress = !np.egress.empty();
  } else {
    np.policy_ingress = np.policy_egress = false;
    for (const auto& t : types) {
      if (t == "Ingress") np.policy_ingress = true;
      if (t == "Egress") np.policy_egress = true;
    }
  }
  return np;
}

// Best-effort "namespace/name" for error messages about an object that failed to decode.
std::string NameForError(const json& obj) {
  if (!obj.is_object()) return "";
  auto m = obj.find("metadata");
  if (m == obj.end() || !m->is_object()) return "";
  auto name = m->find("name");
  if (name == m->end() || !name->is_string()) return "";
  auto ns = m->find("namespace");
  if (ns != m->end() && ns->is_string() && !ns->get<std::string>().empty())
    return ns->get<std::string>() + "/" + name->get<std::string>();
  return name->get<std::string>();
}

template <typename T, typename Fn>
Result<T> Guarded(const char* kind, const json& obj, Fn fn) {
  try {
    return fn(obj);
  } catch (const DecodeError& e) {
    std::string name = NameForError(obj);
    return Status::Error(std::string("malformed ") + kind + (name.empty() ? "" : " " + name) +
                         ": " + e.message);
  } catch (const std::exception& e) {  // nlohmann conversions we did not foresee
    return Status::Error(std::string("malformed ") + kind + ": " + e.what());
  }
}

}  // namespace

Result<Service> DecodeService(const json& o) { return Guarded<Service>("Service", o, ServiceFrom); }
Result<EndpointSlice> DecodeEndpointSlice(const json& o) {
  return Guarded<EndpointSlice>("EndpointSlice", o, EndpointSliceFrom);
}
Result<Pod> DecodePod(const json& o) { return Guarded<Pod>("Pod", o, PodFrom); }
Result<Node> DecodeNode(const json& o) { return Guarded<Node>("Node", o, NodeFrom); }
Result<Namespace> DecodeNamespace(const json& o) {
  return Guarded<Namespace>("Namespace", o, [](const json& j) {
    Namespace ns{Meta(j)};
    ns.meta.namespace_.clear();  // cluster-scoped: keyed by name alone
    return ns;
  });
}
Result<NetworkPolicy> DecodeNetworkPolicy(const json& o) {
  return Guarded<NetworkPolicy>("NetworkPolicy", o, NetworkPolicyFrom);
}
Result<ObjectMeta> DecodeObjectMeta(const json& o) {
  return Guarded<ObjectMeta>("object", o, [](const json& j) { return Meta(j); });
}

namespace {
template <typename T>
Result<AnyObject> Wrap(Result<T> r) {
  if (!r.ok()) return r.status();
  return AnyObject(std::make_shared<const T>(std::move(r).value()));
}
}  // namespace

Result<AnyObject> DecodeObject(ResourceKind kind, const json& object) {
  switch (kind) {
    case ResourceKind::kService:
      return Wrap(DecodeService(object));
    case ResourceKind::kEndpointSlice:
      return Wrap(DecodeEndpointSlice(object));
    case ResourceKind::kPod:
      return Wrap(DecodePod(object));
    case ResourceKind::kNode:
      return Wrap(DecodeNode(object));
    case ResourceKind::kNamespace:
      return Wrap(DecodeNamespace(object));
    case ResourceKind::kNetworkPolicy:
      return Wrap(DecodeNetworkPolicy(object));
  }
  return Status::Error("unknown resource kind");
}

Result<AnyObject> DecodeObjectText(ResourceKind kind, std::string_view text) {
  json j = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded())
    return Status::Error(std::string("malformed ") + ResourceKindName(kind) + ": invalid JSON");
  return DecodeObject(kind, j);
}

const ObjectMeta* MetaOf(const AnyObject& object) {
  return std::visit(
      [](const auto& p) -> const ObjectMeta* {
        if constexpr (std::is_same_v<std::decay_t<decltype(p)>, std::monostate>) {
          return nullptr;
        } else {
          return p ? &p->meta : nullptr;
        }
      },
      object);
}

}  // namespace kr::k8s
