// The agent's wiring of the service proxy (the controller over the real adapters; nothing is
// written to the kernel here: building it only opens netlink sockets).
#include "kube_router/proxy/agent.h"

#include <gtest/gtest.h>

#include <algorithm>

namespace kr::proxy::agent_test {
namespace {

Options Parse(std::vector<const char*> argv) {
  argv.insert(argv.begin(), "kube-router");
  auto options = ParseOptions(static_cast<int>(argv.size()), argv.data());
  EXPECT_TRUE(options.ok()) << options.error();
  return options.ok() ? *options : Options{};
}

bool WatchesPods(const Controller& controller) {
  auto kinds = controller.WatchedKinds();
  return std::find(kinds.begin(), kinds.end(), k8s::ResourceKind::kPod) != kinds.end();
}

// DSR (kube-router.io/service.dsr=tunnel) needs its extension in the agent's controller: without
// it dsr-marked services were programmed as plain masquerading ones. A controller with the
// extension watches Pods (DSR's local pod IPs) even without graceful termination.
TEST(ProxyAgentWiringTest, TheAgentsControllerHandlesDsr) {
  auto cluster = k8s::MakeCluster();
  auto controller = MakeAgentServicesController(
      Parse({"--iptables-mode=nft", "--ipvs-graceful-termination=false"}), "node0", cluster.get(),
      nullptr);
  ASSERT_TRUE(controller.ok()) << controller.error();
  EXPECT_TRUE(WatchesPods(**controller));
}

}  // namespace
}  // namespace kr::proxy::agent_test
