// Issue 16 item 7 with the real tools: other software's iptables rules that iptables-save prints
// oddly (a comment with newlines, even one that forges a line of ours; quotes, backslashes,
// tabs, control bytes; a comment of the maximum length) must not stop the firewall. Before the
// fix one newline in a foreign comment made every iptables-save parse, and so every full sync,
// fail. Here the controllers start, sync fully and incrementally, enforce a policy, and every
// foreign rule is still there byte for byte. nft and legacy.
#include <gtest/gtest.h>

#include "lib/netns.h"
#include "lib/podnet.h"
#include "node_firewalls.h"

namespace kr::netpol::foreign_rules_netns_test {
namespace {

using kr::testing::PodNetwork;
using kr::testing::Proto;
using namespace kr::netpol::testing;  // NOLINT: builders and the xyz world

struct ForeignRule {
  std::string chain;
  std::string comment;
};

// Each matches nothing the test sends (TEST-NET-1 source), so traffic is up to our rules.
std::vector<ForeignRule> OddRules() {
  return {
      {"INPUT", "line1\n-A INPUT -j KUBE-ROUTER-INPUT\nx\"q"},  // forges our jump
      {"FORWARD", "two\nlines"},
      {"FORWARD", "\n"},
      {"FOREIGN-ODD", "tab\tand \"quotes\" and \\backslash\\"},
      {"FOREIGN-ODD", std::string("control \x01\x02 bytes\r")},
      {"OUTPUT", std::string(255, 'c')},
      {"FOREIGN-ODD", "-A KUBE-ROUTER-FORWARD -j ACCEPT\n-A KUBE-POD-FW-X \"unclosed"},
  };
}

class ForeignRulesE2E : public XyzFirewallTest<const char*> {
 protected:
  void SetUp() override {
    ASSERT_TRUE(kr::testing::IsRoot()) << "netns tests need root";
    world_ = std::make_unique<PodNetwork>("fr");
    BuildXyz(*world_, {Proto::kTcp});
    const std::string tool = std::string("iptables-") + GetParam();
    for (auto& node : world_->nodes()) {
      ASSERT_TRUE(node.ns->Run({tool, "-N", "FOREIGN-ODD"}).ok());
      ASSERT_TRUE(
          node.ns->Run({tool, "-A", "FORWARD", "-s", "192.0.2.1", "-j", "FOREIGN-ODD"}).ok());
      for (const auto& rule : OddRules()) {
        auto added = node.ns->Run({tool, "-A", rule.chain, "-s", "192.0.2.1", "-m", "comment",
                                   "--comment", rule.comment, "-j", "ACCEPT"});
        ASSERT_TRUE(added.ok()) << rule.comment;
        ASSERT_EQ(added->exit_code, 0) << added->err;
      }
      foreign_before_.push_back(ForeignLines(node));
    }
    // The first line of the first rule is what broke the old parser.
    ASSERT_NE(foreign_before_[0].find("--comment \"line1\n-A INPUT -j KUBE-ROUTER-INPUT\n"),
              std::string::npos)
        << foreign_before_[0];
    StartFirewalls(*world_, nullptr,
                   [](NetpolConfig& config) { config.iptables_mode = GetParam(); });
  }

  // The filter table without our lines (our chains' rules and our jumps, which carry our
  // comment) and without chain declarations (counters) and "#" lines. A foreign comment line
  // that forges one of ours is dropped alike before and after.
  std::string ForeignLines(PodNetwork::Node& node) {
    auto saved = node.ns->Run({std::string("iptables-") + GetParam() + "-save", "-t", "filter"});
    EXPECT_TRUE(saved.ok() && saved->exit_code == 0);
    std::string out;
    std::string text = saved.ok() ? saved->out : "";
    for (size_t pos = 0, end; pos < text.size(); pos = end + 1) {
      end = text.find('\n', pos);
      if (end == std::string::npos) end = text.size();
      std::string line = text.substr(pos, end - pos);
      bool ours = line.starts_with("-A KUBE-ROUTER-") || line.starts_with("-A KUBE-NWPLCY-") ||
                  line.starts_with("-A KUBE-POD-FW-") ||
                  line.find("\"kube-router netpol - ") != std::string::npos;
      if (!ours && !line.starts_with("#") && !line.starts_with(":")) out += line + "\n";
    }
    return out;
  }

  std::unique_ptr<PodNetwork> world_;
  std::vector<std::string> foreign_before_;
};

TEST_P(ForeignRulesE2E, OddForeignRulesNeitherStopSyncsNorGetTouched) {
  // Started (a full sync read the table); a policy arrives (incremental) and is enforced.
  Apply(Policy("x", "from-b", Labels({{"pod", "a"}}), true, false,
               {{{PodPeer(Labels({{"pod", "b"}}))}, {}}}));
  ExpectProbe("x/b", "x/a", 80, Proto::kTcp, true);
  ExpectProbe("x/c", "x/a", 80, Proto::kTcp, false);
  ExpectProbe("z/b", "x/a", 80, Proto::kTcp, false);
  // Periodic full syncs read the table again, twice (nothing to repair the second time).
  Sync(SyncReason::kPeriodic);
  Sync(SyncReason::kPeriodic);
  ExpectProbe("x/c", "x/a", 80, Proto::kTcp, false);
  ExpectProbe("z/a", "y/a", 80, Proto::kTcp, true);
  for (size_t i = 0; i < world_->nodes().size(); ++i) {
    EXPECT_EQ(ForeignLines(world_->nodes()[i]), foreign_before_[i]) << world_->nodes()[i].name;
    // Our jump is the first rule of INPUT although a foreign comment forges one.
    auto input =
        world_->nodes()[i].ns->Run({std::string("iptables-") + GetParam(), "-S", "INPUT", "2"});
    ASSERT_TRUE(input.ok());
    EXPECT_NE(input->out.find("192.0.2.1"), std::string::npos) << input->out;
  }
  // Our chains are written once: the first INPUT rule is our single jump.
  auto first =
      world_->nodes()[0].ns->Run({std::string("iptables-") + GetParam(), "-S", "INPUT", "1"});
  ASSERT_TRUE(first.ok());
  EXPECT_NE(first->out.find("-j KUBE-ROUTER-INPUT"), std::string::npos) << first->out;
}

INSTANTIATE_TEST_SUITE_P(Backends, ForeignRulesE2E, ::testing::Values("nft", "legacy"),
                         [](const auto& info) { return std::string(info.param); });

}  // namespace
}  // namespace kr::netpol::foreign_rules_netns_test
