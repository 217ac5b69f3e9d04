#include "kube_router/proxy/conntrack_cleanup.h"

#include <algorithm>

namespace kr::proxy {

using netlink::ConntrackFilter;

std::vector<ConntrackFilter> ConntrackCleanupFilters(
    const std::vector<ConntrackCleanupItem>& items) {
  std::vector<ConntrackFilter> out;
  auto add = [&](ConntrackFilter filter) {
    if (std::find(out.begin(), out.end(), filter) == out.end()) out.push_back(filter);
  };
  for (const ConntrackCleanupItem& item : items) {
    if (item.protocol != netlink::ip_protocol::kUdp &&
        item.protocol != netlink::ip_protocol::kSctp) {
      continue;  // TCP: the client learns of a gone backend by a reset; nothing lingers
    }
    for (const IpAddress& backend : item.gone_backends) {
      ConntrackFilter f;
      f.family = backend.family();
      f.protocol = item.protocol;
      f.reply_source = backend;
      for (const IpAddress& vip : item.service_ips) {
        if (vip.family() != backend.family() || item.port == 0) continue;
        ConntrackFilter by_vip = f;
        by_vip.original_destination = vip;
        by_vip.original_destination_port = item.port;
        add(by_vip);
      }
      if (item.node_port != 0) {
        ConntrackFilter by_node_port = f;
        by_node_port.original_destination_port = item.node_port;
        add(by_node_port);
      }
    }
    if (item.first_backend_arrived) {
      for (const IpAddress& vip : item.service_ips) {
        if (item.port == 0) continue;
        ConntrackFilter f;
        f.family = vip.family();
        f.protocol = item.protocol;
        f.original_destination = vip;
        f.original_destination_port = item.port;
        f.only_untranslated = true;
        add(f);
      }
      // NodePort flows answered by the node itself, per family the service has.
      if (item.node_port != 0) {
        std::vector<IpAddress::Family> families;
        for (const IpAddress& vip : item.service_ips) {
          if (std::find(families.begin(), families.end(), vip.family()) == families.end()) {
            families.push_back(vip.family());
          }
        }
        for (IpAddress::Family family : families) {
          ConntrackFilter f;
          f.family = family;
          f.protocol = item.protocol;
          f.original_destination_port = item.node_port;
          f.only_untranslated = true;
          add(f);
        }
      }
    }
  }
  return out;
}

Result<size_t> CleanupConntrack(netlink::Conntrack& conntrack,
                                const std::vector<ConntrackCleanupItem>& items) {
  std::vector<ConntrackFilter> filters = ConntrackCleanupFilters(items);
  if (filters.empty()) return size_t{0};
  auto deleted = conntrack.Delete(filters);
  if (!deleted.ok()) return deleted.status().Context("conntrack cleanup");
  return *deleted;
}

}  // namespace kr::proxy
