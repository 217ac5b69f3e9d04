#include "kube_router/proxy/dsr.h"

#include <algorithm>
#include <tuple>

#include "kube_router/base/log.h"

namespace kr::proxy {
namespace {

using netlink::IpvsDestination;
using netlink::IpvsForward;
using netlink::IpvsService;

const char* ProtoName(uint8_t protocol) {
  switch (protocol) {
    case netlink::ip_protocol::kTcp:
      return "tcp";
    case netlink::ip_protocol::kUdp:
      return "udp";
    case netlink::ip_protocol::kSctp:
      return "sctp";
  }
  return nullptr;
}

std::string Host(const IpAddress& ip) { return ip.ToString() + (ip.is_v4() ? "/32" : "/128"); }

netlink::Route DsrTableRoute(IpAddress::Family family) {
  netlink::Route r;
  r.destination =
      IpPrefix(family == IpAddress::Family::kV4 ? IpAddress::V4(0) : IpAddress::V6({}), 0);
  r.device = "lo";
  r.table = netlink::kKubeRouterDsrTable;
  r.type = netlink::RouteType::kLocal;
  r.scope = netlink::Scope::kHost;
  if (family == IpAddress::Family::kV6) r.metric = 1024;  // what the kernel makes of 0
  return r;
}

Status First(Status current, Status next) { return current.ok() ? next : current; }

}  // namespace

uint32_t DsrFwmarkHash(const std::string& key) {
  uint32_t h = 2166136261u;
  for (unsigned char c : key) {
    h ^= c;
    h *= 16777619u;
  }
  uint32_t mark = h & kDsrFwmarkMask;
  return mark == 0 ? 1 : mark;
}

DsrPlan BuildDsrPlan(const std::vector<DsrServiceInput>& services, uint32_t mtu) {
  DsrPlan plan;
  // Valid inputs by key, in sorted key order: marks are assigned deterministically.
  std::map<std::string, const DsrServiceInput*> by_key;
  for (const DsrServiceInput& s : services) {
    const char* proto = ProtoName(s.protocol);
    if (proto == nullptr || s.port == 0) {
      plan.problems.push_back(s.owner + ": DSR VIP " + s.vip.ToString() +
                              " skipped: protocol/port invalid");
      continue;
    }
    const std::string key = s.vip.ToString() + "-" + proto + "-" + std::to_string(s.port);
    if (!by_key.emplace(key, &s).second) {
      plan.problems.push_back(s.owner + ": DSR VIP " + key + " also claimed by " +
                              by_key[key]->owner + "; first one kept");
    }
  }
  std::set<uint32_t> used;
  std::set<IpAddress::Family> families;
  for (const auto& [key, s] : by_key) {
    uint32_t mark = DsrFwmarkHash(key);
    for (int n = 1; used.count(mark) > 0; ++n) mark = DsrFwmarkHash(key + "-" + std::to_string(n));
    used.insert(mark);
    families.insert(s->vip.family());
    plan.marks[{s->vip, s->protocol, s->port}] = mark;

    DsrPlan::Virtual v;
    v.owner = s->owner;
    v.service.address = s->vip.is_v4() ? IpAddress::V4(0) : IpAddress::V6({});
    v.service.fwmark = mark;
    v.service.scheduler = s->scheduler;
    v.service.flags = s->flags;
    v.service.timeout = s->timeout;
    std::set<IpAddress> endpoints;
    for (const IpAddress& ep : s->endpoints) {
      if (ep.family() != s->vip.family()) {
        plan.problems.push_back(s->owner + ": DSR endpoint " + ep.ToString() +
                                " of the other family skipped");
        continue;
      }
      if (!endpoints.insert(ep).second) continue;
      IpvsDestination d;
      d.address = ep;
      d.port = s->port;
      d.forward = IpvsForward::kTunnel;
      v.destinations.push_back(d);
    }
    plan.services.push_back(v);

    netlink::Rule rule;
    rule.family = s->vip.family();
    rule.priority = kDsrRulePriority;
    rule.table = netlink::kKubeRouterDsrTable;
    rule.fwmark = mark;
    plan.rules.push_back(rule);

    char set_mark[40];
    std::snprintf(set_mark, sizeof(set_mark), "0x%x/0xffffffff", mark);
    const std::string proto = ProtoName(s->protocol);
    const std::string match = " -p " + proto + " -m " + proto;
    auto& marks = s->vip.is_v4() ? plan.mark_rules_v4 : plan.mark_rules_v6;
    marks.push_back("-d " + Host(s->vip) + match + " --dport " + std::to_string(s->port) +
                    " -j MARK --set-xmark " + set_mark);
    if (s->protocol == netlink::ip_protocol::kTcp && mtu > 100) {
      auto& mss = s->vip.is_v4() ? plan.mss_rules_v4 : plan.mss_rules_v6;
      const uint32_t clamp = mtu - (s->vip.is_v4() ? 60 : 100);
      mss.push_back("-s " + Host(s->vip) + " -i kube-bridge" + match + " --sport " +
                    std::to_string(s->port) + " --tcp-flags SYN,RST SYN -j TCPMSS --set-mss " +
                    std::to_string(clamp));
    }
    for (const IpAddress& local : s->local_endpoints) {
      if (local.family() == s->vip.family() && endpoints.count(local)) {
        plan.pod_vips[local].insert(s->vip);
      }
    }
  }
  for (IpAddress::Family family : families) plan.routes.push_back(DsrTableRoute(family));
  return plan;
}

Status DsrApplier::Apply(const DsrPlan& plan, const std::vector<IpAddress>& local_pods) {
  std::set<uint32_t> ours;
  Status s = ApplyRules(plan, ours);  // adds rules for new marks last (below); learns old marks
  s = First(s, ApplyIpvs(plan, ours));
  s = First(s, ApplyRoutes(plan));
  s = First(s, ApplyMangle(plan, false));
  s = First(s, ApplyPods(plan, local_pods));
  return s;
}

Status DsrApplier::ApplyRules(const DsrPlan& plan, std::set<uint32_t>& our_marks_before) {
  Status result;
  for (IpAddress::Family family : {IpAddress::Family::kV4, IpAddress::Family::kV6}) {
    auto listed = dp_.rules->List(family, netlink::kKubeRouterRouteProtocol);
    if (!listed.ok()) {
      result = First(result, listed.status());
      continue;
    }
    std::vector<netlink::Rule> present;
    for (const netlink::Rule& r : *listed) {
      if (r.table != netlink::kKubeRouterDsrTable || r.priority != kDsrRulePriority || !r.fwmark) {
        continue;
      }
      our_marks_before.insert(*r.fwmark);
      present.push_back(r);
    }
    for (const netlink::Rule& r : present) {
      if (std::find(plan.rules.begin(), plan.rules.end(), r) == plan.rules.end()) {
        ++writes_;
        result = First(result, dp_.rules->Delete(r));
      }
    }
    for (const netlink::Rule& r : plan.rules) {
      if (r.family == family && std::find(present.begin(), present.end(), r) == present.end()) {
        ++writes_;
        result = First(result, dp_.rules->Add(r));
      }
    }
  }
  return result;
}

Status DsrApplier::ApplyIpvs(const DsrPlan& plan, const std::set<uint32_t>& our_marks) {
  auto listed = dp_.ipvs->ListServices();
  if (!listed.ok()) return listed.status();
  Status result;
  std::map<std::pair<uint32_t, bool>, IpvsService> present;  // (mark, v6) -> service
  for (const IpvsService& svc : *listed) {
    if (svc.fwmark != 0) present[{svc.fwmark, svc.is_v6()}] = svc;
  }
  std::set<std::pair<uint32_t, bool>> wanted;
  for (const DsrPlan::Virtual& v : plan.services) {
    const auto key = std::make_pair(v.service.fwmark, v.service.is_v6());
    wanted.insert(key);
    auto it = present.find(key);
    if (it == present.end()) {
      result = First(result, dp_.ipvs->AddService(v.service));
    } else if (it->second.scheduler != v.service.scheduler || it->second.flags != v.service.flags ||
               it->second.timeout != v.service.timeout) {
      result = First(result, dp_.ipvs->UpdateService(v.service));
    }
    auto dests = dp_.ipvs->ListDestinations(v.service);
    std::vector<IpvsDestination> have = dests.ok() ? *dests : std::vector<IpvsDestination>{};
    for (const IpvsDestination& d : v.destinations) {
      auto match = std::find_if(have.begin(), have.end(),
                                [&](const IpvsDestination& h) { return h.SameIdentity(d); });
      if (match == have.end()) {
        result = First(result, dp_.ipvs->AddDestination(v.service, d));
      } else if (!match->SameConfig(d)) {
        result = First(result, dp_.ipvs->UpdateDestination(v.service, d));
      }
    }
    for (const IpvsDestination& h : have) {
      bool keep = std::any_of(v.destinations.begin(), v.destinations.end(),
                              [&](const IpvsDestination& d) { return d.SameIdentity(h); });
      if (!keep) result = First(result, dp_.ipvs->DeleteDestination(v.service, h));
    }
  }
  // Ours and no longer wanted: a fwmark service whose mark one of our rules named.
  for (const auto& [key, svc] : present) {
    if (our_marks.count(key.first) && !wanted.count(key)) {
      ++writes_;
      result = First(result, dp_.ipvs->DeleteService(svc));
    }
  }
  return result;
}

Status DsrApplier::ApplyRoutes(const DsrPlan& plan) {
  netlink::RouteFilter filter;
  filter.table = netlink::kKubeRouterDsrTable;
  filter.protocol = netlink::kKubeRouterRouteProtocol;
  auto listed = dp_.routes->List(filter);
  if (!listed.ok()) return listed.status();
  std::vector<netlink::RouteChange> changes;
  for (const netlink::Route& r : *listed) {
    bool wanted = std::any_of(plan.routes.begin(), plan.routes.end(), [&](const netlink::Route& w) {
      return w.destination == r.destination && w.type == r.type;
    });
    if (!wanted) changes.push_back({netlink::RouteChange::Op::kDelete, r});
  }
  for (const netlink::Route& w : plan.routes) {
    bool have = std::any_of(listed->begin(), listed->end(), [&](const netlink::Route& r) {
      return w.destination == r.destination && w.type == r.type && r.device == w.device;
    });
    if (!have) changes.push_back({netlink::RouteChange::Op::kReplace, w});
  }
  if (changes.empty()) return Status::Ok();
  writes_ += changes.size();
  auto refused = dp_.routes->Apply(changes);
  if (!refused.ok()) return refused.status();
  if (!refused->empty()) {
    return Status::Error("DSR table 78 route: " + refused->front().message);
  }
  return Status::Ok();
}

Status DsrApplier::ApplyMangle(const DsrPlan& plan, bool remove) {
  Status result;
  for (netfilter::Iptables* ipt : {dp_.iptables_v4, dp_.iptables_v6}) {
    if (ipt == nullptr) continue;
    const bool v4 = ipt->family() == netfilter::IpFamily::kV4;
    const auto& marks = v4 ? plan.mark_rules_v4 : plan.mark_rules_v6;
    const auto& mss = v4 ? plan.mss_rules_v4 : plan.mss_rules_v6;
    auto saved = ipt->Save("mangle");
    if (!saved.ok()) {
      result = First(result, saved.status());
      continue;
    }
    const auto& chains = saved->chains;
    auto rules_of = [&](const std::string& chain) -> const std::vector<std::string>* {
      auto it = chains.find(chain);
      return it == chains.end() ? nullptr : &it->second;
    };
    auto has_jump = [&](const std::string& from, const std::string& to) {
      const auto* rules = rules_of(from);
      return rules && std::find(rules->begin(), rules->end(), "-j " + to) != rules->end();
    };
    const bool wanted = !remove && !(marks.empty() && mss.empty());
    netfilter::TableUpdate update;
    update.table = "mangle";
    if (wanted) {
      const auto* have_marks = rules_of(kDsrMarkChain);
      const auto* have_mss = rules_of(kDsrMssChain);
      if (!have_marks || *have_marks != marks)
        update.replace_chains.push_back({kDsrMarkChain, marks});
      if (!have_mss || *have_mss != mss) update.replace_chains.push_back({kDsrMssChain, mss});
      for (const auto& [from, to] :
           {std::pair{"PREROUTING", kDsrMarkChain}, std::pair{"OUTPUT", kDsrMarkChain},
            std::pair{"PREROUTING", kDsrMssChain}}) {
        if (!has_jump(from, to)) update.insert_rules.push_back({from, 1, std::string("-j ") + to});
      }
    } else {
      for (const auto& [from, to] :
           {std::pair{"PREROUTING", kDsrMarkChain}, std::pair{"OUTPUT", kDsrMarkChain},
            std::pair{"PREROUTING", kDsrMssChain}}) {
        if (has_jump(from, to)) update.delete_rules.push_back({from, std::string("-j ") + to});
      }
      for (const char* chain : {kDsrMarkChain, kDsrMssChain}) {
        if (rules_of(chain)) update.delete_chains.push_back(chain);
      }
    }
    if (!update.empty()) {
      ++writes_;
      result = First(result, ipt->Apply(update).Context("DSR mangle rules"));
    }
  }
  return result;
}

Status DsrApplier::SetPodVips(const IpAddress& pod, const std::set<IpAddress>& vips) {
  return dp_.pods->RunInPodNetns(pod, [&](const netlink::PodNetnsContext& ctx) -> Status {
    auto links = dp_.make_pod_links(ctx);
    if (!links.ok()) return links.status();
    const std::string name = pod.is_v4() ? kPodTunnelV4 : kPodTunnelV6;
    auto link = (*links)->Get(name);
    if (!link.ok()) return link.status();
    if (vips.empty()) {
      if (!*link) return Status::Ok();
      ++writes_;
      return (*links)->Delete(name);
    }
    if (*link && (*link)->tunnel_local != pod) {
      if (Status s = (*links)->Delete(name); !s.ok()) return s;
      *link = std::nullopt;
    }
    if (!*link) {
      netlink::TunnelSpec spec;
      spec.name = name;
      spec.local = pod;
      spec.remote = pod.is_v4() ? IpAddress::V4(0) : IpAddress::V6({});
      if (Status s = (*links)->CreateTunnel(spec); !s.ok()) return s;
    }
    if (Status s = (*links)->SetUp(name, true); !s.ok()) return s;
    auto addresses = (*links)->ListAddresses(name);
    if (!addresses.ok()) return addresses.status();
    std::set<IpAddress> have;
    for (const netlink::Address& a : *addresses) {
      if (a.address.is_v6() && a.prefix_length == 64) continue;  // the link-local address
      if (!vips.count(a.address)) {
        ++writes_;
        if (Status s = (*links)->DeleteAddress(a); !s.ok()) return s;
      } else {
        have.insert(a.address);
      }
    }
    for (const IpAddress& vip : vips) {
      if (have.count(vip)) continue;
      netlink::Address a;
      a.device = name;
      a.address = vip;
      a.prefix_length = vip.bit_length();
      if (Status s = (*links)->AddAddress(a); !s.ok()) return s;
    }
    if (pod.is_v4() && dp_.make_pod_sysctl) {
      // Decapsulated packets arrive on the tunnel for an address the pod routes elsewhere.
      auto sysctl = dp_.make_pod_sysctl(ctx);
      for (const std::string& dev : {std::string("all"), name, ctx.device}) {
        if (Status s = sysctl->Set("net.ipv4.conf." + dev + ".rp_filter", "0"); !s.ok()) return s;
      }
    }
    return Status::Ok();
  });
}

Status DsrApplier::ApplyPods(const DsrPlan& plan, const std::vector<IpAddress>& local_pods) {
  std::set<IpAddress> pods(local_pods.begin(), local_pods.end());
  pods.insert(pods_with_vips_.begin(), pods_with_vips_.end());
  for (const auto& [pod, vips] : plan.pod_vips) pods.insert(pod);
  Status result;
  for (const IpAddress& pod : pods) {
    auto it = plan.pod_vips.find(pod);
    const std::set<IpAddress> vips = it == plan.pod_vips.end() ? std::set<IpAddress>{} : it->second;
    Status s = SetPodVips(pod, vips);
    if (s.ok()) {
      if (vips.empty()) {
        pods_with_vips_.erase(pod);
      } else {
        pods_with_vips_.insert(pod);
      }
    } else if (vips.empty()) {
      pods_with_vips_.erase(pod);  // a pod that is gone has nothing left to remove
    } else {
      result = First(result, s);
    }
  }
  return result;
}

Result<std::vector<std::string>> DsrApplier::Cleanup(const std::vector<IpAddress>& local_pods) {
  DsrPlan empty;
  const size_t writes_before = writes_;
  Status s = Apply(empty, local_pods);
  s = First(s, ApplyMangle(empty, true));
  if (!s.ok()) return s;
  if (writes_ == writes_before) return std::vector<std::string>{};  // nothing of ours was left
  return std::vector<std::string>{"DSR fwmark services, ip rules, table 78 routes, mangle chains " +
                                  std::string(kDsrMarkChain) + "/" + kDsrMssChain +
                                  " and pod tunnel VIPs"};
}

}  // namespace kr::proxy
