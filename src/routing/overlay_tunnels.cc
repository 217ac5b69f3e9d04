#include "kube_router/routing/overlay_tunnels.h"

#include <algorithm>
#include <map>
#include <set>

#include "kube_router/base/log.h"

namespace kr::routing {
namespace {

Status Joined(const std::vector<std::string>& errors) {
  if (errors.empty()) return Status::Ok();
  std::string joined;
  for (const auto& e : errors) joined += (joined.empty() ? "" : "; ") + e;
  return Status::Error(joined);
}

bool IsOurTunnel(const netlink::Link& link) {
  return IsOurTunnelName(link.name) && (link.kind == "ipip" || link.kind == "ip6tnl");
}

Status SyncTunnelLinks(const std::vector<DesiredTunnel>& desired, netlink::Links& links_api,
                       std::set<std::string>& gone) {
  auto links = links_api.List();
  if (!links) return links.status().Context("listing links");
  std::map<std::string, netlink::Link> existing;
  for (const auto& link : *links) {
    if (IsOurTunnel(link)) existing.emplace(link.name, link);
  }
  std::vector<std::string> errors;
  for (const auto& tunnel : desired) {
    auto it = existing.find(tunnel.name);
    bool create = it == existing.end();
    if (!create &&
        (it->second.tunnel_local != tunnel.local || it->second.tunnel_remote != tunnel.remote ||
         it->second.tunnel_encap != tunnel.encap)) {
      // Also how --overlay-encap changes reach existing tunnels (kube-router recreates too).
      KR_LOG_INFO("routing: tunnel {} has other end points or encapsulation; recreating",
                  tunnel.name);
      if (auto status = links_api.Delete(tunnel.name); !status.ok()) {
        errors.push_back(status.message());
        continue;
      }
      gone.insert(tunnel.name);
      create = true;
    }
    if (create) {
      netlink::TunnelSpec spec{tunnel.name, tunnel.local, tunnel.remote, 0, 0, tunnel.encap};
      if (auto status = links_api.CreateTunnel(spec); !status.ok()) {
        errors.push_back("creating tunnel " + tunnel.name + ": " + status.message());
        continue;
      }
      KR_LOG_INFO("routing: created tunnel {} to {}", tunnel.name, tunnel.remote.ToString());
    }
    if (create || !it->second.up) {
      if (auto status = links_api.SetUp(tunnel.name, true); !status.ok()) {
        errors.push_back("bringing up " + tunnel.name + ": " + status.message());
      }
    }
  }
  for (const auto& entry : existing) {
    const std::string& name = entry.first;  // a lambda capture (clang 14 cannot capture bindings)
    bool wanted = std::any_of(desired.begin(), desired.end(),
                              [&](const DesiredTunnel& t) { return t.name == name; });
    if (wanted) continue;
    if (auto status = links_api.Delete(name); !status.ok()) {
      errors.push_back("deleting tunnel " + name + ": " + status.message());
    } else {
      gone.insert(name);
      KR_LOG_INFO("routing: deleted tunnel {}", name);
    }
  }
  return Joined(errors);
}

Status SyncFouPorts(const RoutingConfig& config, const std::vector<netlink::FouPort>& desired,
                    netlink::FouPorts* fou) {
  if (!fou) {
    if (desired.empty()) return Status::Ok();
    return Status::Error("--overlay-encap=fou: this agent has no FoU adapter");
  }
  auto have = fou->List();
  if (!have) return have.status().Context("listing FoU ports");
  std::vector<std::string> errors;
  for (const auto& want : desired) {
    auto same_slot = std::find_if(have->begin(), have->end(), [&](const netlink::FouPort& p) {
      return p.family == want.family && p.port == want.port;
    });
    if (same_slot != have->end() && *same_slot == want) continue;
    if (same_slot != have->end()) {
      errors.push_back("FoU port " + std::to_string(want.port) + " is taken by a foreign " +
                       same_slot->ToString() + "; not touching it (see --overlay-encap-port)");
      continue;
    }
    if (auto status = fou->Add(want); !status.ok()) {
      errors.push_back(status.message());
    } else {
      KR_LOG_INFO("routing: added FoU {}", want.ToString());
    }
  }
  // Ours and no longer needed: --overlay-encap switched back to ipip, or no tunnel left in
  // that family.
  for (const auto& port : *have) {
    if (!IsOurFouPort(config, port)) continue;
    if (std::find(desired.begin(), desired.end(), port) != desired.end()) continue;
    if (auto status = fou->Delete(port); !status.ok()) {
      errors.push_back(status.message());
    } else {
      KR_LOG_INFO("routing: removed FoU {}", port.ToString());
    }
  }
  return Joined(errors);
}

}  // namespace

Status SyncOverlayTunnels(const RoutingConfig& config, const std::vector<DesiredTunnel>& desired,
                          netlink::Links& links, netlink::FouPorts* fou,
                          std::set<std::string>* gone) {
  // Ports before the tunnels, so that a peer's encapsulated packets are received once we send
  // ours.
  std::vector<std::string> errors;
  if (Status status = SyncFouPorts(config, PlanFouPorts(config, desired), fou); !status.ok()) {
    errors.push_back(status.message());
  }
  std::set<std::string> deleted;
  Status status = SyncTunnelLinks(desired, links, deleted);
  if (gone) *gone = std::move(deleted);
  if (!status.ok()) {
    errors.push_back(status.message());
  }
  return Joined(errors);
}

std::vector<std::string> CleanupOverlay(const RoutingConfig& config, netlink::Links& links,
                                        netlink::FouPorts* fou, std::vector<std::string>& errors) {
  std::vector<std::string> removed;
  if (auto listed = links.List(); listed) {
    for (const auto& link : *listed) {
      if (!IsOurTunnel(link)) continue;
      if (auto status = links.Delete(link.name); status.ok()) {
        removed.push_back("tunnel " + link.name);
      } else {
        errors.push_back(status.message());
      }
    }
  } else {
    errors.push_back(listed.error());
  }
  if (!fou) return removed;
  if (auto ports = fou->List(); ports) {
    for (const auto& port : *ports) {
      if (!IsOurFouPort(config, port)) continue;
      if (auto status = fou->Delete(port); status.ok()) {
        removed.push_back("FoU " + port.ToString());
      } else {
        errors.push_back(status.message());
      }
    }
  } else {
    errors.push_back(ports.error());
  }
  return removed;
}

}  // namespace kr::routing
