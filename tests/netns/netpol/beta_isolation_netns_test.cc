// NetworkPolicy beta semantics with real traffic (--netpol-beta-namespace-isolation): the
// namespace annotation net.beta.kubernetes.io/network-policy with DefaultDeny isolates the
// ingress of every pod in the namespace, a policy opens what it allows, removing the annotation
// opens the namespace again, a malformed annotation fails closed without disturbing other
// namespaces, and without the flag the annotation changes nothing. The controller runs
// in-process in each node namespace (x and y on node 0, z on node 1), nft and legacy.
#include <gtest/gtest.h>

#include "lib/netns.h"
#include "lib/podnet.h"
#include "node_firewalls.h"

namespace kr::netpol::beta_isolation_netns_test {
namespace {

using kr::testing::PodNetwork;
using kr::testing::Proto;
using namespace kr::netpol::testing;  // NOLINT: builders and the xyz world

constexpr char kDenyAll[] = R"({"ingress": {"isolation": "DefaultDeny"}})";

class BetaIsolationE2E : public XyzFirewallTest<const char*> {
 protected:
  void SetUp() override {
    ASSERT_TRUE(kr::testing::IsRoot()) << "netns tests need root";
    world_ = std::make_unique<PodNetwork>("bi");
    BuildXyz(*world_, {Proto::kTcp});
    StartFirewalls(*world_, nullptr, [this](NetpolConfig& config) {
      config.iptables_mode = GetParam();
      config.beta_namespace_isolation = OptIn();
    });
  }

  virtual bool OptIn() const { return true; }

  // Sets (or with nullptr removes) namespace `ns`'s beta annotation, then syncs every node.
  void Annotate(const std::string& ns, const char* value) {
    auto object = *cluster_->namespaces.Get(ns);
    if (value != nullptr) {
      object.meta.annotations[kBetaIsolationAnnotation] = value;
    } else {
      object.meta.annotations.erase(kBetaIsolationAnnotation);
    }
    Put(*cluster_, object);
    Sync(SyncReason::kRequested);
  }

  std::unique_ptr<PodNetwork> world_;
};

TEST_P(BetaIsolationE2E, AnIsolatedNamespaceAcceptsOnlyWhatPoliciesAllowUntilTheAnnotationGoes) {
  ExpectMatrix(80, Proto::kTcp, [](auto&, auto&) { return true; });

  // Nothing reaches x's pods, from x itself, y (same node) or z (other node); x still sends.
  Annotate("x", kDenyAll);
  ExpectMatrix(80, Proto::kTcp, [](auto&, auto& to) { return NsOf(to) != "x"; });

  // A policy lets z's pods into x/a on TCP 80, nothing more.
  Apply(Policy("x", "from-z", Labels({{"pod", "a"}}), true, false,
               {{{NamespacePeer(Labels({{"ns", "z"}}))}, {Port(80)}}}));
  ExpectMatrix(80, Proto::kTcp, [](auto& from, auto& to) {
    return NsOf(to) != "x" || (to == "x/a" && NsOf(from) == "z");
  });
  ExpectMatrix(81, Proto::kTcp, [](auto&, auto& to) { return NsOf(to) != "x"; });

  // The annotation goes: x/b and x/c are open again; x/a stays isolated by the v1 policy that
  // selects it.
  Annotate("x", nullptr);
  ExpectMatrix(80, Proto::kTcp,
               [](auto& from, auto& to) { return to != "x/a" || NsOf(from) == "z"; });

  Remove("x/from-z");
  ExpectMatrix(80, Proto::kTcp, [](auto&, auto&) { return true; });
}

TEST_P(BetaIsolationE2E, AMalformedAnnotationFailsClosedAndOtherNamespacesKeepWorking) {
  // y/a accepts only y/b (a v1 policy); x's annotation is broken.
  Apply(Policy("y", "only-b", Labels({{"pod", "a"}}), true, false,
               {{{PodPeer(Labels({{"pod", "b"}}))}, {}}}));
  Annotate("x", R"({"ingress": {"isolation": "DefaultDeny")");
  auto expected = [](const std::string& from, const std::string& to) {
    if (NsOf(to) == "x") return false;
    return to != "y/a" || from == "y/b";
  };
  ExpectMatrix(80, Proto::kTcp, expected);

  // Fixed to a valid value that does not isolate: x opens.
  Annotate("x", "{}");
  ExpectMatrix(80, Proto::kTcp, [](auto& from, auto& to) { return to != "y/a" || from == "y/b"; });
}

INSTANTIATE_TEST_SUITE_P(Backends, BetaIsolationE2E, ::testing::Values("nft", "legacy"),
                         [](const auto& info) { return std::string(info.param); });

// Without the flag (the default) the annotation means nothing: a current cluster with an
// annotation left over from the beta days is not changed by it.
class BetaIsolationOffE2E : public BetaIsolationE2E {
 protected:
  bool OptIn() const override { return false; }
};

TEST_P(BetaIsolationOffE2E, TheAnnotationChangesNothing) {
  Annotate("x", kDenyAll);
  Annotate("y", "{broken");
  ExpectMatrix(80, Proto::kTcp, [](auto&, auto&) { return true; });
  // Policies still work as usual.
  Apply(Policy("x", "deny-a", Labels({{"pod", "a"}}), true, false));
  ExpectMatrix(80, Proto::kTcp, [](auto&, auto& to) { return to != "x/a"; });
}

INSTANTIATE_TEST_SUITE_P(Backends, BetaIsolationOffE2E, ::testing::Values("nft", "legacy"),
                         [](const auto& info) { return std::string(info.param); });

}  // namespace
}  // namespace kr::netpol::beta_isolation_netns_test
