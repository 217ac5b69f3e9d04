// `kube-router --cleanup-config` (the real binary) removes the network policy chains, jumps and
// ipsets from BOTH iptables backends (nft and legacy) and both families, whichever backend the
// agent itself would use, and leaves every foreign chain, rule, table and set exactly as it was.
#include <gtest/gtest.h>

#include <filesystem>
#include <iterator>
#include <map>
#include <regex>

#include "lib/binaries.h"
#include "lib/netns.h"

namespace kr::netpol {
namespace {

using kr::testing::Netns;
using kr::testing::TempDir;

const std::string& kAgent = kr::testing::kAgentBinary;

struct Tool {
  std::string command;  // "iptables-nft", "ip6tables-legacy", ...
  bool v6;
};

const std::vector<Tool> kTools = {{"iptables-nft", false},
                                  {"ip6tables-nft", true},
                                  {"iptables-legacy", false},
                                  {"ip6tables-legacy", true}};

// Docker-, kube-proxy- and CNI-shaped state, including names close to ours and a nat table.
std::string ForeignState(const Tool& t) {
  std::string x = t.command + " -w ";
  std::string set = t.v6 ? "foreign6" : "KUBE-CLUSTER-IP";
  std::string match = t.v6 ? " src" : " dst,dst";
  return x + "-N DOCKER-USER && " + x + "-A DOCKER-USER -j RETURN && " + x +
         "-A FORWARD -j DOCKER-USER && " + x + "-N KUBE-FIREWALL && " + x +
         "-A KUBE-FIREWALL -m mark --mark 0x8000/0x8000 -j DROP && " + x +
         "-A INPUT -j KUBE-FIREWALL && " + x + "-N KUBE-SERVICES && " + x +
         "-A OUTPUT -m conntrack --ctstate NEW -m comment --comment \"kubernetes service portals\" "
         "-j KUBE-SERVICES && " +
         x + "-N KUBE-ROUTER-SERVICES && " + x + "-A KUBE-ROUTER-SERVICES -j RETURN && " + x +
         "-A FORWARD -j KUBE-ROUTER-SERVICES && " + x + "-N KUBE-NWPLCYX && " + x +
         "-A INPUT -m set --match-set " + set + match + " -j ACCEPT && " + x +
         "-t nat -N KUBE-POSTROUTING && " + x + "-t nat -A POSTROUTING -j KUBE-POSTROUTING && " +
         x + "-t nat -A KUBE-POSTROUTING -j MASQUERADE";
}

// What the controller writes (reference §4.2), shortened: the three top-level chains jumped
// from the built-in chains at position 1, COMMON/DEFAULT, a pod chain and a policy chain whose
// rules use our ipsets (so the sets cannot be destroyed while any backend still holds them).
std::string OurState(const Tool& t) {
  std::string x = t.command + " -w ";
  std::string sets = t.v6 ? "inet6:" : "";
  std::string pod = t.v6 ? "fd00:10::200" : "10.71.0.2";
  std::string script;
  for (const char* chain :
       {"KUBE-ROUTER-INPUT", "KUBE-ROUTER-FORWARD", "KUBE-ROUTER-OUTPUT", "KUBE-NWPLCY-COMMON",
        "KUBE-NWPLCY-DEFAULT", "KUBE-POD-FW-ABCDEFGHIJKLMNOP", "KUBE-NWPLCY-QRSTUVWXYZ234567"}) {
    script += x + "-N " + chain + " && ";
  }
  for (const char* builtin : {"INPUT", "FORWARD", "OUTPUT"}) {
    script += x + "-I " + builtin + " 1 -m comment --comment \"kube-router netpol - HASH" +
              builtin + "\" -j KUBE-ROUTER-" + builtin + " && ";
  }
  script += x + "-A KUBE-ROUTER-FORWARD -d " + pod + " -j KUBE-POD-FW-ABCDEFGHIJKLMNOP && ";
  script += x + "-A KUBE-ROUTER-OUTPUT -s " + pod + " -j KUBE-POD-FW-ABCDEFGHIJKLMNOP && ";
  script += x + "-A KUBE-POD-FW-ABCDEFGHIJKLMNOP -j KUBE-NWPLCY-COMMON && ";
  script +=
      x + "-A KUBE-POD-FW-ABCDEFGHIJKLMNOP -d " + pod + " -j KUBE-NWPLCY-QRSTUVWXYZ234567 && ";
  script += x + "-A KUBE-POD-FW-ABCDEFGHIJKLMNOP -m mark ! --mark 0x10000/0x10000 -j REJECT && ";
  script += x + "-A KUBE-NWPLCY-QRSTUVWXYZ234567 -m set --match-set " + sets +
            "KUBE-SRC-AAAAAAAAAAAAAAAA src -m set --match-set " + sets +
            "KUBE-DST-AAAAAAAAAAAAAAAA dst -j MARK --set-xmark 0x10000/0x10000 && ";
  script += x + "-A KUBE-NWPLCY-DEFAULT -j MARK --set-xmark 0x10000/0x10000";
  return script;
}

// Our sets of both families, as OurState's rules use them.
const char kOurSets[] =
    "ipset create KUBE-SRC-AAAAAAAAAAAAAAAA hash:ip && "
    "ipset create KUBE-DST-AAAAAAAAAAAAAAAA hash:ip && "
    "ipset add KUBE-DST-AAAAAAAAAAAAAAAA 10.71.0.2 && "
    "ipset create inet6:KUBE-SRC-AAAAAAAAAAAAAAAA hash:net family inet6 && "
    "ipset add inet6:KUBE-SRC-AAAAAAAAAAAAAAAA fd00:10::/64 && "
    "ipset add inet6:KUBE-SRC-AAAAAAAAAAAAAAAA fd00:10::/120 nomatch && "
    "ipset create inet6:KUBE-DST-AAAAAAAAAAAAAAAA hash:ip family inet6 && "
    "ipset create kube-router-local-pods hash:ip";

// iptables-save output without comments and counters (every table of the tool).
std::string Normalized(const Netns& ns, const Tool& t) {
  auto out = ns.Sh(t.command + "-save");
  if (!out.ok()) return "error: " + out.error();
  static const std::regex comment("^#.*\n", std::regex::multiline);
  static const std::regex counters("\\[[0-9]+:[0-9]+\\]");
  return std::regex_replace(std::regex_replace(*out, comment, ""), counters, "[0:0]");
}

bool HasAnyOfOurs(const std::string& save) {
  return save.find("KUBE-ROUTER-INPUT") != std::string::npos ||
         save.find("KUBE-ROUTER-FORWARD") != std::string::npos ||
         save.find("KUBE-ROUTER-OUTPUT") != std::string::npos ||
         save.find("KUBE-POD-FW-") != std::string::npos ||
         save.find("KUBE-NWPLCY-") != std::string::npos;
}

struct CleanupRun {
  int exit_code = -1;
  std::string output;
};

CleanupRun RunCleanup(const Netns& ns, const TempDir& tmp, const std::vector<std::string>& flags) {
  // The routing controller's cleanup looks for a CNI configuration: never the host's. The
  // service proxy stays off: KUBE-ROUTER-SERVICES stands for another controller's chain here,
  // which the policy cleanup must keep (the proxy's own cleanup removes it, by design).
  std::vector<std::string> argv = {"env",
                                   "KUBE_ROUTER_CNI_CONF_FILE=" + tmp.path() + "/10-kr.conflist",
                                   kAgent,
                                   "--cleanup-config",
                                   "--hostname-override=kr-test-node",
                                   "--run-service-proxy=false"};
  argv.insert(argv.end(), flags.begin(), flags.end());
  auto r = Exec(ns.Wrap(argv));
  if (!r.ok()) return {-1, r.error()};
  return {r->exit_code, r->out + r->err};
}

// The agent's flags select which backend and families it would use; cleanup must cover all.
class CleanupBothBackends : public ::testing::TestWithParam<std::vector<std::string>> {};

TEST_P(CleanupBothBackends, RemovesOursFromNftAndLegacyAndKeepsForeignState) {
  ASSERT_TRUE(kr::testing::IsRoot()) << "netns tests need root";
  ASSERT_TRUE(std::filesystem::exists(kAgent)) << kAgent;
  Netns ns("kr-np-clean");
  TempDir tmp;

  ASSERT_TRUE(ns.Sh("ipset create KUBE-CLUSTER-IP hash:ip,port && "
                    "ipset add KUBE-CLUSTER-IP 10.96.0.1,tcp:443 && "
                    "ipset create foreign6 hash:net family inet6 && "
                    "ipset add foreign6 fd00:99::/64 && ipset create docker-nets hash:net && "
                    "ipset create KUBE-SRC hash:ip")
                  .ok());
  for (const auto& t : kTools) {
    auto r = ns.Sh(ForeignState(t));
    ASSERT_TRUE(r.ok()) << t.command << ": " << r.error();
  }
  std::map<std::string, std::string> foreign;
  for (const auto& t : kTools) foreign[t.command] = Normalized(ns, t);
  auto foreign_sets = ns.Sh("ipset save");
  ASSERT_TRUE(foreign_sets.ok());

  ASSERT_TRUE(ns.Sh(kOurSets).ok());
  for (const auto& t : kTools) {
    auto r = ns.Sh(OurState(t));
    ASSERT_TRUE(r.ok()) << t.command << ": " << r.error();
    ASSERT_TRUE(HasAnyOfOurs(Normalized(ns, t))) << t.command;
  }

  CleanupRun first = RunCleanup(ns, tmp, GetParam());
  EXPECT_EQ(first.exit_code, 0) << first.output;
  for (const auto& t : kTools) {
    std::string after = Normalized(ns, t);
    EXPECT_FALSE(HasAnyOfOurs(after)) << t.command << " still holds our chains:\n" << after;
    EXPECT_EQ(after, foreign[t.command]) << t.command << " foreign state changed";
  }
  auto sets = ns.Sh("ipset save");
  ASSERT_TRUE(sets.ok());
  EXPECT_EQ(*sets, *foreign_sets);
  // Each of the four tables (two backends, two families) reported its top-level chain.
  static const std::regex top_chain("removed chain IPv[46][a-z ]* KUBE-ROUTER-INPUT\n");
  auto begin = std::sregex_iterator(first.output.begin(), first.output.end(), top_chain);
  EXPECT_EQ(std::distance(begin, std::sregex_iterator()), 4) << first.output;
  for (const char* item :
       {"removed ipset inet6:KUBE-SRC-AAAAAAAAAAAAAAAA", "removed ipset kube-router-local-pods"}) {
    EXPECT_NE(first.output.find(item), std::string::npos) << item << " in\n" << first.output;
  }

  // A second run finds nothing and changes nothing.
  CleanupRun second = RunCleanup(ns, tmp, GetParam());
  EXPECT_EQ(second.exit_code, 0) << second.output;
  EXPECT_NE(second.output.find("nothing to remove"), std::string::npos) << second.output;
  for (const auto& t : kTools) EXPECT_EQ(Normalized(ns, t), foreign[t.command]) << t.command;
}

INSTANTIATE_TEST_SUITE_P(
    AgentFlags, CleanupBothBackends,
    ::testing::Values(std::vector<std::string>{}, std::vector<std::string>{"--iptables-mode=nft"},
                      std::vector<std::string>{"--iptables-mode=legacy", "--enable-ipv6=true"}),
    [](const auto& info) {
      return info.index == 0   ? std::string("Auto")
             : info.index == 1 ? std::string("ForcedNft")
                               : std::string("ForcedLegacyDualStack");
    });

// Cleanup never creates a table: on an nft-only host the legacy backend stays empty (asking
// iptables-legacy-save for a table by name would create it in the kernel).
TEST(CleanupNftOnly, CreatesNoLegacyTables) {
  ASSERT_TRUE(kr::testing::IsRoot()) << "netns tests need root";
  Netns ns("kr-np-clean-nft");
  TempDir tmp;
  ASSERT_TRUE(ns.Sh(kOurSets).ok());
  for (const auto& t : {kTools[0], kTools[1]}) ASSERT_TRUE(ns.Sh(OurState(t)).ok()) << t.command;
  auto legacy_tables = [&] {
    auto r = ns.Sh("cat /proc/net/ip_tables_names /proc/net/ip6_tables_names 2>/dev/null; true");
    return r.ok() ? *r : "error: " + r.error();
  };
  ASSERT_EQ(legacy_tables(), "");

  CleanupRun run = RunCleanup(ns, tmp, {});
  EXPECT_EQ(run.exit_code, 0) << run.output;
  for (const auto& t : {kTools[0], kTools[1]}) {
    EXPECT_FALSE(HasAnyOfOurs(Normalized(ns, t))) << t.command;
  }
  auto sets = ns.Sh("ipset list -n");
  ASSERT_TRUE(sets.ok());
  EXPECT_EQ(*sets, "");
  EXPECT_EQ(legacy_tables(), "");
}

}  // namespace
}  // namespace kr::netpol
