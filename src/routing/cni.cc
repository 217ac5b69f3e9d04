// --enable-cni: the CNI config file and kube-bridge (kube-router network_routes_controller.go
// initCNIConfig / setupKubeBridge).
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include "kube_router/base/files.h"
#include "kube_router/base/log.h"
#include "kube_router/routing/cni_config.h"
#include "kube_router/routing/network_routes_controller.h"

namespace kr::routing {
namespace {

Result<std::string> ReadFileIfExists(const std::string& path) {
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) return std::string();
  std::ifstream in(path);
  if (!in) return Status::Error("cannot read " + path);
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

}  // namespace

Status NetworkRoutesController::SyncCni(const NodeInfo& self) {
  if (self.pod_cidrs.empty()) return Status::Ok();  // warned about in Sync
  std::optional<uint32_t> mtu;
  if (config_.auto_mtu) {
    auto node_mtu = NodeMtu(self);
    if (!node_mtu) {
      KR_LOG_WARN("routing: --auto-mtu: {}; leaving the MTU alone", node_mtu.error());
    } else {
      // Pod packets crossing the overlay get the tunnel's headers; keep them (of every family
      // the node has pods of) within the underlay MTU instead of relying on fragmentation.
      uint32_t overhead = 0;
      for (const auto& cidr : self.pod_cidrs) {
        overhead = std::max(overhead, OverlayOverhead(config_, cidr.address().family()));
      }
      mtu = *node_mtu - overhead;
    }
  }

  // kube-bridge with the gateway address of our pod CIDRs.
  auto bridge = dataplane_.links->Get(kBridgeName);
  if (!bridge) return bridge.status().Context("reading kube-bridge");
  if (!*bridge) {
    if (auto status = dataplane_.links->CreateBridge(kBridgeName, mtu.value_or(0)); !status.ok()) {
      return status.Context("creating kube-bridge");
    }
    KR_LOG_INFO("routing: created {}", kBridgeName);
  } else if (mtu && (*bridge)->mtu != *mtu) {
    if (auto status = dataplane_.links->SetMtu(kBridgeName, *mtu); !status.ok()) {
      return status.Context("setting the kube-bridge MTU");
    }
  }
  if (!*bridge || !(*bridge)->up) {
    if (auto status = dataplane_.links->SetUp(kBridgeName, true); !status.ok()) {
      return status.Context("bringing up kube-bridge");
    }
  }
  auto addresses = dataplane_.links->ListAddresses(kBridgeName);
  if (!addresses) return addresses.status().Context("reading kube-bridge addresses");
  // One gateway per family: the first pod CIDR of each (dual stack: an IPv4 and an IPv6 one).
  std::set<IpAddress::Family> families_done;
  for (const auto& cidr : self.pod_cidrs) {
    if (!families_done.insert(cidr.address().family()).second) continue;
    GatewayAddress gateway = BridgeGateway(cidr);
    netlink::Address want{kBridgeName, gateway.address, gateway.prefix_length,
                          netlink::Scope::kUniverse};
    bool present = std::any_of(addresses->begin(), addresses->end(), [&](const auto& have) {
      return have.address == want.address && have.prefix_length == want.prefix_length;
    });
    if (!present) {
      if (auto status = dataplane_.links->AddAddress(want); !status.ok()) {
        return status.Context("adding " + want.ToString());
      }
      KR_LOG_INFO("routing: added {}", want.ToString());
    }
  }

  const std::string& path = config_.cni_conf_file;
  auto existing = ReadFileIfExists(path);
  if (!existing) return existing.status();
  auto rendered = RenderCniConfig(*existing, IsConflistPath(path), self.pod_cidrs,
                                  mtu ? std::optional<int>(static_cast<int>(*mtu)) : std::nullopt);
  if (!rendered) return rendered.status().Context(path);
  if (*rendered == *existing) return Status::Ok();
  // Temp file, fsync, rename, fsync of the directory: the runtime reads the old or the new
  // config, never a torn one, and nobody can plant a symlink for us to write through.
  if (auto status = WriteFileAtomically(path, *rendered, 0644); !status.ok()) return status;
  KR_LOG_INFO("routing: wrote CNI config {}", path);
  return Status::Ok();
}

}  // namespace kr::routing
