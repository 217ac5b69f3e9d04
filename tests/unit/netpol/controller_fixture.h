// The fixture of the controller tests over stateful fakes (controller_test.cc,
// shared_sets_test.cc): a cluster and a NetworkPolicyController on node1 over a fake iptables
// (IPv4), ipset and sysctl; StartController again is an agent restarted over a kernel that kept
// what the previous process wrote. Assertions are about the resulting fake kernel state.
#pragma once

#include <gtest/gtest.h>

#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "kube_router/k8s/store.h"
#include "kube_router/netfilter/fakes.h"
#include "kube_router/netlink/fakes.h"
#include "kube_router/netpol/network_policy_controller.h"

namespace kr::netpol::testing {

class ControllerFixture : public ::testing::Test {
 protected:
  static constexpr char kNode[] = "node1";

  // A new controller over fakes that hold `filter` and `sets` (none: an empty kernel).
  void StartController(const netfilter::TableSnapshot* filter = nullptr,
                       const std::map<std::string, netfilter::IpsetSet>* sets = nullptr) {
    controller_.reset();
    auto iptables = std::make_unique<netfilter::FakeIptables>();
    auto ipset = std::make_unique<netfilter::FakeIpset>();
    auto sysctl = std::make_unique<netlink::FakeSysctl>();
    iptables_ = iptables.get();
    ipset_ = ipset.get();
    sysctl_ = sysctl.get();
    if (filter != nullptr) iptables_->table("filter") = *filter;
    if (sets != nullptr) ipset_->sets() = *sets;
    // A set in use cannot be destroyed (as in the kernel).
    ipset_->CheckReferencesIn(iptables_);
    sysctl_->Seed("net.bridge.bridge-nf-call-iptables", "0");
    OnNewFakes();
    NetpolConfig config;
    config.node_name = kNode;
    config.default_deny = default_deny_;
    NetpolDataplane dataplane;
    dataplane.iptables_v4 = std::move(iptables);
    dataplane.ipset = std::move(ipset);
    dataplane.sysctl = std::move(sysctl);
    controller_ =
        std::make_unique<NetworkPolicyController>(config, cluster_.get(), std::move(dataplane));
  }

  // Called by StartController once the new fakes exist, before the controller that writes to
  // them: where a test installs its checks of every kernel write.
  virtual void OnNewFakes() {}

  std::vector<std::string>& Chain(const std::string& name) {
    return iptables_->table("filter").chains[name];
  }
  bool HasChain(const std::string& name) {
    return iptables_->table("filter").chains.contains(name);
  }
  std::set<netfilter::IpsetEntry> Members(const std::string& set) {
    return ipset_->sets()[set].entries;
  }

  bool default_deny_ = false;  // read by the next StartController
  std::unique_ptr<k8s::Cluster> cluster_ = k8s::MakeCluster();
  netfilter::FakeIptables* iptables_ = nullptr;
  netfilter::FakeIpset* ipset_ = nullptr;
  netlink::FakeSysctl* sysctl_ = nullptr;
  std::unique_ptr<NetworkPolicyController> controller_;
};

}  // namespace kr::netpol::testing
